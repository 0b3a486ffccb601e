"""Train the pretrained chair model shipped in ``src/interp3d/pretrained/`` (reproducible recipe).

    .venv/bin/python scripts/train_pretrained.py --out runs/pretrained_chair
    .venv/bin/python scripts/train_pretrained.py --out runs/pretrained_chair --export   # writes the package file

The `cpu-small` preset with a narrower 2D-to-3D module (FC 256-128-64 instead of 1024-256-128: the
first layer dominates the size, 10240 x 1024 weights) so the file is a few MB: rendered world ->
pretrain-2d -> pretrain-3d -> finetune (baseline) -> video semi-supervised learning with the
curriculum, model selection on the validation world, evaluation on the test world. Every step
resumes; ``--world`` and ``--hourglass`` reuse a rendered world / a pretrain-2d checkpoint of the
same `cpu-small` preset (the hourglass does not depend on the lifter width).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from interp3d.config import preset
from interp3d.data.world import render_world
from interp3d.io_utils import atomic_write_json, write_run_metadata
from interp3d.pipeline import evaluate_to_folder
from interp3d.train.stages import finetune, pretrain_2d, pretrain_3d
from interp3d.train.video import train_video

OVERRIDES = ["model.lifter_widths=[256,128,64]"]
NAME = "chair-cpu-small"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--world", type=Path, help="folder with annotated2d/, video/, val3d/, test3d/ rendered by this preset")
    parser.add_argument("--hourglass", type=Path, help="pretrain-2d checkpoint of the cpu-small preset to reuse")
    parser.add_argument("--export", action="store_true", help="write the package's pretrained file from the finished run")
    args = parser.parse_args()
    cfg = preset("cpu-small").override(OVERRIDES)
    out: Path = args.out
    write_run_metadata(out, cfg.to_dict(), cfg.seed, {"recipe": "scripts/train_pretrained.py", "overrides": OVERRIDES})
    world = args.world or out / "world"
    worlds = {}
    for kind, render_kind, seed in (("annotated2d", "annotated2d", cfg.seed), ("video", "video", cfg.seed), ("test3d", "test3d", cfg.seed), ("val3d", "test3d", cfg.seed + 500)):
        options = cfg.world.options(render_kind)
        if kind == "val3d":
            options = replace(options, count=max(cfg.world.n_test3d // 2, 1))
        root = world / kind
        if not (root / "meta.json").is_file():
            render_world(root, "chair", options, seed=seed, config=cfg.to_dict())
        worlds[kind] = root
    hourglass = args.hourglass or pretrain_2d(cfg, "chair", worlds["annotated2d"], out / "pretrain_2d").best_checkpoint
    lifter = pretrain_3d(cfg, "chair", out / "pretrain_3d").best_checkpoint
    baseline = finetune(cfg, "chair", worlds["annotated2d"], hourglass, lifter, out / "finetune").best_checkpoint
    vc = cfg.video
    video = train_video(cfg, "chair", worlds["annotated2d"], worlds["video"], worlds["val3d"], baseline, out / "video_curriculum", tuple(vc.curriculum), vc.epochs_per_length).best_checkpoint
    metrics = {}
    for name, ckpt in (("baseline", baseline), ("video_curriculum", video)):
        metrics[name] = {k: v for k, v in evaluate_to_folder(ckpt, worlds["test3d"], out / "evaluation" / name, label=name).items()}
    atomic_write_json(out / "metrics.json", metrics)
    print(json.dumps({k: {m: v[m] for m in ("structure", "azimuth", "pck_heatmap")} for k, v in metrics.items()}, indent=2))
    if args.export:
        from interp3d.models.serialization import export_interpreter, load_interpreter

        target = Path(__file__).resolve().parents[1] / "src" / "interp3d" / "pretrained" / f"{NAME}.safetensors"
        model = load_interpreter(video)
        export_interpreter(
            model, target, half=True,
            info={
                "name": NAME, "preset": "cpu-small", "overrides": OVERRIDES, "recipe": "scripts/train_pretrained.py",
                "trained_on": "interp3d rendered world (chair): annotated2d + video (category labels only); selected on val3d",
                "test3d_metrics": {k: {m: metrics[k][m] for m in ("structure", "azimuth", "elevation", "pck_heatmap", "pck_reprojection")} for k in metrics},
                "git": json.loads((out / "run.json").read_text()).get("git"),
            },
        )
        print(f"exported -> {target}")


if __name__ == "__main__":
    main()
