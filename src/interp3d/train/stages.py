"""The supervised stages of the paper (Sec. 3.1, 4.1): pre-train the hourglass on 2D-annotated
images, pre-train the 2D-to-3D module on synthetic heatmaps, fine-tune the whole interpreter with
the re-projection loss L_kp (Eq. 2). The result of ``finetune`` is the **baseline**.

Every stage is a resumable run folder (see :func:`interp3d.train.engine.run_stage`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .. import geometry, viewpoint
from ..config import Config
from ..data.augment import augment_batch
from ..data.synthetic import SyntheticSkeletonDataset
from ..data.world import WorldDataset
from ..evaluation.metrics import align_half_turn, angle_error, average_recall, pck, structure_error
from ..heatmaps import heatmap_peaks, render_heatmaps
from ..data.lifting import LiftingSampler, bank_from_folder
from ..models import KeypointLifter, Lifter, build_keypoint_net
from ..models.serialization import keypoint_lifter_options
from ..shape_model import Category, get_category
from ..shape_prior import ShapePrior
from .losses import heatmap_loss, hypothesis_loss, reprojection_loss
from ..models.serialization import build_interpreter
from .engine import DistributedContext, StageResult, init_distributed, load_checkpoint, resolve_device, run_stage

__all__ = [
    "AnnotatedImages",
    "annotated_splits",
    "pretrain_2d",
    "keypoint_net_of",
    "pretrain_3d",
    "pretrain_lift",
    "lifting_data",
    "finetune",
    "predict_batches",
    "train_heatmaps",
    "LabelledImages",
]


class AnnotatedImages:
    """A 2D-annotated world folder held in memory: uint8 images at the model's size, keypoints, visibility."""

    def __init__(self, root: str | Path, image_size: int, category: Category | str | None = None, indices: np.ndarray | None = None):
        ds = WorldDataset(root, category=category)
        self.category = ds.category
        self.source = ds
        idx = np.arange(len(ds)) if indices is None else np.asarray(indices)
        images = torch.from_numpy(np.stack([ds.load_image(int(i)) for i in idx])).permute(0, 3, 1, 2).contiguous()
        scale = image_size / ds.meta["image_size"]
        if images.shape[-1] != image_size:
            images = F.interpolate(images.float(), size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
            images = images.round().clamp(0, 255).to(torch.uint8)
        self.images = images
        a = ds.annotations
        self.keypoints = torch.from_numpy(a["keypoints"][idx]).float() * scale
        self.visible = torch.from_numpy(a["visible"][idx])
        self.structure = torch.from_numpy(a["structure"][idx]).float()
        self.azimuth = torch.from_numpy(a["azimuth"][idx]).float()
        self.elevation = torch.from_numpy(a["elevation"][idx]).float()
        # False: a viewpoint-only item (a furniture model without keypoints), left out of the heatmap loss
        self.keypoints_known = torch.from_numpy(a["keypoints_known"][idx]) if "keypoints_known" in a else torch.ones(len(idx), dtype=torch.bool)
        self.indices = idx
        self.image_size = image_size

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, idx, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        idx = torch.as_tensor(idx, dtype=torch.long)
        return self.images[idx].to(device).float().div_(255.0), self.keypoints[idx].to(device), self.visible[idx].to(device)


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic train/val split of ``n`` items."""
    order = np.random.default_rng([seed, 7]).permutation(n)
    n_val = max(1, int(round(n * val_fraction))) if n > 1 else 0
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def annotated_splits(cfg: Config, category: Category, world_root: str | Path) -> tuple[AnnotatedImages, AnnotatedImages]:
    """The deterministic train/val split of an annotated2d folder, at the model's image size."""
    n_total = len(WorldDataset(world_root, kind="annotated2d", category=category))
    train_idx, val_idx = split_indices(n_total, cfg.train.val_fraction, cfg.seed)
    size = cfg.model.image_size
    return AnnotatedImages(world_root, size, category, train_idx), AnnotatedImages(world_root, size, category, val_idx)


def _epoch_batches(n: int, batch_size: int, seed: int, epoch: int, ctx: DistributedContext, max_steps: int = 0):
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 7919 + epoch))
    perm = perm[ctx.rank :: ctx.world_size]  # shard for DDP (each rank a disjoint part)
    batches = [perm[i : i + batch_size] for i in range(0, len(perm) - batch_size + 1, batch_size)] or [perm]
    return batches[:max_steps] if max_steps else batches


def _wrap(model: nn.Module, ctx: DistributedContext, device: torch.device) -> nn.Module:
    if not ctx.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def freeze_view_head(keypoint_net: nn.Module) -> None:
    """Stages whose loss ignores the 2D module's viewpoint head (fine-tuning, the video stage,
    pseudo-labels) freeze it: it would get no gradient, which DDP refuses, and it keeps its weights."""
    head = getattr(keypoint_net, "view_head", None)
    if head is not None:
        head.requires_grad_(False)


def _memory_format(cfg: Config):
    return torch.channels_last if cfg.model.channels_last else torch.contiguous_format


def predict_batches(fn: Callable[[Tensor], Tensor], images: Tensor, device: torch.device, batch_size: int = 32, memory_format=torch.contiguous_format) -> list:
    """Run ``fn`` over uint8 images in batches (no grad); returns the list of outputs."""
    outs = []
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            x = images[i : i + batch_size].to(device).float().div_(255.0).contiguous(memory_format=memory_format)
            outs.append(fn(x))
    return outs


def augment(cfg: Config, category: Category, images: Tensor, keypoints: Tensor, visible: Tensor, gen: torch.Generator, return_flips: bool = False):
    """The training augmentation of annotated images as the config asks (``train.augment_*``)."""
    t = cfg.train
    return augment_batch(
        images, keypoints, visible, category.flip_permutation, gen, t.augment_rotation_deg, t.augment_colour, t.augment_flip,
        scale=t.augment_scale, shift=t.augment_shift, occlude=t.augment_occlude, return_flips=return_flips,
    )


def _model_info(cfg: Config, category: Category) -> dict:
    return {"category": category.name, "model_config": asdict(cfg.model), "heatmap_size": cfg.synthetic.heatmap_size}


def keypoint_net_of(cfg: Config, category: Category, pretrained: bool = False) -> nn.Module:
    """The config's 2D module for ``category`` (``model.*``, heatmaps of ``synthetic.heatmap_size``)."""
    mc = cfg.model
    return build_keypoint_net(
        category.num_keypoints, mc.image_size, cfg.synthetic.heatmap_size, mc.backbone, mc.features, mc.depth, mc.stacks, mc.decoder_channels,
        pretrained=pretrained, view_bins=mc.view_bins,
    )


# ---------------------------------------------------------------------------------------------
def pretrain_2d(
    cfg: Config, category: Category | str, world_root: str | Path, out_dir: str | Path, *, resume: bool = True, progress: bool = True, on_epoch_end=None,
    init_state: dict[str, Tensor] | None = None,
) -> StageResult:
    """The 2D module (``model.backbone``; a pretrained encoder starts from its ImageNet weights) on
    2D-annotated images: MSE to Gaussian heatmaps; validation PCK (best kept).

    ``init_state`` (a 2D module's state dict of the same architecture) warm-starts the first epoch
    instead, e.g. to continue a shipped model with a new schedule; a resumed run reads its own
    checkpoint over it."""
    category = get_category(category)
    train, val = annotated_splits(cfg, category, world_root)
    torch.manual_seed(cfg.seed)
    net = keypoint_net_of(cfg, category, pretrained=init_state is None)
    if init_state is not None:
        try:
            net.load_state_dict(init_state)  # copies into the net's dtype (float16 exports too)
        except RuntimeError as exc:
            raise ValueError(f"pretrain_2d: the initial weights do not fit model.backbone={cfg.model.backbone!r} with {category.num_keypoints} keypoints ({exc})") from exc
    return train_heatmaps("pretrain_2d", cfg, category, net, train, val, out_dir, cfg.train.pretrain_2d, resume=resume, progress=progress, on_epoch_end=on_epoch_end)


def train_heatmaps(
    name: str, cfg: Config, category: Category, net: nn.Module, train, val: "AnnotatedImages", out_dir: str | Path, stage, *,
    resume: bool = True, progress: bool = True, on_epoch_end=None, extra: dict | None = None,
) -> StageResult:
    """Train a 2D module on labelled images (``train``: anything with ``batch(idx, device)`` and
    ``len``, e.g. :class:`AnnotatedImages` or :class:`LabelledImages`): heatmap MSE under the
    config's augmentation, validation PCK on ``val`` (best kept); a resumable stage ``name``.

    A network with a viewpoint head (``view_bins > 0``) also learns the azimuth of images whose data
    carry one (``train.azimuth``; NaN = unknown): soft-target cross-entropy weighted by
    ``train.view_weight``, mirrored images with their mirrored azimuth; validation adds the head's
    accuracy within 30 deg (``view_acc30``)."""
    device = resolve_device(cfg.train.device)
    ctx = init_distributed(device)
    size, hm = cfg.model.image_size, cfg.synthetic.heatmap_size
    mf = _memory_format(cfg)
    net = net.to(device, memory_format=mf)
    bins = getattr(net, "view_bins", 0)
    train_azimuth = getattr(train, "azimuth", None) if bins else None
    if bins and train_azimuth is None:
        freeze_view_head(net)
    model = _wrap(net, ctx, device)
    turn = None if category.half_turn_permutation is None else list(category.half_turn_permutation)
    amodal, hidden_weight = cfg.train.hidden_amplitude, cfg.train.hidden_loss_weight
    if hidden_weight < 0:
        raise ValueError(f"train.hidden_loss_weight must be >= 0, got {hidden_weight}")
    known_keypoints = getattr(train, "keypoints_known", None)
    if known_keypoints is not None and bool(known_keypoints.all()):
        known_keypoints = None  # the usual case: every image is scored, as before

    def loss_fn(model, idx, gen):
        images, keypoints, visible = train.batch(idx, device)
        images, keypoints, visible, flips = augment(cfg, category, images, keypoints, visible, gen, return_flips=True)
        keypoints_hm = geometry.rescale_points(keypoints, size, hm)
        target = render_heatmaps(keypoints_hm, hm, cfg.synthetic.sigma, visible=visible, hidden_amplitude=amodal)
        turned_target = None if turn is None else render_heatmaps(keypoints_hm[:, turn], hm, cfg.synthetic.sigma, visible=visible[:, turn], hidden_amplitude=amodal)
        weights = None if known_keypoints is None else known_keypoints[torch.as_tensor(idx, dtype=torch.long)].to(device).float()
        channel_weights = turned_channel_weights = None
        if hidden_weight != 1.0:
            channel_weights = torch.where(visible, 1.0, hidden_weight).float()
            turned_channel_weights = None if turn is None else channel_weights[:, turn]
        scored = dict(weights=weights, channel_weights=channel_weights, turned_channel_weights=turned_channel_weights)
        if train_azimuth is None:
            loss, _ = heatmap_loss(model(images.contiguous(memory_format=mf)), target, turned_target, **scored)
            return loss, {"mse": loss.item()}
        preds, view_logits = model(images.contiguous(memory_format=mf), with_view=True)
        mse, turned = heatmap_loss(preds, target, turned_target, **scored)
        azimuth = train_azimuth[torch.as_tensor(idx, dtype=torch.long)].to(device)
        azimuth = torch.where(flips, viewpoint.mirrored_azimuth(azimuth), azimuth)
        azimuth = torch.where(turned, azimuth + math.pi, azimuth)  # the labelling the heatmaps were scored against
        view_target = viewpoint.soft_targets(azimuth, bins, cfg.train.view_sd_bins)
        known = view_target.sum(-1).clamp_max(1.0)
        cross_entropy = -(view_target * F.log_softmax(view_logits.float(), dim=-1)).sum(-1)
        view_loss = (known * cross_entropy).sum() / known.sum().clamp_min(1.0)
        return mse + cfg.train.view_weight * view_loss, {"mse": mse.item(), "view_ce": view_loss.item()}

    def validate(core):
        if bins:
            outs = predict_batches(lambda x: core(x, with_view=True), val.images, device, 32, mf)
            heatmaps = torch.cat([o[0][-1] for o in outs]).float().cpu()
            view_logits = torch.cat([o[1] for o in outs]).float().cpu()
        else:
            heatmaps = torch.cat([o[-1] for o in predict_batches(core, val.images, device, 32, mf)]).float().cpu()
        peaks, _ = heatmap_peaks(heatmaps)
        gt, visible = align_half_turn(peaks.numpy(), geometry.rescale_points(val.keypoints, size, hm).numpy(), val.visible.numpy(), turn)
        target = render_heatmaps(torch.from_numpy(gt).float(), hm, cfg.synthetic.sigma, visible=torch.from_numpy(visible), hidden_amplitude=amodal)
        val_known = getattr(val, "keypoints_known", None)  # viewpoint-only images have no heatmap target
        mse = heatmap_loss([heatmaps], target, weights=None if val_known is None else val_known.float())[0].item()
        metrics = {"pck": pck(peaks.numpy(), gt, visible, hm), "mse": mse}
        known = torch.isfinite(val.azimuth) if bins and hasattr(val, "azimuth") else None
        if known is not None and known.any():
            head = viewpoint.most_probable_azimuth(view_logits).numpy()[known.numpy()]
            error = angle_error(head, val.azimuth.numpy()[known.numpy()], category.azimuth_period)
            metrics["view_acc30"] = float(np.mean(error < math.radians(30)) * 100)
        return metrics

    return run_stage(
        name, out_dir, model, model.parameters(),
        lambda epoch: _epoch_batches(len(train), stage.batch_size, cfg.seed, epoch, ctx, stage.max_steps_per_epoch),
        loss_fn, validate, epochs=stage.epochs, lr=stage.lr, weight_decay=stage.weight_decay, optimizer=stage.optimizer, metric="pck", higher_is_better=True,
        seed=cfg.seed, device=device, config=cfg.to_dict(), checkpoint_extra={**_model_info(cfg, category), **(extra or {})}, amp=stage.amp,
        resume=resume, progress=progress, on_epoch_end=on_epoch_end, dist_ctx=ctx, lr_schedule=stage.lr_schedule,
    )


class LabelledImages:
    """uint8 images ``(B, 3, S, S)`` with image-px keypoints and visibility, the batch interface of
    :class:`AnnotatedImages` (e.g. pseudo-labelled video frames); ``concat`` joins several."""

    def __init__(self, images: Tensor, keypoints: Tensor, visible: Tensor):
        if not (len(images) == len(keypoints) == len(visible)):
            raise ValueError(f"images, keypoints and visibility differ in length: {len(images)}, {len(keypoints)}, {len(visible)}")
        self.images, self.keypoints, self.visible = images, keypoints.float(), visible.bool()

    @classmethod
    def concat(cls, parts) -> "LabelledImages":
        return cls(torch.cat([p.images for p in parts]), torch.cat([p.keypoints for p in parts]), torch.cat([p.visible for p in parts]))

    def __len__(self) -> int:
        return len(self.images)

    def batch(self, idx, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        idx = torch.as_tensor(idx, dtype=torch.long)
        return self.images[idx].to(device).float().div_(255.0), self.keypoints[idx].to(device), self.visible[idx].to(device)


# ---------------------------------------------------------------------------------------------
def _decoded_metrics(category: Category, codec, pred_norm: Tensor, true_params: Tensor) -> dict[str, float]:
    true = codec.decode(true_params.double())
    metrics = pose_structure_metrics(category, codec, pred_norm, true.project(category)[0], true.view()[0])
    return {k: metrics[k] for k in ("structure_ar", "azimuth_ar")}


def pretrain_3d(cfg: Config, category: Category | str, out_dir: str | Path, *, resume: bool = True, progress: bool = True, on_epoch_end=None) -> StageResult:
    """2D-to-3D module on synthetic heatmaps: L1 on normalised parameters; validation L1 (best kept)."""
    category = get_category(category)
    device = resolve_device(cfg.train.device)
    ctx = init_distributed(device)
    stage = cfg.train.pretrain_3d
    options = cfg.synthetic.options()
    train = SyntheticSkeletonDataset(category, cfg.synthetic.n_train, seed=cfg.seed * 2 + 1, options=options)
    val = SyntheticSkeletonDataset(category, cfg.synthetic.n_val, seed=cfg.seed * 2 + 2, options=options)
    torch.manual_seed(cfg.seed)
    net = Lifter(category.num_keypoints, options.heatmap_size, category.num_params, cfg.model.lifter_widths, cfg.model.dropout).to(device)
    model = _wrap(net, ctx, device)
    val_batch = val.__getitems__(list(range(len(val))))

    def loss_fn(model, idx, gen):
        batch = train.__getitems__(idx.tolist())
        pred = model(batch["heatmaps"].to(device))
        loss = F.l1_loss(pred.float(), batch["target"].to(device))
        return loss, {"l1": loss.item()}

    def validate(core):
        pred = torch.cat([core(val_batch["heatmaps"][i : i + 256].to(device)).float().cpu() for i in range(0, len(val), 256)])
        return {"l1": F.l1_loss(pred, val_batch["target"]).item(), **_decoded_metrics(category, train.codec, pred, val_batch["params"])}

    return run_stage(
        "pretrain_3d", out_dir, model, model.parameters(),
        lambda epoch: _epoch_batches(len(train), stage.batch_size, cfg.seed, epoch, ctx, stage.max_steps_per_epoch),
        loss_fn, validate, epochs=stage.epochs, lr=stage.lr, weight_decay=stage.weight_decay, optimizer=stage.optimizer, metric="l1", higher_is_better=False,
        seed=cfg.seed, device=device, config=cfg.to_dict(), checkpoint_extra=_model_info(cfg, category), amp=stage.amp,
        resume=resume, progress=progress, on_epoch_end=on_epoch_end, dist_ctx=ctx,
    )


# ---------------------------------------------------------------------------------------------
def lifting_data(cfg: Config, category: Category | str) -> tuple[LiftingSampler, LiftingSampler, ShapePrior]:
    """(training sampler, validation sampler, shape prior) of the keypoint lifter.

    With ``lift.real_shapes`` the training bank holds the real shapes of the training split and the
    validation sampler draws only real shapes of the held-out split where there is one (KeypointNet
    chairs); the prior is that of the training samples: the bank's shapes mixed with the ranges'
    by ``lift.real_fraction`` (:meth:`ShapePrior.mixture`). Without, both draw basis shapes from the ranges."""
    category = get_category(category)
    options = cfg.lift.options()
    bank = val_bank = None
    if cfg.lift.real_shapes:
        bank = bank_from_folder(cfg.lift.real_shapes, category, "train")
        val_bank = bank_from_folder(cfg.lift.real_shapes, category, "test", shares={"keypointnet": 1.0, "pascal3d": 0.0}) if bank is not None else None
    prior = ShapePrior.from_ranges(category)
    if bank is not None:
        # the refinement's prior describes the population the lifter learns from: real shapes and,
        # for the rest of the samples, the ranges (the real shapes' alone, 6 PASCAL3D+ tables, held
        # the table's test3d structure AR at 49.4; this mixture 53.0, README)
        real = bank.prior("real shapes: " + " + ".join(sorted(set(_source_of(n) for n in bank.names))))
        prior = ShapePrior.mixture([real, prior], [options.real_fraction, 1.0 - options.real_fraction])
    val_options = replace(options, real_fraction=1.0) if val_bank is not None else options
    return LiftingSampler(category, bank, options), LiftingSampler(category, val_bank or bank, val_options), prior


def _source_of(name: str) -> str:
    return "PASCAL3D+ CAD" if name.rstrip("0123456789") in ("chair", "sofa", "diningtable") else "KeypointNet (train split)"


def pose_structure_metrics(category: Category, codec, pred_norm: Tensor, structure: Tensor, azimuth: Tensor) -> dict[str, float]:
    """Structure and azimuth AR (%) and median azimuth error of normalised parameter predictions
    ``(B, P)`` against true structures ``(B, N, 3)`` and azimuths ``(B,)``."""
    pred = codec.decode(codec.denormalise(pred_norm.double()))
    az, _ = pred.view()
    s_err = structure_error(pred.project(category)[0].numpy(), structure.double().numpy(), half_turn=category.half_turn_permutation)
    a_err = angle_error(az.numpy(), azimuth.double().numpy(), category.azimuth_period)
    return {"structure_ar": average_recall(s_err, 0.5), "azimuth_ar": average_recall(a_err, np.pi), "azimuth_median_deg": float(np.degrees(np.median(a_err)))}


def pretrain_lift(cfg: Config, category: Category | str, out_dir: str | Path, *, resume: bool = True, progress: bool = True, on_epoch_end=None) -> StageResult:
    """The keypoint lifter on keypoints as real inputs look (self-occlusion, truncation, misses,
    noise, outliers; real shapes where ``lift.real_shapes`` has them): relaxed winner-takes-all L1
    over its hypotheses, Adam with a cosine schedule; validation on held-out real shapes, best by
    structure AR + azimuth AR. The checkpoint carries the shape prior for refinement."""
    category = get_category(category)
    device = resolve_device(cfg.train.device)
    ctx = init_distributed(device)
    lc = cfg.lift
    train, val, prior = lifting_data(cfg, category)
    torch.manual_seed(cfg.seed)
    net = KeypointLifter(category, **{**keypoint_lifter_options(asdict(cfg.model)), "dropout": lc.dropout_layers}).to(device)
    model = _wrap(net, ctx, device)
    val_batch = val.sample(lc.n_val, torch.Generator().manual_seed(cfg.seed * 2 + 2))
    codec = train.codec

    def loss_fn(model, step, gen):
        batch = train.sample(lc.batch_size, gen)
        keypoints, weights = batch.keypoints.to(device), batch.weights.to(device)
        _, scores, frame = model(keypoints, weights)
        scale = net.normalising_scale(torch.nan_to_num(keypoints), weights)
        target = codec.normalise(net.to_frame(batch.params.to(device), scale)).float()
        loss, _ = hypothesis_loss(frame.float(), scores.float(), target)
        return loss, {"wta_l1": loss.item()}

    def validate(core):
        hyps, scores = [], []
        for i in range(0, len(val_batch.keypoints), 1024):
            h, s, _ = core(val_batch.keypoints[i : i + 1024].to(device), val_batch.weights[i : i + 1024].to(device))
            hyps.append(h.float().cpu())
            scores.append(s.float().cpu())
        metrics = pose_structure_metrics(category, codec, KeypointLifter.best(torch.cat(hyps), torch.cat(scores)), val_batch.structure, val_batch.azimuth)
        return {**metrics, "lift_ar": metrics["structure_ar"] + metrics["azimuth_ar"]}

    extra = {**_model_info(cfg, category), "shape_prior": prior.to_dict(), "lifter_options": keypoint_lifter_options(asdict(cfg.model))}
    return run_stage(
        "pretrain_lift", out_dir, model, model.parameters(),
        lambda epoch: range(lc.steps_per_epoch)[ctx.rank :: ctx.world_size],
        loss_fn, validate, epochs=lc.epochs, lr=lc.lr, optimizer="adam", metric="lift_ar", higher_is_better=True,
        seed=cfg.seed, device=device, config=cfg.to_dict(), checkpoint_extra=extra, amp=False,
        resume=resume, progress=progress, on_epoch_end=on_epoch_end, dist_ctx=ctx, steps_per_epoch=lc.steps_per_epoch, lr_schedule="cosine",
    )


# ---------------------------------------------------------------------------------------------
def finetune(
    cfg: Config, category: Category | str, world_root: str | Path, hourglass_ckpt: str | Path, lifter_ckpt: str | Path, out_dir: str | Path,
    *, resume: bool = True, progress: bool = True, on_epoch_end=None,
) -> StageResult:
    """Whole interpreter on 2D-annotated images with L_kp (the baseline); validation re-projection PCK.
    ``lifter_ckpt`` is a pretrain-3d checkpoint, or pretrain-lift with ``model.lifter=keypoints``."""
    category = get_category(category)
    device = resolve_device(cfg.train.device)
    ctx = init_distributed(device)
    stage = cfg.train.finetune
    size, hm = cfg.model.image_size, cfg.synthetic.heatmap_size
    train, val = annotated_splits(cfg, category, world_root)
    model_cfg = asdict(cfg.model)
    net = build_interpreter(category, model_cfg, hm)
    net.keypoint_net.load_state_dict(load_checkpoint(hourglass_ckpt, kind="pretrain_2d")["model"])
    freeze_view_head(net.keypoint_net)
    # model.lifter = keypoints fine-tunes a pretrain-lift checkpoint, the heatmap lifter a pretrain-3d one
    net.lifter.load_state_dict(load_checkpoint(lifter_ckpt, kind="pretrain_lift" if net.lifts_keypoints else "pretrain_3d")["model"])
    mf = _memory_format(cfg)
    net = net.to(device, memory_format=mf)
    freeze = cfg.train.finetune_freeze_hourglass
    if freeze:
        net.keypoint_net.requires_grad_(False)
    model = _wrap(net, ctx, device)
    params = net.lifter.parameters() if freeze else net.parameters()

    def loss_fn(model, idx, gen):
        images, keypoints, visible = train.batch(idx, device)
        images, keypoints, visible = augment(cfg, category, images, keypoints, visible, gen)
        if freeze:  # a frozen hourglass keeps its BatchNorm statistics too
            net.keypoint_net.eval()
        out = model(images.contiguous(memory_format=mf))
        gt = geometry.rescale_points(keypoints, size, hm)
        loss = reprojection_loss(out.keypoints.float(), gt, visible & out.in_front)  # no fit from behind the camera
        logs = {"l_kp": loss.item()}
        if cfg.train.finetune_heatmap_weight > 0:
            target = render_heatmaps(gt, hm, cfg.synthetic.sigma, visible=visible, hidden_amplitude=cfg.train.hidden_amplitude)
            mse = F.mse_loss(out.heatmaps.float(), target)
            loss = loss + cfg.train.finetune_heatmap_weight * mse
            logs["mse"] = mse.item()
        return loss, logs

    def validate(core):
        outs = predict_batches(core, val.images, device, 32, mf)
        projected = torch.cat([o.keypoints.float().cpu() for o in outs])
        peaks = torch.cat([heatmap_peaks(o.heatmaps.float().cpu())[0] for o in outs])
        gt = geometry.rescale_points(val.keypoints, size, hm)
        return {
            "pck_reprojection": pck(projected.numpy(), gt.numpy(), val.visible.numpy(), hm),
            "pck_heatmap": pck(peaks.numpy(), gt.numpy(), val.visible.numpy(), hm),
            "l_kp": reprojection_loss(projected, gt, val.visible).item(),
        }

    return run_stage(
        "finetune", out_dir, model, params,
        lambda epoch: _epoch_batches(len(train), stage.batch_size, cfg.seed, epoch, ctx, stage.max_steps_per_epoch),
        loss_fn, validate, epochs=stage.epochs, lr=stage.lr, weight_decay=stage.weight_decay, optimizer=stage.optimizer, metric="pck_reprojection", higher_is_better=True,
        seed=cfg.seed, device=device, config=cfg.to_dict(), checkpoint_extra=_model_info(cfg, category), amp=stage.amp,
        resume=resume, progress=progress, on_epoch_end=on_epoch_end, dist_ctx=ctx, lr_schedule=stage.lr_schedule,
    )
