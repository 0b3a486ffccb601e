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
    from .cli import write_synthetic_preview
    from .data.synthetic import SyntheticSkeletonDataset

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

    lines = [f"# interp3d demo report ({cfg.preset})", "", f"Run folder: `{out}`; configuration and revision in `run.json`.", ""]
    lines += ["## Synthetic skeletons", "", "| category | train | val | seconds |", "|---|---|---|---|"]
    for category in cfg.categories:
        s = summaries[f"synthetic_{category}"]
        lines.append(f"| {category} | {s['train']['n']} | {s['val']['n']} | {s['seconds']} |")
        lines.append("")
        lines.append(f"![synthetic {category}](figures/synthetic_{category}.png)")
    report = out / "report.md"
    atomic_write_text(report, "\n".join(lines) + "\n")
    return report
