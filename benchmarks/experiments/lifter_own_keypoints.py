"""Experiment (measured, not shipped): a model's keypoint lifter fine-tuned on its own 2D module's keypoints.

    .venv/bin/python benchmarks/experiments/lifter_own_keypoints.py --model chair \\
        --world runs/probe/chair_s31/world/annotated2d --out runs/probe/chair_own_keypoints.safetensors
    .venv/bin/python benchmarks/compare_models.py --model chair --model runs/probe/chair_own_keypoints.safetensors \\
        --data runs/tests160/chair_seed2/world/test3d ... --out ...

The lifter learns from synthetic keypoints with simulated detector errors (``interp3d.data.lifting``).
Here it also sees what the model's own 2D module reports (flip test and peak decoding as the
Predictor runs them) on the skeleton renders of an annotated world, with the renders' true
parameters as targets: ``--share`` of every batch, the rest from the recipe's synthetic sampler
(the model's header's seed and overrides), Adam with a cosine schedule from the shipped weights.
A tenth of the renders is held out; the held-out real shapes of the lifter's own validation
(KeypointNet test split, synthetic keypoints; the ranges' shapes for a lifter trained on the ranges)
tell whether it forgets real shapes for rendered ones.
Writes the model with the new lifter (everything else as shipped).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]


def own_keypoints(net, world: Path, batch: int = 64) -> dict[str, torch.Tensor]:
    """The 2D module's decoded keypoints and weights on the world's skeleton renders, with their truth."""
    from interp3d.data.world import WorldDataset

    ds = WorldDataset(world)
    a = ds.annotations
    keep = np.flatnonzero(a["keypoints_known"]) if "keypoints_known" in a else np.arange(len(ds))
    keypoints, weights = [], []
    with torch.no_grad():
        for start in range(0, len(keep), batch):
            images = torch.stack([ds[int(i)]["image"] for i in keep[start : start + batch]]).contiguous(memory_format=torch.channels_last)
            heatmaps, _ = net.keypoint_net_outputs(images, flip_test=True)
            k, w = net.heatmap_keypoints(heatmaps[0])
            keypoints.append(k)
            weights.append(w)
    return {"keypoints": torch.cat(keypoints), "weights": torch.cat(weights), "params": torch.from_numpy(a["params"][keep]).float(),
            "structure": torch.from_numpy(a["structure"][keep]), "azimuth": torch.from_numpy(a["azimuth"][keep])}


def main() -> None:
    sys.path.insert(0, str(ROOT / "scripts"))
    from train_product import product_config

    from interp3d.models import Interpreter, KeypointLifter
    from interp3d.models.serialization import export_interpreter
    from interp3d.train.losses import hypothesis_loss
    from interp3d.train.stages import lifting_data, pose_structure_metrics

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="chair", help="shipped model name or exported file")
    parser.add_argument("--world", type=Path, required=True, help="an annotated world (world/annotated2d) the 2D module did not train on")
    parser.add_argument("--out", type=Path, required=True, help="the model with the fine-tuned lifter (.safetensors)")
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--share", type=float, default=0.5, help="share of each batch from the model's own keypoints")
    parser.add_argument("--photo-material", type=Path, default=Path("data/photo_material"))
    parser.add_argument("--real-shapes", type=Path, default=ROOT.parent / "shared" / "data")
    args = parser.parse_args()

    net = Interpreter.load(args.model).eval().to(memory_format=torch.channels_last)
    category, lifter = net.category, net.lifter
    # the sampler the shipped lifter learned from: real shapes only where its header names them
    ranges_only = (net.info.get("lifter") or {}).get("real_shapes") == "ranges"
    cfg = product_config(category.name, args.photo_material, None if ranges_only else args.real_shapes, net.info["seed"], net.info["overrides"])
    sampler, val_sampler, _ = lifting_data(cfg, category)
    data = own_keypoints(net, args.world)
    order = torch.randperm(len(data["keypoints"]), generator=torch.Generator().manual_seed(0))
    held, train = order[: len(order) // 10], order[len(order) // 10 :]
    real_val = val_sampler.sample(4000, torch.Generator().manual_seed(cfg.seed * 2 + 2))

    @torch.no_grad()
    def structure_azimuth(model, keypoints, weights, structure, azimuth) -> str:
        model.eval()
        h, s, _ = model(keypoints, weights)
        m = pose_structure_metrics(category, lifter.codec, KeypointLifter.best(h, s), structure, azimuth)
        return f"structure AR {m['structure_ar']:.2f}, azimuth AR {m['azimuth_ar']:.2f}"

    def report(model, tag: str) -> None:
        own = structure_azimuth(model, *(data[k][held] for k in ("keypoints", "weights", "structure", "azimuth")))
        real = structure_azimuth(model, real_val.keypoints, real_val.weights, real_val.structure, real_val.azimuth)
        print(f"{tag}: lifter alone on held-out own keypoints {own}; on held-out real shapes (synthetic keypoints) {real}", flush=True)

    report(lifter, "shipped")
    optimiser = torch.optim.Adam(lifter.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, args.steps)
    gen = torch.Generator().manual_seed(1)
    batch = 256
    own = int(batch * args.share)
    for step in range(args.steps):
        lifter.train()
        synthetic = sampler.sample(batch - own, gen)
        pick = train[torch.randint(len(train), (own,), generator=gen)]
        keypoints = torch.cat([synthetic.keypoints, data["keypoints"][pick]])
        weights = torch.cat([synthetic.weights, data["weights"][pick]])
        params = torch.cat([synthetic.params, data["params"][pick]])
        _, scores, frame = lifter(keypoints, weights)
        scale = lifter.normalising_scale(torch.nan_to_num(keypoints), weights)
        loss, _ = hypothesis_loss(frame.float(), scores.float(), lifter.codec.normalise(lifter.to_frame(params, scale)).float())
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if (step + 1) % 500 == 0:
            report(lifter, f"step {step + 1}")
    lifter.eval()
    info = dict(net.info, lifter_own_keypoints={"world": str(args.world), "steps": args.steps, "lr": args.lr, "share": args.share})
    export_interpreter(net, args.out, half=True, info=info)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
