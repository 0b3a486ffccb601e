"""Front or back from the image (models.appearance): the frozen pretrained encoder's pooled layout
features and a class-balanced logistic regression, on images whose side is a known layout cue."""

import math

import pytest
import torch

from interp3d.models.appearance import FrontBackAppearance


def _images(n_front: int, n_back: int, seed: int):
    """Noise images with one coloured square: in the lower half for a front view, the upper half
    for a back view (the cue a seat below a backrest gives); azimuths within 70 deg of each side."""
    g = torch.Generator().manual_seed(seed)
    n = n_front + n_back
    images = torch.rand(n, 3, 64, 64, generator=g) * 0.3
    back = torch.arange(n) >= n_front
    for i in range(n):
        x = int(torch.randint(0, 40, (1,), generator=g))
        y = int(torch.randint(0, 12, (1,), generator=g)) + (0 if back[i] else 32)
        images[i, :, y : y + 20, x : x + 24] = torch.rand(3, 1, 1, generator=g) * 0.5 + 0.5
    spread = (torch.rand(n, generator=g) - 0.5) * math.radians(140)
    azimuth = torch.where(back, math.pi + spread, spread)
    return (images * 255).round().to(torch.uint8), azimuth, back


def test_learns_front_and_back_from_few_back_views_and_reads_new_images():
    torch.manual_seed(0)
    appearance = FrontBackAppearance(input_size=64)
    images, azimuth, _ = _images(36, 8, seed=1)  # few back views, as in the photographs
    azimuth[0] = float("nan")  # an image whose view is unknown is left out
    summary = appearance.fit(images, azimuth)
    assert summary["images"] == 43 and summary["back_share"] == pytest.approx(8 / 43)
    test_images, _, back = _images(20, 20, seed=2)
    log_probs = appearance.log_probs(test_images)
    assert log_probs.shape == (40, 2)
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(40), atol=1e-5)
    said_back = log_probs[:, 1] > log_probs[:, 0]
    assert said_back[back].float().mean() >= 0.9 and (~said_back[~back]).float().mean() >= 0.9
    # a mirrored image shows the same side
    mirrored = appearance.log_probs(test_images.flip(-1))
    assert ((mirrored[:, 1] > mirrored[:, 0]) == said_back).float().mean() >= 0.9


def test_one_side_only_is_refused():
    appearance = FrontBackAppearance(input_size=64)
    images, azimuth, back = _images(10, 0, seed=3)
    with pytest.raises(ValueError, match="both sides"):
        appearance.fit(images, azimuth)
    with pytest.raises(ValueError, match="multiple of 32"):
        FrontBackAppearance(input_size=100, pretrained=False)
