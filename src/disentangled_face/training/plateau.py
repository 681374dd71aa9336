"""The λ_R plateau switch of Phase III (Sec. 3.3.3): when to go from λ_R = 0.5 to 1.0.

The phase trains with ``lambdas[0]`` until the epoch loss saturates: no relative improvement
larger than ``min_delta`` (``loss < best * (1 - min_delta)``) for ``patience`` epochs in a
row, or ``epochs`` epochs at most; then with ``lambdas[1]`` for ``epochs_after_switch``
epochs. With one value (or in another phase, whose "λ_R" is a constant 0) there is no switch:
the phase ends after ``epochs`` epochs.

>>> sw = PlateauSwitch((0.5, 1.0), epochs=5, epochs_after_switch=1, patience=1, min_delta=0.1)
>>> [sw.end_epoch(loss, step=10 * (i + 1), epoch=i + 1) for i, loss in enumerate([4.0, 3.9])]
[False, True]
>>> sw.lambda_r, sw.switch_reason, sw.switch_epoch, sw.done
(1.0, 'plateau', 2, False)
>>> sw.end_epoch(3.0, step=30, epoch=3), sw.done
(False, True)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["PlateauSwitch"]

#: What a state checkpoint keeps (its ``phase_state``).
_STATE = ("stage", "stage_epoch", "best", "bad", "switch_step", "switch_epoch", "switch_reason")


@dataclass
class PlateauSwitch:
    """λ_R before / after the plateau switch, and the epoch bookkeeping that decides it.

    Parameters
    ----------
    lambdas : tuple of float
        ``(before, after)`` the switch, or one value (no switch).
    epochs : int
        Epochs at ``lambdas[0]`` at most (exactly, without a switch).
    epochs_after_switch : int
        Epochs at ``lambdas[1]`` (0: the phase ends at the switch).
    patience : int
        Epochs in a row without a relative improvement larger than ``min_delta`` that make a plateau.
    min_delta : float
        Relative improvement, e.g. 0.01 (1 %).

    Attributes
    ----------
    stage : int
        0 before the switch, 1 after, ``len(lambdas)`` when the phase is finished.
    stage_epoch, best, bad
        Epochs in this stage, the best epoch loss in it, epochs since an improvement.
    switch_step, switch_epoch, switch_reason
        Where the switch happened (-1, -1, "" before it) and why: ``"plateau"`` or ``"max_epochs"``.
    """

    lambdas: tuple[float, ...]
    epochs: int
    epochs_after_switch: int = 0
    patience: int = 1
    min_delta: float = 0.0
    stage: int = 0
    stage_epoch: int = 0
    best: float = float("inf")
    bad: int = 0
    switch_step: int = -1
    switch_epoch: int = -1
    switch_reason: str = ""

    @property
    def switches(self) -> bool:
        """Whether there is a second λ_R to switch to."""
        return len(self.lambdas) == 2

    @property
    def max_epochs(self) -> int:
        """Epochs of the phase at most."""
        return self.epochs + (self.epochs_after_switch if self.switches else 0)

    @property
    def lambda_r(self) -> float:
        """λ_R of the current stage."""
        return self.lambdas[min(self.stage, len(self.lambdas) - 1)]

    @property
    def done(self) -> bool:
        """Whether the phase has finished."""
        return self.stage >= len(self.lambdas)

    def end_epoch(self, loss: float, step: int, epoch: int) -> bool:
        """Record a finished epoch's mean loss (``epoch``: epochs done so far); True when λ_R switches now."""
        stage_epochs = self.epochs if self.stage == 0 else self.epochs_after_switch
        self.stage_epoch += 1
        if loss < self.best * (1 - self.min_delta):
            self.best, self.bad = loss, 0
        else:
            self.bad += 1
        if not (self.switches and self.stage == 0):
            if self.stage_epoch >= stage_epochs:
                self.stage = len(self.lambdas)  # finished
            return False
        if self.bad >= self.patience:
            self.switch_reason = "plateau"
        elif self.stage_epoch >= stage_epochs:
            self.switch_reason = "max_epochs"
        else:
            return False
        self.stage, self.stage_epoch, self.best, self.bad = 1, 0, float("inf"), 0
        self.switch_step, self.switch_epoch = step, epoch
        if self.epochs_after_switch == 0:
            self.stage = len(self.lambdas)
        return True

    def state_dict(self) -> dict:
        """The bookkeeping (primitives), for a state checkpoint."""
        return {k: v for k, v in asdict(self).items() if k in _STATE}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""
        for k in _STATE:
            if k in state:
                setattr(self, k, state[k])
