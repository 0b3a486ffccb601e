"""Batched image augmentation with consistent keypoint transforms (3D-INN's hourglass recipe):
per-channel colour gain, rotation about the image centre, horizontal flip with left/right keypoint
swap (applied to the keypoints themselves: the released code's ``shuffleLR`` swapped a zero array).

Coordinates are continuous image px (pixel i spans [i, i + 1)), which is exactly
``grid_sample``'s ``align_corners=False`` convention, so image and keypoints move together.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = ["augment_batch", "flip_batch"]


def augment_batch(
    images: Tensor,
    keypoints: Tensor,
    visible: Tensor,
    flip_permutation: tuple[int, ...] | list[int],
    generator: torch.Generator,
    rotation_deg: float = 15.0,
    colour: float = 0.4,
    flip: bool = True,
) -> tuple[Tensor, Tensor, Tensor]:
    """Augment ``images (B, 3, S, S)``, ``keypoints (B, N, 2)`` image px and ``visible (B, N)``."""
    b, _, h, w = images.shape
    if h != w:
        raise ValueError(f"square images expected, got {h}x{w}")
    device, dtype = images.device, images.dtype
    rand = lambda *shape: torch.rand(*shape, generator=generator).to(device=device, dtype=dtype)  # noqa: E731
    if colour > 0:
        images = (images * (1 - colour + 2 * colour * rand(b, 3, 1, 1))).clamp(0, 1)
    angle = (2 * rand(b) - 1) * math.radians(rotation_deg)
    flips = (rand(b) < 0.5) if flip else torch.zeros(b, dtype=torch.bool, device=device)
    sign = torch.where(flips, -torch.ones_like(angle), torch.ones_like(angle))
    cos, sin = torch.cos(angle), torch.sin(angle)
    # forward map on normalised coords: p' = Rot(angle) @ diag(sign, 1) @ p
    forward = torch.stack([torch.stack([cos * sign, -sin], -1), torch.stack([sin * sign, cos], -1)], -2)  # (B, 2, 2)
    inverse = torch.linalg.inv(forward)
    theta = torch.cat([inverse, torch.zeros(b, 2, 1, device=device, dtype=dtype)], dim=2)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    norm = keypoints.to(dtype) * (2.0 / w) - 1.0
    moved = (norm @ forward.transpose(1, 2) + 1.0) * (w / 2.0)
    perm = torch.as_tensor(list(flip_permutation), device=device)
    moved = torch.where(flips[:, None, None], moved[:, perm], moved)
    visible = torch.where(flips[:, None], visible[:, perm], visible)
    inside = (moved >= 0).all(-1) & (moved < w).all(-1)
    return images, moved, visible & inside


def flip_batch(images: Tensor, heatmaps: Tensor | None = None, flip_permutation=None) -> tuple[Tensor, Tensor | None]:
    """Mirror images (and heatmaps, with their channels swapped left/right) horizontally."""
    images = images.flip(-1)
    if heatmaps is not None:
        heatmaps = heatmaps.flip(-1)[:, list(flip_permutation)]
    return images, heatmaps
