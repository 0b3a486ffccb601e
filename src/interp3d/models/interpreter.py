"""The 3D interpreter: hourglass -> heatmaps -> lifter -> (alpha, r, t, f) -> projection layer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from .. import geometry
from ..params import ParamCodec, ShapeCamera
from ..shape_model import Category, get_category
from .hourglass import HourglassNet
from .lifter import Lifter

__all__ = ["Interpreter", "InterpreterOutput", "Lifted"]


@dataclass
class Lifted:
    """The lifter's prediction, decoded and projected (everything differentiable)."""

    params_normalised: Tensor  # (B, P)
    params: ShapeCamera
    structure: Tensor  # (B, N, 3) object frame
    points_cam: Tensor  # (B, N, 3)
    keypoints_plane: Tensor  # (B, N, 2) projection-plane px
    keypoints: Tensor  # (B, N, 2) heatmap px


@dataclass
class InterpreterOutput(Lifted):
    heatmaps: Tensor  # (B, N, H, W), last stack
    all_heatmaps: list[Tensor]


class Interpreter(nn.Module):
    """``Interpreter(images)``: images ``(B, 3, S, S)`` in [0, 1] -> :class:`InterpreterOutput`."""

    def __init__(self, category: Category | str, hourglass: HourglassNet, lifter: Lifter, image_size: int, heatmap_size: int):
        super().__init__()
        self.category = get_category(category)
        self.codec = ParamCodec(self.category)
        self.hourglass = hourglass
        self.lifter = lifter
        self.image_size = image_size
        self.heatmap_size = heatmap_size
        self.register_buffer("bases", self.category.bases(torch.float32), persistent=False)

    @classmethod
    def load(cls, path_or_name: str | Path, device: str | torch.device = "cpu") -> "Interpreter":
        """A trained interpreter in eval mode: a training checkpoint (``.pt``), an exported
        ``.safetensors`` file, or the name of a model shipped with the package (e.g. ``chair``)."""
        from .serialization import load_interpreter

        return load_interpreter(path_or_name, device)

    @classmethod
    def build(cls, category: Category | str, image_size: int = 256, heatmap_size: int = 64, features: int = 256, depth: int = 4, stacks: int = 1, lifter_widths=(2048, 512, 128), dropout: float = 0.0) -> "Interpreter":
        category = get_category(category)
        hourglass = HourglassNet(category.num_keypoints, features, depth, stacks, stride=HourglassNet.stride_for(image_size, heatmap_size))
        lifter = Lifter(category.num_keypoints, heatmap_size, category.num_params, tuple(lifter_widths), dropout)
        return cls(category, hourglass, lifter, image_size, heatmap_size)

    def lift(self, heatmaps: Tensor) -> Lifted:
        """Run the 2D-to-3D module and the projection layer on heatmaps ``(B, N, H, W)``."""
        return self.decode(self.lifter(heatmaps))

    def decode(self, normalised: Tensor) -> Lifted:
        """Decode the lifter's normalised parameter vectors ``(B, P)`` and project them."""
        params = self.codec.decode(self.codec.denormalise(normalised.float()))
        structure, points_cam, plane = geometry.project_structure(
            params.alpha, params.rotation(), params.translation, params.focal, self.bases.to(params.alpha), self.category.plane_size
        )
        keypoints = geometry.rescale_points(plane, self.category.plane_size, self.heatmap_size)
        return Lifted(normalised, params, structure, points_cam, plane, keypoints)

    def forward(self, images: Tensor) -> InterpreterOutput:
        all_heatmaps = self.hourglass(images)
        heatmaps = all_heatmaps[-1]
        lifted = self.lift(heatmaps)
        return InterpreterOutput(**vars(lifted), heatmaps=heatmaps, all_heatmaps=all_heatmaps)
