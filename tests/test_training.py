import json
import math
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from interp3d.config import StageConfig, preset
from interp3d.data.world import WorldOptions, render_world
from interp3d.train.engine import CheckpointError, load_checkpoint, save_checkpoint, stage_weights
from interp3d.models.serialization import load_interpreter
from interp3d.shape_model import get_category
from interp3d.train.stages import finetune, pretrain_2d, pretrain_3d, pretrain_lift


def tiny_config(**train):
    cfg = preset("cpu-small").override(
        [
            "synthetic.heatmap_size=16", "synthetic.n_train=256", "synthetic.n_val=64",
            "model.image_size=32", "model.features=16", "model.depth=2", "model.lifter_widths=[32,16]",
        ]
    )
    stages = {
        "pretrain_2d": StageConfig(epochs=2, batch_size=8, lr=1e-3),
        "pretrain_3d": StageConfig(epochs=2, batch_size=32, lr=1e-3),
        "finetune": StageConfig(epochs=2, batch_size=8, lr=1e-4),
    }
    stages.update(train)
    return replace(cfg, train=replace(cfg.train, **stages))


@pytest.fixture(scope="module")
def tiny_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny") / "annotated2d"
    return render_world(root, "chair", WorldOptions(kind="annotated2d", count=24, image_size=32, chunk=24), seed=0, progress=False)


class Killed(Exception):
    pass


def _kill_after_first_epoch(epoch):
    if epoch == 0:
        raise Killed


def _assert_same_weights(a: Path, b: Path):
    sa, sb = stage_weights(a), stage_weights(b)
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_pretrain_2d_resume_after_kill_matches_uninterrupted_run(tiny_world, tmp_path):
    cfg = tiny_config()
    full = pretrain_2d(cfg, "chair", tiny_world, tmp_path / "full", progress=False)
    with pytest.raises(Killed):
        pretrain_2d(cfg, "chair", tiny_world, tmp_path / "resumed", progress=False, on_epoch_end=_kill_after_first_epoch)
    resumed = pretrain_2d(cfg, "chair", tiny_world, tmp_path / "resumed", progress=False)
    _assert_same_weights(full.out_dir / "last.pt", resumed.out_dir / "last.pt")
    assert [h["epoch"] for h in resumed.history] == [1, 2]
    run = json.loads((tmp_path / "full" / "run.json").read_text())
    assert run["seed"] == cfg.seed and run["config"]["model"]["features"] == 16 and "commit" in run["git"]
    assert any((tmp_path / "full" / "tb").iterdir()), "TensorBoard event file written"


def test_pretrain_2d_warm_start_begins_from_the_given_weights(tiny_world, tmp_path):
    trained = stage_weights(pretrain_2d(tiny_config(), "chair", tiny_world, tmp_path / "first", progress=False).best_checkpoint)
    frozen = tiny_config(pretrain_2d=StageConfig(epochs=1, batch_size=8, lr=0.0))  # lr 0: parameters stay where they start
    warm = stage_weights(pretrain_2d(frozen, "chair", tiny_world, tmp_path / "warm", progress=False, init_state=trained).out_dir / "last.pt")
    cold = stage_weights(pretrain_2d(frozen, "chair", tiny_world, tmp_path / "cold", progress=False).out_dir / "last.pt")
    weights = [k for k in trained if k.endswith(".weight")]
    assert weights and all(torch.equal(warm[k], trained[k]) for k in weights)
    assert not all(torch.equal(cold[k], trained[k]) for k in weights)
    wrong = {k: v[:1] if k == weights[-1] else v for k, v in trained.items()}
    with pytest.raises(ValueError, match="initial weights do not fit"):
        pretrain_2d(frozen, "chair", tiny_world, tmp_path / "wrong", progress=False, init_state=wrong)


def test_pipeline_stages_chain_into_a_baseline(tiny_world, tmp_path):
    cfg = tiny_config()
    r3 = pretrain_3d(cfg, "chair", tmp_path / "p3d", progress=False)
    assert r3.history[-1]["l1"] < r3.history[0]["train_l1"]
    r2 = pretrain_2d(cfg, "chair", tiny_world, tmp_path / "p2d", progress=False)
    rf = finetune(cfg, "chair", tiny_world, r2.best_checkpoint, r3.best_checkpoint, tmp_path / "ft", progress=False)
    model = load_interpreter(rf.best_checkpoint)
    out = model(torch.rand(2, 3, 32, 32))
    assert out.structure.shape == (2, 10, 3) and torch.isfinite(out.structure).all()
    with pytest.raises(CheckpointError, match="expected 'pretrain_2d'"):
        finetune(cfg, "chair", tiny_world, r3.best_checkpoint, r3.best_checkpoint, tmp_path / "bad", progress=False)


def test_corrupt_and_missing_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    path = save_checkpoint(tmp_path / "ok.pt", {"kind": "pretrain_3d", "model": {}})
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="cut.pt: corrupt"):
        load_checkpoint(tmp_path / "cut.pt")
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an interp3d checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


DDP_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import torch.distributed as dist
from test_training import tiny_config
from interp3d.train.stages import pretrain_3d
result = pretrain_3d(tiny_config(), "chair", {out!r}, progress=False)
open({out!r} + f"_rank{{dist.get_rank()}}_of_{{dist.get_world_size()}}.txt", "w").write(str(result.best_metric))
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_distributed_data_parallel_on_cpu_with_gloo(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent), out=str(tmp_path / "ddp")))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    # both ranks finished and agree on the validation result (ranks print concurrently, so files)
    results = [(tmp_path / f"ddp_rank{r}_of_2.txt").read_text() for r in (0, 1)]
    assert results[0] == results[1]
    history = json.loads((tmp_path / "ddp" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]


DDP_FINETUNE_SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
import torch.distributed as dist
from test_training import _tiny_view_config
from interp3d.train.stages import finetune
dist.init_process_group("gloo")
result = finetune(_tiny_view_config(), "chair", {world!r}, {p2d!r}, {lift!r}, {out!r}, progress=False)
open({out!r} + f"_rank{{dist.get_rank()}}.txt", "w").write(str(result.best_metric))
dist.destroy_process_group()
"""


def _tiny_view_config():
    return _tiny_lift_config().override(["model.backbone=efficientnet_lite0", "model.decoder_channels=16", "model.image_size=64", "model.view_bins=8"])


@pytest.mark.slow
def test_distributed_fine_tuning_of_a_model_with_a_viewpoint_head(tiny_world, tmp_path):
    """Fine-tuning ignores the viewpoint head; DDP refuses parameters without gradients unless the
    stage freezes them (it does), and the head's weights come out unchanged."""
    cfg = _tiny_view_config()
    p2d = pretrain_2d(cfg, "chair", tiny_world, tmp_path / "p2d", progress=False)
    lift = pretrain_lift(cfg, "chair", tmp_path / "lift", progress=False)
    script = tmp_path / "ddp_ft.py"
    script.write_text(DDP_FINETUNE_SCRIPT.format(tests=str(Path(__file__).parent), world=str(tiny_world), p2d=str(p2d.best_checkpoint), lift=str(lift.best_checkpoint), out=str(tmp_path / "ft")))
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert (tmp_path / "ft_rank0.txt").read_text() == (tmp_path / "ft_rank1.txt").read_text()
    head = load_checkpoint(p2d.best_checkpoint, kind="pretrain_2d")["model"]["view_head.1.weight"]
    tuned = load_checkpoint(tmp_path / "ft" / "best.pt", kind="finetune")["model"]["keypoint_net.view_head.1.weight"]
    assert torch.equal(head, tuned)


def _tiny_lift_config():
    return tiny_config().override(["model.lifter=keypoints", "model.keypoint_lifter_width=32", "model.keypoint_lifter_blocks=1", "lift.epochs=2", "lift.steps_per_epoch=3", "lift.batch_size=32", "lift.n_val=64"])


def test_pretrain_lift_resumes_and_chains_into_finetune_and_export(tiny_world, tmp_path):
    cfg = _tiny_lift_config()
    full = pretrain_lift(cfg, "chair", tmp_path / "full", progress=False)
    with pytest.raises(Killed):
        pretrain_lift(cfg, "chair", tmp_path / "resumed", progress=False, on_epoch_end=_kill_after_first_epoch)
    resumed = pretrain_lift(cfg, "chair", tmp_path / "resumed", progress=False)
    _assert_same_weights(full.out_dir / "last.pt", resumed.out_dir / "last.pt")
    state = load_checkpoint(full.best_checkpoint, kind="pretrain_lift")
    assert state["shape_prior"]["category"] == "chair" and {"structure_ar", "azimuth_ar"} <= set(state["metrics"])
    # the keypoint lifter fine-tunes end to end (soft peak decoding is differentiable) and exports
    r2 = pretrain_2d(cfg, "chair", tiny_world, tmp_path / "p2d", progress=False)
    rf = finetune(cfg, "chair", tiny_world, r2.best_checkpoint, full.best_checkpoint, tmp_path / "ft", progress=False)
    model = load_interpreter(rf.best_checkpoint)
    assert model.lifts_keypoints
    out = model(torch.rand(2, 3, 32, 32))
    assert out.hypotheses.shape == (2, 3, 14) and torch.isfinite(out.structure).all()
    from interp3d.models.serialization import export_interpreter

    path = export_interpreter(model, tmp_path / "m.safetensors")
    again = load_interpreter(path)
    torch.testing.assert_close(again.lift_keypoints(out.keypoints_plane, torch.ones(2, 10)).params_normalised, model.lift_keypoints(out.keypoints_plane, torch.ones(2, 10)).params_normalised)


def test_finished_stage_keeps_a_slim_last_checkpoint_and_resumes_from_it(tiny_world, tmp_path):
    cfg = tiny_config()
    first = pretrain_3d(cfg, "chair", tmp_path / "p3d", progress=False)
    state = load_checkpoint(first.out_dir / "last.pt")
    assert state["complete"] and "optimizer" not in state and state["history"] == first.history
    if first.best_epoch == first.history[-1]["epoch"]:  # one copy of the final weights on disk
        assert "model" not in state and state["model_in"] == "best.pt"
    assert stage_weights(first.out_dir / "last.pt").keys() == load_checkpoint(first.best_checkpoint)["model"].keys()
    again = pretrain_3d(cfg, "chair", tmp_path / "p3d", progress=False)  # nothing left to do
    assert again.history == first.history and again.best_epoch == first.best_epoch
    longer = replace(cfg, train=replace(cfg.train, pretrain_3d=StageConfig(epochs=3, batch_size=32, lr=1e-3)))
    extended = pretrain_3d(longer, "chair", tmp_path / "p3d", progress=False)  # a fresh optimizer for the extra epoch
    assert [h["epoch"] for h in extended.history] == [1, 2, 3]


def _toy_stage(out_dir, scores, finished_weights, validate_start=False, **options):
    """A toy stage with one validation score per epoch, given in ``scores`` (first the starting
    weights' with ``validate_start``)."""
    from interp3d.train.engine import run_stage

    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1)
    x = torch.randn(16, 3)
    pending = iter(scores)
    return net, run_stage(
        "toy", out_dir, net, net.parameters(), lambda epoch: [x] * 2, lambda model, batch, gen: (model(batch).pow(2).mean(), {}),
        lambda core: {"score": next(pending)}, epochs=len(scores) - int(validate_start), lr=0.1, optimizer="adam", metric="score", higher_is_better=True,
        seed=0, device=torch.device("cpu"), progress=False, finished_weights=finished_weights, validate_start=validate_start, **options,
    )


def test_a_stage_that_only_harms_the_model_hands_on_its_starting_weights(tmp_path):
    """``validate_start``: the starting weights are epoch 0 of the history and stay best.pt when no
    epoch beats them; an epoch that does beat them replaces them; a rerun validates nothing again."""
    torch.manual_seed(0)
    start = torch.nn.Linear(3, 1).state_dict()
    net, result = _toy_stage(tmp_path / "worse", [5.0, 1.0, 2.0], "best", validate_start=True)
    assert result.best_epoch == 0 and result.best_metric == 5.0
    assert [h["epoch"] for h in result.history] == [0, 1, 2] and result.best_record["score"] == 5.0
    torch.testing.assert_close(stage_weights(tmp_path / "worse" / "last.pt"), start)
    assert not torch.equal(net.weight.detach(), start["weight"])  # training did move the weights
    again = _toy_stage(tmp_path / "worse", [9.0] * 3, "best", validate_start=True)[1]  # finished: a validation now would win
    assert again.history == result.history and again.best_epoch == 0
    with pytest.raises(Killed):  # killed after epoch 1: the resumed run keeps epoch 0 and its best
        _toy_stage(tmp_path / "killed", [5.0, 1.0, 9.0], "best", validate_start=True, on_epoch_end=_kill_after_first_epoch)
    resumed = _toy_stage(tmp_path / "killed", [2.0, 9.0, 9.0], "best", validate_start=True)[1]  # one validation left: epoch 2's
    assert [(h["epoch"], h["score"]) for h in resumed.history] == [(0, 5.0), (1, 1.0), (2, 2.0)] and resumed.best_epoch == 0
    _assert_same_weights(tmp_path / "killed" / "last.pt", tmp_path / "worse" / "last.pt")
    net, better = _toy_stage(tmp_path / "better", [1.0, 3.0, 2.0], "best", validate_start=True)
    assert better.best_epoch == 1
    assert not torch.equal(load_checkpoint(tmp_path / "better" / "best.pt")["model"]["weight"], start["weight"])


def test_gradient_clipping_bounds_the_step_of_plain_sgd(tmp_path):
    """With SGD at lr 1 a clipped step moves the weights by exactly ``grad_clip_norm`` (the toy
    loss's gradient norm is far above it); unclipped, by the gradient's own norm."""
    from interp3d.train.engine import run_stage

    def one_step(clip):
        torch.manual_seed(0)
        net = torch.nn.Linear(3, 1)
        x = 100 * torch.randn(16, 3)
        before = torch.cat([p.detach().clone().flatten() for p in net.parameters()])
        grad = torch.autograd.grad(net(x).pow(2).mean(), list(net.parameters()))
        run_stage(
            "sgd", tmp_path / f"clip{clip}", net, net.parameters(), lambda epoch: [x], lambda model, batch, gen: (model(batch).pow(2).mean(), {}),
            lambda core: {"score": 0.0}, epochs=1, lr=1.0, optimizer="sgd", metric="score", higher_is_better=True,
            seed=0, device=torch.device("cpu"), progress=False, grad_clip_norm=clip,
        )
        after = torch.cat([p.detach().flatten() for p in net.parameters()])
        return float((after - before).norm()), float(torch.cat([g.flatten() for g in grad]).norm())

    moved, norm = one_step(0.5)
    assert norm > 10 and moved == pytest.approx(0.5, rel=1e-5)
    moved, norm = one_step(0.0)
    assert moved == pytest.approx(norm, rel=1e-5)


@pytest.mark.parametrize("finished_weights", ["last", "best"])
def test_finished_stage_keeps_its_last_weights_only_when_asked(tmp_path, finished_weights):
    """A finished run whose best epoch is not its last: ``finished_weights="last"`` keeps the last
    weights in last.pt (an extension continues from them), ``"best"`` keeps none and points at
    best.pt; rerunning either changes nothing."""
    net, result = _toy_stage(tmp_path / "run", [-1.0, -2.0, -3.0], finished_weights)
    assert result.best_epoch == 1 and [h["score"] for h in result.history] == [-1.0, -2.0, -3.0]
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    best = load_checkpoint(tmp_path / "run" / "best.pt")["model"]
    kept = stage_weights(tmp_path / "run" / "last.pt")
    if finished_weights == "last":
        assert "model" in state
        torch.testing.assert_close(kept, net.state_dict())  # the last weights
        assert not torch.equal(kept["weight"], best["weight"])
    else:
        assert "model" not in state and state["model_in"] == "best.pt"
        torch.testing.assert_close(kept, best)
    again = _toy_stage(tmp_path / "run", [0.0] * 3, finished_weights)[1]  # nothing left to train or validate
    assert again.history == result.history and again.best_epoch == 1
    with pytest.raises(ValueError, match="finished_weights"):
        _toy_stage(tmp_path / "other", [0.0], "all")


@pytest.mark.slow
def test_pretrained_encoder_backbone_through_every_stage(tiny_world, tmp_path):
    """model.backbone=efficientnet_lite0 with a viewpoint head: pretrain-2d (from the ImageNet
    weights, heatmaps and azimuth; resumes exactly), pretrain-lift, fine-tuning, the video stage,
    export; the encoder's weights move in pretrain-2d."""
    from interp3d.models.efficientnet import EfficientNetLite0, load_lite0_weights
    from interp3d.train.video import train_video

    cfg = _tiny_lift_config().override(["model.backbone=efficientnet_lite0", "model.decoder_channels=16", "model.image_size=64", "model.view_bins=8", "video.clips_per_batch=2", "video.images_per_batch=4"])
    full = pretrain_2d(cfg, "chair", tiny_world, tmp_path / "full", progress=False)
    assert {"train_view_ce", "view_acc30"} <= set(full.history[-1])
    with pytest.raises(Killed):
        pretrain_2d(cfg, "chair", tiny_world, tmp_path / "resumed", progress=False, on_epoch_end=_kill_after_first_epoch)
    resumed = pretrain_2d(cfg, "chair", tiny_world, tmp_path / "resumed", progress=False)
    _assert_same_weights(full.out_dir / "last.pt", resumed.out_dir / "last.pt")
    trained = load_checkpoint(full.best_checkpoint, kind="pretrain_2d")["model"]
    imagenet = load_lite0_weights(EfficientNetLite0()).state_dict()
    stem = trained["encoder._conv_stem.weight"]
    assert not torch.equal(stem, imagenet["_conv_stem.weight"]) and torch.nn.functional.cosine_similarity(stem.flatten(), imagenet["_conv_stem.weight"].flatten(), dim=0) > 0.9
    lift = pretrain_lift(cfg, "chair", tmp_path / "lift", progress=False)
    rf = finetune(cfg, "chair", tiny_world, full.best_checkpoint, lift.best_checkpoint, tmp_path / "ft", progress=False)
    videos = render_world(tmp_path / "video", "chair", WorldOptions(kind="video", count=2, video_length=4, image_size=32, chunk=2), seed=1, progress=False)
    val = render_world(tmp_path / "val", "chair", WorldOptions(kind="test3d", count=4, image_size=32, chunk=4), seed=2, progress=False)
    rv = train_video(cfg, "chair", tiny_world, videos, val, rf.best_checkpoint, tmp_path / "video_stage", (3,), 1, progress=False)
    model = load_interpreter(rv.best_checkpoint)
    assert type(model.keypoint_net).__name__ == "EfficientNetKeypointNet"
    out = model(torch.rand(2, 3, 64, 64))
    assert out.heatmaps.shape == (2, 10, 16, 16) and torch.isfinite(out.structure).all()
    assert out.view_logits.shape == (2, 8)


@pytest.mark.parametrize("killed", [False, True])
def test_warmup_raises_the_rate_linearly_per_step_and_resumes_on_the_same_ramp(tmp_path, killed):
    """A loss linear in the weights has a constant gradient g, so plain SGD moves the weights by
    g x (sum of the step rates): warm-up over 4 steps at lr 1 gives 1/4 + 2/4 + 3/4 + 1 = 2.5 over
    two epochs of two batches, also when the run is killed after its first epoch and resumed."""
    from interp3d.train.engine import run_stage

    torch.manual_seed(0)
    net = torch.nn.Linear(3, 1, bias=False)
    start = net.weight.detach().clone()
    x = torch.tensor([[1.0, -2.0, 0.5]])
    kwargs = dict(epochs=2, lr=1.0, optimizer="sgd", metric="score", higher_is_better=True, seed=0, device=torch.device("cpu"), progress=False, warmup_steps=4)

    def run(**extra):
        return run_stage("warm", tmp_path / "run", net, net.parameters(), lambda epoch: [x] * 2, lambda model, batch, gen: (model(batch).sum(), {}),
                         lambda core: {"score": 0.0}, **kwargs, **extra)

    if killed:
        with pytest.raises(Killed):
            run(on_epoch_end=_kill_after_first_epoch)
        torch.testing.assert_close(net.weight.detach(), start - 0.75 * x)  # 1/4 + 2/4
        net.load_state_dict({"weight": torch.zeros_like(start)})  # the resumed run reads its weights from last.pt
    run()
    torch.testing.assert_close(stage_weights(tmp_path / "run" / "last.pt")["weight"], start - 2.5 * x)


def test_table_2d_training_takes_either_labelling(tmp_path):
    """A table looks the same after a half turn: its 2D module (with a viewpoint head) is scored under
    the labelling that fits each image better, so a world written in the other labelling (keypoints
    relabelled, azimuths turned by pi) gives the same training loss and validation PCK."""
    root = render_world(tmp_path / "table", "table", WorldOptions(kind="annotated2d", count=24, image_size=64, chunk=24), seed=0, progress=False)
    turned_root = tmp_path / "turned"
    shutil.copytree(root, turned_root)
    turn = list(get_category("table").half_turn_permutation)
    with np.load(turned_root / "annotations.npz") as data:
        arrays = dict(data)
    arrays["keypoints"], arrays["visible"] = arrays["keypoints"][:, turn], arrays["visible"][:, turn]
    arrays["azimuth"] = (arrays["azimuth"] + math.pi) % (2 * math.pi)
    np.savez(turned_root / "annotations.npz", **arrays)
    cfg = _tiny_view_config()
    cfg = replace(cfg, train=replace(cfg.train, pretrain_2d=StageConfig(epochs=1, batch_size=8, lr=0.0)))  # lr 0: one network scored twice
    plain = pretrain_2d(cfg, "table", root, tmp_path / "p2d", progress=False).history[-1]
    relabelled = pretrain_2d(cfg, "table", turned_root, tmp_path / "p2d_turned", progress=False).history[-1]
    for key in ("train_mse", "pck", "mse", "view_acc30"):
        assert relabelled[key] == pytest.approx(plain[key], rel=1e-4, abs=1e-9), key
    # an untrained network is nearly equally far from both labellings, and rounding in the permuted
    # sums tips a few images' choice (0.5 %); the viewpoint head's target without its turn: 8 % apart
    assert relabelled["train_view_ce"] == pytest.approx(plain["train_view_ce"], rel=0.02)


def test_viewpoint_only_images_teach_the_viewpoint_head_and_not_the_heatmaps(tmp_path):
    """Images marked ``keypoints_known = False`` (real furniture models without keypoints) leave the
    heatmap loss: whatever keypoints they carry, the training loss is the same; marked known, the
    same keypoints change it. Their azimuths still reach the viewpoint head."""
    root = render_world(tmp_path / "chair", "chair", WorldOptions(kind="annotated2d", count=24, image_size=32, chunk=24), seed=0, progress=False)
    unknown = np.arange(24) % 2 == 0

    def variant(name, garbage: bool, known):
        folder = tmp_path / name
        shutil.copytree(root, folder)
        with np.load(folder / "annotations.npz") as data:
            arrays = dict(data)
        if garbage:
            arrays["keypoints"][unknown] = np.random.default_rng(0).uniform(0, 32, arrays["keypoints"][unknown].shape).astype(np.float32)
            arrays["visible"][unknown] = True
        arrays["keypoints_known"] = known
        np.savez(folder / "annotations.npz", **arrays)
        return folder

    cfg = _tiny_view_config()
    cfg = replace(cfg, train=replace(cfg.train, pretrain_2d=StageConfig(epochs=1, batch_size=8, lr=0.0)))  # lr 0: one network scored on each
    runs = {
        name: pretrain_2d(cfg, "chair", variant(name, garbage, known), tmp_path / f"p2d_{name}", progress=False).history[-1]
        for name, garbage, known in (("clean", False, ~unknown), ("garbage", True, ~unknown), ("garbage_known", True, np.ones(24, bool)))
    }
    assert runs["garbage"]["train_mse"] == pytest.approx(runs["clean"]["train_mse"], rel=1e-6)
    assert runs["garbage"]["train_view_ce"] == pytest.approx(runs["clean"]["train_view_ce"], rel=1e-6)
    # an untrained network's MSE is mostly its own noise, so the garbage blobs move it by ~0.4 %
    assert runs["garbage_known"]["train_mse"] != pytest.approx(runs["clean"]["train_mse"], rel=1e-3)


def test_amodal_targets_reach_the_heatmap_loss_and_leave_visible_pck_alone(tiny_world, tmp_path):
    """``train.hidden_amplitude`` changes what the 2D stage asks for (the hidden keypoints' blobs), not
    how it is scored: one network (lr 0) has another training and validation MSE, the same PCK."""
    cfg = replace(tiny_config(), train=replace(tiny_config().train, pretrain_2d=StageConfig(epochs=1, batch_size=8, lr=0.0)))
    runs = {}
    for amplitude in (0.0, 0.5):
        c = replace(cfg, train=replace(cfg.train, hidden_amplitude=amplitude))
        runs[amplitude] = pretrain_2d(c, "chair", tiny_world, tmp_path / f"p2d_{amplitude}", progress=False).history[-1]
    assert runs[0.5]["pck"] == runs[0.0]["pck"]
    # an untrained network's MSE is mostly its own noise; the hidden blobs move it by ~0.6 %
    assert runs[0.5]["train_mse"] != pytest.approx(runs[0.0]["train_mse"], rel=1e-3)
    assert runs[0.5]["mse"] != pytest.approx(runs[0.0]["mse"], rel=1e-3)
    # train.hidden_loss_weight scales the hidden channels in the training loss only (validation reports the plain MSE)
    c = replace(cfg, train=replace(cfg.train, hidden_amplitude=0.5, hidden_loss_weight=8.0))
    weighted = pretrain_2d(c, "chair", tiny_world, tmp_path / "p2d_weighted", progress=False).history[-1]
    assert weighted["train_mse"] != pytest.approx(runs[0.5]["train_mse"], rel=1e-3)
    assert weighted["mse"] == pytest.approx(runs[0.5]["mse"], rel=1e-6) and weighted["pck"] == runs[0.5]["pck"]
    with pytest.raises(ValueError, match="hidden_loss_weight"):
        pretrain_2d(replace(cfg, train=replace(cfg.train, hidden_loss_weight=-1.0)), "chair", tiny_world, tmp_path / "p2d_negative", progress=False)


def test_heatmap_loss_weights_images():
    from interp3d.train.losses import heatmap_loss

    target = torch.zeros(2, 1, 4, 4)
    pred = torch.zeros(2, 1, 4, 4)
    pred[1] = 2.0  # the second image is off by 2 everywhere: MSE 4
    assert heatmap_loss([pred], target)[0].item() == pytest.approx(2.0)
    assert heatmap_loss([pred], target, weights=torch.tensor([1.0, 0.0]))[0].item() == pytest.approx(0.0)
    assert heatmap_loss([pred], target, weights=torch.tensor([1.0, 3.0]))[0].item() == pytest.approx(3.0)
    # channel weights scale each keypoint's squared errors: two channels, the second off by 1, weighted 8
    target, pred = torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 4, 4)
    pred[0, 1] = 1.0
    assert heatmap_loss([pred], target)[0].item() == pytest.approx(0.5)
    assert heatmap_loss([pred], target, channel_weights=torch.tensor([[1.0, 8.0]]))[0].item() == pytest.approx(4.0)
    # the turned labelling is scored with its own channel weights (here swapped, so its wrong channel weighs 1, not 8): it wins
    loss, turned = heatmap_loss([pred], target, target.clone(), channel_weights=torch.tensor([[1.0, 8.0]]), turned_channel_weights=torch.tensor([[8.0, 1.0]]))
    assert loss.item() == pytest.approx(0.5) and turned.tolist() == [True]
