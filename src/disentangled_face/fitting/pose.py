"""The pose step of Eq. 7: a weak-perspective camera (f, R, t) from 2D-3D correspondences.

Closed form for the affine camera (linear least squares of the 2D landmarks on the centred 3D
model landmarks), then the nearest scaled rotation (SVD, det +1), then a few Gauss-Newton steps
on (f, R, t) of the exact weak-perspective objective (see :mod:`disentangled_face.shape.camera`).
The private helpers work batched on torch tensors in camera-plane coordinates (v' up).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .checks import check_landmarks

__all__ = ["nearest_scaled_rotation", "estimate_pose"]


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
    f, R = nearest_scaled_rotation_t(torch.as_tensor(M.reshape(-1, 2, 3)))
    if (torch.linalg.svdvals(torch.as_tensor(M.reshape(-1, 2, 3)))[:, 1] <= 1e-12).any():
        raise ValueError("M has rank < 2: no camera orientation can be read from it")
    f, R = f.numpy(), R.numpy()
    return (float(f[0]), R[0]) if single else (f, R)


def nearest_scaled_rotation_t(M: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Batched :func:`nearest_scaled_rotation` on (B, 2, 3) tensors, no checks: f (B,), R (B, 3, 3)."""
    U, S, Vh = torch.linalg.svd(M, full_matrices=False)  # (B,2,2) (B,2) (B,2,3)
    R12 = U @ Vh
    r3 = torch.linalg.cross(R12[:, 0], R12[:, 1], dim=-1)
    return S.mean(-1), torch.cat([R12, r3[:, None]], dim=1)


def flip(y: torch.Tensor) -> torch.Tensor:
    """Image (u, v down) <-> camera-plane (u, v' up) coordinates."""
    return y * y.new_tensor([1.0, -1.0])


def pose_closed_form(X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Affine least squares + nearest scaled rotation; X (B,L,3) mm, y (B,L,2) with v' up."""
    Xm, ym = X.mean(1, keepdim=True), y.mean(1, keepdim=True)
    Xc, yc = X - Xm, y - ym
    G = Xc.transpose(1, 2) @ Xc                                     # (B,3,3)
    MT = torch.linalg.solve(G, Xc.transpose(1, 2) @ yc)             # (B,3,2)
    _, R = nearest_scaled_rotation_t(MT.transpose(1, 2))
    p = (Xc @ R.transpose(1, 2))[..., :2]
    f = (p * yc).sum((1, 2)) / (p * p).sum((1, 2)).clamp_min(1e-30)
    t = (ym - f[:, None, None] * (Xm @ R.transpose(1, 2))[..., :2])[:, 0]
    return f, R, t


def project_up(X: torch.Tensor, R: torch.Tensor, f: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """``f P R X + t`` in camera-plane coordinates: X (B,L,3), R (B,3,3), f (B,), t (B,2) -> (B,L,2)."""
    return f[:, None, None] * (X @ R.transpose(1, 2))[..., :2] + t[:, None, :]


def skew_exp(w: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (B, 3, 3) of rotation vectors w (B, 3) (matrix exponential of [w]_x)."""
    z = torch.zeros_like(w[:, 0])
    K = torch.stack([torch.stack([z, -w[:, 2], w[:, 1]], -1),
                     torch.stack([w[:, 2], z, -w[:, 0]], -1),
                     torch.stack([-w[:, 1], w[:, 0], z], -1)], -2)
    return torch.linalg.matrix_exp(K)


def pose_jacobian(RX: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Derivatives (B, L, 2, 6) of the residual (u, v') per landmark w.r.t. (f, w_x, w_y, w_z, t_u, t_v).

    ``RX`` (B, L, 3) are the rotated model points ``X R^T``, ``f`` (B,) the scales.
    """
    px, py, pz = RX[..., 0], RX[..., 1], RX[..., 2]
    fz = f[:, None]
    zero, one = torch.zeros_like(px), torch.ones_like(px)
    du = torch.stack([-px, zero, -fz * pz, fz * py, -one, zero], -1)
    dv = torch.stack([-py, fz * pz, zero, -fz * px, zero, -one], -1)
    return torch.stack([du, dv], 2)


def pose_gauss_newton(X, y, f, R, t, steps: int):
    """Gauss-Newton on (f, rotation vector, t) of sum ||y - f P R X - t||^2, accept-if-better."""
    def sse(f, R, t):
        return ((y - project_up(X, R, f, t)) ** 2).sum((1, 2))

    cur = sse(f, R, t)
    B, L = X.shape[:2]
    for _ in range(steps):
        RX = X @ R.transpose(1, 2)
        r = (y - f[:, None, None] * RX[..., :2] - t[:, None]).reshape(B, 2 * L)
        J = pose_jacobian(RX, f).reshape(B, 2 * L, 6)
        H = J.transpose(1, 2) @ J
        H = H + 1e-9 * H.diagonal(dim1=1, dim2=2).mean(-1)[:, None, None] * torch.eye(6, dtype=H.dtype)
        d = -torch.linalg.solve(H, (J.transpose(1, 2) @ r[..., None]))[..., 0]
        f2, R2, t2 = f + d[:, 0], skew_exp(d[:, 1:4]) @ R, t + d[:, 4:]
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
    y = check_landmarks(landmarks2d, P.shape[1])
    if y.shape[0] != P.shape[0]:
        raise ValueError(f"{P.shape[0]} point sets but {y.shape[0]} landmark sets")
    if not np.isfinite(P).all():
        raise ValueError("model_points has NaN or inf")
    sv = np.linalg.svd(P - P.mean(1, keepdims=True), compute_uv=False)
    if (sv[:, 2] <= 1e-9 * sv[:, 0]).any():
        raise ValueError("model_points are coplanar: the affine camera is not determined")
    X, yt = torch.as_tensor(P), flip(torch.as_tensor(y))
    f, R, t = pose_closed_form(X, yt)
    f, R, t = pose_gauss_newton(X, yt, f, R, t, refine)
    t = flip(t)
    R, f, t = R.numpy(), f.numpy(), t.numpy()
    return (R[0], float(f[0]), t[0]) if single else (R, f, t)
