"""Real furniture models without keypoints: the Sweet Home 3D catalogues (Debian ``sweethome3d-furniture``).

Their shapes and materials are designers', not the procedural world's, and their front is known, so
a render of one carries an exact viewpoint (azimuth, elevation) but no keypoints. They serve as
viewpoint-only targets: ``benchmarks/real_furniture_views.py`` measures how a model's azimuth holds
on furniture shapes that no training image showed.

A catalogue folder holds ``*PluginFurnitureCatalog.properties`` (entries ``model#N``, ``width#N``,
``depth#N``, ``height#N``, optional ``modelRotation#N``) beside the model folders it names; both the
unpacked ``.sh3f`` archives (``scripts/fetch_furniture_models.sh``) and ``../shared/data/
sweethome3d_subset`` are laid out so. Sweet Home 3D's frame after ``modelRotation``: y up, the front
facing +z, as interp3d's canonical frame; width along x, depth along z.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..render.mesh import Material, Mesh
from ..shape_model import Category, get_category

_GREY = (0.7, 0.7, 0.7)  # a face without a material

__all__ = ["FurnitureModel", "FURNITURE_MODELS", "read_catalogue", "furniture_group", "furniture_models", "model_split", "load_obj", "placed_like"]

# Which catalogue models are instances of which category, chosen by looking at them (a name alone
# does not tell: "Armchair" is sometimes an office chair, "Table" sometimes round). Left out: round
# and square tables (no azimuth, or one modulo 90 deg), an L-shaped desk, tables of glass and thin
# rods (nothing opaque but a frame), corner sofas, deck and rocking chairs, bunk, baby and mezzanine
# beds; armchairs are a group of their own (below). Keys: model paths inside the catalogue folders.
# Besides the five categories, groups of models that no skeleton describes but whose front is a
# category's (``armchair``: upholstered, tub, pedestal and lounge armchairs, chairs in the photographs'
# sense); a world lends them to a category as viewpoint-only items (``WorldOptions.furniture_also``).
FURNITURE_MODELS: dict[str, tuple[str, ...]] = {
    "chair": (
        "scopia/chair3/chair3.obj", "scopia/chair4/chair4.obj", "scopia/chair/chair.obj", "scopia/tubular_chair/tubular_chair.obj",
        "scopia/plastic_chair/plastic_chair.obj", "scopia/white_kitchen_chair/white_kitchen_chair.obj", "scopia/silla_teca/silla_teca.obj",
        "katorlegaz/cafe-chair/cafe-chair.obj", "katorlegaz/dining-chair/dining-chair.obj",
        "blendswap-cc-by/cafe_set_mota_chair/cafe_set_mota_chair.obj", "blendswap-cc-by/cafe_set_tonon_chair/cafe_set_tonon_chair.obj",
        "blendswap-cc-by/chairWithCushion/chairWithCushion.obj", "blendswap-cc-by/ella_chair_f/ella_chair_f.obj",
        "blendswap-cc-by/plaidChair/plaidChair.obj", "blendswap-cc-by/kitchenChair/kitchenChair.obj", "blendswap-cc-by/chair3/chair3.obj",
        "blendswap-cc-by/chair4/chair4.obj", "blendswap-cc-by/foldingChair/foldingChair.obj",
        "blendswap-cc-0/oakChair/oakChair.obj", "blendswap-cc-0/plasticChair/plasticChair.obj", "blendswap-cc-0/sillaBlanca/sillaBlanca.obj",
        "blendswap-cc-0/chair/chair.obj", "blendswap-cc-0/antiqueChair/antiqueChair.obj", "blendswap-cc-0/chairWithCushion/chairWithCushion.obj",
        "blendswap-cc-0/chair2/chair2.obj", "blendswap-cc-0/osakaChair/osakaChair.obj", "blendswap-cc-0/thonet/thonet.obj",
        "blendswap-cc-by/childChair/childChair.obj", "scopia/children_chair/children_chair.obj",
    ),
    "armchair": (
        "blendswap-cc-0/armchair/armchair.obj", "blendswap-cc-0/armchair2/armchair2.obj", "blendswap-cc-0/modernArmchair/modernArmchair.obj",
        "blendswap-cc-0/winchesterArmchair/winchesterArmchair.obj", "blendswap-cc-0/designChair/designChair.obj",
        "blendswap-cc-by/leaf_chair/leaf_chair.obj", "blendswap-cc-by/armchair1/armchair1.obj", "blendswap-cc-by/fotel/fotel.obj",
        "katorlegaz/mid-century-chair/mid-century-chair.obj", "scopia/armchair/armchair.obj", "scopia/armchair1/armchair1.obj",
        "scopia/armchair2/armchair2.obj", "scopia/armchair3/armchair3.obj", "scopia/modern_armchair/modern_armchair.obj",
        "scopia/rattanArmchair/rattanArmchair.obj",
    ),
    "swivelchair": (
        "scopia/office_chair/office_chair.obj", "scopia/kids_desk_chair/kids_desk_chair.obj", "katorlegaz/office-chair/office-chair.obj",
    ),
    "sofa": (
        "scopia/clear_sofa/clear_sofa.obj", "scopia/simple_sofa/simple_sofa.obj", "scopia/beige_sofa_2seats/beige_sofa_2seats.obj",
        "scopia/beige_sofa/beige_sofa.obj", "scopia/burlap_sofa/burlap_sofa.obj", "scopia/leather_sofa/leather_sofa.obj",
        "scopia/sofa_white_beige/sofa_white_beige.obj", "scopia/convertible-sofa-BZ-closed/convertible-sofa-BZ-closed.obj",
        "scopia/rattanSofa/rattanSofa.obj", "katorlegaz/futon-couch/futon-couch.obj", "katorlegaz/mid-century-bench-sofa/mid-century-bench-sofa.obj",
        "katorlegaz/mid-century-sofa/mid-century-sofa.obj", "blendswap-cc-by/sofa2/sofa2.obj", "blendswap-cc-by/sofa3/sofa3.obj",
        "blendswap-cc-by/couch3/couch3.obj", "blendswap-cc-0/couch/couch.obj", "blendswap-cc-0/sofa2/sofa2.obj",
        "blendswap-cc-0/winchesterSofa/winchesterSofa.obj",
    ),
    "bed": (
        "scopia/bed1/bed1.obj", "scopia/iron_bed/iron_bed.obj", "scopia/children_bed/children_bed.obj", "scopia/captains-bed/captains-bed.obj",
        "blendswap-cc-by/juniorBed/juniorBed.obj", "blendswap-cc-by/lettoCloud/lettoCloud.obj", "blendswap-cc-0/bed1/bed1.obj",
        "blendswap-cc-0/bed2/bed2.obj", "blendswap-cc-0/bedWithTexture/bedWithTexture.obj", "blendswap-cc-0/bed3/bed3.obj",
    ),
    "table": (
        "scopia/black_table/black_table.obj", "scopia/table4/table4.obj", "scopia/wooden_table_office/wooden_table_office.obj",
        "scopia/white_kitchen_table/white_kitchen_table.obj",
        "scopia/wooden_office_alder_table/wooden_office_alder_table.obj", "scopia/wooden_office_pear_table_rect/wooden_office_pear_table_rect.obj", "scopia/table-on-trestles/table-on-trestles.obj",
        "scopia/table-with-leaning-feet/table-with-leaning-feet.obj", "scopia/table_wood_and_iron/table_wood_and_iron.obj", "katorlegaz/folding-table/folding-table.obj",
        "katorlegaz/glass-dining-table/glass-dining-table.obj", "blendswap-cc-by/table/table.obj", "blendswap-cc-by/coffeeTable/coffeeTable.obj",
        "blendswap-cc-0/table/table.obj",
    ),
}


@dataclass(frozen=True)
class FurnitureModel:
    name: str
    category: str
    obj: Path
    size_cm: tuple[float, float, float]  # width (x), height (y), depth (z) after modelRotation
    rotation: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)  # row-major 3x3

    @property
    def key(self) -> str:
        return "/".join(self.obj.parts[-3:])

    def mesh(self) -> Mesh:
        """The model in the canonical frame (metres): centred on its floor footprint, feet at y = 0."""
        return load_obj(self.obj, np.asarray(self.rotation, np.float64).reshape(3, 3), self.size_cm)


def read_catalogue(path: str | Path) -> list[dict[str, str]]:
    """The entries of a Sweet Home 3D ``PluginFurnitureCatalog.properties`` file, in index order."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: furniture catalogue not found")
    entries: dict[int, dict[str, str]] = {}
    for key, index, value in re.findall(r"^(\w+)#(\d+)=(.*?)\s*$", path.read_text(encoding="latin-1"), re.M):
        entries.setdefault(int(index), {})[key] = value
    return [entries[i] for i in sorted(entries)]


def model_split(key: str) -> str:
    """``train`` or ``test``: a fixed half of the models by a hash of the key, so that a model trained
    on the ``train`` half is measured on shapes it never saw."""
    return "test" if zlib.crc32(key.encode()) % 2 else "train"


def furniture_group(name: Category | str) -> str:
    """The :data:`FURNITURE_MODELS` key of a category (any of its names) or of a model group."""
    if isinstance(name, str) and name in FURNITURE_MODELS:
        return name
    try:
        return get_category(name).name
    except KeyError:
        raise KeyError(f"unknown furniture category or group {name!r}; choose one of {', '.join(FURNITURE_MODELS)}") from None


def furniture_models(folder: str | Path, category: Category | str, split: str = "all") -> list[FurnitureModel]:
    """The models of a category or group (:data:`FURNITURE_MODELS`) found in the catalogues under
    ``folder``, sorted by key; ``split``: ``all``, or the ``train`` / ``test`` half (:func:`model_split`)."""
    if split not in ("all", "train", "test"):
        raise ValueError(f"split must be 'all', 'train' or 'test', got {split!r}")
    folder, group = Path(folder), furniture_group(category)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: furniture model folder not found (scripts/fetch_furniture_models.sh makes one)")
    wanted = set(FURNITURE_MODELS[group])
    found: dict[str, FurnitureModel] = {}
    for catalogue in sorted(folder.rglob("*PluginFurnitureCatalog.properties")):
        for entry in read_catalogue(catalogue):
            key = entry.get("model", "").lstrip("/")
            obj = catalogue.parent / key
            if key not in wanted or key in found or not obj.is_file() or split not in ("all", model_split(key)):
                continue
            rotation = tuple(float(v) for v in entry["modelRotation"].split()) if "modelRotation" in entry else FurnitureModel.rotation
            size = (float(entry["width"]), float(entry["height"]), float(entry["depth"]))
            found[key] = FurnitureModel(entry.get("name", key), group, obj, size, rotation)
    return [found[k] for k in sorted(found)]


@lru_cache(maxsize=256)
def _texture_colour(path: Path) -> tuple[float, float, float] | None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return tuple(float(c) / 255.0 for c in np.asarray(im.convert("RGB").resize((16, 16))).reshape(-1, 3).mean(axis=0))
    except OSError:
        return None


def _read_mtl(path: Path) -> dict[str, tuple[tuple[float, float, float], float]]:
    """Material name -> (diffuse colour in [0, 1]: the texture's mean where it has one, opacity)."""
    materials: dict[str, list] = {}
    current = None
    if not path.is_file():
        return {}
    for line in path.read_text(encoding="latin-1").splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "newmtl":
            current = materials.setdefault(" ".join(parts[1:]), [_GREY, 1.0, None])
        elif current is not None and parts[0] == "Kd" and len(parts) >= 4:
            current[0] = tuple(float(v) for v in parts[1:4])
        elif current is not None and parts[0] == "d" and len(parts) >= 2:
            current[1] = float(parts[1])
        elif current is not None and parts[0] == "map_Kd" and len(parts) >= 2:
            current[2] = path.parent / parts[-1]
    out = {}
    for name, (kd, opacity, texture) in materials.items():
        colour = _texture_colour(texture) if texture is not None and texture.is_file() else None
        out[name] = (colour if colour is not None else kd, opacity)
    return out


def load_obj(path: str | Path, rotation: np.ndarray | None = None, size_cm: tuple[float, float, float] | None = None, min_opacity: float = 0.3) -> Mesh:
    """A Wavefront OBJ as a :class:`Mesh`: polygons fanned into triangles, each with its MTL diffuse
    colour (a texture's mean colour), faces of materials more transparent than ``min_opacity`` left
    out (glass). ``rotation`` (3x3) is applied first; ``size_cm`` (width, height, depth) then scales
    each axis as Sweet Home 3D does, to metres; the result stands on y = 0, centred in x and z."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: OBJ model not found")
    vertices: list[list[float]] = []
    faces: list[tuple[int, int, int]] = []
    face_material: list[int] = []  # per triangle, an index into ``colours``
    colours: dict[tuple[float, float, float], int] = {}
    materials: dict = {}
    colour, opacity = _GREY, 1.0
    for number, line in enumerate(path.read_text(encoding="latin-1").splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        head = parts[0]
        try:
            if head == "v":
                if len(parts) < 4:
                    raise ValueError("a vertex needs x, y and z")
                vertices.append([float(v) for v in parts[1:4]])
            elif head == "mtllib":
                materials.update(_read_mtl(path.parent / " ".join(parts[1:])))
            elif head == "usemtl":
                colour, opacity = materials.get(" ".join(parts[1:]), (_GREY, 1.0))
            elif head == "f" and opacity >= min_opacity:
                index = [int(p.split("/")[0]) for p in parts[1:]]
                index = [i - 1 if i > 0 else len(vertices) + i for i in index]
                material = colours.setdefault(colour, len(colours))
                for k in range(1, len(index) - 1):
                    faces.append((index[0], index[k], index[k + 1]))
                    face_material.append(material)
        except ValueError as error:
            raise ValueError(f"{path}:{number}: unreadable OBJ line {line.strip()!r} ({error})") from None
    if not faces:
        raise ValueError(f"{path}: no faces")
    v = np.asarray(vertices, np.float64)
    f = np.asarray(faces, np.int64)
    if f.min() < 0 or f.max() >= len(v):
        raise ValueError(f"{path}: a face refers to a vertex that does not exist")
    used, f = np.unique(f, return_inverse=True)  # only the vertices of kept faces (glass ones go)
    v, f = v[used], f.reshape(-1, 3)
    if rotation is not None:
        v = v @ np.asarray(rotation, np.float64).T
    lo, hi = v.min(axis=0), v.max(axis=0)
    v = v - _footing(lo, hi)
    if size_cm is not None:
        v = v * (np.asarray(size_cm, np.float64) / 100.0) / np.maximum(hi - lo, 1e-9)
    packed = np.array([Material(tuple(float(np.clip(c, 0, 1)) for c in rgb)).packed() for rgb in colours], np.float32)  # one row a material
    return Mesh(v, f, packed[np.asarray(face_material)])


def _footing(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The point a bounding box (corners ``lo``, ``hi``) stands on: its footprint's centre at its lowest y."""
    return np.array([(lo[0] + hi[0]) / 2, lo[1], (lo[2] + hi[2]) / 2])


def placed_like(mesh: Mesh, structure: np.ndarray) -> Mesh:
    """``mesh`` (standing on y = 0, centred) scaled uniformly to the size of a skeleton
    ``structure`` (N, 3) (same bounding-box diagonal) and set where it stands: footprint centre under
    the skeleton's, feet on its lowest point. The camera framing the skeleton then frames the model."""
    structure = np.asarray(structure, np.float64)
    lo, hi = structure.min(axis=0), structure.max(axis=0)
    extent = mesh.vertices.max(axis=0) - mesh.vertices.min(axis=0)
    scale = float(np.linalg.norm(hi - lo) / max(np.linalg.norm(extent), 1e-9))
    return Mesh(mesh.vertices * scale + _footing(lo, hi), mesh.faces, mesh.materials)
