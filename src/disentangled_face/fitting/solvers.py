"""Linear solvers of the fitter: SPD systems, and the box-constrained ridge of the expression step.

The expression step of Eq. 7 is a ridge least squares problem with the blendshape weights
bounded to ``[0, 1]``: ``min_x 1/2 x^T H x - g^T x`` subject to ``lo <= x <= hi``, one small
problem per image, solved batched in torch (:func:`box_ridge`), or per image with
:func:`scipy.optimize.lsq_linear` as the reference path (:func:`lsq_linear_ridge`).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["spd_solve", "box_ridge", "lsq_linear_ridge"]


def spd_solve(A: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Solve batched symmetric positive definite systems ``A x = b`` (the normal equations of Eq. 7).

    Parameters
    ----------
    A : Tensor (..., k, k)
        Symmetric positive definite (a ridge term makes it so).
    b : Tensor (..., k)

    Returns
    -------
    Tensor (..., k)
        Cholesky (``torch.linalg.cholesky_ex``) when every system factors, else LU
        (``torch.linalg.solve``) for the whole batch.

    Raises
    ------
    torch.linalg.LinAlgError
        When a system is singular (LU fails too).
    """
    L, info = torch.linalg.cholesky_ex(A)
    if bool((info == 0).all()):
        return torch.cholesky_solve(b[..., None], L)[..., 0]
    return torch.linalg.solve(A, b)


def _quadratic(H: torch.Tensor, g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``1/2 x^T H x - g^T x`` per batch element."""
    return 0.5 * (x[:, None, :] @ H @ x[..., None])[:, 0, 0] - (g * x).sum(-1)


def _fista(H: torch.Tensor, g: torch.Tensor, x0: torch.Tensor, lo: float, hi: float, iters: int) -> torch.Tensor:
    """Accelerated projected gradient (FISTA, step 1/lambda_max) from ``x0`` (clamped)."""
    x = x0.clamp(lo, hi)
    z, tk = x.clone(), 1.0
    Lip = torch.linalg.eigvalsh(H)[:, -1].clamp_min(1e-30)[:, None] if iters > 0 else None
    for _ in range(iters):
        grad = (H @ z[..., None])[..., 0] - g
        xn = (z - grad / Lip).clamp(lo, hi)
        tn = 0.5 * (1.0 + (1.0 + 4.0 * tk * tk) ** 0.5)
        z = xn + ((tk - 1.0) / tn) * (xn - x)
        x, tk = xn, tn
    return x


def _solve_free(Hs: torch.Tensor, gs: torch.Tensor, at_lo: torch.Tensor, at_hi: torch.Tensor,
                lo: float, hi: float) -> torch.Tensor:
    """The exact minimiser with the variables at_lo / at_hi fixed at their bounds (unclamped)."""
    F = (~(at_lo | at_hi)).to(Hs.dtype)
    xc = torch.where(at_lo, torch.full_like(F, lo), torch.where(at_hi, torch.full_like(F, hi), torch.zeros_like(F)))
    A = Hs * (F[:, :, None] * F[:, None, :])
    A.diagonal(dim1=1, dim2=2).add_(1 - F)
    rhs = F * (gs - (Hs @ xc[..., None])[..., 0]) + (1 - F) * xc
    Lc, info = torch.linalg.cholesky_ex(A)     # A is SPD (H is, plus identity rows)
    if bool((info == 0).all()):
        return torch.cholesky_solve(rhs[..., None], Lc)[..., 0]
    return torch.linalg.solve(A, rhs)


def _active_set(H: torch.Tensor, g: torch.Tensor, x: torch.Tensor, lo: float, hi: float,
                as_iters: int) -> torch.Tensor:
    """Primal-dual active set (semismooth Newton) from the feasible ``x``: fix at lo where
    x - c*grad < lo, at hi where x - c*grad > hi, solve exactly on the rest; keep the best
    feasible point (monotone). Elements whose bound sets stop changing drop out."""
    best, qb = x, _quadratic(H, g, x)
    c = 1.0 / H.diagonal(dim1=1, dim2=2).clamp_min(1e-30)
    cand = x.clone()
    prev = torch.zeros(x.shape[0], 2 * x.shape[1], dtype=torch.bool)
    idx = torch.arange(x.shape[0])                 # elements whose bound sets still change
    for it in range(as_iters):
        full = len(idx) == x.shape[0]             # no copies of H while every element takes part
        Hs, gs, xs, cs = (H, g, cand, c) if full else (H[idx], g[idx], cand[idx], c[idx])
        z = xs - cs * ((Hs @ xs[..., None])[..., 0] - gs)
        at_lo, at_hi = z < lo, z > hi
        key = torch.cat([at_lo, at_hi], -1)
        moved = (key != prev[idx]).any(-1) if it else None
        if moved is not None and not bool(moved.all()):
            idx, Hs, gs, at_lo, at_hi, key = idx[moved], Hs[moved], gs[moved], at_lo[moved], at_hi[moved], key[moved]
        if len(idx) == 0:
            break
        prev[idx] = key
        sol = _solve_free(Hs, gs, at_lo, at_hi, lo, hi)
        cand[idx] = sol                            # unclamped: the next bound sets come from it
        feas = sol.clamp(lo, hi)
        qc = _quadratic(Hs, gs, feas)
        better = qc < qb[idx]
        best[idx[better]] = feas[better]
        qb[idx[better]] = qc[better]
    return best


def box_ridge(H: torch.Tensor, g: torch.Tensor, x0: torch.Tensor, lo: float, hi: float,
              iters: int, as_iters: int = 25) -> torch.Tensor:
    """min_x 1/2 x^T H x - g^T x  s.t. lo <= x <= hi, batched (B,k,k), (B,k).

    Accelerated projected gradient (FISTA, step 1/lambda_max) from ``x0`` for ``iters`` steps,
    then at most ``as_iters`` iterations of a primal-dual active-set method (Hintermueller, Ito
    and Kunisch 2003: solve exactly on the free variables, update the bound sets, keep the best
    point), deterministic. Returns x (B, k).
    """
    x = _fista(H, g, x0, lo, hi, iters)
    return _active_set(H, g, x, lo, hi, as_iters)


def lsq_linear_ridge(A: np.ndarray, b: np.ndarray, lam: float, bounds) -> np.ndarray:
    """Reference expression step: the bounded ridge problem ``min ||A x - b||² + lam ||x||²``,
    ``lo <= x <= hi``, solved per image by ``scipy.optimize.lsq_linear`` (BVLS) on the stacked
    system ``[A; sqrt(lam) I] x = [b; 0]``.

    Parameters
    ----------
    A : ndarray (N, 2L, k)
        Per-image design matrices of the landmark residuals (weighted to mm).
    b : ndarray (N, 2L)
        Residual targets, mm.
    lam : float
        ``lambda_exp`` of Eq. 7, mm² per unit weight².
    bounds : (lo, hi)
        The blendshape range (``[0, 1]`` for ICT-FaceKit).

    Returns
    -------
    ndarray (N, k)
    """
    from scipy.optimize import lsq_linear

    k = A.shape[-1]
    out = np.empty((A.shape[0], k))
    for i in range(A.shape[0]):
        Aa = np.vstack([A[i], np.sqrt(lam) * np.eye(k)])
        ba = np.concatenate([b[i], np.zeros(k)])
        out[i] = lsq_linear(Aa, ba, bounds=bounds, method="bvls", tol=1e-12).x
    return out
