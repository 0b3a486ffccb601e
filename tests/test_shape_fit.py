import numpy as np
import pytest

from interp3d.shape_fit import fit_shape, rms_radius, similarity_procrustes
from interp3d.shape_model import get_category


def random_rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def test_procrustes_recovers_a_known_similarity():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(12, 3))
    rot = random_rotation(rng)
    dst = 2.5 * src @ rot.T + np.array([1.0, -2.0, 3.0])
    s, r, t = similarity_procrustes(src, dst)
    assert s == pytest.approx(2.5)
    np.testing.assert_allclose(r, rot, atol=1e-10)
    np.testing.assert_allclose(t, [1, -2, 3], atol=1e-10)


@pytest.mark.parametrize("name", ["chair", "sofa", "swivelchair"])
def test_fit_recovers_a_shape_inside_the_model_exactly(name):
    cat = get_category(name)
    rng = np.random.default_rng(1)
    rel = np.array([rng.uniform(lo, hi) for lo, hi in cat.ranges.alpha])
    alpha = 0.02 * np.concatenate(([1.0], rel))
    shape = np.tensordot(alpha, cat.bases_array, axes=1)
    target = shape @ random_rotation(rng).T + rng.normal(size=3)
    fit = fit_shape(target, cat)
    assert fit.normalised_rms < 1e-6
    np.testing.assert_allclose(fit.fitted, target, atol=1e-6)
    if np.linalg.matrix_rank(cat.bases_array.reshape(cat.num_bases, -1)) == cat.num_bases:
        np.testing.assert_allclose(fit.alpha, alpha, rtol=1e-4, atol=1e-7)


def test_sofa_mean_shape_lies_in_the_span_of_its_deformations():
    # 3D-INN's sofa: mean = 2 width + length + 2 leg_height + 2 back_height, so alpha is not
    # identifiable from a structure (the structure itself is).
    sofa = get_category("sofa")
    b = {n: sofa.bases_array[i] for i, n in enumerate(sofa.basis_names)}
    np.testing.assert_allclose(b["mean"], 2 * b["width"] + b["length"] + 2 * b["leg_height"] + 2 * b["back_height"])


def test_fit_error_of_a_known_perturbation_and_missing_keypoints():
    cat = get_category("chair")
    target = cat.mean_shape.copy()
    target[8, 1] += 1.0  # raise one backrest corner: no chair basis moves one corner alone
    full = fit_shape(target, cat)
    assert 0 < full.normalised_rms < 1.0 / rms_radius(target)
    target[8] = np.nan
    partial = fit_shape(target, cat)
    assert partial.normalised_rms < 1e-6 and np.isnan(partial.per_keypoint[8])
    mean_only = fit_shape(cat.mean_shape * np.array([1.5, 1, 1]), cat, use_deformations=False)
    assert mean_only.normalised_rms > 0.05, "widening needs the width basis"


def test_too_few_keypoints_is_an_error():
    target = np.full((10, 3), np.nan)
    target[:3] = 0
    with pytest.raises(ValueError, match="at least 4"):
        fit_shape(target, "chair")
