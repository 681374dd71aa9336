"""68-point facial landmark detection in front of the fitter (paper Sec. 3.3).

The paper detects the 68 iBUG landmarks with FAN (Bulat and Tzimiropoulos, 2017; the
``face-alignment`` package). FAN's weights download on first use; where they are not in torch
hub's checkpoint folder (an offline machine) the detector falls back to dlib's 68-point shape
predictor (Kazemi and Sullivan, 2014; ``dlib`` with the model file shipped by
``face-recognition-models``). Both return the points in iBUG 68-point order, in pixels with the
origin at the top-left corner, u to the right and v down, the convention of
:mod:`disentangled_face.shape.camera`.

Every face in the image comes back (``Detection.faces``: box, score, backend, sorted by
decreasing score); the caller chooses one by index, by box (IoU) or the largest (the default).
The score scales differ per backend (dlib's detection score: 0 at its default threshold, about
1 for a clear frontal face; FAN's mean heat-map peak in [0, 1]), so the face detector's
acceptance threshold (``score_threshold``) and the score below which a chosen face is reported
(``low_score``, a WARNING once per detector) are per backend (``cfg.landmarks``).

The iBUG 68-point scheme itself lives here too: :data:`IBUG_MIRROR` (the left-right
permutation) and :func:`check_landmark_order_3d` (a scan's 68 landmarks against a template
face, used by :func:`disentangled_face.data.scans.load_scan`; the 2D check of the fitter is
:func:`disentangled_face.fitting.quality.check_landmark_order`).

>>> # 'fan' when its weights are cached, else 'dlib' (logged at WARNING); detect() gives a
>>> # Detection (found is False when there is no face), landmarks() the (68, 2) points or raises NoFaceFound
>>> det = LandmarkDetector.from_config(cfg.landmarks)    # doctest: +SKIP
>>> det.backend                                        # doctest: +SKIP
'fan'
>>> d = det.detect(image)                              # doctest: +SKIP
>>> [(f.box, f.score) for f in d.faces]                # doctest: +SKIP
>>> d = det.detect(image, face=(170, 70, 270, 175))    # doctest: +SKIP
>>> points = det.landmarks(image, face=0)              # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..shape.procrustes import apply_similarity, similarity_procrustes

logger = logging.getLogger(__name__)

#: Weight files FAN (2D, large network) and its S3FD face detector load from torch hub's
#: checkpoint folder (``face_alignment.api.models_urls`` and ``detection.sfd``).
FAN_WEIGHT_FILES = ("2DFAN4-11f355bf06.pth.tar", "s3fd-619a316812.pth")

BACKENDS = ("auto", "fan", "dlib")

#: iBUG 68 left-right mirror permutation: ``points[IBUG_MIRROR]`` relabels a set as its mirror image.
IBUG_MIRROR = np.array(
    [16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0,          # jaw
     26, 25, 24, 23, 22, 21, 20, 19, 18, 17,                            # eyebrows
     27, 28, 29, 30, 35, 34, 33, 32, 31,                                # nose
     45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40,                    # eyes
     54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55,                    # outer lip
     64, 63, 62, 61, 60, 67, 66, 65])                                   # inner lip

#: The iBUG 68-point scheme, for error messages.
IBUG_68_ORDER = ("iBUG 68-point order: jaw 0-16 from the subject's right (image left in a frontal photo) to left, "
                 "eyebrows 17-21 (right) and 22-26 (left), nose 27-35, right eye 36-41 (outer corner 36), "
                 "left eye 42-47 (outer corner 45), mouth 48-67")

#: iBUG 68 groups in order (index ranges); menpo's labels name the subject's right side "left"
#: (the image's left), so "left"/"right" names are only a hint: the geometry decides.
IBUG_68_GROUPS = (("jaw", 0, 17), ("right_eyebrow", 17, 22), ("left_eyebrow", 22, 27), ("nose", 27, 36),
                  ("right_eye", 36, 42), ("left_eye", 42, 48), ("mouth", 48, 68))


# ---------------------------------------------------------------------------- the iBUG order in 3D
class LandmarkOrderError(ValueError):
    """Landmarks decisively not in iBUG 68-point order: mirrored, two points exchanged, another scheme."""


def _template_landmarks() -> np.ndarray | None:
    """The ICT-FaceKit mean face's 68 landmarks (mm), or None when the model is not available."""
    global _TEMPLATE
    if _TEMPLATE is None:
        try:
            from ..shape import load_ict_facekit

            m = load_ict_facekit()
            _TEMPLATE = np.asarray(m.landmarks_of(m.mean), np.float64)
        except Exception as exc:  # no model on this machine: the check is skipped, with a word
            logger.warning("3D landmark order not checked: the ICT-FaceKit template is not available (%s)", exc)
            return None
    return _TEMPLATE


_TEMPLATE: np.ndarray | None = None


def _similarity_rmse(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-point distances after the least-squares proper similarity (no reflection) of a onto b,
    and its scale (:func:`disentangled_face.shape.procrustes.similarity_procrustes`)."""
    c, R, t = similarity_procrustes(a, b)
    return np.linalg.norm(apply_similarity(a, c, R, t) - b, axis=-1), float(c)


def check_landmark_order_3d(points: Any, template: Any = None, name: str = "landmarks") -> dict[str, Any]:
    """Check 68 3D landmarks against the iBUG order by aligning them to a template face.

    The points are mapped onto the template (default: the ICT-FaceKit mean face's 68
    landmarks, mm) by the least-squares similarity *without reflection*, under the given order,
    under iBUG's mirror permutation and with the worst-fitting points exchanged in pairs.
    Errors are in the template's inter-ocular distances (36-45).

    Parameters
    ----------
    points : ndarray (68, 3), any units
    template : ndarray (68, 3), optional

    Returns
    -------
    dict
        ``rmse_iod`` (as given), ``rmse_mirrored_iod``, ``swap`` (the best pair or None),
        ``rmse_swapped_iod``, ``scale`` (template units per point unit), ``checked`` (False
        when no template was available).

    Raises
    ------
    LandmarkOrderError
        (a ValueError) Mirrored (left and right swapped: the mirror permutation at least halves
        the error), two points exchanged (their exchange at least halves it), or another
        scheme (an error above 0.3 inter-ocular distances), naming the expected order.
    """
    p = np.asarray(points, np.float64)
    if p.shape != (68, 3):
        raise LandmarkOrderError(f"{name}: the iBUG order check needs (68, 3) points, got {p.shape}")
    if not np.isfinite(p).all():
        raise LandmarkOrderError(f"{name}: landmarks have NaN or inf coordinates")
    T = _template_landmarks() if template is None else np.asarray(template, np.float64)
    if T is None:
        return dict(checked=False, rmse_iod=np.nan, rmse_mirrored_iod=np.nan, swap=None, rmse_swapped_iod=np.nan,
                    scale=np.nan)
    iod = np.linalg.norm(T[36] - T[45])
    r0, scale = _similarity_rmse(p, T)
    e0 = np.sqrt((r0 ** 2).mean()) / iod
    rm, _ = _similarity_rmse(p[IBUG_MIRROR], T)
    em = np.sqrt((rm ** 2).mean()) / iod
    best, es = None, e0
    top = np.argsort(-r0)[:4]
    pairs = {tuple(sorted((int(a), int(b)))) for a in top for b in list(top) + [IBUG_MIRROR[a]] if a != b}
    for a, b in sorted(pairs):
        q = p.copy()
        q[[a, b]] = q[[b, a]]
        r, _ = _similarity_rmse(q, T)
        e = np.sqrt((r ** 2).mean()) / iod
        if e < es:
            best, es = (a, b), e
    out = dict(checked=True, rmse_iod=float(e0), rmse_mirrored_iod=float(em), swap=best, rmse_swapped_iod=float(es),
               scale=float(scale))
    if em <= 0.5 * e0 and e0 - em > 0.03:
        raise LandmarkOrderError(
            f"{name}: the landmarks are mirrored (left and right swapped): aligned to the template face without "
            f"reflection they fit with an RMSE of {e0:.3f} inter-ocular distances, relabelled by iBUG's mirror "
            f"permutation with {em:.3f}. Expected the {IBUG_68_ORDER}; relabel with "
            f"points[data.landmarks.IBUG_MIRROR] if your scheme is mirrored")
    if best is not None and es <= 0.5 * e0 and e0 - es > 0.03:
        raise LandmarkOrderError(
            f"{name}: landmarks {best[0]} and {best[1]} look exchanged: RMSE {e0:.3f} inter-ocular distances "
            f"against the template face as given, {es:.3f} with them exchanged. Expected the {IBUG_68_ORDER}")
    if e0 > 0.3:
        raise LandmarkOrderError(
            f"{name}: the landmarks do not look like 68 points in iBUG order: RMSE {e0:.2f} inter-ocular "
            f"distances against the template face (a correct set: under 0.3). Expected the {IBUG_68_ORDER}")
    return out


class NoFaceFound(RuntimeError):
    """The detector found no face in an image."""


#: Default score below which a chosen face counts as low-confidence, per backend (the scales
#: differ: dlib's detection score is an SVM margin, 0 at its default threshold and about 1 for a
#: clear frontal face; FAN's is the mean heat-map peak over the 68 points, in [0, 1]).
LOW_SCORE = {"dlib": 0.3, "fan": 0.5}

#: The face detector's own acceptance threshold per backend when none is given (dlib's
#: ``adjust_threshold`` of ``run``, S3FD's ``filter_threshold`` inside face_alignment).
DEFAULT_SCORE_THRESHOLD = {"dlib": 0.0, "fan": 0.5}


@dataclass(frozen=True)
class Face:
    """One face found in an image (before landmarks): box, score and which backend found it.

    ``box`` (left, top, right, bottom) pixels; ``score`` on the backend's scale (see
    :data:`LOW_SCORE`); ``backend`` ``'fan'`` or ``'dlib'``; ``points`` (68, 2) pixels, iBUG
    order (FAN computes them for every face; dlib on demand, ``None`` until then).
    """

    box: tuple
    score: float
    backend: str
    points: np.ndarray | None = None

    @property
    def area(self) -> float:
        """Box area, pixels^2."""
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))


@dataclass(frozen=True)
class Detection:
    """The result of detecting landmarks in one image.

    Attributes
    ----------
    found : bool
        Whether a face was found (and chosen).
    points : ndarray (68, 2) or None
        Landmarks in pixels (u right, v down), iBUG order; ``None`` only when ``found`` is False.
    box : tuple (left, top, right, bottom) or None
        Face box in pixels.
    score : float
        Detector confidence (dlib: detection score; FAN: mean heat-map peak), NaN if unknown.
    backend : str
        ``'fan'`` or ``'dlib'``.
    n_faces : int
        Faces found in the image.
    index : int
        Which of ``faces`` was chosen (-1 when none).
    faces : tuple of Face
        Every face found, sorted by decreasing score, each with its box, score and backend.
    low_score : bool
        Whether the chosen face scored below the detector's ``low_score`` for its backend.
    """

    found: bool
    points: np.ndarray | None
    box: tuple | None
    score: float
    backend: str
    n_faces: int = 0
    index: int = -1
    faces: tuple = ()
    low_score: bool = False

    def __post_init__(self):
        if self.found and (self.points is None or np.shape(self.points) != (68, 2)):
            raise ValueError(f"a found detection must carry (68, 2) points, got {np.shape(self.points)}")


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two boxes (left, top, right, bottom), pixels; 0 when disjoint."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def choose_face(faces: Sequence[Face], face: Any = "largest") -> int:
    """Index (into ``faces``) of the face to use.

    Parameters
    ----------
    faces : sequence of Face
    face : 'largest', 'best', int or (left, top, right, bottom)
        ``'largest'`` the largest box (the default of :meth:`LandmarkDetector.detect`),
        ``'best'`` the highest score, an int the index into ``faces`` (sorted by decreasing
        score, negative counts from the end), a box the face of largest IoU with it.

    Returns
    -------
    int
        The index, or -1 when there is no face or no face overlaps the box.

    Raises
    ------
    ValueError
        An index out of range, or ``face`` of another kind.
    """
    if isinstance(face, str):
        if face not in ("largest", "best"):
            raise ValueError(f"face must be 'largest', 'best', an index or a box (l, t, r, b), got {face!r}")
        if not faces:
            return -1
        if face == "best":
            return int(np.argmax([f.score for f in faces]))
        return int(np.argmax([f.area for f in faces]))
    if isinstance(face, (int, np.integer)) and not isinstance(face, bool):
        if not faces:
            return -1
        if not -len(faces) <= face < len(faces):
            raise ValueError(f"face index {int(face)} out of range: {len(faces)} face(s) found")
        return int(face) % len(faces)
    box = np.asarray(face, dtype=np.float64).ravel() if not isinstance(face, bool) else np.zeros(0)
    if box.shape != (4,):
        raise ValueError(f"face must be 'largest', 'best', an index or a box (l, t, r, b), got {face!r}")
    if not faces:
        return -1
    ious = [box_iou(box, f.box) for f in faces]
    return int(np.argmax(ious)) if max(ious) > 0 else -1


# ---------------------------------------------------------------------------- image input
def to_rgb_uint8(image: Any) -> np.ndarray:
    """Convert an image to (H, W, 3) uint8 RGB, the input both detectors take.

    Accepted: grayscale (H, W), grey + alpha (H, W, 2), RGB (H, W, 3), RGBA (H, W, 4), as uint8
    (0-255) or float (0-1). Grey is replicated to three channels; an alpha channel is
    composited over white (:func:`skimage.color.rgba2rgb`'s default), so an opaque RGBA image
    gives exactly its RGB image.

    Raises
    ------
    ValueError
        Another shape (for example (H, W, 5)), an empty image, non-finite values, a float
        image outside [0, 1] or an integer image outside [0, 255].
    """
    img = np.asarray(image)
    if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 2, 3, 4)):
        raise ValueError(f"image must be (H, W), (H, W, 2) grey+alpha, (H, W, 3) RGB or (H, W, 4) RGBA, "
                         f"got shape {img.shape}")
    if img.shape[0] < 1 or img.shape[1] < 1:
        raise ValueError(f"image is empty: shape {img.shape}")
    if img.dtype == np.bool_:
        img = img.astype(np.float64)
    if np.issubdtype(img.dtype, np.floating):
        if not np.isfinite(img).all():
            raise ValueError("image has NaN or inf values")
        if img.min() < 0 or img.max() > 1:
            raise ValueError(f"a float image must lie in [0, 1], got [{img.min():.3g}, {img.max():.3g}]")
        f = img.astype(np.float64)
    elif np.issubdtype(img.dtype, np.integer):
        if img.min() < 0 or img.max() > 255:
            raise ValueError(f"an integer image must lie in [0, 255], got [{img.min()}, {img.max()}]")
        f = img.astype(np.float64) / 255.0
    else:
        raise ValueError(f"image dtype must be uint8 or float, got {img.dtype}")
    if f.ndim == 2:
        f = f[..., None]
    c = f.shape[2]
    if c in (2, 4):  # composite over white
        alpha = f[..., -1:]
        f = f[..., :-1] * alpha + (1.0 - alpha)
    if f.shape[2] == 1:
        f = np.repeat(f, 3, axis=2)
    return np.ascontiguousarray(np.clip(np.rint(f * 255.0), 0, 255).astype(np.uint8))


# ---------------------------------------------------------------------------- backends
def fan_weights_cached(hub_dir: str | os.PathLike | None = None) -> bool:
    """Whether FAN's and S3FD's weight files are in torch hub's checkpoint folder.

    Looks only; never triggers a download.
    """
    if importlib.util.find_spec("face_alignment") is None:
        return False
    if hub_dir is None:
        import torch

        hub_dir = torch.hub.get_dir()
    ckpt = Path(hub_dir) / "checkpoints"
    return all((ckpt / name).is_file() for name in FAN_WEIGHT_FILES)


def dlib_predictor_path() -> Path:
    """Path of dlib's 68-point shape predictor shipped by ``face-recognition-models``.

    The package is located with :func:`importlib.util.find_spec` and never imported: its
    ``__init__`` imports setuptools' ``pkg_resources``, which current setuptools no longer
    ships (and older ones warn about on import). The model file is the one its
    ``pose_predictor_model_location()`` names, ``models/shape_predictor_68_face_landmarks.dat``
    inside the package folder.

    Returns
    -------
    Path
        The ``.dat`` file (about 100 MB), for ``dlib.shape_predictor``.

    Raises
    ------
    FileNotFoundError
        When the package or its model file is missing (``pip install face-recognition-models``).
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("dlib's 68-point predictor needs the 'face-recognition-models' package "
                                "(pip install face-recognition-models)")
    p = Path(list(spec.submodule_search_locations)[0]) / "models" / "shape_predictor_68_face_landmarks.dat"
    if not p.is_file():
        raise FileNotFoundError(f"dlib's 68-point shape predictor not found at {p}")
    return p


class LandmarkDetector:
    """68-point landmark detector: FAN (the paper's) or dlib (offline fallback).

    Every face in an image is found (:meth:`faces`), each with its box, score and backend;
    :meth:`detect` returns the chosen one (by default the largest; or by index, by box (IoU),
    or the best-scoring) with all of them in ``Detection.faces``. When the chosen face scores
    below ``low_score`` for the backend, a WARNING is logged once per detector (it may be
    another person, or not a face) naming the backend, the score and the threshold; later
    low-scoring faces are counted in :attr:`n_low_score` and logged at INFO.

    Parameters
    ----------
    backend : {'auto', 'fan', 'dlib'}
        ``'auto'`` picks FAN when its weights are cached (:func:`fan_weights_cached`), else
        dlib. ``'fan'`` may download FAN's weights (needs the network). The backend in use is
        logged at WARNING when the detector is made.
    device : str
        Torch device for FAN.
    upsample : int
        dlib: times the image is upsampled before face detection (finds smaller faces).
    score_threshold : float, optional
        The face detector's acceptance threshold, on its backend's scale: dlib's
        ``adjust_threshold`` (default 0.0; lower finds weaker faces), FAN's S3FD
        ``filter_threshold`` (default 0.5). ``None``: :data:`DEFAULT_SCORE_THRESHOLD`.
    low_score : float or dict, optional
        Score below which a chosen face is reported as low-confidence: one number for this
        backend, or a dict per backend; default :data:`LOW_SCORE` (dlib 0.3, FAN 0.5).

    Attributes
    ----------
    backend : str
        The backend in use, ``'fan'`` or ``'dlib'``.
    n_low_score : int
        Chosen faces so far that scored below ``low_score``.

    Raises
    ------
    ValueError
        Unknown backend, or a negative ``upsample``.
    """

    def __init__(self, backend: str = "auto", device: str = "cpu", upsample: int = 1,
                 score_threshold: float | None = None, low_score: float | dict | None = None):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if int(upsample) < 0:
            raise ValueError(f"upsample must be >= 0, got {upsample}")
        if backend == "auto":
            backend = "fan" if fan_weights_cached() else "dlib"
            why = "FAN weights cached" if backend == "fan" else "FAN weights not cached; dlib offline fallback"
        else:
            why = "requested"
        self.backend = backend
        self.device = device
        self.upsample = int(upsample)
        self.score_threshold = float(DEFAULT_SCORE_THRESHOLD[backend] if score_threshold is None else score_threshold)
        if isinstance(low_score, dict):
            low = low_score.get(backend, LOW_SCORE[backend])
        else:
            low = LOW_SCORE[backend] if low_score is None else low_score
        self.low_score = float(low)
        self.n_low_score = 0
        self._warned = False
        # which backend runs: INFO here; a low-scoring face's WARNING names the backend too
        logger.info("landmark detector: %s (%s; score threshold %g, low-score warning below %g)",
                       backend, why, self.score_threshold, self.low_score)
        if backend == "fan":
            import face_alignment

            self._fa = face_alignment.FaceAlignment(face_alignment.LandmarksType.TWO_D, device=device,
                                                    flip_input=False, compile=False,
                                                    face_detector_kwargs={"filter_threshold": self.score_threshold})
        else:
            import dlib

            self._face = dlib.get_frontal_face_detector()
            self._shape = dlib.shape_predictor(str(dlib_predictor_path()))

    @classmethod
    def from_config(cls, config: Any, device: str = "cpu") -> "LandmarkDetector":
        """A detector from ``cfg.landmarks`` (:class:`~disentangled_face.config.LandmarksConfig`)."""
        return cls(config.detector, device=device, upsample=config.upsample, score_threshold=config.score_threshold,
                   low_score={"dlib": config.low_score_dlib, "fan": config.low_score_fan})

    def __repr__(self) -> str:
        return (f"LandmarkDetector(backend={self.backend!r}, upsample={self.upsample}, "
                f"score_threshold={self.score_threshold:g}, low_score={self.low_score:g})")

    def faces(self, image: Any) -> list[Face]:
        """Every face the backend finds, sorted by decreasing score.

        Parameters
        ----------
        image : ndarray, (H, W), (H, W, 2), (H, W, 3) or (H, W, 4), uint8 or float in [0, 1]

        Returns
        -------
        list of Face
            Box (pixels), score (backend's scale), backend; FAN's carry their points.

        Raises
        ------
        ValueError
            Unsupported image shape or values (:func:`to_rgb_uint8`).
        """
        return self._faces(to_rgb_uint8(image))

    def detect(self, image: Any, face: Any = "largest") -> Detection:
        """Detect the 68 landmarks of one face: the largest, or the one ``face`` names.

        Parameters
        ----------
        image : ndarray, (H, W), (H, W, 2), (H, W, 3) or (H, W, 4), uint8 or float in [0, 1]
        face : 'largest', 'best', int or (left, top, right, bottom)
            Which face (:func:`choose_face`): the largest box, the highest score, an index into
            the faces sorted by decreasing score, or the face of largest IoU with a box.

        Returns
        -------
        Detection
            ``found=False`` (and ``points=None``) when there is no face, or no face overlaps the
            given box; ``faces`` lists every face found either way.

        Raises
        ------
        ValueError
            Unsupported image shape or values (:func:`to_rgb_uint8`); a face index out of range.
        """
        rgb = to_rgb_uint8(image)
        faces = self._faces(rgb)
        i = choose_face(faces, face)
        if i < 0:
            return Detection(False, None, None, float("nan"), self.backend, len(faces), -1, tuple(faces))
        f = faces[i]
        pts = f.points if f.points is not None else self._dlib_points(rgb, f.box)
        low = bool(f.score < self.low_score)
        if low:
            self.n_low_score += 1
            msg = ("landmark detector (%s): the chosen face (%d of %d, box %s) scored %.3g, below %g for %s; "
                   "it may be another person or not a face: choose the face with detect(image, face=index or box)")
            args = (self.backend, i, len(faces), tuple(round(v, 1) for v in f.box), f.score, self.low_score,
                    self.backend)
            if not self._warned:
                self._warned = True
                logger.warning(msg, *args)
            else:
                logger.info(msg, *args)
        return Detection(True, pts, f.box, f.score, self.backend, len(faces), i, tuple(faces), low)

    def landmarks(self, image: Any, face: Any = "largest") -> np.ndarray:
        """The (68, 2) landmarks (pixels) of the chosen face (see :meth:`detect`).

        Raises
        ------
        NoFaceFound
            When no face is found (or none overlaps the given box).
        """
        d = self.detect(image, face)
        if not d.found:
            raise NoFaceFound(f"no face found by the {self.backend} detector in an image of shape {np.shape(image)}"
                              + (f" overlapping the box {tuple(face)}" if d.n_faces else ""))
        return d.points

    def detect_many(self, images: Sequence[Any], face: Any = "largest") -> list[Detection]:
        """:meth:`detect` for every image (a list, in order); ``face`` may be one choice for all
        or a sequence of one per image."""
        images = list(images)
        if isinstance(face, (list, tuple)) and len(face) == len(images) and not (
                len(face) == 4 and all(isinstance(v, (int, float, np.number)) for v in face)):
            return [self.detect(im, c) for im, c in zip(images, face)]
        return [self.detect(im, face) for im in images]

    # backends
    def _faces(self, rgb: np.ndarray) -> list[Face]:
        return self._faces_fan(rgb) if self.backend == "fan" else self._faces_dlib(rgb)

    def _faces_dlib(self, rgb: np.ndarray) -> list[Face]:
        rects, scores, _ = self._face.run(rgb, self.upsample, self.score_threshold)
        faces = [Face((r.left(), r.top(), r.right(), r.bottom()), float(sc), "dlib") for r, sc in zip(rects, scores)]
        return sorted(faces, key=lambda f: -f.score)

    def _dlib_points(self, rgb: np.ndarray, box: tuple) -> np.ndarray:
        import dlib

        shape = self._shape(rgb, dlib.rectangle(*(int(v) for v in box)))
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)

    def _faces_fan(self, rgb: np.ndarray) -> list[Face]:
        out = self._fa.get_landmarks_from_image(rgb, return_bboxes=True, return_landmark_score=True)
        pts, scores, boxes = out if out is not None else (None, None, None)
        if not pts:
            return []
        faces = [Face(tuple(float(v) for v in b[:4]), float(np.mean(sc)), "fan", np.asarray(p, np.float64)[:, :2])
                 for p, sc, b in zip(pts, scores, boxes)]
        return sorted(faces, key=lambda f: -f.score)


_DEFAULT: dict[tuple, LandmarkDetector] = {}


def get_detector(backend: str = "auto", **kwargs: Any) -> LandmarkDetector:
    """A shared :class:`LandmarkDetector` per backend and options (models load once).

    ``kwargs`` are :class:`LandmarkDetector`'s (``upsample``, ``score_threshold``,
    ``low_score``, ``device``).
    """
    key = (backend, tuple(sorted((k, repr(v)) for k, v in kwargs.items())))
    if key not in _DEFAULT:
        _DEFAULT[key] = LandmarkDetector(backend, **kwargs)
    return _DEFAULT[key]


def detect_landmarks(image: Any, backend: str = "auto", face: Any = "largest") -> Detection:
    """Detect the 68 landmarks of the largest (or the chosen) face in ``image`` (see
    :meth:`LandmarkDetector.detect`)."""
    return get_detector(backend).detect(image, face)
