"""Predicted viewpoints on real photographs against labels by eye (benchmarks/real_photos/labels.json).

    .venv/bin/python benchmarks/real_photos.py [--photos ../shared/data/photos] [--models chair chair-cpu-small ...]

For every labelled photo, the shipped model of its category (or each ``--models`` entry of that
category) predicts with its default refinement; reported per category and model: the share of
azimuths within 45 deg of the label (tables modulo 180 deg), the median error, and the same for a
constant "front" guess. Writes ``benchmarks/results/real_photos.{json,md}`` and a figure of the
predictions (``real_photos.png``). With 24 photos and one annotator, this is a sanity check, not a
benchmark: the photos' labels are subjective to 15-30 deg.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def azimuth_error_deg(pred, label, category: str) -> np.ndarray:
    """Wrapped azimuth error in degrees, modulo the category's period (a table's: half a turn)."""
    from interp3d.evaluation.metrics import angle_error
    from interp3d.shape_model import get_category

    return angle_error(pred, label, math.degrees(get_category(category).azimuth_period))


def main() -> None:
    from interp3d.inference import Predictor, load_rgb
    from interp3d.models.serialization import pretrained_models, read_model_info
    from interp3d.shape_model import get_category
    from interp3d.viz import draw_skeleton, save_figure

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, default=HERE.parents[1] / "shared" / "data" / "photos")
    parser.add_argument("--labels", type=Path, default=HERE / "real_photos" / "labels.json")
    parser.add_argument("--models", nargs="*", help="shipped model names or files (default: each category's shipped model)")
    parser.add_argument("--flip-test", choices=("default", "on", "off"), default="default", help="the Predictor's flip test (default: each model's recommendation)")
    parser.add_argument("--auto-crop", choices=("default", "on", "off"), default="default", help="the Predictor's auto-crop (default: each model's recommendation)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    labels = json.loads(args.labels.read_text())["photos"]
    shipped = pretrained_models()
    names = args.models or sorted({c for c in (p["category"] for p in labels) if c in shipped})
    by_category: dict[str, list[str]] = {}
    for name in names:
        by_category.setdefault(read_model_info(name)["category"], []).append(name)

    rows, figure_items = [], []
    for name_list in by_category.values():
        for name in name_list:
            switch = {"default": None, "on": True, "off": False}
            predictor = Predictor.load(name, flip_test=switch[args.flip_test], auto_crop=switch[args.auto_crop])
            category = predictor.model.category.name
            for item in (p for p in labels if p["category"] == category):
                image = load_rgb(args.photos / item["path"])
                (pred,) = predictor.predict(image)
                err = float(azimuth_error_deg(pred.azimuth_deg, item["azimuth_deg"], category))
                row = {"model": name, "category": category, "path": item["path"], "confidence": item["confidence"], "label_deg": item["azimuth_deg"], "pred_deg": round(pred.azimuth_deg % 360, 1), "error_deg": round(err, 1)}
                if "view_head_azimuth_deg" in pred.extra:  # the 2D module's viewpoint head alone, before the 3D fit
                    head = pred.extra["view_head_azimuth_deg"]
                    row |= {"view_head_deg": round(head % 360, 1), "view_head_error_deg": round(float(azimuth_error_deg(head, item["azimuth_deg"], category)), 1)}
                if pred.azimuth_confidence is not None:  # the head's support for the answer
                    row["azimuth_confidence"] = round(pred.azimuth_confidence, 3)
                rows.append(row)
                if name == name_list[0]:
                    figure_items.append((image, pred, category, item, err))

    summary = {}
    for key in sorted({(r["model"], r["category"]) for r in rows}):
        sel = [r for r in rows if (r["model"], r["category"]) == key]
        errors = np.array([r["error_deg"] for r in sel])
        front = azimuth_error_deg(0.0, np.array([r["label_deg"] for r in sel]), key[1])
        summary[f"{key[0]} / {key[1]}"] = {
            "n": len(sel), "within_45_pct": float(np.mean(errors <= 45) * 100), "median_deg": float(np.median(errors)),
            "front_guess_within_45_pct": float(np.mean(front <= 45) * 100),
        }
        if all("view_head_error_deg" in r for r in sel):
            summary[f"{key[0]} / {key[1]}"]["view_head_within_45_pct"] = float(np.mean(np.array([r["view_head_error_deg"] for r in sel]) <= 45) * 100)
    default_rows = [r for r in rows if r["model"] == by_category[r["category"]][0]]
    if default_rows:
        errors = np.array([r["error_deg"] for r in default_rows])
        front = np.array([float(azimuth_error_deg(0.0, r["label_deg"], r["category"])) for r in default_rows])
        summary["all categories (default models)"] = {"n": len(default_rows), "within_45_pct": float(np.mean(errors <= 45) * 100), "median_deg": float(np.median(errors)), "front_guess_within_45_pct": float(np.mean(front <= 45) * 100)}
        if all("azimuth_confidence" in r for r in default_rows):  # does the head's support foretell the misses on photos too?
            from interp3d.evaluation.metrics import confidence_summary

            summary["all categories (default models)"]["azimuth_confidence"] = confidence_summary([r["azimuth_confidence"] for r in default_rows], errors <= 45)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "real_photos.json").write_text(json.dumps({"summary": summary, "photos": rows}, indent=2))
    lines = ["# Real photographs: predicted azimuth vs labels by eye", "", "Labels: `benchmarks/real_photos/labels.json` (one annotator; 15-30 deg subjective). Tables modulo 180 deg.", "",
             "| model / category | photos | within 45 deg | median error | constant 'front' within 45 deg | viewpoint head alone within 45 deg |", "|---|---|---|---|---|---|"]
    lines += [
        f"| {k} | {v['n']} | {v['within_45_pct']:.0f} % | {v['median_deg']:.0f} deg | {v['front_guess_within_45_pct']:.0f} % | "
        + (f"{v['view_head_within_45_pct']:.0f} % |" if "view_head_within_45_pct" in v else "- |")
        for k, v in summary.items()
    ]
    support = summary.get("all categories (default models)", {}).get("azimuth_confidence")
    if support:
        auroc = "-" if support["auroc"] is None else f"{support['auroc']:.2f}"
        lines += ["", f"The viewpoint head's support for each answer (`Prediction.azimuth_confidence`: its probability within 30 deg) against the answers within 45 deg of the label, default models: AUROC {auroc}; "
                  + "; ".join(f"support {b['low']:.1f}-{b['high']:.1f}: {b['n']} photos, {100 * b['correct']:.0f} % within 45 deg" for b in support["bins"]) + "."]
    lines += ["", "| model | photo | confidence of the label | label | predicted | error | head's support |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['path']} | {r['confidence']} | {r['label_deg']} | {r['pred_deg']} | {r['error_deg']} | {r.get('azimuth_confidence', '-')} |" for r in rows]
    (args.out / "real_photos.md").write_text("\n".join(lines) + "\n")

    import matplotlib.pyplot as plt

    cols = 6
    rows_n = max(1, -(-len(figure_items) // cols))
    fig, axes = plt.subplots(rows_n, cols, figsize=(2.6 * cols, 2.8 * rows_n), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (image, pred, category, item, err) in zip(axes.flat, figure_items):
        h, w = image.shape[:2]
        ax.imshow(image, extent=(0, w, h, 0))
        draw_skeleton(ax, pred.reprojected_2d, get_category(category), linewidth=1.2, markersize=2.5)
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.set_title(f"{category}: pred {pred.azimuth_deg % 360:.0f}, label {item['azimuth_deg']} ({err:.0f} off)", fontsize=7, color="black" if err <= 45 else "red")
    fig.tight_layout()
    save_figure(fig, args.out / "real_photos.png", dpi=90)
    print("\n".join(lines[:6 + len(summary)]))


if __name__ == "__main__":
    main()
