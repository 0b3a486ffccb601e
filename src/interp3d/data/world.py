"""The rendered furniture world: datasets with exact ground truth that mirror the paper's data.

Three kinds:

* ``annotated2d`` (Keypoint-5-like): light clutter and the *views of the real Keypoint-5 photos*
  (``annotated_views="keypoint5"``, the default: azimuth and elevation drawn per category from the
  distribution measured on Keypoint-5's own 2D keypoints, :data:`KEYPOINT5_VIEWS`: mostly front and
  three-quarter views from 10-30 deg above, a tail of side and a few back views for chairs) or the
  older hard cut (``"restricted"``: azimuth within ``annotated_azimuth_deg`` of the front, the lower
  part of the elevation range). Training code uses its images and 2D keypoints.
* ``video`` (object videos): sequences of J frames along smooth camera orbits with hand-held wobble
  over the full pose range; one object, focal length and scene per video. Training code sees only
  ``videos.json`` (frame paths + category); ``annotations.npz`` is ground truth for evaluation.
* ``test3d`` (IKEA-like): full pose range, occluders and clutter, full 3D ground truth.

Folder format (``FORMAT``), documented in the README::

    meta.json            written last: format, kind, category, counts, sizes, seed, options, skeleton
    images/000000.png    annotated2d and test3d (RGB, image_size^2)
    frames/0000/000.png  video: one folder per video
    masks/...png         visible pixels of the target object (same layout as images/frames)
    annotations.npz      index-aligned arrays (see ANNOTATION_FIELDS)
    videos.json          video only: [{"id", "category", "frames": [...]}]
    parts/               resume state while rendering; removed when complete

Rendering is deterministic per item (seeded by ``(seed, kind, index)``), done in chunks that are
committed atomically, so a killed render resumes where it stopped and gives identical files.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .. import geometry
from ..io_utils import atomic_path, atomic_write_json
from ..params import ParamCodec
from ..shape_model import Category, get_category
from .synthetic import SkeletonSampler

__all__ = ["WorldOptions", "render_world", "full_view_ranges", "cad_targets", "render_furniture_views", "WorldDataset", "VideoDataset", "WorldFormatError", "KINDS", "FORMAT", "ANNOTATION_FIELDS"]

FORMAT = "interp3d.world/1"
KINDS = ("annotated2d", "video", "test3d")
_KIND_ID = {k: i for i, k in enumerate(KINDS)}

ANNOTATION_FIELDS = {
    "keypoints": "(n, N, 2) exact projected keypoints, image px (pixel i spans [i, i+1))",
    "visible": "(n, N) bool: in the image and not occluded (depth buffer)",
    "occluded_by_other": "(n, N) bool: hidden behind another object",
    "structure": "(n, N, 3) object-frame 3D keypoints",
    "points_cam": "(n, N, 3) camera-frame 3D keypoints",
    "alpha": "(n, K) absolute shape coefficients",
    "angles": "(n, 3) Euler angles theta1, theta2, theta3 (rad)",
    "translation": "(n, 2) t_x, t_y, projection-plane px",
    "focal": "(n,) focal length, projection-plane px",
    "azimuth": "(n,) rad in [0, 2 pi)",
    "elevation": "(n,) rad",
    "bbox": "(n, 4) x0, y0, x1, y1 of the projected target mesh, image px",
    "params": "(n, P) parameter vector [alpha, 1/f, sin, cos, t]",
    "video_index": "(n,) video id (video kind; -1 otherwise)",
    "frame_index": "(n,) frame number within its video (video kind; 0 otherwise)",
}
# and, in worlds with viewpoint-only items (WorldOptions.furniture_share), "keypoints_known": (n,)
# bool, False where the target has no keypoints (its keypoints 0 and hidden, its 3D NaN); absent = all known


class WorldFormatError(ValueError):
    """A world dataset folder is missing, incomplete or corrupt."""


@dataclass(frozen=True)
class WorldOptions:
    kind: str = "annotated2d"
    count: int = 100  # images, or videos for the video kind
    image_size: int = 256
    video_length: int = 36
    annotated_views: str = "keypoint5"  # annotated2d: "keypoint5" (measured view distribution) or "restricted" (hard cut below)
    annotated_azimuth_deg: float = 45.0  # annotated2d, restricted: |azimuth| <= this
    annotated_elevation_fraction: float = 0.5  # annotated2d: lower part of the elevation range
    video_sweep_deg: tuple[float, float] = (60.0, 180.0)  # total azimuth sweep of a video
    chunk: int = 25  # items per committed chunk (resume granularity)
    supersample: int = 2
    real_shapes: str = ""  # a folder of PASCAL3D+ CAD JSON models to render instead of procedural furniture
    real_shape_fraction: float = 1.0  # with real_shapes: the share of items whose target is a CAD model
    # "category": video and test3d use the skeleton's 3D-INN ranges, annotated2d annotated_views;
    # "full": every kind sees every azimuth (tables half a turn) and elevations of at least 0..40 deg
    view_sphere: str = "category"
    # view_sphere "full", annotated2d: this share of the items take a Keypoint-5 view (the views
    # photographs have, mostly front and three-quarter) instead of a uniform one
    keypoint5_share: float = 0.0
    # photographic material (render.photos folders; scripts/fetch_photo_material.sh): "" = procedural
    backgrounds: str = ""
    textures: str = ""
    jpeg: float = 0.0  # probability of JPEG compression of an image
    # annotated2d: this share of the items get test3d's cluttered scene (1-3 distractors and clutter
    # boxes, 1-2 occluders, stronger blur and noise) with training backgrounds; the rest the usual one
    cluttered_share: float = 0.0
    # annotated2d: this share of the items show a real furniture model of the folder's catalogues
    # (data.furniture_models, its "train" half) instead: exact viewpoint, no keypoints
    # (keypoints_known False: the heatmap loss skips them, the viewpoint head learns from them)
    furniture_models: str = ""
    furniture_share: float = 0.0
    # ... and the train halves of these categories' or groups' models too, where they have the
    # category's front (chairs for swivel chairs: seat, back and arms, another base; armchairs for
    # chairs); their views label the head alike
    furniture_also: tuple[str, ...] = ()

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown world kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        if self.annotated_views not in ("keypoint5", "restricted"):
            raise ValueError(f"annotated_views must be 'keypoint5' or 'restricted', got {self.annotated_views!r}")
        if self.view_sphere not in ("category", "full"):
            raise ValueError(f"view_sphere must be 'category' or 'full', got {self.view_sphere!r}")
        shares = (self.real_shape_fraction, self.jpeg, self.keypoint5_share, self.cluttered_share, self.furniture_share)
        if not all(0.0 <= v <= 1.0 for v in shares):
            raise ValueError(f"real_shape_fraction, jpeg, keypoint5_share, cluttered_share and furniture_share are probabilities, got {shares}")
        if self.furniture_share > 0 and not self.furniture_models:
            raise ValueError("furniture_share > 0 needs a furniture_models folder (scripts/fetch_furniture_models.sh)")
        from .furniture_models import furniture_group

        for name in self.furniture_also:
            try:
                furniture_group(name)
            except KeyError as err:
                raise ValueError(f"furniture_also: {err.args[0]}") from None
        for name in ("backgrounds", "textures", "real_shapes", "furniture_models"):
            folder = getattr(self, name)
            if folder and not Path(folder).is_dir():
                raise ValueError(f"{name}: folder {folder} not found")
        if self.count <= 0 or self.video_length <= 0 or self.image_size < 16:
            raise ValueError(f"count, video_length must be positive and image_size >= 16, got {self.count}, {self.video_length}, {self.image_size}")


def _scene_options(options: WorldOptions, cluttered: bool = False):
    """The scene of an item; ``cluttered``: test3d's clutter and degradation (training backgrounds
    where the item is not a test3d one)."""
    from ..render.scene import SceneOptions

    photo = dict(
        backgrounds=options.backgrounds, textures=options.textures, jpeg=options.jpeg,
        background_split="test" if options.kind == "test3d" else "train",  # test3d shows backgrounds no training image has
    )
    if options.kind == "annotated2d" and not cluttered:
        return SceneOptions(floor=0.7, distractors=(0, 1), clutter_boxes=(0, 1), occluders=(0, 0), blur=0.6, noise=3.0, **photo)
    if options.kind == "video":
        return SceneOptions(floor=0.8, distractors=(0, 2), clutter_boxes=(0, 2), occluders=(0, 0), blur=1.0, noise=4.0, **photo)
    return SceneOptions(floor=0.8, distractors=(1, 3), clutter_boxes=(1, 3), occluders=(1, 2), blur=1.2, noise=6.0, colour_gain=0.15, **photo)


def full_view_ranges(category: Category):
    """The category's sampling ranges over the whole view sphere: every azimuth (tables half a turn,
    their rectangular top repeats after it), elevations widened to at least 0..40 deg."""
    r = category.ranges
    azimuth = (-math.pi / 2, math.pi / 2) if category.name == "table" else (0.0, 2 * math.pi)
    elevation = (min(r.elevation[0], 0.0), max(r.elevation[1], math.radians(40.0)))
    return replace(r, azimuth=azimuth, elevation=elevation)


# Viewpoints of the real Keypoint-5 photos, estimated from their 2D keypoints (shared reference
# keypoint5_views.md: weak-perspective fits of 434 chairs, 400 sofas, 45 swivel chairs, 152 tables;
# 10-20 deg per-instance error). "azimuth_bins": shares (%) of 30-degree bins centred on -150 ... 180
# (symmetrised here: left/right is the photographer's habit and training mirrors images anyway);
# "azimuth_bands": shares of |azimuth| bands in deg where only those were measured; "nearest_side":
# tables, shares of the angle to the nearest side. Elevation quantiles (10 / 50 / 90 %) in deg.
# Bed has no measurement: it takes the chair's azimuths and the sofa's elevations (both are
# photographed in rooms from standing height).
KEYPOINT5_VIEWS: dict[str, dict] = {
    "chair": {"azimuth_bins": [2.3, 1.4, 3.2, 6.9, 20.3, 25.6, 28.8, 6.7, 1.8, 1.4, 1.2, 0.5], "elevation": (11.0, 19.0, 33.0)},
    "sofa": {"azimuth_bins": [0, 0, 0, 1.2, 18.0, 53.8, 23.2, 3.0, 0.2, 0.2, 0.2, 0], "elevation": (7.5, 13.0, 25.0)},
    "swivelchair": {"azimuth_bands": [((0, 45), 58.0), ((45, 90), 15.0), ((90, 135), 11.0), ((135, 180), 16.0)], "elevation": (8.0, 19.0, 41.0)},
    "table": {"nearest_side": [((0, 15), 28.0), ((15, 30), 30.0), ((30, 45), 41.0)], "elevation": (6.0, 14.0, 30.0)},
    "bed": {"azimuth_bins": [2.3, 1.4, 3.2, 6.9, 20.3, 25.6, 28.8, 6.7, 1.8, 1.4, 1.2, 0.5], "elevation": (7.5, 13.0, 25.0)},
}


def keypoint5_view(category: Category | str, rng: np.random.Generator) -> tuple[float, float]:
    """One (azimuth, elevation) in radians from the category's measured Keypoint-5 view distribution."""
    name = get_category(category).name
    if name not in KEYPOINT5_VIEWS:
        raise ValueError(f"no Keypoint-5 view distribution for {name!r}; have {sorted(KEYPOINT5_VIEWS)} (use annotated_views='restricted')")
    spec = KEYPOINT5_VIEWS[name]
    if "azimuth_bins" in spec:
        shares = np.asarray(spec["azimuth_bins"], np.float64)
        shares = (shares + shares[::-1][np.r_[1:12, 0]]) / 2  # mirror: bin centred on c <-> -c (180 maps to itself)
        centre = -150.0 + 30.0 * rng.choice(12, p=shares / shares.sum())
        azimuth = centre + rng.uniform(-15.0, 15.0)
    else:
        bands = spec.get("azimuth_bands") or spec["nearest_side"]
        weights = np.array([w for _, w in bands], np.float64)
        lo, hi = bands[rng.choice(len(bands), p=weights / weights.sum())][0]
        azimuth = rng.uniform(lo, hi) * rng.choice((-1.0, 1.0))
        if "nearest_side" in spec:
            azimuth += 90.0 * rng.integers(4)
    q10, q50, q90 = spec["elevation"]
    # piecewise-linear quantile function through the measured quantiles, tails as wide as the next step
    u = rng.uniform()
    knots_u = [0.0, 0.1, 0.5, 0.9, 1.0]
    knots_v = [max(0.0, q10 - (q50 - q10) / 4), q10, q50, q90, q90 + (q90 - q50) / 4]
    elevation = float(np.interp(u, knots_u, knots_v))
    return math.radians(azimuth % 360.0), math.radians(elevation)


def _annotated_ranges(category: Category, options: WorldOptions, seed: int, index: int):
    """Sampling ranges of one annotated2d item: a single Keypoint-5 view, or the restricted box."""
    if options.annotated_views == "restricted":
        return _restricted_ranges(category, options)
    # its own generator, so the rest of the item (shape, scene) is what it was with the other views
    az, el = keypoint5_view(category, np.random.default_rng([seed, _KIND_ID["annotated2d"], index, 5]))
    return replace(category.ranges, azimuth=(az, az), elevation=(el, el))


def _restricted_ranges(category: Category, options: WorldOptions):
    r = category.ranges
    half = math.radians(options.annotated_azimuth_deg)
    lo, hi = r.azimuth
    # the front (azimuth 0) lies inside every category's range, possibly as 2 pi for [0, 2 pi)
    centre = 0.0 if lo <= 0.0 <= hi else lo
    az = (max(lo, centre - half), min(hi, centre + half)) if hi - lo < 2 * math.pi - 1e-9 else (-half, half)
    el = (r.elevation[0], r.elevation[0] + options.annotated_elevation_fraction * (r.elevation[1] - r.elevation[0]))
    return replace(r, azimuth=az, elevation=el)


def _item_rng(seed: int, kind: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, _KIND_ID[kind], index])


def _camera_trajectory(category: Category, base, rng: np.random.Generator, length: int, options: WorldOptions):
    """Smooth orbit: azimuth sweep with easing, slow elevation drift, hand-held translation wobble."""
    from ..render.scene import Camera

    r = full_view_ranges(category) if options.view_sphere == "full" else category.ranges
    az0 = float(base.angles[0, 1])
    el0 = float(base.angles[0, 0]) - math.pi
    sweep = math.radians(rng.uniform(*options.video_sweep_deg)) * rng.choice([-1.0, 1.0])
    full_circle = r.azimuth[1] - r.azimuth[0] >= 2 * math.pi - 1e-9
    if not full_circle:  # keep the sweep inside the category's azimuth range
        room_hi, room_lo = r.azimuth[1] - az0, az0 - r.azimuth[0]
        sweep = min(abs(sweep), max(room_hi, room_lo)) * (1.0 if room_hi >= room_lo else -1.0)
    s = np.linspace(0.0, 1.0, length)
    ease = s + rng.uniform(-0.08, 0.08) * np.sin(2 * np.pi * s)
    azimuth = az0 + sweep * ease
    el_drift = math.radians(rng.uniform(-6, 6))
    elevation = np.clip(el0 + el_drift * s + math.radians(1.0) * np.sin(2 * np.pi * s * rng.uniform(0.5, 2)), r.elevation[0], r.elevation[1])
    walk = np.cumsum(rng.normal(0, 1.0, (length, 2)), axis=0)
    walk -= walk[0]
    t = base.params.translation[0].numpy() + walk * rng.uniform(0.3, 1.5)
    focal = float(base.params.focal[0])
    return [Camera(np.array([math.pi + elevation[j], azimuth[j], 0.0]), t[j], focal) for j in range(length)]


def _record(category: Category, codec: ParamCodec, spec, camera, view, video_index: int, frame_index: int) -> dict[str, np.ndarray]:
    angles = torch.as_tensor(camera.angles, dtype=torch.float64)
    az, el = geometry.euler_to_view(angles)
    from ..params import ShapeCamera

    params = ShapeCamera.from_angles(torch.as_tensor(spec.alpha), angles, torch.as_tensor(camera.translation, dtype=torch.float64), torch.tensor(camera.focal, dtype=torch.float64))
    return {
        "keypoints": view.keypoints.astype(np.float32),
        "visible": view.visible,
        "occluded_by_other": view.occluded_by_other,
        "structure": spec.structure.astype(np.float32),
        "points_cam": view.points_cam.astype(np.float32),
        "alpha": spec.alpha.astype(np.float32),
        "angles": camera.angles.astype(np.float32),
        "translation": np.asarray(camera.translation, np.float32),
        "focal": np.float32(camera.focal),
        "azimuth": np.float32(az),
        "elevation": np.float32(el),
        "bbox": view.bbox.astype(np.float32),
        "params": codec.encode(params).numpy().astype(np.float32),
        "video_index": np.int32(video_index),
        "frame_index": np.int32(frame_index),
    }


def _save_png(path: Path, array: np.ndarray) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(array).save(tmp, format="PNG", compress_level=1)


def _render_item(root: Path, category: Category, codec: ParamCodec, options: WorldOptions, seed: int, index: int) -> list[dict]:
    from ..render.scene import Camera, render_view, sample_scene

    rng = _item_rng(seed, options.kind, index)
    gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
    if options.view_sphere == "full":
        photo_view = options.kind == "annotated2d" and options.keypoint5_share > 0 and np.random.default_rng([seed, _KIND_ID["annotated2d"], index, 19]).random() < options.keypoint5_share
        ranges = _annotated_ranges(category, replace(options, annotated_views="keypoint5"), seed, index) if photo_view else full_view_ranges(category)
    else:
        ranges = _annotated_ranges(category, options, seed, index) if options.kind == "annotated2d" else None
    base = SkeletonSampler(category, ranges=ranges).sample(1, gen, dtype=torch.float64)
    structure, alpha, mesh = base.structure[0].numpy(), base.params.alpha[0].numpy(), None
    if options.real_shapes and (options.real_shape_fraction >= 1.0 or np.random.default_rng([seed, _KIND_ID[options.kind], index, 17]).random() < options.real_shape_fraction):
        structure, alpha, mesh = _real_target(category, options.real_shapes, index, float(alpha[0]), rng)
    cluttered = options.kind == "annotated2d" and options.cluttered_share > 0 and np.random.default_rng([seed, _KIND_ID["annotated2d"], index, 23]).random() < options.cluttered_share
    furniture = options.kind == "annotated2d" and options.furniture_share > 0 and np.random.default_rng([seed, _KIND_ID["annotated2d"], index, 29]).random() < options.furniture_share
    if furniture:
        mesh = _furniture_target(category, options.furniture_models, index, structure, options.furniture_also)
    spec = sample_scene(category, structure, alpha, rng, _scene_options(options, cluttered), target_mesh=mesh)
    if options.kind == "video":
        cameras = _camera_trajectory(category, base, rng, options.video_length, options)
        names = [f"frames/{index:04d}/{j:03d}.png" for j in range(len(cameras))]
    else:
        cameras = [Camera(base.angles[0].numpy(), base.params.translation[0].numpy(), float(base.params.focal[0]))]
        names = [f"images/{index:06d}.png"]
    records = []
    for j, (camera, name) in enumerate(zip(cameras, names)):
        view = render_view(spec, camera, options.image_size, rng, options.supersample)
        _save_png(root / name, view.image)
        _save_png(root / name.replace("images/", "masks/").replace("frames/", "masks/"), (view.mask * 255).astype(np.uint8))
        rec = _record(category, codec, spec, camera, view, index if options.kind == "video" else -1, j)
        rec["path"] = name
        if options.furniture_share > 0:  # the field exists in worlds that have such items
            rec["keypoints_known"] = np.bool_(not furniture)
        if furniture:  # the skeleton only framed the camera: nothing of it is the model's
            rec["keypoints"] = np.zeros_like(rec["keypoints"])
            rec["visible"] = np.zeros_like(rec["visible"])
            rec["occluded_by_other"] = np.zeros_like(rec["occluded_by_other"])
            for key in ("structure", "points_cam", "alpha", "params"):
                rec[key] = np.full_like(rec[key], np.nan)
        records.append(rec)
    return records


_REAL_CACHE: dict[tuple[str, ...], list] = {}


def cad_targets(category: Category | str, folder: str | Path) -> list:
    """The PASCAL3D+ CAD models of ``folder`` that carry all of the category's keypoints, each with
    its basis fit (cached per process); empty when there are none (e.g. sofas, round tables)."""
    from ..shape_fit import fit_shape
    from .real_shapes import load_pascal3d_folder

    category = get_category(category)
    key = (str(folder), category.name)
    if key not in _REAL_CACHE:
        complete = [shape for shape in load_pascal3d_folder(folder, category) if shape.present.all()]
        _REAL_CACHE[key] = [(shape, fit_shape(shape.keypoints, category)) for shape in complete]
    return _REAL_CACHE[key]


def _furniture_target(category: Category, folder: str, index: int, structure: np.ndarray, also: tuple[str, ...] = ()):
    """The ``train`` half's furniture model for item ``index`` (in turn; the category's models, then
    those of the ``also`` categories or groups), placed like the skeleton."""
    from .furniture_models import furniture_models, placed_like

    key = (str(folder), category.name, "furniture", *also)
    if key not in _REAL_CACHE:
        _REAL_CACHE[key] = [m for name in (category.name, *also) for m in furniture_models(folder, name, "train")]
    models = _REAL_CACHE[key]
    if not models:
        raise WorldFormatError(f"{folder}: no {category.name} furniture model in the train half (interp3d.data.furniture_models)")
    return placed_like(_furniture_mesh(models[index % len(models)]), structure)


_MESH_CACHE: dict[str, object] = {}


def _furniture_mesh(model):
    """A furniture model's mesh, read once per process (OBJ parsing takes 0.05-1.3 s a model)."""
    if model.key not in _MESH_CACHE:
        _MESH_CACHE[model.key] = model.mesh()
    return _MESH_CACHE[model.key]


def _real_target(category: Category, folder: str, index: int, scale: float, rng: np.random.Generator):
    """A real CAD model (complete keypoints only) scaled so its fitted alpha_1 equals ``scale``."""
    from ..render.mesh import Mesh, random_material

    shapes = cad_targets(category, folder)
    if not shapes:
        raise WorldFormatError(f"{folder}: no PASCAL3D+ {category.name} model with all {category.num_keypoints} keypoints")
    shape, fit = shapes[index % len(shapes)]
    factor = scale / fit.alpha[0]
    centre = shape.keypoints.mean(axis=0) * np.array([1.0, 0.0, 1.0])  # centre on the floor footprint
    structure = (shape.keypoints - centre) * factor
    mesh = Mesh((shape.vertices - centre) * factor, shape.faces).with_material(random_material(rng, ("wood", "fabric", "paint"), 1 / scale))
    return structure, fit.alpha * factor, mesh


def render_furniture_views(
    category: Category | str, folder: str | Path, count: int, seed: int = 0, image_size: int = 192, options: WorldOptions | None = None,
    cluttered: bool = False, split: str = "all", group: str | None = None,
) -> dict[str, np.ndarray]:
    """``count`` views of the category's real furniture models (:mod:`interp3d.data.furniture_models`,
    the models of ``folder`` in turn; ``group``: another group's, such as ``armchair``, framed as the
    category's), each from a view of the whole sphere in the annotated images'
    scene (at most one distractor, no occluder; like most photographs) or, ``cluttered``, in test3d's,
    with the held-out photo backgrounds where ``options`` names photo material; ``split``: which half
    of the models (``test``: those a ``furniture_share`` world never shows). The models
    carry no keypoints: what is exact is the viewpoint. Returns ``images`` (count, S, S, 3) uint8,
    ``azimuth`` and ``elevation`` (radians) and ``model`` (each view's model key)."""
    from ..render.scene import Camera, render_view, sample_scene
    from .furniture_models import furniture_models, placed_like

    category = get_category(category)
    models = furniture_models(folder, group or category, split)
    if not models:
        raise WorldFormatError(f"{folder}: no {group or category.name} furniture model found ({split}) (interp3d.data.furniture_models.FURNITURE_MODELS lists them)")
    options = replace(options or WorldOptions(), kind="test3d", view_sphere="full", image_size=image_size)
    scene = _scene_options(options) if cluttered else replace(_scene_options(replace(options, kind="annotated2d")), background_split="test")
    images, azimuth, elevation, keys = [], [], [], []
    for index in range(count):
        rng = _item_rng(seed, "test3d", index)
        gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
        base = SkeletonSampler(category, ranges=full_view_ranges(category)).sample(1, gen, dtype=torch.float64)
        model = models[index % len(models)]
        structure = base.structure[0].numpy()
        mesh = placed_like(_furniture_mesh(model), structure)
        spec = sample_scene(category, structure, base.params.alpha[0].numpy(), rng, scene, target_mesh=mesh)
        camera = Camera(base.angles[0].numpy(), base.params.translation[0].numpy(), float(base.params.focal[0]))
        view = render_view(spec, camera, image_size, rng, options.supersample)
        az, el = geometry.euler_to_view(torch.as_tensor(camera.angles, dtype=torch.float64))
        images.append(view.image)
        azimuth.append(float(az))
        elevation.append(float(el))
        keys.append(model.key)
    return {"images": np.stack(images), "azimuth": np.array(azimuth), "elevation": np.array(elevation), "model": np.array(keys)}


def _stack(records: list[dict]) -> dict[str, np.ndarray]:
    out = {k: np.stack([r[k] for r in records]) for k in records[0] if k != "path"}
    out["path"] = np.array([r["path"] for r in records])
    return out


def _chunk_size(options: WorldOptions, chunk: int) -> int:
    return min(options.count, (chunk + 1) * options.chunk) - chunk * options.chunk


def _render_chunk(root: Path, category: Category, options: WorldOptions, seed: int, chunk: int, on_item: Callable[[], None] | None = None) -> None:
    """Render the items of one chunk and commit them atomically as ``parts/chunk_<c>.npz``."""
    codec = ParamCodec(category)
    records = []
    for index in range(chunk * options.chunk, chunk * options.chunk + _chunk_size(options, chunk)):
        records += _render_item(root, category, codec, options, seed, index)
        if on_item:
            on_item()
    with atomic_path(root / "parts" / f"chunk_{chunk:05d}.npz", suffix=".npz") as tmp:
        np.savez(tmp, **_stack(records))


def render_world(
    root: str | Path,
    category: Category | str,
    options: WorldOptions = WorldOptions(),
    seed: int = 0,
    progress: bool = True,
    config: dict | None = None,
    on_chunk: Callable[[int, int], None] | None = None,
    workers: int = 1,
) -> Path:
    """Render (or resume rendering) a world dataset into ``root``; returns ``root``.

    An existing complete dataset with the same settings is left as it is; different settings are an
    error (use another folder). ``workers > 1`` renders chunks in that many processes: every item is
    seeded by itself, so the files are the same as with one.
    """
    from tqdm import tqdm

    root = Path(root)
    category = get_category(category)
    settings = {"format": FORMAT, "category": category.name, "seed": seed, "options": _options_json(options)}
    meta_path = root / "meta.json"
    parts = root / "parts"
    if meta_path.is_file():
        existing = json.loads(meta_path.read_text())
        if not _same_settings(existing, settings):
            raise WorldFormatError(f"{root}: holds a different dataset ({existing.get('category')}, {existing.get('options', {}).get('kind')}); choose another folder")
        return root
    root.mkdir(parents=True, exist_ok=True)
    parts.mkdir(exist_ok=True)
    settings_file = parts / "settings.json"
    if settings_file.is_file() and not _same_settings(json.loads(settings_file.read_text()), settings):
        raise WorldFormatError(f"{root}: an unfinished render with other settings is here; delete {parts} or choose another folder")
    atomic_write_json(settings_file, settings)

    n_chunks = math.ceil(options.count / options.chunk)
    units = "videos" if options.kind == "video" else "images"
    bar = tqdm(total=options.count, desc=f"{category.name} {options.kind}", unit=units[:-1], disable=None if progress else True)  # None: off when not a terminal
    todo = []
    for c in range(n_chunks):
        if (parts / f"chunk_{c:05d}.npz").is_file():
            bar.update(_chunk_size(options, c))
        else:
            todo.append(c)
    if workers > 1 and len(todo) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # spawn, not fork: a GL context inherited through fork hangs; each worker makes its own
        with ProcessPoolExecutor(min(workers, len(todo)), mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_render_chunk, root, category, options, seed, c): c for c in todo}
            for future in as_completed(futures):
                future.result()
                bar.update(_chunk_size(options, futures[future]))
                if on_chunk:
                    on_chunk(futures[future], n_chunks)
    else:
        for c in todo:
            _render_chunk(root, category, options, seed, c, on_item=lambda: bar.update(1))
            if on_chunk:
                on_chunk(c, n_chunks)
    bar.close()

    merged: dict[str, list] = {}
    for c in range(n_chunks):
        with np.load(parts / f"chunk_{c:05d}.npz") as data:
            for k in data.files:
                merged.setdefault(k, []).append(data[k])
    arrays = {k: np.concatenate(v) for k, v in merged.items()}
    with atomic_path(root / "annotations.npz", suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)
    if options.kind == "video":
        videos = [
            {"id": v, "category": category.name, "frames": [str(f) for f in arrays["path"][arrays["video_index"] == v]]}
            for v in range(options.count)
        ]
        atomic_write_json(root / "videos.json", videos)
    meta = {
        **settings,
        "kind": options.kind,
        "count": options.count,
        "num_images": int(len(arrays["path"])),
        "image_size": options.image_size,
        "plane_size": category.plane_size,
        "keypoint_names": list(category.keypoint_names),
        "edges": [list(e) for e in category.edges],
        "annotation_fields": ANNOTATION_FIELDS,
        "config": config,
    }
    atomic_write_json(meta_path, meta)
    shutil.rmtree(parts)
    return root


def _same_settings(existing: dict, settings: dict) -> bool:
    """Whether a folder's recorded settings are ``settings``; an option the folder's interp3d did not
    have yet counts as its default (so worlds rendered before an option was added still match)."""
    defaults = _options_json(WorldOptions())
    recorded = {**{k: v for k, v in defaults.items() if k not in existing.get("options", {})}, **existing.get("options", {})}
    return {k: existing.get(k) for k in settings if k != "options"} == {k: v for k, v in settings.items() if k != "options"} and recorded == settings["options"]


def _options_json(options: WorldOptions) -> dict:
    return json.loads(json.dumps(asdict(options)))


def _read_meta(root: Path, kind: str | None) -> dict:
    if not root.is_dir():
        raise WorldFormatError(f"{root}: world dataset folder not found")
    meta_path = root / "meta.json"
    if not meta_path.is_file():
        hint = " (an unfinished render: run the same render command again to resume)" if (root / "parts").is_dir() else ""
        raise WorldFormatError(f"{root}: no meta.json, so not a complete interp3d world dataset{hint}")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise WorldFormatError(f"{meta_path}: corrupt ({exc})") from exc
    if meta.get("format") != FORMAT:
        raise WorldFormatError(f"{meta_path}: format {meta.get('format')!r}, expected {FORMAT!r}")
    if kind is not None and meta.get("kind") != kind:
        raise WorldFormatError(f"{root}: holds {meta.get('kind')!r} data, expected {kind!r}")
    return meta


class WorldDataset(Dataset):
    """Images of a world folder (any kind) with their annotations.

    Items: ``image`` float32 (3, S, S) in [0, 1], ``keypoints`` (N, 2) image px, ``visible`` (N,),
    ``params`` (P,), ``structure`` (N, 3), ``azimuth``, ``elevation``, ``index``.
    """

    def __init__(self, root: str | Path, kind: str | None = None, category: Category | str | None = None):
        self.root = Path(root)
        self.meta = _read_meta(self.root, kind)
        self.category = get_category(self.meta["category"])
        if category is not None and get_category(category).name != self.category.name:
            raise WorldFormatError(f"{self.root}: holds {self.category.name!r}, expected {get_category(category).name!r}")
        ann = self.root / "annotations.npz"
        try:
            with np.load(ann) as data:
                self.annotations = {k: data[k] for k in data.files}
        except FileNotFoundError:
            raise WorldFormatError(f"{ann}: missing") from None
        except Exception as exc:
            raise WorldFormatError(f"{ann}: unreadable ({exc})") from exc
        n = self.meta["num_images"]
        bad = [k for k in ANNOTATION_FIELDS if k not in self.annotations or len(self.annotations[k]) != n]
        if bad or len(self.annotations.get("path", [])) != n:
            raise WorldFormatError(f"{ann}: fields {bad or ['file']} missing or not of length {n}")
        if not np.isfinite(self.annotations["keypoints"]).all():
            raise WorldFormatError(f"{ann}: keypoints contain NaN/inf")

    def __len__(self) -> int:
        return len(self.annotations["path"])

    def image_path(self, index: int) -> Path:
        return self.root / str(self.annotations["path"][index])

    def load_image(self, index: int) -> np.ndarray:
        path = self.image_path(index)
        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
                array = np.asarray(img)
        except FileNotFoundError:
            raise WorldFormatError(f"{path}: image missing from the dataset") from None
        except OSError as exc:
            raise WorldFormatError(f"{path}: corrupt image ({exc})") from exc
        if array.shape[:2] != (self.meta["image_size"],) * 2:
            raise WorldFormatError(f"{path}: size {array.shape[:2]}, expected {self.meta['image_size']}")
        return array

    def __getitem__(self, index: int) -> dict:
        a = self.annotations
        image = torch.from_numpy(self.load_image(index).copy()).permute(2, 0, 1).float() / 255.0
        return {
            "image": image,
            "keypoints": torch.from_numpy(a["keypoints"][index]),
            "visible": torch.from_numpy(a["visible"][index]),
            "params": torch.from_numpy(a["params"][index]),
            "structure": torch.from_numpy(a["structure"][index]),
            "azimuth": float(a["azimuth"][index]),
            "elevation": float(a["elevation"][index]),
            "index": index,
        }


class VideoDataset(Dataset):
    """Clips of ``clip_length`` consecutive frames from a video folder; category label only.

    Reads ``videos.json`` alone, as training on weakly labelled videos must. Items: ``frames``
    float32 (J, 3, S, S), ``video`` (id), ``start`` (first frame), ``category``.
    """

    def __init__(self, root: str | Path, clip_length: int, stride: int | None = None):
        self.root = Path(root)
        self.meta = _read_meta(self.root, "video")
        path = self.root / "videos.json"
        try:
            self.videos = json.loads(path.read_text())
        except FileNotFoundError:
            raise WorldFormatError(f"{path}: missing") from None
        except json.JSONDecodeError as exc:
            raise WorldFormatError(f"{path}: corrupt ({exc})") from exc
        if clip_length <= 0:
            raise ValueError(f"clip_length must be positive, got {clip_length}")
        empty = [v["id"] for v in self.videos if not v.get("frames")]
        if empty:
            raise WorldFormatError(f"{path}: videos {empty} have no frames")
        stride = clip_length if stride is None else stride
        self.clip_length = clip_length
        self.clips = [(vi, s) for vi, v in enumerate(self.videos) for s in range(0, len(v["frames"]) - clip_length + 1, stride)]
        if not self.clips:
            raise WorldFormatError(f"{self.root}: no video has {clip_length} frames (longest: {max(len(v['frames']) for v in self.videos)})")

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict:
        vi, start = self.clips[index]
        video = self.videos[vi]
        frames = []
        for name in video["frames"][start : start + self.clip_length]:
            path = self.root / name
            try:
                with Image.open(path) as img:
                    frames.append(np.asarray(img.convert("RGB")))
            except FileNotFoundError:
                raise WorldFormatError(f"{path}: frame missing from the dataset") from None
            except OSError as exc:
                raise WorldFormatError(f"{path}: corrupt frame ({exc})") from exc
        clip = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255.0
        return {"frames": clip, "video": video["id"], "start": start, "category": video["category"]}
