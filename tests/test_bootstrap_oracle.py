import json

import numpy as np
import torch

from conftest import load_repo_script
from interp3d.data.world import WorldOptions, render_world


def test_oracle_labels_are_each_frames_own_ground_truth_in_the_order_the_bootstrap_reads_frames(tmp_path):
    load_repo_script("benchmarks/video_bootstrap_views.py")  # the oracle script imports its frame order
    oracle = load_repo_script("benchmarks/bootstrap_oracle.py")
    root = render_world(tmp_path / "video", "chair", WorldOptions(kind="video", count=3, video_length=4, image_size=64, chunk=2), seed=7, progress=False)
    keypoints, visible, track = oracle.oracle_labels(root, 32)
    assert keypoints.shape == (12, 10, 2) and visible.shape == (12, 10)
    # each label row belongs to the frame the bootstrap holds at that index (VideoFrames reads
    # videos.json's videos and frames in order): look it up by file name
    names = [name for video in json.loads((root / "videos.json").read_text()) for name in video["frames"]]
    a = np.load(root / "annotations.npz")
    row_of = {str(p): i for i, p in enumerate(a["path"])}
    rows = [row_of[name] for name in names]
    assert torch.allclose(keypoints, torch.from_numpy(a["keypoints"][rows]) * 0.5)
    assert torch.equal(visible, torch.from_numpy(a["visible"][rows]))
    assert torch.equal(track["azimuth"], torch.from_numpy(a["azimuth"][rows])) and (track["source"] == 0).all()
    # and every frame's keypoints differ, so a wrong order could not pass
    assert len({tuple(k.flatten().tolist()) for k in keypoints}) == len(keypoints)
