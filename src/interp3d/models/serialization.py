"""Saving and loading whole interpreters: training checkpoints, safetensors exports, packaged models.

* ``*.pt``: a training checkpoint of the ``finetune`` or ``video`` stage (``interp3d.checkpoint/1``).
* ``*.safetensors``: an exported model: weights (optionally float16, loaded back as float32) and a
  JSON header entry ``interp3d`` with the architecture, category and free-form ``info`` (how it was
  trained, its metrics). No pickle, so a downloaded file cannot run code.
* A bare name (``chair-cpu-small``, or a category such as ``chair``): a model shipped in
  ``interp3d/pretrained/``; :func:`pretrained_models` lists them.
"""

from __future__ import annotations

import json
import logging
import warnings
from importlib import resources
from pathlib import Path

import torch

from ..io_utils import CheckpointError, atomic_path, load_checkpoint
from ..shape_model import Category
from .interpreter import Interpreter

__all__ = ["build_interpreter", "keypoint_lifter_options", "export_interpreter", "export_onnx", "OnnxInterpreter", "load_interpreter", "pretrained_models", "read_model_info"]

EXPORT_FORMAT = "interp3d.model/1"
_PRETRAINED_PACKAGE = "interp3d.pretrained"


def build_interpreter(category: Category | str, model_config: dict, heatmap_size: int) -> Interpreter:
    """An untrained interpreter of the given architecture; it remembers ``model_config`` for export."""
    mc = model_config
    model = Interpreter.build(
        category, mc["image_size"], heatmap_size, mc["features"], mc["depth"], mc["stacks"], tuple(mc["lifter_widths"]), mc.get("dropout", 0.0),
        lifter=mc.get("lifter", "heatmap"), keypoint_lifter=keypoint_lifter_options(mc),
        backbone=mc.get("backbone", "hourglass"), decoder_channels=mc.get("decoder_channels", 96), view_bins=mc.get("view_bins", 0),
    )
    model.model_config = dict(mc)
    # the Gaussian width the heatmap lifter was trained on (synthetic.sigma); older files lack it:
    # the presets use 1 on 64x64 maps (paper) and 2 on 32x32 maps (cpu-small)
    model.heatmap_sigma = float(mc.get("heatmap_sigma", 1.0 if heatmap_size >= 64 else 2.0))
    return model


def keypoint_lifter_options(model_config: dict) -> dict:
    """:class:`KeypointLifter` keyword arguments from a model config (defaults where absent)."""
    mc = model_config
    return {"width": mc.get("keypoint_lifter_width", 512), "blocks": mc.get("keypoint_lifter_blocks", 2), "hypotheses": mc.get("lifter_hypotheses", 3), "dropout": mc.get("dropout", 0.0)}


def _architecture(model: Interpreter, model_config: dict | None) -> dict:
    mc = model_config if model_config is not None else getattr(model, "model_config", None)
    if mc is None:
        raise ValueError("export needs the model's config (model_config=...); models from build_interpreter/load_interpreter carry it")
    return {"category": model.category.name, "heatmap_size": model.heatmap_size, "model_config": dict(mc, lifter_widths=list(mc["lifter_widths"]))}


def export_interpreter(model: Interpreter, path: str | Path, half: bool = False, info: dict | None = None, model_config: dict | None = None) -> Path:
    """Write ``model`` as a safetensors file (atomically); ``half`` stores floating weights as float16."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    header = {"format": EXPORT_FORMAT, **_architecture(model, model_config), "info": info or {}}
    path = Path(path)
    with atomic_path(path, suffix=".safetensors") as tmp:
        save_file(state, str(tmp), metadata={"interp3d": json.dumps(header)})
    return path


def pretrained_models() -> dict[str, Path]:
    """Name -> file of the models shipped with the package."""
    folder = resources.files(_PRETRAINED_PACKAGE)
    return {Path(str(f)).stem: Path(str(f)) for f in folder.iterdir() if str(f).endswith(".safetensors")}


def _resolve(path_or_name: str | Path) -> Path:
    path = Path(path_or_name)
    if path.suffix in (".pt", ".safetensors") or path.is_file():
        return path
    shipped = pretrained_models()
    name = str(path_or_name)
    matches = [shipped[name]] if name in shipped else [p for n, p in sorted(shipped.items()) if n.split("-")[0] == name]
    if not matches:
        raise CheckpointError(f"{name!r}: neither a model file nor a shipped model (shipped: {', '.join(sorted(shipped)) or 'none'})")
    return matches[0]


def read_model_info(path_or_name: str | Path) -> dict:
    """The JSON header of an exported model (architecture, category, ``info``) without loading weights."""
    from safetensors import safe_open

    path = _resolve(path_or_name)
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
        header = json.loads(meta["interp3d"])
    except FileNotFoundError:
        raise CheckpointError(f"{path}: model file not found") from None
    except (KeyError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: safetensors file without an interp3d header ({exc})") from exc
    except Exception as exc:  # safetensors raises its own error type for corrupt files
        raise CheckpointError(f"{path}: corrupt or unreadable safetensors file ({exc})") from exc
    if header.get("format") != EXPORT_FORMAT:
        raise CheckpointError(f"{path}: format {header.get('format')!r}, expected {EXPORT_FORMAT!r}")
    return header


def load_interpreter(path_or_name: str | Path, device: str | torch.device = "cpu") -> Interpreter:
    """An :class:`Interpreter` in eval mode from a checkpoint, an exported file or a shipped model's name."""
    path = _resolve(path_or_name)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        header = read_model_info(path)
        model = build_interpreter(header["category"], header["model_config"], header["heatmap_size"])
        state = load_file(str(path))
        reference = model.state_dict()
        state = {k: v.to(reference[k].dtype) if k in reference else v for k, v in state.items()}
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: weights do not match the architecture in its header ({exc})") from exc
        model.info = header.get("info", {})
        return model.to(device).eval()
    state = load_checkpoint(path, map_location=device)
    if "model_config" not in state or state.get("kind") not in ("finetune", "video"):
        raise CheckpointError(f"{path}: holds a {state.get('kind')!r} stage, not a full interpreter (use a finetune or video checkpoint)")
    model = build_interpreter(state["category"], state["model_config"], state["heatmap_size"])
    model.load_state_dict(state["model"])
    model.info = {"checkpoint": str(path), "kind": state["kind"]}
    return model.to(device).eval()


class _Networks(torch.nn.Module):
    """The learned part (2D module + 2D-to-3D module); decoding and projection stay in torch."""

    def __init__(self, model: Interpreter):
        super().__init__()
        self.model = model

    def forward(self, images):
        all_heatmaps, view_logits = self.model.keypoint_net_outputs(images)
        heatmaps = all_heatmaps[-1]
        outputs = (heatmaps, self.model.lifter_forward(heatmaps))
        return outputs if view_logits is None else outputs + (view_logits,)


def export_onnx(model: Interpreter, path: str | Path) -> Path:
    """Write the networks of ``model`` as ONNX (dynamic batch): inputs ``images`` (B, 3, S, S) in [0, 1],
    outputs ``heatmaps``, ``params_normalised`` and, with a viewpoint head, ``view_logits``."""
    nets = _Networks(model).eval().cpu()
    example = torch.rand(1, 3, model.image_size, model.image_size)
    path = Path(path)
    batch = torch.export.Dim("batch", min=1, max=65536)
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    onnx_log.setLevel(logging.ERROR)  # the exporter logs optional-package notices (torchvision) as warnings
    try:
        with atomic_path(path, suffix=".onnx") as tmp, torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            torch.onnx.export(
                nets, (example.expand(2, -1, -1, -1),), str(tmp),  # batch 2: a batch of 1 would be specialised
                input_names=["images"], output_names=["heatmaps", "params_normalised"] + (["view_logits"] if model.view_bins else []),
                dynamic_shapes={"images": {0: batch}}, dynamo=True, verbose=False,
            )
    finally:
        onnx_log.setLevel(level)
    return path


class OnnxInterpreter:
    """Runs an interpreter's networks with ONNX Runtime (CPU: about 2x the eager channels_last model,
    see the benchmarks) and decodes/projects in torch; ``onnx(images, flip_test)`` returns what
    ``model(images, flip_test)`` does."""

    def __init__(self, model: Interpreter, threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ImportError("the onnxruntime backend needs: pip install onnx onnxruntime onnxscript (or interp3d[bench])") from exc
        import tempfile

        self.model = model.eval().cpu()
        with tempfile.TemporaryDirectory() as tmp:
            onnx_path = export_onnx(self.model, Path(tmp) / "interp3d.onnx")
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads or torch.get_num_threads()
            self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

    def __call__(self, images: torch.Tensor, flip_test: bool = False):
        from .interpreter import InterpreterOutput, merge_mirrored

        batch = images.detach().cpu().float()
        if flip_test:
            batch = torch.cat([batch, batch.flip(-1)])
        outputs = [torch.from_numpy(o) for o in self.session.run(None, {"images": batch.contiguous().numpy()})]
        heatmaps, normalised = outputs[:2]
        view_logits = outputs[2] if len(outputs) > 2 else None
        if flip_test:  # the lifter then reads the merged heatmaps (a heatmap lifter's output is recomputed in torch)
            (heatmaps,), view_logits = merge_mirrored([heatmaps], view_logits, self.model.category.flip_permutation, len(images))
            if not self.model.lifts_keypoints:
                with torch.no_grad():
                    normalised = self.model.lifter(heatmaps)
        # the keypoint lifter's hypotheses (for refinement) come from the tiny torch MLP on the ONNX heatmaps
        lifted = self.model.lift(heatmaps) if self.model.lifts_keypoints else self.model.decode(normalised)
        return InterpreterOutput(**vars(lifted), heatmaps=heatmaps, all_heatmaps=[heatmaps], view_logits=view_logits)
