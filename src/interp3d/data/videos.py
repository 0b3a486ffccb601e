"""Real object videos (ObjectScan-style: one folder of RGB frames per sequence, a category per
sequence) imported into the world ``video`` format that the semi-supervised stage reads.

The paper subsamples 30 Hz scans to 5 Hz and keeps J = 36 consecutive frames per training
sequence; :func:`import_video_folders` does the same (``step = fps_in // fps_out``), pads each frame
to a centred square and resizes it. Only frames and the category label are written: videos carry
no ground truth.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ..shape_model import Category, get_category

__all__ = ["import_video_folders"]

FRAME_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


def _read_categories(root: Path) -> dict[str, str]:
    listing = root / "categories.txt"
    if not listing.is_file():
        return {}
    out = {}
    for number, line in enumerate(listing.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ValueError(f"{listing}:{number}: expected 'sequence category', got {line!r}")
        out[parts[0]] = parts[1]
    return out


def import_video_folders(root: str | Path, category: Category | str, out: str | Path, length: int = 36, fps_in: int = 30, fps_out: int = 5, image_size: int = 256) -> Path:
    """Write the sequences of ``category`` under ``root`` (``root/<sequence>/<frames>``, optional
    ``root/categories.txt`` with lines ``sequence category``) as a world-format video folder.

    Sequences with fewer than ``length`` frames after subsampling, or with unreadable frames, are
    skipped and listed in ``meta.json``; no usable sequence is an error.
    """
    from ..inference import InputError, load_rgb
    from ..io_utils import atomic_path, atomic_write_json
    from .world import FORMAT

    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: video folder not found")
    cat = get_category(category)
    labels = _read_categories(root)
    step = max(1, fps_in // fps_out)
    videos, skipped = [], []
    for seq in sorted(p for p in root.iterdir() if p.is_dir()):
        label = labels.get(seq.name) if labels else cat.name  # without a list, every sequence is `category`
        if label is None:
            skipped.append(f"{seq}: not listed in categories.txt")
            continue
        try:
            if get_category(label).name != cat.name:
                continue
        except KeyError:  # a category interp3d has no skeleton for
            continue
        frames = sorted(p for p in seq.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)[::step]
        if len(frames) < length:
            skipped.append(f"{seq}: {len(frames)} frames after subsampling, {length} needed")
            continue
        names = []
        try:
            for j, frame in enumerate(frames[:length]):
                rgb = load_rgb(frame)
                h, w = rgb.shape[:2]
                side = max(h, w)
                canvas = np.zeros((side, side, 3), np.uint8)
                canvas[(side - h) // 2 : (side - h) // 2 + h, (side - w) // 2 : (side - w) // 2 + w] = rgb
                name = f"frames/{len(videos):04d}/{j:03d}.png"
                with atomic_path(out / name, suffix=".png") as tmp:
                    Image.fromarray(canvas).resize((image_size, image_size), Image.BILINEAR).save(tmp, format="PNG")
                names.append(name)
        except InputError as exc:
            skipped.append(str(exc))
            continue
        videos.append({"id": len(videos), "category": cat.name, "frames": names, "source": str(seq)})
    if not videos:
        raise ValueError(f"{root}: no {cat.name} sequence with {length} frames at {fps_out} Hz; skipped: {skipped[:3]}")
    atomic_write_json(out / "videos.json", videos)
    atomic_write_json(
        out / "meta.json",
        {
            "format": FORMAT, "kind": "video", "category": cat.name, "count": len(videos), "num_images": len(videos) * length,
            "image_size": image_size, "plane_size": cat.plane_size, "keypoint_names": list(cat.keypoint_names),
            "edges": [list(e) for e in cat.edges], "source": str(root), "subsampling_step": step, "skipped": skipped,
            "ground_truth": None, "seed": None, "options": None,
        },
    )
    return out
