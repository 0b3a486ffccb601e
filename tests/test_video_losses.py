import itertools

import pytest
import torch

from interp3d.train.losses import (
    confidence_reprojection_loss,
    motion_smoothness_loss,
    range_loss,
    reprojection_loss,
    structure_consistency_loss,
    update_latents,
)


def test_reprojection_loss_hand_computed():
    pred = torch.tensor([[[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]]])
    gt = torch.tensor([[[3.0, 4.0], [1.0, 2.0], [0.0, 0.0]]])
    visible = torch.tensor([[True, True, False]])
    assert reprojection_loss(pred, gt, visible).item() == pytest.approx((25 + 1) / 2)


def test_structure_consistency_hand_computed_and_no_gradient_into_latents():
    alpha = torch.tensor([[[1.0, 2.0], [3.0, 2.0]]], requires_grad=True)  # one clip, two frames, K = 2
    inv_f = torch.tensor([[0.5, 0.7]], requires_grad=True)
    alpha_c = torch.tensor([[2.0, 2.0]], requires_grad=True)
    f_c = torch.tensor([0.6], requires_grad=True)
    loss = structure_consistency_loss(alpha, inv_f, alpha_c, f_c, w_alpha=10.0, w_focal=100.0)
    # |a - a_c|_1 per frame: 1, 1 -> mean 1; |f - f_c|: 0.1, 0.1 -> mean 0.1
    assert loss.item() == pytest.approx(10 * 1 + 100 * 0.1)
    loss.backward()
    assert alpha.grad is not None and alpha_c.grad is None and f_c.grad is None


def test_motion_smoothness_hand_computed():
    r6 = torch.zeros(1, 3, 6)
    r6[0, 1, 0] = 0.5
    t = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [1.0, 2.0]]])
    # rotation steps: 0.5, 0.5 -> mean 0.5; translation steps: 1, 2 -> mean 1.5
    assert motion_smoothness_loss(r6, t, 2.0, 3.0).item() == pytest.approx(2 * 0.5 + 3 * 1.5)


def test_identical_frames_have_zero_video_losses():
    frame_alpha = torch.rand(1, 1, 5)
    alpha = frame_alpha.expand(2, 4, 5)
    inv_f = torch.full((2, 4), 0.3)
    a_c, f_c = update_latents(alpha, inv_f, use_median=True)
    assert structure_consistency_loss(alpha, inv_f, a_c, f_c, 1.0, 1.0).item() == 0.0
    r6 = torch.rand(1, 1, 6).expand(2, 4, 6)
    t = torch.rand(1, 1, 2).expand(2, 4, 2)
    assert motion_smoothness_loss(r6, t, 1.0, 1.0).item() == 0.0


def test_median_update_is_the_brute_force_l1_minimiser():
    torch.manual_seed(0)
    alpha = torch.randn(3, 5, 2)
    inv_f = torch.rand(3, 5)
    med_a, med_f = update_latents(alpha, inv_f, use_median=True)
    mean_a, _ = update_latents(alpha, inv_f, use_median=False)
    assert torch.allclose(mean_a, alpha.mean(1))
    for v in range(3):
        # the L1 optimum lies at a data value: try every combination of frame values per dimension
        def cost(a, f):
            return (alpha[v] - a).abs().sum() + (inv_f[v] - f).abs().sum()

        best = min(cost(torch.stack([alpha[v, i, 0], alpha[v, j, 1]]), inv_f[v, k]) for i, j, k in itertools.product(range(5), repeat=3))
        assert cost(med_a[v], med_f[v]).item() == pytest.approx(best.item(), abs=1e-6)
        assert cost(mean_a[v], med_f[v]).item() >= best.item() - 1e-6


def test_confidence_weighting_and_gradients():
    projected = torch.tensor([[[1.0, 1.0], [2.0, 2.0]]], requires_grad=True)
    peaks = torch.tensor([[[1.0, 2.0], [2.0, 0.0]]])
    confidence = torch.tensor([[0.5, 0.0]])
    loss = confidence_reprojection_loss(projected, peaks, confidence, w_2d=4.0)
    assert loss.item() == pytest.approx(4.0 * (0.5 * 1.0 + 0.0 * 4.0) / 2)
    loss.backward()
    assert projected.grad[0, 1].abs().sum() == 0 and projected.grad[0, 0].abs().sum() > 0


def test_range_loss_hand_computed_zero_inside_and_pulls_back_from_outside():
    from interp3d.params import ParamCodec

    s = ParamCodec("chair").slices  # 5 alphas, inverse focal, r6, translation
    inside = torch.full((2, 14), 0.5)
    inside[:, s["r6"]] = 7.0  # rotation codes are not range-checked
    assert range_loss(inside, s).item() == 0.0
    x = inside.clone()
    x[0, 0] = -0.5  # alpha 0.5 below its range
    x[0, s["inv_focal"]] = 3.0  # 2 above
    x[1, 12] = 1.25  # translation 0.25 above
    x.requires_grad_(True)
    loss = range_loss(x, s)
    assert loss.item() == pytest.approx((0.5 + 2.0 + 0.25) / 2)
    loss.backward()
    expected = torch.zeros_like(x)
    expected[0, 0], expected[0, 5], expected[1, 12] = -0.5, 0.5, 0.5  # a gradient step moves them back inside
    torch.testing.assert_close(x.grad, expected)
