"""Headless OpenGL rasteriser (moderngl over EGL; Mesa llvmpipe on CPU, the GPU driver where present).

The projection matrix reproduces :func:`interp3d.geometry.perspective_project` exactly: a camera at
``Z = -f`` looking along +Z, image v pointing down, the image covering the square projection plane.
Besides colour, each render returns the per-pixel camera depth ``f + Z`` and object id, from which
keypoint visibility (self-occlusion and occlusion by other objects) is read.

An OpenGL context cannot cross ``fork``: :func:`get_renderer` creates one per process, lazily, so
data-loader workers each make their own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .mesh import Mesh

__all__ = ["SceneObject", "RenderResult", "Renderer", "get_renderer", "projection_matrix", "RendererUnavailable"]


class RendererUnavailable(RuntimeError):
    """No headless OpenGL (EGL) context could be created."""


@dataclass
class SceneObject:
    mesh: Mesh  # local (object) frame; pattern coordinates come from here
    rotation: np.ndarray  # (3, 3) local -> camera
    translation: np.ndarray  # (3,)
    object_id: int  # > 0; 0 is background


@dataclass
class RenderResult:
    colour: np.ndarray  # (S, S, 3) uint8, background black
    alpha: np.ndarray  # (S, S) float32 coverage in [0, 1]
    depth: np.ndarray  # (S*ss, S*ss) float32, f + Z of the nearest surface, inf for background
    ids: np.ndarray  # (S*ss, S*ss) int32 object id, 0 for background
    supersample: int


def projection_matrix(focal: float, plane_size: float, near: float, far: float) -> np.ndarray:
    """4x4 clip matrix for camera-frame points: x_ndc = 2 u / P - 1, y_ndc = 1 - 2 v / P."""
    a = (far + near) / (far - near)
    b = -2.0 * far * near / (far - near)
    s = 2.0 * focal / plane_size
    return np.array(
        [[s, 0, 0, 0], [0, -s, 0, 0], [0, 0, a, a * focal + b], [0, 0, 1, focal]],
        dtype=np.float64,
    )


_VERTEX = """
#version 330
uniform mat4 proj;
uniform float focal;
in vec3 in_pos;
in vec3 in_normal;
in vec3 in_rgb;
in vec2 in_pattern;
in vec3 in_local;
in float in_id;
out vec3 v_normal;
out vec3 v_rgb;
flat out vec2 v_pattern;
out vec3 v_local;
flat out float v_id;
out float v_depth;
void main() {
    gl_Position = proj * vec4(in_pos, 1.0);
    v_normal = in_normal;
    v_rgb = in_rgb;
    v_pattern = in_pattern;
    v_local = in_local;
    v_id = in_id;
    v_depth = in_pos.z + focal;
}
"""

_FRAGMENT = """
#version 330
uniform vec3 light_dir;
uniform float ambient;
uniform float diffuse;
uniform sampler2D atlas;   // photo texture tiles stacked vertically (pattern >= PHOTO_PATTERN)
uniform float n_tiles;
in vec3 v_normal;
in vec3 v_rgb;
flat in vec2 v_pattern;
in vec3 v_local;
flat in float v_id;
in float v_depth;
layout(location = 0) out vec4 out_colour;
layout(location = 1) out vec2 out_aux;

float hash(vec3 p) { return fract(sin(dot(p, vec3(12.9898, 78.233, 37.719))) * 43758.5453); }
float vnoise(vec3 p) {
    vec3 i = floor(p); vec3 f = fract(p); f = f * f * (3.0 - 2.0 * f);
    float n000 = hash(i), n100 = hash(i + vec3(1,0,0)), n010 = hash(i + vec3(0,1,0)), n110 = hash(i + vec3(1,1,0));
    float n001 = hash(i + vec3(0,0,1)), n101 = hash(i + vec3(1,0,1)), n011 = hash(i + vec3(0,1,1)), n111 = hash(i + vec3(1,1,1));
    return mix(mix(mix(n000, n100, f.x), mix(n010, n110, f.x), f.y), mix(mix(n001, n101, f.x), mix(n011, n111, f.x), f.y), f.z);
}

void main() {
    int pattern = int(v_pattern.x + 0.5);
    float s = v_pattern.y;
    vec3 p = v_local * s;
    float shade = 1.0;
    vec3 albedo = v_rgb;
    if (pattern >= 5) {          // photo texture tile (pattern - 5), box-mapped along the face's local normal
        vec3 ln = abs(cross(dFdx(v_local), dFdy(v_local)));
        vec2 uv = (ln.x >= ln.y && ln.x >= ln.z) ? p.zy : ((ln.y >= ln.z) ? p.xz : p.xy);
        float tile = min(float(pattern - 5), n_tiles - 1.0);
        vec2 st = vec2(fract(uv.x), (tile + 0.02 + 0.96 * fract(uv.y)) / n_tiles);
        albedo = v_rgb * texture(atlas, st).rgb;
    } else if (pattern == 1) {          // wood grain
        float g = sin((p.x + p.y * 0.3) * 25.0 + 6.0 * vnoise(p * 3.0));
        shade = 0.85 + 0.15 * g;
    } else if (pattern == 2) {   // fabric weave
        shade = 0.9 + 0.1 * sin(p.x * 60.0) * sin(p.y * 60.0 + p.z * 60.0) - 0.1 * vnoise(p * 8.0);
    } else if (pattern == 3) {   // planks / tiles on the floor
        vec2 q = vec2(p.x, p.z);
        float row = floor(q.y);
        float tile = mod(floor(q.x + 0.5 * row) + row, 2.0);
        float seam = step(0.97, fract(q.y)) + step(0.985, fract(q.x + 0.5 * row));
        shade = (0.85 + 0.15 * tile) * (1.0 - 0.5 * clamp(seam, 0.0, 1.0)) * (0.9 + 0.1 * vnoise(p * 6.0));
    } else if (pattern == 4) {   // mottled paint
        shade = 0.88 + 0.12 * vnoise(p * 4.0);
    }
    vec3 n = normalize(v_normal);
    float lambert = abs(dot(n, -light_dir));
    vec3 colour = albedo * shade * (ambient + diffuse * lambert);
    out_colour = vec4(clamp(colour, 0.0, 1.0), 1.0);
    out_aux = vec2(v_depth, v_id);
}
"""


class Renderer:
    """Renders :class:`SceneObject` lists at ``size`` x ``size`` (with ``supersample`` anti-aliasing)."""

    def __init__(self, size: int = 256, supersample: int = 2):
        try:
            import moderngl
        except ImportError as exc:  # pragma: no cover - dependency
            raise RendererUnavailable("moderngl is not installed: pip install moderngl") from exc
        try:
            self.ctx = moderngl.create_context(standalone=True, backend="egl")
        except Exception as exc:
            raise RendererUnavailable(
                "could not create a headless OpenGL (EGL) context; install the Debian packages "
                f"libegl1 libegl-mesa0 libgl1-mesa-dri (scripts/bootstrap.sh does): {exc}"
            ) from exc
        self.size = size
        self.supersample = supersample
        full = size * supersample
        self.program = self.ctx.program(vertex_shader=_VERTEX, fragment_shader=_FRAGMENT)
        self._colour = self.ctx.texture((full, full), 4)
        self._aux = self.ctx.texture((full, full), 2, dtype="f4")
        self._depth = self.ctx.depth_renderbuffer((full, full))
        self.fbo = self.ctx.framebuffer(color_attachments=[self._colour, self._aux], depth_attachment=self._depth)
        self._atlas = None
        self.set_texture_tiles(np.full((1, 4, 4, 3), 255, np.uint8))

    def set_texture_tiles(self, tiles: np.ndarray) -> None:
        """Photo texture tiles ``(T, s, s, 3)`` uint8 for materials of pattern ``photo`` (tile index in the material)."""
        tiles = np.ascontiguousarray(tiles, dtype=np.uint8)
        if tiles.ndim != 4 or tiles.shape[-1] != 3 or tiles.shape[1] != tiles.shape[2]:
            raise ValueError(f"texture tiles must be (T, s, s, 3) uint8, got {tiles.shape}")
        with self.ctx:
            if self._atlas is None or self._atlas.size != (tiles.shape[2], tiles.shape[0] * tiles.shape[1]):
                if self._atlas is not None:
                    self._atlas.release()
                self._atlas = self.ctx.texture((tiles.shape[2], tiles.shape[0] * tiles.shape[1]), 3)
                self._atlas.repeat_x = self._atlas.repeat_y = False
            # rows are stored bottom-up in GL; tile t spans t/T..(t+1)/T of the texture's v
            self._atlas.write(tiles.reshape(-1, tiles.shape[2], 3).tobytes())
            self.n_tiles = tiles.shape[0]

    def render(
        self,
        objects: list[SceneObject],
        focal: float,
        plane_size: float,
        light_dir: np.ndarray = np.array([0.3, 0.6, 1.0]),
        ambient: float = 0.45,
        diffuse: float = 0.6,
    ) -> RenderResult:
        positions, normals, materials, local, ids = [], [], [], [], []
        for obj in objects:
            m = obj.mesh
            if not len(m.faces):
                continue
            cam = m.vertices @ np.asarray(obj.rotation).T + np.asarray(obj.translation)
            tri = cam[m.faces]  # (F, 3, 3)
            n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
            n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
            positions.append(tri.reshape(-1, 3))
            normals.append(np.repeat(n, 3, axis=0))
            materials.append(np.repeat(m.materials, 3, axis=0))
            local.append(m.vertices[m.faces].reshape(-1, 3))
            ids.append(np.full(len(m.faces) * 3, float(obj.object_id)))
        with self.ctx:  # make this renderer's context current: a process may hold several (one per size)
            return self._render(positions, normals, materials, local, ids, focal, plane_size, light_dir, ambient, diffuse)

    def _render(self, positions, normals, materials, local, ids, focal, plane_size, light_dir, ambient, diffuse) -> RenderResult:
        import moderngl

        full = self.size * self.supersample
        self.fbo.use()
        self.ctx.viewport = (0, 0, full, full)
        self.fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        # clear the aux target to (inf depth, id 0)
        self._aux.write(np.tile(np.array([np.inf, 0.0], dtype=np.float32), full * full).tobytes())
        if positions:
            pos = np.concatenate(positions)
            depth = pos[:, 2] + focal
            near = max(1e-3 * focal, 0.5 * float(depth.min())) if (depth > 0).any() else 1e-3 * focal
            far = max(float(depth.max()) * 1.5, near * 10)
            data = np.concatenate(
                [pos, np.concatenate(normals), np.concatenate(materials)[:, :3], np.concatenate(materials)[:, 3:5], np.concatenate(local), np.concatenate(ids)[:, None]],
                axis=1,
            ).astype("f4")
            vbo = self.ctx.buffer(data.tobytes())
            vao = self.ctx.vertex_array(self.program, [(vbo, "3f 3f 3f 2f 3f 1f", "in_pos", "in_normal", "in_rgb", "in_pattern", "in_local", "in_id")])
            self.program["proj"].write(projection_matrix(focal, plane_size, near, far).T.astype("f4").tobytes())
            self.program["focal"].value = float(focal)
            light = np.asarray(light_dir, float)
            self.program["light_dir"].value = tuple((light / np.linalg.norm(light)).tolist())
            self.program["ambient"].value = float(ambient)
            self.program["diffuse"].value = float(diffuse)
            self._atlas.use(location=0)
            self.program["atlas"].value = 0
            self.program["n_tiles"].value = float(self.n_tiles)
            self.ctx.enable(moderngl.DEPTH_TEST)
            self.ctx.disable(moderngl.CULL_FACE)
            vao.render(moderngl.TRIANGLES)
            vao.release()
            vbo.release()
        rgba = np.frombuffer(self.fbo.read(components=4, attachment=0), dtype=np.uint8).reshape(full, full, 4)[::-1]
        aux = np.frombuffer(self.fbo.read(components=2, attachment=1, dtype="f4"), dtype=np.float32).reshape(full, full, 2)[::-1]
        ss = self.supersample
        if ss > 1:
            # Pillow resizes RGBA with premultiplied alpha: colour comes out un-premultiplied over
            # the covered samples and alpha is the coverage, which is what compositing needs.
            from PIL import Image

            rgba = np.asarray(Image.fromarray(np.ascontiguousarray(rgba), "RGBA").resize((self.size, self.size), Image.BOX))
        alpha = rgba[..., 3].astype(np.float32) / 255.0
        colour = np.where(alpha[..., None] > 0, rgba[..., :3], 0).astype(np.uint8)
        return RenderResult(
            colour=colour,
            alpha=alpha,
            depth=np.ascontiguousarray(aux[..., 0]),
            ids=np.ascontiguousarray(aux[..., 1]).round().astype(np.int32),
            supersample=ss,
        )

    def release(self) -> None:
        self.fbo.release()
        self.ctx.release()


_RENDERERS: dict[tuple[int, int, int], Renderer] = {}


def get_renderer(size: int = 256, supersample: int = 2) -> Renderer:
    """A renderer for this process (contexts are not fork-safe, so the key includes the pid)."""
    key = (os.getpid(), size, supersample)
    if key not in _RENDERERS:
        _RENDERERS[key] = Renderer(size, supersample)
    return _RENDERERS[key]
