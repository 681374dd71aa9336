"""Fitting the 3DMM to 2D landmarks: the paper's multi-image alternating fitter (Eq. 6-7).

The paper builds its training targets by fitting the morphable model to the 68 landmarks of
*every image of a subject at once* (Sec. 3.3). For images ``i = 1..M`` of one subject the
landmarks ``U_i`` (68, 2) are explained by one shared identity ``alpha_id`` and, per image, an
expression ``alpha_exp_i`` and a weak-perspective camera ``(f_i, R_i, t_i)`` (Eq. 6, see
:mod:`disentangled_face.camera`)::

    U_i ~ f_i P R_i (s_mean,U + A_id,U alpha_id + A_exp,U alpha_exp_i) + t_i          (Eq. 6)

and the fitter minimises (Eq. 7, with the model's Gaussian prior written as ridge terms)::

    E = sum_i ||U_i - U^_i||^2 / s_i^2 + lambda_id ||alpha_id||^2
        + lambda_exp sum_i ||alpha_exp_i||^2                                           (Eq. 7)

where ``s_i`` is a per-image constant (the scale of the first pose estimate, pixels per mm), so
the data term is in mm^2 whatever the image resolution and ``lambda`` reads as a landmark noise
variance in mm^2 (MAP with ``alpha_id ~ N(0, I)``). Starting from ``alpha_id = alpha_exp = 0``
it alternates, each step with the other two fixed:

1. **pose** per image: the closed-form affine camera (linear least squares of the 2D landmarks
   on the centred 3D model landmarks), then the nearest scaled rotation (SVD, det +1), then a
   few Gauss-Newton steps on (f, R, t) of the exact weak-perspective objective;
2. **expression** per image: ridge least squares, box-constrained to the blendshape range
   ``[0, 1]`` (a primal-dual active-set method batched in torch, warm-started; or
   :func:`scipy.optimize.lsq_linear` per image as the reference path);
3. **identity** per subject: ridge least squares jointly over all of the subject's images,

and a subject stops when the relative change of its ``E`` over one iteration drops below ``tol``
(the paper reports about 7 iterations) or after ``max_iter`` iterations. Every step keeps ``E``
from increasing. The alternation converges only linearly (ICT-FaceKit's expression blendshapes
and identity modes overlap almost exactly at some landmarks), so ``joint_iters``
Levenberg-Marquardt steps on all parameters at once follow (our addition; 0 gives the paper's
alternation alone): per image the pose and ``alpha_exp`` are eliminated by a Schur complement,
leaving one (k_id, k_id) system per subject, as in bundle adjustment.

The single-image variant (a baseline of the paper's tables) is the same fitter with one image
per subject. Everything runs batched in torch over many images and subjects at once,
deterministically; the normal equations use ``A^T A = w^2 sum_de (R_2^T R_2)_de G_de`` with
constant (k, k) blocks ``G_de`` of the model, so their cost does not grow with the landmarks.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from . import camera
from .model import MorphableModel

logger = logging.getLogger(__name__)

#: Defaults of the fitter (overridden by the ``fitting:`` section of a profile).
DEFAULTS: dict[str, Any] = dict(
    lambda_id=4.0,        # mm^2: landmark noise variance of the MAP objective, prior N(0, I)
    lambda_exp=10.0,      # mm^2 per unit blendshape weight squared (prior std ~ sqrt(4/10) = 0.63)
    max_iter=7,           # cap on pose -> expression -> identity iterations (paper: ~7)
    tol=1e-2,             # relative change of a subject's E over one iteration (paper: ~7 iterations)
    pose_refine=2,        # Gauss-Newton steps on (f, R, t) after the closed form
    exp_iters=0,          # projected-gradient iterations before the active-set solve (bounded exp.)
    active_set_iters=25,  # cap on the active-set iterations of the bounded expression step
    joint_iters=5,        # Levenberg-Marquardt steps on all parameters after the alternation
    dtype="float64",
    threads=None,         # torch CPU threads while fitting (None: leave torch's setting)
)


# ---------------------------------------------------------------------------- validation
def _check_landmarks(lm: Any, n_points: int, name: str = "landmarks2d") -> np.ndarray:
    """Validate a (M, L, 2) landmark array; raise ValueError on degenerate input."""
    arr = np.asarray(lm, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[2] != 2 or arr.shape[1] != n_points:
        raise ValueError(f"{name} must have shape (M, {n_points}, 2) or ({n_points}, 2) (pixels), "
                         f"got {np.shape(lm)}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} holds no image (shape {arr.shape})")
    bad = ~np.isfinite(arr).all(axis=(1, 2))
    if bad.any():
        raise ValueError(f"{name} has NaN or inf coordinates in image(s) {np.flatnonzero(bad)[:10].tolist()}")
    c = arr - arr.mean(axis=1, keepdims=True)
    sv = np.linalg.svd(c, compute_uv=False)  # (M, 2)
    scale = np.abs(arr).max(axis=(1, 2)) + 1.0
    point = sv[:, 0] <= 1e-9 * scale
    if point.any():
        raise ValueError(f"{name}: all landmarks fall on one point in image(s) {np.flatnonzero(point)[:10].tolist()}")
    line = sv[:, 1] <= 1e-6 * sv[:, 0]
    if line.any():
        raise ValueError(f"{name}: all landmarks lie on one line in image(s) {np.flatnonzero(line)[:10].tolist()}; "
                         "a weak-perspective pose needs a 2D spread")
    return arr


def _check_model(model: MorphableModel) -> None:
    if not isinstance(model, MorphableModel):
        raise ValueError(f"model must be a MorphableModel, got {type(model).__name__}")
    if model.landmarks.shape[0] < 4:
        raise ValueError(f"the model needs at least 4 landmarks, has {model.landmarks.shape[0]}")


def _dtype(d: Any) -> torch.dtype:
    if isinstance(d, torch.dtype):
        return d
    try:
        return {"float32": torch.float32, "float64": torch.float64, "single": torch.float32,
                "double": torch.float64}[str(d)]
    except KeyError:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {d!r}") from None


# ---------------------------------------------------------------------------- pose
def nearest_scaled_rotation(M: Any) -> tuple[np.ndarray, np.ndarray]:
    """The scaled rotation nearest (Frobenius) to 2x3 affine camera rows.

    Solves ``min_{f, R in SO(3)} ||M - f R[:2]||_F``: with the thin SVD ``M = U S V^T``,
    ``R[:2] = U V^T`` (orthogonal Procrustes), ``f = (S_1 + S_2) / 2`` and
    ``R[2] = R[0] x R[1]``, so ``det R = +1``.

    Parameters
    ----------
    M : array, shape (2, 3) or (B, 2, 3)
        Affine camera rows (``u ~ M[0] . X``, ``v' ~ M[1] . X`` with v' pointing up).

    Returns
    -------
    f : float or ndarray (B,)
        Scale.
    R : ndarray, shape (3, 3) or (B, 3, 3)
        Proper rotation (orthonormal, det +1).

    Raises
    ------
    ValueError
        When ``M`` is not (..., 2, 3) or is not finite or has rank < 2.

    Examples
    --------
    Rows (1, 0, 0) and (0.2, 1, 0): normalising and crossing them gives a matrix with
    det ~ 0.98 that is not orthonormal; the nearest rotation is a roll of
    ``atan2(0.2, 2)`` = 5.71 degrees.

    >>> f, R = nearest_scaled_rotation(np.array([[1.0, 0, 0], [0.2, 1, 0]]))
    >>> round(float(np.degrees(np.arctan2(R[1, 0], R[0, 0]))), 2)
    5.71
    """
    M = np.asarray(M, dtype=np.float64)
    single = M.ndim == 2
    if M.shape[-2:] != (2, 3) or M.ndim not in (2, 3):
        raise ValueError(f"M must have shape (2, 3) or (B, 2, 3), got {M.shape}")
    if not np.isfinite(M).all():
        raise ValueError("M has NaN or inf entries")
    f, R = _nearest_scaled_rotation_t(torch.as_tensor(M.reshape(-1, 2, 3)))
    if (torch.linalg.svdvals(torch.as_tensor(M.reshape(-1, 2, 3)))[:, 1] <= 1e-12).any():
        raise ValueError("M has rank < 2: no camera orientation can be read from it")
    f, R = f.numpy(), R.numpy()
    return (float(f[0]), R[0]) if single else (f, R)


def _nearest_scaled_rotation_t(M: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    U, S, Vh = torch.linalg.svd(M, full_matrices=False)  # (B,2,2) (B,2) (B,2,3)
    R12 = U @ Vh
    r3 = torch.linalg.cross(R12[:, 0], R12[:, 1], dim=-1)
    return S.mean(-1), torch.cat([R12, r3[:, None]], dim=1)


def _flip(y: torch.Tensor) -> torch.Tensor:
    """Image (u, v down) <-> camera-plane (u, v' up) coordinates."""
    return y * y.new_tensor([1.0, -1.0])


def _pose_closed_form(X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Affine least squares + nearest scaled rotation; X (B,L,3) mm, y (B,L,2) with v' up."""
    Xm, ym = X.mean(1, keepdim=True), y.mean(1, keepdim=True)
    Xc, yc = X - Xm, y - ym
    G = Xc.transpose(1, 2) @ Xc                                     # (B,3,3)
    MT = torch.linalg.solve(G, Xc.transpose(1, 2) @ yc)             # (B,3,2)
    _, R = _nearest_scaled_rotation_t(MT.transpose(1, 2))
    p = (Xc @ R.transpose(1, 2))[..., :2]
    f = (p * yc).sum((1, 2)) / (p * p).sum((1, 2)).clamp_min(1e-30)
    t = (ym - f[:, None, None] * (Xm @ R.transpose(1, 2))[..., :2])[:, 0]
    return f, R, t


def _project_up(X, R, f, t):
    return f[:, None, None] * (X @ R.transpose(1, 2))[..., :2] + t[:, None, :]


def _skew_exp(w: torch.Tensor) -> torch.Tensor:
    z = torch.zeros_like(w[:, 0])
    K = torch.stack([torch.stack([z, -w[:, 2], w[:, 1]], -1),
                     torch.stack([w[:, 2], z, -w[:, 0]], -1),
                     torch.stack([-w[:, 1], w[:, 0], z], -1)], -2)
    return torch.linalg.matrix_exp(K)


def _pose_gauss_newton(X, y, f, R, t, steps: int):
    """Gauss-Newton on (f, rotation vector, t) of sum ||y - f P R X - t||^2, accept-if-better."""
    def sse(f, R, t):
        return ((y - _project_up(X, R, f, t)) ** 2).sum((1, 2))

    cur = sse(f, R, t)
    B, L = X.shape[:2]
    for _ in range(steps):
        RX = X @ R.transpose(1, 2)
        r = (y - f[:, None, None] * RX[..., :2] - t[:, None]).reshape(B, 2 * L)
        px, py, pz = RX[..., 0], RX[..., 1], RX[..., 2]
        fz = f[:, None]
        zero, one = torch.zeros_like(px), torch.ones_like(px)
        # derivatives of the residual (u, v') per landmark w.r.t. (f, w_x, w_y, w_z, t_u, t_v)
        du = torch.stack([-px, zero, -fz * pz, fz * py, -one, zero], -1)
        dv = torch.stack([-py, fz * pz, zero, -fz * px, zero, -one], -1)
        J = torch.stack([du, dv], 2).reshape(B, 2 * L, 6)
        H = J.transpose(1, 2) @ J
        H = H + 1e-9 * H.diagonal(dim1=1, dim2=2).mean(-1)[:, None, None] * torch.eye(6, dtype=H.dtype)
        d = -torch.linalg.solve(H, (J.transpose(1, 2) @ r[..., None]))[..., 0]
        f2, R2, t2 = f + d[:, 0], _skew_exp(d[:, 1:4]) @ R, t + d[:, 4:]
        new = sse(f2, R2, t2)
        ok = (new < cur) & torch.isfinite(new) & (f2 > 0)
        f = torch.where(ok, f2, f)
        R = torch.where(ok[:, None, None], R2, R)
        t = torch.where(ok[:, None], t2, t)
        cur = torch.where(ok, new, cur)
    return f, R, t


def estimate_pose(model_points: Any, landmarks2d: Any, refine: int = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weak-perspective pose from 2D-3D correspondences (the pose step of Eq. 7).

    Closed form for the affine camera (least squares of the 2D landmarks on the centred 3D
    points), then the nearest proper rotation (:func:`nearest_scaled_rotation`), then
    ``refine`` Gauss-Newton steps of the exact objective (each kept only if it lowers it).

    Parameters
    ----------
    model_points : array, shape (L, 3) or (B, L, 3)
        3D points in mm (for example ``model.landmarks_of(shape)``).
    landmarks2d : array, shape (L, 2) or (B, L, 2)
        Their image positions in pixels (u right, v down).
    refine : int
        Gauss-Newton steps after the closed form (0: closed form only).

    Returns
    -------
    R : ndarray (3, 3) or (B, 3, 3); f : float or ndarray (B,) pixels per mm;
    t : ndarray (2,) or (B, 2) pixels — such that
    ``camera.project(model_points, R, f, t) ~ landmarks2d``.

    Raises
    ------
    ValueError
        On mismatched shapes, non-finite values, or degenerate 2D or 3D point sets.
    """
    P = np.asarray(model_points, dtype=np.float64)
    single = P.ndim == 2
    P = P[None] if single else P
    if P.ndim != 3 or P.shape[2] != 3:
        raise ValueError(f"model_points must have shape (L, 3) or (B, L, 3), got {np.shape(model_points)}")
    y = _check_landmarks(landmarks2d, P.shape[1])
    if y.shape[0] != P.shape[0]:
        raise ValueError(f"{P.shape[0]} point sets but {y.shape[0]} landmark sets")
    if not np.isfinite(P).all():
        raise ValueError("model_points has NaN or inf")
    sv = np.linalg.svd(P - P.mean(1, keepdims=True), compute_uv=False)
    if (sv[:, 2] <= 1e-9 * sv[:, 0]).any():
        raise ValueError("model_points are coplanar: the affine camera is not determined")
    X, yt = torch.as_tensor(P), _flip(torch.as_tensor(y))
    f, R, t = _pose_closed_form(X, yt)
    f, R, t = _pose_gauss_newton(X, yt, f, R, t, refine)
    t = _flip(t)
    R, f, t = R.numpy(), f.numpy(), t.numpy()
    return (R[0], float(f[0]), t[0]) if single else (R, f, t)


def _spd_solve(A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Solve batched symmetric positive definite systems A x = b (Cholesky; LU where that fails)."""
    L, info = torch.linalg.cholesky_ex(A)
    if bool((info == 0).all()):
        return torch.cholesky_solve(b[..., None], L)[..., 0]
    return torch.linalg.solve(A, b)


# ---------------------------------------------------------------------------- box-constrained ridge
def _box_ridge(H: torch.Tensor, g: torch.Tensor, x0: torch.Tensor, lo: float, hi: float,
               iters: int, as_iters: int = 25) -> torch.Tensor:
    """min_x 1/2 x^T H x - g^T x  s.t. lo <= x <= hi, batched (B,k,k), (B,k).

    Accelerated projected gradient (FISTA, step 1/lambda_max) from ``x0``, then a primal-dual
    active-set method (Hintermueller, Ito and Kunisch 2003: solve exactly on the free variables,
    update the bound sets, keep the best point), deterministic.
    """
    def q(x):
        return 0.5 * (x[:, None, :] @ H @ x[..., None])[:, 0, 0] - (g * x).sum(-1)

    x = x0.clamp(lo, hi)
    z, tk = x.clone(), 1.0
    Lip = torch.linalg.eigvalsh(H)[:, -1].clamp_min(1e-30)[:, None] if iters > 0 else None
    for _ in range(iters):
        grad = (H @ z[..., None])[..., 0] - g
        xn = (z - grad / Lip).clamp(lo, hi)
        tn = 0.5 * (1.0 + (1.0 + 4.0 * tk * tk) ** 0.5)
        z = xn + ((tk - 1.0) / tn) * (xn - x)
        x, tk = xn, tn
    # primal-dual active set (semismooth Newton): fix at lo where x - c*grad < lo, at hi where
    # x - c*grad > hi, solve exactly on the rest; keep the best feasible point (monotone).
    best, qb = x, q(x)
    c = 1.0 / H.diagonal(dim1=1, dim2=2).clamp_min(1e-30)
    cand = x.clone()
    prev = torch.zeros(x.shape[0], 2 * x.shape[1], dtype=torch.bool)
    idx = torch.arange(x.shape[0])                 # elements whose bound sets still change
    for it in range(as_iters):
        Hs, gs, xs = H[idx], g[idx], cand[idx]
        z = xs - c[idx] * ((Hs @ xs[..., None])[..., 0] - gs)
        at_lo, at_hi = z < lo, z > hi
        key = torch.cat([at_lo, at_hi], -1)
        moved = (key != prev[idx]).any(-1) if it else torch.ones(len(idx), dtype=torch.bool)
        idx, Hs, gs, at_lo, at_hi, key = idx[moved], Hs[moved], gs[moved], at_lo[moved], at_hi[moved], key[moved]
        if len(idx) == 0:
            break
        prev[idx] = key
        F = (~(at_lo | at_hi)).to(H.dtype)
        xc = torch.where(at_lo, torch.full_like(F, lo), torch.where(at_hi, torch.full_like(F, hi), torch.zeros_like(F)))
        A = Hs * F[:, :, None] * F[:, None, :] + torch.diag_embed(1 - F)
        rhs = F * (gs - (Hs @ xc[..., None])[..., 0]) + (1 - F) * xc
        Lc, info = torch.linalg.cholesky_ex(A)     # A is SPD (H is, plus identity rows)
        if bool((info == 0).all()):
            sol = torch.cholesky_solve(rhs[..., None], Lc)[..., 0]
        else:
            sol = torch.linalg.solve(A, rhs)
        cand[idx] = sol                            # unclamped: the next bound sets come from it
        feas = sol.clamp(lo, hi)
        qc = 0.5 * (feas[:, None, :] @ Hs @ feas[..., None])[:, 0, 0] - (gs * feas).sum(-1)
        better = qc < qb[idx]
        best[idx[better]] = feas[better]
        qb[idx[better]] = qc[better]
    return best


# ---------------------------------------------------------------------------- the fitter core
@dataclass
class _State:
    a_id: torch.Tensor   # (S, k_id)
    a_exp: torch.Tensor  # (N, k_exp)
    R: torch.Tensor      # (N, 3, 3)
    f: torch.Tensor      # (N,)
    t: torch.Tensor      # (N, 2) camera-plane (v' up)


class _Fitter:
    """Batched alternating fitter over N images of S subjects (all tensors on one dtype).

    The normal equations are formed without the (2L, k) design matrices: with
    ``P^T P = I - e_z e_z^T``, ``A^T A = w^2 (G - W^T W)`` where ``G = sum_l B_l^T B_l`` is a
    constant of the model and ``W[l] = r_3 . B_l`` (``r_3`` the rotation's third row), and
    ``A^T b = w sum_l B_l^T (R_2^T b_l)`` ("lifting" the 2D residual to 3D).
    """

    def __init__(self, model: MorphableModel, y: np.ndarray, subj: np.ndarray, n_subj: int,
                 lambda_id: float, lambda_exp: float, dtype: torch.dtype, exp_iters: int,
                 pose_refine: int, exp_solver: str, active_set_iters: int = 25):
        if lambda_id < 0 or lambda_exp < 0:
            raise ValueError(f"lambda_id and lambda_exp must be >= 0, got {lambda_id}, {lambda_exp}")
        if exp_solver not in ("torch", "scipy"):
            raise ValueError(f"exp_solver must be 'torch' or 'scipy', got {exp_solver!r}")
        mU, iU, eU = model.landmark_bases()
        self.mean = torch.as_tensor(mU, dtype=dtype)
        self.idb = torch.as_tensor(iU, dtype=dtype)   # (k_id, L, 3)
        self.exb = torch.as_tensor(eU, dtype=dtype)   # (k_exp, L, 3)
        # G4[d, e] = sum_l B[:, l, d]^T B[:, l, e]: A^T A = w^2 sum_de (R_2^T R_2)_de G4[d, e]
        g4 = lambda a, b: torch.as_tensor(np.einsum("kld,jle->dekj", a.astype(np.float64), b.astype(np.float64))
                                          .reshape(9, a.shape[0] * b.shape[0]), dtype=dtype)
        self.Gi, self.Ge, self.Cei = g4(iU, iU), g4(eU, eU), g4(eU, iU)
        self.y = _flip(torch.as_tensor(y, dtype=dtype))
        self.subj = torch.as_tensor(subj, dtype=torch.long)
        self.S = n_subj
        self.lam_id, self.lam_exp = float(lambda_id), float(lambda_exp)
        self.bounds = model.exp_bounds
        self.dtype = dtype
        self.exp_iters, self.pose_refine, self.exp_solver = exp_iters, pose_refine, exp_solver
        self.as_iters = int(active_set_iters)

    # shapes at the landmarks
    def id_part(self, a_id):
        return torch.einsum("nk,kld->nld", a_id[self.subj], self.idb)

    def exp_part(self, a_exp):
        return torch.einsum("nk,kld->nld", a_exp, self.exb)

    def X(self, st: _State):
        return self.mean + self.id_part(st.a_id) + self.exp_part(st.a_exp)

    def data_term(self, st: _State, X=None):
        X = self.X(st) if X is None else X
        r = self.y - _project_up(X, st.R, st.f, st.t)
        return (r ** 2).sum((1, 2)) / self.s ** 2

    def objective(self, st: _State) -> torch.Tensor:
        """Per-subject E of Eq. 7, shape (S,)."""
        per_img = self.data_term(st) + self.lam_exp * (st.a_exp ** 2).sum(-1)
        E = torch.zeros(self.S, dtype=self.dtype).index_add_(0, self.subj, per_img)
        return E + self.lam_id * (st.a_id ** 2).sum(-1)

    def _sum_subj(self, x):
        return torch.zeros(self.S, *x.shape[1:], dtype=self.dtype).index_add_(0, self.subj, x)

    # the three steps
    def pose_step(self, st: _State, first: bool) -> _State:
        X = self.X(st)
        f, R, t = _pose_closed_form(X, self.y)
        f, R, t = _pose_gauss_newton(X, self.y, f, R, t, self.pose_refine)
        if first:
            self.s = f.clone()
            return _State(st.a_id, st.a_exp, R, f, t)
        old = self.data_term(st, X)
        new = self.data_term(_State(st.a_id, st.a_exp, R, f, t), X)
        ok = new <= old
        return _State(st.a_id, st.a_exp, torch.where(ok[:, None, None], R, st.R),
                      torch.where(ok, f, st.f), torch.where(ok[:, None], t, st.t))

    def _lifted(self, st: _State, X):
        """w (N,), residual lifted to 3D c (N, L, 3), scaled by 1/s, for the model points X."""
        b = (self.y - _project_up(X, st.R, st.f, st.t)) / self.s[:, None, None]
        return st.f / self.s, b @ st.R[:, :2, :]

    def _Q(self, st: _State) -> torch.Tensor:
        """w^2 R_2^T R_2 per image, flattened (N, 9): the weights of the constant G4 blocks."""
        w = st.f / self.s
        R2 = st.R[:, :2, :]
        return ((w * w)[:, None, None] * (R2.transpose(1, 2) @ R2)).reshape(-1, 9)

    @staticmethod
    def _combine(Q: torch.Tensor, G4: torch.Tensor, k1: int, k2: int) -> torch.Tensor:
        return (Q @ G4).reshape(-1, k1, k2)

    def _normal(self, st: _State, basis, G4, fixed_X, per_subject: bool = False):
        """H = A^T A (N or S, k, k) and g = A^T b (N, k) of one linear block (its code excluded)."""
        w, c = self._lifted(st, fixed_X)
        Q = self._Q(st)
        if per_subject:
            Q = self._sum_subj(Q)
        k = basis.shape[0]
        g = w[:, None] * torch.einsum("nld,kld->nk", c, basis)
        return self._combine(Q, G4, k, k), g

    def exp_step(self, st: _State) -> _State:
        fixed = self.mean + self.id_part(st.a_id)
        H, g = self._normal(st, self.exb, self.Ge, fixed)
        H = H + self.lam_exp * torch.eye(H.shape[-1], dtype=self.dtype)
        if self.bounds is None:
            a = torch.linalg.solve(H, g)
        elif self.exp_solver == "scipy":
            A, b = self._design(self.exb, st, fixed)
            a = torch.as_tensor(_lsq_linear_ridge(A.numpy(), b.numpy(), self.lam_exp, self.bounds), dtype=self.dtype)
        else:
            a = _box_ridge(H, g, st.a_exp, self.bounds[0], self.bounds[1], self.exp_iters, self.as_iters)
        return _State(st.a_id, a, st.R, st.f, st.t)

    def _design(self, basis, st: _State, fixed_X):
        """Explicit A (N, 2L, k) and b (N, 2L) of a linear block (reference path only)."""
        w = (st.f / self.s)[:, None, None, None]
        A = w * torch.einsum("kld,ned->nlek", basis, st.R[:, :2, :])
        b = (self.y - _project_up(fixed_X, st.R, st.f, st.t)) / self.s[:, None, None]
        N, L = b.shape[:2]
        return A.reshape(N, 2 * L, -1), b.reshape(N, 2 * L)

    def id_step(self, st: _State) -> _State:
        H, g = self._normal(st, self.idb, self.Gi, self.mean + self.exp_part(st.a_exp), per_subject=True)
        k = H.shape[-1]
        H = H + self.lam_id * torch.eye(k, dtype=self.dtype)
        if self.lam_id == 0:  # keep solvable for subjects with too few constraints
            H = H + 1e-10 * H.diagonal(dim1=1, dim2=2).mean(-1)[:, None, None] * torch.eye(k, dtype=self.dtype)
        return _State(_spd_solve(H, self._sum_subj(g)), st.a_exp, st.R, st.f, st.t)

    def joint_step(self, st: _State, mu: torch.Tensor, E_old: torch.Tensor):
        """One Levenberg-Marquardt step on all parameters at once (Schur complement on alpha_id).

        Per image the pose (f, rotation vector, t) and ``alpha_exp`` are eliminated, leaving a
        (k_id, k_id) system per subject: the structure of bundle adjustment. Expression weights
        at a bound whose gradient points outward are held (projected step); the step is kept per
        subject only when it lowers E (then ``mu`` shrinks, else it grows).
        """
        dt = self.dtype
        X = self.X(st)
        RX = X @ st.R.transpose(1, 2)
        N, L = X.shape[:2]
        s = self.s[:, None, None]
        w = st.f / self.s
        R2 = st.R[:, :2, :]
        r = (self.y - st.f[:, None, None] * RX[..., :2] - st.t[:, None]) / s          # (N,L,2)
        px, py, pz = RX[..., 0], RX[..., 1], RX[..., 2]
        fz = st.f[:, None]
        zero, one = torch.zeros_like(px), torch.ones_like(px)
        du = torch.stack([-px, zero, -fz * pz, fz * py, -one, zero], -1)
        dv = torch.stack([-py, fz * pz, zero, -fz * px, zero, -one], -1)
        Jpose = torch.stack([du, dv], 2) / s[..., None]                                # (N,L,2,6)
        Jflat = Jpose.reshape(N, 2 * L, 6)
        liftJ = torch.einsum("nlej,ned->nldj", Jpose, R2)                               # (N,L,3,6)
        cr = r @ R2                                                                     # (N,L,3)
        # blocks of J^T J (J_exp = -w P R B_exp, J_id = -w P R B_id)
        Upp = Jflat.transpose(1, 2) @ Jflat
        Upe = -w[:, None, None] * torch.einsum("nldj,kld->njk", liftJ, self.exb)
        Q = self._Q(st)
        ke, kq = self.exb.shape[0], self.idb.shape[0]
        Uee = self._combine(Q, self.Ge, ke, ke) + self.lam_exp * torch.eye(ke, dtype=dt)
        U = torch.cat([torch.cat([Upp, Upe], 2), torch.cat([Upe.transpose(1, 2), Uee], 2)], 1)
        Wpi = -w[:, None, None] * torch.einsum("nldj,kld->njk", liftJ, self.idb)
        Wei = self._combine(Q, self.Cei, ke, kq)
        W = torch.cat([Wpi, Wei], 1)                                                     # (N,kp,kq)
        kq = W.shape[-1]
        V = self._combine(self._sum_subj(Q), self.Gi, kq, kq) + self.lam_id * torch.eye(kq, dtype=dt)
        bp = -torch.cat([Jflat.transpose(1, 2) @ r.reshape(N, 2 * L, 1),
                         (-w[:, None] * torch.einsum("nld,kld->nk", cr, self.exb) + self.lam_exp * st.a_exp)[..., None]], 1)[..., 0]
        bq = -(self._sum_subj(-w[:, None] * torch.einsum("nld,kld->nk", cr, self.idb)) + self.lam_id * st.a_id)
        if self.bounds is not None:
            lo, hi = self.bounds
            be = bp[:, 6:]
            held = ((st.a_exp <= lo + 1e-12) & (be <= 0)) | ((st.a_exp >= hi - 1e-12) & (be >= 0))
            F = torch.cat([torch.ones(N, 6, dtype=dt), (~held).to(dt)], -1)
            U = U * F[:, :, None] * F[:, None, :] + torch.diag_embed(1 - F)
            W, bp = W * F[..., None], bp * F
        mu_img = mu[self.subj][:, None]
        U = U + torch.diag_embed(mu_img * U.diagonal(dim1=1, dim2=2) + 1e-12)
        V = V + torch.diag_embed(mu[:, None] * V.diagonal(dim1=1, dim2=2) + 1e-12)
        Lc, info = torch.linalg.cholesky_ex(U)
        if bool((info == 0).all()):   # Schur complement through the Cholesky factor of U
            Y = torch.linalg.solve_triangular(Lc, torch.cat([W, bp[..., None]], -1), upper=False)
            Yw, yb = Y[..., :kq], Y[..., kq:]
            Sred = V - self._sum_subj(Yw.transpose(1, 2) @ Yw)
            rhs = bq - self._sum_subj((Yw.transpose(1, 2) @ yb)[..., 0])
            dq = _spd_solve(Sred, rhs)
            dp = torch.linalg.solve_triangular(Lc.transpose(1, 2), yb - Yw @ dq[self.subj][..., None], upper=True)[..., 0]
        else:
            sol = torch.linalg.solve(U, torch.cat([W, bp[..., None]], -1))              # (N, kp, kq + 1)
            UiW, Uib = sol[..., :kq], sol[..., kq]
            Sred = V - self._sum_subj(W.transpose(1, 2) @ UiW)
            rhs = bq - self._sum_subj((W.transpose(1, 2) @ Uib[..., None])[..., 0])
            dq = torch.linalg.solve(Sred, rhs)
            dp = Uib - (UiW @ dq[self.subj][..., None])[..., 0]
        cand, E_new = None, None
        for step in (1.0, 0.5, 0.25):       # backtracking along the (clamped) step
            a_exp = st.a_exp + step * dp[:, 6:]
            if self.bounds is not None:
                a_exp = a_exp.clamp(*self.bounds)
            c = _State(st.a_id + step * dq, a_exp, _skew_exp(step * dp[:, 1:4]) @ st.R,
                       st.f + step * dp[:, 0], st.t + step * dp[:, 4:6])
            Ec = self.objective(c)
            if cand is None:
                cand, E_new = c, Ec
            else:
                b = Ec < E_new
                bi = b[self.subj]
                cand = _State(torch.where(b[:, None], c.a_id, cand.a_id), torch.where(bi[:, None], c.a_exp, cand.a_exp),
                              torch.where(bi[:, None, None], c.R, cand.R), torch.where(bi, c.f, cand.f),
                              torch.where(bi[:, None], c.t, cand.t))
                E_new = torch.where(b, Ec, E_new)
            if self.bounds is None or bool((E_new < E_old).all()):
                break
        ok = (E_new < E_old) & torch.isfinite(E_new)
        ok_img = ok[self.subj]
        new = _State(torch.where(ok[:, None], cand.a_id, st.a_id),
                     torch.where(ok_img[:, None], cand.a_exp, st.a_exp),
                     torch.where(ok_img[:, None, None], cand.R, st.R),
                     torch.where(ok_img, cand.f, st.f), torch.where(ok_img[:, None], cand.t, st.t))
        mu = torch.where(ok, mu / 3.0, mu * 4.0).clamp(1e-9, 1e6)
        return new, mu, torch.where(ok, E_new, E_old)

    def _merge(self, keep_new: torch.Tensor, new: _State, old: _State) -> _State:
        """Per subject: ``new`` where ``keep_new`` else ``old``."""
        k, ki = keep_new, keep_new[self.subj]
        return _State(torch.where(k[:, None], new.a_id, old.a_id), torch.where(ki[:, None], new.a_exp, old.a_exp),
                      torch.where(ki[:, None, None], new.R, old.R), torch.where(ki, new.f, old.f),
                      torch.where(ki[:, None], new.t, old.t))

    def run(self, max_iter: int, tol: float, verbose: bool = False, joint_iters: int = 0):
        N = self.y.shape[0]
        st = _State(torch.zeros(self.S, self.idb.shape[0], dtype=self.dtype),
                    torch.zeros(N, self.exb.shape[0], dtype=self.dtype),
                    torch.eye(3, dtype=self.dtype).expand(N, 3, 3).clone(),
                    torch.ones(N, dtype=self.dtype), torch.zeros(N, 2, dtype=self.dtype))
        history: list[np.ndarray] = []   # per step: (S,) objective
        steps: list[str] = []
        prev = None
        n_iter, converged = 0, False
        active = torch.ones(self.S, dtype=torch.bool)      # subjects still iterating
        self.subject_iters = np.zeros(self.S, np.int64)
        for it in range(max_iter):
            old = st
            # a converged subject keeps its state, so results do not depend on the batching
            st = self.pose_step(st, first=(it == 0))
            st = st if it == 0 else self._merge(active, st, old)
            history.append(self.objective(st).numpy()); steps.append("pose")
            if it == 0:
                prev = history[-1]
            st = self._merge(active, self.exp_step(st), old) if it else self.exp_step(st)
            history.append(self.objective(st).numpy()); steps.append("expression")
            st = self._merge(active, self.id_step(st), old) if it else self.id_step(st)
            E = self.objective(st).numpy()
            history.append(E); steps.append("identity")
            n_iter = it + 1
            self.subject_iters = self.subject_iters + active.numpy()
            rel = np.abs(prev - E) / np.maximum(np.abs(prev), 1e-300)
            if verbose:
                logger.info("iteration %d: E = %.6g (max relative change %.3g)", n_iter, E.sum(), rel.max())
            if it > 0:
                active &= torch.as_tensor(rel >= tol)
            if not bool(active.any()):
                converged = True
                break
            prev = E
        if joint_iters:
            mu = torch.full((self.S,), 1e-3, dtype=self.dtype)
            E = self.objective(st)
            for _ in range(joint_iters):
                E_prev = E
                st, mu, E = self.joint_step(st, mu, E)
                history.append(E.numpy()); steps.append("joint")
                done = ((E_prev - E).abs() <= 1e-12 * E_prev.abs()) & (mu >= 1e6)
                if bool(done.all()):
                    break
        return st, np.stack(history, 1), steps, n_iter, converged


def _lsq_linear_ridge(A: np.ndarray, b: np.ndarray, lam: float, bounds) -> np.ndarray:
    """Reference expression step: scipy.optimize.lsq_linear on [A; sqrt(lam) I] per image."""
    from scipy.optimize import lsq_linear

    k = A.shape[-1]
    out = np.empty((A.shape[0], k))
    for i in range(A.shape[0]):
        Aa = np.vstack([A[i], np.sqrt(lam) * np.eye(k)])
        ba = np.concatenate([b[i], np.zeros(k)])
        out[i] = lsq_linear(Aa, ba, bounds=bounds, method="bvls", tol=1e-12).x
    return out


# ---------------------------------------------------------------------------- results
@dataclass
class FitResult:
    """The fit of one subject's images (Eq. 7).

    Attributes
    ----------
    alpha_id : ndarray (k_id,)
        Shared identity code (standard-normal units).
    alpha_exp : ndarray (M, k_exp)
        Per-image expression weights.
    R : ndarray (M, 3, 3); f : ndarray (M,) pixels per mm; t : ndarray (M, 2) pixels
        Per-image weak-perspective camera (see :func:`disentangled_face.camera.project`).
    yaw, pitch, roll : ndarray (M,), radians
        ``camera.euler_from_rotation(R)``.
    objective : list of float
        ``E`` (Eq. 7, mm^2) after every step: pose, expression, identity, pose, ...
    steps : list of str
        Which step each ``objective`` entry follows.
    n_iter : int
        Full iterations run.
    converged : bool
        Whether the relative change fell below ``tol`` before ``max_iter``.
    rmse_px : ndarray (M,)
        Landmark reprojection RMSE per image (pixels, over the 2D points).
    kept : list of int
        Indices (into the input) of the images fitted.
    discarded : list of int
        Indices of the input images skipped (no face found).
    """

    alpha_id: np.ndarray
    alpha_exp: np.ndarray
    R: np.ndarray
    f: np.ndarray
    t: np.ndarray
    yaw: np.ndarray
    pitch: np.ndarray
    roll: np.ndarray
    objective: list
    steps: list
    n_iter: int
    converged: bool
    rmse_px: np.ndarray
    kept: list = field(default_factory=list)
    discarded: list = field(default_factory=list)

    def shapes(self, model: MorphableModel) -> np.ndarray:
        """Fitted full shapes ``s_i`` (M, n, 3), mm (Eq. 3)."""
        return model.shape(np.repeat(self.alpha_id[None], len(self.f), 0), self.alpha_exp)

    def identity_shape(self, model: MorphableModel) -> np.ndarray:
        """Fitted neutral identity shape ``s_mean + A_id alpha_id`` (n, 3), mm."""
        return model.identity_shape(self.alpha_id)

    def project(self, model: MorphableModel) -> np.ndarray:
        """The fitted landmarks in the images (M, 68, 2), pixels."""
        return camera.project(model.landmarks_of(self.shapes(model)), self.R, self.f, self.t)


@dataclass
class SubjectsFit:
    """Per-image results of :func:`fit_subjects` (N images of S subjects).

    ``alpha_id`` (N, k_id) repeats each subject's shared code on its images; ``subject_alpha_id``
    (S, k_id) holds it once per subject in the order of ``subjects`` (the sorted unique
    labels). ``objective`` (S, n_steps) is each subject's E after every step (``steps`` names
    them); ``subject_n_iter`` (S,) the alternation iterations each subject ran before its
    relative change fell below ``tol``; ``n_iter`` their maximum.
    """

    label: np.ndarray
    alpha_id: np.ndarray
    alpha_exp: np.ndarray
    R: np.ndarray
    f: np.ndarray
    t: np.ndarray
    yaw: np.ndarray
    pitch: np.ndarray
    roll: np.ndarray
    rmse_px: np.ndarray
    subjects: np.ndarray
    subject_alpha_id: np.ndarray
    objective: np.ndarray
    steps: list
    n_iter: int
    converged: bool
    subject_n_iter: np.ndarray

    def shapes(self, model: MorphableModel, idx: Any = None) -> np.ndarray:
        """Fitted shapes of images ``idx`` (all when None), (B, n, 3) mm."""
        idx = np.arange(len(self.label)) if idx is None else np.atleast_1d(idx)
        return model.shape(self.alpha_id[idx], self.alpha_exp[idx])


def _run(model, y, subj, S, cfg, verbose=False):
    c = {**DEFAULTS, **{k: v for k, v in cfg.items() if v is not None}}
    unknown = set(c) - set(DEFAULTS) - {"exp_solver"}
    if unknown:
        raise ValueError(f"unknown fitting option(s) {sorted(unknown)}; expected {sorted(DEFAULTS)}")
    if int(c["max_iter"]) < 1:
        raise ValueError(f"max_iter must be >= 1, got {c['max_iter']}")
    fitter = _Fitter(model, y, subj, S, c["lambda_id"], c["lambda_exp"], _dtype(c["dtype"]),
                     int(c["exp_iters"]), int(c["pose_refine"]), c.get("exp_solver", "torch"),
                     int(c["active_set_iters"]))
    threads = torch.get_num_threads()
    if c["threads"]:
        torch.set_num_threads(int(c["threads"]))
    try:
        with torch.no_grad():
            st, hist, steps, n_iter, conv = fitter.run(int(c["max_iter"]), float(c["tol"]), verbose,
                                                       int(c["joint_iters"]))
            X = fitter.X(st)
            rmse = ((fitter.y - _project_up(X, st.R, st.f, st.t)) ** 2).sum(-1).mean(-1).sqrt()
    finally:
        torch.set_num_threads(threads)
    R = st.R.double().numpy()
    yaw, pitch, roll = camera.euler_from_rotation(R)
    return dict(a_id=st.a_id.double().numpy(), a_exp=st.a_exp.double().numpy(), R=R,
                f=st.f.double().numpy(), t=_flip(st.t).double().numpy(), yaw=yaw, pitch=pitch,
                roll=roll, hist=hist, steps=steps, n_iter=n_iter, converged=conv,
                rmse=rmse.double().numpy(), subject_iters=fitter.subject_iters)


def _split_detections(landmarks2d) -> tuple[np.ndarray, list, list]:
    """Accept an array (M, L, 2) or a sequence of arrays / detections; drop not-found ones."""
    if isinstance(landmarks2d, (np.ndarray, torch.Tensor)):
        arr = np.asarray(landmarks2d)
        return arr, list(range(arr.shape[0] if arr.ndim == 3 else 1)), []
    kept, discarded, pts = [], [], []
    for i, item in enumerate(landmarks2d):
        found = getattr(item, "found", True)
        if item is None or not found:
            discarded.append(i)
            continue
        pts.append(np.asarray(getattr(item, "points", item), dtype=np.float64))
        kept.append(i)
    if discarded:
        warnings.warn(f"no face found in {len(discarded)} of {len(kept) + len(discarded)} image(s) "
                      f"{discarded[:10]}: discarded from the fit", stacklevel=3)
    if not pts:
        raise ValueError(f"no usable image left: no face was found in any of the {len(discarded)} image(s)")
    shapes = {p.shape for p in pts}
    if len(shapes) != 1:
        raise ValueError(f"every landmark set must have the same shape, got {sorted(shapes)}")
    return np.stack(pts), kept, discarded


def fit_shape_and_pose(model: MorphableModel, landmarks2d: Any, lambda_id: float | None = None,
                       lambda_exp: float | None = None, max_iter: int | None = None,
                       tol: float | None = None, dtype: str | None = None,
                       exp_solver: str = "torch", verbose: bool = False, **options) -> FitResult:
    """Fit one subject's images at once: shared ``alpha_id``, per-image pose and ``alpha_exp``.

    The paper's multi-image fitter (Sec. 3.3, Eq. 6-7): from ``alpha_id = alpha_exp = 0``,
    alternate pose -> expression -> identity until the relative change of ``E`` over an
    iteration is below ``tol``.

    Parameters
    ----------
    model : MorphableModel
    landmarks2d : ndarray (M, 68, 2) or (68, 2), or a sequence of (68, 2) arrays or
        :class:`~disentangled_face.landmarks.Detection` results
        Landmarks in pixels (u right, v down), iBUG order. Detections with ``found=False``
        are discarded with a warning and listed in ``FitResult.discarded``.
    lambda_id, lambda_exp : float, optional
        Ridge weights (mm^2) of the identity and expression priors (defaults in :data:`DEFAULTS`).
    max_iter : int, optional
        Iteration cap.
    tol : float, optional
        Relative-change tolerance on ``E``.
    dtype : {'float64', 'float32'}, optional
    exp_solver : {'torch', 'scipy'}
        Bounded expression step: batched projected gradient + active-set polish (torch), or
        :func:`scipy.optimize.lsq_linear` per image (reference).
    verbose : bool
        Log the objective after every iteration.
    **options
        ``pose_refine``, ``exp_iters``, ``active_set_iters``, ``joint_iters``, ``threads``
        (see :data:`DEFAULTS`).

    Returns
    -------
    FitResult

    Raises
    ------
    ValueError
        Wrong shape (not (M, L, 2) with L the model's landmark count), NaN/inf coordinates,
        all landmarks at one point or on one line, or no usable image (every detection failed).
    """
    _check_model(model)
    arr, kept, discarded = _split_detections(landmarks2d)
    y = _check_landmarks(arr, model.landmarks.shape[0])
    if not kept or len(kept) != y.shape[0]:
        kept = list(range(y.shape[0]))
    cfg = dict(lambda_id=lambda_id, lambda_exp=lambda_exp, max_iter=max_iter, tol=tol, dtype=dtype,
               exp_solver=exp_solver, **options)
    r = _run(model, y, np.zeros(y.shape[0], np.int64), 1, cfg, verbose)
    return FitResult(alpha_id=r["a_id"][0], alpha_exp=r["a_exp"], R=r["R"], f=r["f"], t=r["t"],
                     yaw=r["yaw"], pitch=r["pitch"], roll=r["roll"], objective=r["hist"][0].tolist(),
                     steps=r["steps"], n_iter=r["n_iter"], converged=r["converged"],
                     rmse_px=r["rmse"], kept=kept, discarded=discarded)


def fit_single_image(model: MorphableModel, landmarks2d: Any, **kwargs) -> FitResult:
    """Fit one image on its own (the single-image baseline of the paper's tables).

    Parameters
    ----------
    model : MorphableModel
    landmarks2d : ndarray (68, 2), pixels
    **kwargs
        As :func:`fit_shape_and_pose`.

    Returns
    -------
    FitResult
        With M = 1 (``alpha_exp`` (1, k_exp), ``R`` (1, 3, 3), ...).

    Raises
    ------
    ValueError
        As :func:`fit_shape_and_pose`, and when more than one landmark set is given.
    """
    arr = np.asarray(getattr(landmarks2d, "points", landmarks2d) if getattr(landmarks2d, "found", True)
                     else _raise_no_face())
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise ValueError(f"fit_single_image takes one landmark set (68, 2), got shape {arr.shape}")
    return fit_shape_and_pose(model, arr, **kwargs)


def fit_images(model: MorphableModel, images: Sequence[Any], detector: Any = None, **kwargs) -> FitResult:
    """Detect the 68 landmarks in every image of one subject and fit them together (Eq. 7).

    Images where no face is found are discarded with a warning (``FitResult.discarded`` lists
    them), as the paper discards the images its detector fails on.

    Parameters
    ----------
    model : MorphableModel
    images : sequence of ndarray
        Images of one subject, any format :func:`disentangled_face.landmarks.to_rgb_uint8` takes.
    detector : LandmarkDetector, optional
        Default: the shared ``'auto'`` detector (FAN when its weights are cached, else dlib).
    **kwargs
        As :func:`fit_shape_and_pose`.

    Raises
    ------
    ValueError
        No image given, or no face found in any image; bad image formats.
    """
    from .landmarks import get_detector

    images = list(images)
    if not images:
        raise ValueError("fit_images needs at least one image")
    det = detector if detector is not None else get_detector("auto")
    return fit_shape_and_pose(model, det.detect_many(images), **kwargs)


def _raise_no_face():
    from .landmarks import NoFaceFound

    raise NoFaceFound("fit_single_image: the detection found no face")


def fit_subjects(model: MorphableModel, landmarks: Any, labels: Any = None, chunk: int | None = None,
                 verbose: bool = False, **cfg) -> SubjectsFit:
    """Fit many subjects at once, batched in torch (the multi-image fitter per subject).

    Parameters
    ----------
    model : MorphableModel
    landmarks : ndarray (N, 68, 2)
        Landmarks of all images, pixels (u right, v down).
    labels : ndarray (N,), optional
        Subject label of every image; images with the same label share ``alpha_id``.
        ``None`` fits every image on its own (the single-image mode).
    chunk : int, optional
        Fit at most this many subjects per batch (bounds memory; results do not depend on it).
    verbose : bool
        Log the objective per iteration.
    **cfg
        ``lambda_id``, ``lambda_exp``, ``max_iter``, ``tol``, ``dtype``, ``pose_refine``,
        ``exp_iters``, ``active_set_iters``, ``joint_iters``, ``threads``, ``exp_solver`` (see
        :data:`DEFAULTS` and :func:`fit_shape_and_pose`). Unknown keys raise ValueError.

    Returns
    -------
    SubjectsFit
        Per-image arrays in the input order.

    Raises
    ------
    ValueError
        Degenerate landmarks (as :func:`fit_shape_and_pose`), or ``labels`` not of length N.
    """
    _check_model(model)
    y = _check_landmarks(landmarks, model.landmarks.shape[0], "landmarks")
    N = y.shape[0]
    labels = np.arange(N) if labels is None else np.asarray(labels)
    if labels.shape != (N,):
        raise ValueError(f"labels must have shape ({N},) to match {N} landmark sets, got {labels.shape}")
    subjects, subj = np.unique(labels, return_inverse=True)
    S = len(subjects)
    chunk = S if not chunk else int(chunk)
    k_id, k_exp = model.n_id, model.n_exp
    out = dict(a_id=np.zeros((N, k_id)), a_exp=np.zeros((N, k_exp)), R=np.zeros((N, 3, 3)),
               f=np.zeros(N), t=np.zeros((N, 2)), rmse=np.zeros(N))
    sub_a = np.zeros((S, k_id))
    sub_it = np.zeros(S, np.int64)
    hists, n_iter, conv, steps = [], 0, True, []
    for s0 in range(0, S, chunk):
        sel = np.flatnonzero((subj >= s0) & (subj < s0 + chunk))
        r = _run(model, y[sel], subj[sel] - s0, min(chunk, S - s0), cfg, verbose)
        out["a_id"][sel] = r["a_id"][subj[sel] - s0]
        for k in ("a_exp", "R", "f", "t", "rmse"):
            out[k][sel] = r[k]
        sub_a[s0:s0 + chunk] = r["a_id"]
        sub_it[s0:s0 + chunk] = r["subject_iters"]
        hists.append(r["hist"]); n_iter = max(n_iter, r["n_iter"]); conv &= r["converged"]
        steps = r["steps"] if len(r["steps"]) > len(steps) else steps
    width = max(h.shape[1] for h in hists)
    hist = np.concatenate([np.pad(h, ((0, 0), (0, width - h.shape[1])), mode="edge") for h in hists])
    yaw, pitch, roll = camera.euler_from_rotation(out["R"])
    return SubjectsFit(label=labels, alpha_id=out["a_id"], alpha_exp=out["a_exp"], R=out["R"], f=out["f"],
                       t=out["t"], yaw=yaw, pitch=pitch, roll=roll, rmse_px=out["rmse"], subjects=subjects,
                       subject_alpha_id=sub_a, objective=hist, steps=steps, n_iter=n_iter, converged=conv,
                       subject_n_iter=sub_it)


# ---------------------------------------------------------------------------- synthetic checks
@dataclass
class SyntheticLandmarks:
    """Landmarks of known faces under known cameras (for checking the fitter).

    Attributes: ``landmarks`` (N, L, 2) pixels (noisy), ``clean`` (N, L, 2) noiseless,
    ``label`` (N,), ``alpha_id`` (S, k_id) per subject, ``alpha_exp`` (N, k_exp), ``R`` (N, 3, 3),
    ``f`` (N,), ``t`` (N, 2), ``yaw``/``pitch``/``roll`` (N,) radians.
    """

    landmarks: np.ndarray
    clean: np.ndarray
    label: np.ndarray
    alpha_id: np.ndarray
    alpha_exp: np.ndarray
    R: np.ndarray
    f: np.ndarray
    t: np.ndarray
    yaw: np.ndarray
    pitch: np.ndarray
    roll: np.ndarray


def simulate_landmarks(model: MorphableModel, n_subjects: int, n_images: int, noise_px: float = 0.0,
                       yaw_deg: tuple[float, float] = (-80.0, 80.0), pitch_deg: float = 15.0,
                       roll_deg: float = 10.0, f: float = 0.5, image_size: tuple[int, int] = (112, 96),
                       exp_scale: float = 1.0, seed: int | None = 0) -> SyntheticLandmarks:
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

    Returns
    -------
    SyntheticLandmarks
    """
    if n_subjects < 1 or n_images < 1:
        raise ValueError(f"n_subjects and n_images must be >= 1, got {n_subjects}, {n_images}")
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
    noisy = clean + rng.normal(0.0, noise_px, clean.shape) if noise_px > 0 else clean.copy()
    return SyntheticLandmarks(noisy, clean, label, a_id, a_exp, R, fs, t, yaw, pitch, roll)


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
        (scale, rotation, translation; :func:`disentangled_face.metrics.similarity_procrustes`)
        of these vertices (for example the 68 landmarks, as in the paper's Sec. 4.1). Without
        it no alignment is done.

    Returns
    -------
    ndarray (B,) or float
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.shape[-1] != 3:
        raise ValueError(f"shapes must match and be (..., n, 3), got {a.shape} and {b.shape}")
    if align_on is not None:
        from .metrics import apply_similarity, similarity_procrustes

        c, R, t = similarity_procrustes(a[..., align_on, :], b[..., align_on, :])
        a = apply_similarity(a, c, R, t)
    d = a - b if vertices is None else (a - b)[..., vertices, :]
    return np.sqrt((d ** 2).sum(-1).mean(-1))


def identity_error_vs_images(model: MorphableModel, n_images: Sequence[int] = (1, 2, 4, 8, 16),
                             n_subjects: int = 20, noise_px: float = 1.0, seed: int = 0,
                             **fit_kwargs) -> dict[str, np.ndarray]:
    """Identity error of the multi-image fit against the number of images per subject.

    ``n_subjects`` random subjects are each seen in ``max(n_images)`` random poses with
    ``noise_px`` landmark noise; for each ``M`` in ``n_images`` their first ``M`` images are
    fitted with :func:`fit_subjects`; the error is
    the RMSE (mm) between the fitted and the true neutral identity shapes
    ``s_mean + A_id alpha_id``: with no alignment over the whole mesh (``rmse_mesh``) and over
    the 68 landmark vertices (``rmse_landmarks``), and over the whole mesh after a similarity
    alignment on the 68 landmarks (``rmse_mesh_aligned``; weak perspective cannot see a face's
    absolute size, which the scale of that alignment removes).

    Returns
    -------
    dict
        ``n_images`` (K,); ``rmse_mesh``, ``rmse_landmarks``, ``rmse_mesh_aligned``
        (K, n_subjects) mm; ``reproj_px`` (K,) mean landmark reprojection RMSE.
    """
    n_images = [int(M) for M in n_images]
    syn = simulate_landmarks(model, n_subjects, max(n_images), noise_px=noise_px, seed=seed)
    true = model.identity_shape(syn.alpha_id)
    pos = np.arange(len(syn.label)) % max(n_images)   # image index within its subject
    mesh, lmk, mesh_al, rep = [], [], [], []
    for M in n_images:           # the same subjects each time, seen in their first M images
        sel = pos < M
        fit = fit_subjects(model, syn.landmarks[sel], syn.label[sel], **fit_kwargs)
        est = model.identity_shape(fit.subject_alpha_id)
        mesh.append(shape_rmse(est, true))
        lmk.append(shape_rmse(est, true, model.landmarks))
        mesh_al.append(shape_rmse(est, true, align_on=model.landmarks))
        rep.append(fit.rmse_px.mean())
    return dict(n_images=np.asarray(n_images), rmse_mesh=np.array(mesh), rmse_landmarks=np.array(lmk),
                rmse_mesh_aligned=np.array(mesh_al), reproj_px=np.array(rep))


# ---------------------------------------------------------------------------- training targets
def _profile(profile: Any) -> dict:
    from .config import load_profile

    return profile if isinstance(profile, dict) else load_profile(profile)


def fit_options(profile: Any = "book") -> dict:
    """The fitter options (keys of :data:`DEFAULTS`) of a profile's ``fitting`` section.

    Parameters
    ----------
    profile : str, path or dict
        Profile name (``"book"``, ``"paper"``), YAML path, or an already loaded profile.
    """
    sec = _profile(profile).get("fitting") or {}
    return {**DEFAULTS, **{k: v for k, v in sec.items() if k in DEFAULTS}}


def targets_path(profile: Any = "book", model: MorphableModel | None = None) -> Path:
    """Where :func:`build_targets` writes: ``data/targets/train-<config_hash>.npz``.

    The hash covers the fitter options, the ``train`` protocol's file (itself keyed by the
    synthetic-data config) and the model's name and sizes.
    """
    from . import synth
    from .paths import config_hash, data_dir

    cfg = _profile(profile)
    proto = synth.protocol_path("train", cfg, model)
    key = dict(fitting=fit_options(cfg), protocol=proto.name, version=1)
    return data_dir("targets") / f"train-{config_hash(key)}.npz"


def build_targets(profile: Any = "book", model: MorphableModel | None = None, overwrite: bool = False,
                  progress: bool = False) -> Path:
    """Fit the synthetic ``train`` protocol and store the training targets (paper Sec. 3.3.2).

    Every subject's images are fitted together (:func:`fit_subjects`, the shared ``alpha_id``
    of Eq. 7), batched over ``fitting.chunk`` subjects at a time, from the protocol's 68
    landmarks. The file (written atomically, reused when present) holds per image:
    ``index`` (N,), ``label`` (N,), ``alpha_id`` (N, k_id) (the subject's shared code),
    ``alpha_exp`` (N, k_exp), ``R`` (N, 3, 3), ``f`` (N,), ``t`` (N, 2), ``yaw``, ``pitch``,
    ``roll`` (N,) radians, ``rmse_px`` (N,) and ``subject_n_iter`` (S,), ``subjects`` (S,).
    The fitted shape of image i is ``model.shape(alpha_id[i], alpha_exp[i])``.

    Parameters
    ----------
    profile : str, path or dict
        Profile (its ``synth`` and ``fitting`` sections are used).
    model : MorphableModel, optional
        ICT-FaceKit when omitted.
    overwrite : bool
        Refit even when the file exists.

    Returns
    -------
    Path
        ``data/targets/train-<config_hash>.npz``.
    """
    from . import synth
    from .paths import atomic_path

    cfg = _profile(profile)
    if model is None:
        from .model import load_ict_facekit

        model = load_ict_facekit()
    path = targets_path(cfg, model)
    if path.is_file() and not overwrite:
        return path
    ds = synth.load_protocol(synth.build_protocol("train", cfg, model=model, progress=progress))
    chunk = (cfg.get("fitting") or {}).get("chunk")
    fit = fit_subjects(model, np.asarray(ds.landmarks, np.float64), np.asarray(ds.label), chunk=chunk,
                       **fit_options(cfg))
    out = dict(index=np.arange(len(fit.label)), label=fit.label, alpha_id=fit.alpha_id.astype(np.float32),
               alpha_exp=fit.alpha_exp.astype(np.float32), R=fit.R.astype(np.float32), f=fit.f.astype(np.float32),
               t=fit.t.astype(np.float32), yaw=fit.yaw, pitch=fit.pitch, roll=fit.roll, rmse_px=fit.rmse_px,
               subjects=fit.subjects, subject_n_iter=fit.subject_n_iter, objective=fit.objective)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **out)
    logger.info("fitted %d images of %d subjects -> %s", len(fit.label), len(fit.subjects), path)
    return path


def load_targets(path: str | Path) -> dict[str, np.ndarray]:
    """Read a targets file written by :func:`build_targets` (dict of arrays, see there).

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    ValueError
        When a required array is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"targets file not found: {path} (build it with fitting.build_targets)")
    with np.load(path, allow_pickle=False) as z:
        out = {k: z[k] for k in z.files}
    need = ("index", "label", "alpha_id", "alpha_exp", "R", "f", "t")
    missing = [k for k in need if k not in out]
    if missing:
        raise ValueError(f"{path} lacks {missing}; expected the arrays {need}")
    return out


def shape_errors(model: MorphableModel, alpha_id: Any, alpha_exp: Any, true_alpha_id: Any,
                 true_alpha_exp: Any, chunk: int = 256) -> dict[str, np.ndarray]:
    """Per-image errors of fitted shapes against ground truth, over the whole mesh (mm).

    Parameters
    ----------
    model : MorphableModel
    alpha_id, alpha_exp : ndarray (N, k_id), (N, k_exp)
        Fitted codes per image.
    true_alpha_id, true_alpha_exp : ndarray (N, k_id), (N, k_exp)
        Ground-truth codes.
    chunk : int
        Images per batch (bounds memory: a batch holds 2 x chunk x n x 3 floats).

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
    """
    arrs = [np.asarray(a, np.float32) for a in (alpha_id, alpha_exp, true_alpha_id, true_alpha_exp)]
    N = arrs[0].shape[0]
    for a, k, nm in zip(arrs, (model.n_id, model.n_exp) * 2, ("alpha_id", "alpha_exp", "true_alpha_id", "true_alpha_exp")):
        if a.shape != (N, k):
            raise ValueError(f"{nm} must have shape ({N}, {k}), got {a.shape}")
    out = {k: np.zeros(N) for k in ("shape_raw", "shape_aligned", "identity_aligned")}
    L = model.landmarks
    for i in range(0, N, chunk):
        sl = slice(i, i + chunk)
        est, true = model.shape(arrs[0][sl], arrs[1][sl]), model.shape(arrs[2][sl], arrs[3][sl])
        out["shape_raw"][sl] = shape_rmse(est, true)
        out["shape_aligned"][sl] = shape_rmse(est, true, align_on=L)
        out["identity_aligned"][sl] = shape_rmse(model.identity_shape(arrs[0][sl]),
                                                 model.identity_shape(arrs[2][sl]), align_on=L)
    return out
