"""Experiment (measured, not shipped): a viewpoint head on the frozen ImageNet encoder beside the fine-tuned one.

    .venv/bin/python benchmarks/experiments/view_probe.py --model chair --train runs/probe/chair_s31/world/annotated2d \\
        --test runs/tests160/chair_seed2/world/test3d --photos benchmarks/real_photos/labels.json

Fine-tuning on renders may distort what the ImageNet encoder knew of photographs (Kumar et al.,
ICLR 2022); a head trained on the frozen encoder's features keeps it. This trains such heads on a
rendered world's azimuths (every render and its mirror, soft targets over 24 bins as the model's
own head): a linear layer on the pooled 1280 head features, and a small convolutional head on the
stride-32 map (1x1 conv to 32 channels, BatchNorm, ReLU, a linear layer over the map). Each is
scored alone and multiplied into the model's own (flip-merged) belief with weight 0.25 / 0.5 / 1
on the test world, the Sweet Home 3D models' test half (``--furniture``) and the category's
labelled photos, read on the crop the Predictor chooses.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

BINS = 24


@torch.no_grad()
def frozen_features(encoder, images: torch.Tensor, batch: int = 64) -> dict[str, torch.Tensor]:
    """Stride-32 maps and pooled head features of images ``(B, 3, S, S)`` in [0, 1] and of their mirrors."""
    from interp3d.models.efficientnet import IMAGENET_MEAN, IMAGENET_STD

    mean, std = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    out = {k: [] for k in ("spatial", "pooled", "spatial_mirror", "pooled_mirror")}
    for start in range(0, len(images), batch):
        for suffix, x in (("", images[start : start + batch]), ("_mirror", images[start : start + batch].flip(-1))):
            taps = encoder.features(((x - mean) / std).contiguous(memory_format=torch.channels_last))[-1]
            out["spatial" + suffix].append(taps.half())
            out["pooled" + suffix].append(encoder.pooled_features(taps).half())
    return {k: torch.cat(v).float() for k, v in out.items()}


@torch.no_grad()
def model_belief(net, images: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """The model's own viewpoint belief ``(B, BINS)``, flip-merged as the Predictor runs it."""
    parts = []
    for start in range(0, len(images), batch):
        _, view = net.keypoint_net_outputs(images[start : start + batch].contiguous(memory_format=torch.channels_last), flip_test=True)
        parts.append(F.softmax(view.float(), -1))
    return torch.cat(parts)


class ConvHead(nn.Module):
    def __init__(self, channels: int, cells: int, mid: int = 32):
        super().__init__()
        self.reduce = nn.Sequential(nn.Dropout2d(0.1), nn.Conv2d(channels, mid, 1), nn.BatchNorm2d(mid), nn.ReLU())
        self.fc = nn.Sequential(nn.Dropout(0.3), nn.Linear(mid * cells, BINS))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.reduce(x).flatten(1))


def train_head(kind: str, feats: dict, azimuth: torch.Tensor, epochs: int = 40, lr: float = 1e-3) -> nn.Module:
    from interp3d.viewpoint import mirrored_azimuth, soft_targets

    x = torch.cat([feats[kind], feats[kind + "_mirror"]])
    target = soft_targets(torch.cat([azimuth, mirrored_azimuth(azimuth)]), BINS)
    head = ConvHead(x.shape[1], x.shape[-1] * x.shape[-2]) if kind == "spatial" else nn.Sequential(nn.Dropout(0.3), nn.Linear(x.shape[1], BINS))
    optimiser = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-3)
    steps = epochs * (len(x) // 128)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, lr, total_steps=steps)
    gen = torch.Generator().manual_seed(0)
    head.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x) - 127, 128):
            idx = order[start : start + 128]
            loss = -(target[idx] * F.log_softmax(head(x[idx]), -1)).sum(-1).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
    return head.eval()


@torch.no_grad()
def head_belief(head: nn.Module, kind: str, feats: dict) -> torch.Tensor:
    """The head's belief flip-merged as the Predictor merges the model's own (:func:`merge_mirrored`)."""
    from interp3d.models.interpreter import merge_mirrored

    _, log_belief = merge_mirrored([], torch.cat([head(feats[kind]), head(feats[kind + "_mirror"])]), None, len(feats[kind]))
    return log_belief.exp()


def within_45(belief: torch.Tensor, azimuth: torch.Tensor, period: float) -> tuple[float, float]:
    from interp3d.evaluation.metrics import angle_error
    from interp3d.viewpoint import most_probable_azimuth

    errors = np.degrees(angle_error(most_probable_azimuth(torch.log(belief + 1e-8)).double().numpy(), azimuth.double().numpy(), period))
    return float((errors <= 45).mean() * 100), float(np.median(errors))


def main() -> None:
    from interp3d.data.world import WorldDataset, WorldOptions, render_furniture_views
    from interp3d.inference import Predictor, _square, load_rgb
    from interp3d.models.efficientnet import EfficientNetLite0, load_lite0_weights

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="chair")
    parser.add_argument("--train", type=Path, required=True, help="an annotated world the heads learn from")
    parser.add_argument("--test", type=Path, required=True, help="a test3d world")
    parser.add_argument("--photos", type=Path, default=Path("benchmarks/real_photos/labels.json"))
    parser.add_argument("--photo-root", type=Path, default=Path("../shared/data/photos"))
    parser.add_argument("--furniture", type=Path, default=Path("data/furniture_models"))
    parser.add_argument("--photo-material", type=Path, default=Path("data/photo_material"))
    args = parser.parse_args()
    torch.manual_seed(0)

    predictor = Predictor.load(args.model)
    net = predictor.model.eval()
    category, size = net.category, net.image_size
    period = float(np.degrees(category.azimuth_period))
    encoder = EfficientNetLite0()
    load_lite0_weights(encoder)
    encoder = encoder.eval().to(memory_format=torch.channels_last)

    def world_images(root: Path):
        ds = WorldDataset(root)
        return torch.stack([ds[i]["image"] for i in range(len(ds))]), torch.from_numpy(ds.annotations["azimuth"]).float()

    train_images, train_azimuth = world_images(args.train)
    train_feats = frozen_features(encoder, train_images)
    del train_images
    sets = {}
    test_images, test_azimuth = world_images(args.test)
    sets["test3d"] = (test_images, test_azimuth)
    if args.furniture.is_dir():
        m = args.photo_material
        views = render_furniture_views(category, args.furniture, 300, 0, size, WorldOptions(backgrounds=str(m / "backgrounds"), textures=str(m / "textures"), jpeg=0.5), split="test")
        sets["unseen furniture models"] = (torch.from_numpy(views["images"]).permute(0, 3, 1, 2).float() / 255, torch.from_numpy(views["azimuth"]).float())
    labels = [p for p in json.loads(args.photos.read_text())["photos"] if p["category"] == category.name]
    if labels:
        crops, azimuths = [], []
        for item in labels:
            rgb = load_rgb(args.photo_root / item["path"])
            (pred,) = predictor.predict(rgb)
            square, _ = _square(rgb, size, pred.extra.get("auto_crop_box"))
            crops.append(torch.from_numpy(square.copy()).permute(2, 0, 1).float() / 255)
            azimuths.append(np.radians(item["azimuth_deg"]))
        sets["real photos"] = (torch.stack(crops), torch.tensor(azimuths).float())

    print(f"| set | head | {args.model}'s head | probe alone | x probe^0.25 | x probe^0.5 | x probe^1 |")
    print("|---|---|---|---|---|---|---|")
    for kind in ("pooled", "spatial"):
        head = train_head(kind, train_feats, train_azimuth)
        for name, (images, azimuth) in sets.items():
            own, probe = model_belief(net, images), head_belief(head, kind, frozen_features(encoder, images))
            cells = [within_45(own, azimuth, period), within_45(probe, azimuth, period)]
            for w in (0.25, 0.5, 1.0):
                mixed = own * probe**w
                cells.append(within_45(mixed / mixed.sum(-1, keepdim=True), azimuth, period))
            print(f"| {name} ({len(azimuth)}) | {kind} | " + " | ".join(f"{a:.1f} % / {m:.0f} deg" for a, m in cells) + " |", flush=True)


if __name__ == "__main__":
    main()
