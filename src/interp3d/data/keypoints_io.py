"""Files of 2D keypoints to lift (``interp3d lift``): JSON, CSV or ``.npz``.

Coordinates are image pixels (x right, y down) in the category's dataset order
(``interp3d categories`` lists the names). A missing keypoint is ``null`` (JSON), an empty cell
(CSV) or NaN (``.npz``).

* **JSON**: ``{"category": "chair", "objects": [{"id": "img1", "keypoints": [[x, y], null, ...],
  "visible": [true, ...], "confidence": [0.9, ...]}, ...]}`` (``visible``, ``confidence``, ``id``
  and the top-level ``category`` are optional); a bare list of objects works too.
* **CSV**: a header ``id,<name>_x,<name>_y,...`` with one row an object; optional
  ``<name>_conf`` / ``<name>_visible`` columns.
* **NPZ**: ``keypoints (B, N, 2)``, optional ``visible (B, N)``, ``confidence (B, N)``, ``ids (B,)``.

A malformed object (wrong number of keypoints, text where a number belongs) is reported with its row
and left out; an unreadable file raises :class:`KeypointFileError` naming the file.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..shape_model import Category

__all__ = ["KeypointFileError", "KeypointRecords", "read_keypoints_file", "SUFFIXES"]

SUFFIXES = (".json", ".csv", ".npz")


class KeypointFileError(ValueError):
    """A keypoint file that cannot be read at all."""


@dataclass
class KeypointRecords:
    ids: list[str]
    keypoints: np.ndarray  # (B, N, 2), NaN where missing
    visible: np.ndarray  # (B, N) bool
    confidence: np.ndarray  # (B, N)
    category: str | None = None  # as the file names it, if it does
    problems: list[tuple[str, str]] = field(default_factory=list)  # (id, message) of objects left out


def read_keypoints_file(path: str | Path, category: Category) -> KeypointRecords:
    path = Path(path)
    if not path.is_file():
        raise KeypointFileError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise KeypointFileError(f"{path}: unsupported keypoint file type {path.suffix!r}; use {', '.join(SUFFIXES)}")
    try:
        reader = {".json": _read_json, ".csv": _read_csv, ".npz": _read_npz}[suffix]
        return reader(path, category)
    except KeypointFileError:
        raise
    except (OSError, ValueError, KeyError, TypeError, json.JSONDecodeError, csv.Error, UnicodeDecodeError) as exc:
        raise KeypointFileError(f"{path}: not a readable {suffix[1:].upper()} keypoint file ({exc})") from exc


def _records(ids, rows, category: Category, file_category=None, problems=None) -> KeypointRecords:
    n = category.num_keypoints
    keep = [r for r in rows if r is not None]
    kp = np.stack([r[0] for r in keep]) if keep else np.zeros((0, n, 2))
    vis = np.stack([r[1] for r in keep]) if keep else np.zeros((0, n), bool)
    conf = np.stack([r[2] for r in keep]) if keep else np.zeros((0, n))
    return KeypointRecords([i for i, r in zip(ids, rows) if r is not None], kp, vis, conf, file_category, problems or [])


def _read_json(path: Path, category: Category) -> KeypointRecords:
    doc = json.loads(path.read_text())
    file_category = None
    if isinstance(doc, dict):
        file_category = doc.get("category")
        if "objects" not in doc:
            raise KeypointFileError(f"{path}: a JSON object needs an 'objects' list")
        doc = doc["objects"]
    if not isinstance(doc, list):
        raise KeypointFileError(f"{path}: expected a list of objects, got {type(doc).__name__}")
    n = category.num_keypoints
    ids, rows, problems = [], [], []
    for i, obj in enumerate(doc):
        oid = str(obj.get("id", i)) if isinstance(obj, dict) else str(i)
        ids.append(oid)
        try:
            if not isinstance(obj, dict) or "keypoints" not in obj:
                raise ValueError("an object needs a 'keypoints' list")
            pts = obj["keypoints"]
            if not isinstance(pts, list) or len(pts) != n:
                raise ValueError(f"{category.name} has {n} keypoints, this object lists {len(pts) if isinstance(pts, list) else type(pts).__name__}")
            xy = np.array([[np.nan, np.nan] if p is None else [float(p[0]), float(p[1])] for p in pts], dtype=np.float64)
            vis = np.asarray(obj.get("visible", [True] * n), dtype=bool)
            conf = np.asarray([1.0 if c is None else float(c) for c in obj.get("confidence", [1.0] * n)], dtype=np.float64)
            if vis.shape != (n,) or conf.shape != (n,):
                raise ValueError(f"'visible' and 'confidence' need {n} entries")
            rows.append((xy, vis, conf))
        except (ValueError, TypeError, IndexError) as exc:
            rows.append(None)
            problems.append((oid, str(exc)))
    return _records(ids, rows, category, file_category, problems)


def _read_csv(path: Path, category: Category) -> KeypointRecords:
    with open(path, newline="") as fh:
        table = list(csv.DictReader(fh))
    names = category.keypoint_names
    if not table:
        raise KeypointFileError(f"{path}: no rows")
    header = set(table[0])
    missing = [f"{k}_{c}" for k in names for c in ("x", "y") if f"{k}_{c}" not in header]
    if missing:
        raise KeypointFileError(f"{path}: missing columns {missing[:4]}{' ...' if len(missing) > 4 else ''} ({category.name} keypoints: {', '.join(names)})")
    ids, rows, problems = [], [], []

    def number(text, default=np.nan):
        text = (text or "").strip()
        return default if text == "" else float(text)

    for i, row in enumerate(table):
        oid = (row.get("id") or str(i)).strip()
        ids.append(oid)
        try:
            xy = np.array([[number(row[f"{k}_x"]), number(row[f"{k}_y"])] for k in names])
            vis = np.array([number(row.get(f"{k}_visible"), 1.0) != 0 for k in names])
            conf = np.array([number(row.get(f"{k}_conf"), 1.0) for k in names])
            rows.append((xy, vis, conf))
        except ValueError as exc:
            rows.append(None)
            problems.append((oid, f"row {i + 2}: {exc}"))
    return _records(ids, rows, category, None, problems)


def _read_npz(path: Path, category: Category) -> KeypointRecords:
    with np.load(path, allow_pickle=False) as data:
        if "keypoints" not in data.files:
            raise KeypointFileError(f"{path}: no 'keypoints' array (has {data.files})")
        kp = np.asarray(data["keypoints"], dtype=np.float64)
        n = category.num_keypoints
        if kp.ndim != 3 or kp.shape[1:] != (n, 2):
            raise KeypointFileError(f"{path}: keypoints must have shape (B, {n}, 2) for {category.name}, got {kp.shape}")
        b = kp.shape[0]
        vis = np.asarray(data["visible"], dtype=bool) if "visible" in data.files else np.ones((b, n), bool)
        conf = np.asarray(data["confidence"], dtype=np.float64) if "confidence" in data.files else np.ones((b, n))
        ids = [str(v) for v in data["ids"]] if "ids" in data.files else [str(i) for i in range(b)]
    if vis.shape != (b, n) or conf.shape != (b, n) or len(ids) != b:
        raise KeypointFileError(f"{path}: visible/confidence must have shape ({b}, {n}) and ids {b} entries")
    return KeypointRecords(ids, kp, vis, conf)
