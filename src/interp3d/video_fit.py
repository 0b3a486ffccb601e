"""One rigid object along a video: a shared structure and a smooth camera track fitted to the
frames' 2D keypoints, re-projected into every frame as pseudo-labels (the core of multi-frame
bootstrapping of the 2D module, in the spirit of Simon et al., CVPR 2017, for object videos).

The model is the video losses' own (shared alpha, smooth R and t), solved in four steps:

1. **candidates** per frame: each given hypothesis (e.g. the lifter's) and its front/back and
   mirror flips, each refined to the frame's keypoints (:func:`interp3d.refine.refine`);
2. **track**, one of two (``VideoFitOptions.track``):
   ``"motion"`` (default): the camera orbits at a steady angular speed, so the azimuth is a line in
   time; the line is fitted robustly to all frames' candidates (every pair of candidates proposes
   one, the one with the lowest capped cost over the frames wins, then a least-squares touch-up on
   its inliers). A frame with a candidate near the line keeps that candidate; a frame with none
   (its 2D keypoints read the object from the wrong side, e.g. a back view read as a front one, or
   are garbage) is *carried*: its azimuth is the line's, the rest of its camera is interpolated from
   the neighbouring frames, and its own keypoints are not fitted.
   This is what lets a video teach the 2D module views it cannot read yet.
   ``"viterbi"``: one candidate per frame by dynamic programming over the refinement costs plus a
   quadratic penalty on the azimuth change between neighbouring frames (no frame is carried);
   with a per-frame belief about the view from the image (``view_log_probs``, e.g. front/back from
   :class:`interp3d.models.appearance.FrontBackAppearance`) every candidate and, with the motion
   track, every line pays its negative log-probability, and each proposed line's mirror and turned
   orbits are proposed too: a back view that the 2D module reads as the mirrored front view fits
   its keypoints as well, so only the image can say which side a video is on;
3. **shared shape**: the median of the chosen candidates' relative coefficients (the video
   losses' latent alpha_c), then every frame re-fitted with its shape held near it;
4. **pseudo-labels**: the fit re-projected into every frame; a frame whose own fit does not match
   its keypoints (median residual), or with the motion track lies off the orbit's line, takes the
   camera interpolated from its nearest good frames (with the motion track, the line's azimuth); a
   keypoint is kept where the fitted geometry shows it (self-occlusion, inside the plane) and, where
   the 2D module reported it in a frame fitted on its own keypoints, where the two agree
   (re-projection residual).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor

from . import geometry, viewpoint
from .params import ShapeCamera
from .refine import RefineOptions, pack_parameters, refine, unpack_parameters
from .shape_model import Category, get_category
from .shape_prior import ShapePrior

__all__ = ["VideoFitOptions", "VideoFit", "fit_video"]


@dataclass(frozen=True)
class VideoFitOptions:
    refine: RefineOptions = field(default_factory=lambda: RefineOptions(flips=False, keep_starts=0, occlusion_penalty=0.5))
    smooth_deg: float = 15.0  # an azimuth change between neighbouring frames of this size costs as much as one unit of fit cost
    shape_sd: float = 0.1  # spread of the re-fit's shape prior around the shared shape, times the population's
    inlier_fraction: float = 0.1  # pseudo-label limit on the re-projection residual, times the object's RMS radius in the frame
    frame_fraction: float = 0.12  # a frame's own fit counts when its median residual is below this (times the radius)
    min_observed: int = 4  # keypoints a frame needs for its own fit to count
    track: str = "motion"  # "motion" (a steady orbit fitted robustly, carries frames read from the wrong side) or "viterbi"
    relabel: bool = True  # also candidates fitted to the keypoints with left and right swapped (a back view read as the mirrored front view)
    motion_tolerance_deg: float = 20.0  # a candidate this far from the orbit's line costs one unit of fit cost; 2x this: an outlier
    max_speed_deg: float = 30.0  # fastest orbit considered, degrees per frame
    motion_cap: float = 4.0  # a frame's cost for a line is capped here (an outlier frame)
    appearance_weight: float = 3.0  # weight of a frame's negative log-probability of a view from appearance (fit_video's view_log_probs) beside its fit cost
    appearance_candidates: bool = True  # ... added to each candidate's cost
    appearance_line: bool = True  # ... and to the motion line's cost at the line's azimuth in every frame

    def __post_init__(self):
        if self.track not in ("motion", "viterbi"):
            raise ValueError(f"VideoFitOptions.track must be 'motion' or 'viterbi', got {self.track!r}")


@dataclass
class VideoFit:
    params: ShapeCamera  # (T,) per-frame cameras with the shared shape (basis coefficients)
    structure: Tensor  # (N, 3) the shared structure at unit scale (alpha_1 = 1), object frame
    keypoints: Tensor  # (T, N, 2) its re-projection into every frame, plane px
    residual: Tensor  # (T, N) plane-px distance to the observed keypoints (NaN where none was observed)
    visible: Tensor  # (T, N) bool: shown by the fitted geometry and inside the plane
    pseudo_label: Tensor  # (T, N) bool: keypoints to train the 2D module on
    frame_source: Tensor  # (T,) 0: the frame's own fit, 1: camera interpolated from neighbours, 2: carried by the motion track, -1: no labels
    chosen: Tensor  # (T,) the candidate the track chose (hypothesis h, flip k -> h * 4 + k, + 4H where fitted to the keypoints with left and right swapped; -1 for a carried frame)
    track_azimuth: Tensor | None = None  # (T,) the motion track's azimuth line (radians; None for the Viterbi track)


def _flip_candidates(init: ShapeCamera) -> ShapeCamera:
    """``(T, 4H)``: every hypothesis with azimuth az, az + pi, -az and pi - az (front/back, mirror)."""
    az, el = init.view()
    out = []
    for transform in (lambda a: a, lambda a: a + math.pi, lambda a: -a, lambda a: math.pi - a):
        angles = geometry.view_to_euler(geometry.wrap_angle(transform(az), 0.0), el)
        out.append(ShapeCamera(init.alpha, geometry.euler_to_sincos(angles), init.translation, init.focal))
    return ShapeCamera(*(torch.stack([getattr(c, f) for c in out], dim=2).flatten(1, 2) for f in ("alpha", "r6", "translation", "focal")))


def _viterbi(unary: Tensor, azimuth: Tensor, smooth: float) -> Tensor:
    """The candidate index ``(T,)`` minimising the sum of unary costs ``(T, C)`` plus
    ``(delta azimuth / smooth)^2`` between neighbouring frames."""
    t, c = unary.shape
    total = unary[0].clone()
    back = torch.zeros(t, c, dtype=torch.long)
    for i in range(1, t):
        delta = geometry.wrap_angle(azimuth[i].unsqueeze(0) - azimuth[i - 1].unsqueeze(1))  # (C_prev, C), in [-pi, pi)
        step = total.unsqueeze(1) + (delta / smooth) ** 2
        total, back[i] = step.min(dim=0)
        total = total + unary[i]
    path = torch.zeros(t, dtype=torch.long)
    path[-1] = total.argmin()
    for i in range(t - 1, 0, -1):
        path[i - 1] = back[i, path[i]]
    return path


def _motion_line(unary: Tensor, azimuth: Tensor, valid: Tensor, options: VideoFitOptions, view_log_probs: Tensor | None = None) -> tuple[Tensor, Tensor] | None:
    """The orbit ``azimuth(t) = a + w t`` (radians, unwrapped, ``(T,)``) that best explains the
    candidates ``(T, C)`` of the ``valid`` frames, and each frame's inlier candidate (``-1``: none);
    None with fewer than two valid frames. Cost of a line: the sum over valid frames of
    ``min_c(unary - min unary + (distance / tolerance)^2)``, capped at ``motion_cap`` (an outlier frame)."""
    t, c = unary.shape
    frames = torch.nonzero(valid).flatten()
    if len(frames) < 2:
        return None
    tol, cap = math.radians(options.motion_tolerance_deg), options.motion_cap
    relative = unary - unary.min(dim=1, keepdim=True).values
    # proposals: pairs of the frames' most plausible candidates
    top = relative.topk(min(4, c), dim=1, largest=False).indices  # (T, k)
    points = [(int(i), float(azimuth[i, q])) for i in frames for q in top[i]]
    ti = torch.tensor([p[0] for p in points], dtype=torch.float64)
    ai = torch.tensor([p[1] for p in points], dtype=torch.float64)
    first, second = torch.triu_indices(len(points), len(points), offset=1)
    keep = ti[second] != ti[first]
    first, second = first[keep], second[keep]
    speed = geometry.wrap_angle(ai[second] - ai[first]) / (ti[second] - ti[first])
    keep = speed.abs() <= math.radians(options.max_speed_deg)
    first, speed = first[keep], speed[keep]
    if not len(speed):
        return None
    offset = ai[first] - speed * ti[first]  # (L,) line through the pair
    if view_log_probs is not None:
        # the image may overrule the keypoints' reading of the side: each line's mirror (pi - a) and
        # turned (a + pi) orbits too, which no candidate may lie on (a back view read as a front view)
        offset, speed = torch.cat((offset, math.pi - offset, offset + math.pi)), torch.cat((speed, -speed, speed))
    steps = torch.arange(t, dtype=torch.float64)

    def line_costs(offset: Tensor, speed: Tensor) -> tuple[Tensor, Tensor]:
        line = offset.unsqueeze(-1) + speed.unsqueeze(-1) * steps  # (L, T)
        distance = geometry.wrap_angle(azimuth.unsqueeze(0) - line.unsqueeze(-1))  # (L, T, C)
        per_candidate = relative.unsqueeze(0) + (distance / tol) ** 2
        per_frame, best = per_candidate.min(dim=-1)
        total = torch.where(valid, per_frame.clamp_max(cap), torch.zeros_like(per_frame)).sum(-1)
        if view_log_probs is not None:  # the image's evidence for the line's azimuth, in every frame (a carried one too)
            total = total - options.appearance_weight * viewpoint.azimuth_log_prob(view_log_probs, line.T.contiguous()).sum(0)
        return total, torch.where(per_frame < cap, best, -1)

    costs = torch.cat([line_costs(o, v)[0] for o, v in zip(offset.split(4096), speed.split(4096))])  # in chunks: long videos propose many lines
    k = int(costs.argmin())
    offset, speed = offset[k : k + 1], speed[k : k + 1]
    # least-squares touch-up of the line on its inliers
    _, inlier = line_costs(offset, speed)
    inlier = torch.where(valid, inlier[0], -1)
    used = torch.nonzero(inlier >= 0).flatten()
    if len(used) >= 2:
        e = geometry.wrap_angle(azimuth[used, inlier[used]] - (offset + speed * steps[used]))
        design = torch.stack((torch.ones_like(e), steps[used]), dim=1)
        correction = torch.linalg.lstsq(design, e.unsqueeze(-1)).solution.squeeze(-1)
        offset, speed = offset + correction[0], speed + correction[1]
        _, inlier = line_costs(offset, speed)
        inlier = torch.where(valid, inlier[0], -1)
    return offset + speed * steps, inlier


def _carry(params: ShapeCamera, keep: Tensor, line: Tensor, m: int) -> Tensor:
    """Packed starts of every frame: the kept frames' own, the others' interpolated from the kept
    ones (copied beyond the ends) with the azimuth of the line."""
    packed = pack_parameters(params)
    packed, _ = _interpolate(packed, keep, m)
    packed[~keep, m + 1] = geometry.wrap_angle(line[~keep], 0.0).to(packed)
    return packed


def _interpolate(x: Tensor, good: Tensor, m: int) -> tuple[Tensor, Tensor]:
    """Packed camera parameters of the frames that are not ``good``, linearly interpolated (azimuth
    unwrapped) between the nearest good frames, or copied from the one good side; (x, source)."""
    t = x.shape[0]
    source = torch.where(good, 0, -1)
    idx = torch.nonzero(good).flatten().tolist()
    if not idx:
        return x, source
    x = x.clone()
    az = torch.tensor(np.unwrap(x[:, m + 1].numpy()), dtype=x.dtype)
    for i in range(t):
        if good[i]:
            continue
        before, after = [j for j in idx if j < i], [j for j in idx if j > i]
        if before and after:
            a, b = before[-1], after[0]
            w = (i - a) / (b - a)
            x[i] = (1 - w) * x[a] + w * x[b]
            x[i, m + 1] = (1 - w) * az[a] + w * az[b]
        else:
            x[i] = x[before[-1] if before else after[0]]
        source[i] = 1
    return x, source


def _refit(category: Category, keypoints: Tensor, weights: Tensor, start: ShapeCamera, prior: ShapePrior, options: RefineOptions, frames: Tensor) -> ShapeCamera:
    """The ``frames`` (bool ``(T,)``) of ``start`` re-fitted to their keypoints; all frames come back,
    the others unchanged."""
    out = ShapeCamera(*(getattr(start, f).clone() for f in ("alpha", "r6", "translation", "focal")))
    if not frames.any():
        return out
    fitted = refine(category, keypoints[frames], weights[frames], start.index(frames), prior, replace(options, anchor=0.0))
    for f in ("alpha", "r6", "translation", "focal"):
        getattr(out, f)[frames] = getattr(fitted.params, f).to(getattr(out, f))
    return out


def _against_observations(category: Category, params: ShapeCamera, keypoints: Tensor, weights: Tensor):
    """(camera-frame points, projection (T, N, 2), distance to the observations (T, N), the same with
    NaN where unobserved, the projection's RMS radius (T,)) of per-frame parameters."""
    _, points_cam, projected = params.project(category)
    d = torch.linalg.norm(projected - torch.nan_to_num(keypoints), dim=-1)
    residual = torch.where(weights > 0, d, torch.full_like(d, float("nan")))
    _, radius = geometry.keypoint_radius(projected, torch.ones_like(weights))
    return points_cam, projected, d, residual, radius


def fit_video(
    category: Category | str, keypoints: Tensor, weights: Tensor, init: ShapeCamera, prior: ShapePrior | None = None, options: VideoFitOptions = VideoFitOptions(),
    view_log_probs: Tensor | None = None,
) -> VideoFit:
    """Fit one video: ``keypoints (T, N, 2)`` plane px (NaN where missing), ``weights (T, N)`` in
    [0, 1], ``init`` per-frame hypotheses ``(T,)`` or ``(T, H)`` (e.g. the keypoint lifter's).
    ``view_log_probs (T, V)``: per frame, log-probabilities over ``V`` azimuth bins from the image's
    appearance (:mod:`interp3d.viewpoint`; e.g. ``V = 2``, front and back); each candidate's cost
    gains ``-appearance_weight`` times its azimuth's log-probability. Keypoints cannot tell a view
    from its mirror (a back view read as the mirrored front view fits as well); the image can."""
    category = get_category(category)
    prior = prior if prior is not None else ShapePrior.from_ranges(category)
    t, n = weights.shape
    if keypoints.shape != (t, n, 2) or n != category.num_keypoints or t < 1:
        raise ValueError(f"{category.name}: a video fit needs keypoints (T, {category.num_keypoints}, 2) and weights (T, {category.num_keypoints}), got {tuple(keypoints.shape)} and {tuple(weights.shape)}")
    keypoints, weights = keypoints.double().cpu(), weights.double().cpu()
    weights = torch.where(torch.isfinite(keypoints).all(-1), weights.clamp(0, 1), torch.zeros_like(weights))
    if init.focal.dim() == 1:  # one hypothesis per frame
        init = ShapeCamera(*(v.unsqueeze(1) for v in (init.alpha, init.r6, init.translation, init.focal)))
    init = init.to(dtype=torch.float64, device="cpu")

    # 1. candidates, each refined on its own frame (and, with relabel, also on its keypoints with left and right swapped)
    candidates = _flip_candidates(init)
    readings = [(keypoints, weights)]
    if options.relabel and category.flip_pairs:
        perm = list(category.flip_permutation)
        readings.append((keypoints[:, perm], weights[:, perm]))
        candidates = ShapeCamera(*(torch.cat([getattr(candidates, f)] * 2, dim=1) for f in ("alpha", "r6", "translation", "focal")))
    c = candidates.alpha.shape[1]
    per_reading = c // len(readings)
    reading_of = torch.arange(c) // per_reading  # (C,) which reading each candidate was refined on
    flat = ShapeCamera(*(getattr(candidates, f).flatten(0, 1) for f in ("alpha", "r6", "translation", "focal")))
    every_kp = torch.stack([r[0] for r in readings], dim=1).repeat_interleave(per_reading, 1).flatten(0, 1)  # (T * C, N, 2)
    every_w = torch.stack([r[1] for r in readings], dim=1).repeat_interleave(per_reading, 1).flatten(0, 1)
    fitted = refine(category, every_kp, every_w, flat, prior, options.refine)
    unary = torch.nan_to_num(fitted.cost.double().view(t, c), nan=1e9, posinf=1e9)
    observed = (weights > 0).sum(-1)
    unary = torch.where((observed >= 3).unsqueeze(-1), unary, torch.zeros_like(unary))  # too few keypoints: the track decides
    azimuth = fitted.params.view()[0].double().view(t, c)
    if view_log_probs is not None and (view_log_probs.dim() != 2 or view_log_probs.shape[0] != t):
        raise ValueError(f"{category.name}: view_log_probs must be (T={t}, V), got {tuple(view_log_probs.shape)}")
    use_view = view_log_probs is not None and options.appearance_weight > 0
    view = view_log_probs.double().cpu() if use_view else None
    if use_view and options.appearance_candidates:
        unary = unary - options.appearance_weight * viewpoint.azimuth_log_prob(view, azimuth)

    # 2. the track
    m = category.num_bases - 1
    motion = _motion_line(unary, azimuth, observed >= 3, options, view if options.appearance_line else None) if options.track == "motion" else None
    # a line no frame's candidate lies on stands only on the image's word (a video read wholly from the wrong side)
    if motion is not None and ((motion[1] >= 0).any() or use_view and options.appearance_line):
        line, chosen = motion
    else:  # the Viterbi track (asked for, or too few frames for a line)
        line, chosen = None, _viterbi(unary, azimuth, math.radians(options.smooth_deg))
    carried = chosen < 0
    # a frame whose chosen candidate explains its keypoints with left and right swapped is fitted
    # and labelled with them swapped: the 2D module read it as the mirror view
    relabelled = ~carried & (reading_of[chosen.clamp_min(0)] > 0)
    if relabelled.any():
        keypoints = torch.where(relabelled[:, None, None], readings[-1][0], keypoints)
        weights = torch.where(relabelled[:, None], readings[-1][1], weights)
    pick = torch.arange(t) * c + chosen.clamp_min(0)
    chosen_params = ShapeCamera(*(getattr(fitted.params, f)[pick].double() for f in ("alpha", "r6", "translation", "focal")))

    # 3. the shared shape (median of the relative coefficients over own-fit frames that observed enough), then a re-fit near it
    relative = chosen_params.alpha[:, 1:] / chosen_params.alpha[:, :1]
    enough = (observed >= options.min_observed) & ~carried
    shared = (relative[enough] if enough.any() else relative[~carried] if (~carried).any() else relative).median(dim=0).values
    shape_prior = replace(prior, mean=shared.numpy(), covariance=prior.covariance * options.shape_sd**2, residual_bases=None, residual_sd=None)
    packed = pack_parameters(chosen_params) if line is None else _carry(chosen_params, ~carried, line, m)
    packed[:, :m] = shared
    start = unpack_parameters(packed, category.num_bases)
    # a carried frame keeps the camera of the line and its neighbours: its keypoints read the object
    # from elsewhere (or are garbage), so fitting them would only pull it off
    params = _refit(category, keypoints, weights, start, shape_prior, options.refine, ~carried)

    # 4. which frames' own fits count; the others take the camera of their neighbours
    _, _, d, residual, radius = _against_observations(category, params, keypoints, weights)
    median_residual = torch.nanmedian(residual, dim=-1).values
    good = enough & (median_residual <= options.frame_fraction * radius)
    if line is not None:  # the orbit decides the azimuth: an own fit far off it has read the frame from the wrong side
        good &= geometry.wrap_angle(params.view()[0] - line).abs() <= 2 * math.radians(options.motion_tolerance_deg)
    packed = pack_parameters(params)
    packed[:, :m] = shared  # one shape for the whole video
    packed, source = _interpolate(packed, good | carried, m)
    if line is not None:  # beyond the last good frame the orbit goes on; copying that frame's camera would stop it
        packed[source == 1, m + 1] = geometry.wrap_angle(line[source == 1], 0.0).to(packed)
    source = torch.where(carried, 2, source)
    params = unpack_parameters(packed, category.num_bases)
    structure_cam, projected, d, residual, radius = _against_observations(category, params, keypoints, weights)
    hidden = geometry.self_occlusion(structure_cam, params.focal, torch.as_tensor(category.surface_triangles)) if category.surface_triangles.size else torch.zeros_like(weights, dtype=torch.bool)
    inside = ((projected >= 0) & (projected < category.plane_size)).all(-1)
    visible = ~hidden & inside
    # in a frame fitted on its own keypoints, a reported keypoint must agree with the fit; an
    # interpolated frame's keypoints are what failed, so there the geometry alone decides
    agrees = torch.where((weights > 0) & (source == 0).unsqueeze(-1), d <= options.inlier_fraction * radius.unsqueeze(-1), torch.ones_like(visible))
    pseudo = visible & agrees & (source >= 0).unsqueeze(-1)
    unit = torch.cat((torch.ones(1, dtype=torch.float64), shared)).unsqueeze(0)
    return VideoFit(params, geometry.structure_from_alpha(unit, category.bases(torch.float64))[0], projected, residual, visible, pseudo, source, chosen, line)
