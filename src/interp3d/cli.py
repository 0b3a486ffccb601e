"""The ``interp3d`` command line."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from . import __version__

app = typer.Typer(add_completion=False, no_args_is_help=True, help="interp3d: 3D object skeletons and camera pose from one image.")
config_app = typer.Typer(no_args_is_help=True, help="Inspect presets and resolved configurations.")
app.add_typer(config_app, name="config")
train_app = typer.Typer(no_args_is_help=True, help="Training stages (each a resumable run folder).")
app.add_typer(train_app, name="train")
world_app = typer.Typer(no_args_is_help=True, help="The rendered furniture world: images and videos with exact ground truth.")
app.add_typer(world_app, name="world")

PresetOpt = Annotated[str, typer.Option("--preset", "-p", help="Configuration preset: paper, cpu-small or product.")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="Override a config value, e.g. --set synthetic.n_train=5000.")]


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)


def _resolve(preset_name: str, overrides: list[str] | None, config_file: Path | None = None):
    from .config import Config, ConfigError, preset

    try:
        cfg = Config.load(config_file) if config_file else preset(preset_name)
        return cfg.override(overrides or [])
    except ConfigError as exc:
        _fail(str(exc))


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False) -> None:
    if version:
        typer.echo(__version__)
        raise typer.Exit()


@app.command()
def categories() -> None:
    """List the object categories and their skeletons."""
    from .shape_model import get_category, list_categories

    typer.echo(f"{'category':12s} {'N':>3s} {'K':>3s} {'params':>6s} {'plane':>5s}  source")
    for name in list_categories():
        c = get_category(name)
        typer.echo(f"{c.name:12s} {c.num_keypoints:3d} {c.num_bases:3d} {c.num_params:6d} {c.plane_size:5.0f}  {c.source}")


@config_app.command("show")
def config_show(preset_name: PresetOpt = "cpu-small", overrides: SetOpt = None, config_file: Annotated[Optional[Path], typer.Option("--file", help="A config JSON or run.json.")] = None) -> None:
    """Print the resolved configuration as JSON."""
    typer.echo(_resolve(preset_name, overrides, config_file).to_json())


@app.command()
def synth(
    category: Annotated[str, typer.Option("--category", "-c", help="Object category.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output .npz file.")],
    n: Annotated[int, typer.Option("--n", help="Number of skeletons.")] = 40_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    preset_name: PresetOpt = "paper",
    overrides: SetOpt = None,
    preview: Annotated[Optional[Path], typer.Option(help="Also write a PNG contact sheet of samples.")] = None,
) -> None:
    """Generate synthetic skeletons (parameters + 2D keypoints; heatmaps render on the fly)."""
    from .data.synthetic import SyntheticSkeletonDataset
    from .shape_model import get_category
    from .viz import synthetic_preview

    cfg = _resolve(preset_name, overrides)
    try:
        cat = get_category(category)
    except KeyError as exc:
        _fail(exc.args[0])
    start = time.perf_counter()
    ds = SyntheticSkeletonDataset(cat, n, seed=seed, options=cfg.synthetic.options())
    ds.save(out)
    typer.echo(f"{n} {cat.name} skeletons -> {out} ({time.perf_counter() - start:.1f}s)")
    if preview:
        synthetic_preview(ds, preview)
        typer.echo(f"preview -> {preview}")


@world_app.command("render")
def world_render(
    category: Annotated[str, typer.Option("--category", "-c", help="Object category.")],
    kind: Annotated[str, typer.Option("--kind", "-k", help="annotated2d, video or test3d.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Dataset folder (resumable).")],
    n: Annotated[Optional[int], typer.Option("--n", help="Images (or videos); default from the preset.")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    preset_name: PresetOpt = "cpu-small",
    overrides: SetOpt = None,
    preview: Annotated[bool, typer.Option(help="Write preview.png (a contact sheet) into the folder.")] = True,
    real_shapes: Annotated[Optional[Path], typer.Option(help="test3d: render PASCAL3D+ CAD models (folder of JSON) instead of procedural furniture.")] = None,
) -> None:
    """Render a world dataset; rerunning the same command resumes an interrupted render."""
    from dataclasses import replace

    from .data.world import KINDS, WorldDataset, WorldFormatError, render_world
    from .render.gl import RendererUnavailable
    from .shape_model import get_category
    from .viz import world_preview

    cfg = _resolve(preset_name, overrides)
    if kind not in KINDS:
        _fail(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
    try:
        cat = get_category(category)
    except KeyError as exc:
        _fail(exc.args[0])
    try:
        options = cfg.world.options(kind)
    except ValueError as exc:  # e.g. a photo-material folder that is not there
        _fail(str(exc))
    if n is not None:
        options = replace(options, count=n)
    if real_shapes is not None:
        if not real_shapes.is_dir():
            _fail(f"{real_shapes}: folder of PASCAL3D+ CAD JSON models not found")
        options = replace(options, real_shapes=str(real_shapes.resolve()))
    start = time.perf_counter()
    try:
        render_world(out, cat, options, seed=seed, config=cfg.to_dict())
    except (WorldFormatError, RendererUnavailable) as exc:
        _fail(str(exc))
    ds = WorldDataset(out)
    elapsed = time.perf_counter() - start
    typer.echo(f"{len(ds)} {cat.name} {kind} images -> {out} ({elapsed:.1f}s)")
    if preview:
        typer.echo(f"preview -> {world_preview(ds, out / 'preview.png')}")


@world_app.command("import-keypoint5")
def world_import_keypoint5(
    root: Annotated[Path, typer.Option(help="Keypoint-5 root (holding <category>/coords.mat and images/).")],
    category: Annotated[str, typer.Option("--category", "-c", help="Object category.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="World-format annotated2d folder to write.")],
    split: Annotated[str, typer.Option(help="train, val or all.")] = "all",
    image_size: Annotated[int, typer.Option(help="Side of the square crops.")] = 256,
) -> None:
    """Convert Keypoint-5 (real images, 2D keypoints) to the world format used by the training stages."""
    from .data.keypoint5 import convert_keypoint5

    folder = _run_guarded(lambda: convert_keypoint5(root, category, out, split, image_size))
    typer.echo(f"Keypoint-5 {category} {split} -> {folder}")


@world_app.command("import-pascal3d")
def world_import_pascal3d(
    root: Annotated[Path, typer.Option(help="PASCAL3D+ root (holding Annotations/, Images/, optionally CAD/).")],
    category: Annotated[str, typer.Option("--category", "-c", help="chair, sofa or table.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="World-format folder to write.")],
    subset: Annotated[str, typer.Option(help="pascal or imagenet.")] = "pascal",
    ids: Annotated[Optional[Path], typer.Option(help="File listing the record ids to keep (e.g. VOC val.txt).")] = None,
    image_size: Annotated[int, typer.Option(help="Side of the square crops.")] = 256,
    include_difficult: Annotated[bool, typer.Option(help="Keep objects marked difficult.")] = False,
    include_truncated: Annotated[bool, typer.Option(help="Keep truncated objects.")] = True,
    include_occluded: Annotated[bool, typer.Option(help="Keep occluded objects.")] = True,
) -> None:
    """Convert PASCAL3D+ objects (real images, anchors, viewpoint; CAD structure when CAD/ is present) for `evaluate`."""
    from .data.pascal3d import convert_pascal3d

    folder = _run_guarded(
        lambda: convert_pascal3d(
            root, category, out, subset, ids, image_size,
            include_difficult=include_difficult, include_truncated=include_truncated, include_occluded=include_occluded,
        )
    )
    typer.echo(f"PASCAL3D+ {category} ({subset}) -> {folder}")


@world_app.command("import-videos")
def world_import_videos(
    root: Annotated[Path, typer.Option(help="Folder with one sub-folder of frames per sequence (+ optional categories.txt).")],
    category: Annotated[str, typer.Option("--category", "-c", help="Object category.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="World-format video folder to write.")],
    length: Annotated[int, typer.Option(help="Frames per sequence after subsampling (paper: 36).")] = 36,
    fps_in: Annotated[int, typer.Option(help="Recording frame rate.")] = 30,
    fps_out: Annotated[int, typer.Option(help="Subsampled frame rate (paper: 5).")] = 5,
    image_size: Annotated[int, typer.Option(help="Side of the square frames.")] = 256,
) -> None:
    """Import real object videos (category label only) for `train video`."""
    from .data.videos import import_video_folders

    folder = _run_guarded(lambda: import_video_folders(root, category, out, length, fps_in, fps_out, image_size))
    typer.echo(f"videos -> {folder}")


CategoryOpt = Annotated[str, typer.Option("--category", "-c", help="Object category.")]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Run folder (resumable).")]
ResumeOpt = Annotated[bool, typer.Option("--resume/--no-resume", help="Continue from the folder's last checkpoint.")]


def _run_guarded(fn):
    from .data.world import WorldFormatError
    from .train.engine import CheckpointError

    try:
        return fn()
    except (WorldFormatError, CheckpointError, FileNotFoundError, KeyError, ValueError) as exc:
        _fail(exc.args[0] if exc.args else str(exc))


@train_app.command("pretrain-2d")
def train_pretrain_2d(category: CategoryOpt, world: Annotated[Path, typer.Option(help="annotated2d world folder.")], out: OutOpt, preset_name: PresetOpt = "cpu-small", overrides: SetOpt = None, resume: ResumeOpt = True) -> None:
    """The 2D module (model.backbone) on 2D-annotated images (MSE on heatmaps)."""
    from .train.stages import pretrain_2d

    cfg = _resolve(preset_name, overrides)
    r = _run_guarded(lambda: pretrain_2d(cfg, category, world, out, resume=resume))
    typer.echo(f"best val PCK {r.best_metric:.2f} (epoch {r.best_epoch}) -> {r.best_checkpoint}")


@train_app.command("pretrain-3d")
def train_pretrain_3d(category: CategoryOpt, out: OutOpt, preset_name: PresetOpt = "cpu-small", overrides: SetOpt = None, resume: ResumeOpt = True) -> None:
    """2D-to-3D module on synthetic heatmaps (L1 on normalised parameters)."""
    from .train.stages import pretrain_3d

    cfg = _resolve(preset_name, overrides)
    r = _run_guarded(lambda: pretrain_3d(cfg, category, out, resume=resume))
    typer.echo(f"best val L1 {r.best_metric:.4f} (epoch {r.best_epoch}) -> {r.best_checkpoint}")


@train_app.command("pretrain-lift")
def train_pretrain_lift(
    category: CategoryOpt, out: OutOpt, preset_name: PresetOpt = "cpu-small", overrides: SetOpt = None, resume: ResumeOpt = True,
    real_shapes: Annotated[Optional[Path], typer.Option(help="Folder with real 3D shapes in the layout of ../shared/data (keypointnet_chair/, pascal3d_cad/).")] = None,
) -> None:
    """Keypoint lifter on 2D keypoints as real inputs look (visibility, truncation, noise; real shapes)."""
    from .train.stages import pretrain_lift

    cfg = _resolve(preset_name, (overrides or []) + ([f"lift.real_shapes={real_shapes}"] if real_shapes else []))
    r = _run_guarded(lambda: pretrain_lift(cfg, category, out, resume=resume))
    rec = r.best_record
    typer.echo(f"best val structure AR {rec['structure_ar']:.2f}, azimuth AR {rec['azimuth_ar']:.2f} (epoch {r.best_epoch}) -> {r.best_checkpoint}")


@train_app.command("finetune")
def train_finetune(
    category: CategoryOpt,
    world: Annotated[Path, typer.Option(help="annotated2d world folder.")],
    hourglass: Annotated[Path, typer.Option(help="pretrain-2d checkpoint.")],
    lifter: Annotated[Path, typer.Option(help="pretrain-3d checkpoint.")],
    out: OutOpt,
    preset_name: PresetOpt = "cpu-small",
    overrides: SetOpt = None,
    resume: ResumeOpt = True,
) -> None:
    """Whole interpreter with the re-projection loss (Eq. 2): the baseline."""
    from .train.stages import finetune

    cfg = _resolve(preset_name, overrides)
    r = _run_guarded(lambda: finetune(cfg, category, world, hourglass, lifter, out, resume=resume))
    typer.echo(f"best val re-projection PCK {r.best_metric:.2f} (epoch {r.best_epoch}) -> {r.best_checkpoint}")


@train_app.command("baseline")
def train_baseline(category: CategoryOpt, out: OutOpt, preset_name: PresetOpt = "cpu-small", overrides: SetOpt = None) -> None:
    """Render the annotated2d world if needed, then pretrain-2d, pretrain-3d and finetune in OUT."""
    from .pipeline import train_baseline as run

    cfg = _resolve(preset_name, overrides)
    ckpt = _run_guarded(lambda: run(cfg, category, out, echo=typer.echo))
    typer.echo(f"baseline -> {ckpt}")


@train_app.command("video")
def train_video_cmd(
    category: CategoryOpt,
    world: Annotated[Path, typer.Option(help="annotated2d world folder (2D loss).")],
    videos: Annotated[Path, typer.Option(help="video world folder (category labels only are used).")],
    val: Annotated[Path, typer.Option(help="validation folder with 3D ground truth (not the test set).")],
    init: Annotated[Path, typer.Option(help="Baseline (finetune) checkpoint to start from.")],
    out: OutOpt,
    curriculum: Annotated[bool, typer.Option("--curriculum/--fixed", help="Clip lengths video.curriculum, or video.fixed_length.")] = True,
    preset_name: PresetOpt = "cpu-small",
    overrides: SetOpt = None,
    resume: ResumeOpt = True,
    bootstrap_rounds: Annotated[int, typer.Option("--bootstrap-rounds", min=0, help="Then this many rounds of multi-frame bootstrapping: pseudo-label the videos by fitting each as one rigid object, fine-tune the 2D module on them, re-run the video stage (INIT: a video or finetune checkpoint).")] = 0,
) -> None:
    """Semi-supervised learning on videos (structure consistency, motion smoothness, confidence re-projection)."""
    from .train.video import train_video

    cfg = _resolve(preset_name, overrides)
    vc = cfg.video
    lengths = tuple(vc.curriculum) if curriculum else (vc.fixed_length,)
    epochs = vc.epochs_per_length if curriculum else vc.fixed_total_epochs()
    if bootstrap_rounds:
        from .train.bootstrap import train_bootstrap

        r = _run_guarded(lambda: train_bootstrap(cfg, category, world, videos, val, init, out, lengths, epochs, rounds=bootstrap_rounds, resume=resume))
        typer.echo(f"best validation mean AR {r.best_metric:.2f} (round {r.best_record.get('bootstrap_round')}) -> {r.best_checkpoint}")
        return
    r = _run_guarded(lambda: train_video(cfg, category, world, videos, val, init, out, lengths, epochs, resume=resume))
    typer.echo(f"best validation mean AR {r.best_metric:.2f} -> {r.best_checkpoint}")


@train_app.command("video-search")
def train_video_search(
    category: CategoryOpt,
    world: Annotated[Path, typer.Option(help="annotated2d world folder.")],
    videos: Annotated[Path, typer.Option(help="video world folder.")],
    val: Annotated[Path, typer.Option(help="validation folder with 3D ground truth (not the test set).")],
    init: Annotated[Path, typer.Option(help="Baseline checkpoint.")],
    out: OutOpt,
    lengths: Annotated[str, typer.Option(help="Clip lengths to try, comma separated.")] = "3,5,7,9,11,13,15",
    weights: Annotated[Optional[list[str]], typer.Option("--weights", help='A named weight set, e.g. strong:w_alpha=100,w_focal=100 (repeatable).')] = None,
    preset_name: PresetOpt = "cpu-small",
    overrides: SetOpt = None,
) -> None:
    """Grid search of clip length and loss weights on the validation world (the paper's protocol)."""
    from .pipeline import video_grid_search

    cfg = _resolve(preset_name, overrides)
    sets: dict[str, dict[str, float]] = {"default": {}}
    for spec in weights or []:
        name, _, body = spec.partition(":")
        try:
            sets[name] = {k.strip(): float(v) for k, v in (kv.split("=") for kv in body.split(",") if kv)}
        except ValueError:
            _fail(f"--weights {spec!r} must look like name:w_alpha=100,w_focal=100")
    try:
        length_list = tuple(int(v) for v in lengths.split(","))
    except ValueError:
        _fail(f"--lengths must be comma-separated integers, got {lengths!r}")
    report = _run_guarded(lambda: video_grid_search(cfg, category, {"annotated2d": world, "video": videos, "val3d": val}, init, out, length_list, sets, echo=typer.echo))
    typer.echo(Path(report).read_text())


@app.command()
def ablation(
    out: OutOpt = Path("runs/ablation"),
    categories: Annotated[Optional[list[str]], typer.Option("--category", "-c", help="Categories (default chair and sofa).")] = None,
    preset_name: PresetOpt = "cpu-small",
    overrides: SetOpt = None,
    seeds: Annotated[int, typer.Option("--seeds", min=1, help="Train every variant from this many seeds (seed, seed+1, ...) and report means, spreads and seed-covering gain intervals.")] = 1,
    bootstrap_rounds: Annotated[int, typer.Option("--bootstrap-rounds", min=0, help="Add the Video+Curriculum+Bootstrap row: this many bootstrapping rounds after the curriculum (video.bootstrap_rounds).")] = 0,
) -> None:
    """Baseline / Video / Video+Curriculum (/ +Bootstrap) on the rendered world: the paper's Table 2."""
    from .pipeline import run_ablation, run_ablation_seeds

    cfg = _resolve(preset_name, (overrides or []) + ([f"video.bootstrap_rounds={bootstrap_rounds}"] if bootstrap_rounds else []))
    cats = tuple(categories or ("chair", "sofa"))
    if seeds > 1:
        report = _run_guarded(lambda: run_ablation_seeds(cfg, out, [cfg.seed + i for i in range(seeds)], cats, echo=typer.echo))
    else:
        report = _run_guarded(lambda: run_ablation(cfg, out, cats, echo=typer.echo))
    typer.echo(Path(report).read_text())


@app.command()
def evaluate(
    model: Annotated[Path, typer.Option("--model", "-m", help="Interpreter checkpoint (finetune or later).")],
    data: Annotated[Path, typer.Option("--data", "-d", help="World-format dataset folder.")],
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder for metrics.json, per_object.csv and recall curves.")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, ...")] = "cpu",
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON instead of a table.")] = False,
    refine: Annotated[bool, typer.Option(help="Add test-time refinement of structure and camera to the heatmap keypoints.")] = False,
    flip_test: Annotated[bool, typer.Option(help="Average the 2D module's outputs with the mirrored images'.")] = False,
) -> None:
    """Evaluate a model: 3D structure and azimuth average recall, viewpoint bins, PCK (PCP/AE with
    annotator spreads); writes metrics.json, per_object.csv and recall plots with --out."""
    from .evaluation.evaluate import format_metrics
    from .pipeline import evaluate_to_folder

    result = _run_guarded(lambda: evaluate_to_folder(model, data, out, device=device, refine=refine, flip_test=flip_test))
    typer.echo(json.dumps(dict(result), indent=2) if as_json else format_metrics(result))


@app.command()
def models(as_json: Annotated[bool, typer.Option("--json", help="Print the full headers as JSON.")] = False) -> None:
    """List the models shipped with interp3d, how they were trained and their test metrics."""
    from .models.serialization import pretrained_models, read_model_info

    for name, path in sorted(pretrained_models().items()):
        header = read_model_info(path)
        if as_json:
            typer.echo(json.dumps({"name": name, "path": str(path), **header}, indent=2))
            continue
        info = header.get("info", {})
        mc = header["model_config"]
        head = f" with a {mc['view_bins']}-bin viewpoint head" if mc.get("view_bins") else ""
        typer.echo(f"{name}: {header['category']}, {mc.get('backbone', 'hourglass')} 2D module{head}, {mc['image_size']} px input, {header['heatmap_size']}^2 heatmaps, "
                   f"{path.stat().st_size / 2**20:.1f} MB ({path})")
        if info.get("trained_on"):
            typer.echo(f"  trained on: {info['trained_on']}")
        for what, text in info.get("data", {}).items():
            if isinstance(text, str):
                typer.echo(f"  {what}: {text}")
        if info.get("recipe"):
            typer.echo(f"  recipe: {info['recipe']} (preset {info.get('preset', '?')}, seed {info.get('seed', '?')})")
        for label, m in info.get("test3d_metrics", {}).items():
            typer.echo(f"  {label}: structure AR {m['structure']['average_recall']:.1f} %, azimuth AR {m['azimuth']['average_recall']:.1f} % "
                       f"(median {m['azimuth']['median_deg']:.1f} deg) on the rendered test3d world")
        if mc.get("lifter") == "keypoints":
            lifter = info.get("lifter", {})
            typer.echo(f"  2D-to-3D module: keypoint lifter ({mc.get('keypoint_lifter_width')} wide, {mc.get('lifter_hypotheses')} hypotheses; "
                       f"{lifter.get('real_shapes', '?')}), refinement {'on' if info.get('refine_default') else 'off'} by default")
        if info.get("encoder_mix"):
            typer.echo(f"  encoder: mixed {info['encoder_mix']['alpha']:.0%} back to its ImageNet weights (WiSE-FT)")
        if "peak_threshold" in info or info.get("refine_options"):
            options = ", ".join(f"{k} {v}" for k, v in (info.get("refine_options") or {}).items())
            typer.echo(f"  fit: peak threshold {info.get('peak_threshold', '?')}" + (f", refinement {options}" if options else ""))
        for data, block in info.get("lifting_benchmark", {}).items():
            best = (block or {}).get("results", {}).get("module + refinement")
            if best:
                typer.echo(f"  lifting {data}: structure AR {best['structure_ar']:.1f} %, azimuth AR {best['azimuth_ar']:.1f} % (median {best['azimuth_median_deg']:.1f} deg), module + refinement")


def _load_predictor(model: str | None, category: str | None, **options):
    """The Predictor of ``model`` (default: the shipped model of ``category``, else the chair's); fails
    cleanly on a bad file, an unknown category or a model of another category."""
    from .inference import Predictor
    from .shape_model import get_category
    from .train.engine import CheckpointError

    wanted = None
    if category is not None:
        try:
            wanted = get_category(category)
        except KeyError as exc:
            _fail(exc.args[0])
    try:
        predictor = Predictor.load(model or (wanted.name if wanted else "chair"), **options)
    except (CheckpointError, FileNotFoundError, ValueError, ImportError) as exc:
        _fail(str(exc))
    if wanted is not None and predictor.model.category.name != wanted.name:
        _fail(f"model {model!r} is a {predictor.model.category.name} model, not {wanted.name}")
    return predictor


@app.command()
def predict(
    inputs: Annotated[list[Path], typer.Argument(help="Images, folders of images, or videos (mp4, avi, ...).")],
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="A checkpoint (.pt), an exported model (.safetensors) or a shipped model's name (see `interp3d models`); default: the category's shipped model.")] = None,
    category: Annotated[Optional[str], typer.Option("--category", "-c", help="Object category (chair, swivelchair, table, bed, sofa): picks its shipped model.")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: a JSON and a figure per input.")] = Path("predictions"),
    box: Annotated[Optional[str], typer.Option(help="Crop box x0,y0,x1,y1 in input pixels.")] = None,
    smooth: Annotated[bool, typer.Option(help="Videos / frame folders: median structure and smoothed pose over time.")] = False,
    device: Annotated[str, typer.Option(help="cpu, cuda, ...")] = "cpu",
    backend: Annotated[str, typer.Option(help="torch, or onnxruntime (CPU, about 2x faster; needs the onnxruntime package).")] = "torch",
    figures: Annotated[bool, typer.Option(help="Write a figure per input.")] = True,
    refine: Annotated[Optional[bool], typer.Option("--refine/--no-refine", help="Test-time refinement of structure and camera (default: the model's recommendation).")] = None,
    flip_test: Annotated[Optional[bool], typer.Option("--flip-test/--no-flip-test", help="Average the 2D module's outputs with the mirrored image's (twice its cost; default: the model's recommendation).")] = None,
    auto_crop: Annotated[Optional[bool], typer.Option("--auto-crop/--no-auto-crop", help="Images without --box: search crops for one that frames a small object whole and answer from it (default: the model's recommendation).")] = None,
    auto_crop_scales: Annotated[Optional[str], typer.Option(help="The auto-crop's window sides as fractions of the image's shorter side, e.g. 0.8,0.55,0.4 for objects a fifth to a third of the image wide (default 0.8,0.55).")] = None,
) -> None:
    """Recover 3D skeletons and camera pose from images and videos; a bad file is reported and skipped."""
    from tqdm import tqdm

    from .inference import IMAGE_SUFFIXES, VIDEO_SUFFIXES, InputError, load_rgb
    from .viz import contact_sheet, prediction_figure

    crop = None
    if box:
        try:
            crop = [float(v) for v in box.split(",")]
            assert len(crop) == 4
        except (ValueError, AssertionError):
            _fail(f"--box must be x0,y0,x1,y1, got {box!r}")
    scales = None
    if auto_crop_scales:  # their range is the Predictor's check (_load_predictor reports it)
        try:
            scales = [float(v) for v in auto_crop_scales.split(",")]
        except ValueError:
            _fail(f"--auto-crop-scales must be fractions in (0, 1] separated by commas, got {auto_crop_scales!r}")
    predictor = _load_predictor(model, category, device=device, backend=backend, refine=refine, flip_test=flip_test, auto_crop=auto_crop,
                                auto_crop_scales=scales)
    category = predictor.model.category
    files: list[Path] = []
    for item in inputs:
        if item.is_dir() and not smooth:
            files += sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
        else:
            files.append(item)
    out.mkdir(parents=True, exist_ok=True)
    failures = []
    for path in tqdm(files, desc="predict", unit="input", disable=None):
        stem = path.stem if path.is_file() else path.name
        try:
            preds = predictor.predict(path, box=crop, smooth=smooth)
        except InputError as exc:
            failures.append(str(exc))
            typer.secho(f"skipped: {exc}", fg=typer.colors.YELLOW, err=True)
            continue
        payload = [p.to_dict() for p in preds]
        from .io_utils import atomic_write_text

        atomic_write_text(out / f"{stem}.json", json.dumps(payload if len(payload) > 1 else payload[0], indent=2))
        if figures:
            is_video = path.suffix.lower() in VIDEO_SUFFIXES or path.is_dir()
            if is_video:
                step = max(1, len(preds) // 12)
                shown = preds[::step][:12]
                frames = _video_frames(path, [p.frame for p in shown])
                contact_sheet(frames, [p.reprojected_2d for p in shown], category, out / f"{stem}_frames.png", titles=[f"frame {p.frame}: az {p.azimuth_deg % 360:.0f}" for p in shown])
                prediction_figure(frames[0], shown[0], category, out / f"{stem}.png")
            else:
                prediction_figure(load_rgb(path), preds[0], category, out / f"{stem}.png")
    typer.echo(f"{len(files) - len(failures)} of {len(files)} inputs -> {out}")
    if failures:
        typer.echo(f"{len(failures)} failed:\n  " + "\n  ".join(failures))
        raise typer.Exit(code=1)


@app.command()
def lift(
    file: Annotated[Path, typer.Argument(help="2D keypoints: .json, .csv or .npz (format: interp3d.data.keypoints_io).")],
    category: Annotated[Optional[str], typer.Option(help="Object category (default: the file's, else the model's).")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Model file or shipped name (default: the category's shipped model).")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: predictions.json and a figure per object.")] = Path("lifted"),
    refine: Annotated[Optional[bool], typer.Option("--refine/--no-refine", help="Test-time refinement (default: the model's recommendation).")] = None,
    figures: Annotated[int, typer.Option(help="Write figures for at most this many objects (0: none).")] = 20,
) -> None:
    """Lift 2D keypoints (e.g. your own detector's) to a 3D skeleton and camera pose; bad rows are
    reported and skipped (exit code 1)."""
    from .data.keypoints_io import KeypointFileError, read_keypoints_file
    from .inference import InputError, Predictor, check_keypoints
    from .io_utils import atomic_write_json
    from .shape_model import get_category
    from .train.engine import CheckpointError
    from .viz import prediction_figure

    try:
        predictor = Predictor.load(model or category or "chair", refine=refine)
    except (CheckpointError, FileNotFoundError, ValueError, KeyError) as exc:
        _fail(str(exc))
    cat = predictor.model.category
    if category is not None:
        try:
            wanted = get_category(category)
        except KeyError as exc:
            _fail(exc.args[0] if exc.args else str(exc))
        if wanted.name != cat.name:
            _fail(f"model {model!r} is a {cat.name} model, not {wanted.name}")
    try:
        records = read_keypoints_file(file, cat)
    except KeypointFileError as exc:
        _fail(str(exc))
    if records.category is not None and records.category != cat.name:
        _fail(f"{file}: holds {records.category!r} keypoints but the model is a {cat.name} model (use --category / --model)")
    problems = list(records.problems)
    try:
        _, _, row_problems = check_keypoints(records.keypoints, cat, records.visible, records.confidence)
    except InputError as exc:
        _fail(f"{file}: {exc}")
    bad = {r for r, _ in row_problems}
    problems += [(records.ids[r], msg) for r, msg in row_problems]
    good = [i for i in range(len(records.ids)) if i not in bad]
    preds = []
    if good:
        preds = predictor.lift(records.keypoints[good], records.visible[good], records.confidence[good], sources=[records.ids[i] for i in good])
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "predictions.json", {"source": str(file), "category": cat.name, "predictions": [p.to_dict() for p in preds], "skipped": [{"id": i, "problem": m} for i, m in problems]})
    for p in preds[: max(figures, 0)]:
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in p.source)[:80] or "object"
        prediction_figure(None, p, cat, out / f"{safe}.png")
    typer.echo(f"{len(preds)} of {len(records.ids) + len(records.problems)} objects lifted -> {out / 'predictions.json'}")
    if problems:
        typer.echo(f"{len(problems)} skipped:\n  " + "\n  ".join(f"{oid}: {msg}" for oid, msg in problems))
        raise typer.Exit(code=1)


def _video_frames(path: Path, indices: list[int]):
    from .inference import IMAGE_SUFFIXES, load_rgb

    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        return [load_rgb(files[i]) for i in indices]
    import imageio.v3 as iio
    import numpy as np

    wanted, frames = set(indices), {}
    for i, frame in enumerate(iio.imiter(path, plugin="pyav")):
        if i in wanted:
            frames[i] = np.asarray(frame)[..., :3]
    return [frames[i] for i in indices]


@app.command()
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder (resumable).")] = Path("runs/demo"),
    preset_name: PresetOpt = "cpu-small",
    overrides: SetOpt = None,
) -> None:
    """The main job on the embedded default: build the data of the chosen preset and write a report."""
    from .pipeline import run_demo

    cfg = _resolve(preset_name, overrides)
    report = run_demo(cfg, out, echo=typer.echo)
    typer.echo(f"report -> {report}")


def main() -> None:  # console-script entry point
    app()


if __name__ == "__main__":
    main()
