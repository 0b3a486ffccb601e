"""Batched image augmentation with consistent keypoint transforms (3D-INN's hourglass recipe):
per-channel colour gain, rotation about the image centre, horizontal flip with left/right keypoint
swap (applied to the keypoints themselves: the released code's ``shuffleLR`` swapped a zero array).
Optionally (the product recipe) scale and shift jitter, which also truncates objects at the border,
and occluders: a rectangle of another image of the batch pasted over the object, hiding the
keypoints under it.

Coordinates are continuous image px (pixel i spans [i, i + 1)), which is exactly
``grid_sample``'s ``align_corners=False`` convention, so image and keypoints move together.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from ..heatmaps import mirror_heatmaps

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
    scale: float = 0.0,
    shift: float = 0.0,
    occlude: float = 0.0,
    return_flips: bool = False,
) -> tuple[Tensor, Tensor, Tensor] | tuple[Tensor, Tensor, Tensor, Tensor]:
    """Augment ``images (B, 3, S, S)``, ``keypoints (B, N, 2)`` image px and ``visible (B, N)``.

    ``scale``: zoom by a factor in [1 - scale, 1 + scale]; ``shift``: translate by up to that
    fraction of the side; ``occlude``: probability of an occluding rectangle per image.
    ``return_flips`` adds the ``(B,)`` mask of mirrored images (their azimuth changes sign)."""
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
    zoom = 1.0 + scale * (2 * rand(b) - 1) if scale > 0 else torch.ones_like(angle)
    offset = shift * 2.0 * (2 * rand(b, 2) - 1) if shift > 0 else torch.zeros(b, 2, device=device, dtype=dtype)
    cos, sin = torch.cos(angle) * zoom, torch.sin(angle) * zoom
    # forward map on normalised coords: p' = zoom Rot(angle) @ diag(sign, 1) @ p + offset
    forward = torch.stack([torch.stack([cos * sign, -sin], -1), torch.stack([sin * sign, cos], -1)], -2)  # (B, 2, 2)
    inverse = torch.linalg.inv(forward)
    theta = torch.cat([inverse, -(inverse @ offset.unsqueeze(-1))], dim=2)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    norm = keypoints.to(dtype) * (2.0 / w) - 1.0
    moved = (norm @ forward.transpose(1, 2) + offset.unsqueeze(1) + 1.0) * (w / 2.0)
    perm = torch.as_tensor(list(flip_permutation), device=device)
    moved = torch.where(flips[:, None, None], moved[:, perm], moved)
    visible = torch.where(flips[:, None], visible[:, perm], visible)
    inside = (moved >= 0).all(-1) & (moved < w).all(-1)
    visible = visible & inside
    if occlude > 0 and b > 1:
        images, visible = _occlude(images, moved, visible, occlude, rand)
    return (images, moved, visible, flips) if return_flips else (images, moved, visible)


def _occlude(images: Tensor, keypoints: Tensor, visible: Tensor, probability: float, rand) -> tuple[Tensor, Tensor]:
    """Paste a rectangle (15-45 % of the side, centred near the object's keypoints) cut from the
    next image of the batch; keypoints under it become invisible."""
    b, _, h, w = images.shape
    hit = rand(b) < probability
    size = (0.15 + 0.3 * rand(b, 2)) * w  # (B, 2) width, height
    anchor = keypoints[torch.arange(b), (rand(b) * keypoints.shape[1]).long().clamp_max(keypoints.shape[1] - 1)]
    centre = anchor + (rand(b, 2) - 0.5) * size
    lo, hi = centre - size / 2, centre + size / 2
    xs = torch.arange(w, device=images.device, dtype=images.dtype) + 0.5
    ys = torch.arange(h, device=images.device, dtype=images.dtype) + 0.5
    inside_x = (xs >= lo[:, :1]) & (xs < hi[:, :1])  # (B, W)
    inside_y = (ys >= lo[:, 1:]) & (ys < hi[:, 1:])  # (B, H)
    mask = (inside_y.unsqueeze(-1) & inside_x.unsqueeze(-2) & hit[:, None, None]).unsqueeze(1)  # (B, 1, H, W)
    images = torch.where(mask, images.roll(1, dims=0), images)
    centres = keypoints.floor() + 0.5  # a keypoint is hidden when its pixel is
    covered = ((centres >= lo.unsqueeze(1)) & (centres < hi.unsqueeze(1))).all(-1) & hit[:, None]
    return images, visible & ~covered


def flip_batch(images: Tensor, heatmaps: Tensor | None = None, flip_permutation=None) -> tuple[Tensor, Tensor | None]:
    """Mirror images (and heatmaps, with their channels swapped left/right) horizontally."""
    images = images.flip(-1)
    if heatmaps is not None:
        heatmaps = mirror_heatmaps(heatmaps, flip_permutation)
    return images, heatmaps
