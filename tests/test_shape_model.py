import math

import numpy as np
import pytest

from interp3d.shape_model import SkeletonFileError, get_category, list_categories, load_category, register_directory

# Mean shapes in dataset order, typed from the reference table (reference_facts.md §1), not from the files.
CHAIR_MEAN = [(-1, -2, 1), (1, -2, 1), (1, -2, -1), (-1, -2, -1), (-1, 0, 1), (1, 0, 1), (1, 0, -1), (-1, 0, -1), (-1, 2, -1), (1, 2, -1)]
BED_MEAN = [(-1, -1, -2), (-1, -1, 2), (-1, 0, -2), (-1, 0, 2), (-1, 1, -2), (1, -1, -2), (1, -1, 2), (1, 0, -2), (1, 0, 2), (1, 1, -2)]
SOFA_MEAN = [(-2, -2, -1), (-2, -2, 1), (-2, 0, -1), (-2, 0, 1), (-2, 1, -1), (-2, 1, 1), (-2, 2, -1),
             (2, -2, -1), (2, -2, 1), (2, 0, -1), (2, 0, 1), (2, 1, -1), (2, 1, 1), (2, 2, -1)]
TABLE_MEAN = [(-1, 1, -1), (1, 1, -1), (-1, 1, 1), (1, 1, 1), (-1, -1, -1), (1, -1, -1), (-1, -1, 1), (1, -1, 1)]
T = 1.2
SWIVEL_MEAN = [(0.3090 * T, -1.5, 0.9511 * T), (-0.8090 * T, -1.5, 0.5878 * T), (-0.8090 * T, -1.5, -0.5878 * T),
               (0.3090 * T, -1.5, -0.9511 * T), (T, -1.5, 0), (0, -1.5, 0), (0, 0, 0), (-1, 0, 1), (1, 0, 1), (1, 0, -1),
               (-1, 0, -1), (-1, 1.5, -1), (1, 1.5, -1)]

# Edges in dataset numbering, 1-based, from the reference.
BED_EDGES = [(2, 4), (7, 9), (6, 8), (1, 3), (6, 1), (4, 9), (9, 8), (8, 3), (4, 3), (3, 5), (8, 10), (5, 10)]
SOFA_EDGES = [(2, 4), (9, 11), (8, 10), (1, 3), (4, 11), (11, 10), (10, 3), (4, 3), (3, 7), (10, 14), (7, 14), (5, 6), (6, 4), (12, 13), (13, 11)]


def test_builtin_categories():
    assert list_categories() == ["bed", "chair", "sofa", "swivelchair", "table"]
    sizes = {name: (get_category(name).num_keypoints, get_category(name).num_bases, get_category(name).num_params) for name in list_categories()}
    assert sizes == {"chair": (10, 5, 14), "swivelchair": (13, 7, 16), "table": (8, 6, 15), "bed": (10, 5, 14), "sofa": (14, 7, 16)}


@pytest.mark.parametrize("name,mean", [("chair", CHAIR_MEAN), ("bed", BED_MEAN), ("sofa", SOFA_MEAN), ("table", TABLE_MEAN), ("swivelchair", SWIVEL_MEAN)])
def test_mean_shapes_match_reference_table(name, mean):
    np.testing.assert_allclose(get_category(name).mean_shape, np.array(mean, dtype=float), atol=2e-4)


@pytest.mark.parametrize("name,edges", [("bed", BED_EDGES), ("sofa", SOFA_EDGES)])
def test_dataset_permutation_of_edges(name, edges):
    got = {frozenset(e) for e in get_category(name).edges}
    assert got == {frozenset((a - 1, b - 1)) for a, b in edges}


def test_bed_and_sofa_permutations_and_flip_pairs():
    bed, sofa = get_category("bed"), get_category("sofa")
    # 3D-INN indices: stick node i becomes dataset keypoint indices[i] (1-based)
    assert [i + 1 for i in bed.node_to_dataset] == [2, 7, 6, 1, 4, 9, 8, 3, 5, 10]
    assert [i + 1 for i in sofa.node_to_dataset] == [2, 9, 8, 1, 4, 11, 10, 3, 7, 14, 5, 6, 12, 13]
    assert sorted(bed.flip_pairs) == [(i, i + 5) for i in range(5)]
    assert sorted(sofa.flip_pairs) == [(i, i + 7) for i in range(7)]
    # permuted deformation bases still act on the right keypoints: bed "leg height" lowers the floor corners
    leg = bed.bases_array[bed.basis_names.index("leg_height")]
    assert set(np.nonzero(leg[:, 1])[0]) == {bed.keypoint_index(n) for n in ("floor_head_left", "floor_foot_left", "floor_head_right", "floor_foot_right")}


@pytest.mark.parametrize("name", ["chair", "table", "bed", "sofa"])
def test_flip_pairs_are_mirror_images(name):
    cat = get_category(name)
    mirrored = cat.bases_array * np.array([-1, 1, 1])
    # mirroring x and swapping left/right gives the same mean shape; deformation bases mirror x too
    np.testing.assert_allclose(mirrored[0][list(cat.flip_permutation)], cat.mean_shape)
    perm = list(cat.flip_permutation)
    assert [perm[p] for p in perm] == list(range(cat.num_keypoints))


def test_ranges_in_radians_and_alias():
    chair = get_category("chair")
    assert chair.ranges.elevation == pytest.approx((0.0, 0.15 * math.pi))
    assert chair.ranges.azimuth == pytest.approx((0.0, 2 * math.pi))
    assert get_category("swivel_chair").name == "swivelchair"
    with pytest.raises(KeyError, match="unknown category 'stool'"):
        get_category("stool")


def _write(tmp_path, text, name="thing.toml"):
    p = tmp_path / name
    p.write_text(text)
    return p


GOOD = """
schema_version = 1
name = "stool"
plane_size = 200
nodes = ["a", "b", "c", "d"]
edges = [["a", "b"], ["b", "c"], ["c", "d"]]
flip_pairs = [["a", "b"]]
[[basis]]
name = "mean"
points = [[-1, 0, 0], [1, 0, 0], [0, 1, 0], [0, -1, 1]]
[[basis]]
name = "height"
points = [[0, 0, 0], [0, 0, 0], [0, 1, 0], [0, -1, 0]]
[ranges]
scale = [10, 20]
alpha = [[-1, 1]]
elevation_deg = [0, 30]
azimuth_deg = [-90, 90]
translation_x = [-10, 10]
translation_y = [-10, 10]
focal = [100, 200]
"""


def test_user_adds_a_category_by_adding_a_file(tmp_path, monkeypatch):
    from interp3d import shape_model

    list_categories()  # load the built-ins, then work on a copy of the registry
    monkeypatch.setattr(shape_model, "_REGISTRY", dict(shape_model._REGISTRY))
    _write(tmp_path, GOOD)
    assert register_directory(tmp_path) == ["stool"]
    stool = get_category("stool")
    assert stool.num_keypoints == 4 and stool.num_bases == 2 and stool.num_params == 11
    assert "chair" in list_categories()


@pytest.mark.parametrize(
    "mutation,message",
    [
        (("points = [[0, 0, 0], [0, 0, 0], [0, 1, 0], [0, -1, 0]]", "points = [[0, 0, 0], [0, 1, 0], [0, -1, 0]]"), r"shape \(3, 3\), expected \(4, 3\)"),
        (('edges = [["a", "b"]', 'edges = [["a", "z"]'), "unknown node 'z'"),
        (("alpha = [[-1, 1]]", "alpha = [[-1, 1], [0, 1]]"), "ranges.alpha must list 1"),
        (("focal = [100, 200]", "focal = [200, 100]"), "low <= high"),
        (("schema_version = 1", "schema_version = 7"), "schema_version 7"),
        (("plane_size = 200", ""), "missing required key 'plane_size'"),
    ],
)
def test_bad_category_files_raise_naming_the_file(tmp_path, mutation, message):
    path = _write(tmp_path, GOOD.replace(*mutation))
    with pytest.raises(SkeletonFileError, match=message) as info:
        load_category(path)
    assert str(path) in str(info.value)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(SkeletonFileError, match="not found"):
        load_category(tmp_path / "nope.toml")
    with pytest.raises(SkeletonFileError, match="not valid TOML"):
        load_category(_write(tmp_path, "name = [unclosed"))


def test_table_half_turn_relabels_the_view_from_the_other_side():
    """Projected at azimuth a and relabelled by the half turn, a table is the table seen from a + pi."""
    import torch

    from interp3d import geometry

    table = get_category("table")
    turn = list(table.half_turn_permutation)
    assert [turn[p] for p in turn] == list(range(table.num_keypoints))
    assert table.keypoint_names[turn[table.keypoint_index("top_back_left")]] == "top_front_right"
    assert table.azimuth_period == pytest.approx(math.pi) and get_category("chair").azimuth_period == pytest.approx(2 * math.pi)
    assert get_category("chair").half_turn_permutation is None
    bases = table.bases(torch.float64)
    alpha = torch.tensor([[36.0, 3.0, 8.0, 5.0, 6.0, 1.0]], dtype=torch.float64)
    t, f = torch.tensor([[4.0, -7.0]], dtype=torch.float64), torch.tensor([300.0], dtype=torch.float64)
    for az in (0.3, 1.5, -1.2):
        uv = [geometry.project_structure(alpha, geometry.euler_to_matrix(geometry.view_to_euler(torch.tensor([a]), torch.tensor([0.4])).double()), t, f, bases, 240)[2]
              for a in (az, az + math.pi)]
        assert torch.allclose(uv[0][0][turn], uv[1][0], atol=1e-9)
        assert not torch.allclose(uv[0][0], uv[1][0], atol=1.0)


def test_half_turn_pairs_must_be_a_symmetry(tmp_path):
    # the stool's feet are symmetric under x -> -x only: a half turn moves them
    with pytest.raises(SkeletonFileError, match="do not describe a symmetry") as info:
        load_category(_write(tmp_path, GOOD.replace('edges = [["a", "b"]', 'half_turn_pairs = [["a", "b"]]\nedges = [["a", "b"]')))
    assert "basis" in str(info.value)
