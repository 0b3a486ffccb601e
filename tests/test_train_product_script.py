"""scripts/train_product.py's split recipe: a 2D module trained on one machine (``--only-2d``'s
portable checkpoint) composed on another with an exported model's lifter (``--lifter-from``), or
an exported model's 2D module (``--keypoint-from``) beside a new lifter."""

import sys
from pathlib import Path

import pytest
import torch

from conftest import load_repo_script
from interp3d.config import preset
from interp3d.io_utils import save_checkpoint
from interp3d.models.serialization import load_interpreter, pretrained_models

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


@pytest.fixture(scope="module")
def train_product():
    return load_repo_script("scripts/train_product.py")


@pytest.fixture(scope="module")
def shipped_chair():
    return load_interpreter(pretrained_models()["chair"]).eval()


def test_a_portable_2d_checkpoint_round_trips_and_names_its_category(train_product, shipped_chair, tmp_path):
    weights = {k: v.float() for k, v in shipped_chair.keypoint_net.state_dict().items()}
    best = save_checkpoint(tmp_path / "best.pt", {"kind": "pretrain_2d", "model": weights, "epoch": 2})
    history = [{"epoch": 1, "seconds": 3.0, "pck": 50.0}, {"epoch": 3, "seconds": 4.5, "pck": 60.0}]
    cfg = preset("product")
    path = train_product.write_keypoint_checkpoint(best, history, tmp_path, cfg, "chair", {"model": "chair.safetensors"})
    state = train_product._trained_elsewhere(path, "chair")
    assert state["seconds"] == 7.5 and state["best_record"]["pck"] == 60.0 and state["init_2d"] == {"model": "chair.safetensors"}
    assert state["config"]["world"]["n_annotated2d"] == cfg.world.n_annotated2d
    for key, value in weights.items():
        assert state["model"][key].dtype == (torch.float16 if value.is_floating_point() else value.dtype)
        torch.testing.assert_close(state["model"][key].float(), value.half().float(), msg=key)
    with pytest.raises(SystemExit, match="a chair 2D module, not sofa"):
        train_product._trained_elsewhere(path, "sofa")


def test_composing_a_models_own_parts_reproduces_it(train_product, shipped_chair):
    """The 2D module and lifter of the shipped chair, composed by the recipe, give the shipped
    model's outputs; a lifter of another category is refused."""
    path = pretrained_models()["chair"]
    lifter_weights, lifted = train_product._lifter_of(path, "chair")
    assert lifted["lifter"]["taken_from"] == path.name and lifted["shape_prior"] == shipped_chair.info["shape_prior"]
    assert lifted["fit"] == {"peak_threshold": shipped_chair.info["peak_threshold"], "refine_options": shipped_chair.info["refine_options"], "from": path.name}
    keypoint_weights, record, taken = train_product._keypoint_module_of(path, "chair")
    assert record == shipped_chair.info["validation"]["pretrain_2d"]
    assert taken["keypoint_from"]["model"] == path.name and taken["keypoint_from"]["seed"] == shipped_chair.info["seed"]
    assert taken["keypoint_from"]["encoder_mix"] == shipped_chair.info["encoder_mix"]  # the shipped chair's 2D module was mixed
    size = [f"model.image_size={shipped_chair.image_size}", f"synthetic.heatmap_size={shipped_chair.heatmap_size}"]  # the header's recipe
    cfg = train_product.product_config("chair", Path("unused"), None, 0, size)
    composed = train_product.compose(cfg, "chair", keypoint_weights, lifter_weights)
    composed.info = shipped_chair.info  # the header's peak thresholds, as an export writes them
    images = torch.rand(2, 3, shipped_chair.image_size, shipped_chair.image_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = composed.float()(images), shipped_chair.float()(images)
    for field in ("heatmaps", "view_logits", "params_normalised", "structure", "keypoints"):
        torch.testing.assert_close(getattr(ours, field), getattr(theirs, field), msg=field)
    with pytest.raises(SystemExit, match="a chair model, not sofa"):
        train_product._lifter_of(path, "sofa")
    with pytest.raises(SystemExit, match="--keypoint-from .*a chair model, not sofa"):
        train_product._keypoint_module_of(path, "sofa")


def test_two_sources_of_the_2d_module_are_refused(tmp_path):
    import subprocess

    material = tmp_path / "material"
    material.mkdir()
    (material / "SOURCES.txt").write_text("")
    run = subprocess.run(
        [sys.executable, str(SCRIPTS / "train_product.py"), "--category", "chair", "--out", str(tmp_path / "run"), "--photo-material", str(material),
         "--keypoint-from", "chair", "--keypoint-checkpoint", str(tmp_path / "keypoint_net.pt")],
        capture_output=True, text=True,
    )
    assert run.returncode == 2 and "--keypoint-checkpoint and --keypoint-from each decide where the 2D module comes from" in run.stderr
    assert not (tmp_path / "run").exists()


def test_the_fit_calibration_starts_from_the_visibility_threshold_and_is_recorded(train_product, monkeypatch):
    """Calibrating a header twice gives the same header: the search starts from the visibility
    threshold (``peak_calibration``) and the default refinement, not from what an earlier
    calibration chose."""
    import interp3d.evaluation.evaluate as evaluate

    started_from = []

    def fake_calibrate_fit(model, data, peak_thresholds=(), refine_options=None, flip_test=False, **kwargs):
        started_from.append((model.info["peak_threshold"], model.info.get("refine_options")))
        assert flip_test and tuple(peak_thresholds) == evaluate.FIT_PEAK_THRESHOLDS and refine_options == evaluate.FIT_REFINE_OPTIONS
        grid = [{"peak_threshold": model.info["peak_threshold"], "view_shape_anchor": 0.5, "structure_ar": 60.0, "azimuth_ar": 80.0, "mean_ar": 70.0},
                {"peak_threshold": 0.1, "view_shape_anchor": 1.0, "structure_ar": 62.123, "azimuth_ar": 80.0, "mean_ar": 71.0615}]
        held = kwargs.get("incumbent")
        return {"peak_threshold": 0.1, "refine_options": {"view_shape_anchor": 1.0, "robust_scale": 0.04}, "grid": grid, "objects": 150} | (
            {"incumbent": {**held, "kept": False}} if held else {})

    monkeypatch.setattr(evaluate, "calibrate_fit", fake_calibrate_fit)
    monkeypatch.setattr(train_product, "load_interpreter", lambda path: type("Model", (), {})())
    info = {"peak_threshold": 0.42, "peak_calibration": {"peak_threshold": 0.42}, "flip_test_default": True, "refine_options": {"view_shape_anchor": 0.0}}
    for _ in range(2):
        train_product.calibrate_refinement(Path("chair.safetensors"), Path("val3d"), info)
        assert info["peak_threshold"] == 0.1 and info["refine_options"] == {"view_shape_anchor": 1.0, "robust_scale": 0.04}
        assert info["refine_calibration"]["grid"][1]["structure_ar"] == 62.12
    assert started_from == [(0.42, None), (0.42, None)]  # the visibility threshold and the default refinement
    # a round that took a shipped model's lifter hands that model's fit over as the incumbent, and records whose it was
    fit = {"peak_threshold": 0.05, "refine_options": {"view_shape_anchor": 0.5}, "from": "chair.safetensors"}
    train_product.calibrate_refinement(Path("chair.safetensors"), Path("val3d"), info, incumbent=fit)
    assert info["refine_calibration"]["incumbent"]["from"] == "chair.safetensors"


def test_encoder_mixes_compose_and_are_recorded(train_product, shipped_chair):
    """Two mixes of 0.1 are one of 0.19 (1 - 0.9^2), in the weights and in the header; the lifter and
    the decoder do not move."""
    import copy

    twice, once = copy.deepcopy(shipped_chair).float(), copy.deepcopy(shipped_chair).float()
    info_twice, info_once = {}, {}
    for _ in range(2):
        train_product.mix_encoder(twice, 0.1, info_twice)
    train_product.mix_encoder(once, 0.19, info_once)
    assert info_twice["encoder_mix"]["alpha"] == pytest.approx(0.19) and len(info_twice["encoder_mix"]["steps"]) == 2
    a, b, original = twice.state_dict(), once.state_dict(), shipped_chair.float().state_dict()
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)
        if not key.startswith("keypoint_net.encoder."):
            assert torch.equal(a[key], original[key]), key
    assert not torch.equal(a["keypoint_net.encoder._conv_stem.weight"], original["keypoint_net.encoder._conv_stem.weight"])
    assert train_product._own_fit({"peak_threshold": 0.2}, "x") is None  # a header without a fit has no incumbent
