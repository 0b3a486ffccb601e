"""Image augmentation moves keypoints exactly with the pixels (rotation, flip, zoom, shift) and hides
the keypoints that an occluder covers."""

import torch

from interp3d.data.augment import augment_batch


def _dot_images(keypoints: torch.Tensor, size: int) -> torch.Tensor:
    """One channel per keypoint... folded into RGB: keypoint n is a Gaussian blob in image n % B."""
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    d2 = (xs - keypoints[..., 0, None, None]) ** 2 + (ys - keypoints[..., 1, None, None]) ** 2  # (B, N, S, S)
    return torch.exp(-d2 / (2 * 1.5**2))


def test_keypoints_follow_the_pixels_under_every_geometric_augmentation():
    torch.manual_seed(0)
    b, n, size = 6, 3, 64
    keypoints = 20 + 24 * torch.rand(b, n, 2)
    blobs = _dot_images(keypoints, size)  # (B, N, S, S): use the N blobs as channels of the image
    images = blobs[:, :3]
    visible = torch.ones(b, n, dtype=torch.bool)
    gen = torch.Generator().manual_seed(3)
    out, moved, vis = augment_batch(images, keypoints, visible, [0, 1, 2], gen, rotation_deg=30, colour=0.0, flip=True, scale=0.3, shift=0.1)
    for i in range(b):
        for k in range(n):
            if not vis[i, k]:
                continue
            channel = out[i, k]
            peak = torch.nonzero(channel == channel.max())[0].flip(0).float() + 0.5  # (x, y) px centre
            assert torch.dist(peak, moved[i, k]) < 1.2, (i, k, peak, moved[i, k])
    assert not torch.equal(moved, keypoints)


def test_flip_swaps_left_and_right_labels():
    keypoints = torch.tensor([[[10.0, 30.0], [50.0, 30.0]]])
    images = torch.zeros(1, 3, 64, 64)
    gen = torch.Generator().manual_seed(0)
    while True:  # find a draw that flips
        _, moved, _ = augment_batch(images, keypoints, torch.ones(1, 2, dtype=torch.bool), [1, 0], gen, rotation_deg=0, colour=0, flip=True)
        if not torch.allclose(moved, keypoints):
            break
    # the left point (label 0) mirrored to x = 54 is relabelled 1, so label 0 is the mirrored right point
    torch.testing.assert_close(moved, torch.tensor([[[14.0, 30.0], [54.0, 30.0]]]))


def test_occluders_hide_the_keypoints_they_cover_with_another_images_pixels():
    b, size = 8, 64
    keypoints = torch.full((b, 4, 2), 32.0) + torch.tensor([[-6.0, 0], [6, 0], [0, -6], [0, 6]])
    images = torch.arange(b, dtype=torch.float32).view(b, 1, 1, 1).expand(b, 3, size, size).clone() / b
    visible = torch.ones(b, 4, dtype=torch.bool)
    out, moved, vis = augment_batch(images, keypoints, visible, [0, 1, 2, 3], torch.Generator().manual_seed(1), rotation_deg=0, colour=0, flip=False, occlude=1.0)
    torch.testing.assert_close(moved, keypoints)
    assert (~vis).any() and vis.any()
    for i in range(b):
        own, other = i / b, ((i - 1) % b) / b
        values = set(out[i, 0].unique().tolist())
        assert values <= {own, other} and other in values  # the occluder is the previous image's pixels
        for k in range(4):
            x, y = keypoints[i, k].long()
            assert bool(vis[i, k]) == (abs(out[i, 0, y, x].item() - own) < 1e-6)
