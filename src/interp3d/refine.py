"""Test-time refinement: fit structure and camera S = {alpha, R, t, f} to observed 2D keypoints.

A batched, differentiable Levenberg-Marquardt fit of the category's shape model (Eq. 1, through
:func:`interp3d.geometry.project_structure`) to keypoints on the projection plane, for a whole batch
of objects and several starting hypotheses per object at once (no per-object Python loop):

* **unknowns** per start: relative deformations ``a = alpha_2..K / alpha_1``, the coefficients
  ``b`` of the prior's residual bases (shape detail the category basis lacks, learned from real
  shapes; none for a prior from the ranges), ``log alpha_1``, azimuth, elevation, ``t_x, t_y``,
  ``log f`` and an in-plane camera roll (the model itself has none; photos are rarely level);
* **data term**: confidence-weighted Cauchy (robust) loss of the 2D residuals, scaled by the
  observed keypoints' RMS radius so it does not depend on image size; missing keypoints weigh 0;
* **priors** (:class:`interp3d.shape_prior.ShapePrior`): Mahalanobis distance of ``a``, Gaussian
  ``b``, Gaussian on ``log(f / alpha_1)``, on the elevation and on the roll;
* **starts**: the given hypotheses (e.g. the 2D-to-3D module's) plus, for the first one, the
  front/back and left/right flips that 2D keypoints cannot tell apart, and optionally a grid of
  azimuths with the prior's mean shape; scale and translation of every start are first aligned to
  the observations;
* **the image's azimuth belief** (optional: a viewpoint head's bin probabilities,
  :mod:`interp3d.viewpoint`): its most probable bins become extra starts, each start near one of
  its modes gets a Gaussian azimuth prior around that mode, and selection adds its negative log
  probability of the fitted azimuth. Keypoints of a left/right-symmetric object barely tell a
  front from a back view; the image does;
* **selection**: the lowest final cost, plus a penalty for each observed keypoint that the fitted
  pose hides behind the object's own surfaces (:func:`interp3d.geometry.self_occlusion`), since
  annotators and detectors do not report keypoints they cannot see, and for a fit collapsed to under
  half the observed keypoints' spread (``collapse_penalty``: with faint peaks, every keypoint a
  cheap outlier of a tiny skeleton is otherwise a low cost). Every start takes a few steps,
  then only each object's most promising starts go on (most of the work, at a fraction of the cost);
* **a refit at other modes** (optional, ``mode_refit``): a 2D module's wrong keypoint often has a
  second heatmap mode at the right place; a second fit starts from the first's answer with each
  keypoint that the first fit put far from its peak moved to the mode nearest the fit's projection.

Each LM step solves the damped normal equations of the iteratively reweighted (IRLS) problem, whose
gradient is the Cauchy cost's; a step is kept only where it lowers the cost, so the cost never rises.
The Jacobian is analytic (4x faster than ``torch.func.jacfwd`` under ``vmap``; the tests compare the two).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from . import geometry, viewpoint
from .params import ShapeCamera
from .shape_model import Category, get_category
from .shape_prior import ShapePrior

__all__ = ["RefineOptions", "RefineResult", "refine", "pack_parameters", "unpack_parameters"]


@dataclass(frozen=True)
class RefineOptions:
    iterations: int = 20  # LM steps in all, the exploration steps included
    explore_iterations: int = 5  # steps every start takes before all but the best ``keep_starts`` of an object are dropped
    keep_starts: int = 2
    robust_scale: float = 0.08  # Cauchy scale as a fraction of the observed keypoints' RMS radius
    shape_weight: float = 1.0  # multiplies the Mahalanobis distance of the shape prior
    focal_weight: float = 1.0
    elevation_weight: float = 1.0
    occlusion_penalty: float = 0.5  # selection only: cost per observed keypoint the fit hides
    # selection only: a fit whose projected keypoints' RMS radius is under half the observed ones' is
    # a collapse (a tiny skeleton with a tiny focal, every keypoint a cheap Cauchy outlier; faint real
    # photos' peaks invite it); it costs this much per unit of observed weight per e-fold below half
    collapse_penalty: float = 10.0
    flips: bool = True  # add the front/back and left/right flips of the first hypothesis
    azimuth_grid: int = 0  # extra starts at this many evenly spaced azimuths (prior mean shape)
    damping: float = 1e-3  # initial LM damping (relative to the diagonal)
    precision: str = "float32"  # or "float64": float32 is 2.7x faster on CPU and moves poses by < 0.01 deg (measured)
    anchor: float = 0.5  # 0..1: move each start's shape-prior mean from the population mean toward its own shape (the network's estimate)
    anchor_scale: float = 1.0  # the anchored prior's standard deviations, as a multiple of the population's
    roll_sd_deg: float = 0.0  # prior sd (deg) of an in-plane camera roll (photos are not level); 0 = no roll. benchmarks/lifting.py: roll helps structure, costs azimuth
    # with the 2D module's azimuth probabilities (refine(view_log_probs=...)): selection adds
    # view_weight * -log p(fitted azimuth), and the view_starts most probable bins become extra starts
    view_weight: float = 2.0
    view_starts: int = 4
    # ... and the azimuth of each start within view_capture_deg of one of the belief's modes gets a
    # Gaussian prior (view_sd_deg) around that mode (view_sd_deg = 0: selection and starts only)
    view_sd_deg: float = 10.0
    view_capture_deg: float = 45.0
    # ... and ``anchor`` becomes this: the lifter's shape came with its pose, which the image may
    # overrule. How far to trust it depends on the model (product test3d, structure AR for 0 / 0.5 / 1:
    # sofa 48.0 / 60.8 / 61.9, swivel chair 52.7 / 50.9 / 42.3), so exported models carry their own,
    # calibrated on a validation world (evaluation.calibrate_fit, info["refine_options"])
    view_shape_anchor: float = 0.0
    # a second fit from the first's answer, each observed keypoint moved to whichever of its
    # heatmap's other modes (refine(alternatives=...)) lies nearer the first fit's projection, where
    # the first fit puts it more than mode_distance (fraction of the plane side) from its peak
    # (val3d structure AR: swivel chair +1.2, chair +0.3 over a second fit without the move)
    mode_refit: bool = False
    mode_distance: float = 0.05
    mode_min_fraction: float = 0.3  # a mode counts from this fraction of the keypoint's peak value


@dataclass
class RefineResult:
    params: ShapeCamera  # (B,) the selected fit (category basis and camera)
    structure: Tensor  # (B, N, 3) its structure, object frame, residual bases included
    residual: Tensor  # (B, R) coefficients of the prior's residual bases (R may be 0)
    roll: Tensor  # (B,) in-plane camera roll, radians (0 with roll_sd_deg = 0)
    cost: Tensor  # (B,) its selection cost
    costs: Tensor  # (B, H') selection costs of the starts run to the end (H' = keep_starts when starts were pruned)
    chosen: Tensor  # (B,) index of the selected start
    reprojection_rms: Tensor  # (B,) weighted RMS 2D residual of the selected fit, plane px


def pack_parameters(params: ShapeCamera, residual: Tensor | int = 0) -> Tensor:
    """``(..., K+R+7)``: [a_2..a_K, b_1..b_R, log alpha_1, azimuth, elevation, t_x, t_y, log f, roll];
    ``residual``: the coefficients ``b (..., R)``, or R (zeros); the camera roll starts at 0."""
    scale = params.alpha[..., :1].clamp_min(1e-6)
    az, el = params.view()
    if isinstance(residual, int):
        residual = params.alpha.new_zeros(params.alpha.shape[:-1] + (residual,))
    roll = params.alpha.new_zeros(params.alpha.shape[:-1])
    return torch.cat((params.alpha[..., 1:] / scale, residual, scale.log(), az.unsqueeze(-1), el.unsqueeze(-1), params.translation, params.focal.clamp_min(1e-6).log().unsqueeze(-1), roll.unsqueeze(-1)), dim=-1)


def unpack_parameters(x: Tensor, num_bases: int) -> ShapeCamera:
    """The category-basis structure and zero-roll camera of packed parameters (residual coefficients
    and camera roll dropped)."""
    k1, m = num_bases - 1, x.shape[-1] - 7
    scale = x[..., m].exp().unsqueeze(-1)
    alpha = scale * torch.cat((torch.ones_like(scale), x[..., :k1]), dim=-1)
    angles = geometry.view_to_euler(x[..., m + 1], x[..., m + 2])
    return ShapeCamera(alpha, geometry.euler_to_sincos(angles), x[..., m + 3 : m + 5], x[..., m + 5].exp())


class _Problem:
    """The residuals of one category's fit, batched over starts ``(S, D)``."""

    def __init__(self, category: Category, prior: ShapePrior, options: RefineOptions, dtype, device):
        self.category = category
        self.options = options
        self.k1 = category.num_bases - 1
        residual = prior.residual_bases if prior.residual_bases is not None else np.zeros((0, category.num_keypoints, 3))
        self.r = residual.shape[0]
        self.m = self.k1 + self.r  # shape coefficients
        bases = category.bases(dtype, device)
        self.mean_shape = bases[0]
        self.deformations = torch.cat((bases[1:], torch.as_tensor(residual, dtype=dtype, device=device)))  # (m, N, 3)
        mean, w = prior.whitening(dtype, device)
        self.prior_mean = torch.cat((mean, torch.zeros(self.r, dtype=dtype, device=device)))
        whiten = torch.zeros(self.m, self.m, dtype=dtype, device=device)
        whiten[: self.k1, : self.k1] = w
        if self.r:
            whiten[self.k1 :, self.k1 :] = torch.diag(1.0 / torch.as_tensor(prior.residual_sd, dtype=dtype, device=device))
        # an anchored prior (RefineOptions.anchor) has its own spread around each start's shape
        self.prior_w = whiten * math.sqrt(options.shape_weight) / (options.anchor_scale if options.anchor > 0 else 1.0)
        self.start_mean = None  # (S, m) per-start prior means (RefineOptions.anchor), set once the starts are known
        self.focal_prior = prior.log_focal_ratio
        self.elevation_prior = prior.elevation
        self.fit_roll = options.roll_sd_deg > 0
        self.roll_precision = 1.0 / math.radians(options.roll_sd_deg) if self.fit_roll else 0.0
        # (S,) per-start azimuth prior means from the image's belief and their precisions (0: none),
        # set once the starts are known
        self.azimuth_anchor = self.azimuth_precision = None

    def structure(self, x: Tensor) -> Tensor:
        """Object-frame structure ``(S, N, 3)``: ``alpha_1 (S_1 + sum a_k S_k + sum b_r E_r)``."""
        shape = self.mean_shape + torch.einsum("sk,knd->snd", x[:, : self.m], self.deformations)
        return x[:, self.m].exp()[:, None, None] * shape

    def camera(self, x: Tensor) -> ShapeCamera:
        return unpack_parameters(x, self.k1 + 1)

    def project(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(camera-frame points, plane coordinates), through :func:`geometry.perspective_project`."""
        p = self.camera(x)
        cam = geometry.to_camera_frame(self.structure(x), p.rotation(), p.translation)
        if self.fit_roll:
            cam = geometry.roll_camera(cam, x[:, self.m + 6])
        return cam, geometry.perspective_project(cam, p.focal, self.category.plane_size)

    def prior_residuals(self, x: Tensor) -> Tensor:
        o, m = self.options, self.m
        mean = self.prior_mean if self.start_mean is None else self.start_mean
        shape = (x[..., :m] - mean) @ self.prior_w.T
        focal = ((x[..., m + 5] - x[..., m] - self.focal_prior[0]) / self.focal_prior[1]) * math.sqrt(o.focal_weight)
        elevation = ((geometry.wrap_angle(x[..., m + 2]) - self.elevation_prior[0]) / self.elevation_prior[1]) * math.sqrt(o.elevation_weight)
        roll = x[..., m + 6] * self.roll_precision
        if self.azimuth_anchor is None:
            azimuth = torch.zeros_like(roll)
        else:
            azimuth = geometry.wrap_angle(x[..., m + 1] - self.azimuth_anchor) * self.azimuth_precision
        return torch.cat((shape, focal.unsqueeze(-1), elevation.unsqueeze(-1), roll.unsqueeze(-1), azimuth.unsqueeze(-1)), dim=-1)

    def residuals(self, x: Tensor, observed: Tensor, sqrt_weight: Tensor, sigma: Tensor) -> Tensor:
        """IRLS residuals ``(S, 2N + m + 4)``: weighted 2D errors over sigma, then the priors."""
        single = x.dim() == 1  # for torch.func (the tests differentiate one start at a time)
        if single:
            x, observed, sqrt_weight, sigma = x[None], observed[None], sqrt_weight[None], sigma[None]
        err = (self.project(x)[1] - observed) * (sqrt_weight / sigma.unsqueeze(-1)).unsqueeze(-1)
        out = torch.cat((err.flatten(-2), self.prior_residuals(x)), dim=-1)
        return out[0] if single else out

    def linearise(self, x: Tensor, observed: Tensor, sqrt_weight: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        """(Jacobian ``(S, 2N + m + 4, D)``, residuals) of :meth:`residuals`, analytic."""
        o, m = self.options, self.m
        s = x[:, m].exp()
        az, el = x[:, m + 1], x[:, m + 2]
        f = x[:, m + 5].exp()
        y = self.structure(x)
        t1 = math.pi + el
        c1, s1, c2, s2 = torch.cos(t1), torch.sin(t1), torch.cos(az), torch.sin(az)
        zero, one = torch.zeros_like(c1), torch.ones_like(c1)

        def mat(*rows):
            return torch.stack(rows, dim=-1).reshape(-1, 3, 3)

        rx, ry = mat(one, zero, zero, zero, c1, -s1, zero, s1, c1), mat(c2, zero, s2, zero, one, zero, -s2, zero, c2)
        drx, dry = mat(zero, zero, zero, zero, -s1, -c1, zero, c1, -s1), mat(-s2, zero, c2, zero, zero, zero, -c2, zero, -s2)
        rot = rx @ ry
        rotated = y @ rot.transpose(1, 2)
        unrolled = rotated + torch.cat((x[:, m + 3 : m + 5], torch.zeros_like(s[:, None])), dim=-1).unsqueeze(1)
        dcam = torch.zeros(x.shape[0], y.shape[1], 3, x.shape[-1], dtype=x.dtype, device=x.device)  # d cam / d x, before the roll
        dcam[..., :m] = torch.einsum("sij,knj->snik", rot, self.deformations) * s[:, None, None, None]
        dcam[..., m] = rotated
        dcam[..., m + 1] = y @ (rx @ dry).transpose(1, 2)
        dcam[..., m + 2] = y @ (drx @ ry).transpose(1, 2)
        dcam[..., 0, m + 3] = 1.0
        dcam[..., 1, m + 4] = 1.0
        # camera roll about the optical axis: cam = Rz(roll) unrolled (skipped when the roll is not fitted: it stays 0)
        cam = unrolled
        if self.fit_roll:
            roll = x[:, m + 6]
            cr, sr = torch.cos(roll)[:, None, None], torch.sin(roll)[:, None, None]
            dx, dy = dcam[..., 0, :].clone(), dcam[..., 1, :].clone()
            dcam[..., 0, :], dcam[..., 1, :] = cr * dx - sr * dy, sr * dx + cr * dy
            cam = geometry.roll_camera(unrolled, roll)
            dcam[..., 0, m + 6] = -cam[..., 1]
            dcam[..., 1, m + 6] = cam[..., 0]
        depth = f[:, None] + cam[..., 2]  # (S, N)
        uv = cam[..., :2] * (f[:, None] / depth).unsqueeze(-1) + self.category.plane_size / 2.0
        # d(uv)/d(cam) = [[f/D, 0, -f X/D^2], [0, f/D, -f Y/D^2]]
        g = f[:, None] / depth
        duv = g[..., None, None] * dcam[..., :2, :] - (g / depth)[..., None, None] * cam[..., :2, None] * dcam[..., 2:3, :]
        # u - c = f X / (f + Z)  ->  d/dlog f = f X Z / D^2
        duv[..., m + 5] = duv[..., m + 5] + f[:, None, None] * cam[..., :2] * (cam[..., 2] / depth**2).unsqueeze(-1)
        scale = (sqrt_weight / sigma.unsqueeze(-1)).unsqueeze(-1)  # (S, N, 1)
        j_data = (duv * scale.unsqueeze(-1)).flatten(1, 2)  # (S, 2N, D)
        j_prior = torch.zeros(x.shape[0], m + 4, x.shape[-1], dtype=x.dtype, device=x.device)
        j_prior[:, :m, :m] = self.prior_w
        j_prior[:, m, m + 5] = math.sqrt(o.focal_weight) / self.focal_prior[1]
        j_prior[:, m, m] = -math.sqrt(o.focal_weight) / self.focal_prior[1]
        j_prior[:, m + 1, m + 2] = math.sqrt(o.elevation_weight) / self.elevation_prior[1]
        # without roll its column is all zero: the damped normal equations leave it at 0
        j_prior[:, m + 2, m + 6] = self.roll_precision
        if self.azimuth_anchor is not None:
            j_prior[:, m + 3, m + 1] = self.azimuth_precision.expand(x.shape[0])
        err = (uv - observed) * scale
        return torch.cat((j_data, j_prior), dim=1), torch.cat((err.flatten(1), self.prior_residuals(x)), dim=-1)

    def costs(self, x: Tensor, observed: Tensor, weight: Tensor, sigma: Tensor) -> tuple[Tensor, Tensor]:
        """(total robust cost ``(S,)``, squared 2D distance per keypoint ``(S, N)``) for a batch of starts."""
        d2 = ((self.project(x)[1] - observed) ** 2).sum(-1)
        data = (weight * torch.log1p(d2 / sigma.unsqueeze(-1) ** 2)).sum(-1)
        return data + (self.prior_residuals(x) ** 2).sum(-1), d2


def _align_scale_translation(problem: _Problem, x: Tensor, observed: Tensor, weight: Tensor) -> Tensor:
    """Move and scale each start so its projection's weighted centroid and radius match the observed
    ones: the radius where at least 2 keypoints are observed, the centroid where 1 is (with none,
    the start stays as it is; aligning to an empty radius once shrank objects 400-fold)."""
    m = problem.m
    count = (weight > 0).sum(-1)
    c_obs, r_obs = geometry.keypoint_radius(observed, weight)
    for _ in range(2):
        c_pred, r_pred = geometry.keypoint_radius(problem.project(x)[1], weight)
        ratio = torch.where(count >= 2, (r_obs / r_pred.clamp_min(1e-6)).clamp(0.05, 20.0), torch.ones_like(r_obs))
        x = x.clone()
        x[..., m] = x[..., m] + ratio.log()
        x[..., m + 5] = x[..., m + 5] + ratio.log()  # same perspective strength
        x[..., m + 3 : m + 5] = x[..., m + 3 : m + 5] * ratio.unsqueeze(-1)
        c_pred, _ = geometry.keypoint_radius(problem.project(x)[1], weight)
        x[..., m + 3 : m + 5] = x[..., m + 3 : m + 5] + torch.where((count >= 1).unsqueeze(-1), c_obs - c_pred, torch.zeros_like(c_obs))
    return x


def _starts(x0: Tensor, problem: _Problem, prior: ShapePrior, options: RefineOptions, view_log_probs: Tensor | None = None) -> Tensor:
    """``(B, H, D)`` starts from the given hypotheses ``(B, H0, D)``."""
    m, k1 = problem.m, problem.k1
    extra = []
    if view_log_probs is not None and options.view_starts > 0:
        for azimuth in viewpoint.top_azimuths(view_log_probs.to(x0), options.view_starts).unbind(-1):
            start = x0[:, 0].clone()
            start[:, m + 1] = azimuth
            extra.append(start)
    if options.flips:
        first = x0[:, 0]
        for transform in (lambda az: az + math.pi, lambda az: -az, lambda az: math.pi - az):
            flipped = first.clone()
            flipped[:, m + 1] = geometry.wrap_angle(transform(first[:, m + 1]), 0.0)
            extra.append(flipped)
    if options.azimuth_grid > 0:
        mean = torch.as_tensor(prior.mean, dtype=x0.dtype, device=x0.device)
        for i in range(options.azimuth_grid):
            grid = x0[:, 0].clone()
            grid[:, :m] = 0.0
            grid[:, :k1] = mean
            grid[:, m + 1] = 2 * math.pi * i / options.azimuth_grid
            grid[:, m + 2] = prior.elevation[0]
            grid[:, m + 5] = grid[:, m] + prior.log_focal_ratio[0]
            extra.append(grid)
    return torch.cat((x0, torch.stack(extra, dim=1)), dim=1) if extra else x0


def refine(
    category: Category | str,
    keypoints: Tensor,
    weights: Tensor,
    init: ShapeCamera,
    prior: ShapePrior | None = None,
    options: RefineOptions = RefineOptions(),
    view_log_probs: Tensor | None = None,
    alternatives: Tensor | None = None,
    alternative_weights: Tensor | None = None,
) -> RefineResult:
    """Fit the shape model to ``keypoints (B, N, 2)`` (projection-plane px; rows with weight 0 may be
    NaN) with per-keypoint ``weights (B, N)`` in [0, 1], from ``init`` hypotheses of batch shape
    ``(B,)`` or ``(B, H0)``. Runs in ``options.precision`` on the keypoints' device.

    ``view_log_probs (B, V)``: log probabilities over azimuth bins from the image
    (:mod:`interp3d.viewpoint`); they add starts, an azimuth prior for the starts near their modes
    and a selection term (``options.view_*``), and the shape prior is anchored by
    ``options.view_shape_anchor`` instead of ``options.anchor``.

    ``alternatives (B, N, M, 2)`` with ``alternative_weights (B, N, M)``: other places each keypoint
    may be (e.g. its heatmap's other modes, :func:`interp3d.heatmaps.heatmap_modes`); with
    ``options.mode_refit`` a second fit starts from the first's answer with each observed keypoint
    that the first fit put far from it moved to the alternative nearest the fit's projection."""
    category = get_category(category)
    prior = prior if prior is not None else ShapePrior.from_ranges(category)
    if prior.category != category.name:
        raise ValueError(f"a {prior.category} shape prior cannot refine {category.name} keypoints")
    if keypoints.dim() != 3 or keypoints.shape[1:] != (category.num_keypoints, 2):
        raise ValueError(f"{category.name}: keypoints must have shape (B, {category.num_keypoints}, 2), got {tuple(keypoints.shape)}")
    if weights.shape != keypoints.shape[:2]:
        raise ValueError(f"weights must have shape {tuple(keypoints.shape[:2])}, got {tuple(weights.shape)}")
    if alternatives is not None and (alternatives.dim() != 4 or alternatives.shape[:2] != keypoints.shape[:2] or alternatives.shape[-1] != 2
                                     or alternative_weights is None or alternative_weights.shape != alternatives.shape[:-1]):
        raise ValueError(f"alternatives must have shape ({keypoints.shape[0]}, {category.num_keypoints}, M, 2) with weights of shape "
                         f"({keypoints.shape[0]}, {category.num_keypoints}, M), got {tuple(alternatives.shape)} and "
                         f"{None if alternative_weights is None else tuple(alternative_weights.shape)}")
    if options.precision not in ("float32", "float64"):
        raise ValueError(f"precision must be 'float32' or 'float64', got {options.precision!r}")
    dtype, device = getattr(torch, options.precision), keypoints.device
    if view_log_probs is not None:
        options = replace(options, anchor=options.view_shape_anchor)
    weights = torch.where(torch.isfinite(keypoints).all(-1), weights.to(dtype).clamp(0, 1), torch.zeros((), dtype=dtype, device=device))
    observed = torch.where(weights.unsqueeze(-1) > 0, keypoints.to(dtype), torch.zeros((), dtype=dtype, device=device))
    if init.alpha.dim() == 2:
        init = ShapeCamera(*(v.unsqueeze(1) for v in (init.alpha, init.r6, init.translation, init.focal)))
    problem = _Problem(category, prior, options, dtype, device)
    x0 = pack_parameters(init.to(dtype=dtype, device=device), problem.r)
    b, d = x0.shape[0], x0.shape[-1]
    if view_log_probs is not None:
        if view_log_probs.dim() != 2 or view_log_probs.shape[0] != b:
            raise ValueError(f"view_log_probs must have shape ({b}, bins), got {tuple(view_log_probs.shape)}")
        view_log_probs = view_log_probs.to(dtype=dtype, device=device)
    starts = _starts(x0, problem, prior, options, view_log_probs)
    h = starts.shape[1]

    obs = observed.unsqueeze(1).expand(b, h, -1, -1).reshape(b * h, -1, 2)
    w = weights.unsqueeze(1).expand(b, h, -1).reshape(b * h, -1)
    radius = geometry.keypoint_radius(observed, weights)[1].unsqueeze(1).expand(b, h).reshape(-1)  # per start
    sigma = options.robust_scale * radius.clamp_min(1e-3)
    x = _align_scale_translation(problem, starts.reshape(b * h, d), obs, w)
    if options.anchor > 0:
        problem.start_mean = (1 - options.anchor) * problem.prior_mean + options.anchor * torch.cat((x[:, : problem.k1], torch.zeros_like(x[:, problem.k1 : problem.m])), dim=1)
    view = None if view_log_probs is None else view_log_probs.unsqueeze(1).expand(b, h, -1).reshape(b * h, -1)
    if view is not None and options.view_sd_deg > 0:
        # a start near one of the belief's modes is held to it; one far from all (e.g. the lifter's,
        # where the keypoints disagree with the image) is left to its keypoints
        problem.azimuth_anchor = viewpoint.nearest_mode(view, x[:, problem.m + 1], max(options.view_starts, 1))
        near = geometry.wrap_angle(x[:, problem.m + 1] - problem.azimuth_anchor).abs() <= math.radians(options.view_capture_deg)
        problem.azimuth_precision = near.to(dtype) / math.radians(options.view_sd_deg)

    cost, d2 = problem.costs(x, obs, w, sigma)
    lam = torch.full((b * h,), options.damping, dtype=dtype, device=device)
    explore = min(options.explore_iterations, options.iterations) if 0 < options.keep_starts < h else options.iterations
    x, cost, d2, lam = _lm_steps(problem, x, cost, d2, lam, obs, w, sigma, explore)
    selection = _selection_cost(problem, category, x, cost, w, radius, view).reshape(b, h)
    starts_index = torch.arange(h, device=device).expand(b, h)
    if explore < options.iterations:
        # keep each object's most promising starts for the remaining steps (most of the work)
        keep = selection.topk(options.keep_starts, dim=1, largest=False).indices  # (B, k)
        flat = (torch.arange(b, device=device).unsqueeze(1) * h + keep).reshape(-1)
        x, cost, d2, lam, obs, w, sigma, radius = (v[flat] for v in (x, cost, d2, lam, obs, w, sigma, radius))
        view = None if view is None else view[flat]
        if problem.azimuth_anchor is not None:
            problem.azimuth_anchor, problem.azimuth_precision = problem.azimuth_anchor[flat], problem.azimuth_precision[flat]
        if problem.start_mean is not None:
            problem.start_mean = problem.start_mean[flat]
        h, starts_index = options.keep_starts, keep
        x, cost, d2, lam = _lm_steps(problem, x, cost, d2, lam, obs, w, sigma, options.iterations - explore)
        selection = _selection_cost(problem, category, x, cost, w, radius, view).reshape(b, h)
    chosen = selection.argmin(dim=1)
    flat = torch.arange(b, device=device) * h + chosen
    best = x[flat]
    wsum = weights.sum(-1).clamp_min(1e-9)
    rms = torch.sqrt((weights * d2[flat]).sum(-1) / wsum)
    result = RefineResult(
        problem.camera(best), problem.structure(best), best[:, problem.k1 : problem.m], best[:, problem.m + 6],
        selection.gather(1, chosen.unsqueeze(1)).squeeze(1), selection, starts_index.gather(1, chosen.unsqueeze(1)).squeeze(1), rms,
    )
    if not options.mode_refit or alternatives is None:
        return result
    projected = problem.project(best)[1]
    moved, moved_weights = _nearest_alternatives(observed, weights, projected, alternatives.to(dtype), alternative_weights.to(dtype), options, category.plane_size)
    return refine(category, moved, moved_weights, result.params, prior, replace(options, mode_refit=False), view_log_probs)


def _nearest_alternatives(observed, weights, projected, alternatives, alternative_weights, options: RefineOptions, plane_size: float):
    """Each observed keypoint more than ``options.mode_distance`` of the side from ``projected`` moved
    to the alternative (of at least ``mode_min_fraction`` of its own weight) nearest the projection,
    where that is nearer; its weight becomes the alternative's."""
    reach = (alternatives - projected.unsqueeze(2)).norm(dim=-1)  # (B, N, M)
    usable = torch.isfinite(reach) & (alternative_weights > 0) & (alternative_weights >= options.mode_min_fraction * weights.unsqueeze(-1))
    reach = torch.where(usable, reach, torch.full_like(reach, math.inf))
    nearest = reach.argmin(-1, keepdim=True)
    own = (observed - projected).norm(dim=-1)
    move = (weights > 0) & (own > options.mode_distance * plane_size) & (reach.gather(-1, nearest).squeeze(-1) < own)
    target = alternatives.gather(2, nearest.unsqueeze(-1).expand(-1, -1, 1, 2)).squeeze(2)
    return torch.where(move.unsqueeze(-1), target, observed), torch.where(move, alternative_weights.gather(-1, nearest).squeeze(-1).clamp(0, 1), weights)


def _lm_steps(problem: _Problem, x, cost, d2, lam, obs, w, sigma, steps: int):
    """``steps`` damped Gauss-Newton (LM) steps of the IRLS problem; a step is kept only where it lowers the cost."""
    d = x.shape[-1]
    eye = torch.eye(d, dtype=x.dtype, device=x.device)
    for _ in range(steps):
        irls = w / (1.0 + d2 / sigma.unsqueeze(-1) ** 2)
        jac, res = problem.linearise(x, obs, irls.sqrt(), sigma)
        jtj = jac.transpose(1, 2) @ jac
        grad = (jac.transpose(1, 2) @ res.unsqueeze(-1)).squeeze(-1)
        damped = jtj + lam[:, None, None] * (torch.diagonal(jtj, dim1=1, dim2=2).unsqueeze(-1) * eye + 1e-9 * eye)
        solution, info = torch.linalg.solve_ex(damped, -grad.unsqueeze(-1))
        # a singular system (e.g. the unused roll column with a tiny damping in float32) takes no step
        # there; its damping grows, as after any rejected step
        step = torch.where((info == 0).unsqueeze(-1), torch.nan_to_num(solution.squeeze(-1)), torch.zeros_like(x))
        candidate = x + step
        new_cost, new_d2 = problem.costs(candidate, obs, w, sigma)
        better = torch.isfinite(new_cost) & (new_cost < cost)
        x = torch.where(better.unsqueeze(-1), candidate, x)
        cost = torch.where(better, new_cost, cost)
        d2 = torch.where(better.unsqueeze(-1), new_d2, d2)
        lam = torch.where(better, lam * 0.3, lam * 5.0).clamp(1e-9, 1e9)
    return x, cost, d2, lam


def _selection_cost(problem: _Problem, category: Category, x, cost, w, observed_radius, view_log_probs: Tensor | None = None):
    """The fit's cost plus the penalty for observed keypoints the fitted pose hides behind its own
    surfaces, plus the image's disbelief in the fitted azimuth (``view_log_probs (S, V)``), plus
    the penalty for a fit collapsed far below the observed keypoints' RMS radius (``observed_radius (S,)``)."""
    options = problem.options
    if view_log_probs is not None and options.view_weight > 0:
        cost = cost - options.view_weight * viewpoint.azimuth_log_prob(view_log_probs, x[:, problem.m + 1 : problem.m + 2]).squeeze(-1)
    occlusion = options.occlusion_penalty > 0 and category.surface_triangles.size
    if options.collapse_penalty <= 0 and not occlusion:
        return cost
    points_cam, projected = problem.project(x)
    if options.collapse_penalty > 0:
        fitted_radius = geometry.keypoint_radius(projected, w)[1].clamp_min(1e-6)
        shrink = (torch.log(observed_radius.clamp_min(1e-6) / fitted_radius) - math.log(2.0)).clamp_min(0)
        cost = cost + options.collapse_penalty * w.sum(-1) * shrink
    if not occlusion:
        return cost
    hidden = geometry.self_occlusion(points_cam, problem.camera(x).focal, torch.as_tensor(category.surface_triangles, device=x.device))
    return cost + options.occlusion_penalty * (w * hidden.to(x.dtype)).sum(-1)
