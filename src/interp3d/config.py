"""Typed, versioned configuration with named presets.

``paper`` holds the paper's sizes; ``cpu-small`` is what runs on 2 CPU cores in minutes. A resolved
config is plain data (``to_dict``/``from_dict``, JSON) and is written next to every run's outputs.
Overrides use dotted paths: ``synthetic.n_train=5000``.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .data.synthetic import SyntheticOptions
from .data.world import WorldOptions

__all__ = ["Config", "SyntheticConfig", "WorldConfig", "ModelConfig", "StageConfig", "TrainConfig", "VideoConfig", "LiftConfig", "PRESETS", "preset", "CONFIG_VERSION", "ConfigError"]

CONFIG_VERSION = 1


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class SyntheticConfig:
    """Synthetic skeletons for the 2D-to-3D module (paper: 40,000 train, 1,000 val)."""

    n_train: int = 40_000
    n_val: int = 1_000
    heatmap_size: int = 64
    sigma: float = 1.0
    distribution: str = "uniform"
    keep_inside: bool = True
    jitter_px: float = 0.0
    dropout: float = 0.0

    def options(self) -> SyntheticOptions:
        return SyntheticOptions(self.heatmap_size, self.sigma, self.distribution, self.keep_inside, self.jitter_px, self.dropout)


@dataclass(frozen=True)
class WorldConfig:
    """The rendered furniture world (paper: ~1,500 Keypoint-5 images a class, ~90 videos of 36 frames,
    ~200 IKEA images a class)."""

    image_size: int = 256
    n_annotated2d: int = 1_500
    n_videos: int = 90
    video_length: int = 36
    n_test3d: int = 200
    annotated_views: str = "keypoint5"  # "keypoint5": the measured views of the real photos; "restricted": |azimuth| <= annotated_azimuth_deg
    annotated_azimuth_deg: float = 45.0
    supersample: int = 2
    # the realistic world of the product models (data.world.WorldOptions): the whole view sphere,
    # photographic backgrounds and textures (scripts/fetch_photo_material.sh), JPEG, CAD targets
    view_sphere: str = "category"
    keypoint5_share: float = 0.0  # view_sphere=full: share of annotated2d views drawn from the Keypoint-5 distribution
    backgrounds: str = ""
    textures: str = ""
    jpeg: float = 0.0
    real_shapes: str = ""  # folder of PASCAL3D+ CAD JSON models (chair, table have complete ones)
    real_shape_fraction: float = 1.0
    cluttered_share: float = 0.0  # annotated2d: share of items in test3d's cluttered, occluded scene
    # annotated2d: share of items showing a real furniture model (scripts/fetch_furniture_models.sh
    # folder): viewpoint labels only, for the viewpoint head
    furniture_models: str = ""
    furniture_share: float = 0.0
    furniture_also: tuple[str, ...] = ()  # other categories or groups whose models share the front (chair for swivelchair, armchair for chair)

    def options(self, kind: str) -> WorldOptions:
        count = {"annotated2d": self.n_annotated2d, "video": self.n_videos, "test3d": self.n_test3d}[kind]
        return WorldOptions(
            view_sphere=self.view_sphere, keypoint5_share=self.keypoint5_share, backgrounds=self.backgrounds, textures=self.textures, jpeg=self.jpeg,
            real_shapes=self.real_shapes, real_shape_fraction=self.real_shape_fraction,
            # other kinds ignore it; their recorded settings stay those of worlds rendered before it existed
            cluttered_share=self.cluttered_share if kind == "annotated2d" else 0.0,
            furniture_models=self.furniture_models if kind == "annotated2d" else "",
            furniture_share=self.furniture_share if kind == "annotated2d" else 0.0,
            furniture_also=tuple(self.furniture_also) if kind == "annotated2d" else (),
            kind=kind,
            count=count,
            image_size=self.image_size,
            video_length=self.video_length,
            annotated_views=self.annotated_views,
            annotated_azimuth_deg=self.annotated_azimuth_deg,
            supersample=self.supersample,
        )


@dataclass(frozen=True)
class ModelConfig:
    """Network sizes. The heatmap side is ``synthetic.heatmap_size`` (one value for both modules)."""

    image_size: int = 256
    # the 2D module: "hourglass" (the paper's, from scratch) or "efficientnet_lite0" (ImageNet-pretrained
    # encoder + light FPN decoder; features/depth/stacks are the hourglass's, decoder_channels the FPN's)
    backbone: str = "hourglass"
    decoder_channels: int = 96
    features: int = 256
    depth: int = 4
    stacks: int = 1
    lifter_widths: tuple[int, ...] = (2048, 512, 128)
    dropout: float = 0.0  # the paper applies no dropout in the 2D-to-3D module
    channels_last: bool = True
    # "heatmap": 3D-INN's FC module on flattened heatmaps; "keypoints": KeypointLifter on heatmap
    # peaks and confidences (visibility-aware, several hypotheses; what Predictor.lift needs)
    lifter: str = "heatmap"
    keypoint_lifter_width: int = 512
    keypoint_lifter_blocks: int = 2
    lifter_hypotheses: int = 3
    # azimuth bins of the 2D module's viewpoint head (pretrained encoders only; 0 = no head): the
    # image tells front from back, which keypoints of a symmetric object cannot (interp3d.viewpoint)
    view_bins: int = 0


@dataclass(frozen=True)
class StageConfig:
    """One training stage: RMSprop (alpha 0.99, eps 1e-8) as in the paper's code, or Adam."""

    epochs: int = 100
    optimizer: str = "rmsprop"
    batch_size: int = 6
    lr: float = 2.5e-4
    weight_decay: float = 0.0
    max_steps_per_epoch: int = 0  # 0 = a full pass over the data
    num_workers: int = 0
    amp: bool = False  # mixed precision (CUDA only)
    lr_schedule: str = "constant"  # or "cosine" (per epoch, to ~0 at the end)


@dataclass(frozen=True)
class TrainConfig:
    pretrain_2d: StageConfig = field(default_factory=lambda: StageConfig(epochs=100, batch_size=6, lr=2.5e-4))
    pretrain_3d: StageConfig = field(default_factory=lambda: StageConfig(epochs=100, batch_size=16, lr=4e-6))
    finetune: StageConfig = field(default_factory=lambda: StageConfig(epochs=300, batch_size=6, lr=8e-6))
    val_fraction: float = 0.2  # of the annotated images (Keypoint-5: 80/20)
    augment_rotation_deg: float = 15.0
    augment_colour: float = 0.4  # per-channel gain in [1 - c, 1 + c]
    augment_flip: bool = True
    augment_scale: float = 0.0  # zoom in [1 - s, 1 + s] (0 = the paper's recipe)
    augment_shift: float = 0.0  # translation up to this fraction of the side (truncates at the border)
    augment_occlude: float = 0.0  # probability of an occluding rectangle cut from another image
    view_weight: float = 0.01  # weight of the viewpoint head's cross-entropy beside the heatmap MSE (model.view_bins > 0)
    view_sd_bins: float = 1.0  # width of its soft azimuth targets, in bins
    # height of a hidden keypoint's heatmap target where the data know where it projects (a rendered
    # world): the 2D module then reports hidden legs at a low peak for the fit (0 = visible ones only)
    hidden_amplitude: float = 0.0
    # MSE weight of a hidden keypoint's channel: 1 / hidden_amplitude^2 gives its blob a visible one's pull
    hidden_loss_weight: float = 1.0
    device: str = "auto"  # auto, cpu, cuda, cuda:1, ...
    finetune_freeze_hourglass: bool = False
    finetune_heatmap_weight: float = 0.0  # optional MSE on heatmaps during fine-tuning (0 = Eq. 2 only)


@dataclass(frozen=True)
class VideoConfig:
    """Semi-supervised learning on videos (paper Sec. 3.2, 4.1)."""

    curriculum: tuple[int, ...] = (3, 7, 11, 15)
    fixed_length: int = 15  # the "Video" variant's clip length
    epochs_per_length: int = 50
    fixed_epochs: int = 0  # 0 = as many epochs as the whole curriculum (a fair comparison)
    lr: float = 8e-6
    optimizer: str = "rmsprop"  # rmsprop | adam | sgd (train.engine.run_stage)
    warmup_steps: int = 30  # linear learning-rate warm-up of every clip length's fresh RMSprop (its first steps are ~10x the rate otherwise)
    clips_per_batch: int = 2
    images_per_batch: int = 6
    mean_phase_epochs: int = 1  # latents by the mean (L2 relaxation) for the first epochs, then the median
    freeze_hourglass: bool = True  # the paper freezes the 2D module in this stage
    w_kp: float = 1.0
    w_alpha: float = 10.0
    w_focal: float = 10.0
    w_rotation: float = 1.0
    w_translation: float = 1.0
    w_reprojection: float = 0.1
    w_heatmap: float = 0.0  # MSE of the annotated images' heatmaps (anchors an unfrozen hourglass; 0 = the paper's losses only)
    confidence_temperature: float = 0.1  # softmax temperature of the peak confidence c_{j,n}
    w_range: float = 10.0  # L1 of shape and camera parameters outside the category's ranges (train.losses.range_loss; 0 = the paper's losses only)
    grad_clip_norm: float = 0.0  # clip the network step's gradient norm (0 = off; measured not to stop a too-large step's collapse)
    # multi-frame bootstrapping of the 2D module (train.bootstrap): rounds after the curriculum
    # (0 = none; the ablation then has no Video+Curriculum+Bootstrap row), 2D fine-tuning per round
    bootstrap_rounds: int = 0
    bootstrap_2d_epochs: int = 3
    bootstrap_lr: float = 1e-4
    bootstrap_track: str = "motion"  # the video fit's camera track (video_fit.VideoFitOptions.track): "motion" carries frames read from the wrong side; "viterbi" does not
    # the image's word on front or back (models.appearance.FrontBackAppearance, learnt on the annotated
    # images with their views estimated from their keypoints) in the video fit, with this weight
    # beside the fit costs (video_fit.VideoFitOptions.appearance_weight; 0 = keypoints only)
    bootstrap_appearance_weight: float = 3.0
    # keep every clip length's and bootstrapping round's intermediate weights (len*/best.pt,
    # round*/composed.pt, 40-60 MB each); off: only the weights later stages read stay
    keep_length_weights: bool = False

    def fixed_total_epochs(self) -> int:
        return self.fixed_epochs or self.epochs_per_length * len(self.curriculum)

    def weights(self):
        from .train.losses import VideoLossWeights

        return VideoLossWeights(self.w_kp, self.w_alpha, self.w_focal, self.w_rotation, self.w_translation, self.w_reprojection)


@dataclass(frozen=True)
class LiftConfig:
    """Training the keypoint lifter on 2D keypoints as real inputs look (:mod:`interp3d.data.lifting`)."""

    real_shapes: str = ""  # folder in the layout of ../shared/data (keypointnet_chair/, pascal3d_cad/); "" = ranges only
    real_fraction: float = 0.7
    elevation_deg: tuple[float, ...] = (-10.0, 45.0)
    truncation: float = 0.2
    dropout: float = 0.15
    noise: float = 0.03
    outliers: float = 0.03
    displaced: float = 0.0
    swaps: float = 0.0
    hidden_reports: float = 0.0
    wrong_confidence: tuple[float, ...] = ()  # [low, high] or [] (as the right ones)
    epochs: int = 30
    steps_per_epoch: int = 200
    batch_size: int = 256
    lr: float = 1e-3
    n_val: int = 2000
    dropout_layers: float = 0.1  # dropout inside the residual blocks

    def options(self):
        from .data.lifting import LiftingOptions

        el = tuple(self.elevation_deg)
        if len(el) != 2:
            raise ConfigError(f"lift.elevation_deg must be [low, high], got {list(el)}")
        wrong_confidence = tuple(self.wrong_confidence)
        if len(wrong_confidence) not in (0, 2) or (wrong_confidence and not 0 <= wrong_confidence[0] <= wrong_confidence[1] <= 1):
            raise ConfigError(f"lift.wrong_confidence must be [low, high] with 0 <= low <= high <= 1, or [], got {list(wrong_confidence)}")
        return LiftingOptions(
            real_fraction=self.real_fraction, elevation_deg=el, truncation=self.truncation, dropout=self.dropout, noise=self.noise, outliers=self.outliers,
            displaced=self.displaced, swaps=self.swaps, hidden_reports=self.hidden_reports, wrong_confidence=wrong_confidence or None,
        )


@dataclass(frozen=True)
class Config:
    preset: str = "paper"
    version: int = CONFIG_VERSION
    seed: int = 0
    categories: tuple[str, ...] = ("chair", "swivelchair", "table", "bed", "sofa")
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    world: WorldConfig = field(default_factory=WorldConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    video: VideoConfig = field(default_factory=VideoConfig)
    lift: LiftConfig = field(default_factory=LiftConfig)

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        version = data.get("version", CONFIG_VERSION)
        if version != CONFIG_VERSION:
            raise ConfigError(f"config version {version} is not supported (this interp3d reads version {CONFIG_VERSION})")
        return _build(cls, data, "")

    @classmethod
    def load(cls, path: str | Path) -> "Config":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config file not found")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc})") from exc
        if "config" in data and "preset" not in data:  # a run.json
            data = data["config"]
        return cls.from_dict(data)

    def override(self, assignments: list[str] | tuple[str, ...]) -> "Config":
        """Apply ``dotted.path=value`` assignments; values are parsed as JSON where possible."""
        data = self.to_dict()
        for item in assignments:
            if "=" not in item:
                raise ConfigError(f"override {item!r} must look like section.key=value")
            key, raw = item.split("=", 1)
            try:
                value = json.loads(raw)
            except json.JSONDecodeError:
                value = raw
            node = data
            parts = key.strip().split(".")
            for part in parts[:-1]:
                if not isinstance(node.get(part), dict):
                    raise ConfigError(f"override {item!r}: {part!r} is not a config section")
                node = node[part]
            if parts[-1] not in node:
                raise ConfigError(f"override {item!r}: unknown key {parts[-1]!r}; known: {', '.join(node)}")
            node[parts[-1]] = value
        return Config.from_dict(data)


def _build(cls, data: dict[str, Any], where: str):
    if not isinstance(data, dict):
        raise ConfigError(f"config section {where or '<root>'} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(f"unknown config key(s) {sorted(unknown)} in {where or '<root>'}; known: {sorted(known)}")
    kwargs = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        kwargs[f.name] = _coerce(hints[f.name], data[f.name], f"{where}{f.name}")
    return cls(**kwargs)


def _coerce(tp, value, where: str):
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where + ".")
    origin = typing.get_origin(tp)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        (item,) = {a for a in typing.get_args(tp) if a is not Ellipsis}
        return tuple(_coerce(item, v, where) for v in value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    if isinstance(tp, types.UnionType):  # pragma: no cover - not used yet
        return value
    raise ConfigError(f"{where}: unsupported config type {tp}")  # pragma: no cover


def _paper() -> Config:
    return Config(preset="paper")


def _cpu_small() -> Config:
    base = Config(preset="cpu-small", categories=("chair",))
    return replace(
        base,
        # sigma 2 on 32x32 maps: a wider target gives the from-scratch hourglass more signal per step
        synthetic=replace(base.synthetic, n_train=12_000, n_val=500, heatmap_size=32, sigma=2.0),
        world=replace(base.world, image_size=128, n_annotated2d=600, n_videos=24, video_length=15, n_test3d=150),
        model=replace(base.model, image_size=128, features=128, lifter_widths=(1024, 256, 128)),
        train=replace(
            base.train,
            pretrain_2d=StageConfig(epochs=30, batch_size=16, lr=1e-3),
            pretrain_3d=StageConfig(epochs=10, batch_size=64, lr=1e-4),
            finetune=StageConfig(epochs=10, batch_size=16, lr=2e-5),
        ),
        # the demo includes the videos-that-teach stage (two bootstrapping rounds, ~6 minutes on 2 cores)
        video=replace(base.video, epochs_per_length=10, lr=1e-4, clips_per_batch=4, images_per_batch=16, bootstrap_rounds=2),
        lift=replace(base.lift, epochs=12, steps_per_epoch=250),
    )


def _product() -> Config:
    """The shipped models' recipe on 2 CPU cores (scripts/train_product.py): cpu-small sizes with the
    ImageNet-pretrained EfficientNet-Lite0 2D module and its viewpoint head (24 azimuth bins of
    15 deg), the keypoint lifter, the whole view sphere and strong augmentation. The photo material folders are machine paths the recipe sets
    (``world.backgrounds``, ``world.textures``)."""
    base = _cpu_small()
    return replace(
        base,
        preset="product",
        world=replace(base.world, n_annotated2d=3000, n_test3d=300, view_sphere="full", keypoint5_share=0.5, jpeg=0.3),
        model=replace(base.model, backbone="efficientnet_lite0", decoder_channels=96, lifter="keypoints", keypoint_lifter_width=512, lifter_hypotheses=4, view_bins=24),
        train=replace(
            base.train,
            pretrain_2d=StageConfig(epochs=8, optimizer="adam", batch_size=32, lr=1e-3, lr_schedule="cosine"),
            val_fraction=0.1,
            augment_rotation_deg=20.0,
            augment_colour=0.3,
            augment_scale=0.25,
            augment_shift=0.08,
            augment_occlude=0.3,
        ),
        lift=replace(base.lift, epochs=40, steps_per_epoch=250),
    )


PRESETS = {"paper": _paper, "cpu-small": _cpu_small, "product": _product}


def preset(name: str) -> Config:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]()
