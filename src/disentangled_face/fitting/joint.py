"""The joint refinement after the alternation: Levenberg-Marquardt on all parameters at once.

The alternation of Eq. 7 converges only linearly (ICT-FaceKit's expression blendshapes and
identity modes overlap almost exactly at some landmarks), so ``joint_iters`` Levenberg-Marquardt
steps on every parameter follow (our addition to the paper; ``joint_iters=0`` gives the
paper's alternation alone). Per image the pose (f, rotation vector, t) and ``alpha_exp`` are
eliminated by a Schur complement, leaving one (k_id, k_id) system per subject, as in bundle
adjustment. Expression weights at a bound whose gradient points outward are held (projected
step); a step is kept per subject only when it lowers E (then the damping ``mu`` shrinks, else
it grows).
"""

from __future__ import annotations

import numpy as np
import torch

from .alternation import Fitter, State
from .pose import pose_jacobian, skew_exp
from .solvers import spd_solve

__all__ = ["joint_step", "refine"]


def _gauss_newton_system(fx: Fitter, st: State):
    """The Gauss-Newton system of E in the block form of bundle adjustment.

    Per image p = (f, w, t, alpha_exp) (kp = 6 + k_exp), per subject q = alpha_id:
    ``[[U, W], [W^T, V]] [dp; dq] = [bp; bq]`` with U (N, kp, kp), W (N, kp, k_id) per image,
    V (S, k_id, k_id) per subject, the priors included.
    """
    dt = fx.dtype
    X = fx.X(st)
    RX = X @ st.R.transpose(1, 2)
    N, L = X.shape[:2]
    s = fx.s[:, None, None]
    w = st.f / fx.s
    R2 = st.R[:, :2, :]
    r = (fx.y - st.f[:, None, None] * RX[..., :2] - st.t[:, None]) / s          # (N,L,2)
    Jpose = pose_jacobian(RX, st.f) / s[..., None]                               # (N,L,2,6)
    Jflat = Jpose.reshape(N, 2 * L, 6)
    liftJ = torch.einsum("nlej,ned->nldj", Jpose, R2)                             # (N,L,3,6)
    cr = r @ R2                                                                   # (N,L,3)
    # blocks of J^T J (J_exp = -w P R B_exp, J_id = -w P R B_id)
    Upp = Jflat.transpose(1, 2) @ Jflat
    Upe = -w[:, None, None] * fx.contract(liftJ, "exp").transpose(1, 2)
    ke, kq = fx.exb.shape[0], fx.idb.shape[0]
    Uee = fx.gram(st, "exp", "exp") + fx.lam_exp * torch.eye(ke, dtype=dt)
    U = torch.cat([torch.cat([Upp, Upe], 2), torch.cat([Upe.transpose(1, 2), Uee], 2)], 1)
    Wpi = -w[:, None, None] * fx.contract(liftJ, "id").transpose(1, 2)
    Wei = fx.gram(st, "exp", "id")
    W = torch.cat([Wpi, Wei], 1)                                                   # (N,kp,kq)
    V = fx.gram(st, "id", "id", per_subject=True) + fx.lam_id * torch.eye(kq, dtype=dt)
    bp = -torch.cat([Jflat.transpose(1, 2) @ r.reshape(N, 2 * L, 1),
                     (-w[:, None] * fx.contract(cr, "exp") + fx.lam_exp * st.a_exp)[..., None]], 1)[..., 0]
    bq = -(fx.sum_subj(-w[:, None] * fx.contract(cr, "id")) + fx.lam_id * st.a_id)
    return U, W, V, bp, bq


def _hold_bounds(fx: Fitter, st: State, U, W, bp):
    """Project the step: expression weights at a bound whose gradient points outward are held."""
    lo, hi = fx.bounds
    N = bp.shape[0]
    be = bp[:, 6:]
    held = ((st.a_exp <= lo + 1e-12) & (be <= 0)) | ((st.a_exp >= hi - 1e-12) & (be >= 0))
    F = torch.cat([torch.ones(N, 6, dtype=fx.dtype), (~held).to(fx.dtype)], -1)
    U = U * F[:, :, None] * F[:, None, :] + torch.diag_embed(1 - F)
    return U, W * F[..., None], bp * F


def _schur_solve(fx: Fitter, U, W, V, bp, bq):
    """Solve the block system by eliminating the per-image blocks: (dp (N, kp), dq (S, k_id))."""
    kq = W.shape[-1]
    Lc, info = torch.linalg.cholesky_ex(U)
    if bool((info == 0).all()):   # Schur complement through the Cholesky factor of U
        Y = torch.linalg.solve_triangular(Lc, torch.cat([W, bp[..., None]], -1), upper=False)
        Yw, yb = Y[..., :kq], Y[..., kq:]
        Sred = V - fx.gram_sum(Yw)
        rhs = bq - fx.gram_sum(Yw, yb)[..., 0]
        dq = spd_solve(Sred, rhs)
        dp = torch.linalg.solve_triangular(Lc.transpose(1, 2), yb - Yw @ dq[fx.subj][..., None], upper=True)[..., 0]
    else:
        sol = torch.linalg.solve(U, torch.cat([W, bp[..., None]], -1))              # (N, kp, kq + 1)
        UiW, Uib = sol[..., :kq], sol[..., kq]
        Sred = V - fx.sum_subj(W.transpose(1, 2) @ UiW)
        rhs = bq - fx.sum_subj((W.transpose(1, 2) @ Uib[..., None])[..., 0])
        dq = torch.linalg.solve(Sred, rhs)
        dp = Uib - (UiW @ dq[fx.subj][..., None])[..., 0]
    return dp, dq


def _backtrack(fx: Fitter, st: State, dp, dq, E_old):
    """Per subject the best of the steps 1, 1/2, 1/4 along (dp, dq) (expressions clamped)."""
    cand, E_new = None, None
    for step in (1.0, 0.5, 0.25):
        a_exp = st.a_exp + step * dp[:, 6:]
        if fx.bounds is not None:
            a_exp = a_exp.clamp(*fx.bounds)
        c = State(st.a_id + step * dq, a_exp, skew_exp(step * dp[:, 1:4]) @ st.R,
                  st.f + step * dp[:, 0], st.t + step * dp[:, 4:6])
        Ec = fx.objective(c)
        if cand is None:
            cand, E_new = c, Ec
        else:
            b = Ec < E_new
            cand = fx.merge(b, c, cand)
            E_new = torch.where(b, Ec, E_new)
        if fx.bounds is None or bool((E_new < E_old).all()):
            break
    return cand, E_new


def joint_step(fx: Fitter, st: State, mu: torch.Tensor, E_old: torch.Tensor):
    """One Levenberg-Marquardt step on all parameters at once (Schur complement on alpha_id).

    Parameters
    ----------
    fx : Fitter
    st : State
        Current parameters.
    mu : tensor (S,)
        Damping per subject (relative to the diagonal).
    E_old : tensor (S,)
        E of ``st``.

    Returns
    -------
    (State, mu, E)
        The state with the step kept where it lowered E, the updated damping, and E.
    """
    U, W, V, bp, bq = _gauss_newton_system(fx, st)
    if fx.bounds is not None:
        U, W, bp = _hold_bounds(fx, st, U, W, bp)
    mu_img = mu[fx.subj][:, None]
    U = U + torch.diag_embed(mu_img * U.diagonal(dim1=1, dim2=2) + 1e-12)
    V = V + torch.diag_embed(mu[:, None] * V.diagonal(dim1=1, dim2=2) + 1e-12)
    dp, dq = _schur_solve(fx, U, W, V, bp, bq)
    cand, E_new = _backtrack(fx, st, dp, dq, E_old)
    ok = (E_new < E_old) & torch.isfinite(E_new)
    new = fx.merge(ok, cand, st)
    mu = torch.where(ok, mu / 3.0, mu * 4.0).clamp(1e-9, 1e6)
    return new, mu, torch.where(ok, E_new, E_old)


def refine(fx: Fitter, st: State, iters: int) -> tuple[State, list[np.ndarray], list[str]]:
    """The joint refinement after the alternation: at most ``iters`` Levenberg-Marquardt steps
    on all parameters of Eq. 7 at once (pose, ``alpha_exp`` per image, ``alpha_id`` per subject;
    our addition to the paper's alternation, ``fitting.joint_iters``).

    Parameters
    ----------
    fx : Fitter
        The batched problem (S subjects, their images and landmarks).
    st : State
        Where the alternation stopped.
    iters : int
        Step cap; it stops earlier once no subject can lower its ``E`` (damping above 1e6).

    Returns
    -------
    (State, list of ndarray (S,), list of str)
        The refined state, every subject's ``E`` (mm²) after every step, and the step names
        (``"joint"``).
    """
    history: list[np.ndarray] = []
    mu = torch.full((fx.S,), 1e-3, dtype=fx.dtype)
    E = fx.objective(st)
    for _ in range(iters):
        E_prev = E
        st, mu, E = joint_step(fx, st, mu, E)
        history.append(E.numpy())
        done = ((E_prev - E).abs() <= 1e-12 * E_prev.abs()) & (mu >= 1e6)
        if bool(done.all()):
            break
    return st, history, ["joint"] * len(history)
