import json

import numpy as np
import pytest
import scipy.io

from interp3d.data.real_shapes import (
    CANONICAL_FROM_PASCAL3D,
    CANONICAL_FROM_SHAPENET,
    decode_threejs_faces,
    load_keypointnet,
    PASCAL3D_SKIPPED,
    load_pascal3d_folder,
    load_pascal3d_json,
    load_pascal3d_mat,
)
from interp3d.shape_fit import fit_shape


def test_frame_conversions_are_rotations_mapping_up_and_front():
    for m in (CANONICAL_FROM_PASCAL3D, CANONICAL_FROM_SHAPENET):
        np.testing.assert_allclose(m @ m.T, np.eye(3))
        assert np.linalg.det(m) == pytest.approx(1.0)
    # PASCAL3D+: z up, front -y
    np.testing.assert_allclose(CANONICAL_FROM_PASCAL3D @ [0, 0, 1], [0, 1, 0])
    np.testing.assert_allclose(CANONICAL_FROM_PASCAL3D @ [0, -1, 0], [0, 0, 1])
    # ShapeNet: y up, front -z
    np.testing.assert_allclose(CANONICAL_FROM_SHAPENET @ [0, 1, 0], [0, 1, 0])
    np.testing.assert_allclose(CANONICAL_FROM_SHAPENET @ [0, 0, -1], [0, 0, 1])


def test_threejs_face_layouts():
    assert decode_threejs_faces([3, 0, 1, 2, 3, 2, 1, 0], 3).tolist() == [[0, 1, 2], [2, 1, 0]]
    # format 3: quad (bit 0) with material (bit 1), then a plain triangle
    assert decode_threejs_faces([3, 0, 1, 2, 3, 7, 0, 0, 2, 3], 4).tolist() == [[0, 1, 2], [0, 2, 3], [0, 2, 3]]
    with pytest.raises(ValueError, match="face indices"):
        decode_threejs_faces([3, 0, 1, 9], 3)


def _fixture_chair():
    # a PASCAL3D+-frame chair: z up, front toward -y, x = -1 on the left
    kp = {
        "leg_lower_left": (-1, -1, 0), "leg_lower_right": (1, -1, 0), "leg_upper_right": (1, 1, 0), "leg_upper_left": (-1, 1, 0),
        "seat_lower_left": (-1, -1, 2), "seat_lower_right": (1, -1, 2), "seat_upper_right": (1, 1, 2), "seat_upper_left": (-1, 1, 2),
        "back_upper_left": (-1, 1, 4), "back_upper_right": (1, 1, 4),
    }
    return kp


def _cad_json(path, anchors: dict):
    """A one-triangle CAD model file carrying ``anchors`` (name -> xyz in the PASCAL3D+ frame)."""
    doc = {"vertices": [0, 0, 0, 1, 0, 0, 0, 1, 0], "faces": [3, 0, 1, 2], "keypoints": {k: dict(zip("xyz", v)) for k, v in anchors.items()}}
    path.write_text(json.dumps(doc))
    return path


def test_pascal3d_json_fixture_lands_in_canonical_order(tmp_path):
    shape = load_pascal3d_json(_cad_json(tmp_path / "chair07.json", _fixture_chair()))
    assert shape.category.name == "chair" and shape.present.all()
    # the fixture is exactly twice... the 3D-INN mean chair up to translation: fit error 0
    assert fit_shape(shape.keypoints, "chair").normalised_rms < 1e-9
    np.testing.assert_allclose(shape.keypoints[0], [-1, 0, 1])  # front-left foot: x -1, front +z
    bad = tmp_path / "chair08.json"
    bad.write_text(json.dumps({"vertices": [], "faces": [], "keypoints": {"top_up": {"x": 0, "y": 0, "z": 0}}}))
    with pytest.raises(ValueError, match="chair08.json: none of the chair anchors"):
        load_pascal3d_json(bad)


def test_bed_anchors_take_the_first_alternative_a_model_has(tmp_path):
    # a PASCAL3D+-frame bed, z up, foot toward -y, x = -1 on the left: posts at the foot only, the
    # headboard panel at the head, whose bottom corners stand for the missing head posts'
    foot, head = -2.0, 2.0
    kp = {
        "bedpost_bottom1": (-1, foot, -1), "bedpost_bottom2": (1, foot, -1), "frame_back1": (-1, head, -1), "frame_back2": (1, head, -1),
        "mattress1": (-1, foot, 0), "mattress2": (1, foot, 0), "mattress3": (1, head, 0), "mattress4": (-1, head, 0),
        "frame_back3": (1, head, 1), "frame_back4": (-1, head, 1), "bedpost_top3": (1, head, 0.5), "bedpost_top4": (-1, head, 0.5),
    }
    shape = load_pascal3d_json(_cad_json(tmp_path / "bed03.json", kp))
    assert shape.category.name == "bed" and shape.present.all()
    # the fixture is the 3D-INN mean bed (foot +z, headboard top at the panel's top, not the post's)
    assert fit_shape(shape.keypoints, "bed").normalised_rms < 1e-9
    names = shape.category.keypoint_names
    np.testing.assert_allclose(shape.keypoints[names.index("floor_head_left")], [-1, -1, -2])
    np.testing.assert_allclose(shape.keypoints[names.index("headboard_top_right")], [1, 1, -2])


def test_pascal3d_mat_fixture_with_missing_anchor(tmp_path):
    kp = _fixture_chair()
    record = {"vertices": np.zeros((3, 3)), "faces": np.array([[1, 2, 3]]), **{k: np.array(v, float) for k, v in kp.items()}}
    record["leg_lower_left"] = np.zeros((0,))
    arr = np.empty((1,), dtype=[(k, object) for k in record])
    for k, v in record.items():
        arr[0][k] = v
    scipy.io.savemat(tmp_path / "chair.mat", {"chair": arr})
    (shape,) = load_pascal3d_mat(tmp_path / "chair.mat")
    assert shape.present.tolist() == [False] + [True] * 9
    assert shape.faces.tolist() == [[0, 1, 2]]


def test_keypointnet_fixture(tmp_path):
    # ShapeNet frame: y up, front -z; ids per KEYPOINTNET_CHAIR_IDS
    canonical = {17: (-1, -2, 1), 20: (1, -2, 1), 19: (1, -2, -1), 18: (-1, -2, -1), 4: (-1, 0, 1), 5: (1, 0, 1), 3: (1, 0, -1), 2: (-1, 0, -1), 0: (-1, 2, -1), 1: (1, 2, -1)}
    kps = [{"semantic_id": i, "xyz": [-x, y, -z]} for i, (x, y, z) in canonical.items()]
    doc = [{"model_id": "a", "keypoints": kps}, {"model_id": "b", "keypoints": kps[:5]}]
    path = tmp_path / "chair.json"
    path.write_text(json.dumps(doc))
    shapes = load_keypointnet(path)
    assert [s.name for s in shapes] == ["a"]
    np.testing.assert_allclose(shapes[0].keypoints, shapes[0].category.mean_shape)
    assert len(load_keypointnet(path, complete_only=False)) == 2


@pytest.mark.shared_data
def test_real_chairs_load_and_fit(shared_data):
    kn = load_keypointnet(shared_data / "keypointnet_chair/annotations/chair.json")
    assert len(kn) == 920
    # frame and order check: centred keypoints share the mean shape's signs
    errors = [fit_shape(s.keypoints, s.category).normalised_rms for s in kn[:100]]
    assert np.median(errors) < 0.15
    mats = load_pascal3d_mat(shared_data / "pascal3d_cad/pascal3d_CAD_chair.mat")
    assert len(mats) == 10 and [int(s.present.sum()) for s in mats].count(6) == 2
    jsons = [load_pascal3d_json(shared_data / f"pascal3d_cad/chair{i:02d}.json") for i in range(1, 11)]
    for a, b in zip(mats, jsons):
        np.testing.assert_allclose(a.keypoints[a.present], b.keypoints[b.present], atol=1e-4)
    sofa = load_pascal3d_json(shared_data / "pascal3d_cad/sofa01.json")
    assert sofa.present.sum() == 10 and fit_shape(sofa.keypoints, sofa.category, sofa.present).normalised_rms < 0.2
    beds = [load_pascal3d_json(path) for path in sorted((shared_data / "pascal3d_cad").glob("bed[0-9]*.json"))]
    assert len(beds) == 9 and all(bed.present.all() for bed in beds)
    for bed in beds:  # foot end toward +z, mattress above the floor corners
        kp = dict(zip(bed.category.keypoint_names, bed.keypoints))
        assert kp["mattress_foot_left"][2] > kp["mattress_head_left"][2] and kp["mattress_foot_left"][1] > kp["floor_foot_left"][1]
        assert kp["mattress_foot_left"][0] < kp["mattress_foot_right"][0]
    assert np.median([fit_shape(bed.keypoints, "bed").normalised_rms for bed in beds]) < 0.05
    kept = load_pascal3d_folder(shared_data / "pascal3d_cad", "bed")  # less the two bunk beds
    assert [s.name for s in kept] == [b.name for b in beds if b.name not in PASCAL3D_SKIPPED] and len(kept) == 7
