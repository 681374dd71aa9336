"""Fixed against contour-aware jaw landmarks at large yaw (chapter 3, issue 12).

A 68-point detector puts the jaw points on the face's silhouette; :func:`contour_error_vs_yaw`
measures what tying them to fixed vertices costs the fitted identity, and what landmark
marching (``fitting.contour: marching``) wins back; with ``jaw_landmarks="outline"`` the jaw
points come from the face's projected outline (:mod:`disentangled_face.data.outline`) instead of
the candidate rows marching itself chooses from, the independent check of marching.
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np

from ..config import FittingConfig
from ..fitting import fit_subjects
from ..shape import MorphableModel, camera
from ..shape.contour import JAW_LANDMARKS, contour_landmarks
from ..data.outline import outline_landmarks, outline_points, rendered_outline_points
from .metrics import model_shape_error

__all__ = ["contour_error_vs_yaw", "outline_render_gap"]


def contour_error_vs_yaw(model: MorphableModel, yaw_deg: Sequence[float] = (0, 15, 30, 45, 60, 70, 80, 90),
                        n_subjects: int = 4, seed: int = 0, options: FittingConfig | None = None,
                        jaw_landmarks: str = "contour", direction: str = "normal",
                        **overrides: Any) -> dict[str, np.ndarray]:
    """Identity error of single-image fits of silhouette jaw landmarks against yaw (issue 12).

    ``n_subjects`` neutral subjects drawn from the prior (the first is the mean face) are
    seen at every yaw of ``yaw_deg`` (pitch and roll 0, no noise) with the jaw landmarks on the
    silhouette (:func:`~disentangled_face.fitting.simulate_landmarks` ``jaw_landmarks='contour'``), and every image is fitted
    alone twice: with fixed jaw vertices (``contour='none'``) and with landmark marching
    (``contour='marching'``). The error is the RMSE (mm, Sec. 4.1: Procrustes on the 68
    landmarks, 95 mm crop; :func:`.metrics.model_shape_error`) of the
    fitted identity shape against the same subject's yaw-0 fit, which isolates what the
    jaw correspondence costs from what one image cannot tell (the prior's pull).

    ``jaw_landmarks``: ``"contour"``, the silhouette of the candidate rows
    (:func:`~disentangled_face.shape.contour.contour_landmarks`, the rows marching chooses
    from); ``"outline"``, the face region's projected outline
    (:func:`~disentangled_face.data.outline.outline_landmarks`, no candidate rows), for the
    images and for the yaw-0 reference alike, with the outline's ray ``direction``
    (``"normal"``: the jawline's normal, ``"horizontal"``: the image row). The camera is
    f = 0.5 pixels per mm.

    Returns
    -------
    dict
        ``yaw_deg`` (Y,); ``fixed``, ``marching`` (Y, n_subjects) mm; ``max_abs_alpha_fixed``,
        ``max_abs_alpha_marching`` (Y, n_subjects) the largest ``|alpha_id|`` (SD);
        ``offset_px`` (Y, n_subjects, 16): distance (pixels) of every jaw point (0-7, 9-16)
        from the contour-based one of the same image (zeros at ``"contour"``).

    Raises
    ------
    ValueError
        When ``jaw_landmarks`` is neither ``"contour"`` nor ``"outline"`` (or ``direction``
        is unknown, :func:`~disentangled_face.data.outline.outline_points`).
    """
    if jaw_landmarks not in ("contour", "outline"):
        raise ValueError(f"jaw_landmarks must be 'contour' or 'outline', got {jaw_landmarks!r}")
    place = contour_landmarks if jaw_landmarks == "contour" else outline_landmarks
    kw = {} if jaw_landmarks == "contour" else {"direction": direction}
    yaw = np.asarray(yaw_deg, np.float64)
    rng = np.random.default_rng(seed)
    a_id = rng.standard_normal((n_subjects, model.n_id))
    a_id[0] = 0.0
    S = model.identity_shape(a_id).astype(np.float64)
    Y, n = len(yaw), n_subjects
    R = camera.rotation_from_euler(np.radians(np.repeat(yaw, n)), np.zeros(Y * n), np.zeros(Y * n))
    f, t = np.full(Y * n, 0.5), np.tile([48.0, 56.0], (Y * n, 1))
    lm = place(model, np.tile(S, (Y, 1, 1)), R, f, t, **kw)
    offset = np.linalg.norm(lm - contour_landmarks(model, np.tile(S, (Y, 1, 1)), R, f, t), axis=-1)
    R0 = camera.rotation_from_euler(np.zeros(n), np.zeros(n), np.zeros(n))
    ref_lm = place(model, S, R0, f[:n], t[:n], **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")         # the fixed fits' soft signs are the point here
        ref = fit_subjects(model, ref_lm, None, options, **overrides)
        out = {c: fit_subjects(model, lm, None, options, contour=c, **overrides) for c in ("none", "marching")}
    ref_shape = model.identity_shape(ref.subject_alpha_id)
    res = dict(yaw_deg=yaw, offset_px=offset[:, JAW_LANDMARKS].reshape(Y, n, -1))
    for c, name in (("none", "fixed"), ("marching", "marching")):
        a = out[c].subject_alpha_id
        est = model.identity_shape(a).reshape(Y, n, -1, 3)
        res[name] = np.stack([np.asarray(model_shape_error(model, est[i], ref_shape).rmse_mm) for i in range(Y)])
        res[f"max_abs_alpha_{name}"] = np.abs(a).max(-1).reshape(Y, n)
    return res


def outline_render_gap(model: MorphableModel, yaw_deg: Sequence[float] = (30, 70, 90), f: float = 0.5,
                       direction: str = "normal") -> np.ndarray:
    """Distance (pixels) of the exact outline points from those found in a rendered mask.

    The mean face at every yaw of ``yaw_deg`` (pitch and roll 0), f pixels per mm, on a
    canvas 3.2 f wide per mm (wide enough for the turned face):
    :func:`~disentangled_face.data.outline.outline_points` against
    :func:`~disentangled_face.data.outline.rendered_outline_points`.

    Returns
    -------
    ndarray (Y, 16), pixels: per yaw and jaw landmark (0-7, 9-16).

    Raises
    ------
    disentangled_face.data.render.RendererUnavailableError
        When no headless OpenGL context can be created.
    """
    yaw = np.radians(np.asarray(yaw_deg, np.float64))
    Y = len(yaw)
    S = np.repeat(model.mean[None].astype(np.float64), Y, 0)
    R = camera.rotation_from_euler(yaw, 0.0 * yaw, 0.0 * yaw)
    H, W = int(round(224 * f)), int(round(320 * f))
    fs, t = np.full(Y, f), np.tile([W / 2, H / 2], (Y, 1))
    exact, _ = outline_points(model, S, R, fs, t, direction=direction)
    return np.linalg.norm(exact - rendered_outline_points(model, S, R, fs, t, (H, W), direction=direction), axis=-1)
