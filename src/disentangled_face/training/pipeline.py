"""The training pipeline: every phase of a profile, cached by run hash; their evaluation; the λ_R sweep.

:func:`train_pipeline` runs (or loads from ``data/runs/<run hash>/``) Phase I, II, III and the
texture baseline; :func:`evaluate_phases` scores them on the held-out images;
:func:`lambda_sweep` fine-tunes Phase III at fixed λ_R values (chapter 6). The run hash
(:func:`run_hash`) comes from the validated sections that determine the networks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..config import Config, with_overrides
from ..paths import atomic_path, config_hash, data_dir
from ..methods import method_for_phase
from ..networks.inference import BATCH_SIZE, evaluate
from .checkpoints import load_checkpoint, load_model, seed_everything
from .data import TrainingData, training_data
from .distributed import init_distributed
from .logging import read_csv
from .loop import train_phase
from .phases import PHASE_OBJECTS, PHASES

__all__ = ["TrainedModels", "RunLock", "run_config", "run_hash", "train_pipeline", "evaluate_phases",
           "lambda_sweep"]


class RunLock:
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
class TrainedModels:
    """What :func:`train_pipeline` returns.

    Attributes
    ----------
    run_dir : Path
        ``data/runs/<run hash>/``.
    config_hash : str
        The run hash (:func:`run_hash`).
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


def run_config(cfg: Config, targets: str = "fitted") -> dict:
    """The part of a profile that determines the trained networks (hashed into the run folder).

    The training images (the ``train`` protocol's file name, which hashes the generator's
    config), the fitted targets' file name when ``targets`` is ``"fitted"`` or ``"single_image"``
    (which hashes the fitter options and the kind of fit), the ``model`` and ``network`` sections, and ``train`` without ``sweep`` (it has its
    own folder) and without the settings that do not change the result (logging and checkpoint
    intervals, workers, threads), plus ``targets``. The test protocols' sizes and the rendering
    workers are not in it: changing them does not retrain the networks.
    """
    from ..data.protocols import protocol_path  # noqa: PLC0415 - only the file names are needed
    from ..fitting.targets import targets_path  # noqa: PLC0415

    d = cfg.to_dict()
    train = {k: v for k, v in d["train"].items()
             if k not in ("sweep", "checkpoint_every", "log_every", "num_workers", "num_threads")}
    if train.get("subjects") is None:  # all subjects: the same runs as before the option existed
        train.pop("subjects", None)
    data_key = {"train_protocol": protocol_path("train", cfg.synth).name}
    if targets == "fitted":
        data_key["fitted_targets"] = targets_path(cfg).name
    elif targets == "single_image":
        data_key["single_image_targets"] = targets_path(cfg, kind="single_image").name
    return {"model": d["model"], "data": data_key, "network": d["network"], "train": train, "targets": targets}


def run_hash(cfg: Config, targets: str = "fitted") -> str:
    """The run folder's name: the hash of :func:`run_config`."""
    return config_hash(run_config(cfg, targets))


def train_pipeline(cfg: Config, progress: bool = True, phases: Sequence[str] = PHASES, resume: bool = True,
                   targets: str = "fitted", data: TrainingData | None = None,
                   device: str | None = None) -> TrainedModels:
    """Run (or load from ``data/runs/<run hash>/``) Phase I, II, III and the texture baseline.

    A phase whose final checkpoint exists is loaded, not retrained; an interrupted one resumes
    from its state checkpoint (``resume=True``). Under ``torchrun`` every process calls this;
    rank 0 writes.

    Parameters
    ----------
    cfg : Config
        The whole profile (:func:`~disentangled_face.config.load_config`).
    progress : bool
        Progress bars.
    phases : sequence of str
        Which of ``phase1``, ``phase2``, ``phase3``, ``texture`` to run (a phase's
        prerequisites must then exist: phase2 needs phase1, phase3 needs phase2).
    resume : bool
        Continue interrupted phases from their state checkpoints.
    targets : {"fitted", "single_image", "ground_truth"}
        See :func:`~.data.training_data`; each has its own run folder. The 3DDFA-like rival is
        ``phases=("phase1",), targets="single_image"``.
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
        On an unknown phase or a missing prerequisite.
    """
    bad = set(phases) - set(PHASES)
    if bad:
        raise ValueError(f"unknown phase(s) {sorted(bad)}; expected some of {PHASES}")
    rank, world = init_distributed()
    chash = run_hash(cfg, targets)
    run_dir = data_dir("runs", chash)
    ckpts = {p: run_dir / f"{p}.pt" for p in PHASES}
    # one process at a time per run folder (under torchrun only rank 0 takes the lock; the
    # other ranks follow it through the process group)
    with RunLock(run_dir, enabled=rank == 0 and world == 1):
        todo = [p for p in PHASES if p in phases and not ckpts[p].is_file()]
        if todo and data is None:
            data = _load_data(cfg, targets, progress, rank, world)
        for name in todo:
            _train_one(cfg, PHASE_OBJECTS[name], data, ckpts, run_dir, chash, resume, progress, device)
    hist, eps, info, have = {}, {}, {}, {}
    for p in PHASES:
        if ckpts[p].is_file():
            have[p] = ckpts[p]
            hist[p] = read_csv(run_dir / f"{p}.csv")
            eps[p] = read_csv(run_dir / f"{p}_epochs.csv")
            info[p] = dict(load_checkpoint(ckpts[p])["info"])
    return TrainedModels(run_dir, chash, have, hist, eps, info, targets)


def _load_data(cfg: Config, targets: str, progress: bool, rank: int, world: int) -> TrainingData:
    import torch.distributed as dist

    if world > 1 and rank != 0:
        dist.barrier()  # rank 0 builds the data first
    data = training_data(cfg, targets=targets, progress=progress and rank == 0)
    if world > 1 and rank == 0:
        dist.barrier()
    return data


def _train_one(cfg: Config, phase, data: TrainingData, ckpts: dict, run_dir: Path, chash: str, resume: bool,
               progress: bool, device) -> None:
    seed_everything(cfg.train.seed)
    if phase.after is None:
        net = phase.build(cfg.network, data)
    else:
        if not ckpts[phase.after].is_file():
            raise ValueError(f"{phase.name} starts from {phase.after}, which has not been trained: run it first")
        net = load_model(ckpts[phase.after], expect_hash=chash).train()
    train_phase(phase, net, data.train, cfg.train, run_dir, model=data.model, chash=chash, resume=resume,
                progress=progress, device=device, monitor=data.val)


def _method_name(phase: str, targets: str = "fitted") -> str:
    """The methods table's display name of a phase's checkpoint in a run trained on ``targets``
    (Phase II has no method of its own, nor has a phase of a rival's run that it does not use)."""
    try:
        return method_for_phase(phase, targets).name
    except KeyError:
        return "Phase I encoder + Phase II decoders" if phase == "phase2" else f"{phase} on {targets} targets"


def evaluate_phases(trained: TrainedModels, data: TrainingData, batch_size: int = BATCH_SIZE):
    """Held-out 3D error and identification accuracy of every trained network.

    Parameters
    ----------
    trained : TrainedModels
        From :func:`train_pipeline`.
    data : TrainingData
        Its ``val`` split (held-out images of the training subjects) is evaluated.
    batch_size : int
        Images per forward pass (memory only; default ``experiments.batch_size``'s).

    Returns
    -------
    pandas.DataFrame
        One row per network: ``network`` (the phase), ``method`` (its display name in the
        methods table), ``rmse_mm`` (per-vertex RMS distance to the
        ground-truth shape, mm, model frame, no alignment), ``rmse_id_mm`` (identity part vs
        the true neutral shape), ``acc`` (top-1 over the training subjects; NaN where the
        network has no trained classifier). ``phase1`` decodes with the 3DMM (3DMM-CNN-like,
        :data:`~disentangled_face.methods.METHODS`), ``phase2`` is the Phase I
        encoder with the Phase II decoders, ``phase3`` the paper's network; ``fit`` is the
        multi-image 3DMM fit itself (the targets) for reference, and ``mean face`` the
        morphable model's mean shape for every image (the floor a network must beat; its
        ``acc`` is chance, one over the training subjects).
    """
    import pandas as pd

    rows, m = [], data.model
    for p, ck in trained.checkpoints.items():
        phase = PHASE_OBJECTS[p]
        net = load_model(ck)
        ev = evaluate(net, data.val, m if phase.has_shape else None, batch_size)
        nan = float("nan")
        rows.append({"network": p, "method": _method_name(p, trained.targets), "rmse_mm": ev.get("rmse_mm", nan),
                     "rmse_id_mm": ev.get("rmse_id_mm", nan), "acc": ev["acc"] if phase.classifier_trained else nan})
    items = [data.val[i] for i in range(len(data.val))]  # one pass over the held-out items
    a_fit, e_fit, a_gt, e_gt = (torch.stack([it[k] for it in items]).float()
                                for k in ("fit_alpha_id", "fit_alpha_exp", "alpha_id", "alpha_exp"))
    d = m.shape(a_fit, e_fit) - m.shape(a_gt, e_gt)
    d_id = m.identity_shape(a_fit) - m.identity_shape(a_gt)
    rows.append({"network": "fit", "method": "3DMM fit of the training images (the targets)",
                 "rmse_mm": float(d.pow(2).sum(-1).mean().sqrt()),
                 "rmse_id_mm": float(d_id.pow(2).sum(-1).mean().sqrt()), "acc": float("nan")})
    mean = torch.as_tensor(m.s_mean, dtype=torch.float32).reshape(1, -1, 3)
    rows.append({"network": "mean face", "method": "mean face",
                 "rmse_mm": float((m.shape(a_gt, e_gt) - mean).pow(2).sum(-1).mean().sqrt()),
                 "rmse_id_mm": float((m.identity_shape(a_gt) - mean).pow(2).sum(-1).mean().sqrt()),
                 "acc": 1.0 / data.n_subjects})
    return pd.DataFrame(rows)


def lambda_sweep(cfg: Config, trained: TrainedModels | None = None, data: TrainingData | None = None,
                 lambdas: Sequence[float] | None = None, epochs: int | None = None, progress: bool = True,
                 targets: str = "fitted"):
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
    sw = cfg.train.sweep
    sweep = {"lambda_r": [float(x) for x in (sw.lambda_r if lambdas is None else lambdas)],
             "epochs": int(sw.epochs if epochs is None else epochs), "lr": sw.lr}
    start = PHASE_OBJECTS["phase3"].after  # phase2, whose own start is phase1
    trained = trained or train_pipeline(cfg, progress=progress, phases=(PHASE_OBJECTS[start].after, start),
                                        targets=targets, data=data)
    if start not in trained.checkpoints:
        raise ValueError(f"the sweep starts from {start}, which has not been trained")
    sdir = trained.run_dir / "sweep" / config_hash(sweep)
    with RunLock(sdir):
        return _sweep_missing(cfg, sweep, sdir, trained, data, targets, progress)


def _sweep_missing(cfg: Config, sweep: dict, sdir: Path, trained: TrainedModels, data, targets: str, progress: bool):
    import pandas as pd

    table = sdir / "results.csv"
    done = read_csv(table)
    rows = [] if done.empty else done.to_dict("records")
    have = {float(r["lambda_r"]) for r in rows}
    todo = [lam for lam in sweep["lambda_r"] if lam not in have]
    if todo:
        data = data or training_data(cfg, targets=targets, progress=progress)
    for lam in todo:
        run = with_overrides(cfg, {"train.phase3.lambda_r": [lam], "train.phase3.epochs": sweep["epochs"],
                                   "train.phase3.lr": sweep["lr"] or cfg.train.phase3.lr})
        seed_everything(cfg.train.seed)
        net = load_model(trained.checkpoints[PHASE_OBJECTS["phase3"].after]).train()
        res = train_phase("phase3", net, data.train, run.train, sdir, model=data.model, chash=trained.config_hash,
                          progress=progress, tag=f"lambda_{lam:g}")
        ev = evaluate(net, data.val, data.model)
        rows.append({"lambda_r": lam, "rmse_mm": ev["rmse_mm"], "rmse_id_mm": ev["rmse_id_mm"], "acc": ev["acc"],
                     "final_loss": float(res.epochs.loss.iloc[-1]), "checkpoint": res.checkpoint.name})
        with atomic_path(table) as tmp:
            pd.DataFrame(rows).to_csv(tmp, index=False)
    out = pd.DataFrame(rows)
    out = out[out.lambda_r.isin(sweep["lambda_r"])].sort_values("lambda_r").reset_index(drop=True)
    out["checkpoint"] = [str(sdir / c) for c in out.checkpoint]
    return out

