import math

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from interp3d import geometry
from interp3d.data.pascal3d import Pascal3D, Pascal3DViewpoint, convert_pascal3d, pascal3d_project
from interp3d.data.real_shapes import CANONICAL_FROM_PASCAL3D, PASCAL3D_ANCHORS
from interp3d.data.world import WorldDataset
from interp3d.shape_model import get_category

CHAIR = get_category("chair")


def _chair_cad_points() -> np.ndarray:
    """The chair mean shape in the PASCAL3D+ CAD frame (z up, front -y)."""
    return np.asarray(CHAIR.mean_shape, np.float64) @ CANONICAL_FROM_PASCAL3D  # canonical = A cad -> cad = A^T canonical


@pytest.mark.parametrize("seed", range(6))
def test_camera_conversion_reproduces_the_toolbox_projection(seed):
    rng = np.random.default_rng(seed)
    vp = Pascal3DViewpoint(
        azimuth=rng.uniform(0, 360), elevation=rng.uniform(-20, 60), theta=rng.uniform(-15, 15), distance=rng.uniform(4, 12),
        focal=1.0, px=rng.uniform(100, 300), py=rng.uniform(100, 300), viewport=rng.uniform(500, 3000),
    )
    cad = _chair_cad_points()
    expected = pascal3d_project(cad, vp) - 0.5  # MATLAB -> interp3d pixel convention
    rotation = torch.from_numpy(vp.camera_rotation())
    structure = torch.from_numpy(cad @ CANONICAL_FROM_PASCAL3D.T)
    cam = geometry.to_camera_frame(structure, rotation, torch.zeros(2, dtype=torch.float64))
    uv = geometry.perspective_project(cam, torch.tensor(vp.distance, dtype=torch.float64), 0.0).numpy()
    np.testing.assert_allclose(uv * vp.pixels_per_unit + [vp.px - 0.5, vp.py - 0.5], expected, atol=1e-6)


@pytest.mark.parametrize("azimuth,elevation", [(0, 0), (30, 10), (90, 20), (200, -5), (315, 45)])
def test_viewpoint_maps_to_interp3d_azimuth_convention(azimuth, elevation):
    vp = Pascal3DViewpoint(azimuth=azimuth, elevation=elevation, theta=0.0, distance=5.0)
    az, el = vp.canonical_view
    assert az == pytest.approx(math.radians(-azimuth) % (2 * math.pi)) and el == pytest.approx(math.radians(elevation))
    # Without in-plane rotation the PASCAL3D+ camera is exactly interp3d's model camera at (az, el).
    model_rotation = geometry.euler_to_matrix(geometry.view_to_euler(torch.tensor(az, dtype=torch.float64), torch.tensor(el, dtype=torch.float64)))
    np.testing.assert_allclose(vp.camera_rotation(), model_rotation.numpy(), atol=1e-12)


def test_known_views():
    # PASCAL3D+ azimuth 0: the camera faces the front, so the front legs (kp 1, 2; z = +1) are nearer.
    front = Pascal3DViewpoint(azimuth=0, elevation=0, distance=5)
    depth = (np.asarray(CHAIR.mean_shape, np.float64) @ front.camera_rotation().T)[:, 2]
    assert depth[0] < depth[3] and depth[1] < depth[2]
    # Azimuth 90: the camera is on the CAD +x side (canonical +x), interp3d azimuth 270 deg; the x = +1 legs are nearer.
    side = Pascal3DViewpoint(azimuth=90, elevation=0, distance=5)
    assert side.canonical_view[0] == pytest.approx(math.radians(270))
    depth = (np.asarray(CHAIR.mean_shape, np.float64) @ side.camera_rotation().T)[:, 2]
    assert depth[1] < depth[0] and depth[2] < depth[3]


def _anchor_struct(locations: dict[str, tuple[tuple[float, float] | None, int]]) -> dict:
    return {name: {"location": np.zeros((0, 0)) if loc is None else np.array(loc, float), "status": status} for name, (loc, status) in locations.items()}


def _objects_array(objects: list[dict]) -> np.ndarray:
    names = sorted({k for o in objects for k in o})
    arr = np.empty((1, len(objects)), dtype=[(n, object) for n in names])
    for j, o in enumerate(objects):
        for n in names:
            arr[0, j][n] = o.get(n, np.zeros((0, 0)))
    return arr


@pytest.fixture
def pascal_root(tmp_path):
    """A two-image PASCAL3D+ fixture in the release layout: records with a chair, a dining table and a
    chair without viewpoint; anchors at the toolbox projection of a CAD chair; a CAD/chair.mat."""
    root = tmp_path / "PASCAL3D+_release1.1"
    ann, img = root / "Annotations" / "chair_pascal", root / "Images" / "chair_pascal"
    ann.mkdir(parents=True)
    img.mkdir(parents=True)
    (root / "CAD").mkdir()
    cad = _chair_cad_points() * [0.3, 0.3, 0.35]
    cad_struct = np.empty((1, 1), dtype=[("vertices", object), ("faces", object)] + [(a, object) for a in PASCAL3D_ANCHORS["chair"]])
    cad_struct[0, 0]["vertices"] = cad
    cad_struct[0, 0]["faces"] = np.array([[1, 2, 3]], float)
    for i, a in enumerate(PASCAL3D_ANCHORS["chair"]):
        cad_struct[0, 0][a] = cad[i]
    scipy.io.savemat(root / "CAD" / "chair.mat", {"chair": cad_struct})
    views = {"2008_000001": (30.0, 12.0, 3.0), "2008_000002": (200.0, 8.0, -4.0)}
    for record_id, (az, el, theta) in views.items():
        vp = Pascal3DViewpoint(azimuth=az, elevation=el, theta=theta, distance=6.0, focal=1.0, px=160, py=120, viewport=600)
        uv = pascal3d_project(cad, vp)
        anchors = {a: ((float(uv[i, 0]), float(uv[i, 1])), 1) for i, a in enumerate(PASCAL3D_ANCHORS["chair"])}
        anchors["back_upper_left"] = (anchors["back_upper_left"][0], 2)  # self-occluded
        anchors["leg_upper_left"] = (None, 0)  # not annotated
        lo, hi = uv.min(0), uv.max(0)
        chair = {
            "class": "chair", "bbox": np.array([lo[0], lo[1], hi[0], hi[1]]), "truncated": 0, "occluded": 0, "difficult": 0, "cad_index": 1,
            "viewpoint": {"azimuth": az, "elevation": el, "theta": theta, "distance": 6.0, "focal": 1.0, "px": 160.0, "py": 120.0, "viewport": 600.0},
            "anchors": _anchor_struct(anchors),
        }
        table = {"class": "diningtable", "bbox": np.array([1.0, 1, 50, 50]), "truncated": 0, "occluded": 0, "difficult": 0, "cad_index": 1,
                 "viewpoint": {"azimuth": 10.0, "elevation": 5.0, "theta": 0.0, "distance": 5.0}, "anchors": {}}
        no_view = {"class": "chair", "bbox": np.array([1.0, 1, 40, 40]), "truncated": 1, "occluded": 0, "difficult": 0, "cad_index": 1,
                   "viewpoint": np.zeros((0, 0)), "anchors": {}}
        record = {"filename": f"{record_id}.jpg", "size": {"width": 320, "height": 240, "depth": 3}, "objects": _objects_array([chair, table, no_view])}
        scipy.io.savemat(ann / f"{record_id}.mat", {"record": record})
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)).save(img / f"{record_id}.jpg")
    return root


def test_record_loader_maps_anchors_and_visibility(pascal_root):
    data = Pascal3D(pascal_root, "chair")
    assert len(data) == 2 and any("no viewpoint" in d for d in data.dropped)
    item = data[0]
    assert item.image.name == "2008_000001.jpg" and item.cad_index == 1 and item.viewpoint.azimuth == pytest.approx(30.0)
    names = PASCAL3D_ANCHORS["chair"]
    assert not item.visible[names.index("back_upper_left")] and np.isfinite(item.keypoints[names.index("back_upper_left")]).all()
    assert not item.visible[names.index("leg_upper_left")] and np.isnan(item.keypoints[names.index("leg_upper_left")]).all()
    assert item.visible.sum() == 8
    vp = item.viewpoint
    expected = pascal3d_project(_chair_cad_points() * [0.3, 0.3, 0.35], vp) - 0.5
    ok = np.isfinite(item.keypoints).all(1)
    np.testing.assert_allclose(item.keypoints[ok], expected[ok], atol=1e-6)
    assert len(Pascal3D(pascal_root, "chair", ids=["2008_000002"])) == 1


def test_conversion_and_evaluation(pascal_root, tmp_path):
    from interp3d.evaluation.evaluate import evaluate_interpreter
    from interp3d.models import Interpreter

    out = convert_pascal3d(pascal_root, "chair", tmp_path / "p3d", image_size=64)
    ds = WorldDataset(out, category="chair")
    a = ds.annotations
    assert len(ds) == 2
    np.testing.assert_allclose(a["azimuth"], [math.radians(330), math.radians(160)], atol=1e-6)
    # structure = the CAD model's anchors in the canonical frame (front legs at +z)
    assert np.isfinite(a["structure"]).all() and (a["structure"][0, 0, 2] > a["structure"][0, 3, 2])
    # keypoints follow the crop and stay inside it
    vis = a["visible"]
    assert vis.sum() == 16 and ((a["keypoints"][vis] >= 0) & (a["keypoints"][vis] < 64)).all()
    torch.manual_seed(0)
    model = Interpreter.build("chair", 32, 16, 16, 2, 1, (16,))
    result = evaluate_interpreter(model, out)
    assert result["n_with_pose"] == 2 and result["n_with_3d"] == 2
    assert set(result["azimuth_bins"]) == {"4", "8", "16", "24"}
    assert 0 <= result["azimuth"]["average_recall"] <= 100


def test_clear_errors(pascal_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="sofa_pascal"):
        Pascal3D(pascal_root, "sofa")
    with pytest.raises(ValueError, match="no anchor map for 'swivelchair'"):
        Pascal3D(pascal_root, "swivelchair")
    (pascal_root / "Annotations" / "chair_pascal" / "2008_000003.mat").write_bytes(b"not a mat file")
    with pytest.raises(ValueError, match="2008_000003.mat: unreadable"):
        Pascal3D(pascal_root, "chair")
    scipy.io.savemat(pascal_root / "Annotations" / "chair_pascal" / "2008_000003.mat", {"other": np.ones(2)})
    with pytest.raises(ValueError, match="2008_000003.mat: no 'record'"):
        Pascal3D(pascal_root, "chair")


def test_real_cad_chairs_project_like_the_toolbox(shared_data):
    from interp3d.data.real_shapes import load_pascal3d_mat

    shapes = load_pascal3d_mat(shared_data / "pascal3d_cad" / "pascal3d_CAD_chair.mat", "chair")
    vp = Pascal3DViewpoint(azimuth=135.0, elevation=20.0, theta=5.0, distance=3.0, px=250, py=180, viewport=2000)
    for shape in shapes:
        cad = shape.keypoints[shape.present] @ CANONICAL_FROM_PASCAL3D  # back to the CAD frame
        expected = pascal3d_project(cad, vp) - 0.5
        cam = shape.keypoints[shape.present] @ vp.camera_rotation().T
        uv = vp.distance * cam[:, :2] / (vp.distance + cam[:, 2:])
        np.testing.assert_allclose(uv * vp.pixels_per_unit + [vp.px - 0.5, vp.py - 0.5], expected, atol=1e-6)


def test_cli_import_and_evaluate(pascal_root, tmp_path):
    import json
    from dataclasses import asdict

    from typer.testing import CliRunner

    from interp3d.cli import app
    from interp3d.config import preset
    from interp3d.models import Interpreter
    from interp3d.train.engine import save_checkpoint

    runner = CliRunner()
    result = runner.invoke(app, ["world", "import-pascal3d", "--root", str(pascal_root), "-c", "chair", "-o", str(tmp_path / "p3d"), "--image-size", "64"])
    assert result.exit_code == 0, result.output
    torch.manual_seed(0)
    mc = asdict(preset("cpu-small").model) | {"image_size": 32, "features": 16, "depth": 2, "lifter_widths": [16]}
    model = Interpreter.build("chair", 32, 16, 16, 2, 1, (16,))
    save_checkpoint(tmp_path / "m.pt", {"kind": "finetune", "model": model.state_dict(), "category": "chair", "model_config": mc, "heatmap_size": 16})
    result = runner.invoke(app, ["evaluate", "-m", str(tmp_path / "m.pt"), "-d", str(tmp_path / "p3d"), "-o", str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    assert "azimuth bins" in result.output and "3D structure" in result.output
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["n_with_pose"] == 2 and (tmp_path / "eval" / "recall_azimuth.png").is_file()
    result = runner.invoke(app, ["world", "import-pascal3d", "--root", str(tmp_path / "nowhere"), "-c", "chair", "-o", str(tmp_path / "x")])
    assert result.exit_code != 0 and "nowhere/Annotations/chair_pascal" in result.output
