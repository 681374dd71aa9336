"""Distributed set-up: the process group, the device, mixed precision and the resumable sampler.

Under ``torchrun`` every process runs the same trainer; the global batch ``B`` is split as
``B / world`` per process, the :class:`ResumableSampler` gives each rank its shard of one
permutation per epoch (so the shards of one step are the single-process batch of that step)
and ``DistributedDataParallel`` averages the gradients. NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

__all__ = ["dist_info", "init_distributed", "close_distributed", "resolve_device", "amp_dtype",
           "ResumableSampler", "gather_objects", "all_reduce_sum", "barrier"]


def dist_info() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) without a process group."""
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
    return dist_info()


def close_distributed() -> None:
    """Leave the process group (when there is one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


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


def amp_dtype(amp: str, device: torch.device):
    """The autocast dtype of ``train.amp`` on ``device`` (None: full precision; CPU always fp32)."""
    if device.type != "cuda" or amp == "none":
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]


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


def gather_objects(obj: Any, world: int) -> list:
    """Every rank's ``obj`` (a list of ``world`` items; ``[obj]`` alone)."""
    if world == 1:
        return [obj]
    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(t: torch.Tensor, world: int) -> None:
    """Sum ``t`` over the ranks in place (nothing alone)."""
    if world > 1:
        dist.all_reduce(t)


def barrier(world: int) -> None:
    """Wait for every rank (nothing alone)."""
    if world > 1:
        dist.barrier()
