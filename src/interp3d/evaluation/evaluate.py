"""Evaluate an interpreter on a world-format dataset: 3D structure, pose and 2D metrics."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch

from .. import geometry, viewpoint
from ..heatmaps import heatmap_peaks
from ..models import Interpreter
from ..refine import RefineOptions
from .metrics import (
    POSE_TAU_MAX, STRUCTURE_TAU_MAX, align_half_turn, angle_error, azimuth_bin_accuracy, confidence_summary, paired_mean_interval, pck, pcp_ae,
    pose_summary, recall_terms, structure_error, structure_summary,
)

__all__ = ["evaluate_interpreter", "network_outputs", "EvaluationResult", "format_metrics", "calibrate_peak_threshold", "calibrate_fit"]


class EvaluationResult(dict):
    """Summary metrics (this dict) plus ``per_object`` arrays."""

    per_object: dict[str, np.ndarray]


def network_outputs(model: Interpreter, data, batch_size: int = 32, device: str | torch.device = "cpu", flip_test: bool = False) -> list:
    """The interpreter's outputs (unrefined) on the images of ``data`` (an ``AnnotatedImages``), in batches."""
    from ..train.stages import predict_batches

    model = model.to(device).eval()
    # channels_last inputs alone give oneDNN's NHWC kernels (as fast as converting the weights too)
    # and leave the caller's model, e.g. one being trained, as it is
    return predict_batches(lambda x: model(x, flip_test=flip_test), data.images, torch.device(device), batch_size, memory_format=torch.channels_last)


def evaluate_interpreter(
    model: Interpreter, data, batch_size: int = 32, device: str | torch.device = "cpu", limit: int | None = None, refine: bool = False, refine_options: RefineOptions | None = None,
    flip_test: bool = False, outputs: list | None = None,
) -> EvaluationResult:
    """Metrics of ``model`` on ``data``: a world-format folder, or an already loaded ``AnnotatedImages``.
    ``refine`` adds test-time refinement to the heatmap keypoints (:meth:`Interpreter.refine`, with
    ``refine_options`` or the model's own, :attr:`Interpreter.refine_options`); ``flip_test`` averages the 2D module's outputs with those of
    the mirrored images (:meth:`Interpreter.forward`). ``outputs``: the network's outputs on ``data``
    from :func:`network_outputs` (to measure several refinements without running the network again)."""
    from ..train.stages import AnnotatedImages

    model = model.to(device).eval()
    if not isinstance(data, AnnotatedImages):
        data = AnnotatedImages(data, model.image_size, model.category, None if limit is None else np.arange(limit))
    outs = network_outputs(model, data, batch_size, device, flip_test) if outputs is None else outputs
    if refine:
        refined = []
        for o in outs:
            lifted, _ = model.refine_heatmaps(o, o.heatmaps.float(), options=refine_options or model.refine_options)
            refined.append(type(o)(**{**vars(o), **vars(lifted)}))
        outs = refined
    structure = torch.cat([o.structure.double().cpu() for o in outs]).numpy()
    azimuth, elevation = [], []
    for o in outs:
        az, el = o.params.view()
        azimuth.append(az.double().cpu())
        elevation.append(el.double().cpu())
    azimuth, elevation = torch.cat(azimuth).numpy(), torch.cat(elevation).numpy()
    hm = model.heatmap_size
    turn, period = model.category.half_turn_permutation, model.category.azimuth_period
    gt2d = geometry.rescale_points(data.keypoints, model.image_size, hm).numpy()
    projected = torch.cat([o.keypoints.float().cpu() for o in outs]).numpy()
    peaks = torch.cat([heatmap_peaks(o.heatmaps.float().cpu())[0] for o in outs]).numpy()
    visible = data.visible.numpy()
    # Sources differ in what they annotate: Keypoint-5 has no 3D, PASCAL3D+ has a viewpoint and only
    # sometimes a CAD structure; each metric uses the objects that have its ground truth.
    has_structure = np.isfinite(data.structure.numpy()).all(axis=(1, 2))
    has_pose = np.isfinite(data.azimuth.numpy()) & np.isfinite(data.elevation.numpy())
    s_err = np.full(len(data), np.nan)
    az_err, el_err = s_err.copy(), s_err.copy()
    if has_structure.any():
        s_err[has_structure] = structure_error(structure[has_structure], data.structure.numpy()[has_structure], half_turn=turn)
    if has_pose.any():
        az_err[has_pose] = angle_error(azimuth[has_pose], data.azimuth.numpy()[has_pose], period)
        el_err[has_pose] = angle_error(elevation[has_pose], data.elevation.numpy()[has_pose])
    result = EvaluationResult(
        n=len(data),
        n_with_3d=int(has_structure.sum()),
        n_with_pose=int(has_pose.sum()),
        structure=structure_summary(s_err[has_structure]) if has_structure.any() else None,
        azimuth=pose_summary(az_err[has_pose]) if has_pose.any() else None,
        elevation=pose_summary(el_err[has_pose]) if has_pose.any() else None,
        azimuth_bins={str(b): azimuth_bin_accuracy(azimuth[has_pose], data.azimuth.numpy()[has_pose], b) for b in (4, 8, 16, 24)} if has_pose.any() else None,
        pck_heatmap=pck(peaks, *align_half_turn(peaks, gt2d, visible, turn), hm),
        pck_reprojection=pck(projected, *align_half_turn(projected, gt2d, visible, turn), hm),
    )
    sigma = data.source.annotations.get("annotator_sigma")
    if sigma is not None:  # Keypoint-5-style data: annotator-relative PCP and AE on the heatmap peaks
        sigma_hm = sigma[data.indices] * hm / model.image_size * (model.image_size / data.source.meta["image_size"])
        result["pcp"], result["ae"] = pcp_ae(peaks, gt2d, visible, sigma_hm)
    view_logits = [o.view_logits for o in outs if getattr(o, "view_logits", None) is not None]
    confidence = np.full(len(data), np.nan)
    if len(view_logits) == len(outs) and has_pose.any():  # the 2D module's viewpoint head alone
        logits = torch.cat(view_logits).float().cpu()
        head = viewpoint.most_probable_azimuth(logits).double().numpy()
        result["azimuth_view_head"] = pose_summary(angle_error(head[has_pose], data.azimuth.numpy()[has_pose], period))
        # and its support for each answer: does it foretell the answers within 30 deg?
        confidence = viewpoint.azimuth_confidence(logits.softmax(-1), torch.from_numpy(azimuth), period).double().numpy()
        result["azimuth_confidence"] = confidence_summary(confidence[has_pose], az_err[has_pose] <= math.radians(viewpoint.CONFIDENCE_DEG))
    result.per_object = {
        "index": data.indices,
        "structure_error": s_err,
        "azimuth_error": az_err,
        "elevation_error": el_err,
        "azimuth_pred": azimuth,
        "azimuth_gt": data.azimuth.numpy(),
        "azimuth_confidence": confidence,
    }
    return result


def calibrate_peak_threshold(model: Interpreter, data, flip_test: bool = False, grid=None, device: str | torch.device = "cpu") -> dict:
    """The heatmap peak value that best tells a model's visible keypoints from hidden ones on
    labelled images ``data`` (a world-format folder, or anything with uint8 ``images`` and boolean
    ``visible`` like ``AnnotatedImages``): the threshold of the
    highest balanced accuracy (mean of the visible and hidden keypoints' recalls) over ``grid``.
    Returns ``{"peak_threshold", "balanced_accuracy", "visible_median_peak", "hidden_median_peak"}``."""
    from ..train.stages import AnnotatedImages, predict_batches

    model = model.to(device).eval()
    if not hasattr(data, "visible"):
        data = AnnotatedImages(data, model.image_size, model.category)
    outs = predict_batches(lambda x: model.keypoint_net_outputs(x, flip_test)[0][-1], data.images, torch.device(device), 32, memory_format=torch.channels_last)
    peaks = torch.cat([o.float().cpu().flatten(2).amax(-1) for o in outs]).numpy()
    visible = data.visible.numpy().astype(bool)
    known = getattr(data, "keypoints_known", None)
    if known is not None:  # a viewpoint-only image's keypoints are unlabelled, not hidden
        peaks, visible = peaks[known.numpy()], visible[known.numpy()]
    if visible.all() or not visible.any():
        raise ValueError("calibrating a peak threshold needs both visible and hidden keypoints in the data")
    grid = np.round(np.arange(0.02, 0.51, 0.01), 2) if grid is None else np.asarray(grid, float)
    balanced = np.array([0.5 * ((peaks[visible] >= t).mean() + (peaks[~visible] < t).mean()) for t in grid])
    best = int(balanced.argmax())
    return {"peak_threshold": float(grid[best]), "balanced_accuracy": float(balanced[best]),
            "visible_median_peak": float(np.median(peaks[visible])), "hidden_median_peak": float(np.median(peaks[~visible]))}


SHAPE_ANCHORS = (0.0, 0.5, 1.0)
# peak thresholds tried for the fit besides the model's own (its visibility threshold): a keypoint
# too faint to call visible can still help the fit at its low weight (val3d structure AR, chair /
# swivel chair / table at 0.5-0.32 -> 0.15: +1.5 / +2.2 / -2.7), so each model gets its own
FIT_PEAK_THRESHOLDS = (0.05, 0.1, 0.2, 0.3)
# then, one at a time, these refinement options (val3d structure AR with a tighter Cauchy scale
# 0.04: +0.05 to +0.6 for all five; a shape prior at half weight: swivel chair +2.5, sofa and
# table +0.8 / +0.9, chair -0.2, whose lifter learnt real shapes)
# and the refit at the heatmaps' other modes (swivel chair +1.2, chair +0.3)
FIT_REFINE_OPTIONS = {"robust_scale": (0.04,), "shape_weight": (0.5,), "mode_refit": (True,)}
# ... each kept only where it gains this much mean AR over the choice so far (150 val3d objects'
# paired noise is a few tenths of a point)
FIT_MIN_GAIN = 0.25


def calibrate_fit(
    model: Interpreter, data, anchors=SHAPE_ANCHORS, peak_thresholds=(), refine_options=None, min_gain: float = FIT_MIN_GAIN,
    flip_test: bool = False, device: str | torch.device = "cpu", incumbent: dict | None = None,
) -> dict:
    """How the 2D-to-3D module and refinement should read a model's heatmaps, chosen on ``data``, a
    world-format folder with 3D ground truth that no training used (a validation world), by the
    mean of structure and azimuth AR. For each :attr:`Interpreter.peak_threshold` (the model's own
    first, then ``peak_thresholds``): refinement's shape anchor (``anchors``: how far its shape prior
    moves toward the network's own shape, ``RefineOptions.view_shape_anchor`` for a model with a
    viewpoint head, else ``anchor``; its worth depends on the model, test3d structure AR for 0 / 0.5
    / 1: sofa 48.0 / 60.8 / 61.9, swivel chair 52.7 / 50.9 / 42.3), then each of ``refine_options``
    (``{RefineOptions field: values}``) in turn, a value kept where it gains at least ``min_gain``
    over the choice so far; the threshold whose choice ends best wins. (Options are searched under
    every threshold since they interact with it: on a table's val3d the half shape weight and the
    mode refit gained +1.6 and +2.8 structure AR at threshold 0.05; on its continuation's, the mode
    refit lost 1.0 at the 0.32 that the anchors alone had preferred.) The 2D module runs once; the
    lifter runs again for each threshold. Returns ``{"peak_threshold", "refine_options": {field:
    value}, "grid": [{"peak_threshold", **options, "structure_ar", "azimuth_ar", "mean_ar"}],
    "objects"}``; ties keep the earlier entry (the model's own threshold).

    ``incumbent`` (``{"peak_threshold", "refine_options"}``, e.g. the fit of the model a training
    round continued) is measured too and kept unless the search's winner beats it with a paired
    95 % bootstrap interval of the mean AR above 0 (``result["incumbent"]`` says which and by how
    much): the best of some 30 settings on a few hundred objects is partly luck, and three times a
    round's own choice lost structure on 1200 test objects to the fit it replaced (sofa -0.90, bed
    -1.39, table -1.07 AR)."""
    from ..train.stages import AnnotatedImages

    model = model.to(device).eval()
    if not isinstance(data, AnnotatedImages):
        data = AnnotatedImages(data, model.image_size, model.category)
    option = "view_shape_anchor" if model.view_bins > 0 else "anchor"
    outputs = network_outputs(model, data, device=device, flip_test=flip_test)
    own_info = getattr(model, "info", None)
    thresholds = list(dict.fromkeys([model.peak_threshold, *map(float, peak_thresholds)]))
    grid, object_terms = [], []  # object_terms[i]: grid[i]'s per-object mean-AR terms (with an incumbent)

    def measure(lifted, threshold: float, chosen: dict) -> dict:
        metrics = evaluate_interpreter(model, data, device=device, refine=True, refine_options=replace(model.refine_options, **chosen), outputs=lifted)
        if not metrics.get("structure") or not metrics.get("azimuth"):
            raise ValueError("calibrating the fit needs data with 3D structure and pose ground truth")
        s, a = metrics["structure"]["average_recall"], metrics["azimuth"]["average_recall"]
        if incumbent is not None:
            errors = metrics.per_object
            object_terms.append(0.5 * (recall_terms(errors["structure_error"], STRUCTURE_TAU_MAX) + recall_terms(errors["azimuth_error"], POSE_TAU_MAX)))
        grid.append({"peak_threshold": threshold, **chosen, "structure_ar": s, "azimuth_ar": a, "mean_ar": 0.5 * (s + a)})
        return grid[-1]

    def relift(threshold: float) -> list:
        # the refinement reads the keypoints' weights under the threshold too, so it stays set while measuring
        model.info = {**(own_info or {}), "peak_threshold": threshold}
        with torch.no_grad():
            return [type(o)(**{**vars(o), **vars(model.lift(o.heatmaps.float()))}) for o in outputs]

    try:
        if incumbent is not None:
            held = measure(relift(float(incumbent["peak_threshold"])), float(incumbent["peak_threshold"]), dict(incumbent.get("refine_options") or {}))
            held_terms = object_terms[-1]
        winner = None
        for threshold in thresholds:
            lifted = relift(threshold)
            best = max((measure(lifted, threshold, {option: float(value)}) for value in anchors), key=lambda g: g["mean_ar"])
            chosen = {option: best[option]}
            for name, values in (refine_options or {}).items():
                for value in values:
                    trial = measure(lifted, threshold, {**chosen, name: value})
                    if trial["mean_ar"] >= best["mean_ar"] + min_gain:
                        best, chosen = trial, {**chosen, name: value}
            if winner is None or best["mean_ar"] > winner[0]["mean_ar"]:
                winner = (best, chosen)
    finally:
        model.info = own_info
    best, chosen = winner
    result = {"peak_threshold": best["peak_threshold"], "refine_options": chosen, "grid": grid, "objects": int(len(data.images))}
    if incumbent is not None:
        gain = paired_mean_interval(object_terms[next(i for i, g in enumerate(grid) if g is best)] - held_terms)
        kept = gain["low"] <= 0.0
        if kept:
            result["peak_threshold"], result["refine_options"] = held["peak_threshold"], dict(incumbent.get("refine_options") or {})
        result["incumbent"] = {**held, "kept": kept, "search_winner_gain": gain}
    return result


def format_metrics(result: dict) -> str:
    """A plain-text table of the summary metrics (rows absent where the data lacks their ground truth)."""
    rows = [("objects", f"{result['n']} ({result.get('n_with_3d', 0)} with 3D structure, {result.get('n_with_pose', 0)} with pose)")]
    if result.get("structure"):
        s = result["structure"]
        rows.append(("3D structure", f"AR {s['average_recall']:.2f} %   mean RMSE {s['mean']:.3f}   median {s['median']:.3f}"))
    for key in ("azimuth", "elevation", "azimuth_view_head"):
        if result.get(key):
            p = result[key]
            rows.append((key, f"AR {p['average_recall']:.2f} %   median {p['median_deg']:.1f} deg   acc@30deg {p['accuracy_pi_6']:.1f} %"))
    if result.get("azimuth_confidence"):
        c = result["azimuth_confidence"]
        auroc = "-" if c["auroc"] is None else f"{c['auroc']:.3f}"
        rows.append(("azimuth confidence", f"AUROC {auroc} (answers within 30 deg: {100 * c['correct']:.1f} %)   calibration error {c['calibration_error']:.3f}"))
    if result.get("azimuth_bins"):
        rows.append(("azimuth bins", "   ".join(f"{b} bins {v:.1f} %" for b, v in result["azimuth_bins"].items())))
    rows.append(("2D PCK@0.05", f"heatmap peaks {result['pck_heatmap']:.1f} %   reprojection {result['pck_reprojection']:.1f} %"))
    if "pcp" in result:
        rows.append(("PCP / AE", f"{result['pcp']:.1f} % / {result['ae']:.3f}"))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
