"""Training: the three phases of the paper (Sec. 3.3.3), the baselines, checkpoints and DDP.

Phases (each trains a subset of :class:`~disentangled_face.nets.DisentangledFaceNet`):

* ``phase1``: the encoder and the two heads regress the scaled fitted coefficients,
  ``c_id* = alpha_id / scale_id``, ``c_res* = alpha_exp / scale_exp``, with the Euclidean loss
  :func:`~disentangled_face.losses.code_regression_loss`. Alone, this is the "3DMM-CNN-like"
  baseline (coefficients regressed from the image, shape from the 3DMM).
* ``phase2``: the two decoders, separately: ``dec_id(c_id*)`` regresses the fitted identity
  deformation ``Delta s_Id = A_id alpha_id`` and ``dec_res(c_res*)`` the fitted expression part
  ``Delta s_Res = A_exp alpha_exp`` (both L_R in mm², summed); inputs are the target codes.
* ``phase3``: everything end to end from the Phase I/II weights with
  ``L = lambda_r L_R + L_C`` (Eq. 5), ``lambda_r = 0.5`` until the epoch loss saturates
  (no relative improvement larger than ``plateau_min_delta`` for ``plateau_patience`` epochs,
  or ``epochs`` epochs at most), then ``lambda_r = 1.0`` for ``epochs_after_switch`` epochs.
  The classifier on ``c_id`` starts untrained.
* ``texture``: the "texture network" baseline, :class:`~disentangled_face.nets.TextureNet`,
  SphereFace-20 trained for identification only (softmax over the training subjects).

Datasets are any ``torch.utils.data.Dataset`` of dicts with ``image`` (3, H, W) float in
[-1, 1], ``label`` int64 (0-based training subject), ``alpha_id`` (k_id,) and ``alpha_exp``
(k_exp,): the **fitted** coefficients of the image (Sec. 3.3.2).

Runs are resumable: a state checkpoint (``<phase>.state.pt``) every ``checkpoint_every`` steps
holds the weights, the optimiser, the AMP grad scaler, the step, the sampler's epoch and
position, the Phase III plateau state and the torch / numpy / python RNG states of every rank;
the learning rate is a pure function of the step. ``resume=True`` continues at that step and
gives the parameters of an uninterrupted run. The final weights go to ``<phase>.pt``; per-step
metrics to ``<phase>.csv``, per-epoch ones to ``<phase>_epochs.csv``. All checkpoints hold only
tensors and primitive containers (``torch.load(weights_only=True)``) and the hash of the
config that made them; loading one from another config raises :class:`CheckpointMismatchError`.

Command line::

    python -m disentangled_face.train --config book|paper|path.yaml [--phase all|phase1|...] [--resume]
    torchrun --nproc_per_node=8 -m disentangled_face.train --config paper
"""

from __future__ import annotations

import argparse
import copy
import csv
import math
import os
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from . import losses
from .config import ConfigError, load_profile
from .nets import (CodeScaler, DisentangledFaceNet, TextureNet, build_from_arch,
                   validate_network_config)
from .paths import atomic_path, config_hash, data_dir

PHASES = ("phase1", "phase2", "phase3", "texture")
CHECKPOINT_FORMAT = 1


class CheckpointMismatchError(ValueError):
    """A checkpoint was made by another config, phase or network than the one asked for."""


# =============================================================================== config
_PHASE_DEFAULTS: dict[str, Any] = {
    "optimizer": "adam", "lr": 1e-3, "momentum": 0.9, "weight_decay": 0.0,
    "schedule": "constant", "milestones": [], "gamma": 0.1, "warmup_steps": 0,
    "min_lr_factor": 0.0, "epochs": 1, "batch_size": None,
}
_PHASE3_EXTRA = {"lambda_r": [0.5, 1.0], "plateau_patience": 2, "plateau_min_delta": 0.01,
                 "epochs_after_switch": 1}
_TOP_DEFAULTS: dict[str, Any] = {
    "seed": 0, "device": "auto", "amp": "auto", "channels_last": True, "num_workers": 0,
    "batch_size": 64, "val_fraction": 0.1, "checkpoint_every": 500, "log_every": 1,
}
_SWEEP_DEFAULTS = {"lambda_r": [0.0, 0.1, 0.5, 1.0, 2.0, 10.0], "epochs": 1, "lr": None}


def _num(cfg: dict, key: str, where: str, lo: float | None = None, hi: float | None = None,
         integer: bool = False, lo_open: bool = False) -> None:
    v = cfg[key]
    ok = isinstance(v, (int, float)) and not isinstance(v, bool)
    if integer:
        ok = ok and float(v).is_integer()
    if ok and lo is not None:
        ok = v > lo if lo_open else v >= lo
    if ok and hi is not None:
        ok = v <= hi
    if not ok:
        rng = f"{'>' if lo_open else '>='} {lo}" if lo is not None else ""
        rng += f" and <= {hi}" if hi is not None else ""
        raise ConfigError(f"{where}.{key}: expected {'an integer' if integer else 'a number'} {rng}, got {v!r}")
    cfg[key] = int(v) if integer else float(v)


def _validate_phase(name: str, cfg: Any) -> dict:
    where = f"train.{name}"
    if cfg is None:
        cfg = {}
    if not isinstance(cfg, dict):
        raise ConfigError(f"{where}: expected a mapping, got {cfg!r}")
    allowed = dict(_PHASE_DEFAULTS, **(_PHASE3_EXTRA if name == "phase3" else {}))
    unknown = set(cfg) - set(allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; expected some of {sorted(allowed)}")
    out = {**copy.deepcopy(allowed), **cfg}
    if out["optimizer"] not in ("adam", "adamw", "sgd"):
        raise ConfigError(f"{where}.optimizer: expected 'adam', 'adamw' or 'sgd', got {out['optimizer']!r}")
    if out["schedule"] not in ("constant", "cosine", "step"):
        raise ConfigError(f"{where}.schedule: expected 'constant', 'cosine' or 'step', got {out['schedule']!r}")
    _num(out, "lr", where, 0, lo_open=True)
    _num(out, "momentum", where, 0, 1)
    _num(out, "weight_decay", where, 0)
    _num(out, "gamma", where, 0, 1, lo_open=True)
    _num(out, "warmup_steps", where, 0, integer=True)
    _num(out, "min_lr_factor", where, 0, 1)
    _num(out, "epochs", where, 1, integer=True)
    if out["batch_size"] is not None:
        _num(out, "batch_size", where, 1, integer=True)
    ms = out["milestones"]
    if not isinstance(ms, list) or not all(isinstance(m, int) and not isinstance(m, bool) and m >= 1 for m in ms):
        raise ConfigError(f"{where}.milestones: expected a list of epochs (integers >= 1), got {ms!r}")
    if name == "phase3":
        lam = out["lambda_r"]
        if isinstance(lam, (int, float)) and not isinstance(lam, bool):
            lam = [lam]
        if (not isinstance(lam, list) or len(lam) not in (1, 2)
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and x >= 0 for x in lam)):
            raise ConfigError(f"{where}.lambda_r: expected one or two numbers >= 0 (before and after the "
                              f"plateau switch), got {out['lambda_r']!r}")
        out["lambda_r"] = [float(x) for x in lam]
        _num(out, "plateau_patience", where, 1, integer=True)
        _num(out, "plateau_min_delta", where, 0)
        _num(out, "epochs_after_switch", where, 0, integer=True)
    return out


def validate_train_config(cfg: dict | None) -> dict:
    """Fill defaults into a ``train:`` section and check every key.

    Top-level keys: ``seed`` (int), ``device`` ("auto", "cpu", "cuda", "cuda:N"), ``amp``
    ("auto" = bf16 on CUDA when supported else fp16, "bf16", "fp16", "none"; CPU always runs
    fp32), ``channels_last`` (bool, CUDA only), ``num_workers`` (DataLoader), ``batch_size``
    (global, over all processes), ``val_fraction`` (images per training subject held out,
    in [0, 0.5]), ``checkpoint_every`` (steps), ``log_every`` (steps). One mapping per phase
    (``phase1``, ``phase2``, ``phase3``, ``texture``) with ``optimizer`` ("adam", "adamw",
    "sgd"), ``lr``, ``momentum``, ``weight_decay``, ``schedule`` ("constant", "cosine",
    "step"), ``milestones`` (epochs, for "step"), ``gamma``, ``warmup_steps``,
    ``min_lr_factor`` (cosine floor), ``epochs``, ``batch_size`` (overrides the global one);
    ``phase3`` adds ``lambda_r`` ([before, after] the plateau switch, or one value for a fixed
    lambda_r during ``epochs``), ``plateau_patience``, ``plateau_min_delta`` (relative) and
    ``epochs_after_switch``. ``sweep``: ``lambda_r`` (list), ``epochs``, ``lr`` (None: phase3's),
    for :func:`lambda_sweep`.

    Raises
    ------
    ConfigError
        Naming the offending key, on an unknown key or a value of the wrong type or range.
    """
    cfg = dict(cfg or {})
    allowed = set(_TOP_DEFAULTS) | set(PHASES) | {"sweep"}
    unknown = set(cfg) - allowed
    if unknown:
        raise ConfigError(f"train: unknown key(s) {sorted(unknown)}; expected some of {sorted(allowed)}")
    out = {**_TOP_DEFAULTS, **{k: v for k, v in cfg.items() if k in _TOP_DEFAULTS}}
    _num(out, "seed", "train", 0, integer=True)
    dev = out["device"]
    if not isinstance(dev, str) or not (dev in ("auto", "cpu", "cuda") or dev.startswith("cuda:")):
        raise ConfigError(f"train.device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {dev!r}")
    if out["amp"] not in ("auto", "bf16", "fp16", "none"):
        raise ConfigError(f"train.amp: expected 'auto', 'bf16', 'fp16' or 'none', got {out['amp']!r}")
    if not isinstance(out["channels_last"], bool):
        raise ConfigError(f"train.channels_last: expected true or false, got {out['channels_last']!r}")
    _num(out, "num_workers", "train", 0, integer=True)
    _num(out, "batch_size", "train", 1, integer=True)
    _num(out, "val_fraction", "train", 0, 0.5)
    _num(out, "checkpoint_every", "train", 1, integer=True)
    _num(out, "log_every", "train", 1, integer=True)
    for p in PHASES:
        out[p] = _validate_phase(p, cfg.get(p))
    sw = cfg.get("sweep") or {}
    if not isinstance(sw, dict) or set(sw) - set(_SWEEP_DEFAULTS):
        raise ConfigError(f"train.sweep: expected a mapping with keys {sorted(_SWEEP_DEFAULTS)}, got {sw!r}")
    sw = {**_SWEEP_DEFAULTS, **sw}
    lam = sw["lambda_r"]
    if not isinstance(lam, list) or not lam or not all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and x >= 0 for x in lam):
        raise ConfigError(f"train.sweep.lambda_r: expected a non-empty list of numbers >= 0, got {lam!r}")
    sw["lambda_r"] = [float(x) for x in lam]
    _num(sw, "epochs", "train.sweep", 1, integer=True)
    if sw["lr"] is not None:
        _num(sw, "lr", "train.sweep", 0, lo_open=True)
    out["sweep"] = sw
    return out


# =============================================================================== datasets
class CodesDataset(Dataset):
    """Fitted coefficients only (Phase II needs no images): items ``{alpha_id, alpha_exp}``.

    Parameters
    ----------
    alpha_id : array (N, k_id); alpha_exp : array (N, k_exp)
    """

    def __init__(self, alpha_id, alpha_exp):
        self.alpha_id = np.ascontiguousarray(alpha_id, np.float32)
        self.alpha_exp = np.ascontiguousarray(alpha_exp, np.float32)
        if self.alpha_id.ndim != 2 or self.alpha_exp.ndim != 2 or len(self.alpha_id) != len(self.alpha_exp):
            raise ValueError(f"alpha_id (N, k_id) and alpha_exp (N, k_exp) with one N, got "
                             f"{self.alpha_id.shape}, {self.alpha_exp.shape}")

    def __len__(self) -> int:
        return len(self.alpha_id)

    def __getitem__(self, i: int) -> dict:
        return {"alpha_id": torch.from_numpy(self.alpha_id[i]), "alpha_exp": torch.from_numpy(self.alpha_exp[i])}


class TensorFaceDataset(Dataset):
    """In-memory images + labels + coefficients (items as the trainer expects).

    Parameters
    ----------
    images : array or tensor (N, 3, H, W) float in [-1, 1]
    labels : int array (N,)
    alpha_id : array (N, k_id); alpha_exp : array (N, k_exp)
    extra : dict of arrays (N, ...), optional
        Further per-item fields (for example ground-truth codes for evaluation).

    Raises
    ------
    ValueError
        When the arrays disagree in length or the images are not (N, 3, H, W).
    """

    def __init__(self, images, labels, alpha_id, alpha_exp, extra: dict | None = None):
        self.images = torch.as_tensor(np.asarray(images, np.float32) if not torch.is_tensor(images) else images,
                                      dtype=torch.float32)
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.int64)
        self.alpha_id = torch.as_tensor(np.asarray(alpha_id, np.float32))
        self.alpha_exp = torch.as_tensor(np.asarray(alpha_exp, np.float32))
        self.extra = {k: torch.as_tensor(np.asarray(v)) for k, v in (extra or {}).items()}
        n = len(self.images)
        if self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be (N, 3, H, W), got {tuple(self.images.shape)}")
        for k, v in [("labels", self.labels), ("alpha_id", self.alpha_id), ("alpha_exp", self.alpha_exp),
                     *self.extra.items()]:
            if len(v) != n:
                raise ValueError(f"{k} has {len(v)} items, images {n}")

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict:
        item = {"image": self.images[i], "label": self.labels[i], "alpha_id": self.alpha_id[i],
                "alpha_exp": self.alpha_exp[i], "index": torch.tensor(i)}
        item.update({k: v[i] for k, v in self.extra.items()})
        return item


def dataset_codes(dataset: Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """All (alpha_id (N, k_id), alpha_exp (N, k_exp), labels (N,) or None) of a dataset.

    Uses the dataset's ``alpha_id`` / ``alpha_exp`` / ``labels`` attributes when it has them,
    else iterates over its items.
    """
    if hasattr(dataset, "alpha_id") and hasattr(dataset, "alpha_exp"):
        lab = getattr(dataset, "labels", None)
        return (np.asarray(dataset.alpha_id, np.float32), np.asarray(dataset.alpha_exp, np.float32),
                None if lab is None else np.asarray(lab, np.int64))
    ids, exps, labs = [], [], []
    for i in range(len(dataset)):
        it = dataset[i]
        ids.append(np.asarray(it["alpha_id"], np.float32))
        exps.append(np.asarray(it["alpha_exp"], np.float32))
        labs.append(int(it["label"]) if "label" in it else -1)
    return np.stack(ids), np.stack(exps), np.asarray(labs, np.int64)


def fit_code_scaler(dataset: Dataset, margin: float = 1.25) -> CodeScaler:
    """:meth:`CodeScaler.fit` on a training dataset's fitted coefficients."""
    a_id, a_exp, _ = dataset_codes(dataset)
    return CodeScaler.fit(a_id, a_exp, margin=margin)


class ResumableSampler(DistributedSampler):
    """:class:`~torch.utils.data.DistributedSampler` that can start part-way into an epoch.

    The epoch's permutation depends only on ``(seed, epoch)``; ``start`` skips the first
    ``start`` indices of this rank's share (the batches already done before a resume).
    """

    def __init__(self, dataset, num_replicas: int = 1, rank: int = 0, seed: int = 0):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.start = 0

    def __iter__(self):
        return iter(list(super().__iter__())[self.start:])

    def __len__(self) -> int:
        return self.num_samples - self.start


# =============================================================================== runtime
def _dist_info() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_distributed() -> tuple[int, int]:
    """Join the process group that ``torchrun`` describes (``WORLD_SIZE`` > 1); return (rank, world).

    NCCL on CUDA, gloo on CPU. A no-op when already initialised or running alone.
    """
    if dist.is_available() and not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return _dist_info()


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` -> ``cuda:<LOCAL_RANK>`` when CUDA is available, else CPU.

    Raises
    ------
    ValueError
        When CUDA is asked for but not available.
    """
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} asked for but CUDA is not available")
        if name == "cuda":
            name = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return torch.device(name)


def _amp_dtype(amp: str, device: torch.device):
    if device.type != "cuda" or amp == "none":
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def lr_factor(step: int, steps_per_epoch: int, total_steps: int, pcfg: dict) -> float:
    """Learning-rate multiplier at ``step`` (0-based) for a phase config (pure function of the step).

    ``constant``: 1; ``cosine``: ``min + (1 - min) (1 + cos(pi step / total)) / 2``;
    ``step``: ``gamma ** (milestones passed)`` (milestones in epochs); all after a linear
    warm-up over ``warmup_steps``.
    """
    f = 1.0
    if pcfg["schedule"] == "cosine":
        m = pcfg["min_lr_factor"]
        f = m + (1 - m) * 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))
    elif pcfg["schedule"] == "step":
        epoch = step // max(steps_per_epoch, 1)
        f = pcfg["gamma"] ** sum(epoch >= m for m in pcfg["milestones"])
    if pcfg["warmup_steps"] and step < pcfg["warmup_steps"]:
        f *= (step + 1) / pcfg["warmup_steps"]
    return f


def _make_optimizer(params, pcfg: dict) -> torch.optim.Optimizer:
    if pcfg["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=pcfg["lr"], momentum=pcfg["momentum"], weight_decay=pcfg["weight_decay"])
    cls = torch.optim.AdamW if pcfg["optimizer"] == "adamw" else torch.optim.Adam
    return cls(params, lr=pcfg["lr"], weight_decay=pcfg["weight_decay"])


def _rng_state() -> dict:
    keys, pos, has_gauss, cached = np.random.get_state()[1:]
    st = {"torch": torch.get_rng_state(),
          "numpy": {"keys": torch.from_numpy(np.asarray(keys, np.int64)), "pos": int(pos),
                    "has_gauss": int(has_gauss), "cached": float(cached)},
          "python": [int(x) for x in random.getstate()[1]],
          "python_gauss": random.getstate()[2]}
    if torch.cuda.is_available():
        st["cuda"] = [s for s in torch.cuda.get_rng_state_all()]
    return st


def _set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    n = st["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    random.setstate((3, tuple(st["python"]), st["python_gauss"]))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """``torch.load(path, weights_only=True)`` with a clear error for a missing or foreign file.

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    CheckpointMismatchError
        When the file is not a checkpoint of this package.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    ck = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT or "arch" not in ck:
        raise CheckpointMismatchError(f"{path} is not a disentangled_face checkpoint (format {CHECKPOINT_FORMAT})")
    return ck


def _check_checkpoint(ck: dict, path: Path, chash: str, phase: str) -> None:
    if ck.get("config_hash") != chash:
        raise CheckpointMismatchError(
            f"{path} was written by config {ck.get('config_hash')!r}, this run's config is {chash!r}; "
            "use the config that made it, or another run folder")
    if ck.get("phase") != phase:
        raise CheckpointMismatchError(f"{path} is a '{ck.get('phase')}' checkpoint, expected '{phase}'")


# =============================================================================== phase modules
class _PhaseStep(nn.Module):
    """Wraps a network so one ``forward(batch)`` returns the phase's loss (DDP wraps this)."""

    def __init__(self, net: nn.Module, phase: str, model=None):
        super().__init__()
        self.net, self.phase = net, phase
        self.lambda_r = 0.0
        if phase in ("phase2", "phase3"):
            if model is None:
                raise ValueError(f"{phase} needs the morphable model (its fitted shapes are the targets)")
            if (model.n_vertices, model.n_id, model.n_exp) != (net.n_vertices, net.n_id, net.n_exp):
                raise ValueError("the morphable model's sizes differ from the network's")
            self._A_id = torch.as_tensor(model.A_id)  # (3n, k_id), mm
            self._A_exp = torch.as_tensor(model.A_exp)
            self._mean = torch.as_tensor(model.s_mean)

    def to(self, *args, **kwargs):  # keep the (constant, large) bases out of state/buffers
        out = super().to(*args, **kwargs)
        if hasattr(self, "_A_id"):
            dev = next(self.net.parameters()).device
            self._A_id, self._A_exp, self._mean = (t.to(dev) for t in (self._A_id, self._A_exp, self._mean))
        return out

    def forward(self, image=None, label=None, alpha_id=None, alpha_exp=None):
        net = self.net
        if self.phase == "texture":
            out = net(image)
            loss = losses.identification_loss(out["logits"], label)
            acc = (out["logits"].argmax(1) == label).float().mean()
            return loss, {"loss": loss.detach(), "L_C": loss.detach(), "acc": acc}
        if self.phase == "phase1":
            _, c_id, c_res = net.encode(image)
            t_id, t_res = net.scaler.to_code(alpha_id, alpha_exp)
            return losses.code_regression_loss(c_id, c_res, t_id, t_res)
        if self.phase == "phase2":
            c_id, c_res = net.scaler.to_code(alpha_id, alpha_exp)
            l_id = losses.reconstruction_loss(net.dec_id(c_id), alpha_id @ self._A_id.T)
            l_res = losses.reconstruction_loss(net.dec_res(c_res), alpha_exp @ self._A_exp.T)
            loss = l_id + l_res
            return loss, {"loss": loss.detach(), "L_id": l_id.detach(), "L_res": l_res.detach()}
        # phase3: Eq. 5; decoders and shapes in fp32 even under autocast (mm precision)
        _, c_id, c_res = net.encode(image)
        logits = net.classifier(c_id)
        with torch.autocast(c_id.device.type, enabled=False):
            _, _, shape = net.decode(c_id.float(), c_res.float())
            s_fit = self._mean + alpha_id.float() @ self._A_id.T + alpha_exp.float() @ self._A_exp.T
            return losses.joint_loss(shape, s_fit, logits.float(), label, self.lambda_r)


_METRICS = {"phase1": ["loss", "L_id", "L_res"], "phase2": ["loss", "L_id", "L_res"],
            "phase3": ["loss", "L_R", "L_C", "acc", "lambda_r"], "texture": ["loss", "L_C", "acc"]}
_TRAINABLE = {"phase1": ("encoder", "head_id", "head_res"), "phase2": ("dec_id", "dec_res"),
              "phase3": None, "texture": None}


@dataclass
class PhaseResult:
    """Outcome of :func:`train_phase`: final checkpoint, per-step and per-epoch histories."""

    phase: str
    checkpoint: Path
    history: Any  # pandas.DataFrame
    epochs: Any  # pandas.DataFrame
    completed: bool


def _read_csv(path: Path):
    import pandas as pd

    return pd.read_csv(path) if path.is_file() and path.stat().st_size else pd.DataFrame()


def _truncate_csv(path: Path, max_value: float, key: str = "step") -> None:
    if not path.is_file():
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    head, body = rows[0], rows[1:]
    col = head.index(key)
    body = [r for r in body if float(r[col]) <= max_value]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(head)
        w.writerows(body)


def train_phase(phase: str, net: nn.Module, dataset: Dataset, train_cfg: dict, run_dir: str | os.PathLike, *,
                model=None, chash: str = "", resume: bool = False, progress: bool = True,
                device: str | torch.device | None = None, max_steps: int | None = None,
                tag: str | None = None) -> PhaseResult:
    """Train one phase (see the module doc) on ``dataset``; write checkpoints and metrics to ``run_dir``.

    Parameters
    ----------
    phase : {"phase1", "phase2", "phase3", "texture"}
    net : DisentangledFaceNet or TextureNet
        Trained in place (its starting weights are the previous phases').
    dataset : Dataset
        Items ``{image, label, alpha_id, alpha_exp}`` (fitted codes); Phase II uses only the codes.
    train_cfg : dict
        A ``train:`` section (validated here).
    run_dir : path
        Output folder: ``<tag>.pt`` (final), ``<tag>.state.pt`` (resume), ``<tag>.csv``, ``<tag>_epochs.csv``.
    model : MorphableModel
        Needed by Phase II and III (the fitted shapes ``model.shape(alpha_id, alpha_exp)`` are the targets).
    chash : str
        Config hash stored in (and checked against) the checkpoints.
    resume : bool
        Continue from ``<tag>.state.pt`` when it exists (same step, optimiser, sampler, RNG).
    progress : bool
        tqdm progress bar (rank 0).
    device : str or torch.device, optional
        Overrides ``train.device``.
    max_steps : int, optional
        Stop after this global step without finishing (simulates an interrupted run).
    tag : str, optional
        File stem (default ``phase``).

    Returns
    -------
    PhaseResult

    Raises
    ------
    ConfigError
        On an invalid config; ValueError on a bad phase name, a too-small dataset or a global
        batch not divisible by the number of processes.
    CheckpointMismatchError
        When resuming from a checkpoint of another config or phase.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    if phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
    cfg = validate_train_config(train_cfg)
    pcfg = cfg[phase]
    tag = tag or phase
    run_dir = Path(run_dir)
    rank, world = _dist_info()
    dev = torch.device(device) if device is not None else resolve_device(cfg["device"])
    amp_dtype = _amp_dtype(cfg["amp"], dev)
    chan_last = cfg["channels_last"] and dev.type == "cuda"
    if phase == "texture" and not isinstance(net, TextureNet):
        raise ValueError("phase 'texture' trains a TextureNet")
    if phase != "texture" and not isinstance(net, DisentangledFaceNet):
        raise ValueError(f"phase {phase!r} trains a DisentangledFaceNet")

    batch = pcfg["batch_size"] or cfg["batch_size"]
    if batch % world:
        raise ValueError(f"batch size {batch} is not divisible by the {world} processes")
    per_rank = batch // world
    if phase == "phase2":
        a_id, a_exp, _ = dataset_codes(dataset)
        dataset = CodesDataset(a_id, a_exp)
    steps_per_epoch = len(dataset) // batch
    if steps_per_epoch < 1:
        raise ValueError(f"dataset of {len(dataset)} items is smaller than one batch of {batch}")
    if phase == "phase3":
        lam = pcfg["lambda_r"]
        max_epochs = pcfg["epochs"] + (pcfg["epochs_after_switch"] if len(lam) == 2 else 0)
    else:
        lam, max_epochs = [0.0], pcfg["epochs"]
    total_steps = max_epochs * steps_per_epoch

    # ---- trainable parameters, optimiser
    names = _TRAINABLE[phase]
    for name, p in net.named_parameters():
        p.requires_grad_(names is None or name.split(".")[0] in names)
    net.to(dev)
    if chan_last:
        net.to(memory_format=torch.channels_last)
    step_mod = _PhaseStep(net, phase, model).to(dev)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = _make_optimizer(params, pcfg)
    grad_scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    state_path, final_path = run_dir / f"{tag}.state.pt", run_dir / f"{tag}.pt"
    csv_path, epochs_path = run_dir / f"{tag}.csv", run_dir / f"{tag}_epochs.csv"
    step, epoch, position = 0, 0, 0
    ep_resume = [0.0, 0.0]
    pstate = {"stage": 0, "stage_epoch": 0, "best": float("inf"), "bad": 0, "switch_step": -1,
              "switch_epoch": -1, "switch_reason": ""}
    seed_everything(cfg["seed"] + rank)
    if resume and state_path.is_file():
        ck = load_checkpoint(state_path)
        _check_checkpoint(ck, state_path, chash, phase)
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        if ck.get("grad_scaler"):
            grad_scaler.load_state_dict(ck["grad_scaler"])
        step, epoch, position = ck["step"], ck["epoch"], ck["position"]
        pstate.update(ck["phase_state"])
        ranks = ck["ranks"]
        if ck.get("world_size") == world:
            _set_rng_state(ranks[rank]["rng"])
            ep_resume = list(ranks[rank]["ep_sum"])
        if rank == 0:
            _truncate_csv(csv_path, step)
            _truncate_csv(epochs_path, epoch - 1, key="epoch")
    elif rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        for pth in (csv_path, epochs_path):
            if pth.exists():
                pth.unlink()
    step_mod.lambda_r = lam[min(pstate["stage"], len(lam) - 1)]

    wrapped: nn.Module = step_mod
    if world > 1:
        wrapped = nn.parallel.DistributedDataParallel(
            step_mod, device_ids=[dev.index] if dev.type == "cuda" else None, broadcast_buffers=False)
    sampler = ResumableSampler(dataset, num_replicas=world, rank=rank, seed=cfg["seed"])
    loader = DataLoader(dataset, batch_size=per_rank, sampler=sampler, drop_last=True,
                        num_workers=cfg["num_workers"], pin_memory=dev.type == "cuda",
                        persistent_workers=False)

    def save_state() -> None:
        mine = {"rng": _rng_state(), "ep_sum": [float(ep_sum[0]), float(ep_sum[1])]}
        ranks = [mine]
        if world > 1:
            ranks = [None] * world
            dist.all_gather_object(ranks, mine)
        if rank != 0:
            return
        ck = {"format": CHECKPOINT_FORMAT, "config_hash": chash, "phase": phase, "arch": net.arch(),
              "model": net.state_dict(), "optimizer": opt.state_dict(),
              "grad_scaler": grad_scaler.state_dict() if grad_scaler.is_enabled() else {},
              "step": step, "epoch": epoch, "position": position, "phase_state": dict(pstate),
              "ranks": ranks, "world_size": world}
        with atomic_path(state_path) as tmp:
            torch.save(ck, tmp)

    metric_names = _METRICS[phase]
    csv_file = csv_writer = None
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        new = not csv_path.is_file()
        csv_file = open(csv_path, "a", newline="")
        csv_writer = csv.writer(csv_file)
        if new:
            csv_writer.writerow(["step", "epoch", "lr", *metric_names, "images_per_s"])
    tb = None
    if rank == 0:
        try:
            from torch.utils.tensorboard import SummaryWriter  # optional
            tb = SummaryWriter(str(run_dir / "tensorboard" / tag), purge_step=step)
        except Exception:  # tensorboard not installed
            tb = None

    bar = tqdm(total=total_steps, initial=step, desc=tag, disable=not progress or rank != 0,
               leave=False, dynamic_ncols=True)
    done = pstate["stage"] >= len(lam) or epoch >= max_epochs
    interrupted = False
    try:
        while not done:
            stage_epochs = pcfg["epochs"] if pstate["stage"] == 0 else pcfg["epochs_after_switch"]
            sampler.set_epoch(epoch)
            sampler.start = position * per_rank
            ep_sum = torch.tensor(ep_resume, dtype=torch.float64)
            ep_resume = [0.0, 0.0]
            t0 = time.perf_counter()
            for b in loader:
                if max_steps is not None and step >= max_steps:
                    interrupted = True
                    break
                b = {k: v.to(dev, non_blocking=True) for k, v in b.items()
                     if k in ("image", "label", "alpha_id", "alpha_exp")}
                if "image" in b and chan_last:
                    b["image"] = b["image"].contiguous(memory_format=torch.channels_last)
                lr = pcfg["lr"] * lr_factor(step, steps_per_epoch, total_steps, pcfg)
                for g in opt.param_groups:
                    g["lr"] = lr
                ctx = torch.autocast(dev.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
                with ctx:
                    loss, parts = wrapped(**b)
                opt.zero_grad(set_to_none=True)
                grad_scaler.scale(loss).backward()
                grad_scaler.step(opt)
                grad_scaler.update()
                step += 1
                position += 1
                vals = {k: float(v) for k, v in parts.items()}
                ep_sum += torch.tensor([vals["loss"], 1.0], dtype=torch.float64)
                if rank == 0:
                    dt = time.perf_counter() - t0
                    t0 = time.perf_counter()
                    if step % cfg["log_every"] == 0:
                        csv_writer.writerow([step, epoch, f"{lr:.6g}", *[f"{vals[m]:.6g}" for m in metric_names],
                                             f"{batch / max(dt, 1e-9):.4g}"])
                        if tb is not None:
                            for m in metric_names:
                                tb.add_scalar(f"{tag}/{m}", vals[m], step)
                    bar.update(1)
                    bar.set_postfix(loss=f"{vals['loss']:.4g}", epoch=epoch)
                if step % cfg["checkpoint_every"] == 0:
                    if csv_file is not None:
                        csv_file.flush()
                    save_state()
            if interrupted:
                break
            # ---- end of epoch: mean loss over all ranks; Phase III plateau logic
            if world > 1:
                dist.all_reduce(ep_sum)
            ep_loss = float(ep_sum[0] / max(ep_sum[1], 1))
            ep_sum = torch.zeros(2, dtype=torch.float64)  # the next epoch's (also what a checkpoint stores)
            epoch += 1
            position = 0
            pstate["stage_epoch"] += 1
            row = {"epoch": epoch - 1, "step": step, "loss": ep_loss, "stage": pstate["stage"],
                   "lambda_r": lam[min(pstate["stage"], len(lam) - 1)]}
            if ep_loss < pstate["best"] * (1 - pcfg.get("plateau_min_delta", 0.0)):
                pstate["best"], pstate["bad"] = ep_loss, 0
            else:
                pstate["bad"] += 1
            switch = False
            if phase == "phase3" and len(lam) == 2 and pstate["stage"] == 0:
                if pstate["bad"] >= pcfg["plateau_patience"]:
                    switch, pstate["switch_reason"] = True, "plateau"
                elif pstate["stage_epoch"] >= stage_epochs:
                    switch, pstate["switch_reason"] = True, "max_epochs"
            elif pstate["stage_epoch"] >= stage_epochs:
                pstate["stage"] = len(lam)  # finished
            if switch:
                pstate.update(stage=1, stage_epoch=0, best=float("inf"), bad=0, switch_step=step,
                              switch_epoch=epoch)
                step_mod.lambda_r = lam[1]
                if pcfg["epochs_after_switch"] == 0:
                    pstate["stage"] = len(lam)
            done = pstate["stage"] >= len(lam)
            if rank == 0:
                new = not epochs_path.is_file()
                with open(epochs_path, "a", newline="") as f:
                    w = csv.DictWriter(f, fieldnames=list(row) + ["switch"])
                    if new:
                        w.writeheader()
                    w.writerow({**row, "switch": int(switch)})
            save_state()
    finally:
        bar.close()
        if csv_file is not None:
            csv_file.close()
        if tb is not None:
            tb.close()
    if not interrupted and rank == 0:
        save_final(net, final_path, chash, phase,
                   extra={"steps": step, "epochs": epoch, "switch_step": pstate["switch_step"],
                          "switch_epoch": pstate["switch_epoch"], "switch_reason": pstate["switch_reason"]})
    if world > 1:
        dist.barrier()
    for p in net.parameters():
        p.requires_grad_(True)
    return PhaseResult(phase, final_path, _read_csv(csv_path) if rank == 0 else pd.DataFrame(),
                       _read_csv(epochs_path) if rank == 0 else pd.DataFrame(), not interrupted)


def save_final(net: nn.Module, path: str | os.PathLike, chash: str, phase: str, extra: dict | None = None) -> Path:
    """Write a network's weights (CPU) with its architecture, config hash and phase, atomically."""
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    ck = {"format": CHECKPOINT_FORMAT, "config_hash": chash, "phase": phase, "arch": net.arch(),
          "model": state, "info": dict(extra or {})}
    with atomic_path(path) as tmp:
        torch.save(ck, tmp)
    return path


# =============================================================================== inference
def load_model(path: str | os.PathLike, expect_hash: str | None = None, map_location="cpu") -> nn.Module:
    """Rebuild a trained network from a checkpoint (``<phase>.pt`` or ``<phase>.state.pt``), in eval mode.

    Parameters
    ----------
    path : path
    expect_hash : str, optional
        Raise unless the checkpoint's config hash is this one.

    Returns
    -------
    DisentangledFaceNet or TextureNet

    Raises
    ------
    FileNotFoundError, CheckpointMismatchError
    """
    ck = load_checkpoint(path, map_location)
    if expect_hash is not None and ck["config_hash"] != expect_hash:
        raise CheckpointMismatchError(f"{path} was written by config {ck['config_hash']!r}, expected {expect_hash!r}")
    net = build_from_arch(ck["arch"])
    net.load_state_dict(ck["model"])
    return net.eval()


def _as_images(images) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(images, np.float32) if not torch.is_tensor(images) else images, dtype=torch.float32)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W) or (3, H, W) in [-1, 1], got {tuple(x.shape)}")
    return x


def _batched(model: nn.Module, images, fn: Callable, batch_size: int):
    x = _as_images(images)
    dev = next(model.parameters()).device
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            outs.append(fn(x[i:i + batch_size].to(dev)))
    return [torch.cat([o[j] for o in outs]).cpu().numpy() for j in range(len(outs[0]))]


def encode(model: DisentangledFaceNet, images, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Codes of images: ``(c_id (B, k_id), c_res (B, k_exp))`` in [-1, 1].

    Parameters
    ----------
    images : array or tensor (B, 3, H, W) or (3, H, W), float in [-1, 1]

    Raises
    ------
    ValueError
        On a wrong image shape or a network without codes (:class:`TextureNet`).
    """
    if not isinstance(model, DisentangledFaceNet):
        raise ValueError(f"encode needs a DisentangledFaceNet, got {type(model).__name__}; use features()")
    model.eval()
    c_id, c_res = _batched(model, images, lambda x: model.encode(x)[1:], batch_size)
    return c_id, c_res


def features(model: nn.Module, images, batch_size: int = 64) -> np.ndarray:
    """The encoder's feature (B, feature_dim) of either network (the texture network's descriptor)."""
    model.eval()
    return _batched(model, images, lambda x: (model.encoder(x),), batch_size)[0]


def reconstruct(model: DisentangledFaceNet, images, batch_size: int = 64, morphable=None,
                components: bool = False):
    """Reconstruct 3D shapes from images (Eq. 2).

    Parameters
    ----------
    model : DisentangledFaceNet
    images : array or tensor (B, 3, H, W) or (3, H, W) in [-1, 1]
    morphable : MorphableModel, optional
        When given, decode with the 3DMM instead of the network's decoders:
        ``model_3dmm.shape(*scaler.from_code(c_id, c_res))`` (the "3DMM-CNN-like" baseline, whose
        Phase I network has no trained decoders).
    components : bool
        Also return the identity part.

    Returns
    -------
    ndarray (B, n, 3) mm, or with ``components`` a dict with ``shape``, ``identity_shape``
    (``s_mean + Delta s_Id``, the expression-free shape) and ``delta_res``, each (B, n, 3) mm.
    """
    if not isinstance(model, DisentangledFaceNet):
        raise ValueError(f"reconstruct needs a DisentangledFaceNet, got {type(model).__name__}")
    model.eval()
    n = model.n_vertices

    def fn(x):
        _, c_id, c_res = model.encode(x)
        if morphable is not None:
            a_id, a_exp = model.scaler.from_code(c_id, c_res)
            d_id = morphable.delta_id(a_id, flat=True)
            d_res = morphable.delta_res(a_exp, flat=True)
            mean = torch.as_tensor(morphable.s_mean, device=x.device)
        else:
            d_id, d_res, _ = model.decode(c_id, c_res)
            mean = model.s_mean
        return mean + d_id + d_res, mean + d_id, d_res

    s, s_id, d_res = (a.reshape(len(a), n, 3) for a in _batched(model, images, fn, batch_size))
    return {"shape": s, "identity_shape": s_id, "delta_res": d_res} if components else s


def alpha_from_images(model: DisentangledFaceNet, images, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Regressed 3DMM coefficients ``(alpha_id, alpha_exp)`` = the codes unscaled (:class:`CodeScaler`)."""
    c_id, c_res = encode(model, images, batch_size)
    a_id, a_exp = model.scaler.from_code(torch.as_tensor(c_id), torch.as_tensor(c_res))
    return a_id.numpy(), a_exp.numpy()


def evaluate(model: nn.Module, dataset: Dataset, morphable=None, batch_size: int = 64,
             gt_keys: tuple[str, str] = ("alpha_id", "alpha_exp")) -> dict[str, float]:
    """Reconstruction error and identification accuracy of a network on a dataset.

    Parameters
    ----------
    model : DisentangledFaceNet or TextureNet
    dataset : Dataset
        Items with ``image``, ``label`` and the reference coefficients under ``gt_keys``.
    morphable : MorphableModel
        For the reference shapes ``morphable.shape(alpha_id, alpha_exp)``.

    Returns
    -------
    dict
        ``rmse_mm``: root of the mean over images of the mean squared per-vertex distance to
        the reference shape, in the model frame, no alignment (mm; DisentangledFaceNet only);
        ``rmse_id_mm``: the same for the identity (neutral) part; ``acc``: top-1 accuracy of
        the softmax classifier over the training subjects (labels must be training subjects).
    """
    model.eval()
    dev = next(model.parameters()).device
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    se = se_id = correct = count = 0.0
    with torch.no_grad():
        for b in loader:
            x = b["image"].to(dev)
            out = model(x)
            correct += float((out["logits"].argmax(1).cpu() == b["label"]).sum())
            count += len(x)
            if isinstance(model, DisentangledFaceNet) and morphable is not None:
                a_id, a_exp = b[gt_keys[0]], b[gt_keys[1]]
                ref = morphable.shape(a_id.float(), a_exp.float(), flat=True)
                ref_id = morphable.identity_shape(a_id.float(), flat=True)
                n = model.n_vertices
                se += float((out["shape"].cpu() - ref).pow(2).sum() / n)
                se_id += float((model.s_mean.cpu() + out["delta_id"].cpu() - ref_id).pow(2).sum() / n)
    res = {"acc": correct / max(count, 1), "n_images": int(count)}
    if isinstance(model, DisentangledFaceNet) and morphable is not None:
        res["rmse_mm"] = math.sqrt(se / max(count, 1))
        res["rmse_id_mm"] = math.sqrt(se_id / max(count, 1))
    return res
