"""Triangle meshes and procedural furniture built around a skeleton.

Every furniture builder takes the object-frame structure ``Y`` (N, 3) of a category, in dataset
keypoint order, and places parts so that each keypoint is exactly a named point of the mesh (a leg's
foot, a seat's top corner, a backrest's top corner): the keypoints' 3D ground truth is exact by
construction. Styles (thicknesses, slats, armrests, cushions, materials) vary with a
``numpy.random.Generator``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..shape_model import Category, get_category

__all__ = ["Mesh", "Material", "PHOTO_PATTERN", "hexahedron", "beam", "slab", "build_furniture", "box", "MATERIAL_PATTERNS"]

# Fragment-shader patterns (see gl.py): 0 plain, 1 wood grain, 2 fabric weave, 3 checker/planks, 4 noise;
# PHOTO_PATTERN + t samples photo texture tile t (Renderer.set_texture_tiles), tinted by the colour.
MATERIAL_PATTERNS = {"plain": 0, "wood": 1, "fabric": 2, "planks": 3, "noise": 4}
PHOTO_PATTERN = 5


@dataclass
class Material:
    colour: tuple[float, float, float]
    pattern: str = "plain"
    scale: float = 1.0  # pattern frequency, per object-frame unit

    tile: int = 0  # pattern "photo": which texture tile

    def packed(self) -> np.ndarray:
        code = PHOTO_PATTERN + self.tile if self.pattern == "photo" else MATERIAL_PATTERNS[self.pattern]
        return np.array([*self.colour, code, self.scale], dtype=np.float32)


@dataclass
class Mesh:
    """Triangles with one material row (r, g, b, pattern, scale) per triangle."""

    vertices: np.ndarray  # (V, 3)
    faces: np.ndarray  # (F, 3) int
    materials: np.ndarray = field(default_factory=lambda: np.zeros((0, 5), np.float32))  # (F, 5)

    @staticmethod
    def empty() -> "Mesh":
        return Mesh(np.zeros((0, 3)), np.zeros((0, 3), np.int64), np.zeros((0, 5), np.float32))

    @staticmethod
    def concatenate(meshes: list["Mesh"]) -> "Mesh":
        meshes = [m for m in meshes if len(m.faces)]
        if not meshes:
            return Mesh.empty()
        offsets = np.cumsum([0] + [len(m.vertices) for m in meshes[:-1]])
        return Mesh(
            np.concatenate([m.vertices for m in meshes]),
            np.concatenate([m.faces + o for m, o in zip(meshes, offsets)]),
            np.concatenate([m.materials for m in meshes]),
        )

    def with_material(self, material: Material) -> "Mesh":
        return Mesh(self.vertices, self.faces, np.repeat(material.packed()[None], len(self.faces), axis=0))

    def transformed(self, rotation: np.ndarray, translation: np.ndarray) -> "Mesh":
        return Mesh(self.vertices @ rotation.T + translation, self.faces, self.materials)


# The 12 triangles of a hexahedron whose corners are bottom quad 0-3 and top quad 4-7 (same cyclic order).
_HEX_FACES = np.array(
    [[0, 1, 2], [0, 2, 3], [4, 6, 5], [4, 7, 6], [0, 4, 5], [0, 5, 1], [1, 5, 6], [1, 6, 2], [2, 6, 7], [2, 7, 3], [3, 7, 4], [3, 4, 0]]
)


def hexahedron(corners: np.ndarray, material: Material) -> Mesh:
    """A (possibly skewed) box from 8 corners: bottom quad then top quad, same cyclic order."""
    corners = np.asarray(corners, dtype=np.float64).reshape(8, 3)
    return Mesh(corners, _HEX_FACES.copy()).with_material(material)


def _frame(direction: np.ndarray, hint: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    d = direction / max(np.linalg.norm(direction), 1e-12)
    hint = np.array([0.0, 0.0, 1.0]) if hint is None else hint
    if abs(np.dot(hint, d)) > 0.9:
        hint = np.array([1.0, 0.0, 0.0])
    a = np.cross(d, hint)
    a /= np.linalg.norm(a)
    return a, np.cross(d, a)


def beam(start: np.ndarray, end: np.ndarray, width: float, depth: float | None = None, material: Material = Material((0.5, 0.5, 0.5)), hint=None) -> Mesh:
    """A square-section bar whose axis runs exactly from ``start`` to ``end``."""
    start, end = np.asarray(start, float), np.asarray(end, float)
    a, b = _frame(end - start, hint)
    depth = width if depth is None else depth
    ring = np.array([+a * width / 2 + b * depth / 2, -a * width / 2 + b * depth / 2, -a * width / 2 - b * depth / 2, a * width / 2 - b * depth / 2])
    return hexahedron(np.concatenate([start + ring, end + ring]), material)


def slab(quad: np.ndarray, offset: np.ndarray, material: Material) -> Mesh:
    """A plate whose one face is ``quad`` (4 corners, cyclic) and the other ``quad + offset``."""
    quad = np.asarray(quad, float).reshape(4, 3)
    return hexahedron(np.concatenate([quad, quad + np.asarray(offset, float)]), material)


def box(centre: np.ndarray, size: np.ndarray, material: Material, rotation: np.ndarray | None = None) -> Mesh:
    """An axis-aligned (or rotated) box."""
    half = np.asarray(size, float) / 2
    signs = np.array([[-1, -1, -1], [1, -1, -1], [1, -1, 1], [-1, -1, 1], [-1, 1, -1], [1, 1, -1], [1, 1, 1], [-1, 1, 1]], float)
    corners = signs * half
    if rotation is not None:
        corners = corners @ rotation.T
    return hexahedron(corners + np.asarray(centre, float), material)


# ---------------------------------------------------------------------------------------------
# Materials

WOODS = [(0.55, 0.35, 0.2), (0.72, 0.52, 0.32), (0.36, 0.22, 0.12), (0.82, 0.68, 0.48), (0.25, 0.16, 0.1)]
FABRICS = [(0.6, 0.1, 0.1), (0.15, 0.3, 0.6), (0.3, 0.5, 0.3), (0.75, 0.72, 0.65), (0.2, 0.2, 0.22), (0.85, 0.55, 0.2), (0.5, 0.45, 0.6)]
METALS = [(0.15, 0.15, 0.15), (0.6, 0.6, 0.62), (0.35, 0.35, 0.38)]
PAINTS = [(0.9, 0.9, 0.88), (0.1, 0.1, 0.1), (0.8, 0.2, 0.15), (0.2, 0.45, 0.7), (0.95, 0.8, 0.3)]


def _jitter(colour, rng: np.random.Generator, amount=0.08):
    return tuple(float(np.clip(c + rng.uniform(-amount, amount), 0.02, 0.98)) for c in colour)


def random_material(rng: np.random.Generator, kinds=("wood", "fabric", "metal", "paint"), scale: float = 1.0) -> Material:
    kind = kinds[rng.integers(len(kinds))]
    if kind == "wood":
        return Material(_jitter(WOODS[rng.integers(len(WOODS))], rng), "wood", scale * rng.uniform(0.5, 2.0))
    if kind == "fabric":
        return Material(_jitter(FABRICS[rng.integers(len(FABRICS))], rng), "fabric", scale * rng.uniform(2.0, 6.0))
    if kind == "metal":
        return Material(_jitter(METALS[rng.integers(len(METALS))], rng, 0.04), "plain", 1.0)
    return Material(_jitter(PAINTS[rng.integers(len(PAINTS))], rng), "noise", scale * rng.uniform(1.0, 4.0))


# ---------------------------------------------------------------------------------------------
# Furniture builders. Y is (N, 3) in dataset order; `unit` is the object's size unit (alpha_1).


def _quad_normal_offset(quad: np.ndarray, towards: np.ndarray, thickness: float) -> np.ndarray:
    n = np.cross(quad[1] - quad[0], quad[3] - quad[0])
    n /= max(np.linalg.norm(n), 1e-12)
    if np.dot(n, towards) < 0:
        n = -n
    return n * thickness


def _chair(y: np.ndarray, unit: float, rng: np.random.Generator) -> Mesh:
    frame = random_material(rng, ("wood", "metal", "paint"), 1 / unit)
    seat_mat = random_material(rng, ("wood", "fabric", "paint"), 1 / unit) if rng.random() < 0.6 else frame
    leg_w = unit * rng.uniform(0.08, 0.2)
    seat_t = unit * rng.uniform(0.1, 0.25)
    back_t = unit * rng.uniform(0.06, 0.15)
    feet, seat, top = y[0:4], y[4:8], y[8:10]  # feet FL FR BR BL; seat FL FR BR BL; back top L R
    parts = []
    down = np.array([0.0, -1.0, 0.0])
    seat_quad = seat[[0, 1, 2, 3]]
    parts.append(slab(seat_quad, _quad_normal_offset(seat_quad, down, seat_t), seat_mat))
    for i in range(4):
        parts.append(beam(feet[i], seat[i] + down * seat_t * 0.5, leg_w, material=frame))
    if rng.random() < 0.5:  # stretchers between the legs
        h = rng.uniform(0.25, 0.5)
        lo = feet + (seat - feet) * h
        for a, b in ((0, 1), (1, 2), (2, 3), (3, 0)):
            parts.append(beam(lo[a], lo[b], leg_w * 0.5, material=frame))
    back_quad = np.array([seat[3], seat[2], top[1], top[0]])  # BL BR TR TL
    behind = _quad_normal_offset(back_quad, np.array([0.0, 0.0, -1.0]), back_t)
    style = rng.integers(3)
    if style == 0:  # solid back
        parts.append(slab(back_quad, behind, seat_mat))
    else:  # posts + top rail (+ slats)
        post_w = max(leg_w * 0.8, back_t)
        parts.append(beam(seat[3], top[0], post_w, material=frame))
        parts.append(beam(seat[2], top[1], post_w, material=frame))
        rail_h = rng.uniform(0.15, 0.35)
        rail = np.array([top[0] + (seat[3] - top[0]) * rail_h, top[1] + (seat[2] - top[1]) * rail_h, top[1], top[0]])
        parts.append(slab(rail, behind, frame))
        if style == 2:
            for s in np.linspace(0.2, 0.8, rng.integers(2, 5)):
                lo = seat[3] + (seat[2] - seat[3]) * s
                hi = top[0] + (top[1] - top[0]) * s
                parts.append(beam(lo, hi, leg_w * 0.6, back_t, material=frame))
    if rng.random() < 0.25:  # armrests (not part of the skeleton)
        for side in (0, 1):
            front, back = seat[side], seat[3 - side]
            arm_h = (top[0][1] - seat[0][1]) * 0.4
            up = np.array([0.0, arm_h, 0.0])
            parts.append(beam(front, front + up, leg_w * 0.7, material=frame))
            parts.append(beam(front + up, back + up, leg_w * 0.8, material=frame))
    return Mesh.concatenate(parts)


def _swivelchair(y: np.ndarray, unit: float, rng: np.random.Generator) -> Mesh:
    metal = random_material(rng, ("metal",), 1 / unit)
    fabric = random_material(rng, ("fabric", "paint"), 1 / unit)
    tips, hub, stem_top, seat, top = y[0:5], y[5], y[6], y[7:11], y[11:13]
    parts = []
    leg_w = unit * rng.uniform(0.1, 0.18)
    for tip in tips:
        parts.append(beam(hub, tip, leg_w, leg_w * 0.6, material=metal, hint=np.array([0.0, 1.0, 0.0])))
        wheel = unit * rng.uniform(0.12, 0.2)
        parts.append(box(tip + np.array([0.0, -wheel / 2, 0.0]), np.array([wheel, wheel, wheel]), Material((0.08, 0.08, 0.08))))
    parts.append(beam(hub, stem_top, unit * rng.uniform(0.12, 0.22), material=metal, hint=np.array([1.0, 0.0, 0.0])))
    seat_t = unit * rng.uniform(0.15, 0.3)
    seat_quad = seat[[0, 1, 2, 3]]
    parts.append(slab(seat_quad, _quad_normal_offset(seat_quad, np.array([0.0, -1.0, 0.0]), seat_t), fabric))
    back_quad = np.array([seat[3], seat[2], top[1], top[0]])
    lift = rng.uniform(0.0, 0.35)
    back_quad[:2] = back_quad[:2] + (back_quad[2:][::-1] - back_quad[:2]) * lift
    parts.append(slab(back_quad, _quad_normal_offset(back_quad, np.array([0.0, 0.0, -1.0]), unit * rng.uniform(0.1, 0.25)), fabric))
    if lift > 0:
        mid = (seat[2] + seat[3]) / 2
        parts.append(beam(mid, (back_quad[0] + back_quad[1]) / 2, unit * 0.12, material=metal))
    if rng.random() < 0.5:
        for side in (0, 1):
            front, back = seat[side], seat[3 - side]
            up = np.array([0.0, (top[0][1] - seat[0][1]) * 0.35, 0.0])
            parts.append(beam((front + back) / 2, (front + back) / 2 + up, unit * 0.1, material=metal))
            parts.append(beam(front * 0.8 + back * 0.2 + up, front * 0.2 + back * 0.8 + up, unit * 0.14, material=fabric))
    return Mesh.concatenate(parts)


def _table(y: np.ndarray, unit: float, rng: np.random.Generator) -> Mesh:
    top_mat = random_material(rng, ("wood", "paint"), 1 / unit)
    leg_mat = top_mat if rng.random() < 0.6 else random_material(rng, ("metal", "wood"), 1 / unit)
    top, feet = y[0:4], y[4:8]  # Z-order: BL BR FL FR
    quad = top[[0, 1, 3, 2]]
    top_t = unit * rng.uniform(0.06, 0.18)
    parts = [slab(quad, _quad_normal_offset(quad, np.array([0.0, -1.0, 0.0]), top_t), top_mat)]
    leg_w = unit * rng.uniform(0.08, 0.2)
    for i in range(4):
        parts.append(beam(feet[i], top[i] + np.array([0.0, -top_t * 0.5, 0.0]), leg_w, material=leg_mat))
    if rng.random() < 0.5:  # apron
        apron = unit * rng.uniform(0.1, 0.25)
        below = np.array([0.0, -top_t - apron, 0.0])
        for a, b in ((0, 1), (1, 3), (3, 2), (2, 0)):
            p, q = top[a] + np.array([0.0, -top_t, 0.0]), top[b] + np.array([0.0, -top_t, 0.0])
            parts.append(slab(np.array([p, q, q + below, p + below]), np.zeros(3) + 1e-3 * unit, leg_mat))
    return Mesh.concatenate(parts)


def _bed(y: np.ndarray, unit: float, rng: np.random.Generator) -> Mesh:
    frame = random_material(rng, ("wood", "paint", "fabric"), 1 / unit)
    sheet = Material(_jitter((0.9, 0.9, 0.88), rng, 0.1), "fabric", rng.uniform(2, 5) / unit)
    # floor: 0 head-left, 1 foot-left, 5 head-right, 6 foot-right; mattress 2, 3, 7, 8; headboard top 4, 9
    floor_q = y[[0, 1, 6, 5]]
    mat_q = y[[2, 3, 8, 7]]
    base_h = rng.uniform(0.3, 0.6)
    mid_q = floor_q + (mat_q - floor_q) * base_h
    parts = [hexahedron(np.concatenate([floor_q, mid_q]), frame), hexahedron(np.concatenate([mid_q, mat_q]), sheet)]
    head = np.array([y[0], y[5], y[9], y[4]])
    parts.append(slab(head, _quad_normal_offset(head, np.array([0.0, 0.0, -1.0]), unit * rng.uniform(0.08, 0.2)), frame))
    if rng.random() < 0.7:  # pillows
        for side in (0.25, 0.75):
            c = y[2] + (y[7] - y[2]) * side + (y[3] - y[2]) * 0.1
            size = np.array([abs(y[7][0] - y[2][0]) * 0.35, unit * 0.2, abs(y[3][2] - y[2][2]) * 0.12])
            parts.append(box(c + np.array([0.0, size[1] / 2, 0.0]), size, Material(_jitter((0.95, 0.95, 0.95), rng), "fabric", 4 / unit)))
    if rng.random() < 0.4:  # footboard
        foot = np.array([y[1], y[6], y[8], y[3]])
        parts.append(slab(foot, _quad_normal_offset(foot, np.array([0.0, 0.0, 1.0]), unit * 0.1), frame))
    return Mesh.concatenate(parts)


def _sofa(y: np.ndarray, unit: float, rng: np.random.Generator) -> Mesh:
    fabric = random_material(rng, ("fabric",), 1 / unit)
    # floor: 0 back-left, 1 front-left, 7 back-right, 8 front-right; seat 2, 3, 9, 10;
    # arm 4 back-left, 5 front-left, 11 back-right, 12 front-right; back top 6 left, 13 right
    floor_q = y[[0, 1, 8, 7]]
    seat_q = y[[2, 3, 10, 9]]
    parts = [hexahedron(np.concatenate([floor_q, seat_q]), fabric)]
    back_t = unit * rng.uniform(0.25, 0.5)
    back_q = np.array([y[2], y[9], y[13], y[6]])
    parts.append(slab(back_q, _quad_normal_offset(back_q, np.array([0.0, 0.0, -1.0]), back_t), fabric))
    arm_w = unit * rng.uniform(0.2, 0.45)
    for back_i, front_i, seat_b, seat_f, sign in ((4, 5, 2, 3, -1.0), (11, 12, 9, 10, 1.0)):
        quad = np.array([y[seat_b], y[seat_f], y[front_i], y[back_i]])
        parts.append(slab(quad, np.array([sign * arm_w, 0.0, 0.0]), fabric))
    cushion = Material(_jitter(fabric.colour, rng, 0.05), "fabric", fabric.scale)
    n_cushions = int(rng.integers(1, 4))
    for i in range(n_cushions):
        a, b = i / n_cushions, (i + 1) / n_cushions
        left_b, right_b = y[2] + (y[9] - y[2]) * a, y[2] + (y[9] - y[2]) * b
        left_f, right_f = y[3] + (y[10] - y[3]) * a, y[3] + (y[10] - y[3]) * b
        q = np.array([left_b, left_f, right_f, right_b])
        parts.append(slab(q, np.array([0.0, unit * 0.15, 0.0]), cushion))
    return Mesh.concatenate(parts)


BUILDERS = {"chair": _chair, "swivelchair": _swivelchair, "table": _table, "bed": _bed, "sofa": _sofa}


def build_furniture(category: Category | str, structure: np.ndarray, unit: float, rng: np.random.Generator) -> Mesh:
    """A furniture mesh around ``structure`` (N, 3, object frame) of ``category``; ``unit`` ~ alpha_1."""
    category = get_category(category)
    if category.name not in BUILDERS:
        raise ValueError(f"no procedural furniture builder for category {category.name!r}; have {sorted(BUILDERS)}")
    structure = np.asarray(structure, dtype=np.float64)
    if structure.shape != (category.num_keypoints, 3):
        raise ValueError(f"{category.name}: structure must be ({category.num_keypoints}, 3), got {structure.shape}")
    return BUILDERS[category.name](structure, float(unit), rng)
