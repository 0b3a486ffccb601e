import math

import pytest
import torch

from interp3d import geometry
from interp3d.data.synthetic import SkeletonSampler
from interp3d.params import ParamCodec, ShapeCamera
from interp3d.shape_model import list_categories


@pytest.mark.parametrize("name", list_categories())
def test_codec_round_trip_and_layout(name):
    codec = ParamCodec(name)
    batch = SkeletonSampler(name).sample(64, torch.Generator().manual_seed(1), dtype=torch.float64)
    vec = codec.encode(batch.params)
    k = codec.category.num_bases
    assert vec.shape == (64, k + 9)
    assert torch.allclose(vec[:, k], 1 / batch.params.focal)
    assert torch.allclose(vec[:, k + 1 : k + 4], torch.sin(batch.angles))
    assert torch.allclose(vec[:, k + 4 : k + 7], torch.cos(batch.angles))
    back = codec.decode(vec)
    for field in ("alpha", "r6", "translation", "focal"):
        assert torch.allclose(getattr(back, field), getattr(batch.params, field))
    norm = codec.normalise(vec)
    assert norm.min() >= -1e-9 and norm.max() <= 1 + 1e-9, "samples from the ranges normalise into [0, 1]"
    assert torch.allclose(codec.denormalise(norm), vec)


def test_bed_has_normalisation_and_bounds_follow_ranges():
    codec = ParamCodec("bed")
    bounds = codec.bounds()
    # alpha_1 in [30, 42]; alpha_2 relative [-1.2, 0.5] -> absolute [-50.4, 21] (the 3D-INN bounds)
    assert bounds[0].tolist() == pytest.approx([30, 42])
    assert bounds[1].tolist() == pytest.approx([-50.4, 21.0])
    assert bounds[5].tolist() == pytest.approx([1 / 450, 1 / 200])


def test_decoded_parameters_project_like_geometry():
    codec = ParamCodec("chair")
    alpha = torch.tensor([40.0, 10, -5, 3, 1])
    angles = torch.tensor([math.pi + 0.2, 1.0, 0.0])
    params = ShapeCamera.from_angles(alpha, angles, torch.tensor([5.0, -3.0]), torch.tensor(300.0))
    y, cam, uv = codec.decode(codec.encode(params)).project(codec.category)
    ref = geometry.project_structure(alpha, geometry.euler_to_matrix(angles), torch.tensor([5.0, -3.0]), torch.tensor(300.0), codec.category.bases(), 320)
    assert torch.allclose(uv, ref[2], atol=1e-4)
    az, el = params.view()
    assert az.item() == pytest.approx(1.0) and el.item() == pytest.approx(0.2, abs=1e-6)


def test_wrong_vector_length_is_rejected():
    with pytest.raises(ValueError, match="must have 14 values"):
        ParamCodec("chair").decode(torch.zeros(3, 15))
