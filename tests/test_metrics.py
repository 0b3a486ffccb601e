import math

import numpy as np
import pytest

from interp3d.evaluation.metrics import align_half_turn, angle_error, average_recall, confidence_summary, normalise_structure, pck, recall_curve, recall_terms, structure_error
from interp3d.shape_model import get_category


def test_scaled_and_shifted_copy_has_zero_structure_error():
    y = get_category("chair").mean_shape[None]
    assert structure_error(3.0 * y + 7.0, y)[0] == pytest.approx(0.0, abs=1e-12)


def test_rotated_copy_needs_procrustes():
    y = get_category("sofa").mean_shape[None]
    c, s = math.cos(0.7), math.sin(0.7)
    rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    rotated = y @ rot.T
    assert structure_error(rotated, y)[0] > 0.1
    assert structure_error(rotated, y, align="procrustes")[0] == pytest.approx(0.0, abs=1e-9)


def test_known_shape_offset_gives_known_rmse():
    # a square of 4 points (unit RMS radius after normalisation) with one point moved
    gt = np.array([[[1.0, 0, 0], [-1.0, 0, 0], [0, 1.0, 0], [0, -1.0, 0]]])
    pred = gt.copy()
    pred[0, 0, 2] = 0.4  # lift one point off the plane: recompute both normalisations by hand
    p, g = normalise_structure(pred)[0], normalise_structure(gt)[0]
    expected = math.sqrt(((p - g) ** 2).sum(-1).mean())
    assert structure_error(pred, gt)[0] == pytest.approx(expected)
    assert np.allclose(np.sqrt((g**2).sum(-1).mean()), 1.0)


def test_angle_error_wraps():
    assert angle_error(np.radians([350.0, 10.0, 180.0]), np.radians([10.0, 350.0, 0.0])).tolist() == pytest.approx(np.radians([20.0, 20.0, 180.0]).tolist())


def test_recall_curve_and_average_recall_of_a_known_error_list():
    errors = np.array([0.0, 0.1, 0.2, 0.3])
    taus, rec = recall_curve(errors, tau_max=0.4, steps=5)  # thresholds 0, .1, .2, .3, .4
    assert taus.tolist() == pytest.approx([0, 0.1, 0.2, 0.3, 0.4])
    assert rec.tolist() == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0])
    assert average_recall(errors, 0.4, steps=5) == pytest.approx(70.0)
    assert average_recall(np.full(10, 2 * math.pi), math.pi) == 0.0


def test_pck_per_keypoint_then_mean():
    gt = np.zeros((2, 2, 2))
    pred = np.array([[[1.0, 0], [5.0, 0]], [[4.0, 0], [0.0, 0]]])
    visible = np.array([[True, True], [True, False]])
    # keypoint 0: 1 of 2 within 3.2 px; keypoint 1: 0 of 1 -> mean (50 + 0) / 2
    assert pck(pred, gt, visible, heatmap_size=64) == pytest.approx(25.0)


def test_azimuth_bins_centred_on_zero():
    from interp3d.evaluation.metrics import azimuth_bin, azimuth_bin_accuracy

    deg = np.radians
    # 4 bins of 90 deg centred on 0, 90, 180, 270: [-45, 45) is bin 0
    assert azimuth_bin(deg([0, 44.9, 45, 134.9, 180, 314.9, 315, -10]), 4).tolist() == [0, 0, 1, 1, 2, 3, 0, 0]
    pred, gt = deg([10, 50, 350, 100]), deg([-20, 40, 5, 260])
    # 4 bins: 10/-20 same bin, 50/40 differ, 350/5 same, 100/260 differ -> 50 %
    assert azimuth_bin_accuracy(pred, gt, 4) == pytest.approx(50.0)
    # 24 bins of 15 deg: 10 (bin 1) vs -20 (bin 23), 50 (3) vs 40 (3), 350 (23) vs 5 (0) -> 1 of 4
    assert azimuth_bin_accuracy(pred, gt, 24) == pytest.approx(25.0)


def test_paired_bootstrap_gain():
    from interp3d.evaluation.metrics import paired_bootstrap_gain

    rng = np.random.default_rng(0)
    base = rng.uniform(0, 0.5, 200)
    same = paired_bootstrap_gain(base, base, 0.5)
    assert same == {"gain": 0.0, "low": 0.0, "high": 0.0}
    # the gain is exactly the difference of the two average recalls
    better = base * 0.5
    g = paired_bootstrap_gain(base, better, 0.5)
    assert g["gain"] == pytest.approx(average_recall(better, 0.5) - average_recall(base, 0.5))
    assert 0 < g["low"] < g["gain"] < g["high"]
    # one object improving in a set of 200 is not a significant gain
    one = base.copy()
    one[0] = 0.0
    g = paired_bootstrap_gain(base, one, 0.5)
    assert g["low"] <= 0.0 < g["gain"]
    with pytest.raises(ValueError, match="equal-length"):
        paired_bootstrap_gain(base, base[:5], 0.5)


def test_seed_covering_gain_known_answers():
    from interp3d.evaluation.metrics import average_recall, paired_bootstrap_gain, seed_covering_gain

    rng = np.random.default_rng(0)
    base = [rng.uniform(0, 1, 200) for _ in range(3)]
    # the same improvement in every seed: the mean gain is exact and the interval hugs it
    better = [b * 0.8 for b in base]
    g = seed_covering_gain(base, better, 2.0)
    exact = np.mean([average_recall(n, 2.0) - average_recall(b, 2.0) for b, n in zip(base, better)])
    assert g["gain"] == pytest.approx(exact) and g["low"] > 0 and g["low"] <= g["gain"] <= g["high"]
    # seeds that disagree: +gain in one, -gain in two; the interval must cover zero although each
    # seed's own paired interval excludes it
    mixed = [base[0] * 0.6, base[1] * 1.3, base[2] * 1.3]
    g = seed_covering_gain(base, mixed, 2.0)
    singles = [paired_bootstrap_gain(b, n, 2.0) for b, n in zip(base, mixed)]
    assert all(s["low"] > 0 or s["high"] < 0 for s in singles)
    assert g["low"] < 0 < g["high"] and g["seed_sd"] > 5 and len(g["per_seed"]) == 3
    with pytest.raises(ValueError, match="one \\(base, new\\) pair"):
        seed_covering_gain(base, base[:2], 2.0)


def test_table_is_scored_modulo_its_half_turn():
    table = get_category("table")
    turn = table.half_turn_permutation
    assert angle_error(np.radians([179.0, 95.0]), np.radians([-1.0, -85.0]), table.azimuth_period) == pytest.approx([0.0, 0.0], abs=1e-12)
    assert angle_error(np.radians([100.0]), np.radians([-60.0]), math.pi)[0] == pytest.approx(math.radians(20.0))
    # a deformed (asymmetric) table scored against itself turned half way round and relabelled
    rng = np.random.default_rng(0)
    y = (table.mean_shape + 0.2 * rng.normal(size=table.mean_shape.shape))[None]
    turned = y[:, list(turn)] * np.array([-1.0, 1.0, -1.0])
    assert structure_error(turned, y)[0] > 0.1
    assert structure_error(turned, y, half_turn=turn)[0] == pytest.approx(0.0, abs=1e-12)
    # 2D: a prediction in the other labelling is matched to it object by object
    gt = rng.uniform(0, 32, size=(3, 8, 2))
    visible = rng.random((3, 8)) < 0.8
    pred = gt.copy()
    pred[1] = gt[1][list(turn)]
    aligned, aligned_visible = align_half_turn(pred, gt, visible, turn)
    assert np.array_equal(aligned[[0, 2]], gt[[0, 2]]) and np.array_equal(aligned[1], gt[1][list(turn)])
    assert np.array_equal(aligned_visible[1], visible[1][list(turn)])
    assert pck(pred, aligned, aligned_visible, 32) == 100.0 and pck(pred, gt, visible, 32) < 100.0
    assert np.array_equal(align_half_turn(pred, gt, visible, None)[0], gt)


def test_recall_terms_are_each_objects_share_of_the_thresholds():
    errors = np.radians([0.0, 90.0, 180.0])
    np.testing.assert_allclose(recall_terms(errors, np.pi), [100.0, 100 * 51 / 101, 100 / 101])
    assert recall_terms(errors, np.pi).mean() == pytest.approx(average_recall(errors, np.pi))


def test_confidence_summary_known_answers():
    # AUROC by hand: of the 2 x 2 (correct, wrong) pairs, (0.9 > 0.2), (0.9 > 0.6), (0.6 = 0.6: half), (0.6 > 0.2)
    s = confidence_summary([0.9, 0.6, 0.6, 0.2], [True, True, False, False])
    assert s["auroc"] == pytest.approx(3.5 / 4) and s["correct"] == 0.5
    assert [(b["low"], b["n"]) for b in s["bins"]] == [(0.0, 1), (0.5, 2), (0.9, 1)]  # 0.9 falls in the closed last bin
    assert s["bins"][1]["confidence"] == pytest.approx(0.6) and s["bins"][1]["correct"] == 0.5
    # |0.2 - 0| + 2 |0.6 - 0.5| + |0.9 - 1| over 4 objects
    assert s["calibration_error"] == pytest.approx((0.2 + 0.2 + 0.1) / 4)
    perfect = confidence_summary([1.0, 1.0, 0.0], [True, True, False])
    assert perfect["auroc"] == 1.0 and perfect["calibration_error"] == 0.0
    assert confidence_summary([0.5, 0.7], [True, True])["auroc"] is None
    with pytest.raises(ValueError, match="equal-length"):
        confidence_summary([0.5], [True, False])
