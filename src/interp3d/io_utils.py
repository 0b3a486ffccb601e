"""Atomic file writes and run metadata (resolved config, seed, git revision)."""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

__all__ = [
    "atomic_path",
    "atomic_write_text",
    "atomic_write_json",
    "git_revision",
    "write_run_metadata",
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
]

CHECKPOINT_FORMAT = "interp3d.checkpoint/1"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt or of another model."""


_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    On error the temporary file is removed, so a reader never sees a half-written file.
    ``suffix`` keeps libraries that infer the format from the extension (numpy, PIL) happy.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix if suffix is not None else path.suffix + ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def link_or_copy(source: str | Path, path: str | Path) -> Path:
    """Make ``path`` a hard link to ``source`` (one copy on disk), or a copy where the file system
    cannot link; atomically. Files here are only ever replaced, never rewritten in place, so the
    link keeps ``source``'s current contents even after ``source`` is replaced."""
    path = Path(path)
    with atomic_path(path, suffix=path.suffix + ".tmp") as tmp:
        tmp.unlink()
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
    return path


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def git_revision(start: str | Path | None = None) -> dict[str, Any]:
    """Commit hash and dirty flag of the interp3d checkout (or ``start``); ``None`` outside git."""
    cwd = Path(start) if start is not None else Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10)
        if rev.returncode != 0:
            return {"commit": None, "dirty": None}
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd, capture_output=True, text=True, timeout=10)
        return {"commit": rev.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def write_run_metadata(directory: str | Path, config: dict[str, Any], seed: int, extra: dict[str, Any] | None = None) -> Path:
    """Write ``run.json`` (resolved config, seed, git revision, versions, command line) into ``directory``."""
    import torch

    from . import __version__

    directory = Path(directory)
    meta = {
        "interp3d_version": __version__,
        "git": git_revision(),
        "seed": seed,
        "config": config,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": sys.argv,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }
    if extra:
        meta.update(extra)
    path = directory / "run.json"
    atomic_write_json(path, meta)
    return path


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write a torch checkpoint atomically (a reader never sees a half-written file)."""
    import torch

    path = Path(path)
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp)
    return path


def load_checkpoint(path: str | Path, map_location: Any = "cpu", kind: str | None = None) -> dict[str, Any]:
    """Load and validate a checkpoint; errors name the file and the problem."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as exc:  # torch raises several types for truncated/corrupt files
        raise CheckpointError(f"{path}: corrupt or unreadable checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: not an interp3d checkpoint")
    if kind is not None and state.get("kind") != kind:
        raise CheckpointError(f"{path}: holds a {state.get('kind')!r} model, expected {kind!r}")
    return state
