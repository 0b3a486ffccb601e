"""Keypoint heatmaps: vectorised Gaussian rendering, peak decoding and peak confidence.

Coordinates are continuous heatmap pixels with pixel ``i`` covering ``[i, i + 1)`` (centre
``i + 0.5``). The kernel follows 3D-INN/hourglass: ``exp(-d^2 / (2 sigma^2))`` with peak 1 (not
normalised), zero beyond ``truncate * sigma``; a keypoint outside the map, or marked invisible,
gives an all-zero channel.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["render_heatmaps", "heatmap_peaks", "heatmap_modes", "peak_confidence", "mirror_heatmaps"]


def render_heatmaps(
    xy: Tensor,
    size: int = 64,
    sigma: float = 1.0,
    visible: Tensor | None = None,
    truncate: float = 3.0,
    dtype: torch.dtype = torch.float32,
    hidden_amplitude: float = 0.0,
) -> Tensor:
    """Gaussian heatmaps ``(..., N, size, size)`` for keypoints ``xy`` of shape ``(..., N, 2)``.

    ``visible`` (bool ``(..., N)``) zeroes channels; coordinates of invisible keypoints may be NaN.
    Non-finite coordinates of keypoints that are not marked invisible raise ``ValueError``.
    ``hidden_amplitude`` > 0 makes *amodal* targets: an invisible keypoint with finite coordinates
    (a rendered world knows where a hidden leg projects) gets a Gaussian of that height instead
    of an empty channel, so the peak both locates it and says it is hidden.
    """
    if xy.shape[-1] != 2:
        raise ValueError(f"keypoints must have shape (..., N, 2), got {tuple(xy.shape)}")
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    finite = torch.isfinite(xy).all(dim=-1)
    if visible is None:
        if not bool(finite.all()):
            raise ValueError("keypoint coordinates contain NaN/inf; pass `visible` to mark missing keypoints")
        keep = torch.ones_like(finite)
    else:
        keep = visible.to(torch.bool) & finite
    if not 0.0 <= hidden_amplitude <= 1.0:
        raise ValueError(f"hidden_amplitude must lie in [0, 1], got {hidden_amplitude}")
    amplitude = None
    if visible is not None and hidden_amplitude > 0:
        amplitude = torch.where(keep, 1.0, hidden_amplitude).to(dtype)
        keep = finite
    xy = torch.where(keep.unsqueeze(-1), xy, torch.zeros_like(xy)).to(dtype)
    inside = (xy >= 0).all(dim=-1) & (xy < size).all(dim=-1)
    keep = keep & inside

    # Evaluate the kernel only in a (2r+1)^2 window around each keypoint and scatter it into a
    # zero map: ~50 values per channel instead of size^2, which makes 40k samples take seconds.
    radius = int(math.ceil(truncate * sigma)) + 1
    offsets = torch.arange(-radius, radius + 1, device=xy.device)
    lead = xy.shape[:-1]
    base = torch.floor(xy).long()  # (..., N, 2)
    cols = base[..., 0, None, None] + offsets[None, :]  # (..., N, 1, W)
    rows = base[..., 1, None, None] + offsets[:, None]  # (..., N, W, 1)
    inv = -0.5 / (sigma * sigma)
    dx2 = (cols.to(dtype) + 0.5 - xy[..., 0, None, None]) ** 2
    dy2 = (rows.to(dtype) + 0.5 - xy[..., 1, None, None]) ** 2
    d2 = dx2 + dy2  # (..., N, W, W)
    values = torch.exp(d2 * inv)
    if amplitude is not None:
        values = values * amplitude[..., None, None]
    valid = (d2 <= (truncate * sigma) ** 2 * (1 + 1e-6)) & keep[..., None, None]
    valid = valid & (cols >= 0) & (cols < size) & (rows >= 0) & (rows < size)
    channel = torch.arange(keep.numel(), device=xy.device).reshape(lead)[..., None, None]
    flat_index = (channel * size + rows) * size + cols
    out = torch.zeros(keep.numel() * size * size, dtype=dtype, device=xy.device)
    out[flat_index[valid]] = values[valid]
    return out.reshape(lead + (size, size))


def heatmap_peaks(heatmaps: Tensor, subpixel: bool = False) -> tuple[Tensor, Tensor]:
    """Peak locations ``(..., N, 2)`` (x then y) and peak values ``(..., N)``: the highest pixel's
    centre, or with ``subpixel`` the maximum of the second-order Taylor expansion of the log heatmap
    around it (Zhang et al., CVPR 2020, "distribution-aware" decoding): exact for a Gaussian peak of
    any width, where the 3x3 centroid or the hourglass habit of a quarter pixel toward the higher
    neighbour keep most of a pixel's quantisation error (on the shipped models' 40x40 maps, inlier
    error 1.40 -> 1.27 % of the side on chair ``test3d``). Where the log heatmap is not concave at
    the peak (a flat or ragged map), the pixel centre stays. Differentiable in the heatmap values.
    """
    if heatmaps.dim() < 3:
        raise ValueError(f"heatmaps must have shape (..., N, H, W), got {tuple(heatmaps.shape)}")
    h, w = heatmaps.shape[-2:]
    flat = heatmaps.flatten(-2)
    values, index = flat.max(dim=-1)
    row = torch.div(index, w, rounding_mode="floor")
    col = index - row * w
    xy = torch.stack((col, row), dim=-1).to(heatmaps.dtype) + 0.5
    if not subpixel:
        return xy, values
    return xy + _taylor_step(flat, row.unsqueeze(-1), col.unsqueeze(-1), h, w).squeeze(-2), values


def heatmap_modes(heatmaps: Tensor, count: int = 3, subpixel: bool = True) -> tuple[Tensor, Tensor]:
    """The ``count`` highest local maxima (3x3) of each heatmap: locations ``(..., N, count, 2)``
    (x then y; pixel centres, or with ``subpixel`` each to a fraction of a pixel as
    :func:`heatmap_peaks`) and values ``(..., N, count)``, highest first (the first is the peak);
    value 0 where a map has fewer."""
    if heatmaps.dim() < 3:
        raise ValueError(f"heatmaps must have shape (..., N, H, W), got {tuple(heatmaps.shape)}")
    h, w = heatmaps.shape[-2:]
    lead = heatmaps.shape[:-2]
    maps = heatmaps.reshape(-1, 1, h, w)
    is_max = (maps == torch.nn.functional.max_pool2d(maps, 3, 1, 1)) & (maps > 0)
    flat = heatmaps.flatten(-2)
    values, index = torch.where(is_max.reshape(flat.shape), flat, torch.zeros_like(flat)).topk(min(count, h * w), dim=-1)
    row = torch.div(index, w, rounding_mode="floor")
    col = index - row * w
    xy = torch.stack((col, row), dim=-1).to(heatmaps.dtype) + 0.5
    if subpixel:
        xy = xy + _taylor_step(flat, row, col, h, w)
    return xy.reshape(lead + xy.shape[-2:]), values


def _taylor_step(flat: Tensor, row: Tensor, col: Tensor, h: int, w: int) -> Tensor:
    """``(..., N, K, 2)``: the Newton step ``-H^-1 g`` of the log heatmap ``flat (..., N, H*W)`` at
    the pixels ``(row, col) (..., N, K)``, at most a pixel (the argmax is within half a pixel of a
    clean peak); 0 where the log map is not concave there."""
    log_map = flat.clamp_min(1e-10).log()

    def at(dr, dc):  # the log heatmap at (row + dr, col + dc), the border repeated
        return log_map.gather(-1, (row + dr).clamp(0, h - 1) * w + (col + dc).clamp(0, w - 1))

    centre = at(0, 0)
    gx, gy = 0.5 * (at(0, 1) - at(0, -1)), 0.5 * (at(1, 0) - at(-1, 0))
    hxx, hyy = at(0, 1) - 2 * centre + at(0, -1), at(1, 0) - 2 * centre + at(-1, 0)
    hxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
    det = hxx * hyy - hxy * hxy
    concave = (det > 1e-6) & (hxx < 0)
    safe_det = torch.where(concave, det, torch.ones_like(det))
    dx = torch.where(concave, -(hyy * gx - hxy * gy) / safe_det, torch.zeros_like(det)).clamp(-1, 1)
    dy = torch.where(concave, -(hxx * gy - hxy * gx) / safe_det, torch.zeros_like(det)).clamp(-1, 1)
    return torch.stack((dx, dy), dim=-1)


def peak_confidence(heatmaps: Tensor, temperature: float = 1.0) -> Tensor:
    """Confidence ``(..., N)`` of each heatmap's peak: the softmax over its pixels, read at the peak.

    This is c_{j,n} of the paper's Eq. (5). It is a weight, so gradients do not flow through it.
    """
    flat = heatmaps.detach().flatten(-2) / temperature
    return torch.softmax(flat, dim=-1).amax(dim=-1)


def mirror_heatmaps(heatmaps: Tensor, flip_permutation) -> Tensor:
    """Heatmaps ``(B, N, H, W)`` of the horizontally mirrored image: each map mirrored and the
    channels of left/right keypoints swapped (``flip_permutation[i]``: the keypoint that ``i``
    becomes)."""
    return heatmaps.flip(-1)[:, list(flip_permutation)]
