"""PASCAL3D+ annotations: per-image ``record`` .mat files with viewpoints and 2D anchors.

Layout of a PASCAL3D+ release (only the parts read here)::

    Annotations/<cls>_pascal/<id>.mat   record: filename, objects(i): class, bbox, viewpoint, anchors, cad_index,
                                        truncated, occluded, difficult   (also <cls>_imagenet)
    Images/<cls>_pascal/<filename>
    CAD/<cls>.mat                       optional: the CAD models the objects' ``cad_index`` points to

Conversions to interp3d (tested against the PASCAL3D+ toolbox's ``project_3d`` formula):

* Viewpoint: PASCAL3D+ puts the camera at ``d (cos e sin a, -cos e cos a, sin e)`` in the CAD frame
  (z up, front -y), looking at the origin, then rotates the image by ``theta``. In interp3d's
  canonical frame (y up, front +z) that camera sits at ``(sin a cos e, sin e, cos a cos e)``, while
  interp3d's azimuth moves the camera towards -x: **azimuth = -a (mod 360 deg), elevation = e**;
  ``theta`` is an in-plane image rotation, which interp3d's zero-roll model does not represent.
* 2D: MATLAB pixel centres are 1-based integers; interp3d's pixel ``i`` spans ``[i, i+1)``, so
  ``xy_interp3d = xy_matlab - 0.5`` and a box ``[x1 y1 x2 y2]`` spans ``[x1-1, x2] x [y1-1, y2]``.
* Anchors -> skeleton keypoints by :data:`~interp3d.data.real_shapes.PASCAL3D_ANCHORS` (chair, sofa,
  table; bed in ObjectNet3D's layout, which shares this format; of an entry's alternatives the first
  the object has); an anchor is visible when its ``status`` is in ``visible_status`` (1 = visible in
  the PASCAL3D+ annotation tool; other codes mark occluded or truncated anchors).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..io_utils import atomic_path
from ..shape_model import Category, get_category
from .real_shapes import CANONICAL_FROM_PASCAL3D, PASCAL3D_ANCHORS, PASCAL3D_CLASS, RealShape, anchor_alternatives, load_pascal3d_mat

__all__ = [
    "Pascal3DViewpoint",
    "Pascal3DObject",
    "Pascal3D",
    "load_pascal3d_record",
    "pascal3d_project",
    "convert_pascal3d",
]


@dataclass(frozen=True)
class Pascal3DViewpoint:
    """A PASCAL3D+ ``viewpoint`` struct: angles in degrees, distance in CAD units, focal x viewport = pixels."""

    azimuth: float
    elevation: float
    theta: float = 0.0
    distance: float = 0.0
    focal: float = 1.0
    px: float = 0.0
    py: float = 0.0
    viewport: float = 3000.0

    @property
    def canonical_view(self) -> tuple[float, float]:
        """(azimuth, elevation) in radians in interp3d's convention (azimuth in [0, 2 pi))."""
        return math.radians(-self.azimuth) % (2 * math.pi), math.radians(self.elevation)

    def camera_rotation(self) -> np.ndarray:
        """Rotation (3, 3) from interp3d's canonical object frame to a camera frame with x right,
        y down and z the viewing direction, including the in-plane rotation ``theta``."""
        a, e, t = (math.radians(v) for v in (self.azimuth, self.elevation, self.theta))
        rz = np.array([[math.cos(-a), -math.sin(-a), 0], [math.sin(-a), math.cos(-a), 0], [0, 0, 1]])
        ex = -(math.pi / 2 - e)
        rx = np.array([[1, 0, 0], [0, math.cos(ex), -math.sin(ex)], [0, math.sin(ex), math.cos(ex)]])
        flip = np.diag([1.0, -1.0, -1.0])  # PASCAL3D+ camera: y up, looking down -z
        roll = np.array([[math.cos(t), math.sin(t), 0], [-math.sin(t), math.cos(t), 0], [0, 0, 1]])  # image rotation, y down
        return roll @ flip @ rx @ rz @ CANONICAL_FROM_PASCAL3D.T

    @property
    def pixels_per_unit(self) -> float:
        """Image pixels per projection-plane unit when interp3d's focal length is the distance."""
        return self.viewport * self.focal / self.distance


def pascal3d_project(points_cad: np.ndarray, viewpoint: Pascal3DViewpoint) -> np.ndarray:
    """Image points (n, 2), MATLAB pixel convention, of CAD-frame points: the PASCAL3D+ toolbox's ``project_3d``."""
    a, e, t = (math.radians(v) for v in (viewpoint.azimuth, viewpoint.elevation, viewpoint.theta))
    d = viewpoint.distance
    centre = np.array([d * math.cos(e) * math.sin(a), -d * math.cos(e) * math.cos(a), d * math.sin(e)])
    a, e = -a, -(math.pi / 2 - e)
    rz = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, math.cos(e), -math.sin(e)], [0, math.sin(e), math.cos(e)]])
    r = rx @ rz
    m = viewpoint.viewport * viewpoint.focal
    x = np.diag([m, m, -1.0]) @ (r @ (np.asarray(points_cad, np.float64) - centre).T)
    xy = x[:2] / x[2]
    xy = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]]) @ xy
    xy[1] = -xy[1]
    return xy.T + [viewpoint.px, viewpoint.py]


@dataclass
class Pascal3DObject:
    """One annotated object, 2D in interp3d's pixel convention, keypoints in the category's dataset order."""

    record: Path
    image: Path
    object_index: int  # 0-based within the record
    category: Category
    bbox: np.ndarray  # (4,) x0, y0, x1, y1
    keypoints: np.ndarray  # (N, 2), NaN where no anchor is annotated
    visible: np.ndarray  # (N,)
    viewpoint: Pascal3DViewpoint | None
    cad_index: int | None = None  # 1-based into CAD/<cls>.mat
    truncated: bool = False
    occluded: bool = False
    difficult: bool = False
    extra: dict = field(default_factory=dict)


def _field(obj, name: str, default=None):
    value = getattr(obj, name, default)
    if isinstance(value, np.ndarray) and value.size == 0:
        return default
    return value


def _scalar(obj, name: str, default: float) -> float:
    value = _field(obj, name, None)
    try:
        return float(np.asarray(value, np.float64).reshape(-1)[0]) if value is not None else default
    except (TypeError, ValueError, IndexError):
        return default


def _viewpoint(obj) -> Pascal3DViewpoint | None:
    vp = _field(obj, "viewpoint")
    if vp is None or not hasattr(vp, "azimuth") and not hasattr(vp, "azimuth_coarse"):
        return None
    # Coarse-only annotations (no fine alignment) still give an azimuth; distance 0 marks them.
    az = _scalar(vp, "azimuth", _scalar(vp, "azimuth_coarse", math.nan))
    el = _scalar(vp, "elevation", _scalar(vp, "elevation_coarse", math.nan))
    if not (math.isfinite(az) and math.isfinite(el)):
        return None
    return Pascal3DViewpoint(
        azimuth=az, elevation=el, theta=_scalar(vp, "theta", 0.0), distance=_scalar(vp, "distance", 0.0),
        focal=_scalar(vp, "focal", 1.0), px=_scalar(vp, "px", 0.0), py=_scalar(vp, "py", 0.0), viewport=_scalar(vp, "viewport", 3000.0),
    )


def load_pascal3d_record(path: str | Path) -> tuple[str, list]:
    """(image file name, raw object structs) of one annotation file."""
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: PASCAL3D+ annotation file not found")
    try:
        mat = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    except Exception as exc:
        raise ValueError(f"{path}: unreadable .mat file ({exc})") from exc
    record = mat.get("record")
    if record is None or not hasattr(record, "objects") or not hasattr(record, "filename"):
        raise ValueError(f"{path}: no 'record' struct with 'filename' and 'objects' (has {[k for k in mat if not k.startswith('__')]})")
    objects = record.objects
    objects = [] if isinstance(objects, np.ndarray) and objects.size == 0 else list(np.atleast_1d(objects))
    return str(record.filename), objects


class Pascal3D:
    """The objects of one category in PASCAL3D+ (``subset`` ``pascal`` or ``imagenet``).

    ``ids`` restricts to these record ids (e.g. the lines of a VOC ``val.txt``; a path to such a file
    works too). Difficult, truncated and occluded objects are kept unless excluded; objects without a
    viewpoint are always dropped (they cannot be evaluated).
    """

    def __init__(
        self,
        root: str | Path,
        category: Category | str,
        subset: str = "pascal",
        ids: list[str] | str | Path | None = None,
        include_difficult: bool = False,
        include_truncated: bool = True,
        include_occluded: bool = True,
        visible_status: tuple[int, ...] = (1,),
    ):
        self.root = Path(root)
        self.category = get_category(category)
        if self.category.name not in PASCAL3D_ANCHORS:
            raise ValueError(f"PASCAL3D+ has no anchor map for {self.category.name!r}; supported: {sorted(PASCAL3D_ANCHORS)}")
        self.cls = PASCAL3D_CLASS[self.category.name]
        self.annotation_dir = self.root / "Annotations" / f"{self.cls}_{subset}"
        self.image_dir = self.root / "Images" / f"{self.cls}_{subset}"
        if not self.annotation_dir.is_dir():
            raise FileNotFoundError(f"{self.annotation_dir}: PASCAL3D+ annotation folder not found")
        files = sorted(self.annotation_dir.glob("*.mat"))
        if ids is not None:
            if isinstance(ids, (str, Path)):
                ids_path = Path(ids)
                if not ids_path.is_file():
                    raise FileNotFoundError(f"{ids_path}: id list not found")
                ids = [line.split()[0] for line in ids_path.read_text().splitlines() if line.strip()]
            wanted = set(ids)
            files = [f for f in files if f.stem in wanted]
        self.objects: list[Pascal3DObject] = []
        self.dropped: list[str] = []
        for path in files:
            filename, objects = load_pascal3d_record(path)
            for j, obj in enumerate(objects):
                if str(_field(obj, "class", "")) != self.cls:
                    continue
                item = self._object(path, filename, j, obj, visible_status)
                reason = (
                    "no viewpoint" if item.viewpoint is None
                    else "difficult" if item.difficult and not include_difficult
                    else "truncated" if item.truncated and not include_truncated
                    else "occluded" if item.occluded and not include_occluded
                    else None
                )
                if reason:
                    self.dropped.append(f"{path}[{j}]: {reason}")
                else:
                    self.objects.append(item)

    def _object(self, path: Path, filename: str, j: int, obj, visible_status) -> Pascal3DObject:
        n = self.category.num_keypoints
        keypoints, visible = np.full((n, 2), np.nan), np.zeros(n, bool)
        anchors = _field(obj, "anchors")
        for i, entry in enumerate(PASCAL3D_ANCHORS[self.category.name]):
            location = None
            for name in anchor_alternatives(entry) if anchors is not None else ():
                anchor = _field(anchors, name)
                location = _field(anchor, "location") if anchor is not None else None
                if location is not None and np.size(location) == 2:
                    break
            if location is None or np.size(location) != 2:
                continue
            keypoints[i] = np.asarray(location, np.float64).reshape(2) - 0.5
            visible[i] = int(_scalar(anchor, "status", 0)) in visible_status and np.isfinite(keypoints[i]).all()
        bbox = np.asarray(_field(obj, "bbox", [np.nan] * 4), np.float64).reshape(-1)
        if bbox.size != 4:
            raise ValueError(f"{path}: object {j} has a bbox of {bbox.size} numbers, expected 4")
        cad = _scalar(obj, "cad_index", math.nan)
        return Pascal3DObject(
            record=path, image=self.image_dir / filename, object_index=j, category=self.category,
            bbox=bbox - [1, 1, 0, 0], keypoints=keypoints, visible=visible, viewpoint=_viewpoint(obj),
            cad_index=int(cad) if math.isfinite(cad) else None, truncated=bool(_scalar(obj, "truncated", 0)),
            occluded=bool(_scalar(obj, "occluded", 0)), difficult=bool(_scalar(obj, "difficult", 0)),
        )

    def cad_models(self) -> list[RealShape] | None:
        """The category's CAD models from ``CAD/<cls>.mat`` (canonical frame), or None without the file."""
        path = self.root / "CAD" / f"{self.cls}.mat"
        return load_pascal3d_mat(path, self.category) if path.is_file() else None

    def __len__(self) -> int:
        return len(self.objects)

    def __getitem__(self, i: int) -> Pascal3DObject:
        return self.objects[i]


def convert_pascal3d(
    root: str | Path,
    category: Category | str,
    out: str | Path,
    subset: str = "pascal",
    ids: list[str] | str | Path | None = None,
    image_size: int = 256,
    margin: float = 0.1,
    **filters,
) -> Path:
    """Write a world-format folder of PASCAL3D+ objects: square crops around each bounding box,
    anchors as keypoints, viewpoint as azimuth/elevation, and the 3D structure of the object's CAD
    model where ``CAD/<cls>.mat`` is present and the model has every anchor of the skeleton.
    Unreadable images are skipped and listed in ``meta.json``."""
    from ..inference import InputError, load_rgb
    from .export import crop_square, square_box, write_annotated_folder

    data = Pascal3D(root, category, subset, ids, **filters)
    cat = data.category
    cads = data.cad_models()
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows, skipped = [], list(data.dropped)
    for item in data.objects:
        try:
            rgb = load_rgb(item.image)
        except InputError as exc:
            skipped.append(str(exc))
            continue
        box = square_box(item.bbox[:2], item.bbox[2:], margin)
        crop, scale = crop_square(rgb, box, image_size)
        name = f"images/{item.record.stem}_{item.object_index}.png"
        with atomic_path(out / name, suffix=".png") as tmp:
            crop.save(tmp, format="PNG")
        structure = np.full((cat.num_keypoints, 3), np.nan)
        if cads is not None and item.cad_index is not None and 1 <= item.cad_index <= len(cads):
            shape = cads[item.cad_index - 1]
            if shape.present.all():
                structure = shape.keypoints
        az, el = item.viewpoint.canonical_view
        rows.append((name, (item.keypoints - box[:2]) * scale, item.visible, az, el, structure, (item.bbox - [*box[:2], *box[:2]]) * scale))
    if not rows:
        raise ValueError(f"{data.annotation_dir}: no usable {cat.name} object ({len(skipped)} skipped: {skipped[:3]})")
    fields = {
        "path": [r[0] for r in rows],
        "keypoints": np.stack([r[1] for r in rows]),
        "visible": np.stack([r[2] for r in rows]),
        "azimuth": np.array([r[3] for r in rows], np.float32),
        "elevation": np.array([r[4] for r in rows], np.float32),
        "structure": np.stack([r[5] for r in rows]).astype(np.float32),
        "bbox": np.stack([r[6] for r in rows]).astype(np.float32),
    }
    return write_annotated_folder(out, cat, image_size, fields, f"PASCAL3D+ {data.annotation_dir}", skipped)
