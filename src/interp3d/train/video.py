"""Semi-supervised learning on weakly labelled videos (paper Sec. 3.2), with a curriculum over clip
lengths (3 -> 7 -> 11 -> 15).

Each training set cuts every video into non-overlapping clips of M frames; each clip v is a
sequence with latent variables h_v = {alpha_c, f_c}. Training alternates: at the start of every
epoch the latents are set with the network fixed (per-dimension mean for the first
``mean_phase_epochs`` epochs, the median afterwards: the exact L1 minimiser of Eq. 3), then the
network is updated with the latents fixed on batches mixing 2D-annotated images (L_kp, Eq. 2) and
clips (L_st + L_ms + L_rp, Eqs. 3-5). With the hourglass frozen (the paper's choice) its heatmaps
are computed once and cached, and only the 2D-to-3D module trains.

Videos are read through :class:`interp3d.data.world.VideoDataset`: frames and a category label, no
ground truth. Model selection uses a separate validation set with 3D ground truth (never the test set).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from torch import Tensor
from torch.nn import functional as F

from .. import geometry
from ..config import Config
from ..data.world import VideoDataset
from ..evaluation.evaluate import evaluate_interpreter
from ..heatmaps import heatmap_peaks, peak_confidence, render_heatmaps
from ..io_utils import atomic_write_json, link_or_copy
from ..models.serialization import build_interpreter
from ..shape_model import get_category
from .engine import StageResult, load_checkpoint, resolve_device, run_stage
from .losses import confidence_reprojection_loss, motion_smoothness_loss, range_loss, reprojection_loss, structure_consistency_loss, update_latents
from .stages import AnnotatedImages, annotated_splits, freeze_view_head, predict_batches

__all__ = ["train_video", "finished_video", "VideoFrames"]

RESULT_FILE = "result.json"  # written last by a finished curriculum: a rerun returns it


class VideoFrames:
    """All frames of a video folder in memory (uint8, ``(V, J, 3, S, S)``); category label only."""

    def __init__(self, root: str | Path, image_size: int):
        probe = VideoDataset(root, clip_length=1)
        lengths = {len(v["frames"]) for v in probe.videos}
        if len(lengths) != 1:
            raise ValueError(f"{root}: videos of different lengths {sorted(lengths)}; cut them to one length first")
        (length,) = lengths
        whole = VideoDataset(root, clip_length=length, stride=length)
        self.category = get_category(probe.meta["category"])
        videos = []
        for k in range(len(whole)):
            clip = whole[k]["frames"]
            if clip.shape[-1] != image_size:
                clip = torch.nn.functional.interpolate(clip, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
            videos.append((clip * 255).round().clamp(0, 255).to(torch.uint8))
        self.frames = torch.stack(videos)

    def clips(self, length: int) -> Tensor:
        """Indices ``(C, length)`` into the flattened frames: non-overlapping clips of every video."""
        v, j = self.frames.shape[:2]
        if length > j:
            raise ValueError(f"clip length {length} exceeds the videos' {j} frames")
        starts = torch.arange(0, j - length + 1, length)
        idx = torch.arange(v)[:, None, None] * j + starts[None, :, None] + torch.arange(length)[None, None, :]
        return idx.reshape(-1, length)


def train_video(
    cfg: Config,
    category: str,
    annotated_root: str | Path,
    video_root: str | Path,
    val_root: str | Path,
    init_checkpoint: str | Path,
    out_dir: str | Path,
    lengths: tuple[int, ...],
    epochs_per_length: int,
    *,
    resume: bool = True,
    progress: bool = True,
) -> StageResult:
    """Train on videos with clips of each length in turn (one length = fixed-length training).

    Each length is a run folder ``out_dir/len{M:02d}`` that starts from the previous one's best
    checkpoint. The final model, ``out_dir/best.pt``, is the best on the validation set over all
    lengths (a later stage can end below an earlier one's best); each length's starting weights
    are its epoch 0, so no length hands on a model worse on validation than the one it got.
    Once done, the other lengths' weights are removed (``video.keep_length_weights`` keeps them;
    their histories stay) and ``out_dir/result.json`` lets a rerun return without loading anything.
    """
    if resume and (done := finished_video(out_dir, lengths, epochs_per_length)) is not None:
        if not cfg.video.keep_length_weights:  # a run killed while pruning finishes it
            _prune_lengths(Path(out_dir), lengths, done.best_record["clip_length"])
        return done
    category = get_category(category)
    device = resolve_device(cfg.train.device)
    vc = cfg.video
    size, hm = cfg.model.image_size, cfg.synthetic.heatmap_size
    images, _ = annotated_splits(cfg, category, annotated_root)
    videos = VideoFrames(video_root, size)
    if videos.category.name != category.name:
        raise ValueError(f"{video_root}: videos of {videos.category.name!r}, expected {category.name!r}")
    flat_frames = videos.frames.flatten(0, 1)
    val = AnnotatedImages(val_root, size, category)
    out_dir = Path(out_dir)
    start = Path(init_checkpoint)
    results: list[StageResult] = []
    for length in lengths:
        net = build_interpreter(category, asdict(cfg.model), hm)
        net.load_state_dict(load_checkpoint(start)["model"])
        net = net.to(device)
        freeze_view_head(net.keypoint_net)
        if vc.freeze_hourglass:
            net.keypoint_net.requires_grad_(False).eval()
            cache_frames = torch.cat([o[-1].float().cpu() for o in predict_batches(net.keypoint_net, flat_frames, device)])
            cache_images = torch.cat([o[-1].float().cpu() for o in predict_batches(net.keypoint_net, images.images, device)])
        clips = videos.clips(length)
        steps = max(1, len(clips) // vc.clips_per_batch)
        latents: dict[str, Tensor] = {}

        def heatmaps_of(source: str, idx: Tensor) -> Tensor:
            if vc.freeze_hourglass:
                return (cache_frames if source == "frames" else cache_images)[idx].to(device)
            data = flat_frames if source == "frames" else images.images
            return net.keypoint_net(data[idx].to(device).float().div_(255.0))[-1]

        def batches(epoch: int, clips=clips):
            # latent step (network fixed): per-clip mean early on, then the median
            net.eval()
            with torch.no_grad():
                norm = torch.cat([net.lift(heatmaps_of("frames", clips[i : i + 64].reshape(-1))).params_normalised.float() for i in range(0, len(clips), 64)])
            norm = norm.reshape(len(clips), length, -1)
            s = net.codec.slices
            latents["alpha"], latents["inv_focal"] = update_latents(norm[..., s["alpha"]], norm[..., s["inv_focal"]].squeeze(-1), use_median=epoch >= vc.mean_phase_epochs)
            # back to training mode for the network step; a frozen hourglass keeps its BatchNorm statistics
            net.train()
            if vc.freeze_hourglass:
                net.keypoint_net.eval()
            g = torch.Generator().manual_seed(cfg.seed * 31 + epoch)
            clip_order = torch.randperm(len(clips), generator=g)
            image_order = torch.randperm(len(images), generator=g)
            for b in range(steps):
                c = clip_order[b * vc.clips_per_batch : (b + 1) * vc.clips_per_batch]
                i = image_order[(b * vc.images_per_batch) % len(images) :][: vc.images_per_batch]
                yield c, i

        def loss_fn(model, batch, gen):
            clip_ids, image_ids = batch
            w = vc.weights()
            # 2D-annotated images: L_kp (+ heatmap MSE when asked, to anchor an unfrozen hourglass)
            image_heat = heatmaps_of("images", image_ids)
            lifted = net.lift(image_heat)
            gt = geometry.rescale_points(images.keypoints[image_ids].to(device), size, hm)
            # a keypoint projected from behind the camera is no fit at all (Lifted.in_front)
            visible = images.visible[image_ids].to(device)
            l_kp = reprojection_loss(lifted.keypoints.float(), gt, visible & lifted.in_front)
            l_hm = torch.zeros((), device=device)
            if vc.w_heatmap > 0 and not vc.freeze_hourglass:
                l_hm = F.mse_loss(image_heat.float(), render_heatmaps(gt, hm, cfg.synthetic.sigma, visible=visible, hidden_amplitude=cfg.train.hidden_amplitude))
            # clips: L_st + L_ms + L_rp with the latents fixed
            frame_idx = clips[clip_ids].reshape(-1)
            heat = heatmaps_of("frames", frame_idx)
            out = net.lift(heat)
            v, j = len(clip_ids), length
            s = net.codec.slices
            norm = out.params_normalised.float().reshape(v, j, -1)
            l_st = structure_consistency_loss(norm[..., s["alpha"]], norm[..., s["inv_focal"]].squeeze(-1), latents["alpha"][clip_ids].to(device), latents["inv_focal"][clip_ids].to(device), w.alpha, w.focal)
            l_ms = motion_smoothness_loss(norm[..., s["r6"]], norm[..., s["translation"]], w.rotation, w.translation)
            peaks, _ = heatmap_peaks(heat.detach())
            conf = peak_confidence(heat, vc.confidence_temperature)
            l_rp = confidence_reprojection_loss(out.keypoints.float(), peaks, conf * out.in_front, w.reprojection)
            l_range = range_loss(torch.cat([lifted.params_normalised, out.params_normalised]).float(), s)
            loss = w.kp * l_kp + l_st + l_ms + l_rp + vc.w_heatmap * l_hm + vc.w_range * l_range
            return loss, {"l_kp": l_kp.item(), "l_st": l_st.item(), "l_ms": l_ms.item(), "l_rp": l_rp.item(), "l_hm": l_hm.item(), "l_range": l_range.item()}

        def validate(core):
            r = evaluate_interpreter(core, val, device=device)
            return {"structure_ar": r["structure"]["average_recall"], "azimuth_ar": r["azimuth"]["average_recall"], "mean_ar": 0.5 * (r["structure"]["average_recall"] + r["azimuth"]["average_recall"])}

        params = net.lifter.parameters() if vc.freeze_hourglass else net.parameters()
        result = run_stage(
            "video", out_dir / f"len{length:02d}", net, params, batches, loss_fn, validate,
            epochs=epochs_per_length, lr=vc.lr, optimizer=vc.optimizer, metric="mean_ar", higher_is_better=True, seed=cfg.seed + length,
            device=device, config=cfg.to_dict(), checkpoint_extra={"category": category.name, "model_config": asdict(cfg.model), "heatmap_size": hm, "clip_length": length},
            resume=resume, progress=progress, steps_per_epoch=steps,
            finished_weights="best",  # the next length and the curriculum's best.pt read best.pt only
            validate_start=True,  # a length that only harms the model hands its start on unchanged
            grad_clip_norm=vc.grad_clip_norm, warmup_steps=vc.warmup_steps,
        )
        results.append(result)
        start = result.best_checkpoint
    best = max(results, key=lambda r: r.best_metric)
    link_or_copy(best.best_checkpoint, out_dir / "best.pt")  # a hard link: no second copy of the weights
    history = [dict(h, clip_length=length) for length, r in zip(lengths, results) for h in r.history]
    atomic_write_json(out_dir / "history.json", history)
    best_length = lengths[results.index(best)]
    record = dict(best.best_record, clip_length=best_length)
    atomic_write_json(out_dir / RESULT_FILE, {"lengths": list(lengths), "epochs_per_length": epochs_per_length, "best_length": best_length, "best_metric": best.best_metric, "best_epoch": best.best_epoch, "best_record": record})
    if not vc.keep_length_weights:
        _prune_lengths(out_dir, lengths, best_length)
    return StageResult(out_dir, best.best_metric, best.best_epoch, history, best_record=record)


def finished_video(out_dir: str | Path, lengths: tuple[int, ...], epochs_per_length: int) -> StageResult | None:
    """The result of a curriculum that finished in ``out_dir`` with these lengths and epochs, else
    None. A finished folder asked for other lengths or epochs raises: its lengths' weights may be
    pruned, and a curriculum extended in place would not be the one its lengths trained."""
    out_dir = Path(out_dir)
    marker = out_dir / RESULT_FILE
    if not marker.is_file():
        return None
    done = json.loads(marker.read_text())
    if tuple(done["lengths"]) != tuple(lengths) or done["epochs_per_length"] != epochs_per_length:
        raise ValueError(
            f"{out_dir}: a finished video stage of lengths {tuple(done['lengths'])} x {done['epochs_per_length']} epochs, asked for "
            f"{tuple(lengths)} x {epochs_per_length}; train into a new folder"
        )
    history = json.loads((out_dir / "history.json").read_text())
    return StageResult(out_dir, done["best_metric"], done["best_epoch"], history, best_record=done["best_record"])


def _prune_lengths(out_dir: Path, lengths: tuple[int, ...], best_length: int) -> None:
    """Remove the weights of every clip length but the winner (the curriculum's ``best.pt``, a hard
    link to it, stays): nothing reads them once the curriculum is done, and each is a whole model."""
    for length in lengths:
        folder = out_dir / f"len{length:02d}"
        if length == best_length or not (folder / "best.pt").is_file():
            continue
        atomic_write_json(folder / "pruned.json", {"best.pt": f"removed when the curriculum finished (video.keep_length_weights=false); its best: ../best.pt (length {best_length})"})
        (folder / "best.pt").unlink()
