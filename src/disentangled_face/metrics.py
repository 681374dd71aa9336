"""Evaluation metrics of the paper: 3D reconstruction error (Sec. 4.1) and verification (Sec. 4.2).

Reconstruction
--------------
:func:`similarity_procrustes` is Umeyama's least-squares similarity fit (scale, proper rotation,
translation; Umeyama 1991, "Least-squares estimation of transformation parameters between two
point patterns", IEEE TPAMI 13(4)). :func:`shape_error` follows Sec. 4.1 of the paper: align the
reconstruction to the ground truth by Procrustes on the 68 3D landmarks, crop the ground truth to
a 95 mm radius around its nose tip, and compare, reporting three numbers:

* ``paper``: the paper's formula as written, ``||s - s*||_2 / n`` over the kept vertices (norm
  of the flattened 3n-vector divided by the vertex count). This is **not** an RMSE in mm: it has
  units of mm but scales like ``rmse / sqrt(n)``, so it shrinks as the mesh gets denser;
* ``mean_mm``: the mean per-vertex Euclidean distance, mm;
* ``rmse_mm``: the true root-mean-square per-vertex distance, ``sqrt(mean ||v_i - v_i*||^2)``, mm.

Verification
------------
:func:`verification` evaluates pair scores over 10 folds (the LFW/YTF "unrestricted" protocol
of Sec. 4.2): accuracy with the threshold chosen on the other nine folds only, ``100% - EER``,
ROC AUC, and TAR at FAR 10% and 1%, each as mean and standard deviation over folds. ROC curves
come from scikit-learn (:func:`sklearn.metrics.roc_curve`, :func:`sklearn.metrics.roc_auc_score`).
Several matchers are fused at score level by summation after z-score normalisation whose
parameters come from the training folds (:func:`fuse_scores`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

__all__ = [
    "similarity_procrustes", "apply_similarity", "ShapeError", "shape_error", "model_shape_error",
    "check_features", "cosine_similarity", "pair_scores", "roc", "eer", "auc",
    "zscore_params", "zscore_apply", "fuse_scores", "tar_at_far", "best_accuracy_threshold",
    "VerificationResult", "verification", "CROP_RADIUS_MM",
]

#: Radius (mm) of the ground-truth crop around the nose tip (paper Sec. 4.1).
CROP_RADIUS_MM = 95.0


# ====================================================================== Procrustes (Umeyama)
def similarity_procrustes(source, target, weights=None):
    """Least-squares similarity transform mapping ``source`` onto ``target`` (Umeyama 1991).

    Finds scale ``c``, proper rotation ``R`` (``det R = +1``) and translation ``t`` minimising
    ``sum_i w_i || target_i - (c R source_i + t) ||^2``. A plain SVD (Kabsch) solution can be a
    reflection; Umeyama's sign correction ``S = diag(1, ..., 1, det(U) det(V))`` rules it out,
    including for degenerate (rank-deficient) point sets such as two points in 2D.

    Parameters
    ----------
    source, target : array_like, shape (n, d) or (B, n, d), d in {2, 3}
        Corresponding points (for Sec. 4.1: the 68 3D landmarks of the reconstruction and of the
        ground truth, mm). Batches are solved at once.
    weights : array_like, shape (n,) or (B, n), optional
        Non-negative point weights (default: all ones).

    Returns
    -------
    scale : float or ndarray (B,)
    R : ndarray, shape (d, d) or (B, d, d), det +1
    t : ndarray, shape (d,) or (B, d)
        ``target ~ scale * source @ R.T + t``.

    Raises
    ------
    ValueError
        When the shapes differ, ``d`` is not 2 or 3, fewer than 2 points are given, the source
        points all coincide (scale undefined), or a value is not finite.
    """
    X = np.asarray(source, dtype=np.float64)
    Y = np.asarray(target, dtype=np.float64)
    if X.shape != Y.shape:
        raise ValueError(f"source and target must have the same shape, got {X.shape} and {Y.shape}")
    if X.ndim not in (2, 3) or X.shape[-1] not in (2, 3):
        raise ValueError(f"points must have shape (n, d) or (B, n, d) with d in (2, 3), got {X.shape}")
    if X.shape[-2] < 2:
        raise ValueError(f"need at least 2 corresponding points, got {X.shape[-2]}")
    if not (np.isfinite(X).all() and np.isfinite(Y).all()):
        raise ValueError("source and target must be finite (found NaN or inf)")
    single = X.ndim == 2
    if single:
        X, Y = X[None], Y[None]
    B, n, d = X.shape
    if weights is None:
        w = np.ones((B, n))
    else:
        w = np.broadcast_to(np.asarray(weights, dtype=np.float64), (B, n)) if np.ndim(weights) == 1 \
            else np.asarray(weights, dtype=np.float64)
        if w.shape != (B, n) or (w < 0).any() or not (w.sum(-1) > 0).all():
            raise ValueError(f"weights must be non-negative with shape ({n},) or ({B}, {n}) and a positive sum")
    w = w / w.sum(-1, keepdims=True)
    mx = np.einsum("bn,bnd->bd", w, X)
    my = np.einsum("bn,bnd->bd", w, Y)
    Xc, Yc = X - mx[:, None], Y - my[:, None]
    var_x = np.einsum("bn,bnd->b", w, Xc**2)
    if (var_x <= 1e-12 * max(1.0, float(np.abs(X).max()) ** 2)).any():
        raise ValueError("source points coincide: the similarity scale is undefined")
    cov = np.einsum("bn,bni,bnj->bij", w, Yc, Xc)  # (B, d, d), Sigma_xy of Umeyama
    U, D, Vt = np.linalg.svd(cov)
    S = np.ones((B, d))
    S[:, -1] = np.sign(np.linalg.det(U) * np.linalg.det(Vt))
    S[S == 0] = 1.0
    R = U @ (S[:, :, None] * Vt)
    scale = (D * S).sum(-1) / var_x
    t = my - scale[:, None] * np.einsum("bij,bj->bi", R, mx)
    if single:
        return float(scale[0]), R[0], t[0]
    return scale, R, t


def apply_similarity(points, scale, R, t):
    """Apply ``scale * points @ R.T + t`` (the transform of :func:`similarity_procrustes`).

    Parameters
    ----------
    points : array_like, shape (n, d) or (B, n, d)
    scale : float or (B,); R : (d, d) or (B, d, d); t : (d,) or (B, d)

    Returns
    -------
    ndarray, same shape as ``points``
    """
    P = np.asarray(points, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    R = np.asarray(R, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    out = P @ np.swapaxes(R, -1, -2)
    if scale.ndim == 1:
        out = out * scale[:, None, None]
    else:
        out = out * scale
    return out + (t[:, None, :] if t.ndim == 2 else t)


# ====================================================================== 3D reconstruction error
@dataclass
class ShapeError:
    """Reconstruction errors of Sec. 4.1 (one value, or one per shape of a batch).

    Attributes
    ----------
    paper : float or ndarray (B,)
        The paper's formula as written, ``||s - s*||_2 / n`` (flattened 3n-vector norm divided
        by the number n of ground-truth vertices inside the crop). mm, but NOT an RMSE: it
        equals ``rmse_mm / sqrt(n)`` and shrinks as n grows.
    mean_mm : float or ndarray (B,)
        Mean per-vertex Euclidean distance, mm.
    rmse_mm : float or ndarray (B,)
        Root-mean-square per-vertex distance ``sqrt(mean_i ||v_i - v_i*||^2)``, mm.
    n_kept : int or ndarray (B,)
        Ground-truth vertices inside the crop.
    """

    paper: np.ndarray | float
    mean_mm: np.ndarray | float
    rmse_mm: np.ndarray | float
    n_kept: np.ndarray | int

    def as_dict(self) -> dict:
        """The four fields as a dict (for a pandas row)."""
        return dict(paper=self.paper, mean_mm=self.mean_mm, rmse_mm=self.rmse_mm, n_kept=self.n_kept)


def _batch_points(x, name):
    a = np.asarray(x, dtype=np.float64)
    if a.ndim not in (2, 3) or a.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (n, 3) or (B, n, 3), got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name} must be finite (found NaN or inf)")
    return a if a.ndim == 3 else a[None], a.ndim == 2


def shape_error(recon, truth, recon_landmarks, truth_landmarks, nose_tip,
                radius_mm: float = CROP_RADIUS_MM, correspondence: str = "vertex",
                return_aligned: bool = False):
    """3D reconstruction error of Sec. 4.1 (Procrustes on landmarks, 95 mm nose-tip crop).

    Steps: (1) the similarity transform that best maps ``recon_landmarks`` onto
    ``truth_landmarks`` (:func:`similarity_procrustes`) is applied to the whole reconstruction;
    (2) the ground truth keeps its vertices within ``radius_mm`` of ``nose_tip``; (3) each kept
    ground-truth vertex is paired with a reconstructed point: the same vertex index
    (``correspondence="vertex"``, same topology) or the nearest aligned reconstructed point
    (``"nearest"``, any topology, :class:`scipy.spatial.cKDTree`); (4) errors as in
    :class:`ShapeError`.

    Parameters
    ----------
    recon : array_like, shape (n, 3) or (B, n, 3)
        Reconstructed shapes s, mm (any similarity frame).
    truth : array_like, shape (m, 3) or (B, m, 3)
        Ground-truth shapes s*, mm. ``m == n`` is required for vertex correspondence.
    recon_landmarks, truth_landmarks : array_like, shape (68, 3) or (B, 68, 3)
        The 3D landmarks of each, in the same frames as ``recon`` and ``truth``.
    nose_tip : array_like, shape (3,) or (B, 3)
        Ground-truth nose tip, mm.
    radius_mm : float
        Crop radius (95 mm in the paper). A vertex at exactly ``radius_mm`` is kept.
    correspondence : {"vertex", "nearest"}
    return_aligned : bool
        Also return the aligned reconstructions, (B, n, 3) (or (n, 3)).

    Returns
    -------
    ShapeError
        Floats for single shapes, arrays (B,) for batches.

    Raises
    ------
    ValueError
        On a vertex-count mismatch under vertex correspondence (never broadcast), batch sizes
        that differ, an unknown ``correspondence``, non-finite input, or a crop that keeps no
        vertex.
    """
    R_, single = _batch_points(recon, "recon")
    T_, single_t = _batch_points(truth, "truth")
    LR, _ = _batch_points(recon_landmarks, "recon_landmarks")
    LT, _ = _batch_points(truth_landmarks, "truth_landmarks")
    nt = np.asarray(nose_tip, dtype=np.float64)
    nt = nt[None] if nt.ndim == 1 else nt
    if nt.ndim != 2 or nt.shape[1] != 3:
        raise ValueError(f"nose_tip must have shape (3,) or (B, 3), got {np.shape(nose_tip)}")
    B = max(R_.shape[0], T_.shape[0])
    arrays = {"recon": R_, "truth": T_, "recon_landmarks": LR, "truth_landmarks": LT, "nose_tip": nt}
    for nm, a in arrays.items():
        if a.shape[0] not in (1, B):
            raise ValueError(f"{nm} has batch {a.shape[0]}, expected 1 or {B}")
    R_, T_, LR, LT, nt = (np.broadcast_to(a, (B,) + a.shape[1:]) for a in (R_, T_, LR, LT, nt))
    if LR.shape != LT.shape:
        raise ValueError(f"recon_landmarks and truth_landmarks differ in shape: {LR.shape} vs {LT.shape}")
    if radius_mm <= 0:
        raise ValueError(f"radius_mm must be positive, got {radius_mm}")
    scale, Rot, t = similarity_procrustes(LR, LT)
    aligned = apply_similarity(R_, scale, Rot, t)
    keep = np.linalg.norm(T_ - nt[:, None, :], axis=-1) <= radius_mm  # (B, m)
    n_kept = keep.sum(-1)
    if (n_kept == 0).any():
        raise ValueError(f"the {radius_mm} mm crop around the nose tip keeps no ground-truth vertex")
    if correspondence == "vertex":
        if R_.shape[1] != T_.shape[1]:
            raise ValueError(
                f"vertex correspondence needs the same vertex count, got recon n={R_.shape[1]} and "
                f"truth n={T_.shape[1]}; use correspondence='nearest' for another topology")
        d = np.linalg.norm(aligned - T_, axis=-1)  # (B, n)
    elif correspondence == "nearest":
        from scipy.spatial import cKDTree

        d = np.zeros(T_.shape[:2])
        for b in range(B):
            d[b], _ = cKDTree(aligned[b]).query(T_[b])
    else:
        raise ValueError(f"correspondence must be 'vertex' or 'nearest', got {correspondence!r}")
    d = np.where(keep, d, 0.0)
    sq = (d**2).sum(-1)
    err = ShapeError(paper=np.sqrt(sq) / n_kept, mean_mm=d.sum(-1) / n_kept,
                     rmse_mm=np.sqrt(sq / n_kept), n_kept=n_kept)
    if single and single_t:
        err = ShapeError(float(err.paper[0]), float(err.mean_mm[0]), float(err.rmse_mm[0]), int(n_kept[0]))
        aligned = aligned[0]
    return (err, aligned) if return_aligned else err


def model_shape_error(model, recon, truth, radius_mm: float = CROP_RADIUS_MM, **kwargs) -> ShapeError:
    """:func:`shape_error` for shapes of one morphable model's topology (vertex correspondence).

    Landmarks are ``model.landmarks_of`` of each shape; the nose tip is ``truth[model.nose_tip]``.

    Parameters
    ----------
    model : disentangled_face.model.MorphableModel
    recon, truth : array_like, shape (n, 3) or (B, n, 3), mm

    Raises
    ------
    ValueError
        When a shape does not have the model's n vertices.
    """
    recon = np.asarray(recon, dtype=np.float64)
    truth = np.asarray(truth, dtype=np.float64)
    for nm, a in (("recon", recon), ("truth", truth)):
        if a.shape[-2:] != (model.n_vertices, 3):
            raise ValueError(f"{nm} must have shape (n, 3) or (B, n, 3) with n={model.n_vertices}, got {a.shape}")
    return shape_error(recon, truth, model.landmarks_of(recon), model.landmarks_of(truth),
                       truth[..., model.nose_tip, :], radius_mm=radius_mm, correspondence="vertex", **kwargs)


# ====================================================================== features and scores
def check_features(features, name: str = "features") -> np.ndarray:
    """Validate a feature matrix for cosine similarity.

    Parameters
    ----------
    features : array_like, shape (N, d)

    Returns
    -------
    ndarray (N, d), float64

    Raises
    ------
    ValueError
        When not 2D, when a row has a NaN/inf, or when a row is all zeros (its direction, and so
        its cosine similarity, is undefined). The message names the offending rows.
    """
    F = np.asarray(features, dtype=np.float64)
    if F.ndim != 2:
        raise ValueError(f"{name} must have shape (N, d), got {F.shape}")
    bad = np.flatnonzero(~np.isfinite(F).all(1))
    if bad.size:
        raise ValueError(f"{name}: rows {bad[:10].tolist()} contain NaN or inf")
    zero = np.flatnonzero(np.linalg.norm(F, axis=1) == 0)
    if zero.size:
        raise ValueError(f"{name}: rows {zero[:10].tolist()} are zero vectors (cosine similarity undefined)")
    return F


def cosine_similarity(a, b) -> np.ndarray:
    """Row-wise cosine similarity ``<a_i, b_i> / (|a_i| |b_i|)`` (Sec. 4.2), in [-1, 1].

    Parameters
    ----------
    a, b : array_like, shape (P, d)

    Returns
    -------
    ndarray, shape (P,)

    Raises
    ------
    ValueError
        Shapes differ, or a zero / non-finite feature vector (see :func:`check_features`).
    """
    A, Bm = check_features(a, "a"), check_features(b, "b")
    if A.shape != Bm.shape:
        raise ValueError(f"a and b must have the same shape, got {A.shape} and {Bm.shape}")
    A = A / np.linalg.norm(A, axis=1, keepdims=True)
    Bm = Bm / np.linalg.norm(Bm, axis=1, keepdims=True)
    return np.clip((A * Bm).sum(1), -1.0, 1.0)


def pair_scores(features, pairs) -> np.ndarray:
    """Cosine similarity of each pair of feature rows.

    Parameters
    ----------
    features : array_like, shape (N, d)
    pairs : array_like of int, shape (P, 2)
        Row indices into ``features``.

    Returns
    -------
    ndarray, shape (P,)

    Raises
    ------
    ValueError
        Bad pair indices, or a zero / non-finite feature row used by a pair.
    """
    F = np.asarray(features, dtype=np.float64)
    p = np.asarray(pairs)
    if p.ndim != 2 or p.shape[1] != 2 or not np.issubdtype(p.dtype, np.integer):
        raise ValueError(f"pairs must be integer indices of shape (P, 2), got {p.shape} {p.dtype}")
    if F.ndim != 2:
        raise ValueError(f"features must have shape (N, d), got {F.shape}")
    if p.size and (p.min() < 0 or p.max() >= F.shape[0]):
        raise ValueError(f"pair indices must lie in [0, {F.shape[0]})")
    return cosine_similarity(F[p[:, 0]], F[p[:, 1]])


def _scores_labels(scores, same, higher_is_genuine):
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(same).reshape(-1)
    if s.shape != y.shape:
        raise ValueError(f"scores and same must have the same length, got {s.shape[0]} and {y.shape[0]}")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite (found NaN or inf)")
    if not np.isin(y, [0, 1]).all():
        raise ValueError("same must hold booleans / 0-1 labels (1 = genuine pair)")
    y = y.astype(bool)
    if y.all() or (~y).all():
        raise ValueError("need both genuine (same=1) and impostor (same=0) pairs")
    return (s if higher_is_genuine else -s), y


def roc(scores, same, higher_is_genuine: bool = True):
    """Empirical ROC curve (:func:`sklearn.metrics.roc_curve`, every threshold kept).

    Parameters
    ----------
    scores : array_like, shape (P,)
        Similarities (``higher_is_genuine=True``) or distances (``False``).
    same : array_like of bool, shape (P,)
        True for a genuine (same identity) pair.

    Returns
    -------
    far, tar, thresholds : ndarray
        False-accept and true-accept rates when accepting ``score >= threshold`` (for distances,
        the thresholds are on ``-distance``).

    Raises
    ------
    ValueError
        Lengths differ, non-finite scores, or only one class present.
    """
    from sklearn.metrics import roc_curve

    s, y = _scores_labels(scores, same, higher_is_genuine)
    far, tar, thr = roc_curve(y, s, drop_intermediate=False)
    return far, tar, thr


def eer(scores, same, higher_is_genuine: bool = True) -> float:
    """Equal error rate: where the empirical ROC crosses ``FAR = 1 - TAR`` (a fraction in [0, 1]).

    Pinned definition: the ROC points (FAR_k, FRR_k = 1 - TAR_k) of :func:`roc` are joined by
    straight lines and the EER is the FAR at the first point where ``FAR - FRR`` changes sign
    from negative to non-negative, found by linear interpolation between the two ROC points
    around it. Example: genuine similarities (0.9, 0.6) and impostor (0.7, 0.3, 0.2) give 1/3.

    Returns
    -------
    float
        EER as a fraction (the paper reports ``100% - EER``).
    """
    far, tar, _ = roc(scores, same, higher_is_genuine)
    frr = 1.0 - tar
    g = far - frr  # starts at -1 (FAR 0, FRR 1), ends at +1
    k = int(np.flatnonzero(g >= 0)[0])
    if k == 0:
        return float(far[0])
    lam = -g[k - 1] / (g[k] - g[k - 1])
    return float(far[k - 1] + lam * (far[k] - far[k - 1]))


def auc(scores, same, higher_is_genuine: bool = True) -> float:
    """Area under the ROC curve (:func:`sklearn.metrics.roc_auc_score`), in [0, 1]."""
    from sklearn.metrics import roc_auc_score

    s, y = _scores_labels(scores, same, higher_is_genuine)
    return float(roc_auc_score(y, s))


def _accept_thresholds(s_train):
    """Candidate thresholds tau (accept ``s > tau``) at midpoints of the sorted distinct scores.

    Returns thresholds in decreasing order: first accepts nothing (tau = max score), last
    accepts everything (tau = -inf).
    """
    u = np.unique(s_train)[::-1]
    mids = (u[:-1] + u[1:]) / 2
    return np.concatenate([[u[0]], mids, [-np.inf]])


def _rates(s, y, tau):
    """TAR and FAR of the rule ``accept s > tau`` for each threshold (O((n + t) log n))."""
    g, i = np.sort(s[y]), np.sort(s[~y])
    tar = 1.0 - np.searchsorted(g, tau, side="right") / g.size
    far = 1.0 - np.searchsorted(i, tau, side="right") / i.size
    return tar, far


def tar_at_far(train_scores, train_same, test_scores, test_same, far_target: float,
               higher_is_genuine: bool = True) -> tuple[float, float, float]:
    """TAR at a FAR target with the threshold chosen on training scores only.

    The threshold is the most permissive one whose FAR on the training scores is at most
    ``far_target``: with similarities, accept ``s > tau`` for the smallest such ``tau``; with
    distances, accept ``d < tau`` for the largest such ``tau``. Candidate thresholds sit
    halfway between consecutive distinct training scores. Example: distances genuine (1, 2, 3),
    impostor (10, 20, 30), target 0.001: ``tau = 6.5`` accepts every genuine and no impostor,
    so TAR 1.0 at FAR 0.

    Returns
    -------
    tar, far, tau : float
        True-accept and false-accept rates reached on the test scores (fractions) and the
        threshold (in the caller's score units).
    """
    if not 0.0 <= far_target <= 1.0:
        raise ValueError(f"far_target must be a fraction in [0, 1], got {far_target}")
    s_tr, y_tr = _scores_labels(train_scores, train_same, higher_is_genuine)
    s_te, y_te = _scores_labels(test_scores, test_same, higher_is_genuine)
    taus = _accept_thresholds(s_tr)
    _, far_tr = _rates(s_tr, y_tr, taus)
    k = int(np.flatnonzero(far_tr <= far_target + 1e-12)[-1])  # far_tr is non-decreasing in k
    tar, far = _rates(s_te, y_te, taus[k:k + 1])
    tau = taus[k] if higher_is_genuine else -taus[k]
    return float(tar[0]), float(far[0]), float(tau)


def best_accuracy_threshold(scores, same, higher_is_genuine: bool = True) -> float:
    """Threshold maximising verification accuracy on the given (training) scores.

    Candidates are midpoints between consecutive distinct scores (plus accept-none and
    accept-all); ties go to the first (strictest) best candidate. Accept ``s > tau`` for
    similarities, ``d < tau`` for distances.
    """
    s, y = _scores_labels(scores, same, higher_is_genuine)
    taus = _accept_thresholds(s)
    tar, far = _rates(s, y, taus)
    acc = (tar * y.sum() + (1 - far) * (~y).sum()) / y.size
    tau = taus[int(np.argmax(acc))]
    return float(tau if higher_is_genuine else -tau)


def _accuracy(scores, same, tau, higher_is_genuine):
    s, y = _scores_labels(scores, same, higher_is_genuine)
    t = tau if higher_is_genuine else -tau
    return float(((s > t) == y).mean())


# ====================================================================== score-level fusion
def zscore_params(scores) -> tuple[float, float]:
    """Mean and standard deviation (ddof 0) of training scores for z-score normalisation."""
    s = np.asarray(scores, dtype=np.float64)
    if s.size == 0 or not np.isfinite(s).all():
        raise ValueError("z-score parameters need a non-empty, finite score array")
    return float(s.mean()), float(s.std())


def zscore_apply(scores, mean: float, std: float) -> np.ndarray:
    """``(s - mean) / std``; a matcher whose training scores are all equal (``std == 0``,
    up to 1e-12 relative) carries no information and contributes 0 for every pair."""
    s = np.asarray(scores, dtype=np.float64)
    if std <= 1e-12 * max(1.0, abs(mean)):
        return np.zeros_like(s)
    return (s - mean) / std


def fuse_scores(score_list: Sequence, train_mask=None, higher_is_genuine: Sequence[bool] | bool = True):
    """Score-level fusion by summation after z-score normalisation (paper Sec. 4.2, ref. [21]).

    Each matcher's scores are turned into similarities (distances negated), normalised by
    ``(s - mu) / sigma`` with ``mu, sigma`` estimated on the training pairs only (all of them,
    genuine and impostor), and summed. A matcher whose training scores are all equal
    contributes 0 (see :func:`zscore_apply`). Z-score was chosen over min-max because it is
    less sensitive to a single outlying score.

    Parameters
    ----------
    score_list : sequence of array_like, each (P,)
    train_mask : array_like of bool, shape (P,), optional
        Pairs used to estimate the normalisation (default: all pairs).
    higher_is_genuine : bool or sequence of bool
        Per matcher.

    Returns
    -------
    ndarray, shape (P,)
        Fused similarity scores (higher = genuine).
    """
    S = [np.asarray(s, dtype=np.float64).reshape(-1) for s in score_list]
    if not S:
        raise ValueError("fuse_scores needs at least one matcher")
    P = S[0].shape[0]
    if any(s.shape[0] != P for s in S):
        raise ValueError(f"every matcher must score the same {P} pairs, got {[s.shape[0] for s in S]}")
    hig = [higher_is_genuine] * len(S) if isinstance(higher_is_genuine, bool) else list(higher_is_genuine)
    if len(hig) != len(S):
        raise ValueError("higher_is_genuine needs one flag per matcher")
    m = np.ones(P, bool) if train_mask is None else np.asarray(train_mask, bool)
    if m.shape != (P,) or not m.any():
        raise ValueError(f"train_mask must be a boolean array of shape ({P},) with at least one True")
    out = np.zeros(P)
    for s, h in zip(S, hig):
        s = s if h else -s
        mu, sd = zscore_params(s[m])
        out += zscore_apply(s, mu, sd)
    return out


# ====================================================================== 10-fold verification
@dataclass
class VerificationResult:
    """Per-fold verification metrics (fractions in [0, 1]) and the pooled ROC curve.

    Attributes
    ----------
    per_fold : dict of str -> ndarray (K,)
        ``accuracy``, ``100-EER`` (i.e. ``1 - EER``), ``AUC``, ``TAR@FAR=10%``,
        ``TAR@FAR=1%`` (and ``FAR reached@...`` for each target), one value per test fold.
    roc_far, roc_tar : ndarray
        ROC of the test-fold scores pooled over folds (each fold's fused scores normalised
        with its own training folds' parameters).
    """

    per_fold: dict = field(default_factory=dict)
    roc_far: np.ndarray | None = None
    roc_tar: np.ndarray | None = None

    def summary(self, percent: bool = True) -> dict:
        """``{metric: (mean, std)}`` over folds (std with ddof 0, as the usual LFW scripts),
        in percent by default."""
        f = 100.0 if percent else 1.0
        return {k: (float(np.mean(v) * f), float(np.std(v) * f)) for k, v in self.per_fold.items()}

    def formatted(self, digits: int = 2) -> dict:
        """``{metric: "mean ± std"}`` in percent, for display."""
        return {k: f"{m:.{digits}f} ± {s:.{digits}f}" for k, (m, s) in self.summary().items()}


def _far_label(target: float) -> str:
    return f"{100 * target:g}%"


def verification(scores, same, folds, higher_is_genuine=True, far_targets=(0.1, 0.01)) -> VerificationResult:
    """10-fold verification metrics of Sec. 4.2 for one matcher or a score-level fusion.

    For each fold k the test pairs are fold k and the training pairs are the other folds.
    Accuracy uses the threshold maximising training accuracy (:func:`best_accuracy_threshold`);
    TAR@FAR uses :func:`tar_at_far` on the training folds; ``1 - EER`` and AUC are computed on
    the test fold (they need no threshold). With several matchers, scores are fused per fold by
    :func:`fuse_scores` with normalisation estimated on the training folds.

    Parameters
    ----------
    scores : array_like (P,) or sequence of array_like (P,)
        One matcher's scores, or several matchers' scores to fuse.
    same : array_like of bool, shape (P,)
    folds : array_like of int, shape (P,)
        Fold index of each pair (at least 2 distinct folds).
    higher_is_genuine : bool or sequence of bool
        Similarity (True) or distance (False) per matcher.
    far_targets : sequence of float
        FAR targets as fractions (the paper: 10% and 1%).

    Returns
    -------
    VerificationResult

    Raises
    ------
    ValueError
        Mismatched lengths, fewer than 2 folds, or a fold (or its training complement) without
        both genuine and impostor pairs.
    """
    multi = not (np.ndim(scores) == 1)
    S = [np.asarray(s, dtype=np.float64).reshape(-1) for s in (scores if multi else [scores])]
    y = np.asarray(same).astype(bool).reshape(-1)
    fo = np.asarray(folds).reshape(-1)
    if any(s.shape != y.shape for s in S) or fo.shape != y.shape:
        raise ValueError(f"scores, same and folds must all have length {y.shape[0]}")
    ks = np.unique(fo)
    if ks.size < 2:
        raise ValueError(f"need at least 2 folds, got {ks.size}")
    hig = [higher_is_genuine] * len(S) if isinstance(higher_is_genuine, bool) else list(higher_is_genuine)
    if len(hig) != len(S):
        raise ValueError("higher_is_genuine needs one flag per matcher")
    names = ["accuracy", "100-EER", "AUC"] + [f"TAR@FAR={_far_label(t)}" for t in far_targets] \
        + [f"FAR reached@{_far_label(t)}" for t in far_targets]
    per = {n: [] for n in names}
    pooled_s, pooled_y = [], []
    for k in ks:
        te, tr = fo == k, fo != k
        for part, nm in ((te, "test"), (tr, "training")):
            if y[part].all() or (~y[part]).all():
                raise ValueError(f"fold {k}: the {nm} pairs need both genuine and impostor pairs")
        if len(S) == 1:
            s, h = S[0], hig[0]
        else:
            s, h = fuse_scores(S, tr, hig), True
        tau = best_accuracy_threshold(s[tr], y[tr], h)
        per["accuracy"].append(_accuracy(s[te], y[te], tau, h))
        per["100-EER"].append(1.0 - eer(s[te], y[te], h))
        per["AUC"].append(auc(s[te], y[te], h))
        for t in far_targets:
            tar, far, _ = tar_at_far(s[tr], y[tr], s[te], y[te], t, h)
            per[f"TAR@FAR={_far_label(t)}"].append(tar)
            per[f"FAR reached@{_far_label(t)}"].append(far)
        pooled_s.append(s[te] if h else -s[te])
        pooled_y.append(y[te])
    far_c, tar_c, _ = roc(np.concatenate(pooled_s), np.concatenate(pooled_y), True)
    return VerificationResult({k: np.asarray(v) for k, v in per.items()}, far_c, tar_c)
