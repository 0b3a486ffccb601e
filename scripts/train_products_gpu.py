"""Continue the shipped product models' 2D modules side by side on one GPU, within a wall-clock budget.

    python scripts/train_products_gpu.py --out runs/gpu --seconds 420 --seed 2 --n-annotated 12000 --workers 3

One process per category, all at once: render the category's ``annotated2d`` world (``--workers``
render processes each; ``--seed`` chooses a world sample the shipped models never saw), wait until
every category has rendered (so that all share the GPU alike while they train), train the 2D module
one epoch from the shipped model's weights, then extend the run to as many epochs as the budget
allows at that measured epoch time (cosine schedule over the extended run; the engine resumes, so
the first epoch is kept) and write ``<out>/<category>/keypoint_net.pt``. On a CPU machine,
``train_product.py --keypoint-checkpoint`` composes it with the shipped lifter, calibrates, measures
and exports it. ``--copy-to DIR`` copies each category's best 2D module there after every epoch, so
a run cut short still leaves its best weights; ``DIR/summary.json`` gets the epochs, times and
validation of every category.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import train_product  # noqa: E402  (the recipe this continues)

CATEGORIES = ("chair", "swivelchair", "table", "bed", "sofa")
# the shipped recipe's per-category choice (README): the chair trains on uniform views
CATEGORY_OVERRIDES = {"chair": ["world.keypoint5_share=0.0"]}
MAX_EPOCHS = 40


def _overrides(args, category: str) -> list[str]:
    return CATEGORY_OVERRIDES.get(category, []) + [
        f"world.n_annotated2d={args.n_annotated}", f"train.pretrain_2d.lr={args.lr}", f"train.device={args.device}",
        f"train.pretrain_2d.amp={'true' if args.device.startswith('cuda') else 'false'}",
    ] + args.overrides


def _snapshot(stage_dir: Path, out: Path, cfg, category: str, init_info: dict, copy_to: Path | None) -> None:
    """The best 2D module so far as a portable checkpoint, in the run folder and ``copy_to``."""
    from interp3d.io_utils import atomic_path

    history = json.loads((stage_dir / "history.json").read_text())
    written = train_product.write_keypoint_checkpoint(stage_dir / "best.pt", history, out, cfg, category, init_info)
    if copy_to is not None:
        with atomic_path(copy_to / f"{category}.pt") as tmp:
            shutil.copyfile(written, tmp)


def _initial_weights(init_dir: Path | None, category: str) -> tuple[dict, dict]:
    """The 2D module to continue: the shipped model's, or ``init_dir/<category>.pt`` (a portable
    checkpoint of an earlier run, whose own start and history the new header keeps)."""
    if init_dir is None:
        return train_product._initial_2d(train_product.ROOT / "src" / "interp3d" / "pretrained" / f"{category}.safetensors", category)
    state = train_product._trained_elsewhere(init_dir / f"{category}.pt", category)
    return state["model"], {
        "model": f"{category}.pt", "seed": state.get("seed"), "n_annotated2d": state["config"]["world"]["n_annotated2d"],
        "epochs": len(state["history"]), "device": state.get("device"), "validation_pretrain_2d": state.get("best_record"),
        "train_seconds": state.get("seconds"), "init_2d": state.get("init_2d"),
    }


def _warm_up(cfg, category: str, init_state: dict, steps: int = 30) -> None:
    """Throwaway training steps on a copy of the 2D module, so that the timed first epoch does not
    pay CUDA's start-up and cuDNN's autotuning (on the H100 the first epoch took 51 s, the next
    ones 20 s, and the budget was fitted to the 51)."""
    import torch

    from interp3d.shape_model import get_category
    from interp3d.train.engine import resolve_device
    from interp3d.train.stages import keypoint_net_of

    device, mc = resolve_device(cfg.train.device), cfg.model
    net = keypoint_net_of(cfg, get_category(category))
    net.load_state_dict(init_state)
    net = net.to(device, memory_format=torch.channels_last).train()
    optimiser = torch.optim.Adam(net.parameters(), 1e-9)
    images = torch.rand(cfg.train.pretrain_2d.batch_size, 3, mc.image_size, mc.image_size, device=device).contiguous(memory_format=torch.channels_last)
    for _ in range(steps):
        with torch.autocast(device_type=device.type, enabled=cfg.train.pretrain_2d.amp and device.type == "cuda"):
            heatmaps, view_logits = net(images, with_view=True)
            loss = sum(h.float().square().mean() for h in heatmaps) + view_logits.float().square().mean()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        net.eval()(images)
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_category(args) -> None:
    import torch

    from interp3d.train.stages import pretrain_2d

    torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN pick its fastest kernels
    category, out = args.category, args.out / args.category
    overrides = _overrides(args, category)
    cfg = train_product.product_config(category, args.photo_material, args.real_shapes, args.seed, overrides + ["train.pretrain_2d.epochs=1"])
    cad = train_product._cad_folder(category, args.real_shapes)
    started = time.time()
    world = train_product.render(cfg, category, out, cad, ("annotated2d",), workers=args.workers)["annotated2d"]
    render_s = time.time() - started
    print(f"[{category}] rendered {cfg.world.n_annotated2d} images in {render_s:.0f} s", flush=True)
    while not all((args.out / c / "world" / "annotated2d" / "meta.json").is_file() for c in args.categories):
        if time.time() > args.deadline - 60:
            break  # another category is stuck rendering: train anyway
        time.sleep(2)
    init_state, init_info = _initial_weights(args.init_dir, category)
    copy = lambda epoch: _snapshot(out / "pretrain_2d", out, cfg, category, init_info, args.copy_to)  # noqa: E731
    first = None
    epochs = args.epochs  # known from an earlier run on the same kind of machine: one schedule
    if not epochs:  # one epoch, then the schedule extended to what the budget allows at its pace
        if args.device.startswith("cuda"):
            _warm_up(cfg, category, init_state)
        first_start = time.time()
        first = pretrain_2d(cfg, category, world, out / "pretrain_2d", progress=False, init_state=init_state, on_epoch_end=copy)
        epoch_s = first.history[-1]["seconds"]
        load_s = time.time() - first_start - sum(h["seconds"] for h in first.history)  # reading the images: paid again on the extension
        epochs = max(1, min(MAX_EPOCHS, 1 + math.floor((args.deadline - time.time() - load_s) / (1.1 * epoch_s))))
        print(f"[{category}] first epoch {epoch_s:.1f} s (+{load_s:.0f} s loading): extending to {epochs} epochs", flush=True)
    cfg = train_product.product_config(category, args.photo_material, args.real_shapes, args.seed, overrides + [f"train.pretrain_2d.epochs={epochs}"])
    result = pretrain_2d(cfg, category, world, out / "pretrain_2d", progress=False, init_state=init_state, on_epoch_end=copy)
    first = first or result
    epoch_s = first.history[-1]["seconds"]  # the timed first epoch, or with --epochs the last one
    train_product.write_keypoint_checkpoint(result.best_checkpoint, result.history, out, cfg, category, init_info)
    n_train = cfg.world.n_annotated2d - round(cfg.world.n_annotated2d * cfg.train.val_fraction)
    summary = {
        "category": category, "epochs": epochs, "render_s": round(render_s, 1), "first_epoch_s": epoch_s,
        "train_s": round(sum(h["seconds"] for h in result.history), 1), "train_images_per_s_incl_validation": round(n_train / epoch_s, 1),
        "best": result.best_record, "start": first.history[0] if first.history else None,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=420, help="wall-clock budget from the start until the last epoch ends")
    parser.add_argument("--categories", nargs="+", default=list(CATEGORIES), choices=CATEGORIES)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--n-annotated", type=int, default=12000)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--workers", type=int, default=3, help="render processes per category")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--photo-material", type=Path, default=train_product.ROOT / "data" / "photo_material")
    parser.add_argument("--real-shapes", type=Path, default=train_product.ROOT.parent / "shared" / "data", help="a folder holding pascal3d_cad/ (CAD targets for chairs and tables)")
    parser.add_argument("--copy-to", type=Path)
    parser.add_argument("--init-dir", type=Path, help="continue <dir>/<category>.pt (an earlier run's portable checkpoints) instead of the shipped models")
    parser.add_argument("--epochs", type=int, help="train this many epochs in one schedule instead of fitting them to --seconds from the first epoch")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--category", help=argparse.SUPPRESS)  # one category's process
    parser.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.real_shapes = args.real_shapes if args.real_shapes.is_dir() else None
    if args.category:
        return run_category(args)
    args.out.mkdir(parents=True, exist_ok=True)
    deadline = time.time() + args.seconds
    forwarded = list(sys.argv[1:])
    procs = {}
    for category in args.categories:
        log = open(args.out / f"{category}.log", "w")
        procs[category] = subprocess.Popen([sys.executable, __file__, *forwarded, "--category", category, "--deadline", str(deadline)], stdout=log, stderr=subprocess.STDOUT)
    codes = {c: p.wait() for c, p in procs.items()}
    summaries = {}
    for category in args.categories:
        path = args.out / category / "summary.json"
        summaries[category] = json.loads(path.read_text()) if path.is_file() else {"failed": codes[category], "log_tail": (args.out / f"{category}.log").read_text()[-3000:]}
        print(f"--- {category} (exit {codes[category]})\n" + (args.out / f"{category}.log").read_text()[-2500:], flush=True)
    if args.copy_to:
        args.copy_to.mkdir(parents=True, exist_ok=True)
        (args.copy_to / "summary.json").write_text(json.dumps(summaries, indent=2))
    if any(codes.values()):
        raise SystemExit(f"failed: {[c for c, code in codes.items() if code]}")


if __name__ == "__main__":
    main()
