"""The training targets (paper Sec. 3.3.2): the synthetic ``train`` protocol fitted, cached.

Two kinds of targets (:data:`TARGET_KINDS`), both from the same fitter and ``cfg.fitting``:

* ``"fitted"`` (the paper's): every subject's images are fitted together
  (:func:`~disentangled_face.fitting.fit_subjects` with the labels, the shared ``alpha_id`` of
  Eq. 7); the codes become the regression targets of chapter 6;
* ``"single_image"``: every training image is fitted on its own (``fit_subjects`` with
  ``labels=None``), so a subject's images get different ``alpha_id``; the targets of the
  "3DDFA-like" rival (:data:`disentangled_face.methods.METHODS`), which learns from per-image
  3DMM fits as 3DDFA [42] does, and so shows what pooling a subject's images buys.
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

__all__ = ["targets_path", "build_targets", "load_targets", "TARGETS_VERSION", "TARGET_KINDS"]

#: Part of the cache key: bump when the targets' content changes for the same configuration.
TARGETS_VERSION = 1

#: The fitted targets :func:`build_targets` makes: the paper's multi-image fit of every subject
#: (``"fitted"``) or a fit of every image on its own (``"single_image"``).
TARGET_KINDS = ("fitted", "single_image")


def _check_kind(kind: str) -> str:
    if kind not in TARGET_KINDS:
        raise ValueError(f"kind must be one of {TARGET_KINDS}, got {kind!r}")
    return kind


def targets_path(cfg: Config, model: MorphableModel | None = None, kind: str = "fitted",
                 subjects: int | None = None) -> Path:
    """Where :func:`build_targets` writes: ``data/targets/train-<config_hash>.npz`` for the
    multi-image fit (``kind="fitted"``), ``data/targets/train-single-<config_hash>.npz`` for the
    single-image fits (``kind="single_image"``).

    The hash covers the fitter options (``cfg.fitting``), the ``train`` protocol's file name
    (itself keyed by ``cfg.synth`` and the model's name and sizes), :data:`TARGETS_VERSION` and,
    for ``"single_image"``, the kind (the ``"fitted"`` key is the one it had before the kinds
    existed); ``cfg.targets.chunk`` and ``workers`` do not change the targets and are not part of it.
    ``subjects`` (the first that many subjects only, see :func:`build_targets`) joins the key when given.

    Raises
    ------
    ValueError
        On a ``kind`` not in :data:`TARGET_KINDS`.
    """
    from ..data.protocols import protocol_path

    _check_kind(kind)
    proto = protocol_path("train", cfg.synth, model)
    key = dict(fitting=cfg.fitting.to_dict(), protocol=proto.name, version=TARGETS_VERSION)
    if subjects is not None:
        key["subjects"] = int(subjects)
    if kind == "fitted":
        return data_dir("targets") / f"train-{config_hash(key)}.npz"
    return data_dir("targets") / f"train-single-{config_hash({**key, 'kind': kind})}.npz"


def build_targets(cfg: Config, model: MorphableModel | None = None, overwrite: bool = False,
                  progress: bool = False, kind: str = "fitted", subjects: int | None = None) -> Path:
    """Fit the synthetic ``train`` protocol and store the training targets (paper Sec. 3.3.2).

    ``kind="fitted"`` (the paper's): every subject's images are fitted together
    (:func:`fit_subjects` with ``cfg.fitting`` and the labels, the shared ``alpha_id`` of
    Eq. 7), batched over ``cfg.targets.chunk`` subjects at a time. ``kind="single_image"``:
    every image is fitted on its own (:func:`fit_subjects` with ``labels=None``, the same
    ``cfg.fitting``), batched over ``cfg.targets.chunk`` subjects' worth of images at a time
    (the same memory per batch). Both run on ``cfg.targets.workers`` processes, from the
    protocol's 68 landmarks (the protocol is built from ``cfg.synth`` when missing). The file
    (written atomically, reused when present) holds per image:
    ``index`` (N,), ``label`` (N,) (the subject), ``alpha_id`` (N, k_id) (the subject's shared
    code; for ``"single_image"`` the image's own), ``alpha_exp`` (N, k_exp), ``R`` (N, 3, 3),
    ``f`` (N,), ``t`` (N, 2) pixels, ``yaw``, ``pitch``, ``roll`` (N,) radians, ``rmse_px``
    (N,), and per fitted unit U (a subject, or for ``"single_image"`` an image: U = N)
    ``subject_n_iter`` (U,), ``subjects`` (U,) (the subject labels, or the image indices),
    ``objective`` (U, n_steps). The fitted shape of image i is
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
    kind : {"fitted", "single_image"}
        Which targets (:data:`TARGET_KINDS`).
    subjects : int, optional
        Fit only the images of the first ``subjects`` subjects (in the protocol's label order;
        ``index`` then holds their rows), e.g. chapter 11's smaller beyond-basis population.

    Returns
    -------
    Path
        :func:`targets_path` of ``kind``.

    Raises
    ------
    ValueError
        On a ``kind`` not in :data:`TARGET_KINDS`, ``subjects`` not in [1, the protocol's
        subjects] (and as :func:`fit_subjects`).
    """
    from ..data import build_protocol, load_protocol

    if model is None:
        model = load_model(cfg.model)
    path = targets_path(cfg, model, kind, subjects)
    if path.is_file() and not overwrite:
        return path
    ds = load_protocol(build_protocol("train", cfg.synth, model=model, progress=progress))
    labels = np.asarray(ds.label)
    index = np.arange(len(labels))
    if subjects is not None:
        names = np.unique(labels)
        if not 1 <= int(subjects) <= len(names):
            raise ValueError(f"subjects must lie in [1, {len(names)}] (the train protocol's), got {subjects}")
        index = np.flatnonzero(np.isin(labels, names[:int(subjects)]))
        labels = labels[index]
    lms = np.asarray(ds.landmarks, np.float64)[index]
    chunk = cfg.targets.chunk
    if kind == "single_image" and chunk:  # subjects per batch -> as many images as those subjects have
        chunk = int(chunk) * -(-len(labels) // len(np.unique(labels)))
    fit = fit_subjects(model, lms, labels if kind == "fitted" else None,
                       cfg.fitting, chunk=chunk, workers=cfg.targets.workers)
    out = dict(index=index, label=labels, alpha_id=fit.alpha_id.astype(np.float32),
               alpha_exp=fit.alpha_exp.astype(np.float32), R=fit.R.astype(np.float32), f=fit.f.astype(np.float32),
               t=fit.t.astype(np.float32), yaw=fit.yaw, pitch=fit.pitch, roll=fit.roll, rmse_px=fit.rmse_px,
               subjects=fit.subjects, subject_n_iter=fit.subject_n_iter, objective=fit.objective)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **out)
    logger.info("fitted %d images of %d subjects (%s) -> %s", len(labels), len(np.unique(labels)), kind, path)
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
