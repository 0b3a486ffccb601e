"""interp3d benchmarks: every figure is measured side by side with its reference in one run, since
these machines are shared and noisy. Writes benchmarks/results/benchmarks.json and .md.

    .venv/bin/python benchmarks/run_all.py [--quick] [--device cuda]

Benchmarks: synthetic skeletons + heatmaps (vectorised vs a per-sample loop like the released code),
renderer (images/s, video frames/s), training throughput (hourglass and full interpreter steps,
achieved GFLOP/s as a share of this machine's dense matmul GFLOP/s, real data vs in-memory
tensors), inference (batch 1 latency, batch 32 throughput, TorchScript vs eager), exports (eager vs
TorchScript, torch.compile, ONNX Runtime), data loading (DataLoader workers, pinned memory vs the
training step's rate), memory. ONNX Runtime needs `pip install -e '.[bench]'`.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"


def timeit(fn, repeat: int = 3, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


# -------------------------------------------------------------------------------------------------
def reference_loop(category, n: int, seed: int = 0) -> np.ndarray:
    """The released code's pattern: one sample at a time, numpy projection, a 7x7 kernel pasted per keypoint."""
    from interp3d.shape_model import get_category

    cat = get_category(category)
    rng = np.random.default_rng(seed)
    r = cat.ranges
    bases = cat.bases_array
    size, plane = 64, cat.plane_size
    kernel = np.exp(-(np.arange(-3, 4)[:, None] ** 2 + np.arange(-3, 4)[None, :] ** 2) / 2.0)
    kernel[(np.arange(-3, 4)[:, None] ** 2 + np.arange(-3, 4)[None, :] ** 2) > 9] = 0
    out = np.zeros((n, cat.num_keypoints, size, size), np.float32)
    for i in range(n):
        s = rng.uniform(*r.scale)
        alpha = np.array([s] + [s * rng.uniform(*a) for a in r.alpha])
        t1, t2 = math.pi + rng.uniform(*r.elevation), rng.uniform(*r.azimuth)
        rx = np.array([[1, 0, 0], [0, math.cos(t1), -math.sin(t1)], [0, math.sin(t1), math.cos(t1)]])
        ry = np.array([[math.cos(t2), 0, math.sin(t2)], [0, 1, 0], [-math.sin(t2), 0, math.cos(t2)]])
        f = rng.uniform(*r.focal)
        y = np.tensordot(alpha, bases, axes=1)
        x = y @ (rx @ ry).T + np.array([rng.uniform(*r.translation_x), rng.uniform(*r.translation_y), 0])
        uv = f * x[:, :2] / (f + x[:, 2:]) + plane / 2
        for k, (u, v) in enumerate(uv * size / plane):
            cu, cv = int(u), int(v)
            if 0 <= cu < size and 0 <= cv < size:
                for dy in range(-3, 4):
                    for dx in range(-3, 4):
                        yy, xx = cv + dy, cu + dx
                        if 0 <= yy < size and 0 <= xx < size:
                            out[i, k, yy, xx] = max(out[i, k, yy, xx], kernel[dy + 3, dx + 3])
    return out


def bench_synthetic(quick: bool) -> dict:
    from interp3d.data.synthetic import SyntheticSkeletonDataset
    from interp3d.models import Lifter

    n = 8000 if quick else 40000
    n_ref = 500 if quick else 2000

    def vectorised(batch_size):
        ds = SyntheticSkeletonDataset("chair", n, seed=0)
        for batch in ds.loader(batch_size, shuffle=False):
            pass
        return ds

    # large batches pay page faults on fresh 40+ MB heatmap tensors (glibc serves them by mmap)
    per_batch = {b: n / timeit(lambda b=b: vectorised(b), repeat=2, warmup=0) for b in (16, 64, 256)}
    t_vec = n / max(per_batch.values())
    t_ref = timeit(lambda: reference_loop("chair", n_ref), repeat=1, warmup=0) * n / n_ref
    lifter = Lifter(10, 64, 14)
    opt = torch.optim.RMSprop(lifter.parameters(), lr=1e-6)
    ds = SyntheticSkeletonDataset("chair", 512, seed=1)
    batch = ds.__getitems__(list(range(64)))

    def step():
        loss = torch.nn.functional.l1_loss(lifter(batch["heatmaps"]), batch["target"])
        opt.zero_grad()
        loss.backward()
        opt.step()

    t_step = timeit(step, repeat=5)
    return {
        "samples": n,
        "vectorised_samples_per_s": n / t_vec,
        **{f"vectorised_samples_per_s_batch{b}": v for b, v in per_batch.items()},
        "reference_loop_samples_per_s": n / t_ref,
        "speedup_vs_loop": t_ref / t_vec,
        "lifter_training_samples_per_s_batch64": 64 / t_step,
        "generation_vs_consumption": (n / t_vec) / (64 / t_step),
        "params_and_keypoints_bytes_40k": int(40000 * (14 + 10 * 2) * 4 + 40000 * 10),
        "heatmaps_if_cached_bytes_40k_fp16": int(40000 * 10 * 64 * 64 * 2),
    }


def bench_renderer(quick: bool) -> dict:
    from interp3d.data.world import WorldOptions, render_world
    from interp3d.render.gl import get_renderer
    from interp3d.render.scene import Camera, SceneOptions, render_view, sample_scene
    from interp3d.shape_model import get_category
    import tempfile

    cat = get_category("chair")
    alpha = np.array([40.0, 10, 5, 3, 1])
    structure = np.tensordot(alpha, cat.bases_array, axes=1)
    spec = sample_scene(cat, structure, alpha, np.random.default_rng(0), SceneOptions(distractors=(2, 2), clutter_boxes=(2, 2), occluders=(1, 1)))
    camera = Camera(np.array([math.pi + 0.2, 0.7, 0.0]), np.zeros(2), 300.0)
    n = 30 if quick else 100
    objects_view = lambda: [render_view(spec, camera, 256, np.random.default_rng(i)) for i in range(n)]  # noqa: E731
    t_view = timeit(objects_view, repeat=1)
    renderer = get_renderer(256, 2)
    from interp3d.render.gl import SceneObject

    objs = [SceneObject(spec.target, camera.rotation, np.zeros(3), 1)] + [SceneObject(m, camera.rotation @ r, camera.rotation @ o, i) for m, r, o, i in spec.extras]
    t_raw = timeit(lambda: [renderer.render(objs, 300.0, 320.0) for _ in range(n)], repeat=1)
    out = {"scene_triangles": int(len(spec.target.faces) + sum(len(m.faces) for m, *_ in spec.extras)), "gl_render_readback_images_per_s_256": n / t_raw, "render_view_images_per_s_256": n / t_view}
    with tempfile.TemporaryDirectory() as tmp:
        count = 20 if quick else 60
        start = time.perf_counter()
        render_world(Path(tmp) / "t", "chair", WorldOptions(kind="test3d", count=count, image_size=256), progress=False)
        out["dataset_images_per_s_256_with_png"] = count / (time.perf_counter() - start)
        videos, length = (2, 12) if quick else (4, 36)
        start = time.perf_counter()
        render_world(Path(tmp) / "v", "chair", WorldOptions(kind="video", count=videos, video_length=length, image_size=256), progress=False)
        out["video_frames_per_s_256_with_png"] = videos * length / (time.perf_counter() - start)
    return out


def matmul_gflops(device, n: int = 2048) -> float:
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)

    def run():
        for _ in range(4):
            a @ b
        sync(device)

    return 4 * 2 * n**3 / timeit(run) / 1e9


def bench_training(device, quick: bool) -> dict:
    from interp3d.config import preset
    from interp3d.models import HourglassNet, Interpreter

    out = {"matmul_gflops": matmul_gflops(device)}
    sizes = {"cpu-small": (128, 32, 128, 16), "paper": (256, 64, 256, 8 if device.type == "cpu" else 32)}
    for name, (image, hm, features, batch) in sizes.items():
        net = HourglassNet(10, features, 4, stride=image // hm).to(device, memory_format=torch.channels_last)
        macs = net.flops_per_image(image)
        x = torch.rand(batch, 3, image, image, device=device).contiguous(memory_format=torch.channels_last)
        target = torch.rand(batch, 10, hm, hm, device=device)
        opt = torch.optim.RMSprop(net.parameters(), lr=1e-4)

        def step():
            loss = torch.nn.functional.mse_loss(net(x)[-1], target)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sync(device)

        t = timeit(step, repeat=2 if quick else 3)
        gflops = 3 * 2 * macs * batch / t / 1e9  # forward + backward ~ 3x forward
        out[f"hourglass_{name}"] = {"batch": batch, "gmac_per_image": macs / 1e9, "train_images_per_s": batch / t, "achieved_gflops": gflops, "ratio_to_matmul": gflops / out["matmul_gflops"]}
        if name == "cpu-small" and not quick:  # does torch.compile help training? (measured: not on CPU)
            eager_net = net
            net = torch.compile(eager_net)
            start = time.perf_counter()
            step()
            compile_s = time.perf_counter() - start
            t_compiled = timeit(step, repeat=3)
            net = eager_net
            out["hourglass_cpu-small"] |= {"compiled_train_images_per_s": batch / t_compiled, "compiled_speedup": t / t_compiled, "compile_s": compile_s}
    # full interpreter step, real data pipeline vs tensors already in memory (cpu-small sizes)
    cfg = preset("cpu-small")
    model = Interpreter.build("chair", 128, 32, 128, 4, 1, (1024, 256, 128)).to(device)
    from interp3d.data.augment import augment_batch
    from interp3d.heatmaps import render_heatmaps
    from interp3d.train.losses import reprojection_loss

    images = torch.randint(0, 255, (256, 3, 128, 128), dtype=torch.uint8)
    keypoints = torch.rand(256, 10, 2) * 100 + 14
    visible = torch.ones(256, 10, dtype=torch.bool)
    opt = torch.optim.RMSprop(model.parameters(), lr=1e-5)
    fixed = (images[:16].float().div(255).to(device), keypoints[:16].to(device), visible[:16].to(device))
    gen = torch.Generator().manual_seed(0)

    def step(real: bool):
        if real:
            idx = torch.randint(0, 256, (16,), generator=gen)
            imgs, kp, vis = images[idx].to(device).float().div_(255), keypoints[idx].to(device), visible[idx].to(device)
            imgs, kp, vis = augment_batch(imgs, kp, vis, list(range(10)), gen, 15, 0.4, True)
        else:
            imgs, kp, vis = fixed
        out_ = model(imgs)
        gt = kp * 32 / 128
        target = render_heatmaps(gt, 32, 2.0, visible=vis)
        loss = reprojection_loss(out_.keypoints, gt, vis) + torch.nn.functional.mse_loss(out_.heatmaps, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sync(device)

    # Interleaved so that both variants see the same machine state (shared, noisy machines).
    step(False), step(True)
    t_mem, t_real = math.inf, math.inf
    for _ in range(3 if quick else 6):
        t_mem = min(t_mem, timeit(lambda: step(False), repeat=1, warmup=0))
        t_real = min(t_real, timeit(lambda: step(True), repeat=1, warmup=0))

    def prepare():
        idx = torch.randint(0, 256, (16,), generator=gen)
        imgs = images[idx].to(device).float().div_(255)
        augment_batch(imgs, keypoints[idx].to(device), visible[idx].to(device), list(range(10)), gen, 15, 0.4, True)
        sync(device)

    t_prep = timeit(prepare, repeat=10)
    out["interpreter_step_cpu_small"] = {
        "batch": 16, "images_per_s_in_memory": 16 / t_mem, "images_per_s_real_data": 16 / t_real, "real_over_memory_time": t_real / t_mem,
        "data_prep_ms": t_prep * 1e3, "data_prep_share_of_step": t_prep / t_real,
    }
    del cfg
    return out



class TensorOutputs(torch.nn.Module):
    """An interpreter returning plain tensors (heatmaps, structure, keypoints), as tracing and export need."""

    def __init__(self, model):
        super().__init__()
        self.m = model

    def forward(self, x):
        o = self.m(x)
        return o.heatmaps, o.structure, o.keypoints

def bench_inference(device, quick: bool) -> dict:
    from interp3d.models import Interpreter

    out = {}
    for name, (image, hm, features, widths) in {"cpu-small": (128, 32, 128, (1024, 256, 128)), "paper": (256, 64, 256, (2048, 512, 128))}.items():
        model = Interpreter.build("chair", image, hm, features, 4, 1, widths).to(device).eval()
        x1 = torch.rand(1, 3, image, image, device=device)
        x32 = torch.rand(32 if not quick else 8, 3, image, image, device=device)

        wrapped = TensorOutputs(model).eval()
        with torch.no_grad():
            traced = torch.jit.freeze(torch.jit.trace(wrapped, x1))
            lat_eager = timeit(lambda: (wrapped(x1), sync(device)), repeat=5)
            lat_script = timeit(lambda: (traced(x1), sync(device)), repeat=5)
            thr_eager = x32.shape[0] / timeit(lambda: (wrapped(x32), sync(device)), repeat=2)
            thr_script = x32.shape[0] / timeit(lambda: (traced(x32), sync(device)), repeat=2)
        out[name] = {
            "latency_ms_batch1_eager": lat_eager * 1e3,
            "latency_ms_batch1_torchscript": lat_script * 1e3,
            f"images_per_s_batch{x32.shape[0]}_eager": thr_eager,
            f"images_per_s_batch{x32.shape[0]}_torchscript": thr_script,
            "torchscript_speedup_batch1": lat_eager / lat_script,
        }
    return out


def bench_exports(device, quick: bool) -> dict:
    """The shipped model's architecture (cpu-small, FC 256-128-64) in eager mode vs TorchScript,
    torch.compile and ONNX Runtime, all in this run: batch-1 latency and batch-32 throughput."""
    from interp3d.models import Interpreter

    model = Interpreter.build("chair", 128, 32, 128, 4, 1, (256, 128, 64)).to(device).eval()

    wrapped = TensorOutputs(model).eval()
    x1 = torch.rand(1, 3, 128, 128, device=device)
    xb = torch.rand(8 if quick else 32, 3, 128, 128, device=device)
    runners = {"eager": wrapped}
    notes = {}
    if device.type == "cpu":  # what Predictor does: NHWC convolutions with oneDNN
        import copy

        nhwc = copy.deepcopy(wrapped).to(memory_format=torch.channels_last)
        runners["eager_channels_last"] = lambda x: nhwc(x.contiguous(memory_format=torch.channels_last))
    with torch.no_grad():
        runners["torchscript"] = torch.jit.freeze(torch.jit.trace(wrapped, x1))
        try:
            compiled = torch.compile(wrapped, dynamic=False)
            start = time.perf_counter()
            compiled(x1), compiled(xb)
            notes["torch_compile_warmup_s"] = time.perf_counter() - start
            runners["torch_compile"] = compiled
        except Exception as exc:  # no compiler toolchain, unsupported platform
            notes["torch_compile"] = f"unavailable: {type(exc).__name__}: {exc}"[:200]
    if device.type == "cpu":
        try:
            from interp3d.models.serialization import OnnxInterpreter

            start = time.perf_counter()
            onnx_model = OnnxInterpreter(model)
            notes["onnxruntime_export_s"] = time.perf_counter() - start
            runners["onnxruntime"] = lambda x: (lambda o: (o.heatmaps, o.structure, o.keypoints))(onnx_model(x))
            with torch.no_grad():
                notes["onnxruntime_max_abs_diff_structure"] = float((onnx_model(xb).structure - wrapped(xb)[1]).abs().max())
        except Exception as exc:
            notes["onnxruntime"] = f"unavailable: {type(exc).__name__}: {exc}"[:200]
    out: dict = {"batch": xb.shape[0], **notes}
    with torch.no_grad():
        for name, run in runners.items():
            lat = timeit(lambda: (run(x1), sync(device)), repeat=10 if not quick else 3)
            thr = xb.shape[0] / timeit(lambda: (run(xb), sync(device)), repeat=3 if not quick else 1)
            out[name] = {"latency_ms_batch1": lat * 1e3, "images_per_s_batch": thr}
    for name in runners:
        if name != "eager":
            out[name]["speedup_batch1"] = out["eager"]["latency_ms_batch1"] / out[name]["latency_ms_batch1"]
            out[name]["speedup_batch"] = out[name]["images_per_s_batch"] / out["eager"]["images_per_s_batch"]
    return out


def bench_product(device, quick: bool) -> dict:
    """The product architecture (EfficientNet-Lite0 2D module with its viewpoint head + keypoint lifter, 128, 160 and 192 px) beside today's
    shipped hourglass chair model, in this run: ONNX Runtime and eager batch throughput, batch-1
    latency, and 2D-module training throughput; plus the shipped product models' recorded recipe times."""
    from dataclasses import asdict

    from interp3d.config import preset
    from interp3d.models import Interpreter
    from interp3d.models.serialization import OnnxInterpreter, build_interpreter, pretrained_models, read_model_info

    def product(overrides: list[str]) -> Interpreter:
        cfg = preset("product").override(overrides)
        return build_interpreter("chair", asdict(cfg.model), cfg.synthetic.heatmap_size)

    architectures = {
        "hourglass_chair_cpu_small": Interpreter.build("chair", 128, 32, 128, 4, 1, (256, 128, 64)),
        "efficientnet_lite0_product": product([]),
        # the same at 160 px in (40x40 heatmaps), as the shipped chair's and bed's recipes set it: 1.56x the pixels, for a 2D module that sees more of a photo's detail
        "efficientnet_lite0_product_160": product(["model.image_size=160", "synthetic.heatmap_size=40"]),
        # and at 192 px (48x48), the sofa's, table's and swivel chair's since their 192 px epochs: 2.25x the 128 px pixels
        "efficientnet_lite0_product_192": product(["model.image_size=192", "synthetic.heatmap_size=48"]),
    }
    batch = 8 if quick else 32
    out: dict = {"batch": batch}
    for name, model in architectures.items():
        model = model.to(device).eval()
        xb = torch.rand(batch, 3, model.image_size, model.image_size, device=device)
        x1 = xb[:1]
        entry = {"parameters_M": sum(p.numel() for p in model.parameters()) / 1e6}
        with torch.no_grad():
            entry["eager_images_per_s"] = batch / timeit(lambda: (model(xb), sync(device)), repeat=2 if quick else 3)
            if device.type == "cpu":
                onnx_model = OnnxInterpreter(model)
                entry["onnxruntime_images_per_s"] = batch / timeit(lambda: onnx_model(xb), repeat=2 if quick else 3)
                entry["onnxruntime_latency_ms_batch1"] = timeit(lambda: onnx_model(x1), repeat=5) * 1e3
        net = model.keypoint_net.train()
        opt = torch.optim.Adam(net.parameters(), 1e-4)
        xt = torch.rand(16 if quick else 32, 3, model.image_size, model.image_size, device=device)

        def step():
            loss = net(xt)[-1].square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sync(device)

        entry["train_2d_images_per_s"] = xt.shape[0] / timeit(step, repeat=2 if quick else 3)
        out[name] = entry
    hg, ef = out["hourglass_chair_cpu_small"], out["efficientnet_lite0_product"]
    if "onnxruntime_images_per_s" in ef:
        out["onnx_throughput_ratio_product_over_hourglass"] = ef["onnxruntime_images_per_s"] / hg["onnxruntime_images_per_s"]
    out["train_2d_ratio_product_over_hourglass"] = ef["train_2d_images_per_s"] / hg["train_2d_images_per_s"]
    recipes = {}
    for name, path in sorted(pretrained_models().items()):
        info = read_model_info(path).get("info", {})
        if info.get("recipe") == "scripts/train_product.py":
            recipes[name] = {"minutes": round(sum(info.get("train_seconds", {}).values()) / 60, 1), **{k.removesuffix("_s") + "_min": round(v / 60, 1) for k, v in info.get("train_seconds", {}).items()}}
            if info.get("keypoint_checkpoint"):  # the last 2D training ran elsewhere (e.g. a GPU): its minutes are that device's
                recipes[name]["pretrain_2d_device"] = info["keypoint_checkpoint"].get("device")
    out["recipe_minutes_2_cores"] = recipes
    return out


def bench_loading(device, quick: bool) -> dict:
    """Reading a rendered world from disk (PNG decode) through a DataLoader with 0 and 2 workers,
    with and without pinned memory, against the rate the cpu-small training step consumes images."""
    import tempfile

    from torch.utils.data import DataLoader

    from interp3d.data.world import WorldDataset, WorldOptions, render_world
    from interp3d.models import Interpreter

    n = 64 if quick else 256
    root = render_world(Path(tempfile.mkdtemp()) / "world", "chair", WorldOptions(kind="annotated2d", count=n, image_size=128), seed=3)
    ds = WorldDataset(root)
    out: dict = {"images": n}
    for workers in (0, 2):
        for pin in (False, True):
            if pin and device.type != "cuda":
                continue
            loader = DataLoader(ds, batch_size=16, shuffle=True, num_workers=workers, pin_memory=pin, persistent_workers=False)

            def consume():
                for batch in loader:
                    batch["image"].to(device, non_blocking=pin)
                sync(device)

            t = timeit(consume, repeat=2, warmup=1)
            out[f"workers{workers}{'_pinned' if pin else ''}_images_per_s"] = n / t
    model = Interpreter.build("chair", 128, 32, 128, 4, 1, (256, 128, 64)).to(device)
    opt = torch.optim.RMSprop(model.parameters(), lr=1e-5)
    x = torch.rand(16, 3, 128, 128, device=device)

    def step():
        loss = model(x).heatmaps.square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sync(device)

    out["train_step_images_per_s"] = 16 / timeit(step, repeat=3)
    best = max(v for k, v in out.items() if k.startswith("workers"))
    out["best_loader_over_step_rate"] = best / out["train_step_images_per_s"]
    return out


def bench_lifting(device, quick: bool) -> dict:
    """Batched test-time refinement and Predictor.lift vs the per-object scipy fit (benchmarks/lifting.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import lifting

    from interp3d.inference import Predictor
    from interp3d.shape_model import get_category

    data = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not data.is_dir():
        return {"skipped": f"{data} not found (real shapes for the proxy keypoints)"}
    return lifting.speed(Predictor.load("chair", device), get_category("chair"), data, n=1000 if quick else 4000)


def bench_memory(device) -> dict:
    """Measured in a fresh process so that earlier benchmarks do not mask the peak."""
    import subprocess
    import sys

    code = f"import json, run_all; print(json.dumps(run_all._memory_child({str(device)!r})))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _peak_rss_kb() -> int:
    """This process's peak RSS. VmHWM, since ru_maxrss survives exec and would show the parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _memory_child(device_name: str) -> dict:
    from interp3d.data.synthetic import SyntheticSkeletonDataset
    from interp3d.models import HourglassNet

    device = torch.device(device_name)
    torch.set_num_threads(2)
    before = _peak_rss_kb()
    ds = SyntheticSkeletonDataset("chair", 40000, seed=0)
    cache = sum(t.numel() * t.element_size() for t in (ds.params, ds.keypoints, ds.visible, ds.targets))
    net = HourglassNet(10, 256, 4, stride=4).to(device, memory_format=torch.channels_last)
    x = torch.rand(8, 3, 256, 256, device=device).contiguous(memory_format=torch.channels_last)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    net(x)[-1].sum().backward()
    sync(device)
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else (_peak_rss_kb() - before) * 1024
    return {"synthetic_40k_in_memory_mb": cache / 2**20, "paper_hourglass_train_step_batch8_peak_mb": peak / 2**20, "peak_measure": "cuda max_memory_allocated" if device.type == "cuda" else "growth of process max RSS"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--only", nargs="*", default=None, help="synthetic renderer training inference exports loading lifting memory product (merged into the existing results)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    suffix = "" if device.type == "cpu" else f"_{device.type}"
    previous = RESULTS / f"benchmarks{suffix}.json"
    results = json.loads(previous.read_text()) if args.only and previous.is_file() else {}
    results |= {"machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": torch.get_num_threads(), "device": str(device), "gpu": torch.cuda.get_device_name() if device.type == "cuda" else None}}
    wanted = args.only or ["synthetic", "renderer", "training", "inference", "exports", "loading", "lifting", "memory", "product"]
    for name in wanted:
        start = time.perf_counter()
        if name == "synthetic":
            results[name] = bench_synthetic(args.quick)
        elif name == "renderer":
            results[name] = bench_renderer(args.quick)
        elif name == "training":
            results[name] = bench_training(device, args.quick)
        elif name == "inference":
            results[name] = bench_inference(device, args.quick)
        elif name == "exports":
            results[name] = bench_exports(device, args.quick)
        elif name == "loading":
            results[name] = bench_loading(device, args.quick)
        elif name == "lifting":
            results[name] = bench_lifting(device, args.quick)
        elif name == "memory":
            results[name] = bench_memory(device)
        elif name == "product":
            results[name] = bench_product(device, args.quick)
        print(f"{name}: {time.perf_counter() - start:.0f}s", flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"benchmarks{suffix}.json").write_text(json.dumps(results, indent=2))
    lines = ["# interp3d benchmarks", "", f"`{results['machine']}`", ""]

    def flatten(prefix, obj):
        for k, v in obj.items():
            if isinstance(v, dict):
                yield from flatten(f"{prefix}{k}.", v)
            else:
                yield f"{prefix}{k}", v

    lines += ["| measure | value |", "|---|---|"]
    for k, v in flatten("", {k: v for k, v in results.items() if k != "machine"}):
        lines.append(f"| {k} | {v:.4g} |" if isinstance(v, float) else f"| {k} | {v} |")
    (RESULTS / f"benchmarks{suffix}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
