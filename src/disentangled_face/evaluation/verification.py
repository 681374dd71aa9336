"""Verification experiments of Sec. 4.2 (Table 3): pair scores of every method's features,
score-level fusions, YTF sequence features, the 10-fold metrics of :mod:`.metrics.verification`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ..methods import FUSIONS
from . import metrics
from .metrics.verification import _FAR_TARGETS
from .paper_results import VERIFICATION_METRICS

__all__ = ["sequence_features", "VerificationTable", "verification_table"]


def sequence_features(frame_features: np.ndarray, sequence_ids: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the frame features of each sequence (the YTF protocol of Sec. 4.2).

    Parameters
    ----------
    frame_features : ndarray (N, d)
    sequence_ids : sequence (N,)
        Sequence of each frame.

    Returns
    -------
    features : ndarray (S, d)
        One feature per sequence, in the order of ``ids``.
    ids : ndarray (S,)
        The sorted unique sequence ids.

    Raises
    ------
    ValueError
        On mismatched lengths, or a zero / non-finite frame feature.
    """
    F = metrics.check_features(frame_features, "frame_features")
    sid = np.asarray(sequence_ids)
    if sid.shape != (F.shape[0],):
        raise ValueError(f"sequence_ids must have shape ({F.shape[0]},), got {sid.shape}")
    ids, inv = np.unique(sid, return_inverse=True)
    out = np.zeros((ids.size, F.shape[1]))
    np.add.at(out, inv, F)
    out /= np.bincount(inv)[:, None]
    return out, ids


@dataclass
class VerificationTable:
    """Table 3 for one protocol: every method and fusion, five metrics, ROC curves.

    Attributes
    ----------
    results : dict name -> metrics.VerificationResult
    """

    results: dict = field(default_factory=dict)
    protocol: str = ""
    same: np.ndarray | None = None
    folds: np.ndarray | None = None

    def pairs_per_fold(self) -> pd.DataFrame:
        """Number of same-identity and different-identity pairs in each fold.

        Raises
        ------
        ValueError
            When the table was built without its pair labels.
        """
        if self.same is None or self.folds is None:
            raise ValueError("this VerificationTable has no pair labels (same, folds)")
        df = pd.DataFrame({"fold": self.folds, "same": self.same.astype(bool)})
        t = df.groupby("fold")["same"].agg(same="sum", different=lambda x: int((~x).sum()))
        return t.astype(int)

    def mean(self) -> pd.DataFrame:
        """Methods x metrics, mean over folds (percent)."""
        return pd.DataFrame({n: {k: v[0] for k, v in r.summary().items()} for n, r in self.results.items()}).T

    def std(self) -> pd.DataFrame:
        """Methods x metrics, standard deviation over folds (percent)."""
        return pd.DataFrame({n: {k: v[1] for k, v in r.summary().items()} for n, r in self.results.items()}).T

    def table(self, digits: int = 2) -> pd.DataFrame:
        """Methods x the five metrics as "mean ± std" strings (percent)."""
        t = pd.DataFrame({n: r.formatted(digits) for n, r in self.results.items()}).T
        t = t[list(VERIFICATION_METRICS)]
        t.index.name = f"{self.protocol} (%, mean ± std over folds)"
        return t


def verification_table(features: Mapping[str, np.ndarray], pairs: np.ndarray, same: np.ndarray, folds: np.ndarray,
                       fusions: Mapping[str, Sequence[str]] | None = None, far_targets=_FAR_TARGETS,
                       protocol: str = "") -> VerificationTable:
    """Table 3: verification of every method's features and of the score-level fusions.

    Scores are cosine similarities of the two features of a pair (:func:`metrics.pair_scores`);
    fusions sum z-normalised scores with the normalisation estimated on the training folds
    (:func:`metrics.verification`).

    Parameters
    ----------
    features : mapping method -> ndarray (N, d)
        Rows indexed by ``pairs`` (images, or sequences for a YTF-like protocol: see
        :func:`sequence_features`).
    pairs : ndarray (P, 2) int
    same : ndarray (P,) bool
    folds : ndarray (P,) int
    fusions : mapping name -> matcher names, optional
        Default :data:`.methods.FUSIONS`, restricted to those whose matchers are present.

    Returns
    -------
    VerificationTable

    Raises
    ------
    ValueError
        Unknown matcher in a fusion, bad pairs, or a zero / NaN feature.
    """
    scores = {name: metrics.pair_scores(F, pairs) for name, F in features.items()}
    out = VerificationTable(protocol=protocol, same=np.asarray(same, bool).copy(), folds=np.asarray(folds).copy())
    for name, s in scores.items():
        out.results[name] = metrics.verification(s, same, folds, True, far_targets)
    if fusions is None:
        fusions = {k: v for k, v in FUSIONS.items() if all(m in scores for m in v)}
    for name, parts in fusions.items():
        missing = [m for m in parts if m not in scores]
        if missing:
            raise ValueError(f"fusion {name!r} needs matchers {missing}, which have no features")
        out.results[name] = metrics.verification([scores[m] for m in parts], same, folds, True, far_targets)
    return out
