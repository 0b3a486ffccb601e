"""Per-category skeleton and shape model, loaded from one TOML file per category.

A category file (see ``interp3d/skeletons/*.toml``) holds keypoint names, edges, left/right flip
pairs, the K base shapes (base 1 is the mean shape, scaled by alpha_1; bases 2..K are additive
deformations), the dataset keypoint order and the synthetic sampling ranges. Per-node arrays are in
the file's node order (3D-INN's stick-figure order); :class:`Category` exposes everything in
*dataset order*, the heatmap channel order used by every other module.

A user adds a category by dropping a file into a directory and calling
:func:`load_category` or :func:`register_directory`.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "Category",
    "SamplingRanges",
    "SkeletonFileError",
    "load_category",
    "get_category",
    "list_categories",
    "register_directory",
    "SCHEMA_VERSION",
]

SCHEMA_VERSION = 1


class SkeletonFileError(ValueError):
    """A category file is missing, unreadable or inconsistent."""


@dataclass(frozen=True)
class SamplingRanges:
    """Synthetic parameter ranges (3D-INN ``getStickFigure``). Angles in radians."""

    scale: tuple[float, float]
    alpha: tuple[tuple[float, float], ...]  # alpha_2..K relative to alpha_1
    elevation: tuple[float, float]
    azimuth: tuple[float, float]
    translation_x: tuple[float, float]
    translation_y: tuple[float, float]
    focal: tuple[float, float]

    def absolute_alpha_bounds(self) -> np.ndarray:
        """(K, 2) bounds of the absolute coefficients alpha_k = alpha_1 * a_k (alpha_1 itself first)."""
        s_lo, s_hi = self.scale
        rows = [(s_lo, s_hi)]
        for a_lo, a_hi in self.alpha:
            products = (a_lo * s_lo, a_lo * s_hi, a_hi * s_lo, a_hi * s_hi)
            rows.append((min(products), max(products)))
        return np.asarray(rows, dtype=np.float64)


@dataclass(frozen=True, eq=False)
class Category:
    """A category's skeleton and linear shape model, everything in dataset keypoint order."""

    name: str
    keypoint_names: tuple[str, ...]
    edges: tuple[tuple[int, int], ...]
    flip_pairs: tuple[tuple[int, int], ...]
    basis_names: tuple[str, ...]
    bases_array: np.ndarray  # (K, N, 3) float64, dataset order
    node_to_dataset: tuple[int, ...]  # file node i -> dataset keypoint index
    plane_size: float
    ranges: SamplingRanges
    source: str = field(default="", compare=False)
    # Opaque planar parts as keypoint-index polygons (seat, backrest, table top, ...): what hides
    # other keypoints from the camera in :func:`interp3d.geometry.self_occlusion`.
    surfaces: tuple[tuple[int, ...], ...] = ()
    # Keypoints that trade places under a half turn about the vertical axis, for objects that look
    # the same from opposite sides (a rectangular table): empty for the others.
    half_turn_pairs: tuple[tuple[int, int], ...] = ()

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoint_names)

    @property
    def num_bases(self) -> int:
        return len(self.basis_names)

    @property
    def num_params(self) -> int:
        """Length of the parameter vector [alpha (K), 1/f, sin (3), cos (3), t_x, t_y]."""
        return self.num_bases + 9

    @property
    def mean_shape(self) -> np.ndarray:
        return self.bases_array[0]

    def bases(self, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> torch.Tensor:
        """Base shapes as a ``(K, N, 3)`` tensor."""
        return torch.as_tensor(self.bases_array, dtype=dtype, device=device)

    @cached_property
    def flip_permutation(self) -> tuple[int, ...]:
        """Index permutation that swaps left/right keypoints (an involution)."""
        return _swap_permutation(self.num_keypoints, self.flip_pairs)

    @cached_property
    def half_turn_permutation(self) -> tuple[int, ...] | None:
        """Index permutation of a half turn about the vertical axis (None for objects without that
        symmetry): the keypoints of a view from azimuth ``a`` so relabelled are those seen from ``a + pi``."""
        return _swap_permutation(self.num_keypoints, self.half_turn_pairs) if self.half_turn_pairs else None

    @property
    def azimuth_period(self) -> float:
        """Azimuths are defined modulo this (rad): pi for an object that looks the same after a half turn."""
        return math.pi if self.half_turn_pairs else 2 * math.pi

    @cached_property
    def surface_triangles(self) -> np.ndarray:
        """(T, 3) keypoint indices: the surfaces as triangle fans."""
        tris = [(poly[0], poly[i], poly[i + 1]) for poly in self.surfaces for i in range(1, len(poly) - 1)]
        return np.asarray(tris, dtype=np.int64).reshape(-1, 3)

    def keypoint_index(self, name: str) -> int:
        try:
            return self.keypoint_names.index(name)
        except ValueError:
            raise KeyError(f"category {self.name!r} has no keypoint {name!r}; it has {list(self.keypoint_names)}") from None

    def __repr__(self) -> str:
        return f"Category({self.name!r}, N={self.num_keypoints}, K={self.num_bases}, plane={self.plane_size:g})"


def half_turned(points: np.ndarray, permutation) -> np.ndarray:
    """Keypoints ``(..., N, 3)`` in the object frame turned half way round the vertical axis,
    ``(x, y, z) -> (-x, y, -z)``, and relabelled by ``permutation`` (a category's half-turn permutation):
    for an object with that symmetry, the same object."""
    return np.asarray(points, np.float64)[..., list(permutation), :] * np.array([-1.0, 1.0, -1.0])


def _swap_permutation(n: int, pairs) -> tuple[int, ...]:
    """Index permutation of ``n`` keypoints that swaps each pair (an involution)."""
    perm = list(range(n))
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return tuple(perm)


def _pair(value, what: str, path: str) -> tuple[float, float]:
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) for v in value)):
        raise SkeletonFileError(f"{path}: {what} must be a [low, high] pair of numbers, got {value!r}")
    lo, hi = float(value[0]), float(value[1])
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
        raise SkeletonFileError(f"{path}: {what} must satisfy low <= high (finite), got {value!r}")
    return lo, hi


def _parse(doc: dict, path: str) -> Category:
    def need(key: str, kind: type):
        if key not in doc:
            raise SkeletonFileError(f"{path}: missing required key {key!r}")
        if not isinstance(doc[key], kind) or isinstance(doc[key], bool):
            expected = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
            raise SkeletonFileError(f"{path}: {key!r} must be a {expected}, got {type(doc[key]).__name__}")
        return doc[key]

    version = need("schema_version", int)
    if version != SCHEMA_VERSION:
        raise SkeletonFileError(f"{path}: schema_version {version} is not supported (expected {SCHEMA_VERSION})")
    name = need("name", str)
    nodes = need("nodes", list)
    n = len(nodes)
    if n == 0 or len(set(nodes)) != n or not all(isinstance(x, str) for x in nodes):
        raise SkeletonFileError(f"{path}: 'nodes' must be a non-empty list of unique names")
    dataset_index = doc.get("dataset_index", list(range(n)))
    if sorted(dataset_index) != list(range(n)):
        raise SkeletonFileError(f"{path}: 'dataset_index' must be a permutation of 0..{n - 1}, got {dataset_index}")

    index_of_name = {node: dataset_index[i] for i, node in enumerate(nodes)}

    def name_pairs(key: str) -> tuple[tuple[int, int], ...]:
        pairs = []
        for item in doc.get(key, []):
            if not (isinstance(item, list) and len(item) == 2):
                raise SkeletonFileError(f"{path}: each entry of {key!r} must be a pair of node names, got {item!r}")
            for node in item:
                if node not in index_of_name:
                    raise SkeletonFileError(f"{path}: {key!r} names unknown node {node!r}")
            if item[0] == item[1]:
                raise SkeletonFileError(f"{path}: {key!r} pairs a node with itself: {item!r}")
            pairs.append((index_of_name[item[0]], index_of_name[item[1]]))
        return tuple(pairs)

    edges = name_pairs("edges")
    flip_pairs = name_pairs("flip_pairs")
    flipped = [i for pair in flip_pairs for i in pair]
    if len(flipped) != len(set(flipped)):
        raise SkeletonFileError(f"{path}: a node appears in more than one flip pair")
    half_turn_pairs = name_pairs("half_turn_pairs")
    turned = [i for pair in half_turn_pairs for i in pair]
    if len(turned) != len(set(turned)):
        raise SkeletonFileError(f"{path}: a node appears in more than one half-turn pair")

    basis_docs = need("basis", list)
    if not basis_docs:
        raise SkeletonFileError(f"{path}: at least one [[basis]] (the mean shape) is required")
    basis_names, arrays = [], []
    for k, basis in enumerate(basis_docs):
        pts = np.asarray(basis.get("points", []), dtype=np.float64)
        if pts.shape != (n, 3):
            raise SkeletonFileError(
                f"{path}: basis {k + 1} ({basis.get('name', '?')!r}) has shape {pts.shape}, expected ({n}, 3) for {n} nodes"
            )
        if not np.isfinite(pts).all():
            raise SkeletonFileError(f"{path}: basis {k + 1} has non-finite coordinates")
        basis_names.append(str(basis.get("name", f"basis{k + 1}")))
        arrays.append(pts)
    node_bases = np.stack(arrays)  # (K, N, 3) node order
    bases = np.empty_like(node_bases)
    bases[:, list(dataset_index), :] = node_bases

    keypoint_names = [""] * n
    for i, node in enumerate(nodes):
        keypoint_names[dataset_index[i]] = node

    rng = need("ranges", dict)
    k = len(arrays)
    alpha = rng.get("alpha", [])
    if not isinstance(alpha, list) or len(alpha) != k - 1:
        raise SkeletonFileError(f"{path}: ranges.alpha must list {k - 1} [low, high] pairs (one per deformation basis)")
    for key in ("scale", "elevation_deg", "azimuth_deg", "translation_x", "translation_y", "focal"):
        if key not in rng:
            raise SkeletonFileError(f"{path}: missing ranges.{key}")
    focal = _pair(rng["focal"], "ranges.focal", path)
    if focal[0] <= 0:
        raise SkeletonFileError(f"{path}: ranges.focal must be positive, got {rng['focal']}")
    deg = math.pi / 180.0
    elevation = _pair(rng["elevation_deg"], "ranges.elevation_deg", path)
    azimuth = _pair(rng["azimuth_deg"], "ranges.azimuth_deg", path)
    ranges = SamplingRanges(
        scale=_pair(rng["scale"], "ranges.scale", path),
        alpha=tuple(_pair(a, f"ranges.alpha[{i}]", path) for i, a in enumerate(alpha)),
        elevation=(elevation[0] * deg, elevation[1] * deg),
        azimuth=(azimuth[0] * deg, azimuth[1] * deg),
        translation_x=_pair(rng["translation_x"], "ranges.translation_x", path),
        translation_y=_pair(rng["translation_y"], "ranges.translation_y", path),
        focal=focal,
    )
    surfaces = []
    for item in doc.get("surfaces", []):
        if not (isinstance(item, list) and len(item) >= 3 and all(isinstance(x, str) for x in item)):
            raise SkeletonFileError(f"{path}: each entry of 'surfaces' must list at least 3 node names, got {item!r}")
        for node in item:
            if node not in index_of_name:
                raise SkeletonFileError(f"{path}: 'surfaces' names unknown node {node!r}")
        if len(set(item)) != len(item):
            raise SkeletonFileError(f"{path}: a surface repeats a node: {item!r}")
        surfaces.append(tuple(index_of_name[node] for node in item))
    plane_size = float(need("plane_size", (int, float)))
    if plane_size <= 0:
        raise SkeletonFileError(f"{path}: plane_size must be positive")
    if half_turn_pairs:  # every base shape must map onto itself: (x, y, z) -> (-x, y, -z), relabelled
        turned_bases = half_turned(bases, _swap_permutation(n, half_turn_pairs))
        if not np.allclose(turned_bases, bases, atol=1e-9):
            worst = int(np.abs(turned_bases - bases).max(axis=(1, 2)).argmax())
            raise SkeletonFileError(f"{path}: 'half_turn_pairs' do not describe a symmetry: basis {worst + 1} ({basis_names[worst]!r}) changes under the half turn")
    return Category(
        name=name,
        keypoint_names=tuple(keypoint_names),
        edges=edges,
        flip_pairs=flip_pairs,
        basis_names=tuple(basis_names),
        bases_array=bases,
        node_to_dataset=tuple(dataset_index),
        plane_size=plane_size,
        ranges=ranges,
        source=path,
        surfaces=tuple(surfaces),
        half_turn_pairs=half_turn_pairs,
    )


def load_category(path: str | Path) -> Category:
    """Load and validate one category file."""
    path = Path(path)
    if not path.is_file():
        raise SkeletonFileError(f"{path}: category file not found")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SkeletonFileError(f"{path}: not valid TOML ({exc})") from exc
    return _parse(doc, str(path))


_REGISTRY: dict[str, Category] = {}
_BUILTIN_LOADED = False
ALIASES = {"swivel_chair": "swivelchair", "swivel-chair": "swivelchair", "diningtable": "table"}


def register_directory(directory: str | Path) -> list[str]:
    """Make every ``*.toml`` category in ``directory`` available to :func:`get_category`."""
    directory = Path(directory)
    if not directory.is_dir():
        raise SkeletonFileError(f"{directory}: not a directory")
    names = []
    for path in sorted(directory.glob("*.toml")):
        category = load_category(path)
        _REGISTRY[category.name] = category
        names.append(category.name)
    return names


def _load_builtin() -> None:
    global _BUILTIN_LOADED
    if _BUILTIN_LOADED:
        return
    _BUILTIN_LOADED = True
    root = resources.files("interp3d") / "skeletons"
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".toml"):
            with resources.as_file(entry) as path:
                category = load_category(path)
            _REGISTRY.setdefault(category.name, category)


def list_categories() -> list[str]:
    _load_builtin()
    return sorted(_REGISTRY)


def get_category(name: str | Category) -> Category:
    """The category called ``name`` (built-in or registered); accepts a Category unchanged."""
    if isinstance(name, Category):
        return name
    _load_builtin()
    key = ALIASES.get(name.lower(), name.lower())
    if key not in _REGISTRY:
        raise KeyError(f"unknown category {name!r}; known categories: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[key]
