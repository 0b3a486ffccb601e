"""Lifting 2D keypoints: self-occlusion geometry, the refinement's Jacobian and convergence, the
shape prior, the keypoint lifter's scale equivariance, the lifting sampler, input validation."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from interp3d import geometry
from interp3d.data.lifting import LiftingOptions, LiftingSampler, detector_error_statistics
from interp3d.data.synthetic import SkeletonSampler
from interp3d.inference import InputError, check_keypoints
from interp3d.models.lifter import KeypointLifter
from interp3d.params import ShapeCamera
from interp3d.refine import RefineOptions, _Problem, pack_parameters, refine, unpack_parameters
from interp3d.shape_model import get_category
from interp3d.shape_prior import ShapePrior

CHAIR = get_category("chair")


def _camera(points, az_deg, el_deg, focal=300.0):
    angles = geometry.view_to_euler(torch.tensor(math.radians(az_deg), dtype=torch.float64), torch.tensor(math.radians(el_deg), dtype=torch.float64))
    cam = geometry.to_camera_frame(points, geometry.euler_to_matrix(angles), torch.zeros(2, dtype=torch.float64))
    return cam, torch.tensor(focal, dtype=torch.float64)


def _hidden(az, el):
    y = torch.tensor(CHAIR.mean_shape * 40.0)
    cam, f = _camera(y, az, el)
    hidden = geometry.self_occlusion(cam, f, torch.as_tensor(CHAIR.surface_triangles))
    return {CHAIR.keypoint_names[i] for i in range(CHAIR.num_keypoints) if hidden[i]}


def test_self_occlusion_known_views():
    # level front view: nothing is behind the seat or the backrest
    assert _hidden(0, 5) == set()
    # looking down steeply from the front: the seat hides the back feet
    assert _hidden(0, 50) == {"foot_back_left", "foot_back_right"}
    # from behind: the backrest hides the front seat corners
    assert {"seat_front_left", "seat_front_right"} <= _hidden(180, 10)
    # straight from the side nothing planar lies between camera and keypoints
    assert _hidden(90, 0) == set()


def test_self_occlusion_single_triangle_analytic():
    tri = torch.tensor([[0, 1, 2]])
    # a triangle at z = 0 spanning x, y in [-10, 10]; a point behind it (z = +5) on the axis is hidden
    pts = torch.tensor([[-10.0, -10, 0], [30, -10, 0], [-10, 30, 0], [0, 0, 5], [0, 0, -5], [50, 50, 5]], dtype=torch.float64)
    hidden = geometry.self_occlusion(pts, torch.tensor(100.0, dtype=torch.float64), tri)
    assert hidden.tolist() == [False, False, False, True, False, False]


@pytest.mark.parametrize("residuals,azimuth_prior", [(0, False), (3, True)])
def test_refine_jacobian_matches_autodiff(residuals, azimuth_prior):
    prior = ShapePrior.from_ranges(CHAIR)
    if residuals:
        prior = prior.with_residuals(np.random.default_rng(1).normal(size=(50, 10, 3)), residuals)
    problem = _Problem(CHAIR, prior, RefineOptions(), torch.float64, "cpu")
    g = torch.Generator().manual_seed(0)
    if azimuth_prior:  # an image's azimuth belief per start (RefineOptions.view_sd_deg)
        # one for all starts: vmap passes one start at a time
        problem.azimuth_anchor, problem.azimuth_precision = torch.tensor([2.0], dtype=torch.float64), torch.tensor([3.0], dtype=torch.float64)
    x = torch.cat((torch.rand(6, 4 + residuals, generator=g), torch.full((6, 1), math.log(40.0)), torch.rand(6, 2, generator=g) * 3, torch.randn(6, 2, generator=g) * 20, torch.full((6, 1), math.log(250.0)), torch.randn(6, 1, generator=g) * 0.2), 1).double()
    obs = (torch.randn(6, 10, 2, generator=g) * 50 + 160).double()
    sw, sigma = torch.rand(6, 10, generator=g).double(), torch.full((6,), 5.0, dtype=torch.float64)
    jac, res = problem.linearise(x, obs, sw, sigma)
    ref = torch.func.vmap(torch.func.jacfwd(problem.residuals))(x, obs, sw, sigma)
    torch.testing.assert_close(res, problem.residuals(x, obs, sw, sigma))
    torch.testing.assert_close(jac, ref, atol=1e-9, rtol=1e-9)


def test_pack_unpack_round_trip():
    b = SkeletonSampler("chair").sample(20, torch.Generator().manual_seed(1), dtype=torch.float64)
    back = unpack_parameters(pack_parameters(b.params), CHAIR.num_bases)
    torch.testing.assert_close(back.project(CHAIR)[2], b.keypoints)


def test_refine_recovers_pose_from_a_wrong_start():
    b = SkeletonSampler("chair").sample(64, torch.Generator().manual_seed(2), dtype=torch.float64)
    az, el = b.params.view()
    prior = ShapePrior.from_ranges(CHAIR)
    init = ShapeCamera.from_angles(prior.mean_alpha(40.0).expand(64, -1), geometry.view_to_euler(az + 0.6, torch.full_like(el, 0.2)), torch.zeros(64, 2, dtype=torch.float64), torch.full((64,), 300.0, dtype=torch.float64))
    result = refine(CHAIR, b.keypoints, torch.ones(64, 10, dtype=torch.float64), init, prior, RefineOptions(occlusion_penalty=0.0))
    err = torch.rad2deg(geometry.wrap_angle(result.params.view()[0] - az).abs())
    assert float((err < 5).double().mean()) > 0.9
    # costs of the kept start never exceed those of the plain first start after alignment
    assert torch.all(result.cost <= result.costs[:, 0] + 1e-9)
    # missing keypoints may be NaN and do not break the fit
    kp = b.keypoints.clone()
    kp[:, 3] = float("nan")
    w = torch.ones(64, 10, dtype=torch.float64)
    w[:, 3] = 0
    again = refine(CHAIR, kp, w, init, prior)
    assert torch.isfinite(again.cost).all()


def test_shape_prior_from_shapes_and_dict_round_trip():
    rng = np.random.default_rng(0)
    rel = rng.normal([0.2, 0.1, 0.0, 0.1], [0.3, 0.2, 0.1, 0.05], size=(500, 4))
    prior = ShapePrior.from_relative_alpha(CHAIR, rel, source="test", shrink=0.0)
    np.testing.assert_allclose(prior.mean, rel.mean(0), atol=1e-12)
    np.testing.assert_allclose(prior.covariance, np.cov(rel.T, bias=True) + 1e-6 * np.eye(4), atol=1e-9)
    again = ShapePrior.from_dict(prior.to_dict())
    np.testing.assert_allclose(again.covariance, prior.covariance)
    # Mahalanobis distance of the mean is 0, of mean + 1 sd along a diagonal axis ~ 1 (after whitening)
    assert float(prior.mahalanobis(torch.tensor(prior.mean))) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError):
        ShapePrior.from_relative_alpha(CHAIR, rel[:, :3])


def test_keypoint_lifter_is_scale_equivariant():
    torch.manual_seed(0)
    net = KeypointLifter(CHAIR, width=64, blocks=1, hypotheses=2, dropout=0.0).eval()
    b = SkeletonSampler("chair").sample(8, torch.Generator().manual_seed(3))
    w = torch.ones(8, 10)
    centre = CHAIR.plane_size / 2
    scaled = (b.keypoints - centre) * 1.7 + centre
    h1, s1, _ = net(b.keypoints, w)
    h2, s2, _ = net(scaled, w)
    r1, r2 = net.codec.denormalise(h1.double()), net.codec.denormalise(h2.double())
    # scaling the plane by s scales alpha, t and f by s and leaves the rotation alone (Eq. 1);
    # raw vectors: [alpha (5), 1/f, r6, t]
    torch.testing.assert_close(r2[..., :5], r1[..., :5] * 1.7, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(r2[..., 5], r1[..., 5] / 1.7, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(r2[..., 6:12], r1[..., 6:12], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(r2[..., 12:], r1[..., 12:] * 1.7, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(s1, s2, rtol=1e-4, atol=1e-5)
    # a missing keypoint (NaN) is not the same input as a present one
    kp = b.keypoints.clone()
    kp[:, 0] = float("nan")
    w0 = w.clone()
    w0[:, 0] = 0
    h3, _, _ = net(kp, w0)
    assert torch.isfinite(h3).all() and not torch.allclose(h3, h1)


def test_lifting_sampler_visibility_and_targets():
    sampler = LiftingSampler(CHAIR, None, LiftingOptions(truncation=0.0, dropout=0.0, noise=0.0, outliers=0.0, roll_deg=0.0, soft_confidence=0.0))
    batch = sampler.sample(400, torch.Generator().manual_seed(4))
    # without noise the present keypoints are exactly the projection of the target parameters
    params = sampler.codec.decode(batch.params.double())
    proj = params.project(CHAIR)[2].float()
    present = batch.weights > 0
    torch.testing.assert_close(batch.keypoints[present], proj[present], atol=1e-3, rtol=0)
    assert torch.isnan(batch.keypoints[~present]).all()
    # self-occlusion hides some keypoints in some views, and never leaves fewer than min_visible
    assert 0 < int((~present).sum()) < present.numel() // 3
    assert int(present.sum(1).min()) >= 4
    # determinism
    again = sampler.sample(400, torch.Generator().manual_seed(4))
    torch.testing.assert_close(again.keypoints, batch.keypoints, equal_nan=True)


def test_lifting_sampler_makes_a_detectors_mistakes():
    exact = dict(truncation=0.0, dropout=0.0, noise=0.0, outliers=0.0, roll_deg=0.0)
    flip = torch.as_tensor(CHAIR.flip_permutation)
    paired = flip != torch.arange(CHAIR.num_keypoints)

    def draw(**options):
        sampler = LiftingSampler(CHAIR, None, LiftingOptions(**exact, **options))
        batch = sampler.sample(300, torch.Generator().manual_seed(7))
        truth = sampler.codec.decode(batch.params.double()).project(CHAIR)[2].float()
        radius = geometry.keypoint_radius(truth.double(), torch.ones(truth.shape[:2], dtype=torch.float64))[1].float()
        return batch, truth, radius

    # every visible keypoint with a mirror partner is reported at the partner's projection, the others where they are
    batch, truth, _ = draw(swaps=1.0, soft_confidence=0.0)
    present = batch.weights > 0
    torch.testing.assert_close(batch.keypoints[present & paired], truth[:, flip][present & paired], atol=1e-3, rtol=0)
    torch.testing.assert_close(batch.keypoints[present & ~paired], truth[present & ~paired], atol=1e-3, rtol=0)

    # displaced reports lie 0.2-1.2 object radii from the truth
    batch, truth, radius = draw(displaced=1.0)
    off = ((batch.keypoints - truth).norm(dim=-1) / radius.unsqueeze(1))[batch.weights > 0]
    assert off.min() > 0.2 - 1e-4 and off.max() < 1.2 + 1e-4

    # hidden keypoints reported anyway: all of them with hidden_reports=1, 40 % of the paired ones at the partner's place,
    # and in soft-confidence samples the wrong reports carry wrong_confidence, the right ones (0.3, 1]
    plain, _, _ = draw(soft_confidence=0.0)
    hidden = plain.weights == 0
    assert hidden.any()
    batch, truth, _ = draw(hidden_reports=1.0, soft_confidence=1.0, wrong_confidence=(0.1, 0.2))
    assert (batch.weights > 0).all()
    at_partner = (batch.keypoints - truth[:, flip]).norm(dim=-1) < 1e-3
    share = at_partner[hidden & paired].float().mean().item()
    assert 0.3 < share < 0.5
    assert ((batch.weights[hidden] >= 0.1) & (batch.weights[hidden] <= 0.2)).all()
    assert (batch.weights[~hidden] >= 0.3).all()
    # the visible keypoints are untouched
    torch.testing.assert_close(batch.keypoints[~hidden], truth[~hidden], atol=1e-3, rtol=0)


def test_detector_error_statistics_recover_the_samplers_options():
    """Round trip: the statistics of keypoints drawn with known detector options give those options back."""
    common = dict(truncation=0.0, dropout=0.1, outliers=0.0, roll_deg=0.0, soft_confidence=1.0, noise=0.05)

    def draw(**options):
        sampler = LiftingSampler(CHAIR, None, LiftingOptions(**common, **options))
        batch = sampler.sample(2000, torch.Generator().manual_seed(3))
        return batch, sampler.codec.decode(batch.params.double()).project(CHAIR)[2].float()

    plain, _ = draw()
    batch, truth = draw(displaced=0.1, swaps=0.08, hidden_reports=0.3, wrong_confidence=(0.3, 0.6))
    stats = detector_error_statistics(torch.nan_to_num(batch.keypoints), batch.weights, truth, plain.weights > 0, CHAIR.flip_permutation)
    assert stats["visible_reported"] == 1.0
    assert stats["noise_per_axis"] == pytest.approx(0.05, abs=0.005)
    # a displaced report may land nearer the partner and a swap of close partners within 0.2 radii
    assert stats["displaced"] + stats["swaps"] == pytest.approx(0.18, abs=0.03)
    assert 0.05 < stats["displaced"] < 0.1 and 0.06 < stats["swaps"] < 0.11
    assert stats["hidden_reports"] == pytest.approx(0.3, abs=0.03)
    assert 0.35 < stats["hidden_reports_at_partner"] < 0.55
    assert stats["confidence_median_wrong"] == pytest.approx(0.45, abs=0.05) and stats["confidence_median_right"] > 0.6


def test_check_keypoints_reports_bad_rows():
    good = SkeletonSampler("chair").sample(1, torch.Generator().manual_seed(5)).keypoints[0].numpy()
    rows = np.stack([good, good, good, good, good])
    rows[1, :8] = np.nan  # 2 visible
    rows[2, 0, 0] = np.inf
    rows[3] = 5.0  # all identical
    xy, w, problems = check_keypoints(rows, CHAIR)
    assert [r for r, _ in problems] == [1, 2, 3]
    assert "2 visible" in problems[0][1] and "inf" in problems[1][1] and "same position" in problems[2][1]
    with pytest.raises(InputError, match="10 keypoints"):
        check_keypoints(rows[:, :8], CHAIR)
    _, _, problems = check_keypoints(rows[:1], CHAIR, confidence=np.full((1, 10), 1.5))
    assert problems and "confidences" in problems[0][1]


def test_limb_occlusion_analytic():
    # keypoint 2 sits 1 px beside the projection of edge (0, 1) and behind it: hidden; keypoint 3 is
    # beside it but in front; keypoint 4 is behind but 10 px away
    cam = torch.tensor([[0.0, -10, 0], [0, 10, 0], [1, 0, 20], [1, 0, -20], [10, 0, 20]], dtype=torch.float64)
    uv = cam[:, :2].clone()
    hidden = geometry.limb_occlusion(cam, uv, torch.tensor([[0, 1]]), torch.tensor(2.0, dtype=torch.float64))
    assert hidden.tolist() == [False, False, True, False, False]


def test_a_mixture_prior_has_the_moments_of_samples_drawn_from_its_components():
    rng = np.random.default_rng(3)
    real = ShapePrior.from_relative_alpha(CHAIR, rng.normal([0.2, 0.1, 0.0, 0.1], [0.3, 0.2, 0.1, 0.05], size=(500, 4)), source="real")
    real = real.with_residuals(rng.normal(0, 0.05, size=(500, 10, 3)), 2)
    ranges = ShapePrior.from_ranges(CHAIR)
    mixed = ShapePrior.mixture([real, ranges], [0.7, 0.3])
    # independent truth: the moments of 400k draws, 70 % from one Gaussian and 30 % from the other
    n = 400_000
    pick = rng.random(n) < 0.7
    draws = np.where(pick[:, None], rng.multivariate_normal(real.mean, real.covariance, n), rng.multivariate_normal(ranges.mean, ranges.covariance, n))
    assert np.allclose(mixed.mean, draws.mean(0), atol=0.01)
    assert np.allclose(mixed.covariance, np.cov(draws.T), atol=0.01 * np.abs(mixed.covariance).max())
    # the residual directions are the real shapes' (the ranges have none), their spread that of 70 % of the draws
    assert np.array_equal(mixed.residual_bases, real.residual_bases) and np.allclose(mixed.residual_sd, real.residual_sd * np.sqrt(0.7))
    only_real = ShapePrior.mixture([real, ranges], [1.0, 0.0])
    assert np.allclose(only_real.mean, real.mean) and np.allclose(only_real.covariance, real.covariance)
    assert ShapePrior.from_dict(mixed.to_dict()).source == mixed.source
    with pytest.raises(ValueError, match="one category"):
        ShapePrior.mixture([real, ShapePrior.from_ranges("sofa")], [0.5, 0.5])
    with pytest.raises(ValueError, match="residual bases"):
        ShapePrior.mixture([real, real], [0.5, 0.5])
    with pytest.raises(ValueError, match="non-negative weight"):
        ShapePrior.mixture([real, ranges], [1.0])


def test_residual_bases_let_refinement_fit_real_detail():
    """A shape made of the basis plus a known residual direction is fitted exactly only when the
    prior carries that direction."""
    rng = np.random.default_rng(0)
    direction = rng.normal(size=(10, 3))
    direction /= np.linalg.norm(direction)
    rel = rng.normal([0.2, 0.1, 0.0, 0.1], [0.3, 0.2, 0.1, 0.05], size=(200, 4))
    base = ShapePrior.from_relative_alpha(CHAIR, rel)
    residuals = direction[None] * rng.normal(0, 0.3, size=(200, 1, 1)) + 0.001 * rng.normal(size=(200, 10, 3))
    rich = base.with_residuals(residuals, 1)
    assert rich.num_residual == 1 and abs(abs(float((rich.residual_bases[0] * direction).sum())) - 1) < 1e-3
    assert ShapePrior.from_dict(rich.to_dict()).num_residual == 1
    # ground truth: mean relative alpha plus 0.4 of the direction, seen from az 30, el 15
    shape = CHAIR.mean_shape + np.tensordot(base.mean, CHAIR.bases_array[1:], axes=1) + 0.4 * direction
    cam, f = _camera(torch.tensor(shape * 40.0), 30, 15)
    kp = geometry.perspective_project(cam, f, CHAIR.plane_size).unsqueeze(0)
    init = ShapeCamera.from_angles(base.mean_alpha(40.0).unsqueeze(0), geometry.view_to_euler(torch.tensor([0.7]), torch.tensor([0.2])).double(), torch.zeros(1, 2, dtype=torch.float64), torch.full((1,), 300.0, dtype=torch.float64))
    w = torch.ones(1, 10, dtype=torch.float64)
    plain = refine(CHAIR, kp, w, init, base, RefineOptions(flips=False, iterations=40))
    detailed = refine(CHAIR, kp, w, init, rich, RefineOptions(flips=False, iterations=40))
    assert float(detailed.reprojection_rms[0]) < 0.4 * float(plain.reprojection_rms[0])
    # the coefficient is found, shrunk toward the prior's 0 as a posterior mode should be
    coefficient = float(detailed.residual[0, 0]) * float((rich.residual_bases[0] * direction).sum())
    assert 0.2 < coefficient < 0.42


def test_anchored_prior_keeps_the_start_shape():
    """anchor=1 with a tiny spread pins the shape to each start's own (the network's) shape; anchor=0
    lets the data move it."""
    b = SkeletonSampler("chair").sample(8, torch.Generator().manual_seed(9), dtype=torch.float64)
    prior = ShapePrior.from_ranges(CHAIR)
    start_alpha = prior.mean_alpha(40.0).expand(8, -1).clone()
    start_alpha[:, 1] += 8.0  # a wrong leg length
    init = ShapeCamera(start_alpha, b.params.r6, b.params.translation, b.params.focal)
    w = torch.ones(8, 10, dtype=torch.float64)
    pinned = refine(CHAIR, b.keypoints, w, init, prior, RefineOptions(anchor=1.0, anchor_scale=1e-4, flips=False))
    free = refine(CHAIR, b.keypoints, w, init, prior, RefineOptions(anchor=0.0, flips=False))
    rel = lambda p: p.alpha[:, 1:] / p.alpha[:, :1]
    torch.testing.assert_close(rel(pinned.params).double(), rel(init), atol=1e-3, rtol=0)
    assert (rel(free.params).double() - rel(b.params)).abs().mean() < (rel(init) - rel(b.params)).abs().mean()


def test_a_bank_of_sources_with_no_share_is_none(shared_data):
    """Held-out validation shapes for sofas: KeypointNet has none, PASCAL3D+ is not split, so there is no bank."""
    from interp3d.data.lifting import bank_from_folder

    assert bank_from_folder(shared_data, "sofa", "test", shares={"keypointnet": 1.0, "pascal3d": 0.0}) is None
    assert bank_from_folder(shared_data, "sofa", "train") is not None


def test_refinement_survives_a_singular_step():
    """A start whose damped normal equations are singular in float32 (no keypoints at all, the roll
    column empty, the damping at its floor) takes no step instead of failing the whole batch."""
    from interp3d.refine import RefineOptions, refine
    from interp3d.shape_model import get_category

    cat = get_category("swivelchair")
    gen = torch.Generator().manual_seed(0)
    from interp3d.data.synthetic import SkeletonSampler

    batch = SkeletonSampler(cat).sample(3, gen, dtype=torch.float64)
    _, _, uv = batch.params.project(cat)
    weights = torch.ones(3, cat.num_keypoints)
    weights[1] = 0.0  # nothing observed
    result = refine(cat, uv.float(), weights, batch.params, options=RefineOptions(damping=1e-12, iterations=6))
    assert torch.isfinite(result.structure[[0, 2]]).all()
    assert result.reprojection_rms[[0, 2]].max() < 3.0  # plane px; the prior pulls the shape a little


def test_keypoint_lifter_without_a_radius_keeps_a_plausible_size():
    """Fewer than 2 confident keypoints (weak heatmaps of a real photo) give no radius to normalise
    by: the lifter reads the plane at scale 1 instead of shrinking the object to nothing (it once
    came out at 1e-3 of its size); a blob of keypoints is bounded likewise."""
    torch.manual_seed(0)
    net = KeypointLifter(CHAIR, width=64, blocks=1, hypotheses=2, dropout=0.0).eval()
    b = SkeletonSampler("chair").sample(4, torch.Generator().manual_seed(3))
    none, one = torch.zeros(4, 10), torch.zeros(4, 10)
    one[:, 3] = 1.0
    blob = b.keypoints[:, :1].expand(-1, 10, -1) + 1e-4 * torch.randn(4, 10, 2)
    assert torch.equal(net.normalising_scale(b.keypoints, none), torch.ones(4))
    assert torch.equal(net.normalising_scale(b.keypoints, one), torch.ones(4))
    assert torch.allclose(net.normalising_scale(blob, torch.ones(4, 10)), torch.full((4,), 1 / KeypointLifter.MIN_RADIUS_FRACTION))
    _, radius = geometry.keypoint_radius(b.keypoints, torch.ones(4, 10))
    torch.testing.assert_close(net.normalising_scale(b.keypoints, torch.ones(4, 10)), KeypointLifter.RADIUS_FRACTION * CHAIR.plane_size / radius)
    for weights in (none, one):  # the answer in the plane is the answer in the normalised frame
        plane, _, frame = net(b.keypoints, weights)
        torch.testing.assert_close(plane, frame, rtol=1e-5, atol=1e-5)


def test_refinement_without_keypoints_keeps_the_start_in_view():
    """No keypoint observed (all weights 0): the fit has only its priors, and the start keeps its
    size and place in the image (the scale/centroid alignment once shrank it 400-fold to a point);
    one keypoint moves the start's centroid onto it without rescaling."""
    from interp3d.refine import refine

    b = SkeletonSampler("chair").sample(4, torch.Generator().manual_seed(5), dtype=torch.float64)
    _, _, uv = b.params.project(CHAIR)
    extent = (uv.amax(1) - uv.amin(1)).amax(-1)
    result = refine(CHAIR, uv, torch.zeros(4, 10, dtype=torch.float64), b.params, ShapePrior.from_ranges(CHAIR))
    _, _, fitted = result.params.project(CHAIR)
    fitted_extent = (fitted.amax(1) - fitted.amin(1)).amax(-1)
    assert ((fitted_extent / extent) > 0.5).all() and ((fitted_extent / extent) < 2.0).all()
    assert (fitted.mean(1) - uv.mean(1)).norm(dim=-1).max() < 0.2 * extent.min()


def test_nearest_alternatives_move_only_far_keypoints_to_a_nearer_strong_mode():
    from interp3d.refine import _nearest_alternatives

    projected = torch.zeros(1, 4, 2, dtype=torch.float64)
    observed = torch.tensor([[[30.0, 0.0], [2.0, 0.0], [30.0, 0.0], [30.0, 0.0]]], dtype=torch.float64)
    weights = torch.tensor([[0.8, 0.8, 0.8, 0.0]], dtype=torch.float64)
    alternatives = torch.tensor([[[[30.0, 0.0], [1.0, 1.0], [5.0, 0.0]]] * 4], dtype=torch.float64)
    alternative_weights = torch.tensor([[[0.8, 0.5, 0.6], [0.8, 0.5, 0.6], [0.8, 0.1, 0.6], [0.8, 0.5, 0.6]]], dtype=torch.float64)
    options = RefineOptions(mode_distance=0.05, mode_min_fraction=0.3)
    moved, moved_weights = _nearest_alternatives(observed, weights, projected, alternatives, alternative_weights, options, plane_size=100.0)
    # 0: far, moved to the nearest mode; 1: within 5 % of the side, stays; 2: the nearest mode is too
    # weak (0.1 < 0.3 x 0.8), the next one; 3: not observed, stays
    assert moved[0].tolist() == [[1.0, 1.0], [2.0, 0.0], [5.0, 0.0], [30.0, 0.0]]
    assert moved_weights[0].tolist() == [0.5, 0.8, 0.6, 0.0]


def test_a_refit_at_the_heatmaps_other_modes_recovers_misplaced_keypoints():
    """Three keypoints of exact chairs are observed 15 % of the plane away from their true places
    (a 2D module's wrong mode), the true places offered as alternatives: the refit moves them back
    and fits the structure as well as exact keypoints do, where the robust fit that only
    down-weights them is pulled off."""
    from interp3d.evaluation.metrics import structure_error

    b = SkeletonSampler("chair").sample(32, torch.Generator().manual_seed(5), dtype=torch.float64)
    prior = ShapePrior.from_ranges(CHAIR)
    truth = b.keypoints
    observed = truth.clone()
    observed[:, [1, 3, 6]] += torch.tensor([0.15, 0.045], dtype=torch.float64) * CHAIR.plane_size
    weights = torch.ones(32, CHAIR.num_keypoints, dtype=torch.float64)
    alternatives = torch.stack((observed, truth), dim=2)
    alternative_weights = torch.ones(32, CHAIR.num_keypoints, 2, dtype=torch.float64)
    options = RefineOptions(occlusion_penalty=0.0, anchor=0.0)

    def error(keypoints, options, **kwargs):
        return structure_error(refine(CHAIR, keypoints, weights, b.params, prior, options, **kwargs).structure.numpy(), b.structure.numpy()).mean()

    exact, kept = error(truth, options), error(observed, options)
    refit = error(observed, replace(options, mode_refit=True), alternatives=alternatives, alternative_weights=alternative_weights)
    assert kept > 1.3 * exact and refit == pytest.approx(exact, rel=0.05)
    # without alternatives the option changes nothing
    assert error(observed, replace(options, mode_refit=True)) == kept
    with pytest.raises(ValueError, match="alternatives must have shape"):
        refine(CHAIR, observed, weights, b.params, prior, options, alternatives=alternatives[:, :5], alternative_weights=alternative_weights[:, :5])


def test_selection_penalises_a_fit_collapsed_below_the_keypoints_spread():
    """A tiny skeleton seen with a tiny focal leaves every keypoint a cheap outlier; selection charges
    collapse_penalty per unit of observed weight per e-fold below half the observed spread, nothing
    to a fit of the keypoints' own size."""
    from interp3d.refine import _selection_cost

    b = SkeletonSampler("chair").sample(1, torch.Generator().manual_seed(3), dtype=torch.float64)
    options = RefineOptions(occlusion_penalty=0.0)
    problem = _Problem(CHAIR, ShapePrior.from_ranges(CHAIR), options, torch.float64, "cpu")
    truth = pack_parameters(b.params, problem.r)
    collapsed = truth.clone()
    collapsed[:, problem.m] -= math.log(10.0)  # alpha / 10 ...
    collapsed[:, problem.m + 5] -= math.log(10.0)  # ... and focal / 10
    observed = problem.project(truth)[1]
    torch.testing.assert_close(observed, b.keypoints)  # the packed truth projects to the sample's keypoints
    w = torch.full((1, CHAIR.num_keypoints), 0.5, dtype=torch.float64)
    zero = torch.zeros(1, dtype=torch.float64)
    r_obs = geometry.keypoint_radius(observed, w)[1]
    r_fit = geometry.keypoint_radius(problem.project(collapsed)[1], w)[1]
    assert float(r_obs / r_fit) > 4  # the collapsed fit is far under half the spread
    assert float(_selection_cost(problem, CHAIR, truth, zero, w, r_obs)) == pytest.approx(0.0, abs=1e-9)
    expected = 10.0 * 5.0 * (math.log(float(r_obs / r_fit)) - math.log(2.0))
    assert float(_selection_cost(problem, CHAIR, collapsed, zero, w, r_obs)) == pytest.approx(expected)
    problem.options = replace(options, collapse_penalty=0.0)
    assert float(_selection_cost(problem, CHAIR, collapsed, zero, w, r_obs)) == 0.0
