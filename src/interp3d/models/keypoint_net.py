"""The 2D module: which network turns an image into keypoint heatmaps (``model.backbone``)."""

from __future__ import annotations

from torch import nn

from .efficientnet import EfficientNetKeypointNet
from .hourglass import HourglassNet

__all__ = ["BACKBONES", "build_keypoint_net"]

# "hourglass": 3D-INN's one-stack hourglass, trained from scratch (the paper preset);
# "efficientnet_lite0": ImageNet-pretrained EfficientNet-Lite0 encoder + light FPN decoder
BACKBONES = ("hourglass", "efficientnet_lite0")


def build_keypoint_net(
    num_keypoints: int, image_size: int, heatmap_size: int, backbone: str = "hourglass", features: int = 256, depth: int = 4, stacks: int = 1,
    decoder_channels: int = 96, pretrained: bool = False, view_bins: int = 0,
) -> nn.Module:
    """A network ``(B, 3, S, S)`` images in [0, 1] -> list of ``(B, K, h, h)`` heatmaps. ``pretrained``
    loads the ImageNet encoder weights (pretrain-2d); later stages load a trained 2D module instead.
    ``view_bins``: an azimuth-classification head (pretrained encoders only; its ``view_bins``
    attribute is 0 on networks without one)."""
    if backbone == "hourglass":
        if view_bins:
            raise ValueError("the viewpoint head (model.view_bins) needs a pretrained encoder backbone, not the hourglass")
        return HourglassNet(num_keypoints, features, depth, stacks, stride=HourglassNet.stride_for(image_size, heatmap_size))
    if backbone == "efficientnet_lite0":
        if image_size != EfficientNetKeypointNet.STRIDE * heatmap_size:
            raise ValueError(f"the efficientnet_lite0 backbone makes heatmaps at 1/4 of the image: image size {image_size} needs heatmap size {image_size // 4}, got {heatmap_size}")
        return EfficientNetKeypointNet(num_keypoints, decoder_channels, pretrained=pretrained, view_bins=view_bins)
    raise ValueError(f"unknown backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")
