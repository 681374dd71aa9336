"""Jaw landmarks on the face's projected outline, independent of the contour candidates (issue 12).

:mod:`disentangled_face.shape.contour` puts the synthetic jaw points (``jaw_landmarks:
contour``) at the outermost of a few *candidate vertices* per landmark, the same rows the fitter's
landmark marching chooses from, so that generator and fitter share one definition of the
silhouette. This module places them without the rows (``synth.jaw_landmarks: outline``):

Face region (:func:`face_region`): the model's triangles whose three vertices, on the mean face
seen frontally (model x, y), lie inside the jawline polygon -- the fixed jaw landmarks 0-16,
closed above by vertical lines from landmarks 0 and 16 up to the top of the mesh -- or within
``margin_mm`` (2 mm) of its jaw chords (the jaw bulges out of the straight chords between its
landmarks). A detector's jaw outline is the edge of the face, not of the ears, the side of the
head or the neck behind it, which the model's mesh also has (about 92 mm out where the jaw
landmarks are 74 mm out).

Outline point (:func:`outline_points`, our rule): for jaw landmark ``l`` of image ``b``, the
ray from the projected fixed vertex ``p_l`` along the jawline's outward normal at ``l``
(:func:`jaw_normals`, frontal, carried into the image by the face's horizontal and vertical
image axes, so roll is accounted for; ``direction="horizontal"`` takes the face's horizontal
axis instead, the height convention of the candidate rows); the outline point is the furthest
point of that ray inside the face region's projection (the union of its projected triangles:
the rendered face mask at infinite resolution, occlusion playing no part in a mask). It is
found exactly on the mesh edges: the mask's extreme point on a line is a crossing of the line
with a triangle edge, so it is the largest crossing parameter over all region edges. It is a
point *on* a mesh edge, generally no vertex, and it is searched over the whole face region,
not over candidate rows. Since ``p_l`` itself is in the region, the point is never inward of
the fixed vertex; frontally it lies within about the margin (2 mm) outside it.

Detector rule (:func:`outline_landmarks`): on the side turned away from the camera
(``side * R[2, 0] < 0``, the side whose x axis points away, as marching's rule) the jaw point
is the outline point; on the side facing the camera and for the chin (8) it stays at the
projected fixed vertex, where the visible jaw line is (the outline of that side runs round the
cheek behind the jaw, which a detector does not follow). Frontal (``R[2, 0] = 0``) all stay.
"""

from __future__ import annotations

import numpy as np

from ..shape import camera
from ..shape.contour import JAW_LANDMARKS, _as_batch

__all__ = ["face_region", "region_edges", "jaw_normals", "ray_extent", "outline_points", "outline_landmarks",
           "rendered_outline_points"]

_REGION: dict = {}


def face_region(model, margin_mm: float = 2.0) -> np.ndarray:
    """The face region's triangles (T', 3) of ``model`` (see the module docstring); cached.

    Parameters
    ----------
    model : MorphableModel
        68 iBUG landmarks, ``triangles`` (T, 3), mean face (n, 3) mm (x to the subject's left,
        y up, z forward).
    margin_mm : float
        Vertices this close (mm, frontal) to the jawline's chords count as inside: the jaw
        curves out of the straight chords between its landmarks.

    Returns
    -------
    ndarray (T', 3) int: the rows of ``model.triangles`` inside the frontal jawline polygon.

    Raises
    ------
    ValueError
        When the model does not have 68 landmarks, or ``margin_mm`` is negative.
    """
    from matplotlib.path import Path

    if margin_mm < 0:
        raise ValueError(f"margin_mm must be >= 0, got {margin_mm}")
    if model.landmarks.shape[0] != 68:
        raise ValueError(f"the face region needs the 68 iBUG landmarks, the model has {model.landmarks.shape[0]}")
    key = (model.name, model.n_vertices, float(model.mean[0, 0]), float(model.mean[-1, 2]), margin_mm)
    if key in _REGION:
        return _REGION[key]
    M = np.asarray(model.mean, np.float64)
    jaw = M[model.landmarks[:17], :2]
    top = M[:, 1].max() + 1.0
    poly = np.concatenate([[[jaw[0, 0], top]], jaw, [[jaw[-1, 0], top]]])
    xy = M[:, :2]
    inside = Path(poly).contains_points(xy)
    a, b = jaw[:-1], jaw[1:]                                   # the chords between jaw landmarks
    ab = b - a
    lam = np.clip(((xy[:, None] - a[None]) * ab[None]).sum(-1) / (ab * ab).sum(-1)[None], 0.0, 1.0)
    dist = np.linalg.norm(xy[:, None] - (a[None] + lam[..., None] * ab[None]), axis=-1).min(1)
    inside |= dist <= margin_mm                                # the jaw bulges out of its chords
    tri = np.asarray(model.triangles, np.int64)
    out = tri[inside[tri].all(1)]
    _REGION[key] = out
    return out


def region_edges(model) -> np.ndarray:
    """The unique undirected edges (E, 2) of :func:`face_region`'s triangles."""
    tri = face_region(model)
    e = np.sort(np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]]), 1)
    return np.unique(e, axis=0)


def jaw_normals(model) -> np.ndarray:
    """Outward unit normals (17, 2) of the frontal jawline (model x, y) at landmarks 0-16.

    At landmark ``l`` the normal of the chord from ``l - 1`` to ``l + 1`` (one-sided at 0 and
    16), pointing away from the centroid of the 17 points; the chin's (8) is straight down.
    """
    P = np.asarray(model.mean, np.float64)[model.landmarks[:17], :2]
    tan = np.gradient(P, axis=0)
    n = np.stack([tan[:, 1], -tan[:, 0]], -1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    n *= np.sign(((P - P.mean(0)) * n).sum(-1))[:, None]
    return n


def ray_extent(uv: np.ndarray, edges: np.ndarray, origin: np.ndarray, direction: np.ndarray):
    """How far each ray runs inside the union of a mesh's projected triangles (exact).

    The union's furthest point along a line is a crossing of the line with a triangle edge, so
    it is the largest crossing parameter over the edges (a rasteriser's mask outline, at
    infinite resolution).

    Parameters
    ----------
    uv : ndarray (B, n, 2)
        Projected vertices, pixels.
    edges : ndarray (E, 2) int
        The mesh's edges (:func:`region_edges`).
    origin : ndarray (B, J, 2)
        The rays' starting points, pixels (inside the union, for the result to be >= 0).
    direction : ndarray (B, J, 2)
        Unit directions.

    Returns
    -------
    s : ndarray (B, J)
        Distance (pixels) from ``origin`` to the furthest crossing (``-inf`` where the line
        misses the mesh; negative when all crossings lie behind the origin).
    edge : ndarray (B, J) int
        The row of ``edges`` crossed there.
    lam : ndarray (B, J)
        Where on that edge, from its first vertex (0) to its second (1).
    """
    d = np.asarray(direction, np.float64)
    o = np.asarray(origin, np.float64)
    nrm = np.stack([-d[..., 1], d[..., 0]], -1)
    s = np.einsum("bnc,bjc->bjn", uv, d) - (o * d).sum(-1)[..., None]              # along the line (B, J, n)
    h = np.einsum("bnc,bjc->bjn", uv, nrm) - (o * nrm).sum(-1)[..., None]          # across it
    ha, hb = h[..., edges[:, 0]], h[..., edges[:, 1]]
    sa, sb = s[..., edges[:, 0]], s[..., edges[:, 1]]
    cross = (np.minimum(ha, hb) <= 0) & (np.maximum(ha, hb) >= 0)
    den = ha - hb
    flat = np.abs(den) < 1e-12
    lam = np.where(flat, 0.0, ha / np.where(flat, 1.0, den))
    lam = np.where(flat & (sb > sa), 1.0, lam)                                      # on the line: its far end
    sx = np.where(cross, sa + lam * (sb - sa), -np.inf)
    k = sx.argmax(-1)
    return (np.take_along_axis(sx, k[..., None], -1)[..., 0], k,
            np.take_along_axis(lam, k[..., None], -1)[..., 0])


def rendered_outline_points(model, shapes, R, f, t, size: tuple[int, int], direction: str = "normal",
                            step_px: float = 0.25) -> np.ndarray:
    """The outline points found in a rendered mask instead (a check of :func:`outline_points`).

    The face region (:func:`face_region`, both faces of every triangle) is rasterised with
    :class:`.render.Renderer` at ``size``, and every landmark's ray (as in
    :func:`outline_points`) is sampled every ``step_px``; the point is the last sample whose
    pixel is covered. Agreement with the exact points is limited by the pixel grid.

    Parameters
    ----------
    model, shapes, R, f, t, direction
        As :func:`outline_points` (cameras in the pixels of ``size``).
    size : (H, W)
        Rendered image size, pixels.
    step_px : float
        Sampling step along the rays, pixels.

    Returns
    -------
    ndarray (B, 16, 2), pixels: for the jaw landmarks 0-7, 9-16.

    Raises
    ------
    disentangled_face.data.render.RendererUnavailableError
        When no headless OpenGL context can be created.
    """
    from .render import Renderer

    S, R, f, t, _ = _as_batch(shapes, R, f, t)
    H, W = size
    uv = camera.project(S, R, f, t)
    uvz = np.concatenate([uv, camera.depth(S, R)[..., None]], -1)
    rnd = Renderer(face_region(model), model.n_vertices, H, W, max_batch=min(len(S), 16), cull_back=False)
    try:
        mask = rnd.render(uvz, scale=f).mask                                       # (B, H, W)
    finally:
        rnd.release()
    p = uv[:, model.landmarks[JAW_LANDMARKS]]
    d = _directions(model, JAW_LANDMARKS, R, direction)
    steps = np.arange(0.0, float(H + W), step_px)
    q = p[:, :, None] + steps[None, None, :, None] * d[:, :, None]                # (B, J, K, 2)
    j, i = np.floor(q[..., 0]).astype(int), np.floor(q[..., 1]).astype(int)
    ok = (i >= 0) & (i < H) & (j >= 0) & (j < W)
    b = np.arange(len(S))[:, None, None]
    cov = ok & mask[b, np.clip(i, 0, H - 1), np.clip(j, 0, W - 1)]
    last = np.where(cov.any(-1), cov.shape[-1] - 1 - np.argmax(cov[..., ::-1], -1), 0)
    return p + steps[last][..., None] * d


def _directions(model, lms, R, direction):
    """The rays' image directions (B, J, 2): the jawline normals or the horizontal axis."""
    if direction not in ("normal", "horizontal"):
        raise ValueError(f"direction must be 'normal' or 'horizontal', got {direction!r}")
    nx, ny = jaw_normals(model)[lms].T
    if direction == "horizontal":
        nx, ny = np.sign(nx), np.zeros_like(ny)
    hor = np.stack([R[:, 1, 1], R[:, 0, 1]], -1)                                   # the face's horizontal
    hor = hor / np.linalg.norm(hor, axis=-1, keepdims=True)                        # image axis (B, 2)
    up = np.stack([hor[:, 1], -hor[:, 0]], -1)                                     # its up axis (v down)
    return nx[None, :, None] * hor[:, None] + ny[None, :, None] * up[:, None]


def outline_points(model, shapes, R, f, t, landmarks=JAW_LANDMARKS, direction: str = "normal",
                   chunk: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """The face outline on each landmark's horizontal image line (the module docstring's rule).

    Parameters
    ----------
    model : MorphableModel
        68 iBUG landmarks.
    shapes : ndarray (B, n, 3) or (n, 3), mm
        Posed shapes in model coordinates (``model.shape(alpha_id, alpha_exp)``).
    R : ndarray (B, 3, 3); f : ndarray (B,) pixels per mm; t : ndarray (B, 2) pixels
        The scaled orthographic cameras (:func:`disentangled_face.shape.camera.project`).
    landmarks : sequence of int
        iBUG jaw indices (J,) other than the chin; default 0-7, 9-16. The side of each is that
        of its mean-face vertex (x < 0: the subject's right).
    direction : {'normal', 'horizontal'}
        The ray's direction: the jawline's outward normal, or the face's horizontal image axis.
    chunk : int
        Images per vectorised step (memory ``chunk * J * n`` floats).

    Returns
    -------
    uv : ndarray (B, J, 2) or (J, 2), pixels (u right, v down)
        The outline points, for both sides (use :func:`outline_landmarks` for the detector's).
    depth : ndarray (B, J) or (J,), mm
        Their camera depth ``(R X)_z`` (larger is closer), interpolated along the crossed edge.

    Raises
    ------
    ValueError
        When the shapes are not (B, n, 3) of the model's n, a landmark is not a jaw landmark
        (0-16 but 8), or ``direction`` is unknown.
    """
    S, R, f, t, single = _as_batch(shapes, R, f, t)
    if S.shape[1:] != (model.n_vertices, 3):
        raise ValueError(f"shapes must be (B, {model.n_vertices}, 3), got {np.shape(shapes)}")
    _directions(model, JAW_LANDMARKS[:1], np.eye(3)[None], direction)               # checks direction
    lms = np.asarray(landmarks, np.int64)
    if not np.isin(lms, JAW_LANDMARKS).all():
        raise ValueError(f"landmarks must be jaw landmarks 0-16 other than the chin 8, got {lms.tolist()}")
    E = region_edges(model)
    B, J = S.shape[0], len(lms)
    uv_out, z_out = np.zeros((B, J, 2)), np.zeros((B, J))
    for b0 in range(0, B, chunk):
        sl = slice(b0, b0 + chunk)
        Rb = R[sl]
        uv = camera.project(S[sl], Rb, f[sl], t[sl])                               # (b, n, 2)
        z = camera.depth(S[sl], Rb)                                                # (b, n)
        p = uv[:, model.landmarks[lms]]                                            # (b, J, 2)
        d = _directions(model, lms, Rb, direction)                                 # (b, J, 2) outward
        best, k, lk = ray_extent(uv, E, p, d)
        za = np.take_along_axis(z, E[k, 0], 1)
        zb = np.take_along_axis(z, E[k, 1], 1)
        uv_out[sl] = p + best[..., None] * d
        z_out[sl] = za + lk * (zb - za)
    return (uv_out[0], z_out[0]) if single else (uv_out, z_out)


def outline_landmarks(model, shapes, R, f, t, direction: str = "normal", return_depth: bool = False):
    """The 68 landmarks with the jaw of the side turned away on the face's outline, the rest at
    their projected fixed vertices (the synthetic ``jaw_landmarks: outline``).

    Parameters and errors as :func:`outline_points`.

    Returns
    -------
    ndarray (B, 68, 2) or (68, 2), pixels (u right, v down); with ``return_depth`` also the
    depths (B, 68) or (68,), mm.
    """
    S, Rb, fb, tb, single = _as_batch(shapes, R, f, t)
    pts = model.landmarks_of(S).astype(np.float64)
    uv = camera.project(pts, Rb, fb, tb)
    z = camera.depth(pts, Rb)
    ouv, oz = outline_points(model, S, Rb, fb, tb, direction=direction)
    side = np.where(model.mean[model.landmarks[JAW_LANDMARKS], 0] >= 0, 1.0, -1.0)
    away = side[None, :] * Rb[:, 2, 0][:, None] < 0                                 # (B, J)
    uv[:, JAW_LANDMARKS] = np.where(away[..., None], ouv, uv[:, JAW_LANDMARKS])
    z[:, JAW_LANDMARKS] = np.where(away, oz, z[:, JAW_LANDMARKS])
    if single:
        uv, z = uv[0], z[0]
    return (uv, z) if return_depth else uv
