"""68-point facial landmark detection in front of the fitter (paper Sec. 3.3).

The paper detects the 68 iBUG landmarks with FAN (Bulat and Tzimiropoulos, 2017; the
``face-alignment`` package). FAN's weights download on first use; where they are not in torch
hub's checkpoint folder (an offline machine) the detector falls back to dlib's 68-point shape
predictor (Kazemi and Sullivan, 2014; ``dlib`` with the model file shipped by
``face-recognition-models``). Both return the points in iBUG 68-point order, in pixels with the
origin at the top-left corner, u to the right and v down, the convention of
:mod:`disentangled_face.shape.camera`.

>>> # 'fan' when its weights are cached, else 'dlib'; detect() gives a Detection (found is
>>> # False when there is no face), landmarks() the (68, 2) points or raises NoFaceFound
>>> det = LandmarkDetector()            # doctest: +SKIP
>>> det.backend                         # doctest: +SKIP
'fan'
>>> d = det.detect(image)               # doctest: +SKIP
>>> points = det.landmarks(image)       # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

logger = logging.getLogger(__name__)

#: Weight files FAN (2D, large network) and its S3FD face detector load from torch hub's
#: checkpoint folder (``face_alignment.api.models_urls`` and ``detection.sfd``).
FAN_WEIGHT_FILES = ("2DFAN4-11f355bf06.pth.tar", "s3fd-619a316812.pth")

BACKENDS = ("auto", "fan", "dlib")


class NoFaceFound(RuntimeError):
    """The detector found no face in an image."""


@dataclass(frozen=True)
class Detection:
    """The result of detecting landmarks in one image.

    Attributes
    ----------
    found : bool
        Whether a face was found.
    points : ndarray (68, 2) or None
        Landmarks in pixels (u right, v down), iBUG order; ``None`` only when ``found`` is False.
    box : tuple (left, top, right, bottom) or None
        Face box in pixels.
    score : float
        Detector confidence (dlib: detection score; FAN: mean heat-map peak), NaN if unknown.
    backend : str
        ``'fan'`` or ``'dlib'``.
    n_faces : int
        Faces found in the image (the largest is returned).
    """

    found: bool
    points: np.ndarray | None
    box: tuple | None
    score: float
    backend: str
    n_faces: int = 0

    def __post_init__(self):
        if self.found and (self.points is None or np.shape(self.points) != (68, 2)):
            raise ValueError(f"a found detection must carry (68, 2) points, got {np.shape(self.points)}")


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

    Raises
    ------
    FileNotFoundError
        When the package or its model file is missing (``pip install face-recognition-models``).
    """
    try:  # the package's own locator (needs setuptools' pkg_resources)
        import face_recognition_models

        p = Path(face_recognition_models.pose_predictor_model_location())
    except Exception:
        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError("dlib's 68-point predictor needs the 'face-recognition-models' package "
                                    "(pip install face-recognition-models)") from None
        p = Path(list(spec.submodule_search_locations)[0]) / "models" / "shape_predictor_68_face_landmarks.dat"
    if not p.is_file():
        raise FileNotFoundError(f"dlib's 68-point shape predictor not found at {p}")
    return p


class LandmarkDetector:
    """68-point landmark detector: FAN (the paper's) or dlib (offline fallback).

    Parameters
    ----------
    backend : {'auto', 'fan', 'dlib'}
        ``'auto'`` picks FAN when its weights are cached (:func:`fan_weights_cached`), else
        dlib, and logs which. ``'fan'`` may download FAN's weights (needs the network).
    device : str
        Torch device for FAN.
    upsample : int
        dlib: times the image is upsampled before face detection (finds smaller faces).

    Attributes
    ----------
    backend : str
        The backend in use, ``'fan'`` or ``'dlib'``.

    Raises
    ------
    ValueError
        Unknown backend.
    """

    def __init__(self, backend: str = "auto", device: str = "cpu", upsample: int = 1):
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if backend == "auto":
            backend = "fan" if fan_weights_cached() else "dlib"
            logger.info("landmark detector: %s (%s)", backend,
                        "FAN weights cached" if backend == "fan" else "FAN weights not cached; dlib offline fallback")
        self.backend = backend
        self.device = device
        self.upsample = int(upsample)
        if backend == "fan":
            import face_alignment

            self._fa = face_alignment.FaceAlignment(face_alignment.LandmarksType.TWO_D, device=device,
                                                    flip_input=False, compile=False)
        else:
            import dlib

            self._face = dlib.get_frontal_face_detector()
            self._shape = dlib.shape_predictor(str(dlib_predictor_path()))

    def __repr__(self) -> str:
        return f"LandmarkDetector(backend={self.backend!r})"

    def detect(self, image: Any) -> Detection:
        """Detect the 68 landmarks of the largest face.

        Parameters
        ----------
        image : ndarray, (H, W), (H, W, 2), (H, W, 3) or (H, W, 4), uint8 or float in [0, 1]

        Returns
        -------
        Detection
            ``found=False`` (and ``points=None``) when there is no face.

        Raises
        ------
        ValueError
            Unsupported image shape or values (:func:`to_rgb_uint8`).
        """
        rgb = to_rgb_uint8(image)
        return self._detect_fan(rgb) if self.backend == "fan" else self._detect_dlib(rgb)

    def landmarks(self, image: Any) -> np.ndarray:
        """The (68, 2) landmarks (pixels) of the largest face.

        Raises
        ------
        NoFaceFound
            When no face is found.
        """
        d = self.detect(image)
        if not d.found:
            raise NoFaceFound(f"no face found by the {self.backend} detector in an image of shape {np.shape(image)}")
        return d.points

    def detect_many(self, images: Sequence[Any]) -> list[Detection]:
        """:meth:`detect` for every image (a list, in order)."""
        return [self.detect(im) for im in images]

    # backends
    def _detect_dlib(self, rgb: np.ndarray) -> Detection:
        import dlib

        rects, scores, _ = self._face.run(rgb, self.upsample, 0.0)
        if len(rects) == 0:
            return Detection(False, None, None, float("nan"), "dlib", 0)
        areas = [r.width() * r.height() for r in rects]
        i = int(np.argmax(areas))
        r = rects[i]
        shape = self._shape(rgb, dlib.rectangle(r.left(), r.top(), r.right(), r.bottom()))
        pts = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)
        return Detection(True, pts, (r.left(), r.top(), r.right(), r.bottom()), float(scores[i]), "dlib", len(rects))

    def _detect_fan(self, rgb: np.ndarray) -> Detection:
        out = self._fa.get_landmarks_from_image(rgb, return_bboxes=True, return_landmark_score=True)
        pts, scores, boxes = out if out is not None else (None, None, None)
        if not pts:
            return Detection(False, None, None, float("nan"), "fan", 0)
        areas = [(b[2] - b[0]) * (b[3] - b[1]) for b in boxes]
        i = int(np.argmax(areas))
        p = np.asarray(pts[i], dtype=np.float64)[:, :2]
        return Detection(True, p, tuple(float(v) for v in boxes[i][:4]), float(np.mean(scores[i])), "fan", len(pts))


_DEFAULT: dict[str, LandmarkDetector] = {}


def get_detector(backend: str = "auto") -> LandmarkDetector:
    """A shared :class:`LandmarkDetector` per backend (models load once)."""
    if backend not in _DEFAULT:
        _DEFAULT[backend] = LandmarkDetector(backend)
    return _DEFAULT[backend]


def detect_landmarks(image: Any, backend: str = "auto") -> Detection:
    """Detect the 68 landmarks of the largest face in ``image`` (see :class:`LandmarkDetector`)."""
    return get_detector(backend).detect(image)
