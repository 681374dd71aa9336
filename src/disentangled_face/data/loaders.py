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

import logging
import os
import re
from pathlib import Path

import numpy as np

from .records import DatasetFormatError, FaceSample, Scan3D, VerificationPair
from .scans import MESH_EXTENSIONS, read_landmarks_3d, read_mesh

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")

__all__ = ["IMAGE_EXTENSIONS", "BU3DFE_EXPRESSIONS", "load_casia_webface", "load_lfw_pairs", "load_lfw_pairs_sklearn",
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
