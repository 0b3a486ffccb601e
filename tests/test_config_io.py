import json
import subprocess

import pytest

from interp3d.config import Config, ConfigError, preset
from interp3d.io_utils import atomic_path, atomic_write_json, git_revision, write_run_metadata


def test_presets_round_trip_through_json():
    for name in ("paper", "cpu-small"):
        cfg = preset(name)
        assert Config.from_dict(json.loads(cfg.to_json())) == cfg
    assert preset("paper").synthetic.n_train == 40_000
    assert preset("cpu-small").synthetic.n_train < preset("paper").synthetic.n_train


def test_overrides_are_typed_and_checked():
    cfg = preset("cpu-small").override(["synthetic.sigma=2", "categories=[\"sofa\"]", "seed=7"])
    assert cfg.synthetic.sigma == 2.0 and cfg.categories == ("sofa",) and cfg.seed == 7
    with pytest.raises(ConfigError, match="unknown key 'nope'"):
        cfg.override(["synthetic.nope=1"])
    with pytest.raises(ConfigError, match="must be an integer"):
        cfg.override(["synthetic.n_train=1.5"])
    with pytest.raises(ConfigError, match="unknown preset"):
        preset("huge")
    with pytest.raises(ConfigError, match="version 99"):
        Config.from_dict({"version": 99})
    lift = cfg.override(["lift.swaps=0.1", "lift.wrong_confidence=[0.3, 0.7]"]).lift.options()
    assert lift.swaps == 0.1 and lift.wrong_confidence == (0.3, 0.7) and cfg.lift.options().wrong_confidence is None
    with pytest.raises(ConfigError, match="lift.wrong_confidence must be"):
        cfg.override(["lift.wrong_confidence=[0.8, 0.3]"]).lift.options()


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    atomic_write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_run_metadata_records_config_seed_and_revision(tmp_path):
    path = write_run_metadata(tmp_path, preset("cpu-small").to_dict(), seed=3)
    meta = json.loads(path.read_text())
    assert meta["seed"] == 3 and meta["config"]["preset"] == "cpu-small"
    rev = git_revision()
    assert set(rev) == {"commit", "dirty"}
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:
        assert meta["git"]["commit"] == head.stdout.strip()
    assert Config.load(path) == preset("cpu-small")


def test_atomic_writes_get_normal_permissions(tmp_path):
    import os

    from interp3d.io_utils import atomic_write_text

    atomic_write_text(tmp_path / "a.txt", "x")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o666 & ~umask


def test_product_preset_builds_the_shipped_architecture():
    from dataclasses import asdict

    from interp3d.config import preset
    from interp3d.models.serialization import build_interpreter

    cfg = preset("product")
    assert cfg.model.backbone == "efficientnet_lite0" and cfg.model.lifter == "keypoints" and cfg.world.view_sphere == "full"
    assert cfg.train.augment_occlude > 0 and cfg.train.pretrain_2d.lr_schedule == "cosine"
    model = build_interpreter("bed", asdict(cfg.model), cfg.synthetic.heatmap_size)
    assert model.image_size == 4 * model.heatmap_size == 128 and model.view_bins == 24
    assert cfg.world.options("test3d").view_sphere == "full"


def test_link_or_copy_keeps_one_copy_and_survives_the_source_being_replaced(tmp_path):
    from interp3d.io_utils import atomic_write_text, link_or_copy

    source = tmp_path / "len15" / "best.pt"
    atomic_write_text(source, "weights v1")
    target = link_or_copy(source, tmp_path / "best.pt")
    assert target.read_text() == "weights v1"
    assert target.stat().st_ino == source.stat().st_ino  # a hard link, not a second copy
    atomic_write_text(source, "weights v2")  # stages replace files, never rewrite them
    assert target.read_text() == "weights v1" and source.read_text() == "weights v2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt", "len15"]  # no temporary left behind
