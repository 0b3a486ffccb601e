"""Run a trained interpreter on your own images, folders and videos.

    from interp3d.inference import Predictor
    predictor = Predictor.load("runs/demo/chair/video_curriculum/best.pt")
    [prediction] = predictor.predict("photo.jpg")
    prediction.azimuth_deg, prediction.keypoints_3d

Images are converted to RGB (grayscale, RGBA, 16-bit and palette images are accepted), optionally
cropped to a box, padded to a centred square and resized to the network's input; 2D outputs are
mapped back to the input image's pixels. Videos (mp4/avi/... through imageio with PyAV, or a
folder of frames) can be smoothed over time: the median structure and focal length across frames
and a moving average of the rotation code and translation, as the video losses assume.
"""

from __future__ import annotations

import bisect
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from . import geometry, viewpoint
from .heatmaps import heatmap_peaks, peak_confidence
from .models import Interpreter, KeypointLifter
from .params import ShapeCamera
from .refine import RefineOptions
from .shape_model import Category
from .shape_prior import ShapePrior

__all__ = ["Predictor", "Prediction", "InputError", "IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "load_rgb", "check_keypoints", "keypoints_to_plane", "MIN_VISIBLE_KEYPOINTS"]

# The pose has 5 unknowns that perspective barely couples to the rest (azimuth, elevation, scale,
# 2D position); with the shape and perspective priors 3 points (6 numbers) fix them, 2 do not.
MIN_VISIBLE_KEYPOINTS = 3

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}
MIN_SIDE = 16
# The keypoints' extent (bounding-box side) over the image side in the product models' training
# renders: median 0.69 (chair test3d: 88 of 128 px; 5 % below 0.40). Auto-crop frames small
# objects of a photo like that.
AUTO_CROP_FILL = 0.69
AUTO_CROP_PEAK = 0.5
# Auto-crop's search (benchmarks/auto_crop.py): square windows of these fractions of the image's
# shorter side, on grids with at most half a window between neighbours; a window counts only where
# the fitted skeleton's projection keeps AUTO_CROP_BORDER of its side from every edge (the object
# is not cut), and replaces the whole image's answer only where its framing score is AUTO_CROP_GAIN
# times the whole image's (a framed object keeps its answer).
AUTO_CROP_SCALES = (0.8, 0.55)
AUTO_CROP_BORDER = 0.03
AUTO_CROP_GAIN = 1.3
AUTO_CROP_BATCH = 256  # candidate crops held in memory at once
# a video searches every AUTO_CROP_VIDEO_STRIDE-th frame (and its last); the frames between are read once, on a
# crop interpolated between the searched frames around them (Predictor._video_auto_crop, _crop_between)
AUTO_CROP_VIDEO_STRIDE = 10


class InputError(ValueError):
    """An input file that cannot be used, with its name and the problem."""


@dataclass
class Prediction:
    """One object's interpretation. 2D coordinates are input-image pixels; angles in degrees."""

    source: str
    category: str
    keypoint_names: list[str]
    keypoints_2d: np.ndarray  # (N, 2) heatmap peaks in the input image
    confidence: np.ndarray  # (N,) softmax peak confidence
    reprojected_2d: np.ndarray  # (N, 2) projection of the 3D keypoints in the input image
    keypoints_3d: np.ndarray  # (N, 3) object frame (+y up, front +z)
    keypoints_3d_camera: np.ndarray  # (N, 3) camera frame
    alpha: np.ndarray  # (K,)
    rotation: np.ndarray  # (3, 3)
    azimuth_deg: float  # a table's modulo 180 (Category.half_turn_permutation): its keypoint names follow the same reading
    elevation_deg: float
    translation: np.ndarray  # (2,) projection-plane px
    focal: float  # projection-plane px
    frame: int | None = None
    # the viewpoint head's probability that the azimuth lies within 30 deg of azimuth_deg
    # (viewpoint.azimuth_confidence; None without a head): low values flag answers not to trust
    azimuth_confidence: float | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = {}
        for k, v in asdict(self).items():
            out[k] = v.tolist() if isinstance(v, np.ndarray) else v
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def load_rgb(path: str | Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB, upright as viewers show it (the EXIF orientation of
    camera photos applied, so boxes and keypoints given for the shown image fit); clear errors for
    missing, corrupt or tiny files."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        with Image.open(path) as img:
            img.load()
            img = ImageOps.exif_transpose(img)  # a phone photo's pixels are stored sideways, with a tag to turn them
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit greyscale: rescale to 8 bits
                arr = np.asarray(img, dtype=np.float64)
                span = max(arr.max() - arr.min(), 1e-9)
                img = Image.fromarray(((arr - arr.min()) / span * 255).astype(np.uint8))
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                img = img.convert("RGBA")
                background = Image.new("RGBA", img.size, (255, 255, 255, 255))
                img = Image.alpha_composite(background, img)
            rgb = np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise InputError(f"{path}: not a readable image ({exc})") from exc
    if min(rgb.shape[:2]) < MIN_SIDE:
        raise InputError(f"{path}: image is {rgb.shape[1]}x{rgb.shape[0]} px; at least {MIN_SIDE} px a side is needed")
    return rgb


def _camera_rotation(lifted) -> torch.Tensor:
    """(B, 3, 3) object-to-camera rotation, a refined fit's camera roll included: Rz(roll) R."""
    rot = lifted.params.rotation().float().cpu()
    if lifted.roll is None:
        return rot
    roll = lifted.roll.float().cpu()
    zero = torch.zeros_like(roll)
    return geometry.euler_to_matrix(torch.stack((zero, zero, roll), dim=-1)) @ rot  # Rx(0) Ry(0) Rz(roll)


def _to_cpu(lifted):
    for name, value in vars(lifted).items():
        if isinstance(value, torch.Tensor):
            setattr(lifted, name, value.float().cpu())
    lifted.params = lifted.params.to(dtype=torch.float32, device="cpu")
    return lifted


def _square(rgb: np.ndarray, size: int, box: Sequence[float] | None) -> tuple[np.ndarray, np.ndarray]:
    """Crop to ``box`` (x0, y0, x1, y1), pad to a centred square, resize; returns (image, affine 2x3
    mapping network-input px to original-image px)."""
    h, w = rgb.shape[:2]
    x0, y0, x1, y1 = (0.0, 0.0, float(w), float(h)) if box is None else map(float, box)
    if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
        raise InputError(f"crop box {box} is not inside the {w}x{h} image")
    side = max(x1 - x0, y1 - y0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left, top = cx - side / 2, cy - side / 2
    img = Image.fromarray(rgb).crop((round(left), round(top), round(left) + round(side), round(top) + round(side)))
    img = img.resize((size, size), Image.BILINEAR)
    scale = round(side) / size
    return np.asarray(img), np.array([[scale, 0.0, round(left)], [0.0, scale, round(top)]])


def _crop_between(frame: int, keys: Sequence[int], boxes: dict[int, list[float] | None], interpolate: bool = True) -> list[float] | None:
    """The crop of a frame read between searched frames ``keys`` (sorted, the first and last frame
    among them) from their choices ``boxes`` (None: the whole image): where the searched frames on
    either side both chose a crop, their boxes interpolated linearly in time, a square that moves
    and grows with the object (the convex mix of two boxes inside the image stays inside it);
    otherwise, or without ``interpolate``, the nearer one's choice (the earlier on a tie)."""
    after = bisect.bisect(keys, frame)
    if after == 0 or after == len(keys):
        raise ValueError(f"frame {frame} is not between the searched frames {keys[0]}..{keys[-1]}")
    k0, k1 = keys[after - 1], keys[after]
    b0, b1 = boxes[k0], boxes[k1]
    if b0 is None or b1 is None or not interpolate:
        return b0 if frame - k0 <= k1 - frame else b1
    t = (frame - k0) / (k1 - k0)
    # clamped between the two: rounding must not carry an edge past the image's (384.00000000000006)
    return [min(max((1.0 - t) * u + t * v, min(u, v)), max(u, v)) for u, v in zip(b0, b1)]


def _framing_box(pred: Prediction, shape, fill: float = AUTO_CROP_FILL, zoom_below: float = 0.8) -> list[float] | None:
    """The auto-crop box (x0, y0, x1, y1) of a prediction: a square of side extent / ``fill`` around
    its confident keypoints (peak value at least :data:`AUTO_CROP_PEAK` of the image's highest, at
    least 4), inside the image; None where too few are confident or the crop would not zoom in by
    more than 1 / ``zoom_below`` (the image already frames the object)."""
    values = np.asarray(pred.extra.get("peak_values", []))
    points = pred.keypoints_2d[values >= AUTO_CROP_PEAK * values.max()] if values.size else pred.keypoints_2d[:0]
    if len(points) < 4:
        return None
    h, w = shape[:2]
    low, high = points.min(0), points.max(0)
    side = float((high - low).max()) / fill
    if side >= zoom_below * max(h, w):
        return None
    cx, cy = (low + high) / 2
    x0, y0 = max(0.0, cx - side / 2), max(0.0, cy - side / 2)
    x1, y1 = min(float(w), cx + side / 2), min(float(h), cy + side / 2)
    return [x0, y0, x1, y1] if x1 - x0 >= MIN_SIDE and y1 - y0 >= MIN_SIDE else None


def _search_windows(shape, scales: Sequence[float] = AUTO_CROP_SCALES) -> list[list[float]]:
    """Auto-crop's candidate windows (x0, y0, x1, y1): for each scale, squares of that fraction of
    the shorter side on a grid spanning the image, neighbours at most half a window apart."""
    h, w = shape[:2]
    windows = []
    for scale in scales:
        side = scale * min(h, w)
        if side < MIN_SIDE:
            continue
        xs, ys = _grid_starts(w, side), _grid_starts(h, side)
        windows += [[x, y, x + side, y + side] for y in ys for x in xs]
    return windows


def _grid_starts(length: float, side: float) -> list[float]:
    steps = math.ceil((length - side) / (side / 2) - 1e-9) if length > side else 0
    return np.linspace(0.0, length - side, steps + 1).tolist()


def _framing_score(pred: Prediction) -> float:
    """How surely a pass sees one object whole: the mean of the stronger half of its keypoints'
    heatmap peaks, times the viewpoint head's support for its azimuth (where the model has a head).
    A crop that frames the object raises both; a crop of background or of a part lowers them."""
    values = np.sort(np.asarray(pred.extra.get("peak_values", []), dtype=np.float64))[::-1]
    if values.size == 0:
        return 0.0
    score = float(values[: max(values.size // 2, 1)].mean())
    return score * (1.0 if pred.azimuth_confidence is None else float(pred.azimuth_confidence))


def _frames_whole_object(pred: Prediction, box: Sequence[float], border: float = AUTO_CROP_BORDER) -> bool:
    """Whether the fitted skeleton's projection (hidden keypoints included) lies inside ``box``,
    ``border`` of its side from every edge: a crop that cuts the object fails."""
    x0, y0, x1, y1 = map(float, box)
    margin = border * max(x1 - x0, y1 - y0)
    points = np.asarray(pred.reprojected_2d, dtype=np.float64)
    if not np.isfinite(points).all():
        return False
    low, high = points.min(0), points.max(0)
    return bool(low[0] >= x0 + margin and low[1] >= y0 + margin and high[0] <= x1 - margin and high[1] <= y1 - margin)


def check_keypoints(keypoints, category: Category, visible=None, confidence=None) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str]]]:
    """Validate 2D keypoints for lifting: (keypoints ``(B, N, 2)`` float64, weights ``(B, N)``,
    problems as ``(row, message)``). NaN coordinates or ``visible=False`` mark a missing keypoint;
    ``confidence`` (default 1) weighs the present ones. A wrong shape raises :class:`InputError`;
    row problems (inf, too few visible keypoints, all points identical, bad confidences) are listed."""
    n = category.num_keypoints
    try:
        xy = np.asarray(keypoints, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"keypoints are not numbers ({exc})") from exc
    if xy.ndim == 2:
        xy = xy[None]
    if xy.ndim != 3 or xy.shape[1:] != (n, 2):
        raise InputError(f"{category.name} has {n} keypoints: expected keypoints of shape (B, {n}, 2) or ({n}, 2), got {tuple(np.shape(keypoints))}")
    b = xy.shape[0]
    present = np.isfinite(xy).all(-1)
    problems: list[tuple[int, str]] = []
    for row in np.flatnonzero(np.isinf(xy).any(axis=(1, 2))):
        problems.append((int(row), "keypoint coordinates contain inf (use NaN for a missing keypoint)"))
    if visible is not None:
        vis = np.asarray(visible)
        vis = vis[None] if vis.ndim == 1 else vis
        if vis.shape != (b, n):
            raise InputError(f"visible must have shape ({b}, {n}), got {tuple(np.shape(visible))}")
        present &= vis.astype(bool)
    weights = present.astype(np.float64)
    if confidence is not None:
        conf = np.asarray(confidence, dtype=np.float64)
        conf = conf[None] if conf.ndim == 1 else conf
        if conf.shape != (b, n):
            raise InputError(f"confidence must have shape ({b}, {n}), got {tuple(np.shape(confidence))}")
        bad = present & ~(np.isfinite(conf) & (conf >= 0) & (conf <= 1))
        for row in np.flatnonzero(bad.any(1)):
            problems.append((int(row), "confidences of present keypoints must lie in [0, 1]"))
        weights = np.where(present, np.nan_to_num(conf), 0.0)
    bad_rows = {r for r, _ in problems}
    for row in range(b):
        if row in bad_rows:
            continue
        count = int((weights[row] > 0).sum())
        if count < MIN_VISIBLE_KEYPOINTS:
            problems.append((row, f"{count} visible keypoint(s); at least {MIN_VISIBLE_KEYPOINTS} are needed to fix a pose"))
            continue
        pts = xy[row][weights[row] > 0]
        if np.ptp(pts, axis=0).max() <= 1e-9 * max(1.0, float(np.abs(pts).max())):
            problems.append((row, "all visible keypoints are at the same position"))
    problems.sort()
    return np.where(np.isfinite(xy), xy, np.nan), weights, problems


def keypoints_to_plane(keypoints: torch.Tensor, weights: torch.Tensor, category: Category) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Image-px keypoints ``(B, N, 2)`` onto the projection plane by a similarity: the present
    keypoints' centroid to the plane centre and their RMS radius to the keypoint lifter's own.
    Returns (plane keypoints, NaN where missing; centroids ``(B, 2)``; scales ``(B,)`` image -> plane)."""
    present = (weights > 0).to(keypoints.dtype)
    centre, radius = geometry.keypoint_radius(keypoints, present)
    to_plane = KeypointLifter.RADIUS_FRACTION * category.plane_size / radius.clamp_min(1e-9)
    plane = (torch.nan_to_num(keypoints) - centre.unsqueeze(1)) * to_plane.view(-1, 1, 1) + category.plane_size / 2.0
    return torch.where(present.unsqueeze(-1) > 0, plane, torch.full_like(plane, float("nan"))), centre, to_plane


class Predictor:
    """Wraps an :class:`Interpreter` for images, folders, videos and 2D keypoints (:meth:`lift`)."""

    def __init__(
        self, model: Interpreter, device: str | torch.device = "cpu", batch_size: int = 16, backend: str = "torch",
        refine: bool | None = None, refine_options: RefineOptions | None = None, prior: ShapePrior | None = None,
        flip_test: bool | None = None, auto_crop: bool | None = None, auto_crop_scales: Sequence[float] | None = None,
    ):
        """``backend``: ``torch`` (any device) or ``onnxruntime`` (CPU; needs the onnxruntime package).
        ``refine``: fit the shape model to the 2D keypoints after the network (:mod:`interp3d.refine`);
        None takes the model's own recommendation (``info["refine_default"]``, else on for keypoint
        lifters); ``refine_options`` default to the model's (:attr:`Interpreter.refine_options`). ``prior``: the refinement's shape prior (default: the model's, else the ranges').
        ``flip_test``: average the 2D module's outputs with those of the mirrored image (twice its
        cost); None takes the model's recommendation (``info["flip_test_default"]``, else off).
        ``auto_crop``: for an image without a box, also predict on search windows and on a square
        framing the confident keypoints, and answer from the best crop that keeps the object whole
        (:meth:`_auto_crop`; about 15 passes an image); None takes ``info["auto_crop_default"]``, else off.
        ``auto_crop_scales``: the search windows' sides as fractions of the image's shorter side
        (default :data:`AUTO_CROP_SCALES`; adding 0.4 finds objects a fifth to a third of the image
        wide at about twice the cost, ``benchmarks/auto_crop.py --share``)."""
        if backend not in ("torch", "onnxruntime"):
            raise ValueError(f"backend must be 'torch' or 'onnxruntime', got {backend!r}")
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.backend = backend
        info = getattr(model, "info", {}) or {}
        self.prior = prior if prior is not None else model.shape_prior

        def choice(given: bool | None, recommendation: str, default: bool) -> bool:
            """The caller's choice, else what the model's header recommends, else ``default``."""
            return bool(info.get(recommendation, default)) if given is None else bool(given)

        self.refine = choice(refine, "refine_default", model.lifts_keypoints)
        self.refine_options = refine_options if refine_options is not None else model.refine_options
        self.flip_test = choice(flip_test, "flip_test_default", False)
        self.auto_crop = choice(auto_crop, "auto_crop_default", False)
        self.auto_crop_scales = tuple(float(v) for v in (AUTO_CROP_SCALES if auto_crop_scales is None else auto_crop_scales))
        if not self.auto_crop_scales or not all(0.0 < v <= 1.0 for v in self.auto_crop_scales):
            raise ValueError(f"auto_crop_scales must be fractions in (0, 1], got {auto_crop_scales!r}")
        # torch: channels_last inputs, 1.4-1.5x faster on CPU (benchmarks/run_all.py, exports)
        self._run, self._memory_format = self.model, torch.channels_last
        if backend == "onnxruntime":
            from .models.serialization import OnnxInterpreter

            self.device = torch.device("cpu")
            self._run, self._memory_format = OnnxInterpreter(self.model), torch.contiguous_format

    @classmethod
    def load(
        cls, path_or_name: str | Path = "chair", device: str | torch.device = "cpu", backend: str = "torch", refine: bool | None = None,
        flip_test: bool | None = None, auto_crop: bool | None = None, auto_crop_scales: Sequence[float] | None = None,
    ) -> "Predictor":
        """From a checkpoint, an exported model, or a shipped model's name (default: the shipped chair model)."""
        return cls(Interpreter.load(path_or_name, device), device, backend=backend, refine=refine, flip_test=flip_test, auto_crop=auto_crop,
                   auto_crop_scales=auto_crop_scales)

    def refine_lifted(self, lifted, keypoints_plane: torch.Tensor, weights: torch.Tensor):
        """Refine a network prediction against plane-px keypoints; returns (projected Lifted, RefineResult)."""
        return self.model.refine(lifted, keypoints_plane, weights, self.prior, self.refine_options)

    # -- core ----------------------------------------------------------------------------------
    def predict_arrays(self, images: Sequence[np.ndarray], sources: Sequence[str], boxes=None, frames=None) -> list[Prediction]:
        predictions = self._predict_boxes(images, sources, [None] * len(images) if boxes is None else list(boxes), frames)
        if self.auto_crop:
            self._auto_crop(images, sources, boxes, frames, predictions)
        return predictions

    def _auto_crop(self, images, sources, boxes, frames, predictions: list[Prediction]) -> None:
        """Replace, in place, the answer of each image without a box by that of its best crop: the
        search windows and the square framing the first pass's confident keypoints, each judged by
        :func:`_framing_score` among those that do not cut the object (:func:`_frames_whole_object`)."""
        todo = [i for i in range(len(images)) if boxes is None or boxes[i] is None]
        candidates = []
        for i in todo:
            framing = _framing_box(predictions[i], images[i].shape)
            candidates += [(i, box) for box in _search_windows(images[i].shape, self.auto_crop_scales) + ([] if framing is None else [framing])]
        # each image's bar to beat: AUTO_CROP_GAIN x its whole image's score, then the best whole crop's
        best: dict[int, tuple[float, list[float] | None, Prediction | None]] = {i: (AUTO_CROP_GAIN * _framing_score(predictions[i]), None, None) for i in todo}
        for start in range(0, len(candidates), AUTO_CROP_BATCH):
            chunk = candidates[start : start + AUTO_CROP_BATCH]
            again = self._predict_boxes([images[i] for i, _ in chunk], [sources[i] for i, _ in chunk], [box for _, box in chunk],
                                        None if frames is None else [frames[i] for i, _ in chunk])
            for (i, box), pred in zip(chunk, again):
                score = _framing_score(pred)
                if score > best[i][0] and _frames_whole_object(pred, box):
                    best[i] = (score, box, pred)
        for i, (_, box, pred) in best.items():
            if pred is not None:
                pred.extra["auto_crop_box"] = [round(float(v), 1) for v in box]
                predictions[i] = pred

    def _predict_boxes(self, images, sources, boxes, frames) -> list[Prediction]:
        size = self.model.image_size
        prepared, affines = [], []
        for rgb, box in zip(images, boxes):
            sq, affine = _square(rgb, size, box)
            prepared.append(sq)
            affines.append(affine)
        predictions = []
        for start in range(0, len(prepared), self.batch_size):
            chunk = torch.from_numpy(np.stack(prepared[start : start + self.batch_size])).permute(0, 3, 1, 2).float().div_(255.0)
            with torch.no_grad():
                out = self._run(chunk.to(self.device).contiguous(memory_format=self._memory_format), flip_test=self.flip_test)
            predictions += self._to_predictions(out, affines[start : start + self.batch_size], sources[start : start + self.batch_size], None if frames is None else frames[start : start + self.batch_size])
        return predictions

    def _to_predictions(self, out, affines, sources, frames) -> list[Prediction]:
        model, cat = self.model, self.model.category
        hm_to_img = model.image_size / model.heatmap_size
        heatmaps = out.heatmaps.float().cpu()
        peaks, peak_values = heatmap_peaks(heatmaps, subpixel=True)
        conf = peak_confidence(heatmaps, 0.1)
        refined = None
        view_logits = getattr(out, "view_logits", None)
        head_azimuth = None if view_logits is None else viewpoint.most_probable_azimuth(view_logits.float().cpu())
        if self.refine:
            with torch.no_grad():
                out, refined = model.refine_heatmaps(out, heatmaps, self.prior, self.refine_options)
        reproj = out.keypoints.float().cpu()
        az, el = out.params.view()
        view_probs = None if view_logits is None else torch.softmax(view_logits.float().cpu(), -1)
        az_confidence = None if view_probs is None else viewpoint.azimuth_confidence(view_probs, az.cpu(), cat.azimuth_period)
        rot = _camera_rotation(out)
        preds = []
        for i, affine in enumerate(affines):
            def to_image(xy):
                return (xy.numpy() * hm_to_img) @ affine[:, :2].T + affine[:, 2]

            preds.append(
                Prediction(
                    source=str(sources[i]),
                    category=cat.name,
                    keypoint_names=list(cat.keypoint_names),
                    keypoints_2d=to_image(peaks[i]),
                    confidence=conf[i].numpy(),
                    reprojected_2d=to_image(reproj[i]),
                    keypoints_3d=out.structure[i].float().cpu().numpy(),
                    keypoints_3d_camera=out.points_cam[i].float().cpu().numpy(),
                    alpha=out.params.alpha[i].float().cpu().numpy(),
                    rotation=rot[i].numpy(),
                    azimuth_deg=float(math.degrees(az[i])),
                    elevation_deg=float(math.degrees(el[i])),
                    translation=out.params.translation[i].float().cpu().numpy(),
                    focal=float(out.params.focal[i]),
                    frame=None if frames is None else int(frames[i]),
                    azimuth_confidence=None if az_confidence is None else float(az_confidence[i]),
                    extra={"affine_input_to_image": affine.tolist(), "refined": refined is not None, "peak_values": peak_values[i].tolist()}
                    | ({} if head_azimuth is None else {
                        "view_head_azimuth_deg": float(math.degrees(head_azimuth[i])),
                        # bin j is centred at azimuth 360 j / len deg
                        "view_probabilities": [round(float(v), 5) for v in view_probs[i]],
                    }),
                )
            )
        return preds

    # -- 2D keypoints ----------------------------------------------------------------------------
    def lift(self, keypoints, visible=None, confidence=None, sources: Sequence[str] | None = None) -> list[Prediction]:
        """3D structure and camera from 2D keypoints ``(B, N, 2)`` (or ``(N, 2)``) in image pixels
        (x right, y down), in the category's dataset order (``Category.keypoint_names``).

        NaN coordinates or ``visible=False`` mark a missing keypoint; ``confidence (B, N)`` in [0, 1]
        weighs the others (e.g. a detector's scores). Position and scale are arbitrary: each object's
        keypoints are moved to the projection plane by a similarity (``extra["plane_to_image"]`` maps
        back; translation and focal length are reported in that plane's px). Raises
        :class:`InputError` naming the rows and problems (:func:`check_keypoints`)."""
        model, cat = self.model, self.model.category
        xy, weights, problems = check_keypoints(keypoints, cat, visible, confidence)
        if problems:
            raise InputError("; ".join(f"row {r}: {m}" for r, m in problems))
        b = xy.shape[0]
        sources = [f"<keypoints {i}>" for i in range(b)] if sources is None else list(sources)
        w_t = torch.from_numpy(weights)
        plane_xy, centre, to_plane = keypoints_to_plane(torch.from_numpy(xy), w_t, cat)
        preds: list[Prediction] = []
        chunk = 4096
        for start in range(0, b, chunk):
            sl = slice(start, start + chunk)
            kp, w = plane_xy[sl].float(), w_t[sl].float()
            with torch.no_grad():
                lifted = _to_cpu(model.lift_given_keypoints(kp.to(self.device), w.to(self.device)))
                result = None
                if self.refine:
                    lifted, result = self.refine_lifted(lifted, kp, w)
            az, el = lifted.params.view()
            rot = _camera_rotation(lifted)
            for j in range(kp.shape[0]):
                i = start + j
                inv = 1.0 / float(to_plane[i])
                offset = centre[i].numpy() - cat.plane_size / 2.0 * inv
                extra = {"plane_to_image": [[inv, 0.0, float(offset[0])], [0.0, inv, float(offset[1])]], "refined": result is not None}
                if result is not None:
                    extra["reprojection_rms_px"] = float(result.reprojection_rms[j]) * inv
                    extra["refine_cost"] = float(result.cost[j])
                    extra["roll_deg"] = float(math.degrees(result.roll[j]))
                preds.append(
                    Prediction(
                        source=sources[i], category=cat.name, keypoint_names=list(cat.keypoint_names),
                        keypoints_2d=xy[i].copy(), confidence=weights[i].copy(),
                        reprojected_2d=lifted.keypoints_plane[j].double().numpy() * inv + offset,
                        keypoints_3d=lifted.structure[j].numpy(), keypoints_3d_camera=lifted.points_cam[j].numpy(),
                        alpha=lifted.params.alpha[j].numpy(), rotation=rot[j].numpy(),
                        azimuth_deg=float(math.degrees(az[j])), elevation_deg=float(math.degrees(el[j])),
                        translation=lifted.params.translation[j].numpy(), focal=float(lifted.params.focal[j]), extra=extra,
                    )
                )
        return preds

    # -- inputs --------------------------------------------------------------------------------
    def predict(self, inputs: str | Path | np.ndarray | Iterable, box: Sequence[float] | None = None, smooth: bool = False) -> list[Prediction]:
        """Images (paths or arrays), folders of images, or a video (file or folder of frames with
        ``smooth``). Raises :class:`InputError` naming the file on bad input."""
        if isinstance(inputs, np.ndarray):
            return self.predict_arrays([inputs], ["<array>"], None if box is None else [box])
        if isinstance(inputs, (str, Path)):
            path = Path(inputs)
            if path.suffix.lower() in VIDEO_SUFFIXES:
                return self.predict_video(path, box=box, smooth=smooth)
            if path.is_dir():
                files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
                if not files:
                    raise InputError(f"{path}: folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
                if smooth:
                    return self._video_from_frames([load_rgb(p) for p in files], [str(p) for p in files], box, smooth)
                return self.predict_arrays([load_rgb(p) for p in files], [str(p) for p in files], None if box is None else [box] * len(files))
            if path.exists() and path.suffix.lower() not in IMAGE_SUFFIXES:
                raise InputError(f"{path}: unsupported file type {path.suffix!r}; images: {sorted(IMAGE_SUFFIXES)}, videos: {sorted(VIDEO_SUFFIXES)}")
            return self.predict_arrays([load_rgb(path)], [str(path)], None if box is None else [box])
        items = list(inputs)
        singles = [isinstance(x, np.ndarray) or (Path(x).suffix.lower() in IMAGE_SUFFIXES and not Path(x).is_dir()) for x in items]
        if all(singles):  # a list of single images runs in batches
            arrays = [x if isinstance(x, np.ndarray) else load_rgb(x) for x in items]
            sources = ["<array>" if isinstance(x, np.ndarray) else str(x) for x in items]
            return self.predict_arrays(arrays, sources, None if box is None else [box] * len(items))
        results = []
        for item in items:
            results += self.predict(item, box=box, smooth=smooth)
        return results

    def predict_video(self, path: str | Path, box=None, smooth: bool = True, every: int = 1) -> list[Prediction]:
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: file not found")
        try:
            import imageio.v3 as iio

            frames = [np.asarray(f)[..., :3] for i, f in enumerate(iio.imiter(path, plugin="pyav")) if i % every == 0]
        except ImportError as exc:
            raise InputError(f"{path}: reading videos needs imageio and av (pip install 'imageio[pyav]')") from exc
        except Exception as exc:  # the decoders raise many types
            raise InputError(f"{path}: not a readable video ({type(exc).__name__}: {exc})") from exc
        if not frames:
            raise InputError(f"{path}: video has no frames")
        return self._video_from_frames(frames, [str(path)] * len(frames), box, smooth)

    def _video_from_frames(self, frames, sources, box, smooth) -> list[Prediction]:
        if self.auto_crop and box is None:
            preds = self._video_auto_crop(frames, sources)
        else:
            preds = self.predict_arrays(frames, sources, None if box is None else [box] * len(frames), frames=list(range(len(frames))))
        return self.smooth(preds) if smooth else preds

    def _video_auto_crop(self, frames, sources, interpolate: bool = True) -> list[Prediction]:
        """The auto-crop's search on every :data:`AUTO_CROP_VIDEO_STRIDE`-th frame and the last; each
        other frame is read once, on a crop that follows the object between the two searched frames
        around it (:func:`_crop_between`; ``interpolate=False``: on the nearer one's crop): about 2.5
        passes a frame instead of 15."""
        if not frames:
            return []
        keys = sorted(set(range(0, len(frames), AUTO_CROP_VIDEO_STRIDE)) | {len(frames) - 1})
        preds = dict(zip(keys, self.predict_arrays([frames[k] for k in keys], [sources[k] for k in keys], frames=keys)))
        rest = [i for i in range(len(frames)) if i not in preds]
        chosen = {k: preds[k].extra.get("auto_crop_box") for k in keys}
        boxes = [_crop_between(i, keys, chosen, interpolate) for i in rest]
        if rest:
            for i, box, pred in zip(rest, boxes, self._predict_boxes([frames[i] for i in rest], [sources[i] for i in rest], boxes, rest)):
                if box is not None:
                    pred.extra["auto_crop_box"] = box
                preds[i] = pred
        return [preds[i] for i in range(len(frames))]

    def smooth(self, preds: list[Prediction], window: int = 5) -> list[Prediction]:
        """Test-time temporal consistency: median alpha and focal length over the frames (Eq. 3's
        minimiser) and a centred moving average of the rotation code and translation (Eq. 4)."""
        if len(preds) < 2:
            return preds
        cat = self.model.category
        alpha = torch.tensor(np.median(np.stack([p.alpha for p in preds]), axis=0), dtype=torch.float64)
        focal = torch.tensor(float(np.median([p.focal for p in preds])), dtype=torch.float64)
        r6 = np.stack([geometry.euler_to_sincos(geometry.matrix_to_euler(torch.tensor(p.rotation, dtype=torch.float64))).numpy() for p in preds])
        t = np.stack([p.translation for p in preds]).astype(np.float64)
        kernel = np.ones(window) / window
        pad = window // 2

        def moving(x):
            padded = np.pad(x, ((pad, pad), (0, 0)), mode="edge")
            return np.stack([np.convolve(padded[:, d], kernel, mode="valid") for d in range(x.shape[1])], axis=1)

        r6s, ts = torch.from_numpy(moving(r6)), torch.from_numpy(moving(t))
        params = ShapeCamera(alpha.expand(len(preds), -1), r6s, ts, focal.expand(len(preds)))
        structure, cam, plane = params.project(cat)
        az, el = params.view()
        probs = [p.extra.get("view_probabilities") for p in preds]
        confidence = viewpoint.azimuth_confidence(torch.tensor(probs), az, cat.azimuth_period) if all(probs) else None
        out = []
        for i, p in enumerate(preds):
            affine = np.array(p.extra["affine_input_to_image"])
            img = (plane[i].numpy() * self.model.image_size / cat.plane_size) @ affine[:, :2].T + affine[:, 2]
            out.append(
                Prediction(
                    **{**p.__dict__, "keypoints_3d": structure[i].numpy().astype(np.float32), "keypoints_3d_camera": cam[i].numpy().astype(np.float32),
                       "alpha": alpha.numpy().astype(np.float32), "rotation": params.rotation()[i].numpy(), "azimuth_deg": float(math.degrees(az[i])),
                       "elevation_deg": float(math.degrees(el[i])), "translation": ts[i].numpy(), "focal": float(focal), "reprojected_2d": img,
                       "azimuth_confidence": None if confidence is None else float(confidence[i]), "extra": {**p.extra, "smoothed": True}}
                )
            )
        return out
