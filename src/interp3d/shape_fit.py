"""Fit a category's shape model to 3D keypoints: alpha plus a similarity transform.

Model: ``P ~ s R (S_1 + sum_{k>=2} a_k S_k) + t`` with relative deformation coefficients ``a_k``
(so ``alpha = s * (1, a_2, ..., a_K)``). The fit alternates a similarity Procrustes step
(Umeyama) and a bounded linear least-squares step for ``a`` (``scipy.optimize.lsq_linear``); each
step cannot increase the residual. Used to measure how well the 3D-INN bases span real shapes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares, lsq_linear
from scipy.spatial.transform import Rotation

from .shape_model import Category, get_category

__all__ = ["ShapeFit", "fit_shape", "similarity_procrustes", "rms_radius"]


@dataclass
class ShapeFit:
    alpha: np.ndarray  # (K,) absolute coefficients, alpha_1 = s
    rotation: np.ndarray  # (3, 3)
    translation: np.ndarray  # (3,)
    fitted: np.ndarray  # (N, 3) model keypoints in the target's frame
    rms: float  # RMS distance over present keypoints, target units
    normalised_rms: float  # rms / RMS radius of the target keypoints
    per_keypoint: np.ndarray  # (N,) distance, NaN where absent
    iterations: int


def rms_radius(points: np.ndarray, present: np.ndarray | None = None) -> float:
    """RMS distance of the (present) points to their centroid: the object-size normaliser."""
    p = points if present is None else points[present]
    return float(np.sqrt(((p - p.mean(axis=0)) ** 2).sum(axis=1).mean()))


def similarity_procrustes(source: np.ndarray, target: np.ndarray, allow_scale: bool = True, allow_rotation: bool = True):
    """(s, R, t) minimising ``sum |s R source_i + t - target_i|^2`` (Umeyama 1991), R a proper rotation."""
    mu_s, mu_t = source.mean(axis=0), target.mean(axis=0)
    xs, xt = source - mu_s, target - mu_t
    if allow_rotation:
        u, d, vt = np.linalg.svd(xt.T @ xs)
        sign = np.ones(3)
        sign[2] = np.sign(np.linalg.det(u @ vt)) or 1.0
        rotation = u @ np.diag(sign) @ vt
        trace = float((d * sign).sum())
    else:
        rotation = np.eye(3)
        trace = float((xt * xs).sum())
    var = float((xs**2).sum())
    scale = trace / var if (allow_scale and var > 0) else 1.0
    translation = mu_t - scale * rotation @ mu_s
    return scale, rotation, translation


def fit_shape(
    points: np.ndarray,
    category: Category | str,
    present: np.ndarray | None = None,
    bounded: bool = False,
    use_deformations: bool = True,
    allow_rotation: bool = True,
    iterations: int = 30,
    tol: float = 1e-12,
) -> ShapeFit:
    """Fit the shape model to target keypoints ``points`` (N, 3) in dataset order.

    ``present`` masks missing keypoints; ``bounded`` keeps ``a_k`` inside the category's sampling
    ranges; ``use_deformations=False`` fits the mean shape alone (a baseline).
    """
    category = get_category(category)
    points = np.asarray(points, dtype=np.float64)
    n = category.num_keypoints
    if points.shape != (n, 3):
        raise ValueError(f"{category.name}: expected ({n}, 3) keypoints, got {points.shape}")
    present = np.isfinite(points).all(axis=1) if present is None else np.asarray(present, bool) & np.isfinite(points).all(axis=1)
    if present.sum() < 4:
        raise ValueError(f"{category.name}: at least 4 present keypoints are needed to fit, got {int(present.sum())}")
    bases = category.bases_array
    mean, deform = bases[0][present], bases[1:, present]  # (M,3), (K-1,M,3)
    target = points[present]
    k1 = deform.shape[0]
    a = np.zeros(k1)
    if bounded:
        lo = np.array([r[0] for r in category.ranges.alpha])
        hi = np.array([r[1] for r in category.ranges.alpha])
        a = np.clip(a, lo, hi)
    else:
        lo, hi = -np.inf, np.inf
    design = deform.reshape(k1, -1).T  # (3M, K-1)

    prev = np.inf
    for it in range(1, iterations + 1):
        shape = mean + np.tensordot(a, deform, axes=1) if k1 else mean
        s, rot, t = similarity_procrustes(shape, target, allow_rotation=allow_rotation)
        if use_deformations and k1:
            # Residual in the model frame: (R^T (P - t)) / s - S_1 = sum a_k S_k.
            local = ((target - t) @ rot) / s - mean
            a = lsq_linear(design, local.reshape(-1), bounds=(lo, hi)).x if bounded else np.linalg.lstsq(design, local.reshape(-1), rcond=None)[0]
        shape = mean + np.tensordot(a, deform, axes=1) if k1 else mean
        s, rot, t = similarity_procrustes(shape, target, allow_rotation=allow_rotation)
        err = float((((s * shape @ rot.T + t) - target) ** 2).sum())
        if prev - err <= tol * err:
            break
        prev = err

    if use_deformations and k1:
        a, s, rot, t = _refine(a, s, rot, t, mean, deform, target, lo, hi, allow_rotation)

    full_shape = bases[0] + np.tensordot(a, bases[1:], axes=1) if k1 else bases[0]
    fitted = s * full_shape @ rot.T + t
    dist = np.linalg.norm(fitted - points, axis=1)
    dist[~present] = np.nan
    rms = float(np.sqrt(np.nanmean(dist**2)))
    return ShapeFit(
        alpha=s * np.concatenate(([1.0], a)),
        rotation=rot,
        translation=t,
        fitted=fitted,
        rms=rms,
        normalised_rms=rms / rms_radius(points, present),
        per_keypoint=dist,
        iterations=it,
    )


def _refine(a, s, rot, t, mean, deform, target, lo, hi, allow_rotation):
    """Joint Gauss-Newton refinement of (a, log s, rotation vector, t) from the alternating solution."""
    k1 = len(a)

    def unpack(x):
        delta = Rotation.from_rotvec(x[k1 + 1 : k1 + 4]).as_matrix() if allow_rotation else np.eye(3)
        return x[:k1], np.exp(x[k1]), delta @ rot, x[k1 + 4 :]

    def residual(x):
        a_, s_, r_, t_ = unpack(x)
        return ((s_ * (mean + np.tensordot(a_, deform, axes=1)) @ r_.T + t_) - target).ravel()

    x0 = np.concatenate((a, [np.log(s)], np.zeros(3), t))
    lower = np.concatenate((np.broadcast_to(lo, (k1,)), np.full(7, -np.inf)))
    upper = np.concatenate((np.broadcast_to(hi, (k1,)), np.full(7, np.inf)))
    x0 = np.clip(x0, lower, upper)
    sol = least_squares(residual, x0, bounds=(lower, upper), xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=200)
    if (sol.fun**2).sum() > (residual(x0) ** 2).sum():  # keep the better of the two
        sol.x = x0
    return unpack(sol.x)
