import math

import pytest
import torch

from interp3d.heatmaps import heatmap_modes, heatmap_peaks, peak_confidence, render_heatmaps


def test_peak_is_at_the_keypoint_pixel_and_values_follow_the_kernel():
    xy = torch.tensor([[[10.3, 20.8], [63.9, 0.0]]])
    maps = render_heatmaps(xy, size=64, sigma=1.0)
    peaks, values = heatmap_peaks(maps)
    assert peaks[0].tolist() == [[10.5, 20.5], [63.5, 0.5]]
    # value at pixel (row 20, col 10): centre (10.5, 20.5)
    d2 = (10.5 - 10.3) ** 2 + (20.5 - 20.8) ** 2
    assert maps[0, 0, 20, 10].item() == pytest.approx(math.exp(-d2 / 2), rel=1e-6)
    # circular support of radius 3 sigma: (dx, dy) = (3.2, 0.3) from the keypoint is outside
    assert maps[0, 0, 21, 13].item() == 0.0
    assert maps[0, 0, 20, 12].item() > 0.0


def test_exact_pixel_centre_gives_peak_one_and_symmetric_map():
    maps = render_heatmaps(torch.tensor([[32.5, 32.5]]), size=64, sigma=1.5)
    assert maps.max().item() == pytest.approx(1.0)
    window = maps[0, 27:38, 27:38]  # centred on pixel 32, wider than the support
    assert torch.allclose(window, window.T) and torch.allclose(window, window.flip(0))
    assert window.sum().item() == pytest.approx(maps.sum().item())


def test_outside_and_invisible_keypoints_give_empty_channels():
    xy = torch.tensor([[-0.1, 5.0], [5.0, 64.0], [float("nan"), 1.0], [30.0, 30.0]])
    visible = torch.tensor([True, True, False, False])
    maps = render_heatmaps(xy, visible=visible)
    assert maps.flatten(1).amax(1).tolist() == [0.0, 0.0, 0.0, 0.0]


def test_amodal_targets_give_hidden_keypoints_a_lower_gaussian_where_their_projection_is_known():
    xy = torch.tensor([[10.5, 10.5], [20.3, 5.8], [float("nan"), 1.0], [40.0, 3.0]])
    visible = torch.tensor([True, False, False, False])
    plain = render_heatmaps(xy, size=32, sigma=1.5, visible=visible)
    amodal = render_heatmaps(xy, size=32, sigma=1.5, visible=visible, hidden_amplitude=0.35)
    assert torch.equal(amodal[0], plain[0])  # a visible keypoint's target is unchanged
    assert plain[1].max().item() == 0.0
    # the hidden keypoint: the visible kernel at its place, scaled to 0.35
    assert torch.allclose(amodal[1], 0.35 * render_heatmaps(xy[1:2], size=32, sigma=1.5)[0], atol=1e-7)
    assert heatmap_peaks(amodal[None, 1:2])[0][0, 0].tolist() == [20.5, 5.5]
    # unknown (NaN) and out-of-image hidden keypoints stay empty
    assert amodal[2].max().item() == 0.0 and amodal[3].max().item() == 0.0
    with pytest.raises(ValueError, match="hidden_amplitude"):
        render_heatmaps(xy, size=32, visible=visible, hidden_amplitude=1.5)


def test_nan_keypoints_without_visibility_raise():
    with pytest.raises(ValueError, match="NaN"):
        render_heatmaps(torch.tensor([[float("nan"), 3.0]]))


def test_matches_dense_reference_on_random_points():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(50, 7, 2, generator=g) * 64
    maps = render_heatmaps(xy, sigma=2.0)
    c = torch.arange(64) + 0.5
    d2 = (c[None, None, None, :] - xy[..., 0, None, None]) ** 2 + (c[None, None, :, None] - xy[..., 1, None, None]) ** 2
    dense = torch.exp(-d2 / 8) * (d2 < 36 - 1e-4)
    mask = (d2 - 36).abs() > 1e-3  # ignore pixels exactly on the support boundary
    assert torch.allclose(maps[mask], dense[mask], atol=1e-6)


def test_subpixel_peaks_recover_a_gaussians_continuous_centre():
    """The log of a Gaussian is a quadratic, so the Taylor step lands on the rendered centre exactly
    (the pixel centre is up to half a pixel off); the location is differentiable in the values."""
    centres = torch.tensor([[10.93, 10.5], [7.2, 20.61], [31.5, 3.05]], dtype=torch.float64)
    for sigma in (1.0, 2.0):
        maps = render_heatmaps(centres.unsqueeze(0), 40, sigma).requires_grad_(True)
        coarse, _ = heatmap_peaks(maps.detach())
        fine, _ = heatmap_peaks(maps, subpixel=True)
        assert (coarse[0] - centres).abs().max() > 0.4
        torch.testing.assert_close(fine[0].double(), centres, atol=1e-4, rtol=0)
        fine.sum().backward()
        assert maps.grad.abs().sum() > 0


def test_subpixel_peak_stays_at_the_pixel_centre_where_the_map_is_not_concave():
    rows = torch.arange(8, dtype=torch.float32) + 0.5
    ridge = torch.exp(-((rows - 4.3) ** 2) / 2).view(1, 1, 8, 1).expand(1, 1, 8, 8)  # flat along x: no maximum to step to
    peaks, _ = heatmap_peaks(ridge, subpixel=True)
    assert peaks[0, 0].tolist() == [0.5, 4.5]


def test_peak_confidence_is_softmax_at_peak_without_gradient():
    maps = torch.zeros(1, 2, 4, 4, requires_grad=True)
    with torch.no_grad():
        maps[0, 0, 1, 2] = 5.0
    conf = peak_confidence(maps)
    assert conf[0, 0].item() == pytest.approx(math.exp(5) / (math.exp(5) + 15))
    assert conf[0, 1].item() == pytest.approx(1 / 16)
    assert not conf.requires_grad


def test_heatmap_modes_are_the_local_maxima_highest_first_each_to_a_fraction_of_a_pixel():
    centres = torch.tensor([[10.3, 12.7], [25.6, 5.2]], dtype=torch.float64)
    two = render_heatmaps(centres.unsqueeze(0), 40, 1.5)[0]  # (2, 40, 40): one Gaussian each
    maps = (two[0] + 0.6 * two[1]).expand(1, 3, 40, 40)
    xy, values = heatmap_modes(maps, count=3)
    assert xy.shape == (1, 3, 3, 2) and values.shape == (1, 3, 3)
    torch.testing.assert_close(xy[0, 0, :2].double(), centres, atol=1e-3, rtol=0)
    assert values[0, 0, 0] > values[0, 0, 1] > 0.5 and values[0, 0, 2] == 0  # no third maximum
    peak, _ = heatmap_peaks(maps, subpixel=True)
    torch.testing.assert_close(xy[..., 0, :], peak)  # the first mode is the peak
    centres_xy, centre_values = heatmap_modes(maps, count=3, subpixel=False)
    assert torch.equal(centre_values, values) and torch.equal(centres_xy, centres_xy.floor() + 0.5)
    assert (centres_xy - xy).abs().max() <= 1.0 and (centres_xy[0, 0, :2] - centres.float()).abs().max() > 0.2


def test_heatmap_loss_scores_a_table_under_its_better_labelling():
    from interp3d.shape_model import get_category
    from interp3d.train.losses import heatmap_loss

    turn = list(get_category("table").half_turn_permutation)
    gen = torch.Generator().manual_seed(0)
    keypoints = torch.rand(2, 8, 2, generator=gen) * 24 + 4
    target = render_heatmaps(keypoints, 32, 1.0)
    turned_target = render_heatmaps(keypoints[:, turn], 32, 1.0)
    prediction = torch.stack([target[0], turned_target[1]])  # image 1 answered in the other labelling
    loss, turned = heatmap_loss([prediction], target, turned_target)
    assert loss.item() == pytest.approx(0.0, abs=1e-12) and turned.tolist() == [False, True]
    plain, none_turned = heatmap_loss([prediction], target)
    assert plain.item() > 1e-4 and not none_turned.any()
    # two stacks add up; the plain loss is the mean squared error of each
    two, _ = heatmap_loss([prediction, prediction], target)
    assert two.item() == pytest.approx(2 * torch.nn.functional.mse_loss(prediction, target).item(), rel=1e-6)
