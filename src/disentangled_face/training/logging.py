"""Logs of a phase: per-step metrics (``<tag>.csv``), per-epoch ones (``<tag>_epochs.csv``),
TensorBoard (when asked for) and the progress bar; rank 0 writes.

TensorBoard is an optional extra (``pip install .[tensorboard]``; the book's install leaves it
out): the per-step metrics are also written to ``<run_dir>/tensorboard/<tag>/`` when
:class:`PhaseLog` is made with ``tensorboard=True`` or, for runs started elsewhere (the
pipeline, the command line), when ``$DISENTANGLED_FACE_TENSORBOARD=1``.

``<tag>.csv``: ``step, epoch, lr, <the phase's metrics>, images_per_s``;
``<tag>_epochs.csv``: ``epoch, step, loss, stage, lambda_r, switch``. A resumed run first
truncates both to the state checkpoint's step and epoch, so they read as one uninterrupted run.
"""

from __future__ import annotations

import csv
import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..paths import atomic_path

__all__ = ["RunFiles", "read_csv", "truncate_csv", "PhaseLog", "TENSORBOARD_ENV", "tensorboard_writer"]

#: Set to ``1`` to log every phase to TensorBoard too (needs the ``tensorboard`` extra).
TENSORBOARD_ENV = "DISENTANGLED_FACE_TENSORBOARD"


def tensorboard_writer(log_dir: Path, purge_step: int | None = None):
    """A ``torch.utils.tensorboard.SummaryWriter`` on ``log_dir``.

    Raises
    ------
    ImportError
        When ``torch.utils.tensorboard`` cannot be imported (the ``tensorboard`` package is not
        installed): the message says to ``pip install .[tensorboard]``.
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise ImportError("TensorBoard logging was asked for (tensorboard=True or "
                          f"${TENSORBOARD_ENV}=1) but torch.utils.tensorboard does not import ({exc}); "
                          "install the extra: pip install .[tensorboard]") from exc
    return SummaryWriter(str(log_dir), purge_step=purge_step)


@dataclass(frozen=True)
class RunFiles:
    """The files of one phase (or one sweep run) in a run folder, named by ``tag``."""

    run_dir: Path
    tag: str

    @property
    def state(self) -> Path:
        return self.run_dir / f"{self.tag}.state.pt"

    @property
    def final(self) -> Path:
        return self.run_dir / f"{self.tag}.pt"

    @property
    def steps(self) -> Path:
        return self.run_dir / f"{self.tag}.csv"

    @property
    def epochs(self) -> Path:
        return self.run_dir / f"{self.tag}_epochs.csv"


def read_csv(path: Path):
    """A CSV log as a DataFrame (empty when missing or empty)."""
    import pandas as pd

    return pd.read_csv(path) if path.is_file() and path.stat().st_size else pd.DataFrame()


def truncate_csv(path: Path, max_value: float, key: str = "step") -> None:
    """Drop the rows whose ``key`` exceeds ``max_value`` (a resumed run's future)."""
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


class PhaseLog:
    """Per-step and per-epoch logs of one phase on one rank (only rank 0 writes anything).

    Parameters
    ----------
    files : RunFiles
    metrics : sequence of str
        The phase's logged loss parts.
    rank : int
    step : int
        The step the run starts (or resumes) at.
    total_steps : int
        For the progress bar.
    log_every : int
        Steps between CSV rows.
    batch : int
        Global batch size (for images per second).
    progress : bool
        Show a tqdm bar.
    tensorboard : bool, optional
        Also log the per-step metrics to TensorBoard under ``<run_dir>/tensorboard/<tag>/``
        (scalars ``<tag>/<metric>`` against the step). ``None``: when ``$DISENTANGLED_FACE_TENSORBOARD``
        is ``1``.

    Raises
    ------
    ImportError
        When TensorBoard is asked for and ``torch.utils.tensorboard`` does not import.
    """

    def __init__(self, files: RunFiles, metrics, rank: int, step: int, total_steps: int, log_every: int,
                 batch: int, progress: bool, tensorboard: bool | None = None):
        from tqdm.auto import tqdm

        self.files, self.metrics, self.rank = files, list(metrics), rank
        self.log_every, self.batch = log_every, batch
        self.csv_file = self.csv_writer = self.tb = None
        if rank == 0:
            files.run_dir.mkdir(parents=True, exist_ok=True)
            new = not files.steps.is_file()
            self.csv_file = open(files.steps, "a", newline="")
            self.csv_writer = csv.writer(self.csv_file)
            if new:
                self.csv_writer.writerow(["step", "epoch", "lr", *self.metrics, "images_per_s"])
            if tensorboard is None:
                tensorboard = os.environ.get(TENSORBOARD_ENV, "") not in ("", "0")
            if tensorboard:
                try:
                    self.tb = tensorboard_writer(files.run_dir / "tensorboard" / files.tag, purge_step=step)
                except ImportError:
                    self.csv_file.close()
                    raise
        self.bar = tqdm(total=total_steps, initial=step, desc=files.tag, disable=not progress or rank != 0,
                        leave=False, dynamic_ncols=True, mininterval=1.0)  # few display messages (notebooks)
        self.t0 = time.perf_counter()

    def start_epoch(self) -> None:
        """Restart the images-per-second clock."""
        self.t0 = time.perf_counter()

    def step(self, step: int, epoch: int, lr: float, vals: dict) -> None:
        """Log one finished step (``vals``: the phase's metrics as floats)."""
        if self.rank != 0:
            return
        dt = time.perf_counter() - self.t0
        self.t0 = time.perf_counter()
        if step % self.log_every == 0:
            self.csv_writer.writerow([step, epoch, f"{lr:.6g}", *[f"{vals[m]:.6g}" for m in self.metrics],
                                      f"{self.batch / max(dt, 1e-9):.4g}"])
            if self.tb is not None:
                for m in self.metrics:
                    self.tb.add_scalar(f"{self.files.tag}/{m}", vals[m], step)
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{vals['loss']:.4g}", epoch=epoch, refresh=False)

    def flush(self) -> None:
        if self.csv_file is not None:
            self.csv_file.flush()

    def epoch(self, row: dict) -> None:
        """Append one row to the per-epoch log."""
        if self.rank != 0:
            return
        new = not self.files.epochs.is_file()
        with open(self.files.epochs, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(row))
            if new:
                w.writeheader()
            w.writerow(row)

    def close(self) -> None:
        self.bar.close()
        if self.csv_file is not None:
            self.csv_file.close()
        if self.tb is not None:
            self.tb.close()
