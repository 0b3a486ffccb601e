"""Lifting 2D keypoints to 3D on real shapes: the shipped 2D-to-3D module, batched refinement and a
classic per-object fit, by number of visible keypoints; and the refinement's speed beside scipy.

Proxy data (nothing here trained on it unless said):

* ``keypointnet_test``: the held-out fifth of KeypointNet's complete chairs (``data.lifting`` split),
  their real 3D keypoints seen from random views (every azimuth, elevation 0-35 deg, focal lengths and
  translations of the category ranges) with self-occlusion by the seat and backrest, truncation,
  random misses, 4 % detector noise and 2 % outliers.
* ``pascal3d_cad``: the 10 PASCAL3D+ CAD chairs the same way (they are in the training bank: a check
  of fit, not of generalisation).
* ``rendered_world`` (``--test3d FOLDER``): a rendered world's exact 2D keypoints and the renderer's
  visibility (depth test against the real meshes, occluders). The README's figures use
  ``world render -k test3d --real-shapes ../shared/data/pascal3d_cad --n 300 --seed 77``: the
  PASCAL3D+ CAD chairs' own meshes hide the keypoints, as in photographs.

Predictors: the mean chair seen from the front (trivial); the classic fit (3D-INN basis, weak
perspective, 24 starts, scipy least squares, robust loss, L2 prior on the coefficients);
the shipped model's 2D-to-3D module alone (``Predictor.lift`` with refinement off); the module plus
batched refinement (the default); refinement alone from an azimuth grid (no network).

    python benchmarks/lifting.py [--data ../shared/data] [--n 800] [--classic 200] [--model chair] [--test3d runs/world/p3d_test3d]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import least_squares

from interp3d import geometry
from interp3d.data.lifting import LiftingOptions, LiftingSampler, load_real_shapes, real_shape_bank
from interp3d.evaluation.metrics import angle_error, average_recall, structure_error
from interp3d.inference import Predictor, keypoints_to_plane
from interp3d.io_utils import atomic_write_json, atomic_write_text
from interp3d.params import ShapeCamera
from interp3d.refine import RefineOptions, refine
from interp3d.shape_model import get_category

PROXY_OPTIONS = LiftingOptions(real_fraction=1.0, elevation_deg=(0.0, 35.0), shape_jitter=0.0, truncation=0.15, dropout=0.1, noise=0.04, outliers=0.02, soft_confidence=0.0)
BUCKETS = ((4, 4), (5, 6), (7, 8), (9, 10))


def classic_fit(keypoints: np.ndarray, weights: np.ndarray, category, prior, starts: int = 24) -> tuple[np.ndarray, float, float]:
    """Per-object reference: (structure (N, 3), azimuth, elevation) of a weak-perspective fit, scipy."""
    bases = category.bases_array
    present = weights > 0
    obs = keypoints[present]
    mean, sd = prior.mean, np.sqrt(np.diag(prior.covariance))
    k1 = len(mean)

    def unpack(x):
        a, log_s, az, el, t = x[:k1], x[k1], x[k1 + 1], x[k1 + 2], x[k1 + 3 :]
        shape = bases[0] + np.tensordot(a, bases[1:], axes=1)
        rot = geometry.euler_to_matrix(torch.tensor([math.pi + el, az, 0.0], dtype=torch.float64)).numpy()
        return shape, rot, np.exp(log_s), t

    def residual(x):
        shape, rot, s, t = unpack(x)
        uv = s * (shape @ rot.T)[:, :2] + t
        return np.concatenate(((uv[present] - obs).ravel() / scale, (x[:k1] - mean) / sd))

    centre = obs.mean(0)
    scale = max(float(np.sqrt(((obs - centre) ** 2).sum(1).mean())), 1e-6)
    radius_model = float(np.sqrt(((bases[0] - bases[0].mean(0)) ** 2).sum(1).mean()))
    best = None
    for i in range(starts):
        az0, el0 = 2 * math.pi * (i % (starts // 2)) / (starts // 2), math.radians(5.0 if i < starts // 2 else 25.0)
        x0 = np.concatenate((mean, [math.log(scale / radius_model)], [az0, el0], centre))
        sol = least_squares(residual, x0, loss="soft_l1", f_scale=0.1, max_nfev=60)
        if best is None or sol.cost < best.cost:
            best = sol
    shape, _, s, _ = unpack(best.x)
    return shape * s, float(best.x[k1 + 1] % (2 * math.pi)), float(best.x[k1 + 2])


def summarise(structure_pred, structure_gt, az_pred, az_gt, visible_count) -> dict:
    s_err = structure_error(structure_pred, structure_gt)
    a_err = angle_error(az_pred, az_gt)
    out = {"all": _row(s_err, a_err)}
    for lo, hi in BUCKETS:
        sel = (visible_count >= lo) & (visible_count <= hi)
        if sel.any():
            out[f"{lo}-{hi} visible" if lo != hi else f"{lo} visible"] = _row(s_err[sel], a_err[sel])
    return out


def _row(s_err, a_err) -> dict:
    return {"n": int(len(s_err)), "structure_ar": average_recall(s_err, 0.5), "azimuth_ar": average_recall(a_err, math.pi), "azimuth_median_deg": float(np.degrees(np.median(a_err)))}


def evaluate_set(name, keypoints, weights, structure, azimuth, predictor, category, with_classic: int) -> dict:
    visible_count = (weights > 0).sum(1)
    results, timings = {}, {}
    mean_shape = np.broadcast_to(geometry.structure_from_alpha(predictor.prior.mean_alpha(1.0), category.bases(torch.float64)).numpy(), structure.shape)
    results["mean chair, front"] = summarise(mean_shape, structure, np.zeros(len(keypoints)), azimuth, visible_count)
    for label, refine_on in (("2D-to-3D module", False), ("module + refinement", True)):
        predictor.refine = refine_on
        t0 = time.perf_counter()
        preds = predictor.lift(keypoints, confidence=weights)
        timings[label] = len(keypoints) / (time.perf_counter() - t0)
        results[label] = summarise(np.stack([p.keypoints_3d for p in preds]), structure, np.radians([p.azimuth_deg for p in preds]), azimuth, visible_count)
    # refinement alone: starts on an azimuth grid with the prior's mean shape, no network
    plane, w = _to_plane(keypoints, weights, category)
    t0 = time.perf_counter()
    grid = _grid_init(len(keypoints), predictor.prior, category)
    res = refine(category, plane, w, grid, predictor.prior, RefineOptions(flips=False))
    timings["refinement alone (8 starts)"] = len(keypoints) / (time.perf_counter() - t0)
    s_pred = res.params.project(category)[0].numpy()
    results["refinement alone, 8 azimuth starts"] = summarise(s_pred, structure, res.params.view()[0].numpy(), azimuth, visible_count)
    if with_classic:
        m = min(with_classic, len(keypoints))
        t0 = time.perf_counter()
        fits = [classic_fit(keypoints[i], weights[i], category, predictor.prior) for i in range(m)]
        timings["classic scipy fit (24 starts)"] = m / (time.perf_counter() - t0)
        results[f"classic fit (first {m})"] = summarise(np.stack([f[0] for f in fits]), structure[:m], np.array([f[1] for f in fits]), azimuth[:m], visible_count[:m])
        predictor.refine = True
        preds = predictor.lift(keypoints[:m], confidence=weights[:m])
        results[f"module + refinement (same {m})"] = summarise(np.stack([p.keypoints_3d for p in preds]), structure[:m], np.radians([p.azimuth_deg for p in preds]), azimuth[:m], visible_count[:m])
    predictor.refine = True
    print(f"\n## {name} ({len(keypoints)} objects)")
    for method, rows in results.items():
        for bucket, r in rows.items():
            print(f"{method:38s} {bucket:12s} n={r['n']:5d}  structure AR {r['structure_ar']:6.2f}  azimuth AR {r['azimuth_ar']:6.2f}  median az {r['azimuth_median_deg']:6.1f} deg")
    return {"results": results, "objects_per_second": timings}


def _to_plane(keypoints, weights, category):
    """The plane keypoints and weights ``Predictor.lift`` gives the network and the refinement."""
    w = torch.from_numpy(weights)
    return keypoints_to_plane(torch.from_numpy(keypoints), w, category)[0], w


def _grid_init(n, prior, category, count: int = 8) -> ShapeCamera:
    alpha = prior.mean_alpha(40.0).expand(n, count, -1)
    az = torch.arange(count, dtype=torch.float64) * 2 * math.pi / count
    angles = geometry.view_to_euler(az.expand(n, -1), torch.full((n, count), prior.elevation[0], dtype=torch.float64))
    f = torch.full((n, count), 40.0 * math.exp(prior.log_focal_ratio[0]), dtype=torch.float64)
    return ShapeCamera.from_angles(alpha, angles, torch.zeros(n, count, 2, dtype=torch.float64), f)


def proxy_set(shapes, n, seed, category):
    bank = real_shape_bank(shapes, category, align_rotation=False)
    batch = LiftingSampler(category, bank, PROXY_OPTIONS).sample(n, torch.Generator().manual_seed(seed))
    kp = batch.keypoints.double().numpy() * 1.7 + 37.0  # arbitrary image scale and offset
    return kp, batch.weights.double().numpy(), batch.structure.double().numpy(), batch.azimuth.double().numpy()


def speed(predictor, category, data: Path, n: int = 4000) -> dict:
    """Objects/s in one run: the batched refinement alone (the lifter's hypotheses + flips, the
    default options), the whole ``Predictor.lift`` (normalisation, network, refinement, Prediction
    objects), and the per-object scipy classic fit."""
    kp, w, _, _ = proxy_set(load_real_shapes(data, "chair", "test")["keypointnet"], n, 99, category)
    predictor.refine = True
    predictor.lift(kp[:64], confidence=w[:64])  # warm-up
    plane, wt = _to_plane(kp, w, category)
    with torch.no_grad():
        lifted = predictor.model.lift_keypoints(plane.float(), wt.float())
    init = predictor.model.hypotheses_of(lifted)
    t0 = time.perf_counter()
    refine(category, plane, wt, init, predictor.prior, predictor.refine_options)
    refine_rate = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    predictor.lift(kp, confidence=w)
    lift_rate = n / (time.perf_counter() - t0)
    m = 40
    t0 = time.perf_counter()
    for i in range(m):
        classic_fit(kp[i], w[i], category, predictor.prior)
    scipy_rate = m / (time.perf_counter() - t0)
    return {
        "refinement_objects_per_s": refine_rate, "lift_with_refinement_objects_per_s": lift_rate, "scipy_classic_fit_objects_per_s": scipy_rate,
        "refinement_over_scipy": refine_rate / scipy_rate, "threads": torch.get_num_threads(), "objects": n,
    }


def markdown(out: dict) -> str:
    """The results as Markdown tables: one per data set, methods by rows, visible-count buckets by columns."""
    lines = []
    for name, block in out.items():
        if not isinstance(block, dict) or "results" not in block:
            continue
        rows = block["results"]
        buckets = [b for b in next(iter(rows.values()))]
        lines += [f"### {name}", "", "structure AR / azimuth AR / median azimuth error (deg); n per column from the first row", ""]
        first = next(iter(rows.values()))
        lines.append("| method | " + " | ".join(f"{b} (n={first[b]['n']})" for b in buckets) + " |")
        lines.append("|---" * (len(buckets) + 1) + "|")
        for method, r in rows.items():
            cells = [f"{r[b]['structure_ar']:.1f} / {r[b]['azimuth_ar']:.1f} / {r[b]['azimuth_median_deg']:.1f}" if b in r else "-" for b in buckets]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines.append("")
    sp = out.get("speed")
    if sp:
        lines += [
            "### speed (2 CPU threads, one run)", "",
            f"batched refinement {sp['refinement_objects_per_s']:.0f} objects/s, whole Predictor.lift {sp['lift_with_refinement_objects_per_s']:.0f} objects/s, "
            f"per-object scipy classic fit {sp['scipy_classic_fit_objects_per_s']:.1f} objects/s: refinement / scipy = {sp['refinement_over_scipy']:.0f}x", "",
        ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
    parser.add_argument("--model", default="chair")
    parser.add_argument("--n", type=int, default=800)
    parser.add_argument("--classic", type=int, default=200, help="objects per set for the (slow) classic fit")
    parser.add_argument("--test3d", type=Path, help="a rendered test3d world folder to add")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "lifting.json")
    args = parser.parse_args(argv)
    if not args.data.resolve().is_dir():
        print(f"skipped: shared data folder {args.data} not found", file=sys.stderr)
        return 0
    category = get_category("chair")
    predictor = Predictor.load(args.model)
    out = {"model": str(args.model), "proxy_options": PROXY_OPTIONS.__dict__}
    kpn = load_real_shapes(args.data, "chair", "test")["keypointnet"]
    p3d = load_real_shapes(args.data, "chair", "all")["pascal3d"]
    out["keypointnet_test"] = evaluate_set("keypointnet_test", *proxy_set(kpn, args.n, 1, category), predictor, category, args.classic)
    out["pascal3d_cad"] = evaluate_set("pascal3d_cad", *proxy_set(p3d, args.n, 2, category), predictor, category, args.classic)
    if args.test3d:
        from interp3d.data.world import WorldDataset

        ds = WorldDataset(args.test3d)
        a = ds.annotations
        kp = a["keypoints"].astype(np.float64)
        vis = a["visible"].astype(bool)
        ok = vis.sum(1) >= 4
        out["rendered_world"] = evaluate_set(f"rendered world {args.test3d.name} (renderer visibility)", np.where(vis[ok, :, None], kp[ok], np.nan), vis[ok].astype(np.float64), a["structure"][ok].astype(np.float64), a["azimuth"][ok].astype(np.float64), predictor, category, args.classic)
    out["speed"] = speed(predictor, category, args.data)
    print("\nspeed:", json.dumps(out["speed"]))
    atomic_write_json(args.out, out)
    atomic_write_text(args.out.with_suffix(".md"), markdown(out))
    print(f"written {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
