"""The training targets (paper Sec. 3.3.2): the synthetic ``train`` protocol fitted, cached.

Every subject's images are fitted together (:func:`~disentangled_face.fitting.fit_subjects`,
the shared ``alpha_id`` of Eq. 7); the codes become the regression targets of chapter 6.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..config import Config
from ..paths import atomic_path, config_hash, data_dir
from ..shape import MorphableModel, load_model
from .api import fit_subjects

logger = logging.getLogger(__name__)

__all__ = ["targets_path", "build_targets", "load_targets", "TARGETS_VERSION"]

#: Part of the cache key: bump when the targets' content changes for the same configuration.
TARGETS_VERSION = 1


def targets_path(cfg: Config, model: MorphableModel | None = None) -> Path:
    """Where :func:`build_targets` writes: ``data/targets/train-<config_hash>.npz``.

    The hash covers the fitter options (``cfg.fitting``), the ``train`` protocol's file name
    (itself keyed by ``cfg.synth`` and the model's name and sizes) and :data:`TARGETS_VERSION`;
    ``cfg.targets.chunk`` does not change the targets and is not part of it.
    """
    from ..data.protocols import protocol_path

    proto = protocol_path("train", cfg.synth, model)
    key = dict(fitting=cfg.fitting.to_dict(), protocol=proto.name, version=TARGETS_VERSION)
    return data_dir("targets") / f"train-{config_hash(key)}.npz"


def build_targets(cfg: Config, model: MorphableModel | None = None, overwrite: bool = False,
                  progress: bool = False) -> Path:
    """Fit the synthetic ``train`` protocol and store the training targets (paper Sec. 3.3.2).

    Every subject's images are fitted together (:func:`fit_subjects` with ``cfg.fitting``, the
    shared ``alpha_id`` of Eq. 7), batched over ``cfg.targets.chunk`` subjects at a time, from
    the protocol's 68 landmarks (the protocol is built from ``cfg.synth`` when missing). The
    file (written atomically, reused when present) holds per image:
    ``index`` (N,), ``label`` (N,), ``alpha_id`` (N, k_id) (the subject's shared code),
    ``alpha_exp`` (N, k_exp), ``R`` (N, 3, 3), ``f`` (N,), ``t`` (N, 2), ``yaw``, ``pitch``,
    ``roll`` (N,) radians, ``rmse_px`` (N,), and ``subject_n_iter`` (S,), ``subjects`` (S,),
    ``objective`` (S, n_steps). The fitted shape of image i is
    ``model.shape(alpha_id[i], alpha_exp[i])``.

    Parameters
    ----------
    cfg : Config
        The whole configuration (its ``synth``, ``fitting``, ``targets`` and ``model`` sections).
    model : MorphableModel, optional
        Default: ``shape.load_model(cfg.model)`` (ICT-FaceKit).
    overwrite : bool
        Refit even when the file exists.
    progress : bool
        Show the progress of rendering the protocol, when it has to be built.

    Returns
    -------
    Path
        ``data/targets/train-<config_hash>.npz``.
    """
    from ..data import build_protocol, load_protocol

    if model is None:
        model = load_model(cfg.model)
    path = targets_path(cfg, model)
    if path.is_file() and not overwrite:
        return path
    ds = load_protocol(build_protocol("train", cfg.synth, model=model, progress=progress))
    fit = fit_subjects(model, np.asarray(ds.landmarks, np.float64), np.asarray(ds.label), cfg.fitting,
                       chunk=cfg.targets.chunk, workers=cfg.targets.workers)
    out = dict(index=np.arange(len(fit.label)), label=fit.label, alpha_id=fit.alpha_id.astype(np.float32),
               alpha_exp=fit.alpha_exp.astype(np.float32), R=fit.R.astype(np.float32), f=fit.f.astype(np.float32),
               t=fit.t.astype(np.float32), yaw=fit.yaw, pitch=fit.pitch, roll=fit.roll, rmse_px=fit.rmse_px,
               subjects=fit.subjects, subject_n_iter=fit.subject_n_iter, objective=fit.objective)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **out)
    logger.info("fitted %d images of %d subjects -> %s", len(fit.label), len(fit.subjects), path)
    return path


def load_targets(path: str | Path) -> dict[str, np.ndarray]:
    """Read a targets file written by :func:`build_targets` (dict of arrays, see there).

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    ValueError
        When a required array is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"targets file not found: {path} (build it with fitting.build_targets)")
    with np.load(path, allow_pickle=False) as z:
        out = {k: z[k] for k in z.files}
    need = ("index", "label", "alpha_id", "alpha_exp", "R", "f", "t")
    missing = [k for k in need if k not in out]
    if missing:
        raise ValueError(f"{path} lacks {missing}; expected the arrays {need}")
    return out
