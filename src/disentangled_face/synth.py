"""Synthetic face populations rendered from the morphable model, and the paper's protocols.

The paper trains on CASIA-WebFace and tests on LFW, YTF (verification), BU-3DFE and MICC
(3D reconstruction). None of them may be redistributed with this book, so every chapter can
run on *synthetic analogues* built here from the morphable model, where the ground truth the
real datasets lack (the exact 3D shape of every image) is known.

Generator
---------
* A **subject** (global id ``g``) is ``alpha_id ~ N(0, I)`` (the model prior, Eq. 3) and a
  per-subject **albedo**: a skin tone, smooth low-frequency colour variation over the mesh
  (random Fourier features of the vertex positions), lip and cheek colour, eyebrows and a
  hairline with a hair colour. Both shape and texture carry identity. Everything about a
  subject is drawn from ``numpy.random.SeedSequence([seed, g])``, so a subject is the same in
  every protocol it appears in, and protocols use disjoint ranges of ``g``
  (:data:`SUBJECT_OFFSETS`): test identities never occur in training.
* An **image** of a subject has its own expression ``alpha_exp`` (sparse ICT blendshape
  weights in [0, 1]: one of :data:`EXPRESSIONS` at a random intensity plus a few random
  blendshapes), pose (yaw in [-90, 90] deg from a truncated normal, pitch and roll in smaller
  ranges), scale ``f`` (pixels per mm) and translation ``t`` (pixels), lighting (ambient +
  one directional Lambertian light, random direction, strength and tint) and a background
  gradient. The ground-truth 3D shape is ``model.shape(alpha_id, alpha_exp)`` (mm).
* **Camera** (shared convention, :mod:`disentangled_face.camera`, Eq. 6):
  ``R = rotation_from_euler(yaw, pitch, roll)``, landmarks
  ``camera.project(model.landmarks_of(shape), R, f, t)``. The crop imitates SphereFace's
  pre-processing (112 x 96, face centred): ``f`` is ``f0 * exp(N(0, scale_std))`` with ``f0``
  the scale that maps the mean face's five alignment points (eye centres, nose tip, mouth
  corners) onto SphereFace's reference points, times ``scale_factor`` (0.85, which keeps the
  chin inside the crop); ``t`` puts the centroid of the five projected
  points at the reference centroid, plus ``N(0, trans_std_px)``.
* **Landmarks**: the 68 projected landmark vertices (``landmarks_true``) and a copy with
  optional Gaussian "detector" noise of ``landmark_noise_px`` (``landmarks``).
  ``visible`` is a z-buffer test (:func:`disentangled_face.render.visibility`). At large yaw
  the jawline points (0-16) remain the *projected 3D vertices* of the jaw: the far-side ones
  are hidden behind the face (``visible`` false) and the near-side ones lie inside the face
  rather than on its silhouette. A 2D detector instead returns the *silhouette contour*
  there; fitters that use detected jawline points at large yaw should account for that.

HDF5 layout (one file per protocol, ``data/synth/<protocol>-<config_hash>.h5``)
------------------------------------------------------------------------------
All protocols (N images):

=====================  ==================  ==========================================
dataset                shape, dtype        meaning
=====================  ==================  ==========================================
``images``             (N, 112, 96, 3) u8  RGB crops (lzf-compressed, chunked)
``landmarks``          (N, 68, 2) f32      pixels (u right, v down), with detector noise
``landmarks_true``     (N, 68, 2) f32      exact projections of the landmark vertices
``visible``            (N, 68) bool        z-buffer visibility of each landmark
``label``              (N,) i64            subject, contiguous 0..K-1 within the protocol
``subject_id``         (N,) i64            global subject id (seeds the subject)
``alpha_id``           (N, k_id) f32       identity code (standard normal prior)
``alpha_exp``          (N, k_exp) f32      expression code (blendshape weights)
``yaw, pitch, roll``   (N,) f32            radians (``camera.rotation_from_euler``)
``scale``              (N,) f32            f, pixels per mm
``trans``              (N, 2) f32          t = (t_u, t_v), pixels
=====================  ==================  ==========================================

Pair protocols (``lfw-like``, ``ytf-like``) add ``pairs`` (P, 2) i64, ``same`` (P,) bool and
``fold`` (P,) i64 (10 folds). For ``lfw-like`` pairs index images; for ``ytf-like`` they index
sequences: ``sequence`` (N,) i64 gives each frame's sequence and ``frame`` (N,) its position.
``bu3dfe-like`` adds ``expression`` (N,) ASCII names (keys of :data:`EXPRESSIONS`),
``intensity`` (N,) f32 and ``sweep`` (N,) bool (true for the neutral yaw sweep, whose yaw is
the ``yaw`` column). ``micc-like`` adds ``blur_sigma`` and ``noise_std`` (N,) f32. The file's
attributes hold ``protocol``, ``config`` (JSON of the generating config), ``model`` (the model
name), ``generator_version`` and ``n_subjects``.

A file is written to a temporary name and moved into place atomically
(:func:`disentangled_face.paths.atomic_path`), so an interrupted build never leaves a file that
looks complete. Identical configs give identical arrays (every random draw is seeded per
protocol, per subject or per image, independently of batching and worker count).
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import camera
from .paths import atomic_path, config_hash, data_dir

#: The synthetic protocols (analogues of CASIA-WebFace, LFW, YTF, BU-3DFE, MICC).
PROTOCOLS = ("train", "lfw-like", "ytf-like", "bu3dfe-like", "micc-like")

#: Bumped whenever the generator's output for a given config changes (part of the cache key).
GENERATOR_VERSION = 1

#: First global subject id of each protocol: the id ranges, hence the identities, are disjoint.
SUBJECT_OFFSETS = {"train": 0, "lfw-like": 10_000_000, "ytf-like": 20_000_000,
                   "bu3dfe-like": 30_000_000, "micc-like": 40_000_000}
_PROTOCOL_CODE = {name: i + 1 for i, name in enumerate(PROTOCOLS)}

#: SphereFace's five reference points (left eye, right eye, nose tip, left and right mouth
#: corners) in the 96 x 112 crop, pixels (u, v) as in its ``face_align_demo.m``.
SPHEREFACE_REFERENCE = np.array([[30.2946, 51.6963], [65.5318, 51.5014], [48.0252, 71.7366],
                                 [33.5493, 92.3655], [62.7299, 92.2041]], np.float64)
IMAGE_SIZE = (112, 96)

#: The seven BU-3DFE expressions as ICT-FaceKit (ARKit-style) blendshape weights at full
#: intensity, following the prototypical FACS action units of each emotion (Ekman & Friesen):
#: AU1 inner brow raiser = browInnerUp, AU2 outer brow raiser = browOuterUp, AU4 brow lowerer =
#: browDown, AU5 upper lid raiser = eyeWide, AU6 cheek raiser = cheekSquint, AU7 lid tightener
#: = eyeSquint, AU9 nose wrinkler = noseSneer, AU10 upper lip raiser = mouthUpperUp, AU12 lip
#: corner puller = mouthSmile, AU15 lip corner depressor = mouthFrown, AU16 lower lip depressor
#: = mouthLowerDown, AU20 lip stretcher = mouthStretch, AU23/24 lip tightener/pressor =
#: mouthPress, AU26 jaw drop = jawOpen.
EXPRESSIONS: dict[str, dict[str, float]] = {
    "neutral": {},
    # AU6 + AU12
    "happiness": {"mouthSmile_L": 1.0, "mouthSmile_R": 1.0, "cheekSquint_L": 0.7, "cheekSquint_R": 0.7,
                  "eyeSquint_L": 0.3, "eyeSquint_R": 0.3, "mouthDimple_L": 0.3, "mouthDimple_R": 0.3},
    # AU9 + AU10 + AU15 (+ AU4)
    "disgust": {"noseSneer_L": 1.0, "noseSneer_R": 1.0, "mouthUpperUp_L": 0.8, "mouthUpperUp_R": 0.8,
                "mouthFrown_L": 0.4, "mouthFrown_R": 0.4, "browDown_L": 0.5, "browDown_R": 0.5,
                "cheekSquint_L": 0.3, "cheekSquint_R": 0.3},
    # AU1 + AU2 + AU4 + AU5 + AU20 + AU26
    "fear": {"browInnerUp_L": 1.0, "browInnerUp_R": 1.0, "browOuterUp_L": 0.4, "browOuterUp_R": 0.4,
             "browDown_L": 0.3, "browDown_R": 0.3, "eyeWide_L": 1.0, "eyeWide_R": 1.0,
             "mouthStretch_L": 0.8, "mouthStretch_R": 0.8, "jawOpen": 0.25},
    # AU4 + AU5 + AU7 + AU23/24
    "anger": {"browDown_L": 1.0, "browDown_R": 1.0, "eyeWide_L": 0.3, "eyeWide_R": 0.3,
              "eyeSquint_L": 0.6, "eyeSquint_R": 0.6, "mouthPress_L": 0.8, "mouthPress_R": 0.8,
              "noseSneer_L": 0.3, "noseSneer_R": 0.3},
    # AU1 + AU2 + AU5 + AU26
    "surprise": {"browInnerUp_L": 1.0, "browInnerUp_R": 1.0, "browOuterUp_L": 1.0, "browOuterUp_R": 1.0,
                 "eyeWide_L": 0.8, "eyeWide_R": 0.8, "jawOpen": 0.6, "mouthFunnel": 0.2},
    # AU1 + AU4 + AU15 (+ AU17)
    "sadness": {"browInnerUp_L": 0.9, "browInnerUp_R": 0.9, "browDown_L": 0.3, "browDown_R": 0.3,
                "mouthFrown_L": 1.0, "mouthFrown_R": 1.0, "mouthShrugLower": 0.5,
                "eyeLookDown_L": 0.3, "eyeLookDown_R": 0.3},
}

#: Defaults of the generator (overridden by the profile's ``synth:`` section).
DEFAULTS: dict[str, Any] = {
    "seed": 2018,
    "landmark_noise_px": 0.0,
    "batch": 64,
    "workers": 1,
    "pose": {"scale_factor": 0.85, "yaw_std_deg": 35.0, "yaw_max_deg": 90.0, "pitch_std_deg": 8.0, "pitch_max_deg": 25.0,
             "roll_std_deg": 5.0, "roll_max_deg": 20.0, "scale_std": 0.05, "trans_std_px": 2.0},
    "expression": {"neutral_prob": 0.25, "intensity": [0.3, 1.0], "random_active": 3, "random_max": 0.5},
    "light": {"ambient": [0.3, 0.6], "diffuse": [0.3, 0.8], "azimuth_deg": 70.0,
              "elevation_deg": [-30.0, 60.0], "tint": 0.08},
    "protocols": {},
}
#: Keys of the ``synth:`` section that do not change the generated data (not hashed).
_RUNTIME_KEYS = ("batch", "workers")


# ----------------------------------------------------------------------------- expressions
def expression_vector(model, name: str, intensity: float = 1.0) -> np.ndarray:
    """The blendshape weights ``alpha_exp`` (k_exp,) of an :data:`EXPRESSIONS` entry.

    Parameters
    ----------
    model : MorphableModel
        Its ``exp_names`` must contain the blendshape names of the expression.
    name : str
        A key of :data:`EXPRESSIONS`.
    intensity : float
        Multiplier in [0, 1] of the full-intensity weights.

    Raises
    ------
    ValueError
        Unknown expression, or the model lacks one of its blendshapes (e.g. a PCA expression
        model such as BFM + FaceWarehouse).
    """
    if name not in EXPRESSIONS:
        raise ValueError(f"unknown expression {name!r}: expected one of {list(EXPRESSIONS)}")
    idx = {n: i for i, n in enumerate(model.exp_names)}
    out = np.zeros(model.n_exp, np.float32)
    for bs, w in EXPRESSIONS[name].items():
        if bs not in idx:
            raise ValueError(f"expression {name!r} needs blendshape {bs!r}, which model {model.name!r} "
                             f"does not have (expected ICT-FaceKit / ARKit blendshape names)")
        out[idx[bs]] = w * intensity
    return out


def _has_expression_names(model) -> bool:
    names = set(model.exp_names)
    return all(bs in names for e in EXPRESSIONS.values() for bs in e)


# ----------------------------------------------------------------------------- albedo
class AlbedoModel:
    """Per-subject skin albedo over the mesh (n, 3), RGB in [0, 1].

    Region weights (lips, eyebrows, cheeks, scalp) are computed once from the mean shape and
    the 68 landmarks; a subject then draws a skin tone, region colours, a hairline and smooth
    colour variation (random Fourier features of the mean-shape vertex positions, wavelengths
    50-150 mm). Source: a simple procedural texture written for this book (no texture model
    ships with ICT-FaceKit's face area).
    """

    def __init__(self, model) -> None:
        P = np.asarray(model.mean, np.float64)
        lm = P[np.asarray(model.landmarks)]
        self.P = P
        self.n = P.shape[0]
        # lips: inside the outer lip contour (frontal xy) or near it, on the front of the face
        lips = lm[48:60]
        d_lips = _polyline_distance(P, lips, closed=True)
        from matplotlib.path import Path as MplPath

        inside = MplPath(lips[:, :2]).contains_points(P[:, :2]) & (P[:, 2] > lips[:, 2].min() - 10)
        self.w_lips = np.where(inside, 1.0, np.exp(-0.5 * (d_lips / 1.5) ** 2))
        # eyebrows: a band around each brow polyline, thicker at the inner end
        d_brow = np.minimum(_polyline_distance(P, lm[17:22]), _polyline_distance(P, lm[22:27]))
        self.w_brow = 1.0 / (1.0 + np.exp((d_brow - 4.0) / 0.8))
        # cheeks: blobs below the eyes
        centres = np.stack([(lm[1] + lm[31] + lm[48]) / 3, (lm[15] + lm[35] + lm[54]) / 3])
        dc = np.linalg.norm(P[:, None] - centres[None], axis=-1).min(1)
        self.w_cheek = np.exp(-0.5 * (dc / 18.0) ** 2)
        # scalp reference heights: the brows' top and the nose-tip depth
        self.brow_y = float(lm[17:27, 1].max())
        self.face_z = float(lm[30, 2])

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        """One subject's albedo (n, 3) float32 from ``rng``."""
        P = self.P
        tone = rng.uniform(0.0, 1.0)
        light_skin, dark_skin = np.array([0.93, 0.76, 0.64]), np.array([0.38, 0.25, 0.18])
        skin = (1 - tone) * light_skin + tone * dark_skin
        skin = skin * np.exp(rng.normal(0, 0.04, 3))
        alb = np.tile(skin, (self.n, 1))
        # smooth variation: random Fourier features
        k = 8
        wavelength = rng.uniform(50.0, 150.0, k)
        dirs = rng.normal(size=(k, 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        phase = rng.uniform(0, 2 * np.pi, k)
        feats = np.cos(P @ (dirs.T * (2 * np.pi / wavelength)) + phase)  # (n, k)
        amp = rng.normal(0, 0.05, (k, 3))
        alb *= np.exp(feats @ amp / np.sqrt(k) * 2.0)
        # cheeks and lips
        alb *= 1 + self.w_cheek[:, None] * rng.uniform(0.0, 0.12) * np.array([0.6, -0.4, -0.4])
        lip = skin * np.array([0.95, 0.62, 0.62]) * rng.uniform(0.8, 1.0)
        alb = alb * (1 - self.w_lips[:, None]) + lip * self.w_lips[:, None]
        # hair colour (black, brown, blond, red, grey)
        hair_palette = np.array([[0.06, 0.05, 0.04], [0.22, 0.14, 0.08], [0.55, 0.42, 0.25],
                                 [0.45, 0.20, 0.10], [0.55, 0.55, 0.55]])
        hair = hair_palette[rng.choice(5, p=[0.35, 0.3, 0.15, 0.08, 0.12])] * np.exp(rng.normal(0, 0.1, 3))
        brow_strength = rng.uniform(0.5, 0.95)
        wb = self.w_brow[:, None] * brow_strength
        alb = alb * (1 - wb) + hair * wb
        # scalp: above a hairline (height above the brows, curving down at the temples) and
        # toward the back of the head; some subjects are bald
        if rng.uniform() > 0.15:
            line = self.brow_y + rng.uniform(20.0, 45.0) - rng.uniform(0.0, 0.006) * P[:, 0] ** 2
            back = self.face_z - rng.uniform(95.0, 120.0)
            s = np.maximum((P[:, 1] - line) / 4.0, (back - P[:, 2]) / 6.0 + (P[:, 1] - self.brow_y + 10) / 8.0)
            wh = 1.0 / (1.0 + np.exp(-np.clip(s, -30, 30)))
            alb = alb * (1 - wh[:, None]) + hair * wh[:, None]
        return np.clip(alb, 0.0, 1.0).astype(np.float32)


def _polyline_distance(P: np.ndarray, pts: np.ndarray, closed: bool = False) -> np.ndarray:
    """Distance (n,) from points P (n, 3) to a 3D polyline through ``pts`` (k, 3)."""
    a = pts if not closed else pts
    b = np.roll(pts, -1, axis=0) if closed else pts[1:]
    a = a[: len(b)]
    ab = b - a  # (s, 3)
    ap = P[:, None, :] - a[None]  # (n, s, 3)
    t = np.clip((ap * ab).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0, 1)
    d = np.linalg.norm(ap - t[..., None] * ab, axis=-1)
    return d.min(1)


# ----------------------------------------------------------------------------- subjects
def subject_seed(seed: int, global_id: int) -> np.random.SeedSequence:
    """The seed sequence of a subject (its ``alpha_id`` and albedo)."""
    return np.random.SeedSequence([int(seed), int(global_id)])


def subject_codes(model, seed: int, global_ids: Sequence[int]) -> np.ndarray:
    """``alpha_id`` (len(ids), k_id) of subjects: standard normal draws from their seeds."""
    out = np.empty((len(global_ids), model.n_id), np.float32)
    for i, g in enumerate(global_ids):
        rng = np.random.default_rng(subject_seed(seed, g).spawn(2)[0])
        out[i] = rng.standard_normal(model.n_id)
    return out


def subject_albedo(albedo_model: AlbedoModel, seed: int, global_id: int) -> np.ndarray:
    """A subject's albedo (n, 3): :meth:`AlbedoModel.sample` from the subject's seed."""
    return albedo_model.sample(np.random.default_rng(subject_seed(seed, global_id).spawn(2)[1]))


# ----------------------------------------------------------------------------- camera
def reference_scale(model) -> float:
    """``f0`` (pixels per mm): least-squares scale mapping the mean face's five alignment
    points (frontal, ``R = I``) onto :data:`SPHEREFACE_REFERENCE` (translation free)."""
    five = _five_points(model.mean[None], model.landmarks)[0]  # (5, 3)
    X = five[:, :2] * np.array([1.0, -1.0])
    X = X - X.mean(0)
    Y = SPHEREFACE_REFERENCE - SPHEREFACE_REFERENCE.mean(0)
    return float((X * Y).sum() / (X * X).sum())


def _five_points(shapes_or_landmarks: np.ndarray, landmark_idx: np.ndarray | None = None) -> np.ndarray:
    """Eye centres, nose tip, mouth corners (B, 5, D) from (B, 68, D) landmarks or full shapes."""
    L = shapes_or_landmarks if landmark_idx is None else shapes_or_landmarks[:, landmark_idx]
    if L.shape[1] != 68:
        raise ValueError(f"expected 68 landmarks, got {L.shape[1]}")
    return np.stack([L[:, 36:42].mean(1), L[:, 42:48].mean(1), L[:, 30], L[:, 48], L[:, 54]], 1)


def centring_translation(landmarks3d: np.ndarray, R: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Translation t (B, 2) pixels that puts the five alignment points' centroid at
    SphereFace's reference centroid (scaled-orthographic camera of Eq. 6).

    Parameters
    ----------
    landmarks3d : ndarray, shape (B, 68, 3), mm
    R : ndarray, shape (B, 3, 3)
    f : ndarray, shape (B,)
    """
    uv0 = camera.project(_five_points(np.asarray(landmarks3d, np.float64)), np.asarray(R, np.float64),
                         np.asarray(f, np.float64), np.zeros((len(f), 2)))
    return SPHEREFACE_REFERENCE.mean(0)[None] - uv0.mean(1)


# ----------------------------------------------------------------------------- rendering
_RENDERERS: dict = {}
_ALBEDO_MODELS: dict = {}


def _model_key(model) -> tuple:
    return (model.name, model.n_vertices, model.triangles.shape[0], float(model.mean[0, 0]))


def get_renderer(model, size: tuple[int, int] = IMAGE_SIZE, max_batch: int = 64):
    """A cached :class:`~disentangled_face.render.Renderer` for the model's mesh (one OpenGL
    context per process, one renderer per image size); eye and mouth holes are filled."""
    from .render import Renderer, create_context, hole_fill_triangles

    key = (_model_key(model), tuple(size), max_batch)
    if key not in _RENDERERS:
        ctx = _RENDERERS.get("ctx")
        if ctx is None:
            ctx = _RENDERERS["ctx"] = create_context()
        try:
            fill = hole_fill_triangles(model.triangles)
        except ValueError:
            fill = None
        _RENDERERS[key] = Renderer(model.triangles, model.n_vertices, height=size[0], width=size[1],
                                   max_batch=max_batch, ctx=ctx, fill_triangles=fill)
    return _RENDERERS[key]


def get_albedo_model(model) -> AlbedoModel:
    """A cached :class:`AlbedoModel` of the model."""
    key = _model_key(model)
    if key not in _ALBEDO_MODELS:
        _ALBEDO_MODELS[key] = AlbedoModel(model)
    return _ALBEDO_MODELS[key]


@dataclass
class RenderedFaces:
    """Output of :func:`render_faces` for B images.

    Attributes
    ----------
    images : ndarray (B, H, W, 3) uint8
    landmarks : ndarray (B, 68, 2) float32, pixels, with detector noise (if any)
    landmarks_true : ndarray (B, 68, 2) float32, pixels, ``camera.project`` of the landmark vertices
    visible : ndarray (B, 68) bool, z-buffer visibility
    scale : ndarray (B,) float32, f (pixels per mm)
    trans : ndarray (B, 2) float32, t (pixels)
    mask : ndarray (B, H, W) bool, pixels covered by the face
    """

    images: np.ndarray
    landmarks: np.ndarray
    landmarks_true: np.ndarray
    visible: np.ndarray
    scale: np.ndarray
    trans: np.ndarray
    mask: np.ndarray


def _arr(x, B, name, shape=()):
    a = np.asarray(x, np.float64)
    if a.ndim == 0:
        a = np.full((B,) + shape, float(a))
    if a.shape != (B,) + shape:
        raise ValueError(f"{name} must have shape {(B,) + shape} (or be a scalar), got {a.shape}")
    return a


def render_faces(model, alpha_id, alpha_exp, yaw, pitch=0.0, roll=0.0, albedo=None, light=None,
                 scale=None, trans=None, background=None, size: tuple[int, int] = IMAGE_SIZE,
                 low_res: tuple[int, int] | None = None, blur_sigma=0.0, noise_std=0.0,
                 landmark_noise_px: float = 0.0, rng=None, max_batch: int = 64) -> RenderedFaces:
    """Render B faces of the morphable model with the shared weak-perspective camera (Eq. 6).

    Parameters
    ----------
    model : MorphableModel
    alpha_id : ndarray, shape (B, k_id)
    alpha_exp : ndarray, shape (B, k_exp)
    yaw, pitch, roll : float or ndarray (B,)
        Radians (``camera.rotation_from_euler``).
    albedo : ndarray, shape (n, 3) or (B, n, 3), optional
        Reflectance in [0, 1] (uniform skin colour when omitted).
    light : disentangled_face.render.Light, optional
        Per-image lights (white, mostly frontal when omitted).
    scale : float or ndarray (B,), optional
        f in pixels per mm (``0.85 * reference_scale(model)`` when omitted: SphereFace's
        alignment scale, loosened so that the chin stays inside the crop).
    trans : ndarray (B, 2), optional
        t in pixels (centring on the five alignment points when omitted).
    background : ndarray, shape (B, 2, 3), optional
        Top and bottom colours in [0, 1] of a vertical gradient (mid grey when omitted).
    size : (H, W)
        Output size in pixels (112 x 96).
    low_res : (h, w), optional
        Render at this smaller size (with ``f`` and ``t`` scaled by h / H) and upsample
        bilinearly to ``size`` (video-like quality). Landmarks stay in ``size`` pixels.
    blur_sigma, noise_std : float or ndarray (B,)
        Gaussian blur (pixels) and additive Gaussian noise (grey levels) after compositing.
    landmark_noise_px : float
        Standard deviation of the Gaussian noise added to ``landmarks`` (pixels).
    rng : numpy Generator, seed, or sequence of B seeds, optional
        For the landmark and image noise; a sequence gives each image its own generator, so
        that an image does not depend on the batch it is rendered in.
    max_batch : int
        Images per draw call.

    Returns
    -------
    RenderedFaces

    Raises
    ------
    ValueError
        On inconsistent shapes.
    disentangled_face.render.RendererUnavailableError
        When no headless OpenGL context can be created.
    """
    from .render import Light, visibility

    alpha_id = np.atleast_2d(np.asarray(alpha_id, np.float32))
    alpha_exp = np.atleast_2d(np.asarray(alpha_exp, np.float32))
    B = alpha_id.shape[0]
    yaw, pitch, roll = (_arr(a, B, nm) for a, nm in ((yaw, "yaw"), (pitch, "pitch"), (roll, "roll")))
    shapes = model.shape(alpha_id, alpha_exp)  # (B, n, 3) mm; validates the codes
    R = camera.rotation_from_euler(yaw, pitch, roll)
    f = _arr(DEFAULTS["pose"]["scale_factor"] * reference_scale(model) if scale is None else scale, B, "scale")
    lm3 = model.landmarks_of(shapes).astype(np.float64)
    t = centring_translation(lm3, R, f) if trans is None else _arr(trans, B, "trans", (2,))
    H, W = size
    if low_res is not None:
        h, w = low_res
        k = h / H
        if abs(w / W - k) > 1e-6:
            raise ValueError(f"low_res {low_res} must have the aspect ratio of size {size}")
    else:
        (h, w), k = size, 1.0
    renderer = get_renderer(model, (h, w), max_batch)
    rot = _rotate(shapes, R)  # (B, n, 3) camera coordinates, mm
    uvz = np.empty_like(rot)
    uvz[..., 0] = k * (f[:, None] * rot[..., 0] + t[:, None, 0])
    uvz[..., 1] = k * (-f[:, None] * rot[..., 1] + t[:, None, 1])
    uvz[..., 2] = rot[..., 2]
    from .render import vertex_normals

    normals = vertex_normals(rot, model.triangles, renderer.incidence)
    if albedo is None:
        albedo = np.tile(np.array([0.85, 0.68, 0.58], np.float32), (model.n_vertices, 1))
    if light is None:
        light = Light(np.full((B, 3), 0.45, np.float32), np.tile(np.array([0.3, 0.3, 1.0], np.float32), (B, 1)),
                      np.full((B, 3), 0.55, np.float32))
    out = renderer.render(uvz, normals, albedo, light)
    # landmarks (full-resolution pixels) and visibility (in the rendered resolution)
    lm_true = camera.project(lm3, R, f, t)
    lm_uvz = np.concatenate([k * lm_true, camera.depth(lm3, R)[..., None]], -1)
    visible = visibility(lm_uvz, out.depth)
    # composite on the background, degrade, quantise
    if background is None:
        background = np.full((B, 2, 3), 0.5)
    background = np.asarray(background, np.float32)
    if background.shape != (B, 2, 3):
        raise ValueError(f"background must have shape ({B}, 2, 3), got {background.shape}")
    ramp = np.linspace(0.0, 1.0, h, dtype=np.float32)[None, :, None, None]
    bg = background[:, None, None, 0] * (1 - ramp) + background[:, None, None, 1] * ramp  # (B, h, 1, 3)
    mask = out.mask[..., None]
    img = np.where(mask, out.rgb.astype(np.float32), 255.0 * bg)
    if low_res is not None:
        import scipy.ndimage

        img = scipy.ndimage.zoom(img, (1, H / h, W / w, 1), order=1, grid_mode=True, mode="nearest")
        mask_full = scipy.ndimage.zoom(out.mask.astype(np.float32), (1, H / h, W / w), order=0,
                                       grid_mode=True, mode="nearest") > 0.5
    else:
        mask_full = out.mask
    blur = _arr(blur_sigma, B, "blur_sigma")
    noise = _arr(noise_std, B, "noise_std")
    rngs = _image_rngs(rng, B)
    if np.any(blur > 0):
        import scipy.ndimage

        for i in np.flatnonzero(blur > 0):
            img[i] = scipy.ndimage.gaussian_filter(img[i], (blur[i], blur[i], 0), mode="nearest")
    for i in np.flatnonzero(noise > 0):
        img[i] += noise[i] * rngs[i].standard_normal(img.shape[1:], dtype=np.float32)
    images = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    lm_noisy = lm_true
    if landmark_noise_px > 0:
        lm_noisy = lm_true + np.stack([r.normal(0.0, landmark_noise_px, lm_true.shape[1:]) for r in rngs])
    return RenderedFaces(images=images, landmarks=lm_noisy.astype(np.float32),
                         landmarks_true=lm_true.astype(np.float32), visible=visible,
                         scale=f.astype(np.float32), trans=t.astype(np.float32), mask=mask_full)


def _image_rngs(rng, B: int) -> list:
    """B generators: one per seed of a sequence, or B children of one generator/seed."""
    if isinstance(rng, (list, tuple, np.ndarray)):
        if len(rng) != B:
            raise ValueError(f"rng must be one seed/generator or {B} seeds, got {len(rng)}")
        return [np.random.default_rng(r) for r in rng]
    g = np.random.default_rng(rng)
    return [g] * B


def _rotate(shapes: np.ndarray, R: np.ndarray) -> np.ndarray:
    """(B, n, 3) @ R^T, as float32 (camera coordinates)."""
    return np.einsum("bnj,bij->bni", shapes.astype(np.float32), R.astype(np.float32), optimize=True)
