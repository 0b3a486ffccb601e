"""The 2D-to-3D module: flattened keypoint heatmaps -> normalised structure and camera parameters.

Four fully connected layers (paper: 2048, 512, 128, |S|) with ReLU and optional dropout; the
output is the normalised K+9 parameter vector of :class:`interp3d.params.ParamCodec`.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import geometry

__all__ = ["Lifter", "KeypointLifter"]


class Lifter(nn.Module):
    def __init__(self, num_keypoints: int, heatmap_size: int, num_params: int, widths: tuple[int, ...] = (2048, 512, 128), dropout: float = 0.0):
        super().__init__()
        self.in_features = num_keypoints * heatmap_size * heatmap_size
        layers: list[nn.Module] = []
        prev = self.in_features
        for width in widths:
            layers += [nn.Linear(prev, width), nn.ReLU(inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            prev = width
        layers.append(nn.Linear(prev, num_params))
        self.net = nn.Sequential(*layers)

    def forward(self, heatmaps: Tensor) -> Tensor:
        flat = heatmaps.flatten(1)
        if flat.shape[1] != self.in_features:
            raise ValueError(f"lifter expects {self.in_features} heatmap values per sample, got {flat.shape[1]}")
        return self.net(flat)


class _Residual(nn.Module):
    def __init__(self, width: int, dropout: float):
        super().__init__()
        self.block = nn.Sequential(
            nn.Linear(width, width), nn.LayerNorm(width), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(width, width), nn.LayerNorm(width), nn.ReLU(inplace=True), nn.Dropout(dropout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.block(x)


class KeypointLifter(nn.Module):
    """The 2D-to-3D module for real inputs: 2D keypoints and their confidences -> several hypotheses.

    Input: keypoints ``(B, N, 2)`` on the projection plane and weights ``(B, N)`` in [0, 1]
    (0 = missing; missing coordinates may be NaN). The keypoints are scaled about the plane centre
    so that the present ones have a fixed RMS radius: scaling the plane is exactly scaling alpha,
    t and f together (Eq. 1), so the module predicts in that normalised frame and the result is
    scaled back, which makes it independent of the object's size in the image. Each keypoint enters
    as (x, y, weight), the coordinates zeroed where missing, so an absent keypoint is told from a
    faint one. A residual MLP (Martinez et al. 2017 style) outputs ``hypotheses`` normalised
    parameter vectors (:class:`interp3d.params.ParamCodec`, plane frame) and a score for each:
    2D keypoints leave front/back and left/right ambiguities that one answer would average over.
    """

    RADIUS_FRACTION = 0.25  # normalised RMS radius of the present keypoints, in plane sides
    MIN_RADIUS_FRACTION = 0.05  # radii below this share of it are taken as it (a blob, not an object)

    def __init__(self, category, width: int = 512, blocks: int = 2, hypotheses: int = 3, dropout: float = 0.1):
        super().__init__()
        from ..params import ParamCodec
        from ..shape_model import get_category

        self.category = get_category(category)
        self.codec = ParamCodec(self.category)
        self.hypotheses = hypotheses
        n, p = self.category.num_keypoints, self.category.num_params
        self.inp = nn.Sequential(nn.Linear(3 * n, width), nn.LayerNorm(width), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(*[_Residual(width, dropout) for _ in range(blocks)])
        self.out = nn.Linear(width, hypotheses * (p + 1))
        k = self.category.num_bases
        # per-component power of the plane scale in the raw parameter vector: alpha ~ s, 1/f ~ 1/s, r6 ~ 1, t ~ s
        power = torch.zeros(p)
        power[:k] = 1.0
        power[k] = -1.0
        power[k + 7 :] = 1.0
        self.register_buffer("scale_power", power, persistent=False)
        self.register_buffer("codec_low", self.codec._low.float(), persistent=False)
        self.register_buffer("codec_span", self.codec._span.float(), persistent=False)

    def normalising_scale(self, keypoints: Tensor, weights: Tensor) -> Tensor:
        """``(B,)`` factor that brings the present keypoints to the fixed RMS radius about the plane
        centre; 1 where fewer than 2 are present (no radius: without the guard, the object came out
        hundreds of times too small), and at most ``1 / MIN_RADIUS_FRACTION`` of that radius."""
        present = (weights > 0).to(keypoints.dtype)
        _, radius = geometry.keypoint_radius(keypoints, present)
        target = self.RADIUS_FRACTION * self.category.plane_size
        scale = target / radius.clamp_min(self.MIN_RADIUS_FRACTION * target)
        return torch.where(present.sum(-1) >= 2, scale, torch.ones_like(scale))

    @staticmethod
    def best(hypotheses: Tensor, scores: Tensor) -> Tensor:
        """The top-scored hypothesis ``(B, P)`` of ``hypotheses (B, H, P)``."""
        index = scores.argmax(-1)[:, None, None].expand(-1, 1, hypotheses.shape[-1])
        return hypotheses.gather(1, index).squeeze(1)  # (gather, not arange(B) indexing: keeps the batch dynamic in export)

    def to_frame(self, raw: Tensor, scale: Tensor) -> Tensor:
        """Raw parameter vectors ``(..., P)`` of the plane frame -> the frame scaled by ``scale`` ``(B,)``."""
        s = scale.reshape(scale.shape + (1,) * (raw.dim() - scale.dim()))
        return raw * s ** self.scale_power

    def forward(self, keypoints: Tensor, weights: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(hypotheses ``(B, H, P)`` normalised plane-frame parameters, scores ``(B, H)`` logits,
        hypotheses in the normalised frame ``(B, H, P)``, the training target's space)."""
        if keypoints.dim() != 3 or keypoints.shape[1:] != (self.category.num_keypoints, 2) or weights.shape[1:] != keypoints.shape[1:2]:
            raise ValueError(f"{self.category.name}: keypoint lifter expects keypoints (B, {self.category.num_keypoints}, 2) and weights (B, {self.category.num_keypoints}), got {tuple(keypoints.shape)} and {tuple(weights.shape)}")
        weights = torch.where(torch.isfinite(keypoints).all(-1), weights.clamp(0, 1), torch.zeros_like(weights))
        keypoints = torch.where(weights.unsqueeze(-1) > 0, keypoints, torch.full_like(keypoints, self.category.plane_size / 2.0))
        scale = self.normalising_scale(keypoints, weights)
        centre = self.category.plane_size / 2.0
        xy = (keypoints - centre) * (scale / (self.RADIUS_FRACTION * self.category.plane_size)).view(-1, 1, 1)
        xy = xy * (weights > 0).to(xy.dtype).unsqueeze(-1)
        features = torch.cat((xy, weights.unsqueeze(-1)), dim=-1).flatten(1)
        out = self.out(self.blocks(self.inp(features))).view(keypoints.shape[0], self.hypotheses, -1)
        normalised_frame, scores = out[..., :-1], out[..., -1]
        raw_frame = normalised_frame * self.codec_span + self.codec_low
        raw_plane = self.to_frame(raw_frame, 1.0 / scale)
        return (raw_plane - self.codec_low) / self.codec_span, scores, normalised_frame
