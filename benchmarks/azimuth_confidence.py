"""Does a prediction's ``azimuth_confidence`` (the viewpoint head's probability within 30 deg of
the answer) foretell whether the answer is right? Measured on rendered test worlds.

    .venv/bin/python benchmarks/azimuth_confidence.py --world chair=runs/tests/chair_seed2/world/test3d \\
        --world sofa=runs/tests/sofa_seed2/world/test3d ... [--out benchmarks/results/azimuth_confidence]

Each category's shipped model (or ``--model CATEGORY=FILE``) runs as users run it (its header's
refinement and flip test). Reported per category: the share of answers within 30 deg, the AUROC
of the confidence for them (0.5: no better than chance), the calibration error and the
reliability bins (mean confidence against the share within 30 deg). On the real photos the same
summary is a line of ``benchmarks/real_photos.py``. Writes OUT.json and OUT.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from interp3d.evaluation.evaluate import evaluate_interpreter
from interp3d.io_utils import atomic_write_json, atomic_write_text
from interp3d.models.serialization import load_interpreter


def pairs(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--{what} takes CATEGORY=PATH, got {item!r}")
        out[key] = value
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--world", action="append", required=True, help="CATEGORY=test3d folder (repeat)")
    parser.add_argument("--model", action="append", default=[], help="CATEGORY=model file (default: the shipped model)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "azimuth_confidence")
    args = parser.parse_args()
    worlds, models = pairs(args.world, "world"), pairs(args.model, "model")
    report = {}
    for category, world in worlds.items():
        model = load_interpreter(models.get(category, category))
        info = getattr(model, "info", None) or {}
        result = evaluate_interpreter(model, world, refine=bool(info.get("refine_default", True)), flip_test=bool(info.get("flip_test_default")))
        if not result.get("azimuth_confidence"):
            raise SystemExit(f"{models.get(category, category)}: no viewpoint head, so no azimuth confidence")
        report[category] = {"model": models.get(category, category), "world": world, "azimuth_ar": result["azimuth"]["average_recall"], **result["azimuth_confidence"]}
        print(category, {k: v for k, v in report[category].items() if k != "bins"}, flush=True)
    atomic_write_json(args.out.with_suffix(".json"), report)
    lines = [
        "# Does the viewpoint head's support foretell a right azimuth? (rendered test worlds)", "",
        "`Prediction.azimuth_confidence`: the head's probability within 30 deg of the answer (after refinement, flip test), "
        "against the answer lying within 30 deg of the truth. AUROC: the chance that a right answer has more support than a wrong one.", "",
        "| category | world | objects | within 30 deg | AUROC | calibration error | reliability: support bin -> objects, mean support, share within 30 deg |",
        "|---|---|---|---|---|---|---|",
    ]
    for category, r in report.items():
        bins = "; ".join(f"{b['low']:.1f}-{b['high']:.1f}: {b['n']}, {b['confidence']:.2f} -> {b['correct']:.2f}" for b in r["bins"])
        auroc = "-" if r["auroc"] is None else f"{r['auroc']:.3f}"
        lines.append(f"| {category} | `{r['world']}` | {r['n']} | {100 * r['correct']:.1f} % | {auroc} | {r['calibration_error']:.3f} | {bins} |")
    atomic_write_text(args.out.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
