"""Writing real annotated images into interp3d's world format (the reference format).

Converters for real datasets (Keypoint-5, PASCAL3D+, a user's own data) crop each object to a square,
resize it and write a world-format folder, so training and evaluation read every source the same way.
Fields a source lacks (3D structure, camera) are NaN; evaluation skips the metrics they would feed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..io_utils import atomic_path, atomic_write_json
from ..params import ParamCodec
from ..shape_model import Category
from .world import ANNOTATION_FIELDS, FORMAT

__all__ = ["square_box", "crop_square", "write_annotated_folder"]


def square_box(lo: Sequence[float], hi: Sequence[float], margin: float) -> tuple[int, int, int, int]:
    """Integer square (x0, y0, x1, y1) around the box ``lo``-``hi`` widened by ``margin`` of its longer side per side."""
    lo, hi = np.asarray(lo, np.float64), np.asarray(hi, np.float64)
    side = max(float((hi - lo).max() * (1 + 2 * margin)), 16.0)
    cx, cy = (lo + hi) / 2
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    s = int(round(side))
    return x0, y0, x0 + s, y0 + s


def crop_square(rgb: np.ndarray, box: tuple[int, int, int, int], image_size: int) -> tuple[Image.Image, float]:
    """The crop (padded with black outside the image) resized to ``image_size``, and its scale factor."""
    crop = Image.fromarray(rgb).crop(box).resize((image_size, image_size), Image.BILINEAR)
    return crop, image_size / (box[2] - box[0])


def write_annotated_folder(
    out: str | Path,
    category: Category,
    image_size: int,
    fields: dict[str, np.ndarray],
    source: str,
    skipped: list[str],
    extra_fields: dict[str, str] | None = None,
) -> Path:
    """Write ``annotations.npz`` and ``meta.json`` (last) of an ``annotated2d`` folder whose images are
    already under ``out/images``. ``fields`` needs ``path``, ``keypoints`` (NaN allowed where missing)
    and ``visible``; other world fields default to NaN / -1 / 0; ``extra_fields`` names and documents
    additional arrays in ``fields``."""
    out = Path(out)
    n, k, kk = len(fields["path"]), category.num_keypoints, category.num_bases
    if n == 0:
        raise ValueError(f"{out}: no usable image to write ({len(skipped)} skipped: {skipped[:3]})")
    nan = lambda *shape: np.full(shape, np.nan, np.float32)  # noqa: E731
    arrays = {
        "occluded_by_other": np.zeros((n, k), bool),
        "structure": nan(n, k, 3), "points_cam": nan(n, k, 3), "alpha": nan(n, kk), "angles": nan(n, 3), "translation": nan(n, 2),
        "focal": nan(n), "azimuth": nan(n), "elevation": nan(n), "bbox": nan(n, 4), "params": nan(n, ParamCodec(category).size),
        "video_index": np.full(n, -1, np.int32), "frame_index": np.zeros(n, np.int32),
    }
    arrays.update(fields)
    arrays["path"] = np.asarray(arrays["path"])
    arrays["keypoints"] = np.nan_to_num(np.asarray(arrays["keypoints"], np.float32), nan=-1.0)
    arrays["visible"] = np.asarray(arrays["visible"], bool) & (arrays["keypoints"] >= 0).all(-1) & (arrays["keypoints"] < image_size).all(-1)
    with atomic_path(out / "annotations.npz", suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)
    atomic_write_json(
        out / "meta.json",
        {
            "format": FORMAT, "kind": "annotated2d", "category": category.name, "count": n, "num_images": n, "image_size": image_size,
            "plane_size": category.plane_size, "keypoint_names": list(category.keypoint_names), "edges": [list(e) for e in category.edges],
            "annotation_fields": {**ANNOTATION_FIELDS, **(extra_fields or {})},
            "source": source, "skipped": skipped, "seed": None, "options": None,
        },
    )
    return out
