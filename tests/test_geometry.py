import math

import pytest
import torch

from interp3d import geometry as g

torch.manual_seed(0)


def random_angles(n, zero_roll=False, dtype=torch.float64):
    a = (torch.rand(n, 3, dtype=dtype) * 2 - 1) * math.pi
    a[:, 1] = torch.rand(n, dtype=dtype) * 2 * math.pi  # full azimuth circle
    if zero_roll:
        a[:, 2] = 0
    return a


def test_axis_rotations_match_textbook_matrices():
    t = torch.tensor(0.3, dtype=torch.float64)
    c, s = math.cos(0.3), math.sin(0.3)
    rx = g.euler_to_matrix(torch.tensor([0.3, 0.0, 0.0], dtype=torch.float64))
    ry = g.euler_to_matrix(torch.tensor([0.0, 0.3, 0.0], dtype=torch.float64))
    rz = g.euler_to_matrix(torch.tensor([0.0, 0.0, 0.3], dtype=torch.float64))
    assert torch.allclose(rx, torch.tensor([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=torch.float64))
    assert torch.allclose(ry, torch.tensor([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=torch.float64))
    assert torch.allclose(rz, torch.tensor([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=torch.float64))
    # composition order R = Rx Ry Rz
    r = g.euler_to_matrix(torch.tensor([0.3, 0.3, 0.3], dtype=torch.float64))
    assert torch.allclose(r, rx @ ry @ rz)
    del t


def test_rotation_is_orthonormal_with_unit_determinant():
    r = g.euler_to_matrix(random_angles(100))
    eye = torch.eye(3, dtype=torch.float64).expand(100, 3, 3)
    assert torch.allclose(r @ r.transpose(-1, -2), eye, atol=1e-12)
    assert torch.allclose(torch.linalg.det(r), torch.ones(100, dtype=torch.float64))


@pytest.mark.parametrize("zero_roll", [True, False])
def test_matrix_to_euler_round_trip(zero_roll):
    angles = random_angles(200, zero_roll=zero_roll)
    if not zero_roll:  # the general decomposition returns theta2 in [-pi/2, pi/2]
        angles[:, 1] = (torch.rand(200, dtype=torch.float64) - 0.5) * 0.98 * math.pi
    r = g.euler_to_matrix(angles)
    back = g.matrix_to_euler(r, zero_roll=zero_roll)
    assert torch.allclose(g.euler_to_matrix(back), r, atol=1e-10)
    diff = g.wrap_angle(back - angles)
    assert diff.abs().max() < 1e-9


def test_sincos_round_trip_and_unnormalised_pairs():
    angles = random_angles(50, zero_roll=True)
    r6 = g.euler_to_sincos(angles)
    scale = torch.rand(50, 6, dtype=torch.float64) + 0.1
    scaled = r6.clone()
    scaled[:, :3] *= scale[:, :3]
    scaled[:, 3:] *= scale[:, :3]  # same factor within each (sin, cos) pair
    assert torch.allclose(g.wrap_angle(g.sincos_to_euler(scaled) - angles), torch.zeros_like(angles), atol=1e-12)
    assert torch.allclose(g.sincos_to_matrix(scaled), g.euler_to_matrix(angles), atol=1e-12)


def test_sincos_zero_roll_ignores_predicted_roll():
    r6 = g.euler_to_sincos(torch.tensor([[3.3, 1.0, 0.7]], dtype=torch.float64))
    expected = g.euler_to_matrix(torch.tensor([[3.3, 1.0, 0.0]], dtype=torch.float64))
    assert torch.allclose(g.sincos_to_matrix(r6), expected)


def test_view_conventions_front_faces_camera_and_up_is_image_up():
    angles = g.view_to_euler(torch.tensor(0.0), torch.tensor(0.0))
    r = g.euler_to_matrix(angles.double())
    front = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    up = torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    # camera at Z = -f looks along +Z: the front must point toward it (negative Z)
    assert (r @ front)[2] == pytest.approx(-1.0)
    # image v grows downward: object up must map to negative camera y
    assert (r @ up)[1] == pytest.approx(-1.0)
    az, el = g.euler_to_view(torch.tensor([math.pi + 0.2, 5.0, 0.0]))
    assert az.item() == pytest.approx(5.0) and el.item() == pytest.approx(0.2)


def test_projection_matches_hand_computed_pinhole():
    # point (10, -20, 30) in camera frame, f = 100, plane 240 -> centre 120
    x = torch.tensor([[10.0, -20.0, 30.0]], dtype=torch.float64)
    uv = g.perspective_project(x, torch.tensor(100.0, dtype=torch.float64), 240)
    assert uv[0].tolist() == pytest.approx([120 + 100 * 10 / 130, 120 - 100 * 20 / 130])
    # equivalently a pinhole camera K [I | (0,0,f)] with K = [[f,0,c],[0,f,c],[0,0,1]]
    k = torch.tensor([[100.0, 0, 120], [0, 100.0, 120], [0, 0, 1]], dtype=torch.float64)
    h = k @ (x[0] + torch.tensor([0, 0, 100.0], dtype=torch.float64))
    assert torch.allclose(uv[0], h[:2] / h[2])


def test_project_structure_composes_structure_rotation_translation():
    bases = torch.randn(3, 5, 3, dtype=torch.float64)
    alpha = torch.tensor([[2.0, 0.5, -1.0]], dtype=torch.float64)
    angles = random_angles(1, zero_roll=True)
    rot = g.euler_to_matrix(angles)
    t = torch.tensor([[3.0, -4.0]], dtype=torch.float64)
    f = torch.tensor([500.0], dtype=torch.float64)
    y, cam, uv = g.project_structure(alpha, rot, t, f, bases, 320)
    y_ref = 2 * bases[0] + 0.5 * bases[1] - bases[2]
    cam_ref = y_ref @ rot[0].T + torch.tensor([3.0, -4.0, 0.0], dtype=torch.float64)
    assert torch.allclose(y[0], y_ref) and torch.allclose(cam[0], cam_ref)
    assert torch.allclose(uv[0], 500 * cam_ref[:, :2] / (500 + cam_ref[:, 2:]) + 160)


def test_projection_gradients_are_exact():
    bases = torch.randn(4, 6, 3, dtype=torch.float64)
    alpha = torch.tensor([[30.0, 3.0, -2.0, 1.0]], dtype=torch.float64, requires_grad=True)
    r6 = torch.tensor([[0.3, -0.4, 0.0, -0.9, 0.8, 1.0]], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([[5.0, -7.0]], dtype=torch.float64, requires_grad=True)
    f = torch.tensor([300.0], dtype=torch.float64, requires_grad=True)

    def fn(alpha, r6, t, f):
        return g.project_structure(alpha, g.sincos_to_matrix(r6), t, f, bases, 320)[2]

    assert torch.autograd.gradcheck(fn, (alpha, r6, t, f))


def test_float32_and_batch_shapes_are_preserved():
    angles = random_angles(6, dtype=torch.float32).reshape(2, 3, 3)
    r = g.euler_to_matrix(angles)
    assert r.shape == (2, 3, 3, 3) and r.dtype == torch.float32


def test_bad_shapes_raise_clear_errors():
    with pytest.raises(ValueError, match="last dimension 3"):
        g.euler_to_matrix(torch.zeros(4, 2))
    with pytest.raises(ValueError, match="coefficients"):
        g.structure_from_alpha(torch.zeros(2, 3), torch.zeros(4, 5, 3))
    with pytest.raises(ValueError, match="last dimension 6"):
        g.sincos_to_matrix(torch.zeros(5))


def test_points_in_front():
    cam = torch.tensor([[0.0, 0.0, -150.0], [0.0, 0.0, -50.0]])
    assert g.points_in_front(cam, torch.tensor(100.0)).tolist() == [False, True]
