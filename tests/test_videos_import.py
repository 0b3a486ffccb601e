import numpy as np
import pytest
from PIL import Image

from interp3d.data.videos import import_video_folders
from interp3d.data.world import VideoDataset
from interp3d.train.video import VideoFrames


@pytest.fixture
def scans(tmp_path):
    root = tmp_path / "scans"
    rng = np.random.default_rng(0)
    for name, count in (("seq_a", 40), ("seq_b", 12), ("seq_c", 31)):
        (root / name).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(root / name / f"{i:05d}.jpg")
    (root / "categories.txt").write_text("seq_a chair\nseq_b chair\nseq_c sofa\n")
    return root


def test_import_subsamples_keeps_the_category_and_feeds_training(scans, tmp_path):
    out = import_video_folders(scans, "chair", tmp_path / "videos", length=5, fps_in=30, fps_out=5, image_size=32)
    data = VideoDataset(out, clip_length=5)
    assert len(data.videos) == 1 and data.videos[0]["source"].endswith("seq_a")
    assert data.meta["subsampling_step"] == 6 and "seq_b: 2 frames" in data.meta["skipped"][0]
    clip = data[0]
    assert clip["frames"].shape == (5, 3, 32, 32) and clip["category"] == "chair"
    # 20x30 frames are padded to a centred square: the top and bottom bands are black
    assert clip["frames"][0, :, :5].max() == 0 and clip["frames"][0, :, 12:20].max() > 0
    assert VideoFrames(out, 32).frames.shape == (1, 5, 3, 32, 32)


def test_import_errors(scans, tmp_path):
    with pytest.raises(ValueError, match="no chair sequence with 50 frames"):
        import_video_folders(scans, "chair", tmp_path / "v", length=50)
    with pytest.raises(FileNotFoundError, match="not found"):
        import_video_folders(tmp_path / "none", "chair", tmp_path / "v")
    (scans / "categories.txt").write_text("seq_a\n")
    with pytest.raises(ValueError, match="expected 'sequence category'"):
        import_video_folders(scans, "chair", tmp_path / "v", length=5)
