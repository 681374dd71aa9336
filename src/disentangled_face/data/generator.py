"""The generator of synthetic faces: subjects, the SphereFace-like crop, and rendering (chapter 2).

Generator
---------
* A **subject** (global id ``g``) is ``alpha_id ~ N(0, I)`` (the model prior, Eq. 6) and a
  per-subject **albedo**: a skin tone, smooth low-frequency colour variation over the mesh
  (random Fourier features of the vertex positions), lip and cheek colour, eyebrows and a
  hairline with a hair colour. Both shape and texture carry identity. Everything about a
  subject is drawn from ``numpy.random.SeedSequence([seed, g])``, so a subject is the same in
  every protocol it appears in, and protocols use disjoint ranges of ``g``
  (:data:`~disentangled_face.data.protocols.SUBJECT_OFFSETS`): test identities never occur in
  training.
* An **image** of a subject has its own expression ``alpha_exp`` (sparse ICT blendshape
  weights in [0, 1]: one of :data:`~disentangled_face.data.expressions.EXPRESSIONS` at a random
  intensity plus a few random blendshapes), pose (yaw in [-90, 90] deg from a truncated normal, pitch and roll in smaller
  ranges), scale ``f`` (pixels per mm) and translation ``t`` (pixels), lighting (ambient +
  one directional Lambertian light, random direction, strength and tint) and a background
  gradient. The ground-truth 3D shape is ``model.shape(alpha_id, alpha_exp)`` (mm).
* **Camera** (shared convention, :mod:`disentangled_face.shape.camera`, Eq. 6):
  ``R = rotation_from_euler(yaw, pitch, roll)``, landmarks
  ``camera.project(model.landmarks_of(shape), R, f, t)``. The crop imitates SphereFace's
  pre-processing (112 x 96, face centred): ``f`` is ``f0 * exp(N(0, scale_std))`` with ``f0``
  the scale that maps the mean face's five alignment points (eye centres, nose tip, mouth
  corners) onto SphereFace's reference points, times ``scale_factor`` (0.85, which keeps the
  chin inside the crop); ``t`` puts the centroid of the five projected
  points at the reference centroid, plus ``N(0, trans_std_px)``.
* **Landmarks**: the 68 projected landmark vertices (``landmarks_true``) and a copy with
  optional Gaussian "detector" noise of ``landmark_noise_px`` (``landmarks``).
  ``visible`` is a z-buffer test (:func:`disentangled_face.data.render.visibility`). At large yaw the jawline points (0-16) remain, by default
  (``synth.jaw_landmarks: fixed``), the *projected 3D vertices* of the jaw: the far-side ones
  are hidden behind the face (``visible`` false) and lie inside the face's outline rather
  than on its silhouette. A 2D detector instead returns the *silhouette contour* there:
  ``jaw_landmarks: contour`` puts them there (:mod:`disentangled_face.shape.contour`), and
  the fitter's ``contour: marching`` follows them; ``jaw_landmarks: outline`` puts them on the
  projected face outline without the fitter's candidates (:mod:`disentangled_face.data.outline`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..config import PoseConfig, SynthConfig
from ..shape import camera
from .albedo import AlbedoModel
from .render import Light, Renderer, create_context, hole_fill_triangles, vertex_normals, visibility

__all__ = ["SPHEREFACE_REFERENCE", "IMAGE_SIZE", "subject_seed", "subject_codes", "subject_albedo",
           "reference_scale", "five_points", "centring_translation", "get_renderer", "get_albedo_model",
           "RenderedFaces", "render_faces", "subject_faces"]

#: SphereFace's five reference points (left eye, right eye, nose tip, left and right mouth
#: corners) in the 96 x 112 crop, pixels (u, v) as in its ``face_align_demo.m``.
SPHEREFACE_REFERENCE = np.array([[30.2946, 51.6963], [65.5318, 51.5014], [48.0252, 71.7366],
                                 [33.5493, 92.3655], [62.7299, 92.2041]], np.float64)
IMAGE_SIZE = (112, 96)


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
    five = five_points(model.mean[None], model.landmarks)[0]  # (5, 3)
    X = five[:, :2] * np.array([1.0, -1.0])
    X = X - X.mean(0)
    Y = SPHEREFACE_REFERENCE - SPHEREFACE_REFERENCE.mean(0)
    return float((X * Y).sum() / (X * X).sum())


def five_points(shapes_or_landmarks: np.ndarray, landmark_idx: np.ndarray | None = None) -> np.ndarray:
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
    uv0 = camera.project(five_points(np.asarray(landmarks3d, np.float64)), np.asarray(R, np.float64),
                         np.asarray(f, np.float64), np.zeros((len(f), 2)))
    return SPHEREFACE_REFERENCE.mean(0)[None] - uv0.mean(1)


# ----------------------------------------------------------------------------- rendering
_RENDERERS: dict = {}
_ALBEDO_MODELS: dict = {}


def _model_key(model) -> tuple:
    return (model.name, model.n_vertices, model.triangles.shape[0], float(model.mean[0, 0]))


def get_renderer(model, size: tuple[int, int] = IMAGE_SIZE, max_batch: int = 64):
    """A cached :class:`~disentangled_face.data.render.Renderer` for the model's mesh (one OpenGL
    context per process, one renderer per image size); eye and mouth holes are filled."""
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
                 smooth: bool = False, trans_offset=None, shapes=None, jaw_landmarks: str = "fixed") -> RenderedFaces:
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
    light : disentangled_face.data.render.Light, optional
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
    jaw_landmarks : {'fixed', 'contour', 'outline'}
        Jawline landmarks 0-16 at the projected fixed landmark vertices, or on the silhouette
        as a 2D detector puts them (:func:`disentangled_face.shape.contour.contour_vertices`;
        ``synth.jaw_landmarks``), or on the projected face outline without the fitter's
        candidate rows (:func:`disentangled_face.data.outline.outline_landmarks`). The images
        are the same either way.

    Returns
    -------
    RenderedFaces

    Raises
    ------
    ValueError
        On inconsistent shapes.
    disentangled_face.data.render.RendererUnavailableError
        When no headless OpenGL context can be created.
    """
    alpha_id = np.atleast_2d(np.asarray(alpha_id, np.float32))
    alpha_exp = np.atleast_2d(np.asarray(alpha_exp, np.float32))
    B = alpha_id.shape[0]
    if jaw_landmarks not in ("fixed", "contour", "outline"):
        raise ValueError(f"jaw_landmarks must be 'fixed', 'contour' or 'outline', got {jaw_landmarks!r}")
    shapes, R, f, t, lm3 = _pose_faces(model, alpha_id, alpha_exp, yaw, pitch, roll, scale, trans, trans_offset, shapes)
    if jaw_landmarks == "contour":   # the jaw on the silhouette (the crop still centres on the five points)
        from ..shape.contour import contour_vertices

        idx = contour_vertices(model, shapes, R, f, t)
        lm3 = np.take_along_axis(np.asarray(shapes, np.float64), idx[..., None], 1)
    (h, w), k = _render_size(size, low_res)
    renderer = get_renderer(model, (h, w), max_batch)
    out = _rasterise(renderer, model, shapes, R, f, t, k, albedo, light, smooth)
    # landmarks (full-resolution pixels) and visibility (in the rendered resolution)
    lm_true, lm_z = camera.project(lm3, R, f, t), camera.depth(lm3, R)
    if jaw_landmarks == "outline":   # the jaw of the far side on the outline (points on mesh edges)
        from .outline import outline_landmarks

        lm_true, lm_z = outline_landmarks(model, shapes, R, f, t, return_depth=True)
    lm_uvz = np.concatenate([k * lm_true, lm_z[..., None]], -1)
    visible = visibility(lm_uvz, out.depth)
    img, mask_full = _composite(out, background, size, low_res)
    rngs = _image_rngs(rng, B)
    images = _degrade(img, _arr(blur_sigma, B, "blur_sigma"), _arr(noise_std, B, "noise_std"), rngs)
    lm_noisy = lm_true
    if landmark_noise_px > 0:
        lm_noisy = lm_true + np.stack([r.normal(0.0, landmark_noise_px, lm_true.shape[1:]) for r in rngs])
    return RenderedFaces(images=images, landmarks=lm_noisy.astype(np.float32),
                         landmarks_true=lm_true.astype(np.float32), visible=visible,
                         scale=f.astype(np.float32), trans=t.astype(np.float32), mask=mask_full,
                         depth=out.depth)


def _pose_faces(model, alpha_id, alpha_exp, yaw, pitch, roll, scale, trans, trans_offset, shapes):
    """Shapes (B, n, 3) mm, rotations R (B, 3, 3), scales f (B,), translations t (B, 2) and the
    3D landmarks (B, 68, 3) of :func:`render_faces` (defaults: the SphereFace-like crop)."""
    B = alpha_id.shape[0]
    yaw, pitch, roll = (_arr(a, B, nm) for a, nm in ((yaw, "yaw"), (pitch, "pitch"), (roll, "roll")))
    if shapes is None:
        shapes = model.shape(alpha_id, alpha_exp)  # (B, n, 3) mm; validates the codes
    elif np.shape(shapes) != (B, model.n_vertices, 3):
        raise ValueError(f"shapes must have shape ({B}, {model.n_vertices}, 3), got {np.shape(shapes)}")
    R = camera.rotation_from_euler(yaw, pitch, roll)
    f = _arr(PoseConfig().scale_factor * reference_scale(model) if scale is None else scale, B, "scale")
    lm3 = model.landmarks_of(shapes).astype(np.float64)
    if trans is None:
        t = centring_translation(lm3, R, f)
        if trans_offset is not None:
            t = t + _arr(trans_offset, B, "trans_offset", (2,))
    else:
        t = _arr(trans, B, "trans", (2,))
    return shapes, R, f, t, lm3


def _render_size(size: tuple[int, int], low_res: tuple[int, int] | None) -> tuple[tuple[int, int], float]:
    """The rendered (h, w) and its scale k = h / H against the output ``size``."""
    H, W = size
    if low_res is None:
        return tuple(size), 1.0
    h, w = low_res
    k = h / H
    if abs(w / W - k) > 1e-6:
        raise ValueError(f"low_res {low_res} must have the aspect ratio of size {size}")
    return (h, w), k


def _rasterise(renderer: Renderer, model, shapes, R, f, t, k: float, albedo, light, smooth: bool):
    """Project the shapes with the camera of Eq. 6 (scaled by k) and draw them shaded."""
    B = shapes.shape[0]
    rot = _rotate(shapes, R)  # (B, n, 3) camera coordinates, mm
    uvz = np.empty_like(rot)
    uvz[..., 0] = k * (f[:, None] * rot[..., 0] + t[:, None, 0])
    uvz[..., 1] = k * (-f[:, None] * rot[..., 1] + t[:, None, 1])
    uvz[..., 2] = rot[..., 2]
    normals = vertex_normals(rot, model.triangles, renderer.incidence) if smooth else None
    if albedo is None:
        albedo = np.tile(np.array([0.85, 0.68, 0.58], np.float32), (model.n_vertices, 1))
    if light is None:
        light = Light(np.full((B, 3), 0.45, np.float32), np.tile(np.array([0.3, 0.3, 1.0], np.float32), (B, 1)),
                      np.full((B, 3), 0.55, np.float32))
    return renderer.render(uvz, normals, albedo, light, scale=k * f)


def _composite(out, background, size: tuple[int, int], low_res) -> tuple[np.ndarray, np.ndarray]:
    """The rendered faces over a vertical background gradient, float (B, H, W, 3) in grey levels,
    upsampled bilinearly to ``size`` when rendered at ``low_res``; and the face mask (B, H, W)."""
    B, h = out.rgb.shape[:2]
    if background is None:
        background = np.full((B, 2, 3), 0.5)
    background = np.asarray(background, np.float32)
    if background.shape != (B, 2, 3):
        raise ValueError(f"background must have shape ({B}, 2, 3), got {background.shape}")
    ramp = np.linspace(0.0, 1.0, h, dtype=np.float32)[None, :, None, None]
    bg = background[:, None, None, 0] * (1 - ramp) + background[:, None, None, 1] * ramp  # (B, h, 1, 3)
    img = np.where(out.mask[..., None], out.rgb.astype(np.float32), 255.0 * bg)
    if low_res is None:
        return img, out.mask
    import scipy.ndimage

    H, W = size
    w = out.rgb.shape[2]
    img = scipy.ndimage.zoom(img, (1, H / h, W / w, 1), order=1, grid_mode=True, mode="nearest")
    mask_full = scipy.ndimage.zoom(out.mask.astype(np.float32), (1, H / h, W / w), order=0,
                                   grid_mode=True, mode="nearest") > 0.5
    return img, mask_full


def _degrade(img: np.ndarray, blur: np.ndarray, noise: np.ndarray, rngs: list) -> np.ndarray:
    """Gaussian blur (pixels) and additive Gaussian noise (grey levels) per image, then uint8."""
    if np.any(blur > 0):
        import scipy.ndimage

        for i in np.flatnonzero(blur > 0):
            img[i] = scipy.ndimage.gaussian_filter(img[i], (blur[i], blur[i], 0), mode="nearest")
    for i in np.flatnonzero(noise > 0):
        img[i] += noise[i] * rngs[i].standard_normal(img.shape[1:], dtype=np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


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


def subject_faces(model, global_ids: Sequence[int], yaw, pitch=0.0, roll=0.0, alpha_exp=None,
                  seed: int | None = None, light=None, background=None, **kwargs) -> RenderedFaces:
    """Render subjects (by global id, with their own ``alpha_id`` and albedo) under given
    poses and expressions: one image per entry of ``global_ids`` (repeat ids for several
    images of one subject). ``seed`` is the generator's (``cfg.synth.seed``, or a protocol
    file's ``config["seed"]``; the typed default when omitted). Other keyword arguments go to
    :func:`render_faces`."""
    seed = SynthConfig().seed if seed is None else seed
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
