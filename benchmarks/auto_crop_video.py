"""The auto-crop on videos of a small object, still or moving: every frame searched, or every 10th (the Predictor's way).

    .venv/bin/python benchmarks/auto_crop_video.py --model chair --photo-material data/photo_material \\
        --out benchmarks/results/auto_crop_video_chair

Renders held-out videos of the model's category (``--n-videos`` of ``--length`` frames, seed 7919 as
``video_smoothing.py``; cached under ``--cache``), pastes each video's frames at one random size
(35-60 % of a 384 px canvas, ``auto_crop.SHARE``) on a crop of a held-out photo background, at one
random place or, with ``--motion M``, at a place moving in a straight line at constant speed by M of
the canvas side over the video (in a random direction, kept inside the canvas), and predicts every
frame four ways: no auto-crop; the auto-crop's search on every frame (``Predictor.predict_arrays``);
the search on every ``AUTO_CROP_VIDEO_STRIDE``-th frame with the frames between read on a crop
interpolated between the searched frames around them (``Predictor._video_auto_crop``, what
``predict_video`` does) or on their nearest searched frame's crop (``interpolate=False``, its way
before). Reported: azimuth within 45 deg, median error, ms a frame, and the paired differences of
the last two against every frame with 95 % intervals over the frames. Writes OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from auto_crop import CANVAS, SHARE

WAYS = ("off", "every frame", "every 10th frame", "every 10th frame, nearest crop")


def paste_track(rng: np.random.Generator, side: int, length: int, motion: float) -> np.ndarray:
    """(length, 2) integer top-left corners of a ``side`` px square on the canvas: one random place
    (``motion`` 0) or a straight line at constant speed over ``motion`` of the canvas side (at most
    what fits: the line is cut short at the canvas edge), in a random direction."""
    room = CANVAS - side
    start = rng.integers(0, room, 2).astype(np.float64)  # the still videos' places as before --motion
    if motion == 0:
        return np.repeat(start[None].astype(int), length, axis=0)
    angle = rng.uniform(0, 2 * np.pi)
    end = np.clip(start + motion * CANVAS * np.array([np.cos(angle), np.sin(angle)]), 0, room)
    t = np.linspace(0.0, 1.0, length)[:, None]
    return np.rint(start + t * (end - start)).astype(int)


def video_canvases(root: Path, photo_material: Path, seed: int, motion: float = 0.0) -> tuple[list[list[np.ndarray]], list[np.ndarray]]:
    """(each video's frames pasted on its canvas along its track, each video's true azimuths in radians)."""
    from PIL import Image

    from interp3d.data.world import WorldDataset
    from interp3d.render.photos import photo_library

    ds = WorldDataset(root, kind="video")
    a = ds.annotations
    order = np.lexsort((a["frame_index"], a["video_index"]))
    backgrounds = photo_library(str(photo_material / "backgrounds"), "test")
    rng = np.random.default_rng(seed)
    videos, azimuths = [], []
    for v in np.unique(a["video_index"]):
        idx = order[a["video_index"][order] == v]
        side = int(CANVAS * rng.uniform(*SHARE))
        background = Image.fromarray(backgrounds.crop(CANVAS, rng).astype(np.uint8))
        frames = []
        for i, (x, y) in zip(idx, paste_track(rng, side, len(idx), motion)):
            canvas = background.copy()
            canvas.paste(Image.fromarray(ds.load_image(int(i))).resize((side, side), Image.BILINEAR), (int(x), int(y)))
            frames.append(np.asarray(canvas))
        videos.append(frames)
        azimuths.append(a["azimuth"][idx].astype(np.float64))
    return videos, azimuths


def main() -> None:
    from interp3d.data.world import WorldOptions, render_world
    from interp3d.evaluation.metrics import angle_error, paired_mean_interval
    from interp3d.inference import AUTO_CROP_VIDEO_STRIDE, Predictor
    from interp3d.io_utils import atomic_write_json, atomic_write_text

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="chair", help="shipped model name or file")
    parser.add_argument("--photo-material", type=Path, default=Path("data/photo_material"), help="scripts/fetch_photo_material.sh output")
    parser.add_argument("--n-videos", type=int, default=12)
    parser.add_argument("--length", type=int, default=15)
    parser.add_argument("--seed", type=int, default=0, help="the canvases' seed")
    parser.add_argument("--motion", type=float, default=0.0, help="how far each video's object moves, in canvas sides (0: it stays put)")
    parser.add_argument("--cache", type=Path, default=Path("runs/auto_crop_video"))
    parser.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.md")
    args = parser.parse_args()
    if not 0.0 <= args.motion <= 1.0:  # before the videos are rendered
        parser.error(f"--motion is a share of the canvas side in [0, 1], got {args.motion}")
    if not (args.photo_material / "backgrounds").is_dir():
        parser.error(f"{args.photo_material}: no backgrounds/; run: bash scripts/fetch_photo_material.sh {args.photo_material}")
    predictor = Predictor.load(args.model, auto_crop=True)
    category = predictor.model.category
    root = args.cache / f"{category.name}_n{args.n_videos}_l{args.length}_px{predictor.model.image_size}"
    if not (root / "meta.json").is_file():
        options = WorldOptions(kind="video", count=args.n_videos, image_size=predictor.model.image_size, video_length=args.length)
        render_world(root, category.name, options, seed=7919, progress=False)
    videos, azimuths = video_canvases(root, args.photo_material, args.seed, args.motion)
    truth = np.concatenate(azimuths)
    answers = {way: [] for way in WAYS}
    seconds = dict.fromkeys(WAYS, 0.0)
    for frames in videos:
        sources, indices = ["video"] * len(frames), list(range(len(frames)))
        for way in WAYS:
            predictor.auto_crop = way != "off"
            start = time.perf_counter()
            if way.startswith("every 10th frame"):
                preds = predictor._video_auto_crop(frames, sources, interpolate=way == "every 10th frame")
            else:
                preds = predictor.predict_arrays(frames, sources, frames=indices)
            seconds[way] += time.perf_counter() - start
            answers[way] += [p.azimuth_deg for p in preds]
    report = {"model": args.model, "videos": str(root), "n_videos": len(videos), "frames": int(truth.size), "stride": AUTO_CROP_VIDEO_STRIDE, "motion": args.motion, "ways": {}}
    within = {}
    for way in WAYS:
        errors = np.degrees(angle_error(np.radians(answers[way]), truth, category.azimuth_period))
        within[way] = (errors <= 45.0).astype(np.float64)
        report["ways"][way] = {"within_45_pct": float(within[way].mean() * 100), "median_deg": float(np.median(errors)), "ms_per_frame": seconds[way] / truth.size * 1000}
    report["minus_every_frame_pct"] = {
        way: {k: v * 100 for k, v in paired_mean_interval(within[way] - within["every frame"]).items()} for way in WAYS[2:]
    }
    placed = f"moving in a straight line by {args.motion:.0%} of the canvas side over the video" if args.motion else "at one place"
    lines = ["# The auto-crop on videos of a small object", "",
             f"`{args.model}`: {len(videos)} held-out rendered videos of {args.length} frames ({truth.size} frames), each pasted at one size "
             f"({SHARE[0]:.0%}-{SHARE[1]:.0%} of a {CANVAS} px canvas), {placed}, on a held-out photo background (seed {args.seed}).", "",
             "| auto-crop | within 45 deg % | median deg | ms a frame |", "|---|---|---|---|"]
    lines += [f"| {way} | {r['within_45_pct']:.1f} | {r['median_deg']:.1f} | {r['ms_per_frame']:.0f} |" for way, r in report["ways"].items()]
    lines += [""] + [f"{way.capitalize()} minus every frame, within 45 deg: {g['gain']:+.1f} [{g['low']:+.1f}, {g['high']:+.1f}] (95 %, paired bootstrap over the frames)."
                     for way, g in report["minus_every_frame_pct"].items()]
    atomic_write_json(args.out.with_suffix(".json"), report)
    atomic_write_text(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
