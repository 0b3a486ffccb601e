"""The Predictor's auto-crop on objects that fill a small part of a photograph.

    .venv/bin/python benchmarks/auto_crop.py --model sofa --data runs/tests192/sofa_seed2/world/test3d \\
        --photo-material data/photo_material [--count 150] --out benchmarks/results/auto_crop_sofa

Rendered ``test3d`` objects fill most of their image, so ``compare_models.py`` never sees the
auto-crop; photographs often show a piece of furniture small in a room. Here each of the first
``--count`` renders of a world (exact azimuth) is scaled to a random 35-60 % (``--share``) of a 384 px
canvas and pasted at a random place on a crop of a held-out photo background (the ``test`` split of
``--photo-material``; seeded, so every model reads the same canvases). Each model predicts as the
Predictor runs it, once with the auto-crop off and once on; reported: azimuth within 45 deg, median
error (tables modulo 180 deg), how many images the auto-crop answered from a crop, and the within-45
gain of the auto-crop with a 95 % interval from a paired bootstrap over the images. The same for the
renders as they are (the object framed, as in most photographs of one piece of furniture), where
the auto-crop should change little. Writes OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

CANVAS = 384
SHARE = (0.35, 0.6)


def canvases(data: Path, photo_material: Path, count: int, seed: int, share: tuple[float, float] = SHARE) -> tuple[list[np.ndarray], np.ndarray, str]:
    """(canvases, true azimuths in radians, category) of the first ``count`` renders of a world, each
    scaled to a random ``share`` of the canvas side."""
    from PIL import Image

    from interp3d.data.world import WorldDataset
    from interp3d.render.photos import photo_library

    world = WorldDataset(data)
    count = min(count, len(world))
    backgrounds = photo_library(str(photo_material / "backgrounds"), "test")
    rng = np.random.default_rng(seed)
    images = []
    for i in range(count):
        side = int(CANVAS * rng.uniform(*share))
        canvas = Image.fromarray(backgrounds.crop(CANVAS, rng).astype(np.uint8))
        x, y = rng.integers(0, CANVAS - side, 2)
        canvas.paste(Image.fromarray(world.load_image(i)).resize((side, side), Image.BILINEAR), (int(x), int(y)))
        images.append(np.asarray(canvas))
    return images, world.annotations["azimuth"][:count], world.category.name


def framed(data: Path, count: int) -> list[np.ndarray]:
    """The first ``count`` renders of a world as they are."""
    from interp3d.data.world import WorldDataset

    world = WorldDataset(data)
    return [world.load_image(i) for i in range(min(count, len(world)))]


def measure(model: str, images: list[np.ndarray], azimuth: np.ndarray, scales: list[float] | None = None) -> dict:
    from interp3d.evaluation.metrics import angle_error, paired_mean_interval
    from interp3d.inference import Predictor

    rows, within = {}, {}
    for crop in (False, True):
        predictor = Predictor.load(model, auto_crop=crop, auto_crop_scales=scales)
        start = time.perf_counter()
        predictions = predictor.predict_arrays(images, [str(i) for i in range(len(images))])
        seconds = time.perf_counter() - start
        period = predictor.model.category.azimuth_period
        errors = np.degrees(angle_error(np.radians([p.azimuth_deg for p in predictions]), azimuth, period))
        within[crop] = (errors <= 45.0).astype(np.float64)
        rows["on" if crop else "off"] = {
            "within_45_pct": float(within[crop].mean() * 100), "median_deg": float(np.median(errors)),
            "cropped": int(sum("auto_crop_box" in p.extra for p in predictions)), "ms_per_image": seconds / len(images) * 1000,
        }
    gain = paired_mean_interval(within[True] - within[False])
    rows["gain_within_45_pct"] = {k: v * 100 for k, v in gain.items()}
    return rows


def markdown(report: dict) -> str:
    lines = ["# The auto-crop on small objects in photographs", "",
             f"`{report['data']}`: the first {report['count']} renders, each scaled to {report['share'][0]:.0%}-{report['share'][1]:.0%} of a {CANVAS} px canvas on a "
             f"held-out photo background (seed {report['seed']}; *small*), and the same renders as they are (*framed*); auto-crop window scales "
             f"{report['scales']}; azimuth as the "
             f"Predictor runs each model; ms an image: the Predictor's wall time on this machine ({report['threads']} torch threads).", "",
             "| model | images | auto-crop | within 45 deg % | median deg | answered from a crop | gain within 45 (on - off) [95 %] | ms an image |",
             "|---|---|---|---|---|---|---|---|"]
    for model, sets in report["models"].items():
        for name, rows in sets.items():
            gain = rows["gain_within_45_pct"]
            for mode in ("off", "on"):
                r = rows[mode]
                cell = f"{gain['gain']:+.1f} [{gain['low']:+.1f}, {gain['high']:+.1f}]" if mode == "on" else "-"
                lines.append(f"| `{model}` | {name} | {mode} | {r['within_45_pct']:.1f} | {r['median_deg']:.1f} | {r['cropped']} / {report['count']} | {cell} | {r['ms_per_image']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    from interp3d.io_utils import atomic_write_json, atomic_write_text

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, help="shipped model name or file (repeat)")
    parser.add_argument("--data", type=Path, required=True, help="a world-format test3d folder")
    parser.add_argument("--photo-material", type=Path, default=Path("data/photo_material"), help="scripts/fetch_photo_material.sh output")
    parser.add_argument("--count", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scales", type=float, nargs="+", default=None, help="the auto-crop's window scales (default: the Predictor's)")
    parser.add_argument("--share", type=float, nargs=2, default=SHARE, metavar=("LOW", "HIGH"), help="the small objects' side as a share of the canvas's")
    parser.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.md")
    args = parser.parse_args()
    if not (args.photo_material / "backgrounds").is_dir():
        parser.error(f"{args.photo_material}: no backgrounds/; run: bash scripts/fetch_photo_material.sh {args.photo_material}")
    images, azimuth, category = canvases(args.data, args.photo_material, args.count, args.seed, tuple(args.share))
    image_sets = {"small": images, "framed": framed(args.data, args.count)}
    import torch

    from interp3d.inference import AUTO_CROP_SCALES

    report = {"data": str(args.data), "category": category, "count": len(images), "seed": args.seed, "share": list(args.share), "scales": list(args.scales or AUTO_CROP_SCALES), "threads": torch.get_num_threads(), "models": {}}
    for model in args.model:
        report["models"][model] = {name: measure(model, shown, azimuth, args.scales) for name, shown in image_sets.items()}
        print(model, report["models"][model], flush=True)
    atomic_write_json(args.out.with_suffix(".json"), report)
    atomic_write_text(args.out.with_suffix(".md"), markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
