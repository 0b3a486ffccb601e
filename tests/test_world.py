import math

import numpy as np
import pytest
import torch

from interp3d import geometry
from interp3d.data.world import VideoDataset, WorldDataset, WorldFormatError, WorldOptions, render_world
from interp3d.params import ParamCodec
from interp3d.render.gl import Renderer, SceneObject
from interp3d.render.mesh import Material, box
from interp3d.render.scene import Camera, SceneOptions, render_view, sample_scene
from interp3d.shape_model import get_category

SMALL = dict(image_size=64, chunk=3, supersample=2)


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    root = tmp_path_factory.mktemp("world")
    out = {}
    for kind, count in (("annotated2d", 8), ("test3d", 6), ("video", 2)):
        out[kind] = render_world(root / kind, "chair", WorldOptions(kind=kind, count=count, video_length=5, **SMALL), seed=1, progress=False)
    return out


def test_stored_keypoints_are_the_projection_of_the_stored_3d_truth(worlds):
    ds = WorldDataset(worlds["test3d"])
    a = ds.annotations
    codec = ParamCodec("chair")
    params = codec.decode(torch.from_numpy(a["params"]).double())
    structure, cam, uv = params.project(ds.category)
    assert np.allclose(structure.numpy(), a["structure"], atol=1e-3)
    assert np.allclose(cam.numpy(), a["points_cam"], atol=1e-3)
    assert np.allclose(uv.numpy() * 64 / ds.category.plane_size, a["keypoints"], atol=1e-3)
    az, el = geometry.euler_to_view(torch.from_numpy(a["angles"]).double())
    assert np.allclose(az.numpy(), a["azimuth"], atol=1e-5) and np.allclose(el.numpy(), a["elevation"], atol=1e-5)


def test_renderer_rasterises_exactly_where_geometry_projects():
    renderer = Renderer(size=128, supersample=1)
    focal, plane = 300.0, 320.0
    centre = np.array([37.0, -22.0, 15.0])  # camera frame
    # a box facing the camera: its silhouette is its front face, a square at Z = 14
    cube = box(np.zeros(3), np.array([16.0, 16.0, 2.0]), Material((1.0, 1.0, 1.0)))
    result = renderer.render([SceneObject(cube, np.eye(3), centre, 1)], focal, plane)
    corners = torch.tensor([[29.0, -30.0, 14.0], [45.0, -14.0, 14.0]], dtype=torch.float64)
    (x0, y0), (x1, y1) = geometry.perspective_project(corners, torch.tensor(focal, dtype=torch.float64), plane).numpy() * 128 / plane
    centres = np.arange(128) + 0.5
    cols, rows = (centres > x0) & (centres < x1), (centres > y0) & (centres < y1)
    assert np.array_equal(result.ids == 1, rows[:, None] & cols[None, :])
    # the depth buffer holds f + Z of the nearest surface
    r, c = int((y0 + y1) / 2), int((x0 + x1) / 2)
    assert result.depth[r, c] == pytest.approx(focal + 14.0, abs=1e-3)
    assert np.isinf(result.depth[0, 0]) and result.ids[0, 0] == 0
    renderer.release()


def _front_scene(occluders):
    cat = get_category("chair")
    alpha = np.array([40.0, 0.0, 0.0, 0.0, 0.0])
    structure = np.tensordot(alpha, cat.bases_array, axes=1)
    spec = sample_scene(cat, structure, alpha, np.random.default_rng(0), SceneOptions(floor=0.0, distractors=(0, 0), clutter_boxes=(0, 0), blur=0, noise=0))
    spec.occluder_seeds = occluders
    camera = Camera(np.array([math.pi + 0.2, 0.3, 0.0]), np.zeros(2), 400.0)
    return cat, spec, camera


def test_keypoint_behind_an_occluder_is_invisible():
    cat, spec, camera = _front_scene([])
    clear = render_view(spec, camera, 128)
    k = cat.keypoint_index("seat_front_left")
    assert clear.visible[k] and not clear.occluded_by_other.any()
    # an occluder centred on that keypoint, halfway to the camera
    x0, y0, x1, y1 = clear.bbox * cat.plane_size / 128
    u, v = clear.keypoints[k] * cat.plane_size / 128
    seed = np.array([(u - x0) / (x1 - x0), (v - y0) / (y1 - y0), 0.5, 0.2, 0.5, 0.5, 0.5])
    _, spec_occ, _ = _front_scene([seed])
    hidden = render_view(spec_occ, camera, 128)
    assert not hidden.visible[k] and hidden.occluded_by_other[k]
    assert hidden.mask.sum() < clear.mask.sum()
    np.testing.assert_allclose(hidden.keypoints, clear.keypoints)


def test_self_occlusion_from_behind():
    cat, spec, _ = _front_scene([])
    back_view = Camera(np.array([math.pi + 0.05, math.pi, 0.0]), np.zeros(2), 400.0)
    view = render_view(spec, back_view, 128)
    # seen from behind at low elevation, the seat's front corners hide behind the backrest
    hidden = [cat.keypoint_index(n) for n in ("seat_front_left", "seat_front_right")]
    assert not view.visible[hidden].any() and not view.occluded_by_other.any()


def test_renderers_of_different_sizes_do_not_interfere():
    # One GL context per image size lives in the process; each render must use its own context.
    cat, spec, camera = _front_scene([])
    first = render_view(spec, camera, 72)
    render_view(spec, camera, 40)  # creates (and makes current) another context
    again = render_view(spec, camera, 72)
    assert np.array_equal(first.image, again.image) and np.array_equal(first.visible, again.visible)


def test_videos_share_structure_and_move_smoothly(worlds):
    ds = WorldDataset(worlds["video"])
    a = ds.annotations
    for v in np.unique(a["video_index"]):
        rows = np.nonzero(a["video_index"] == v)[0]
        assert list(a["frame_index"][rows]) == list(range(5))
        assert np.allclose(a["alpha"][rows], a["alpha"][rows[0]]) and np.allclose(a["focal"][rows], a["focal"][rows[0]])
        step = np.abs(np.angle(np.exp(1j * np.diff(a["azimuth"][rows]))))
        assert step.max() < math.radians(60) and step.min() > 0
    clips = VideoDataset(worlds["video"], clip_length=3, stride=1)
    assert len(clips) == 2 * 3
    item = clips[1]
    assert item["frames"].shape == (3, 3, 64, 64) and item["category"] == "chair" and item["start"] == 1
    assert set(item) == {"frames", "video", "start", "category"}, "training sees the category label only"
    with pytest.raises(WorldFormatError, match="no video has 9 frames"):
        VideoDataset(worlds["video"], clip_length=9)


def test_annotated2d_restricted_views_stay_within_the_cut(tmp_path):
    root = render_world(tmp_path / "cut", "chair", WorldOptions(kind="annotated2d", count=8, annotated_views="restricted", **SMALL), seed=1, progress=False)
    az = WorldDataset(root).annotations["azimuth"]
    wrapped = np.angle(np.exp(1j * az))
    assert np.abs(wrapped).max() <= math.radians(45) + 1e-6


def test_annotated2d_default_views_are_the_keypoint5_views(worlds):
    from interp3d.data.world import keypoint5_view

    a = WorldDataset(worlds["annotated2d"]).annotations
    expected = [keypoint5_view("chair", np.random.default_rng([1, 0, i, 5])) for i in range(len(a["azimuth"]))]
    np.testing.assert_allclose(a["azimuth"], [e[0] for e in expected], atol=1e-5)
    np.testing.assert_allclose(a["elevation"], [e[1] for e in expected], atol=1e-5)
    with pytest.raises(ValueError, match="annotated_views"):
        WorldOptions(kind="annotated2d", annotated_views="sideways")


def test_rendering_is_deterministic_and_resumes_after_a_kill(tmp_path):
    opts = WorldOptions(kind="test3d", count=7, **SMALL)
    render_world(tmp_path / "a", "table", opts, seed=3, progress=False)

    def killed(chunk, total):
        if chunk == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        render_world(tmp_path / "b", "table", opts, seed=3, progress=False, on_chunk=killed)
    with pytest.raises(WorldFormatError, match="unfinished render"):
        WorldDataset(tmp_path / "b")
    render_world(tmp_path / "b", "table", opts, seed=3, progress=False)
    a, b = WorldDataset(tmp_path / "a"), WorldDataset(tmp_path / "b")
    for key in a.annotations:
        assert np.array_equal(a.annotations[key], b.annotations[key]), key
    assert all((tmp_path / "a" / p).read_bytes() == (tmp_path / "b" / p).read_bytes() for p in a.annotations["path"])
    assert not (tmp_path / "b" / "parts").exists()
    with pytest.raises(WorldFormatError, match="different dataset"):
        render_world(tmp_path / "a", "sofa", opts, seed=3, progress=False)


def test_rendering_in_worker_processes_gives_the_same_files(tmp_path):
    opts = WorldOptions(kind="annotated2d", count=7, view_sphere="full", **SMALL)
    render_world(tmp_path / "serial", "chair", opts, seed=5, progress=False)

    def killed(chunk, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # one chunk committed serially, the rest in 2 processes
        render_world(tmp_path / "parallel", "chair", opts, seed=5, progress=False, on_chunk=killed)
    assert len(list((tmp_path / "parallel" / "parts").glob("chunk_*.npz"))) == 1
    render_world(tmp_path / "parallel", "chair", opts, seed=5, progress=False, workers=2)
    a, b = WorldDataset(tmp_path / "serial"), WorldDataset(tmp_path / "parallel")
    for key in a.annotations:
        assert np.array_equal(a.annotations[key], b.annotations[key]), key
    for p in a.annotations["path"]:
        assert (tmp_path / "serial" / p).read_bytes() == (tmp_path / "parallel" / p).read_bytes(), p


def test_corrupt_and_wrong_folders_give_clear_errors(worlds, tmp_path):
    with pytest.raises(WorldFormatError, match="not found"):
        WorldDataset(tmp_path / "nothing")
    with pytest.raises(WorldFormatError, match="holds 'test3d' data, expected 'video'"):
        WorldDataset(worlds["test3d"], kind="video")
    with pytest.raises(WorldFormatError, match="expected 'sofa'"):
        WorldDataset(worlds["test3d"], category="sofa")
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(worlds["test3d"], copy)
    ds = WorldDataset(copy)
    ds.image_path(2).write_bytes(b"garbage")
    with pytest.raises(WorldFormatError, match="000002.png: corrupt image"):
        ds[2]
    ds.image_path(3).unlink()
    with pytest.raises(WorldFormatError, match="000003.png: image missing"):
        ds[3]
    (copy / "annotations.npz").write_bytes(b"garbage")
    with pytest.raises(WorldFormatError, match="annotations.npz: unreadable"):
        WorldDataset(copy)


@pytest.mark.shared_data
def test_real_pascal3d_chairs_render_with_exact_keypoints(shared_data, tmp_path):
    root = render_world(tmp_path / "real", "chair", WorldOptions(kind="test3d", count=4, real_shapes=str(shared_data / "pascal3d_cad"), **SMALL), progress=False)
    a = WorldDataset(root).annotations
    from interp3d.data.real_shapes import load_pascal3d_json
    from interp3d.evaluation.metrics import structure_error

    first = load_pascal3d_json(shared_data / "pascal3d_cad" / "chair01.json")
    # the stored 3D truth is the CAD model's own keypoints (up to scale and a floor-centring shift)
    assert structure_error(a["structure"][:1], first.keypoints[None])[0] < 1e-5
    codec = ParamCodec("chair")
    params = codec.decode(torch.from_numpy(a["params"]).double())
    cam = torch.from_numpy(a["structure"]).double() @ params.rotation().transpose(1, 2) + torch.nn.functional.pad(params.translation, (0, 1))[:, None]
    uv = geometry.perspective_project(cam, params.focal, 320).numpy() * 64 / 320
    assert np.allclose(uv, a["keypoints"], atol=1e-3)


@pytest.mark.parametrize("category, within45, back", [("chair", 74.7, 4.0), ("sofa", 95.0, 0.2), ("swivelchair", 58.0, 16.0)])
def test_keypoint5_views_follow_the_measured_distribution(category, within45, back):
    from interp3d.data.world import KEYPOINT5_VIEWS, keypoint5_view

    rng = np.random.default_rng(0)
    views = np.degrees(np.array([keypoint5_view(category, rng) for _ in range(20000)]))
    away = np.minimum(views[:, 0], 360 - views[:, 0])  # degrees from the front
    assert 100 * np.mean(away <= 45) == pytest.approx(within45, abs=1.5)
    assert 100 * np.mean(away > 135) == pytest.approx(back, abs=1.0)
    assert np.median(views[:, 1]) == pytest.approx(KEYPOINT5_VIEWS[category]["elevation"][1], abs=0.7)
    assert np.mean(views[:, 0] < 180) == pytest.approx(0.5, abs=0.02)  # symmetric left/right


def test_keypoint5_table_views_sit_near_a_side():
    from interp3d.data.world import keypoint5_view

    rng = np.random.default_rng(1)
    az = np.degrees([keypoint5_view("table", rng)[0] for _ in range(5000)])
    to_side = np.abs((az + 45) % 90 - 45)
    assert to_side.max() <= 45 + 1e-6 and 100 * np.mean(to_side <= 15) == pytest.approx(28.3, abs=2.0)
    assert np.histogram((az + 45) % 360, bins=4, range=(0, 360))[0].min() > 1000  # every side
