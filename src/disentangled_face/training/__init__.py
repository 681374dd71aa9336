"""Training (chapter 6): the three phases of the paper (Sec. 3.3.3), the texture baseline, the
loop, Phase II's closed form, checkpoints with random state, DDP, logs and the pipeline.

======================  ===============================================================
module                  what
======================  ===============================================================
:mod:`.phases`          each phase an object: trainable parts, loss, logged metrics
:mod:`.plateau`         the λ_R plateau switch of Phase III
:mod:`.schedule`        learning-rate schedules, optimisers
:mod:`.loop`            :func:`train_phase`: the step loop of one phase
:mod:`.closed_form`     Phase II solved by least squares
:mod:`.checkpoints`     state / final checkpoints, RNG state, :func:`load_model`
:mod:`.distributed`     process group, device, AMP, the resumable sampler
:mod:`.logging`         per-step and per-epoch CSV logs
:mod:`.data`            :func:`training_data`: the ``train`` protocol split per subject
:mod:`.pipeline`        :func:`train_pipeline`, :func:`evaluate_phases`, :func:`lambda_sweep`
:mod:`.cli`             ``python -m disentangled_face.training --config book``
======================  ===============================================================

>>> from disentangled_face.config import load_config
>>> from disentangled_face import training
>>> trained = training.train_pipeline(load_config("book"))   # doctest: +SKIP
"""

from __future__ import annotations

from .checkpoints import (CHECKPOINT_FORMAT, CheckpointMismatchError, load_checkpoint, load_model, save_final,
                          seed_everything)
from .data import TARGETS, TrainingData, first_subjects, split_per_subject, training_data
from .distributed import ResumableSampler, amp_dtype, init_distributed, resolve_device
from .loop import PhaseResult, train_phase
from .phases import PHASE_OBJECTS, PHASES, Phase, PhaseStep, fit_code_scaler, get_phase
from .plateau import PlateauSwitch
from .pipeline import RunLock, TrainedModels, evaluate_phases, lambda_sweep, run_config, run_hash, train_pipeline
from .schedule import lr_factor, make_optimizer

__all__ = ["PHASES", "PHASE_OBJECTS", "Phase", "PhaseStep", "get_phase", "PlateauSwitch", "train_phase",
           "PhaseResult", "lr_factor", "make_optimizer", "CHECKPOINT_FORMAT", "CheckpointMismatchError",
           "load_checkpoint", "load_model", "save_final", "seed_everything", "ResumableSampler", "amp_dtype",
           "init_distributed", "resolve_device", "TARGETS", "TrainingData", "training_data", "first_subjects", "split_per_subject",
           "fit_code_scaler", "TrainedModels", "RunLock", "train_pipeline", "evaluate_phases", "lambda_sweep",
           "run_config", "run_hash"]
