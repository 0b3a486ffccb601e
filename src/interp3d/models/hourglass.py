"""One-stack hourglass (Newell et al. 2016) as used by 3D-INN's follow-up: image -> keypoint heatmaps.

Pre-activation bottleneck residuals; a stem that brings the image down to the heatmap resolution
(stride 4 for 256 -> 64, stride 2 for 128 -> 64, ...); a recursive hourglass of ``depth`` levels
(max-pool down, nearest-neighbour up); a head of one residual, a 1x1 conv-BN-ReLU and a 1x1 conv
to one heatmap per keypoint. Stacks > 1 use the standard intermediate re-injection.
"""

from __future__ import annotations


import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["Residual", "Hourglass", "HourglassNet"]


class Residual(nn.Module):
    """BN-ReLU-conv1x1(C/2) -> BN-ReLU-conv3x3(C/2) -> BN-ReLU-conv1x1(C), plus a (1x1) skip."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        mid = max(c_out // 2, 1)
        self.body = nn.Sequential(
            nn.BatchNorm2d(c_in), nn.ReLU(inplace=True), nn.Conv2d(c_in, mid, 1),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True), nn.Conv2d(mid, mid, 3, padding=1),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True), nn.Conv2d(mid, c_out, 1),
        )
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) + self.skip(x)


class Hourglass(nn.Module):
    def __init__(self, depth: int, channels: int, modules: int = 1):
        super().__init__()
        self.up1 = nn.Sequential(*[Residual(channels, channels) for _ in range(modules)])
        self.low1 = nn.Sequential(*[Residual(channels, channels) for _ in range(modules)])
        self.low2 = Hourglass(depth - 1, channels, modules) if depth > 1 else nn.Sequential(*[Residual(channels, channels) for _ in range(modules)])
        self.low3 = nn.Sequential(*[Residual(channels, channels) for _ in range(modules)])

    def forward(self, x: Tensor) -> Tensor:
        up = self.up1(x)
        low = self.low3(self.low2(self.low1(F.max_pool2d(x, 2))))
        return up + F.interpolate(low, size=up.shape[-2:], mode="nearest")


class HourglassNet(nn.Module):
    """``(B, 3, S, S)`` images in [0, 1] -> list of ``(B, K, S/stride, S/stride)`` heatmaps (one per stack)."""

    def __init__(self, num_keypoints: int, features: int = 256, depth: int = 4, stacks: int = 1, modules: int = 1, stride: int = 4):
        super().__init__()
        if stride not in (1, 2, 4):
            raise ValueError(f"stem stride must be 1, 2 or 4, got {stride}")
        self.num_keypoints, self.stride, self.depth = num_keypoints, stride, depth
        self.view_bins = 0  # no viewpoint head (models.efficientnet has one)
        stem_channels = min(64, features)
        mid = max(features // 2, stem_channels)
        layers: list[nn.Module] = [
            nn.Conv2d(3, stem_channels, 7, stride=2 if stride >= 2 else 1, padding=3),
            nn.BatchNorm2d(stem_channels),
            nn.ReLU(inplace=True),
            Residual(stem_channels, mid),
        ]
        if stride == 4:
            layers.append(nn.MaxPool2d(2))
        layers += [Residual(mid, mid), Residual(mid, features)]
        self.stem = nn.Sequential(*layers)
        self.hourglasses = nn.ModuleList([Hourglass(depth, features, modules) for _ in range(stacks)])
        self.heads = nn.ModuleList(
            [
                nn.Sequential(
                    *[Residual(features, features) for _ in range(modules)],
                    nn.Conv2d(features, features, 1), nn.BatchNorm2d(features), nn.ReLU(inplace=True),
                )
                for _ in range(stacks)
            ]
        )
        self.out = nn.ModuleList([nn.Conv2d(features, num_keypoints, 1) for _ in range(stacks)])
        self.merge_features = nn.ModuleList([nn.Conv2d(features, features, 1) for _ in range(stacks - 1)])
        self.merge_preds = nn.ModuleList([nn.Conv2d(num_keypoints, features, 1) for _ in range(stacks - 1)])

    def forward(self, images: Tensor) -> list[Tensor]:
        size = images.shape[-1]
        if images.shape[-2] != size or size % (self.stride * 2**self.depth):
            raise ValueError(
                f"images must be square with a side divisible by {self.stride * 2 ** self.depth} (stride x 2^depth), got {tuple(images.shape[-2:])}"
            )
        x = self.stem(images)
        outputs = []
        for i, (hg, head, out) in enumerate(zip(self.hourglasses, self.heads, self.out)):
            features = head(hg(x))
            heatmaps = out(features)
            outputs.append(heatmaps)
            if i < len(self.hourglasses) - 1:
                x = x + self.merge_features[i](features) + self.merge_preds[i](heatmaps)
        return outputs

    @staticmethod
    def stride_for(image_size: int, heatmap_size: int) -> int:
        stride = image_size // heatmap_size
        if stride * heatmap_size != image_size or stride not in (1, 2, 4):
            raise ValueError(f"image size {image_size} must be 1, 2 or 4 times the heatmap size {heatmap_size}")
        return stride

    def flops_per_image(self, image_size: int) -> float:
        """Multiply-accumulates of one forward pass (conv layers), for throughput ratios."""
        total = 0.0

        def hook(module, inp, out):
            nonlocal total
            k = module.kernel_size[0] * module.kernel_size[1]
            total += out.shape[-1] * out.shape[-2] * out.shape[1] * module.in_channels // module.groups * k

        handles = [m.register_forward_hook(hook) for m in self.modules() if isinstance(m, nn.Conv2d)]
        try:
            was_training = self.training
            self.eval()
            with torch.no_grad():
                self(torch.zeros(1, 3, image_size, image_size, device=next(self.parameters()).device))
            self.train(was_training)
        finally:
            for h in handles:
                h.remove()
        return total
