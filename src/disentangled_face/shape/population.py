"""The mean shape of a population of faces, against the model's mean (the ``s_mean`` of Eq. 2).

The paper's ``s_mean`` is "the mean 3D face shape computed across all training samples with
neutral expression" (Sec. 3.2): the mean of its training set's neutral shapes, which for
CASIA-WebFace are its fitted 3DMM identity shapes. The book decodes around the morphable
model's own mean instead. :func:`neutral_mean` computes the paper's kind of mean from any
population's identity codes (the true codes of a synthetic population, or the fitted ones) and
its distance from the model's mean; :func:`expected_mean_rms` says how far a mean of ``N``
faces drawn from the model's prior (``alpha_id ~ N(0, I)``) is expected to lie from it.

>>> from disentangled_face.shape import MorphableModel
>>> toy = MorphableModel.toy(n=60, k_id=4, k_exp=2, seed=0)
>>> mean, rms = neutral_mean(toy, np.zeros((3, 4)))
>>> bool(np.allclose(mean, toy.mean)), rms
(True, 0.0)
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

__all__ = ["neutral_mean", "expected_mean_rms"]


def neutral_mean(model, alpha_id: Any, labels: Optional[Any] = None) -> tuple[np.ndarray, float]:
    """Mean of a population's neutral (identity) shapes and its RMS distance from the model's mean.

    The neutral shape of code ``a`` is ``s_mean + A_id a`` (:meth:`.MorphableModel.identity_shape`),
    linear in ``a``, so the mean shape is the identity shape of the mean code.

    Parameters
    ----------
    model : MorphableModel
    alpha_id : array (N, k_id)
        Identity codes, one row per image or per subject.
    labels : array (N,), optional
        The subject of each row. Given, each subject counts once: its rows are averaged first
        (the fitted targets repeat a subject's shared code on every one of its images; a
        subject with more images would otherwise weigh more).

    Returns
    -------
    mean : ndarray (n, 3), float64, mm
        The population's mean neutral shape.
    rms_mm : float
        Its RMS distance per vertex from ``model.mean``,
        ``sqrt(mean over vertices of |mean_v - s_mean_v|^2)``, mm (no alignment: both shapes are
        in the model's frame).

    Raises
    ------
    ValueError
        When ``alpha_id`` is not (N, k_id) with N >= 1 and finite, or ``labels`` is not (N,).

    Source: the paper's definition of ``s_mean`` (Sec. 3.2, below Eq. 2).
    """
    a = np.asarray(alpha_id, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] != model.n_id:
        raise ValueError(f"alpha_id must have shape (N >= 1, {model.n_id}), got {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("alpha_id has non-finite entries")
    if labels is not None:
        lab = np.asarray(labels)
        if lab.shape != (a.shape[0],):
            raise ValueError(f"labels must have shape ({a.shape[0]},), got {lab.shape}")
        _, inv = np.unique(lab, return_inverse=True)
        per_subject = np.zeros((inv.max() + 1, a.shape[1]))
        np.add.at(per_subject, inv, a)
        a = per_subject / np.bincount(inv)[:, None]
    mean_code = a.mean(axis=0)
    mean = np.asarray(model.identity_shape(mean_code), dtype=np.float64)
    d = mean - np.asarray(model.mean, dtype=np.float64)
    return mean, float(np.sqrt((d ** 2).sum(axis=1).mean()))


def expected_mean_rms(model, n_subjects: int) -> float:
    """The RMS distance per vertex (mm) expected between ``model.mean`` and the mean neutral shape
    of ``n_subjects`` faces drawn from the prior ``alpha_id ~ N(0, I)``.

    The mean code of N standard normal draws is ``N(0, I / N)``, so the squared distance of the
    mean shape, summed over vertices, has expectation ``|A_id|_F^2 / N``; the value returned is
    ``sqrt(|A_id|_F^2 / (n N))`` (the root of the expected mean square over the n vertices).

    Raises
    ------
    ValueError
        When ``n_subjects`` < 1.
    """
    if int(n_subjects) < 1:
        raise ValueError(f"n_subjects must be >= 1, got {n_subjects}")
    basis = np.asarray(model.id_basis, dtype=np.float64)  # (k_id, n, 3) mm per unit code
    return float(np.sqrt((basis ** 2).sum() / (model.n_vertices * int(n_subjects))))
