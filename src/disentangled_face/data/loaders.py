"""Loaders for the paper's real datasets (chapter 2's appendix on real data).

The paper trains on CASIA-WebFace (Yi et al. 2014) and evaluates on LFW (Huang et al. 2007),
YouTube Faces (Wolf et al. 2011), BU-3DFE (Yin et al. 2006) and MICC Florence (Bagdanov et al.
2011). None can be downloaded by the book (licences); a reader who has them points these
loaders at their folders. Every loader returns the record types of
:mod:`disentangled_face.data.records` (:class:`FaceSample`, :class:`VerificationPair`,
:class:`Scan3D`), the same as the synthetic protocols, so each chapter runs on either.

Layouts expected (the datasets' own):

* CASIA-WebFace: ``<root>/<subject id>/<image>.jpg`` (a folder per subject);
* LFW: ``<root>/pairs.txt`` (View 2: a header line ``10 300``, then per fold 300 lines
  ``name n1 n2`` and 300 lines ``name1 n1 name2 n2``) and images
  ``<root>/lfw/<name>/<name>_<4-digit n>.jpg``; or scikit-learn's cache through
  :func:`load_lfw_pairs_sklearn`;
* YouTube Faces: ``<root>/frame_images_DB/<name>/<video>/<frame>.jpg`` and
  ``<root>/splits.txt`` (header line, then ``split, name/video, name/video, ..., same``);
* BU-3DFE: ``<root>/<F0001>/<F0001_AN01WH_F3D>.wrl`` with landmark files ``<same stem>.bnd``
  (83 lines ``index x y z``, mm) (any mesh format trimesh reads: ``.wrl`` needs a conversion,
  ``.obj``/``.ply``/``.off`` are read directly);
* MICC Florence: ``<root>/subject_<XX>/Model/frontal*/obj/*.obj`` (or any mesh below a subject
  folder) with an optional landmark text file (one ``x y z`` per line) next to the mesh;
* any one scan (:func:`load_scan`): a mesh (``.obj``, ``.ply``, ...) with 68 landmarks
  (``.pts``, ``.ljson``, ``.txt``, ``.npy``), vertex order and count kept as in the file, the
  landmarks put in (and checked against) the iBUG 68-point order, the units reported.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from .landmarks import LandmarkOrderError, check_landmark_order_3d
from .records import DatasetFormatError, FaceSample, Scan3D, VerificationPair, read_image

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
MESH_EXTENSIONS = (".obj", ".ply", ".off", ".stl", ".wrl", ".glb")
#: Landmark files :func:`read_landmarks` reads, in the order :func:`load_scan` looks for them.
LANDMARK_EXTENSIONS = (".ljson", ".pts", ".npy", ".txt")

__all__ = ["IMAGE_EXTENSIONS", "MESH_EXTENSIONS", "BU3DFE_EXPRESSIONS", "DatasetFormatError", "read_image",
           "LANDMARK_EXTENSIONS", "read_mesh", "read_landmarks", "read_landmarks_3d", "load_scan",
           "load_casia_webface", "load_lfw_pairs", "load_lfw_pairs_sklearn",
           "load_ytf", "load_bu3dfe", "load_micc", "to_network_input"]


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise DatasetFormatError(f"folder not found: {path} (expected {what})")
    return path


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


# ----------------------------------------------------------------------------- CASIA-WebFace
def load_casia_webface(root: str | os.PathLike, max_subjects: int | None = None,
                       max_images_per_subject: int | None = None,
                       min_images_per_subject: int = 1) -> list[FaceSample]:
    """Index CASIA-WebFace: ``<root>/<subject>/<image>.jpg`` (images are read lazily).

    Parameters
    ----------
    root : path
        The folder holding one sub-folder per subject (``CASIA-WebFace/``).
    max_subjects, max_images_per_subject : int, optional
        Keep the first subjects / images (sorted by name).
    min_images_per_subject : int
        Skip subjects with fewer images.

    Returns
    -------
    list of FaceSample
        ``image`` is the file path; labels are contiguous over the kept subjects.

    Raises
    ------
    DatasetFormatError
        When ``root`` is missing or holds no subject folder with images.
    """
    root = _require_dir(Path(root), "CASIA-WebFace: one folder per subject holding .jpg images")
    samples: list[FaceSample] = []
    label = 0
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        imgs = _images_in(sub)[:max_images_per_subject]
        if len(imgs) < max(1, min_images_per_subject):
            continue
        for p in imgs:
            samples.append(FaceSample(image=p, label=label, subject=sub.name, index=len(samples), source=str(p)))
        label += 1
        if max_subjects is not None and label >= max_subjects:
            break
    if not samples:
        raise DatasetFormatError(f"{root}: no subject folder with images ({IMAGE_EXTENSIONS}) found "
                                 f"(expected <root>/<subject>/<image>.jpg)")
    return samples


# ----------------------------------------------------------------------------- LFW
def _lfw_image(root: Path, name: str, num: int) -> Path:
    for sub in ("lfw", "lfw-deepfunneled", "lfw_funneled", "."):
        p = root / sub / name / f"{name}_{num:04d}.jpg"
        if p.is_file():
            return p
    raise DatasetFormatError(f"LFW image not found: {root / 'lfw' / name / f'{name}_{num:04d}.jpg'} "
                             f"(expected lfw/<name>/<name>_<4-digit number>.jpg)")


def load_lfw_pairs(root: str | os.PathLike, pairs_file: str | os.PathLike | None = None
                   ) -> tuple[list[FaceSample], list[VerificationPair]]:
    """LFW View 2: the 10 folds of 300 same + 300 different pairs from ``pairs.txt``.

    Parameters
    ----------
    root : path
        Folder with ``pairs.txt`` and the images ``lfw/<name>/<name>_<4-digit>.jpg``
        (``lfw-deepfunneled/`` or ``lfw_funneled/`` are accepted too).
    pairs_file : path, optional
        Another pairs file (default ``<root>/pairs.txt``).

    Returns
    -------
    samples : list of FaceSample
        The distinct images used by the pairs (``image`` is the path; labels per name).
    pairs : list of VerificationPair
        Indices into ``samples``, with ``fold`` 0..9.

    Raises
    ------
    DatasetFormatError
        When ``pairs.txt`` or an image is missing, or a line does not follow the format.
    """
    root = Path(root)
    pf = Path(pairs_file) if pairs_file is not None else root / "pairs.txt"
    if not pf.is_file():
        raise DatasetFormatError(f"LFW pairs file not found: {pf} (expected View 2 pairs.txt)")
    lines = [ln.split() for ln in pf.read_text().splitlines() if ln.strip()]
    try:
        n_folds, n_per = int(lines[0][0]), int(lines[0][1])
    except (IndexError, ValueError) as exc:
        raise DatasetFormatError(f"{pf}: first line must be '<folds> <pairs per class>', got {lines[:1]}") from exc
    body = lines[1:]
    if len(body) != 2 * n_folds * n_per:
        raise DatasetFormatError(f"{pf}: expected {2 * n_folds * n_per} pair lines ({n_folds} folds x 2 x "
                                 f"{n_per}), found {len(body)}")
    samples: list[FaceSample] = []
    index: dict[tuple[str, int], int] = {}
    labels: dict[str, int] = {}

    def item(name: str, num: str, lineno: int) -> int:
        try:
            n = int(num)
        except ValueError as exc:
            raise DatasetFormatError(f"{pf}:{lineno}: image number {num!r} is not an integer") from exc
        key = (name, n)
        if key not in index:
            p = _lfw_image(root, name, n)
            labels.setdefault(name, len(labels))
            index[key] = len(samples)
            samples.append(FaceSample(image=p, label=labels[name], subject=name, index=len(samples), source=str(p)))
        return index[key]

    pairs: list[VerificationPair] = []
    for k, tok in enumerate(body):
        fold, within = divmod(k, 2 * n_per)
        lineno = k + 2
        if len(tok) == 3:
            a, b, same = item(tok[0], tok[1], lineno), item(tok[0], tok[2], lineno), True
        elif len(tok) == 4:
            a, b, same = item(tok[0], tok[1], lineno), item(tok[2], tok[3], lineno), False
        else:
            raise DatasetFormatError(f"{pf}:{lineno}: expected 'name n1 n2' or 'name1 n1 name2 n2', got {' '.join(tok)!r}")
        if same != (within < n_per):
            raise DatasetFormatError(f"{pf}:{lineno}: a {'same' if same else 'different'} pair where the "
                                     f"format puts {'same' if within < n_per else 'different'} pairs")
        pairs.append(VerificationPair(a, b, same, fold, "image"))
    return samples, pairs


def load_lfw_pairs_sklearn(data_home: str | os.PathLike, subset: str = "10_folds", color: bool = True,
                           resize: float = 0.5) -> tuple[list[FaceSample], list[VerificationPair]]:
    """LFW pairs through scikit-learn's ``fetch_lfw_pairs`` (no download).

    ``fetch_lfw_pairs(subset='10_folds')`` returns the 6,000 View 2 pairs in file order (10
    folds of 300 same then 300 different), cropped and resized by scikit-learn (default crop
    ``slice(70, 195), slice(78, 172)`` of the 250 x 250 images).

    Parameters
    ----------
    data_home : path
        scikit-learn's data folder holding ``lfw_home/`` (``lfw_funneled/`` + the pairs files).
    subset, color, resize :
        Passed to ``fetch_lfw_pairs``.

    Returns
    -------
    samples, pairs
        Two samples per pair (images as uint8 arrays; ``label`` -1 and ``subject`` empty:
        scikit-learn keeps only the pair's names in ``target_names``), pairs with folds when
        ``subset='10_folds'`` (600 pairs per fold), else fold 0.

    Raises
    ------
    DatasetFormatError
        When scikit-learn's LFW files are not under ``data_home``.
    """
    from sklearn.datasets import fetch_lfw_pairs

    try:
        bunch = fetch_lfw_pairs(subset=subset, data_home=str(data_home), funneled=True, color=color,
                                resize=resize, download_if_missing=False)
    except OSError as exc:
        raise DatasetFormatError(f"scikit-learn's LFW files not found under {data_home} (expected "
                                 f"lfw_home/lfw_funneled/ and lfw_home/pairs*.txt): {exc}") from exc
    imgs = bunch.pairs  # (P, 2, h, w[, 3]) float in [0, 1] (or 0-255 in older versions)
    scale = 255.0 if imgs.max() <= 1.0 + 1e-6 else 1.0
    imgs = np.clip(np.rint(imgs * scale), 0, 255).astype(np.uint8)
    if imgs.ndim == 4:
        imgs = np.repeat(imgs[..., None], 3, -1)
    samples, pairs = [], []
    per_fold = len(imgs) // 10 if subset == "10_folds" else len(imgs)
    for k, (pair, target) in enumerate(zip(imgs, bunch.target)):
        for j in range(2):
            samples.append(FaceSample(image=pair[j], label=-1, subject="", index=len(samples),
                                      source=f"sklearn-lfw:{k}:{j}"))
        pairs.append(VerificationPair(2 * k, 2 * k + 1, bool(target), k // per_fold, "image"))
    return samples, pairs


# ----------------------------------------------------------------------------- YouTube Faces
def load_ytf(root: str | os.PathLike, splits_file: str | os.PathLike | None = None,
             max_frames_per_video: int | None = None
             ) -> tuple[list[FaceSample], list[VerificationPair], list[str]]:
    """YouTube Faces: frames of the videos used by ``splits.txt`` and its 5,000 video pairs.

    ``splits.txt`` has a header line, then one line per pair:
    ``split, first video, second video, ..., is same`` with videos as ``<name>/<video number>``
    (the columns between hold distances in the original file and are ignored); the split is
    1-based (10 splits of 500 pairs).

    Parameters
    ----------
    root : path
        Folder with ``frame_images_DB/<name>/<video>/<frame>.jpg`` and ``splits.txt``.
    splits_file : path, optional
    max_frames_per_video : int, optional
        Keep evenly spaced frames of long videos.

    Returns
    -------
    samples : list of FaceSample
        Frames; ``sequence`` indexes ``videos``.
    pairs : list of VerificationPair
        ``kind="sequence"``: ``a``, ``b`` index ``videos``; folds 0..9.
    videos : list of str
        ``<name>/<video>`` per sequence id.

    Raises
    ------
    DatasetFormatError
        When ``splits.txt``, a video folder or its frames are missing, or a line is malformed.
    """
    root = Path(root)
    sf = Path(splits_file) if splits_file is not None else root / "splits.txt"
    if not sf.is_file():
        raise DatasetFormatError(f"YTF splits file not found: {sf} (expected splits.txt)")
    frames_root = _require_dir(root / "frame_images_DB", "YTF frame_images_DB/<name>/<video>/<frame>.jpg")
    lines = [ln for ln in sf.read_text().splitlines() if ln.strip()]
    videos: list[str] = []
    vid_index: dict[str, int] = {}
    raw = []
    for lineno, ln in enumerate(lines[1:], start=2):
        tok = [t.strip() for t in ln.split(",")]
        if len(tok) < 4:
            raise DatasetFormatError(f"{sf}:{lineno}: expected 'split, name/video, name/video, ..., same', got {ln!r}")
        try:
            split, same = int(tok[0]), bool(int(float(tok[-1])))
        except ValueError as exc:
            raise DatasetFormatError(f"{sf}:{lineno}: split and is-same must be numbers, got {ln!r}") from exc
        for v in tok[1:3]:
            if not re.fullmatch(r"[^/]+/[^/]+", v):
                raise DatasetFormatError(f"{sf}:{lineno}: video {v!r} is not '<name>/<video>'")
            if v not in vid_index:
                vid_index[v] = len(videos)
                videos.append(v)
        raw.append((vid_index[tok[1]], vid_index[tok[2]], same, split - 1))
    if not raw:
        raise DatasetFormatError(f"{sf}: no pair lines after the header")
    samples: list[FaceSample] = []
    labels: dict[str, int] = {}
    for seq, v in enumerate(videos):
        folder = frames_root / v
        frames = _images_in(_require_dir(folder, "the frames of a YTF video"))
        if not frames:
            raise DatasetFormatError(f"{folder}: no frame images")
        if max_frames_per_video and len(frames) > max_frames_per_video:
            frames = [frames[i] for i in np.linspace(0, len(frames) - 1, max_frames_per_video).round().astype(int)]
        name = v.split("/")[0]
        labels.setdefault(name, len(labels))
        for p in frames:
            samples.append(FaceSample(image=p, label=labels[name], subject=name, sequence=seq,
                                      index=len(samples), source=str(p)))
    pairs = [VerificationPair(a, b, s, f, "sequence") for a, b, s, f in raw]
    return samples, pairs, videos


# ----------------------------------------------------------------------------- 3D scans
#: BU-3DFE's expression codes in file names.
BU3DFE_EXPRESSIONS = {"NE": "neutral", "AN": "anger", "DI": "disgust", "FE": "fear", "HA": "happiness",
                      "SA": "sadness", "SU": "surprise"}


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


def load_bu3dfe(root: str | os.PathLike, mesh_ext: str | None = None) -> list[Scan3D]:
    """BU-3DFE scans: ``<root>/<subject>/<subject>_<EXP><level><race>_F3D.<ext>`` + ``.bnd``.

    The file stem encodes the expression (``NE`` neutral, ``AN`` anger, ``DI`` disgust, ``FE``
    fear, ``HA`` happiness, ``SA`` sadness, ``SU`` surprise) and its intensity level 1-4 (00 for
    neutral), e.g. ``F0001_AN01WH_F3D``. Landmarks (83) come from the ``.bnd`` file with the
    mesh's stem (``index x y z`` per line); a scan without one has ``landmarks=None``.

    Parameters
    ----------
    root : path
    mesh_ext : str, optional
        Mesh extension to read (default: the first of .obj, .ply, .off, .stl, .wrl found).

    Raises
    ------
    DatasetFormatError
        When no scan is found, or a mesh, landmark file or file name is malformed.
    """
    root = _require_dir(Path(root), "BU-3DFE: one folder per subject (F0001, M0001, ...)")
    pat = re.compile(r"^(?P<sub>[FM]\d{4})_(?P<exp>NE|AN|DI|FE|HA|SA|SU)(?P<lvl>\d{2})(?P<race>[A-Z]{2})_F3D$")
    exts = (mesh_ext,) if mesh_ext else MESH_EXTENSIONS
    scans: list[Scan3D] = []
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        stems = {}
        for p in sorted(sub.iterdir()):
            if p.suffix.lower() in exts and p.stem not in stems:
                stems[p.stem] = p
        for stem, p in stems.items():
            m = pat.match(stem)
            if not m:
                raise DatasetFormatError(f"{p}: name does not follow BU-3DFE's "
                                         f"<subject>_<EXP><level><race>_F3D (e.g. F0001_AN01WH_F3D)")
            v, t = read_mesh(p)
            bnd = p.with_suffix(".bnd")
            lm = read_landmarks_3d(bnd) if bnd.is_file() else None
            level = int(m["lvl"])
            scans.append(Scan3D(v, t, lm, m["sub"], BU3DFE_EXPRESSIONS[m["exp"]], level / 4.0, str(p)))
    if not scans:
        raise DatasetFormatError(f"{root}: no BU-3DFE scan found (expected <subject>/<subject>_<EXP><level><race>_F3D"
                                 f" with one of {exts})")
    return scans


def load_micc(root: str | os.PathLike, landmark_suffix: str = ".txt") -> list[Scan3D]:
    """MICC Florence 3D faces: the meshes below each ``subject_XX`` folder.

    Every mesh file found below a subject folder (``Model/frontal1/obj/*.obj`` in the
    distribution) becomes a scan; a text file with the mesh's stem and ``landmark_suffix`` next
    to it (one ``x y z`` per line) supplies its landmarks.

    Raises
    ------
    DatasetFormatError
        When no subject folder or mesh is found, or a file is malformed.
    """
    root = _require_dir(Path(root), "MICC Florence: subject_XX folders holding meshes")
    subjects = sorted(p for p in root.iterdir() if p.is_dir() and p.name.lower().startswith("subject"))
    if not subjects:
        raise DatasetFormatError(f"{root}: no subject_XX folder (expected MICC Florence's layout)")
    scans = []
    for sub in subjects:
        for p in sorted(sub.rglob("*")):
            if p.suffix.lower() in MESH_EXTENSIONS and p.is_file():
                v, t = read_mesh(p)
                lmf = p.with_suffix(landmark_suffix)
                lm = read_landmarks_3d(lmf) if lmf.is_file() else None
                scans.append(Scan3D(v, t, lm, sub.name, "neutral", 0.0, str(p)))
    if not scans:
        raise DatasetFormatError(f"{root}: no mesh ({MESH_EXTENSIONS}) below the subject folders")
    return scans


# ----------------------------------------------------------------------------- network input
def to_network_input(images: np.ndarray) -> np.ndarray:
    """uint8 RGB (..., H, W, 3) -> float32 (..., 3, H, W) in [-1, 1]: ``(x - 127.5) / 128``,
    SphereFace's normalisation."""
    x = np.asarray(images)
    if x.shape[-1] != 3:
        raise ValueError(f"images must have shape (..., H, W, 3), got {x.shape}")
    x = (x.astype(np.float32) - 127.5) / 128.0
    return np.moveaxis(x, -1, -3)
