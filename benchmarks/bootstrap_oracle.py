"""The bootstrap's upper bound: its rounds run with the videos' exact keypoints as pseudo-labels.

    .venv/bin/python benchmarks/bootstrap_oracle.py --run runs/abl13/seed_0/chair --out runs/oracle/chair_seed0
    .venv/bin/python benchmarks/bootstrap_oracle.py --run runs/abl13/seed_0/chair --videos 96 --out runs/oracle/chair_seed0_96
    .venv/bin/python benchmarks/video_bootstrap_views.py --run runs/oracle/chair_seed0 --out benchmarks/results/bootstrap_oracle_chair_seed0

``--run`` is one category's ablation folder. OUT becomes a folder of the same shape: links to the
run's worlds, Baseline and Video+Curriculum, and ``video_bootstrap/``, where every round's
``pseudo_labels.pt`` holds the video world's ground truth (every truly visible keypoint, exact)
before :func:`interp3d.train.bootstrap.train_bootstrap` runs from the Video+Curriculum model. The
2D fine-tuning and the video stage are the method's own; only the labels are perfect, so the result
bounds what any better video fit could gain with these videos and this training budget.
``--videos N`` renders a video world of N videos in OUT instead (the run's video world seed and
options, N videos): the same bound with more unlabelled videos.
``interp3d train video --videos OUT/world/video --bootstrap-rounds R`` then runs the real bootstrap
on them.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch

from interp3d.config import Config
from interp3d.data.world import render_world
from interp3d.io_utils import save_checkpoint
from interp3d.train.bootstrap import train_bootstrap
from interp3d.train.stages import AnnotatedImages
from video_bootstrap_views import frame_order


def oracle_labels(video_root: Path, image_size: int) -> tuple:
    """``(keypoints (V*J, N, 2) image px at image_size, visible (V*J, N), track)`` of a video
    world's frames in the order the bootstrap reads them: its ground truth as pseudo-labels, and as
    the fitted track (``azimuth``, ``elevation``, ``source`` as a video fit's)."""
    truth = AnnotatedImages(video_root, image_size)
    order = frame_order(truth)
    track = {"azimuth": truth.azimuth[order], "elevation": truth.elevation[order], "source": torch.zeros(len(order), dtype=torch.long)}
    return truth.keypoints[order].float(), truth.visible[order].bool(), track


def run_config(run: Path, overrides: list[str]) -> Config:
    """The ablation run's resolved config (its ``run.json`` beside the category folders)."""
    return Config.from_dict(json.loads((run.parent / "run.json").read_text())["config"]).override(overrides)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="one category's ablation folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--videos", type=int, default=0, help="render a video world of this many videos in OUT (0: the run's own)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="config override, e.g. video.bootstrap_2d_epochs=8")
    args = parser.parse_args()
    run, out = args.run.resolve(), args.out
    # the labels are given: no appearance model is learnt for a video fit
    cfg = run_config(run, args.overrides + ["video.bootstrap_appearance_weight=0"])
    video_meta = json.loads((run / "world" / "video" / "meta.json").read_text())
    category = video_meta["category"]
    (out / "world").mkdir(parents=True, exist_ok=True)
    for name in ("annotated2d", "test3d", "val3d") + (() if args.videos else ("video",)):
        link = out / "world" / name
        if not link.exists():
            link.symlink_to(run / "world" / name)
    for name in ("baseline", "video_curriculum"):
        if not (out / name).exists():
            (out / name).symlink_to(run / name)
    if args.videos:
        render_world(out / "world" / "video", category, replace(cfg.world.options("video"), count=args.videos), seed=int(video_meta["seed"]), config=cfg.to_dict(), workers=2)
    keypoints, visible, track = oracle_labels(out / "world" / "video", cfg.model.image_size)
    summary = {"frames": len(keypoints), "labelled_keypoints": int(visible.sum()), "keypoint_share": float(visible.float().mean()), "oracle": True}
    for r in range(1, args.rounds + 1):
        labels = out / "video_bootstrap" / f"round{r}" / "pseudo_labels.pt"
        if not labels.is_file():
            labels.parent.mkdir(parents=True, exist_ok=True)
            save_checkpoint(labels, {"kind": "pseudo_labels", "keypoints": keypoints, "visible": visible, "track": track, "summary": summary, "source": "ground truth (oracle)"})
    vc = cfg.video
    result = train_bootstrap(cfg, category, out / "world" / "annotated2d", out / "world" / "video", out / "world" / "val3d", run / "video_curriculum" / "best.pt",
                             out / "video_bootstrap", tuple(vc.curriculum), vc.epochs_per_length, rounds=args.rounds)
    print(f"oracle bootstrap: best validation mean AR {result.best_metric:.2f} (round {result.best_record.get('bootstrap_round')}) -> {result.best_checkpoint}")


if __name__ == "__main__":
    main()
