"""How well does the 3D-INN chair basis span real chairs?

Fits the chair shape model (alpha + similarity transform, see ``interp3d.shape_fit``) to the 920
complete KeypointNet chairs and the PASCAL3D+ CAD chairs in ``../shared/data`` and reports the fit
RMS normalised by object size (RMS radius of the keypoints), for: the mean shape alone, the full
basis with free coefficients, and the basis with coefficients inside the synthetic sampling ranges.

    python benchmarks/fit_real_chairs.py [--data ../shared/data] [--out benchmarks/results/fit_real_chairs.json]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from interp3d.data.real_shapes import load_keypointnet, load_pascal3d_json, load_pascal3d_mat
from interp3d.io_utils import atomic_write_json
from interp3d.shape_fit import fit_shape

VARIANTS = {
    "mean_shape_only": dict(use_deformations=False),
    "basis_free": dict(),
    "basis_within_ranges": dict(bounded=True),
}


def summarise(shapes) -> dict:
    out = {}
    for name, kwargs in VARIANTS.items():
        fits = [fit_shape(s.keypoints, s.category, s.present, **kwargs) for s in shapes]
        err = np.array([f.normalised_rms for f in fits])
        # rms / normalised_rms is each shape's RMS radius: normalise per shape, then average.
        per_kp = np.nanmean(np.stack([f.per_keypoint * f.normalised_rms / f.rms for f in fits]), axis=0)
        out[name] = {
            "n": len(fits),
            "mean": float(err.mean()),
            "median": float(np.median(err)),
            "p90": float(np.percentile(err, 90)),
            "per_keypoint_mean_normalised": [round(float(v), 4) for v in per_kp],
        }
        if name == "basis_free":
            rel = np.stack([f.alpha[1:] / f.alpha[0] for f in fits])
            out["relative_alpha_free"] = {
                "median": np.median(rel, axis=0).round(3).tolist(),
                "p5": np.percentile(rel, 5, axis=0).round(3).tolist(),
                "p95": np.percentile(rel, 95, axis=0).round(3).tolist(),
                "share_inside_ranges": float(
                    np.mean(
                        np.all(
                            (rel >= np.array([r[0] for r in shapes[0].category.ranges.alpha]) - 1e-9)
                            & (rel <= np.array([r[1] for r in shapes[0].category.ranges.alpha]) + 1e-9),
                            axis=1,
                        )
                    )
                ),
            }
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "fit_real_chairs.json")
    args = parser.parse_args(argv)
    data = args.data.resolve()
    if not data.is_dir():
        print(f"skipped: shared data folder {data} not found", file=sys.stderr)
        return 0
    sets = {
        "keypointnet_complete_chairs": load_keypointnet(data / "keypointnet_chair/annotations/chair.json"),
        "pascal3d_cad_chairs_json": [load_pascal3d_json(p) for p in sorted((data / "pascal3d_cad").glob("chair*.json"))],
        "pascal3d_cad_chairs_mat": load_pascal3d_mat(data / "pascal3d_cad/pascal3d_CAD_chair.mat"),
    }
    result = {name: summarise(shapes) for name, shapes in sets.items()}
    atomic_write_json(args.out, result)
    print(f"{'dataset':32s} {'variant':22s} {'n':>4s} {'mean':>7s} {'median':>7s} {'p90':>7s}")
    for name, res in result.items():
        for variant in VARIANTS:
            r = res[variant]
            print(f"{name:32s} {variant:22s} {r['n']:4d} {r['mean']:7.3f} {r['median']:7.3f} {r['p90']:7.3f}")
    print("normalised RMS = RMS keypoint distance / RMS radius of the chair's keypoints")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
