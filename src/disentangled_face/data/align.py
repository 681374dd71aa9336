"""Aligning a face in a photograph to the networks' 112 x 96 crop (SphereFace-style, 5 points).

The paper detects faces with MTCNN and aligns them to 112 x 96 as SphereFace does: the
similarity transform (scale, rotation, translation) that maps five points of the face (the
two eye centres, the nose tip, the two mouth corners) onto fixed reference points of the crop.
:func:`align_face` does the same from 68 iBUG landmarks (eye centres = means of 36-41 and
42-47, nose tip 30, mouth corners 48 and 54, :func:`~.generator.five_points`), estimated
with :class:`skimage.transform.SimilarityTransform` (least squares, Umeyama 1991) and
applied with :func:`skimage.transform.warp` (bilinear).

Two framings (:func:`crop_reference`):

* ``"sphereface"``: SphereFace's reference points for 96 x 112 (:data:`~.generator.SPHEREFACE_REFERENCE`,
  from ``face_align_demo.m`` of https://github.com/wy1iu/sphereface, ``preprocess/code``);
* ``"synthetic"`` (the default): the framing of this book's **synthetic training crops**,
  which is *not* SphereFace's. The generator (:mod:`.generator`) does not warp a rendered face
  onto the references; it renders with the scale ``f = 0.85 f0`` (``f0`` the least-squares
  scale mapping the mean face's frontal five points onto SphereFace's references;
  ``PoseConfig.scale_factor`` 0.85 keeps the chin inside the crop) and a translation that puts
  the five projected points' centroid on the references' centroid. The faces the networks
  were trained on are therefore about 15 % smaller than SphereFace's, about the same centre.
  The synthetic reference points are the mean face's five points under that camera, frontal:
  a frontal face of average shape aligned to them is framed as a training image.

Pixel coordinates: landmarks are (u, v) = (column, row) in pixels. ``pixel_centre`` says where
the centre of pixel (0, 0) lies in the landmarks' convention: 0 for dlib, FAN and scikit-image
(pixel centres on integers), 0.5 for this package's renderer (``landmarks_true`` of
:func:`~.generator.render_faces`). The crop's landmarks are returned in the renderer's
convention (0.5), the one of the synthetic training landmarks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import PoseConfig
from ..shape import camera
from .generator import IMAGE_SIZE, SPHEREFACE_REFERENCE, centring_translation, five_points, reference_scale

__all__ = ["FRAMINGS", "AlignedFace", "crop_reference", "align_face"]

#: The framings :func:`crop_reference` knows.
FRAMINGS = ("synthetic", "sphereface")


def crop_reference(model: Any = None, framing: str = "synthetic") -> np.ndarray:
    """The five reference points (5, 2) of the 112 x 96 crop, pixels (u, v), renderer convention.

    Order: left eye centre, right eye centre (image left/right: iBUG 36-41 then 42-47), nose
    tip, left and right mouth corners.

    Parameters
    ----------
    model : MorphableModel
        Required for ``"synthetic"``: the mean face whose five points define the framing.
    framing : {"synthetic", "sphereface"}
        See the module docstring.

    Raises
    ------
    ValueError
        An unknown framing, or ``"synthetic"`` without a 68-landmark model.
    """
    if framing == "sphereface":
        return SPHEREFACE_REFERENCE.copy()
    if framing != "synthetic":
        raise ValueError(f"framing must be one of {FRAMINGS}, got {framing!r}")
    if model is None or len(getattr(model, "landmarks", ())) != 68:
        raise ValueError("framing='synthetic' needs the morphable model (68 landmarks) of the training crops")
    lm3 = np.asarray(model.landmarks_of(model.mean[None]), np.float64)    # (1, 68, 3) mm
    R = np.eye(3)[None]
    f = np.array([PoseConfig().scale_factor * reference_scale(model)])
    t = centring_translation(lm3, R, f)
    return camera.project(five_points(lm3), R, f, t)[0]


@dataclass
class AlignedFace:
    """A face warped to the networks' crop.

    Attributes
    ----------
    image : ndarray (H, W, 3) uint8
        The crop (112 x 96 by default), RGB.
    landmarks : ndarray (68, 2) float64
        The 68 landmarks mapped into the crop, pixels, renderer convention (pixel (0, 0)'s
        centre at (0.5, 0.5)).
    matrix : ndarray (3, 3)
        The similarity, homogeneous, from source-image pixels (scikit-image convention, centres
        on integers) to crop pixels (same convention).
    reference : ndarray (5, 2)
        The crop's five reference points (renderer convention).
    residual_px : ndarray (5,)
        Distance between each mapped five-point and its reference, crop pixels (the
        similarity cannot fit five points of a turned or unusual face exactly).
    scale : float
        Crop pixels per source pixel.
    framing : str
    """

    image: np.ndarray
    landmarks: np.ndarray
    matrix: np.ndarray
    reference: np.ndarray
    residual_px: np.ndarray
    scale: float
    framing: str


def align_face(image, landmarks68, model: Any = None, framing: str = "synthetic",
               size: tuple[int, int] = IMAGE_SIZE, pixel_centre: float = 0.0) -> AlignedFace:
    """Warp a face to the networks' crop with a 5-point similarity from its 68 landmarks.

    Parameters
    ----------
    image : ndarray (H, W, 3), uint8 RGB (or float in [0, 1])
    landmarks68 : array_like (68, 2)
        iBUG-68 landmarks of the face, pixels (u, v) (e.g. ``data.landmarks.detect_landmarks``).
    model : MorphableModel
        For the ``"synthetic"`` framing (:func:`crop_reference`).
    framing : {"synthetic", "sphereface"}
    size : (H, W)
        Crop size in pixels; the reference points are for 112 x 96 and are scaled with it.
    pixel_centre : float
        The centre of pixel (0, 0) in the landmarks' convention: 0 for detectors (dlib, FAN),
        0.5 for the package's renderer.

    Returns
    -------
    AlignedFace

    Raises
    ------
    ValueError
        Landmarks that are not (68, 2) and finite, an image that is not (H, W, 3), an unknown
        framing, or five points on which no similarity can be estimated (coincident points).

    Notes
    -----
    :meth:`skimage.transform.SimilarityTransform.from_estimate` (least squares, Umeyama;
    rotations only, no reflection) and :func:`skimage.transform.warp` (bilinear, border pixels
    repeated outside the photograph).
    """
    from skimage.transform import SimilarityTransform, warp

    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3) RGB, got {img.shape}")
    L = np.asarray(landmarks68, np.float64)
    if L.shape != (68, 2) or not np.isfinite(L).all():
        raise ValueError(f"landmarks68 must be finite (68, 2) pixels, got shape {L.shape}")
    ref = crop_reference(model, framing) * np.array([size[1] / IMAGE_SIZE[1], size[0] / IMAGE_SIZE[0]])
    src = five_points(L[None])[0] - pixel_centre          # scikit-image convention (centres on integers)
    dst = ref - 0.5
    tform = SimilarityTransform.from_estimate(src, dst)
    if not tform:
        raise ValueError(f"no similarity could be estimated from the five points {src.tolist()}")
    img_f = img.astype(np.float64) / (255.0 if img.dtype == np.uint8 else 1.0)
    crop = warp(img_f, tform.inverse, output_shape=tuple(size), order=1, mode="edge")
    crop = np.clip(np.round(crop * 255.0), 0, 255).astype(np.uint8)
    lm = tform(L - pixel_centre) + 0.5
    res = np.linalg.norm(tform(src) - dst, axis=1)
    return AlignedFace(crop, lm, np.asarray(tform.params), ref, res, float(tform.scale), framing)
