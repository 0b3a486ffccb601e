"""Scenes of the rendered furniture world: one target object on a floor, with background, lighting,
distractor furniture, clutter boxes, occluders and camera noise; exact per-keypoint ground truth.

A :class:`SceneSpec` (everything random about a scene except the camera) is drawn once and can be
rendered from many cameras: a video is one scene seen along a camera trajectory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageFilter

from .. import geometry
from ..shape_model import Category, get_category
from .gl import SceneObject, get_renderer
from .mesh import MATERIAL_PATTERNS, Material, Mesh, box, build_furniture, random_material

__all__ = ["SceneOptions", "SceneSpec", "Camera", "RenderedView", "sample_scene", "render_view", "procedural_background", "scene_background", "texture_tiles"]

TARGET_ID, FLOOR_ID, FIRST_DISTRACTOR_ID, FIRST_OCCLUDER_ID = 1, 2, 3, 100


@dataclass(frozen=True)
class SceneOptions:
    """How cluttered and degraded a scene is."""

    floor: float = 0.8  # probability of a textured floor under the object
    distractors: tuple[int, int] = (0, 1)  # other furniture beside/behind the object (min, max)
    clutter_boxes: tuple[int, int] = (0, 1)  # boxes on the floor near the object
    occluders: tuple[int, int] = (0, 0)  # boxes between the camera and the object
    blur: float = 0.5  # max Gaussian blur radius, px
    noise: float = 3.0  # max pixel noise sd, grey levels
    colour_gain: float = 0.1  # per-channel gain in [1 - g, 1 + g]
    jpeg: float = 0.0  # probability of JPEG compression (quality 30-90)
    # photographic material (render.photos.PhotoLibrary folders; "" = procedural only)
    backgrounds: str = ""
    background_split: str = "train"  # which split of the folders (test3d: "test")
    photo_background: float = 0.85  # probability of a photo crop instead of the procedural backdrop
    textures: str = ""
    photo_materials: float = 0.5  # probability that a material of the scene becomes a photo texture
    texture_tiles: int = 8


@dataclass
class Camera:
    """The camera of one view: 3D-INN parameters (R from Euler angles, 2D translation, focal)."""

    angles: np.ndarray  # (3,) theta1, theta2, theta3
    translation: np.ndarray  # (2,)
    focal: float

    @property
    def rotation(self) -> np.ndarray:
        return geometry.euler_to_matrix(torch.as_tensor(self.angles, dtype=torch.float64)).numpy()


@dataclass
class SceneSpec:
    category: Category
    structure: np.ndarray  # (N, 3) object frame
    alpha: np.ndarray  # (K,)
    target: Mesh
    extras: list[tuple[Mesh, np.ndarray, np.ndarray, int]]  # (mesh, rotation, translation in object frame, id)
    occluder_seeds: list[np.ndarray]  # per occluder: (u, v in [0, 1] of the bbox, depth fraction, size, r, g, b)
    background_seed: int
    light: tuple[np.ndarray, float, float]
    options: SceneOptions = field(default_factory=SceneOptions)
    texture_seed: int = 0


@dataclass
class RenderedView:
    image: np.ndarray  # (S, S, 3) uint8
    mask: np.ndarray  # (S, S) bool, visible pixels of the target
    keypoints: np.ndarray  # (N, 2) image px, exact projection
    visible: np.ndarray  # (N,) bool
    occluded_by_other: np.ndarray  # (N,) bool
    inside: np.ndarray  # (N,) bool: in the image
    bbox: np.ndarray  # (4,) x0, y0, x1, y1 of the whole projected target mesh, image px
    points_cam: np.ndarray  # (N, 3)


def _count(rng: np.random.Generator, bounds: tuple[int, int]) -> int:
    return int(rng.integers(bounds[0], bounds[1] + 1)) if bounds[1] > 0 else 0


def _yaw(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def sample_scene(
    category: Category | str,
    structure: np.ndarray,
    alpha: np.ndarray,
    rng: np.random.Generator,
    options: SceneOptions = SceneOptions(),
    target_mesh: Mesh | None = None,
) -> SceneSpec:
    """Draw the furniture mesh (unless ``target_mesh``, e.g. a real CAD model, is given), floor,
    distractors, clutter, occluders, background and light."""
    from ..data.synthetic import SkeletonSampler

    category = get_category(category)
    unit = float(alpha[0])
    target = build_furniture(category, structure, unit, rng) if target_mesh is None else target_mesh
    floor_y = float(min(structure[:, 1].min(), target.vertices[:, 1].min()))
    radius = float(np.linalg.norm(structure[:, [0, 2]], axis=1).max())
    extras: list[tuple[Mesh, np.ndarray, np.ndarray, int]] = []
    if rng.random() < options.floor:
        size = radius * 12
        quad = np.array([[-size, floor_y, -size], [size, floor_y, -size], [size, floor_y, size], [-size, floor_y, size]])
        floor_mat = Material(tuple(rng.uniform(0.25, 0.8, 3) * np.array([1.0, 0.9, 0.8])), "planks", 1.0 / (unit * rng.uniform(0.8, 2.0)))
        extras.append((Mesh(quad, np.array([[0, 1, 2], [0, 2, 3]])).with_material(floor_mat), np.eye(3), np.zeros(3), FLOOR_ID))
    next_id = FIRST_DISTRACTOR_ID
    from ..shape_model import list_categories

    names = [n for n in list_categories() if n in ("chair", "swivelchair", "table", "bed", "sofa")]
    for _ in range(_count(rng, options.distractors)):
        other = get_category(names[rng.integers(len(names))])
        gen = torch.Generator().manual_seed(int(rng.integers(2**31)))
        b = SkeletonSampler(other, keep_inside=False).sample(1, gen, dtype=torch.float64)
        y2 = b.structure[0].numpy() * (unit / float(b.params.alpha[0, 0]))
        mesh = build_furniture(other, y2, unit, rng)
        r2 = float(np.linalg.norm(y2[:, [0, 2]], axis=1).max())
        direction = rng.uniform(0, 2 * np.pi)
        dist = radius + r2 + unit * rng.uniform(0.3, 2.0)
        offset = np.array([np.cos(direction) * dist, floor_y - y2[:, 1].min(), np.sin(direction) * dist])
        extras.append((mesh, _yaw(rng.uniform(0, 2 * np.pi)), offset, next_id))
        next_id += 1
    for _ in range(_count(rng, options.clutter_boxes)):
        size = unit * rng.uniform(0.4, 1.5, 3)
        direction = rng.uniform(0, 2 * np.pi)
        dist = radius + size.max() * 0.8 + unit * rng.uniform(0.1, 1.0)
        centre = np.array([np.cos(direction) * dist, floor_y + size[1] / 2, np.sin(direction) * dist])
        mat = random_material(rng, ("wood", "paint", "fabric"), 1 / unit)
        extras.append((box(np.zeros(3), size, mat), _yaw(rng.uniform(0, np.pi)), centre, next_id))
        next_id += 1
    occluders = [np.concatenate([rng.uniform(0.1, 0.9, 2), [rng.uniform(0.3, 0.85), rng.uniform(0.25, 0.6)], rng.uniform(0.1, 0.9, 3)]) for _ in range(_count(rng, options.occluders))]
    light_dir = np.array([rng.uniform(-1, 1), rng.uniform(0.2, 1.0), rng.uniform(0.3, 1.0)])
    light = (light_dir, float(rng.uniform(0.3, 0.55)), float(rng.uniform(0.45, 0.8)))
    spec = SceneSpec(category, np.asarray(structure, float), np.asarray(alpha, float), target, extras, occluders, int(rng.integers(2**31)), light, options)
    if options.textures:  # drawn last, so scenes without photo material are what they always were
        spec.texture_seed = int(rng.integers(2**31))
        spec.target = _photo_materials(spec.target, rng, options)
        spec.extras = [(_photo_materials(m, rng, options), r, t, i) for m, r, t, i in spec.extras]
    return spec


def _photo_materials(mesh: Mesh, rng: np.random.Generator, options: SceneOptions) -> Mesh:
    """Turn each distinct material of ``mesh`` into a photo texture tile with probability
    ``options.photo_materials`` (a light random tint, the pattern frequency kept)."""
    if not len(mesh.faces):
        return mesh
    materials = mesh.materials.copy()
    rows, inverse = np.unique(materials, axis=0, return_inverse=True)
    for k, row in enumerate(rows):
        if rng.random() >= options.photo_materials:
            continue
        tint = 1.0 - 0.35 * rng.random() * rng.dirichlet(np.ones(3))
        scale = row[4] if row[3] in (MATERIAL_PATTERNS["wood"], MATERIAL_PATTERNS["fabric"], MATERIAL_PATTERNS["noise"]) and row[4] > 0 else 1.0
        packed = Material(tuple(tint * rng.uniform(0.75, 1.0)), "photo", float(scale) * rng.uniform(0.3, 0.8), int(rng.integers(options.texture_tiles))).packed()
        materials[inverse.reshape(-1) == k] = packed
    return Mesh(mesh.vertices, mesh.faces, materials)


def texture_tiles(options: SceneOptions, seed: int, size: int = 128) -> np.ndarray:
    """The scene's photo texture tiles ``(T, size, size, 3)``: crops of the texture library."""
    from .photos import photo_library

    library = photo_library(options.textures, options.background_split)
    rng = np.random.default_rng([seed, 11])
    return np.stack([library.crop(size, rng, min_fraction=0.1) for _ in range(options.texture_tiles)])


def scene_background(options: SceneOptions, size: int, seed: int) -> np.ndarray:
    """The backdrop of a scene: a crop of a photograph (where the options name a library, with
    probability ``photo_background``) or the procedural wall."""
    if options.backgrounds:
        from .photos import photo_library

        rng = np.random.default_rng([seed, 13])
        if rng.random() < options.photo_background:
            photo = photo_library(options.backgrounds, options.background_split).crop(size, rng).astype(np.float32)
            return np.clip(photo * rng.uniform(0.6, 1.15) + rng.uniform(-20, 20, 3), 0, 255).astype(np.uint8)
    return procedural_background(size, seed)


def procedural_background(size: int, seed: int) -> np.ndarray:
    """A wall-like backdrop: coloured gradient, low-frequency blotches, a few framed rectangles."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.3, 0.9, 3)
    ys = np.linspace(0, 1, size)[:, None, None]
    img = base * (0.8 + 0.3 * ys) * np.ones((size, size, 3))
    coarse = rng.uniform(-1, 1, (6, 6, 3))
    blotches = np.asarray(Image.fromarray(((coarse + 1) * 127.5).astype(np.uint8)).resize((size, size), Image.BICUBIC), dtype=np.float64) / 127.5 - 1
    img = img + 0.08 * blotches
    img = img + 0.03 * rng.normal(size=(size, size, 1))
    for _ in range(rng.integers(0, 4)):
        w, h = rng.integers(size // 10, size // 3, 2)
        x, y = rng.integers(0, size - w), rng.integers(0, size - h)
        img[y : y + h, x : x + w] = rng.uniform(0.05, 0.95, 3)
        img[y + 3 : y + h - 3, x + 3 : x + w - 3] = rng.uniform(0.05, 0.95, 3)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def _occluder_objects(spec: SceneSpec, camera: Camera, points_cam: np.ndarray, bbox_plane: np.ndarray) -> list[SceneObject]:
    objects = []
    f = camera.focal
    plane = spec.category.plane_size
    unit = float(spec.alpha[0])
    nearest = float((points_cam[:, 2] + f).min())
    for i, seed in enumerate(spec.occluder_seeds):
        u = bbox_plane[0] + seed[0] * (bbox_plane[2] - bbox_plane[0])
        v = bbox_plane[1] + seed[1] * (bbox_plane[3] - bbox_plane[1])
        depth = nearest * seed[2]  # f + Z of the occluder centre, in front of the object
        centre = np.array([(u - plane / 2) / f * depth, (v - plane / 2) / f * depth, depth - f])
        extent = 2.0 * unit * seed[3] * depth / max(nearest, 1e-6) * np.array([1.0, 1.6, 0.4])
        mat = Material(tuple(seed[4:7]), "noise", 1 / unit)
        objects.append(SceneObject(box(np.zeros(3), extent, mat), _yaw(seed[0] - 0.5), centre, FIRST_OCCLUDER_ID + i))
    return objects


def render_view(spec: SceneSpec, camera: Camera, image_size: int = 256, rng: np.random.Generator | None = None, supersample: int = 2, visibility_tolerance: float = 0.2) -> RenderedView:
    """Render the scene from ``camera`` with exact keypoints and depth-buffer visibility.

    ``visibility_tolerance`` (in units of alpha_1) absorbs the keypoint lying inside a part (a foot
    on a leg's axis): a keypoint is visible when some pixel of its 3x3 neighbourhood shows a surface
    no nearer than ``depth - tolerance``, or background.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    category = spec.category
    plane = category.plane_size
    rotation = camera.rotation
    t3 = np.array([camera.translation[0], camera.translation[1], 0.0])
    focal = float(camera.focal)
    points_cam = spec.structure @ rotation.T + t3
    uv_plane = geometry.perspective_project(torch.as_tensor(points_cam), torch.tensor(focal, dtype=torch.float64), plane).numpy()
    scale = image_size / plane
    keypoints = uv_plane * scale

    mesh_cam = spec.target.vertices @ rotation.T + t3
    mesh_uv = geometry.perspective_project(torch.as_tensor(mesh_cam), torch.tensor(focal, dtype=torch.float64), plane).numpy()
    bbox_plane = np.concatenate([mesh_uv.min(axis=0), mesh_uv.max(axis=0)])

    objects = [SceneObject(spec.target, rotation, t3, TARGET_ID)]
    for mesh, rot, offset, object_id in spec.extras:
        objects.append(SceneObject(mesh, rotation @ rot, rotation @ offset + t3, object_id))
    objects += _occluder_objects(spec, camera, points_cam, bbox_plane)
    light_dir, ambient, diffuse = spec.light
    renderer = get_renderer(image_size, supersample)
    if spec.options.textures:
        renderer.set_texture_tiles(texture_tiles(spec.options, spec.texture_seed))
    result = renderer.render(objects, focal, plane, light_dir, ambient, diffuse)

    background = scene_background(spec.options, image_size, spec.background_seed).astype(np.float32)
    a = result.alpha[..., None]
    image = result.colour.astype(np.float32) * a + background * (1 - a)

    ss = result.supersample
    full = image_size * ss
    depth_k = points_cam[:, 2] + focal
    tol = visibility_tolerance * float(spec.alpha[0])
    inside = (keypoints >= 0).all(axis=1) & (keypoints < image_size).all(axis=1)
    visible = np.zeros(len(keypoints), bool)
    occluded_by_other = np.zeros(len(keypoints), bool)
    for n, (x, y) in enumerate(keypoints * ss):
        if not inside[n]:
            continue
        cx, cy = int(np.floor(x)), int(np.floor(y))
        ys, xs = slice(max(cy - 1, 0), min(cy + 2, full)), slice(max(cx - 1, 0), min(cx + 2, full))
        window = result.depth[ys, xs]
        visible[n] = bool((window >= depth_k[n] - tol).any())
        if not visible[n]:
            nearest_ids = result.ids[ys, xs][window < depth_k[n] - tol]
            occluded_by_other[n] = bool((nearest_ids != TARGET_ID).any())
    mask = (result.ids == TARGET_ID).reshape(image_size, ss, image_size, ss).any(axis=(1, 3))

    # camera degradations
    opts = spec.options
    image = image * rng.uniform(1 - opts.colour_gain, 1 + opts.colour_gain, 3)
    pil = Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))
    radius = rng.uniform(0, opts.blur)
    if radius > 0.05:
        pil = pil.filter(ImageFilter.GaussianBlur(radius))
    image = np.asarray(pil, dtype=np.float32)
    if opts.noise > 0:
        image = image + rng.normal(0, rng.uniform(0, opts.noise), image.shape)
    image = np.clip(image, 0, 255).astype(np.uint8)
    if opts.jpeg > 0 and rng.random() < opts.jpeg:
        import io

        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=int(rng.integers(30, 91)))
        image = np.asarray(Image.open(buffer).convert("RGB"))
    return RenderedView(
        image=image,
        mask=mask,
        keypoints=keypoints,
        visible=visible,
        occluded_by_other=occluded_by_other,
        inside=inside,
        bbox=bbox_plane * scale,
        points_cam=points_cam,
    )
