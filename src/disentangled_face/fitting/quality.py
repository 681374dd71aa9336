"""Fit quality, never silence: landmark-order checks before a fit, a quality report after it.

Real landmarks bring failures the synthetic ones never show: a set in another order than
iBUG's 68 (left and right swapped, two points exchanged, another scheme), a detector that
landed on something else, a fit that needs extreme identity codes. The fitter solves whatever
it is given, so these checks say so:

* **before the fit** (:func:`check_landmark_order`, 68-point models only), per image, the mean
  face is posed onto the landmarks (affine least squares, nearest scaled rotation) under the
  given order and under a few alternatives. A *decisively* wrong order is bad input and raises
  ``ValueError`` naming what was expected: a set whose pose would show the face from behind
  while iBUG's mirror permutation faces the camera (a mirrored order, or u reflected); two
  landmarks whose exchange halves the error (e.g. the outer eye corners 36 and 45); an error
  no face explains (another scheme). Correct landmarks at any yaw up to 90 degrees pass.
* **after the fit** (:func:`assess`), a :class:`FitQuality` report: per-landmark residuals,
  the reprojection RMSE in inter-ocular units (the mean face's outer-eye-corner distance,
  36-45, times the fitted scale: pose-invariant, unlike the 2D distance), the largest ``|alpha_id|`` in
  standard deviations, and convergence by the paper's rule (relative change of E over an
  iteration below ``tol`` before ``max_iter``). Soft signs (a large residual, an extreme code)
  are warnings with the numbers; over many images they are counted and summarised in one
  warning (:meth:`FitQuality.warn`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..data.landmarks import IBUG_68_ORDER, IBUG_MIRROR, LandmarkOrderError
from ..shape import MorphableModel, camera
from .pose import nearest_scaled_rotation_t

__all__ = ["WARN_REPROJECTION_IOD", "WARN_LANDMARK_IOD", "WARN_ALPHA_SD", "FitQuality",
           "check_landmark_order", "order_diagnostics", "assess"]

#: Soft-sign thresholds of the report: reprojection RMSE and the largest single residual
#: (inter-ocular units), ``|alpha_id|`` (SD).
WARN_REPROJECTION_IOD = 0.1
WARN_LANDMARK_IOD = 0.35
WARN_ALPHA_SD = 5.0

# decisive-order rules (see check_landmark_order)
_BACK = -0.25          # the face's forward axis in camera z below this: seen from behind
_SWAP_RATIO = 0.5      # an exchange of two labels must at least halve the RMSE ...
_SWAP_GAIN = 0.03      # ... and lower it by this many inter-ocular distances
_SCHEME_IOD = 0.35     # mean-face RMSE no face explains (another scheme)


# ----------------------------------------------------------------------------- mean-face pose
def _pose(X: np.ndarray, y: np.ndarray):
    """Weak-perspective pose of 3D points X (L, 3) onto y (N, L, 2) (v down), least squares.

    Returns the facing (N,) (z of the face's forward axis in camera coordinates), the
    inter-ocular distance in pixels (N,) (or the landmarks' RMS spread when L != 68) and the
    per-landmark residual lengths (N, L), pixels.
    """
    yu = np.stack([y[..., 0], -y[..., 1]], -1)                              # v up
    Xc = X - X.mean(0)
    yc = yu - yu.mean(1, keepdims=True)
    M = np.einsum("nld,le->nde", yc, Xc) @ np.linalg.inv(Xc.T @ Xc)       # (N, 2, 3) affine rows
    f, R = (a.numpy() for a in nearest_scaled_rotation_t(torch.as_tensor(M)))   # the fitter's pose step
    res = yc - f[:, None, None] * np.einsum("nde,le->nld", R[:, :2], Xc)
    scale = np.linalg.norm(X[36] - X[45]) if X.shape[0] == 68 else np.sqrt((Xc ** 2).sum(-1).mean())
    return R[:, 2, 2], f * scale, np.linalg.norm(res, axis=-1)  # z of the forward axis R[2]


def _rmse(r: np.ndarray) -> np.ndarray:
    return np.sqrt((r ** 2).mean(-1))


def order_diagnostics(model: MorphableModel, landmarks2d: np.ndarray) -> dict[str, np.ndarray]:
    """The numbers :func:`check_landmark_order` decides on, per image (68-point models).

    Parameters
    ----------
    model : MorphableModel
        With 68 landmarks (iBUG order).
    landmarks2d : ndarray (N, 68, 2), pixels (u right, v down)

    Returns
    -------
    dict of ndarray (N,)
        ``facing`` / ``facing_mirrored``: z of the mean face's forward axis under the given order
        / iBUG's mirror permutation (1 frontal, 0 profile, < 0 seen from behind);
        ``rmse_iod`` / ``rmse_mirrored_iod``: the mean face's landmark RMSE in inter-ocular
        units; ``swap_i``, ``swap_j``: the best exchange of two labels among the worst-fitting
        points (-1 if none), ``rmse_swapped_iod`` its RMSE.
    """
    X = np.asarray(model.landmarks_of(model.mean), np.float64)
    y = np.asarray(landmarks2d, np.float64)
    face, iod, r = _pose(X, y)
    face_m, iod_m, r_m = _pose(X, y[:, IBUG_MIRROR])
    iod = np.maximum(iod, 1e-12)
    e0 = _rmse(r) / iod
    N = y.shape[0]
    si, sj, es = np.full(N, -1), np.full(N, -1), e0.copy()
    cand = np.flatnonzero(e0 > 2 * _SWAP_GAIN)       # only where an exchange could matter
    if cand.size:
        top = np.argsort(-r[cand], axis=1)[:, :4]
        for a in range(4):
            for b in range(a + 1, 5):
                # pairs among the 4 worst points, and each worst point with its mirror partner
                i = top[:, a]
                j = top[:, b] if b < 4 else IBUG_MIRROR[i]
                if b == 4 and a > 0:
                    i, j = top[:, a], IBUG_MIRROR[top[:, a]]
                yy = y[cand].copy()
                rows = np.arange(cand.size)
                yy[rows, i], yy[rows, j] = y[cand][rows, j], y[cand][rows, i]
                _, iod_s, r_s = _pose(X, yy)
                e = _rmse(r_s) / np.maximum(iod_s, 1e-12)
                better = (e < es[cand]) & (i != j)
                es[cand] = np.where(better, e, es[cand])
                si[cand] = np.where(better, i, si[cand])
                sj[cand] = np.where(better, j, sj[cand])
    return dict(facing=face, facing_mirrored=face_m, rmse_iod=e0, rmse_mirrored_iod=_rmse(r_m) / np.maximum(iod_m, 1e-12),
                swap_i=si, swap_j=sj, rmse_swapped_iod=es)


def check_landmark_order(model: MorphableModel, landmarks2d: np.ndarray, name: str = "landmarks2d") -> None:
    """Raise when the landmarks are decisively not in iBUG 68-point order (68-point models only).

    Per image (see :func:`order_diagnostics`), with the mean face posed onto the points:

    * **mirrored**: the given order shows the face from behind (forward axis z < -0.25) and
      iBUG's mirror permutation faces the camera (> 0.25): left and right are swapped (a
      mirrored order, or u coordinates reflected);
    * **two points exchanged**: exchanging two labels at least halves the RMSE and lowers it by
      more than 0.03 inter-ocular distances (e.g. outer eye corners 36 and 45 swapped);
    * **another scheme**: the RMSE exceeds 0.35 inter-ocular distances (no face explains it).

    Correct landmarks at yaws up to 90 degrees pass (the face's forward axis stays >= 0).

    Parameters
    ----------
    model : MorphableModel
    landmarks2d : ndarray (N, L, 2), pixels (u right, v down), already checked
    name : str
        The argument's name in messages.

    Raises
    ------
    LandmarkOrderError (a ValueError)
        Naming the images, the numbers and the expected order.
    """
    if model.landmarks.shape[0] != 68:
        return
    d = order_diagnostics(model, landmarks2d)
    mirrored = (d["facing"] < _BACK) & (d["facing_mirrored"] > -_BACK)
    swapped = ((d["swap_i"] >= 0) & (d["rmse_swapped_iod"] <= _SWAP_RATIO * d["rmse_iod"])
               & (d["rmse_iod"] - d["rmse_swapped_iod"] > _SWAP_GAIN) & ~mirrored)
    scheme = (d["rmse_iod"] > _SCHEME_IOD) & ~mirrored & ~swapped
    if mirrored.any():
        k = np.flatnonzero(mirrored)
        i = k[0]
        raise LandmarkOrderError(
            f"{name}: the landmarks of {k.size} image(s) {k[:10].tolist()} are mirrored (left and right swapped): "
            f"in the given order the face would be seen from behind (forward axis {d['facing'][i]:+.2f}, image {i}), "
            f"with iBUG's mirror permutation it faces the camera ({d['facing_mirrored'][i]:+.2f}). Expected the "
            f"{IBUG_68_ORDER}; relabel with points[fitting.quality.IBUG_MIRROR] if your scheme is mirrored, or "
            f"check that u runs to the right")
    if swapped.any():
        k = np.flatnonzero(swapped)
        i = k[0]
        a, b = sorted((int(d["swap_i"][i]), int(d["swap_j"][i])))
        raise LandmarkOrderError(
            f"{name}: landmarks {a} and {b} look exchanged in {k.size} image(s) {k[:10].tolist()}: the mean face "
            f"fits image {i} with an RMSE of {d['rmse_iod'][i]:.3f} inter-ocular distances as given and "
            f"{d['rmse_swapped_iod'][i]:.3f} with {a} and {b} exchanged. Expected the {IBUG_68_ORDER}")
    if scheme.any():
        k = np.flatnonzero(scheme)
        i = k[0]
        raise LandmarkOrderError(
            f"{name}: {k.size} image(s) {k[:10].tolist()} do not look like 68 landmarks in iBUG order: the mean "
            f"face fits image {i} with an RMSE of {d['rmse_iod'][i]:.2f} inter-ocular distances (a correct set: "
            f"under {_SCHEME_IOD}). Expected the {IBUG_68_ORDER}")


# ----------------------------------------------------------------------------- the report
@dataclass
class FitQuality:
    """How well a fit explains its landmarks (M images of S subjects).

    Attributes
    ----------
    residuals_px : ndarray (M, L)
        Per-landmark reprojection residual length, pixels.
    interocular_px : ndarray (M,)
        The mean face's outer-eye-corner (iBUG 36-45) distance in 3D (mm) times the fitted
        scale ``f`` (pixels per mm): pixels, independent of the pose and of a distorted fit (for
        models without 68 landmarks, the mean face's landmark RMS spread instead).
    reprojection_iod : ndarray (M,)
        Landmark reprojection RMSE divided by ``interocular_px`` (the fitter's ``rmse_px`` in
        inter-ocular units).
    max_residual_iod : ndarray (M,)
        The largest per-landmark residual, inter-ocular units.
    max_abs_alpha_id : ndarray (S,)
        Largest ``|alpha_id|`` per subject, standard deviations (the prior is N(0, I)).
    converged : ndarray (S,) bool
        Whether each subject converged by the paper's rule: the relative change of E over one
        alternation iteration fell below ``tol`` before ``max_iter`` iterations.
    n_iter : ndarray (S,) int
        Alternation iterations each subject ran.
    order_checked : bool
        Whether the landmark order was checked against iBUG's (68-point models, unless the fit
        was called with ``check_order=False``).
    warn_reprojection_iod, warn_landmark_iod, warn_alpha_sd : float
        The soft-sign thresholds used (reprojection RMSE and largest single residual in
        inter-ocular units, ``|alpha_id|`` in SD).
    """

    residuals_px: np.ndarray
    interocular_px: np.ndarray
    reprojection_iod: np.ndarray
    max_residual_iod: np.ndarray
    max_abs_alpha_id: np.ndarray
    converged: np.ndarray
    n_iter: np.ndarray
    order_checked: bool = True
    warn_reprojection_iod: float = WARN_REPROJECTION_IOD
    warn_landmark_iod: float = WARN_LANDMARK_IOD
    warn_alpha_sd: float = WARN_ALPHA_SD
    label: np.ndarray | None = field(default=None, repr=False)

    @property
    def large_residual(self) -> np.ndarray:
        """Images (indices, in the fit's order) whose reprojection RMSE or largest single
        residual exceeds its threshold."""
        return np.flatnonzero((self.reprojection_iod > self.warn_reprojection_iod)
                              | (self.max_residual_iod > self.warn_landmark_iod))

    @property
    def extreme_alpha(self) -> np.ndarray:
        """Subjects (indices) whose largest ``|alpha_id|`` exceeds the threshold."""
        return np.flatnonzero(self.max_abs_alpha_id > self.warn_alpha_sd)

    @property
    def ok(self) -> bool:
        """No soft sign: every residual and code within the thresholds."""
        return self.large_residual.size == 0 and self.extreme_alpha.size == 0

    def messages(self) -> list[str]:
        """The soft signs as sentences with their numbers (empty when :attr:`ok`)."""
        out = []
        big, ext = self.large_residual, self.extreme_alpha
        M, S = len(self.reprojection_iod), len(self.max_abs_alpha_id)
        if big.size:
            w = int(big[np.argmax(self.reprojection_iod[big])])
            w = int(big[np.argmax(self.max_residual_iod[big])]) if self.reprojection_iod[w] <= \
                self.warn_reprojection_iod else w
            worst_lm = int(np.argmax(self.residuals_px[w]))
            out.append(f"{big.size} of {M} image(s) {big[:10].tolist()} have a landmark reprojection RMSE above "
                       f"{self.warn_reprojection_iod:g} or a single residual above {self.warn_landmark_iod:g} "
                       f"inter-ocular distances (worst: image {w}, RMSE {self.reprojection_iod[w]:.3f} = "
                       f"{self.reprojection_iod[w] * self.interocular_px[w]:.1f} px, largest at landmark {worst_lm}: "
                       f"{self.max_residual_iod[w]:.3f} = {self.residuals_px[w, worst_lm]:.1f} px); "
                       f"check the detections and their order")
        if ext.size:
            w = int(ext[np.argmax(self.max_abs_alpha_id[ext])])
            out.append(f"{ext.size} of {S} subject(s) {ext[:10].tolist()} need identity codes beyond "
                       f"{self.warn_alpha_sd:g} standard deviations (largest |alpha_id| {self.max_abs_alpha_id[w]:.2f}, "
                       f"subject {w}); the shape is implausible under the model's prior")
        return out

    def summary(self) -> str:
        """One paragraph: the numbers, then any soft signs."""
        r = self.reprojection_iod
        conv = int(self.converged.sum())
        head = (f"fit quality: {len(r)} image(s), reprojection RMSE {np.median(r):.3f} inter-ocular distances "
                f"(median; max {r.max():.3f}; largest single residual {self.max_residual_iod.max():.3f}), largest |alpha_id| {self.max_abs_alpha_id.max():.2f} SD, "
                f"{conv} of {len(self.converged)} subject(s) converged by the paper's rule"
                f"{'' if self.order_checked else ' (landmark order not checked)'}")
        return "; ".join([head] + self.messages())

    def warn(self, stacklevel: int = 2) -> None:
        """Issue one ``UserWarning`` summarising the soft signs (nothing when :attr:`ok`)."""
        msgs = self.messages()
        if msgs:
            warnings.warn("fit quality: " + "; ".join(msgs), UserWarning, stacklevel=stacklevel + 1)


def _converged(hist: np.ndarray, iters: np.ndarray, tol: float) -> np.ndarray:
    """The paper's rule per subject from the alternation's history (S, n_steps): the relative
    change of E over its last iteration below ``tol`` (never on the first iteration)."""
    S = hist.shape[0]
    out = np.zeros(S, bool)
    for s in range(S):
        n = int(iters[s])
        if n < 2 or 3 * n > hist.shape[1]:
            continue
        E, prev = hist[s, 3 * n - 1], hist[s, 3 * (n - 1) - 1]
        out[s] = abs(prev - E) / max(abs(prev), 1e-300) < tol
    return out


def assess(model: MorphableModel, landmarks2d: np.ndarray, subj: np.ndarray, alpha_id: np.ndarray,
           alpha_exp: np.ndarray, R: np.ndarray, f: np.ndarray, t: np.ndarray, hist: np.ndarray,
           subject_iters: np.ndarray, tol: float, order_checked: bool = True, vertices: np.ndarray | None = None,
           **thresholds: Any) -> FitQuality:
    """The :class:`FitQuality` of a fit (plain arrays; called by the public fitting functions).

    Parameters
    ----------
    model : MorphableModel
    landmarks2d : ndarray (M, L, 2), pixels
    subj : ndarray (M,) int, subject index of every image in ``[0, S)``
    alpha_id : ndarray (S, k_id); alpha_exp : ndarray (M, k_exp)
    R : ndarray (M, 3, 3); f : ndarray (M,); t : ndarray (M, 2), pixels
    hist : ndarray (S, n_steps)
        E after every step (the alternation's first, then any joint steps).
    subject_iters : ndarray (S,) int
    tol : float
        The alternation's tolerance (``FittingConfig.tol``).
    vertices : ndarray (M, L) int, optional
        The vertex each landmark was fitted to per image (contour marching); default the
        model's fixed landmark vertices.
    **thresholds
        ``warn_reprojection_iod``, ``warn_landmark_iod``, ``warn_alpha_sd`` (defaults: the
        module's constants).
    """
    mU, iU, eU = model.landmark_bases()
    X = (mU[None] + np.einsum("nk,kld->nld", alpha_id[subj], iU) + np.einsum("nk,kld->nld", alpha_exp, eU))
    if vertices is not None:   # per-image vertices (contour marching): the landmarks that moved
        V = np.asarray(vertices, np.int64)
        moved = np.flatnonzero((V != np.asarray(model.landmarks)[None]).any(0))
        for s0 in range(0, V.shape[0], 1024):
            sl = slice(s0, s0 + 1024)
            Vm = V[sl][:, moved]
            X[sl, moved] = (model.mean[Vm] + np.einsum("nk,knld->nld", alpha_id[subj[sl]], model.id_basis[:, Vm])
                            + np.einsum("nk,knld->nld", alpha_exp[sl], model.exp_basis[:, Vm]))
    X = X.astype(np.float64)
    res = np.linalg.norm(np.asarray(landmarks2d, np.float64) - camera.project(X, R, f, t), axis=-1)
    if X.shape[1] == 68:
        iod = f * np.linalg.norm(mU[36] - mU[45])
    else:
        iod = f * np.sqrt(((mU - mU.mean(0)) ** 2).sum(-1).mean())
    iod = np.maximum(iod, 1e-12)
    rmse = np.sqrt((res ** 2).mean(-1))
    iters = np.asarray(subject_iters, np.int64)
    return FitQuality(residuals_px=res, interocular_px=iod, reprojection_iod=rmse / iod,
                      max_residual_iod=res.max(-1) / iod, max_abs_alpha_id=np.abs(alpha_id).max(-1),
                      converged=_converged(np.asarray(hist), iters, tol), n_iter=iters,
                      order_checked=order_checked, label=None,
                      **{k: float(v) for k, v in thresholds.items()})
