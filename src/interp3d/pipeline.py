"""The main job: every stage of the embedded-default pipeline, resumable stage by stage."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Callable

from .config import Config
from .io_utils import atomic_write_json, atomic_write_text, write_run_metadata

__all__ = ["run_demo"]


def _stage(out: Path, name: str, echo: Callable[[str], None], fn: Callable[[], dict]) -> dict:
    """Run ``fn`` once: its summary is stored in ``stages/<name>.json``, and a rerun skips it."""
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


def run_demo(cfg: Config, out: str | Path, echo: Callable[[str], None] = print) -> Path:
    from .cli import write_synthetic_preview, write_world_preview
    from .data.synthetic import SyntheticSkeletonDataset
    from .data.world import KINDS, WorldDataset, render_world

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    previous = out / "run.json"
    if previous.is_file():
        stored = Config.load(previous)
        if stored != cfg:
            raise SystemExit(f"{out} holds a run with a different config; use another --out or the same preset/overrides")
    write_run_metadata(out, cfg.to_dict(), cfg.seed)

    summaries = {}
    for index, category in enumerate(cfg.categories):
        def synthetic(category=category, index=index):
            stats = {}
            for split, n, seed in (("train", cfg.synthetic.n_train, cfg.seed + 1000 * index), ("val", cfg.synthetic.n_val, cfg.seed + 1000 * index + 500)):
                ds = SyntheticSkeletonDataset(category, n, seed=seed, options=cfg.synthetic.options())
                path = ds.save(out / "synthetic" / f"{category}_{split}.npz")
                stats[split] = {"n": n, "path": str(path.relative_to(out))}
                if split == "train":
                    write_synthetic_preview(ds, out / "figures" / f"synthetic_{category}.png")
            return stats

        summaries[f"synthetic_{category}"] = _stage(out, f"synthetic_{category}", echo, synthetic)

        for kind in KINDS:
            def world(category=category, kind=kind, index=index):
                root = out / "world" / category / kind
                render_world(root, category, cfg.world.options(kind), seed=cfg.seed + 1000 * index, config=cfg.to_dict())
                ds = WorldDataset(root)
                write_world_preview(ds, out / "figures" / f"world_{category}_{kind}.png")
                a = ds.annotations
                return {"images": len(ds), "path": str(root.relative_to(out)), "visible": float(a["visible"].mean()), "occluded_by_other": float(a["occluded_by_other"].mean())}

            summaries[f"world_{category}_{kind}"] = _stage(out, f"world_{category}_{kind}", echo, world)

    lines = [f"# interp3d demo report ({cfg.preset})", "", f"Run folder: `{out}`; configuration and revision in `run.json`.", ""]
    lines += ["## Synthetic skeletons", "", "| category | train | val | seconds |", "|---|---|---|---|"]
    for category in cfg.categories:
        s = summaries[f"synthetic_{category}"]
        lines.append(f"| {category} | {s['train']['n']} | {s['val']['n']} | {s['seconds']} |")
        lines.append("")
        lines.append(f"![synthetic {category}](figures/synthetic_{category}.png)")
    lines += ["", "## Rendered world", "", "| category | kind | images | visible keypoints | occluded by other objects | seconds |", "|---|---|---|---|---|---|"]
    for category in cfg.categories:
        for kind in KINDS:
            s = summaries[f"world_{category}_{kind}"]
            lines.append(f"| {category} | {kind} | {s['images']} | {s['visible']:.1%} | {s['occluded_by_other']:.1%} | {s['seconds']} |")
    for category in cfg.categories:
        for kind in KINDS:
            lines += ["", f"![{category} {kind}](figures/world_{category}_{kind}.png)"]
    report = out / "report.md"
    atomic_write_text(report, "\n".join(lines) + "\n")
    return report
