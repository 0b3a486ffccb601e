"""Keypoint-5 (3D-INN's 2D-annotated real images) and its conversion to interp3d's world format.

Layout (reference_facts §7): ``<root>/<cat>/images/%08d.jpg`` (1-based), ``<root>/<cat>/coords.mat``
with ``coords`` of shape (2, >=K, annotators, images) in original-image pixels, 0 or NaN where an
annotator left a keypoint out; optional ``train.txt`` / ``val.txt`` whose lines end in the image's
file name. The label is the per-coordinate upper median over the annotators who marked the keypoint
(``sorted[count // 2]``, as the released code); the annotators' spread sigma_k gives PCP/AE.

:func:`convert_keypoint5` writes a world-format ``annotated2d`` folder (square crops around the
keypoints, 3D fields NaN), so the training stages read real images the same way as rendered ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..io_utils import atomic_path
from ..shape_model import Category, get_category

__all__ = ["Keypoint5", "Keypoint5Item", "convert_keypoint5", "annotator_median"]

CATEGORY_FOLDERS = {"bed": "bed", "chair": "chair", "sofa": "sofa", "swivelchair": "swivelchair", "table": "table"}


def annotator_median(coords: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From ``(2, K, A)`` annotations: (label (K, 2), present (K,), spread sigma (K,)).

    A keypoint's annotation counts when both coordinates are finite and not both 0.
    """
    xy = np.moveaxis(np.asarray(coords, dtype=np.float64), 0, -1)  # (K, A, 2)
    valid = np.isfinite(xy).all(-1) & ~(xy == 0).all(-1)
    k = xy.shape[0]
    label = np.full((k, 2), np.nan)
    sigma = np.full(k, np.nan)
    for i in range(k):
        pts = xy[i][valid[i]]
        if len(pts) == 0:
            continue
        label[i] = np.sort(pts, axis=0)[len(pts) // 2]
        sigma[i] = np.sqrt(((pts - pts.mean(axis=0)) ** 2).sum(-1).mean())
    return label, np.isfinite(label).all(-1), sigma


@dataclass
class Keypoint5Item:
    index: int  # 1-based image number
    path: Path
    keypoints: np.ndarray  # (K, 2) original-image px; NaN where nobody annotated
    present: np.ndarray  # (K,)
    sigma: np.ndarray  # (K,) annotator spread, px


class Keypoint5:
    """One category of Keypoint-5. ``split`` is ``train``, ``val`` or ``all``; without split files the
    images are split by number (``n % 10`` in {1, 2, 3, 4} -> val, as a common third-party split)."""

    def __init__(self, root: str | Path, category: Category | str, split: str = "all"):
        self.category = get_category(category)
        self.folder = Path(root) / CATEGORY_FOLDERS.get(self.category.name, self.category.name)
        coords_path = self.folder / "coords.mat"
        if not coords_path.is_file():
            raise FileNotFoundError(f"{coords_path}: Keypoint-5 annotation file not found")
        import scipy.io

        try:
            coords = scipy.io.loadmat(coords_path)["coords"]
        except KeyError:
            raise ValueError(f"{coords_path}: no 'coords' array") from None
        except Exception as exc:
            raise ValueError(f"{coords_path}: unreadable .mat file ({exc})") from exc
        k = self.category.num_keypoints
        if coords.ndim != 4 or coords.shape[0] != 2 or coords.shape[1] < k:
            raise ValueError(f"{coords_path}: 'coords' has shape {coords.shape}, expected (2, >={k}, annotators, images)")
        self.coords = coords[:, :k]
        n = coords.shape[3]
        numbers = list(range(1, n + 1))
        if split != "all":
            split_file = self.folder / f"{split}.txt"
            if split_file.is_file():
                numbers = [int(m.group(1)) for line in split_file.read_text().splitlines() if (m := re.search(r"(\d+)\.jpg\s*$", line.strip()))]
            elif split in ("train", "val"):
                numbers = [i for i in numbers if ((i % 10) in (1, 2, 3, 4)) == (split == "val")]
            else:
                raise ValueError(f"unknown split {split!r}; use train, val or all")
        bad = [i for i in numbers if not 1 <= i <= n]
        if bad:
            raise ValueError(f"{self.folder}: split lists images {bad[:5]} outside 1..{n}")
        self.numbers = numbers

    def __len__(self) -> int:
        return len(self.numbers)

    def __getitem__(self, i: int) -> Keypoint5Item:
        number = self.numbers[i]
        label, present, sigma = annotator_median(self.coords[..., number - 1])
        return Keypoint5Item(number, self.folder / "images" / f"{number:08d}.jpg", label, present, sigma)


def convert_keypoint5(root: str | Path, category: Category | str, out: str | Path, split: str = "all", image_size: int = 256, margin: float = 0.15) -> Path:
    """Write a world-format ``annotated2d`` folder from Keypoint-5: each image cropped to a square
    around its keypoints (plus ``margin``), resized to ``image_size``. Unreadable images are skipped
    and listed in ``meta.json``."""
    from ..inference import InputError, load_rgb
    from .export import crop_square, square_box, write_annotated_folder

    data = Keypoint5(root, category, split)
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows, skipped = [], []
    for i in range(len(data)):
        item = data[i]
        if item.present.sum() < 2:
            skipped.append(f"{item.path}: fewer than 2 annotated keypoints")
            continue
        try:
            rgb = load_rgb(item.path)
        except InputError as exc:
            skipped.append(str(exc))
            continue
        pts = item.keypoints[item.present]
        box = square_box(pts.min(axis=0), pts.max(axis=0), margin)
        crop, scale = crop_square(rgb, box, image_size)
        name = f"images/{item.index:08d}.png"
        with atomic_path(out / name, suffix=".png") as tmp:
            crop.save(tmp, format="PNG")
        rows.append((name, (item.keypoints - box[:2]) * scale, item.present, item.sigma * scale))
    if not rows:
        raise ValueError(f"{data.folder}: no usable image in split {split!r} ({len(skipped)} skipped: {skipped[:3]})")
    fields = {
        "path": [r[0] for r in rows],
        "keypoints": np.stack([r[1] for r in rows]),
        "visible": np.stack([r[2] for r in rows]),
        "annotator_sigma": np.stack([r[3] for r in rows]).astype(np.float32),
    }
    return write_annotated_folder(
        out, data.category, image_size, fields, f"Keypoint-5 {data.folder} split {split}", skipped,
        {"annotator_sigma": "(n, N) annotator spread, image px (Keypoint-5)"},
    )
