import numpy as np
import pytest
import scipy.io
from PIL import Image

from interp3d.data.keypoint5 import Keypoint5, annotator_median, convert_keypoint5
from interp3d.data.world import WorldDataset
from interp3d.train.stages import AnnotatedImages


def test_upper_median_over_annotators_and_spread():
    # keypoint 0: three annotators; keypoint 1: one missing (0, 0) and one NaN; keypoint 2: nobody
    coords = np.zeros((2, 3, 3))
    coords[:, 0, :] = [[10, 14, 12], [20, 20, 26]]
    coords[:, 1, :] = [[5, 0, np.nan], [7, 0, np.nan]]
    label, present, sigma = annotator_median(coords)
    assert label[0].tolist() == [12, 20]  # sorted x (10, 12, 14) -> [1]; sorted y (20, 20, 26) -> [1]
    assert label[1].tolist() == [5, 7] and present.tolist() == [True, True, False]
    mean = np.array([12.0, 22.0])
    expected = np.sqrt(np.mean([np.sum((np.array(p) - mean) ** 2) for p in ([10, 20], [14, 20], [12, 26])]))
    assert sigma[0] == pytest.approx(expected) and sigma[1] == 0.0


@pytest.fixture
def keypoint5_root(tmp_path):
    root = tmp_path / "keypoint-5"
    folder = root / "chair"
    (folder / "images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    n, k = 6, 30  # the real file holds more rows than the skeleton uses
    coords = np.zeros((2, k, 3, n))
    for i in range(n):
        base = rng.uniform(20, 80, (10, 2))
        for a in range(3):
            coords[:, :10, a, i] = (base + rng.normal(0, 1, (10, 2))).T
        Image.fromarray(rng.integers(0, 255, (100, 120, 3), dtype=np.uint8)).save(folder / "images" / f"{i + 1:08d}.jpg")
    coords[:, 3, :, 2] = 0  # keypoint 4 of image 3 left out by everybody
    scipy.io.savemat(folder / "coords.mat", {"coords": coords})
    (folder / "train.txt").write_text("images/00000001.jpg\nimages/00000002.jpg\nimages/00000004.jpg\n")
    (folder / "val.txt").write_text("images/00000003.jpg\n")
    return root


def test_loader_splits_and_labels(keypoint5_root):
    train = Keypoint5(keypoint5_root, "chair", "train")
    assert train.numbers == [1, 2, 4] and len(Keypoint5(keypoint5_root, "chair")) == 6
    item = Keypoint5(keypoint5_root, "chair", "val")[0]
    assert item.index == 3 and item.path.name == "00000003.jpg" and not item.present[3] and item.present.sum() == 9
    with pytest.raises(FileNotFoundError, match="coords.mat"):
        Keypoint5(keypoint5_root, "sofa")


def test_conversion_to_world_format_feeds_training(keypoint5_root, tmp_path):
    (keypoint5_root / "chair" / "images" / "00000005.jpg").write_bytes(b"broken")
    out = convert_keypoint5(keypoint5_root, "chair", tmp_path / "k5", image_size=64)
    ds = WorldDataset(out, kind="annotated2d", category="chair")
    assert len(ds) == 5 and "00000005.jpg: not a readable image" in ds.meta["skipped"][0]
    a = ds.annotations
    assert not a["visible"][2, 3] and (a["keypoints"][a["visible"]] >= 0).all()
    # keypoints follow the crop: the annotated keypoints span the central part of the square crop
    vis = a["visible"][0]
    span = a["keypoints"][0][vis].max(0) - a["keypoints"][0][vis].min(0)
    assert span.max() == pytest.approx(64 / 1.3, rel=0.05)
    images = AnnotatedImages(out, 32, "chair")
    assert images.images.shape == (5, 3, 32, 32) and np.allclose(images.keypoints.numpy(), a["keypoints"] / 2)


def test_pcp_ae_hand_computed():
    from interp3d.evaluation.metrics import pcp_ae

    pred = np.array([[[0.0, 0.0], [3.0, 4.0], [0.0, 0.0]]])
    gt = np.zeros((1, 3, 2))
    sigma = np.array([[1.0, 2.0, 1.0]])
    visible = np.array([[True, True, False]])
    pcp_value, ae_value = pcp_ae(pred, gt, visible, sigma)
    # d/sigma: 0 and 2.5 for the visible keypoints; the missing one counts 0 in AE
    assert pcp_value == pytest.approx(50.0)
    assert ae_value == pytest.approx((0 + 2.5 / (1 + 0.5e-5) + 0) / 3, rel=1e-4)


def test_evaluation_on_2d_only_data_reports_pcp_and_no_3d(keypoint5_root, tmp_path):
    import torch

    from interp3d.evaluation.evaluate import evaluate_interpreter
    from interp3d.models import Interpreter

    out = convert_keypoint5(keypoint5_root, "chair", tmp_path / "k5", image_size=64)
    torch.manual_seed(0)
    model = Interpreter.build("chair", 32, 16, 16, 2, 1, (16,))
    result = evaluate_interpreter(model, out)
    assert result["n"] == 6 and result["n_with_3d"] == 0 and result["structure"] is None
    assert 0 <= result["pcp"] <= 100 and 0 <= result["ae"] <= 5 and 0 <= result["pck_heatmap"] <= 100
    # the network's outputs computed once and passed in give the same metrics
    from interp3d.evaluation.evaluate import network_outputs
    from interp3d.train.stages import AnnotatedImages

    images = AnnotatedImages(out, 32, "chair")
    again = evaluate_interpreter(model, images, outputs=network_outputs(model, images))
    assert (again["pcp"], again["ae"], again["pck_heatmap"]) == (result["pcp"], result["ae"], result["pck_heatmap"])
