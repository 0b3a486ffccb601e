"""Evaluate an interpreter on a world-format dataset: 3D structure, pose and 2D metrics."""

from __future__ import annotations


import numpy as np
import torch

from .. import geometry
from ..heatmaps import heatmap_peaks
from ..models import Interpreter
from .metrics import angle_error, pck, pcp_ae, pose_summary, structure_error, structure_summary

__all__ = ["evaluate_interpreter", "EvaluationResult"]


class EvaluationResult(dict):
    """Summary metrics (this dict) plus ``per_object`` arrays."""

    per_object: dict[str, np.ndarray]


def evaluate_interpreter(model: Interpreter, data, batch_size: int = 32, device: str | torch.device = "cpu", limit: int | None = None) -> EvaluationResult:
    """Metrics of ``model`` on ``data``: a world-format folder, or an already loaded ``AnnotatedImages``."""
    from ..train.stages import AnnotatedImages, predict_batches

    model = model.to(device).eval()
    if not isinstance(data, AnnotatedImages):
        data = AnnotatedImages(data, model.image_size, model.category, None if limit is None else np.arange(limit))
    outs = predict_batches(model, data.images, torch.device(device), batch_size)
    structure = torch.cat([o.structure.double().cpu() for o in outs]).numpy()
    azimuth, elevation = [], []
    for o in outs:
        az, el = o.params.view()
        azimuth.append(az.double().cpu())
        elevation.append(el.double().cpu())
    azimuth, elevation = torch.cat(azimuth).numpy(), torch.cat(elevation).numpy()
    hm = model.heatmap_size
    gt2d = geometry.rescale_points(data.keypoints, model.image_size, hm).numpy()
    projected = torch.cat([o.keypoints.float().cpu() for o in outs]).numpy()
    peaks = torch.cat([heatmap_peaks(o.heatmaps.float().cpu())[0] for o in outs]).numpy()
    has_3d = np.isfinite(data.structure.numpy()).all(axis=(1, 2)) & np.isfinite(data.azimuth.numpy())
    s_err = np.full(len(data), np.nan)
    az_err, el_err = s_err.copy(), s_err.copy()
    if has_3d.any():  # 2D-only data (e.g. Keypoint-5) has NaN 3D ground truth
        s_err[has_3d] = structure_error(structure[has_3d], data.structure.numpy()[has_3d])
        az_err[has_3d] = angle_error(azimuth[has_3d], data.azimuth.numpy()[has_3d])
        el_err[has_3d] = angle_error(elevation[has_3d], data.elevation.numpy()[has_3d])
    result = EvaluationResult(
        n=len(data),
        n_with_3d=int(has_3d.sum()),
        structure=structure_summary(s_err[has_3d]) if has_3d.any() else None,
        azimuth=pose_summary(az_err[has_3d]) if has_3d.any() else None,
        elevation=pose_summary(el_err[has_3d]) if has_3d.any() else None,
        pck_heatmap=pck(peaks, gt2d, data.visible.numpy(), hm),
        pck_reprojection=pck(projected, gt2d, data.visible.numpy(), hm),
    )
    sigma = data.source.annotations.get("annotator_sigma")
    if sigma is not None:  # Keypoint-5-style data: annotator-relative PCP and AE on the heatmap peaks
        sigma_hm = sigma[data.indices] * hm / model.image_size * (model.image_size / data.source.meta["image_size"])
        result["pcp"], result["ae"] = pcp_ae(peaks, gt2d, data.visible.numpy(), sigma_hm)
    result.per_object = {
        "index": data.indices,
        "structure_error": s_err,
        "azimuth_error": az_err,
        "elevation_error": el_err,
        "azimuth_pred": azimuth,
        "azimuth_gt": data.azimuth.numpy(),
    }
    return result
