"""The viewpoint head: azimuth-bin encoding (mirroring checked against the projection itself),
refinement guided by the image's azimuth belief, the head through training, export and ONNX."""

from __future__ import annotations

import math
from dataclasses import asdict

import pytest
import torch

from interp3d import geometry, viewpoint
from interp3d.config import preset
from interp3d.data.synthetic import SkeletonSampler
from interp3d.models.serialization import OnnxInterpreter, build_interpreter, export_interpreter, load_interpreter
from interp3d.params import ShapeCamera
from interp3d.refine import RefineOptions, refine
from interp3d.shape_model import get_category
from interp3d.shape_prior import ShapePrior


def test_soft_targets_peak_at_the_azimuth_and_wrap_around():
    az = torch.tensor([0.0, math.radians(352.0), math.radians(97.5), float("nan")])
    t = viewpoint.soft_targets(az, 24, sd_bins=1.0)
    assert t.shape == (4, 24)
    torch.testing.assert_close(t[:3].sum(-1), torch.ones(3))
    assert t[3].abs().sum() == 0  # unknown azimuth: no target
    assert t[0].argmax() == 0 and t[0, 1] == pytest.approx(float(t[0, 23]), rel=1e-5)  # symmetric about bin 0
    assert t[1].argmax() == 23 and t[1, 0] > t[1, 22]  # 352 deg: next to 345, closer to 0 than to 330
    assert t[2, 6] == pytest.approx(float(t[2, 7]), rel=1e-5)  # 97.5 deg lies half-way between the 90 and 105 deg bins


def test_azimuth_log_prob_interpolates_between_bin_centres():
    probs = torch.tensor([[0.1, 0.5, 0.3, 0.1]])
    logp = probs.log()
    centres = viewpoint.bin_centres(4, torch.float64).float()
    torch.testing.assert_close(viewpoint.azimuth_log_prob(logp, centres.unsqueeze(0)).exp(), probs)
    half = viewpoint.azimuth_log_prob(logp, torch.tensor([[math.pi / 4, 7 * math.pi / 4, -math.pi / 4]])).exp()
    torch.testing.assert_close(half, torch.tensor([[0.3, 0.1, 0.1]]))  # (0.1 + 0.5) / 2, (0.1 + 0.1) / 2, wrapped
    assert viewpoint.top_azimuths(logp, 2)[0].tolist() == pytest.approx([math.pi / 2, math.pi])


def test_azimuth_mass_integrates_the_belief_over_a_window():
    bins = 24  # 15 deg a bin
    uniform = torch.full((1, bins), 1.0 / bins)
    for half_width in (5.0, 7.5, 30.0, 100.0, 180.0):  # a uniform belief: the window's share of the circle
        mass = viewpoint.azimuth_mass(uniform, torch.tensor([math.radians(3.0)]), math.radians(half_width))
        assert float(mass) == pytest.approx(2 * half_width / 360, abs=1e-6)
    one_bin = torch.zeros(1, bins)
    one_bin[0, 2] = 1.0  # all of it on the bin centred at 30 deg, spanning 22.5..37.5
    at = lambda az, period=2 * math.pi: float(viewpoint.azimuth_mass(one_bin, torch.tensor([math.radians(az)]), math.radians(30.0), period))
    assert at(30.0) == pytest.approx(1.0) and at(-7.5) == pytest.approx(0.0, abs=1e-6) and at(0.0) == pytest.approx(0.5)
    assert at(390.0) == pytest.approx(1.0) and at(210.0) == pytest.approx(0.0, abs=1e-6)
    assert at(210.0, math.pi) == pytest.approx(1.0)  # a half-turn category: the turned reading counts


@pytest.mark.parametrize("name", ["chair", "sofa", "bed"])
def test_mirrored_image_shows_the_mirrored_azimuth(name):
    """Mirroring the projection of a pose at azimuth a and swapping left/right labels gives exactly
    the projection of the same shape at azimuth -a (camera x negated: t_x too)."""
    cat = get_category(name)
    batch = SkeletonSampler(cat).sample(16, torch.Generator().manual_seed(0), dtype=torch.float64)
    p = batch.params
    az, el = p.view()
    _, _, uv = p.project(cat)
    mirrored = uv.clone()
    mirrored[..., 0] = cat.plane_size - uv[..., 0]
    mirrored = mirrored[:, list(cat.flip_permutation)]
    # the sampled deformations are left/right symmetric, so the mirrored object is the same shape
    other = ShapeCamera.from_angles(p.alpha, geometry.view_to_euler(viewpoint.mirrored_azimuth(az), el), p.translation * torch.tensor([-1.0, 1.0], dtype=torch.float64), p.focal)
    torch.testing.assert_close(other.project(cat)[2], mirrored, atol=1e-8, rtol=0)


def test_the_image_azimuth_belief_starts_and_selects_the_fit():
    cat = get_category("chair")
    batch = SkeletonSampler(cat).sample(64, torch.Generator().manual_seed(2), dtype=torch.float64)
    az, el = batch.params.view()
    prior = ShapePrior.from_ranges(cat)
    n = len(az)

    def start(azimuth):
        return ShapeCamera.from_angles(prior.mean_alpha(40.0).expand(n, -1), geometry.view_to_euler(azimuth, torch.full_like(el, 0.2)), torch.zeros(n, 2, dtype=torch.float64), torch.full((n,), 300.0, dtype=torch.float64))

    def recovered(result):
        return float((torch.rad2deg(geometry.wrap_angle(result.params.view()[0] - az).abs()) < 5).double().mean())

    weights = torch.ones(n, cat.num_keypoints, dtype=torch.float64)
    options = RefineOptions(flips=False, occlusion_penalty=0.0)
    back_to_front = start(az + math.pi)
    assert recovered(refine(cat, batch.keypoints, weights, back_to_front, prior, options)) < 0.8  # stuck behind the chair
    belief = viewpoint.soft_targets(az.float(), 24, 1.5).clamp_min(1e-4).log()
    assert recovered(refine(cat, batch.keypoints, weights, back_to_front, prior, options, view_log_probs=belief)) > 0.95
    # a wrong belief does not override keypoints that only the true pose explains
    wrong = viewpoint.soft_targets((az + math.pi).float(), 24, 1.5).clamp_min(1e-4).log()
    assert recovered(refine(cat, batch.keypoints, weights, start(az), prior, options, view_log_probs=wrong)) > 0.95
    with pytest.raises(ValueError, match="view_log_probs must have shape"):
        refine(cat, batch.keypoints, weights, back_to_front, prior, options, view_log_probs=belief[:3])


def _model_config(**overrides):
    return asdict(preset("cpu-small").model) | {
        "image_size": 64, "backbone": "efficientnet_lite0", "decoder_channels": 16, "lifter": "keypoints", "keypoint_lifter_width": 32, "lifter_hypotheses": 2, "view_bins": 12,
    } | overrides


def test_viewpoint_head_through_export_and_onnx(tmp_path):
    torch.manual_seed(0)
    model = build_interpreter("chair", _model_config(), 16)
    images = torch.rand(3, 3, 64, 64)
    out = model(images)
    assert out.view_logits.shape == (3, 12)
    out.view_logits.logsumexp(-1).sum().backward()
    assert model.keypoint_net.encoder._conv_stem.weight.grad.abs().sum() > 0  # the head trains the encoder
    model.eval()
    path = export_interpreter(model, tmp_path / "chair.safetensors", half=True)
    again = load_interpreter(path)
    assert again.view_bins == 12
    with torch.no_grad():
        a, b = model(images), again(images)
    torch.testing.assert_close(b.view_logits, a.view_logits, atol=0.05, rtol=0.05)
    onnx_out = OnnxInterpreter(again, threads=1)(images)
    torch.testing.assert_close(onnx_out.view_logits, b.view_logits, atol=1e-4, rtol=1e-4)
    kp, w = again.heatmap_keypoints(b.heatmaps)  # refinement of an output with a viewpoint head
    refined, _ = again.refine(b, kp, w)
    assert refined.structure.shape == (3, 10, 3)
    from interp3d.inference import Predictor

    preds = Predictor(again).predict_arrays([(torch.rand(80, 70, 3) * 255).byte().numpy()], ["noise.png"])
    assert 0.0 <= preds[0].extra["view_head_azimuth_deg"] < 360.0
    with pytest.raises(ValueError, match="needs a pretrained encoder"):
        build_interpreter("chair", _model_config(backbone="hourglass"), 16)


@pytest.mark.parametrize("name", ["chair", "swivelchair", "sofa"])
def test_flip_test_merges_the_mirrored_half_back_onto_the_image(name):
    """Heatmaps rendered at keypoints and at their mirror images (x -> S - x, left/right labels
    swapped), and beliefs peaked at an azimuth and at its mirror (-a): the flip test's merge of
    the two halves gives back the first half's exactly (no blur from a wrong pixel or label map)."""
    from interp3d.heatmaps import render_heatmaps
    from interp3d.models.interpreter import merge_mirrored

    cat = get_category(name)
    size = 32
    g = torch.Generator().manual_seed(1)
    keypoints = torch.rand(5, cat.num_keypoints, 2, generator=g) * (size - 4) + 2
    visible = torch.rand(5, cat.num_keypoints, generator=g) > 0.2
    mirrored = keypoints.clone()
    mirrored[..., 0] = size - keypoints[..., 0]
    perm = list(cat.flip_permutation)
    heatmaps = render_heatmaps(keypoints, size, 1.5, visible=visible)
    heatmaps_of_mirror = render_heatmaps(mirrored[:, perm], size, 1.5, visible=visible[:, perm])
    azimuth = torch.tensor([0.1, 1.7, 3.0, 4.4, 6.0])
    logits = viewpoint.soft_targets(azimuth, 24, 1.3).log()
    logits_of_mirror = viewpoint.soft_targets(viewpoint.mirrored_azimuth(azimuth), 24, 1.3).log()
    (merged,), merged_logits = merge_mirrored([torch.cat([heatmaps, heatmaps_of_mirror])], torch.cat([logits, logits_of_mirror]), perm, 5)
    torch.testing.assert_close(merged, heatmaps, atol=1e-5, rtol=0)
    torch.testing.assert_close(merged_logits.exp(), logits.exp(), atol=1e-5, rtol=0)
    wrong = merge_mirrored([torch.cat([heatmaps, heatmaps_of_mirror])], None, list(range(cat.num_keypoints)), 5)[0][0]
    assert (wrong - heatmaps).abs().max() > 0.3  # without the left/right swap the halves disagree


def test_flip_test_through_the_interpreter_onnx_and_predictor(tmp_path):
    """The flip test's prediction of a mirrored image is the mirror of its prediction of the image
    (heatmaps mirrored with labels swapped, azimuth bin i <-> -i), in torch and ONNX alike; the
    Predictor takes a model's recommendation from its header."""
    torch.manual_seed(0)
    model = build_interpreter("chair", _model_config(), 16).eval()
    cat = model.category
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        plain = model(images)
        a, b = model(images, flip_test=True), model(images.flip(-1), flip_test=True)
    assert (a.heatmaps - plain.heatmaps).abs().max() > 1e-4  # the mirrored image changes the answer
    torch.testing.assert_close(b.heatmaps, a.heatmaps.flip(-1)[:, list(cat.flip_permutation)], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(b.view_logits, a.view_logits[:, (-torch.arange(12)) % 12], atol=1e-5, rtol=1e-4)
    onnx_out = OnnxInterpreter(model, threads=1)(images, flip_test=True)
    torch.testing.assert_close(onnx_out.heatmaps, a.heatmaps, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(onnx_out.view_logits, a.view_logits, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(onnx_out.structure, a.structure, atol=1e-3, rtol=1e-3)
    from interp3d.inference import Predictor

    path = export_interpreter(model, tmp_path / "chair.safetensors", info={"flip_test_default": True})
    assert Predictor(load_interpreter(path)).flip_test and not Predictor(load_interpreter(path), flip_test=False).flip_test
    assert not Predictor(model).flip_test  # no recommendation: off
    photo = (torch.rand(70, 90, 3) * 255).byte().numpy()
    with_flip = Predictor(load_interpreter(path), refine=False).predict_arrays([photo], ["p.png"])[0]
    without = Predictor(load_interpreter(path), refine=False, flip_test=False).predict_arrays([photo], ["p.png"])[0]
    assert abs(with_flip.confidence - without.confidence).max() > 1e-4  # the Predictor ran the flip test


def test_predictions_carry_the_heads_support_for_their_azimuth(tmp_path):
    """Prediction.azimuth_confidence is the head's belief (kept in extra) integrated within 30 deg
    of the answer, recomputed for smoothed answers; a lifted prediction has no head and none."""
    import numpy as np

    from interp3d.inference import Predictor

    torch.manual_seed(1)
    model = build_interpreter("chair", _model_config(), 16).eval()
    predictor = Predictor(model, refine=False)
    frames = [(torch.rand(60, 60, 3) * 255).byte().numpy() for _ in range(3)]
    preds = predictor.predict_arrays(frames, [f"f{i}.png" for i in range(3)], frames=[0, 1, 2])
    for p in preds + predictor.smooth(preds):
        probs = torch.tensor([p.extra["view_probabilities"]])
        assert probs.shape == (1, 12) and float(probs.sum()) == pytest.approx(1.0, abs=1e-3)
        # the mass by hand: bins (15 deg wide here: 30) overlap the +-30 deg window around the answer
        centres = np.arange(12) * 30.0
        d = np.abs((centres - p.azimuth_deg + 180.0) % 360.0 - 180.0)
        by_hand = float((probs[0].numpy() * np.clip(np.minimum(d + 15, 30) - np.maximum(d - 15, -30), 0, None) / 30).sum())
        assert p.azimuth_confidence == pytest.approx(by_hand, abs=1e-4)
    lifted = predictor.lift(model.category.mean_shape[None, :, :2] * 4 + 60)
    assert lifted[0].azimuth_confidence is None
