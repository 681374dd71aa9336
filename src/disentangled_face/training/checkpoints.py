"""Checkpoints and random state: exact resumption of an interrupted phase.

A **state checkpoint** (``<tag>.state.pt``, written every ``train.checkpoint_every`` steps and
at every epoch's end) holds the weights, the optimiser, the AMP grad scaler, the step, the
sampler's epoch and position, the λ_R plateau state (:class:`~.plateau.PlateauSwitch`) and, for
every rank, the torch / numpy / python (and CUDA) RNG states and the running epoch-loss sum;
the learning rate is a pure function of the step. A **final checkpoint** (``<tag>.pt``) holds
the CPU weights, the architecture (:meth:`~disentangled_face.networks.DisentangledFaceNet.arch`),
the phase and what the run records (``info``). Both hold only tensors and primitive
containers (``torch.load(weights_only=True)``) and the hash of the config that made them;
loading one made by another config raises :class:`CheckpointMismatchError`.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..networks import build_from_arch
from ..paths import atomic_path

__all__ = ["CHECKPOINT_FORMAT", "CheckpointMismatchError", "rng_state", "set_rng_state", "seed_everything",
           "load_checkpoint", "check_checkpoint", "save_state", "save_final", "load_model"]

CHECKPOINT_FORMAT = 1


class CheckpointMismatchError(ValueError):
    """A checkpoint was made by another config, phase or network than the one asked for."""


def rng_state() -> dict:
    """The torch, numpy, python (and CUDA) RNG states of this process, as tensors and primitives."""
    keys, pos, has_gauss, cached = np.random.get_state()[1:]
    st = {"torch": torch.get_rng_state(),
          "numpy": {"keys": torch.from_numpy(np.asarray(keys, np.int64)), "pos": int(pos),
                    "has_gauss": int(has_gauss), "cached": float(cached)},
          "python": [int(x) for x in random.getstate()[1]],
          "python_gauss": random.getstate()[2]}
    if torch.cuda.is_available():
        st["cuda"] = [s for s in torch.cuda.get_rng_state_all()]
    return st


def set_rng_state(st: dict) -> None:
    """Restore what :func:`rng_state` returned."""
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


def check_checkpoint(ck: dict, path: Path, chash: str, phase: str) -> None:
    """Raise :class:`CheckpointMismatchError` unless ``ck`` was made by config ``chash`` for ``phase``."""
    if ck.get("config_hash") != chash:
        raise CheckpointMismatchError(
            f"{path} was written by config {ck.get('config_hash')!r}, this run's config is {chash!r}; "
            "use the config that made it, or another run folder")
    if ck.get("phase") != phase:
        raise CheckpointMismatchError(f"{path} is a '{ck.get('phase')}' checkpoint, expected '{phase}'")


def save_state(path: Path, *, chash: str, phase: str, net: nn.Module, optimizer, grad_scaler, step: int,
               epoch: int, position: int, phase_state: dict, ranks: list, world_size: int) -> None:
    """Write a state checkpoint atomically (``ranks``: per rank ``{"rng": ..., "ep_sum": [sum, count]}``)."""
    ck = {"format": CHECKPOINT_FORMAT, "config_hash": chash, "phase": phase, "arch": net.arch(),
          "model": net.state_dict(), "optimizer": optimizer.state_dict(),
          "grad_scaler": grad_scaler.state_dict() if grad_scaler.is_enabled() else {},
          "step": step, "epoch": epoch, "position": position, "phase_state": dict(phase_state),
          "ranks": ranks, "world_size": world_size}
    with atomic_path(path) as tmp:
        torch.save(ck, tmp)


def save_final(net: nn.Module, path: str | os.PathLike, chash: str, phase: str, extra: dict | None = None) -> Path:
    """Write a network's weights (CPU) with its architecture, config hash and phase, atomically."""
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    ck = {"format": CHECKPOINT_FORMAT, "config_hash": chash, "phase": phase, "arch": net.arch(),
          "model": state, "info": dict(extra or {})}
    with atomic_path(path) as tmp:
        torch.save(ck, tmp)
    return path


def load_model(path: str | os.PathLike, expect_hash: str | None = None, map_location="cpu") -> nn.Module:
    """Rebuild a trained network from a checkpoint (``<phase>.pt`` or ``<phase>.state.pt``), in eval mode.

    The network's ``trained_phase`` is the checkpoint's phase, so that
    :mod:`disentangled_face.networks.inference` decodes a Phase I network through the 3DMM.

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
    net.trained_phase = ck.get("phase")
    return net.eval()
