"""When does joint training pay off? The two encoders against the number of training identities.

:func:`scaling_study` trains the 3DMM-CNN-like encoder (Phase I) and the Proposed network
(Phases I-III) on the first ``S`` subjects of the ``train`` protocol (``train.subjects``) for
several ``S``, with the profile's recipe otherwise unchanged, and measures each on subjects no
network saw: the 3D error of chapter 7 (similarity Procrustes on the 68 landmarks, 95 mm crop,
RMSE in mm) over the whole ``bu3dfe-like`` yaw sweep and over ``micc-like``, and the
``lfw-like`` verification accuracy of chapter 8 (10 folds). The largest ``S`` that equals the
profile's own population reuses chapter 6's networks; the others are trained once and cached
under ``data/runs/`` like any run.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ..config import Config, with_overrides
from ..methods import METHODS
from ..networks.inference import alpha_from_images, encode, reconstruct
from ..training import TrainingData, first_subjects, train_pipeline, training_data
from . import metrics
from .cache import load_morphable, load_set, net_images
from .verification import verification_table

__all__ = ["SCALING_METHODS", "aligned_errors", "held_out_aligned", "scaling_study", "subjects_for_ratio"]

#: The methods of the study (the two that differ only in the joint phase).
SCALING_METHODS = ("3DMM-CNN-like", "Proposed")


def aligned_errors(model, nets: dict, images, truth: np.ndarray, radius_mm: float) -> dict[str, np.ndarray]:
    """Per-image aligned RMSE (mm; chapter 7's measure: similarity Procrustes on the 68 landmarks,
    ``radius_mm`` crop) of the mean face and of each method of :data:`SCALING_METHODS`.

    Parameters
    ----------
    model : MorphableModel
    nets : dict phase -> network
        ``phase1`` (decoded through the 3DMM) and ``phase3``.
    images : array (N, 3, H, W) in [-1, 1]
    truth : array (N, n, 3), mm

    Returns
    -------
    dict method -> ndarray (N,) mm
    """
    truth = np.asarray(truth)
    mean = np.broadcast_to(np.asarray(model.s_mean).reshape(1, -1, 3), truth.shape)
    out = {"mean face": metrics.model_shape_error(model, mean, truth, radius_mm=radius_mm).rmse_mm}
    for name in SCALING_METHODS:
        m = METHODS[name]
        s = reconstruct(nets[m.phase], images, morphable=model if m.decode == "3dmm" else None)
        out[name] = metrics.model_shape_error(model, s, truth, radius_mm=radius_mm).rmse_mm
    return out


def held_out_aligned(trained, data, n_images: int = 1000, radius_mm: float = metrics.CROP_RADIUS_MM) -> pd.DataFrame:
    """Chapter 7's aligned, cropped 3D error on held-out images of the training subjects (chapter 6).

    Parameters
    ----------
    trained : TrainedModels
        With ``phase1`` and ``phase3`` checkpoints.
    data : TrainingData
        Its ``val`` images (every ``len(val) // n_images``-th, at most ``n_images``) and their true shapes.

    Returns
    -------
    pandas.DataFrame
        Index ``method`` (mean face, 3DMM-CNN-like, Proposed); ``rmse_mm`` (mean over images),
        ``rmse_se_mm`` (standard error), ``vs_mean_face``, ``n_images``.
    """
    step = max(1, len(data.val) // n_images)
    items = [data.val[i] for i in range(0, len(data.val), step)][:n_images]
    x = torch.stack([it["image"] for it in items])
    truth = data.model.shape(torch.stack([it["alpha_id"] for it in items]).numpy(),
                             torch.stack([it["alpha_exp"] for it in items]).numpy())
    errs = aligned_errors(data.model, {p: trained.load(p) for p in ("phase1", "phase3")}, x, truth, radius_mm)
    return pd.DataFrame({m: {"rmse_mm": float(e.mean()), "rmse_se_mm": float(e.std(ddof=1) / np.sqrt(e.size)),
                             "vs_mean_face": float(e.mean() / errs["mean face"].mean()), "n_images": int(e.size)}
                         for m, e in errs.items()}).T.rename_axis("method")


def _unseen_errors(cfg: Config, model, nets: dict) -> dict[str, np.ndarray]:
    """Per-image aligned RMSE (mm) of each method and of the mean face on bu3dfe-like's yaw sweep + micc-like."""
    radius = float(cfg.experiments.crop_radius_mm)
    parts = []
    for protocol in ("bu3dfe-like", "micc-like"):
        ds = load_set(cfg, protocol)
        sweep = getattr(ds, "sweep", None)
        idx = np.flatnonzero(np.asarray(sweep, bool)) if sweep is not None else np.arange(len(ds.label))
        parts.append(aligned_errors(model, nets, net_images(np.asarray(ds.images)[idx]),
                                    np.asarray(ds.shapes(model, idx)), radius))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _lfw_accuracy(cfg: Config, nets: dict) -> pd.DataFrame:
    """Per-fold lfw-like accuracy (%) of each method's verification feature."""
    ds = load_set(cfg, "lfw-like")
    x = net_images(np.asarray(ds.images))
    feats = {}
    for name in SCALING_METHODS:
        m = METHODS[name]  # alpha_id: the codes unscaled (chapter 8's 3DMM-CNN-like feature); c_id as it is
        net = nets[m.phase]
        feats[name] = alpha_from_images(net, x)[0] if m.feature == "alpha_id" else encode(net, x)[0]
    vt = verification_table(feats, np.asarray(ds.pairs), np.asarray(ds.same, bool), np.asarray(ds.fold),
                            far_targets=tuple(cfg.experiments.far_targets), protocol="lfw-like")
    return pd.DataFrame({n: 100 * np.asarray(vt.results[n].per_fold["accuracy"]) for n in SCALING_METHODS})


def scaling_study(cfg: Config, sizes: Sequence[int], progress: bool = False,
                  data: TrainingData | None = None) -> pd.DataFrame:
    """Held-out 3D error and lfw-like accuracy of the two encoders against the training identities.

    Parameters
    ----------
    cfg : Config
        The profile (chapter 6's); each size ``S`` trains with ``train.subjects = S``.
    sizes : sequence of int
        Numbers of training subjects, each >= 2 and at most the ``train`` protocol's.
    progress : bool
        Progress bars while loading and training.
    data : TrainingData, optional
        The profile's whole population (what ``training_data(cfg)`` returns, e.g. chapter 6's),
        reused for every size through :func:`~disentangled_face.training.first_subjects`
        instead of loading it again per size.

    Returns
    -------
    pandas.DataFrame
        One row per (size, method): ``subjects``, ``method``, ``images`` (training images),
        ``rmse_mm`` (mean aligned RMSE over the unseen test images, mm) and ``rmse_se_mm``
        (its standard error over images), ``vs_mean_face`` (the ratio to the mean face's
        error on the same images), ``lfw_accuracy`` and ``lfw_std`` (%, mean and standard
        deviation over the 10 folds), ``n_test_images``.

    Raises
    ------
    ValueError
        On an empty ``sizes``, a size outside ``[2, subjects of the train protocol]``, or a
        ``data`` that is not the profile's whole population.
    """
    if not len(sizes):
        raise ValueError("sizes must name at least one number of training subjects")
    total = cfg.synth.protocols.train.subjects
    if data is not None and (data.n_subjects != total or cfg.train.subjects not in (None, total)):
        raise ValueError(f"data must hold the profile's whole train population ({total} subjects), "
                         f"got {data.n_subjects}")
    model = load_morphable(cfg)
    rows = []
    for S in sorted(int(s) for s in sizes):
        if not 2 <= S <= total:
            raise ValueError(f"each size must lie in [2, {total}] (the train protocol's subjects), got {S}")
        run = cfg if S == total else with_overrides(cfg, {"train.subjects": S})
        sub = training_data(run, progress=progress) if data is None else first_subjects(data, S)
        tm = train_pipeline(run, data=sub, phases=("phase1", "phase2", "phase3"), progress=progress)
        nets = {p: tm.load(p) for p in ("phase1", "phase3")}
        errs, acc = _unseen_errors(run, model, nets), _lfw_accuracy(run, nets)
        for name in SCALING_METHODS:
            e = errs[name]
            rows.append({"subjects": S, "method": name, "images": len(sub.train), "rmse_mm": float(e.mean()),
                         "rmse_se_mm": float(e.std(ddof=1) / np.sqrt(e.size)),
                         "vs_mean_face": float(e.mean() / errs["mean face"].mean()),
                         "lfw_accuracy": float(acc[name].mean()), "lfw_std": float(acc[name].std(ddof=1)),
                         "n_test_images": int(e.size)})
    return pd.DataFrame(rows)


def subjects_for_ratio(scaling: pd.DataFrame, target: float = 0.75) -> pd.DataFrame:
    """Where the scaling curve would reach ``target`` × the mean face's error, by a straight line in log S.

    Fits ``vs_mean_face = a + b · log10(S)`` by least squares to each method's rows of
    :func:`scaling_study` and solves it for ``target``. This is an extrapolation from the sizes
    measured, an indication of the order of magnitude, not a prediction: the curve may bend.

    Parameters
    ----------
    scaling : pandas.DataFrame
        What :func:`scaling_study` returns (columns ``subjects``, ``method``, ``vs_mean_face``),
        with at least two sizes per method.
    target : float
        The ratio to the mean face's error to reach (the book's goal: 0.75), in (0, 1].

    Returns
    -------
    pandas.DataFrame
        Indexed by method: ``per_decade`` (b, the change of the ratio per tenfold more
        subjects), ``at_largest`` (the fitted ratio at the largest size), ``subjects_needed``
        (10^((target - a) / b); ``inf`` where the line does not fall, b >= 0), ``largest``.

    Raises
    ------
    ValueError
        On a ``target`` outside (0, 1], missing columns, or fewer than two sizes for a method.

    Examples
    --------
    >>> df = pd.DataFrame({"subjects": [100, 1000], "method": ["m", "m"], "vs_mean_face": [1.0, 0.9]})
    >>> r = subjects_for_ratio(df, 0.75)
    >>> round(float(r.loc["m", "per_decade"]), 3), round(float(r.loc["m", "subjects_needed"]))
    (-0.1, 31623)
    """
    if not 0 < target <= 1:
        raise ValueError(f"target must lie in (0, 1] (a ratio to the mean face's error), got {target}")
    missing = {"subjects", "method", "vs_mean_face"} - set(scaling.columns)
    if missing:
        raise ValueError(f"scaling lacks the columns {sorted(missing)} (pass what scaling_study returns)")
    rows = {}
    for name, g in scaling.groupby("method", sort=False):
        S = g["subjects"].to_numpy(float)
        if np.unique(S).size < 2:
            raise ValueError(f"method {name!r} has fewer than two population sizes; a line needs two")
        b, a = np.polyfit(np.log10(S), g["vs_mean_face"].to_numpy(float), 1)
        with np.errstate(over="ignore"):  # a nearly flat line: more subjects than a float holds
            needed = float(np.power(10.0, (target - a) / b)) if b < 0 else float("inf")
        rows[name] = {"per_decade": float(b), "at_largest": float(a + b * np.log10(S.max())),
                      "subjects_needed": float(needed), "largest": int(S.max())}
    return pd.DataFrame.from_dict(rows, orient="index")
