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
looks complete. Identical configs give byte-identical arrays, whatever the number of worker
processes: every random draw is seeded per protocol, per subject or per image. The draw-call
batch size (``batch``, part of the cache key) can change a few pixels by one grey level: an
image's tile in the batch atlas changes OpenGL's attribute interpolation in the last bit.
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
GENERATOR_VERSION = 3

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
#: Keys of the ``synth:`` section that do not change the generated data (not hashed). The batch
#: size is hashed: an image's tile in the batch atlas can change OpenGL's attribute
#: interpolation in the last bit (a grey level in a few pixels).
_RUNTIME_KEYS = ("workers",)


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
        feats = np.cos(P @ (dirs.T * (2 * np.pi / wavelength)) + phase) / np.sqrt(k)  # (n, k)
        # brightness and redness fields (skin varies mostly in melanin and blood, not hue)
        brightness = feats @ rng.normal(0, 0.10, k)
        redness = feats @ rng.normal(0, 0.06, k)
        alb *= np.exp(brightness[:, None] + redness[:, None] * np.array([1.0, -0.6, -0.6]))
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
    depth : ndarray (B, h, w) float32, mm (``(R X)_z``, ``-inf`` off the face), at the rendered
        resolution (``low_res`` when given)
    """

    images: np.ndarray
    landmarks: np.ndarray
    landmarks_true: np.ndarray
    visible: np.ndarray
    scale: np.ndarray
    trans: np.ndarray
    mask: np.ndarray
    depth: np.ndarray


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
                 landmark_noise_px: float = 0.0, rng=None, max_batch: int = 64,
                 smooth: bool = False, trans_offset=None, shapes=None) -> RenderedFaces:
    """Render B faces of the morphable model with the shared weak-perspective camera (Eq. 6).

    Parameters
    ----------
    model : MorphableModel
    alpha_id : ndarray, shape (B, k_id)
    alpha_exp : ndarray, shape (B, k_exp)
    yaw, pitch, roll : float or ndarray (B,)
        Radians (``camera.rotation_from_euler``).
    albedo : ndarray, shape (n, 3) or (B, n, 3), optional
        Reflectance, float in [0, 1] or uint8 (uniform skin colour when omitted).
    light : disentangled_face.render.Light, optional
        Per-image lights (white, mostly frontal when omitted).
    scale : float or ndarray (B,), optional
        f in pixels per mm (``0.85 * reference_scale(model)`` when omitted: SphereFace's
        alignment scale, loosened so that the chin stays inside the crop).
    trans : ndarray (B, 2), optional
        t in pixels (centring on the five alignment points when omitted).
    trans_offset : ndarray (B, 2), optional
        Added to the centring translation when ``trans`` is omitted (pixels).
    shapes : ndarray (B, n, 3), optional
        ``model.shape(alpha_id, alpha_exp)`` when the caller has it already (mm).
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
    smooth : bool
        Smooth shading with per-vertex normals computed on the CPU, instead of per-triangle
        normals from screen-space derivatives (the default, free; at 112 x 96 a triangle
        covers about a pixel and the two look alike).

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
    if shapes is None:
        shapes = model.shape(alpha_id, alpha_exp)  # (B, n, 3) mm; validates the codes
    elif np.shape(shapes) != (B, model.n_vertices, 3):
        raise ValueError(f"shapes must have shape ({B}, {model.n_vertices}, 3), got {np.shape(shapes)}")
    R = camera.rotation_from_euler(yaw, pitch, roll)
    f = _arr(DEFAULTS["pose"]["scale_factor"] * reference_scale(model) if scale is None else scale, B, "scale")
    lm3 = model.landmarks_of(shapes).astype(np.float64)
    if trans is None:
        t = centring_translation(lm3, R, f)
        if trans_offset is not None:
            t = t + _arr(trans_offset, B, "trans_offset", (2,))
    else:
        t = _arr(trans, B, "trans", (2,))
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
    normals = None
    if smooth:
        from .render import vertex_normals

        normals = vertex_normals(rot, model.triangles, renderer.incidence)
    if albedo is None:
        albedo = np.tile(np.array([0.85, 0.68, 0.58], np.float32), (model.n_vertices, 1))
    if light is None:
        light = Light(np.full((B, 3), 0.45, np.float32), np.tile(np.array([0.3, 0.3, 1.0], np.float32), (B, 1)),
                      np.full((B, 3), 0.55, np.float32))
    out = renderer.render(uvz, normals, albedo, light, scale=k * f)
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
                         scale=f.astype(np.float32), trans=t.astype(np.float32), mask=mask_full,
                         depth=out.depth)


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


# ----------------------------------------------------------------------------- configs
def _merge(base: dict, over: dict | None) -> dict:
    out = dict(base)
    for k, v in (over or {}).items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def synth_config(profile: str | dict = "book") -> dict:
    """The ``synth:`` section of a profile merged over :data:`DEFAULTS`.

    Parameters
    ----------
    profile : str or dict
        A profile name or path (``config.load_profile``), a loaded profile (with a ``synth``
        key) or a ``synth`` section itself.
    """
    from .config import load_profile

    if isinstance(profile, dict):
        section = profile["synth"] if "synth" in profile else profile
    else:
        section = load_profile(profile)["synth"]
    return _merge(DEFAULTS, section)


def protocol_config(name: str, profile: str | dict = "book") -> dict:
    """The full config of one protocol: generator settings (pose, expression, light, seed,
    landmark noise) with the protocol's own entries and overrides merged in.

    Raises
    ------
    ValueError
        Unknown protocol, or the profile has no sizes for it.
    """
    if name not in PROTOCOLS:
        raise ValueError(f"unknown protocol {name!r}: expected one of {PROTOCOLS}")
    cfg = synth_config(profile)
    prot = cfg.get("protocols", {}).get(name)
    if not prot:
        raise ValueError(f"the profile's synth.protocols has no entry {name!r} (expected its sizes, "
                         f"e.g. subjects and images_per_subject)")
    out = {k: v for k, v in cfg.items() if k != "protocols"}
    out = _merge(out, prot)
    out["protocol"] = name
    return out


#: The tag of the default model (what ``load_ict_facekit`` returns), for cache keys.
_DEFAULT_MODEL_TAG = ("ICT-FaceKit (face area)", 9409, 100, 53)


def _model_tag(model) -> tuple:
    return _DEFAULT_MODEL_TAG if model is None else (model.name, model.n_vertices, model.n_id, model.n_exp)


def protocol_path(name: str, profile: str | dict = "book", model=None) -> Path:
    """Where :func:`build_protocol` stores a protocol: ``data/synth/<name>-<config_hash>.h5``.

    The hash covers the protocol's config (not ``workers``, which does not change the data),
    :data:`GENERATOR_VERSION` and the model (name and sizes; ICT-FaceKit by default).
    """
    cfg = protocol_config(name, profile)
    key = {k: v for k, v in cfg.items() if k not in _RUNTIME_KEYS}
    key.update(generator_version=GENERATOR_VERSION, model=list(_model_tag(model)))
    return data_dir("synth") / f"{name}-{config_hash(key)}.h5"


def _need(cfg: dict, *keys: str) -> list:
    missing = [k for k in keys if k not in cfg]
    if missing:
        raise ValueError(f"protocol {cfg['protocol']!r} config lacks {missing} (has {sorted(cfg)})")
    return [cfg[k] for k in keys]


# ----------------------------------------------------------------------------- sampling
def _truncnormal(rng, std_deg: float, max_deg: float, size) -> np.ndarray:
    """Normal(0, std) truncated to [-max, max] (resampling), returned in radians."""
    x = rng.normal(0.0, std_deg, size)
    for _ in range(100):
        bad = np.abs(x) > max_deg
        if not bad.any():
            break
        x[bad] = rng.normal(0.0, std_deg, int(bad.sum()))
    return np.radians(np.clip(x, -max_deg, max_deg))


def sample_light(rng, n: int, cfg: dict) -> dict:
    """Ambient (n, 3), direction (n, 3) toward the light, diffuse (n, 3) from a light config
    (``ambient`` and ``diffuse`` ranges, ``azimuth_deg`` half-range, ``elevation_deg`` range,
    ``tint`` per-channel relative variation)."""
    a = rng.uniform(*cfg["ambient"], n)[:, None] * (1 + rng.uniform(-cfg["tint"], cfg["tint"], (n, 3)))
    d = rng.uniform(*cfg["diffuse"], n)[:, None] * (1 + rng.uniform(-cfg["tint"], cfg["tint"], (n, 3)))
    az = np.radians(rng.uniform(-cfg["azimuth_deg"], cfg["azimuth_deg"], n))
    el = np.radians(rng.uniform(*cfg["elevation_deg"], n))
    direction = np.stack([np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)], 1)
    return {"ambient": a.astype(np.float32), "direction": direction.astype(np.float32),
            "diffuse": d.astype(np.float32)}


def sample_expressions(model, rng, n: int, cfg: dict) -> np.ndarray:
    """``alpha_exp`` (n, k_exp): neutral with probability ``neutral_prob``, else one of the six
    :data:`EXPRESSIONS` at an intensity in ``intensity``; plus ``random_active`` random
    blendshapes with weights in [0, ``random_max``], clipped to the model's bounds. A model
    without ICT blendshape names (PCA expressions) gets ``model.sample``'s prior instead."""
    if not _has_expression_names(model):
        return model.sample(n, rng)[1]
    protos = np.stack([expression_vector(model, e) for e in EXPRESSIONS if e != "neutral"])
    pick = rng.integers(0, len(protos), n)
    inten = rng.uniform(*cfg["intensity"], n) * (rng.uniform(size=n) >= cfg["neutral_prob"])
    out = protos[pick] * inten[:, None]
    k = min(int(cfg["random_active"]), model.n_exp)
    for i in range(n):
        idx = rng.choice(model.n_exp, size=k, replace=False)
        out[i, idx] += rng.uniform(0.0, cfg["random_max"], k)
    lo, hi = model.exp_bounds if model.exp_bounds is not None else (-np.inf, np.inf)
    return np.clip(out, lo, hi).astype(np.float32)


def _backgrounds(rng, n: int) -> np.ndarray:
    return rng.uniform(0.05, 0.95, (n, 2, 3)).astype(np.float32)


def _pose(rng, n: int, cfg: dict) -> dict:
    return {"yaw": _truncnormal(rng, cfg["yaw_std_deg"], cfg["yaw_max_deg"], n),
            "pitch": _truncnormal(rng, cfg["pitch_std_deg"], cfg["pitch_max_deg"], n),
            "roll": _truncnormal(rng, cfg["roll_std_deg"], cfg["roll_max_deg"], n),
            "scale_jitter": np.exp(rng.normal(0.0, cfg["scale_std"], n)),
            "trans_jitter": rng.normal(0.0, cfg["trans_std_px"], (n, 2))}


def plan_protocol(name: str, cfg: dict, model) -> dict:
    """All per-image parameters of a protocol, before rendering (deterministic in ``cfg``).

    Returns
    -------
    dict
        ``subject_id`` (K,) global ids, ``subject`` (N,) index into them, ``alpha_exp``,
        ``yaw``, ``pitch``, ``roll``, ``scale_jitter``, ``trans_jitter``, lights, ``background``,
        ``blur_sigma``, ``noise_std``, ``image_seed`` (N,), ``low_res`` and the protocol's extra
        columns and pairs (see the module docstring).

    Raises
    ------
    ValueError
        On missing or inconsistent sizes (for example more pairs than the subjects allow).
    """
    seed = int(cfg["seed"])
    rng = np.random.default_rng([seed, _PROTOCOL_CODE[name]])
    plan: dict[str, Any] = {"extra": {}}
    if name in ("train", "micc-like"):
        K, M = _need(cfg, "subjects", "images_per_subject")
        subject = np.repeat(np.arange(K), M)
    elif name == "lfw-like":
        F, S, M, n_same, n_diff = _need(cfg, "folds", "subjects_per_fold", "images_per_subject",
                                        "same_pairs_per_fold", "diff_pairs_per_fold")
        K = F * S
        subject = np.repeat(np.arange(K), M)
        plan["pairs"], plan["same"], plan["fold"] = _make_pairs(rng, F, S, M, n_same, n_diff, "images")
    elif name == "ytf-like":
        F, S, V, T, n_same, n_diff = _need(cfg, "folds", "subjects_per_fold", "videos_per_subject",
                                           "frames_per_video", "same_pairs_per_fold", "diff_pairs_per_fold")
        K = F * S
        subject = np.repeat(np.arange(K), V * T)
        plan["pairs"], plan["same"], plan["fold"] = _make_pairs(rng, F, S, V, n_same, n_diff, "videos")
        plan["extra"]["sequence"] = np.repeat(np.arange(K * V), T).astype(np.int64)
        plan["extra"]["frame"] = np.tile(np.arange(T), K * V).astype(np.int64)
    elif name == "bu3dfe-like":
        (K,) = _need(cfg, "subjects")
        intensities = [float(x) for x in cfg.get("intensities", [1.0])]
        y0, y1, ystep = cfg.get("yaw_sweep_deg", [-90, 90, 10])
        sweep_yaw = np.arange(y0, y1 + 1e-9, ystep, dtype=np.float64)
        per = [("neutral", 0.0, 0.0, False)] + [(e, i, 0.0, False) for e in EXPRESSIONS if e != "neutral"
                                                 for i in intensities]
        per += [("neutral", 0.0, float(y), True) for y in sweep_yaw]
        subject = np.repeat(np.arange(K), len(per))
        plan["extra"]["expression"] = np.array([p[0] for p in per] * K, dtype="S16")
        plan["extra"]["intensity"] = np.array([p[1] for p in per] * K, np.float32)
        plan["extra"]["sweep"] = np.array([p[3] for p in per] * K, bool)
        sweep_yaw_col = np.radians(np.array([p[2] for p in per] * K))
    else:  # pragma: no cover - guarded by protocol_config
        raise ValueError(name)
    N = subject.size
    plan["subject_id"] = SUBJECT_OFFSETS[name] + np.arange(K, dtype=np.int64)
    plan["subject"] = subject.astype(np.int64)
    pose = _pose(rng, N, cfg["pose"])
    light = sample_light(rng, N, cfg["light"])
    alpha_exp = sample_expressions(model, rng, N, cfg["expression"])
    background = _backgrounds(rng, N)
    blur = np.zeros(N, np.float32)
    noise = np.zeros(N, np.float32)
    if name == "ytf-like":
        _video_trajectories(rng, plan, pose, light, alpha_exp, background, K * V, T, cfg, model)
    elif name == "bu3dfe-like":
        pose["yaw"] = sweep_yaw_col
        pose["pitch"][:] = 0.0
        pose["roll"][:] = 0.0
        alpha_exp = np.stack([expression_vector(model, e.decode(), i) if _has_expression_names(model)
                              else np.zeros(model.n_exp, np.float32)
                              for e, i in zip(plan["extra"]["expression"], plan["extra"]["intensity"])])
    elif name == "micc-like":
        blur = rng.uniform(*cfg["blur_sigma_px"], N).astype(np.float32)
        noise = rng.uniform(*cfg["noise_std"], N).astype(np.float32)
        plan["extra"]["blur_sigma"], plan["extra"]["noise_std"] = blur, noise
    plan.update(pose)
    plan["light"] = light
    plan["alpha_exp"] = alpha_exp.astype(np.float32)
    plan["background"] = background
    plan["blur_sigma"], plan["noise_std"] = blur, noise
    plan["image_seed"] = rng.integers(0, 2**63 - 1, N)
    plan["low_res"] = tuple(cfg["low_res"]) if name == "ytf-like" else None
    return plan


def _make_pairs(rng, F: int, S: int, M: int, n_same: int, n_diff: int, what: str):
    """Verification pairs within each fold (subjects differ between folds, as LFW View 2).

    Items (images or videos) of subject ``k`` are ``k * M .. k * M + M - 1``.
    """
    same_avail = S * M * (M - 1) // 2
    if n_same > same_avail:
        raise ValueError(f"{n_same} same pairs per fold need more {what}: {S} subjects x {M} {what} "
                         f"give only {same_avail}")
    if n_diff > (S * M) * (S * M - M) // 2:
        raise ValueError(f"{n_diff} different pairs per fold exceed what {S} subjects x {M} {what} give")
    pairs, same, fold = [], [], []
    for f in range(F):
        subj = f * S + np.arange(S)
        within = np.array([(k * M + a, k * M + b) for k in subj for a in range(M) for b in range(a + 1, M)])
        pick = rng.choice(len(within), n_same, replace=False)
        pairs.append(within[pick])
        diff = set()
        while len(diff) < n_diff:
            k1, k2 = rng.choice(subj, 2, replace=False)
            a, b = k1 * M + rng.integers(M), k2 * M + rng.integers(M)
            diff.add((min(a, b), max(a, b)))
        pairs.append(np.array(sorted(diff)).reshape(-1, 2))
        same += [True] * n_same + [False] * n_diff
        fold += [f] * (n_same + n_diff)
    return np.concatenate(pairs).astype(np.int64), np.array(same), np.array(fold, np.int64)


def vcfg_period(cfg: dict) -> float:
    """Frames per unit of trajectory time (``video.period_frames``, default 40): head motion
    runs 0.3-1 oscillation per period, so its speed per frame does not depend on the clip
    length."""
    return float(cfg.get("video", {}).get("period_frames", 40))


def _video_trajectories(rng, plan, pose, light, alpha_exp, background, n_videos, T, cfg, model):
    """Smooth pose, expression, scale and translation over each video (in place); one light
    and background per video. Yaw oscillates around a per-video centre with amplitude 5-25
    deg (``video.yaw_amp_deg``), pitch 2-8 deg, at 0.3-1 cycle per ``video.period_frames``
    frames; the expression blends smoothly from one draw to another over the clip."""
    t = np.linspace(0.0, 1.0, T)
    frames = np.arange(T) / float(vcfg_period(cfg))
    vcfg = cfg.get("video", {})
    yaw_amp = np.radians(rng.uniform(*vcfg.get("yaw_amp_deg", [5.0, 25.0]), n_videos))
    pitch_amp = np.radians(rng.uniform(*vcfg.get("pitch_amp_deg", [2.0, 8.0]), n_videos))
    cycles = rng.uniform(0.3, 1.0, n_videos)
    phase = rng.uniform(0, 2 * np.pi, (n_videos, 2))
    centre = _pose(rng, n_videos, cfg["pose"])
    e0 = sample_expressions(model, rng, n_videos, cfg["expression"])
    e1 = sample_expressions(model, rng, n_videos, cfg["expression"])
    ramp = t * t * (3 - 2 * t)  # smoothstep
    for v in range(n_videos):
        sl = slice(v * T, (v + 1) * T)
        w = 2 * np.pi * cycles[v] * frames
        pose["yaw"][sl] = np.clip(centre["yaw"][v] + yaw_amp[v] * np.sin(w + phase[v, 0]),
                                  -np.pi / 2, np.pi / 2)
        pose["pitch"][sl] = centre["pitch"][v] + pitch_amp[v] * np.sin(w + phase[v, 1])
        pose["roll"][sl] = centre["roll"][v] + 0.3 * pitch_amp[v] * np.sin(w)
        pose["scale_jitter"][sl] = centre["scale_jitter"][v] * (1 + 0.02 * np.sin(w))
        pose["trans_jitter"][sl] = centre["trans_jitter"][v] + 0.5 * rng.normal(size=(T, 2)).cumsum(0) / np.sqrt(T)
        alpha_exp[sl] = (1 - ramp[:, None]) * e0[v] + ramp[:, None] * e1[v]
        for key in light:
            light[key][sl] = light[key][v * T]
        background[sl] = background[v * T]


# ----------------------------------------------------------------------------- rendering a plan
class _PlanRenderer:
    """Renders ranges of a plan's images (in the main process or in a worker)."""

    def __init__(self, model, plan: dict, cfg: dict, max_batch: int) -> None:
        self.model, self.plan, self.cfg, self.max_batch = model, plan, cfg, max_batch
        self.alpha_id = subject_codes(model, cfg["seed"], plan["subject_id"])
        self.albedo_model = get_albedo_model(model)
        self._albedo: dict[int, np.ndarray] = {}
        self._identity: dict[int, np.ndarray] = {}
        self.f0 = cfg["pose"]["scale_factor"] * reference_scale(model)

    def albedo(self, k: int) -> np.ndarray:
        """Subject k's albedo as uint8 (n, 3) (cached)."""
        if k not in self._albedo:
            if len(self._albedo) > 512:
                self._albedo.clear()
            a = subject_albedo(self.albedo_model, self.cfg["seed"], int(self.plan["subject_id"][k]))
            self._albedo[k] = np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
        return self._albedo[k]

    def expression_delta(self, alpha_exp: np.ndarray) -> np.ndarray:
        """``A_exp alpha_exp`` (n, 3) of one image, summed over its non-zero weights only
        (fast for sparse blendshape weights, and independent of the batch it is in)."""
        nz = np.flatnonzero(alpha_exp)
        E = self.model.exp_basis
        if nz.size == 0:
            return np.zeros(E.shape[1:], np.float32)
        return np.tensordot(alpha_exp[nz].astype(np.float32), E[nz], axes=1)

    def identity(self, k: int) -> np.ndarray:
        """Subject k's neutral shape ``s_mean + A_id alpha_id`` (n, 3) mm (cached)."""
        if k not in self._identity:
            if len(self._identity) > 512:
                self._identity.clear()
            self._identity[k] = self.model.identity_shape(self.alpha_id[k])
        return self._identity[k]

    def __call__(self, span: tuple[int, int]) -> dict:
        from .render import Light

        s, e = span
        p = self.plan
        sub = p["subject"][s:e]
        idx = np.arange(s, e)
        model = self.model
        f = self.f0 * p["scale_jitter"][idx]
        shapes = np.stack([self.identity(k) + self.expression_delta(p["alpha_exp"][i]) for k, i in zip(sub, idx)])
        light = Light(*(p["light"][k][idx] for k in ("ambient", "direction", "diffuse")))
        out = render_faces(model, self.alpha_id[sub], p["alpha_exp"][idx], p["yaw"][idx], p["pitch"][idx],
                           p["roll"][idx], albedo=np.stack([self.albedo(k) for k in sub]), light=light,
                           scale=f, trans_offset=p["trans_jitter"][idx], shapes=shapes,
                           background=p["background"][idx], low_res=p["low_res"],
                           blur_sigma=p["blur_sigma"][idx], noise_std=p["noise_std"][idx],
                           landmark_noise_px=float(self.cfg["landmark_noise_px"]),
                           rng=list(p["image_seed"][idx]), max_batch=self.max_batch)
        return {"images": out.images, "landmarks": out.landmarks, "landmarks_true": out.landmarks_true,
                "visible": out.visible, "scale": out.scale, "trans": out.trans}


_WORKER: dict = {}


def _worker_init(model, plan, cfg, max_batch):
    _WORKER["r"] = _PlanRenderer(model, plan, cfg, max_batch)


def _worker_run(span):
    return span, _WORKER["r"](span)


def _render_plan(model, plan: dict, cfg: dict, batch: int, workers: int, progress: bool, desc: str):
    """Yield ((start, end), arrays) over the plan in order, using ``workers`` processes."""
    from tqdm import tqdm  # text bar: no widget left behind in an executed notebook

    N = plan["subject"].size
    spans = [(s, min(N, s + batch)) for s in range(0, N, batch)]
    workers = max(1, min(int(workers), os.cpu_count() or 1))
    bar = tqdm(total=N, desc=desc, unit="img", disable=not progress)
    try:
        if workers > 1 and len(spans) > 2 * workers:
            ctx = multiprocessing.get_context("spawn")  # a fresh process for each OpenGL context
            with ctx.Pool(workers, initializer=_worker_init, initargs=(model, plan, cfg, batch)) as pool:
                for span, arrays in pool.imap(_worker_run, spans):
                    bar.update(span[1] - span[0])
                    yield span, arrays
        else:
            r = _PlanRenderer(model, plan, cfg, batch)
            for span in spans:
                arrays = r(span)
                bar.update(span[1] - span[0])
                yield span, arrays
    finally:
        bar.close()


# ----------------------------------------------------------------------------- build / load
def _load_model(cfg_profile: str | dict):
    from .config import load_profile
    from .model import load_ict_facekit

    prof = load_profile(cfg_profile) if not isinstance(cfg_profile, dict) else cfg_profile
    name = (prof.get("model") or {}).get("name", "ict-facekit") if "synth" in prof else "ict-facekit"
    if name != "ict-facekit":
        raise ValueError(f"build_protocol can load only the 'ict-facekit' model by name, got {name!r}; "
                         f"pass model=... explicitly")
    return load_ict_facekit()


def build_protocol(name: str, profile: str | dict = "book", model=None, progress: bool = True,
                   path: str | os.PathLike | None = None, overwrite: bool = False) -> Path:
    """Build (or return the cached) HDF5 file of a synthetic protocol.

    Parameters
    ----------
    name : str
        One of :data:`PROTOCOLS`.
    profile : str or dict
        Profile name/path, loaded profile, or ``synth`` section; sizes come from its
        ``synth.protocols.<name>`` entry.
    model : MorphableModel, optional
        The morphable model (ICT-FaceKit loaded when omitted).
    progress : bool
        Show a tqdm progress bar.
    path : path, optional
        Write here instead of ``data/synth/<name>-<config_hash>.h5`` (no caching check).
    overwrite : bool
        Rebuild even when the file exists.

    Returns
    -------
    pathlib.Path
        The HDF5 file (layout in the module docstring).

    Raises
    ------
    ValueError
        Unknown protocol or invalid sizes.
    disentangled_face.render.RendererUnavailableError
        When no headless OpenGL context can be created.
    """
    import h5py

    cfg = protocol_config(name, profile)
    if path is None and not overwrite and protocol_path(name, profile, model).is_file():
        return protocol_path(name, profile, model)
    if model is None:
        model = _load_model(profile)
    target = Path(path) if path is not None else protocol_path(name, profile, model)
    if target.is_file() and not overwrite:
        return target
    plan = plan_protocol(name, cfg, model)
    N = plan["subject"].size
    H, W = IMAGE_SIZE
    with atomic_path(target, suffix=".h5") as tmp:
        with h5py.File(tmp, "w") as h5:
            chunk = (min(N, 64), H, W, 3)
            dsets = {
                "images": h5.create_dataset("images", (N, H, W, 3), np.uint8, chunks=chunk, compression="lzf"),
                "landmarks": h5.create_dataset("landmarks", (N, 68, 2), np.float32),
                "landmarks_true": h5.create_dataset("landmarks_true", (N, 68, 2), np.float32),
                "visible": h5.create_dataset("visible", (N, 68), bool),
                "scale": h5.create_dataset("scale", (N,), np.float32),
                "trans": h5.create_dataset("trans", (N, 2), np.float32),
            }
            workers = int(cfg.get("workers", 1))
            for (s, e), arrays in _render_plan(model, plan, cfg, int(cfg.get("batch", 64)), workers,
                                               progress, desc=f"synth {name}"):
                for k, d in dsets.items():
                    d[s:e] = arrays[k]
            alpha_id = subject_codes(model, cfg["seed"], plan["subject_id"])
            h5["label"] = plan["subject"]
            h5["subject_id"] = plan["subject_id"][plan["subject"]]
            h5["alpha_id"] = alpha_id[plan["subject"]]
            h5["alpha_exp"] = plan["alpha_exp"]
            for k in ("yaw", "pitch", "roll"):
                h5[k] = plan[k].astype(np.float32)
            for k, v in plan["extra"].items():
                h5[k] = v
            if "pairs" in plan:
                h5["pairs"], h5["same"], h5["fold"] = plan["pairs"], plan["same"], plan["fold"]
            h5.attrs["protocol"] = name
            h5.attrs["config"] = json.dumps(cfg, sort_keys=True)
            h5.attrs["model"] = model.name
            h5.attrs["generator_version"] = GENERATOR_VERSION
            h5.attrs["n_subjects"] = int(plan["subject_id"].size)
    return target


class _LazyImages:
    """The ``images`` dataset of a protocol file, read on indexing (h5py opened per access)."""

    def __init__(self, path: Path, shape: tuple) -> None:
        self.path, self.shape, self.dtype = path, shape, np.dtype(np.uint8)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, idx):
        import h5py

        with h5py.File(self.path, "r") as h5:
            d = h5["images"]
            if isinstance(idx, (list, np.ndarray)):
                idx = np.asarray(idx)
                if idx.dtype == bool:
                    idx = np.flatnonzero(idx)
                order = np.argsort(idx)
                out = np.empty((len(idx),) + self.shape[1:], np.uint8)
                out[order] = d[np.sort(idx)] if len(np.unique(idx)) == len(idx) else [d[i] for i in np.sort(idx)]
                return out
            return d[idx]

    def __array__(self, dtype=None, copy=None):
        a = self[:]
        return a if dtype is None else a.astype(dtype)


@dataclass
class SynthSet:
    """A synthetic protocol loaded from its HDF5 file (see the module docstring for the arrays).

    ``images`` is read lazily (index it, or ``np.asarray(s.images)`` for all). Optional
    columns are ``None`` when the protocol has none.
    """

    path: Path
    protocol: str
    config: dict
    model_name: str
    images: Any
    landmarks: np.ndarray
    landmarks_true: np.ndarray
    visible: np.ndarray
    label: np.ndarray
    subject_id: np.ndarray
    alpha_id: np.ndarray
    alpha_exp: np.ndarray
    yaw: np.ndarray
    pitch: np.ndarray
    roll: np.ndarray
    scale: np.ndarray
    trans: np.ndarray
    pairs: np.ndarray | None = None
    same: np.ndarray | None = None
    fold: np.ndarray | None = None
    sequence: np.ndarray | None = None
    frame: np.ndarray | None = None
    expression: np.ndarray | None = None
    intensity: np.ndarray | None = None
    sweep: np.ndarray | None = None
    blur_sigma: np.ndarray | None = None
    noise_std: np.ndarray | None = None
    extra: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.label.shape[0])

    @property
    def n_subjects(self) -> int:
        """Number of distinct subjects."""
        return int(np.unique(self.label).size)

    def _idx(self, idx) -> np.ndarray:
        idx = np.arange(len(self)) if idx is None else np.atleast_1d(np.asarray(idx))
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise ValueError(f"indices must lie in [0, {len(self)}), got [{idx.min()}, {idx.max()}]")
        return idx

    def shapes(self, model, idx=None) -> np.ndarray:
        """Ground-truth 3D shapes ``model.shape(alpha_id, alpha_exp)`` (len(idx), n, 3), mm.

        Raises
        ------
        ValueError
            When the model's code sizes differ from the file's (a different model).
        """
        idx = self._idx(idx)
        if model.n_id != self.alpha_id.shape[1] or model.n_exp != self.alpha_exp.shape[1]:
            raise ValueError(f"{self.path} was generated with k_id={self.alpha_id.shape[1]}, "
                             f"k_exp={self.alpha_exp.shape[1]}; the model has {model.n_id}, {model.n_exp}")
        return model.shape(self.alpha_id[idx], self.alpha_exp[idx])

    def scans(self, model, idx=None) -> list:
        """Ground-truth 3D scans of images ``idx`` as :class:`disentangled_face.datasets.Scan3D`
        records (the records real BU-3DFE / MICC loaders return): vertices
        ``model.shape(alpha_id, alpha_exp)`` (mm, model frame, no pose), the model's triangles,
        the 68 landmark vertices, the subject's global id, and the expression name and
        intensity (``bu3dfe-like``; ``"neutral"``/0 when all weights are zero, ``"mixed"``
        otherwise)."""
        from .datasets import Scan3D

        idx = self._idx(idx)
        shapes = self.shapes(model, idx)
        out = []
        for k, i in enumerate(idx):
            if self.expression is not None:
                expr, inten = str(self.expression[i]), float(self.intensity[i])
            else:
                expr, inten = ("neutral", 0.0) if not np.any(self.alpha_exp[i]) else ("mixed", 1.0)
            out.append(Scan3D(vertices=shapes[k], triangles=model.triangles, landmarks=model.landmarks_of(shapes[k]),
                              subject=str(self.subject_id[i]), expression=expr, intensity=inten,
                              source=f"{self.protocol}:{i}"))
        return out

    def rotations(self, idx=None) -> np.ndarray:
        """Rotation matrices (len(idx), 3, 3) of ``camera.rotation_from_euler``."""
        idx = self._idx(idx)
        return camera.rotation_from_euler(self.yaw[idx], self.pitch[idx], self.roll[idx])

    def sample(self, i: int):
        """Image ``i`` as a :class:`disentangled_face.datasets.FaceSample`."""
        from .datasets import FaceSample

        i = int(self._idx(i)[0])
        return FaceSample(image=self.images[i], label=int(self.label[i]), subject=str(self.subject_id[i]),
                          landmarks=self.landmarks[i], visible=self.visible[i], alpha_id=self.alpha_id[i],
                          alpha_exp=self.alpha_exp[i], yaw=float(self.yaw[i]), pitch=float(self.pitch[i]),
                          roll=float(self.roll[i]), scale=float(self.scale[i]), trans=self.trans[i],
                          sequence=None if self.sequence is None else int(self.sequence[i]), index=i,
                          source=f"{self.protocol}:{i}")

    def verification_pairs(self) -> list:
        """The pairs as :class:`disentangled_face.datasets.VerificationPair` records (image
        indices, or sequence ids for ``ytf-like``)."""
        from .datasets import VerificationPair

        if self.pairs is None:
            raise ValueError(f"protocol {self.protocol!r} has no verification pairs")
        kind = "sequence" if self.sequence is not None else "image"
        return [VerificationPair(int(a), int(b), bool(s), int(f), kind)
                for (a, b), s, f in zip(self.pairs, self.same, self.fold)]

    def sequence_indices(self, seq: int) -> np.ndarray:
        """Frame indices (in order) of sequence ``seq`` (``ytf-like``)."""
        if self.sequence is None:
            raise ValueError(f"protocol {self.protocol!r} has no sequences")
        idx = np.flatnonzero(self.sequence == seq)
        return idx[np.argsort(self.frame[idx])]


_REQUIRED = ("images", "landmarks", "landmarks_true", "visible", "label", "subject_id", "alpha_id",
             "alpha_exp", "yaw", "pitch", "roll", "scale", "trans")
_OPTIONAL = ("pairs", "same", "fold", "sequence", "frame", "expression", "intensity", "sweep",
             "blur_sigma", "noise_std")


def load_protocol(path: str | os.PathLike) -> SynthSet:
    """Load a protocol file written by :func:`build_protocol` (images stay on disk).

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    ValueError
        When it lacks a dataset of the layout (the message names the file and the dataset).
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"synthetic protocol file not found: {path} (build it with synth.build_protocol)")
    with h5py.File(path, "r") as h5:
        missing = [k for k in _REQUIRED if k not in h5]
        if missing:
            raise ValueError(f"{path} is not a synthetic protocol file: missing datasets {missing}")
        arrays = {k: h5[k][()] for k in _REQUIRED if k != "images"}
        opt = {k: h5[k][()] for k in _OPTIONAL if k in h5}
        if "expression" in opt:
            opt["expression"] = opt["expression"].astype(str)
        images = _LazyImages(path, h5["images"].shape)
        attrs = dict(h5.attrs)
    return SynthSet(path=path, protocol=str(attrs.get("protocol", "")), config=json.loads(attrs.get("config", "{}")),
                    model_name=str(attrs.get("model", "")), images=images, **arrays, **opt)


# ----------------------------------------------------------------------------- summaries, plots
#: The real datasets each protocol stands in for, with their published sizes (for tables).
REAL_ANALOGUES = {
    "train": "CASIA-WebFace (10,575 subjects, 494,414 images)",
    "lfw-like": "LFW View 2 (10 folds x 300 + 300 pairs)",
    "ytf-like": "YouTube Faces (10 splits x 250 + 250 video pairs)",
    "bu3dfe-like": "BU-3DFE (100 subjects, neutral + 6 expressions x 4 intensities)",
    "micc-like": "MICC Florence (53 subjects, indoor/outdoor video)",
}


def protocol_sizes(name: str, profile: str | dict = "book") -> dict:
    """Sizes a protocol will have under a profile, from its config alone (nothing rendered).

    Returns
    -------
    dict
        ``subjects``, ``images``, ``pairs`` (0 if none), ``folds`` (0 if none), ``sequences``
        (0 if none).
    """
    cfg = protocol_config(name, profile)
    out = {"subjects": 0, "images": 0, "pairs": 0, "folds": 0, "sequences": 0}
    if name in ("train", "micc-like"):
        out["subjects"] = cfg["subjects"]
        out["images"] = cfg["subjects"] * cfg["images_per_subject"]
    elif name == "lfw-like":
        out["subjects"] = cfg["folds"] * cfg["subjects_per_fold"]
        out["images"] = out["subjects"] * cfg["images_per_subject"]
    elif name == "ytf-like":
        out["subjects"] = cfg["folds"] * cfg["subjects_per_fold"]
        out["sequences"] = out["subjects"] * cfg["videos_per_subject"]
        out["images"] = out["sequences"] * cfg["frames_per_video"]
    elif name == "bu3dfe-like":
        y0, y1, step = cfg.get("yaw_sweep_deg", [-90, 90, 10])
        per = 1 + 6 * len(cfg.get("intensities", [1.0])) + len(np.arange(y0, y1 + 1e-9, step))
        out["subjects"] = cfg["subjects"]
        out["images"] = cfg["subjects"] * per
    if name in ("lfw-like", "ytf-like"):
        out["folds"] = cfg["folds"]
        out["pairs"] = cfg["folds"] * (cfg["same_pairs_per_fold"] + cfg["diff_pairs_per_fold"])
    return out


def plot_faces(images, titles: Sequence[str] | None = None, ncols: int = 8, landmarks=None, visible=None,
               size: float = 1.35, marker_size: float = 4.0):
    """A matplotlib grid of face crops, optionally with landmarks (visible green, hidden red).

    Parameters
    ----------
    images : ndarray (B, H, W, 3) uint8
    titles : sequence of str, optional
    ncols : int
    landmarks : ndarray (B, 68, 2), optional, pixels
    visible : ndarray (B, 68) bool, optional
    size : float
        Inches per image column.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    images = np.asarray(images)
    B = len(images)
    ncols = min(ncols, B)
    nrows = int(math.ceil(B / ncols))
    H, W = images.shape[1:3]
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows * H / W + 0.25 * nrows),
                             squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= B:
            continue
        ax.imshow(images[k])
        if landmarks is not None:
            vis = np.ones(landmarks.shape[1], bool) if visible is None else np.asarray(visible[k], bool)
            ax.scatter(*landmarks[k][vis].T, s=marker_size, c="lime", linewidths=0)
            ax.scatter(*landmarks[k][~vis].T, s=marker_size, c="red", linewidths=0)
            ax.set_xlim(-0.5, W - 0.5)
            ax.set_ylim(H - 0.5, -0.5)
        if titles is not None:
            ax.set_title(titles[k], fontsize=7)
    fig.tight_layout(pad=0.2)
    return fig


def subject_faces(model, global_ids: Sequence[int], yaw, pitch=0.0, roll=0.0, alpha_exp=None, seed: int = 2018,
                  light=None, background=None, **kwargs) -> RenderedFaces:
    """Render subjects (by global id, with their own ``alpha_id`` and albedo) under given
    poses and expressions: one image per entry of ``global_ids`` (repeat ids for several
    images of one subject). Other keyword arguments go to :func:`render_faces`."""
    ids = [int(g) for g in global_ids]
    B = len(ids)
    alpha_id = subject_codes(model, seed, ids)
    am = get_albedo_model(model)
    cache: dict[int, np.ndarray] = {}
    albedo = np.stack([cache.setdefault(g, subject_albedo(am, seed, g)) for g in ids])
    if alpha_exp is None:
        alpha_exp = np.zeros((B, model.n_exp), np.float32)
    if background is None:
        background = np.tile(np.array([[0.78, 0.80, 0.84], [0.55, 0.57, 0.62]], np.float32), (B, 1, 1))
    return render_faces(model, alpha_id, alpha_exp, yaw, pitch, roll, albedo=albedo, light=light,
                        background=background, **kwargs)
