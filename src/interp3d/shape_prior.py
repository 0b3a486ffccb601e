"""A statistical prior over a category's structure and camera, for lifting and test-time refinement.

The shape part is a Gaussian over the *relative* deformation coefficients
``a = (alpha_2, ..., alpha_K) / alpha_1`` (scale-free, so it applies at any object size). It comes
either from the category's synthetic sampling ranges (a uniform box's mean and variance) or from
real shapes: 3D keypoints of real objects fitted with the category's basis
(:func:`interp3d.shape_fit.fit_shape`), see :func:`interp3d.data.lifting.real_shape_bank`.
A prior from real shapes can also carry **residual bases**: the principal components of what the
category basis cannot express in those shapes (after each shape's basis fit, at unit scale), with
their standard deviations, so refinement can add that detail where the 2D keypoints support it.
The camera part is a Gaussian over ``log(f / alpha_1)`` (how strong the perspective is) and over
the elevation, both from the sampling ranges: 2D keypoints alone pin them down only weakly.

A prior is plain data (``to_dict``/``from_dict``) and travels in exported model headers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from .shape_model import Category, get_category

__all__ = ["ShapePrior"]

_UNIFORM_SD = 1.0 / math.sqrt(12.0)  # standard deviation of U(0, 1)


@dataclass(frozen=True)
class ShapePrior:
    category: str
    mean: np.ndarray  # (K-1,) relative coefficients
    covariance: np.ndarray  # (K-1, K-1)
    log_focal_ratio: tuple[float, float]  # mean, sd of log(f / alpha_1)
    elevation: tuple[float, float]  # mean, sd in radians
    source: str = "ranges"
    residual_bases: np.ndarray | None = None  # (R, N, 3) orthonormal directions, unit-scale model frame
    residual_sd: np.ndarray | None = None  # (R,)

    def __post_init__(self):
        k1 = get_category(self.category).num_bases - 1
        mean, cov = np.asarray(self.mean, np.float64), np.asarray(self.covariance, np.float64)
        if mean.shape != (k1,) or cov.shape != (k1, k1):
            raise ValueError(f"{self.category}: shape prior needs a ({k1},) mean and ({k1}, {k1}) covariance, got {mean.shape}, {cov.shape}")
        if not (np.isfinite(mean).all() and np.isfinite(cov).all()):
            raise ValueError(f"{self.category}: shape prior has non-finite values")
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "covariance", cov)
        if (self.residual_bases is None) != (self.residual_sd is None):
            raise ValueError(f"{self.category}: residual bases and their standard deviations come together")
        if self.residual_bases is not None:
            n = get_category(self.category).num_keypoints
            bases, sd = np.asarray(self.residual_bases, np.float64), np.asarray(self.residual_sd, np.float64)
            if bases.ndim != 3 or bases.shape[1:] != (n, 3) or sd.shape != (bases.shape[0],) or not (sd > 0).all():
                raise ValueError(f"{self.category}: residual bases must be (R, {n}, 3) with R positive standard deviations")
            object.__setattr__(self, "residual_bases", bases)
            object.__setattr__(self, "residual_sd", sd)

    @property
    def num_residual(self) -> int:
        return 0 if self.residual_bases is None else int(self.residual_bases.shape[0])

    # -- construction --------------------------------------------------------------------------
    @classmethod
    def from_ranges(cls, category: Category | str) -> "ShapePrior":
        """Moments of the category's uniform sampling box (what the synthetic skeletons follow)."""
        category = get_category(category)
        r = category.ranges
        lo = np.array([a[0] for a in r.alpha], np.float64)
        hi = np.array([a[1] for a in r.alpha], np.float64)
        sd = np.maximum((hi - lo) * _UNIFORM_SD, 1e-3)
        return cls(category.name, (lo + hi) / 2, np.diag(sd**2), *_camera_moments(category), "ranges")

    @classmethod
    def from_relative_alpha(cls, category: Category | str, relative_alpha: np.ndarray, weights: np.ndarray | None = None, source: str = "shapes", shrink: float = 0.05) -> "ShapePrior":
        """Gaussian fitted to relative coefficients ``(M, K-1)`` of real shapes (optionally weighted).

        ``shrink`` blends the covariance toward its diagonal (Ledoit-Wolf style) so that a small set
        of shapes still gives a well-conditioned prior.
        """
        category = get_category(category)
        a = np.asarray(relative_alpha, np.float64)
        if a.ndim != 2 or a.shape[1] != category.num_bases - 1 or len(a) < 2:
            raise ValueError(f"{category.name}: need at least 2 rows of {category.num_bases - 1} relative coefficients, got {a.shape}")
        w = np.ones(len(a)) if weights is None else np.asarray(weights, np.float64)
        w = w / w.sum()
        mean = (w[:, None] * a).sum(0)
        centred = a - mean
        cov = (w[:, None, None] * centred[:, :, None] * centred[:, None, :]).sum(0)
        cov = (1 - shrink) * cov + shrink * np.diag(np.diag(cov))
        cov = cov + 1e-6 * np.eye(len(mean))
        focal, elevation = _camera_moments(category)
        return cls(category.name, mean, cov, focal, elevation, source)

    def with_residuals(self, residuals: np.ndarray, components: int, weights: np.ndarray | None = None) -> "ShapePrior":
        """This prior plus the first ``components`` principal directions of ``residuals (M, N, 3)``
        (real shapes minus their basis fits, unit scale; rows with NaN are skipped)."""
        res = np.asarray(residuals, np.float64)
        ok = np.isfinite(res).all(axis=(1, 2))
        if components <= 0 or ok.sum() <= components:
            return self
        w = np.ones(len(res)) if weights is None else np.asarray(weights, np.float64)
        w = w[ok] / w[ok].sum()
        flat = res[ok].reshape(ok.sum(), -1) * np.sqrt(w)[:, None]  # weighted second moment (residuals have ~0 mean)
        _, sv, vt = np.linalg.svd(flat, full_matrices=False)
        n = res.shape[1]
        return replace(self, residual_bases=vt[:components].reshape(components, n, 3), residual_sd=np.maximum(sv[:components], 1e-4), source=self.source + f" + {components} residual bases")

    @classmethod
    def mixture(cls, components: "list[ShapePrior]", weights) -> "ShapePrior":
        """The Gaussian with the moments of a mixture of priors of one category (weights normalised):
        e.g. the population a lifter trained on, a share of real shapes and the rest from the ranges.
        Residual bases come from the one component that has them (at most one may), their
        standard deviations scaled by the square root of its weight (the others have no residual)."""
        w = np.asarray(weights, np.float64)
        if len(components) == 0 or w.shape != (len(components),) or (w < 0).any() or w.sum() <= 0:
            raise ValueError(f"need one non-negative weight per prior, not all 0; got {list(w)} for {len(components)} priors")
        if len({p.category for p in components}) != 1:
            raise ValueError(f"a mixture of priors of one category only, got {sorted({p.category for p in components})}")
        with_residual = [i for i, p in enumerate(components) if p.residual_bases is not None]
        if len(with_residual) > 1:
            raise ValueError("at most one component of a mixture may have residual bases")
        w = w / w.sum()
        mean = sum(wi * p.mean for wi, p in zip(w, components))
        covariance = sum(wi * (p.covariance + np.outer(p.mean - mean, p.mean - mean)) for wi, p in zip(w, components))
        first = components[0]
        source = " + ".join(f"{wi:.2f} x ({p.source})" for wi, p in zip(w, components))
        out = cls(first.category, mean, covariance, first.log_focal_ratio, first.elevation, source)
        if with_residual and w[with_residual[0]] > 0:
            r = components[with_residual[0]]
            out = replace(out, residual_bases=r.residual_bases, residual_sd=r.residual_sd * np.sqrt(w[with_residual[0]]))
        return out

    # -- use -----------------------------------------------------------------------------------
    def whitening(self, dtype=torch.float64, device=None) -> tuple[Tensor, Tensor]:
        """(mean (K-1,), W (K-1, K-1)) with ``|W (a - mean)|^2`` the Mahalanobis distance."""
        chol = np.linalg.cholesky(self.covariance)
        w = np.linalg.inv(chol)
        return torch.as_tensor(self.mean, dtype=dtype, device=device), torch.as_tensor(w, dtype=dtype, device=device)

    def mahalanobis(self, relative_alpha: Tensor) -> Tensor:
        """Squared Mahalanobis distance ``(...)`` of relative coefficients ``(..., K-1)``."""
        mean, w = self.whitening(relative_alpha.dtype, relative_alpha.device)
        return (((relative_alpha - mean) @ w.T) ** 2).sum(-1)

    def mean_alpha(self, scale: float | Tensor = 1.0) -> Tensor:
        """Absolute coefficients ``(K,)`` of the prior's mean shape at ``scale``."""
        rel = torch.as_tensor(self.mean, dtype=torch.float64)
        return torch.as_tensor(scale, dtype=torch.float64) * torch.cat((torch.ones(1, dtype=torch.float64), rel))

    def to_dict(self) -> dict:
        return {
            "category": self.category,
            "mean": [float(v) for v in self.mean],
            "covariance": [[float(v) for v in row] for row in self.covariance],
            "log_focal_ratio": list(self.log_focal_ratio),
            "elevation": list(self.elevation),
            "source": self.source,
            **({} if self.residual_bases is None else {"residual_bases": self.residual_bases.round(6).tolist(), "residual_sd": self.residual_sd.tolist()}),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "ShapePrior":
        try:
            return cls(
                str(data["category"]), np.asarray(data["mean"], np.float64), np.asarray(data["covariance"], np.float64),
                tuple(map(float, data["log_focal_ratio"])), tuple(map(float, data["elevation"])), str(data.get("source", "")),
                None if "residual_bases" not in data else np.asarray(data["residual_bases"], np.float64),
                None if "residual_sd" not in data else np.asarray(data["residual_sd"], np.float64),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a shape prior ({exc}): {data!r}"[:300]) from exc


def _camera_moments(category: Category) -> tuple[tuple[float, float], tuple[float, float]]:
    r = category.ranges
    # log f - log s for f ~ U(focal), s ~ U(scale): moments of a difference of two log-uniforms,
    # approximated by the log of the ranges' ends (the spread is what matters).
    lf = (math.log(r.focal[0]), math.log(r.focal[1]))
    ls = (math.log(r.scale[0]), math.log(r.scale[1]))
    mean = (sum(lf) - sum(ls)) / 2
    sd = math.sqrt(((lf[1] - lf[0]) ** 2 + (ls[1] - ls[0]) ** 2) / 12.0)
    el_mean = (r.elevation[0] + r.elevation[1]) / 2
    el_sd = max((r.elevation[1] - r.elevation[0]) * _UNIFORM_SD, math.radians(5.0)) * 2.0  # widened: real views stray further
    return (mean, max(sd, 0.1)), (el_mean, el_sd)
