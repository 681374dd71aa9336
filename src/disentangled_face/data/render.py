"""Headless batch rasteriser for synthetic face images (OpenGL through moderngl + EGL).

The renderer draws a mesh of fixed topology (the morphable model's triangles) for a batch of
images with one instanced draw call: the triangle index buffer is uploaded once; per batch only
the vertex data (projected pixel positions and depths, albedo, optionally normals) and the
per-image lights are uploaded, into shader storage buffers that the vertex shader reads at
``gl_InstanceID * n + gl_VertexID``. Each instance is drawn into its own tile of one atlas
framebuffer (one context, one framebuffer for the renderer's lifetime); fragments falling
outside their tile are discarded, so tiles never bleed into each other. Vertex positions are
snapped to OpenGL's 1/256-pixel grid and the framebuffer has power-of-two sides, so every tile
rasterises the same coverage; the interpolated colours can still differ in the last bit
between tiles (one grey level in a few pixels), so a batch of images equals one-image renders
up to that.

Geometry follows the shared camera convention of :mod:`disentangled_face.shape.camera`: the caller
passes pixel coordinates ``(u, v)`` (u right, v down, origin at the image's top-left corner, so
that pixel ``(row i, column j)`` covers ``u in [j, j+1)``, ``v in [i, i+1)`` and is sampled at
its centre ``(j + 0.5, i + 0.5)``) and the depth ``(R X)_z`` in mm, larger being closer to the
camera, exactly as :func:`camera.project` and :func:`camera.depth` give them. The depth test
keeps the closest surface.

Shading (per pixel, in camera coordinates x right, y up, z toward the viewer) is Lambertian
with an ambient term::

    rgb = albedo * (ambient + diffuse * max(0, <n, l>))

with ``n`` the unit normal and ``l`` the unit direction *toward* the light. By default ``n`` is
the normal of the pixel's triangle, from the screen-space derivatives of the depth (flat
shading, no CPU cost; at 112 x 96 pixels a triangle of the 9,409-vertex face covers about one
pixel); with per-vertex normals given, they are interpolated (smooth shading). Back
faces are culled by default (``cull_back=True``: on a software driver the triangle setup
dominates the cost and culling halves it); the holes of a face-area mesh (eyes, mouth) are
closed by flat-coloured fill triangles (:func:`hole_fill_triangles`). With
``cull_back=False`` back faces are drawn dark (``0.25 * albedo * ambient``).

Requirements: ``moderngl`` (PyPI) and an EGL + OpenGL 4.3 driver. On a machine without a GPU,
Mesa's llvmpipe software driver provides both (Debian/Ubuntu packages ``libegl1``,
``libgl1-mesa-dri``; conda: ``mesalib``). :class:`RendererUnavailableError` names what to
install when the context cannot be created.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse

#: Depth range (mm) mapped onto the OpenGL depth buffer: depths in [-ZSCALE, ZSCALE] are kept.
ZSCALE = 2000.0

_INSTALL_HINT = (
    "Install the PyPI package `moderngl` (pip install moderngl) and an EGL + OpenGL driver: on "
    "Debian/Ubuntu `apt-get install libegl1 libgl1-mesa-dri` (Mesa's llvmpipe renders on the CPU), "
    "on conda `conda install -c conda-forge mesalib`; on a machine with an NVIDIA GPU the driver's "
    "libEGL_nvidia works too."
)


class RendererUnavailableError(RuntimeError):
    """No headless OpenGL context could be created (the message names what to install)."""


_VERTEX_SHADER = """
#version 430
layout(std430, binding = 0) readonly buffer Pos { vec4 pos[]; };      // u, v, depth (mm), f
layout(std430, binding = 2) readonly buffer Albedo { uint albedo[]; }; // RGBA8
#ifdef SMOOTH
layout(std430, binding = 3) readonly buffer Normal { uint normal[]; }; // snorm 4x8
out vec3 v_normal;
#endif
uniform int n_vertices;
uniform int cols;
uniform vec2 tile;
uniform vec2 atlas;
uniform float zscale;
out vec3 v_albedo;
flat out int v_inst;
void main() {
    int k = gl_InstanceID * n_vertices + gl_VertexID;
    vec4 p = pos[k];
    vec2 origin = vec2(float(gl_InstanceID % cols), float(gl_InstanceID / cols)) * tile;
    vec2 pix = origin + p.xy;
    gl_Position = vec4(pix.x / atlas.x * 2.0 - 1.0, 1.0 - pix.y / atlas.y * 2.0, -p.z / zscale, 1.0);
#ifdef SMOOTH
    v_normal = unpackSnorm4x8(normal[k]).xyz;
#endif
    v_albedo = unpackUnorm4x8(albedo[k]).rgb;
    v_inst = gl_InstanceID;
}
"""

# Few interpolated varyings (the albedo, plus the normal when smooth): on a software driver
# the per-triangle setup cost grows with their number. The tile-local pixel position comes
# from gl_FragCoord, the depth derivatives from gl_FragCoord.z.
_FRAGMENT_SHADER = """
#version 430
layout(std430, binding = 1) readonly buffer Lights { vec4 ldata[]; }; // ambient+f, dir, diffuse
uniform int cols;
uniform vec2 tile;
uniform vec2 atlas;
uniform float zscale;
uniform vec3 fill_albedo;
#ifdef SMOOTH
in vec3 v_normal;
#endif
in vec3 v_albedo;
flat in int v_inst;
out vec4 frag;
void main() {
    vec4 amb_f = ldata[3 * v_inst];
#ifndef SMOOTH
    // the triangle's plane: depth (mm) times f (pixels per mm) against window x, y (derivatives
    // taken first, in uniform control flow)
    float depth_mm = -(2.0 * gl_FragCoord.z - 1.0) * zscale;
    vec2 dz = vec2(dFdx(depth_mm), dFdy(depth_mm)) * amb_f.w;
#endif
    vec2 origin = vec2(float(v_inst % cols), float(v_inst / cols)) * tile;
    vec2 local = vec2(gl_FragCoord.x, atlas.y - gl_FragCoord.y) - origin;
    if (local.x < 0.0 || local.y < 0.0 || local.x >= tile.x || local.y >= tile.y) discard;
    vec3 dir = ldata[3 * v_inst + 1].xyz;
    vec3 diffuse = ldata[3 * v_inst + 2].rgb;
    vec3 rgb;
#ifdef FILL
    rgb = fill_albedo * (amb_f.rgb + 0.5 * diffuse);
#else
    if (gl_FrontFacing) {
#ifdef SMOOTH
        vec3 n = normalize(v_normal);
#else
        vec3 n = normalize(vec3(-dz, 1.0));
#endif
        rgb = v_albedo * (amb_f.rgb + diffuse * max(dot(n, dir), 0.0));
    } else {
        rgb = 0.25 * v_albedo * amb_f.rgb;
    }
#endif
    frag = vec4(clamp(rgb, 0.0, 1.0), 1.0);
}
"""


def _program(ctx, variant: str):
    """The shader program of a variant: "flat", "smooth" or "fill" (flat-coloured holes)."""
    define = {"flat": "", "smooth": "#define SMOOTH\n", "fill": "#define FILL\n"}[variant]
    src = [sh.replace("#version 430\n", "#version 430\n" + define, 1) for sh in (_VERTEX_SHADER, _FRAGMENT_SHADER)]
    return ctx.program(vertex_shader=src[0], fragment_shader=src[1])


_SHARED_CONTEXT = None


def create_context(shared: bool = True):
    """A standalone headless OpenGL context through EGL (moderngl).

    By default every caller in a process gets the same context: moderngl draws into whichever
    standalone context was created last, so a second context would silently take the draw
    calls of renderers made on the first (seen as wrong depth buffers). ``shared=False``
    creates a new one.

    Raises
    ------
    RendererUnavailableError
        When moderngl is not installed or no EGL/OpenGL driver is found; the message names
        what to install.
    """
    try:
        import moderngl
    except ImportError as exc:  # pragma: no cover - moderngl is a requirement
        raise RendererUnavailableError(f"moderngl is not installed. {_INSTALL_HINT}") from exc
    try:
        if shared and _SHARED_CONTEXT is not None:
            return _SHARED_CONTEXT
        ctx = moderngl.create_standalone_context(backend="egl")
    except Exception as exc:  # the error types differ between moderngl/glcontext versions
        raise RendererUnavailableError(
            f"could not create a headless OpenGL context through EGL ({exc}). {_INSTALL_HINT}"
        ) from exc
    if ctx.version_code < 430:
        raise RendererUnavailableError(
            f"the OpenGL driver offers version {ctx.version_code}, the renderer needs 4.3 "
            f"(shader storage buffers). {_INSTALL_HINT}"
        )
    if shared:
        globals()["_SHARED_CONTEXT"] = ctx
    return ctx


def vertex_normals(vertices: np.ndarray, triangles: np.ndarray,
                   incidence: scipy.sparse.spmatrix | None = None) -> np.ndarray:
    """Area-weighted unit vertex normals of a batch of meshes with one topology.

    Parameters
    ----------
    vertices : ndarray, shape (n, 3) or (B, n, 3)
    triangles : ndarray, shape (m, 3)
        Counter-clockwise seen from the outside (normals point outward).
    incidence : sparse matrix (n, m), optional
        Vertex-triangle incidence (see :func:`incidence_matrix`), to reuse across calls.

    Returns
    -------
    ndarray, same shape as ``vertices``, float32
        Unit normals (zero for isolated vertices).
    """
    v = np.asarray(vertices, dtype=np.float32)
    single = v.ndim == 2
    if single:
        v = v[None]
    if v.ndim != 3 or v.shape[-1] != 3:
        raise ValueError(f"vertices must have shape (n, 3) or (B, n, 3), got {np.shape(vertices)}")
    if incidence is None:
        incidence = incidence_matrix(triangles, v.shape[1])
    tri = np.asarray(triangles)
    # layout (3, n, B): gathering whole rows of B values is several times faster than (B, n, 3)
    vt = np.ascontiguousarray(v.transpose(2, 1, 0))
    a, b, c = vt[:, tri[:, 0]], vt[:, tri[:, 1]], vt[:, tri[:, 2]]
    e1, e2 = b - a, c - a
    fn = (e1[1] * e2[2] - e1[2] * e2[1], e1[2] * e2[0] - e1[0] * e2[2], e1[0] * e2[1] - e1[1] * e2[0])
    vn = np.stack([incidence @ fk for fk in fn], -1)  # (n, B, 3), area-weighted sums
    vn = vn.transpose(1, 0, 2)
    norm = np.linalg.norm(vn, axis=-1, keepdims=True)
    vn = (vn / np.maximum(norm, 1e-12)).astype(np.float32)
    return vn[0] if single else vn


def incidence_matrix(triangles: np.ndarray, n_vertices: int) -> scipy.sparse.csr_matrix:
    """Sparse (n, m) matrix with a 1 where vertex i belongs to triangle j (float32)."""
    tri = np.asarray(triangles, dtype=np.int64)
    m = tri.shape[0]
    rows = tri.reshape(-1)
    cols = np.repeat(np.arange(m), 3)
    return scipy.sparse.csr_matrix((np.ones(rows.size, np.float32), (rows, cols)), shape=(n_vertices, m))


@dataclass
class Light:
    """Ambient + directional light for a batch (camera coordinates: x right, y up, z to viewer).

    Attributes
    ----------
    ambient : ndarray, shape (B, 3)
        Ambient RGB intensity.
    direction : ndarray, shape (B, 3)
        Unit vector toward the light (z > 0: in front of the face).
    diffuse : ndarray, shape (B, 3)
        Directional RGB intensity.
    """

    ambient: np.ndarray
    direction: np.ndarray
    diffuse: np.ndarray

    @classmethod
    def frontal(cls, batch: int, ambient: float = 0.45, diffuse: float = 0.6) -> "Light":
        """A white light from the camera direction for ``batch`` images."""
        return cls(np.full((batch, 3), ambient, np.float32),
                   np.tile(np.array([0.0, 0.0, 1.0], np.float32), (batch, 1)),
                   np.full((batch, 3), diffuse, np.float32))

    def take(self, idx) -> "Light":
        """The lights of a subset of the batch."""
        return Light(self.ambient[idx], self.direction[idx], self.diffuse[idx])


@dataclass
class RenderResult:
    """What :meth:`Renderer.render` returns.

    Attributes
    ----------
    rgb : ndarray, shape (B, H, W, 3), uint8
        Shaded colours (black where no surface).
    mask : ndarray, shape (B, H, W), bool
        Pixels covered by a surface.
    depth : ndarray, shape (B, H, W), float32
        Depth ``(R X)_z`` in mm of the closest surface at each pixel centre, ``-inf`` where
        there is none.
    """

    rgb: np.ndarray
    mask: np.ndarray
    depth: np.ndarray


class Renderer:
    """Batch rasteriser of one mesh topology into (H, W) images (headless OpenGL, EGL).

    Parameters
    ----------
    triangles : ndarray, shape (m, 3)
        Vertex indices, counter-clockwise seen from the outside (uploaded once).
    n_vertices : int
        Number of vertices n.
    height, width : int
        Image size in pixels (112 x 96 for SphereFace's crops).
    max_batch : int
        Largest batch drawn in one call (the atlas holds this many tiles); larger inputs to
        :meth:`render` are split.
    ctx : moderngl.Context, optional
        A context to share; by default one is created with :func:`create_context`.
    fill_triangles : ndarray, shape (k, 3), optional
        Extra triangles drawn in the flat colour ``fill_albedo`` (for example the eye and
        mouth openings of a face-area mesh, see :func:`hole_fill_triangles`).
    fill_albedo : tuple of 3 floats
        Reflectance of the fill triangles (lit by the ambient and half the diffuse light).
    cull_back : bool
        Skip back-facing triangles (about halves the triangle setup, which dominates the cost
        on a software driver). When false, back faces are drawn dark.

    Raises
    ------
    RendererUnavailableError
        When no headless OpenGL context can be created.
    ValueError
        On a triangle index outside ``[0, n_vertices)``.

    Examples
    --------
    >>> quad = np.array([[10, 10, 0], [30, 10, 0], [30, 20, 0], [10, 20, 0]], float)
    >>> r = Renderer(np.array([[0, 2, 1], [0, 3, 2]]), 4, height=32, width=32)
    >>> out = r.render(quad[None], normals=np.tile([0, 0, 1.0], (1, 4, 1)),
    ...                albedo=np.ones((1, 4, 3)))
    >>> int(out.mask.sum())
    200
    """

    def __init__(self, triangles: np.ndarray, n_vertices: int, height: int = 112, width: int = 96,
                 max_batch: int = 64, ctx=None, fill_triangles: np.ndarray | None = None,
                 fill_albedo=(0.12, 0.08, 0.07), cull_back: bool = True) -> None:
        tri = np.asarray(triangles)
        fill = np.zeros((0, 3), np.int64) if fill_triangles is None else np.asarray(fill_triangles)
        for nm, t in (("triangles", tri), ("fill_triangles", fill)):
            if t.ndim != 2 or t.shape[1] != 3:
                raise ValueError(f"{nm} must have shape (m, 3), got {t.shape}")
            if t.size and (t.min() < 0 or t.max() >= n_vertices):
                raise ValueError(f"{nm} indices must lie in [0, {n_vertices}), got [{t.min()}, {t.max()}]")
        if height < 1 or width < 1 or max_batch < 1:
            raise ValueError(f"height, width and max_batch must be positive, got {height}, {width}, {max_batch}")
        import moderngl

        self.triangles = tri.astype(np.int64)
        self.n_vertices = int(n_vertices)
        self.height, self.width = int(height), int(width)
        self.max_batch = int(max_batch)
        self.cols = int(np.ceil(np.sqrt(max_batch)))
        self.rows = int(np.ceil(max_batch / self.cols))
        self.atlas = (self.rows * self.height, self.cols * self.width)  # (H, W) pixels used
        # a power-of-two framebuffer makes the pixel -> NDC -> window mapping exact, so that
        # (with positions snapped to the 1/256-pixel grid) every tile rasterises identically
        self.fb_size = tuple(1 << int(np.ceil(np.log2(a))) for a in self.atlas)  # (H, W)
        self.ctx = ctx if ctx is not None else create_context()
        self.incidence = incidence_matrix(self.triangles, self.n_vertices)
        ctx = self.ctx
        self.ibo = ctx.buffer(tri.astype(np.uint32).tobytes())
        self.fill_ibo = ctx.buffer(fill.astype(np.uint32).tobytes()) if len(fill) else None
        self.progs, self.vaos = {}, {}
        for variant in ("flat", "smooth", "fill"):
            prog = _program(ctx, variant)
            for name, value in (("n_vertices", self.n_vertices), ("cols", self.cols),
                                ("tile", (float(self.width), float(self.height))),
                                ("atlas", (float(self.fb_size[1]), float(self.fb_size[0]))),
                                ("zscale", ZSCALE), ("fill_albedo", tuple(float(c) for c in fill_albedo))):
                if name in prog:
                    prog[name].value = value
            self.progs[variant] = prog
            ibo = self.fill_ibo if variant == "fill" else self.ibo
            if ibo is not None:
                self.vaos[variant] = ctx.vertex_array(prog, [], index_buffer=ibo, index_element_size=4)
        self.cull_back = bool(cull_back)
        nb = self.max_batch * self.n_vertices
        self.pbuf = ctx.buffer(reserve=nb * 16)  # vec4 (u, v, depth, f)
        self.abuf = ctx.buffer(reserve=nb * 4)   # RGBA8 albedo
        self.nbuf = ctx.buffer(reserve=nb * 4)   # snorm8 normals
        self.lbuf = ctx.buffer(reserve=self.max_batch * 3 * 16)
        self.fbo = ctx.framebuffer(
            color_attachments=[ctx.renderbuffer((self.fb_size[1], self.fb_size[0]), 4)],
            depth_attachment=ctx.depth_renderbuffer((self.fb_size[1], self.fb_size[0])),
        )
        self._moderngl = moderngl
        self._pos = np.zeros((self.max_batch, self.n_vertices, 4), np.float32)
        self._rgba = np.full((self.max_batch, self.n_vertices, 4), 255, np.uint8)
        self._nrm = np.zeros((self.max_batch, self.n_vertices, 4), np.int8)
        self._col_buf = bytearray(self.atlas[0] * self.atlas[1] * 3)
        self._dep_buf = bytearray(self.atlas[0] * self.atlas[1] * 4)

    def release(self) -> None:
        """Free the OpenGL objects (the context too when the renderer created it)."""
        for obj in (*self.vaos.values(), *self.progs.values(), self.ibo, self.pbuf, self.abuf, self.nbuf,
                    self.lbuf, self.fbo) + ((self.fill_ibo,) if self.fill_ibo is not None else ()):
            obj.release()

    def render(self, uvz: np.ndarray, normals: np.ndarray | None = None, albedo: np.ndarray | None = None,
               light: Light | None = None, scale: np.ndarray | float | None = None) -> RenderResult:
        """Rasterise a batch of meshes.

        Parameters
        ----------
        uvz : ndarray, shape (B, n, 3)
            Per vertex: pixel coordinates ``u, v`` (camera convention of
            :mod:`disentangled_face.shape.camera`) and depth ``(R X)_z`` in mm (larger is closer).
        normals : ndarray, shape (B, n, 3), optional
            Unit vertex normals in camera coordinates (x right, y up, z toward the viewer),
            i.e. the model normals rotated by ``R`` (see :func:`vertex_normals`), interpolated
            over the triangles (smooth shading; stored with 8 bits per component). When
            omitted, each pixel uses the normal of its triangle's plane, from screen-space
            derivatives (flat shading, no CPU cost; at 112 x 96 a triangle of the 9,409-vertex
            face covers about one pixel, so both look alike).
        albedo : ndarray, shape (B, n, 3) or (n, 3)
            Per-vertex reflectance, float in [0, 1] or uint8 (white when omitted).
        light : Light, optional
            Per-image lights (frontal white light when omitted).
        scale : float or ndarray (B,), optional
            The camera scale ``f`` (pixels per mm) that produced ``uvz``; needed for flat
            shading (``normals=None``) to put depth in the units of ``u, v``.

        Returns
        -------
        RenderResult
            ``rgb`` (B, H, W, 3) uint8, ``mask`` (B, H, W) bool, ``depth`` (B, H, W) mm.

        Raises
        ------
        ValueError
            When the arrays' shapes disagree with (B, n, 3), or ``normals`` and ``scale`` are
            both missing.
        """
        uvz = np.asarray(uvz, dtype=np.float32)
        n = self.n_vertices
        if uvz.ndim != 3 or uvz.shape[1:] != (n, 3):
            raise ValueError(f"uvz must have shape (B, {n}, 3), got {uvz.shape}")
        B = uvz.shape[0]
        if normals is None and scale is None:
            raise ValueError("pass the vertex normals or the camera scale f (for flat shading)")
        f = np.ones(B, np.float32) if scale is None else np.broadcast_to(np.asarray(scale, np.float32), (B,))
        if normals is not None:
            normals = np.asarray(normals, dtype=np.float32)
            if normals.shape != (B, n, 3):
                raise ValueError(f"normals must have shape ({B}, {n}, 3), got {normals.shape}")
        if albedo is None:
            albedo = np.ones((n, 3), np.float32)
        albedo = np.asarray(albedo)
        if albedo.shape not in ((n, 3), (B, n, 3)):
            raise ValueError(f"albedo must have shape ({n}, 3) or ({B}, {n}, 3), got {albedo.shape}")
        if albedo.dtype != np.uint8:
            albedo = np.clip(np.rint(albedo.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
        if albedo.ndim == 2:
            albedo = np.broadcast_to(albedo, (B, n, 3))
        if light is None:
            light = Light.frontal(B)
        for name in ("ambient", "direction", "diffuse"):
            if np.shape(getattr(light, name)) != (B, 3):
                raise ValueError(f"light.{name} must have shape ({B}, 3), got {np.shape(getattr(light, name))}")
        rgb = np.empty((B, self.height, self.width, 3), np.uint8)
        depth = np.empty((B, self.height, self.width), np.float32)
        for s in range(0, B, self.max_batch):
            e = min(B, s + self.max_batch)
            rgb[s:e], depth[s:e] = self._draw(uvz[s:e], None if normals is None else normals[s:e],
                                              albedo[s:e], light.take(slice(s, e)), f[s:e])
        return RenderResult(rgb=rgb, mask=np.isfinite(depth), depth=depth)

    def _draw(self, uvz, normals, albedo, light, f):
        b, n = uvz.shape[:2]
        pos = self._pos[:b]
        pos[..., :2] = np.rint(uvz[..., :2] * 256.0) / 256.0  # OpenGL's subpixel grid
        pos[..., 2] = uvz[..., 2]
        pos[..., 3] = f[:, None]
        self.pbuf.write(pos)
        rgba = self._rgba[:b]
        rgba[..., :3] = albedo
        self.abuf.write(rgba)
        if normals is not None:
            nrm = self._nrm[:b]
            nrm[..., :3] = np.clip(np.rint(normals * 127.0), -127, 127)
            self.nbuf.write(nrm)
        d = np.asarray(light.direction, np.float32)
        d = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
        lights = np.zeros((b, 3, 4), np.float32)
        lights[:, 0, :3], lights[:, 1, :3], lights[:, 2, :3] = light.ambient, d, light.diffuse
        lights[:, 0, 3] = f
        self.lbuf.write(lights.tobytes())
        self.pbuf.bind_to_storage_buffer(0)
        self.lbuf.bind_to_storage_buffer(1)
        self.abuf.bind_to_storage_buffer(2)
        self.nbuf.bind_to_storage_buffer(3)
        self.fbo.use()
        self.fbo.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        flags = self._moderngl.DEPTH_TEST | (self._moderngl.CULL_FACE if self.cull_back else 0)
        self.ctx.enable_only(flags)
        self.ctx.front_face = "ccw"
        self.ctx.depth_func = "<"
        # two draw calls: the mesh, then the hole fills (a separate program keeps
        # gl_PrimitiveID out of the mesh's shaders, which costs a quarter of the time on llvmpipe)
        self.vaos["smooth" if normals is not None else "flat"].render(self._moderngl.TRIANGLES, instances=b)
        if "fill" in self.vaos:
            self.vaos["fill"].render(self._moderngl.TRIANGLES, instances=b)
        H, W = self.atlas
        h, w = self.height, self.width
        region = (0, self.fb_size[0] - H, W, H)  # x, y (from the bottom), width, height
        self.fbo.read_into(self._col_buf, viewport=region, components=3, dtype="f1")
        self.fbo.read_into(self._dep_buf, viewport=region, components=1, attachment=-1, dtype="f4")
        col = np.frombuffer(self._col_buf, np.uint8).reshape(H, W, 3)[::-1]
        dep = np.frombuffer(self._dep_buf, np.float32).reshape(H, W)[::-1]
        # tiles (rows, h, cols, w) -> (rows*cols, h, w)
        col = col.reshape(self.rows, h, self.cols, w, 3).transpose(0, 2, 1, 3, 4).reshape(-1, h, w, 3)[:b]
        dep = dep.reshape(self.rows, h, self.cols, w).transpose(0, 2, 1, 3).reshape(-1, h, w)[:b]
        depth_mm = np.where(dep < 1.0, -(2.0 * dep - 1.0) * ZSCALE, -np.inf).astype(np.float32)
        return col, depth_mm


def boundary_loops(triangles: np.ndarray) -> list[np.ndarray]:
    """Closed loops of boundary edges of a consistently oriented triangle mesh.

    Returns
    -------
    list of ndarray
        Vertex indices of each loop, in the order of the triangles' boundary edges, longest
        loop first.

    Raises
    ------
    ValueError
        When the boundary edges do not form simple closed loops (a non-manifold boundary).
    """
    tri = np.asarray(triangles, dtype=np.int64)
    e = np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]])
    _, inv, cnt = np.unique(np.sort(e, 1), axis=0, return_inverse=True, return_counts=True)
    b = e[cnt[inv.reshape(-1)] == 1]
    nxt = dict(zip(b[:, 0].tolist(), b[:, 1].tolist()))
    if len(nxt) != len(b):
        raise ValueError("the mesh boundary is not manifold (a vertex starts two boundary edges)")
    loops, seen = [], set()
    for start in nxt:
        if start in seen:
            continue
        loop, cur = [start], nxt[start]
        seen.add(start)
        while cur != start:
            if cur in seen or cur not in nxt:
                raise ValueError("the mesh boundary edges do not form closed loops")
            loop.append(cur)
            seen.add(cur)
            cur = nxt[cur]
        loops.append(np.array(loop))
    return sorted(loops, key=len, reverse=True)


def hole_fill_triangles(triangles: np.ndarray, keep_outer: bool = True) -> np.ndarray:
    """Fan triangles closing the holes of a mesh (eyes and mouth of a face-area mesh).

    Each boundary loop but the longest (the outer border of the face area) is closed by a fan
    from its first vertex, oriented like the mesh (counter-clockwise seen from outside). The
    eye and mouth openings are close to convex, for which a fan is a valid triangulation.

    Returns
    -------
    ndarray, shape (k, 3), int64
    """
    loops = boundary_loops(triangles)
    if keep_outer:
        loops = loops[1:]
    fans = [np.stack([np.full(len(lp) - 2, lp[0]), lp[2:], lp[1:-1]], 1) for lp in loops if len(lp) >= 3]
    return np.concatenate(fans) if fans else np.zeros((0, 3), np.int64)


def visibility(points_uvz: np.ndarray, depth: np.ndarray, tol_mm: float = 4.0) -> np.ndarray:
    """Which projected points are seen by the camera (z-buffer test).

    A point is visible when it falls inside the image and its depth is no more than
    ``tol_mm`` behind the *farthest* surface among the 3 x 3 pixels around it (the rendered
    depth buffer). Taking the farthest neighbour makes points on a silhouette (where the
    buffer changes fast from one pixel to the next) count as visible; a point behind an
    occluder (the nose, the far cheek at large yaw) is hidden by many mm and stays hidden.

    Parameters
    ----------
    points_uvz : ndarray, shape (B, k, 3)
        Pixel coordinates ``u, v`` and depth ``(R X)_z`` in mm (larger is closer).
    depth : ndarray, shape (B, H, W)
        :attr:`RenderResult.depth`, mm, ``-inf`` where no surface.
    tol_mm : float
        Depth tolerance in mm.

    Returns
    -------
    ndarray, shape (B, k), bool
    """
    p = np.asarray(points_uvz, dtype=np.float32)
    depth = np.asarray(depth)
    if p.ndim != 3 or p.shape[-1] != 3 or depth.ndim != 3 or depth.shape[0] != p.shape[0]:
        raise ValueError(f"points_uvz must be (B, k, 3) and depth (B, H, W) with the same B, got {p.shape} and {depth.shape}")
    B, H, W = depth.shape
    j = np.floor(p[..., 0]).astype(np.int64)
    i = np.floor(p[..., 1]).astype(np.int64)
    inside = (i >= 0) & (i < H) & (j >= 0) & (j < W)
    pad = np.pad(depth, ((0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    b = np.arange(B)[:, None]
    ic, jc = np.clip(i, 0, H - 1) + 1, np.clip(j, 0, W - 1) + 1
    neigh = np.stack([pad[b, ic + di, jc + dj] for di in (-1, 0, 1) for dj in (-1, 0, 1)], -1)
    farthest = neigh.min(-1)
    return inside & (p[..., 2] >= farthest - tol_mm)
