"""Videos that teach the 2D module: multi-frame bootstrapping (in the spirit of Simon et al., CVPR
2017, for object videos).

Each round: the current interpreter reads every video frame; each video is fitted as one rigid
object with a smooth camera track (:func:`interp3d.video_fit.fit_video`, which carries the pose
through frames where the 2D module failed or could not tell front from back); the fit's
re-projections that pass its checks become pseudo-labels; the 2D module is fine-tuned on the
annotated images plus the pseudo-labelled frames (heatmap MSE, the same augmentation as
pretrain-2d); the video stage is re-run from the result with the new 2D module. Every step is
resumable (pseudo-labels are cached per round, stages resume by epoch) and deterministic.

Before the first round (``video.bootstrap_appearance_weight > 0``), a front/back appearance model
(:class:`~interp3d.models.appearance.FrontBackAppearance`) is learnt on the annotated images, their
views estimated from their annotated keypoints (:func:`views_from_keypoints`: no 3D label is read),
and reads every video frame once (``appearance.pt``); the video fit weighs its belief beside the
keypoints, which cannot tell a back view from the mirrored front view the 2D module reads there.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import torch

from .. import geometry
from ..config import Config
from ..io_utils import atomic_write_json, link_or_copy, load_checkpoint, save_checkpoint
from ..models.appearance import FrontBackAppearance
from ..models.serialization import build_interpreter
from ..shape_model import get_category
from ..video_fit import VideoFitOptions, fit_video
from .engine import StageResult, resolve_device
from .stages import LabelledImages, annotated_splits, predict_batches, train_heatmaps
from .video import VideoFrames, finished_video, train_video

__all__ = ["pseudo_label_videos", "views_from_keypoints", "frame_appearance", "train_bootstrap"]


def pseudo_label_videos(
    model, frames: VideoFrames, device: torch.device | str = "cpu", options: VideoFitOptions = VideoFitOptions(), view_log_probs: torch.Tensor | None = None,
) -> tuple[LabelledImages, dict, dict[str, torch.Tensor]]:
    """Pseudo-labelled frames of every video (keypoints in image px at the frames' size, visibility
    = the fit's pseudo-label mask), a summary (labels kept, frames fitted / interpolated / carried)
    and the fitted track per frame (``azimuth``, ``elevation`` in radians, ``source`` as
    :attr:`interp3d.video_fit.VideoFit.frame_source`), which a diagnostic compares with the truth.
    ``view_log_probs (V, J, B)``: the frames' azimuth beliefs from appearance (e.g.
    :class:`~interp3d.models.appearance.FrontBackAppearance`), for :func:`fit_video`."""
    device = torch.device(device)
    model = model.to(device).eval()
    v, j = frames.frames.shape[:2]
    size = frames.frames.shape[-1]
    keypoints, visible, sources, views = [], [], [], []
    for k in range(v):
        with torch.no_grad():
            heatmaps = torch.cat([o[-1] for o in predict_batches(model.keypoint_net, frames.frames[k], device)]).float()
            plane, weights = model.heatmap_keypoints(heatmaps)
            lifted = model.lift_keypoints(plane, weights) if model.lifts_keypoints else model.lift(heatmaps)  # the peaks once
        fit = fit_video(model.category, plane.cpu(), weights.cpu(), model.hypotheses_of(lifted), model.shape_prior, options, None if view_log_probs is None else view_log_probs[k])
        keypoints.append(geometry.rescale_points(fit.keypoints.float(), model.category.plane_size, size))
        visible.append(fit.pseudo_label)
        sources.append(fit.frame_source)
        views.append(torch.stack(fit.params.view(), dim=-1).float())
    keypoints, visible, sources, views = torch.cat(keypoints), torch.cat(visible), torch.cat(sources), torch.cat(views)
    summary = {
        "frames": int(v * j), "labelled_keypoints": int(visible.sum()), "keypoint_share": float(visible.float().mean()),
        "frames_fitted": int((sources == 0).sum()), "frames_interpolated": int((sources == 1).sum()), "frames_carried": int((sources == 2).sum()),
        "frames_unlabelled": int((sources < 0).sum()),
    }
    track = {"azimuth": views[:, 0], "elevation": views[:, 1], "source": sources}
    return LabelledImages(frames.frames.flatten(0, 1), keypoints, visible), summary, track


def views_from_keypoints(model, keypoints: torch.Tensor, visible: torch.Tensor, image_size: int, min_keypoints: int = 5) -> torch.Tensor:
    """``(B,)`` azimuths (radians) of images estimated from their annotated 2D keypoints (image px
    at ``image_size``, ``visible (B, N)``): the model's 2D-to-3D module on the keypoints, refined
    with its front/back and mirror flips and starts all round the circle. With the labels right
    (annotations, not the 2D module) a view and its mirror do not fit alike, so the side is
    decided; NaN where fewer than ``min_keypoints`` are visible."""
    category = model.category
    plane = geometry.rescale_points(keypoints.float(), image_size, category.plane_size)
    weights = visible.float()
    plane = torch.where(weights.unsqueeze(-1) > 0, plane, torch.full_like(plane, float("nan")))
    device = next(model.parameters()).device
    azimuth = []
    for kp, w in zip(plane.split(256), weights.split(256)):
        with torch.no_grad():
            lifted = model.lift_given_keypoints(kp.to(device), w.to(device))
        refined, _ = model.refine(lifted, kp, w, options=replace(model.refine_options, flips=True, azimuth_grid=8))
        azimuth.append(refined.params.view()[0].float().cpu())
    azimuth = torch.cat(azimuth)
    return torch.where(visible.sum(-1) >= min_keypoints, azimuth, torch.full_like(azimuth, float("nan")))


def frame_appearance(model, train_images, frames: VideoFrames, size: int, seed: int, min_per_side: int = 10) -> tuple[torch.Tensor | None, dict]:
    """``(V, J, 2)`` front/back log probabilities of every video frame from a
    :class:`FrontBackAppearance` learnt on the annotated ``train_images``, their views estimated
    from their keypoints (:func:`views_from_keypoints`), and its summary; None (and the reason in
    the summary) where those images show fewer than ``min_per_side`` views of either side (a sofa
    world has 2-5 back views in 600: too few to learn what a back looks like)."""
    azimuth = views_from_keypoints(model, train_images.keypoints, train_images.visible, size)
    back = torch.cos(azimuth[torch.isfinite(azimuth)]) < 0
    if min(int(back.sum()), int((~back).sum())) < min_per_side:
        return None, {"skipped": f"the annotated images show {int((~back).sum())} front and {int(back.sum())} back views, fewer than {min_per_side} of a side: no appearance learnt"}
    appearance = FrontBackAppearance().to(next(model.parameters()).device)
    summary = appearance.fit(train_images.images, azimuth, seed=seed)
    v, j = frames.frames.shape[:2]
    return appearance.log_probs(frames.frames.flatten(0, 1)).view(v, j, 2), summary


def train_bootstrap(
    cfg: Config, category: str, annotated_root: str | Path, video_root: str | Path, val_root: str | Path, init_checkpoint: str | Path, out_dir: str | Path,
    lengths: tuple[int, ...], epochs_per_length: int, *, rounds: int | None = None, resume: bool = True, progress: bool = True,
) -> StageResult:
    """``rounds`` (default ``video.bootstrap_rounds``) rounds of pseudo-labelling, 2D fine-tuning
    and the video stage, from a finetune or video checkpoint. ``out_dir/round<r>/`` holds each
    round (``pseudo_labels.pt``, ``keypoints/``, ``composed.pt`` until its video stage is done,
    ``video/``); ``out_dir/best.pt`` is the validation-best video model over the rounds."""
    category = get_category(category)
    rounds = cfg.video.bootstrap_rounds if rounds is None else rounds
    if rounds < 1:
        raise ValueError(f"bootstrapping needs at least one round, got {rounds}")
    device = resolve_device(cfg.train.device)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    size, hm = cfg.model.image_size, cfg.synthetic.heatmap_size
    train_images, val_images = annotated_splits(cfg, category, annotated_root)
    frames = VideoFrames(video_root, size)
    if frames.category.name != category.name:
        raise ValueError(f"{video_root}: videos of {frames.category.name!r}, expected {category.name!r}")
    stage = replace(cfg.train.pretrain_2d, epochs=cfg.video.bootstrap_2d_epochs, lr=cfg.video.bootstrap_lr, lr_schedule="constant")

    def interpreter_from(checkpoint: Path) -> torch.nn.Module:
        model = build_interpreter(category, asdict(cfg.model), hm)
        model.load_state_dict(load_checkpoint(checkpoint)["model"])
        return model

    view_log_probs, initial_model = None, None
    if cfg.video.bootstrap_appearance_weight > 0:
        appearance_file = out_dir / "appearance.pt"
        if resume and appearance_file.is_file():
            view_log_probs = load_checkpoint(appearance_file, kind="appearance")["frame_log_probs"]
        else:
            initial_model = interpreter_from(Path(init_checkpoint))  # round 1 starts from it too: read once
            view_log_probs, appearance_summary = frame_appearance(initial_model.eval(), train_images, frames, size, cfg.seed)
            save_checkpoint(appearance_file, {"kind": "appearance", "frame_log_probs": view_log_probs, "summary": appearance_summary, "source": str(init_checkpoint)})
            atomic_write_json(out_dir / "appearance.json", appearance_summary)
    fit_options = VideoFitOptions(track=cfg.video.bootstrap_track, appearance_weight=cfg.video.bootstrap_appearance_weight)
    current, results, summaries = Path(init_checkpoint), [], []
    for r in range(1, rounds + 1):
        folder = out_dir / f"round{r}"
        folder.mkdir(exist_ok=True)
        model = initial_model if r == 1 and initial_model is not None else interpreter_from(current)
        labels_file = folder / "pseudo_labels.pt"
        if resume and labels_file.is_file():
            cached = load_checkpoint(labels_file)
            pseudo, summary = LabelledImages(frames.frames.flatten(0, 1), cached["keypoints"], cached["visible"]), cached["summary"]
        else:
            pseudo, summary, track = pseudo_label_videos(model, frames, device, fit_options, view_log_probs)
            save_checkpoint(labels_file, {"kind": "pseudo_labels", "keypoints": pseudo.keypoints, "visible": pseudo.visible, "track": track, "summary": summary, "source": str(current)})
        summaries.append({"round": r, **summary})
        # the 2D module on annotated images + pseudo-labelled frames, from the current weights
        mixed = LabelledImages.concat([LabelledImages(train_images.images, train_images.keypoints, train_images.visible), pseudo])
        result_2d = train_heatmaps("bootstrap_2d", cfg, category, model.keypoint_net, mixed, val_images, folder / "keypoints", stage, resume=resume, progress=progress)
        composed = folder / "composed.pt"
        # a finished video stage returns its result without reading its start
        if not (resume and (composed.is_file() or finished_video(folder / "video", lengths, epochs_per_length) is not None)):
            model.keypoint_net.load_state_dict(load_checkpoint(result_2d.best_checkpoint, kind="bootstrap_2d")["model"])
            save_checkpoint(composed, {"kind": "video", "model": model.state_dict(), "category": category.name, "model_config": asdict(cfg.model), "heatmap_size": hm, "bootstrap_round": r})
        result = train_video(cfg, category.name, annotated_root, video_root, val_root, composed, folder / "video", lengths, epochs_per_length, resume=resume, progress=progress)
        if not cfg.video.keep_length_weights:
            # the video stage's start: its first length validated it as epoch 0 and kept it where it was best
            composed.unlink(missing_ok=True)
        results.append(result)
        current = result.best_checkpoint
    best = max(results, key=lambda res: res.best_metric)
    link_or_copy(best.best_checkpoint, out_dir / "best.pt")  # a hard link: no second copy of the weights
    history = [dict(h, bootstrap_round=i + 1) for i, res in enumerate(results) for h in res.history]
    atomic_write_json(out_dir / "history.json", history)
    atomic_write_json(out_dir / "pseudo_labels.json", summaries)
    return StageResult(out_dir, best.best_metric, best.best_epoch, history, best_record=dict(best.best_record, bootstrap_round=results.index(best) + 1))
