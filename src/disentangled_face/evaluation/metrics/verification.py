"""Verification metrics of Sec. 4.2: cosine pair scores, ROC, EER, AUC, TAR@FAR, 10 folds.

:func:`verification` evaluates pair scores over 10 folds (the LFW/YTF "unrestricted" protocol
of Sec. 4.2): accuracy with the threshold chosen on the other nine folds only, ``100% - EER``,
ROC AUC, and TAR at FAR 10% and 1%, each as mean and standard deviation over folds. ROC curves
come from scikit-learn (:func:`sklearn.metrics.roc_curve`, :func:`sklearn.metrics.roc_auc_score`).
Several matchers are fused at score level (:func:`~.fusion.fuse_scores`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...config import ExperimentsConfig
from .fusion import fuse_scores

#: Default TAR@FAR targets: the typed configuration's (``experiments.far_targets``, Sec. 4.2).
_FAR_TARGETS = ExperimentsConfig.model_fields["far_targets"].default

__all__ = ["check_features", "cosine_similarity", "pair_scores", "roc", "eer", "auc", "tar_at_far",
           "best_accuracy_threshold", "VerificationResult", "verification"]


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


def verification(scores, same, folds, higher_is_genuine=True, far_targets=_FAR_TARGETS) -> VerificationResult:
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
