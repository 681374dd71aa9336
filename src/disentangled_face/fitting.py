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
   ``[0, 1]`` (accelerated projected gradient + an active-set polish in torch; or
   :func:`scipy.optimize.lsq_linear` as the reference path);
3. **identity** per subject: ridge least squares jointly over all of the subject's images,

and stops when the relative change of ``E`` over one iteration drops below ``tol`` (the paper
reports about 7 iterations) or after ``max_iter`` iterations. The single-image variant (a
baseline of the paper's tables) is the same fitter with one image per subject.

Everything runs batched in torch over many images and subjects at once, deterministically.
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
    lambda_exp=1.0,       # mm^2 per unit blendshape weight squared
    max_iter=20,          # cap on pose -> expression -> identity iterations
    tol=1e-4,             # relative change of E over one iteration
    pose_refine=2,        # Gauss-Newton steps on (f, R, t) after the closed form
    exp_iters=60,         # projected-gradient iterations of the bounded expression step
    joint_iters=0,        # Levenberg-Marquardt steps on all parameters after the alternation
    dtype="float64",
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


# ---------------------------------------------------------------------------- box-constrained ridge
def _box_ridge(H: torch.Tensor, g: torch.Tensor, x0: torch.Tensor, lo: float, hi: float,
               iters: int) -> torch.Tensor:
    """min_x 1/2 x^T H x - g^T x  s.t. lo <= x <= hi, batched (B,k,k), (B,k).

    Accelerated projected gradient (FISTA, step 1/lambda_max) from ``x0``, then an active-set
    polish (solve exactly on the free variables, keep when better), deterministic.
    """
    def q(x):
        return 0.5 * (x[:, None, :] @ H @ x[..., None])[:, 0, 0] - (g * x).sum(-1)

    Lip = torch.linalg.eigvalsh(H)[:, -1].clamp_min(1e-30)[:, None]
    x = x0.clamp(lo, hi)
    z, tk = x.clone(), 1.0
    for _ in range(iters):
        grad = (H @ z[..., None])[..., 0] - g
        xn = (z - grad / Lip).clamp(lo, hi)
        tn = 0.5 * (1.0 + (1.0 + 4.0 * tk * tk) ** 0.5)
        z = xn + ((tk - 1.0) / tn) * (xn - x)
        x, tk = xn, tn
    best, qb = x, q(x)
    cand = x
    for _ in range(3):
        grad = (H @ cand[..., None])[..., 0] - g
        fixed = ((cand <= lo + 1e-9) & (grad >= 0)) | ((cand >= hi - 1e-9) & (grad <= 0))
        F = (~fixed).to(H.dtype)
        xc = cand * (1 - F)
        A = H * F[:, :, None] * F[:, None, :] + torch.diag_embed(1 - F)
        rhs = F * (g - (H @ xc[..., None])[..., 0]) + (1 - F) * cand
        cand = torch.linalg.solve(A, rhs).clamp(lo, hi)
        qc = q(cand)
        better = qc < qb
        best = torch.where(better[:, None], cand, best)
        qb = torch.where(better, qc, qb)
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
    """Batched alternating fitter over N images of S subjects (all tensors on one dtype)."""

    def __init__(self, model: MorphableModel, y: np.ndarray, subj: np.ndarray, n_subj: int,
                 lambda_id: float, lambda_exp: float, dtype: torch.dtype, exp_iters: int,
                 pose_refine: int, exp_solver: str):
        mU, iU, eU = model.landmark_bases()
        self.mean = torch.as_tensor(mU, dtype=dtype)
        self.idb = torch.as_tensor(iU, dtype=dtype)   # (k_id, L, 3)
        self.exb = torch.as_tensor(eU, dtype=dtype)   # (k_exp, L, 3)
        self.y = _flip(torch.as_tensor(y, dtype=dtype))
        self.subj = torch.as_tensor(subj, dtype=torch.long)
        self.S = n_subj
        self.lam_id, self.lam_exp = float(lambda_id), float(lambda_exp)
        self.bounds = model.exp_bounds
        self.dtype = dtype
        self.exp_iters, self.pose_refine, self.exp_solver = exp_iters, pose_refine, exp_solver
        if lambda_id < 0 or lambda_exp < 0:
            raise ValueError(f"lambda_id and lambda_exp must be >= 0, got {lambda_id}, {lambda_exp}")
        if exp_solver not in ("torch", "scipy"):
            raise ValueError(f"exp_solver must be 'torch' or 'scipy', got {exp_solver!r}")

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

    def _design(self, basis, st: _State, fixed_X):
        """A (N, 2L, k) and b (N, 2L) of the scaled residual for a linear block."""
        w = (st.f / self.s)[:, None, None]
        A = w[..., None] * torch.einsum("kld,ned->nlek", basis, st.R[:, :2, :])   # (N,L,2,k)
        b = (self.y - _project_up(fixed_X, st.R, st.f, st.t)) / self.s[:, None, None]
        N, L = b.shape[:2]
        return A.reshape(N, 2 * L, -1), b.reshape(N, 2 * L)

    def exp_step(self, st: _State) -> _State:
        A, b = self._design(self.exb, st, self.mean + self.id_part(st.a_id))
        k = A.shape[-1]
        H = A.transpose(1, 2) @ A + self.lam_exp * torch.eye(k, dtype=self.dtype)
        g = (A.transpose(1, 2) @ b[..., None])[..., 0]
        if self.bounds is None:
            a = torch.linalg.solve(H, g)
        elif self.exp_solver == "scipy":
            a = torch.as_tensor(_lsq_linear_ridge(A.numpy(), b.numpy(), self.lam_exp, self.bounds), dtype=self.dtype)
        else:
            a = _box_ridge(H, g, st.a_exp, self.bounds[0], self.bounds[1], self.exp_iters)
        return _State(st.a_id, a, st.R, st.f, st.t)

    def id_step(self, st: _State) -> _State:
        A, b = self._design(self.idb, st, self.mean + self.exp_part(st.a_exp))
        k = A.shape[-1]
        H = torch.zeros(self.S, k, k, dtype=self.dtype).index_add_(0, self.subj, A.transpose(1, 2) @ A)
        g = torch.zeros(self.S, k, dtype=self.dtype).index_add_(0, self.subj, (A.transpose(1, 2) @ b[..., None])[..., 0])
        H = H + self.lam_id * torch.eye(k, dtype=self.dtype)
        if self.lam_id == 0:  # keep solvable for subjects with too few constraints
            H = H + 1e-10 * H.diagonal(dim1=1, dim2=2).mean(-1)[:, None, None] * torch.eye(k, dtype=self.dtype)
        return _State(torch.linalg.solve(H, g), st.a_exp, st.R, st.f, st.t)

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
        r = ((self.y - st.f[:, None, None] * RX[..., :2] - st.t[:, None]) / s).reshape(N, 2 * L)
        px, py, pz = RX[..., 0], RX[..., 1], RX[..., 2]
        fz = st.f[:, None]
        zero, one = torch.zeros_like(px), torch.ones_like(px)
        du = torch.stack([-px, zero, -fz * pz, fz * py, -one, zero], -1)
        dv = torch.stack([-py, fz * pz, zero, -fz * px, zero, -one], -1)
        Jpose = torch.stack([du, dv], 2).reshape(N, 2 * L, 6) / s
        Jexp, _ = self._design(self.exb, st, X)
        Jid, _ = self._design(self.idb, st, X)
        Jp, Jq = torch.cat([Jpose, -Jexp], -1), -Jid
        kp, kq = Jp.shape[-1], Jq.shape[-1]
        ke = kp - 6
        lam_p = torch.cat([torch.zeros(6, dtype=dt), torch.full((ke,), self.lam_exp, dtype=dt)])
        a_p = torch.cat([torch.zeros(N, 6, dtype=dt), st.a_exp], -1)
        U = Jp.transpose(1, 2) @ Jp + torch.diag(lam_p)
        W = Jp.transpose(1, 2) @ Jq
        bp = -((Jp.transpose(1, 2) @ r[..., None])[..., 0] + lam_p * a_p)
        V = torch.zeros(self.S, kq, kq, dtype=dt).index_add_(0, self.subj, Jq.transpose(1, 2) @ Jq)
        V = V + self.lam_id * torch.eye(kq, dtype=dt)
        bq = -(torch.zeros(self.S, kq, dtype=dt).index_add_(0, self.subj, (Jq.transpose(1, 2) @ r[..., None])[..., 0])
               + self.lam_id * st.a_id)
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
        sol = torch.linalg.solve(U, torch.cat([W, bp[..., None]], -1))     # (N, kp, kq + 1)
        UiW, Uib = sol[..., :kq], sol[..., kq]
        Sred = V - torch.zeros_like(V).index_add_(0, self.subj, W.transpose(1, 2) @ UiW)
        rhs = bq - torch.zeros_like(bq).index_add_(0, self.subj, (W.transpose(1, 2) @ Uib[..., None])[..., 0])
        dq = torch.linalg.solve(Sred, rhs)
        dp = Uib - (UiW @ dq[self.subj][..., None])[..., 0]
        a_exp = st.a_exp + dp[:, 6:]
        if self.bounds is not None:
            a_exp = a_exp.clamp(*self.bounds)
        cand = _State(st.a_id + dq, a_exp, _skew_exp(dp[:, 1:4]) @ st.R, st.f + dp[:, 0], st.t + dp[:, 4:6])
        E_new = self.objective(cand)
        ok = (E_new < E_old) & torch.isfinite(E_new)
        ok_img = ok[self.subj]
        new = _State(torch.where(ok[:, None], cand.a_id, st.a_id),
                     torch.where(ok_img[:, None], cand.a_exp, st.a_exp),
                     torch.where(ok_img[:, None, None], cand.R, st.R),
                     torch.where(ok_img, cand.f, st.f), torch.where(ok_img[:, None], cand.t, st.t))
        mu = torch.where(ok, mu / 3.0, mu * 4.0).clamp(1e-9, 1e6)
        return new, mu, torch.where(ok, E_new, E_old)

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
        for it in range(max_iter):
            st = self.pose_step(st, first=(it == 0))
            history.append(self.objective(st).numpy()); steps.append("pose")
            if it == 0:
                prev = history[-1]
            st = self.exp_step(st)
            history.append(self.objective(st).numpy()); steps.append("expression")
            st = self.id_step(st)
            E = self.objective(st).numpy()
            history.append(E); steps.append("identity")
            n_iter = it + 1
            rel = np.abs(prev - E) / np.maximum(np.abs(prev), 1e-300)
            if verbose:
                logger.info("iteration %d: E = %.6g (max relative change %.3g)", n_iter, E.sum(), rel.max())
            if (rel < tol).all() and it > 0:
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
    labels). ``objective`` (S, 3 * n_iter) is each subject's E after every step.
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

    def shapes(self, model: MorphableModel, idx: Any = None) -> np.ndarray:
        """Fitted shapes of images ``idx`` (all when None), (B, n, 3) mm."""
        idx = np.arange(len(self.label)) if idx is None else np.atleast_1d(idx)
        return model.shape(self.alpha_id[idx], self.alpha_exp[idx])


def _run(model, y, subj, S, cfg, verbose=False):
    c = {**DEFAULTS, **{k: v for k, v in cfg.items() if v is not None}}
    unknown = set(c) - set(DEFAULTS) - {"exp_solver", "chunk"}
    if unknown:
        raise ValueError(f"unknown fitting option(s) {sorted(unknown)}; expected {sorted(DEFAULTS)}")
    if int(c["max_iter"]) < 1:
        raise ValueError(f"max_iter must be >= 1, got {c['max_iter']}")
    fitter = _Fitter(model, y, subj, S, c["lambda_id"], c["lambda_exp"], _dtype(c["dtype"]),
                     int(c["exp_iters"]), int(c["pose_refine"]), c.get("exp_solver", "torch"))
    with torch.no_grad():
        st, hist, steps, n_iter, conv = fitter.run(int(c["max_iter"]), float(c["tol"]), verbose,
                                                   int(c["joint_iters"]))
        X = fitter.X(st)
        rmse = ((fitter.y - _project_up(X, st.R, st.f, st.t)) ** 2).sum(-1).mean(-1).sqrt()
    R = st.R.double().numpy()
    yaw, pitch, roll = camera.euler_from_rotation(R)
    return dict(a_id=st.a_id.double().numpy(), a_exp=st.a_exp.double().numpy(), R=R,
                f=st.f.double().numpy(), t=_flip(st.t).double().numpy(), yaw=yaw, pitch=pitch,
                roll=roll, hist=hist, steps=steps, n_iter=n_iter, converged=conv,
                rmse=rmse.double().numpy())


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
        ``pose_refine``, ``exp_iters`` (see :data:`DEFAULTS`).

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
        ``exp_iters``, ``exp_solver`` (see :data:`DEFAULTS` and :func:`fit_shape_and_pose`).

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
    hists, n_iter, conv, steps = [], 0, True, []
    for s0 in range(0, S, chunk):
        sel = np.flatnonzero((subj >= s0) & (subj < s0 + chunk))
        r = _run(model, y[sel], subj[sel] - s0, min(chunk, S - s0), cfg, verbose)
        out["a_id"][sel] = r["a_id"][subj[sel] - s0]
        for k in ("a_exp", "R", "f", "t", "rmse"):
            out[k][sel] = r[k]
        sub_a[s0:s0 + chunk] = r["a_id"]
        hists.append(r["hist"]); n_iter = max(n_iter, r["n_iter"]); conv &= r["converged"]
        steps = r["steps"] if len(r["steps"]) > len(steps) else steps
    width = max(h.shape[1] for h in hists)
    hist = np.concatenate([np.pad(h, ((0, 0), (0, width - h.shape[1])), mode="edge") for h in hists])
    yaw, pitch, roll = camera.euler_from_rotation(out["R"])
    return SubjectsFit(label=labels, alpha_id=out["a_id"], alpha_exp=out["a_exp"], R=out["R"], f=out["f"],
                       t=out["t"], yaw=yaw, pitch=pitch, roll=roll, rmse_px=out["rmse"], subjects=subjects,
                       subject_alpha_id=sub_a, objective=hist, steps=steps, n_iter=n_iter, converged=conv)
