"""`interp3d lift` end to end: the three file formats, bad rows reported and skipped (exit 1),
unreadable files and wrong categories rejected with the file named."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from interp3d.cli import app
from interp3d.data.keypoints_io import KeypointFileError, read_keypoints_file
from interp3d.data.synthetic import SkeletonSampler
from interp3d.shape_model import get_category

CHAIR = get_category("chair")


@pytest.fixture(scope="module")
def keypoints():
    b = SkeletonSampler("chair").sample(3, torch.Generator().manual_seed(7))
    return b.keypoints.double().numpy() * 2.0 + 10.0, np.degrees(b.params.view()[0].numpy())


def _json_file(path, kp, extra_rows=()):
    objects = [{"id": f"obj{i}", "keypoints": [None if j == 9 else [float(x), float(y)] for j, (x, y) in enumerate(row)]} for i, row in enumerate(kp)]
    objects += list(extra_rows)
    path.write_text(json.dumps({"category": "chair", "objects": objects}))
    return path


def test_lift_json_with_bad_rows(tmp_path, keypoints):
    kp, _ = keypoints
    bad = [{"id": "short", "keypoints": [[1, 2]] * 8}, {"id": "few", "keypoints": [[1.0, 2.0], [3.0, 9.0]] + [None] * 8}]
    f = _json_file(tmp_path / "kp.json", kp, bad)
    result = CliRunner().invoke(app, ["lift", str(f), "--out", str(tmp_path / "out"), "--figures", "1"])
    assert result.exit_code == 1, result.output
    assert "short" in result.output and "10 keypoints" in result.output and "few" in result.output
    doc = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert [p["source"] for p in doc["predictions"]] == ["obj0", "obj1", "obj2"]
    assert {s["id"] for s in doc["skipped"]} == {"short", "few"}
    assert (tmp_path / "out" / "obj0.png").is_file()
    first = doc["predictions"][0]
    assert first["keypoints_2d"][9] == [None, None] or np.isnan(first["keypoints_2d"][9][0])
    assert len(first["keypoints_3d"]) == 10


def test_lift_csv_and_npz_agree(tmp_path, keypoints):
    kp, _ = keypoints
    names = CHAIR.keypoint_names
    with open(tmp_path / "kp.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id"] + [f"{n}_{c}" for n in names for c in ("x", "y")])
        for i, row in enumerate(kp):
            w.writerow([f"obj{i}"] + [f"{v:.6f}" for v in row.reshape(-1)])
    np.savez(tmp_path / "kp.npz", keypoints=kp, ids=np.array([f"obj{i}" for i in range(len(kp))]))
    runner = CliRunner()
    outs = []
    for name in ("kp.csv", "kp.npz"):
        result = runner.invoke(app, ["lift", str(tmp_path / name), "--out", str(tmp_path / name.replace(".", "_")), "--figures", "0"])
        assert result.exit_code == 0, result.output
        outs.append(json.loads((tmp_path / name.replace(".", "_") / "predictions.json").read_text())["predictions"])
    for a, b in zip(*outs):
        assert a["azimuth_deg"] == pytest.approx(b["azimuth_deg"], abs=1e-3)


def test_lift_rejects_unreadable_and_wrong_category(tmp_path, keypoints):
    kp, _ = keypoints
    runner = CliRunner()
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    result = runner.invoke(app, ["lift", str(broken)])
    assert result.exit_code == 2 and "broken.json" in result.output
    result = runner.invoke(app, ["lift", str(tmp_path / "missing.npz")])
    assert result.exit_code == 2 and "not found" in result.output
    sofa = tmp_path / "sofa.json"
    sofa.write_text(json.dumps({"category": "sofa", "objects": []}))
    result = runner.invoke(app, ["lift", str(sofa)])
    assert result.exit_code == 2 and "sofa" in result.output
    result = runner.invoke(app, ["lift", str(_json_file(tmp_path / "k.json", kp)), "--category", "nonsense"])
    assert result.exit_code == 2
    np.savez(tmp_path / "wrong.npz", keypoints=np.zeros((2, 8, 2)))
    with pytest.raises(KeypointFileError, match="wrong.npz"):
        read_keypoints_file(tmp_path / "wrong.npz", CHAIR)
