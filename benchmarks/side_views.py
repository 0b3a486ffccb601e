"""Where a model's 3D is lost by view: structure and azimuth AR by distance of the true azimuth from a
side view, and, for a category that looks the same after a half turn (the table), how often the 2D
module's heatmap peaks mix the two labellings.

    .venv/bin/python benchmarks/side_views.py --model src/interp3d/pretrained/table.safetensors \\
        --data runs/tests192/table_seed2/world/test3d --out benchmarks/results/side_views_table

The model runs as users run it (its header's refinement and peak thresholds, the flip test). An image
*mixes* the labellings when one visible keypoint's peak lies within PCK distance (5 % of the heatmap
side) of its own truth and another's within that distance of its half-turned partner's truth.
Writes OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from interp3d import geometry
from interp3d.evaluation.evaluate import evaluate_interpreter, network_outputs
from interp3d.evaluation.metrics import POSE_TAU_MAX, STRUCTURE_TAU_MAX, average_recall
from interp3d.heatmaps import heatmap_peaks
from interp3d.io_utils import atomic_write_json, atomic_write_text
from interp3d.models.serialization import load_interpreter
from interp3d.train.stages import AnnotatedImages

BANDS_DEG = ((0, 10), (10, 20), (20, 40), (40, 70), (70, 90.01))


def distance_from_side_deg(azimuth_rad: np.ndarray) -> np.ndarray:
    """|distance| in degrees of each azimuth from the nearest side view (+-90 deg): 0 at a side, 90 at the front or back."""
    a = (np.degrees(azimuth_rad) + 180.0) % 360.0 - 180.0
    return np.abs(np.abs(a) - 90.0)


def mixed_labellings(peaks: np.ndarray, truth: np.ndarray, visible: np.ndarray, permutation, tolerance: float) -> np.ndarray:
    """(B,) whether an image's peaks match some keypoints' own truth and others' half-turned partners' truth."""
    perm = list(permutation)
    own = (np.linalg.norm(peaks - truth, axis=-1) <= tolerance) & visible
    turned = (np.linalg.norm(peaks - truth[:, perm], axis=-1) <= tolerance) & visible[:, perm]
    return own.any(axis=1) & turned.any(axis=1)


def measure(model_path: Path, data_path: Path) -> dict:
    model = load_interpreter(model_path).eval()
    data = AnnotatedImages(data_path, model.image_size, model.category)
    outs = network_outputs(model, data, flip_test=True)
    result = evaluate_interpreter(model, data, refine=True, flip_test=True, outputs=outs)
    per = result.per_object
    side = distance_from_side_deg(per["azimuth_gt"])
    turn = model.category.half_turn_permutation
    mixed = None
    if turn is not None:
        hm = model.heatmap_size
        peaks = np.concatenate([heatmap_peaks(o.heatmaps.float().cpu())[0].numpy() for o in outs])
        truth = geometry.rescale_points(data.keypoints, model.image_size, hm).numpy()
        mixed = mixed_labellings(peaks, truth, data.visible.numpy(), turn, 0.05 * hm)
    bands = []
    for lo, hi in BANDS_DEG:
        k = (side >= lo) & (side < hi)
        if not k.any():
            continue
        bands.append({
            "from_side_deg": [lo, min(hi, 90.0)], "objects": int(k.sum()),
            "structure_ar": average_recall(per["structure_error"][k], STRUCTURE_TAU_MAX),
            "azimuth_ar": average_recall(per["azimuth_error"][k], POSE_TAU_MAX),
            "azimuth_median_deg": float(np.degrees(np.median(per["azimuth_error"][k]))),
            "mixed_labellings_pct": None if mixed is None else float(mixed[k].mean() * 100),
        })
    return {"model": str(model_path), "data": str(data_path), "structure_ar": result["structure"]["average_recall"],
            "azimuth_ar": result["azimuth"]["average_recall"], "bands": bands}


def to_markdown(reports: list[dict]) -> str:
    lines = ["# Structure and azimuth AR by distance from a side view", "",
             "| model | world | deg from a side view | objects | structure AR | azimuth AR | azimuth median deg | mixed labellings % |",
             "|---|---|---|---|---|---|---|---|"]
    for r in reports:
        for b in r["bands"]:
            mixed = "-" if b["mixed_labellings_pct"] is None else f"{b['mixed_labellings_pct']:.0f}"
            lines.append(f"| `{r['model']}` | `{r['data']}` | {b['from_side_deg'][0]:g}-{b['from_side_deg'][1]:g} | {b['objects']} | "
                         f"{b['structure_ar']:.1f} | {b['azimuth_ar']:.1f} | {b['azimuth_median_deg']:.1f} | {mixed} |")
        lines.append(f"| `{r['model']}` | `{r['data']}` | all | {sum(b['objects'] for b in r['bands'])} | {r['structure_ar']:.1f} | {r['azimuth_ar']:.1f} | | |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, action="append", required=True, help="an exported model (repeat for several)")
    parser.add_argument("--data", type=Path, action="append", required=True, help="a world-format test3d folder (repeat for several)")
    parser.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.md")
    args = parser.parse_args()
    reports = [measure(m, d) for m in args.model for d in args.data]
    atomic_write_json(args.out.with_suffix(".json"), reports)
    atomic_write_text(args.out.with_suffix(".md"), to_markdown(reports))
    print(to_markdown(reports))


if __name__ == "__main__":
    main()
