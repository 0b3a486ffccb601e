"""Losses of the paper (Eqs. 2-7) and the latent-variable updates.

Shapes: a batch of ``V`` clips of ``J`` frames. Structure and camera quantities are compared in the
*normalised* parameter space of :class:`interp3d.params.ParamCodec` (every component mapped to
[0, 1] by the category's ranges), so one weight fits every category; 2D distances are in heatmap
px. The paper's sums over frames, keypoints and clips are taken as means, so the weights do not
depend on batch size or clip length.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "reprojection_loss",
    "structure_consistency_loss",
    "motion_smoothness_loss",
    "confidence_reprojection_loss",
    "update_latents",
    "hypothesis_loss",
    "range_loss",
    "heatmap_loss",
    "VideoLossWeights",
]


@dataclass(frozen=True)
class VideoLossWeights:
    """The paper's final weights {w_kp, w_alpha, w_f, w_R, w_T, w_2D} = {1, 10000, 10000, 50, 50, 150}
    were tuned for its code's scales, which are not published; interp3d's defaults (``cpu-small``)
    are chosen on validation data for normalised parameters and heatmap px."""

    kp: float = 1.0
    alpha: float = 10.0
    focal: float = 10.0
    rotation: float = 1.0
    translation: float = 1.0
    reprojection: float = 0.1


def reprojection_loss(predicted: Tensor, target: Tensor, visible: Tensor) -> Tensor:
    """Eq. (2): squared L2 between projected and annotated keypoints, averaged over visible keypoints."""
    sq = ((predicted - target) ** 2).sum(-1)
    w = visible.to(sq.dtype)
    return (sq * w).sum() / w.sum().clamp_min(1.0)


def heatmap_loss(
    predictions, target: Tensor, turned_target: Tensor | None = None, weights: Tensor | None = None,
    channel_weights: Tensor | None = None, turned_channel_weights: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Heatmap MSE summed over the stacks' ``predictions`` (each ``(B, N, H, W)``), and a ``(B,)``
    mask of the images scored against ``turned_target`` (the targets relabelled by a symmetric
    category's half turn): there each image takes the lower of the two, since the same picture of
    a rectangular table is a view from ``a`` and from ``a + pi`` and a fixed labelling would ask the
    network for both (two blobs per keypoint near side views, where the labelling flips).
    ``weights (B,)``: a weighted mean over the images (0: an image without keypoint labels).
    ``channel_weights (B, N)`` scale each keypoint's squared errors (``turned_channel_weights``: those
    of the turned labelling), e.g. to give a hidden keypoint's low amodal blob a visible one's weight."""
    def per_image(t: Tensor, cw: Tensor | None) -> Tensor:
        def err(p: Tensor) -> Tensor:
            e = (p.float() - t) ** 2
            return (e if cw is None else e * cw[..., None, None]).mean(dim=(1, 2, 3))

        return sum(err(p) for p in predictions)

    def mean(per: Tensor) -> Tensor:
        return per.mean() if weights is None else (per * weights).sum() / weights.sum().clamp_min(1e-6)

    loss = per_image(target, channel_weights)
    if turned_target is None:
        return mean(loss), torch.zeros_like(loss, dtype=torch.bool)
    turned_loss = per_image(turned_target, turned_channel_weights)
    turned = turned_loss < loss
    return mean(torch.where(turned, turned_loss, loss)), turned


def structure_consistency_loss(alpha: Tensor, inv_focal: Tensor, alpha_c: Tensor, inv_focal_c: Tensor, w_alpha: float, w_focal: float) -> Tensor:
    """Eq. (3): ``w_a sum_j |alpha_j - alpha_c|_1 + w_f sum_j |f_j - f_c|_1`` (means over frames and clips).

    ``alpha (V, J, K)``, ``inv_focal (V, J)`` normalised; latents ``alpha_c (V, K)``, ``inv_focal_c (V,)``
    are constants (no gradient reaches them).
    """
    a = (alpha - alpha_c.detach().unsqueeze(1)).abs().sum(-1).mean()
    f = (inv_focal - inv_focal_c.detach().unsqueeze(1)).abs().mean()
    return w_alpha * a + w_focal * f


def motion_smoothness_loss(r6: Tensor, translation: Tensor, w_rotation: float, w_translation: float) -> Tensor:
    """Eq. (4): L1 between neighbouring frames' rotation codes ``(V, J, 6)`` and translations ``(V, J, 2)``."""
    if r6.shape[1] < 2:
        return r6.sum() * 0.0
    r = (r6[:, 1:] - r6[:, :-1]).abs().sum(-1).mean()
    t = (translation[:, 1:] - translation[:, :-1]).abs().sum(-1).mean()
    return w_rotation * r + w_translation * t


def confidence_reprojection_loss(projected: Tensor, peaks: Tensor, confidence: Tensor, w_2d: float) -> Tensor:
    """Eq. (5): ``w_2D sum c_{j,n} |x_{j,n} - x^h_{j,n}|^2``, mean over frames and keypoints.

    ``peaks`` and ``confidence`` come from the (detached) heatmaps; gradients reach ``projected``.
    """
    sq = ((projected - peaks.detach()) ** 2).sum(-1)
    return w_2d * (confidence.detach() * sq).mean()


def range_loss(normalised: Tensor, slices: dict[str, slice], parts: tuple[str, ...] = ("alpha", "inv_focal", "translation")) -> Tensor:
    """L1 distance of normalised parameters ``(..., P)`` outside [0, 1] (the category's sampling
    ranges), summed over the ``parts``' components and averaged over samples; 0 inside the ranges.

    Without it a network step can carry the structure and focal far out of the ranges (inverse
    focal x100, points behind the camera) along directions the 2D losses do not see."""
    x = torch.cat([normalised[..., slices[p]] for p in parts], dim=-1)
    return (torch.relu(-x) + torch.relu(x - 1.0)).sum(-1).mean()


def update_latents(alpha: Tensor, inv_focal: Tensor, use_median: bool) -> tuple[Tensor, Tensor]:
    """The network-fixed minimiser of Eq. (3) per clip: the per-dimension median over frames (the exact
    L1 minimiser), or the mean (the L2 relaxation used early in training). ``alpha (V, J, K)``."""
    with torch.no_grad():
        if use_median:
            # contiguous(): torch's median reads wrong values from stride-0 (expanded) inputs
            return alpha.contiguous().median(dim=1).values, inv_focal.contiguous().median(dim=1).values
        return alpha.mean(dim=1), inv_focal.mean(dim=1)


def hypothesis_loss(hypotheses: Tensor, scores: Tensor, target: Tensor, spread: float = 0.05, score_weight: float = 0.1) -> tuple[Tensor, Tensor]:
    """Relaxed winner-takes-all L1 for several hypotheses (multiple-choice learning).

    ``hypotheses (B, H, P)`` and ``target (B, P)`` normalised parameters, ``scores (B, H)`` logits.
    The closest hypothesis takes the L1 loss, every hypothesis ``spread`` of it (so none is left
    untrained), and the scores learn by cross-entropy which one was closest. Returns (loss, index of
    the closest hypothesis ``(B,)``).
    """
    per = (hypotheses - target.unsqueeze(1)).abs().mean(-1)
    best = per.detach().argmin(dim=1)
    loss = per.min(dim=1).values.mean() + spread * per.mean() + score_weight * torch.nn.functional.cross_entropy(scores, best)
    return loss, best
