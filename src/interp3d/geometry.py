"""Camera geometry of 3D-INN, the one implementation used by synthesis, losses, rendering and evaluation.

Conventions (see README, "Conventions"):

* Points are stored as ``(..., N, 3)`` rows, one keypoint per row.
* Object frame: +y up, the front faces +z.
* Rotation ``R = Rx(theta1) @ Ry(theta2) @ Rz(theta3)``; ``theta3`` (in-plane roll) is 0 by default.
  ``theta1 = pi + elevation`` (the pi turns object-up into image-up) and ``theta2 = azimuth``
  (0 shows the front).
* Camera-frame points ``X = R Y + (t_x, t_y, 0)``; translation has no depth component.
* Perspective projection on a square plane of side ``plane_size`` px:
  ``u = f X_x / (f + X_z) + c``, ``v = f X_y / (f + X_z) + c`` with ``c = plane_size / 2``:
  a pinhole camera at distance ``f`` in front of the object origin with focal length ``f``.
* 2D coordinates are continuous with pixel ``i`` covering ``[i, i + 1)``; changing resolution is a
  pure scale (``uv * new_size / old_size``).
* Rotations as 6 numbers ``r = (sin t1, sin t2, sin t3, cos t1, cos t2, cos t3)``; each (sin, cos)
  pair may be unnormalised (network output) and is normalised before use.

All functions are batched, differentiable, and keep the dtype and device of their inputs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "euler_to_matrix",
    "matrix_to_euler",
    "euler_to_sincos",
    "sincos_to_euler",
    "sincos_to_matrix",
    "view_to_euler",
    "euler_to_view",
    "wrap_angle",
    "structure_from_alpha",
    "to_camera_frame",
    "perspective_project",
    "points_in_front",
    "project_structure",
    "rescale_points",
    "self_occlusion",
    "limb_occlusion",
    "roll_camera",
    "keypoint_radius",
]


def _axis_rotation(cos: Tensor, sin: Tensor, axis: str) -> Tensor:
    one = torch.ones_like(cos)
    zero = torch.zeros_like(cos)
    if axis == "x":
        rows = (one, zero, zero, zero, cos, -sin, zero, sin, cos)
    elif axis == "y":
        rows = (cos, zero, sin, zero, one, zero, -sin, zero, cos)
    elif axis == "z":
        rows = (cos, -sin, zero, sin, cos, zero, zero, zero, one)
    else:  # pragma: no cover - internal
        raise ValueError(axis)
    return torch.stack(rows, dim=-1).reshape(cos.shape + (3, 3))


def _rotation_from_cos_sin(cos: Tensor, sin: Tensor) -> Tensor:
    """``Rx(t1) Ry(t2) Rz(t3)`` from cos/sin tensors of shape ``(..., 3)``."""
    rx = _axis_rotation(cos[..., 0], sin[..., 0], "x")
    ry = _axis_rotation(cos[..., 1], sin[..., 1], "y")
    rz = _axis_rotation(cos[..., 2], sin[..., 2], "z")
    return rx @ ry @ rz


def euler_to_matrix(angles: Tensor) -> Tensor:
    """Rotation matrices ``(..., 3, 3)`` from Euler angles ``(..., 3)`` = (theta1, theta2, theta3)."""
    _check_last_dim(angles, 3, "angles")
    return _rotation_from_cos_sin(torch.cos(angles), torch.sin(angles))


def matrix_to_euler(rotation: Tensor, zero_roll: bool = True) -> Tensor:
    """Euler angles ``(..., 3)`` of ``R = Rx Ry Rz``.

    With ``zero_roll`` (the model's case, theta3 = 0) the decomposition is unique over the full
    azimuth circle: theta2 = atan2(R02, R00), theta1 = atan2(R21, R11). Without it, the general
    decomposition returns theta2 in [-pi/2, pi/2].
    """
    if rotation.shape[-2:] != (3, 3):
        raise ValueError(f"rotation must have shape (..., 3, 3), got {tuple(rotation.shape)}")
    r = rotation
    if zero_roll:
        theta1 = torch.atan2(r[..., 2, 1], r[..., 1, 1])
        theta2 = torch.atan2(r[..., 0, 2], r[..., 0, 0])
        theta3 = torch.zeros_like(theta1)
    else:
        theta2 = torch.asin(r[..., 0, 2].clamp(-1.0, 1.0))
        theta1 = torch.atan2(-r[..., 1, 2], r[..., 2, 2])
        theta3 = torch.atan2(-r[..., 0, 1], r[..., 0, 0])
    return torch.stack((theta1, theta2, theta3), dim=-1)


def euler_to_sincos(angles: Tensor) -> Tensor:
    """The 6-value rotation code ``(sin t1, sin t2, sin t3, cos t1, cos t2, cos t3)``."""
    _check_last_dim(angles, 3, "angles")
    return torch.cat((torch.sin(angles), torch.cos(angles)), dim=-1)


def _normalised_pairs(r6: Tensor, zero_roll: bool, eps: float) -> tuple[Tensor, Tensor]:
    _check_last_dim(r6, 6, "r6")
    sin, cos = r6[..., :3], r6[..., 3:]
    norm = torch.sqrt(sin * sin + cos * cos).clamp_min(eps)
    sin, cos = sin / norm, cos / norm
    if zero_roll:
        sin = torch.cat((sin[..., :2], torch.zeros_like(sin[..., 2:])), dim=-1)
        cos = torch.cat((cos[..., :2], torch.ones_like(cos[..., 2:])), dim=-1)
    return sin, cos


def sincos_to_euler(r6: Tensor, zero_roll: bool = True, eps: float = 1e-8) -> Tensor:
    """Angles from the 6-value code; each (sin, cos) pair may be unnormalised."""
    sin, cos = _normalised_pairs(r6, zero_roll, eps)
    return torch.atan2(sin, cos)


def sincos_to_matrix(r6: Tensor, zero_roll: bool = True, eps: float = 1e-8) -> Tensor:
    """Rotation matrices straight from the 6-value code (no atan2, so gradients stay smooth)."""
    sin, cos = _normalised_pairs(r6, zero_roll, eps)
    return _rotation_from_cos_sin(cos, sin)


def wrap_angle(angle: Tensor, low: float = -math.pi) -> Tensor:
    """Wrap angles into ``[low, low + 2 pi)``."""
    return torch.remainder(angle - low, 2 * math.pi) + low


def view_to_euler(azimuth: Tensor, elevation: Tensor, roll: Tensor | None = None) -> Tensor:
    """Euler angles from viewpoint: theta1 = pi + elevation, theta2 = azimuth, theta3 = roll (0)."""
    azimuth, elevation = torch.broadcast_tensors(torch.as_tensor(azimuth), torch.as_tensor(elevation))
    roll = torch.zeros_like(azimuth) if roll is None else torch.as_tensor(roll).expand_as(azimuth)
    return torch.stack((math.pi + elevation, azimuth, roll), dim=-1)


def euler_to_view(angles: Tensor) -> tuple[Tensor, Tensor]:
    """(azimuth in [0, 2 pi), elevation in [-pi, pi)) from Euler angles."""
    _check_last_dim(angles, 3, "angles")
    azimuth = wrap_angle(angles[..., 1], 0.0)
    elevation = wrap_angle(angles[..., 0] - math.pi)
    return azimuth, elevation


def structure_from_alpha(alpha: Tensor, bases: Tensor) -> Tensor:
    """``Y = sum_k alpha_k S_k``: alpha ``(..., K)`` and bases ``(K, N, 3)`` give ``(..., N, 3)``."""
    if bases.dim() != 3 or bases.shape[-1] != 3:
        raise ValueError(f"bases must have shape (K, N, 3), got {tuple(bases.shape)}")
    if alpha.shape[-1] != bases.shape[0]:
        raise ValueError(f"alpha has {alpha.shape[-1]} coefficients but there are {bases.shape[0]} bases")
    return torch.einsum("...k,knd->...nd", alpha, bases.to(alpha))


def to_camera_frame(points: Tensor, rotation: Tensor, translation: Tensor) -> Tensor:
    """``X = R Y + (t_x, t_y, 0)`` for points ``(..., N, 3)``, R ``(..., 3, 3)``, t ``(..., 2)``."""
    _check_last_dim(translation, 2, "translation")
    t3 = torch.cat((translation, torch.zeros_like(translation[..., :1])), dim=-1)
    return points @ rotation.transpose(-1, -2) + t3.unsqueeze(-2)


def roll_camera(points_cam: Tensor, roll: Tensor) -> Tensor:
    """Camera-frame points ``(..., N, 3)`` after the camera rolls by ``roll (...)`` rad about its optical
    axis: ``Rz(roll) X``. Their projection is the image rotated about the plane centre by ``roll``."""
    c, s = torch.cos(roll).unsqueeze(-1), torch.sin(roll).unsqueeze(-1)
    x, y = points_cam[..., 0], points_cam[..., 1]
    return torch.stack((c * x - s * y, s * x + c * y, points_cam[..., 2]), dim=-1)


def perspective_project(points_cam: Tensor, focal: Tensor, plane_size: float) -> Tensor:
    """``u = f X / (f + Z) + plane_size / 2`` for camera-frame points ``(..., N, 3)``, focal ``(...)``.

    Valid while ``f + Z > 0`` (the point is in front of the camera), which the sampled ranges
    guarantee; callers that accept arbitrary parameters check :func:`points_in_front`.
    """
    f = focal.unsqueeze(-1)
    depth = f + points_cam[..., 2]
    scale = f / depth
    centre = plane_size / 2.0
    return points_cam[..., :2] * scale.unsqueeze(-1) + centre


def points_in_front(points_cam: Tensor, focal: Tensor, margin: float = 1e-3) -> Tensor:
    """Boolean ``(..., N)``: the point lies in front of the camera (``f + Z > margin * f``)."""
    f = focal.unsqueeze(-1)
    return (f + points_cam[..., 2]) > margin * f


def project_structure(
    alpha: Tensor,
    rotation: Tensor,
    translation: Tensor,
    focal: Tensor,
    bases: Tensor,
    plane_size: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """Eq. (1): ``X = P(R sum_k alpha_k S_k + T)``.

    Returns (object-frame structure ``(..., N, 3)``, camera-frame points ``(..., N, 3)``,
    projected plane coordinates ``(..., N, 2)``).
    """
    structure = structure_from_alpha(alpha, bases)
    points_cam = to_camera_frame(structure, rotation, translation)
    return structure, points_cam, perspective_project(points_cam, focal, plane_size)


def rescale_points(xy: Tensor, from_size: float, to_size: float) -> Tensor:
    """Map continuous 2D coordinates between square resolutions (plane -> heatmap, image -> heatmap)."""
    return xy * (float(to_size) / float(from_size))


def self_occlusion(points_cam: Tensor, focal: Tensor, triangles: Tensor, eps: float = 1e-4) -> Tensor:
    """Boolean ``(..., N)``: keypoint n is hidden from the camera by one of the object's own triangles.

    The camera centre is ``(0, 0, -f)`` (see :func:`perspective_project`); a keypoint is hidden when
    the segment from the camera to it crosses a triangle ``(T, 3)`` (keypoint indices, e.g.
    :attr:`interp3d.shape_model.Category.surface_triangles`) strictly before reaching it. Triangles
    that have the keypoint as a corner never hide it. Moller-Trumbore ray/triangle test, batched.
    """
    triangles = torch.as_tensor(triangles, dtype=torch.long, device=points_cam.device)
    n = points_cam.shape[-2]
    if triangles.numel() == 0:
        return torch.zeros(points_cam.shape[:-1], dtype=torch.bool, device=points_cam.device)
    corners = points_cam[..., triangles, :]  # (..., T, 3, 3)
    a, b, c = corners[..., 0, :], corners[..., 1, :], corners[..., 2, :]  # (..., T, 3)
    origin = torch.zeros_like(points_cam[..., 0, :])
    origin[..., 2] = -focal
    direction = points_cam - origin.unsqueeze(-2)  # (..., N, 3)
    d = direction.unsqueeze(-2)  # (..., N, 1, 3)
    e1, e2 = (b - a).unsqueeze(-3), (c - a).unsqueeze(-3)  # (..., 1, T, 3)
    h = torch.linalg.cross(d.expand(e2.shape[:-3] + (n,) + e2.shape[-2:]), e2.expand(d.shape[:-2] + e2.shape[-2:]))
    det = (e1 * h).sum(-1)  # (..., N, T)
    ok = det.abs() > 1e-12
    inv = 1.0 / torch.where(ok, det, torch.ones_like(det))
    s = (origin.unsqueeze(-2) - a).unsqueeze(-3)  # (..., 1, T, 3)
    u = (s * h).sum(-1) * inv
    q = torch.linalg.cross(s.expand_as(h), e1.expand_as(h))
    v = (d * q).sum(-1) * inv
    t = (e2 * q).sum(-1) * inv
    hit = ok & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > eps) & (t < 1 - eps)
    corner = torch.zeros(triangles.shape[0], n, dtype=torch.bool, device=points_cam.device)
    corner[torch.arange(triangles.shape[0], device=points_cam.device).unsqueeze(1), triangles] = True
    hit = hit & ~corner.T  # (N, T)
    return hit.any(-1)


def limb_occlusion(points_cam: Tensor, plane_xy: Tensor, edges: Tensor, radius: Tensor, depth_margin: Tensor | float = 0.0) -> Tensor:
    """Boolean ``(..., N)``: keypoint n is hidden behind a thick skeleton edge (a leg, a frame bar).

    Each edge ``(E, 2)`` (keypoint indices) is a limb of image-space ``radius`` ``(...)`` px; a keypoint
    within that distance of the edge's projected segment ``plane_xy`` is hidden when the edge, at the
    closest point (depth interpolated linearly along it), is nearer the camera than the keypoint by
    more than ``depth_margin``. Edges that end at the keypoint never hide it.
    """
    edges = torch.as_tensor(edges, dtype=torch.long, device=points_cam.device)
    n = points_cam.shape[-2]
    if edges.numel() == 0:
        return torch.zeros(points_cam.shape[:-1], dtype=torch.bool, device=points_cam.device)
    a, b = plane_xy[..., edges[:, 0], :], plane_xy[..., edges[:, 1], :]  # (..., E, 2)
    za, zb = points_cam[..., edges[:, 0], 2], points_cam[..., edges[:, 1], 2]  # (..., E)
    ab = (b - a).unsqueeze(-3)  # (..., 1, E, 2)
    ap = plane_xy.unsqueeze(-2) - a.unsqueeze(-3)  # (..., N, E, 2)
    t = ((ap * ab).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-12)).clamp(0.0, 1.0)  # (..., N, E)
    dist = (ap - t.unsqueeze(-1) * ab).norm(dim=-1)
    depth = za.unsqueeze(-2) + t * (zb - za).unsqueeze(-2)
    margin = torch.as_tensor(depth_margin, dtype=points_cam.dtype, device=points_cam.device)
    radius = torch.as_tensor(radius, dtype=points_cam.dtype, device=points_cam.device)
    margin = margin[..., None, None] if margin.dim() else margin
    hit = (dist < radius[..., None, None]) & (depth < points_cam[..., 2].unsqueeze(-1) - margin)
    incident = torch.zeros(edges.shape[0], n, dtype=torch.bool, device=points_cam.device)
    incident[torch.arange(edges.shape[0], device=points_cam.device).unsqueeze(1), edges] = True
    return (hit & ~incident.T).any(-1)


def keypoint_radius(keypoints: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """(weighted centroid ``(..., 2)``, weighted RMS radius ``(...)``) of 2D keypoints; weight-0 rows may be NaN."""
    w = weights.clamp_min(0)
    xy = torch.nan_to_num(keypoints)
    total = w.sum(-1).clamp_min(1e-9)
    centre = (w.unsqueeze(-1) * xy).sum(-2) / total.unsqueeze(-1)
    radius = torch.sqrt((w * ((xy - centre.unsqueeze(-2)) ** 2).sum(-1)).sum(-1) / total)
    return centre, radius


def _check_last_dim(x: Tensor, size: int, name: str) -> None:
    if x.shape[-1] != size:
        raise ValueError(f"{name} must have last dimension {size}, got shape {tuple(x.shape)}")
