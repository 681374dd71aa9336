"""The training loop of one phase: set-up, resume, the step loop, the epoch's end, the final save.

:func:`train_phase` trains one :class:`~.phases.Phase` on a dataset and writes into a run
folder (files: :class:`~.logging.RunFiles`; checkpoints and random state:
:mod:`.checkpoints`; the process group and sampler: :mod:`.distributed`). ``resume=True``
continues at the state checkpoint's step and gives the parameters of an uninterrupted run.
The final weights go to ``<tag>.pt`` and the state checkpoint is then removed (a finished
phase is loaded, not resumed).
"""

from __future__ import annotations

import os
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..config import TrainConfig
from . import checkpoints as ck
from .augment import make_augment
from .closed_form import train_closed_form
from .distributed import (ResumableSampler, all_reduce_sum, amp_dtype, barrier, dist_info, gather_objects,
                          resolve_device)
from .logging import PhaseLog, RunFiles, read_csv, truncate_csv
from .phases import Phase, PhaseStep, get_phase
from .schedule import lr_factor, make_optimizer

__all__ = ["PhaseResult", "train_phase"]

_BATCH_KEYS = ("image", "label", "alpha_id", "alpha_exp")


@dataclass
class PhaseResult:
    """Outcome of :func:`train_phase`: final checkpoint, per-step and per-epoch histories."""

    phase: str
    checkpoint: Path
    history: Any  # pandas.DataFrame
    epochs: Any  # pandas.DataFrame
    completed: bool


class _Run:
    """Everything one phase's loop touches: network, optimiser, sampler, λ_R switch, counters, logs."""

    def __init__(self, phase: Phase, net: nn.Module, dataset: Dataset, train: TrainConfig, files: RunFiles,
                 model, chash: str, dev: torch.device, batch: int, monitor: Dataset | None = None):
        self.phase, self.net, self.train, self.files, self.chash, self.dev = phase, net, train, files, chash, dev
        self.model, self.samples = model, _monitor_samples(dataset, monitor, train.seed)
        self.dataset, self.prepared = dataset, {}
        self.pcfg = train.phase(phase.name)
        self.rank, self.world = dist_info()
        self.batch, self.per_rank = batch, batch // self.world
        self.amp = amp_dtype(train.amp, dev)
        self.chan_last = train.channels_last and dev.type == "cuda"
        self.steps_per_epoch = len(dataset) // batch
        self.switch = phase.switch(self.pcfg)
        self.total_steps = self.switch.max_epochs * self.steps_per_epoch
        phase.set_trainable(net)
        net.to(dev)
        if self.chan_last:
            net.to(memory_format=torch.channels_last)
        self.step_module = PhaseStep(phase, net, model, self.pcfg).to(dev)
        self.optimizer = make_optimizer([p for p in net.parameters() if p.requires_grad], self.pcfg)
        self.grad_scaler = torch.amp.GradScaler("cuda", enabled=self.amp == torch.float16)
        self.augment = make_augment(self.pcfg.augment)
        if self.augment is not None:
            self.augment.to(dev)
        self.step = self.epoch = self.position = 0
        self.ep_resume = [0.0, 0.0]

    def restore(self, resume: bool) -> None:
        """Seed this rank; with ``resume`` and a state checkpoint, continue from it (else start afresh)."""
        files, rank = self.files, self.rank
        ck.seed_everything(self.train.seed + rank)
        if resume and files.state.is_file():
            st = ck.load_checkpoint(files.state)
            ck.check_checkpoint(st, files.state, self.chash, self.phase.name)
            self.net.load_state_dict(st["model"])
            self.optimizer.load_state_dict(st["optimizer"])
            if st.get("grad_scaler"):
                self.grad_scaler.load_state_dict(st["grad_scaler"])
            self.step, self.epoch, self.position = st["step"], st["epoch"], st["position"]
            self.switch.load_state_dict(st["phase_state"])
            if st.get("world_size") == self.world:
                ck.set_rng_state(st["ranks"][rank]["rng"])
                self.ep_resume = list(st["ranks"][rank]["ep_sum"])
            if rank == 0:
                truncate_csv(files.steps, self.step)
                truncate_csv(files.epochs, self.epoch - 1, key="epoch")
        else:
            self.prepared = self.phase.prepare(self.net, self.dataset, self.pcfg)
            if rank == 0:
                files.run_dir.mkdir(parents=True, exist_ok=True)
                for pth in (files.steps, files.epochs):
                    if pth.exists():
                        pth.unlink()
        self.step_module.lambda_r = self.switch.lambda_r

    def wrap(self, dataset: Dataset) -> None:
        """DDP around the step module (several processes), the sampler and the loader."""
        self.wrapped: nn.Module = self.step_module
        if self.world > 1:
            self.wrapped = nn.parallel.DistributedDataParallel(
                self.step_module, device_ids=[self.dev.index] if self.dev.type == "cuda" else None,
                broadcast_buffers=False)
        inputs = self.phase.inputs(dataset)
        self.sampler = ResumableSampler(inputs, num_replicas=self.world, rank=self.rank, seed=self.train.seed)
        self.loader = DataLoader(inputs, batch_size=self.per_rank, sampler=self.sampler, drop_last=True,
                                 num_workers=self.train.num_workers, pin_memory=self.dev.type == "cuda",
                                 persistent_workers=False,
                                 # its own generator: each epoch's iterator draws its workers' base seed from it,
                                 # not from the global RNG that the augmentation uses (resume stays exact)
                                 generator=torch.Generator().manual_seed(self.train.seed + self.rank))

    def save_state(self, ep_sum: torch.Tensor) -> None:
        """A state checkpoint (every rank's RNG and epoch-loss sum; rank 0 writes)."""
        mine = {"rng": ck.rng_state(), "ep_sum": [float(ep_sum[0]), float(ep_sum[1])]}
        ranks = gather_objects(mine, self.world)
        if self.rank == 0:
            ck.save_state(self.files.state, chash=self.chash, phase=self.phase.name, net=self.net,
                          optimizer=self.optimizer, grad_scaler=self.grad_scaler, step=self.step,
                          epoch=self.epoch, position=self.position, phase_state=self.switch.state_dict(),
                          ranks=ranks, world_size=self.world)

    def train_step(self, b: dict) -> tuple[float, dict]:
        """One optimiser step on a batch; (learning rate, the phase's metrics as floats)."""
        b = {k: v.to(self.dev, non_blocking=True) for k, v in b.items() if k in _BATCH_KEYS}
        if "image" in b and self.augment is not None:
            b["image"] = self.augment(b["image"])
        if "image" in b and self.chan_last:
            b["image"] = b["image"].contiguous(memory_format=torch.channels_last)
        lr = self.pcfg.lr * lr_factor(self.step, self.steps_per_epoch, self.total_steps, self.pcfg)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        with torch.autocast(self.dev.type, dtype=self.amp) if self.amp is not None else nullcontext():
            loss, parts = self.wrapped(**b)
        self.optimizer.zero_grad(set_to_none=True)
        self.grad_scaler.scale(loss).backward()
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()
        self.step += 1
        self.position += 1
        return lr, {k: float(v) for k, v in parts.items()}

    def end_epoch(self, ep_sum: torch.Tensor, log: PhaseLog) -> None:
        """Mean loss over all ranks, the λ_R switch, the epoch row and a state checkpoint."""
        all_reduce_sum(ep_sum, self.world)
        ep_loss = float(ep_sum[0] / max(ep_sum[1], 1))
        self.epoch += 1
        self.position = 0
        sw = self.switch
        row = {"epoch": self.epoch - 1, "step": self.step, "loss": ep_loss, "stage": sw.stage, "lambda_r": sw.lambda_r}
        if self.samples is not None and self.rank == 0:
            row.update(self.phase.epoch_metrics(self.net, *self.samples, self.model))
        switched = sw.end_epoch(ep_loss, self.step, self.epoch)
        if switched:
            self.step_module.lambda_r = sw.lambda_r
        log.epoch({**row, "switch": int(switched)})
        self.save_state(torch.zeros(2, dtype=torch.float64))  # the next epoch's sum

    def run(self, log: PhaseLog, max_steps: int | None) -> bool:
        """The step loop, epoch after epoch until the λ_R schedule ends; True when stopped at ``max_steps``."""
        while not self.switch.done and self.epoch < self.switch.max_epochs:
            self.sampler.set_epoch(self.epoch)
            self.sampler.start = self.position * self.per_rank
            ep_sum = torch.tensor(self.ep_resume, dtype=torch.float64)
            self.ep_resume = [0.0, 0.0]
            log.start_epoch()
            for b in self.loader:
                if max_steps is not None and self.step >= max_steps:
                    return True
                lr, vals = self.train_step(b)
                ep_sum += torch.tensor([vals["loss"], 1.0], dtype=torch.float64)
                log.step(self.step, self.epoch, lr, vals)
                if self.step % self.train.checkpoint_every == 0:
                    log.flush()
                    self.save_state(ep_sum)
            self.end_epoch(ep_sum, log)
        return False

    def finish(self, interrupted: bool) -> None:
        """The final checkpoint (rank 0) once complete; every parameter trainable again."""
        sw = self.switch
        if not interrupted:
            self.net.trained_phase = self.phase.name
            if self.rank == 0:
                ck.save_final(self.net, self.files.final, self.chash, self.phase.name,
                              extra={"steps": self.step, "epochs": self.epoch, "switch_step": sw.switch_step,
                                     "switch_epoch": sw.switch_epoch, "switch_reason": sw.switch_reason,
                                     **self.prepared})
                self.files.state.unlink(missing_ok=True)  # the phase is complete: its resume state is not needed
        barrier(self.world)
        for p in self.net.parameters():
            p.requires_grad_(True)


#: Images per split on which the learning curves are measured at every epoch's end.
MONITOR_IMAGES = 512


def _monitor_samples(dataset: Dataset, monitor: Dataset | None, seed: int):
    """Fixed random samples (training images, held-out images) for the learning curves, or None."""
    if monitor is None or len(monitor) == 0:
        return None
    from torch.utils.data import Subset  # noqa: PLC0415

    g = torch.Generator().manual_seed(seed)  # its own generator: the training RNG is untouched
    pick = [torch.randperm(len(d), generator=g)[:MONITOR_IMAGES].sort().values.tolist() for d in (dataset, monitor)]
    return Subset(dataset, pick[0]), Subset(monitor, pick[1])


def _batch_size(phase: Phase, train: TrainConfig, dataset: Dataset) -> int:
    batch = train.phase(phase.name).batch_size or train.batch_size
    _, world = dist_info()
    if batch % world:
        raise ValueError(f"batch size {batch} is not divisible by the {world} processes")
    if not phase.solves_in_closed_form(train.phase(phase.name)) and len(dataset) // batch < 1:
        raise ValueError(f"dataset of {len(dataset)} items is smaller than one batch of {batch}")
    return batch


def train_phase(phase: str | Phase, net: nn.Module, dataset: Dataset, train: TrainConfig,
                run_dir: str | os.PathLike, *, model=None, chash: str = "", resume: bool = False,
                progress: bool = True, device: str | torch.device | None = None, max_steps: int | None = None,
                tag: str | None = None, monitor: Dataset | None = None) -> PhaseResult:
    """Train one phase (:mod:`.phases`) on ``dataset``; write checkpoints and metrics to ``run_dir``.

    Parameters
    ----------
    phase : {"phase1", "phase2", "phase3", "texture"} or Phase
    net : DisentangledFaceNet or TextureNet
        Trained in place (its starting weights are the previous phases').
    dataset : Dataset
        Items ``{image, label, alpha_id, alpha_exp}`` (fitted codes); Phase II uses only the codes.
    train : TrainConfig
        ``cfg.train``.
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
        File stem (default the phase's name).
    monitor : Dataset, optional
        Held-out images (items as ``training_data``'s ``val``: true ``alpha_id`` / ``alpha_exp``
        and the fitted ``fit_alpha_id`` / ``fit_alpha_exp``). At every epoch's end the
        learning curves (:meth:`~.phases.Phase.epoch_metrics`) are measured on
        :data:`MONITOR_IMAGES` of them and of the training images and written to the epoch CSV.

    Returns
    -------
    PhaseResult

    Raises
    ------
    ValueError
        On a bad phase name or network, a too-small dataset, a global batch not divisible by the
        number of processes, or a missing morphable model.
    CheckpointMismatchError
        When resuming from a checkpoint of another config or phase.
    """
    import pandas as pd

    phase = get_phase(phase)
    files = RunFiles(Path(run_dir), tag or phase.name)
    dev = torch.device(device) if device is not None else resolve_device(train.device)
    phase.check_network(net)
    batch = _batch_size(phase, train, dataset)
    rank, world = dist_info()
    if phase.solves_in_closed_form(train.phase(phase.name)):
        hist, epochs = train_closed_form(phase, net, dataset, model, files, chash, batch, rank, world)
        net.trained_phase = phase.name
        return PhaseResult(phase.name, files.final, hist, epochs, True)
    r = _Run(phase, net, dataset, train, files, model, chash, dev, batch, monitor)
    r.restore(resume)
    r.wrap(dataset)
    log = PhaseLog(files, phase.metrics, rank, r.step, r.total_steps, train.log_every, batch, progress)
    threads_before = torch.get_num_threads()
    if train.num_threads is not None and dev.type == "cpu":
        torch.set_num_threads(train.num_threads)
    try:
        interrupted = r.run(log, max_steps)
    finally:
        torch.set_num_threads(threads_before)
        log.close()
    r.finish(interrupted)
    return PhaseResult(phase.name, files.final, read_csv(files.steps) if rank == 0 else pd.DataFrame(),
                       read_csv(files.epochs) if rank == 0 else pd.DataFrame(), not interrupted)
