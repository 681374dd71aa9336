"""The training data (Sec. 3.3): the ``train`` protocol with its targets, split per subject.

:func:`training_data` builds (or loads) the synthetic ``train`` protocol, its targets (the
multi-image 3DMM fits of Sec. 3.3.2, the single-image fits of the 3DDFA-like rival, or the
true coefficients) and splits every subject's images into training and held-out ones
(``train.val_fraction``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import Config
from ..data.torch_dataset import FaceImageDataset

__all__ = ["TrainingData", "training_data", "first_subjects", "split_per_subject", "TARGETS"]

#: What the networks regress: the multi-image 3DMM fits (``"fitted"``, the paper's), the 3DMM fit
#: of every image on its own (``"single_image"``, the 3DDFA-like rival's) or the synthetic data's
#: true coefficients (``"ground_truth"``).
TARGETS = ("fitted", "single_image", "ground_truth")


@dataclass
class TrainingData:
    """The ``train`` population split for training (Sec. 3.3): what :func:`training_data` returns.

    Attributes
    ----------
    train : FaceImageDataset
        Items ``{image, label, alpha_id, alpha_exp, ...}`` with the **fitted** (with
        ``targets="single_image"`` each image's own fit; with ``targets="ground_truth"`` the
        true) coefficients as targets.
    val : FaceImageDataset
        Held-out images of the same subjects: ``alpha_id`` / ``alpha_exp`` are the ground-truth
        coefficients (for the 3D error), ``fit_alpha_id`` / ``fit_alpha_exp`` the fitted ones.
    model : MorphableModel
    n_subjects : int
    targets : str
    protocol_path : Path
    """

    train: Dataset
    val: Dataset
    model: Any
    n_subjects: int
    targets: str
    protocol_path: Path


def first_subjects(data: TrainingData, n_subjects: int) -> TrainingData:
    """``data`` restricted to its first ``n_subjects`` subjects (labels ``0 .. n_subjects - 1``).

    The same split as :func:`training_data` with ``train.subjects = n_subjects`` gives, without
    loading and resizing the population again (the scaling study of chapter 6).

    Raises
    ------
    ValueError
        When ``n_subjects`` is not in ``[1, data.n_subjects]``, or a split is not a
        :class:`~disentangled_face.data.FaceImageDataset`.
    """
    from ..data import FaceImageDataset

    if not 1 <= int(n_subjects) <= data.n_subjects:
        raise ValueError(f"n_subjects must lie in [1, {data.n_subjects}], got {n_subjects}")
    if not (isinstance(data.train, FaceImageDataset) and isinstance(data.val, FaceImageDataset)):
        raise ValueError("first_subjects needs the FaceImageDataset splits that training_data returns")
    S = int(n_subjects)
    train, val = (d.subset(np.flatnonzero(d.labels < S)) for d in (data.train, data.val))
    return TrainingData(train, val, data.model, S, data.targets, data.protocol_path)


def split_per_subject(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per subject, hold out ``round(fraction * count)`` images (at least one when fraction > 0,
    never all); deterministic in ``seed``. Returns sorted (train, held-out) indices."""
    rng = np.random.default_rng(seed)
    tr, va = [], []
    for s in np.unique(labels):
        idx = np.flatnonzero(labels == s)
        idx = idx[rng.permutation(len(idx))]
        k = 0 if fraction == 0 else min(len(idx) - 1, max(1, int(round(fraction * len(idx)))))
        va.extend(idx[:k])
        tr.extend(idx[k:])
    return np.sort(np.asarray(tr, np.int64)), np.sort(np.asarray(va, np.int64))


def _fitted_targets(cfg: Config, sset, progress: bool, model, kind: str = "fitted") -> tuple[np.ndarray, np.ndarray]:
    from ..fitting import build_targets, load_targets

    t = load_targets(build_targets(cfg, model=model, progress=progress, kind=kind))
    a_id, a_exp = np.asarray(t["alpha_id"], np.float32), np.asarray(t["alpha_exp"], np.float32)
    lab = np.asarray(t["label"])
    idx = np.asarray(t["index"]) if "index" in t else np.arange(len(a_id))
    if len(a_id) != len(sset) or not np.array_equal(np.sort(idx), np.arange(len(sset))):
        raise ValueError(f"the fitted targets ({len(a_id)} images) do not match the train protocol "
                         f"({len(sset)} images): rebuild them with the same profile")
    order = np.argsort(idx)  # rows in protocol order
    a_id, a_exp, lab = a_id[order], a_exp[order], lab[order]
    if not np.array_equal(lab, sset.label):
        raise ValueError("the fitted targets' labels differ from the train protocol's: rebuild them")
    return a_id, a_exp


def _network_images(sset, size: tuple[int, int]) -> torch.Tensor:
    """All images of a protocol as network inputs (N, 3, H, W), resized once to the encoder's size."""
    from ..data.loaders import to_network_input

    raw = np.asarray(sset.images)  # (N, 112, 96, 3) uint8
    imgs = []
    for i in range(0, len(raw), 256):
        x = torch.from_numpy(to_network_input(raw[i:i + 256]))
        if tuple(x.shape[-2:]) != tuple(size):  # the encoder's own resize, done once
            x = torch.nn.functional.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False,
                                                antialias=True)
        imgs.append(x)
    return torch.cat(imgs)


def training_data(cfg: Config, targets: str = "fitted", progress: bool = True,
                  in_memory: bool | None = None) -> TrainingData:
    """The ``train`` protocol with its targets, split into training and held-out images.

    Parameters
    ----------
    cfg : Config
        The whole profile (``synth``, ``model``, ``fitting``, ``targets``, ``network``, ``train``).
    targets : {"fitted", "single_image", "ground_truth"}
        ``"fitted"`` (the paper): the multi-image 3DMM fit (``fitting.build_targets``);
        ``"single_image"``: every image's own single-image fit (``fitting.build_targets`` with
        ``kind="single_image"``, the 3DDFA-like rival); ``"ground_truth"``: the synthetic data's
        true coefficients (an upper bound). The held-out split's ``fit_alpha_*`` are the same
        kind of fit.
    in_memory : bool, optional
        Keep the images in memory, resized to ``network.input_size`` (default: when they take
        under 2 GB); else stream them from the HDF5 file.

    Raises
    ------
    ValueError
        On an unknown ``targets``, or ``train.subjects`` above the protocol's subjects.
    """
    from ..data import build_protocol, load_protocol
    from ..shape import load_model

    if targets not in TARGETS:
        raise ValueError(f"targets must be one of {TARGETS}, got {targets!r}")
    model = load_model(cfg.model)
    path = build_protocol("train", cfg.synth, model=model, progress=progress)
    sset = load_protocol(path)
    if targets == "ground_truth":
        a_fit, e_fit = sset.alpha_id.astype(np.float32), sset.alpha_exp.astype(np.float32)
    else:
        a_fit, e_fit = _fitted_targets(cfg, sset, progress, model, kind=targets)
    _, labels = np.unique(sset.label, return_inverse=True)
    tr, va = split_per_subject(labels, cfg.train.val_fraction, cfg.train.seed)
    n_subjects = int(labels.max()) + 1
    if cfg.train.subjects is not None:  # the first train.subjects subjects only (the scaling study)
        if cfg.train.subjects > n_subjects:
            raise ValueError(f"train.subjects = {cfg.train.subjects} but the train protocol has {n_subjects} subjects")
        n_subjects = int(cfg.train.subjects)
        tr, va = tr[labels[tr] < n_subjects], va[labels[va] < n_subjects]
    H, W = cfg.network.input_size
    if in_memory is None:
        in_memory = len(sset) * 3 * H * W * 4 < 2 * 2**30
    gt_id, gt_exp = sset.alpha_id.astype(np.float32), sset.alpha_exp.astype(np.float32)
    held_out = {"fit_alpha_id": a_fit[va], "fit_alpha_exp": e_fit[va]}
    if in_memory:
        imgs, lms = _network_images(sset, (H, W)), np.asarray(sset.landmarks, np.float32)
        train = FaceImageDataset.from_tensors(imgs[tr], labels[tr], a_fit[tr], e_fit[tr], landmarks=lms[tr], index=tr)
        val = FaceImageDataset.from_tensors(imgs[va], labels[va], gt_id[va], gt_exp[va], landmarks=lms[va],
                                            extra=held_out, index=va)
    else:
        train = FaceImageDataset(sset, tr, labels=labels[tr], alpha_id=a_fit[tr], alpha_exp=e_fit[tr])
        val = FaceImageDataset(sset, va, labels=labels[va], alpha_id=gt_id[va], alpha_exp=gt_exp[va], extra=held_out)
    return TrainingData(train, val, model, n_subjects, targets, Path(path))
