"""Score-level fusion of several matchers (Sec. 4.2): z-score normalisation, then summation.

The normalisation parameters come from the training folds only (:func:`fuse_scores`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["zscore_params", "zscore_apply", "fuse_scores"]


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
