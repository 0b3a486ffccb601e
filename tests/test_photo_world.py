"""The realistic world: photo libraries (splits, crops, bad files), photo backgrounds and textures in
the renderer (exact pixels), the whole view sphere, CAD targets by share, determinism."""

import math

import numpy as np
import pytest
from PIL import Image

from interp3d.data.world import WorldDataset, WorldOptions, full_view_ranges, render_world
from interp3d.render.gl import Renderer, SceneObject
from interp3d.render.mesh import Material, box
from interp3d.render.photos import PhotoLibrary, PhotoLibraryError, _split_of
from interp3d.render.scene import SceneOptions, scene_background
from interp3d.shape_model import get_category


def _photo_folder(root, n=12, size=96):
    """Photos of flat colours: file i is colour (20 i, 255 - 20 i, 128)."""
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(np.full((size, size + 10 * i, 3), (20 * i, 255 - 20 * i, 128), np.uint8)).save(root / f"photo_{i:02d}.{'png' if i % 2 else 'jpg'}", quality=98)
    return root


def test_library_splits_by_name_and_crops_to_size(tmp_path):
    folder = _photo_folder(tmp_path / "photos")
    train, test, every = PhotoLibrary(folder, "train"), PhotoLibrary(folder, "test"), PhotoLibrary(folder, "all")
    assert len(train) + len(test) == len(every) == 12 and not set(train.files) & set(test.files)
    assert all(_split_of(p.name) == "test" for p in test.files)
    crop = every.crop(32, np.random.default_rng(0))
    assert crop.shape == (32, 32, 3) and crop.dtype == np.uint8
    # a crop of a flat photo is that photo's colour (JPEG within a few levels)
    colours = {tuple(np.asarray(Image.open(p).convert("RGB"))[0, 0].astype(int)) for p in every.files}
    assert min(np.abs(np.array(c) - crop[16, 16].astype(int)).max() for c in colours) <= 3


def test_library_errors_name_the_folder_or_file(tmp_path):
    with pytest.raises(PhotoLibraryError, match="missing.*not found"):
        PhotoLibrary(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PhotoLibraryError, match="empty.*no images"):
        PhotoLibrary(tmp_path / "empty", "all")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(PhotoLibraryError, match="broken.jpg.*unreadable"):
        PhotoLibrary(bad, "all").image(0)


def test_background_is_a_crop_of_the_library_and_deterministic(tmp_path):
    folder = _photo_folder(tmp_path / "photos")
    options = SceneOptions(backgrounds=str(folder), background_split="all", photo_background=1.0)
    a, b = scene_background(options, 48, 5), scene_background(options, 48, 5)
    assert np.array_equal(a, b)
    assert a.std(axis=(0, 1)).max() < 2.0  # one flat photo, brightness-jittered as a whole
    procedural = scene_background(SceneOptions(), 48, 5)
    assert procedural.std(axis=(0, 1)).max() > 5.0  # the procedural wall has structure


def test_photo_texture_tiles_are_sampled_on_the_surface():
    renderer = Renderer(size=64, supersample=1)
    tiles = np.zeros((2, 8, 8, 3), np.uint8)
    tiles[0] = (255, 0, 0)
    tiles[1] = (0, 0, 255)
    renderer.set_texture_tiles(tiles)
    face = box(np.zeros(3), np.array([40.0, 40.0, 2.0]), Material((1.0, 1.0, 1.0), "photo", 0.05, tile=1))
    result = renderer.render([SceneObject(face, np.eye(3), np.array([0.0, 0.0, 10.0]), 1)], 300.0, 320.0, np.array([0.0, 0.0, -1.0]), 0.0, 1.0)
    centre = result.colour[32, 32].astype(int)
    assert centre[2] > 200 and centre[0] < 10 and centre[1] < 10  # tile 1 (blue), fully lit
    with pytest.raises(ValueError, match="texture tiles"):
        renderer.set_texture_tiles(np.zeros((2, 8, 4, 3), np.uint8))
    renderer.release()


def test_full_view_sphere_ranges():
    chair, table = full_view_ranges(get_category("chair")), full_view_ranges(get_category("table"))
    assert chair.azimuth == (0.0, 2 * math.pi) and chair.elevation[1] >= math.radians(40)
    assert table.azimuth == (-math.pi / 2, math.pi / 2)  # a rectangular top repeats after half a turn


def test_realistic_world_renders_whole_sphere_with_photo_material_and_is_deterministic(tmp_path):
    folder = _photo_folder(tmp_path / "photos")
    options = WorldOptions(kind="annotated2d", count=24, image_size=48, chunk=8, view_sphere="full", backgrounds=str(folder), textures=str(folder), jpeg=0.5)
    a = WorldDataset(render_world(tmp_path / "a", "chair", options, seed=3, progress=False))
    b = WorldDataset(render_world(tmp_path / "b", "chair", options, seed=3, progress=False))
    assert all(np.array_equal(a.load_image(i), b.load_image(i)) for i in range(len(a)))
    azimuth = np.degrees(a.annotations["azimuth"])
    back = np.minimum(np.abs(azimuth - 180), 360 - np.abs(azimuth - 180)) < 60
    assert back.sum() >= 2, "the whole view sphere includes back views"


def test_real_cad_targets_by_share(shared_data, tmp_path):
    cad = shared_data / "pascal3d_cad"
    options = WorldOptions(kind="annotated2d", count=12, image_size=48, chunk=12, real_shapes=str(cad), real_shape_fraction=0.5)
    ds = WorldDataset(render_world(tmp_path / "w", "chair", options, seed=0, progress=False))
    procedural = WorldDataset(render_world(tmp_path / "p", "chair", WorldOptions(kind="annotated2d", count=12, image_size=48, chunk=12), seed=0, progress=False))
    same = [np.allclose(ds.annotations["structure"][i], procedural.annotations["structure"][i]) for i in range(12)]
    assert 2 <= 12 - sum(same) <= 10  # some targets are CAD models, the others the procedural ones
    with pytest.raises(ValueError, match="real_shape_fraction"):
        WorldOptions(real_shape_fraction=1.5)
    with pytest.raises(ValueError, match="backgrounds: folder .* not found"):
        WorldOptions(backgrounds=str(tmp_path / "nowhere"))


def test_keypoint5_share_mixes_photograph_views_into_the_whole_sphere(tmp_path):
    def front_share(share, name):
        options = WorldOptions(kind="annotated2d", count=40, image_size=16, chunk=40, supersample=1, view_sphere="full", keypoint5_share=share)
        az = np.degrees(WorldDataset(render_world(tmp_path / name, "sofa", options, seed=2, progress=False)).annotations["azimuth"])
        return np.mean(np.minimum(az % 360, 360 - az % 360) <= 45)

    uniform, photos = front_share(0.0, "u"), front_share(1.0, "p")
    assert uniform < 0.45 and photos > 0.8  # uniform: 25 % expected; Keypoint-5 sofas: 95 %
    with pytest.raises(ValueError, match="keypoint5_share"):
        WorldOptions(keypoint5_share=2.0)


def test_cluttered_share_puts_test3d_clutter_into_some_annotated_images(tmp_path):
    def world(share, name):
        options = WorldOptions(kind="annotated2d", count=30, image_size=16, chunk=30, supersample=1, cluttered_share=share)
        ds = WorldDataset(render_world(tmp_path / name, "chair", options, seed=3, progress=False))
        return {**ds.annotations, "images": [ds.load_image(i) for i in range(len(ds))]}

    plain, mixed, cluttered = world(0.0, "plain"), world(0.5, "mixed"), world(1.0, "cluttered")
    # test3d's scene puts 1-2 occluders in front of the object (the annotated one none): more hidden keypoints
    assert cluttered["occluded_by_other"].sum() >= 2 * plain["occluded_by_other"].sum() > 0
    # an item keeps its pose and shape; only the items drawn for the clutter change their scene
    assert np.allclose(mixed["structure"], plain["structure"]) and np.allclose(mixed["azimuth"], plain["azimuth"])
    same_scene = [np.array_equal(mixed["images"][i], plain["images"][i]) for i in range(30)]
    assert 5 <= sum(same_scene) <= 25
    with pytest.raises(ValueError, match="cluttered_share"):
        WorldOptions(cluttered_share=-0.1)


def test_a_world_from_before_an_option_existed_still_matches_at_its_default(tmp_path):
    import json

    from interp3d.data.world import WorldFormatError

    options = WorldOptions(kind="annotated2d", count=2, image_size=16, chunk=2, supersample=1)
    root = render_world(tmp_path / "w", "chair", options, seed=0, progress=False)
    meta = json.loads((root / "meta.json").read_text())
    del meta["options"]["keypoint5_share"]  # as an older interp3d wrote it
    (root / "meta.json").write_text(json.dumps(meta))
    assert render_world(root, "chair", options, seed=0, progress=False) == root
    with pytest.raises(WorldFormatError, match="different dataset"):
        render_world(root, "chair", WorldOptions(kind="annotated2d", count=2, image_size=16, chunk=2, supersample=1, view_sphere="full", keypoint5_share=0.5), seed=0, progress=False)
