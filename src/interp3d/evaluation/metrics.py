"""Metrics of interp3d's evaluation protocol (the papers do not spell theirs out; this is ours).

* **3D structure**: per object, centre the predicted and ground-truth 3D keypoints and scale each to
  unit RMS radius, in the canonical object frame (pose removed); the error is the RMS distance over
  keypoints. ``align="procrustes"`` also rotates the prediction onto the truth (for data whose
  canonical frames differ).
* **Pose**: azimuth error = wrapped |az_pred - az_gt| in [0, pi]; likewise elevation. For an object
  that looks the same after a half turn (a table, ``Category.half_turn_permutation``) azimuths are
  compared modulo pi, its structure and 2D keypoints under whichever labelling fits best.
* **Viewpoint bins** (PASCAL3D+-style): azimuth classified into ``n`` bins of ``360/n`` deg centred
  on 0, 360/n, ...; accuracy = share of objects whose predicted bin is the true one (with ground-truth
  boxes, so this is the viewpoint part of AVP without detection).
* **Gains** between two models on the same objects: the difference of average recalls with a 95 %
  interval from a paired bootstrap over the objects (both models' errors resampled together).
* **Average recall** of an error list: the mean, over ``steps`` thresholds tau evenly spaced in
  [0, tau_max], of the share of objects with error <= tau; in percent. Defaults: structure
  tau_max = 0.5, pose tau_max = pi.
* **2D**: PCK, a keypoint is correct when within ``0.05 * heatmap side`` px (3.2 px on a 64 map)
  of the truth; averaged per keypoint over the objects where it is visible, then over keypoints.
"""

from __future__ import annotations

import math

import numpy as np

from ..shape_model import half_turned

__all__ = [
    "normalise_structure",
    "structure_error",
    "angle_error",
    "average_recall",
    "recall_terms",
    "recall_curve",
    "pck",
    "pose_summary",
    "pcp_ae",
    "azimuth_bin",
    "azimuth_bin_accuracy",
    "paired_bootstrap_gain",
    "paired_mean_interval",
    "structure_summary",
    "align_half_turn",
    "confidence_summary",
]

STRUCTURE_TAU_MAX = 0.5
POSE_TAU_MAX = math.pi


def normalise_structure(points: np.ndarray) -> np.ndarray:
    """Centre ``(..., N, 3)`` points and scale them to unit RMS radius."""
    p = np.asarray(points, dtype=np.float64)
    centred = p - p.mean(axis=-2, keepdims=True)
    radius = np.sqrt((centred**2).sum(axis=-1).mean(axis=-1))[..., None, None]
    return centred / np.maximum(radius, 1e-12)


def _kabsch(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    u, _, vt = np.linalg.svd(target.T @ source)
    d = np.sign(np.linalg.det(u @ vt)) or 1.0
    return u @ np.diag([1.0, 1.0, d]) @ vt


def structure_error(pred: np.ndarray, gt: np.ndarray, align: str = "none", half_turn=None) -> np.ndarray:
    """RMS keypoint distance ``(B,)`` between normalised structures ``(B, N, 3)``; with a
    ``half_turn`` permutation (a symmetric category's) the smaller of the distances to the truth
    and to the truth turned half way round and relabelled."""
    if half_turn is not None:
        return np.minimum(structure_error(pred, gt, align), structure_error(pred, half_turned(gt, half_turn), align))
    if align not in ("none", "procrustes"):
        raise ValueError(f"align must be 'none' or 'procrustes', got {align!r}")
    p, g = normalise_structure(pred), normalise_structure(gt)
    if p.shape != g.shape:
        raise ValueError(f"prediction {p.shape} and ground truth {g.shape} differ in shape")
    if align == "procrustes":
        p = np.stack([pi @ _kabsch(pi, gi).T for pi, gi in zip(p, g)])
    return np.sqrt(((p - g) ** 2).sum(axis=-1).mean(axis=-1))


def angle_error(pred: np.ndarray, gt: np.ndarray, period: float = 2 * math.pi) -> np.ndarray:
    """Wrapped absolute angle difference in [0, period / 2] for angles defined modulo ``period``."""
    d = np.abs(np.asarray(pred, np.float64) - np.asarray(gt, np.float64)) % period
    return np.minimum(d, period - d)


def align_half_turn(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, permutation) -> tuple[np.ndarray, np.ndarray]:
    """Ground-truth 2D keypoints ``(B, N, 2)`` and visibility ``(B, N)``, each object relabelled by the
    half-turn ``permutation`` where that brings its visible keypoints closer to ``pred`` (mean squared
    distance over the ones both predicted finite); unchanged where ``permutation`` is None."""
    gt, vis = np.asarray(gt, np.float64), np.asarray(visible, bool)
    if permutation is None:
        return gt, vis
    perm = list(permutation)
    pred = np.asarray(pred, np.float64)

    def cost(g, v):
        d = ((pred - g) ** 2).sum(-1)
        use = v & np.isfinite(d)
        return np.where(use, d, 0.0).sum(-1) / np.maximum(use.sum(-1), 1)

    turn = cost(gt[:, perm], vis[:, perm]) < cost(gt, vis)
    return np.where(turn[:, None, None], gt[:, perm], gt), np.where(turn[:, None], vis[:, perm], vis)


def _hits(errors: np.ndarray, tau_max: float, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(thresholds (T,), hits (T, B): object b's error <= threshold t) for ``steps`` thresholds in [0, tau_max]."""
    taus = np.linspace(0.0, tau_max, steps)
    return taus, np.asarray(errors, np.float64)[None, :] <= taus[:, None]


def recall_curve(errors: np.ndarray, tau_max: float, steps: int = 101) -> tuple[np.ndarray, np.ndarray]:
    """(thresholds, recall in [0, 1]) for ``steps`` thresholds in [0, tau_max]."""
    taus, hits = _hits(errors, tau_max, steps)
    if hits.shape[1] == 0:
        return taus, np.zeros_like(taus)
    return taus, hits.mean(axis=1)


def recall_terms(errors: np.ndarray, tau_max: float, steps: int = 101) -> np.ndarray:
    """Each object's share of the thresholds its error passes, in percent: their mean is the AR, so an
    AR difference decomposes into per-object terms that a bootstrap can resample."""
    return _hits(errors, tau_max, steps)[1].mean(axis=0) * 100.0


def average_recall(errors: np.ndarray, tau_max: float, steps: int = 101) -> float:
    """Mean recall over the thresholds, in percent."""
    return float(recall_curve(errors, tau_max, steps)[1].mean() * 100.0)


def pck(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, heatmap_size: int, fraction: float = 0.05) -> float:
    """PCK in percent for keypoints ``(B, N, 2)`` in heatmap px; threshold ``fraction * heatmap_size``."""
    dist = np.linalg.norm(np.asarray(pred, np.float64) - np.asarray(gt, np.float64), axis=-1)
    vis = np.asarray(visible, bool)
    correct = (dist <= fraction * heatmap_size) & vis
    counts = vis.sum(axis=0)
    per_keypoint = correct.sum(axis=0)[counts > 0] / counts[counts > 0]
    return float(per_keypoint.mean() * 100.0) if per_keypoint.size else float("nan")


def pcp_ae(pred: np.ndarray, gt: np.ndarray, visible: np.ndarray, sigma: np.ndarray, threshold: float = 1.5, cap: float = 5.0) -> tuple[float, float]:
    """3D-INN's annotator-relative 2D metrics for keypoints ``(B, N, 2)`` and spreads ``sigma (B, N)``
    (same units): PCP = share of visible keypoints with ``d / sigma <= threshold``, in %; AE = mean
    over all keypoints of ``min(d / sigma, cap)``, missing keypoints counting 0 (as the released code)."""
    dist = np.linalg.norm(np.asarray(pred, np.float64) - np.asarray(gt, np.float64), axis=-1)
    vis = np.asarray(visible, bool) & np.isfinite(sigma)
    ratio = np.where(vis, dist / (np.where(vis, sigma, 1.0) + 1e-5), 0.0)
    pcp_value = float((ratio[vis] <= threshold).mean() * 100.0) if vis.any() else float("nan")
    ae_value = float(np.minimum(ratio, cap).mean())
    return pcp_value, ae_value


def structure_summary(errors: np.ndarray, tau_max: float = STRUCTURE_TAU_MAX) -> dict[str, float]:
    errors = np.asarray(errors, np.float64)
    return {"average_recall": average_recall(errors, tau_max), "mean": float(errors.mean()), "median": float(np.median(errors))}


def pose_summary(errors: np.ndarray, tau_max: float = POSE_TAU_MAX) -> dict[str, float]:
    errors = np.asarray(errors, np.float64)
    return {
        "average_recall": average_recall(errors, tau_max),
        "median_deg": float(np.degrees(np.median(errors))),
        "accuracy_pi_6": float((errors <= math.pi / 6).mean() * 100.0),
    }


def confidence_summary(confidence: np.ndarray, correct: np.ndarray, edges=(0.0, 0.3, 0.5, 0.7, 0.9, 1.0)) -> dict:
    """How well a confidence in [0, 1] foretells being correct: ``auroc`` (the probability that a
    correct prediction is more confident than a wrong one; ties count half; None unless both
    occur), ``calibration_error`` (the objects' mean |confidence - correct share| over the bins)
    and per bin of ``edges`` (the last closed) the count, mean confidence and correct share."""
    conf, ok = np.asarray(confidence, np.float64), np.asarray(correct, bool)
    if conf.shape != ok.shape or conf.ndim != 1 or conf.size == 0:
        raise ValueError(f"need equal-length, non-empty confidences and outcomes, got {conf.shape} and {ok.shape}")
    pos, neg = conf[ok], conf[~ok]
    auroc = None
    if pos.size and neg.size:
        ranks = np.empty(conf.size)
        order = np.argsort(conf, kind="mergesort")
        ranks[order] = np.arange(1, conf.size + 1)
        for value in np.unique(conf):  # ties share their mean rank
            tie = conf == value
            ranks[tie] = ranks[tie].mean()
        auroc = float((ranks[ok].sum() - pos.size * (pos.size + 1) / 2) / (pos.size * neg.size))
    which = np.clip(np.searchsorted(np.asarray(edges)[1:-1], conf, side="right"), 0, len(edges) - 2)
    bins, gap = [], 0.0
    for b in range(len(edges) - 1):
        inside = which == b
        if inside.any():
            mean_conf, share = float(conf[inside].mean()), float(ok[inside].mean())
            gap += inside.sum() * abs(mean_conf - share)
            bins.append({"low": float(edges[b]), "high": float(edges[b + 1]), "n": int(inside.sum()), "confidence": mean_conf, "correct": share})
    return {"n": int(conf.size), "correct": float(ok.mean()), "auroc": auroc, "calibration_error": float(gap / conf.size), "bins": bins}


def azimuth_bin(azimuth: np.ndarray, bins: int) -> np.ndarray:
    """Bin index in ``0..bins-1`` of azimuths (rad), bins of ``2 pi / bins`` centred on multiples of it."""
    width = 2 * math.pi / bins
    return (np.floor(np.mod(np.asarray(azimuth, np.float64) + width / 2, 2 * math.pi) / width).astype(np.int64)) % bins


def azimuth_bin_accuracy(pred: np.ndarray, gt: np.ndarray, bins: int) -> float:
    """Share (%) of objects whose predicted azimuth falls in the true azimuth's bin."""
    pred, gt = np.asarray(pred), np.asarray(gt)
    return float((azimuth_bin(pred, bins) == azimuth_bin(gt, bins)).mean() * 100.0) if gt.size else float("nan")


def paired_bootstrap_gain(
    errors_base: np.ndarray, errors_new: np.ndarray, tau_max: float, steps: int = 101, samples: int = 2000, seed: int = 0, level: float = 0.95
) -> dict[str, float]:
    """AR(new) - AR(base) on the same objects, with a ``level`` interval from a paired bootstrap."""
    base, new = np.asarray(errors_base, np.float64), np.asarray(errors_new, np.float64)
    if base.shape != new.shape or base.ndim != 1 or base.size == 0:
        raise ValueError(f"need two equal-length, non-empty error lists, got {base.shape} and {new.shape}")
    return paired_mean_interval(recall_terms(new, tau_max, steps) - recall_terms(base, tau_max, steps), samples, seed, level)


def paired_mean_interval(differences: np.ndarray, samples: int = 2000, seed: int = 0, level: float = 0.95) -> dict[str, float]:
    """The mean of per-object differences (new - base on the same objects), with a ``level``
    interval from a bootstrap over the objects."""
    diff = np.asarray(differences, np.float64)
    idx = np.random.default_rng(seed).integers(0, diff.size, (samples, diff.size))
    boot = diff[idx].mean(axis=1)
    alpha = (1.0 - level) / 2
    return {"gain": float(diff.mean()), "low": float(np.quantile(boot, alpha)), "high": float(np.quantile(boot, 1 - alpha))}


def seed_covering_gain(
    errors_base: list[np.ndarray], errors_new: list[np.ndarray], tau_max: float, steps: int = 101, samples: int = 4000, seed: int = 0, level: float = 0.95
) -> dict[str, float]:
    """AR(new) - AR(base) over several training runs (one pair of error lists per seed, each pair on
    the same test objects), with an interval that covers both the test sample and the run-to-run
    variation: a two-level bootstrap that resamples the seeds, then the objects within each drawn
    seed (paired), and averages the per-seed gains. Also the per-seed gains and their spread."""
    if len(errors_base) != len(errors_new) or not errors_base:
        raise ValueError(f"need one (base, new) pair of error lists per seed, got {len(errors_base)} and {len(errors_new)}")
    diffs = []
    for base, new in zip(errors_base, errors_new):
        base, new = np.asarray(base, np.float64), np.asarray(new, np.float64)
        if base.shape != new.shape or base.ndim != 1 or base.size == 0:
            raise ValueError(f"each seed needs two equal-length, non-empty error lists, got {base.shape} and {new.shape}")
        diffs.append((_hits(new, tau_max, steps)[1].mean(axis=0) - _hits(base, tau_max, steps)[1].mean(axis=0)) * 100.0)
    rng = np.random.default_rng(seed)
    per_seed = np.array([d.mean() for d in diffs])
    boot = np.empty(samples)
    for s in range(samples):
        drawn = rng.integers(0, len(diffs), len(diffs))
        boot[s] = np.mean([diffs[k][rng.integers(0, diffs[k].size, diffs[k].size)].mean() for k in drawn])
    alpha = (1.0 - level) / 2
    return {
        "gain": float(per_seed.mean()), "low": float(np.quantile(boot, alpha)), "high": float(np.quantile(boot, 1 - alpha)),
        "per_seed": [float(g) for g in per_seed], "seed_sd": float(per_seed.std(ddof=1)) if len(per_seed) > 1 else 0.0,
    }
