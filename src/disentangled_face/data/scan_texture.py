"""A textured scan as the renderer draws it: texture coordinates, texture sampling, a finer mesh.

The renderer (:mod:`.render`) interpolates a colour per vertex. A scan's texture has far more
detail than its vertices (the menpo3d ``james`` scan: 6,393 vertices, a 2400 x 1600 texture),
so :func:`render_mesh` builds a separate mesh for drawing only: one vertex per distinct
(vertex, texture coordinate) pair of the OBJ's face corners (split at texture seams),
subdivided (:func:`trimesh.remesh.subdivide`, positions and texture coordinates interpolated
at the edge midpoints), each vertex coloured by the texture at its coordinates
(:func:`sample_texture`). The scan itself (:func:`.scans.load_scan`) keeps its file's vertex
order for every error computation; :func:`vertex_colors` gives the scan's own vertices a
colour each (the mean over their face corners) when that is enough.

Texture coordinates follow OBJ: ``(s, t)`` in [0, 1], ``s`` to the right, ``t`` **up** from
the image's bottom row; texel ``(row i, column j)`` has its centre at
``s = (j + 0.5) / W``, ``t = 1 - (i + 0.5) / H``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .records import DatasetFormatError

__all__ = ["ObjTexture", "read_obj_texture", "sample_texture", "vertex_colors", "RenderMesh", "render_mesh"]


@dataclass
class ObjTexture:
    """Texture coordinates of an OBJ mesh and its texture image.

    Attributes
    ----------
    uv : ndarray (k, 2), float64
        The ``vt`` lines, ``(s, t)`` in [0, 1] (t up).
    face_uv : ndarray (m, 3), int64
        Per triangle corner, the index into ``uv``; the triangles are those of
        :func:`.scans.read_mesh` (same order, polygons split into the same fans).
    image : ndarray (H, W, 3), uint8 RGB
        The material's ``map_Kd`` texture.
    path : Path
        The texture file.
    """

    uv: np.ndarray
    face_uv: np.ndarray
    image: np.ndarray
    path: Path


def read_obj_texture(path: str | os.PathLike) -> ObjTexture:
    """Texture coordinates (``vt``, the ``v/vt`` corners of the ``f`` lines) and texture of an OBJ.

    The texture is the ``map_Kd`` of the first material of the ``mtllib`` file (relative to
    the OBJ), read with Pillow as RGB.

    Raises
    ------
    DatasetFormatError
        No ``vt`` lines, a face corner without a texture index, an index out of range, no
        ``mtllib`` or ``map_Kd``, a missing or unreadable texture file.
    """
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(f"mesh file not found: {path}")
    uv, corners, mtl = [], [], None
    with open(path, "r", errors="replace") as fh:
        for lineno, ln in enumerate(fh, start=1):
            if ln.startswith("vt "):
                try:
                    uv.append([float(t) for t in ln.split()[1:3]])
                except ValueError as exc:
                    raise DatasetFormatError(f"{path}:{lineno}: texture coordinates must be numbers") from exc
            elif ln.startswith("f "):
                try:
                    idx = [int(t.split("/")[1]) for t in ln.split()[1:]]
                except (IndexError, ValueError):
                    raise DatasetFormatError(f"{path}:{lineno}: every face corner needs a texture index (v/vt), "
                                             f"got {ln.strip()!r}") from None
                k = len(uv)
                idx = [i - 1 if i > 0 else k + i for i in idx]
                corners.extend([idx[0], idx[a], idx[a + 1]] for a in range(1, len(idx) - 1))
            elif ln.startswith("mtllib ") and mtl is None:
                mtl = path.parent / ln.split(maxsplit=1)[1].strip()
    if not uv:
        raise DatasetFormatError(f"{path}: no texture coordinates (vt lines)")
    uv_a = np.asarray(uv, np.float64).reshape(-1, 2)
    face_uv = np.asarray(corners, np.int64).reshape(-1, 3)
    if face_uv.size and (face_uv.min() < 0 or face_uv.max() >= len(uv_a)):
        raise DatasetFormatError(f"{path}: a face refers to a texture coordinate outside 1..{len(uv_a)}")
    if mtl is None or not mtl.is_file():
        raise DatasetFormatError(f"{path}: no material file (mtllib) found{'' if mtl is None else f' at {mtl}'}")
    tex = next((ln.split(maxsplit=1)[1].strip() for ln in mtl.read_text(errors="replace").splitlines()
                if ln.strip().startswith("map_Kd ")), None)
    if tex is None:
        raise DatasetFormatError(f"{mtl}: no texture (map_Kd line)")
    tex_path = mtl.parent / tex
    try:
        image = np.asarray(Image.open(tex_path).convert("RGB"))
    except (OSError, ValueError) as exc:
        raise DatasetFormatError(f"{tex_path}: texture not readable ({exc})") from exc
    return ObjTexture(uv_a, face_uv, image, tex_path)


def sample_texture(image, uv) -> np.ndarray:
    """Bilinear texture lookup at OBJ texture coordinates.

    Parameters
    ----------
    image : ndarray (H, W, 3) (uint8 or float in [0, 1]) or (H, W)
    uv : array_like (k, 2)
        ``(s, t)``, t up (module docstring); outside [0, 1] the border texels are repeated.

    Returns
    -------
    ndarray (k, 3) or (k,), float64 in [0, 1]
        (:func:`scipy.ndimage.map_coordinates`, order 1.)

    Raises
    ------
    ValueError
        ``uv`` not (k, 2) or not finite, ``image`` not (H, W) or (H, W, C).
    """
    from scipy.ndimage import map_coordinates

    img = np.asarray(image)
    if img.ndim not in (2, 3) or img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"image must be (H, W) or (H, W, C), got {img.shape}")
    f = img.astype(np.float64) / 255.0 if img.dtype == np.uint8 else img.astype(np.float64)
    uv = np.asarray(uv, np.float64)
    if uv.ndim != 2 or uv.shape[1] != 2 or not np.isfinite(uv).all():
        raise ValueError(f"uv must be finite (k, 2), got {uv.shape}")
    H, W = img.shape[:2]
    coords = [(1.0 - uv[:, 1]) * H - 0.5, uv[:, 0] * W - 0.5]   # row, column of the texel centres
    if f.ndim == 2:
        return map_coordinates(f, coords, order=1, mode="nearest")
    return np.stack([map_coordinates(f[..., c], coords, order=1, mode="nearest") for c in range(f.shape[2])], -1)


def vertex_colors(texture: ObjTexture, triangles, n_vertices: int) -> np.ndarray:
    """One colour per mesh vertex: the mean of the texture at its face corners' coordinates.

    Parameters
    ----------
    texture : ObjTexture
    triangles : ndarray (m, 3), int
        The mesh's triangles (:func:`.scans.read_mesh`), corner for corner with ``texture.face_uv``.
    n_vertices : int

    Returns
    -------
    ndarray (n_vertices, 3), float64 in [0, 1]; black for a vertex no triangle uses.

    Raises
    ------
    ValueError
        ``triangles`` and ``texture.face_uv`` of different shapes.
    """
    tri = np.asarray(triangles, np.int64)
    if tri.shape != texture.face_uv.shape:
        raise ValueError(f"triangles {tri.shape} and texture.face_uv {texture.face_uv.shape} must match corner for corner")
    col = sample_texture(texture.image, texture.uv[texture.face_uv.ravel()])
    acc = np.zeros((n_vertices, col.shape[1]))
    cnt = np.zeros(n_vertices)
    np.add.at(acc, tri.ravel(), col)
    np.add.at(cnt, tri.ravel(), 1.0)
    return acc / np.maximum(cnt, 1.0)[:, None]


@dataclass
class RenderMesh:
    """A mesh for drawing a textured scan (not for measuring: its vertices are not the scan's).

    Attributes
    ----------
    vertices : ndarray (p, 3), mm
    triangles : ndarray (q, 3), int64
    colors : ndarray (p, 3), float64 in [0, 1], the texture at each vertex
    """

    vertices: np.ndarray
    triangles: np.ndarray
    colors: np.ndarray


def render_mesh(vertices, triangles, texture: ObjTexture, subdivisions: int = 2) -> RenderMesh:
    """Split a textured mesh at its seams, subdivide it and colour every vertex from the texture.

    Each distinct (vertex, texture coordinate) pair of the face corners becomes one vertex;
    ``subdivisions`` rounds of :func:`trimesh.remesh.subdivide` (each splits every triangle
    into four at its edge midpoints, texture coordinates interpolated alike) follow, and every
    vertex takes :func:`sample_texture` at its coordinates. Two rounds turn the 12,228
    triangles of the ``james`` scan into 195,648, enough for the texture's eyes and brows to
    reach a 68-point detector.

    Parameters
    ----------
    vertices : ndarray (n, 3), mm
    triangles : ndarray (m, 3), int, corner for corner with ``texture.face_uv``
    texture : ObjTexture
    subdivisions : int, >= 0

    Returns
    -------
    RenderMesh

    Raises
    ------
    ValueError
        Shapes that disagree, a negative ``subdivisions``.
    """
    import trimesh

    V = np.asarray(vertices, np.float64)
    tri = np.asarray(triangles, np.int64)
    if V.ndim != 2 or V.shape[1] != 3:
        raise ValueError(f"vertices must be (n, 3), got {V.shape}")
    if tri.shape != texture.face_uv.shape:
        raise ValueError(f"triangles {tri.shape} and texture.face_uv {texture.face_uv.shape} must match corner for corner")
    if int(subdivisions) < 0:
        raise ValueError(f"subdivisions must be >= 0, got {subdivisions}")
    pairs, inv = np.unique(np.stack([tri.ravel(), texture.face_uv.ravel()], 1), axis=0, return_inverse=True)
    P, F, UV = V[pairs[:, 0]], inv.reshape(-1, 3).astype(np.int64), texture.uv[pairs[:, 1]]
    for _ in range(int(subdivisions)):
        P, F, attr = trimesh.remesh.subdivide(P, F, vertex_attributes={"uv": UV})
        UV = attr["uv"]
    return RenderMesh(np.asarray(P, np.float64), np.asarray(F, np.int64), sample_texture(texture.image, UV))
