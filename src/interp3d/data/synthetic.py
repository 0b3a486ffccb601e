"""Synthetic skeletons for pre-training the 2D-to-3D module (paper Sec. 3.1, 4.1).

Parameters (alpha, R, t, f) are sampled from a category's ranges, projected with
:func:`interp3d.geometry.project_structure`, and rendered to keypoint heatmaps batch by batch
(:func:`interp3d.heatmaps.render_heatmaps`): the dataset stores only parameters and keypoints
(a few MB for 40,000 samples) and renders heatmaps on the fly, which costs milliseconds a batch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from .. import geometry
from ..heatmaps import render_heatmaps
from ..io_utils import atomic_path
from ..params import ParamCodec, ShapeCamera
from ..shape_model import Category, SamplingRanges, get_category

__all__ = ["SkeletonSampler", "SkeletonBatch", "SyntheticSkeletonDataset", "SyntheticOptions", "identity_collate"]


@dataclass
class SkeletonBatch:
    """A batch of sampled skeletons with their projections."""

    params: ShapeCamera
    angles: Tensor  # (n, 3)
    structure: Tensor  # (n, N, 3) object frame
    points_cam: Tensor  # (n, N, 3) camera frame
    keypoints: Tensor  # (n, N, 2) projection-plane px
    inside: Tensor  # (n, N) bool: in front of the camera and inside the plane


class SkeletonSampler:
    """Samples structure and camera parameters from a category's ranges.

    ``ranges`` replaces the category's ranges (e.g. a restricted pose range).
    ``distribution`` is ``"uniform"`` (3D-INN's ``alphaGSif=false``) or ``"gaussian"`` (the paper's
    wording: centred in the range, sd a quarter of its width, clipped to the range).
    With ``keep_inside`` a sample whose keypoints leave the projection plane is redrawn; a sample
    with a keypoint behind the camera is always redrawn.
    """

    def __init__(
        self,
        category: Category | str,
        distribution: str = "uniform",
        keep_inside: bool = True,
        max_redraws: int = 100,
        ranges: SamplingRanges | None = None,
    ):
        if distribution not in ("uniform", "gaussian"):
            raise ValueError(f"distribution must be 'uniform' or 'gaussian', got {distribution!r}")
        self.category = get_category(category)
        self.distribution = distribution
        self.keep_inside = keep_inside
        self.max_redraws = max_redraws
        r = self.ranges = ranges if ranges is not None else self.category.ranges
        rows = [r.scale, *r.alpha, r.elevation, r.azimuth, r.translation_x, r.translation_y, r.focal]
        self._ranges = torch.tensor(rows, dtype=torch.float64)

    def _unit(self, n: int, generator: torch.Generator) -> Tensor:
        d = self._ranges.shape[0]
        if self.distribution == "uniform":
            return torch.rand(n, d, generator=generator, dtype=torch.float64)
        return (0.5 + 0.25 * torch.randn(n, d, generator=generator, dtype=torch.float64)).clamp(0.0, 1.0)

    def _draw(self, n: int, generator: torch.Generator) -> SkeletonBatch:
        lo, hi = self._ranges[:, 0], self._ranges[:, 1]
        unit = self._unit(n, generator)
        v = lo + unit * (hi - lo)
        k = self.category.num_bases
        scale = v[:, :1]
        alpha = torch.cat((scale, scale * v[:, 1:k]), dim=1)
        elevation, azimuth, tx, ty, focal = v[:, k:].unbind(dim=1)
        angles = geometry.view_to_euler(azimuth, elevation)
        plane = self.category.plane_size
        if self.keep_inside:
            # u = f (X_n + t) / (f + Z_n) + c is affine in t for each keypoint, so the translations
            # that keep every keypoint on the plane form an interval: draw t inside it, with the
            # same unit random number, instead of rejecting whole samples.
            rotated = geometry.to_camera_frame(
                geometry.structure_from_alpha(alpha, self.category.bases(torch.float64)),
                geometry.euler_to_matrix(angles),
                torch.zeros(n, 2, dtype=torch.float64),
            )
            gain = (focal.unsqueeze(-1) + rotated[..., 2]) / focal.unsqueeze(-1)  # (n, N); >0 in front
            margin = 1e-6 * plane
            txy = []
            for axis, t_unit in ((0, unit[:, k + 2]), (1, unit[:, k + 3])):
                low = (-plane / 2 * gain - rotated[..., axis]).amax(dim=1)
                high = ((plane / 2 - margin) * gain - rotated[..., axis]).amin(dim=1)
                low = torch.maximum(low, lo[k + 2 + axis].expand_as(low))
                high = torch.minimum(high, hi[k + 2 + axis].expand_as(high))
                txy.append(torch.where(high >= low, low + t_unit * (high - low), (tx, ty)[axis]))
            tx, ty = txy
        params = ShapeCamera.from_angles(alpha, angles, torch.stack((tx, ty), dim=1), focal)
        structure, points_cam, keypoints = params.project(self.category)
        inside = geometry.points_in_front(points_cam, focal) & (keypoints >= 0).all(-1) & (keypoints < plane).all(-1)
        return SkeletonBatch(params, angles, structure, points_cam, keypoints, inside)

    def _acceptable(self, batch: SkeletonBatch) -> Tensor:
        if self.keep_inside:
            return batch.inside.all(dim=1)
        return geometry.points_in_front(batch.points_cam, batch.params.focal).all(dim=1)

    def sample(self, n: int, generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32) -> SkeletonBatch:
        """Draw ``n`` samples (float64 internally for exact geometry, returned as ``dtype``)."""
        if n <= 0:
            raise ValueError(f"number of samples must be positive, got {n}")
        generator = generator if generator is not None else torch.Generator().manual_seed(0)
        batch = self._draw(n, generator)
        for _ in range(self.max_redraws):
            bad = ~self._acceptable(batch)
            if not bool(bad.any()):
                break
            redraw = self._draw(int(bad.sum()), generator)
            _assign(batch, bad, redraw)
        else:
            bad = ~self._acceptable(batch)
            if bool(bad.any()):
                raise RuntimeError(
                    f"{self.category.name}: {int(bad.sum())} samples still invalid after {self.max_redraws} redraws; "
                    "check the category's ranges"
                )
        return _cast(batch, dtype)


def _assign(batch: SkeletonBatch, mask: Tensor, new: SkeletonBatch) -> None:
    for name in ("alpha", "r6", "translation", "focal"):
        getattr(batch.params, name)[mask] = getattr(new.params, name)
    for name in ("angles", "structure", "points_cam", "keypoints", "inside"):
        getattr(batch, name)[mask] = getattr(new, name)


def _cast(batch: SkeletonBatch, dtype: torch.dtype) -> SkeletonBatch:
    p = batch.params.to(dtype)
    return SkeletonBatch(p, batch.angles.to(dtype), batch.structure.to(dtype), batch.points_cam.to(dtype), batch.keypoints.to(dtype), batch.inside)


@dataclass(frozen=True)
class SyntheticOptions:
    """How synthetic heatmaps are made. ``jitter_px`` and ``dropout`` simulate a noisy 2D detector."""

    heatmap_size: int = 64
    sigma: float = 1.0
    distribution: str = "uniform"
    keep_inside: bool = True
    jitter_px: float = 0.0  # Gaussian keypoint noise, heatmap px
    dropout: float = 0.0  # probability that a keypoint's channel is emptied


def identity_collate(batch):
    """DataLoader collate for datasets whose ``__getitems__`` already returns a batch."""
    return batch


class SyntheticSkeletonDataset(Dataset):
    """``n`` synthetic skeletons of one category, deterministic from ``seed``.

    Items are dicts with ``heatmaps`` (N, S, S), ``target`` (P,) normalised parameters,
    ``params`` (P,) raw parameter vector, ``keypoints`` (N, 2) heatmap px and ``visible`` (N,).
    ``__getitems__`` renders a whole batch at once; use :meth:`loader`.
    """

    FORMAT = "interp3d.synthetic/1"

    def __init__(self, category: Category | str, n: int, seed: int = 0, options: SyntheticOptions = SyntheticOptions(), chunk: int = 8192):
        self.category = get_category(category)
        self.options = options
        self.seed = seed
        self.codec = ParamCodec(self.category)
        if n <= 0:
            raise ValueError(f"dataset size must be positive, got {n}")
        generator = torch.Generator().manual_seed(seed)
        sampler = SkeletonSampler(self.category, options.distribution, options.keep_inside)
        params, keypoints, inside = [], [], []
        for start in range(0, n, chunk):
            b = sampler.sample(min(chunk, n - start), generator, dtype=torch.float64)
            params.append(self.codec.encode(b.params))
            keypoints.append(geometry.rescale_points(b.keypoints, self.category.plane_size, options.heatmap_size))
            inside.append(b.inside)
        self.params = torch.cat(params).to(torch.float32)
        self.keypoints = torch.cat(keypoints).to(torch.float32)
        self.visible = torch.cat(inside)
        if options.jitter_px > 0:
            self.keypoints = self.keypoints + options.jitter_px * torch.randn(self.keypoints.shape, generator=generator)
        if options.dropout > 0:
            self.visible = self.visible & (torch.rand(self.visible.shape, generator=generator) >= options.dropout)
        self.targets = self.codec.normalise(self.params)

    def __len__(self) -> int:
        return self.params.shape[0]

    def __getitems__(self, indices) -> dict[str, Tensor]:
        idx = torch.as_tensor(indices, dtype=torch.long)
        keypoints, visible = self.keypoints[idx], self.visible[idx]
        heatmaps = render_heatmaps(keypoints, self.options.heatmap_size, self.options.sigma, visible=visible)
        return {"heatmaps": heatmaps, "target": self.targets[idx], "params": self.params[idx], "keypoints": keypoints, "visible": visible}

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        return {k: v[0] for k, v in self.__getitems__([index]).items()}

    def loader(self, batch_size: int, shuffle: bool = True, seed: int | None = None, **kwargs) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed if seed is None else seed)
        return DataLoader(self, batch_size=batch_size, shuffle=shuffle, collate_fn=identity_collate, generator=generator, **kwargs)

    def shape_camera(self) -> ShapeCamera:
        return self.codec.decode(self.params)

    # -- persistence -------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write parameters, keypoints and options to one ``.npz`` (atomically)."""
        path = Path(path)
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez_compressed(
                tmp,
                format=np.array(self.FORMAT),
                category=np.array(self.category.name),
                seed=np.array(self.seed),
                options=np.array(repr(asdict(self.options))),
                params=self.params.numpy(),
                keypoints=self.keypoints.numpy(),
                visible=self.visible.numpy(),
            )
        return path

    @classmethod
    def load(cls, path: str | Path, category: Category | str | None = None) -> "SyntheticSkeletonDataset":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: synthetic dataset file not found")
        try:
            with np.load(path, allow_pickle=False) as data:
                fields = {k: data[k] for k in data.files}
        except Exception as exc:  # numpy raises several types for corrupt archives
            raise ValueError(f"{path}: not a readable synthetic dataset ({exc})") from exc
        if str(fields.get("format", "")) != cls.FORMAT:
            raise ValueError(f"{path}: not an interp3d synthetic dataset (format {fields.get('format')!r})")
        stored = get_category(str(fields["category"]))
        if category is not None and get_category(category).name != stored.name:
            raise ValueError(f"{path}: holds category {stored.name!r}, expected {get_category(category).name!r}")
        import ast

        self = cls.__new__(cls)
        self.category = stored
        self.options = SyntheticOptions(**ast.literal_eval(str(fields["options"])))
        self.seed = int(fields["seed"])
        self.codec = ParamCodec(stored)
        self.params = torch.from_numpy(fields["params"])
        self.keypoints = torch.from_numpy(fields["keypoints"])
        self.visible = torch.from_numpy(fields["visible"])
        n = self.params.shape[0]
        if self.params.shape != (n, stored.num_params) or self.keypoints.shape != (n, stored.num_keypoints, 2) or self.visible.shape != (n, stored.num_keypoints):
            raise ValueError(f"{path}: array shapes do not match category {stored.name!r}")
        if not torch.isfinite(self.params).all():
            raise ValueError(f"{path}: parameters contain NaN/inf")
        self.targets = self.codec.normalise(self.params)
        return self
