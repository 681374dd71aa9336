"""Training: the three phases of the paper (Sec. 3.3.3), the baselines, checkpoints and DDP.

Phases (each trains a subset of :class:`~disentangled_face.nets.DisentangledFaceNet`):

* ``phase1``: the encoder and the two heads regress the scaled fitted coefficients,
  ``c_id* = alpha_id / scale_id``, ``c_res* = alpha_exp / scale_exp``, with the Euclidean loss
  :func:`~disentangled_face.losses.code_regression_loss`. Alone, this is the "3DMM-CNN-like"
  baseline (coefficients regressed from the image, shape from the 3DMM).
* ``phase2``: the two decoders, separately: ``dec_id(c_id*)`` regresses the fitted identity
  deformation ``Delta s_Id = A_id alpha_id`` and ``dec_res(c_res*)`` the fitted expression part
  ``Delta s_Res = A_exp alpha_exp`` (both L_R in mm², summed); inputs are the target codes.
  Trained by gradient descent (as the paper) or, with ``optimizer: lstsq``, solved exactly:
  the decoders are linear and the loss quadratic, so its minimiser is a least-squares solution.
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
gives the parameters of an uninterrupted run. The final weights go to ``<phase>.pt`` (and the
state checkpoint is then removed: a finished phase is loaded, not resumed); per-step
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
from dataclasses import dataclass
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
    "seed": 0, "device": "auto", "amp": "auto", "channels_last": True, "num_workers": 0, "num_threads": None,
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
    opts = ("adam", "adamw", "sgd", "lstsq") if name == "phase2" else ("adam", "adamw", "sgd")
    if out["optimizer"] not in opts:
        raise ConfigError(f"{where}.optimizer: expected one of {opts}, got {out['optimizer']!r}")
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
    fp32), ``channels_last`` (bool, CUDA only), ``num_workers`` (DataLoader), ``num_threads``
    (torch intra-op threads while training on CPU; null: torch's default), ``batch_size``
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
    if out["num_threads"] is not None:
        _num(out, "num_threads", "train", 1, integer=True)
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
    if phase == "phase2" and pcfg["optimizer"] == "lstsq":
        return _phase2_closed_form(net, dataset, model, run_dir, tag, chash, batch, rank, world, dev)
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

    threads_before = torch.get_num_threads()
    if cfg["num_threads"] is not None and dev.type == "cpu":
        torch.set_num_threads(cfg["num_threads"])
    bar = tqdm(total=total_steps, initial=step, desc=tag, disable=not progress or rank != 0,
               leave=False, dynamic_ncols=True, mininterval=1.0)  # few display messages (notebooks)
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
                    bar.set_postfix(loss=f"{vals['loss']:.4g}", epoch=epoch, refresh=False)
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
        torch.set_num_threads(threads_before)
        bar.close()
        if csv_file is not None:
            csv_file.close()
        if tb is not None:
            tb.close()
    if not interrupted and rank == 0:
        save_final(net, final_path, chash, phase,
                   extra={"steps": step, "epochs": epoch, "switch_step": pstate["switch_step"],
                          "switch_epoch": pstate["switch_epoch"], "switch_reason": pstate["switch_reason"]})
        state_path.unlink(missing_ok=True)  # the phase is complete: its resume state is not needed
    if world > 1:
        dist.barrier()
    for p in net.parameters():
        p.requires_grad_(True)
    return PhaseResult(phase, final_path, _read_csv(csv_path) if rank == 0 else pd.DataFrame(),
                       _read_csv(epochs_path) if rank == 0 else pd.DataFrame(), not interrupted)


def _phase2_closed_form(net, dataset, model, run_dir: Path, tag: str, chash: str, batch: int,
                        rank: int, world: int, dev) -> PhaseResult:
    """Phase II by its exact minimiser (``optimizer: lstsq``).

    Each decoder is linear and the Phase II loss quadratic, so the decoder that minimises it
    over the training set solves the normal equations (ridge 1e-6 relative, for codes that
    never vary, e.g. an expression the fitter never activates):
    ``W = A (alpha^T C) (C^T C + eps I)^{-1}`` with ``C`` the target codes and ``A alpha^T`` the
    fitted deltas (``C`` gains a column of ones when the decoder has a bias). Gradient
    training of the same loss converges to the same ``W``; this gets there in one step.
    """
    import pandas as pd

    if model is None:
        raise ValueError("phase2 needs the morphable model (its fitted shapes are the targets)")
    a_id = torch.as_tensor(dataset.alpha_id, dtype=torch.float64)
    a_exp = torch.as_tensor(dataset.alpha_exp, dtype=torch.float64)
    c_id, c_res = net.scaler.to_code(a_id, a_exp)
    rows = {}
    with torch.no_grad():
        for dec, A, alpha, c, key in ((net.dec_id, model.A_id, a_id, c_id, "L_id"),
                                      (net.dec_res, model.A_exp, a_exp, c_res, "L_res")):
            A = torch.as_tensor(A, dtype=torch.float64)
            C = torch.cat([c, torch.ones(len(c), 1, dtype=c.dtype)], 1) if dec.bias is not None else c
            G = C.T @ C
            G = G + 1e-6 * G.diagonal().mean().clamp_min(1e-12) * torch.eye(len(G), dtype=G.dtype)
            W = A @ torch.linalg.solve(G, C.T @ alpha).T  # (3n, k[+1]) = A alpha^T C G^-1
            if dec.bias is not None:
                dec.weight.copy_(W[:, :-1].to(dec.weight))
                dec.bias.copy_(W[:, -1].to(dec.bias))
            else:
                dec.weight.copy_(W.to(dec.weight))
            se = 0.0
            for i in range(0, len(c), batch):  # the Phase II loss at the solution, mm^2
                pred = dec(c[i:i + batch].to(dec.weight))
                se += float(losses.reconstruction_loss(pred, (alpha[i:i + batch] @ A.T).to(pred))) * len(pred)
            rows[key] = se / len(c)
    rows["loss"] = rows["L_id"] + rows["L_res"]
    hist = pd.DataFrame([{"step": 1, "epoch": 0, "lr": 0.0, **{k: rows[k] for k in _METRICS["phase2"]},
                          "images_per_s": float("nan")}])
    epochs = pd.DataFrame([{"epoch": 0, "step": 1, "loss": rows["loss"], "stage": 0, "lambda_r": 0.0, "switch": 0}])
    final = run_dir / f"{tag}.pt"
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        for df, pth in ((hist, run_dir / f"{tag}.csv"), (epochs, run_dir / f"{tag}_epochs.csv")):
            with atomic_path(pth) as tmp:
                df.to_csv(tmp, index=False)
        save_final(net, final, chash, "phase2", extra={"steps": 1, "epochs": 1, "solver": "lstsq"})
    if world > 1:
        dist.barrier()
    return PhaseResult("phase2", final, hist, epochs, True)


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


# =============================================================================== pipeline
class _RunLock:
    """An exclusive lock on a run folder (``fcntl.flock`` on ``<run_dir>/.lock``), so two processes
    (two notebooks, a notebook and a test) never train into the same folder at once: the second
    waits, then finds the first one's checkpoints and loads them."""

    def __init__(self, run_dir: Path, enabled: bool = True):
        self.path, self.enabled, self.fh = Path(run_dir) / ".lock", enabled, None

    def __enter__(self):
        if self.enabled:
            import fcntl

            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.fh = open(self.path, "a")
            fcntl.flock(self.fh, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        if self.fh is not None:
            import fcntl

            fcntl.flock(self.fh, fcntl.LOCK_UN)
            self.fh.close()
            self.fh = None
        return False


@dataclass
class TrainingData:
    """The ``train`` population split for training (Sec. 3.3): what :func:`training_data` returns.

    Attributes
    ----------
    train : Dataset
        Items ``{image, label, alpha_id, alpha_exp}`` with the **fitted** (or, with
        ``targets="ground_truth"``, the true) coefficients as targets.
    val : Dataset
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


class _SubsetWithCodes(Dataset):
    """Streaming view of a protocol file with replaced coefficients (for datasets too large for memory)."""

    def __init__(self, base, indices, labels, alpha_id, alpha_exp, extra=None):
        self.base, self.indices = base, np.asarray(indices)
        self.labels, self.alpha_id, self.alpha_exp = labels, alpha_id, alpha_exp
        self.extra = extra or {}

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, k):
        it = self.base[int(self.indices[k])]
        out = {"image": it["image"], "label": torch.tensor(int(self.labels[k])),
               "alpha_id": torch.from_numpy(self.alpha_id[k]), "alpha_exp": torch.from_numpy(self.alpha_exp[k]),
               "index": torch.tensor(k)}
        out.update({key: torch.from_numpy(np.asarray(v[k])) for key, v in self.extra.items()})
        return out


def load_model_for_profile(cfg: dict):
    """The morphable model a profile names (``model.name``: ``ict-facekit``).

    Raises
    ------
    ConfigError
        For a model name this package cannot load by name.
    """
    from .model import load_ict_facekit

    name = (cfg.get("model") or {}).get("name", "ict-facekit")
    if name != "ict-facekit":
        raise ConfigError(f"model.name: only 'ict-facekit' can be loaded by name, got {name!r}")
    return load_ict_facekit()


def _split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per subject, hold out round(fraction * count) images (at least one when fraction > 0,
    never all); deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    tr, va = [], []
    for s in np.unique(labels):
        idx = np.flatnonzero(labels == s)
        idx = idx[rng.permutation(len(idx))]
        k = 0 if fraction == 0 else min(len(idx) - 1, max(1, int(round(fraction * len(idx)))))
        va.extend(idx[:k])
        tr.extend(idx[k:])
    return np.sort(np.asarray(tr, np.int64)), np.sort(np.asarray(va, np.int64))


def _load_targets(cfg: dict, sset, targets: str, progress: bool, model=None) -> tuple[np.ndarray, np.ndarray]:
    if targets == "ground_truth":
        return sset.alpha_id.astype(np.float32), sset.alpha_exp.astype(np.float32)
    try:
        from .fitting import build_targets, load_targets
    except ImportError as exc:
        raise ImportError("fitted targets need disentangled_face.fitting.build_targets/load_targets "
                          "(the multi-image 3DMM fit of Sec. 3.3.2)") from exc
    t = load_targets(build_targets(cfg, model=model, progress=progress))
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


def training_data(profile: str | dict = "book", targets: str = "fitted", progress: bool = True,
                  in_memory: bool | None = None) -> TrainingData:
    """The ``train`` protocol with its targets, split into training and held-out images.

    Parameters
    ----------
    profile : str or dict
        Profile name, YAML path, or a loaded profile.
    targets : {"fitted", "ground_truth"}
        ``"fitted"`` (the paper): the multi-image 3DMM fit (``fitting.build_targets``);
        ``"ground_truth"``: the synthetic data's true coefficients (an upper bound).
    in_memory : bool, optional
        Keep the images in memory, resized to ``network.input_size`` (default: when they take
        under 2 GB); else stream them from the HDF5 file.

    Raises
    ------
    ValueError
        On an unknown ``targets``; ConfigError on an invalid profile.
    """
    from . import synth
    from .datasets import FaceImageDataset, to_network_input

    if targets not in ("fitted", "ground_truth"):
        raise ValueError(f"targets must be 'fitted' or 'ground_truth', got {targets!r}")
    cfg = load_profile(profile) if not isinstance(profile, dict) else profile
    ncfg, tcfg = validate_network_config(cfg["network"]), validate_train_config(cfg["train"])
    model = load_model_for_profile(cfg)
    path = synth.build_protocol("train", cfg, model=model, progress=progress)
    sset = synth.load_protocol(path)
    a_fit, e_fit = _load_targets(cfg, sset, targets, progress, model)
    _, labels = np.unique(sset.label, return_inverse=True)
    tr, va = _split(labels, tcfg["val_fraction"], tcfg["seed"])
    H, W = ncfg["input_size"]
    if in_memory is None:
        in_memory = len(sset) * 3 * H * W * 4 < 2 * 2**30
    gt_id, gt_exp = sset.alpha_id.astype(np.float32), sset.alpha_exp.astype(np.float32)
    if in_memory:
        raw = np.asarray(sset.images)  # (N, 112, 96, 3) uint8
        imgs = []
        for i in range(0, len(raw), 256):
            x = torch.from_numpy(to_network_input(raw[i:i + 256]))
            if tuple(x.shape[-2:]) != (H, W):  # the encoder's own resize, done once
                x = torch.nn.functional.interpolate(x, size=(H, W), mode="bilinear", align_corners=False,
                                                    antialias=True)
            imgs.append(x)
        imgs = torch.cat(imgs)
        train = TensorFaceDataset(imgs[tr], labels[tr], a_fit[tr], e_fit[tr])
        val = TensorFaceDataset(imgs[va], labels[va], gt_id[va], gt_exp[va],
                                extra={"fit_alpha_id": a_fit[va], "fit_alpha_exp": e_fit[va]})
    else:
        base = FaceImageDataset(path)
        train = _SubsetWithCodes(base, tr, labels[tr], a_fit[tr], e_fit[tr])
        train.alpha_id, train.alpha_exp, train.labels = a_fit[tr], e_fit[tr], labels[tr]
        val = _SubsetWithCodes(base, va, labels[va], gt_id[va], gt_exp[va],
                               extra={"fit_alpha_id": a_fit[va], "fit_alpha_exp": e_fit[va]})
    return TrainingData(train, val, model, int(labels.max()) + 1, targets, Path(path))


@dataclass
class TrainedModels:
    """What :func:`train_pipeline` returns.

    Attributes
    ----------
    run_dir : Path
        ``data/runs/<config_hash>/``.
    config_hash : str
    checkpoints : dict
        Phase -> final checkpoint path (``phase1`` is the "3DMM-CNN-like" encoder, ``phase3``
        the paper's network, ``texture`` the texture network).
    histories : dict
        Phase -> per-step metrics (pandas DataFrame: step, epoch, lr, loss and its parts, images_per_s).
    epochs : dict
        Phase -> per-epoch metrics (epoch, step, loss, stage, lambda_r, switch).
    info : dict
        Phase -> what the final checkpoint records (steps, epochs, and for ``phase3`` the
        ``switch_step`` / ``switch_epoch`` / ``switch_reason`` of the lambda_r switch).
    targets : str
    """

    run_dir: Path
    config_hash: str
    checkpoints: dict
    histories: dict
    epochs: dict
    info: dict
    targets: str = "fitted"

    def load(self, phase: str) -> nn.Module:
        """The trained network of a phase (eval mode, CPU)."""
        if phase not in self.checkpoints:
            raise ValueError(f"no checkpoint for {phase!r}; have {sorted(self.checkpoints)}")
        return load_model(self.checkpoints[phase], expect_hash=self.config_hash)


def run_config(profile: str | dict = "book", targets: str = "fitted") -> dict:
    """The part of a profile that determines the trained networks (hashed into the run folder).

    The ``train.sweep`` entry is left out (the sweep has its own folder), and so are settings
    that do not change the result (progress, logging and checkpoint intervals, workers).
    """
    cfg = load_profile(profile) if not isinstance(profile, dict) else profile
    tcfg = validate_train_config(cfg["train"])
    tcfg = {k: v for k, v in tcfg.items()
            if k not in ("sweep", "checkpoint_every", "log_every", "num_workers", "num_threads")}
    return {"model": cfg.get("model"), "synth": cfg.get("synth"), "fitting": cfg.get("fitting"),
            "network": validate_network_config(cfg["network"]), "train": tcfg, "targets": targets}


def train_pipeline(profile: str | dict = "book", progress: bool = True, phases: Sequence[str] = PHASES,
                   resume: bool = True, targets: str = "fitted", data: TrainingData | None = None,
                   device: str | None = None) -> TrainedModels:
    """Run (or load from ``data/runs/<config_hash>/``) Phase I, II, III and the texture baseline.

    A phase whose final checkpoint exists is loaded, not retrained; an interrupted one resumes
    from its state checkpoint (``resume=True``). Under ``torchrun`` every process calls this;
    rank 0 writes.

    Parameters
    ----------
    profile : str or dict
        ``"book"``, ``"paper"``, a YAML path or a loaded profile.
    progress : bool
        Progress bars.
    phases : sequence of str
        Which of ``phase1``, ``phase2``, ``phase3``, ``texture`` to run (a phase's
        prerequisites must then exist: phase2 needs phase1, phase3 needs phase2).
    resume : bool
        Continue interrupted phases from their state checkpoints.
    targets : {"fitted", "ground_truth"}
        See :func:`training_data`.
    data : TrainingData, optional
        Reuse already loaded data.
    device : str, optional
        Overrides ``train.device``.

    Returns
    -------
    TrainedModels

    Raises
    ------
    ValueError
        On an unknown phase or a missing prerequisite; ConfigError on an invalid profile.
    """
    cfg = load_profile(profile) if not isinstance(profile, dict) else profile
    bad = set(phases) - set(PHASES)
    if bad:
        raise ValueError(f"unknown phase(s) {sorted(bad)}; expected some of {PHASES}")
    tcfg, ncfg = validate_train_config(cfg["train"]), validate_network_config(cfg["network"])
    rank, _ = init_distributed()
    chash = config_hash(run_config(cfg, targets))
    run_dir = data_dir("runs", chash)
    ckpts = {p: run_dir / f"{p}.pt" for p in PHASES}
    # one process at a time per run folder (under torchrun only rank 0 takes the lock; the
    # other ranks follow it through the process group)
    with _RunLock(run_dir, enabled=rank == 0 and not dist.is_initialized()):
        _train_missing(cfg, phases, ckpts, run_dir, chash, tcfg, ncfg, rank, targets, data, progress,
                       resume, device)
    hist, eps, info, have = {}, {}, {}, {}
    for p in PHASES:
        if ckpts[p].is_file():
            have[p] = ckpts[p]
            hist[p] = _read_csv(run_dir / f"{p}.csv")
            eps[p] = _read_csv(run_dir / f"{p}_epochs.csv")
            info[p] = dict(load_checkpoint(ckpts[p])["info"])
    return TrainedModels(run_dir, chash, have, hist, eps, info, targets)


def _train_missing(cfg, phases, ckpts, run_dir, chash, tcfg, ncfg, rank, targets, data, progress,
                   resume, device) -> None:
    todo = [p for p in PHASES if p in phases and not ckpts[p].is_file()]
    if todo and data is None:
        if dist.is_initialized() and rank != 0:
            dist.barrier()  # rank 0 builds the data first
        data = training_data(cfg, targets=targets, progress=progress and rank == 0)
        if dist.is_initialized() and rank == 0:
            dist.barrier()
    for phase in todo:
        seed_everything(tcfg["seed"])
        if phase == "phase1":
            scaler = fit_code_scaler(data.train, ncfg["code_margin"])
            net = DisentangledFaceNet.from_config(ncfg, data.model, data.n_subjects, scaler=scaler)
        elif phase == "texture":
            net = TextureNet.from_config(ncfg, data.n_subjects)
        else:
            prev = "phase1" if phase == "phase2" else "phase2"
            if not ckpts[prev].is_file():
                raise ValueError(f"{phase} starts from {prev}, which has not been trained: run it first")
            net = load_model(ckpts[prev], expect_hash=chash).train()
        train_phase(phase, net, data.train, tcfg, run_dir, model=data.model, chash=chash, resume=resume,
                    progress=progress, device=device)


def evaluate_phases(trained: TrainedModels, data: TrainingData, batch_size: int = 64):
    """Held-out 3D error and identification accuracy of every trained network.

    Returns
    -------
    pandas.DataFrame
        One row per network: ``network``, ``rmse_mm`` (per-vertex RMS distance to the
        ground-truth shape, mm, model frame, no alignment), ``rmse_id_mm`` (identity part vs
        the true neutral shape), ``acc`` (top-1 over the training subjects; NaN where the
        network has no trained classifier). ``phase1`` decodes with the 3DMM (3DMM-CNN-like),
        ``phase2`` is the Phase I encoder with the Phase II decoders, ``phase3`` the paper's
        network; ``fit`` is the 3DMM fit itself (the targets) for reference.
    """
    import pandas as pd

    rows = []
    m = data.model
    for p, ck in trained.checkpoints.items():
        net = load_model(ck)
        if p == "texture":
            rows.append({"network": p, "rmse_mm": float("nan"), "rmse_id_mm": float("nan"),
                         "acc": evaluate(net, data.val, None, batch_size)["acc"]})
            continue
        if p == "phase1":  # decode with the 3DMM
            net.init_decoders_from_model(m)
        ev = evaluate(net, data.val, m, batch_size)
        rows.append({"network": p, "rmse_mm": ev["rmse_mm"], "rmse_id_mm": ev["rmse_id_mm"],
                     "acc": ev["acc"] if p == "phase3" else float("nan")})
    v = data.val
    a_fit = torch.stack([v[i]["fit_alpha_id"] for i in range(len(v))]).float()
    e_fit = torch.stack([v[i]["fit_alpha_exp"] for i in range(len(v))]).float()
    a_gt = torch.stack([v[i]["alpha_id"] for i in range(len(v))]).float()
    e_gt = torch.stack([v[i]["alpha_exp"] for i in range(len(v))]).float()
    d = m.shape(a_fit, e_fit) - m.shape(a_gt, e_gt)
    d_id = m.identity_shape(a_fit) - m.identity_shape(a_gt)
    rows.append({"network": "fit", "rmse_mm": float(d.pow(2).sum(-1).mean().sqrt()),
                 "rmse_id_mm": float(d_id.pow(2).sum(-1).mean().sqrt()), "acc": float("nan")})
    return pd.DataFrame(rows)


def lambda_sweep(profile: str | dict = "book", trained: TrainedModels | None = None,
                 data: TrainingData | None = None, lambdas: Sequence[float] | None = None,
                 epochs: int | None = None, progress: bool = True, targets: str = "fitted"):
    """Effect of lambda_r (Eq. 5): short fixed-lambda_r Phase III fine-tunes from the same Phase II start.

    Each run trains Phase III with one ``lambda_r`` for ``train.sweep.epochs`` epochs (learning
    rate ``train.sweep.lr`` or phase3's) from ``phase2.pt``, then is evaluated on the held-out
    images. Cached under ``<run_dir>/sweep/<hash of the sweep>/``.

    Returns
    -------
    pandas.DataFrame
        One row per lambda_r: ``lambda_r``, ``rmse_mm``, ``rmse_id_mm`` (mm, held-out images vs
        the ground-truth shapes), ``acc`` (top-1 over the training subjects on held-out images),
        ``final_loss`` (last epoch's training loss) and ``checkpoint`` (path of that network).
    """
    cfg = load_profile(profile) if not isinstance(profile, dict) else profile
    tcfg = validate_train_config(cfg["train"])
    sw = dict(tcfg["sweep"])
    if lambdas is not None:
        sw["lambda_r"] = [float(x) for x in lambdas]
    if epochs is not None:
        sw["epochs"] = int(epochs)
    trained = trained or train_pipeline(cfg, progress=progress, phases=("phase1", "phase2"), targets=targets,
                                        data=data)
    if "phase2" not in trained.checkpoints:
        raise ValueError("the sweep starts from phase2, which has not been trained")
    sdir = trained.run_dir / "sweep" / config_hash(sw)
    with _RunLock(sdir):
        return _sweep_missing(cfg, tcfg, sw, sdir, trained, data, targets, progress)


def _sweep_missing(cfg, tcfg, sw, sdir, trained, data, targets, progress):
    import pandas as pd

    table = sdir / "results.csv"
    done = _read_csv(table)
    rows = [] if done.empty else done.to_dict("records")
    have = {float(r["lambda_r"]) for r in rows}
    todo = [lam for lam in sw["lambda_r"] if lam not in have]
    if todo:
        data = data or training_data(cfg, targets=targets, progress=progress)
    for lam in todo:
        c = copy.deepcopy(tcfg)
        c["phase3"].update(lambda_r=[lam], epochs=sw["epochs"], lr=sw["lr"] or tcfg["phase3"]["lr"])
        tag = f"lambda_{lam:g}"
        seed_everything(tcfg["seed"])
        net = load_model(trained.checkpoints["phase2"]).train()
        res = train_phase("phase3", net, data.train, c, sdir, model=data.model, chash=trained.config_hash,
                          progress=progress, tag=tag)
        ev = evaluate(net, data.val, data.model)
        rows.append({"lambda_r": lam, "rmse_mm": ev["rmse_mm"], "rmse_id_mm": ev["rmse_id_mm"], "acc": ev["acc"],
                     "final_loss": float(res.epochs.loss.iloc[-1]), "checkpoint": res.checkpoint.name})
        out = pd.DataFrame(rows)
        with atomic_path(table) as tmp:
            out.to_csv(tmp, index=False)
    out = pd.DataFrame(rows)
    out = out[out.lambda_r.isin(sw["lambda_r"])].sort_values("lambda_r").reset_index(drop=True)
    out["checkpoint"] = [str(sdir / c) for c in out.checkpoint]
    return out


# =============================================================================== CLI
def main(argv: Sequence[str] | None = None) -> int:
    """``python -m disentangled_face.train --config book|paper|path.yaml [--phase ...] [--resume]``."""
    ap = argparse.ArgumentParser(prog="python -m disentangled_face.train",
                                 description="Train the encoder-decoder of Liu et al. (CVPR 2018): "
                                             "Phase I, II, III (Sec. 3.3.3) and the texture baseline.")
    ap.add_argument("--config", default="book", help="profile name (book, paper) or a YAML path")
    ap.add_argument("--phase", default="all", choices=("all", *PHASES), help="which phase (default: all)")
    ap.add_argument("--resume", action="store_true",
                    help="continue an interrupted phase from its state checkpoint (else restart it)")
    ap.add_argument("--targets", default="fitted", choices=("fitted", "ground_truth"))
    ap.add_argument("--device", default=None, help="override train.device (cpu, cuda, cuda:N)")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    phases = PHASES if args.phase == "all" else (args.phase,)
    out = train_pipeline(args.config, progress=not args.no_progress, phases=phases, resume=args.resume,
                         targets=args.targets, device=args.device)
    rank, _ = _dist_info()
    if rank == 0:
        print(f"run folder: {out.run_dir}")
        for p, ck in out.checkpoints.items():
            e = out.epochs[p]
            last = f"{e.loss.iloc[-1]:.4g}" if len(e) else "n/a"
            print(f"  {p}: {ck}  (final epoch loss {last})")
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


# =============================================================================== figures
def history_figure(trained: TrainedModels, smooth: int = 5):
    """Per-phase loss curves (plotly), the lambda_r switch of Phase III marked.

    Phase I: code regression loss; Phase II: its loss (one point for the closed form);
    Phase III: ``L``, ``lambda_r L_R`` and ``L_C``; texture: ``L_C``. Per-step values, smoothed
    by a running mean over ``smooth`` steps, against the step.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    names = {"phase1": "Phase I: code regression", "phase2": "Phase II: decoders (L_R, mm²)",
             "phase3": "Phase III: λ_R L_R + L_C", "texture": "texture network: L_C"}
    phases = [p for p in PHASES if p in trained.histories and len(trained.histories[p])]
    fig = make_subplots(rows=1, cols=len(phases), subplot_titles=[names[p] for p in phases])
    for j, p in enumerate(phases, 1):
        h = trained.histories[p]
        sm = (lambda s: s.rolling(smooth, min_periods=1).mean()) if len(h) > smooth else (lambda s: s)
        cols = {"phase1": ["loss", "L_id", "L_res"], "phase2": ["L_id", "L_res"],
                "phase3": ["loss", "L_R", "L_C"], "texture": ["L_C"]}[p]
        for c in cols:
            y = sm(h[c] * h["lambda_r"]) if (p == "phase3" and c == "L_R") else sm(h[c])
            label = "λ_R·L_R" if (p == "phase3" and c == "L_R") else c
            fig.add_trace(go.Scatter(x=h.step, y=y, mode="lines+markers" if len(h) < 3 else "lines",
                                     name=f"{p}: {label}", legendgroup=p), row=1, col=j)
        if p == "phase3" and trained.info.get("phase3", {}).get("switch_step", -1) > 0:
            s = trained.info["phase3"]["switch_step"]
            fig.add_vline(x=s, line_dash="dash", line_color="grey", row=1, col=j)
            fig.add_annotation(x=s, y=1, xref="x" if j == 1 else f"x{j}",
                               yref="y domain" if j == 1 else f"y{j} domain", showarrow=False,
                               text=f"λ_R → 1.0 ({trained.info['phase3'].get('switch_reason', '')})",
                               xanchor="left", yanchor="top")
        fig.update_xaxes(title_text="step", row=1, col=j)
    fig.update_yaxes(type="log")
    fig.update_layout(height=380, title="training losses per phase (log scale)", legend=dict(orientation="h", y=-0.25))
    return fig


def sweep_figure(sweep):
    """The lambda_r sweep as a plotly figure with a slider over lambda_r (works without a kernel).

    Left: held-out 3D error (mm) against lambda_r; right: identification accuracy. The slider
    moves a marker to one lambda_r and prints its numbers in the title.
    """
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    x = [f"{v:g}" for v in sweep.lambda_r]
    fig = make_subplots(rows=1, cols=2, subplot_titles=["3D error on held-out images (mm)",
                                                        "identification accuracy (held-out images)"])
    fig.add_trace(go.Scatter(x=x, y=sweep.rmse_mm, mode="lines+markers", name="RMSE, full shape"), 1, 1)
    fig.add_trace(go.Scatter(x=x, y=sweep.rmse_id_mm, mode="lines+markers", name="RMSE, identity part"), 1, 1)
    fig.add_trace(go.Scatter(x=x, y=sweep.acc, mode="lines+markers", name="top-1 accuracy"), 1, 2)
    hi = [go.Scatter(x=[x[0]], y=[sweep.rmse_mm.iloc[0]], mode="markers", marker=dict(size=16, color="black",
                     symbol="circle-open"), showlegend=False),
          go.Scatter(x=[x[0]], y=[sweep.acc.iloc[0]], mode="markers", marker=dict(size=16, color="black",
                     symbol="circle-open"), showlegend=False)]
    fig.add_trace(hi[0], 1, 1)
    fig.add_trace(hi[1], 1, 2)
    steps = []
    for i, r in sweep.reset_index(drop=True).iterrows():
        title = (f"λ_R = {r.lambda_r:g}: RMSE {r.rmse_mm:.2f} mm (identity {r.rmse_id_mm:.2f} mm), "
                 f"accuracy {100 * r.acc:.1f} %")
        steps.append(dict(method="update", label=x[i],
                          args=[{"x": [x, x, x, [x[i]], [x[i]]],
                                 "y": [sweep.rmse_mm, sweep.rmse_id_mm, sweep.acc, [r.rmse_mm], [r.acc]]},
                                {"title": title}]))
    fig.update_layout(sliders=[dict(active=0, steps=steps, currentvalue=dict(prefix="λ_R = "), pad=dict(t=40))],
                      title=steps[0]["args"][1]["title"], height=430)
    fig.update_xaxes(title_text="λ_R", type="category")
    return fig
