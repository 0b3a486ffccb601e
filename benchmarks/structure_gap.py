"""Where a model's 3D structure is lost: its lifter and refinement on keypoint sets between its own
heatmap keypoints and the exact annotations of a rendered test world.

    .venv/bin/python benchmarks/structure_gap.py --model chair \\
        --data runs/product/chair_gpu/world/test3d --out benchmarks/results/structure_gap_chair

The 2D module runs once (with the flip test where the model recommends it); then the model's own
lifter and refinement (its header's options and shape prior) fit each keypoint set below, and
structure / azimuth AR are measured as ``evaluate_interpreter`` does. An *inlier* is a visible
keypoint whose heatmap peak lies within ``--inlier-pct`` % of the projection plane's side of the
truth; everything else visible is an *outlier*. The rows separate the inliers' imprecision, the
information the outliers withhold, left/right swaps and the shape prior; a last line gives the 2D
module's mistakes in the units of the lifter's training options (``lift.displaced``, ``lift.swaps``,
``lift.hidden_reports``, ...: :func:`interp3d.data.lifting.detector_error_statistics`). Writes OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from interp3d import geometry
from interp3d.data.lifting import detector_error_statistics
from interp3d.evaluation.evaluate import evaluate_interpreter, network_outputs
from interp3d.heatmaps import heatmap_modes
from interp3d.io_utils import atomic_write_json, atomic_write_text
from interp3d.models.serialization import load_interpreter
from interp3d.shape_prior import ShapePrior
from interp3d.train.stages import AnnotatedImages

AMODAL_WEIGHT = 0.35  # a hidden keypoint's fit weight in the oracle rows: the peak an amodal 2D module is trained to (train.hidden_amplitude)


@torch.no_grad()
def fit(model, data, outs, keypoints: torch.Tensor, weights: torch.Tensor, prior: ShapePrior | None = None, heatmap_modes: bool = False) -> dict:
    """Structure / azimuth AR of the model's lifter + refinement on plane-px ``keypoints (B, N, 2)``
    with ``weights (B, N)``, the image's viewpoint belief as in the model's own run; ``heatmap_modes``:
    the heatmaps' other modes too, for a model whose refinement refits at them (``mode_refit``)."""
    refined, offset = [], 0
    for o in outs:
        b = len(o.heatmaps)
        kp, w = keypoints[offset : offset + b].float(), weights[offset : offset + b].float()
        offset += b
        lifted = model.lift_keypoints(kp, w)
        lifted.view_logits = o.view_logits
        alternatives = model.heatmap_alternatives(o.heatmaps.float()) if heatmap_modes else None
        fitted, _ = model.refine(lifted, kp, w, prior=prior, alternatives=alternatives)
        refined.append(type(o)(**{**vars(o), **vars(fitted)}))
    r = evaluate_interpreter(model, data, outputs=refined)
    return {"structure_ar": r["structure"]["average_recall"], "azimuth_ar": r["azimuth"]["average_recall"], "azimuth_median_deg": r["azimuth"]["median_deg"]}


def secondary_modes_near_truth(heatmaps: torch.Tensor, truth: torch.Tensor, plane_size: float, within_pct: float, min_fraction: float = 0.2) -> torch.Tensor:
    """``(B, N)``: the heatmap has a local maximum besides its highest, of at least ``min_fraction``
    of the highest, within ``within_pct`` % of the side of the truth (what a fit that chose among
    a heatmap's modes could recover)."""
    xy, values = heatmap_modes(heatmaps, 4, subpixel=False)
    distance = (geometry.rescale_points(xy, heatmaps.shape[-2], plane_size) - truth.unsqueeze(2)).norm(dim=-1) / plane_size * 100
    return ((distance[..., 1:] < within_pct) & (values[..., 1:] >= min_fraction * values[..., :1]) & (values[..., 1:] > 0)).any(-1)


def gap(model_name: str, world: Path, inlier_pct: float = 5.0, seed: int = 0) -> dict:
    model = load_interpreter(model_name).eval()
    if not model.lifts_keypoints:
        raise SystemExit(f"{model_name}: its 2D-to-3D module reads heatmaps; the error budget refits keypoint sets and needs a keypoint lifter (the product models)")
    category = model.category
    flip_test = bool(model.info.get("flip_test_default", False)) if getattr(model, "info", None) else False
    data = AnnotatedImages(world, model.image_size, category)
    with torch.no_grad():
        outs = network_outputs(model, data, flip_test=flip_test)
    decoded = [model.heatmap_keypoints(o.heatmaps.float()) for o in outs]
    kp = torch.cat([k for k, _ in decoded]).double()
    w = torch.cat([v for _, v in decoded]).double()
    truth = geometry.rescale_points(data.keypoints, model.image_size, category.plane_size).double()
    visible = data.visible.bool()
    side = category.plane_size
    error = kp - truth
    distance = error.norm(dim=-1) / side * 100
    inlier = visible & (distance < inlier_pct)
    outlier = visible & ~inlier
    flip = list(category.flip_permutation)
    partner_distance = (kp - truth[:, flip]).norm(dim=-1) / side * 100
    swapped = outlier & (partner_distance < inlier_pct)
    rms_axis = float(error[inlier].pow(2).mean().sqrt())  # per-axis RMS of the inliers' errors, plane px
    # hidden keypoints that project into the image: what an amodal 2D module (train.hidden_amplitude) could report
    hidden = ~visible & ((truth >= 0) & (truth <= side)).all(-1)
    hidden_reported = hidden & (w > 0)
    amodal_w = torch.where(hidden, torch.full_like(w, AMODAL_WEIGHT), w)  # the model's weights, the hidden ones at an amodal peak
    noise = torch.randn(truth.shape, generator=torch.Generator().manual_seed(seed), dtype=truth.dtype)
    unswapped = torch.where(swapped.unsqueeze(-1), truth, kp)
    heatmaps = torch.cat([o.heatmaps.float() for o in outs]).double()
    modes = secondary_modes_near_truth(heatmaps, truth, side, inlier_pct)
    vis_w, in_w = visible.double(), inlier.double()
    rows = [  # rows of the model's own keypoints may refit at its heatmaps' other modes (as users' runs do); exact sets do not
        ("the model as users run it: its heatmap keypoints and weights", kp, w, None),
        ("exact keypoints, the visible ones", truth, vis_w, None),
        ("exact keypoints where the model reports one, its weights", truth, w, None),
        ("its keypoints, the visible ones (true visibility as weights)", kp, vis_w, None),
        ("its keypoints, visible inliers only (oracle outlier rejection)", kp, in_w, None),
        ("exact keypoints, visible inliers only (what the outliers withhold)", truth, in_w, None),
        ("its inliers + exact outliers (what the inliers' imprecision costs)", torch.where(inlier.unsqueeze(-1), kp, truth), vis_w, None),
        ("exact + i.i.d. noise of the inliers' RMS, visible", truth + rms_axis * noise, vis_w, None),
        ("its visible keypoints, left/right swaps corrected (oracle)", unswapped, vis_w, None),
        ("the model's keypoints and weights, prior of the ranges", kp, w, ShapePrior.from_ranges(category)),
        (f"its keypoints + the hidden ones exact at weight {AMODAL_WEIGHT:g} (a perfect amodal 2D module)",
         torch.where(hidden.unsqueeze(-1), truth, kp), amodal_w, None),
        ("... the hidden ones with i.i.d. noise of 4x the inliers' RMS",
         torch.where(hidden.unsqueeze(-1), truth + 4 * rms_axis * noise, kp), amodal_w, None),
    ]
    results = [{"keypoints": label, **fit(model, data, outs, k, wt, prior, heatmap_modes=k is kp)} for label, k, wt, prior in rows]
    for r in results:
        print(f"{r['keypoints'][:70]:70s} structure {r['structure_ar']:.2f} azimuth {r['azimuth_ar']:.2f}", flush=True)
    return {
        "model": model_name, "world": str(world), "objects": len(data), "flip_test": flip_test, "inlier_pct": inlier_pct,
        "keypoints": {
            "visible": int(visible.sum()), "inliers": int(inlier.sum()), "outliers": int(outlier.sum()),
            "outlier_median_distance_pct": float(distance[outlier].median()) if outlier.any() else None,
            "outliers_swapped": int(swapped.sum()), "outliers_with_model_weight_0": int((outlier & (w == 0)).sum()),
            "outliers_with_a_secondary_mode_near_truth": int((outlier & modes).sum()),
            "inlier_rms_per_axis_pct": rms_axis / side * 100,
            "hidden_in_image": int(hidden.sum()), "hidden_reported": int(hidden_reported.sum()),
            "hidden_reported_median_distance_pct": float(distance[hidden_reported].median()) if hidden_reported.any() else None,
            "hidden_reported_within_inlier_pct": float((distance[hidden_reported] < inlier_pct).double().mean()) if hidden_reported.any() else None,
        },
        "detector_error_model": detector_error_statistics(kp, w, truth, visible, flip),
        "fits": results,
    }


def markdown(reports: list[dict]) -> str:
    lines = ["# Where the structure is lost", ""]
    for rep in reports:
        k = rep["keypoints"]
        lines += [
            f"`{rep['model']}` on `{rep['world']}` ({rep['objects']} objects, flip test {'on' if rep['flip_test'] else 'off'}): "
            f"{k['visible']} visible keypoints, {k['inliers']} inliers within {rep['inlier_pct']:g} % of the side "
            f"(per-axis RMS {k['inlier_rms_per_axis_pct']:.2f} %), {k['outliers']} outliers (median {k['outlier_median_distance_pct']:.1f} % off; "
            f"{k['outliers_swapped']} left/right swaps, {k['outliers_with_model_weight_0']} below the peak threshold, "
            f"{k['outliers_with_a_secondary_mode_near_truth']} with a second heatmap mode near the truth). "
            + (f"Of {k['hidden_in_image']} hidden keypoints inside the image it reports {k['hidden_reported']}, "
               f"{k['hidden_reported_within_inlier_pct']:.0%} within {rep['inlier_pct']:g} % of the side (median {k['hidden_reported_median_distance_pct']:.1f} % off)."
               if k.get("hidden_reported") else ""), "",
            "| keypoints fitted | structure AR | azimuth AR | azimuth median deg |", "|---|---|---|---|",
        ]
        lines += [f"| {r['keypoints']} | {r['structure_ar']:.2f} | {r['azimuth_ar']:.2f} | {r['azimuth_median_deg']:.1f} |" for r in rep["fits"]]
        d = rep.get("detector_error_model")
        if d:
            lines += [
                "",
                "Its mistakes in the lifting sampler's units (`lift.*`; object 2D RMS radii, shares of reported keypoints): "
                f"{d['visible_reported']:.0%} of visible keypoints reported, noise {d['noise_per_axis']:.3f} per axis, "
                f"displaced {d['displaced']:.3f}, swaps {d['swaps']:.3f}; {d['hidden_reports']:.0%} of hidden keypoints reported "
                f"({d['hidden_reports_wrong']:.0%} of them wrong, {d['hidden_reports_at_partner']:.0%} at the mirror partner); "
                f"confidence median {d['confidence_median_right']:.2f} right, {d['confidence_median_wrong']:.2f} wrong.",
            ]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="checkpoint, exported file or shipped name")
    parser.add_argument("--data", type=Path, action="append", required=True, help="a world-format test folder with 3D annotations")
    parser.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.md")
    parser.add_argument("--inlier-pct", type=float, default=5.0)
    args = parser.parse_args()
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    reports = [gap(args.model, world, args.inlier_pct) for world in args.data]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out.with_suffix(".json"), reports)
    atomic_write_text(args.out.with_suffix(".md"), markdown(reports))
    print(markdown(reports))


if __name__ == "__main__":
    main()
