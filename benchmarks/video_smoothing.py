"""Effect of test-time temporal consistency (``Predictor.smooth``) on rendered videos with ground truth.

    .venv/bin/python benchmarks/video_smoothing.py --model chair --out benchmarks/results/video_smoothing
    .venv/bin/python benchmarks/video_smoothing.py --model runs/demo/chair/video_curriculum/best.pt --videos runs/demo/chair/world/video

Renders held-out chair videos (a seed no training run uses) unless ``--videos`` names a video world,
predicts every frame independently, then applies smoothing with several windows (median structure
and focal length over the video, moving average of rotation code and translation) and compares:
structure and azimuth average recall over frames, median azimuth error, and the temporal jitter
(mean |predicted - true azimuth change| between consecutive frames, degrees).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from interp3d.data.world import WorldDataset, WorldOptions, render_world
from interp3d.evaluation.metrics import angle_error, pose_summary, structure_error, structure_summary
from interp3d.inference import Predictor
from interp3d.io_utils import atomic_write_json


def _metrics(preds, gt_structure, gt_azimuth, video_index) -> dict:
    structure = np.stack([p.keypoints_3d for p in preds])
    azimuth = np.radians([p.azimuth_deg for p in preds])
    s_err = structure_error(structure, gt_structure)
    az_err = angle_error(azimuth, gt_azimuth)
    same = video_index[1:] == video_index[:-1]
    d_pred = np.angle(np.exp(1j * (azimuth[1:] - azimuth[:-1])))
    d_true = np.angle(np.exp(1j * (gt_azimuth[1:] - gt_azimuth[:-1])))
    jitter = np.degrees(np.abs(np.angle(np.exp(1j * (d_pred - d_true))))[same])
    return {"structure": structure_summary(s_err), "azimuth": pose_summary(az_err), "jitter_deg": float(jitter.mean())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="chair")
    parser.add_argument("--videos", type=Path, help="a rendered video world (annotations.npz holds the ground truth)")
    parser.add_argument("--n-videos", type=int, default=12)
    parser.add_argument("--length", type=int, default=15)
    parser.add_argument("--windows", default="3,5,9,15")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/video_smoothing"))
    args = parser.parse_args()
    predictor = Predictor.load(args.model)
    category = predictor.model.category.name
    root = args.videos
    if root is None:
        root = args.out / "videos"
        if not (root / "meta.json").is_file():
            options = WorldOptions(kind="video", count=args.n_videos, image_size=predictor.model.image_size, video_length=args.length)
            render_world(root, category, options, seed=7919)
    ds = WorldDataset(root, kind="video", category=category)
    a = ds.annotations
    order = np.lexsort((a["frame_index"], a["video_index"]))
    video_index = a["video_index"][order]
    gt_structure, gt_azimuth = a["structure"][order].astype(np.float64), a["azimuth"][order].astype(np.float64)
    raw = []
    for v in np.unique(video_index):
        idx = order[video_index == v]
        frames = [ds.load_image(int(i)) for i in idx]
        raw.append(predictor.predict_arrays(frames, [str(ds.image_path(int(i))) for i in idx], frames=list(range(len(idx)))))
    results = {"model": str(args.model), "videos": str(root), "frames": int(len(order)), "n_videos": len(raw)}
    results["independent"] = _metrics([p for video in raw for p in video], gt_structure, gt_azimuth, video_index)
    for window in (int(w) for w in args.windows.split(",")):
        smoothed = [p for video in raw for p in predictor.smooth(video, window=window)]
        results[f"smooth_w{window}"] = _metrics(smoothed, gt_structure, gt_azimuth, video_index)
    atomic_write_json(args.out / "video_smoothing.json", results)
    lines = ["| predictions | structure AR % | azimuth AR % | azimuth median deg | jitter deg/frame |", "|---|---|---|---|---|"]
    for name, m in results.items():
        if isinstance(m, dict):
            lines.append(f"| {name} | {m['structure']['average_recall']:.2f} | {m['azimuth']['average_recall']:.2f} | {m['azimuth']['median_deg']:.1f} | {m['jitter_deg']:.2f} |")
    table = "\n".join(lines)
    (args.out / "video_smoothing.md").write_text(f"# Test-time smoothing on {results['n_videos']} rendered {category} videos ({results['frames']} frames)\n\n{table}\n")
    print(table)


if __name__ == "__main__":
    main()
