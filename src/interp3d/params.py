"""Structure-and-camera parameters and their vector codec.

The parameter vector of 3D-INN, length K + 9::

    [alpha_1 .. alpha_K, 1/f, sin t1, sin t2, sin t3, cos t1, cos t2, cos t3, t_x, t_y]

alpha is absolute (alpha_1 is the scale; deformation coefficients already multiplied by it).
:class:`ParamCodec` maps the vector to [0, 1] per component with bounds derived from the
category's sampling ranges, so every category (bed included) has a normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from . import geometry
from .shape_model import Category, get_category

__all__ = ["ShapeCamera", "ParamCodec"]


@dataclass
class ShapeCamera:
    """Batched structure and camera: alpha ``(..., K)``, r6 ``(..., 6)``, translation ``(..., 2)``, focal ``(...)``."""

    alpha: Tensor
    r6: Tensor
    translation: Tensor
    focal: Tensor

    @classmethod
    def from_angles(cls, alpha: Tensor, angles: Tensor, translation: Tensor, focal: Tensor) -> "ShapeCamera":
        return cls(alpha, geometry.euler_to_sincos(angles), translation, focal)

    @property
    def batch_shape(self) -> torch.Size:
        return self.alpha.shape[:-1]

    def rotation(self, zero_roll: bool = True) -> Tensor:
        return geometry.sincos_to_matrix(self.r6, zero_roll=zero_roll)

    def angles(self, zero_roll: bool = True) -> Tensor:
        return geometry.sincos_to_euler(self.r6, zero_roll=zero_roll)

    def view(self) -> tuple[Tensor, Tensor]:
        """(azimuth in [0, 2 pi), elevation in [-pi, pi))."""
        return geometry.euler_to_view(self.angles())

    def project(self, category: Category) -> tuple[Tensor, Tensor, Tensor]:
        """(object-frame structure, camera-frame points, plane coordinates) via :func:`geometry.project_structure`."""
        return geometry.project_structure(
            self.alpha, self.rotation(), self.translation, self.focal, category.bases(self.alpha.dtype, self.alpha.device),
            category.plane_size,
        )

    def index(self, idx) -> "ShapeCamera":
        return ShapeCamera(self.alpha[idx], self.r6[idx], self.translation[idx], self.focal[idx])

    def to(self, *args, **kwargs) -> "ShapeCamera":
        return ShapeCamera(*(t.to(*args, **kwargs) for t in (self.alpha, self.r6, self.translation, self.focal)))


class ParamCodec:
    """Encode/decode :class:`ShapeCamera` to the K+9 vector, and normalise it to [0, 1]."""

    def __init__(self, category: Category | str):
        self.category = get_category(category)
        k = self.category.num_bases
        r = self.category.ranges
        bounds = np.zeros((k + 9, 2))
        bounds[:k] = r.absolute_alpha_bounds()
        bounds[k] = (1.0 / r.focal[1], 1.0 / r.focal[0])
        bounds[k + 1 : k + 7] = (-1.0, 1.0)
        bounds[k + 7] = r.translation_x
        bounds[k + 8] = r.translation_y
        span = bounds[:, 1] - bounds[:, 0]
        # A degenerate range (low == high) still needs an invertible map: give it unit span.
        span[span <= 0] = 1.0
        self._low = torch.as_tensor(bounds[:, 0])
        self._span = torch.as_tensor(span)

    @property
    def size(self) -> int:
        return self.category.num_params

    @property
    def slices(self) -> dict[str, slice]:
        k = self.category.num_bases
        return {"alpha": slice(0, k), "inv_focal": slice(k, k + 1), "r6": slice(k + 1, k + 7), "translation": slice(k + 7, k + 9)}

    def bounds(self) -> Tensor:
        """(P, 2) un-normalised low/high of each component."""
        return torch.stack((self._low, self._low + self._span), dim=-1)

    def encode(self, params: ShapeCamera) -> Tensor:
        inv_f = (1.0 / params.focal).unsqueeze(-1)
        return torch.cat((params.alpha, inv_f, params.r6, params.translation), dim=-1)

    def decode(self, vector: Tensor) -> ShapeCamera:
        if vector.shape[-1] != self.size:
            raise ValueError(
                f"parameter vector for {self.category.name!r} must have {self.size} values, got shape {tuple(vector.shape)}"
            )
        s = self.slices
        # A network may predict 1/f <= 0; a tiny positive floor keeps f finite and positive.
        inv_f = vector[..., s["inv_focal"]].squeeze(-1).clamp_min(1e-6)
        return ShapeCamera(vector[..., s["alpha"]], vector[..., s["r6"]], vector[..., s["translation"]], 1.0 / inv_f)

    def normalise(self, vector: Tensor) -> Tensor:
        low, span = self._low.to(vector), self._span.to(vector)
        return (vector - low) / span

    def denormalise(self, normalised: Tensor) -> Tensor:
        low, span = self._low.to(normalised), self._span.to(normalised)
        return normalised * span + low
