"""Checking the fitter on landmarks of known faces: simulation and shape errors.

:func:`simulate_landmarks` draws subjects from the model's prior and projects their landmarks
with known cameras (Eq. 6); :func:`identity_error_vs_images` measures how the identity error of
the multi-image fit falls with the images per subject (chapter 3); :func:`shape_rmse` and
:func:`shape_errors` compare fitted shapes with the truth (mm).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..config import FittingConfig
from ..shape import MorphableModel, camera
from ..shape.procrustes import apply_similarity, similarity_procrustes
from .api import ImageParameters, fit_subjects

__all__ = ["SyntheticLandmarks", "simulate_landmarks", "shape_rmse", "identity_error_vs_images", "shape_errors"]


@dataclass
class SyntheticLandmarks(ImageParameters):
    """Landmarks of known faces under known cameras (for checking the fitter).

    Attributes: ``landmarks`` (N, L, 2) pixels (noisy), ``clean`` (N, L, 2) noiseless,
    ``label`` (N,), ``alpha_id`` (S, k_id) per subject, ``alpha_exp`` (N, k_exp), ``R`` (N, 3, 3),
    ``f`` (N,), ``t`` (N, 2), ``yaw``/``pitch``/``roll`` (N,) radians.
    """

    landmarks: np.ndarray
    clean: np.ndarray
    label: np.ndarray
    alpha_id: np.ndarray


def simulate_landmarks(model: MorphableModel, n_subjects: int, n_images: int, noise_px: float = 0.0,
                       yaw_deg: tuple[float, float] = (-80.0, 80.0), pitch_deg: float = 15.0,
                       roll_deg: float = 10.0, f: float = 0.5, image_size: tuple[int, int] = (112, 96),
                       exp_scale: float = 1.0, seed: int | None = 0, jaw_landmarks: str = "fixed") -> SyntheticLandmarks:
    """Draw subjects from the model's prior and project their landmarks (Eq. 6) with known cameras.

    Parameters
    ----------
    model : MorphableModel
    n_subjects, n_images : int
        Subjects, and images per subject.
    noise_px : float
        Standard deviation of Gaussian noise added to every coordinate (pixels).
    yaw_deg : (low, high)
        Uniform yaw range (degrees); pitch and roll uniform in ``+-pitch_deg``, ``+-roll_deg``.
    f : float
        Scale in pixels per mm (0.5 puts a ~184 mm wide face model in a 96 px wide image).
    image_size : (height, width)
        The principal point is the image centre.
    exp_scale : float
        Upper end of the expression weights drawn (:meth:`MorphableModel.sample`).
    seed : int, optional
    jaw_landmarks : {'fixed', 'contour'}
        The jawline landmarks 0-16: the projected fixed landmark vertices, or on the face's
        silhouette as a detector gives them (:func:`disentangled_face.shape.contour.contour_landmarks`;
        ``SynthConfig.jaw_landmarks``). The random draws are the same either way.

    Returns
    -------
    SyntheticLandmarks

    Raises
    ------
    ValueError
        When ``n_subjects`` or ``n_images`` is below 1, or ``jaw_landmarks`` is unknown.
    """
    if n_subjects < 1 or n_images < 1:
        raise ValueError(f"n_subjects and n_images must be >= 1, got {n_subjects}, {n_images}")
    if jaw_landmarks not in ("fixed", "contour"):
        raise ValueError(f"jaw_landmarks must be 'fixed' or 'contour', got {jaw_landmarks!r}")
    rng = np.random.default_rng(seed)
    N = n_subjects * n_images
    a_id, _ = model.sample(n_subjects, rng)
    _, a_exp = model.sample(N, rng, exp_scale=exp_scale)
    label = np.repeat(np.arange(n_subjects), n_images)
    yaw = np.radians(rng.uniform(*yaw_deg, N))
    pitch = np.radians(rng.uniform(-pitch_deg, pitch_deg, N))
    roll = np.radians(rng.uniform(-roll_deg, roll_deg, N))
    R = camera.rotation_from_euler(yaw, pitch, roll)
    fs = np.full(N, float(f)) * rng.uniform(0.9, 1.1, N)
    h, w = image_size
    t = np.stack([w / 2 + rng.uniform(-3, 3, N), h / 2 + rng.uniform(-3, 3, N)], -1)
    pts = model.landmarks_of(model.shape(a_id[label], a_exp)).astype(np.float64)
    clean = camera.project(pts, R, fs, t)
    if jaw_landmarks == "contour":
        clean = _contour_clean(model, a_id[label], a_exp, R, fs, t, clean)
    noisy = clean + rng.normal(0.0, noise_px, clean.shape) if noise_px > 0 else clean.copy()
    return SyntheticLandmarks(landmarks=noisy, clean=clean, label=label, alpha_id=a_id, alpha_exp=a_exp, R=R, f=fs,
                              t=t, yaw=yaw, pitch=pitch, roll=roll)


def _contour_clean(model: MorphableModel, a_id, a_exp, R, f, t, clean: np.ndarray) -> np.ndarray:
    """``clean`` (N, 68, 2) with the jaw landmarks on the silhouette (only the candidate
    vertices are evaluated, not the whole meshes)."""
    import torch

    from ..shape.contour import candidate_points, contour_lines, silhouette_choice

    lines = contour_lines(model)
    P = candidate_points(model, lines, a_id, a_exp)            # (N, J, K, 3)
    N, J, K = P.shape[:3]
    uv = camera.project(P.reshape(N, J * K, 3), R, f, t).reshape(N, J, K, 2)
    pos = silhouette_choice(torch.as_tensor(uv), torch.as_tensor(np.asarray(R, np.float64)), lines).numpy()
    out = clean.copy()
    out[:, lines.landmarks] = np.take_along_axis(uv, pos[..., None, None], 2)[:, :, 0]
    return out


def shape_rmse(a: np.ndarray, b: np.ndarray, vertices: np.ndarray | None = None,
               align_on: np.ndarray | None = None) -> np.ndarray:
    """Per-shape RMSE (mm) of vertex distances between (B, n, 3) shapes ``a`` and ``b``.

    Parameters
    ----------
    a, b : ndarray, shape (n, 3) or (B, n, 3), mm
        Estimate and truth (same topology).
    vertices : ndarray of int, optional
        Measure over these vertices only (default: all).
    align_on : ndarray of int, optional
        When given, ``a`` is first mapped onto ``b`` by the least-squares similarity transform
        (scale, rotation, translation;
        :func:`disentangled_face.evaluation.metrics.similarity_procrustes`) of these vertices
        (for example the 68 landmarks, as in the paper's Sec. 4.1). Without it no alignment is
        done.

    Returns
    -------
    ndarray (B,) or float

    Raises
    ------
    ValueError
        When the shapes differ or are not (..., n, 3).
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.shape[-1] != 3:
        raise ValueError(f"shapes must match and be (..., n, 3), got {a.shape} and {b.shape}")
    if align_on is not None:
        c, R, t = similarity_procrustes(a[..., align_on, :], b[..., align_on, :])
        a = apply_similarity(a, c, R, t)
    d = a - b if vertices is None else (a - b)[..., vertices, :]
    return np.sqrt((d ** 2).sum(-1).mean(-1))


def identity_error_vs_images(model: MorphableModel, n_images: Sequence[int] = (1, 2, 4, 8, 16),
                             n_subjects: int = 20, noise_px: float = 1.0, seed: int = 0,
                             options: FittingConfig | None = None, jaw_landmarks: str = "fixed",
                             **overrides: Any) -> dict[str, np.ndarray]:
    """Identity error of the multi-image fit against the number of images per subject.

    ``n_subjects`` random subjects are each seen in ``max(n_images)`` random poses with
    ``noise_px`` landmark noise; for each ``M`` in ``n_images`` their first ``M`` images are
    fitted with :func:`~disentangled_face.fitting.fit_subjects` (``options``, e.g.
    ``cfg.fitting``, and keyword ``overrides`` of single options); the error is
    the RMSE (mm) between the fitted and the true neutral identity shapes
    ``s_mean + A_id alpha_id``: with no alignment over the whole mesh (``rmse_mesh``) and over
    the 68 landmark vertices (``rmse_landmarks``), and over the whole mesh after a similarity
    alignment on the 68 landmarks (``rmse_mesh_aligned``; weak perspective cannot see a face's
    absolute size, which the scale of that alignment removes). ``jaw_landmarks`` is
    :func:`simulate_landmarks`'s (``cfg.synth.jaw_landmarks``, to match ``options.contour``).

    Returns
    -------
    dict
        ``n_images`` (K,); ``rmse_mesh``, ``rmse_landmarks``, ``rmse_mesh_aligned``
        (K, n_subjects) mm; ``reproj_px`` (K,) mean landmark reprojection RMSE.
    """
    n_images = [int(M) for M in n_images]
    syn = simulate_landmarks(model, n_subjects, max(n_images), noise_px=noise_px, seed=seed,
                             jaw_landmarks=jaw_landmarks)
    true = model.identity_shape(syn.alpha_id)
    pos = np.arange(len(syn.label)) % max(n_images)   # image index within its subject
    mesh, lmk, mesh_al, rep = [], [], [], []
    for M in n_images:           # the same subjects each time, seen in their first M images
        sel = pos < M
        fit = fit_subjects(model, syn.landmarks[sel], syn.label[sel], options, **overrides)
        est = model.identity_shape(fit.subject_alpha_id)
        mesh.append(shape_rmse(est, true))
        lmk.append(shape_rmse(est, true, model.landmarks))
        mesh_al.append(shape_rmse(est, true, align_on=model.landmarks))
        rep.append(fit.rmse_px.mean())
    return dict(n_images=np.asarray(n_images), rmse_mesh=np.array(mesh), rmse_landmarks=np.array(lmk),
                rmse_mesh_aligned=np.array(mesh_al), reproj_px=np.array(rep))


_MOMENTS: dict = {}


def _basis_moments(model: MorphableModel):
    """The model's second moments over all n vertices, float64 (cached per model object).

    With codes ``c = [1, alpha_id, alpha_exp]`` (K = 1 + k_id + k_exp) a shape is
    ``X = sum_k c_k B_k`` (n, 3), ``B_0`` the mean. Returns ``H`` (K, 3, K, 3) with
    ``H[k, i, l, j] = sum_v B_k[v, i] B_l[v, j]``, ``G`` (K, K) ``= sum_i H[:, i, :, i]`` (the
    Frobenius products) and ``col`` (K, 3) ``= sum_v B_k[v]``: then ``X_a^T X_b = a H b``,
    ``||X_a||^2 = a G a`` and ``sum_v X_a[v] = a col``, with no shape ever formed.
    """
    hit = _MOMENTS.get(id(model))
    if hit is not None and hit[0]() is model:
        return hit[1]
    import weakref

    B = np.concatenate([model.mean[None], model.id_basis, model.exp_basis]).astype(np.float64)   # (K, n, 3)
    K = B.shape[0]
    M = B.transpose(0, 2, 1).reshape(3 * K, -1)                 # rows (k, i)
    H = (M @ M.T).reshape(K, 3, K, 3)
    out = (H, np.einsum("kili->kl", H), B.sum(1))
    _MOMENTS.clear()                                            # one model at a time (about 2 MB)
    _MOMENTS[id(model)] = (weakref.ref(model), out)
    return out


def shape_errors(model: MorphableModel, alpha_id: Any, alpha_exp: Any, true_alpha_id: Any,
                 true_alpha_exp: Any, chunk: int = 4096) -> dict[str, np.ndarray]:
    """Per-image errors of fitted shapes against ground truth, over the whole mesh (mm).

    The same numbers as :func:`shape_rmse` on the full shapes (``model.shape``), without forming
    them: the similarity transform (Umeyama, :func:`~disentangled_face.shape.procrustes.similarity_procrustes`)
    is fitted on the 68 landmark vertices, and the squared distance over all n vertices,
    ``sum_v ||c R x_v + t - z_v||^2 = c^2 ||X||^2 + n ||t||^2 + ||Z||^2 + 2 c t.R sum_v x_v
    - 2 c tr(R X^T Z) - 2 t.sum_v z_v``, is expanded in the codes through the model's second
    moments (:func:`_basis_moments`, float64): about 100 times faster than forming the shapes
    (600 ICT-FaceKit images), and equal to the direct computation to about 1e-6 mm on errors of
    millimetres (an exact zero comes out as a few 1e-6 mm, the square root of a difference of
    large sums; ``tests/test_fitting.py``).

    Parameters
    ----------
    model : MorphableModel
    alpha_id, alpha_exp : ndarray (N, k_id), (N, k_exp)
        Fitted codes per image.
    true_alpha_id, true_alpha_exp : ndarray (N, k_id), (N, k_exp)
        Ground-truth codes.
    chunk : int
        Images per batch (bounds memory: about 12 kB per image).

    Returns
    -------
    dict of ndarray (N,)
        ``shape_raw`` (full shape ``s``, no alignment), ``shape_aligned`` (after the similarity
        transform fitted on the 68 landmark vertices), ``identity_aligned`` (neutral identity
        shape ``s_mean + A_id alpha_id``, similarity-aligned), all RMSE over the n vertices, mm.

    Raises
    ------
    ValueError
        When the code arrays do not have N rows of the model's sizes.

    Examples
    --------
    >>> m = MorphableModel.toy(k_id=2, k_exp=1)
    >>> a_id, a_exp = np.array([[1.0, 0.0]]), np.array([[0.5]])
    >>> e = shape_errors(m, a_id, a_exp, a_id, a_exp)
    >>> [round(float(e[k][0]), 4) for k in ("shape_raw", "shape_aligned", "identity_aligned")]
    [0.0, 0.0, 0.0]
    >>> float(shape_errors(m, a_id, a_exp, a_id, 0 * a_exp)["identity_aligned"][0]) < 1e-4   # expression only
    True
    """
    arrs = [np.asarray(a, np.float64) for a in (alpha_id, alpha_exp, true_alpha_id, true_alpha_exp)]
    N = arrs[0].shape[0]
    for a, k, nm in zip(arrs, (model.n_id, model.n_exp) * 2, ("alpha_id", "alpha_exp", "true_alpha_id", "true_alpha_exp")):
        if a.shape != (N, k):
            raise ValueError(f"{nm} must have shape ({N}, {k}), got {a.shape}")
    H, G, col = _basis_moments(model)
    n = model.n_vertices
    L = np.concatenate([model.mean[None], model.id_basis, model.exp_basis])[:, model.landmarks].reshape(len(G), -1)
    out = {k: np.zeros(N) for k in ("shape_raw", "shape_aligned", "identity_aligned")}
    neutral = np.r_[1.0, np.ones(model.n_id), np.zeros(model.n_exp)]   # s_mean + A_id alpha_id

    def aligned(a, b):  # codes (B, K) of estimate and truth -> RMSE after the landmark similarity
        B, K = a.shape
        c, R, t = similarity_procrustes((a @ L).reshape(B, -1, 3), (b @ L).reshape(B, -1, 3))
        aH = (a @ H.reshape(K, -1)).reshape(B, 3, K, 3).transpose(0, 1, 3, 2).reshape(B, 9, K)
        xz = (aH @ b[:, :, None]).reshape(B, 3, 3)                          # X^T Z
        xx, zz = ((a @ G) * a).sum(1), ((b @ G) * b).sum(1)
        sx, sz = a @ col, b @ col
        e2 = (c ** 2 * xx + n * (t ** 2).sum(1) + zz + 2 * c * np.einsum("bi,bij,bj->b", t, R, sx)
              - 2 * c * np.einsum("bij,bji->b", R, xz) - 2 * (t * sz).sum(1))
        return np.sqrt(np.maximum(e2, 0.0) / n)

    for i in range(0, N, chunk):
        sl = slice(i, i + chunk)
        one = np.ones((len(arrs[0][sl]), 1))
        est, true = (np.concatenate([one, arrs[j][sl], arrs[j + 1][sl]], 1) for j in (0, 2))
        d = est - true
        out["shape_raw"][sl] = np.sqrt(np.maximum(((d @ G) * d).sum(1), 0.0) / n)
        out["shape_aligned"][sl] = aligned(est, true)
        out["identity_aligned"][sl] = aligned(est * neutral, true * neutral)
    return out
