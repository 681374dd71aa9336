"""The alternation of Eq. 7: pose -> expression -> identity, batched over images and subjects.

For images ``i = 1..M`` of one subject the fitter minimises (Eq. 7)::

    E = sum_i ||U_i - U^_i||^2 / s_i^2 + lambda_id ||alpha_id||^2 + lambda_exp sum_i ||alpha_exp_i||^2

:class:`Fitter` holds the problem (N images of S subjects, the model's landmark bases) and its
three steps, each a linear solve with the other two blocks fixed; :func:`alternate` is the loop
(paper Sec. 3.3.2: about 7 iterations). Every step keeps each subject's ``E`` from increasing,
and a subject that has converged keeps its state, so the batching changes results only by
float32 rounding (which an ill-posed fit, ``|alpha|`` of several SD, can amplify).

The normal equations are formed without the (2L, k) design matrices: with
``P^T P = I - e_z e_z^T``, ``A^T A = w^2 sum_de (R_2^T R_2)_de G_de`` with constant (k, k)
blocks ``G_de = sum_l B[:, l, d]^T B[:, l, e]`` of the model, and
``A^T b = w sum_l B_l^T (R_2^T b_l)`` ("lifting" the 2D residual to 3D), so their cost does not
grow with the landmarks.

With landmark marching (``contour: marching``) the 16 jaw rows differ per image: their bases are
gathered once per contour update (only for the images whose vertices moved) into coordinate-major
(N, 3, J, k) blocks, so that every jaw term is one batched matrix product over the images (for the
identity Gram, one product per subject over its images' stacked rows); the candidates of all lines
are evaluated for all images at once, and the landmarks and lifted jaw bases are memoised on the
state's tensors, which the steps often evaluate again unchanged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from ..config import FittingConfig
from ..shape import MorphableModel
from .checks import EXP_SOLVERS, torch_dtype
from .pose import flip, pose_closed_form, pose_gauss_newton, project_up
from .solvers import box_ridge, lsq_linear_ridge, spd_solve

logger = logging.getLogger(__name__)

__all__ = ["State", "Fitter", "alternate"]


@dataclass
class State:
    """The parameters of a fit, as tensors of the fitter's dtype."""

    a_id: torch.Tensor   # (S, k_id)
    a_exp: torch.Tensor  # (N, k_exp)
    R: torch.Tensor      # (N, 3, 3)
    f: torch.Tensor      # (N,)
    t: torch.Tensor      # (N, 2) camera-plane (v' up)


def _g4(a: np.ndarray, b: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """G4[d, e] = sum_l a[:, l, d]^T b[:, l, e], flattened (9, k_a k_b), from float64 bases."""
    return torch.as_tensor(np.einsum("kld,jle->dekj", a.astype(np.float64), b.astype(np.float64))
                           .reshape(9, a.shape[0] * b.shape[0]), dtype=dtype)


class Fitter:
    """Batched alternating fitter over N images of S subjects (all tensors of one dtype).

    Parameters
    ----------
    model : MorphableModel
    y : ndarray (N, L, 2)
        Landmarks in pixels (u right, v down), already checked.
    subj : ndarray (N,) int
        Subject index of every image, in ``[0, n_subj)``.
    n_subj : int
    options : FittingConfig
        ``lambda_id``, ``lambda_exp``, ``dtype``, ``exp_iters``, ``pose_refine``,
        ``active_set_iters`` are read here.
    exp_solver : {'torch', 'scipy'}
    """

    def __init__(self, model: MorphableModel, y: np.ndarray, subj: np.ndarray, n_subj: int,
                 options: FittingConfig, exp_solver: str = "torch"):
        if exp_solver not in EXP_SOLVERS:
            raise ValueError(f"exp_solver must be 'torch' or 'scipy', got {exp_solver!r}")
        dtype = torch_dtype(options.dtype)
        mU, iU, eU = model.landmark_bases()
        self.mean = torch.as_tensor(mU, dtype=dtype)
        self.mean_img = self.mean                      # (L, 3), or (N, L, 3) with per-image jaw vertices
        self.idb = torch.as_tensor(iU, dtype=dtype)   # (k_id, L, 3)
        self.exb = torch.as_tensor(eU, dtype=dtype)   # (k_exp, L, 3)
        self.Gi, self.Ge, self.Cei = _g4(iU, iU, dtype), _g4(eU, eU, dtype), _g4(eU, iU, dtype)
        self.y = flip(torch.as_tensor(y, dtype=dtype))
        self.subj = torch.as_tensor(subj, dtype=torch.long)
        self.S = n_subj
        self.lam_id, self.lam_exp = float(options.lambda_id), float(options.lambda_exp)
        self.bounds = model.exp_bounds
        self.dtype = dtype
        self.exp_iters, self.pose_refine, self.exp_solver = options.exp_iters, options.pose_refine, exp_solver
        self.as_iters = options.active_set_iters
        self.lines = None
        N = self.y.shape[0]
        self.one_per_subject = n_subj == N and bool((self.subj == torch.arange(N)).all())
        self.groups, self.contiguous_groups = None, False
        self._cache: dict = {}
        self._pos_version = 0
        self._init_groups()
        if getattr(options, "contour", "none") == "marching":
            self._init_contour(model, mU, iU, eU)

    # ------------------------------------------------------------ contour correspondences
    def _init_contour(self, model: MorphableModel, mU, iU, eU) -> None:
        """Landmark marching: the jaw landmarks get per-image vertices (``self.pos``, (N, J)
        positions on their candidate lines). The constant landmark bases keep the other
        landmarks (their jaw rows are zero), the jaw rows come from the per-image bases."""
        from ..shape.contour import contour_lines

        lines = contour_lines(model)
        dt = self.dtype
        self.lines = lines
        self.jaw = torch.as_tensor(lines.landmarks)
        keep = np.ones(mU.shape[0], bool)
        keep[lines.landmarks] = False
        iUc, eUc = iU * keep[None, :, None], eU * keep[None, :, None]
        self.mean = torch.as_tensor(mU * keep[:, None], dtype=dt)
        self.idb, self.exb = torch.as_tensor(iUc, dtype=dt), torch.as_tensor(eUc, dtype=dt)
        self.Gi, self.Ge, self.Cei = _g4(iUc, iUc, dt), _g4(eUc, eUc, dt), _g4(eUc, iUc, dt)
        V = lines.vertices
        J, K = V.shape
        self.c_mean = torch.as_tensor(model.mean[V], dtype=dt)                          # (J, K, 3)
        # candidate bases, one row per (line, candidate), coordinate-major: (J K, 3, k)
        self.c_id = torch.as_tensor(np.ascontiguousarray(np.moveaxis(model.id_basis[:, V], 0, -1).reshape(J * K, 3, -1)), dtype=dt)
        self.c_exp = torch.as_tensor(np.ascontiguousarray(np.moveaxis(model.exp_basis[:, V], 0, -1).reshape(J * K, 3, -1)), dtype=dt)
        self.c_verts = torch.as_tensor(V)
        N = self.y.shape[0]
        self.pos = torch.as_tensor(lines.fixed)[None].expand(N, -1).clone()
        self._gather()

    def _init_groups(self) -> None:
        """Images grouped by subject for the per-subject Gram sums (:meth:`gram_sum`):
        ``self.groups`` (S, M) image indices padded with N (a zero row), or None when every
        subject has one image in order (the single-image mode)."""
        N = self.y.shape[0]
        if self.one_per_subject:
            self.groups = None
            return
        counts = torch.bincount(self.subj, minlength=self.S)
        order = torch.argsort(self.subj, stable=True)
        M = int(counts.max())
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.arange(N) - starts[self.subj[order]]
        groups = torch.full((self.S, M), N, dtype=torch.long)
        groups[self.subj[order], rank] = order
        self.groups = groups
        self.contiguous_groups = N == self.S * M and bool((groups.reshape(-1) == torch.arange(N)).all())

    def _gather(self, rows: torch.Tensor | None = None) -> None:
        """The per-image jaw bases of the current positions: ``jm`` (N, J, 3) and, coordinate-
        major, ``jid`` (N, 3, J, k_id), ``jexp`` (N, 3, J, k_exp); only the images ``rows``
        (indices) when given (the others' positions did not change)."""
        J, K = self.c_mean.shape[:2]
        pos = self.pos if rows is None else self.pos[rows]
        n = pos.shape[0]
        j = torch.arange(J)[None]
        flat = (j * K + pos).reshape(-1)
        jm = self.c_mean[j, pos]
        jid = self.c_id.index_select(0, flat).view(n, J, 3, -1).transpose(1, 2)
        jexp = self.c_exp.index_select(0, flat).view(n, J, 3, -1).transpose(1, 2)
        if rows is None:
            self.jm, self.jid, self.jexp = jm, jid.contiguous(), jexp.contiguous()
            self.mean_img = self.mean.expand(n, *self.mean.shape).clone()
        else:
            self.jm[rows], self.jid[rows], self.jexp[rows] = jm, jid, jexp
            self.mean_img = self.mean_img.clone()     # X of earlier positions may be views of it
        self.mean_img[:, self.jaw] = self.jm
        self._pos_version += 1

    def landmark_vertices(self, model: MorphableModel) -> np.ndarray:
        """The vertex of every landmark per image (N, L): ``model.landmarks``, jaw moved when marching."""
        out = np.repeat(np.asarray(model.landmarks)[None], self.y.shape[0], 0).astype(np.int64)
        if self.lines is not None:
            j = torch.arange(self.pos.shape[1])[None]
            out[:, self.lines.landmarks] = self.c_verts[j, self.pos].numpy()
        return out

    def update_contour(self, st: State, images: torch.Tensor | None = None) -> None:
        """Re-assign the jaw landmarks of ``images`` (N,) bool (all when None) to contour vertices
        for the current pose and shape (landmark marching, :func:`~disentangled_face.shape.contour.marching_choice`):
        the outermost candidate of its line on the side facing away, the nearest to the
        observed landmark on the other. A no-op without ``contour: marching``."""
        if self.lines is None:
            return
        from ..shape.contour import marching_choice

        N = self.y.shape[0]
        J, K = self.c_mean.shape[:2]
        # every candidate of every line: mean + identity part (per subject, then per image) + expression part
        P_id = (st.a_id @ self.c_id.view(J * K * 3, -1).T)[self.subj]                # (N, J K 3)
        P = self.c_mean.reshape(1, -1) + torch.addmm(P_id, st.a_exp, self.c_exp.view(J * K * 3, -1).T)
        uv = project_up(P.view(N, J * K, 3), st.R, st.f, st.t).view(N, J, K, 2)
        new = marching_choice(uv, st.R, self.y[:, self.jaw], self.lines, v_down=False)
        new = new if images is None else torch.where(images[:, None], new, self.pos)
        rows = (new != self.pos).any(1).nonzero()[:, 0]
        self.pos = new
        if len(rows):                        # re-gather the images whose vertices moved
            self._gather(rows)

    def _basis(self, which: str):
        """(constant landmark basis (k, L, 3), per-image jaw basis (N, 3, J, k) or None)."""
        if which == "id":
            return self.idb, (self.jid if self.lines is not None else None)
        return self.exb, (self.jexp if self.lines is not None else None)

    def contract(self, v: torch.Tensor, which: str) -> torch.Tensor:
        """``sum_l B_n[:, l, :] . v[n, l, :, ...]``: (N, L, 3, ...) -> (N, k, ...) with each
        image's landmark basis ``B_n`` of block ``which`` ('id' or 'exp')."""
        basis, jb = self._basis(which)
        out = torch.einsum("nld...,kld->nk...", v, basis)
        if jb is not None:       # the jaw rows: one batched product per image, (r, 3J) @ (3J, k)
            N, _, J, k = jb.shape
            vj = v[:, self.jaw].movedim(2, 1).reshape(N, 3 * J, -1)                   # (N, 3J, r)
            out = out + (vj.transpose(1, 2) @ jb.view(N, 3 * J, k)).transpose(1, 2).reshape(out.shape)
        return out

    def _lifted_jaw(self, st: State, jb: torch.Tensor) -> torch.Tensor:
        """The jaw rows of ``w P R B`` per image, (N, 2J, k): one (2, 3) @ (3, J k) product per image."""
        N, _, J, k = jb.shape
        w = st.f / self.s
        return (w[:, None, None] * (st.R[:, :2, :] @ jb.view(N, 3, J * k))).view(N, 2 * J, k)

    def gram(self, st: State, a: str, b: str, per_subject: bool = False) -> torch.Tensor:
        """``sum_l (w R_2 B_a,l)^T (w R_2 B_b,l)`` per image (N, k_a, k_b), or summed per subject."""
        G4 = {("id", "id"): self.Gi, ("exp", "exp"): self.Ge, ("exp", "id"): self.Cei}[(a, b)]
        Q = self.Q(st)
        ka, kb = self._basis(a)[0].shape[0], self._basis(b)[0].shape[0]
        if self.lines is None:
            return self.combine(self.sum_subj(Q) if per_subject else Q, G4, ka, kb)
        Ma = self._memo(f"M{a}", (st.R, st.f), lambda: self._lifted_jaw(st, self._basis(a)[1]))
        Mb = Ma if a == b else self._memo(f"M{b}", (st.R, st.f), lambda: self._lifted_jaw(st, self._basis(b)[1]))
        if per_subject:          # all jaw rows of a subject's images in one product
            return self.combine(self.sum_subj(Q), G4, ka, kb) + self.gram_sum(Ma, None if a == b else Mb)
        return torch.baddbmm(self.combine(Q, G4, ka, kb), Ma.transpose(1, 2), Mb)

    def gram_sum(self, A: torch.Tensor, B: torch.Tensor | None = None) -> torch.Tensor:
        """``sum_{i in subject} A_i^T B_i`` (S, k_a, k_b) of per-image blocks A (N, r, k_a) and
        B (N, r, k_b) (B = A when None): one product per subject over its images' stacked rows
        (``self.groups``), not N products summed."""
        if self.groups is None:
            return A.transpose(1, 2) @ (A if B is None else B)
        S = self.groups.shape[0]
        def stack(M):
            if self.contiguous_groups:          # images already in subject order, M each: a view
                return M.reshape(S, -1, M.shape[-1])
            return torch.cat([M, M.new_zeros(1, *M.shape[1:])])[self.groups].view(S, -1, M.shape[-1])
        Ga = stack(A)
        return Ga.transpose(1, 2) @ (Ga if B is None else stack(B))

    # ------------------------------------------------------------ shapes and the objective
    def _memo(self, name: str, keys: tuple, fn):
        """``fn()`` cached on the identity and version of the tensors ``keys`` and the contour
        positions: X, its parts and the lifted jaw bases are pure functions of these, and a step
        often evaluates them again on unchanged codes or poses."""
        key = tuple((id(k), k._version) for k in keys) + (self._pos_version,)
        hit = self._cache.get(name)
        if hit is not None and hit[0] == key:
            return hit[2]
        val = fn()
        self._cache[name] = (key, keys, val)      # the tensors are held, so their ids stay unique
        return val

    def id_part(self, a_id):
        """``A_id alpha_id`` at every image's landmarks (N, L, 3), mm (per subject, then per image)."""
        return self._memo("id", (a_id,), lambda: self._part(self.idb, self.c_id if self.lines is not None else None,
                                                            lambda: self.jid, a_id, per_subject=True))

    def exp_part(self, a_exp):
        """``A_exp alpha_exp`` at every image's landmarks (N, L, 3), mm."""
        return self._memo("exp", (a_exp,), lambda: self._part(self.exb, self.c_exp if self.lines is not None else None,
                                                              lambda: self.jexp, a_exp, per_subject=False))

    def _part(self, basis, cand, jaw_basis, a, per_subject: bool):
        """The landmarks (N, L, 3) of codes ``a`` ((S, k) per subject or (N, k) per image) on
        ``basis`` (k, L, 3), the jaw rows at the current contour vertices (from the candidate
        bases ``cand`` (J K, 3, k) per subject when subjects have several images each, else
        from the per-image jaw bases ``jaw_basis()`` (N, 3, J, k))."""
        out = torch.einsum("nk,kld->nld", a, basis)
        if per_subject and not self.one_per_subject:
            out = out[self.subj]
        if self.lines is None:
            return out
        J, K = self.c_mean.shape[:2]
        if per_subject and 4 * self.S <= self.y.shape[0]:
            # every candidate of every line per subject (S, J K, 3), then each image's own
            P = (a @ cand.view(J * K * 3, -1).T).view(-1, J * K, 3)
            jaw = P[self.subj[:, None], torch.arange(J)[None] * K + self.pos]
        else:
            jaw = self._jaw_part(jaw_basis(), a[self.subj] if per_subject and not self.one_per_subject else a)
        out[:, self.jaw] = jaw
        return out

    def X(self, st: State, use_id: bool = True, use_exp: bool = True):
        """Model landmarks (N, L, 3) mm of the state (without the identity or the expression
        part when ``use_id`` / ``use_exp`` is False); the jaw at its current contour vertices."""
        def build():
            X = self.mean_img
            if use_id:
                X = X + self.id_part(st.a_id)
            if use_exp:
                X = X + self.exp_part(st.a_exp)
            return X.expand(self.y.shape[0], *X.shape[-2:])
        return self._memo(f"X{int(use_id)}{int(use_exp)}", (st.a_id, st.a_exp), build)

    @staticmethod
    def _jaw_part(jb: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """``sum_k a[n, k] jb[n, :, j, k]``: the jaw points (N, J, 3) of codes a (N, k)."""
        N, _, J, k = jb.shape
        return (jb.view(N, 3 * J, k) @ a[:, :, None]).view(N, 3, J).transpose(1, 2)

    def data_term(self, st: State, X=None):
        X = self.X(st) if X is None else X
        r = self.y - project_up(X, st.R, st.f, st.t)
        return (r ** 2).sum((1, 2)) / self.s ** 2

    def objective(self, st: State) -> torch.Tensor:
        """Per-subject E of Eq. 7, shape (S,)."""
        per_img = self.data_term(st) + self.lam_exp * (st.a_exp ** 2).sum(-1)
        E = torch.zeros(self.S, dtype=self.dtype).index_add_(0, self.subj, per_img)
        return E + self.lam_id * (st.a_id ** 2).sum(-1)

    def sum_subj(self, x):
        """Sum per-image rows (N, ...) into per-subject rows (S, ...)."""
        if self.one_per_subject:
            return x
        return torch.zeros(self.S, *x.shape[1:], dtype=self.dtype).index_add_(0, self.subj, x)

    def rmse_px(self, st: State) -> torch.Tensor:
        """Landmark reprojection RMSE per image (N,), pixels."""
        return ((self.y - project_up(self.X(st), st.R, st.f, st.t)) ** 2).sum(-1).mean(-1).sqrt()

    def start(self) -> State:
        """The starting point: alpha_id = alpha_exp = 0, identity camera."""
        N = self.y.shape[0]
        return State(torch.zeros(self.S, self.idb.shape[0], dtype=self.dtype),
                     torch.zeros(N, self.exb.shape[0], dtype=self.dtype),
                     torch.eye(3, dtype=self.dtype).expand(N, 3, 3).clone(),
                     torch.ones(N, dtype=self.dtype), torch.zeros(N, 2, dtype=self.dtype))

    # ------------------------------------------------------------ normal equations
    def lifted(self, st: State, X):
        """w (N,), residual lifted to 3D c (N, L, 3), scaled by 1/s, for the model points X."""
        b = (self.y - project_up(X, st.R, st.f, st.t)) / self.s[:, None, None]
        return st.f / self.s, b @ st.R[:, :2, :]

    def Q(self, st: State) -> torch.Tensor:
        """w^2 R_2^T R_2 per image, flattened (N, 9): the weights of the constant G4 blocks."""
        w = st.f / self.s
        R2 = st.R[:, :2, :]
        return ((w * w)[:, None, None] * (R2.transpose(1, 2) @ R2)).reshape(-1, 9)

    @staticmethod
    def combine(Q: torch.Tensor, G4: torch.Tensor, k1: int, k2: int) -> torch.Tensor:
        """``sum_de Q_de G4[d, e]`` per row of Q: (rows, k1, k2)."""
        return (Q @ G4).reshape(-1, k1, k2)

    def normal(self, st: State, which: str, fixed_X, per_subject: bool = False):
        """H = A^T A (N or S, k, k) and g = A^T b (N, k) of one linear block ('id' or 'exp',
        its code excluded from ``fixed_X``)."""
        w, c = self.lifted(st, fixed_X)
        g = w[:, None] * self.contract(c, which)
        return self.gram(st, which, which, per_subject), g

    def design(self, which: str, st: State, fixed_X):
        """Explicit A (N, 2L, k) and b (N, 2L) of a linear block (reference path only)."""
        basis, jb = self._basis(which)
        N = self.y.shape[0]
        B = basis[None].expand(N, *basis.shape)
        if jb is not None:
            B = B.clone()
            B[:, :, self.jaw] = jb.permute(0, 3, 2, 1)
        w = (st.f / self.s)[:, None, None, None]
        A = w * torch.einsum("nkld,ned->nlek", B, st.R[:, :2, :])
        b = (self.y - project_up(fixed_X, st.R, st.f, st.t)) / self.s[:, None, None]
        N, L = b.shape[:2]
        return A.reshape(N, 2 * L, -1), b.reshape(N, 2 * L)

    # ------------------------------------------------------------ the three steps
    def pose_step(self, st: State, first: bool) -> State:
        """Per image: closed-form pose + Gauss-Newton, kept where it lowers the data term.

        The first call also fixes ``s`` (the scale of the first pose estimate, pixels per mm)
        that makes the data term of Eq. 7 read in mm^2.
        """
        X = self.X(st)
        f, R, t = pose_closed_form(X, self.y)
        f, R, t = pose_gauss_newton(X, self.y, f, R, t, self.pose_refine)
        if first:
            self.s = f.clone()
            return State(st.a_id, st.a_exp, R, f, t)
        old = self.data_term(st, X)
        new = self.data_term(State(st.a_id, st.a_exp, R, f, t), X)
        ok = new <= old
        return State(st.a_id, st.a_exp, torch.where(ok[:, None, None], R, st.R),
                     torch.where(ok, f, st.f), torch.where(ok[:, None], t, st.t))

    def exp_step(self, st: State) -> State:
        """Per image: ridge least squares of alpha_exp, box-constrained to the blendshape range."""
        fixed = self.X(st, use_exp=False)
        H, g = self.normal(st, "exp", fixed)
        H = H + self.lam_exp * torch.eye(H.shape[-1], dtype=self.dtype)
        if self.bounds is None:
            a = torch.linalg.solve(H, g)
        elif self.exp_solver == "scipy":
            A, b = self.design("exp", st, fixed)
            a = torch.as_tensor(lsq_linear_ridge(A.numpy(), b.numpy(), self.lam_exp, self.bounds), dtype=self.dtype)
        else:
            a = box_ridge(H, g, st.a_exp, self.bounds[0], self.bounds[1], self.exp_iters, self.as_iters)
        return State(st.a_id, a, st.R, st.f, st.t)

    def id_step(self, st: State) -> State:
        """Per subject: ridge least squares of alpha_id jointly over all of its images."""
        H, g = self.normal(st, "id", self.X(st, use_id=False), per_subject=True)
        k = H.shape[-1]
        H = H + self.lam_id * torch.eye(k, dtype=self.dtype)
        if self.lam_id == 0:  # keep solvable for subjects with too few constraints
            H = H + 1e-10 * H.diagonal(dim1=1, dim2=2).mean(-1)[:, None, None] * torch.eye(k, dtype=self.dtype)
        return State(spd_solve(H, self.sum_subj(g)), st.a_exp, st.R, st.f, st.t)

    def merge(self, keep_new: torch.Tensor, new: State, old: State) -> State:
        """Per subject: ``new`` where ``keep_new`` (S,) else ``old``."""
        k, ki = keep_new, keep_new[self.subj]
        return State(torch.where(k[:, None], new.a_id, old.a_id), torch.where(ki[:, None], new.a_exp, old.a_exp),
                     torch.where(ki[:, None, None], new.R, old.R), torch.where(ki, new.f, old.f),
                     torch.where(ki[:, None], new.t, old.t))


def alternate(fitter: Fitter, max_iter: int, tol: float, verbose: bool = False, snapshots: list | None = None):
    """The alternation of Eq. 7 from ``alpha_id = alpha_exp = 0``: pose -> expression -> identity.

    A subject stops when the relative change of its E over one iteration falls below ``tol``
    (it then keeps its state while the others go on), or after ``max_iter`` iterations.

    With ``contour: marching`` the jaw landmarks of every still-active image are re-assigned to
    contour vertices after each pose step (:meth:`Fitter.update_contour`); the entry of
    ``history`` after a pose step is E with the new correspondences, and since these change
    the objective, E need not decrease from one iteration to the next.

    ``snapshots``, when a list, receives the :class:`State` after "iteration 0" (the first pose
    step, on the mean face) and after every full iteration: ``snapshots[k]`` is the state after
    iteration ``k`` (for teaching: chapter 3 draws the fitted landmarks of iterations 0, 1, 3, 7).

    Returns
    -------
    state : State
    history : list of ndarray (S,)
        Every subject's E after every step.
    steps : list of str
        ``"pose"``, ``"expression"``, ``"identity"`` for each entry of ``history``.
    n_iter : int
        Iterations run (the slowest subject's).
    converged : bool
        Whether every subject stopped before ``max_iter``.
    subject_iters : ndarray (S,) int
        Iterations each subject ran.
    """
    st, history, steps = fitter.start(), [], []
    n_iter, converged, prev = 0, False, None
    active = torch.ones(fitter.S, dtype=torch.bool)      # subjects still iterating
    subject_iters = np.zeros(fitter.S, np.int64)
    for it in range(max_iter):
        old, first = st, it == 0
        for name, step in (("pose", lambda s: fitter.pose_step(s, first)), ("expression", fitter.exp_step),
                           ("identity", fitter.id_step)):
            new = step(st)
            st = new if first else fitter.merge(active, new, old)   # a converged subject keeps its state
            if name == "pose":   # contour: marching re-assigns the jaw landmarks for the new pose
                fitter.update_contour(st, None if first else active[fitter.subj])
            history.append(fitter.objective(st).numpy()); steps.append(name)
            if snapshots is not None and first and name == "pose":
                snapshots.append(st)
        if snapshots is not None:
            snapshots.append(st)
        E = history[-1]
        prev = history[-3] if first else prev                       # E after the first pose step
        n_iter = it + 1
        subject_iters = subject_iters + active.numpy()
        rel = np.abs(prev - E) / np.maximum(np.abs(prev), 1e-300)
        if verbose:
            logger.info("iteration %d: E = %.6g (max relative change %.3g)", n_iter, E.sum(), rel.max())
        if not first:
            active &= torch.as_tensor(rel >= tol)
        if not bool(active.any()):
            converged = True
            break
        prev = E
    return st, history, steps, n_iter, converged, subject_iters
