"""benchmarks/compare_models.py: per-world gains and the gain over all worlds' objects pooled."""

from pathlib import Path

import numpy as np
import pytest

from conftest import load_repo_script
from interp3d.evaluation.metrics import POSE_TAU_MAX, STRUCTURE_TAU_MAX

# a world's summary row (the tests below check the gains, which come from the per-object errors)
SUMMARY = {"structure_ar": 0.0, "azimuth_ar": 0.0, "azimuth_median_deg": 0.0, "pck_heatmap": 0.0, "pck_reprojection": 0.0,
           "objects": 0, "head_azimuth_ar": None, "head_azimuth_median_deg": None}


@pytest.fixture(scope="module")
def compare_models():
    return load_repo_script("benchmarks/compare_models.py")


def test_the_pooled_gain_weighs_each_world_by_its_objects(compare_models, monkeypatch):
    # errors either 0 (every threshold passed) or far beyond tau (none): AR = 100 x share of zeros
    def errors(n_objects, n_right):
        tau = {"structure": STRUCTURE_TAU_MAX, "azimuth": POSE_TAU_MAX}
        return {metric: np.r_[np.zeros(n_right), np.full(n_objects - n_right, 10 * t)] for metric, t in tau.items()}

    right = {("a", "old"): (300, 150), ("a", "new"): (300, 180), ("b", "old"): (100, 50), ("b", "new"): (100, 50)}
    monkeypatch.setattr(compare_models, "load_interpreter", lambda path: path)
    monkeypatch.setattr(compare_models, "evaluate", lambda model, world, refine, flip: (dict(SUMMARY), errors(*right[(str(world), model)])))
    report = compare_models.compare(["old", "new"], [Path("a"), Path("b")])

    assert report["worlds"]["a"]["new"]["gain_over_first"]["structure"]["gain"] == pytest.approx(10.0)
    assert report["worlds"]["b"]["new"]["gain_over_first"]["azimuth"]["gain"] == pytest.approx(0.0)
    pooled = report["pooled"]
    assert pooled["objects"] == 400
    for metric in ("structure", "azimuth"):
        gain = pooled["gain_over_first"]["new"][metric]
        assert gain["gain"] == pytest.approx((300 * 10.0 + 100 * 0.0) / 400)  # 30 more right of 400
        assert gain["low"] < gain["gain"] < gain["high"]
    assert "pooled (400)" in compare_models.markdown(report)


def test_one_world_has_no_pooled_row(compare_models, monkeypatch):
    monkeypatch.setattr(compare_models, "load_interpreter", lambda path: path)
    zeros = {"structure": np.zeros(5), "azimuth": np.zeros(5)}
    monkeypatch.setattr(compare_models, "evaluate", lambda *args: (dict(SUMMARY), zeros))
    report = compare_models.compare(["old", "new"], [Path("a")])
    assert "pooled" not in report and "pooled" not in compare_models.markdown(report)
