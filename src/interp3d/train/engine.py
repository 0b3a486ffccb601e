"""Training engine shared by every stage: device and distributed set-up (torchrun + DDP), RMSprop,
optional AMP, atomic checkpoints with exact resume, TensorBoard scalars, a progress bar, validation
each epoch and the best checkpoint kept.

Determinism: each epoch reseeds the global RNGs and the data order from ``(seed, epoch)`` and each
batch draws its augmentation from a generator seeded by ``(seed, epoch, batch)``, so a run resumed
from the checkpoint written at the end of an epoch reproduces the uninterrupted run exactly.
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn

from ..io_utils import CheckpointError, atomic_write_json, load_checkpoint, save_checkpoint, write_run_metadata

__all__ = [
    "CheckpointError",
    "DistributedContext",
    "init_distributed",
    "resolve_device",
    "save_checkpoint",
    "load_checkpoint",
    "StageResult",
    "run_stage",
    "stage_weights",
    "unwrap",
]

@dataclass
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: torch.device) -> DistributedContext:
    """Join the process group that ``torchrun`` describes in the environment (no-op otherwise)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistributedContext()
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return DistributedContext(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            local = int(os.environ.get("LOCAL_RANK", "0"))
            return torch.device(f"cuda:{local}")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available")
    return device


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _epoch_seed(seed: int, epoch: int, batch: int = -1) -> int:
    return (seed * 1_000_003 + epoch * 10_007 + batch + 1) % 2**63


@dataclass
class StageResult:
    out_dir: Path
    best_metric: float
    best_epoch: int
    history: list[dict[str, float]] = field(default_factory=list)
    best_record: dict[str, float] = field(default_factory=dict)  # the history entry of the best epoch

    @property
    def best_checkpoint(self) -> Path:
        return self.out_dir / "best.pt"


def stage_weights(path: str | Path, state: dict | None = None, map_location="cpu") -> dict:
    """The model weights of a stage checkpoint: its own, or for a finished run whose last epoch was
    also its best, those of the ``best.pt`` beside it (``model_in``)."""
    path = Path(path)
    state = state if state is not None else load_checkpoint(path, map_location=map_location)
    if "model" in state:
        return state["model"]
    source = path.parent / state.get("model_in", "best.pt")
    if not source.is_file():
        raise CheckpointError(f"{path}: its weights live in {source.name}, which is missing")
    return load_checkpoint(source, map_location=map_location)["model"]


def run_stage(
    name: str,
    out_dir: str | Path,
    model: nn.Module,
    parameters: Iterable[nn.Parameter],
    batches: Callable[[int], Iterable[Any]],
    loss_fn: Callable[[nn.Module, Any, torch.Generator], tuple[torch.Tensor, dict[str, float]]],
    validate: Callable[[nn.Module], dict[str, float]],
    *,
    epochs: int,
    lr: float,
    weight_decay: float = 0.0,
    optimizer: str = "rmsprop",
    metric: str,
    higher_is_better: bool,
    seed: int,
    device: torch.device,
    config: dict | None = None,
    checkpoint_extra: dict | None = None,
    amp: bool = False,
    resume: bool = True,
    progress: bool = True,
    steps_per_epoch: int | None = None,
    on_epoch_end: Callable[[int], None] | None = None,
    dist_ctx: DistributedContext | None = None,
    lr_schedule: str = "constant",
    finished_weights: str = "last",
    validate_start: bool = False,
    grad_clip_norm: float = 0.0,
    warmup_steps: int = 0,
) -> StageResult:
    """Train ``model`` for ``epochs``; ``batches(epoch)`` yields the epoch's batches.

    ``lr_schedule``: ``constant`` or ``cosine`` (per epoch, from ``lr`` to ~0; a function of the
    epoch alone, so a resumed run follows the same schedule).
    ``finished_weights``: what a finished run's ``last.pt`` keeps: ``last`` (its last weights, which
    extending the run to more epochs continues from) or ``best`` (no weights: it points at
    ``best.pt``, one copy less on disk, and an extension continues from the best weights), for
    stages whose consumers read ``best.pt`` only.
    ``validate_start``: validate the starting weights first, as epoch 0 of the history; they stay
    ``best.pt`` unless an epoch beats them (a stage that only makes a model worse hands it on unharmed).
    ``grad_clip_norm``: clip the gradients' global L2 norm to this value before each step (0 = off).
    ``warmup_steps``: raise the learning rate linearly over the first steps of the run (a fresh
    RMSprop's second-moment estimate starts near 0, so its first steps are ~10x the rate).

    Writes ``last.pt`` (full state, for ``resume``; slimmed to weights and history once the last epoch
    is done, so a finished run folder holds no optimizer state) and ``best.pt`` (best ``metric``) in ``out_dir``,
    TensorBoard scalars in ``out_dir/tb``, ``history.json`` and ``run.json``.
    """
    from tqdm import tqdm

    dist_ctx = dist_ctx or DistributedContext()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    params = [p for p in parameters if p.requires_grad]
    if optimizer == "rmsprop":
        optimiser = torch.optim.RMSprop(params, lr=lr, alpha=0.99, eps=1e-8, weight_decay=weight_decay)
    elif optimizer == "adam":
        optimiser = torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    elif optimizer == "sgd":
        optimiser = torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    else:
        raise ValueError(f"optimizer must be 'rmsprop', 'adam' or 'sgd', got {optimizer!r}")
    use_amp = amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    core = unwrap(model)

    start_epoch, best, best_epoch, history, step = 0, -math.inf if higher_is_better else math.inf, -1, [], 0
    last = out_dir / "last.pt"
    if resume and last.is_file():
        state = load_checkpoint(last, map_location=device, kind=name)
        core.load_state_dict(stage_weights(last, state, map_location=device))
        if "optimizer" in state:
            optimiser.load_state_dict(state["optimizer"])
            scaler.load_state_dict(state["scaler"])
        elif state["epoch"] + 1 < epochs and dist_ctx.is_main:  # a finished run's slim last.pt, extended to more epochs
            print(f"[{name}] {last} is a finished run without optimizer state; the extra epochs start a fresh optimizer")
        start_epoch, best, best_epoch, history, step = state["epoch"] + 1, state["best"], state["best_epoch"], state["history"], state["step"]
        if dist_ctx.is_main:
            print(f"[{name}] resuming after epoch {state['epoch'] + 1} from {last}")
    if dist_ctx.is_main:
        write_run_metadata(out_dir, config or {}, seed, {"stage": name})
    writer = None
    if dist_ctx.is_main:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(out_dir / "tb"), purge_step=step)

    if lr_schedule not in ("constant", "cosine"):
        raise ValueError(f"lr_schedule must be 'constant' or 'cosine', got {lr_schedule!r}")
    if finished_weights not in ("last", "best"):
        raise ValueError(f"finished_weights must be 'last' or 'best', got {finished_weights!r}")

    def log_validation(metrics: dict[str, float], epoch: int, improved: bool) -> None:  # main process only
        for k, v in metrics.items():
            writer.add_scalar(f"{name}/val_{k}", v, step)
        if improved:
            save_checkpoint(out_dir / "best.pt", {"kind": name, "model": core.state_dict(), "epoch": epoch, "metrics": metrics, **(checkpoint_extra or {})})

    if validate_start and start_epoch == 0 and epochs > 0:
        model.eval()
        started = time.perf_counter()
        with torch.no_grad():
            metrics = validate(core)
        best, best_epoch = metrics[metric], 0
        history.append({"epoch": 0, "step": 0, "seconds": round(time.perf_counter() - started, 2), **metrics})
        if dist_ctx.is_main:
            log_validation(metrics, -1, improved=True)
            print(f"[{name}] starting weights: " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()), flush=True)
    for epoch in range(start_epoch, epochs):
        _seed_all(_epoch_seed(seed, epoch))
        epoch_lr = lr * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs)) if lr_schedule == "cosine" else lr
        model.train()
        started = time.perf_counter()
        totals: dict[str, float] = {}
        count = 0
        bar = tqdm(batches(epoch), desc=f"{name} {epoch + 1}/{epochs}", total=steps_per_epoch, leave=False, disable=None if (progress and dist_ctx.is_main) else True)  # None: off when not a terminal
        for b, batch in enumerate(bar):
            gen = torch.Generator().manual_seed(_epoch_seed(seed, epoch, b))
            with torch.autocast(device_type=device.type, enabled=use_amp):
                loss, logs = loss_fn(model, batch, gen)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"[{name}] loss became {loss.item()} at epoch {epoch + 1}, batch {b}; lower the learning rate")
            optimiser.zero_grad(set_to_none=True)
            for group in optimiser.param_groups:  # a function of epoch and step: a resumed run follows it too
                group["lr"] = epoch_lr * min(1.0, (step + 1) / warmup_steps) if warmup_steps else epoch_lr
            scaler.scale(loss).backward()
            if grad_clip_norm > 0:
                scaler.unscale_(optimiser)
                logs = dict(logs, grad_norm=float(torch.nn.utils.clip_grad_norm_(params, grad_clip_norm)))
            scaler.step(optimiser)
            scaler.update()
            step += 1
            count += 1
            for k, v in logs.items():
                totals[k] = totals.get(k, 0.0) + v
            if writer is not None:
                writer.add_scalar(f"{name}/train_loss", loss.item(), step)
            bar.set_postfix(loss=f"{loss.item():.4g}")
        model.eval()
        with torch.no_grad():
            metrics = validate(core)
        record = {"epoch": epoch + 1, "step": step, "seconds": round(time.perf_counter() - started, 2), **{f"train_{k}": v / max(count, 1) for k, v in totals.items()}, **metrics}
        history.append(record)
        value = metrics[metric]
        improved = value > best if higher_is_better else value < best
        if dist_ctx.is_main:
            log_validation(metrics, epoch, improved)
        if improved:
            best, best_epoch = value, epoch + 1
        if dist_ctx.is_main:
            state = {"kind": name, "model": core.state_dict(), "epoch": epoch, "step": step, "best": best, "best_epoch": best_epoch, "history": history, **(checkpoint_extra or {})}
            if epoch + 1 < epochs:
                state.update(optimizer=optimiser.state_dict(), scaler=scaler.state_dict())
            else:  # finished: resuming and reporting need no optimizer state (1-2x the weights)
                state["complete"] = True
                if improved or finished_weights == "best":  # keep one copy of the weights on disk
                    del state["model"]
                    state["model_in"] = "best.pt"
            save_checkpoint(last, state)
            atomic_write_json(out_dir / "history.json", history)
            shown = ", ".join(f"{k} {v:.4g}" for k, v in record.items() if k not in ("epoch", "step"))
            print(f"[{name}] epoch {epoch + 1}/{epochs}: {shown}{' *' if improved else ''}", flush=True)
        if dist_ctx.enabled:
            torch.distributed.barrier()
        if on_epoch_end is not None:
            on_epoch_end(epoch)
    if writer is not None:
        writer.close()
    return StageResult(out_dir, best, best_epoch, history, next((h for h in history if h["epoch"] == best_epoch), {}))
