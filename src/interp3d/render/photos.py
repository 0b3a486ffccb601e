"""Photographic material for the rendered world: backgrounds (random crops of real photographs) and
texture tiles for furniture surfaces.

A :class:`PhotoLibrary` is a folder of JPEG/PNG/WebP images (``scripts/fetch_photo_material.sh``
fills one from Debian's wallpaper packages and ``sweethome3d-furniture`` textures, recording their
licences). Files are assigned to a ``train`` or ``test`` split by a hash of their name, so a
``test3d`` world can use backgrounds that no training image has shown. Everything drawn depends
only on the folder's file names and contents and the caller's generator: renders stay
deterministic and resumable.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = ["PhotoLibrary", "PhotoLibraryError", "photo_library", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
SPLITS = ("train", "test", "all")
TEST_SHARE = 5  # one file in 5 (by name hash) is held out for the test split
MAX_SIDE = 768  # files are decoded once (per process) and kept at most this large


class PhotoLibraryError(ValueError):
    """A photo folder is missing, empty or holds unreadable files."""


def _split_of(name: str) -> str:
    return "test" if int(hashlib.sha1(name.encode()).hexdigest(), 16) % TEST_SHARE == 0 else "train"


class PhotoLibrary:
    """The images of ``folder`` (recursively) in one split, sorted by relative path."""

    def __init__(self, folder: str | Path, split: str = "train"):
        folder = Path(folder)
        if split not in SPLITS:
            raise PhotoLibraryError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        if not folder.is_dir():
            raise PhotoLibraryError(f"{folder}: photo folder not found (scripts/fetch_photo_material.sh makes one)")
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        rel = [str(p.relative_to(folder)) for p in files]
        chosen = [p for p, r in zip(files, rel) if split == "all" or _split_of(r) == split]
        if not chosen:
            raise PhotoLibraryError(f"{folder}: no {'' if split == 'all' else split + ' '}images ({', '.join(IMAGE_SUFFIXES)}) found")
        self.folder, self.split, self.files = folder, split, chosen

    def __len__(self) -> int:
        return len(self.files)

    def image(self, index: int) -> np.ndarray:
        """File ``index`` as ``(H, W, 3)`` uint8, at most :data:`MAX_SIDE` px on its long side."""
        return _decoded(str(self.files[index % len(self.files)]))

    def crop(self, size: int, rng: np.random.Generator, min_fraction: float = 0.25) -> np.ndarray:
        """A random square crop (side ``min_fraction``..1 of the short side, maybe mirrored), resized to ``size``."""
        img = self.image(int(rng.integers(len(self.files))))
        h, w = img.shape[:2]
        side = max(8, int(min(h, w) * rng.uniform(min_fraction, 1.0)))
        y, x = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
        patch = img[y : y + side, x : x + side]
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        return np.asarray(Image.fromarray(np.ascontiguousarray(patch)).resize((size, size), Image.BILINEAR, reducing_gap=2.0))


@lru_cache(maxsize=1024)  # the libraries here hold ~600 files, ~300 MB decoded
def _decoded(path: str) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im.draft("RGB", (MAX_SIDE, MAX_SIDE))  # JPEG: decode at a reduced scale directly
            im = im.convert("RGB")
            im.thumbnail((MAX_SIDE, MAX_SIDE), Image.BILINEAR)
            return np.asarray(im)
    except (OSError, UnidentifiedImageError) as exc:
        raise PhotoLibraryError(f"{path}: unreadable image ({exc})") from exc


@lru_cache(maxsize=16)
def photo_library(folder: str, split: str = "train") -> PhotoLibrary:
    """A cached :class:`PhotoLibrary` (one per process, folder and split)."""
    return PhotoLibrary(folder, split)
