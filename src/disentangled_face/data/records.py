"""One record schema for face data, shared by the synthetic protocols and the real datasets.

Every loader of :mod:`disentangled_face.data.loaders` (CASIA-WebFace, LFW, YouTube Faces,
BU-3DFE, MICC Florence) and every synthetic protocol (:class:`~disentangled_face.data.synthset.SynthSet`)
returns these three record types, so each chapter runs on either:

* :class:`FaceSample`: one face image (array or file path) with its subject label and what is
  known about it (landmarks, codes, pose: ``None`` for real data);
* :class:`VerificationPair`: two images (or two videos) and whether they show one person,
  with the cross-validation fold;
* :class:`Scan3D`: a 3D face scan (mesh in mm with optional 3D landmarks).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DatasetFormatError", "FaceSample", "VerificationPair", "Scan3D", "read_image"]


class DatasetFormatError(ValueError):
    """A dataset file is missing or malformed (the message names the path and what was expected)."""


# ----------------------------------------------------------------------------- records
@dataclass
class FaceSample:
    """One face image and what is known about it.

    Attributes
    ----------
    image : ndarray (H, W, 3) uint8, or path
        The image, or the file to read it from (:meth:`load_image`).
    label : int
        Subject, contiguous 0..K-1 within its set.
    subject : str
        Subject name or global id.
    landmarks : ndarray (68, 2), optional
        Pixels (u right, v down).
    visible : ndarray (68,) bool, optional
    alpha_id, alpha_exp : ndarray, optional
        Ground-truth codes (synthetic data only).
    yaw, pitch, roll : float, optional
        Radians.
    scale : float, optional
        f, pixels per mm.
    trans : ndarray (2,), optional
        t, pixels.
    sequence : int, optional
        Video (sequence) id for video datasets.
    index : int
        Position in its set.
    source : str
        Where it came from (file path or ``protocol:index``).
    """

    image: Any
    label: int
    subject: str
    landmarks: np.ndarray | None = None
    visible: np.ndarray | None = None
    alpha_id: np.ndarray | None = None
    alpha_exp: np.ndarray | None = None
    yaw: float | None = None
    pitch: float | None = None
    roll: float | None = None
    scale: float | None = None
    trans: np.ndarray | None = None
    sequence: int | None = None
    index: int = 0
    source: str = ""

    def load_image(self) -> np.ndarray:
        """The image as (H, W, 3) uint8 RGB (read from disk when ``image`` is a path).

        Raises
        ------
        DatasetFormatError
            When the file is missing or not a readable image.
        """
        if isinstance(self.image, np.ndarray):
            return self.image
        return read_image(self.image)


@dataclass
class VerificationPair:
    """Two items and whether they show the same person (LFW/YTF protocol).

    Attributes
    ----------
    a, b : int
        Indices into the set's samples (``kind == "image"``) or sequence ids (``"sequence"``).
    same : bool
    fold : int
        Cross-validation fold, 0..9.
    kind : str
        ``"image"`` or ``"sequence"``.
    """

    a: int
    b: int
    same: bool
    fold: int
    kind: str = "image"


@dataclass
class Scan3D:
    """A 3D face scan.

    Attributes
    ----------
    vertices : ndarray (n, 3), mm
    triangles : ndarray (m, 3), int
    landmarks : ndarray (k, 3), mm, optional
        3D landmarks (83 for BU-3DFE's ``.bnd``; 68 when from a morphable model).
    subject : str
    expression : str
        Expression name (``"neutral"``, ``"happiness"``, ... as :data:`disentangled_face.data.expressions.EXPRESSIONS`).
    intensity : float
        0 for neutral, 1..4 in BU-3DFE's levels mapped to 0.25..1.
    source : str
    units : str
        The units the file was assumed to be in (``"mm"``, ``"cm"``, ``"m"``, or ``"unknown"``
        when it could not be told: then the coordinates are the file's, unscaled).
    scale_to_mm : float
        The factor the file's coordinates were multiplied by to give ``vertices`` and
        ``landmarks`` (1 for mm and unknown).
    """

    vertices: np.ndarray
    triangles: np.ndarray
    landmarks: np.ndarray | None
    subject: str
    expression: str = "neutral"
    intensity: float = 0.0
    source: str = ""
    units: str = "mm"
    scale_to_mm: float = 1.0


# ----------------------------------------------------------------------------- image files
def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB (Pillow).

    Raises
    ------
    DatasetFormatError
        When the file is missing or not a readable image.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise DatasetFormatError(f"image file not found: {path}")
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise DatasetFormatError(f"{path}: not a readable image ({exc})") from exc
