"""benchmarks/side_views.py: distance from a side view and mixed half-turn labellings, on known answers."""

import numpy as np

from conftest import load_repo_script
from interp3d.shape_model import get_category


def test_distance_from_side_view_and_mixed_labellings():
    side_views = load_repo_script("benchmarks/side_views.py")
    azimuth = np.radians([0.0, 90.0, -90.0, 180.0, 135.0, 350.0, 275.0])
    np.testing.assert_allclose(side_views.distance_from_side_deg(azimuth), [90.0, 0.0, 0.0, 90.0, 45.0, 80.0, 5.0], atol=1e-9)
    turn = list(get_category("table").half_turn_permutation)
    truth = np.random.default_rng(0).uniform(0, 48, size=(3, 8, 2))
    visible = np.ones((3, 8), bool)
    peaks = truth.copy()  # image 0: its own labelling
    peaks[1] = truth[1][turn]  # image 1: the other labelling throughout
    peaks[2, :4] = truth[2][turn][:4]  # image 2: the top in the other labelling, the feet in its own
    assert side_views.mixed_labellings(peaks, truth, visible, turn, 0.05 * 48).tolist() == [False, False, True]
