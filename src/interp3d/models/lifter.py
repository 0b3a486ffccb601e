"""The 2D-to-3D module: flattened keypoint heatmaps -> normalised structure and camera parameters.

Four fully connected layers (paper: 2048, 512, 128, |S|) with ReLU and optional dropout; the
output is the normalised K+9 parameter vector of :class:`interp3d.params.ParamCodec`.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["Lifter"]


class Lifter(nn.Module):
    def __init__(self, num_keypoints: int, heatmap_size: int, num_params: int, widths: tuple[int, ...] = (2048, 512, 128), dropout: float = 0.0):
        super().__init__()
        self.in_features = num_keypoints * heatmap_size * heatmap_size
        layers: list[nn.Module] = []
        prev = self.in_features
        for width in widths:
            layers += [nn.Linear(prev, width), nn.ReLU(inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            prev = width
        layers.append(nn.Linear(prev, num_params))
        self.net = nn.Sequential(*layers)

    def forward(self, heatmaps: Tensor) -> Tensor:
        flat = heatmaps.flatten(1)
        if flat.shape[1] != self.in_features:
            raise ValueError(f"lifter expects {self.in_features} heatmap values per sample, got {flat.shape[1]}")
        return self.net(flat)
