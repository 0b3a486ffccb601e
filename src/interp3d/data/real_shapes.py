"""Real 3D shapes with keypoints: PASCAL3D+ CAD models and KeypointNet annotations.

Everything is returned in interp3d's canonical object frame (+y up, front +z; x = -1 is the left
side seen from the front) and in the category's dataset keypoint order. Frame conversions:

* PASCAL3D+ CAD: z up, front faces -y  ->  (x, y, z)_canonical = (x, z, -y).
* KeypointNet / ShapeNet: y up, front faces -z  ->  (x, y, z)_canonical = (-x, y, -z).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..shape_model import Category, get_category

__all__ = [
    "RealShape",
    "CANONICAL_FROM_PASCAL3D",
    "CANONICAL_FROM_SHAPENET",
    "PASCAL3D_ANCHORS",
    "PASCAL3D_CLASS",
    "PASCAL3D_SKIPPED",
    "anchor_alternatives",
    "first_anchor",
    "KEYPOINTNET_CHAIR_IDS",
    "load_pascal3d_json",
    "load_pascal3d_folder",
    "load_pascal3d_mat",
    "load_keypointnet",
    "decode_threejs_faces",
]

CANONICAL_FROM_PASCAL3D = np.array([[1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]])
CANONICAL_FROM_SHAPENET = np.diag([-1.0, 1.0, -1.0])

# PASCAL3D+ anchor names in dataset keypoint order; None where PASCAL3D+ has no such anchor, a
# tuple where models differ (the first anchor a model has is taken: anchor_alternatives).
# "lower" anchors are at the front (-y in the CAD frame), "upper" ones at the back.
PASCAL3D_ANCHORS: dict[str, list[str | tuple[str, ...] | None]] = {
    "chair": [
        "leg_lower_left", "leg_lower_right", "leg_upper_right", "leg_upper_left",
        "seat_lower_left", "seat_lower_right", "seat_upper_right", "seat_upper_left",
        "back_upper_left", "back_upper_right",
    ],
    "sofa": [
        "left_bottom_back", "front_bottom_left", "seat_top_left", "seat_bottom_left", None, None, "top_left_corner",
        "right_bottom_back", "front_bottom_right", "seat_top_right", "seat_bottom_right", None, None, "top_right_corner",
    ],
    # Z-order top corners (back-left, back-right, front-left, front-right), then the feet below them.
    "table": [
        "top_upper_left", "top_upper_right", "top_lower_left", "top_lower_right",
        "leg_upper_left", "leg_upper_right", "leg_lower_left", "leg_lower_right",
    ],
    # ObjectNet3D beds (PASCAL3D+'s CAD layout): corners numbered foot-left, foot-right, head-right,
    # head-left; frame_front/frame_back are the foot- and headboard panels (1, 2 their bottom
    # corners, 3, 4 their top). Not every bed has posts or a headboard: alternatives in turn.
    "bed": [
        ("bedpost_bottom4", "frame_back1"), ("bedpost_bottom1", "frame_front1"), "mattress4", "mattress1", ("frame_back4", "bedpost_top4"),
        ("bedpost_bottom3", "frame_back2"), ("bedpost_bottom2", "frame_front2"), "mattress3", "mattress2", ("frame_back3", "bedpost_top3"),
    ],
}
PASCAL3D_CLASS = {"chair": "chair", "sofa": "sofa", "table": "diningtable", "bed": "bed"}
# CAD models of objects the category's skeleton does not describe: left out of worlds and priors.
PASCAL3D_SKIPPED = {"bed03": "a bunk bed", "bed06": "a bunk bed"}


def anchor_alternatives(entry: str | tuple[str, ...] | None) -> tuple[str, ...]:
    """The anchor names that may stand for one keypoint, in order of preference."""
    return () if entry is None else (entry,) if isinstance(entry, str) else tuple(entry)


def first_anchor(entry: str | tuple[str, ...] | None, has) -> str | None:
    """The first of ``entry``'s anchors for which ``has(name)`` holds, or None."""
    return next((name for name in anchor_alternatives(entry) if has(name)), None)


# KeypointNet chair semantic ids in chair dataset order (verified on the 920 complete chairs:
# ids 17-20 are the leg ends, 4/5 the seat front, 2/3 the seat back, 0/1 the backrest top).
KEYPOINTNET_CHAIR_IDS = [17, 20, 19, 18, 4, 5, 3, 2, 0, 1]


@dataclass
class RealShape:
    """One real object: keypoints (N, 3) with a presence mask, optionally its mesh, canonical frame."""

    name: str
    category: Category
    keypoints: np.ndarray
    present: np.ndarray
    vertices: np.ndarray | None = None
    faces: np.ndarray | None = None
    source: str = ""


def decode_threejs_faces(flat: list[int], num_vertices: int, where: str = "") -> np.ndarray:
    """Triangles (F, 3) from a three.js JSON face list.

    Two layouts occur: count-prefixed triangles ``[3, i, j, k, 3, ...]`` (the PASCAL3D+ export) and
    the three.js format-3 bitmask layout (bit 0 quad, bit 1 material, bits 2-7 uv/normal/colour).
    """
    arr = np.asarray(flat, dtype=np.int64)
    if arr.size % 4 == 0 and arr.size and np.all(arr[0::4] == 3):
        tris = arr.reshape(-1, 4)[:, 1:]
    else:
        tris_list, i = [], 0
        while i < arr.size:
            kind = int(arr[i])
            i += 1
            nv = 4 if kind & 1 else 3
            verts = arr[i : i + nv]
            i += nv
            i += 1 if kind & 2 else 0  # material
            i += 1 if kind & 4 else 0  # face uv
            i += nv if kind & 8 else 0  # face vertex uvs
            i += 1 if kind & 16 else 0  # face normal
            i += nv if kind & 32 else 0  # vertex normals
            i += 1 if kind & 64 else 0  # face colour
            i += nv if kind & 128 else 0  # vertex colours
            if len(verts) < nv:
                raise ValueError(f"{where}: truncated face list")
            tris_list.append(verts[:3])
            if nv == 4:
                tris_list.append(verts[[0, 2, 3]])
        tris = np.asarray(tris_list, dtype=np.int64).reshape(-1, 3)
    if tris.size and (tris.min() < 0 or tris.max() >= num_vertices):
        raise ValueError(f"{where}: face indices outside 0..{num_vertices - 1}")
    return tris


def _to_canonical(points: np.ndarray, frame: np.ndarray) -> np.ndarray:
    return points @ frame.T


def load_pascal3d_json(path: str | Path, category: Category | str | None = None) -> RealShape:
    """A PASCAL3D+ CAD model from its three.js-style JSON (``vertices``, ``faces``, ``keypoints``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: PASCAL3D+ CAD JSON not found")
    try:
        doc = json.loads(path.read_text())
        vertices = np.asarray(doc["vertices"], dtype=np.float64).reshape(-1, 3)
        faces = decode_threejs_faces(doc["faces"], len(vertices), str(path))
        anchors = {name: (v["x"], v["y"], v["z"]) for name, v in doc["keypoints"].items()}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: not a PASCAL3D+ CAD JSON ({exc})") from exc
    if category is None:
        stem = path.stem.rstrip("0123456789")
        category = {"diningtable": "table"}.get(stem, stem)
    category = get_category(category)
    return _from_anchors(path.stem, category, anchors, vertices, faces, str(path))


def load_pascal3d_folder(folder: str | Path, category: Category | str) -> list[RealShape]:
    """The category's CAD models in ``folder`` (``<class>NN.json``), less :data:`PASCAL3D_SKIPPED`
    and models annotated with another anchor set (e.g. round tables); [] for a category without
    PASCAL3D+ anchors."""
    category = get_category(category)
    prefix = PASCAL3D_CLASS.get(category.name)
    shapes = []
    for path in sorted(Path(folder).glob(f"{prefix}[0-9]*.json")) if prefix else []:
        if path.stem in PASCAL3D_SKIPPED:
            continue
        try:
            shapes.append(load_pascal3d_json(path, category))
        except ValueError as exc:
            if "none of the" not in str(exc):
                raise
    return shapes


def _from_anchors(name, category, anchors, vertices, faces, source) -> RealShape:
    if category.name not in PASCAL3D_ANCHORS:
        raise ValueError(f"{source}: no PASCAL3D+ anchor map for category {category.name!r}; have {sorted(PASCAL3D_ANCHORS)}")
    names = PASCAL3D_ANCHORS[category.name]
    kp = np.full((category.num_keypoints, 3), np.nan)
    for i, entry in enumerate(names):
        anchor = first_anchor(entry, lambda name: name in anchors and np.size(anchors[name]) == 3)
        if anchor is not None:
            kp[i] = np.asarray(anchors[anchor], dtype=np.float64).reshape(3)
    present = np.isfinite(kp).all(axis=1)
    if not present.any():
        raise ValueError(
            f"{source}: none of the {category.name} anchors {[a for e in names for a in anchor_alternatives(e)]} is present (file has {sorted(anchors)})"
        )
    return RealShape(
        name=name,
        category=category,
        keypoints=_to_canonical(kp, CANONICAL_FROM_PASCAL3D),
        present=present,
        vertices=None if vertices is None else _to_canonical(vertices, CANONICAL_FROM_PASCAL3D),
        faces=faces,
        source=source,
    )


def load_pascal3d_mat(path: str | Path, category: Category | str = "chair") -> list[RealShape]:
    """PASCAL3D+ ``CAD/<class>.mat`` (struct array with vertices, faces (1-based), one field per anchor)."""
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: PASCAL3D+ CAD .mat not found")
    category = get_category(category)
    key = PASCAL3D_CLASS.get(category.name, category.name)
    try:
        mat = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    except Exception as exc:
        raise ValueError(f"{path}: unreadable .mat file ({exc})") from exc
    if key not in mat:
        raise ValueError(f"{path}: no struct {key!r} (has {[k for k in mat if not k.startswith('__')]})")
    shapes = []
    for i, obj in enumerate(np.atleast_1d(mat[key])):
        anchors = {}
        for anchor in (a for entry in PASCAL3D_ANCHORS[category.name] for a in anchor_alternatives(entry)):
            if hasattr(obj, anchor):
                value = np.asarray(getattr(obj, anchor), dtype=np.float64)
                if value.size == 3:
                    anchors[anchor] = value
        vertices = np.asarray(obj.vertices, dtype=np.float64).reshape(-1, 3)
        faces = np.asarray(obj.faces, dtype=np.int64).reshape(-1, 3) - 1
        shapes.append(_from_anchors(f"{key}{i + 1:02d}", category, anchors, vertices, faces, f"{path}[{i}]"))
    return shapes


def load_keypointnet(annotation_file: str | Path, complete_only: bool = True) -> list[RealShape]:
    """KeypointNet chair annotations (``annotations/chair.json``) as 10-keypoint chairs.

    ``complete_only`` keeps the chairs that have all ten skeleton keypoints (920 of 999).
    """
    path = Path(annotation_file)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: KeypointNet annotation file not found")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    category = get_category("chair")
    shapes = []
    for entry in doc:
        by_id = {kp["semantic_id"]: kp["xyz"] for kp in entry.get("keypoints", [])}
        kp = np.array([by_id.get(i, (np.nan,) * 3) for i in KEYPOINTNET_CHAIR_IDS], dtype=np.float64)
        present = np.isfinite(kp).all(axis=1)
        if complete_only and not present.all():
            continue
        shapes.append(
            RealShape(entry.get("model_id", "?"), category, _to_canonical(kp, CANONICAL_FROM_SHAPENET), present, source=str(path))
        )
    return shapes
