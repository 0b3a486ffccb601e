"""Where multi-frame bootstrapping teaches the 2D module, per true view (a diagnostic with ground truth).

    .venv/bin/python benchmarks/video_bootstrap_views.py --run runs/abl13/seed_0/chair \\
        --out benchmarks/results/video_bootstrap_views

``--run`` is one category's ablation folder (``world/video``, ``world/test3d``, ``baseline/``,
``video_curriculum/``, ``video_bootstrap/round<r>/``). Per view bin of the true azimuth measured
from the front (0-45, 45-90, 90-135, 135-180 deg) it reports:

* for each bootstrap round's pseudo-labels (``pseudo_labels.pt``) against the video world's ground
  truth: how the frames were labelled (own fit / interpolated / carried by the motion track / not
  at all), the fitted track's median azimuth error, how many truly visible keypoints got a label,
  and how many of those labels lie within 5 % / 10 % of the image side of the truth;
* for each model (Baseline, Video+Curriculum, each round's composed 2D module and video model) on
  ``test3d``: the 2D module's heatmap PCK@0.05 and the interpreter's median azimuth error (the
  ablation's evaluation: no refinement, no flip test).

The training code never reads the videos' ground truth; only this diagnostic does.
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from interp3d import geometry
from interp3d.evaluation.evaluate import evaluate_interpreter, network_outputs
from interp3d.evaluation.metrics import angle_error, pck
from interp3d.heatmaps import heatmap_peaks
from interp3d.io_utils import atomic_write_json, atomic_write_text, load_checkpoint
from interp3d.models.serialization import load_interpreter
from interp3d.train.bootstrap import pseudo_label_videos
from interp3d.train.stages import AnnotatedImages
from interp3d.train.video import VideoFrames
from interp3d.video_fit import VideoFitOptions

BINS = ((0, 45), (45, 90), (90, 135), (135, 180.0001))
SOURCES = {0: "own fit", 1: "interpolated", 2: "carried", -1: "none"}


def view_bin(azimuth_rad: np.ndarray) -> np.ndarray:
    """0..3: the true view's angle from the front in 45-degree bins."""
    from_front = np.degrees(angle_error(np.asarray(azimuth_rad, np.float64), np.zeros_like(azimuth_rad, dtype=np.float64)))
    return np.minimum((from_front // 45).astype(int), 3)


def _median(x) -> float | None:
    x = np.asarray(x, np.float64)
    return float(np.median(x)) if x.size else None


def frame_order(truth: AnnotatedImages) -> np.ndarray:
    """Indices putting the video world's ground truth in the bootstrap's (video, frame) order."""
    a = truth.source.annotations
    return np.lexsort((a["frame_index"][truth.indices], a["video_index"][truth.indices]))


def pseudo_label_quality(labels: dict, truth: AnnotatedImages) -> list[dict]:
    """Per view bin: frame sources, track azimuth error, label coverage and accuracy (image px)."""
    order = frame_order(truth)
    gt_kp, gt_vis, gt_az = truth.keypoints.numpy()[order], truth.visible.numpy()[order], truth.azimuth.numpy()[order]
    kp, kept = labels["keypoints"].float().numpy(), labels["visible"].bool().numpy()
    track = labels.get("track")
    size = truth.image_size
    bins = view_bin(gt_az)
    d = np.linalg.norm(kp - gt_kp, axis=-1)
    rows = []
    for b, (lo, hi) in enumerate(BINS):
        m = bins == b
        row = {"view_deg": f"{lo}-{int(hi)}", "frames": int(m.sum())}
        if track is not None:
            source = track["source"].numpy()[m]
            row.update({f"frames_{SOURCES[s].replace(' ', '_')}": int((source == s).sum()) for s in SOURCES})
            row["track_azimuth_median_deg"] = _median(np.degrees(angle_error(track["azimuth"].double().numpy()[m], gt_az[m])))
        visible, labelled = gt_vis[m], kept[m] & gt_vis[m]
        row["visible_keypoints"] = int(visible.sum())
        row["labelled_share"] = float(labelled.sum() / max(visible.sum(), 1) * 100)
        row["labels_within_5pct"] = float((d[m][labelled] <= 0.05 * size).mean() * 100) if labelled.any() else None
        row["labels_within_10pct"] = float((d[m][labelled] <= 0.10 * size).mean() * 100) if labelled.any() else None
        row["label_error_median_px"] = _median(d[m][labelled])
        rows.append(row)
    return rows


def appearance_quality(frame_log_probs: torch.Tensor, truth: AnnotatedImages) -> list[dict]:
    """Per view bin: how often the front/back appearance (``appearance.pt``) calls a frame a back view."""
    bins = view_bin(truth.azimuth.numpy()[frame_order(truth)])
    p_back = frame_log_probs.reshape(-1, 2)[:, 1].exp().numpy()
    return [{"view_deg": f"{lo}-{int(hi)}", "frames": int((bins == b).sum()), "said_back_pct": float((p_back[bins == b] > 0.5).mean() * 100) if (bins == b).any() else None,
             "p_back_mean": float(p_back[bins == b].mean()) if (bins == b).any() else None} for b, (lo, hi) in enumerate(BINS)]


def model_quality(model, test: AnnotatedImages) -> list[dict]:
    """Per view bin on test3d: heatmap PCK@0.05 and the interpreter's median azimuth error."""
    outputs = network_outputs(model, test)
    result = evaluate_interpreter(model, test, outputs=outputs)
    hm = model.heatmap_size
    peaks = torch.cat([heatmap_peaks(o.heatmaps.float().cpu())[0] for o in outputs]).numpy()
    gt = geometry.rescale_points(test.keypoints, model.image_size, hm).numpy()
    vis = test.visible.numpy()
    bins = view_bin(test.azimuth.numpy())
    az_err = np.degrees(result.per_object["azimuth_error"])
    rows = []
    for b, (lo, hi) in enumerate(BINS):
        m = bins == b
        rows.append({
            "view_deg": f"{lo}-{int(hi)}", "objects": int(m.sum()),
            "pck_heatmap": pck(peaks[m], gt[m], vis[m], hm),  # the evaluation's PCK@0.05, as in the "all" row
            "azimuth_median_deg": _median(az_err[m]),
        })
    rows.append({"view_deg": "all", "objects": len(bins), "pck_heatmap": float(result["pck_heatmap"]), "azimuth_median_deg": _median(az_err),
                 "azimuth_ar": result["azimuth"]["average_recall"], "structure_ar": result["structure"]["average_recall"]})
    return rows


def _models(run: Path) -> dict[str, Callable[[], object]]:
    """Loaders of the run's models by name; a round's new 2D module is composed with the model it
    started from (its ``composed.pt`` is removed once its video stage is done)."""
    found = {"Baseline": run / "baseline" / "finetune" / "best.pt", "Video+Curriculum": run / "video_curriculum" / "best.pt"}
    loaders = {name: partial(load_interpreter, path) for name, path in found.items() if path.is_file()}
    previous = found["Video+Curriculum"]
    for folder in sorted((run / "video_bootstrap").glob("round*")):
        keypoints = folder / "keypoints" / "best.pt"
        if (folder / "composed.pt").is_file():
            loaders[f"{folder.name}: 2D module + previous lifter"] = partial(load_interpreter, folder / "composed.pt")
        elif keypoints.is_file() and previous.is_file():
            loaders[f"{folder.name}: 2D module + previous lifter"] = partial(_compose, previous, keypoints)
        previous = folder / "video" / "best.pt"
        if previous.is_file():
            loaders[f"{folder.name}: after the video stage"] = partial(load_interpreter, previous)
    return loaders


def _compose(model_path: Path, keypoints_path: Path):
    model = load_interpreter(model_path)
    model.keypoint_net.load_state_dict(load_checkpoint(keypoints_path)["model"])
    return model


def _markdown(report: dict) -> str:
    lines = [f"# Bootstrapping per true view: `{report['run']}`", "", "## Pseudo-labels against the videos' ground truth", ""]
    for name, rows in report["pseudo_labels"].items():
        lines += [f"**{name}**", "", "| view from front | frames | own fit / interpolated / carried / none | track azimuth median deg | visible keypoints labelled % | labels within 5 % / 10 % of the side | label error median px |", "|---|---|---|---|---|---|---|"]
        for r in rows:
            sources = " / ".join(str(r.get(f"frames_{s.replace(' ', '_')}", "-")) for s in SOURCES.values())
            fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
            lines.append(f"| {r['view_deg']} | {r['frames']} | {sources} | {fmt(r.get('track_azimuth_median_deg'))} | {r['labelled_share']:.1f} | {fmt(r['labels_within_5pct'])} / {fmt(r['labels_within_10pct'])} | {fmt(r['label_error_median_px'])} |")
        lines.append("")
    if report.get("appearance"):
        lines += ["## Front/back appearance against the videos' ground truth", "", "| view from front | frames | called a back view % | mean p(back) |", "|---|---|---|---|"]
        lines += [f"| {r['view_deg']} | {r['frames']} | {r['said_back_pct']:.1f} | {r['p_back_mean']:.2f} |" for r in report["appearance"] if r["frames"]]
        lines.append("")
    lines += ["## Models on test3d", "", "| model | " + " | ".join(f"{lo}-{int(hi)} deg: PCK / az median" for lo, hi in BINS) + " | all: PCK / az median | structure AR / azimuth AR |", "|---|" + "---|" * (len(BINS) + 2)]
    for name, rows in report["models"].items():
        cells = [f"{r['pck_heatmap']:.1f} / {r['azimuth_median_deg']:.0f} ({r['objects']})" for r in rows]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {rows[-1]['structure_ar']:.2f} / {rows[-1]['azimuth_ar']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="one category's ablation folder")
    parser.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.md")
    parser.add_argument("--skip-models", action="store_true", help="pseudo-labels only (no network runs)")
    parser.add_argument("--label-with", type=Path, action="append", default=[], help="also pseudo-label the videos now with this model (e.g. the Baseline)")
    parser.add_argument("--track", choices=("motion", "viterbi"), default="motion", help="the video fit's track for --label-with")
    parser.add_argument("--appearance-weight", type=float, default=VideoFitOptions().appearance_weight,
                        help="for --label-with: weight of the run's front/back appearance (video_bootstrap/appearance.pt, where there is one; 0 = keypoints only)")
    args = parser.parse_args()
    run = args.run
    report = {"run": str(run), "pseudo_labels": {}, "models": {}}
    rounds = sorted((run / "video_bootstrap").glob("round*/pseudo_labels.pt"))
    appearance_file = run / "video_bootstrap" / "appearance.pt"
    frame_log_probs = load_checkpoint(appearance_file)["frame_log_probs"] if appearance_file.is_file() else None
    truth = None
    if rounds or args.label_with or frame_log_probs is not None:
        truth = AnnotatedImages(run / "world" / "video", _frame_size(run))
    if frame_log_probs is not None:
        report["appearance"] = appearance_quality(frame_log_probs, truth)
    for path in rounds:
        report["pseudo_labels"][path.parent.name] = pseudo_label_quality(load_checkpoint(path), truth)
    for path in args.label_with:
        model = load_interpreter(path)
        use = frame_log_probs if args.appearance_weight > 0 else None
        options = VideoFitOptions(track=args.track, appearance_weight=args.appearance_weight)
        pseudo, summary, track = pseudo_label_videos(model, VideoFrames(run / "world" / "video", model.image_size), "cpu", options, use)
        labels = {"keypoints": pseudo.keypoints, "visible": pseudo.visible, "track": track}
        report["pseudo_labels"][f"{path} now ({args.track}{'' if use is None else f', appearance {args.appearance_weight:g}'})"] = pseudo_label_quality(labels, truth)
    if not args.skip_models:
        test = None
        for name, load in _models(run).items():
            model = load()
            if test is None:
                test = AnnotatedImages(run / "world" / "test3d", model.image_size, model.category)
            report["models"][name] = model_quality(model, test)
            print(name, report["models"][name][-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out.with_suffix(".json"), report)
    atomic_write_text(args.out.with_suffix(".md"), _markdown(report))
    print(_markdown(report))


def _frame_size(run: Path) -> int:
    """The image size the pseudo-labels were made at: the run's models' (all share one config)."""
    return int(load_checkpoint(run / "baseline" / "finetune" / "best.pt")["model_config"]["image_size"])


if __name__ == "__main__":
    main()
