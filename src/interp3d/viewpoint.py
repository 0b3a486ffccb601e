"""Azimuth as a classification over bins: the encoding of the 2D module's viewpoint head.

Bin ``i`` of ``V`` is centred at azimuth ``2 pi i / V`` (0 shows the front, :mod:`interp3d.geometry`).
Training targets are a wrapped Gaussian over the bins (neighbouring views look alike, so a near
miss costs less than a front/back confusion); at test time the head's probabilities, linearly
interpolated between bin centres, score any azimuth a fit proposes (:func:`interp3d.refine.refine`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .geometry import wrap_angle

# azimuth_confidence: the belief's mass within this many degrees of an answer
CONFIDENCE_DEG = 30.0

__all__ = ["bin_centres", "soft_targets", "mirrored_azimuth", "azimuth_log_prob", "azimuth_mass", "azimuth_confidence", "CONFIDENCE_DEG", "top_azimuths", "most_probable_azimuth", "nearest_mode"]


def bin_centres(bins: int, dtype=torch.float32, device=None) -> Tensor:
    """``(V,)`` bin centres in radians, ``2 pi i / V``."""
    if bins < 2:
        raise ValueError(f"a viewpoint head needs at least 2 azimuth bins, got {bins}")
    return torch.arange(bins, dtype=dtype, device=device) * (2 * math.pi / bins)


def soft_targets(azimuth: Tensor, bins: int, sd_bins: float = 1.0) -> Tensor:
    """``(B, V)`` target distributions for azimuths ``(B,)`` (radians): a wrapped Gaussian of
    ``sd_bins`` bin widths around each azimuth. Rows of NaN azimuths (no ground truth) are 0."""
    centres = bin_centres(bins, azimuth.dtype, azimuth.device)
    distance = wrap_angle(azimuth.unsqueeze(-1) - centres)  # (B, V) in [-pi, pi)
    logits = -0.5 * (distance / (sd_bins * 2 * math.pi / bins)) ** 2
    target = torch.softmax(logits, dim=-1)
    return torch.where(torch.isfinite(azimuth).unsqueeze(-1), target, torch.zeros_like(target))


def mirrored_azimuth(azimuth: Tensor) -> Tensor:
    """The azimuth of a horizontally mirrored image (left/right keypoints swapped): ``-azimuth``.
    Mirroring negates camera x, and ``diag(-1, 1, 1) Rx(t1) Ry(az) = Rx(t1) Ry(-az) diag(-1, 1, 1)``."""
    return wrap_angle(-azimuth, 0.0)


def azimuth_log_prob(log_probs: Tensor, azimuth: Tensor) -> Tensor:
    """Log probability ``(B, H)`` of azimuths ``(B, H)`` (radians) under per-object bin log
    probabilities ``(B, V)``: the probability density interpolated linearly between the two nearest
    bin centres (continuous in the azimuth, so a fit's selection does not jump at bin edges)."""
    bins = log_probs.shape[-1]
    position = wrap_angle(azimuth, 0.0) * (bins / (2 * math.pi))  # in [0, V)
    low = position.floor().long().clamp(0, bins - 1)
    frac = (position - low.to(position.dtype)).clamp(0, 1)
    high = (low + 1) % bins
    probs = log_probs.exp()
    p = (1 - frac) * probs.gather(-1, low) + frac * probs.gather(-1, high)
    return p.clamp_min(1e-12).log()


def azimuth_mass(probs: Tensor, azimuth: Tensor, half_width: float, period: float = 2 * math.pi) -> Tensor:
    """``(B,)`` the probability a belief ``(B, V)`` (probabilities) puts within ``half_width``
    radians of ``azimuth (B,)``, modulo ``period`` (a table's half turn: both readings count). Each
    bin spreads its probability evenly over its width, so the mass is continuous in the azimuth."""
    bins = probs.shape[-1]
    width = 2 * math.pi / bins
    centres = bin_centres(bins, probs.dtype, probs.device)
    distance = torch.remainder(centres - azimuth.to(probs.dtype).unsqueeze(-1) + period / 2, period) - period / 2
    half_width = min(half_width, period / 2)
    inside = sum(  # the window and its copies a period either side (a bin may straddle the wrap)
        (torch.clamp(distance + width / 2, max=k * period + half_width) - torch.clamp(distance - width / 2, min=k * period - half_width)).clamp_min(0.0)
        for k in (-1, 0, 1)
    )
    overlap = inside / width  # share of each bin inside the window
    return (probs * overlap).sum(-1).clamp(0.0, 1.0)


def azimuth_confidence(probs: Tensor, azimuth: Tensor, period: float = 2 * math.pi) -> Tensor:
    """``(B,)`` how much a head's belief (probabilities ``(B, V)``) supports each answer
    ``azimuth (B,)``: its probability within :data:`CONFIDENCE_DEG` of it, modulo ``period``.
    On renders it foretells the answers within 30 deg (``confidence_summary`` in evaluations)."""
    return azimuth_mass(probs.float(), azimuth.float(), math.radians(CONFIDENCE_DEG), period)


def top_azimuths(log_probs: Tensor, k: int) -> Tensor:
    """``(B, k)`` centres (radians) of each object's ``k`` most probable bins."""
    centres = bin_centres(log_probs.shape[-1], log_probs.dtype, log_probs.device)
    return centres[log_probs.topk(k, dim=-1).indices]


def most_probable_azimuth(logits: Tensor) -> Tensor:
    """``(B,)`` the centre (radians) of each object's most probable bin: the head's own answer.
    Logits or log probabilities alike (the order of the bins is the same)."""
    return top_azimuths(logits, 1)[:, 0]


def nearest_mode(log_probs: Tensor, azimuth: Tensor, modes: int = 2) -> Tensor:
    """``(B,)`` for each object the mode of its belief ``(B, V)`` nearest to ``azimuth (B,)`` among
    the ``modes`` most probable bins, located below bin width by the circular mean of that bin
    and its two neighbours weighted by their probabilities."""
    bins = log_probs.shape[-1]
    centres = bin_centres(bins, log_probs.dtype, log_probs.device)
    top = log_probs.topk(min(modes, bins), dim=-1).indices  # (B, k)
    distance = wrap_angle(centres[top] - azimuth.unsqueeze(-1)).abs()
    best = top.gather(-1, distance.argmin(-1, keepdim=True))  # (B, 1)
    window = (best + torch.arange(-1, 2, device=best.device)) % bins  # (B, 3)
    p = log_probs.exp().gather(-1, window)
    angles = centres[window]
    return wrap_angle(torch.atan2((p * angles.sin()).sum(-1), (p * angles.cos()).sum(-1)), 0.0)
