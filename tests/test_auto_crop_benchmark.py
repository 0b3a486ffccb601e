"""benchmarks/auto_crop.py: the small-object canvases it scores the auto-crop on."""

import numpy as np
from PIL import Image

from conftest import load_repo_script
from interp3d.data.world import WorldDataset, WorldOptions, render_world

BLUE = (0, 0, 255)


def test_each_render_is_pasted_whole_and_small_on_a_held_out_background(tmp_path):
    auto_crop = load_repo_script("benchmarks/auto_crop.py")
    backgrounds = tmp_path / "material" / "backgrounds"
    backgrounds.mkdir(parents=True)
    for i in range(20):  # one in five names falls in the test split
        Image.new("RGB", (64, 48), BLUE).save(backgrounds / f"b{i}.png")
    world = render_world(tmp_path / "w", "chair", WorldOptions(kind="test3d", count=3, image_size=64), seed=0, progress=False)

    images, azimuth, category = auto_crop.canvases(world, tmp_path / "material", count=5, seed=0)

    ds = WorldDataset(world)
    assert category == "chair" and len(images) == 3  # count is capped by the world
    np.testing.assert_array_equal(azimuth, ds.annotations["azimuth"])
    for i, canvas in enumerate(images):
        assert canvas.shape == (auto_crop.CANVAS, auto_crop.CANVAS, 3)
        ys, xs = np.nonzero((canvas != BLUE).any(-1))
        y0, x0 = ys.min(), xs.min()
        side = max(ys.max() - y0, xs.max() - x0) + 1
        assert auto_crop.SHARE[0] * auto_crop.CANVAS - 1 <= side <= auto_crop.SHARE[1] * auto_crop.CANVAS
        pasted = np.asarray(Image.fromarray(ds.load_image(i)).resize((side, side), Image.BILINEAR))
        np.testing.assert_array_equal(canvas[y0 : y0 + side, x0 : x0 + side], pasted)
    # the same seed gives the same canvases (every model reads the same images)
    again, _, _ = auto_crop.canvases(world, tmp_path / "material", count=3, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(images, again))


def test_video_frames_share_one_place_and_size_on_their_canvas(tmp_path):
    """benchmarks/auto_crop_video.py: a video's frames, in frame order, pasted whole at one place
    and size (so the crop a searched frame chose fits its neighbours), the truth in the same order."""
    load_repo_script("benchmarks/auto_crop.py")  # the video benchmark imports its canvas constants
    video = load_repo_script("benchmarks/auto_crop_video.py")
    backgrounds = tmp_path / "material" / "backgrounds"
    backgrounds.mkdir(parents=True)
    for i in range(20):
        Image.new("RGB", (64, 48), BLUE).save(backgrounds / f"b{i}.png")
    root = render_world(tmp_path / "v", "chair", WorldOptions(kind="video", count=2, image_size=48, video_length=3), seed=0, progress=False)

    videos, azimuths = video.video_canvases(root, tmp_path / "material", seed=0)

    ds = WorldDataset(root, kind="video")
    a = ds.annotations
    assert [len(f) for f in videos] == [3, 3] and [len(z) for z in azimuths] == [3, 3]
    for v, (frames, azimuth) in enumerate(zip(videos, azimuths)):
        idx = [int(i) for i in np.flatnonzero(a["video_index"] == v)]
        idx.sort(key=lambda i: a["frame_index"][i])
        np.testing.assert_allclose(azimuth, a["azimuth"][idx])
        places = set()
        for frame, i in zip(frames, idx):
            ys, xs = np.nonzero((frame != BLUE).any(-1))
            y0, x0 = ys.min(), xs.min()
            side = max(ys.max() - y0, xs.max() - x0) + 1
            pasted = np.asarray(Image.fromarray(ds.load_image(i)).resize((side, side), Image.BILINEAR))
            np.testing.assert_array_equal(frame[y0 : y0 + side, x0 : x0 + side], pasted)
            places.add((int(x0), int(y0), int(side)))
        assert len(places) == 1


def test_moving_video_frames_follow_a_straight_line_at_constant_speed(tmp_path):
    """--motion: each video's square keeps its size and moves by equal steps along one line, inside
    the canvas, by the asked share of the canvas side unless the edge cuts the line short."""
    load_repo_script("benchmarks/auto_crop.py")
    video = load_repo_script("benchmarks/auto_crop_video.py")
    rng = np.random.default_rng(3)
    for _ in range(50):
        side = int(rng.integers(100, 240))
        track = video.paste_track(rng, side, 11, 0.3)
        assert track.min() >= 0 and track.max() <= video.CANVAS - side
        steps = np.diff(track, axis=0)
        assert np.abs(steps - steps.mean(0)).max() <= 1  # constant speed up to the pixel rounding
        assert np.linalg.norm(track[-1] - track[0]) <= 0.3 * video.CANVAS + 1
    still = video.paste_track(np.random.default_rng(1), 150, 5, 0.0)
    assert (still == still[0]).all()

    backgrounds = tmp_path / "material" / "backgrounds"
    backgrounds.mkdir(parents=True)
    for i in range(20):
        Image.new("RGB", (64, 48), BLUE).save(backgrounds / f"b{i}.png")
    root = render_world(tmp_path / "v", "chair", WorldOptions(kind="video", count=1, image_size=48, video_length=5), seed=0, progress=False)
    (frames,), _ = video.video_canvases(root, tmp_path / "material", seed=0, motion=0.5)
    corners = []
    for frame in frames:
        ys, xs = np.nonzero((frame != BLUE).any(-1))
        corners.append((xs.min(), ys.min(), max(ys.max() - ys.min(), xs.max() - xs.min()) + 1))
    assert len({c[2] for c in corners}) == 1 and len({c[:2] for c in corners}) > 1
