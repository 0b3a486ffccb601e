import numpy as np
import pytest
import torch

from interp3d import geometry
from interp3d.data.synthetic import SkeletonSampler, SyntheticOptions, SyntheticSkeletonDataset
from interp3d.heatmaps import heatmap_peaks
from interp3d.shape_model import get_category, list_categories


@pytest.mark.parametrize("name", list_categories())
def test_samples_respect_ranges_and_stay_on_the_plane(name):
    cat = get_category(name)
    b = SkeletonSampler(name).sample(2000, torch.Generator().manual_seed(0), dtype=torch.float64)
    r = cat.ranges
    rel = b.params.alpha[:, 1:] / b.params.alpha[:, :1]
    lo = torch.tensor([a[0] for a in r.alpha], dtype=torch.float64)
    hi = torch.tensor([a[1] for a in r.alpha], dtype=torch.float64)
    assert ((rel >= lo - 1e-9) & (rel <= hi + 1e-9)).all()
    az, el = geometry.euler_to_view(b.angles)
    el_ok = (el >= r.elevation[0] - 1e-9) & (el <= r.elevation[1] + 1e-9)
    assert el_ok.all()
    f = b.params.focal
    assert ((f >= r.focal[0]) & (f <= r.focal[1])).all()
    assert b.inside.all()
    assert (b.keypoints >= 0).all() and (b.keypoints < cat.plane_size).all()
    # the stored keypoints are the projection of the stored parameters
    assert torch.allclose(b.params.project(cat)[2], b.keypoints)


def test_without_keep_inside_some_keypoints_leave_the_plane():
    b = SkeletonSampler("sofa", keep_inside=False).sample(2000, torch.Generator().manual_seed(0))
    assert not b.inside.all()


def test_dataset_is_deterministic_and_heatmap_peaks_sit_on_keypoints():
    a = SyntheticSkeletonDataset("chair", 300, seed=5)
    b = SyntheticSkeletonDataset("chair", 300, seed=5)
    c = SyntheticSkeletonDataset("chair", 300, seed=6)
    assert torch.equal(a.params, b.params) and not torch.equal(a.params, c.params)
    batch = a.__getitems__(list(range(0, 300, 7)))
    assert batch["heatmaps"].shape == (43, 10, 64, 64)
    peaks, _ = heatmap_peaks(batch["heatmaps"])
    assert torch.equal(peaks, torch.floor(batch["keypoints"]) + 0.5)
    # keypoints are the plane projection scaled to the heatmap
    params = a.codec.decode(batch["params"].double())
    uv = params.project(a.category)[2]
    assert torch.allclose(geometry.rescale_points(uv, 320, 64).float(), batch["keypoints"], atol=1e-3)
    assert batch["target"].min() >= 0 and batch["target"].max() <= 1


def test_loader_batches_and_single_items_agree():
    ds = SyntheticSkeletonDataset("table", 50, seed=0)
    batches = list(ds.loader(16, shuffle=False))
    assert [b["heatmaps"].shape[0] for b in batches] == [16, 16, 16, 2]
    assert torch.equal(batches[0]["heatmaps"][3], ds[3]["heatmaps"])


def test_noise_options_jitter_and_drop_keypoints():
    clean = SyntheticSkeletonDataset("chair", 500, seed=1)
    noisy = SyntheticSkeletonDataset("chair", 500, seed=1, options=SyntheticOptions(jitter_px=2.0, dropout=0.2))
    assert torch.equal(clean.params, noisy.params)
    shift = (noisy.keypoints - clean.keypoints).norm(dim=-1)
    assert 1.5 < shift.mean() < 3.5
    dropped = 1 - noisy.visible.float().mean().item()
    assert 0.15 < dropped < 0.25


def test_save_load_round_trip_and_errors(tmp_path):
    ds = SyntheticSkeletonDataset("sofa", 40, seed=3, options=SyntheticOptions(sigma=2.0))
    path = ds.save(tmp_path / "sofa.npz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sofa.npz"], "no temporary files left behind"
    back = SyntheticSkeletonDataset.load(path)
    assert back.category.name == "sofa" and back.options.sigma == 2.0
    assert torch.equal(back[7]["heatmaps"], ds[7]["heatmaps"])
    with pytest.raises(ValueError, match="holds category 'sofa', expected 'chair'"):
        SyntheticSkeletonDataset.load(path, category="chair")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        SyntheticSkeletonDataset.load(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.npz"):
        SyntheticSkeletonDataset.load(bad)
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(ValueError, match="not an interp3d synthetic dataset"):
        SyntheticSkeletonDataset.load(tmp_path / "other.npz")
