"""Train the keypoint lifter (visibility-aware 2D-to-3D module) and put it into a shipped model.

    .venv/bin/python scripts/train_lifter.py --out runs/lift_chair --real-shapes ../shared/data
    .venv/bin/python scripts/train_lifter.py --out runs/lift_chair --real-shapes ../shared/data --export \\
        [--benchmark benchmarks/results/lifting.json]

``pretrain-lift`` (resumable) on 2D keypoints as real inputs look, with the real shapes (KeypointNet
training split + PASCAL3D+ CAD) as the shape distribution; ``--export`` keeps the shipped model's
hourglass, replaces its 2D-to-3D module with the new one and records the recipe, the shape prior,
the validation metrics and (``--benchmark``) the lifting benchmark in the file's header.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import torch

from interp3d.config import preset
from interp3d.io_utils import load_checkpoint
from interp3d.models.serialization import build_interpreter, export_interpreter, load_interpreter, pretrained_models
from interp3d.train.stages import lifting_data, pretrain_lift

OVERRIDES = ["model.lifter=keypoints", "model.keypoint_lifter_width=1024", "model.lifter_hypotheses=4", "lift.epochs=60", "lift.steps_per_epoch=250"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--category", default="chair")
    parser.add_argument("--real-shapes", type=Path, help="folder in the layout of ../shared/data")
    parser.add_argument("--export", action="store_true", help="write the package's pretrained file with the new lifter")
    parser.add_argument("--base", default=None, help="model whose hourglass to keep (default: the shipped model of the category)")
    parser.add_argument("--benchmark", type=Path, help="benchmarks/lifting.py result to record in the header")
    parser.add_argument("--test3d", type=Path, help="rendered test3d world: record the exported model's image metrics (refinement off and on)")
    args = parser.parse_args()
    overrides = OVERRIDES + ([f"lift.real_shapes={args.real_shapes.resolve()}"] if args.real_shapes else [])
    cfg = preset("cpu-small").override(overrides)
    result = pretrain_lift(cfg, args.category, args.out, progress=False)
    print(json.dumps(result.best_record, indent=2))
    if not args.export:
        return
    base_name = args.base or args.category
    base = load_interpreter(base_name)
    state = load_checkpoint(result.best_checkpoint, kind="pretrain_lift")
    model_config = {**base.model_config, **{k: v for k, v in asdict(cfg.model).items() if k in ("lifter", "keypoint_lifter_width", "keypoint_lifter_blocks", "lifter_hypotheses")}}
    model_config["heatmap_sigma"] = base.heatmap_sigma
    model = build_interpreter(base.category, model_config, base.heatmap_size)
    model.keypoint_net.load_state_dict(base.keypoint_net.state_dict())
    model.lifter.load_state_dict(state["model"])
    info = dict(base.info)
    info.update({
        "lifter": {
            "recipe": "scripts/train_lifter.py", "overrides": [o for o in overrides if not o.startswith("lift.real_shapes")],
            "real_shapes": "KeypointNet chairs (training split, 4/5) + PASCAL3D+ CAD chairs" if args.real_shapes else "category ranges only",
            "validation": state["metrics"], "git": json.loads((args.out / "run.json").read_text()).get("git"),
        },
        # recomputed (deterministic) so that an older run's checkpoint gets today's prior (residual bases)
        "shape_prior": lifting_data(cfg, args.category)[2].to_dict(),
        "refine_default": True,
    })
    if args.benchmark and args.benchmark.is_file():
        bench = json.loads(args.benchmark.read_text())
        info["lifting_benchmark"] = {k: {"results": {m: r["all"] for m, r in v["results"].items()}} for k, v in bench.items() if isinstance(v, dict) and "results" in v}
        info["lifting_benchmark"]["speed"] = bench.get("speed")
    target = pretrained_models().get(f"{args.category}-cpu-small") or Path(__file__).resolve().parents[1] / "src" / "interp3d" / "pretrained" / f"{args.category}-cpu-small.safetensors"
    with torch.no_grad():
        export_interpreter(model, target, half=True, info=info)
    if args.test3d:
        from interp3d.evaluation.evaluate import evaluate_interpreter

        exported = load_interpreter(target)  # as users get it (float16 weights)
        keys = ("structure", "azimuth", "elevation", "pck_heatmap", "pck_reprojection")
        info["test3d_metrics"] = dict(info.get("test3d_metrics", {}))
        for label, refine in (("keypoint_lifter", False), ("keypoint_lifter_refined", True)):
            metrics = evaluate_interpreter(exported, args.test3d, refine=refine)
            info["test3d_metrics"][label] = {k: metrics[k] for k in keys}
        with torch.no_grad():
            export_interpreter(model, target, half=True, info=info)
    print(f"exported -> {target}")


if __name__ == "__main__":
    main()
