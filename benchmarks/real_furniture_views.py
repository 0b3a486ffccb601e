"""Azimuth on real furniture shapes that no training image showed: the Sweet Home 3D models.

    .venv/bin/python benchmarks/real_furniture_views.py --furniture data/furniture_models \\
        --photo-material data/photo_material [--model chair --model runs/cand/chair.safetensors] [--cluttered]

The 24 labelled photographs (``real_photos.py``) are too few to choose between two models, and the
rendered ``test3d`` shows the procedural furniture that training showed. This proxy sits between
them: views over the whole sphere of designers' models (``interp3d.data.furniture_models``: 29
chairs, 3 swivel chairs, 18 sofas, 10 beds, 14 tables of ``sweethome3d-furniture``, fetched by
``scripts/fetch_furniture_models.sh``) with their own materials, photo backgrounds no training image
has and the annotated images' scene (``--cluttered``: test3d's; ``--group chair:armchair``: a chair
model also on the 15 armchairs, a group no skeleton describes). The models have no keypoints, so
only the viewpoint is scored (``--split test``: the half of the models that ``world.furniture_share``
training never shows): azimuth within 30 / 45 deg, median error and AR (tables modulo 180
deg), by view (front: within 45 deg of the front, back: more than 135 deg from it, side: between),
beside the viewpoint head alone and a constant "front" guess. Each model runs as the Predictor
runs it (its header's flip test, auto-crop and refinement). Renders are cached per category and
settings in ``--cache``; a model is compared with the first on the same views, with a 95 % interval
from a bootstrap over the furniture models and then their views (one model's views are not
independent).
Writes ``real_furniture_views.{json,md}`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def view_band(azimuth_deg: np.ndarray) -> np.ndarray:
    """front / side / back by the true azimuth's distance from the front."""
    distance = np.abs((np.asarray(azimuth_deg) + 180.0) % 360.0 - 180.0)
    return np.where(distance <= 45.0, "front", np.where(distance > 135.0, "back", "side"))


def summarise(errors_deg: np.ndarray, period_deg: float) -> dict:
    from interp3d.evaluation.metrics import average_recall

    errors_deg = np.asarray(errors_deg, np.float64)
    if not len(errors_deg):
        return {"n": 0}
    return {
        "n": int(len(errors_deg)),
        "within_30_pct": float((errors_deg <= 30.0).mean() * 100),
        "within_45_pct": float((errors_deg <= 45.0).mean() * 100),
        "median_deg": float(np.median(errors_deg)),
        "azimuth_ar": float(average_recall(np.radians(errors_deg), math.radians(period_deg / 2))),
    }


def cluster_bootstrap_gain(base: np.ndarray, new: np.ndarray, clusters: np.ndarray, samples: int = 2000, seed: int = 0) -> dict[str, float]:
    """mean(new - base) over paired views, with a 95 % interval from a bootstrap that resamples the
    furniture models (the clusters: views of one model are not independent) and then their views."""
    diff = np.asarray(new, np.float64) - np.asarray(base, np.float64)
    groups = [np.flatnonzero(clusters == c) for c in np.unique(clusters)]
    rng = np.random.default_rng(seed)
    boot = np.empty(samples)
    for b in range(samples):
        picked = [g[rng.integers(0, len(g), len(g))] for g in (groups[i] for i in rng.integers(0, len(groups), len(groups)))]
        boot[b] = diff[np.concatenate(picked)].mean()
    return {"gain": float(diff.mean()), "low": float(np.quantile(boot, 0.025)), "high": float(np.quantile(boot, 0.975))}


def render_cached(category: str, args, group: str | None = None) -> dict[str, np.ndarray]:
    from interp3d.data.world import WorldOptions, render_furniture_views

    name = f"{category}{'_' + group if group else ''}_{args.split}_n{args.count}_s{args.seed}_px{args.size}{'_cluttered' if args.cluttered else ''}.npz"
    path = args.cache / name
    if path.is_file():
        with np.load(path) as cached:
            return {k: cached[k] for k in cached.files}
    material = args.photo_material
    options = WorldOptions(backgrounds=str(material / "backgrounds") if material else "", textures=str(material / "textures") if material else "", jpeg=0.5 if material else 0.0)
    views = render_furniture_views(category, args.furniture, args.count, args.seed, args.size, options, cluttered=args.cluttered, split=args.split, group=group)
    args.cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial.npz")
    np.savez_compressed(tmp, **views)
    tmp.replace(path)
    return views


def predict_azimuths(model: str, images: np.ndarray, batch: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(azimuth, the viewpoint head's azimuth or NaN) in degrees, as the Predictor runs ``model``."""
    from interp3d.inference import Predictor

    predictor = Predictor.load(model)
    azimuth, head = [], []
    for start in range(0, len(images), batch):
        chunk = list(images[start:start + batch])
        for p in predictor.predict_arrays(chunk, [f"view{start + k}" for k in range(len(chunk))]):
            azimuth.append(p.azimuth_deg)
            head.append(p.extra.get("view_head_azimuth_deg", float("nan")))
    return np.asarray(azimuth, np.float64), np.asarray(head, np.float64)


def main() -> None:
    from interp3d.evaluation.metrics import angle_error, recall_terms
    from interp3d.models.serialization import pretrained_models, read_model_info
    from interp3d.shape_model import get_category

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--furniture", type=Path, required=True, help="folder of unpacked Sweet Home 3D catalogues")
    parser.add_argument("--photo-material", type=Path, default=None, help="backgrounds/ and textures/ (scripts/fetch_photo_material.sh)")
    parser.add_argument("--model", action="append", default=[], help="shipped model name or file (repeat; default: every shipped category model)")
    parser.add_argument("--count", type=int, default=300, help="views per category")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=192, help="render size in px")
    parser.add_argument("--cluttered", action="store_true", help="test3d's scene (occluders, clutter) instead of the annotated images'")
    parser.add_argument("--split", choices=("all", "train", "test"), default="all", help="which half of the models (a model trained with world.furniture_share saw the train half)")
    parser.add_argument("--group", action="append", default=[], metavar="CATEGORY:GROUP",
                        help="also score the category's models on a group's models, e.g. chair:armchair (repeat)")
    parser.add_argument("--cache", type=Path, default=Path("runs/real_furniture_views"))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    models = args.model or [n for n in ("chair", "swivelchair", "table", "bed", "sofa") if n in pretrained_models()]
    by_category: dict[str, list[str]] = {}
    for model in models:
        by_category.setdefault(read_model_info(model)["category"], []).append(model)
    summary, per_view = {}, {}
    lines = [
        "# Azimuth on real furniture shapes (Sweet Home 3D models no training image showed)",
        "",
        f"{args.count} views a category over the whole sphere of {'all' if args.split == 'all' else 'the ' + args.split + ' half of'} the models, {args.size} px, "
        f"{'test3d' if args.cluttered else 'the annotated images'}' scene, "
        f"held-out photo backgrounds{'' if args.photo_material else ' (none given: procedural)'}, seed {args.seed}; tables modulo 180 deg.",
        "",
        "| category | model | views | within 30 deg % | within 45 deg % | median deg | azimuth AR % | within 45 deg %: front / side / back | head alone within 45 % | constant front within 45 % |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    sets = [(category, None) for category in by_category]
    for spec in args.group:
        category, _, group = spec.partition(":")
        if category not in by_category or not group:
            parser.error(f"--group {spec!r}: expected CATEGORY:GROUP with a category of the models ({', '.join(by_category)})")
        sets.append((category, group))
    for category, group in sets:
        names = by_category[category]
        views = render_cached(category, args, group)
        label = f"{category} ({group})" if group else category
        period = math.degrees(get_category(category).azimuth_period)
        truth = np.degrees(views["azimuth"])
        band = view_band(truth)
        front_guess = angle_error(np.zeros_like(truth), truth, period)
        errors = {}
        for name in names:
            azimuth, head = predict_azimuths(name, views["images"])
            err = angle_error(azimuth, truth, period)
            errors[name] = err
            head_err = angle_error(head, truth, period)
            row = summarise(err, period)
            row["by_view"] = {b: summarise(err[band == b], period) for b in ("front", "side", "back")}
            row["head_alone"] = summarise(head_err[np.isfinite(head_err)], period)
            row["front_guess"] = summarise(front_guess, period)
            row["by_model"] = {k: float((err[views["model"] == k] <= 45.0).mean() * 100) for k in sorted(set(views["model"]))}
            summary[f"{label} / {name}"] = row
            per_view[f"{label} / {name}"] = {"truth_deg": truth.tolist(), "pred_deg": azimuth.tolist(), "head_deg": head.tolist(), "model": views["model"].tolist()}
            bands = " / ".join(f"{row['by_view'][b]['within_45_pct']:.1f}" if row["by_view"][b]["n"] else "-" for b in ("front", "side", "back"))
            head_45 = row["head_alone"].get("within_45_pct")
            lines.append(
                f"| {label} | `{name}` | {row['n']} | {row['within_30_pct']:.1f} | {row['within_45_pct']:.1f} | {row['median_deg']:.1f} | {row['azimuth_ar']:.2f} | {bands} | "
                f"{'-' if head_45 is None else f'{head_45:.1f}'} | {row['front_guess']['within_45_pct']:.1f} |"
            )
        if len(names) > 1:  # gains over the first model on the same views
            first = errors[names[0]]
            for name in names[1:]:
                within = cluster_bootstrap_gain((first <= 45.0) * 100.0, (errors[name] <= 45.0) * 100.0, views["model"])
                half = math.radians(period / 2)
                ar = cluster_bootstrap_gain(recall_terms(np.radians(first), half), recall_terms(np.radians(errors[name]), half), views["model"])
                summary[f"{label} / {name}"]["gain_over_first"] = {"within_45": within, "azimuth_ar": ar}
                lines.append(
                    f"| {label} | `{name}` over `{names[0]}` | | | {within['gain']:+.1f} [{within['low']:+.1f}, {within['high']:+.1f}] | | "
                    f"{ar['gain']:+.2f} [{ar['low']:+.2f}, {ar['high']:+.2f}] | | | |"
                )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "real_furniture_views.json").write_text(json.dumps({"settings": {k: str(v) for k, v in vars(args).items()}, "summary": summary, "views": per_view}, indent=1))
    (args.out / "real_furniture_views.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
