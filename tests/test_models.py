import numpy as np
import pytest
import torch

from interp3d import geometry
from interp3d.data.synthetic import SyntheticSkeletonDataset
from interp3d.models import HourglassNet, Interpreter, Lifter
from interp3d.shape_model import get_category


@pytest.mark.parametrize("size,maps", [(256, 64), (128, 32), (128, 64)])
def test_hourglass_maps_images_to_heatmaps(size, maps):
    net = HourglassNet(10, features=16, depth=4, stride=HourglassNet.stride_for(size, maps))
    out = net(torch.rand(2, 3, size, size))
    assert len(out) == 1 and out[0].shape == (2, 10, maps, maps)
    with pytest.raises(ValueError, match="divisible"):
        net(torch.rand(1, 3, size + 4, size + 4))


def test_stacked_hourglass_returns_every_stack():
    out = HourglassNet(8, features=16, depth=2, stacks=2, stride=2)(torch.rand(1, 3, 32, 32))
    assert [o.shape for o in out] == [torch.Size([1, 8, 16, 16])] * 2


def test_paper_sizes():
    cat = get_category("chair")
    lifter = Lifter(cat.num_keypoints, 64, cat.num_params)
    widths = [m.out_features for m in lifter.net if isinstance(m, torch.nn.Linear)]
    assert widths == [2048, 512, 128, 14] and lifter.in_features == 40960


def test_interpreter_projection_layer_reproduces_geometry():
    torch.manual_seed(0)
    model = Interpreter.build("sofa", image_size=64, heatmap_size=32, features=16, depth=2, lifter_widths=(32,))
    out = model(torch.rand(3, 3, 64, 64))
    assert out.heatmaps.shape == (3, 14, 32, 32) and out.params_normalised.shape == (3, 16)
    params = model.codec.decode(model.codec.denormalise(out.params_normalised.double()))
    y, cam, uv = geometry.project_structure(params.alpha, geometry.sincos_to_matrix(params.r6), params.translation, params.focal, get_category("sofa").bases(torch.float64), 240)
    assert torch.allclose(out.structure.double(), y, rtol=1e-4, atol=1e-3)
    assert torch.allclose(out.keypoints.double(), uv * 32 / 240, rtol=1e-4, atol=1e-3)
    out.keypoints.sum().backward()
    assert model.keypoint_net.stem[0].weight.grad is not None and model.lifter.net[0].weight.grad.abs().sum() > 0


def test_lifter_decodes_ground_truth_parameters_exactly():
    ds = SyntheticSkeletonDataset("chair", 4, seed=0, options=__import__("interp3d.data.synthetic", fromlist=["x"]).SyntheticOptions(heatmap_size=16))
    model = Interpreter.build("chair", image_size=32, heatmap_size=16, features=8, depth=2, lifter_widths=(8,))
    batch = ds.__getitems__([0, 1, 2, 3])

    class Oracle(torch.nn.Module):
        def forward(self, heatmaps):
            return batch["target"]

    model.lifter = Oracle()
    lifted = model.lift(batch["heatmaps"])
    assert torch.allclose(lifted.keypoints, batch["keypoints"], atol=1e-3)


def test_tiny_lifter_overfits_a_handful_of_samples():
    torch.manual_seed(0)
    ds = SyntheticSkeletonDataset("table", 8, seed=1, options=__import__("interp3d.data.synthetic", fromlist=["x"]).SyntheticOptions(heatmap_size=16))
    batch = ds.__getitems__(list(range(8)))
    lifter = Lifter(8, 16, 15, (64, 32))
    opt = torch.optim.RMSprop(lifter.parameters(), lr=1e-3)
    losses = []
    for _ in range(300):
        loss = torch.nn.functional.l1_loss(lifter(batch["heatmaps"]), batch["target"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10


def test_tiny_hourglass_overfits_a_handful_of_images():
    from interp3d.heatmaps import render_heatmaps

    torch.manual_seed(0)
    images = torch.rand(4, 3, 32, 32)
    keypoints = torch.rand(4, 5, 2) * 12 + 2
    target = render_heatmaps(keypoints, 16, 1.0)
    net = HourglassNet(5, features=16, depth=2, stride=2)
    opt = torch.optim.RMSprop(net.parameters(), lr=2.5e-3)
    first = None
    for _ in range(150):
        loss = torch.nn.functional.mse_loss(net(images)[-1], target)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first / 10


def test_a_models_own_peak_threshold_decides_which_keypoints_count():
    """Heatmaps peaking at 0.3, 0.12 and 0.04: the default threshold (0.2) keeps one keypoint, a
    header's info["peak_threshold"] = 0.1 keeps two, with the peak values as weights."""
    from interp3d.heatmaps import render_heatmaps
    from interp3d.models import Interpreter

    model = Interpreter.build("chair", 32, 16, 16, 2, 1, (32, 16))
    heatmaps = render_heatmaps(torch.full((1, 10, 2), 8.5), 16, 1.0) * torch.tensor([0.3, 0.12] + [0.04] * 8).view(1, 10, 1, 1)
    _, weights = model.heatmap_keypoints(heatmaps)
    assert weights[0].tolist() == pytest.approx([0.3, 0.0] + [0.0] * 8, abs=1e-3)
    model.info = {"peak_threshold": 0.1}
    _, weights = model.heatmap_keypoints(heatmaps)
    assert weights[0].tolist() == pytest.approx([0.3, 0.12] + [0.0] * 8, abs=1e-3)


def test_a_relative_peak_threshold_keeps_the_strongest_keypoints_of_a_weak_image():
    """A photo-like image peaking at 0.25, 0.2, 0.14 and 0.05 under a calibrated threshold of 0.32:
    no keypoint counts (the fit collapses); with info["peak_relative"] = 0.5 those at >= 0.125 do.
    A second, strong image in the same batch keeps the absolute threshold (its own maximum is high)."""
    from interp3d.heatmaps import render_heatmaps
    from interp3d.models import Interpreter

    model = Interpreter.build("chair", 32, 16, 16, 2, 1, (32, 16))
    weak = [0.25, 0.2, 0.14] + [0.05] * 7
    strong = [0.9, 0.4, 0.3] + [0.05] * 7
    heatmaps = render_heatmaps(torch.full((2, 10, 2), 8.5), 16, 1.0) * torch.tensor([weak, strong]).view(2, 10, 1, 1)
    model.info = {"peak_threshold": 0.32}
    _, weights = model.heatmap_keypoints(heatmaps)
    assert weights[0].tolist() == pytest.approx([0.0] * 10, abs=1e-3)
    model.info = {"peak_threshold": 0.32, "peak_relative": 0.5}
    _, weights = model.heatmap_keypoints(heatmaps)
    assert weights[0].tolist() == pytest.approx([0.25, 0.2, 0.14] + [0.0] * 7, abs=1e-3)
    assert weights[1].tolist() == pytest.approx([0.9, 0.4] + [0.0] * 8, abs=1e-3)


def test_peak_threshold_calibration_separates_visible_from_hidden_keypoints(monkeypatch):
    """A 2D module whose heatmaps peak at 0.3 for visible and 0.05 for hidden keypoints: the
    calibrated threshold lies between the two and tells them apart perfectly."""
    from types import SimpleNamespace

    from interp3d.evaluation.evaluate import calibrate_peak_threshold
    from interp3d.heatmaps import render_heatmaps
    from interp3d.models import Interpreter

    model = Interpreter.build("chair", 32, 16, 16, 2, 1, (32, 16))
    visible = torch.rand(12, 10, generator=torch.Generator().manual_seed(0)) > 0.4
    images = torch.arange(12, dtype=torch.uint8).view(12, 1, 1, 1).expand(12, 3, 32, 32).contiguous()  # image i is filled with i

    def outputs(x, flip_test=False):
        index = (x[:, 0, 0, 0] * 255).round().long()
        peak = torch.where(visible[index], 0.3, 0.05)
        return [render_heatmaps(torch.full((len(x), 10, 2), 8.5), 16, 1.0) * peak[..., None, None]], None

    monkeypatch.setattr(model, "keypoint_net_outputs", outputs)
    result = calibrate_peak_threshold(model, SimpleNamespace(images=images, visible=visible))
    assert 0.05 < result["peak_threshold"] <= 0.3 and result["balanced_accuracy"] == 1.0
    assert result["visible_median_peak"] == pytest.approx(0.3) and result["hidden_median_peak"] == pytest.approx(0.05)


def test_refinement_follows_the_options_in_the_model_header():
    """A header's ``refine_options`` (calibrated at export) are what refinement runs with unless the
    caller passes options; unknown keys from another version are ignored."""
    from dataclasses import replace

    from interp3d.inference import Predictor
    from interp3d.models import Interpreter
    from interp3d.refine import RefineOptions

    model = Interpreter.build("chair", 32, 16, 16, 2, 1, (32, 16)).eval()
    assert model.refine_options == RefineOptions()
    model.info = {"refine_options": {"anchor": 1.0, "iterations": 3, "from_a_later_version": 1}}
    assert model.refine_options == replace(RefineOptions(), anchor=1.0, iterations=3)
    assert Predictor(model).refine_options == model.refine_options
    assert Predictor(model, refine_options=RefineOptions()).refine_options == RefineOptions()
    with torch.no_grad():
        out = model(torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0)))
    keypoints, weights = model.heatmap_keypoints(out.heatmaps)
    weights = torch.ones_like(weights)  # an untrained network's peaks are all faint
    by_header, _ = model.refine(out, keypoints, weights)
    explicit, _ = model.refine(out, keypoints, weights, options=replace(RefineOptions(), anchor=1.0, iterations=3))
    defaults, _ = model.refine(out, keypoints, weights, options=RefineOptions())
    assert torch.equal(by_header.structure, explicit.structure)
    assert not torch.allclose(by_header.structure, defaults.structure)


def test_fit_calibration_keeps_an_incumbent_fit_unless_the_winner_is_better_beyond_noise(monkeypatch):
    """A round's own search winner replaces the fit it continues only when its paired bootstrap
    interval of mean AR over the incumbent lies above 0: a winner better on every object replaces
    it; one better by a hair, worse on half the objects, does not."""
    import interp3d.evaluation.evaluate as evaluate
    from interp3d.evaluation.metrics import STRUCTURE_TAU_MAX, recall_terms
    from interp3d.models import Interpreter
    from interp3d.train.stages import AnnotatedImages

    model = Interpreter.build("chair", 32, 16, 16, 2, 1, (32, 16))
    model.info = {"peak_threshold": 0.3}
    data = AnnotatedImages.__new__(AnnotatedImages)
    data.images = torch.zeros(40, 3, 32, 32, dtype=torch.uint8)
    base = np.linspace(0.05, 0.4, 40)
    alternating = np.where(np.arange(40) % 2 == 0, 0.03, -0.035)  # worse on even objects, better on odd ones
    shifts = {0.5: np.zeros(40), 1.0: np.full(40, 0.05)}

    class Result(dict):
        per_object: dict

    def fake_evaluate(m, d, refine=False, refine_options=None, outputs=None, **kwargs):
        structure = np.clip(base + shifts[refine_options.anchor], 0.0, None)
        result = Result(structure={"average_recall": float(recall_terms(structure, STRUCTURE_TAU_MAX).mean())}, azimuth={"average_recall": 100.0})
        result.per_object = {"structure_error": structure, "azimuth_error": np.zeros(40)}
        return result

    monkeypatch.setattr(evaluate, "network_outputs", lambda *a, **k: [])
    monkeypatch.setattr(evaluate, "evaluate_interpreter", fake_evaluate)
    monkeypatch.setattr(model, "lift", lambda heatmaps: heatmaps)
    incumbent = {"peak_threshold": 0.3, "refine_options": {"anchor": 0.5}}

    shifts[0.0] = alternating
    result = evaluate.calibrate_fit(model, data, incumbent=incumbent)
    assert result["grid"][0]["anchor"] == 0.5 and result["grid"][1]["mean_ar"] > result["grid"][0]["mean_ar"]  # the search's winner: anchor 0
    assert result["refine_options"] == {"anchor": 0.5} and result["incumbent"]["kept"]
    gain = result["incumbent"]["search_winner_gain"]
    assert gain["low"] < 0 < gain["gain"] < gain["high"]

    shifts[0.0] = np.full(40, -0.08)
    result = evaluate.calibrate_fit(model, data, incumbent=incumbent)
    assert result["refine_options"] == {"anchor": 0.0} and not result["incumbent"]["kept"]
    assert result["incumbent"]["search_winner_gain"]["low"] > 0
    assert "incumbent" not in evaluate.calibrate_fit(model, data)  # without one, as before
    assert model.info == {"peak_threshold": 0.3}


def test_fit_calibration_picks_the_best_mean_ar_over_thresholds_anchors_and_options(monkeypatch):
    """Under each peak threshold the anchor with the highest mean of structure and azimuth AR (on
    the option that the model's refinement reads, ``anchor`` without a viewpoint head), then each
    further refinement option kept only where it gains ``min_gain``; the threshold whose choice ends
    best wins, even where its anchor alone did not (options interact with the threshold). The 2D
    module runs once, the lifter again under each threshold, and the model's header is restored."""
    import interp3d.evaluation.evaluate as evaluate
    from interp3d.models import Interpreter
    from interp3d.train.stages import AnnotatedImages

    model = Interpreter.build("chair", 32, 16, 16, 2, 1, (32, 16))
    model.info = {"peak_threshold": 0.3, "seed": 4}
    data = AnnotatedImages.__new__(AnnotatedImages)
    data.images = torch.zeros(5, 3, 32, 32, dtype=torch.uint8)
    # (threshold, anchor, robust scale, shape weight) -> (structure, azimuth); mean AR 65 / 69.5 / 66
    # at the model's own 0.3, 70 at 0.1 with anchor 1; a tighter Cauchy scale gains 0.5, half the shape weight 0.1
    # under 0.1 but 1.5 under 0.3, which makes 0.3 the best in the end (71.5 against 70.5)
    table = {(0.3, 0.0): (50.0, 80.0), (0.3, 0.5): (60.0, 79.0), (0.3, 1.0): (62.0, 70.0),
             (0.1, 0.0): (40.0, 80.0), (0.1, 0.5): (60.0, 70.0), (0.1, 1.0): (62.0, 78.0)}
    seen, network_runs, lifts = [], [], []
    network_outputs = evaluate.network_outputs
    lift = model.lift

    def spied_lift(heatmaps):
        lifts.append(model.peak_threshold)
        return lift(heatmaps)

    def counted_network_outputs(*args, **kwargs):
        network_runs.append(network_outputs(*args, **kwargs))
        return network_runs[-1]

    def fake_evaluate(m, d, refine=False, refine_options=None, outputs=None, **kwargs):
        assert refine and d is data and m is model
        assert outputs is not network_runs[-1] and len(outputs) == len(network_runs[-1])
        o = refine_options
        seen.append((m.peak_threshold, o.anchor, o.robust_scale, o.shape_weight))
        s, a = table[(m.peak_threshold, o.anchor)]
        s += (1.0 if o.robust_scale == 0.04 else 0.0) + (0.0 if o.shape_weight != 0.5 else 3.0 if m.peak_threshold == 0.3 else 0.2)
        return {"structure": {"average_recall": s}, "azimuth": {"average_recall": a}}

    monkeypatch.setattr(evaluate, "network_outputs", counted_network_outputs)
    monkeypatch.setattr(evaluate, "evaluate_interpreter", fake_evaluate)
    monkeypatch.setattr(model, "lift", spied_lift)
    result = evaluate.calibrate_fit(model, data, peak_thresholds=(0.1, 0.3), refine_options={"robust_scale": (0.04,), "shape_weight": (0.5,)}, min_gain=0.25)
    anchors = lambda t: [(t, a, 0.08, 1.0) for a in (0.0, 0.5, 1.0)]
    # the shape weight tried on top of the kept scale, under each threshold
    assert seen == anchors(0.3) + [(0.3, 0.5, 0.04, 1.0), (0.3, 0.5, 0.04, 0.5)] + anchors(0.1) + [(0.1, 1.0, 0.04, 1.0), (0.1, 1.0, 0.04, 0.5)]
    assert len(network_runs) == 1
    assert result["peak_threshold"] == 0.3 and result["objects"] == 5
    assert result["refine_options"] == {"anchor": 0.5, "robust_scale": 0.04, "shape_weight": 0.5}
    assert [g["mean_ar"] for g in result["grid"]] == [65.0, 69.5, 66.0, 70.0, 71.5, 60.0, 65.0, 70.0, 70.5, 70.6]  # 0.1's +0.1 is under min_gain
    assert model.info == {"peak_threshold": 0.3, "seed": 4}
    assert lifts == [0.3, 0.3, 0.1]  # the forward pass, then one batch of 5 images lifted again under each threshold
    table[(0.1, 1.0)] = (60.0, 79.0)  # a tie with the model's own threshold keeps its own
    assert evaluate.calibrate_fit(model, data, peak_thresholds=(0.1,))["peak_threshold"] == 0.3
    table[(0.1, 1.0)] = (60.0, 79.2)  # without options, the best anchor decides
    assert evaluate.calibrate_fit(model, data, peak_thresholds=(0.1,))["refine_options"] == {"anchor": 1.0}
    monkeypatch.setattr(evaluate, "evaluate_interpreter", lambda *a, **k: {"structure": {}, "azimuth": {"average_recall": 1.0}})
    with pytest.raises(ValueError, match="3D structure and pose ground truth"):
        evaluate.calibrate_fit(model, data)
    assert model.info == {"peak_threshold": 0.3, "seed": 4}
