"""The runners of chapters 7-11: trained models and test protocols in, the paper's tables out.

Each runner takes the whole validated :class:`~disentangled_face.config.Config` (it combines
the data, the fitter, the networks and ``cfg.experiments``), gets every method's outputs from
:mod:`.cache` (computed once, cached under ``data/experiments/<hash>/``) and calls the table
builders: :func:`run_reconstruction` (Tables 1-2, Figs. 6-7), :func:`run_verification`
(Table 3), :func:`run_speed` (Table 4), :func:`run_learned_bases` (Fig. 9) and :func:`run_all`
(everything :func:`.claims.claims` judges).
"""

from __future__ import annotations

import copy
from typing import Callable, Mapping

import numpy as np
import pandas as pd
import torch

from .. import fitting
from ..config import Config
from ..paths import atomic_path
from .bases import learned_bases
from .cache import (cache_dir, fit_overrides, load_morphable, load_set, method_outputs, net_images,
                    trained_networks)
from ..networks.inference import features, reconstruct
from ..methods import active_methods, reconstruction_methods, verification_methods
from .reconstruction import ReconResult, reconstruction_micc, reconstruction_vs_yaw, rmse_per_expression
from .speed import speed_table
from .verification import VerificationTable, sequence_features, verification_table

__all__ = ["run_reconstruction", "run_verification", "run_speed", "cached_speed", "run_learned_bases", "run_all"]


def _yaw_deg(ds) -> np.ndarray:
    return np.degrees(np.asarray(ds.yaw, dtype=np.float64))


def _recon_names(cfg: Config) -> list[str]:
    return [m.name for m in reconstruction_methods(cfg)]


def _bu3dfe_results(cfg: Config, model, radius: float) -> dict[str, ReconResult]:
    """Table 1 (the neutral yaw sweep) and Figs. 6-7 (the expression images) on bu3dfe-like."""
    res = {}
    ds = load_set(cfg, "bu3dfe-like")
    sweep = np.asarray(getattr(ds, "sweep", np.zeros(len(ds.label), bool)), bool)
    groups = {"yaw": np.flatnonzero(sweep) if sweep.any() else np.arange(len(ds.label)),
              "expression": np.flatnonzero(~sweep) if (~sweep).any() else np.arange(len(ds.label))}
    names = _recon_names(cfg)
    for key, idx in groups.items():
        outs = method_outputs(cfg, "bu3dfe-like", idx)
        truth = np.asarray(ds.shapes(model, idx))
        recon = {m: outs[m]["shape"] for m in names}
        if key == "yaw":
            res["yaw"] = reconstruction_vs_yaw(model, recon, truth, _yaw_deg(ds)[idx], radius_mm=radius,
                                               subjects=np.asarray(ds.label)[idx])
        else:
            expr = np.asarray(ds.expression)[idx].astype(str)
            res["expression"] = rmse_per_expression(model, recon, truth, expr, radius_mm=radius)
            ident_truth = model.identity_shape(np.asarray(ds.alpha_id)[idx])
            ident = {m: outs[m]["identity_shape"] for m in names}
            res["expression_identity"] = rmse_per_expression(model, ident, ident_truth, expr, radius_mm=radius)
    return res


def run_reconstruction(cfg: Config) -> dict:
    """Tables 1-2 and Figs. 6-7 on the bu3dfe-like and micc-like protocols.

    Methods: :func:`.methods.reconstruction_methods` of ``cfg`` (the mean face, 3DMM fitting,
    the networks of the main run, and the rivals of ``experiments.rivals``: 3DDFA-like).

    Returns
    -------
    dict
        ``yaw`` (Table 1, the neutral yaw sweep), ``expression`` (Fig. 6, full shapes of the
        expression images), ``expression_identity`` (Fig. 7, identity components against the
        ground-truth identity shapes), ``micc`` (Table 2): :class:`ReconResult` each.
    """
    model = load_morphable(cfg)
    radius = float(cfg.experiments.crop_radius_mm)
    res = _bu3dfe_results(cfg, model, radius)
    ds = load_set(cfg, "micc-like")
    idx = np.arange(len(ds.label))
    outs = method_outputs(cfg, "micc-like", idx)
    res["micc"] = reconstruction_micc(model, {m: outs[m]["shape"] for m in _recon_names(cfg)},
                                      np.asarray(ds.shapes(model, idx)), radius_mm=radius)
    return res


def run_verification(cfg: Config, protocol: str = "lfw-like") -> VerificationTable:
    """Table 3 on ``lfw-like`` (pairs of images) or ``ytf-like`` (pairs of sequences, each
    represented by the mean of its frame features).

    Methods: texture, 3DMM-CNN-like, Proposed, the rivals of ``experiments.rivals``
    (3DDFA-like, its regressed ``alpha_id``) and the fusions (:data:`.methods.FUSIONS`);
    with ``cfg.experiments.fit_verification`` also the single-image fit's ``alpha_id`` (the
    paper's 3DMM row, and the slowest to compute: every test image is fitted).
    """
    exp = cfg.experiments
    ds = load_set(cfg, protocol)
    outs = method_outputs(cfg, protocol, shapes=False, fit=bool(exp.fit_verification))
    feats = {m.name: outs[m.name]["feature"] for m in verification_methods(cfg) if m.name in outs}
    pairs = np.asarray(ds.pairs)
    if protocol.startswith("ytf"):
        seq = np.asarray(ds.sequence)
        agg = {}
        for m, F in feats.items():
            agg[m], ids = sequence_features(F, seq)
        pairs = np.searchsorted(ids, pairs)
        feats = agg
    return verification_table(feats, pairs, np.asarray(ds.same, bool), np.asarray(ds.fold),
                              far_targets=tuple(exp.far_targets), protocol=protocol)


def _per_image(f: Callable) -> Callable:
    return lambda x: [f(x[i:i + 1]) for i in range(len(x))]


def _timed_methods(cfg: Config) -> list:
    """The network methods Table 4 times: the main run's and the rivals of ``experiments.rivals``."""
    return [m for m in active_methods(cfg) if m.source == "checkpoint"]


def _network_timers(cfg: Config, nets: Mapping, model, x, batch_size: int, one_by_one: bool) -> dict:
    """Timed callables of every network method (:func:`_timed_methods`), image to shape (or, for
    the texture network, to its feature: "<name> (feature only)"), in table order. A rival is
    timed like the others: 3DDFA-like is the 3DMM-CNN-like network (the same encoder, decoded
    through the 3DMM) with other weights, so its time matches that row's by construction, and
    timing it measures the run-to-run spread of two equal computations."""
    out = {}
    for m in _timed_methods(cfg):
        net = nets[m.network]
        if m.has_shape:
            morphable = model if m.decode == "3dmm" else None
            f = (lambda x, net=net, morphable=morphable: reconstruct(net, x, batch_size, morphable=morphable))
        else:
            f = (lambda x, net=net: features(net, x, batch_size))
        out[m.name if m.has_shape else f"{m.name} (feature only)"] = (_per_image(f) if one_by_one else f, x, len(x))
    return out


def _cpu_speed(cfg: Config, model, nets: Mapping, x1, xb, lms, reps: int) -> list[pd.DataFrame]:
    """Table 4 on the CPU: every method one image at a time, then the networks batched."""
    opts = fit_overrides(cfg.experiments)
    fit = (lambda L: [fitting.fit_single_image(model, lm, options=cfg.fitting, **opts) for lm in L], lms, len(x1))
    t1 = speed_table({"3DMM fitting": fit, **_network_timers(cfg, nets, model, x1, 1, one_by_one=True)},
                     repeats=reps, device="cpu")
    t1["batch"] = 1
    bs = cfg.experiments.speed_batch
    tb = speed_table(_network_timers(cfg, nets, model, xb, bs, one_by_one=False), repeats=reps, device="cpu")
    tb["batch"] = len(xb)
    return [t1, tb]


def _gpu_speed(cfg: Config, model, nets: Mapping, x1, xb, reps: int) -> list[pd.DataFrame]:
    """Table 4 on the first CUDA device: the networks, one image at a time and batched."""
    g = {m.network: copy.deepcopy(nets[m.network]).cuda() for m in _timed_methods(cfg)}
    name = torch.cuda.get_device_name(0)
    frames = []
    for bs, x in ((1, x1), (len(xb), xb)):
        t = speed_table(_network_timers(cfg, g, model, x, bs, one_by_one=bs == 1), repeats=reps,
                        device=f"cuda ({name})", sync=torch.cuda.synchronize)
        t["batch"] = bs
        frames.append(t)
    return frames


def run_speed(cfg: Config, gpu: bool | None = None) -> pd.DataFrame:
    """Table 4 measured on this machine: ms per image of each method, batch 1 and batched.

    Times the full path from image (or landmarks, for fitting) to a dense 3D shape:
    ``3DMM fitting`` (:func:`fitting.fit_single_image` per image, options ``cfg.fitting``),
    ``3DMM-CNN-like`` (Phase I encoder + 3DMM), the rivals of ``experiments.rivals``
    (``3DDFA-like``: the same network with the weights of its own run, so the same time by
    construction), ``Proposed`` (encoder + decoders), and the texture network's feature;
    ``cfg.experiments`` gives the images timed (``speed_images``),
    the batch (``speed_batch``) and the repeats (``speed_repeats``, the median is reported).
    On a CUDA machine (``gpu`` None = when available) the networks are timed on the GPU too.
    The table is also written to ``cache_dir(cfg)/speed.csv`` for chapter 12.

    Returns
    -------
    DataFrame indexed by (method, device, batch): ``ms/image``, ``× Proposed``, ``CPU threads``.
    """
    exp = cfg.experiments
    model = load_morphable(cfg)
    nets = trained_networks(cfg)
    ds = load_set(cfg, "lfw-like")
    x1 = net_images(ds.images[:exp.speed_images])
    xb = net_images(ds.images[:exp.speed_batch])
    lms = np.asarray(ds.landmarks[:exp.speed_images])
    frames = _cpu_speed(cfg, model, nets, x1, xb, lms, exp.speed_repeats)
    if gpu is None:
        gpu = torch.cuda.is_available()
    if gpu:
        frames += _gpu_speed(cfg, model, nets, x1, xb, exp.speed_repeats)
    df = pd.concat(frames)
    df["CPU threads"] = torch.get_num_threads()
    df.loc[df.index == "3DMM fitting", "CPU threads"] = int(cfg.fitting.threads or torch.get_num_threads())
    out = df.reset_index().set_index(["method", "device", "batch"])
    with atomic_path(cache_dir(cfg) / "speed.csv", suffix=".csv") as tmp:
        out.to_csv(tmp)
    return out


def cached_speed(cfg: Config) -> pd.DataFrame | None:
    """The speed table chapter 9 measured (batch 1, CPU rows, indexed by method), or ``None``."""
    p = cache_dir(cfg) / "speed.csv"
    if not p.is_file():
        return None
    df = pd.read_csv(p)
    df = df[(df["batch"] == 1) & (df["device"] == "cpu")].set_index("method")
    return df


def run_learned_bases(cfg: Config) -> dict:
    """Fig. 9: the decoders' bases after Phase II and after Phase III, with :func:`learned_bases` stats.

    Returns
    -------
    dict
        ``before`` and ``after`` (identity (k_id, n, 3), residual (k_exp, n, 3)) mm per unit
        code, ``stats`` (the :func:`learned_bases` dict) and ``model``.
    """
    nets = trained_networks(cfg)
    model = load_morphable(cfg)
    before, after = nets["phase2"].bases(), nets["phase3"].bases()
    return {"before": before, "after": after, "stats": learned_bases(before, after, model), "model": model}


def run_all(cfg: Config, speed: str = "cached") -> dict:
    """Every result :func:`.claims.claims` uses: reconstruction, verification on both protocols,
    the learned bases and speed.

    ``speed="cached"`` reads chapter 9's measurement (measuring it when absent); ``"measure"``
    always measures; ``"skip"`` leaves it out.

    Raises
    ------
    ValueError
        On another ``speed``.
    """
    if speed not in ("cached", "measure", "skip"):
        raise ValueError(f"speed must be 'cached', 'measure' or 'skip', got {speed!r}")
    res = run_reconstruction(cfg)
    res["lfw"] = run_verification(cfg, "lfw-like")
    res["ytf"] = run_verification(cfg, "ytf-like")
    res["bases"] = run_learned_bases(cfg)["stats"]
    if speed != "skip":
        sp = cached_speed(cfg) if speed == "cached" else None
        if sp is None:
            run_speed(cfg)
            sp = cached_speed(cfg)
        res["speed"] = sp
    return res
