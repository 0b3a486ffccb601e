from dataclasses import asdict

import pytest
import torch

from interp3d.config import preset
from interp3d.io_utils import CheckpointError, save_checkpoint
from interp3d.models import Interpreter
from interp3d.models import serialization
from interp3d.models.serialization import build_interpreter, export_interpreter, load_interpreter, read_model_info


@pytest.fixture
def model():
    torch.manual_seed(0)
    mc = asdict(preset("cpu-small").model) | {"image_size": 32, "features": 16, "depth": 2, "lifter_widths": [24, 8]}
    m = build_interpreter("chair", mc, 16).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so buffers must round-trip too
        for module in m.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return m


def test_safetensors_round_trip_gives_identical_outputs(model, tmp_path):
    images = torch.rand(2, 3, 32, 32)
    path = export_interpreter(model, tmp_path / "m.safetensors", info={"note": "test"})
    loaded = Interpreter.load(path)
    assert read_model_info(path)["info"] == {"note": "test"} and loaded.info == {"note": "test"}
    with torch.no_grad():
        a, b = model(images), loaded(images)
    assert torch.equal(a.heatmaps, b.heatmaps) and torch.equal(a.structure, b.structure)


def test_half_precision_export_is_half_the_size_and_close(model, tmp_path):
    full = export_interpreter(model, tmp_path / "full.safetensors")
    half = export_interpreter(model, tmp_path / "half.safetensors", half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded = load_interpreter(half)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        diff = (model(images).heatmaps - loaded(images).heatmaps).abs().max()
    assert diff < 1e-2


def test_training_checkpoint_and_names(model, tmp_path, monkeypatch):
    save_checkpoint(tmp_path / "ft.pt", {"kind": "finetune", "model": model.state_dict(), "category": "chair", "model_config": model.model_config, "heatmap_size": 16})
    assert isinstance(Interpreter.load(tmp_path / "ft.pt"), Interpreter)
    save_checkpoint(tmp_path / "p2d.pt", {"kind": "pretrain_2d", "model": {}})
    with pytest.raises(CheckpointError, match="p2d.pt: holds a 'pretrain_2d' stage"):
        Interpreter.load(tmp_path / "p2d.pt")
    shipped = export_interpreter(model, tmp_path / "chair-test.safetensors")
    monkeypatch.setattr(serialization, "pretrained_models", lambda: {"chair-test": shipped})
    assert Interpreter.load("chair").category.name == "chair" and Interpreter.load("chair-test").heatmap_size == 16
    with pytest.raises(CheckpointError, match="'sofa': neither a model file nor a shipped model"):
        Interpreter.load("sofa")


def test_bad_files_are_named(tmp_path):
    (tmp_path / "broken.safetensors").write_bytes(b"\x00\x01garbage")
    with pytest.raises(CheckpointError, match="broken.safetensors: corrupt"):
        Interpreter.load(tmp_path / "broken.safetensors")
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(CheckpointError, match="plain.safetensors: safetensors file without an interp3d header"):
        Interpreter.load(tmp_path / "plain.safetensors")
    with pytest.raises(CheckpointError, match="missing.pt: checkpoint not found"):
        Interpreter.load(tmp_path / "missing.pt")
