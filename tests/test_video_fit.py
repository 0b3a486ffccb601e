"""Fitting one rigid object along a video: known-answer videos from the shape model, with the
failures the 2D module makes (front/back flips, a frame of garbage, hidden keypoints)."""

import math

import numpy as np
import pytest
import torch

from interp3d import geometry
from interp3d.evaluation.metrics import structure_error
from interp3d.params import ShapeCamera
from interp3d.shape_model import get_category
from interp3d.video_fit import fit_video


def _video(t=12, seed=0):
    """A chair seen along an orbit from azimuth 20 to 140 deg: true params (T,), keypoints, visibility."""
    cat = get_category("chair")
    rng = np.random.default_rng(seed)
    rel = torch.tensor([0.0] + list(rng.uniform(0.2, 0.8, cat.num_bases - 1)), dtype=torch.float64)
    rel[0] = 1.0
    alpha = (40.0 * rel).expand(t, -1)
    az = torch.linspace(math.radians(20), math.radians(140), t, dtype=torch.float64)
    el = torch.full((t,), math.radians(20), dtype=torch.float64)
    r6 = geometry.euler_to_sincos(geometry.view_to_euler(az, el))
    params = ShapeCamera(alpha, r6, torch.zeros(t, 2, dtype=torch.float64), torch.full((t,), 400.0, dtype=torch.float64))
    _, cam, uv = params.project(cat)
    hidden = geometry.self_occlusion(cam, params.focal, torch.as_tensor(cat.surface_triangles))
    return cat, params, uv, ~hidden


def _flip_front_back(params: ShapeCamera, frames) -> ShapeCamera:
    az, el = params.view()
    az = az.clone()
    az[frames] = az[frames] + math.pi
    return ShapeCamera(params.alpha, geometry.euler_to_sincos(geometry.view_to_euler(az, el)), params.translation, params.focal)


def test_track_and_shared_shape_recover_the_video_and_label_hidden_keypoints():
    cat, truth, uv, visible = _video()
    weights = visible.double()
    observed = torch.where(visible.unsqueeze(-1), uv + torch.randn(uv.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 0.5, torch.full_like(uv, float("nan")))
    init = _flip_front_back(truth, [2, 5, 9])  # the lifter said "back" in three frames
    fit = fit_video(cat, observed, weights, init)
    az, _ = fit.params.view()
    error = torch.rad2deg(geometry.wrap_angle(az - truth.view()[0]).abs())
    assert error.max() < 5.0
    assert (fit.frame_source == 0).all()
    # hidden keypoints get labels at their true projections; visible ones agree with the input
    hidden = ~visible & fit.visible
    reprojection_error = torch.linalg.norm(fit.keypoints - uv, dim=-1)  # plane px (plane side 320), input noise 0.5 px
    assert reprojection_error.median() < 1.5 and reprojection_error.max() < 5.0
    assert (fit.pseudo_label == fit.visible).all() and not hidden.any()
    true_rel = truth.alpha[0, 1:] / truth.alpha[0, 0]
    true_structure = geometry.structure_from_alpha(torch.cat((torch.ones(1, dtype=torch.float64), true_rel)).unsqueeze(0), cat.bases(torch.float64))
    assert structure_error(fit.structure[None].numpy(), true_structure.numpy())[0] < 0.03  # normalised RMSE (scale and depth trade off)


def test_ambiguous_and_broken_frames_take_the_track():
    cat, truth, uv, visible = _video(seed=3)
    weights = visible.double().clone()
    observed = torch.where(visible.unsqueeze(-1), uv, torch.full_like(uv, float("nan")))
    # frame 4: only two keypoints (front/back cannot be told); frame 7: garbage from a failed 2D module
    weights[4] = 0
    weights[4, :2] = visible[4, :2].double()
    observed[7] = torch.rand(cat.num_keypoints, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * cat.plane_size
    weights[7] = 1.0
    init = _flip_front_back(truth, [4, 7])
    fit = fit_video(cat, observed, weights, init)
    assert fit.frame_source[7] == 1 and fit.frame_source[4] == 1  # cameras carried over from the neighbours
    az, _ = fit.params.view()
    error = torch.rad2deg(geometry.wrap_angle(az - truth.view()[0]).abs())
    assert error[7] < 15.0 and error[4] < 15.0 and error.max() < 15.0
    # the garbage frame's pseudo-labels are the re-projection, near the truth, not its own keypoints
    assert fit.pseudo_label[7].any()
    assert torch.linalg.norm(fit.keypoints[7] - uv[7], dim=-1)[fit.pseudo_label[7]].median() < 0.08 * cat.plane_size


def test_bad_shapes_are_refused():
    cat, truth, uv, visible = _video(t=3)
    with pytest.raises(ValueError, match="video fit needs keypoints"):
        fit_video(cat, uv[:, :5], visible.double()[:, :5], truth)
