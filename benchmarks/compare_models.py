"""Two or more models of one category on the same rendered test worlds, as users run them.

    .venv/bin/python benchmarks/compare_models.py --model src/interp3d/pretrained/chair.safetensors \\
        --model runs/product/exported4/chair.safetensors \\
        --data runs/product/chair_gpu/world/test3d --data runs/product/chair_cpu3_export/world/test3d \\
        --out benchmarks/results/compare_chair

Each model is evaluated with the settings its header recommends (refinement with its calibrated
shape anchor, the flip test, its peak thresholds; ``--no-refine`` / ``--no-flip-test`` turn them
off) on every ``--data`` folder. Reported per world and model: structure and azimuth AR, the
azimuth median, heatmap and re-projection PCK, the viewpoint head alone; and every model's gain
over the first with a 95 % interval from a paired bootstrap over the test objects
(:func:`interp3d.evaluation.metrics.paired_bootstrap_gain`), so a difference can be told from the
test sample's noise; with several worlds, also the gain over all their objects pooled (a small
gain that every world shows can be told from noise there when no single world can tell it).
Writes OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from interp3d.evaluation.evaluate import evaluate_interpreter
from interp3d.evaluation.metrics import POSE_TAU_MAX, STRUCTURE_TAU_MAX, paired_bootstrap_gain
from interp3d.io_utils import atomic_write_json, atomic_write_text
from interp3d.models.serialization import load_interpreter


def evaluate(model, data: Path, refine: bool, flip_test: bool) -> tuple[dict, dict]:
    """(summary metrics, per-object errors) of one model on one world."""
    result = evaluate_interpreter(model, data, refine=refine, flip_test=flip_test)
    head = result.get("azimuth_view_head")
    summary = {
        "structure_ar": result["structure"]["average_recall"], "azimuth_ar": result["azimuth"]["average_recall"],
        "azimuth_median_deg": result["azimuth"]["median_deg"], "pck_heatmap": float(result["pck_heatmap"]),
        "pck_reprojection": float(result["pck_reprojection"]), "objects": int(result["n"]),
        "head_azimuth_ar": None if head is None else head["average_recall"],
        "head_azimuth_median_deg": None if head is None else head["median_deg"],
    }
    return summary, {"structure": result.per_object["structure_error"], "azimuth": result.per_object["azimuth_error"]}


METRICS = (("structure", STRUCTURE_TAU_MAX), ("azimuth", POSE_TAU_MAX))


def gains_over_first(models: list[str], errors: dict[str, dict[str, np.ndarray]]) -> dict[str, dict]:
    """Each later model's paired gain over the first, on the objects the first has an error for."""
    base = errors[models[0]]
    return {
        path: {metric: paired_bootstrap_gain(base[metric][np.isfinite(base[metric])], errors[path][metric][np.isfinite(base[metric])], tau) for metric, tau in METRICS}
        for path in models[1:]
    }


def compare(models: list[str], worlds: list[Path], refine: bool = True, flip_test: bool = True) -> dict:
    report = {"models": models, "refine": refine, "flip_test": flip_test, "worlds": {}}
    loaded = {path: load_interpreter(path) for path in models}
    pooled = {path: {metric: [] for metric, _ in METRICS} for path in models}
    for world in worlds:
        rows, errors = {}, {}
        for path in models:
            rows[path], errors[path] = evaluate(loaded[path], world, refine, flip_test)
            print(world, path, rows[path], flush=True)
            for metric, _ in METRICS:
                pooled[path][metric].append(errors[path][metric])
        for path, gain in gains_over_first(models, errors).items():
            rows[path]["gain_over_first"] = gain
        report["worlds"][str(world)] = rows
    if len(worlds) > 1 and len(models) > 1:
        joined = {path: {metric: np.concatenate(parts) for metric, parts in by_metric.items()} for path, by_metric in pooled.items()}
        report["pooled"] = {"objects": int(joined[models[0]]["structure"].size), "gain_over_first": gains_over_first(models, joined)}
    return report


def gain_cells(gain: dict) -> list[str]:
    """'gain [low, high]' for structure, then azimuth."""
    return [f"{g['gain']:+.2f} [{g['low']:+.2f}, {g['high']:+.2f}]" for g in (gain["structure"], gain["azimuth"])]


def markdown(report: dict) -> str:
    lines = [f"# Models compared (refinement {'on' if report['refine'] else 'off'}, flip test {'on' if report['flip_test'] else 'off'})", "",
             "| test world | model | objects | structure AR | azimuth AR | azimuth median deg | heatmap PCK | re-projection PCK | head alone AR / median deg | gain over the first: structure / azimuth AR [95 %] |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for world, rows in report["worlds"].items():
        for path, r in rows.items():
            gain = r.get("gain_over_first")
            cell = "-" if gain is None else " / ".join(gain_cells(gain))
            head = "-" if r["head_azimuth_ar"] is None else f"{r['head_azimuth_ar']:.2f} / {r['head_azimuth_median_deg']:.1f}"
            lines.append(f"| `{world}` | `{path}` | {r['objects']} | {r['structure_ar']:.2f} | {r['azimuth_ar']:.2f} | {r['azimuth_median_deg']:.1f} | {r['pck_heatmap']:.1f} | {r['pck_reprojection']:.1f} | {head} | {cell} |")
    pooled = report.get("pooled")
    if pooled:
        lines += ["", f"Gain over the first model on all {len(report['worlds'])} worlds' objects pooled ({pooled['objects']}), 95 % paired-bootstrap interval:", "",
                  "| model | structure AR | azimuth AR |", "|---|---|---|"]
        for path, gain in pooled["gain_over_first"].items():
            lines.append(f"| `{path}` | " + " | ".join(gain_cells(gain)) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", required=True, help="checkpoint, exported file or shipped name (the first is the reference)")
    parser.add_argument("--data", type=Path, action="append", required=True, help="a world-format test folder (e.g. a recipe's world/test3d)")
    parser.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.md")
    parser.add_argument("--no-refine", dest="refine", action="store_false")
    parser.add_argument("--no-flip-test", dest="flip_test", action="store_false")
    args = parser.parse_args()
    report = compare(args.model, args.data, args.refine, args.flip_test)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out.with_suffix(".json"), report)
    atomic_write_text(args.out.with_suffix(".md"), markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
