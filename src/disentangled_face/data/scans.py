"""3D scans: meshes that keep their vertex order and count, 68-point landmark files, units.

:func:`load_scan` reads a mesh (OBJ line by line, so the vertex order and count are the file's:
trimesh splits vertices at texture seams; other formats through ``trimesh`` with
``process=False``) with its 68 landmarks (``.ljson``, ``.pts``, ``.txt``, ``.npy``), checks the
landmarks' order against the iBUG 68-point scheme in 3D, and reports the units it assumed
(guessed from the outer eye corners' distance when not given) with the scale to mm.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from .landmarks import check_landmark_order_3d
from .records import DatasetFormatError, Scan3D

logger = logging.getLogger(__name__)

MESH_EXTENSIONS = (".obj", ".ply", ".off", ".stl", ".wrl", ".glb")
#: Landmark files :func:`read_landmarks` reads, in the order :func:`load_scan` looks for them.
LANDMARK_EXTENSIONS = (".ljson", ".pts", ".npy", ".txt")

#: Formats :func:`write_mesh` writes.
WRITE_EXTENSIONS = (".obj", ".ply")

__all__ = ["MESH_EXTENSIONS", "LANDMARK_EXTENSIONS", "WRITE_EXTENSIONS", "read_mesh", "write_mesh", "export_shape",
           "read_landmarks", "read_landmarks_3d", "load_scan"]


def read_landmarks_3d(path: str | os.PathLike) -> np.ndarray:
    """3D landmarks from a text file: lines ``x y z`` or ``index x y z`` (BU-3DFE ``.bnd``).

    Raises
    ------
    DatasetFormatError
        When the file is missing or a line does not hold 3 or 4 numbers.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(f"landmark file not found: {path}")
    rows = []
    for lineno, ln in enumerate(path.read_text().splitlines(), start=1):
        tok = ln.replace(",", " ").split()
        if not tok:
            continue
        try:
            vals = [float(t) for t in tok]
        except ValueError as exc:
            raise DatasetFormatError(f"{path}:{lineno}: expected 'x y z' or 'index x y z', got {ln!r}") from exc
        if len(vals) not in (3, 4):
            raise DatasetFormatError(f"{path}:{lineno}: expected 3 or 4 numbers, got {len(vals)}")
        rows.append(vals[-3:])
    if not rows:
        raise DatasetFormatError(f"{path}: no landmarks")
    return np.asarray(rows, np.float64)


def _read_obj(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Vertices and triangles of an OBJ file exactly as listed: every ``v`` line one vertex, in
    file order (texture and normal indices ignored, so nothing is split at seams); polygons are
    split into triangle fans; negative (relative) indices are resolved."""
    verts, faces = [], []
    with open(path, "r", errors="replace") as fh:
        for lineno, ln in enumerate(fh, start=1):
            if ln.startswith("v "):
                tok = ln.split()
                if len(tok) < 4:
                    raise DatasetFormatError(f"{path}:{lineno}: a vertex needs x y z, got {ln.strip()!r}")
                try:
                    verts.append([float(t) for t in tok[1:4]])
                except ValueError as exc:
                    raise DatasetFormatError(f"{path}:{lineno}: vertex coordinates must be numbers, got "
                                             f"{ln.strip()!r}") from exc
            elif ln.startswith("f "):
                try:
                    idx = [int(t.split("/")[0]) for t in ln.split()[1:]]
                except ValueError as exc:
                    raise DatasetFormatError(f"{path}:{lineno}: face indices must be integers, got {ln.strip()!r}") from exc
                if len(idx) < 3:
                    raise DatasetFormatError(f"{path}:{lineno}: a face needs at least 3 vertices, got {ln.strip()!r}")
                n = len(verts)
                idx = [k - 1 if k > 0 else n + k for k in idx]
                faces.extend([idx[0], idx[a], idx[a + 1]] for a in range(1, len(idx) - 1))
    v = np.asarray(verts, np.float64).reshape(-1, 3)
    f = np.asarray(faces, np.int64).reshape(-1, 3)
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise DatasetFormatError(f"{path}: a face refers to a vertex outside 1..{len(v)}")
    return v, f


def read_mesh(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (n, 3) and triangles (m, 3) of a mesh file, vertex order and count as in the file.

    OBJ is read directly (every ``v`` line one vertex, in order: trimesh would split vertices at
    texture seams, a 6,393-vertex scan giving 6,680); other formats through trimesh with
    ``process=False`` (no merging, no reordering).

    Returns
    -------
    vertices : ndarray (n, 3), float64, the file's units
    triangles : ndarray (m, 3), int64, 0-based

    Raises
    ------
    DatasetFormatError
        When the file is missing, unreadable or has no triangles.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(f"mesh file not found: {path}")
    if path.suffix.lower() == ".obj":
        v, f = _read_obj(path)
    else:
        import trimesh

        try:
            mesh = trimesh.load(path, force="mesh", process=False)
        except Exception as exc:  # trimesh raises various types for unreadable files
            raise DatasetFormatError(f"{path}: not a mesh trimesh can read ({exc}); expected "
                                     f".obj/.ply/.off/.stl (convert .wrl first)") from exc
        if not hasattr(mesh, "faces"):
            raise DatasetFormatError(f"{path}: the mesh has no triangles")
        v, f = np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces, np.int64)
    if len(f) == 0:
        raise DatasetFormatError(f"{path}: the mesh has no triangles")
    return v, f


def write_mesh(path: str | os.PathLike, vertices, triangles) -> Path:
    """Write a triangle mesh as OBJ or PLY (from the suffix) through trimesh, atomically.

    The mesh is built with ``trimesh.Trimesh(vertices, triangles, process=False)`` (no vertex
    merging, reordering or removal of unreferenced vertices) and written by
    ``trimesh.exchange.export.export_mesh`` (OBJ: ``v`` and ``f`` lines only, no normals or
    texture; PLY: binary, float64 vertices) to a temporary file beside ``path`` that replaces
    ``path`` only once complete (:func:`disentangled_face.paths.atomic_path`). Reading it back
    with :func:`read_mesh` gives the same vertices, in the same order and count.

    Parameters
    ----------
    path : path ending in ``.obj`` or ``.ply``
    vertices : array_like, shape (n, 3)
        mm for the package's shapes (written as given; OBJ and PLY carry no unit).
    triangles : array_like, shape (m, 3), int, 0-based (e.g. ``model.triangles``)

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    ValueError
        Another suffix, wrong shapes, non-finite vertices or indices outside ``0..n-1``.
    """
    import trimesh

    from ..paths import atomic_path

    path = Path(path)
    ext = path.suffix.lower()
    if ext not in WRITE_EXTENSIONS:
        raise ValueError(f"{path}: write_mesh writes {WRITE_EXTENSIONS}, got {ext!r}")
    v = np.asarray(vertices, np.float64)
    f = np.asarray(triangles)
    if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0:
        raise ValueError(f"vertices must have shape (n, 3), got {v.shape}")
    if not np.isfinite(v).all():
        raise ValueError("vertices must be finite (found NaN or inf)")
    if f.ndim != 2 or f.shape[1] != 3 or not np.issubdtype(f.dtype, np.integer):
        raise ValueError(f"triangles must be integer indices of shape (m, 3), got {f.dtype} {f.shape}")
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise ValueError(f"triangles index vertices outside 0..{len(v) - 1}")
    mesh = trimesh.Trimesh(v, f.astype(np.int64), process=False, validate=False)
    kw = dict(include_normals=False, include_color=False, include_texture=False, digits=10) if ext == ".obj" \
        else dict(encoding="binary", include_attributes=False)
    with atomic_path(path, suffix=ext) as tmp:
        mesh.export(tmp, file_type=ext[1:], **kw)
    return path


def export_shape(path: str | os.PathLike, shape, model, index: int = 0) -> Path:
    """Write a fit or a reconstruction of ``model``'s topology as OBJ or PLY (:func:`write_mesh`).

    Parameters
    ----------
    path : path ending in ``.obj`` or ``.ply``
    shape : ndarray (n, 3) or (B, n, 3), mm, or a fit
        A reconstruction (``evaluation.reconstruct``), a shape of ``model.shape``, or a fit
        result with ``.shapes(model)`` (``fitting.fit_single_image``, ``fitting.fit_subjects``).
    model : MorphableModel
        Gives the triangles (``model.triangles``).
    index : int
        Which shape of a batch (or of a fit's images).

    Raises
    ------
    ValueError
        When the shape does not have the model's n vertices, or as :func:`write_mesh`.
    IndexError
        ``index`` out of range.
    """
    s = shape.shapes(model) if hasattr(shape, "shapes") else shape
    s = np.asarray(s, np.float64)
    if s.ndim == 3:
        s = s[index]
    if s.shape != (model.n_vertices, 3):
        raise ValueError(f"shape must be (n, 3) or (B, n, 3) with n={model.n_vertices} (the model's), got {s.shape}")
    return write_mesh(path, s, model.triangles)


# ----------------------------------------------------------------------------- landmark files
def _numbers(path: Path, lines: list[str], first: int = 1) -> np.ndarray:
    rows = []
    for lineno, ln in enumerate(lines, start=first):
        tok = ln.replace(",", " ").split()
        if not tok:
            continue
        try:
            rows.append([float(t) for t in tok])
        except ValueError as exc:
            raise DatasetFormatError(f"{path}:{lineno}: expected numbers, got {ln.strip()!r}") from exc
    if not rows:
        raise DatasetFormatError(f"{path}: no landmarks")
    widths = {len(r) for r in rows}
    if len(widths) != 1 or widths.pop() not in (2, 3, 4):
        raise DatasetFormatError(f"{path}: every line must hold 'x y', 'x y z' or 'index x y z', "
                                 f"got lines of {sorted({len(r) for r in rows})} numbers")
    a = np.asarray(rows, np.float64)
    return a[:, 1:] if a.shape[1] == 4 else a


def _read_pts(path: Path) -> np.ndarray:
    """iBUG ``.pts``: ``version: 1``, ``n_points: N``, then N lines of coordinates inside ``{ }``."""
    lines = path.read_text(errors="replace").splitlines()
    try:
        start = next(k for k, ln in enumerate(lines) if ln.strip() == "{")
        end = next(k for k, ln in enumerate(lines) if ln.strip() == "}" and k > start)
    except StopIteration:
        raise DatasetFormatError(f"{path}: not an iBUG .pts file (expected 'version: 1', 'n_points: N', "
                                 f"then the points between '{{' and '}}')") from None
    pts = _numbers(path, lines[start + 1:end], start + 2)
    m = re.search(r"n_points\s*:\s*(\d+)", "\n".join(lines[:start]))
    if m and int(m.group(1)) != len(pts):
        raise DatasetFormatError(f"{path}: header says n_points: {m.group(1)}, found {len(pts)} points")
    return pts


_GROUP_ALIASES = {
    "jaw": "jaw", "chin": "jaw", "face_contour": "jaw", "contour": "jaw",
    "left_eyebrow": "eyebrow_a", "leyebrow": "eyebrow_a", "right_eyebrow": "eyebrow_b", "reyebrow": "eyebrow_b",
    "nose": "nose", "left_eye": "eye_a", "leye": "eye_a", "right_eye": "eye_b", "reye": "eye_b", "mouth": "mouth",
}


def _ljson_reorder(path: Path, pts: np.ndarray, labels: list) -> tuple[np.ndarray, str]:
    """Put an .ljson's points in iBUG order from its labels (menpo's groups: jaw/chin, left and
    right eyebrow, nose, left and right eye, mouth). Left/right names are a hint only (menpo's
    'left' is the image's left, the subject's right); the order check decides."""
    groups = {}
    for lab in labels:
        key = _GROUP_ALIASES.get(str(lab.get("label", "")).lower())
        if key is None:
            return pts, f"points in file order (label {lab.get('label')!r} not an iBUG 68 group)"
        groups[key] = np.asarray(lab.get("mask", []), np.int64)
    order = ("jaw", "eyebrow_a", "eyebrow_b", "nose", "eye_a", "eye_b", "mouth")
    sizes = (17, 5, 5, 9, 6, 6, 20)
    if len(pts) != 68 or set(groups) != set(order) or any(len(groups[k]) != n for k, n in zip(order, sizes)):
        return pts, "points in file order (labels are not the iBUG 68 groups)"
    idx = np.concatenate([groups[k] for k in order])
    if sorted(idx.tolist()) != list(range(68)):
        raise DatasetFormatError(f"{path}: the label masks do not cover the 68 points once each")
    if (idx == np.arange(68)).all():
        return pts, "points in file order (the labels already follow iBUG's)"
    return pts[idx], "points reordered from the .ljson labels to iBUG's group order"


def _read_ljson(path: Path) -> tuple[np.ndarray, str]:
    """menpo's ``.ljson`` (versions 1-3): the first group's points, put in iBUG order by label."""
    try:
        d = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetFormatError(f"{path}: not a JSON file ({exc})") from exc
    if "groups" in d and isinstance(d["groups"], dict) and d["groups"]:      # version 3
        name, g = next(iter(d["groups"].items()))
        lm, labels = g.get("landmarks", {}), g.get("labels", [])
    elif "landmarks" in d:                                                   # version 2
        lm, labels = d["landmarks"], d.get("labels", [])
    elif "groups" in d and isinstance(d["groups"], list) and d["groups"]:    # version 1
        g = d["groups"][0]
        lm = {"points": [p["point"] for p in g.get("landmarks", [])]}
        labels = []
    else:
        raise DatasetFormatError(f"{path}: no landmark group found (expected menpo's .ljson: 'groups' or 'landmarks')")
    pts = np.asarray([p if p is not None else [np.nan] * 3 for p in lm.get("points", [])], np.float64)
    if pts.ndim != 2 or pts.shape[1] not in (2, 3) or len(pts) == 0:
        raise DatasetFormatError(f"{path}: landmark points must be a list of [x, y] or [x, y, z], got shape {pts.shape}")
    if pts.shape[1] == 2:   # menpo stores 2D image points as (row, column) = (v, u)
        pts = pts[:, ::-1].copy()
    return _ljson_reorder(path, pts, labels)


def read_landmarks(path: str | os.PathLike) -> np.ndarray:
    """Landmarks from ``.pts`` (iBUG), ``.ljson`` (menpo), ``.txt`` or ``.npy``, as (k, 2) or (k, 3).

    ``.txt``: one point per line, ``x y``, ``x y z`` or ``index x y z`` (commas allowed);
    ``.npy``: an array (k, 2) or (k, 3); ``.pts``: iBUG's ``n_points`` header and ``{ }`` block;
    ``.ljson``: menpo's format, whose points are grouped by label and need not be in iBUG
    order: when the labels are the iBUG 68 groups (jaw, eyebrows, nose, eyes, mouth, under
    menpo's names) the points are put in iBUG's group order (2D ljson points, stored by menpo
    as (row, column), are returned as (u, v)). Check the result with
    :func:`~disentangled_face.data.landmarks.check_landmark_order_3d` (:func:`load_scan` does).

    Returns
    -------
    ndarray (k, 2) or (k, 3), float64, the file's units

    Raises
    ------
    DatasetFormatError
        Missing file, unknown extension, malformed content.
    """
    return _read_landmarks(Path(path))[0]


def _read_landmarks(path: Path) -> tuple[np.ndarray, str]:
    if not path.is_file():
        raise DatasetFormatError(f"landmark file not found: {path}")
    ext = path.suffix.lower()
    if ext == ".ljson":
        return _read_ljson(path)
    if ext == ".pts":
        return _read_pts(path), "points in file order (.pts)"
    if ext == ".npy":
        try:
            a = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise DatasetFormatError(f"{path}: not a NumPy .npy array ({exc})") from exc
        a = np.asarray(a, np.float64)
        if a.ndim != 2 or a.shape[1] not in (2, 3):
            raise DatasetFormatError(f"{path}: expected an array (k, 2) or (k, 3), got shape {a.shape}")
        return a, "points in file order (.npy)"
    if ext == ".txt":
        return _numbers(path, path.read_text(errors="replace").splitlines()), "points in file order (.txt)"
    raise DatasetFormatError(f"{path}: unknown landmark format {ext!r}; expected one of {LANDMARK_EXTENSIONS}")


# ----------------------------------------------------------------------------- one scan
#: Outer-eye-corner distance (iBUG 36-45) of adult faces, mm (about 90; the bands of
#: :func:`load_scan`'s unit guess are wide around it).
NOMINAL_INTEROCULAR_MM = 90.0
_UNITS = {"mm": 1.0, "cm": 10.0, "m": 1000.0}


def _guess_units(landmarks: np.ndarray | None, vertices: np.ndarray) -> str:
    """Units from the outer-eye-corner distance (68 landmarks) or else the mesh's extent."""
    if landmarks is not None and landmarks.shape == (68, 3):
        size, ref = np.linalg.norm(landmarks[36] - landmarks[45]), NOMINAL_INTEROCULAR_MM
    else:  # a face scan is about 100-300 mm across
        size, ref = float(np.ptp(vertices, axis=0).max()), 200.0
    r = size / ref
    for unit, lo, hi in (("mm", 0.5, 2.0), ("cm", 0.05, 0.2), ("m", 0.0005, 0.002)):
        if lo <= r <= hi:
            return unit
    return "unknown"


def load_scan(mesh: str | os.PathLike, landmarks: str | os.PathLike | None = None, *, units: str = "auto",
              check_order: bool = True, template: Any = None, subject: str = "", expression: str = "neutral"
              ) -> Scan3D:
    """One 3D face scan: a mesh (OBJ, PLY, ...) with its 68 landmarks, in mm, iBUG order.

    Parameters
    ----------
    mesh : path
        ``.obj`` (read line by line: vertex order and count exactly as in the file, never split
        at texture seams), ``.ply``, ``.off`` or ``.stl`` (trimesh, ``process=False``).
    landmarks : path, optional
        ``.pts``, ``.ljson``, ``.txt`` or ``.npy`` (:func:`read_landmarks`), 3D. Default: the
        first file with the mesh's stem and one of :data:`LANDMARK_EXTENSIONS`; none found
        gives ``landmarks=None``.
    units : {'auto', 'mm', 'cm', 'm'}
        The file's units. ``'auto'`` guesses from the outer-eye-corner distance (about 90 mm
        in adults; without landmarks, from the mesh's extent) and reports the guess in
        ``Scan3D.units`` (``'unknown'`` when it fits no unit: the coordinates are then kept as
        they are, with a warning in the log). Coordinates are converted to mm.
    check_order : bool
        Check 68 landmarks against the iBUG order
        (:func:`~disentangled_face.data.landmarks.check_landmark_order_3d`).
    template : ndarray (68, 3), optional
        The template face of that check (default: the ICT-FaceKit mean face).
    subject, expression : str
        Stored on the record.

    Returns
    -------
    Scan3D
        ``vertices`` (n, 3) mm in the file's order, ``triangles`` (m, 3), ``landmarks``
        (68, 3) mm in iBUG order (or None), ``units`` the units assumed, ``scale_to_mm``.

    Raises
    ------
    DatasetFormatError
        Missing or malformed files, landmarks that are not 3D, an unknown ``units``.
    LandmarkOrderError
        (a ValueError) 68 landmarks decisively not in iBUG order
        (:func:`~disentangled_face.data.landmarks.check_landmark_order_3d`).
    """
    mesh = Path(mesh)
    if units != "auto" and units not in _UNITS:
        raise DatasetFormatError(f"units must be 'auto' or one of {sorted(_UNITS)}, got {units!r}")
    v, t = read_mesh(mesh)
    how = "no landmarks"
    if landmarks is None:
        landmarks = next((mesh.with_suffix(e) for e in LANDMARK_EXTENSIONS if mesh.with_suffix(e).is_file()), None)
    lm = None
    if landmarks is not None:
        lm, how = _read_landmarks(Path(landmarks))
        if lm.shape[1] != 3:
            raise DatasetFormatError(f"{landmarks}: a scan's landmarks must be 3D (k, 3), got {lm.shape}")
        if check_order and lm.shape[0] == 68:
            info = check_landmark_order_3d(lm, template, name=str(landmarks))
            if info["checked"]:
                how += f"; iBUG order checked (RMSE {info['rmse_iod']:.3f} inter-ocular distances to the template)"
        elif lm.shape[0] != 68:
            how += f"; {lm.shape[0]} points: iBUG order not checked"
    unit = _guess_units(lm, v) if units == "auto" else units
    scale = _UNITS.get(unit, 1.0)
    if unit == "unknown":
        logger.warning("%s: units not recognised (outer-eye-corner distance or extent fits no unit): "
                       "coordinates kept unscaled", mesh)
    else:
        logger.info("%s: %d vertices, %d triangles, units %s (%s), %s", mesh, len(v), len(t), unit,
                    "guessed" if units == "auto" else "given", how)
    if scale != 1.0:
        v = v * scale
        lm = lm * scale if lm is not None else None
    return Scan3D(v, t, lm, subject or mesh.stem, expression, 0.0, str(mesh), unit, scale)
