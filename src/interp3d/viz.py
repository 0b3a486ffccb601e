"""Figures: skeletons over heatmaps or images, contact sheets. Matplotlib with the Agg backend."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .io_utils import atomic_path  # noqa: E402
from .shape_model import Category  # noqa: E402

__all__ = ["draw_skeleton", "contact_sheet", "save_figure", "recall_plot", "prediction_figure", "synthetic_preview", "world_preview"]

LEFT, RIGHT, MIDDLE = "#1f77b4", "#d62728", "#2ca02c"


def _side_colours(category: Category) -> list[str]:
    colours = [MIDDLE] * category.num_keypoints
    mean = category.mean_shape
    for i in range(category.num_keypoints):
        if mean[i, 0] < -1e-9:
            colours[i] = LEFT
        elif mean[i, 0] > 1e-9:
            colours[i] = RIGHT
    return colours


def draw_skeleton(ax, keypoints: np.ndarray, category: Category, visible: np.ndarray | None = None, linewidth: float = 1.5, markersize: float = 3.0, alpha: float = 1.0) -> None:
    """Draw edges and keypoints (N, 2) in image coordinates (continuous, pixel i spans [i, i+1))."""
    kp = np.asarray(keypoints, dtype=float)
    vis = np.ones(len(kp), bool) if visible is None else np.asarray(visible, bool)
    colours = _side_colours(category)
    for a, b in category.edges:
        style = "-" if (vis[a] and vis[b]) else ":"
        colour = colours[a] if colours[a] == colours[b] else MIDDLE
        ax.plot([kp[a, 0], kp[b, 0]], [kp[a, 1], kp[b, 1]], style, color=colour, lw=linewidth, alpha=alpha)
    for i, (x, y) in enumerate(kp):
        ax.plot(x, y, "o", ms=markersize, color=colours[i], mfc=colours[i] if vis[i] else "none", alpha=alpha)


def save_figure(fig, path: str | Path, dpi: int = 100) -> Path:
    path = Path(path)
    with atomic_path(path, suffix=path.suffix) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path


def contact_sheet(
    images: Sequence[np.ndarray],
    keypoints: Sequence[np.ndarray] | None,
    category: Category,
    path: str | Path,
    titles: Sequence[str] | None = None,
    visible: Sequence[np.ndarray] | None = None,
    columns: int = 6,
    cmap: str | None = None,
) -> Path:
    """A grid of images (H, W[, 3]) with skeletons (in each image's pixel coordinates) drawn on top."""
    n = len(images)
    rows = max(1, (n + columns - 1) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.2 * columns, 2.2 * rows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        img = np.asarray(images[i])
        h, w = img.shape[:2]
        ax.imshow(img, cmap=cmap, extent=(0, w, h, 0), interpolation="nearest")
        if keypoints is not None:
            draw_skeleton(ax, keypoints[i], category, None if visible is None else visible[i], linewidth=1.0, markersize=2.0)
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        if titles is not None:
            ax.set_title(titles[i], fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def recall_plot(errors: dict[str, np.ndarray], tau_max: float, path: str | Path, xlabel: str, title: str = "", degrees: bool = False) -> Path:
    """Recall curves (share of objects with error <= tau) of several error lists on one axis."""
    from .evaluation.metrics import average_recall, recall_curve

    fig, ax = plt.subplots(figsize=(4.2, 3.2))
    for label, errs in errors.items():
        taus, rec = recall_curve(errs, tau_max)
        x = np.degrees(taus) if degrees else taus
        ax.plot(x, rec * 100, label=f"{label} (AR {average_recall(errs, tau_max):.1f})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("recall %")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def draw_crop_box(ax, prediction):
    """The auto-crop's box (``extra["auto_crop_box"]``) as a dashed square, where the answer came
    from a crop; returns the patch or None."""
    box = (getattr(prediction, "extra", None) or {}).get("auto_crop_box")
    if box is None:
        return None
    from matplotlib.patches import Rectangle

    x0, y0, x1, y1 = map(float, box)
    return ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="white", linestyle="--", linewidth=1.2))


def prediction_figure(image: np.ndarray | None, prediction, category: Category, path: str | Path) -> Path:
    """Input image (or, for lifted keypoints, a blank canvas around them) with the 2D keypoints
    (size ~ confidence) and the re-projected skeleton, beside the 3D skeleton seen from a canonical
    viewpoint (30 deg azimuth, 20 deg elevation)."""
    fig = plt.figure(figsize=(8, 4))
    ax = fig.add_subplot(1, 2, 1)
    if image is None:
        pts = np.concatenate([np.asarray(prediction.keypoints_2d, float), np.asarray(prediction.reprojected_2d, float)])
        pts = pts[np.isfinite(pts).all(1)]
        lo, hi = pts.min(0), pts.max(0)
        pad = 0.15 * float((hi - lo).max() or 1.0)
        x0, y0, x1, y1 = lo[0] - pad, lo[1] - pad, hi[0] + pad, hi[1] + pad
        ax.set_facecolor("white")
    else:
        h, w = image.shape[:2]
        x0, y0, x1, y1 = 0, 0, w, h
        ax.imshow(image, extent=(0, w, h, 0))
    draw_skeleton(ax, prediction.reprojected_2d, category, linewidth=2.0, markersize=3.0)
    draw_crop_box(ax, prediction)
    conf = np.clip(np.asarray(prediction.confidence), 0, 1)
    ax.scatter(prediction.keypoints_2d[:, 0], prediction.keypoints_2d[:, 1], s=10 + 60 * conf, facecolors="none", edgecolors="yellow" if image is not None else "black", linewidths=1.0)
    ax.set_xlim(x0, x1)
    ax.set_ylim(y1, y0)
    ax.set_aspect("equal")
    if image is not None:
        ax.axis("off")
    else:
        ax.set_xticks([])
        ax.set_yticks([])
    support = "" if prediction.azimuth_confidence is None else f" (head's support {prediction.azimuth_confidence:.2f})"
    ax.set_title(f"az {prediction.azimuth_deg % 360:.0f} deg{support}, el {prediction.elevation_deg:.0f} deg", fontsize=9)
    ax3 = fig.add_subplot(1, 2, 2, projection="3d")
    pts = np.asarray(prediction.keypoints_3d, dtype=float)
    # matplotlib's z is up: plot (x, z, y) of the object frame (+y up)
    colours = _side_colours(category)
    for a, b in category.edges:
        ax3.plot([pts[a, 0], pts[b, 0]], [pts[a, 2], pts[b, 2]], [pts[a, 1], pts[b, 1]], color=colours[a] if colours[a] == colours[b] else MIDDLE, lw=2)
    ax3.scatter(pts[:, 0], pts[:, 2], pts[:, 1], c=colours, s=12)
    span = (pts.max(axis=0) - pts.min(axis=0)).max() / 2 or 1.0
    mid = (pts.max(axis=0) + pts.min(axis=0)) / 2
    ax3.set_xlim(mid[0] - span, mid[0] + span)
    ax3.set_ylim(mid[2] - span, mid[2] + span)
    ax3.set_zlim(mid[1] - span, mid[1] + span)
    ax3.view_init(elev=20, azim=-60)
    ax3.set_xlabel("x")
    ax3.set_ylabel("z (front)")
    ax3.set_zlabel("y (up)")
    ax3.set_title("3D skeleton (object frame)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def synthetic_preview(ds, path: str | Path, count: int = 12) -> Path:
    """Contact sheet of a :class:`~interp3d.data.synthetic.SyntheticSkeletonDataset`: heatmaps with skeletons."""
    batch = ds.__getitems__(list(range(min(count, len(ds)))))
    maps = batch["heatmaps"].amax(dim=1).numpy()
    az, el = ds.codec.decode(batch["params"]).view()
    titles = [f"az {a:.0f} el {e:.0f}" for a, e in zip(az.rad2deg().tolist(), el.rad2deg().tolist())]
    return contact_sheet(maps, batch["keypoints"].numpy(), ds.category, path, titles=titles, cmap="magma")


def world_preview(ds, path: str | Path, count: int = 12) -> Path:
    """Contact sheet of a :class:`~interp3d.data.world.WorldDataset`: images with keypoints (dotted: hidden)."""
    step = max(1, len(ds) // count)
    idx = list(range(0, len(ds), step))[:count]
    a = ds.annotations
    titles = [f"az {np.degrees(a['azimuth'][i]):.0f} el {np.degrees(a['elevation'][i]):.0f}" for i in idx]
    return contact_sheet([ds.load_image(i) for i in idx], [a["keypoints"][i] for i in idx], ds.category, path, titles=titles, visible=[a["visible"][i] for i in idx])
