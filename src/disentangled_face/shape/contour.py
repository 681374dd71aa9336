"""Contour (silhouette) landmarks of the jawline: candidate lines, the silhouette rule, marching.

A 68-point detector puts the jawline points (iBUG 0-16) on the face's *silhouette* in the
image, while the morphable model ties them to fixed vertices (``model.landmarks``). Frontal,
the two agree; as the head turns, the silhouette on the side turned away from the camera
slides across the cheek toward the nose, and the fixed vertices go out of sight behind it.

Candidate lines (our derivation, in the spirit of the "parallel lines" of landmark marching,
Zhu et al., CVPR 2015, and of eos's model contour, Huber et al., VISAPP 2016, the fitter of
the paper's reference [42]): for every jaw landmark ``l`` except the chin (8), on the mean face,
the vertices in a horizontal slab ``|y - y_l| <= band_mm`` on the landmark's side of the face
(``side * x`` from ``-2`` mm, just across the midline, up to the landmark's own ``side * x_l``),
not more than 3 mm behind it (``z >= z_l - 3``; keeps the neck and the ear out), thinned to one
vertex per ``step_mm`` of ``|x|`` (the one nearest the slab's centre) and ordered from the
midline outward. The fixed vertex is the line's outer end. The ICT-FaceKit README's
"extended jawline" (17 vertices a side) is one polyline along the jaw, which the silhouette
leaves at large yaw, so the lines are derived from the mesh instead (for any 68-point model).

Silhouette rule (:func:`silhouette_choice`, the synthetic "detector"): on every line the vertex
whose projection lies furthest *outward* in the image, along the face's horizontal image axis
(perpendicular to the projected model y axis, so roll is accounted for) and toward the
landmark's side. On the side turned away from the camera that is the occluding contour of the
slab (an extreme point of a slab's projection is never hidden by the slab itself); on the side
facing the camera it is the line's outer end, the fixed jaw vertex, where a detector also
puts the points (the visible jaw line). The chin keeps its vertex.

Marching rule (:func:`marching_choice`, the fitter's correspondence, Eq. 6 with per-image
vertices): for the side facing away (``side * R[2, 0] < 0``: the side's x axis points away
from the camera) the outermost candidate as above; for the other side, as eos's
``get_nearest_contour_correspondences``, the candidate whose projection is nearest to the
observed landmark.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["JAW_LANDMARKS", "ContourLines", "contour_lines", "silhouette_choice", "marching_choice",
           "contour_vertices", "contour_landmarks", "candidate_points"]

#: The iBUG jaw landmarks that move with the silhouette (0-7 the subject's right, 9-16 the
#: left; the chin 8 keeps its vertex).
JAW_LANDMARKS = np.array([*range(0, 8), *range(9, 17)], np.int64)


@dataclass(frozen=True)
class ContourLines:
    """Candidate contour lines of the jaw landmarks (J = 16 lines, padded to K vertices).

    Attributes
    ----------
    landmarks : ndarray (J,) int
        The iBUG indices of the lines' landmarks (:data:`JAW_LANDMARKS`).
    vertices : ndarray (J, K) int
        Vertex indices of every line, from the midline outward; padded with the line's last
        (outermost, the fixed) vertex.
    valid : ndarray (J, K) bool
        False on padding.
    side : ndarray (J,) float
        -1 for the subject's right (model x < 0, landmarks 0-7), +1 for the left (9-16).
    fixed : ndarray (J,) int
        Position in each line of the landmark's own (fixed) vertex.
    """

    landmarks: np.ndarray
    vertices: np.ndarray
    valid: np.ndarray
    side: np.ndarray
    fixed: np.ndarray

    @property
    def union(self) -> np.ndarray:
        """Every candidate vertex once (sorted)."""
        return np.unique(self.vertices)


_LINES: dict = {}


def contour_lines(model, band_mm: float = 3.0, step_mm: float = 2.0) -> ContourLines:
    """The candidate contour lines of ``model``'s jaw landmarks, derived from its mean face.

    Parameters
    ----------
    model : MorphableModel
        A model with the 68 iBUG landmarks (model x to the subject's left, y up, z forward, mm).
    band_mm : float
        Half height of the horizontal slab of each line, mm.
    step_mm : float
        One vertex per this much of ``|x|``, mm.

    Returns
    -------
    ContourLines
        Cached per model and arguments.

    Raises
    ------
    ValueError
        When the model does not have 68 landmarks, or a band or step is not positive.
    """
    if model.landmarks.shape[0] != 68:
        raise ValueError(f"contour lines need the 68 iBUG landmarks, the model has {model.landmarks.shape[0]}")
    if band_mm <= 0 or step_mm <= 0:
        raise ValueError(f"band_mm and step_mm must be > 0, got {band_mm}, {step_mm}")
    key = (model.name, model.n_vertices, float(model.mean[0, 0]), float(model.mean[-1, 2]), band_mm, step_mm)
    if key in _LINES:
        return _LINES[key]
    M = np.asarray(model.mean, np.float64)
    lines, sides, fixed = [], [], []
    for lm in JAW_LANDMARKS:
        v0 = int(model.landmarks[lm])
        x0, y0, z0 = M[v0]
        s = 1.0 if x0 >= 0 else -1.0
        sx = s * M[:, 0]
        dy = np.abs(M[:, 1] - y0)
        ok = (dy <= band_mm) & (sx >= -2.0) & (sx < s * x0) & (M[:, 2] >= z0 - 3.0)
        ok[v0] = False
        idx = np.flatnonzero(ok)
        bins = np.floor((sx[idx] + 2.0) / step_mm).astype(np.int64)
        keep = []
        for b in np.unique(bins):          # the vertex nearest the slab's centre in every bin
            inb = idx[bins == b]
            keep.append(int(inb[np.argmin(dy[inb])]))
        keep = sorted(keep, key=lambda v: sx[v]) + [v0]
        lines.append(keep)
        sides.append(s)
        fixed.append(len(keep) - 1)
    K = max(len(v) for v in lines)
    verts = np.array([v + [v[-1]] * (K - len(v)) for v in lines], np.int64)
    valid = np.array([[True] * len(v) + [False] * (K - len(v)) for v in lines])
    out = ContourLines(JAW_LANDMARKS.copy(), verts, valid, np.array(sides), np.array(fixed, np.int64))
    _LINES[key] = out
    return out


def _outward(R: torch.Tensor, v_down: bool) -> torch.Tensor:
    """The face's horizontal image axis (B, 2): perpendicular to the projected model y axis."""
    d = torch.stack([R[:, 1, 1], R[:, 0, 1] if v_down else -R[:, 0, 1]], -1)
    return d / d.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def silhouette_choice(uv: torch.Tensor, R: torch.Tensor, lines: ContourLines, v_down: bool = True) -> torch.Tensor:
    """Per image and line, the candidate furthest outward in the image (the silhouette rule).

    Parameters
    ----------
    uv : Tensor (B, J, K, 2)
        Projected candidates, pixels.
    R : Tensor (B, 3, 3)
        The cameras' rotations.
    lines : ContourLines
    v_down : bool
        ``uv`` in image coordinates (v down; else camera-plane, v up).

    Returns
    -------
    Tensor (B, J) long: the position of the chosen candidate in each line.
    """
    side = torch.as_tensor(lines.side, dtype=uv.dtype)
    score = side[None, :, None] * (uv * _outward(R, v_down)[:, None, None, :]).sum(-1)
    score = score.masked_fill(~torch.as_tensor(lines.valid)[None], -torch.inf)
    return score.argmax(-1)


def marching_choice(uv: torch.Tensor, R: torch.Tensor, observed: torch.Tensor, lines: ContourLines,
                    v_down: bool = True) -> torch.Tensor:
    """Landmark marching: the outermost candidate on the side facing away, the nearest to the
    observed landmark on the other.

    Parameters
    ----------
    uv : Tensor (B, J, K, 2)
        Projected candidates, pixels (same coordinates as ``observed``).
    R : Tensor (B, 3, 3)
    observed : Tensor (B, J, 2)
        The observed jaw landmarks (the lines' order), pixels.
    lines : ContourLines
    v_down : bool
        As :func:`silhouette_choice`.

    Returns
    -------
    Tensor (B, J) long
    """
    side = torch.as_tensor(lines.side, dtype=uv.dtype)
    out = silhouette_choice(uv, R, lines, v_down)
    dist = ((uv - observed[:, :, None, :]) ** 2).sum(-1)
    dist = dist.masked_fill(~torch.as_tensor(lines.valid)[None], torch.inf)
    near = dist.argmin(-1)
    away = side[None, :] * R[:, 2, 0][:, None] < 0
    return torch.where(away, out, near)


def candidate_points(model, lines: ContourLines, alpha_id, alpha_exp) -> np.ndarray:
    """The candidates' 3D positions (B, J, K, 3), mm, of shapes with codes (B, k_id), (B, k_exp)."""
    u, inv = np.unique(lines.vertices, return_inverse=True)
    inv = inv.reshape(lines.vertices.shape)
    a_id = np.atleast_2d(np.asarray(alpha_id, np.float64))
    a_exp = np.atleast_2d(np.asarray(alpha_exp, np.float64))
    P = (model.mean[u][None].astype(np.float64) + np.einsum("bk,kvd->bvd", a_id, model.id_basis[:, u].astype(np.float64))
         + np.einsum("bk,kvd->bvd", a_exp, model.exp_basis[:, u].astype(np.float64)))
    return P[:, inv]


def _as_batch(shapes, R, f, t):
    S = np.asarray(shapes, np.float64)
    single = S.ndim == 2
    if single:
        S, R, f, t = S[None], np.asarray(R)[None], np.atleast_1d(f), np.asarray(t)[None]
    B = S.shape[0]
    R = np.asarray(R, np.float64).reshape(B, 3, 3)
    f = np.broadcast_to(np.asarray(f, np.float64), (B,))
    t = np.broadcast_to(np.asarray(t, np.float64), (B, 2))
    return S, R, f, t, single


def contour_vertices(model, shapes, R, f, t, lines: ContourLines | None = None) -> np.ndarray:
    """The vertex of every landmark under the silhouette rule: (B, 68) indices (or (68,)).

    Parameters
    ----------
    model : MorphableModel
        68 iBUG landmarks.
    shapes : ndarray (B, n, 3) or (n, 3), mm
        Posed meshes' shapes in model coordinates (``model.shape(alpha_id, alpha_exp)``).
    R : ndarray (B, 3, 3); f : ndarray (B,) pixels per mm; t : ndarray (B, 2) pixels
        The scaled orthographic cameras (:func:`disentangled_face.shape.camera.project`).
    lines : ContourLines, optional
        Default :func:`contour_lines` of the model.

    Returns
    -------
    ndarray (B, 68) int: ``model.landmarks`` with the jaw landmarks (0-7, 9-16) moved to the
    silhouette (see the module docstring).

    Raises
    ------
    ValueError
        When the shapes are not (B, n, 3) of the model's n, or the model lacks 68 landmarks.
    """
    lines = contour_lines(model) if lines is None else lines
    S, R, f, t, single = _as_batch(shapes, R, f, t)
    if S.shape[1:] != (model.n_vertices, 3):
        raise ValueError(f"shapes must be (B, {model.n_vertices}, 3), got {np.shape(shapes)}")
    from . import camera

    B = S.shape[0]
    J, K = lines.vertices.shape
    P = S[:, lines.vertices.reshape(-1)]                      # (B, J K, 3)
    uv = camera.project(P, R, f, t).reshape(B, J, K, 2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)      # (B, 16, K) scores: waking torch's threads costs more than the work
    try:                          # (15x on a busy 2-core machine, where the renderer calls this per batch)
        pos = silhouette_choice(torch.as_tensor(uv), torch.as_tensor(R), lines).numpy()
    finally:
        torch.set_num_threads(threads)
    out = np.repeat(model.landmarks[None], B, 0).astype(np.int64)
    out[:, lines.landmarks] = lines.vertices[np.arange(J)[None], pos]
    return out[0] if single else out


def contour_landmarks(model, shapes, R, f, t, lines: ContourLines | None = None) -> np.ndarray:
    """Image positions of the 68 landmarks with the jaw (0-7, 9-16) on the rendered silhouette,
    as a 2D detector places them (the synthetic ``jaw_landmarks: contour``).

    Parameters and errors as :func:`contour_vertices`.

    Returns
    -------
    ndarray (B, 68, 2) or (68, 2), pixels (u right, v down): ``camera.project`` of the vertices
    of :func:`contour_vertices`.
    """
    from . import camera

    S, Rb, fb, tb, single = _as_batch(shapes, R, f, t)
    idx = contour_vertices(model, S, Rb, fb, tb, lines)
    pts = np.take_along_axis(S, idx[..., None], 1)
    uv = camera.project(pts, Rb, fb, tb)
    return uv[0] if single else uv
