"""The 3D interpreter: 2D module (hourglass or pretrained encoder) -> heatmaps -> lifter -> (alpha, r, t, f) -> projection layer."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch
from torch import Tensor, nn

from .. import geometry
from ..heatmaps import heatmap_modes, heatmap_peaks, mirror_heatmaps, render_heatmaps
from ..params import ParamCodec, ShapeCamera
from ..refine import RefineOptions, RefineResult, refine
from ..shape_prior import ShapePrior
from ..shape_model import Category, get_category
from .keypoint_net import build_keypoint_net
from .lifter import KeypointLifter, Lifter

__all__ = ["Interpreter", "InterpreterOutput", "Lifted", "merge_mirrored"]

MODES_PER_KEYPOINT = 3  # heatmap modes a refit may move a keypoint to (RefineOptions.mode_refit): its peak and two more


def merge_mirrored(all_heatmaps: list[Tensor], view_logits: Tensor | None, flip_permutation, batch: int) -> tuple[list[Tensor], Tensor | None]:
    """The flip test: outputs of a batch of ``2 * batch`` images (the images, then the same images
    mirrored) merged into ``batch`` outputs. The mirrored half's heatmaps are mirrored back with their
    left/right keypoints swapped and averaged with the first half's; its azimuth-bin probabilities
    are moved to the mirrored azimuths (bin ``i`` -> ``-i``, :func:`interp3d.viewpoint.mirrored_azimuth`)
    and averaged, returned as log probabilities (a valid logit vector)."""
    merged = [0.5 * (h[:batch] + mirror_heatmaps(h[batch:], flip_permutation)) for h in all_heatmaps]
    if view_logits is None:
        return merged, None
    bins = view_logits.shape[-1]
    mirrored_bins = (-torch.arange(bins, device=view_logits.device)) % bins
    probs = torch.softmax(view_logits.float(), dim=-1)
    mean = 0.5 * (probs[:batch] + probs[batch:][:, mirrored_bins])
    return merged, mean.clamp_min(1e-12).log().to(view_logits.dtype)


@dataclass
class Lifted:
    """The lifter's prediction, decoded and projected (everything differentiable)."""

    params_normalised: Tensor  # (B, P)
    params: ShapeCamera
    structure: Tensor  # (B, N, 3) object frame
    points_cam: Tensor  # (B, N, 3)
    keypoints_plane: Tensor  # (B, N, 2) projection-plane px
    keypoints: Tensor  # (B, N, 2) heatmap px
    hypotheses: Tensor | None = None  # (B, H, P) normalised, keypoint lifter only
    scores: Tensor | None = None  # (B, H) logits of the hypotheses
    roll: Tensor | None = None  # (B,) in-plane camera roll of a refined fit (the network predicts none)

    @property
    def in_front(self) -> Tensor:
        """``(B, N)``: the keypoint lies in front of the camera, so its projection means something
        (a prediction may put points behind it; :func:`geometry.perspective_project`)."""
        return geometry.points_in_front(self.points_cam, self.params.focal)


@dataclass
class InterpreterOutput(Lifted):
    heatmaps: Tensor = None  # (B, N, H, W), last stack (always given; defaults follow Lifted's)
    all_heatmaps: list[Tensor] = None
    view_logits: Tensor | None = None  # (B, V) azimuth-bin logits of the 2D module's viewpoint head, if it has one


class Interpreter(nn.Module):
    """``Interpreter(images)``: images ``(B, 3, S, S)`` in [0, 1] -> :class:`InterpreterOutput`."""

    # a heatmap peak below this value counts as a missing keypoint for the keypoint lifter (a model's
    # header may set its own, info["peak_threshold"]: see peak_threshold)
    PEAK_THRESHOLD = 0.2

    def __init__(self, category: Category | str, keypoint_net: nn.Module, lifter: Lifter | KeypointLifter, image_size: int, heatmap_size: int):
        super().__init__()
        self.category = get_category(category)
        self.codec = ParamCodec(self.category)
        self.keypoint_net = keypoint_net  # images -> list of heatmaps (models.keypoint_net)
        self.lifter = lifter
        self.image_size = image_size
        self.heatmap_size = heatmap_size
        self.register_buffer("bases", self.category.bases(torch.float32), persistent=False)
        self._register_load_state_dict_pre_hook(_rename_hourglass_keys)

    @classmethod
    def load(cls, path_or_name: str | Path, device: str | torch.device = "cpu") -> "Interpreter":
        """A trained interpreter in eval mode: a training checkpoint (``.pt``), an exported
        ``.safetensors`` file, or the name of a model shipped with the package (e.g. ``chair``)."""
        from .serialization import load_interpreter

        return load_interpreter(path_or_name, device)

    @classmethod
    def build(
        cls, category: Category | str, image_size: int = 256, heatmap_size: int = 64, features: int = 256, depth: int = 4, stacks: int = 1,
        lifter_widths=(2048, 512, 128), dropout: float = 0.0, lifter: str = "heatmap", keypoint_lifter: dict | None = None,
        backbone: str = "hourglass", decoder_channels: int = 96, pretrained_encoder: bool = False, view_bins: int = 0,
    ) -> "Interpreter":
        """``lifter``: ``heatmap`` (3D-INN's FC module on flattened heatmaps) or ``keypoints``
        (:class:`KeypointLifter` on heatmap peaks and confidences; options in ``keypoint_lifter``).
        ``backbone``: the 2D module (:data:`interp3d.models.keypoint_net.BACKBONES`); ``view_bins``: its
        viewpoint head's azimuth bins (0: none)."""
        category = get_category(category)
        keypoint_net = build_keypoint_net(category.num_keypoints, image_size, heatmap_size, backbone, features, depth, stacks, decoder_channels, pretrained_encoder, view_bins)
        if lifter == "heatmap":
            module = Lifter(category.num_keypoints, heatmap_size, category.num_params, tuple(lifter_widths), dropout)
        elif lifter == "keypoints":
            module = KeypointLifter(category, **(keypoint_lifter or {}))
        else:
            raise ValueError(f"lifter must be 'heatmap' or 'keypoints', got {lifter!r}")
        return cls(category, keypoint_net, module, image_size, heatmap_size)

    @property
    def lifts_keypoints(self) -> bool:
        return isinstance(self.lifter, KeypointLifter)

    def heatmap_keypoints(self, heatmaps: Tensor) -> tuple[Tensor, Tensor]:
        """(keypoints ``(B, N, 2)`` projection-plane px, weights ``(B, N)``) from heatmaps: each peak
        to a fraction of a pixel (:func:`interp3d.heatmaps.heatmap_peaks` with ``subpixel``;
        differentiable in the heatmap values) and the peak value clamped to [0, 1] as confidence, 0
        below :attr:`peak_threshold` (or below :attr:`peak_relative` times the image's highest peak,
        where that is lower)."""
        xy, peak = heatmap_peaks(heatmaps, subpixel=True)
        plane = geometry.rescale_points(xy, self.heatmap_size, self.category.plane_size)
        confidence = peak.detach().clamp(0, 1)
        threshold = torch.full_like(confidence[:, :1], self.peak_threshold)
        if self.peak_relative > 0:  # an image whose peaks are all low (a real photo) keeps its strongest ones
            threshold = torch.minimum(threshold, self.peak_relative * confidence.amax(dim=-1, keepdim=True))
        return plane, torch.where(confidence >= threshold, confidence, torch.zeros_like(confidence))

    @property
    def peak_threshold(self) -> float:
        """The peak value below which a keypoint counts as missing: the model's own
        (``info["peak_threshold"]``, calibrated for the 3D fit on a validation world,
        :func:`interp3d.evaluation.calibrate_fit`) or :attr:`PEAK_THRESHOLD`.
        Heatmaps of a briefly trained 2D module peak lower (0.1-0.15 for visible keypoints of the
        product models): a fixed 0.2 left whole objects without a keypoint."""
        return float(self._header_info.get("peak_threshold", self.PEAK_THRESHOLD))

    @property
    def peak_relative(self) -> float:
        """A keypoint also counts where its peak reaches this fraction of the image's highest peak
        (``info["peak_relative"]``; 0 = off): the calibrated threshold is set on renders, and on real
        photos, whose peaks are lower throughout, it left objects with 0-2 keypoints (a collapsed fit)."""
        return float(self._header_info.get("peak_relative", 0.0))

    @property
    def refine_options(self) -> RefineOptions:
        """The refinement options the model recommends: :class:`RefineOptions` defaults with the
        header's ``info["refine_options"]`` (e.g. ``view_shape_anchor``, calibrated at export on a
        validation world; :func:`interp3d.evaluation.calibrate_fit`) on top."""
        given = self._header_info.get("refine_options") or {}
        known = {f.name for f in fields(RefineOptions)}
        return replace(RefineOptions(), **{k: v for k, v in given.items() if k in known})

    @property
    def _header_info(self) -> dict:
        """``info`` of an exported model's header ({} for a model built here)."""
        return getattr(self, "info", None) or {}

    def lifter_forward(self, heatmaps: Tensor) -> Tensor:
        """The 2D-to-3D module's normalised parameter vector ``(B, P)`` (best hypothesis) for heatmaps."""
        if not self.lifts_keypoints:
            return self.lifter(heatmaps)
        hypotheses, scores, _ = self.lifter(*self.heatmap_keypoints(heatmaps))
        return KeypointLifter.best(hypotheses, scores)

    def lift(self, heatmaps: Tensor) -> Lifted:
        """Run the 2D-to-3D module and the projection layer on heatmaps ``(B, N, H, W)``."""
        if not self.lifts_keypoints:
            return self.decode(self.lifter(heatmaps))
        return self.lift_keypoints(*self.heatmap_keypoints(heatmaps))

    def lift_keypoints(self, keypoints: Tensor, weights: Tensor) -> Lifted:
        """The keypoint lifter on plane-px keypoints ``(B, N, 2)`` and weights ``(B, N)``: its best hypothesis,
        decoded and projected, with every hypothesis and its score attached."""
        if not self.lifts_keypoints:
            raise TypeError("this interpreter's 2D-to-3D module reads heatmaps; use lift(heatmaps)")
        hypotheses, scores, _ = self.lifter(keypoints, weights)
        lifted = self.decode(KeypointLifter.best(hypotheses, scores))
        lifted.hypotheses, lifted.scores = hypotheses, scores
        return lifted

    def lift_given_keypoints(self, keypoints: Tensor, weights: Tensor) -> Lifted:
        """The 2D-to-3D module on given plane-px keypoints ``(B, N, 2)`` (NaN where weight 0) and weights
        ``(B, N)``, whichever it reads: a heatmap lifter gets them rendered as heatmaps."""
        if self.lifts_keypoints:
            return self.lift_keypoints(keypoints, weights)
        xy = geometry.rescale_points(torch.nan_to_num(keypoints), self.category.plane_size, self.heatmap_size)
        return self.lift(render_heatmaps(xy, self.heatmap_size, getattr(self, "heatmap_sigma", 1.0), visible=weights > 0))

    @property
    def shape_prior(self) -> ShapePrior:
        """The refinement prior the model was trained with (``info["shape_prior"]``), else the ranges'."""
        info = self._header_info
        return ShapePrior.from_dict(info["shape_prior"]) if "shape_prior" in info else ShapePrior.from_ranges(self.category)

    def hypotheses_of(self, lifted: Lifted) -> ShapeCamera:
        """Every hypothesis of a prediction as a ``(B, H)`` :class:`ShapeCamera`, best-scored first
        (H = 1 for a heatmap lifter)."""
        if lifted.hypotheses is None:
            p = lifted.params
            return ShapeCamera(p.alpha.unsqueeze(1), p.r6.unsqueeze(1), p.translation.unsqueeze(1), p.focal.unsqueeze(1))
        order = lifted.scores.argsort(dim=-1, descending=True)
        hyps = lifted.hypotheses.gather(1, order.unsqueeze(-1).expand_as(lifted.hypotheses))
        return self.codec.decode(self.codec.denormalise(hyps.double()))

    def refine_heatmaps(self, lifted: Lifted, heatmaps: Tensor, prior: ShapePrior | None = None, options: RefineOptions | None = None) -> tuple[Lifted, RefineResult]:
        """:meth:`refine` against the keypoints of ``heatmaps`` (:meth:`heatmap_keypoints`), with each
        heatmap's other modes as the alternatives that ``options.mode_refit`` reads."""
        options = options if options is not None else self.refine_options
        alternatives = self.heatmap_alternatives(heatmaps) if options.mode_refit else None
        return self.refine(lifted, *self.heatmap_keypoints(heatmaps), prior, options, alternatives)

    def heatmap_alternatives(self, heatmaps: Tensor) -> tuple[Tensor, Tensor]:
        """Where else each keypoint may be: the :data:`MODES_PER_KEYPOINT` highest modes of its
        heatmap (:func:`interp3d.heatmaps.heatmap_modes`), projection-plane px ``(B, N, M, 2)``, and
        their values clamped to [0, 1] ``(B, N, M)``, as :meth:`refine` reads them."""
        xy, values = heatmap_modes(heatmaps.detach(), MODES_PER_KEYPOINT)
        return geometry.rescale_points(xy, self.heatmap_size, self.category.plane_size), values.clamp(0, 1)

    def refine(
        self, lifted: Lifted, keypoints: Tensor, weights: Tensor, prior: ShapePrior | None = None, options: RefineOptions | None = None,
        alternatives: tuple[Tensor, Tensor] | None = None,
    ) -> tuple[Lifted, RefineResult]:
        """Test-time refinement (:func:`interp3d.refine.refine`, on the CPU in ``options.precision``) of
        a prediction against plane-px keypoints ``(B, N, 2)`` with weights ``(B, N)``, from all its
        hypotheses and, for an :class:`InterpreterOutput` with viewpoint logits, the image's azimuth
        belief; returns the refined prediction, projected, and the fit's report. ``options``: default
        :attr:`refine_options` (the model's recommendation). ``alternatives``: (places ``(B, N, M, 2)``
        plane px, their weights ``(B, N, M)``) a refit may move each keypoint to (``options.mode_refit``)."""
        prior = prior if prior is not None else self.shape_prior
        options = options if options is not None else self.refine_options
        view_logits = getattr(lifted, "view_logits", None)
        view = None if view_logits is None else torch.log_softmax(view_logits.detach().float().cpu(), dim=-1)
        places, place_weights = (None, None) if alternatives is None else (t.detach().cpu() for t in alternatives)
        result = refine(
            self.category, keypoints.detach().cpu(), weights.detach().cpu(), self.hypotheses_of(lifted), prior, options, view_log_probs=view,
            alternatives=places, alternative_weights=place_weights,
        )
        device = lifted.structure.device
        params = result.params.to(dtype=torch.float32, device=device)
        return self.project(params, structure=result.structure.float().to(device), roll=result.roll.float().to(device)), result

    def decode(self, normalised: Tensor) -> Lifted:
        """Decode the lifter's normalised parameter vectors ``(B, P)`` and project them."""
        params = self.codec.decode(self.codec.denormalise(normalised.float()))
        return self.project(params, normalised)

    def project(self, params: ShapeCamera, normalised: Tensor | None = None, structure: Tensor | None = None, roll: Tensor | None = None) -> Lifted:
        """Project structure-and-camera parameters (the projection layer); ``structure`` replaces the
        basis structure of ``params`` (e.g. a refinement's, with residual detail), ``roll`` adds an
        in-plane camera roll (:func:`geometry.roll_camera`)."""
        if structure is None:
            structure = geometry.structure_from_alpha(params.alpha, self.bases.to(params.alpha))
        points_cam = geometry.to_camera_frame(structure, params.rotation(), params.translation)
        if roll is not None:
            points_cam = geometry.roll_camera(points_cam, roll)
        plane = geometry.perspective_project(points_cam, params.focal, self.category.plane_size)
        keypoints = geometry.rescale_points(plane, self.category.plane_size, self.heatmap_size)
        if normalised is None:
            normalised = self.codec.normalise(self.codec.encode(params))
        return Lifted(normalised, params, structure, points_cam, plane, keypoints, roll=roll)

    @property
    def view_bins(self) -> int:
        """Azimuth bins of the 2D module's viewpoint head (0: none)."""
        return getattr(self.keypoint_net, "view_bins", 0)

    def keypoint_net_outputs(self, images: Tensor, flip_test: bool = False) -> tuple[list[Tensor], Tensor | None]:
        """The 2D module's heatmaps (every stack) and its viewpoint logits (None without a head);
        ``flip_test`` averages them with those of the mirrored images (:func:`merge_mirrored`)."""
        if flip_test:
            outputs = self.keypoint_net_outputs(torch.cat([images, images.flip(-1)]))
            return merge_mirrored(*outputs, self.category.flip_permutation, len(images))
        if self.view_bins:
            return self.keypoint_net(images, with_view=True)
        return self.keypoint_net(images), None

    def forward(self, images: Tensor, flip_test: bool = False) -> InterpreterOutput:
        """``flip_test``: the 2D module also sees the mirrored images (twice the 2D cost) and its
        outputs are averaged, a common test-time habit of keypoint estimators."""
        all_heatmaps, view_logits = self.keypoint_net_outputs(images, flip_test)
        heatmaps = all_heatmaps[-1]
        lifted = self.lift(heatmaps)
        return InterpreterOutput(**vars(lifted), heatmaps=heatmaps, all_heatmaps=all_heatmaps, view_logits=view_logits)


def _rename_hourglass_keys(state_dict, prefix, *args, **kwargs):
    """Files written before the 2D module had a choice of backbone name it ``hourglass``."""
    old = prefix + "hourglass."
    for key in [k for k in state_dict if k.startswith(old)]:
        state_dict[prefix + "keypoint_net." + key[len(old):]] = state_dict.pop(key)
