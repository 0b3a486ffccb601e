from dataclasses import asdict

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from interp3d.cli import app
from interp3d.config import preset
from interp3d.inference import InputError, Predictor, load_rgb
from interp3d.models import Interpreter
from interp3d.train.engine import save_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    mc = asdict(preset("cpu-small").model) | {"image_size": 32, "features": 16, "depth": 2, "lifter_widths": [32, 16]}
    model = Interpreter.build("chair", 32, 16, 16, 2, 1, (32, 16))
    path = tmp_path_factory.mktemp("model") / "best.pt"
    save_checkpoint(path, {"kind": "finetune", "model": model.state_dict(), "category": "chair", "model_config": mc, "heatmap_size": 16})
    return path


def _image(tmp_path, name, array, mode=None):
    path = tmp_path / name
    Image.fromarray(array, mode).save(path)
    return path


def test_prediction_fields_and_crop_box_maps_back_to_the_input(checkpoint, tmp_path):
    rng = np.random.default_rng(0)
    big = rng.integers(0, 255, (80, 120, 3), dtype=np.uint8)
    predictor = Predictor.load(checkpoint)
    (p,) = predictor.predict(_image(tmp_path, "big.png", big))
    assert p.keypoints_2d.shape == (10, 2) and p.keypoints_3d.shape == (10, 3) and p.alpha.shape == (5,)
    assert 0 <= p.azimuth_deg % 360 < 360 and np.allclose(p.rotation @ p.rotation.T, np.eye(3), atol=1e-5)
    # predicting on a crop box equals predicting on the cropped image, shifted by the box origin
    (boxed,) = predictor.predict(big, box=(40, 10, 104, 74))
    (cropped,) = predictor.predict(np.ascontiguousarray(big[10:74, 40:104]))
    np.testing.assert_allclose(boxed.reprojected_2d, cropped.reprojected_2d + [40, 10], atol=1e-3)
    np.testing.assert_allclose(boxed.keypoints_3d, cropped.keypoints_3d, atol=1e-4)


def test_framing_box_frames_confident_keypoints_like_the_training_images(checkpoint):
    """The framing candidate: the square of side extent / AUTO_CROP_FILL around the keypoints whose
    peak reaches AUTO_CROP_PEAK of the highest (a weak outlier ignored); none for an object that
    already fills the image or for fewer than 4 confident keypoints."""
    from interp3d import inference

    image = np.zeros((200, 200, 3), np.uint8)
    (pred,) = Predictor.load(checkpoint, auto_crop=False).predict_arrays([image], ["small.png"])
    small = np.array([[90, 100], [110, 100], [90, 115], [110, 115], [100, 108], [5, 5]] + [[100, 105]] * 4, float)
    values = [0.4, 0.5, 0.45, 0.42, 0.3, 0.1, 0.35, 0.35, 0.35, 0.35]
    box = inference._framing_box(inference.Prediction(**{**vars(pred), "keypoints_2d": small, "extra": {"peak_values": values}}), image.shape)
    side = 20 / inference.AUTO_CROP_FILL
    np.testing.assert_allclose(box, [100 - side / 2, 107.5 - side / 2, 100 + side / 2, 107.5 + side / 2])
    big = np.array([[10, 10], [190, 20], [20, 180], [180, 185]] + [[100, 100]] * 6, float)
    assert inference._framing_box(inference.Prediction(**{**vars(pred), "keypoints_2d": big, "extra": {"peak_values": [0.5] * 4 + [0.01] * 6}}), image.shape) is None
    assert inference._framing_box(inference.Prediction(**{**vars(pred), "keypoints_2d": small, "extra": {"peak_values": [0.5, 0.5, 0.5] + [0.01] * 7}}), image.shape) is None


@pytest.mark.parametrize("h, w, counts", [(384, 384, (4, 9)), (480, 640, (6, 12)), (100, 400, (18, 42))])
def test_search_windows_cover_the_image_at_each_scale(h, w, counts):
    """Each scale's squares lie inside the image, reach all four edges, and neighbours overlap by
    at least half a window, so any object up to about half a window wide lies whole in one."""
    from interp3d import inference

    windows = np.array(inference._search_windows((h, w, 3)))
    assert len(windows) == sum(counts)
    for scale, chunk in zip(inference.AUTO_CROP_SCALES, np.split(windows, np.cumsum(counts)[:-1])):
        side = scale * min(h, w)
        np.testing.assert_allclose(chunk[:, 2] - chunk[:, 0], side)
        np.testing.assert_allclose(chunk[:, 3] - chunk[:, 1], side)
        assert chunk[:, :2].min() >= 0 and chunk[:, 2].max() <= w + 1e-9 and chunk[:, 3].max() <= h + 1e-9
        assert np.isclose(chunk[:, 2].max(), w) and np.isclose(chunk[:, 3].max(), h)
        for axis in (0, 1):
            starts = np.unique(chunk[:, axis].round(6))
            assert np.all(np.diff(starts) <= side / 2 + 1e-9)


def test_auto_crop_answers_from_the_best_crop_that_keeps_the_object_whole(checkpoint, monkeypatch):
    """A stubbed 2D module "sees" an object at x, y in 120-180 of a 300 px image. The first pass is
    unsure (peaks 0.2); crops that hold the object whole are surer the tighter they frame it; a
    crop that cuts it is surest of all (a part can look like a whole) but its fitted skeleton
    crosses its edge, so the best whole crop answers. A surer first pass (a framed object) and a
    given box keep their answers."""
    from interp3d import inference

    predictor = Predictor.load(checkpoint, auto_crop=True)
    real = predictor._predict_boxes
    obj = np.array([[120.0, 120.0], [180.0, 180.0]])
    first_peak = [0.2]
    calls = []

    def stub(images, sources, boxes, frames):
        calls.append(list(boxes))
        preds = real(images, sources, boxes, frames)
        for pred, box in zip(preds, boxes):
            x0, y0, x1, y1 = (0, 0, 300, 300) if box is None else box
            pred.reprojected_2d = np.linspace(obj[0], obj[1], 10)
            pred.azimuth_confidence = None
            whole = x0 <= 120 and y0 <= 120 and x1 >= 180 and y1 >= 180
            peak = first_peak[0] if box is None else (0.9 if not whole and x1 > 120 and y1 > 120 and x0 < 180 and y0 < 180 else 60 / (x1 - x0) if whole else 0.05)
            pred.extra["peak_values"] = [peak] * 10
        return preds

    monkeypatch.setattr(predictor, "_predict_boxes", stub)
    image = np.zeros((300, 300, 3), np.uint8)
    (pred,) = predictor.predict_arrays([image], ["small.png"])
    windows = inference._search_windows(image.shape)
    assert calls[1] == windows  # one pass on every window (the framing box needs 4 confident keypoints: the stub has none)
    whole = [b for b in windows if b[0] <= 120 and b[1] <= 120 and b[2] >= 180 and b[3] >= 180]
    tightest = min(whole, key=lambda b: b[2] - b[0])
    assert pred.extra["auto_crop_box"] == [round(v, 1) for v in tightest]
    assert not inference._frames_whole_object(pred, [130, 0, 300, 300]) and inference._frames_whole_object(pred, tightest)
    first_peak[0] = 0.5  # no whole crop beats AUTO_CROP_GAIN x the first pass
    (framed,) = predictor.predict_arrays([image], ["framed.png"])
    assert "auto_crop_box" not in framed.extra
    calls.clear()
    predictor.predict_arrays([image], ["boxed.png"], boxes=[(0, 0, 300, 300)])
    assert calls == [[(0, 0, 300, 300)]]  # the user's box is kept
    finer = Predictor.load(checkpoint, auto_crop=True, auto_crop_scales=(0.8, 0.55, 0.4))
    finer_calls = []
    monkeypatch.setattr(finer, "_predict_boxes", lambda images, sources, boxes, frames: finer_calls.append(list(boxes)) or stub(images, sources, boxes, frames))
    finer.predict_arrays([image], ["small.png"])
    assert finer_calls[1] == inference._search_windows(image.shape, (0.8, 0.55, 0.4)) and len(finer_calls[1]) == len(windows) + 16
    for bad in ((), (0.0, 0.5), (1.2,)):
        with pytest.raises(ValueError, match="auto_crop_scales"):
            Predictor.load(checkpoint, auto_crop_scales=bad)


def test_image_modes_are_accepted(tmp_path):
    grey = _image(tmp_path, "g.png", np.full((20, 30), 100, np.uint8), "L")
    rgba = _image(tmp_path, "a.png", np.zeros((20, 30, 4), np.uint8), "RGBA")
    deep = tmp_path / "d.png"
    Image.fromarray(np.arange(600, dtype=np.uint16).reshape(20, 30) * 100).save(deep)
    assert load_rgb(grey).shape == (20, 30, 3) and load_rgb(grey)[0, 0, 0] == 100
    assert (load_rgb(rgba) == 255).all(), "transparent pixels composite onto white"
    d = load_rgb(deep)
    assert d.dtype == np.uint8 and d.max() == 255 and d.min() == 0


def test_camera_photos_are_turned_upright(tmp_path):
    """A JPEG stored sideways with EXIF orientation 6 (turn 90 deg clockwise to view) loads as shown."""
    upright = np.zeros((40, 60, 3), np.uint8)
    upright[:10, :20] = (255, 0, 0)  # a red block at the top left of the image as viewed
    stored = np.ascontiguousarray(np.rot90(upright, k=1))  # turned 90 deg anticlockwise, as the sensor wrote it
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(path, quality=95, exif=exif.tobytes())
    loaded = load_rgb(path)
    assert loaded.shape == upright.shape
    assert loaded[2:8, 2:18, 0].min() > 200 and loaded[2:8, 2:18, 1:].max() < 60
    assert loaded[20:, 30:].max() < 40


def test_bad_inputs_raise_errors_naming_the_file(checkpoint, tmp_path):
    predictor = Predictor.load(checkpoint)
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not an image")
    with pytest.raises(InputError, match="broken.jpg: not a readable image"):
        predictor.predict(bad)
    with pytest.raises(InputError, match="missing.png: file not found"):
        predictor.predict(tmp_path / "missing.png")
    with pytest.raises(InputError, match="at least 16 px"):
        predictor.predict(_image(tmp_path, "tiny.png", np.zeros((8, 40, 3), np.uint8)))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="unsupported file type"):
        predictor.predict(tmp_path / "notes.txt")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="holds no images"):
        predictor.predict(empty)
    (tmp_path / "clip.mp4").write_bytes(b"\x00" * 100)
    with pytest.raises(InputError, match="clip.mp4: not a readable video"):
        predictor.predict(tmp_path / "clip.mp4")


def test_video_prediction_and_temporal_smoothing(checkpoint, tmp_path):
    import imageio.v3 as iio

    rng = np.random.default_rng(1)
    frames = rng.integers(0, 255, (6, 48, 48, 3), dtype=np.uint8)
    path = tmp_path / "clip.mp4"
    iio.imwrite(path, frames, plugin="pyav", codec="libx264", fps=5)
    predictor = Predictor.load(checkpoint)
    raw = predictor.predict(path, smooth=False)
    smooth = predictor.predict(path, smooth=True)
    assert [p.frame for p in raw] == list(range(6))
    assert all(np.array_equal(p.alpha, smooth[0].alpha) for p in smooth)
    assert len({round(p.focal, 4) for p in smooth}) == 1


def test_video_auto_crop_searches_every_tenth_frame_and_reuses_the_nearest_crop(checkpoint, monkeypatch):
    """A 25-frame video: frames 0, 10, 20 and 24 get the full search; every other frame is read once,
    on the crop its nearest searched frame chose (frame 10 chose one, the others kept the image, so
    there is no pair of crops to interpolate)."""
    from interp3d import inference

    predictor = Predictor.load(checkpoint, auto_crop=True)
    frames = [np.full((40, 40, 3), i, np.uint8) for i in range(25)]
    searched, read = [], {}
    real_boxes = predictor._predict_boxes

    def search(images, sources, boxes=None, frames=None):
        searched.extend(frames)
        preds = real_boxes(images, sources, [None] * len(images), frames)
        for k, pred in zip(frames, preds):
            if k == 10:
                pred.extra["auto_crop_box"] = [4.0, 6.0, 30.0, 32.0]
        return preds

    def once(images, sources, boxes, frames):
        read.update(zip(frames, boxes))
        return real_boxes(images, sources, boxes, frames)

    monkeypatch.setattr(predictor, "predict_arrays", search)
    monkeypatch.setattr(predictor, "_predict_boxes", once)
    preds = predictor._video_from_frames(frames, ["clip"] * 25, None, smooth=False)
    assert inference.AUTO_CROP_VIDEO_STRIDE == 10 and searched == [0, 10, 20, 24]
    assert sorted(read) == [i for i in range(25) if i not in (0, 10, 20, 24)]
    assert all(read[i] == [4.0, 6.0, 30.0, 32.0] for i in range(6, 16) if i != 10)
    assert all(read[i] is None for i in list(range(1, 6)) + list(range(16, 24)) if i != 20)
    assert [p.frame for p in preds] == list(range(25)) and preds[12].extra["auto_crop_box"] == [4.0, 6.0, 30.0, 32.0]
    assert predictor._video_auto_crop([], []) == []


def test_video_crop_between_two_searched_crops_moves_linearly():
    """Frames between two searched frames that both chose a crop get the boxes' linear mix (known
    answers); where one kept the whole image, or without interpolation, the nearer choice; a frame
    outside the keys is an error."""
    from interp3d.inference import _crop_between

    keys = [0, 10, 14]
    boxes = {0: [0.0, 0.0, 100.0, 100.0], 10: [50.0, 20.0, 130.0, 100.0], 14: None}
    assert _crop_between(5, keys, boxes) == [25.0, 10.0, 115.0, 100.0]
    assert np.allclose(_crop_between(3, keys, boxes), [15.0, 6.0, 109.0, 100.0])
    box = _crop_between(7, keys, boxes)
    assert np.isclose(box[2] - box[0], box[3] - box[1])  # a mix of two squares is a square
    assert _crop_between(11, keys, boxes) == [50.0, 20.0, 130.0, 100.0] and _crop_between(13, keys, boxes) is None
    assert _crop_between(12, keys, boxes) == [50.0, 20.0, 130.0, 100.0]  # a tie goes to the earlier searched frame
    assert _crop_between(4, keys, boxes, interpolate=False) == [0.0, 0.0, 100.0, 100.0]
    assert _crop_between(6, keys, boxes, interpolate=False) == [50.0, 20.0, 130.0, 100.0]
    edge = {0: [172.8, 69.12, 384.0, 280.32], 10: [172.8, 69.12, 384.0, 280.32], 14: None}
    assert all(_crop_between(i, keys, edge)[2] <= 384.0 for i in range(1, 10))  # no rounding past the image's edge
    with pytest.raises(ValueError, match="not between"):
        _crop_between(15, keys, boxes)


def test_cli_predict_continues_past_a_bad_file(checkpoint, tmp_path):
    good = _image(tmp_path, "good.png", np.random.default_rng(2).integers(0, 255, (40, 40, 3), dtype=np.uint8))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"garbage")
    result = CliRunner().invoke(app, ["predict", str(good), str(bad), "--model", str(checkpoint), "--out", str(tmp_path / "out"), "--flip-test", "--auto-crop"])
    assert result.exit_code == 1
    assert "1 of 2 inputs" in result.output and "bad.png: not a readable image" in result.output
    assert (tmp_path / "out" / "good.json").is_file() and (tmp_path / "out" / "good.png").is_file()
    scales = CliRunner().invoke(app, ["predict", str(good), "--model", str(checkpoint), "--out", str(tmp_path / "o2"), "--auto-crop-scales", "0.8,x"])
    assert scales.exit_code != 0 and "--auto-crop-scales must be fractions" in scales.output
    fine = CliRunner().invoke(app, ["predict", str(good), "--model", str(checkpoint), "--out", str(tmp_path / "o3"), "--auto-crop", "--auto-crop-scales", "0.8,0.55,0.4", "--no-figures"])
    assert fine.exit_code == 0 and (tmp_path / "o3" / "good.json").is_file()


def test_onnxruntime_backend_matches_torch(checkpoint, tmp_path):
    pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 255, (40, 50, 3), dtype=np.uint8) for _ in range(3)]
    for flip_test in (False, True):  # the flip test: the heatmap lifter reads the merged heatmaps in both
        reference = Predictor.load(checkpoint, flip_test=flip_test).predict(images)
        fast = Predictor.load(checkpoint, backend="onnxruntime", flip_test=flip_test).predict(images)
        for a, b in zip(reference, fast):
            np.testing.assert_allclose(a.keypoints_3d, b.keypoints_3d, atol=1e-3)
            np.testing.assert_allclose(a.keypoints_2d, b.keypoints_2d, atol=1e-3)
            assert abs(a.azimuth_deg - b.azimuth_deg) < 1e-2
    with pytest.raises(ValueError, match="backend must be"):
        Predictor.load(checkpoint, backend="tensorrt")


def test_cli_predict_picks_the_categorys_shipped_model(checkpoint, tmp_path, monkeypatch):
    from interp3d.models import serialization
    from interp3d.models.serialization import export_interpreter

    torch.manual_seed(1)
    sofa = Interpreter.build("sofa", 32, 16, 16, 2, 1, (32, 16))
    sofa_file = export_interpreter(sofa, tmp_path / "sofa.safetensors", model_config=asdict(preset("cpu-small").model) | {"image_size": 32, "features": 16, "depth": 2, "lifter_widths": [32, 16]})
    monkeypatch.setattr(serialization, "pretrained_models", lambda: {"sofa": sofa_file})
    image = _image(tmp_path, "photo.png", np.random.default_rng(4).integers(0, 255, (40, 40, 3), dtype=np.uint8))
    result = CliRunner().invoke(app, ["predict", str(image), "--category", "sofa", "--out", str(tmp_path / "out"), "--no-figures"])
    assert result.exit_code == 0, result.output
    import json

    assert json.loads((tmp_path / "out" / "photo.json").read_text())["category"] == "sofa"
    wrong = CliRunner().invoke(app, ["predict", str(image), "--category", "sofa", "--model", str(checkpoint), "--out", str(tmp_path / "o2")])
    assert wrong.exit_code == 2 and "is a chair model, not sofa" in wrong.output
    unknown = CliRunner().invoke(app, ["predict", str(image), "--category", "lamp", "--out", str(tmp_path / "o3")])
    assert unknown.exit_code == 2 and "lamp" in unknown.output


def test_prediction_figure_marks_the_auto_crop_box(checkpoint, tmp_path):
    """The figure draws the crop an answer came from as a square at the box's image coordinates."""
    import matplotlib.pyplot as plt

    from interp3d.shape_model import get_category
    from interp3d.viz import draw_crop_box, prediction_figure

    image = np.random.default_rng(4).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    (pred,) = Predictor.load(checkpoint, auto_crop=False).predict_arrays([image], ["x.png"])
    fig, ax = plt.subplots()
    assert draw_crop_box(ax, pred) is None and not ax.patches
    pred.extra["auto_crop_box"] = [10.0, 5.0, 50.0, 45.0]
    patch = draw_crop_box(ax, pred)
    assert patch in ax.patches and patch.get_xy() == (10.0, 5.0) and (patch.get_width(), patch.get_height()) == (40.0, 40.0)
    plt.close(fig)
    assert prediction_figure(image, pred, get_category(pred.category), tmp_path / "fig.png").is_file()
