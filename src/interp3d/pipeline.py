"""The main job and other multi-stage workflows, resumable stage by stage."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

from .config import Config
from .evaluation.metrics import average_recall
from .io_utils import atomic_path, atomic_write_json, atomic_write_text, write_run_metadata

__all__ = ["run_demo", "train_baseline", "evaluate_to_folder", "run_ablation", "run_ablation_seeds", "video_grid_search"]


def _stage(out: Path, name: str, echo: Callable[[str], None], fn: Callable[[], dict]) -> dict:
    """Run ``fn`` once: its summary is stored in ``stages/<name>.json`` and a rerun skips it.

    Stages that train resume on their own from their run folder, so a killed stage continues.
    """
    marker = out / "stages" / f"{name}.json"
    if marker.is_file():
        echo(f"[{name}] done earlier, skipping ({marker})")
        return json.loads(marker.read_text())
    echo(f"[{name}] running")
    start = time.perf_counter()
    summary = fn()
    summary["seconds"] = round(time.perf_counter() - start, 2)
    atomic_write_json(marker, summary)
    echo(f"[{name}] finished in {summary['seconds']:.1f}s")
    return summary


def _world_seed(cfg: Config, index: int) -> int:
    return cfg.seed + 1000 * index


def train_baseline(cfg: Config, category: str, out: str | Path, echo: Callable[[str], None] = print, world_root: str | Path | None = None, world_seed: int | None = None) -> Path:
    """pretrain-2d, pretrain-3d, finetune for one category in ``out``; returns the baseline checkpoint."""
    from .data.world import render_world
    from .train.stages import finetune, pretrain_2d, pretrain_3d

    out = Path(out)
    if world_root is None:
        world_root = out / "world" / "annotated2d"
        render_world(world_root, category, cfg.world.options("annotated2d"), seed=cfg.seed if world_seed is None else world_seed, config=cfg.to_dict())
    r2 = _stage(out, "pretrain_2d", echo, lambda: _summary(pretrain_2d(cfg, category, world_root, out / "pretrain_2d")))
    r3 = _stage(out, "pretrain_3d", echo, lambda: _summary(pretrain_3d(cfg, category, out / "pretrain_3d")))
    rf = _stage(out, "finetune", echo, lambda: _summary(finetune(cfg, category, world_root, r2["checkpoint"], r3["checkpoint"], out / "finetune")))
    return Path(rf["checkpoint"])


def _summary(result) -> dict:
    return {"checkpoint": str(result.best_checkpoint), "best_metric": result.best_metric, "best_epoch": result.best_epoch, "best": result.best_record, "last": result.history[-1] if result.history else {}}


def evaluate_to_folder(model_path: str | Path, data: str | Path, out: str | Path | None = None, device: str = "cpu", label: str | None = None, refine: bool = False, flip_test: bool = False) -> dict:
    """Evaluate a checkpoint on a world-format folder (``refine``: with test-time refinement,
    ``flip_test``: with the mirrored images too); write metrics.json, per_object.csv and recall curves."""
    from .evaluation.evaluate import evaluate_interpreter
    from .evaluation.metrics import POSE_TAU_MAX, STRUCTURE_TAU_MAX
    from .models.serialization import load_interpreter
    from .viz import recall_plot

    model = load_interpreter(model_path, device)
    result = evaluate_interpreter(model, data, device=device, refine=refine, flip_test=flip_test)
    if out is not None:
        out = Path(out)
        atomic_write_json(out / "metrics.json", {"model": str(model_path), "data": str(data), "refine": refine, "flip_test": flip_test, **result})
        with atomic_path(out / "per_object.csv", suffix=".csv") as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.writer(fh)
            keys = list(result.per_object)
            writer.writerow(keys)
            for row in zip(*(result.per_object[k] for k in keys)):
                writer.writerow([f"{v:.6g}" if isinstance(v, (float, np.floating)) else v for v in row])
        name = label or Path(model_path).parent.name
        # Each curve uses the objects that have its ground truth (2D-only data has none).
        if result["structure"] is not None:
            errors = result.per_object["structure_error"]
            recall_plot({name: errors[np.isfinite(errors)]}, STRUCTURE_TAU_MAX, out / "recall_structure.png", "normalised structure RMSE")
        if result["azimuth"] is not None:
            errors = result.per_object["azimuth_error"]
            recall_plot({name: errors[np.isfinite(errors)]}, POSE_TAU_MAX, out / "recall_azimuth.png", "azimuth error (deg)", degrees=True)
    return result


def run_demo(cfg: Config, out: str | Path, echo: Callable[[str], None] = print) -> Path:
    """The main job: synthetic data and world previews, then for each category of the preset the
    baseline, video training (fixed length and curriculum) and their evaluation on the IKEA-like
    test set; writes ``report.md``. Every stage resumes or is skipped when rerun."""
    from .viz import synthetic_preview, world_preview
    from .data.synthetic import SyntheticSkeletonDataset
    from .data.world import WorldDataset

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    previous = out / "run.json"
    if previous.is_file():
        stored = Config.load(previous)
        if stored != cfg:
            raise SystemExit(f"{out} holds a run with a different config; use another --out or the same preset/overrides")
    write_run_metadata(out, cfg.to_dict(), cfg.seed)
    run_ablation(cfg, out, tuple(cfg.categories), echo=echo, write_metadata=False)
    for category in cfg.categories:
        ds = SyntheticSkeletonDataset(category, 24, seed=cfg.seed, options=cfg.synthetic.options())
        synthetic_preview(ds, out / "figures" / f"synthetic_{category}.png")
        for kind in WORLD_KINDS:
            world_preview(WorldDataset(out / category / "world" / kind), out / "figures" / f"world_{category}_{kind}.png")
        example_figures(out / category / "video_curriculum" / "best.pt", out / category / "world" / "test3d", out / "figures", category)
    return _write_report(cfg, out)


def example_figures(model: str | Path, data: str | Path, out: str | Path, label: str, count: int = 8) -> list[Path]:
    """Predictions of ``model`` on the first ``count`` images of a world folder: a contact sheet of
    re-projected skeletons titled with predicted / true azimuth, and one full prediction figure."""
    from .data.world import WorldDataset
    from .inference import Predictor
    from .viz import contact_sheet, prediction_figure

    ds = WorldDataset(data)
    predictor = Predictor.load(model)
    images = [ds.load_image(i) for i in range(min(count, len(ds)))]
    preds = predictor.predict(images)
    truth = np.degrees(ds.annotations["azimuth"][: len(images)])
    titles = [f"az {p.azimuth_deg % 360:.0f} (true {t:.0f})" for p, t in zip(preds, truth)]
    out = Path(out)
    sheet = contact_sheet(images, [p.reprojected_2d for p in preds], predictor.model.category, out / f"predictions_{label}.png", titles=titles)
    single = prediction_figure(images[0], preds[0], predictor.model.category, out / f"prediction_{label}.png")
    return [sheet, single]


def _write_report(cfg: Config, out: Path) -> Path:
    from .data.world import WorldDataset

    table = json.loads((out / "table.json").read_text())
    lines = [f"# interp3d demo report ({cfg.preset})", "", f"Run folder: `{out}`; configuration, seed and git revision in `run.json`.", ""]
    lines += ["## Results on the IKEA-like test set (`test3d`)", "", "| category | model | structure AR % | azimuth AR % | azimuth median deg | azimuth acc pi/6 % | PCK heatmap % | PCK reprojection % |", "|---|---|---|---|---|---|---|---|"]
    for category, models in table.items():
        for name, m in models.items():
            lines.append(
                f"| {category} | {name} | {m['structure']['average_recall']:.1f} | {m['azimuth']['average_recall']:.1f} | {m['azimuth']['median_deg']:.1f} | "
                f"{m['azimuth']['accuracy_pi_6']:.1f} | {m['pck_heatmap']:.1f} | {m['pck_reprojection']:.1f} |"
            )
    gains_path = out / "gains.json"
    if gains_path.is_file():
        gains = json.loads(gains_path.read_text())
        lines += ["", "Gain over the Baseline, AR points with a 95 % interval (paired bootstrap over the test objects; it does not cover training-run variation):", "",
                  "| category | model | structure | azimuth |", "|---|---|---|---|"]
        for category, models in gains.items():
            for name, g in models.items():
                lines.append(f"| {category} | {name} | {_gain_cell(g['structure'])} | {_gain_cell(g['azimuth'])} |")
        lines += ["", "One run is one draw of the training: the Baseline itself moves by about a point between seeds. Gains with intervals that cover "
                  "the run-to-run variation: `interp3d ablation --seeds 3` (`seeds.md`) and the multi-seed table in the README, *Results on the rendered world*."]
    for category in table:
        lines += ["", f"![structure recall {category}](ablation_structure_{category}.png) ![azimuth recall {category}](ablation_azimuth_{category}.png)"]
    lines += ["", "## Rendered world", "", "| category | kind | images | visible keypoints | occluded by other objects |", "|---|---|---|---|---|"]
    for category in table:
        for kind in WORLD_KINDS:
            a = WorldDataset(out / category / "world" / kind).annotations
            lines.append(f"| {category} | {kind} | {len(a['path'])} | {a['visible'].mean():.1%} | {a['occluded_by_other'].mean():.1%} |")
    lines += ["", "## Example predictions (Video+Curriculum model, first test images; titles: predicted / true azimuth, deg)"]
    for category in table:
        lines += ["", f"![predictions {category}](figures/predictions_{category}.png)", "", f"![prediction {category}](figures/prediction_{category}.png)"]
    lines += ["", "## Previews"]
    for category in table:
        lines += ["", f"![synthetic {category}](figures/synthetic_{category}.png)"]
        for kind in WORLD_KINDS:
            lines += ["", f"![{category} {kind}](figures/world_{category}_{kind}.png)"]
    lines += ["", "Metrics: see the README section *Evaluation protocol*. Training histories: `<category>/<stage>/history.json`, TensorBoard logs in `tb/`."]
    report = out / "report.md"
    atomic_write_text(report, "\n".join(lines) + "\n")
    return report


WORLD_KINDS = ("annotated2d", "video", "test3d", "val3d")


def run_ablation(cfg: Config, out: str | Path, categories: tuple[str, ...] = ("chair", "sofa"), echo: Callable[[str], None] = print, write_metadata: bool = True) -> Path:
    """The paper's Table 2 on the rendered world: Baseline / Video / Video+Curriculum per category.

    Trains on ``annotated2d`` + ``video``, selects models on a validation world (``val3d``, rendered
    like ``test3d`` with another seed) and reports structure and azimuth average recall on ``test3d``.
    """
    from dataclasses import replace

    from .data.world import render_world
    from .evaluation.metrics import POSE_TAU_MAX, STRUCTURE_TAU_MAX
    from .train.video import train_video
    from .viz import recall_plot

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if write_metadata:
        write_run_metadata(out, cfg.to_dict(), cfg.seed, {"categories": list(categories)})
    table: dict[str, dict] = {}
    gains: dict[str, dict] = {}
    for index, category in enumerate(categories):
        base = out / category
        worlds = {}
        for kind, render_kind, seed_offset in (("annotated2d", "annotated2d", 0), ("video", "video", 0), ("test3d", "test3d", 0), ("val3d", "test3d", 500)):
            root = base / "world" / kind
            options = cfg.world.options(render_kind)
            if kind == "val3d":
                options = replace(options, count=max(cfg.world.n_test3d // 2, 1))
            _stage(base, f"world_{kind}", echo, lambda root=root, options=options, s=_world_seed(cfg, index) + seed_offset: {"path": str(render_world(root, category, options, seed=s, config=cfg.to_dict()))})
            worlds[kind] = root
        baseline = train_baseline(cfg, category, base / "baseline", echo, world_root=worlds["annotated2d"])
        vc = cfg.video
        fixed_epochs = vc.fixed_total_epochs()
        video = _stage(base, "video_fixed", echo, lambda: _summary(train_video(cfg, category, worlds["annotated2d"], worlds["video"], worlds["val3d"], baseline, base / "video_fixed", (vc.fixed_length,), fixed_epochs)))
        curriculum = _stage(base, "video_curriculum", echo, lambda: _summary(train_video(cfg, category, worlds["annotated2d"], worlds["video"], worlds["val3d"], baseline, base / "video_curriculum", tuple(vc.curriculum), vc.epochs_per_length)))
        models = {"Baseline": baseline, "Video": Path(video["checkpoint"]), "Video+Curriculum": Path(curriculum["checkpoint"])}
        if vc.bootstrap_rounds > 0:
            from .train.bootstrap import train_bootstrap

            boot = _stage(base, "video_bootstrap", echo, lambda: _summary(train_bootstrap(cfg, category, worlds["annotated2d"], worlds["video"], worlds["val3d"], models["Video+Curriculum"], base / "video_bootstrap", tuple(vc.curriculum), vc.epochs_per_length)))
            models["Video+Curriculum+Bootstrap"] = Path(boot["checkpoint"])
        results = {}
        for name, checkpoint in models.items():
            folder = out / "evaluation" / category / _folder_name(name)
            results[name] = _stage(base, f"evaluate_{name}", echo, lambda c=checkpoint, f=folder, n=name: {"metrics": dict(evaluate_to_folder(c, worlds["test3d"], f, label=n)), "folder": str(f)})
        table[category] = {name: r["metrics"] for name, r in results.items()}
        per_object = {name: _read_errors(Path(r["folder"]) / "per_object.csv") for name, r in results.items()}
        gains[category] = ablation_gains(per_object)
        recall_plot({n: e["structure_error"] for n, e in per_object.items()}, STRUCTURE_TAU_MAX, out / f"ablation_structure_{category}.png", "normalised structure RMSE", title=f"{category}: structure (test3d)")
        recall_plot({n: e["azimuth_error"] for n, e in per_object.items()}, POSE_TAU_MAX, out / f"ablation_azimuth_{category}.png", "azimuth error (deg)", title=f"{category}: azimuth (test3d)", degrees=True)

    atomic_write_json(out / "table.json", table)
    header = "| Method | " + " | ".join(f"{c} structure AR | {c} pose AR" for c in categories) + " |"
    lines = [f"# Ablation on the rendered world ({cfg.preset}): average recall %, test3d", "", header, "|---|" + "---|---|" * len(categories)]
    variants = _variants(table, categories)
    for name in variants:
        cells = " | ".join(f"{table[c][name]['structure']['average_recall']:.2f} | {table[c][name]['azimuth']['average_recall']:.2f}" for c in categories)
        lines.append(f"| {name} | {cells} |")
    atomic_write_json(out / "gains.json", gains)
    lines += ["", "Gain over the Baseline, AR points with a 95 % interval (paired bootstrap over the test objects):", "", header, "|---|" + "---|---|" * len(categories)]
    for name in variants[1:]:
        cells = " | ".join(" | ".join(_gain_cell(gains[c][name][m]) for m in ("structure", "azimuth")) for c in categories)
        lines.append(f"| {name} | {cells} |")
    lines += [""] + [f"![{c} structure](ablation_structure_{c}.png) ![{c} azimuth](ablation_azimuth_{c}.png)" for c in categories]
    report = out / "table.md"
    atomic_write_text(report, "\n".join(lines) + "\n")
    return report


ABLATION_VARIANTS = ("Baseline", "Video", "Video+Curriculum", "Video+Curriculum+Bootstrap")


def _folder_name(variant: str) -> str:
    return variant.lower().replace("+", "_")


def _variants(table: dict, categories) -> list[str]:
    """The ablation rows every category has, in the table's order (Bootstrap only when it ran)."""
    return [name for name in ABLATION_VARIANTS if all(name in table[c] for c in categories)]


def run_ablation_seeds(cfg: Config, out: str | Path, seeds: list[int], categories: tuple[str, ...] = ("chair", "sofa"), echo: Callable[[str], None] = print) -> Path:
    """:func:`run_ablation` once per seed (``out/seed_<s>``: its own world samples and initialisations,
    each resumable), then per category, variant and metric the mean and spread of the AR across
    seeds and the gain over the Baseline with a seed-covering interval
    (:func:`interp3d.evaluation.metrics.seed_covering_gain`). Writes ``seeds.json`` and ``seeds.md``."""
    from dataclasses import replace

    from .evaluation.metrics import POSE_TAU_MAX, STRUCTURE_TAU_MAX, seed_covering_gain

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_run_metadata(out, cfg.to_dict(), cfg.seed, {"categories": list(categories), "seeds": list(seeds)})
    for s in seeds:
        echo(f"=== seed {s}")
        run_ablation(replace(cfg, seed=s), out / f"seed_{s}", categories, echo=echo)
    taus = {"structure": (STRUCTURE_TAU_MAX, "structure_error"), "azimuth": (POSE_TAU_MAX, "azimuth_error")}
    summary: dict = {"seeds": list(seeds), "categories": {}}
    variants = [name for name in ABLATION_VARIANTS if all((out / f"seed_{s}" / "evaluation" / c / _folder_name(name) / "per_object.csv").is_file() for s in seeds for c in categories)]
    for category in categories:
        errors = {
            name: [_read_errors(out / f"seed_{s}" / "evaluation" / category / _folder_name(name) / "per_object.csv") for s in seeds]
            for name in variants
        }
        block = {}
        for name in variants:
            block[name] = {}
            for metric, (tau, key) in taus.items():
                ars = np.array([average_recall(e[key], tau) for e in errors[name]])
                entry = {"mean": float(ars.mean()), "sd": float(ars.std(ddof=1)) if len(ars) > 1 else 0.0, "per_seed": [float(a) for a in ars]}
                if name != "Baseline":
                    entry["gain"] = seed_covering_gain([e[key] for e in errors["Baseline"]], [e[key] for e in errors[name]], tau)
                block[name][metric] = entry
        summary["categories"][category] = block
    atomic_write_json(out / "seeds.json", summary)
    header = "| Method | " + " | ".join(f"{c} structure AR | {c} pose AR" for c in categories) + " |"
    lines = [f"# Ablation over {len(seeds)} seeds ({cfg.preset}; seeds {', '.join(map(str, seeds))}): test3d average recall %, mean +- sd across seeds", "", header, "|---|" + "---|---|" * len(categories)]
    for name in variants:
        cells = " | ".join(" | ".join(f"{summary['categories'][c][name][m]['mean']:.2f} +- {summary['categories'][c][name][m]['sd']:.2f}" for m in taus) for c in categories)
        lines.append(f"| {name} | {cells} |")
    lines += ["", "Gain over the Baseline, AR points: mean over seeds [95 % interval resampling seeds and test objects]:", "", header, "|---|" + "---|---|" * len(categories)]
    for name in variants[1:]:
        cells = " | ".join(" | ".join(_gain_cell(summary["categories"][c][name][m]["gain"]) for m in taus) for c in categories)
        lines.append(f"| {name} | {cells} |")
    lines += ["", "Per-seed gains (structure / azimuth):", ""]
    for c in categories:
        for name in variants[1:]:
            g = summary["categories"][c][name]
            lines.append(f"- {c} {name}: " + ", ".join(f"{a:+.2f} / {b:+.2f}" for a, b in zip(g["structure"]["gain"]["per_seed"], g["azimuth"]["gain"]["per_seed"])))
    report = out / "seeds.md"
    atomic_write_text(report, "\n".join(lines) + "\n")
    return report


def ablation_gains(per_object: dict[str, dict[str, np.ndarray]], baseline: str = "Baseline") -> dict[str, dict[str, dict]]:
    """Each model's structure and azimuth AR gain over ``baseline`` with paired-bootstrap intervals."""
    from .evaluation.metrics import POSE_TAU_MAX, STRUCTURE_TAU_MAX, paired_bootstrap_gain

    base = per_object[baseline]
    return {
        name: {
            "structure": paired_bootstrap_gain(base["structure_error"], errors["structure_error"], STRUCTURE_TAU_MAX),
            "azimuth": paired_bootstrap_gain(base["azimuth_error"], errors["azimuth_error"], POSE_TAU_MAX),
        }
        for name, errors in per_object.items()
        if name != baseline
    }


def _gain_cell(g: dict) -> str:
    return f"{g['gain']:+.2f} [{g['low']:+.2f}, {g['high']:+.2f}]"


def _read_errors(path: Path) -> dict[str, np.ndarray]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    return {key: np.array([float(r[key]) for r in rows]) for key in ("structure_error", "azimuth_error")}


def video_grid_search(
    cfg: Config,
    category: str,
    worlds: dict[str, Path],
    init_checkpoint: str | Path,
    out: str | Path,
    lengths: tuple[int, ...] = (3, 5, 7, 9, 11, 13, 15),
    weight_sets: dict[str, dict[str, float]] | None = None,
    echo: Callable[[str], None] = print,
) -> Path:
    """The paper's validation protocol: train fixed-length video models for each clip length and
    loss-weight set, and rank them by the validation world's mean average recall (never the test
    set). ``worlds`` holds the ``annotated2d``, ``video`` and ``val3d`` folders. Writes search.json/md."""
    from dataclasses import replace

    from .train.video import train_video

    out = Path(out)
    weight_sets = weight_sets or {"default": {}}
    rows = []
    for name, weights in weight_sets.items():
        trial_cfg = replace(cfg, video=replace(cfg.video, **weights))
        for length in lengths:
            tag = f"{name}_len{length:02d}"
            summary = _stage(
                out, tag, echo,
                lambda c=trial_cfg, m=length, t=tag: _summary(
                    train_video(c, category, worlds["annotated2d"], worlds["video"], worlds["val3d"], init_checkpoint, out / t, (m,), c.video.fixed_total_epochs())
                ),
            )
            best = summary["best"]
            rows.append({"weights": name, **weights, "length": length, "val_mean_ar": summary["best_metric"], "val_structure_ar": best.get("structure_ar"), "val_azimuth_ar": best.get("azimuth_ar"), "checkpoint": summary["checkpoint"]})
    rows.sort(key=lambda r: -r["val_mean_ar"])
    atomic_write_json(out / "search.json", rows)
    lines = ["| weights | clip length | val mean AR | val structure AR | val azimuth AR |", "|---|---|---|---|---|"]
    lines += [f"| {r['weights']} | {r['length']} | {r['val_mean_ar']:.2f} | {r['val_structure_ar'] or float('nan'):.2f} | {r['val_azimuth_ar'] or float('nan'):.2f} |" for r in rows]
    report = out / "search.md"
    atomic_write_text(report, "\n".join(lines) + "\n")
    return report
