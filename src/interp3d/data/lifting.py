"""Training data for the 2D-to-3D module as real inputs look: 2D keypoints with visibility.

Each sample is a structure seen by a camera (Eq. 1) and the keypoints a detector or an annotator
would report for it:

* **structure**: with probability ``real_fraction`` one of a bank of real shapes (their 3D
  keypoints, moved into the shape model's frame by the similarity of a basis fit, with a little
  anisotropic jitter), otherwise a basis shape from the category's ranges. The target parameters of
  a real shape are its fitted ones, so the module learns the best basis description of real shapes;
* **camera**: every azimuth, elevation from ``elevation_deg`` (wider than 3D-INN's range: real
  photographs stray from it), focal length and translation from the category's ranges;
* **what is seen**: keypoints hidden by the object's own surfaces
  (:func:`interp3d.geometry.self_occlusion`), a random image border cutting the object
  (truncation), random misses (occlusion by other things, detector failures), Gaussian detector
  noise relative to the object's 2D size, a few outliers, and confidences in (0, 1] for what is kept.

Batches are drawn on the fly from a seeded generator (no files); :func:`real_shape_bank` builds the
bank from :class:`interp3d.data.real_shapes.RealShape` objects.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .. import geometry
from ..params import ParamCodec, ShapeCamera
from ..shape_fit import fit_shape
from ..shape_model import Category, get_category
from ..shape_prior import ShapePrior
from .real_shapes import RealShape
from .synthetic import SkeletonSampler

__all__ = ["RealShapeBank", "real_shape_bank", "load_real_shapes", "bank_from_folder", "LiftingOptions", "LiftingSampler", "LiftingBatch", "detector_error_statistics"]


@dataclass
class RealShapeBank:
    """Real shapes in the shape model's frame at unit scale, with their basis fits."""

    category: Category
    names: list[str]
    keypoints: np.ndarray  # (M, N, 3) model frame, alpha_1 = 1; NaN where the shape lacks a keypoint
    relative_alpha: np.ndarray  # (M, K-1)
    fit_error: np.ndarray  # (M,) normalised RMS of the basis fit
    weights: np.ndarray  # (M,) sampling weights (sum 1)

    def __len__(self) -> int:
        return len(self.names)

    def prior(self, source: str = "real shapes", residual_components: int = 6) -> ShapePrior:
        """Gaussian over the shapes' fitted coefficients plus ``residual_components`` residual bases."""
        prior = ShapePrior.from_relative_alpha(self.category, self.relative_alpha, self.weights, source=source)
        return prior.with_residuals(self.residuals(), residual_components, self.weights)

    def residuals(self) -> np.ndarray:
        """(M, N, 3) real keypoints minus their basis fits, unit scale (NaN where a shape lacks a keypoint)."""
        coefficients = torch.from_numpy(np.concatenate((np.ones((len(self), 1)), self.relative_alpha), axis=1))
        return self.keypoints - geometry.structure_from_alpha(coefficients, self.category.bases(torch.float64)).numpy()

    @classmethod
    def concat(cls, banks: list["RealShapeBank"], shares: list[float]) -> "RealShapeBank":
        """One bank drawing from each of ``banks`` with probability ``shares`` (normalised)."""
        shares = np.asarray(shares, np.float64) / np.sum(shares)
        return cls(
            banks[0].category,
            [n for b in banks for n in b.names],
            np.concatenate([b.keypoints for b in banks]),
            np.concatenate([b.relative_alpha for b in banks]),
            np.concatenate([b.fit_error for b in banks]),
            np.concatenate([b.weights * s for b, s in zip(banks, shares)]),
        )


def real_shape_bank(shapes: list[RealShape], category: Category | str | None = None, align_rotation: bool = True) -> RealShapeBank:
    """Fit the basis to each real shape (free coefficients; bounded ones where keypoints are missing,
    so an unobserved deformation stays in range) and express its keypoints in the model frame.

    ``align_rotation=False`` removes only the fit's scale and translation, so the keypoints stay in
    the canonical frame exactly (for evaluation against the real shapes as they are)."""
    if not shapes:
        raise ValueError("real_shape_bank needs at least one shape")
    category = get_category(category or shapes[0].category)
    names, points, rel, errors = [], [], [], []
    for shape in shapes:
        if shape.category.name != category.name:
            raise ValueError(f"{shape.source or shape.name}: a {shape.category.name} shape in a {category.name} bank")
        fit = fit_shape(shape.keypoints, category, shape.present, bounded=not bool(shape.present.all()), allow_rotation=align_rotation)
        s = fit.alpha[0]
        local = ((shape.keypoints - fit.translation) @ fit.rotation) / s  # the inverse similarity
        local[~shape.present] = np.nan
        names.append(shape.name)
        points.append(local)
        rel.append(fit.alpha[1:] / s)
        errors.append(fit.normalised_rms)
    m = len(names)
    return RealShapeBank(category, names, np.stack(points), np.stack(rel), np.asarray(errors), np.full(m, 1.0 / m))


@dataclass(frozen=True)
class LiftingOptions:
    real_fraction: float = 0.7  # share of samples whose 3D keypoints come from the real-shape bank
    elevation_deg: tuple[float, float] | None = (-10.0, 45.0)  # None: the category's range
    shape_jitter: float = 0.05  # sd of the anisotropic scale jitter of real shapes
    roll_deg: float = 6.0  # sd of an in-plane rotation of the 2D input (cameras are not level)
    self_occlusion: bool = True
    limb_radius: tuple[float, float] = (0.0, 0.15)  # per-sample range of the legs' and bars' image radius (fraction of the 2D RMS radius)
    truncation: float = 0.2  # probability that an image border cuts the object
    dropout: float = 0.15  # mean probability that a remaining keypoint is missed (per sample uniform in [0, 2 dropout])
    noise: float = 0.03  # sd of 2D noise as a fraction of the object's 2D RMS radius
    outliers: float = 0.03  # probability that a kept keypoint is replaced by a wrong location
    soft_confidence: float = 0.5  # share of samples whose kept keypoints get confidences in (0.3, 1]
    min_visible: int = 4
    # a heatmap detector's own mistakes (benchmarks/structure_gap.py measured the chair's on val3d: 20 % of
    # visible keypoints off by > 0.2 object radii, 9 % at the mirror partner's place; a third of
    # hidden ones reported anyway, mostly wrong), so the lifter learns to read past them:
    displaced: float = 0.0  # probability that a kept keypoint is reported displaced by 0.2-1.2 object radii (log-uniform)
    swaps: float = 0.0  # probability that a kept keypoint is reported at its mirror partner's place
    hidden_reports: float = 0.0  # probability that a hidden (not cut off) keypoint is reported: 40 % at its partner's place, else 0.05-1.2 radii off
    wrong_confidence: tuple[float, float] | None = None  # confidences of those wrong reports in soft-confidence samples (None: as the right ones)


@dataclass
class LiftingBatch:
    keypoints: Tensor  # (B, N, 2) projection-plane px, NaN where missing
    weights: Tensor  # (B, N) confidence in [0, 1], 0 where missing
    params: Tensor  # (B, P) raw parameter vector of the target (basis fit for real shapes)
    structure: Tensor  # (B, N, 3) the true 3D keypoints (object frame; real ones for real shapes)
    azimuth: Tensor
    elevation: Tensor
    real: Tensor  # (B,) bool


class LiftingSampler:
    """Draws :class:`LiftingBatch` es of one category; deterministic for a given generator."""

    def __init__(self, category: Category | str, bank: RealShapeBank | None = None, options: LiftingOptions = LiftingOptions()):
        self.category = get_category(category)
        self.bank = bank
        self.options = options
        ranges = self.category.ranges
        if options.elevation_deg is not None:
            lo, hi = options.elevation_deg
            ranges = replace(ranges, elevation=(math.radians(lo), math.radians(hi)))
        self.skeletons = SkeletonSampler(self.category, keep_inside=True, ranges=ranges)
        self.codec = ParamCodec(self.category)
        self._bank_points = None if bank is None else torch.as_tensor(bank.keypoints, dtype=torch.float64)
        self._bank_rel = None if bank is None else torch.as_tensor(bank.relative_alpha, dtype=torch.float64)
        self._bank_w = None if bank is None else torch.as_tensor(bank.weights, dtype=torch.float64)
        self._triangles = torch.as_tensor(self.category.surface_triangles)
        self._edges = torch.as_tensor(self.category.edges, dtype=torch.long).reshape(-1, 2)

    def sample(self, n: int, generator: torch.Generator) -> LiftingBatch:
        o, cat = self.options, self.category
        b = self.skeletons.sample(n, generator, dtype=torch.float64)
        params, structure = b.params, b.structure
        real = torch.zeros(n, dtype=torch.bool)
        if self.bank is not None and o.real_fraction > 0:
            real = torch.rand(n, generator=generator, dtype=torch.float64) < o.real_fraction
            idx = torch.multinomial(self._bank_w, int(real.sum()), replacement=True, generator=generator)
            scale = params.alpha[real, :1]
            jitter = 1.0 + o.shape_jitter * torch.randn(len(idx), 1, 3, generator=generator, dtype=torch.float64)
            pts = self._bank_points[idx] * jitter
            unit_alpha = torch.cat((torch.ones(len(idx), 1, dtype=torch.float64), self._bank_rel[idx]), 1)
            mean_fit = geometry.structure_from_alpha(unit_alpha, cat.bases(torch.float64))
            pts = torch.where(torch.isfinite(pts), pts, mean_fit)  # a keypoint the shape lacks: its basis fit
            structure = structure.clone()
            structure[real] = scale.unsqueeze(-1) * pts
            alpha = params.alpha.clone()
            # the target is the shape's own basis fit, not a fit of the jittered copy (the jitter is small)
            alpha[real] = scale * unit_alpha
            params = ShapeCamera(alpha, params.r6, params.translation, params.focal)
        rotation = params.rotation()
        points_cam = geometry.to_camera_frame(structure, rotation, params.translation)
        keypoints = geometry.perspective_project(points_cam, params.focal, cat.plane_size)

        visible = torch.ones(n, cat.num_keypoints, dtype=torch.bool)
        cut_off = torch.zeros_like(visible)
        if o.self_occlusion and self._triangles.numel():
            visible &= ~geometry.self_occlusion(points_cam, params.focal, self._triangles)
        centre, radius = geometry.keypoint_radius(keypoints, torch.ones(n, cat.num_keypoints, dtype=torch.float64))
        if o.limb_radius[1] > 0 and cat.edges:
            lo, hi = o.limb_radius
            limb = radius * (lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64))
            size3d = params.alpha[:, 0]  # object scale: the depth margin keeps a keypoint from hiding behind its own neighbourhood
            visible &= ~geometry.limb_occlusion(points_cam, keypoints, self._edges, limb, 0.05 * size3d)
        if o.truncation > 0:
            cut = torch.rand(n, generator=generator, dtype=torch.float64) < o.truncation
            side = torch.randint(0, 4, (n,), generator=generator)
            depth = torch.rand(n, generator=generator, dtype=torch.float64) * 0.8  # how far past the centre the border sits
            axis = (side % 2).long()
            coord = keypoints.gather(2, axis.view(n, 1, 1).expand(n, cat.num_keypoints, 1)).squeeze(-1)
            c = centre.gather(1, axis.view(n, 1)).squeeze(1)
            sign = torch.where(side < 2, -1.0, 1.0).to(torch.float64)
            border = c + sign * (1.0 - depth) * radius * 1.5
            outside = (coord - border.unsqueeze(1)) * sign.unsqueeze(1) > 0
            cut_off = outside & cut.unsqueeze(1)
            visible &= ~cut_off
        if o.dropout > 0:
            rate = 2 * o.dropout * torch.rand(n, 1, generator=generator, dtype=torch.float64)
            visible &= torch.rand(visible.shape, generator=generator, dtype=torch.float64) >= rate
        # at least min_visible keypoints: restore the nearest-to-camera hidden ones where too few remain
        short = visible.sum(1) < o.min_visible
        if bool(short.any()):
            order = points_cam[short, :, 2].argsort(dim=1)
            restore = torch.zeros_like(visible[short])
            restore.scatter_(1, order[:, : o.min_visible], True)
            visible[short] |= restore

        noisy = keypoints + o.noise * radius.view(n, 1, 1) * torch.randn(keypoints.shape, generator=generator, dtype=torch.float64)
        if o.roll_deg > 0:
            roll = torch.deg2rad(o.roll_deg * torch.randn(n, generator=generator, dtype=torch.float64))
            cr, sr = torch.cos(roll).view(n, 1), torch.sin(roll).view(n, 1)
            rel = noisy - centre.unsqueeze(1)
            noisy = centre.unsqueeze(1) + torch.stack((cr * rel[..., 0] - sr * rel[..., 1], sr * rel[..., 0] + cr * rel[..., 1]), -1)
        noisy, wrong = self._detector_errors(noisy, visible, cut_off, radius, generator)
        if o.outliers > 0:
            outlier = (torch.rand(visible.shape, generator=generator, dtype=torch.float64) < o.outliers) & visible
            random_xy = centre.unsqueeze(1) + radius.view(n, 1, 1) * 1.5 * (2 * torch.rand(keypoints.shape, generator=generator, dtype=torch.float64) - 1)
            noisy = torch.where(outlier.unsqueeze(-1), random_xy, noisy)
            wrong |= outlier
        visible = visible | wrong  # hidden keypoints reported anyway are present inputs
        weights = visible.to(torch.float64)
        if o.soft_confidence > 0:
            soft = torch.rand(n, 1, generator=generator, dtype=torch.float64) < o.soft_confidence
            conf = 0.3 + 0.7 * torch.rand(visible.shape, generator=generator, dtype=torch.float64)
            if o.wrong_confidence is not None:
                lo, hi = o.wrong_confidence
                conf = torch.where(wrong, lo + (hi - lo) * torch.rand(visible.shape, generator=generator, dtype=torch.float64), conf)
            weights = torch.where(soft & visible, conf, weights)
        noisy = torch.where(visible.unsqueeze(-1), noisy, torch.full_like(noisy, float("nan")))
        az, el = params.view()
        return LiftingBatch(noisy.float(), weights.float(), self.codec.encode(params).float(), structure.float(), az.float(), el.float(), real)

    def _detector_errors(self, noisy: Tensor, visible: Tensor, cut_off: Tensor, radius: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``noisy`` with the mistakes of ``displaced``, ``swaps`` and ``hidden_reports`` made, and
        the mask of keypoints reported wrongly (hidden ones reported included). Draws nothing from
        ``generator`` when all three are 0, so older recipes sample as before."""
        o = self.options
        wrong = torch.zeros_like(visible)
        if o.displaced <= 0 and o.swaps <= 0 and o.hidden_reports <= 0:
            return noisy, wrong
        n, k = visible.shape
        flip = torch.as_tensor(self.category.flip_permutation)
        has_partner = (flip != torch.arange(k)).unsqueeze(0)
        partner = noisy[:, flip]  # where the mirror partner is reported (its noise included)

        def uniform() -> Tensor:
            return torch.rand(n, k, generator=generator, dtype=torch.float64)

        def off_by(lo: float, hi: float) -> Tensor:
            distance = radius.view(n, 1) * torch.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * uniform())
            angle = 2 * math.pi * uniform()
            return noisy + distance.unsqueeze(-1) * torch.stack((torch.cos(angle), torch.sin(angle)), -1)

        swap = (uniform() < o.swaps) & visible & has_partner
        displaced = (uniform() < o.displaced) & visible & ~swap
        hidden = (uniform() < o.hidden_reports) & ~visible & ~cut_off
        hidden_at_partner = hidden & (uniform() < 0.4) & has_partner
        reported = torch.where(swap.unsqueeze(-1), partner, noisy)
        reported = torch.where(displaced.unsqueeze(-1), off_by(0.2, 1.2), reported)
        reported = torch.where((hidden & ~hidden_at_partner).unsqueeze(-1), off_by(0.05, 1.2), reported)
        reported = torch.where(hidden_at_partner.unsqueeze(-1), partner, reported)
        return reported, swap | displaced | hidden


def detector_error_statistics(keypoints: torch.Tensor, weights: torch.Tensor, truth: torch.Tensor, visible: torch.Tensor, flip_permutation: Sequence[int], wrong_radii: float = 0.2) -> dict:
    """A 2D keypoint detector's mistakes (its ``keypoints`` and ``weights`` against the ``truth`` and
    ``visible`` mask, ``(B, N, 2)`` / ``(B, N)``) in the units of :class:`LiftingOptions`' detector
    options (distances in object 2D RMS radii, shares of the reported keypoints): how ``noise``,
    ``displaced``, ``swaps``, ``hidden_reports`` and ``wrong_confidence`` would be set to mimic it
    (``benchmarks/structure_gap.py`` reports them for a model). A report more than ``wrong_radii``
    from the truth is wrong; a *swap* if it lies nearer the mirror partner's truth."""
    radius = geometry.keypoint_radius(truth, torch.ones_like(weights))[1].view(-1, 1)
    error = (keypoints - truth).norm(dim=-1) / radius
    partner_error = (keypoints - truth[:, list(flip_permutation)]).norm(dim=-1) / radius
    paired = (torch.as_tensor(flip_permutation) != torch.arange(len(flip_permutation))).unsqueeze(0)
    reported = weights > 0
    wrong = reported & (error > wrong_radii)
    swap = wrong & paired & (partner_error < error)
    seen, hidden = reported & visible, reported & ~visible

    def share(mask: torch.Tensor, of: torch.Tensor) -> float:
        return float(mask.sum() / of.sum().clamp(min=1))

    right = seen & ~wrong
    return {
        "visible_reported": share(seen, visible),
        "noise_per_axis": float(((keypoints - truth) / radius.unsqueeze(-1))[right].pow(2).mean().sqrt()),
        "displaced": share(seen & wrong & ~swap, seen),
        "swaps": share(seen & swap, seen),
        "hidden_reports": share(hidden, ~visible),
        "hidden_reports_wrong": share(hidden & wrong, hidden),
        "hidden_reports_at_partner": share(hidden & swap, hidden),
        "confidence_median_right": float(weights[right].median()) if right.any() else None,
        "confidence_median_wrong": float(weights[reported & wrong].median()) if (reported & wrong).any() else None,
    }


def _keypointnet_split(model_id: str) -> str:
    """A fixed fifth of KeypointNet (by a hash of the ShapeNet id) is held out of every training."""
    return "test" if int(hashlib.sha1(model_id.encode()).hexdigest(), 16) % 5 == 0 else "train"


def load_real_shapes(root: str | Path, category: Category | str, split: str = "train") -> dict[str, list[RealShape]]:
    """Real shapes of ``category`` found under ``root`` (the layout of ``../shared/data``), by source.

    * ``keypointnet``: ``keypointnet_chair/annotations/chair.json`` (chair only), split by
      :func:`_keypointnet_split` (``train``: 4/5, ``test``: 1/5, ``all``);
    * ``pascal3d``: ``pascal3d_cad/<class>NN.json`` (chair, sofa, table, bed); too few to split, so
      every split has them.
    """
    from .real_shapes import load_keypointnet, load_pascal3d_folder

    if split not in ("train", "test", "all"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    root, category = Path(root), get_category(category)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: real-shape folder not found")
    found: dict[str, list[RealShape]] = {}
    kpn = root / "keypointnet_chair" / "annotations" / "chair.json"
    if category.name == "chair" and kpn.is_file():
        found["keypointnet"] = [s for s in load_keypointnet(kpn) if split == "all" or _keypointnet_split(s.name) == split]
    found["pascal3d"] = load_pascal3d_folder(root / "pascal3d_cad", category)
    return {k: v for k, v in found.items() if v}


def bank_from_folder(root: str | Path, category: Category | str, split: str = "train", shares: dict[str, float] | None = None) -> RealShapeBank | None:
    """A :class:`RealShapeBank` of the shapes :func:`load_real_shapes` finds (None if there are none);
    ``shares`` sets each source's sampling probability (default: KeypointNet 3/4, PASCAL3D+ 1/4)."""
    shapes = load_real_shapes(root, category, split)
    if not shapes:
        return None
    shares = shares or {"keypointnet": 0.75, "pascal3d": 0.25}
    names = [n for n in sorted(shapes) if shares.get(n, 1.0) > 0]  # a source with share 0 is left out
    if not names:
        return None
    return RealShapeBank.concat([real_shape_bank(shapes[n], category) for n in names], [shares.get(n, 1.0) for n in names])
