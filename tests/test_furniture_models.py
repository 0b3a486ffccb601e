import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from interp3d.data.furniture_models import FURNITURE_MODELS, furniture_models, load_obj, model_split, placed_like, read_catalogue
from interp3d.data.world import render_furniture_views
from interp3d.render.mesh import Mesh

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "sweethome3d_subset"

# A box 2 wide (x), 1 deep (z), 3 tall (y), standing on y = -1: the front quad (+z) in a red
# material, the rest in a textured one whose texture is a flat (0, 128, 255) image.
_OBJ = """mtllib box.mtl
v -1 -1 -0.5
v 1 -1 -0.5
v 1 2 -0.5
v -1 2 -0.5
v -1 -1 0.5
v 1 -1 0.5
v 1 2 0.5
v -1 2 0.5
usemtl red
f 5/1/1 6/2/1 7/3/1 8/4/1
usemtl textured
f -8 -5 -6 -7
f 1 2 6 5
f 4 8 7 3
f 1 5 8 4
f 2 3 7 6
"""
_MTL = """newmtl red
Kd 1.0 0.0 0.0
newmtl textured
Kd 0 0 0
map_Kd tex.png
newmtl glass
Kd 1 1 1
d 0.1
"""


def _write_box(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "box.obj").write_text(_OBJ)
    (folder / "box.mtl").write_text(_MTL)
    Image.fromarray(np.tile(np.array([0, 128, 255], np.uint8), (4, 4, 1))).save(folder / "tex.png")
    return folder / "box.obj"


def test_obj_polygons_materials_and_canonical_placement(tmp_path):
    mesh = load_obj(_write_box(tmp_path))
    # one quad (2 triangles) in red, five in the texture's mean colour
    assert mesh.faces.shape == (12, 3)
    np.testing.assert_allclose(mesh.materials[:2, :3], [[1, 0, 0]] * 2)
    np.testing.assert_allclose(mesh.materials[2:, :3], [[0, 128 / 255, 1]] * 10, atol=1e-6)
    # negative indices count back from the last vertex: -8 is vertex 1
    assert mesh.faces[2].tolist() == [0, 3, 2]
    # standing on y = 0, centred in x and z
    np.testing.assert_allclose(mesh.vertices.min(axis=0), [-1, 0, -0.5])
    np.testing.assert_allclose(mesh.vertices.max(axis=0), [1, 3, 0.5])


def test_obj_rotation_then_catalogue_size(tmp_path):
    # a quarter turn about y (applied as R v: +z -> +x), then Sweet Home 3D's per-axis size in cm
    rotation = np.array([[0, 0, 1.0], [0, 1, 0], [-1, 0, 0]])
    mesh = load_obj(_write_box(tmp_path), rotation, size_cm=(50.0, 90.0, 120.0))
    extent = mesh.vertices.max(axis=0) - mesh.vertices.min(axis=0)
    np.testing.assert_allclose(extent, [0.5, 0.9, 1.2])
    # the red (front, +z) quad now faces +x
    red = mesh.vertices[np.unique(mesh.faces[:2])]
    np.testing.assert_allclose(red[:, 0], 0.25)


def test_obj_leaves_out_transparent_faces_and_names_bad_files(tmp_path):
    path = _write_box(tmp_path)
    path.write_text(_OBJ + "usemtl glass\nf 1 2 3\n")
    assert load_obj(path).faces.shape == (12, 3)
    assert load_obj(path, min_opacity=0.0).faces.shape == (13, 3)
    path.write_text(_OBJ + "f 1 2 x\n")
    with pytest.raises(ValueError, match=r"box.obj:\d+: unreadable"):
        load_obj(path)
    path.write_text(_OBJ + "v 1 2\n")
    with pytest.raises(ValueError, match=r"box.obj:\d+: unreadable OBJ line 'v 1 2' \(a vertex needs x, y and z\)"):
        load_obj(path)
    path.write_text(_OBJ + "f 1 2 99\n")
    with pytest.raises(ValueError, match="does not exist"):
        load_obj(path)
    path.write_text("v 0 0 0\n")
    with pytest.raises(ValueError, match="no faces"):
        load_obj(path)
    with pytest.raises(FileNotFoundError, match="missing.obj"):
        load_obj(tmp_path / "missing.obj")


def _catalogue(root: Path) -> None:
    _write_box(root / "scopia" / "chair3")
    (root / "scopia" / "chair3" / "box.obj").rename(root / "scopia" / "chair3" / "chair3.obj")
    _write_box(root / "scopia" / "other")
    (root / "Scopia_PluginFurnitureCatalog.properties").write_text(
        "id#1=Scopia#chair3\nname#1=Chair\nmodel#1=/scopia/chair3/chair3.obj\nwidth#1=40\ndepth#1=50\nheight#1=90\n"
        "modelRotation#1=1 0 0 0 1 0 0 0 1\n"
        "name#2=Lamp\nmodel#2=/scopia/other/box.obj\nwidth#2=10\ndepth#2=10\nheight#2=10\n"
    )


def test_catalogue_lists_only_the_categorys_curated_models(tmp_path):
    _catalogue(tmp_path)
    entries = read_catalogue(tmp_path / "Scopia_PluginFurnitureCatalog.properties")
    assert [e["name"] for e in entries] == ["Chair", "Lamp"]
    chairs = furniture_models(tmp_path, "chair")
    assert [m.key for m in chairs] == ["scopia/chair3/chair3.obj"]
    assert chairs[0].size_cm == (40.0, 90.0, 50.0)
    np.testing.assert_allclose(chairs[0].mesh().vertices.max(axis=0) - chairs[0].mesh().vertices.min(axis=0), [0.4, 0.9, 0.5])
    assert furniture_models(tmp_path, "sofa") == []
    assert [m.key for m in furniture_models(tmp_path, "chair", "train")] == ["scopia/chair3/chair3.obj"]
    assert furniture_models(tmp_path, "chair", "test") == []
    with pytest.raises(ValueError, match="split"):
        furniture_models(tmp_path, "chair", "val")
    with pytest.raises(FileNotFoundError, match="furniture model folder"):
        furniture_models(tmp_path / "nope", "chair")


def test_placed_like_matches_the_skeletons_size_and_footing():
    mesh = Mesh(np.array([[-1.0, 0, -1], [1, 0, 1], [1, 2, -1]]), np.array([[0, 1, 2]]), np.zeros((1, 5), np.float32))
    structure = np.array([[-3.0, -2, -1], [1, 2, 3], [0, 0, 0]])
    placed = placed_like(mesh, structure)
    lo, hi = placed.vertices.min(axis=0), placed.vertices.max(axis=0)
    assert np.linalg.norm(hi - lo) == pytest.approx(np.linalg.norm(structure.max(0) - structure.min(0)))
    assert lo[1] == pytest.approx(-2.0)  # feet on the skeleton's lowest point
    np.testing.assert_allclose(((lo + hi) / 2)[[0, 2]], [-1.0, 1.0])  # footprint centre under the skeleton's


def test_rendered_views_show_the_model_at_the_recorded_azimuth(tmp_path):
    _catalogue(tmp_path)
    views = render_furniture_views("chair", tmp_path, 3, seed=1, image_size=48)
    assert views["images"].shape == (3, 48, 48, 3) and views["images"].dtype == np.uint8
    assert set(views["model"]) == {"scopia/chair3/chair3.obj"}
    assert np.all((views["azimuth"] >= 0) & (views["azimuth"] < 2 * math.pi))
    again = render_furniture_views("chair", tmp_path, 3, seed=1, image_size=48)
    np.testing.assert_array_equal(views["images"], again["images"])  # deterministic per seed
    with pytest.raises(Exception, match="no sofa furniture model"):
        render_furniture_views("sofa", tmp_path, 1)


def test_red_front_faces_the_camera_at_azimuth_zero(tmp_path):
    # the box's red quad is its front (+z): a view from the front sees red, one from behind does not
    _catalogue(tmp_path)
    views = render_furniture_views("chair", tmp_path, 40, seed=3, image_size=64)
    distance = np.degrees(np.abs((views["azimuth"] + math.pi) % (2 * math.pi) - math.pi))
    red = [((im[..., 0] > 150) & (im[..., 1] < 60) & (im[..., 2] < 60)).mean() for im in views["images"]]
    red = np.asarray(red)
    assert red[distance < 60].mean() > 5 * max(red[distance > 120].mean(), 1e-4)


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/sweethome3d_subset not present")
def test_shared_subset_models_load_and_every_listed_key_is_unique():
    for category, keys in FURNITURE_MODELS.items():
        assert len(keys) == len(set(keys)), category
        halves = [{m.key for m in furniture_models(SHARED, category, split)} for split in ("train", "test")]
        assert not halves[0] & halves[1] and halves[0] | halves[1] == {m.key for m in furniture_models(SHARED, category)}
        for model in furniture_models(SHARED, category):
            mesh = model.mesh()
            extent = mesh.vertices.max(axis=0) - mesh.vertices.min(axis=0)
            np.testing.assert_allclose(extent, np.array(model.size_cm) / 100, rtol=1e-6)
    assert len(furniture_models(SHARED, "chair")) >= 10


def test_furniture_share_makes_viewpoint_only_items_and_leaves_the_others(tmp_path):
    from interp3d.data.world import WorldDataset, WorldOptions, render_world

    folder = tmp_path / "catalogue"
    _catalogue(folder)
    assert model_split("scopia/chair3/chair3.obj") == "train"  # the half that training worlds draw from

    def world(share, name):
        options = WorldOptions(kind="annotated2d", count=20, image_size=16, chunk=20, supersample=1, furniture_models=str(folder) if share else "", furniture_share=share)
        return WorldDataset(render_world(tmp_path / name, "chair", options, seed=4, progress=False)).annotations

    plain, mixed = world(0.0, "plain"), world(0.5, "mixed")
    assert "keypoints_known" not in plain  # worlds without such items are written as before
    known = mixed["keypoints_known"]
    assert 3 <= (~known).sum() <= 17
    # a viewpoint-only item: no keypoint shown, no 3D, but the exact camera of the same item in the plain world
    assert not mixed["visible"][~known].any() and np.isnan(mixed["structure"][~known]).all()
    np.testing.assert_allclose(mixed["azimuth"], plain["azimuth"])
    np.testing.assert_allclose(mixed["keypoints"][known], plain["keypoints"][known])
    with pytest.raises(ValueError, match="furniture_models folder"):
        WorldOptions(furniture_share=0.3)
    with pytest.raises(ValueError, match="probabilities"):
        WorldOptions(furniture_share=1.5, furniture_models=str(folder))


def test_furniture_also_lends_another_categorys_models(tmp_path):
    from interp3d.data.world import WorldDataset, WorldFormatError, WorldOptions, render_world

    folder = tmp_path / "catalogue"
    _catalogue(folder)  # one chair, no swivel chair

    def options(also):
        return WorldOptions(kind="annotated2d", count=8, image_size=16, chunk=8, supersample=1, furniture_models=str(folder), furniture_share=1.0, furniture_also=also)

    with pytest.raises(WorldFormatError, match="no swivelchair furniture model"):
        render_world(tmp_path / "alone", "swivelchair", options(()), seed=4, progress=False)
    borrowed = WorldDataset(render_world(tmp_path / "borrowed", "swivelchair", options(("chair",)), seed=4, progress=False)).annotations
    assert not borrowed["keypoints_known"].any() and not borrowed["visible"].any()
    # the chair's mesh is in the images: its masks cover what the skeleton framed
    masks = [np.asarray(Image.open(tmp_path / "borrowed" / p.replace("images/", "masks/"))) for p in borrowed["path"]]
    assert all(m.any() for m in masks)
    with pytest.raises(ValueError, match="unknown furniture category or group 'stool'"):
        WorldOptions(furniture_also=("stool",))


def test_armchair_group_is_lent_to_chairs_and_benchmarked_as_chairs(tmp_path):
    from interp3d.data.furniture_models import furniture_group
    from interp3d.data.world import WorldDataset, WorldOptions, _furniture_target, render_world
    from interp3d.shape_model import get_category

    _catalogue(tmp_path)
    _write_box(tmp_path / "scopia" / "armchair1")
    (tmp_path / "scopia" / "armchair1" / "box.obj").rename(tmp_path / "scopia" / "armchair1" / "armchair1.obj")
    with (tmp_path / "Scopia_PluginFurnitureCatalog.properties").open("a") as fh:
        fh.write("name#3=Armchair\nmodel#3=/scopia/armchair1/armchair1.obj\nwidth#3=80\ndepth#3=40\nheight#3=90\n")
    assert furniture_group("swivel_chair") == "swivelchair" and furniture_group("armchair") == "armchair"
    armchairs = furniture_models(tmp_path, "armchair")
    assert [(m.key, m.category) for m in armchairs] == [("scopia/armchair1/armchair1.obj", "armchair")]
    assert [m.key for m in furniture_models(tmp_path, "chair")] == ["scopia/chair3/chair3.obj"]  # not a chair
    views = render_furniture_views("chair", tmp_path, 2, seed=1, image_size=32, group="armchair")
    assert set(views["model"]) == {"scopia/armchair1/armchair1.obj"}
    # a chair world with the armchairs lent shows the chair and the armchair in turn (both in the train half)
    assert {model_split(m) for m in ("scopia/chair3/chair3.obj", "scopia/armchair1/armchair1.obj")} == {"train"}
    structure = np.array([[0.0, 0.0, 0.0], [0.4, 0.9, 0.5]])
    shown = [_furniture_target(get_category("chair"), str(tmp_path), i, structure, ("armchair",)).vertices for i in range(2)]
    extents = [v.max(axis=0) - v.min(axis=0) for v in shown]
    assert extents[0][0] / extents[0][2] == pytest.approx(40 / 50) and extents[1][0] / extents[1][2] == pytest.approx(80 / 40)
    options = WorldOptions(kind="annotated2d", count=4, image_size=16, chunk=4, supersample=1, furniture_models=str(tmp_path), furniture_share=1.0, furniture_also=("armchair",))
    world = WorldDataset(render_world(tmp_path / "world", "chair", options, seed=2, progress=False)).annotations
    assert not world["keypoints_known"].any()


def test_benchmark_view_bands_and_summary():
    from conftest import load_repo_script

    bench = load_repo_script("benchmarks/real_furniture_views.py")
    assert bench.view_band(np.array([0.0, 45.0, 46.0, 315.0, 180.0, 136.0, 224.0, 90.0])).tolist() == [
        "front", "front", "side", "front", "back", "back", "back", "side"]
    row = bench.summarise(np.array([10.0, 40.0, 50.0, 170.0]), 360.0)
    assert row["n"] == 4 and row["within_30_pct"] == 25.0 and row["within_45_pct"] == 50.0 and row["median_deg"] == 45.0
    # AR: mean over thresholds in [0, 180] deg of the share within each; for a half period of 90 deg (tables) the same errors score lower
    assert 0 < bench.summarise(np.array([10.0, 40.0, 50.0, 85.0]), 180.0)["azimuth_ar"] < bench.summarise(np.array([10.0, 40.0, 50.0, 85.0]), 360.0)["azimuth_ar"]


def test_benchmark_gain_interval_resamples_furniture_models():
    from conftest import load_repo_script

    bench = load_repo_script("benchmarks/real_furniture_views.py")
    base = np.zeros(40)
    # the same +50 gain on average: spread evenly over 4 models, or all of it on one of them
    clusters = np.repeat(np.arange(4), 10)
    even = bench.cluster_bootstrap_gain(base, np.tile([100.0, 0.0], 20), clusters)
    lumped = bench.cluster_bootstrap_gain(base, np.r_[np.full(10, 100.0), np.zeros(10), np.full(10, 100.0), np.zeros(10)], clusters)
    assert even["gain"] == lumped["gain"] == 50.0
    assert even["low"] > 20 and lumped["low"] < 5  # a gain on some models only is less sure
