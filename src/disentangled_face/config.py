"""One typed configuration, read once at the entry point.

A profile is a YAML file (``configs/book.yaml``, ``configs/paper.yaml`` or any path) with one
section per part of the book. :func:`load_config` parses it once into frozen pydantic models
(:class:`Config`); every key is validated, unknown keys are refused, and an error names the
key's path (``train.phase3.lambda_r``) and what was expected. The defaults below are the only
defaults in the package; a profile states every value the book depends on.

Sections: ``model`` (which morphable model), ``synth`` (synthetic populations and protocols),
``fitting`` (the 3DMM fitter, Eq. 6-7), ``targets`` (building the training targets),
``landmarks`` (the 68-point detector for real photographs), ``network`` (the encoder-decoder),
``train`` (the three phases), ``experiments`` (evaluation). Functions take the section they
need (``cfg.fitting``, ``cfg.train``); pipeline functions that combine parts take the whole
:class:`Config`.

>>> cfg = load_config("book")
>>> cfg.train.phase3.lambda_r
(0.5, 1.0)
>>> with_overrides(cfg, {"train.phase1.epochs": 2}).train.phase1.epochs
2
>>> load_config("book", {"synth.sed": 1})
Traceback (most recent call last):
...
disentangled_face.config.ConfigError: profile 'book': synth.sed: unknown key; expected one of ['batch', 'expression', 'jaw_landmarks', 'landmark_noise_px', 'light', 'pose', 'protocols', 'seed', 'workers']
"""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Literal, Mapping, Optional, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from ._overrides import OverrideError, set_dotted
from ._yaml import DuplicateKeyError, ProfileLoader
from .paths import config_hash

PROFILES = ("book", "paper")
SECTIONS = ("model", "synth", "fitting", "targets", "landmarks", "network", "train", "experiments")

__all__ = ["ConfigError", "Config", "load_config", "with_overrides", "replace_section", "section_hash", "PROFILES", "SECTIONS",
           "ModelConfig", "SynthConfig", "FittingConfig", "TargetsConfig", "LandmarksConfig", "NetworkConfig",
           "TrainConfig", "PhaseConfig", "Phase1Config", "Phase3Config", "SweepConfig", "ExperimentsConfig"]


class ConfigError(ValueError):
    """A config file or value is invalid (the message names the key's path and what was expected)."""


class _Section(BaseModel):
    """Base of every section: frozen, unknown keys refused, strict types (an int is a float)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    #: Keys left out of :meth:`to_dict` (hence of every cache hash) while at their default:
    #: options added after caches existed, so that a profile that leaves them at the default
    #: keeps the file names it had before the option existed.
    _omit_at_default: ClassVar[tuple[str, ...]] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (lists for tuples), the input of cache hashes."""
        return _omit_defaults(self, self.model_dump(mode="json"))


def _omit_defaults(section: "_Section", out: dict[str, Any]) -> dict[str, Any]:
    """``out`` without the section's ``_omit_at_default`` keys that hold their default value."""
    for key in section._omit_at_default:
        if key in out and getattr(section, key) == type(section).model_fields[key].default:
            del out[key]
    return out


Pair = tuple[float, float]
PosInt = Field(ge=1)
_S = TypeVar("_S", bound="_Section")


# ----------------------------------------------------------------------------------- model
class ModelConfig(_Section):
    """``model:``: the morphable model chapters load by name."""

    name: Literal["ict-facekit"] = "ict-facekit"


# ----------------------------------------------------------------------------------- synth
class PoseConfig(_Section):
    """``synth.pose``: head pose and framing of synthetic images (degrees, pixels)."""

    scale_factor: float = Field(0.85, gt=0)
    yaw_std_deg: float = Field(35.0, ge=0)
    yaw_max_deg: float = Field(90.0, ge=0, le=90)
    pitch_std_deg: float = Field(8.0, ge=0)
    pitch_max_deg: float = Field(25.0, ge=0, le=90)
    roll_std_deg: float = Field(5.0, ge=0)
    roll_max_deg: float = Field(20.0, ge=0, le=90)
    scale_std: float = Field(0.05, ge=0)
    trans_std_px: float = Field(2.0, ge=0)


class ExpressionConfig(_Section):
    """``synth.expression``: per-image expressions (ICT blendshape weights in [0, 1])."""

    neutral_prob: float = Field(0.25, ge=0, le=1)
    intensity: Pair = (0.3, 1.0)
    random_active: int = Field(3, ge=0)
    random_max: float = Field(0.5, ge=0, le=1)


class LightConfig(_Section):
    """``synth.light``: ambient + one directional Lambertian light, ranges drawn uniformly."""

    ambient: Pair = (0.3, 0.6)
    diffuse: Pair = (0.3, 0.8)
    azimuth_deg: float = 70.0
    elevation_deg: Pair = (-30.0, 60.0)
    tint: float = Field(0.08, ge=0)


def _optional_model(base: type[_Section], name: str) -> type[_Section]:
    """A copy of ``base`` whose fields are all optional (a protocol's partial override)."""
    fields = {k: (Optional[f.annotation], None) for k, f in base.model_fields.items()}
    return create_model(name, __base__=_Section, **fields)


PoseOverride = _optional_model(PoseConfig, "PoseOverride")
ExpressionOverride = _optional_model(ExpressionConfig, "ExpressionOverride")
LightOverride = _optional_model(LightConfig, "LightOverride")


class _Protocol(_Section):
    """Keys every protocol may set to override the generator's settings for itself."""

    pose: Optional[PoseOverride] = None  # type: ignore[valid-type]
    expression: Optional[ExpressionOverride] = None  # type: ignore[valid-type]
    light: Optional[LightOverride] = None  # type: ignore[valid-type]
    landmark_noise_px: Optional[float] = Field(None, ge=0)


class TrainProtocol(_Protocol):
    """``synth.protocols.train``: the CASIA-WebFace analogue."""

    subjects: int = PosInt
    images_per_subject: int = PosInt


class LfwProtocol(_Protocol):
    """``synth.protocols.lfw-like``: LFW View 2 (10 subject-disjoint folds of image pairs)."""

    folds: int = Field(10, ge=2)
    subjects_per_fold: int = Field(ge=2)
    images_per_subject: int = Field(ge=2)
    same_pairs_per_fold: int = PosInt
    diff_pairs_per_fold: int = PosInt


class VideoConfig(_Section):
    """``synth.protocols.ytf-like.video``: head motion of a sequence."""

    period_frames: float = Field(40.0, gt=0)
    yaw_amp_deg: Pair = (5.0, 25.0)
    pitch_amp_deg: Pair = (2.0, 8.0)


class YtfProtocol(_Protocol):
    """``synth.protocols.ytf-like``: YouTube Faces (pairs of sequences, 10 folds)."""

    folds: int = Field(10, ge=2)
    subjects_per_fold: int = Field(ge=2)
    videos_per_subject: int = Field(ge=2)
    frames_per_video: int = PosInt
    same_pairs_per_fold: int = PosInt
    diff_pairs_per_fold: int = PosInt
    low_res: tuple[int, int] = (56, 48)
    video: VideoConfig = VideoConfig()


class Bu3dfeProtocol(_Protocol):
    """``synth.protocols.bu3dfe-like``: 7 expressions frontal + a neutral yaw sweep (degrees)."""

    subjects: int = PosInt
    intensities: tuple[float, ...] = (1.0,)
    yaw_sweep_deg: tuple[int, int, int] = (-90, 90, 10)


class MiccProtocol(_Protocol):
    """``synth.protocols.micc-like``: harsh light, blur (pixels) and noise (grey levels)."""

    subjects: int = PosInt
    images_per_subject: int = PosInt
    blur_sigma_px: Pair = (0.5, 2.0)
    noise_std: Pair = (2.0, 10.0)


class ProtocolsConfig(_Section):
    """``synth.protocols``: the sizes of the five synthetic protocols (those absent are not built)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)

    train: Optional[TrainProtocol] = None
    lfw_like: Optional[LfwProtocol] = Field(None, alias="lfw-like")
    ytf_like: Optional[YtfProtocol] = Field(None, alias="ytf-like")
    bu3dfe_like: Optional[Bu3dfeProtocol] = Field(None, alias="bu3dfe-like")
    micc_like: Optional[MiccProtocol] = Field(None, alias="micc-like")

    def get(self, name: str) -> Optional[_Protocol]:
        """The protocol called ``name`` (``"lfw-like"`` ...), or ``None`` when the profile has none."""
        return getattr(self, name.replace("-", "_"))

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class SynthConfig(_Section):
    """``synth:``: the generator of synthetic populations and the sizes of its protocols.

    ``batch`` (images per draw call) is part of the cache key (it can change a grey level in a
    few pixels); ``workers`` (rendering processes) does not change the data.
    ``jaw_landmarks``: where the jawline landmarks 0-16 of the synthetic images lie: ``fixed``,
    the projected landmark vertices; ``contour``, on the face's silhouette as a 2D detector
    puts them (:func:`disentangled_face.shape.contour.contour_landmarks`); ``outline``, on the
    projected face outline, not on the fitter's candidate rows (:mod:`disentangled_face.data.outline`).
    At ``fixed`` the key is left out of the protocols' configs and cache hashes (older files).
    """

    _omit_at_default: ClassVar[tuple[str, ...]] = ("jaw_landmarks",)

    seed: int = Field(2018, ge=0)
    landmark_noise_px: float = Field(0.0, ge=0)
    jaw_landmarks: Literal["fixed", "contour", "outline"] = "fixed"
    batch: int = Field(64, ge=1)
    workers: int = Field(1, ge=1)
    pose: PoseConfig = PoseConfig()
    expression: ExpressionConfig = ExpressionConfig()
    light: LightConfig = LightConfig()
    protocols: ProtocolsConfig = ProtocolsConfig()

    def protocol(self, name: str) -> dict[str, Any]:
        """The full generator config of one protocol: the generator's settings with the
        protocol's sizes and overrides merged in, plus ``protocol: name`` (a plain dict).

        Raises
        ------
        ConfigError
            Unknown protocol, or the profile has no entry for it.
        """
        names = [f.alias or n for n, f in ProtocolsConfig.model_fields.items()]
        if name not in names:
            raise ConfigError(f"unknown protocol {name!r}: expected one of {names}")
        prot = self.protocols.get(name)
        if prot is None:
            raise ConfigError(f"synth.protocols.{name}: missing; the profile must give its sizes "
                              f"(e.g. subjects and images_per_subject)")
        out = _omit_defaults(self, self.model_dump(mode="json", exclude={"protocols"}))
        for key, value in prot.model_dump(mode="json", exclude_none=True).items():
            out[key] = {**out[key], **value} if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        out["protocol"] = name
        return out


# ----------------------------------------------------------------------------------- fitting
class FittingConfig(_Section):
    """``fitting:``: the multi-image alternating 3DMM fitter (Sec. 3.3.2, Eq. 6-7).

    ``lambda_id`` / ``lambda_exp`` in mm² (landmark noise variance of the MAP objective, per unit
    coefficient squared), ``max_iter`` and ``tol`` the paper's alternation (about 7 iterations),
    ``pose_refine`` Gauss-Newton steps on (f, R, t), ``exp_iters`` projected-gradient steps and
    ``active_set_iters`` active-set iterations of the bounded expression step, ``joint_iters``
    Levenberg-Marquardt steps after the alternation (0: the paper's alternation alone),
    ``dtype`` of the solves, ``threads`` torch CPU threads while fitting (None: torch's setting),
    ``contour`` the correspondence of the jaw landmarks 0-16: ``none``, fixed vertices;
    ``marching``, re-assigned to contour vertices after every pose step (landmark marching,
    :mod:`disentangled_face.shape.contour`; left out of the cache hashes at ``none``).
    ``id_modes``: fit only the model's first ``id_modes`` identity modes, the others held at 0
    (the returned ``alpha_id`` keeps all the model's entries, so shapes stay
    ``model.shape(alpha_id, alpha_exp)``); None: all of them. The beyond-basis world of
    chapter 12 fits with fewer modes than its subjects were drawn with (left out of the cache
    hashes at None).
    """

    _omit_at_default: ClassVar[tuple[str, ...]] = ("contour", "id_modes")

    lambda_id: float = Field(4.0, ge=0)
    lambda_exp: float = Field(10.0, ge=0)
    max_iter: int = Field(7, ge=1)
    tol: float = Field(1e-2, ge=0)
    pose_refine: int = Field(2, ge=0)
    exp_iters: int = Field(0, ge=0)
    active_set_iters: int = Field(25, ge=1)
    joint_iters: int = Field(5, ge=0)
    dtype: Literal["float32", "float64"] = "float64"
    threads: Optional[int] = Field(None, ge=1)
    contour: Literal["none", "marching"] = "none"
    id_modes: Optional[int] = Field(None, ge=1)


class TargetsConfig(_Section):
    """``targets:``: building the training targets (the ``train`` protocol fitted, Sec. 3.3.2).

    ``chunk``: subjects fitted per batch (memory; the targets change only by float32 rounding).
    ``workers``: processes fitting chunks in parallel, for the targets and for the test sets'
    single-image fits (speed only; results do not depend on it; null: 1).
    """

    chunk: Optional[int] = Field(None, ge=1)
    workers: Optional[int] = Field(None, ge=1)


class LandmarksConfig(_Section):
    """``landmarks:``: the 68-point detector of real photographs.

    ``detector``: ``fan`` (the paper's), ``dlib``, or ``auto`` (FAN when its weights are cached,
    else dlib). ``upsample``: dlib's upsampling before face detection (finds smaller faces).
    ``score_threshold``: the face detector's acceptance threshold on its backend's scale (dlib's
    ``adjust_threshold``, default 0; FAN's S3FD ``filter_threshold``, default 0.5); ``None`` the
    backend's default. ``low_score_dlib`` / ``low_score_fan``: a chosen face scoring below this
    (dlib's detection score, FAN's mean heat-map peak: different scales) is logged as a WARNING.
    """

    detector: Literal["auto", "fan", "dlib"] = "auto"
    upsample: int = Field(1, ge=0)
    score_threshold: Optional[float] = None
    low_score_dlib: float = 0.3
    low_score_fan: float = Field(0.5, ge=0, le=1)


# ----------------------------------------------------------------------------------- network
class NetworkConfig(_Section):
    """``network:``: the encoder-decoder (Sec. 3.2): SphereFace-20 ``width`` multiplier (1.0 is
    the published network), ``input_size`` (height, width) pixels the encoder sees,
    ``feature_dim``, ``code_margin`` (> 1, see ``CodeScaler``), ``decoder_bias``, ``norm``
    (``none``: the published sphere20a, no normalisation layer; ``batch``: a deviation from it,
    BatchNorm after every convolution, see :class:`~disentangled_face.networks.SphereFace20`),
    ``id_codes`` (entries of ``c_id``: the network codes, and its decoder starts from, the
    model's first ``id_codes`` identity modes; None: all of them; left out of the run hash at
    None)."""

    _omit_at_default: ClassVar[tuple[str, ...]] = ("id_codes",)

    arch: Literal["sphere20a"] = "sphere20a"
    width: float = Field(1.0, gt=0)
    input_size: tuple[int, int] = (112, 96)
    feature_dim: int = Field(512, ge=1)
    code_margin: float = Field(1.25, gt=1)
    decoder_bias: bool = False
    norm: Literal["none", "batch"] = "none"
    id_codes: Optional[int] = Field(None, ge=1)

    @field_validator("input_size")
    @classmethod
    def _big_enough(cls, v: tuple[int, int]) -> tuple[int, int]:
        if min(v) < 16:
            raise ValueError(f"expected [height, width], integers >= 16, got {list(v)}")
        return v


# ----------------------------------------------------------------------------------- train
class PhaseConfig(_Section):
    """One phase of ``train:`` (``phase1``, ``phase2``, ``texture``): optimiser and schedule.

    ``optimizer`` adam | adamw | sgd (``phase2`` also ``lstsq``, the closed-form minimiser),
    ``schedule`` constant | cosine | step (``milestones`` in epochs, ``gamma``), ``warmup_steps``,
    ``min_lr_factor`` (cosine floor), ``epochs``, ``batch_size`` (None: ``train.batch_size``),
    ``augment`` none | photometric | full (a random change of every training image at every
    step, a deviation: :mod:`disentangled_face.training.augment`).
    """

    optimizer: Literal["adam", "adamw", "sgd", "lstsq"] = "adam"
    lr: float = Field(1e-3, gt=0)
    momentum: float = Field(0.9, ge=0, le=1)
    weight_decay: float = Field(0.0, ge=0)
    schedule: Literal["constant", "cosine", "step"] = "constant"
    milestones: tuple[int, ...] = ()
    gamma: float = Field(0.1, gt=0, le=1)
    warmup_steps: int = Field(0, ge=0)
    min_lr_factor: float = Field(0.0, ge=0, le=1)
    epochs: int = Field(1, ge=1)
    batch_size: Optional[int] = Field(None, ge=1)
    augment: Literal["none", "photometric", "full"] = "none"

    @field_validator("milestones")
    @classmethod
    def _epochs(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(m < 1 for m in v):
            raise ValueError(f"expected a list of epochs (integers >= 1), got {list(v)}")
        return v


class Phase1Config(PhaseConfig):
    """``train.phase1``: the code regression (Sec. 3.3.3, Phase I).

    ``loss``: ``code``, the paper's plain Euclidean loss on the scaled codes, or
    ``shape_energy``, the same weighted by how far each code moves the decoded face
    (:func:`~disentangled_face.networks.losses.shape_energy_weights`; a deviation).
    """

    loss: Literal["code", "shape_energy"] = "code"


class Phase3Config(PhaseConfig):
    """``train.phase3``: the joint phase, ``L = lambda_r L_R + L_C`` (Eq. 5).

    ``lambda_r``: [before, after] the plateau switch, or one value (fixed ``lambda_r`` for
    ``epochs``); the switch comes when the epoch loss improves by less than
    ``plateau_min_delta`` (relative) for ``plateau_patience`` epochs, or after ``epochs``;
    then ``epochs_after_switch`` epochs at the second value. ``classifier_init``: the softmax
    classifier on ``c_id`` starts ``random`` (PyTorch's default) or at ``class_means``, the
    nearest-class-mean classifier of the Phase I codes (:meth:`~disentangled_face.networks.DisentangledFaceNet.init_classifier_from_codes`;
    the paper does not say how it starts). ``l_r``: the convention of ``L_R``, ``per_vertex``
    (mm² per vertex) or ``caffe`` (the paper's framework: n/2 times larger; left out of the
    run hash at ``per_vertex``; :func:`~disentangled_face.networks.losses.reconstruction_loss`).
    """

    _omit_at_default: ClassVar[tuple[str, ...]] = ("l_r",)
    lambda_r: tuple[float, ...] = (0.5, 1.0)
    l_r: Literal["per_vertex", "caffe"] = "per_vertex"
    classifier_init: Literal["random", "class_means"] = "random"
    plateau_patience: int = Field(2, ge=1)
    plateau_min_delta: float = Field(0.01, ge=0)
    epochs_after_switch: int = Field(1, ge=0)

    @field_validator("lambda_r", mode="before")
    @classmethod
    def _one_or_two(cls, v: Any) -> Any:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            v = [v]
        if not isinstance(v, (list, tuple)) or len(v) not in (1, 2):
            raise ValueError(f"expected one or two numbers >= 0 (before and after the plateau switch), got {v!r}")
        return tuple(v)

    @field_validator("lambda_r")
    @classmethod
    def _non_negative(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(x < 0 for x in v):
            raise ValueError(f"expected numbers >= 0, got {list(v)}")
        return v


class SweepConfig(_Section):
    """``train.sweep``: fixed-``lambda_r`` Phase III fine-tunes (chapter 6), ``lr`` None: phase3's."""

    lambda_r: tuple[float, ...] = (0.0, 0.1, 0.5, 1.0, 2.0, 10.0)
    epochs: int = Field(1, ge=1)
    lr: Optional[float] = Field(None, gt=0)

    @field_validator("lambda_r")
    @classmethod
    def _non_empty(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v or any(x < 0 for x in v):
            raise ValueError(f"expected a non-empty list of numbers >= 0, got {list(v)}")
        return v


class TrainConfig(_Section):
    """``train:``: the three phases (Sec. 3.3.3), the texture baseline and the run's settings.

    ``device`` auto | cpu | cuda | cuda:N, ``amp`` auto | bf16 | fp16 | none (CUDA only),
    ``channels_last`` (CUDA only), ``num_workers`` (DataLoader), ``num_threads`` (torch CPU
    threads while training; None: torch's), ``batch_size`` (global, over all processes),
    ``val_fraction`` (images per training subject held out, in [0, 0.5]), ``subjects`` (train
    on the first this many subjects of the ``train`` protocol; None: all of them, the
    scaling study of chapter 6 sets it), ``checkpoint_every`` and ``log_every`` (steps).
    """

    seed: int = Field(0, ge=0)
    device: str = "auto"
    amp: Literal["auto", "bf16", "fp16", "none"] = "auto"
    channels_last: bool = True
    num_workers: int = Field(0, ge=0)
    num_threads: Optional[int] = Field(None, ge=1)
    batch_size: int = Field(64, ge=1)
    val_fraction: float = Field(0.1, ge=0, le=0.5)
    subjects: Optional[int] = Field(None, ge=2)
    checkpoint_every: int = Field(500, ge=1)
    log_every: int = Field(1, ge=1)
    phase1: Phase1Config = Phase1Config()
    phase2: PhaseConfig = PhaseConfig()
    phase3: Phase3Config = Phase3Config()
    texture: PhaseConfig = PhaseConfig()
    sweep: SweepConfig = SweepConfig()

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        if not (v in ("auto", "cpu", "cuda") or (v.startswith("cuda:") and v[5:].isdigit())):
            raise ValueError(f"expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {v!r}")
        return v

    @field_validator("phase1", "phase3", "texture")
    @classmethod
    def _lstsq_only_phase2(cls, v: PhaseConfig) -> PhaseConfig:
        if v.optimizer == "lstsq":
            raise ValueError("@optimizer: expected adam, adamw or sgd ('lstsq', the closed form, exists "
                             "only for phase2), got 'lstsq'")
        return v

    def phase(self, name: str) -> PhaseConfig:
        """The section of phase ``name`` (``phase1``, ``phase2``, ``phase3``, ``texture``)."""
        phases = [n for n, f in type(self).model_fields.items() if f.annotation in (PhaseConfig, Phase1Config, Phase3Config)]
        if name not in phases:
            raise ConfigError(f"unknown phase {name!r}: expected one of {phases}")
        return getattr(self, name)


# ----------------------------------------------------------------------------------- experiments
class ExperimentsConfig(_Section):
    """``experiments:``: evaluation settings (Sec. 4).

    ``crop_radius_mm`` (Sec. 4.1), ``metric`` shown in the tables (rmse_mm | mean_mm | paper, the
    Sec. 4.1 formula), ``far_targets`` of TAR@FAR (Sec. 4.2), ``batch_size`` when encoding,
    ``speed_images`` / ``speed_repeats`` / ``speed_batch`` of Table 4, ``fit_iter`` (the
    single-image fitter's cap; None: ``fitting.max_iter``), ``fit_verification`` (also verify
    with fitted ``alpha_id``), ``bases_shown`` (decoder columns drawn, Fig. 9), ``seed``,
    ``scaling_subjects`` (chapter 6's numbers of training identities; empty: no study), ``rivals``
    (extra methods compared, each in its own run: ``3DDFA-like``, see ``methods.RIVALS``),
    ``beyond_basis_modes`` / ``beyond_basis_subjects`` (chapter 11's world: identity modes of its
    fitting basis, and its training subjects, None: all; see ``evaluation.beyond_basis``).
    """

    _omit_at_default: ClassVar[tuple[str, ...]] = ("rivals", "beyond_basis_modes", "beyond_basis_subjects")
    crop_radius_mm: float = Field(95.0, gt=0)
    metric: Literal["rmse_mm", "mean_mm", "paper"] = "rmse_mm"
    far_targets: tuple[float, ...] = (0.1, 0.01)
    batch_size: int = Field(64, ge=1)
    speed_images: int = Field(8, ge=1)
    speed_repeats: int = Field(3, ge=1)
    speed_batch: int = Field(32, ge=1)
    fit_iter: Optional[int] = Field(None, ge=1)
    fit_verification: bool = False
    bases_shown: int = Field(4, ge=1)
    seed: int = Field(0, ge=0)
    scaling_subjects: tuple[int, ...] = ()
    rivals: tuple[Literal["3DDFA-like"], ...] = ()
    beyond_basis_modes: int = Field(20, ge=1)
    beyond_basis_subjects: Optional[int] = Field(None, ge=2)

    @field_validator("far_targets")
    @classmethod
    def _rates(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if not v or any(not 0 < x < 1 for x in v):
            raise ValueError(f"expected a non-empty list of false accept rates in (0, 1), got {list(v)}")
        return v


# ----------------------------------------------------------------------------------- root
class Config(_Section):
    """A whole profile: one frozen section per part of the book (see the module docstring)."""

    profile: str = "custom"
    model: ModelConfig = ModelConfig()
    synth: SynthConfig = SynthConfig()
    fitting: FittingConfig = FittingConfig()
    targets: TargetsConfig = TargetsConfig()
    landmarks: LandmarksConfig = LandmarksConfig()
    network: NetworkConfig = NetworkConfig()
    train: TrainConfig = TrainConfig()
    experiments: ExperimentsConfig = ExperimentsConfig()

    def to_dict(self) -> dict[str, Any]:
        out = self.model_dump(mode="json", exclude={"synth"})
        out["synth"] = {**_omit_defaults(self.synth, self.synth.model_dump(mode="json", exclude={"protocols"})),
                        "protocols": self.synth.protocols.to_dict()}
        out["fitting"] = self.fitting.to_dict()
        out["network"] = self.network.to_dict()
        out["train"]["phase3"] = self.train.phase3.to_dict()
        return out


def _error_text(exc: ValidationError, source: str, prefix: str = "") -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join([prefix] * bool(prefix) + [str(p) for p in err["loc"] if not str(p).startswith(("function-", "tagged-"))])
        if err["type"] == "extra_forbidden":
            lines.append(f"{loc}: unknown key; expected one of {_allowed_keys(loc)}")
            continue
        msg = err["msg"].removeprefix("Value error, ")
        got = err.get("input")
        if err["type"] in ("missing", "too_long") and isinstance(got, list):  # a fixed-length list
            loc = loc.rpartition(".")[0] if err["type"] == "missing" else loc
            lines.append(f"{loc}: expected a list of {_tuple_length(loc)} values, got {got!r}")
            continue
        if msg.startswith("@"):  # a check on a sub-key: "@key: expected ..., got ..."
            lines.append(f"{loc}.{msg[1:]}")
        elif err["type"] == "missing":
            lines.append(f"{loc}: missing; required")
        else:
            lines.append(f"{loc}: {msg[0].lower() + msg[1:]}, got {got!r}" if "got" not in msg else f"{loc}: {msg}")
    return f"{source}: " + "; ".join(lines)


def _tuple_length(loc: str) -> str:
    field = _field_at(loc)
    args = getattr(field.annotation, "__args__", ()) if field is not None else ()
    return str(len(args)) if args and Ellipsis not in args else "the right number of"


def _section_model(field) -> Any:
    """The pydantic model a field holds (``Optional[Model]`` unwrapped), or its plain annotation."""
    subs = [a for a in getattr(field.annotation, "__args__", ()) if isinstance(a, type) and issubclass(a, BaseModel)]
    return subs[0] if subs else field.annotation


def _field_at(loc: str):
    """The field at a dotted path from the root (``train.phase3.lambda_r``), or None."""
    model: Any = Config
    field = None
    for part in loc.split("."):
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field = next((f for n, f in model.model_fields.items() if part in (n, f.alias)), None)
        if field is None:
            return None
        model = _section_model(field)
    return field


def _allowed_keys(loc: str) -> list[str]:
    """The keys of the section that holds ``loc`` (its parent path)."""
    parent = loc.rpartition(".")[0]
    field = _field_at(parent) if parent else None
    model = Config if not parent else (_section_model(field) if field is not None else None)
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return []
    return sorted(f.alias or n for n, f in model.model_fields.items())


def _json(raw: Any) -> str:
    # numpy scalars (np.int64 ...) become Python numbers; nothing else is converted
    return json.dumps(raw, default=lambda o: o.item() if hasattr(o, "item") else o)


def _validate(raw: Mapping[str, Any], source: str) -> Config:
    try:
        # JSON mode: YAML lists become tuples, ints are accepted as floats, nothing else coerces
        return Config.model_validate_json(_json(raw), strict=True)
    except ValidationError as exc:
        raise ConfigError(_error_text(exc, source)) from None
    except TypeError as exc:
        raise ConfigError(f"{source}: values must be YAML scalars, lists or mappings ({exc})") from None


def _read_profile(profile: str | os.PathLike) -> tuple[dict[str, Any], str]:
    if isinstance(profile, str) and profile in PROFILES:
        text = resources.files(__package__).joinpath("configs", f"{profile}.yaml").read_text()
        source = f"profile '{profile}'"
    else:
        path = Path(profile)
        if not path.is_file():
            raise ConfigError(f"unknown profile {profile!r}: expected one of {PROFILES} or a YAML file path")
        text, source = path.read_text(), str(path)
    try:
        raw = yaml.load(text, Loader=ProfileLoader) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML ({exc})") from None
    except DuplicateKeyError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of sections {SECTIONS}")
    unknown = sorted(set(raw) - set(SECTIONS) - {"profile"})
    if unknown:
        raise ConfigError(f"{source}: unknown section(s) {unknown}; expected {list(SECTIONS)}")
    raw = {k: (v if v is not None else {}) for k, v in raw.items()}
    raw.setdefault("profile", str(profile))
    return raw, source


def _set_dotted(raw: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    try:
        return set_dotted(raw, overrides)
    except OverrideError as exc:
        raise ConfigError(str(exc)) from None


def load_config(profile: str | os.PathLike = "book", overrides: Mapping[str, Any] | None = None) -> Config:
    """Read a profile (``"book"``, ``"paper"`` or a YAML path) into a validated :class:`Config`.

    Parameters
    ----------
    profile : str or path
        Profile name or YAML file.
    overrides : mapping, optional
        Dotted keys to set before validation, e.g. ``{"train.phase1.epochs": 3}``.

    Raises
    ------
    ConfigError
        Unknown profile, unreadable YAML, unknown section or key, a value of the wrong type or
        range; the message names the key's path (``train.phase3.lambda_r``).
    """
    raw, source = _read_profile(profile)
    return _validate(_set_dotted(raw, overrides or {}), source)


def with_overrides(cfg: Config, overrides: Mapping[str, Any]) -> Config:
    """A copy of ``cfg`` with dotted keys changed and validated again (``{"train.seed": 1}``).

    A mapping value changes only the keys it names and keeps the others
    (``{"train": {"phase1": {"epochs": 8}}}`` keeps phase1's learning rate and every other
    ``train`` key); any other value (a number, a string, a list) replaces the old one.

    Raises
    ------
    ConfigError
        As :func:`load_config`.
    """
    return _validate(_set_dotted(cfg.to_dict(), overrides), f"profile '{cfg.profile}' with overrides")


def replace_section(section: _S, overrides: Mapping[str, Any], path: str, strict: bool = True) -> _S:
    """A copy of one section with some keys changed and validated as :func:`load_config` would.

    Parameters
    ----------
    section : a section model (e.g. ``cfg.fitting``)
    overrides : mapping
        Keys of that section and their new values (NumPy scalars are accepted).
    path : str
        The section's path in a profile (``"fitting"``), named in the errors.
    strict : bool
        As a profile is read (no coercion: ``7.0`` is not an integer); ``False`` lets pydantic
        coerce Python values (``7.0`` to ``7``), for keyword arguments of a function.

    Raises
    ------
    ConfigError
        An unknown key or a value of the wrong type or range (``fitting.max_iter: ...``).
    """
    try:
        if strict:
            return type(section).model_validate_json(_json({**section.to_dict(), **overrides}), strict=True)
        plain = {k: v.item() if hasattr(v, "item") else v for k, v in overrides.items()}
        return type(section).model_validate({**section.model_dump(), **plain}, strict=False)
    except ValidationError as exc:
        raise ConfigError(_error_text(exc, f"{path} overrides", prefix=path)) from None
    except TypeError as exc:
        raise ConfigError(f"{path} overrides: values must be numbers, strings, lists or mappings ({exc})") from None


def section_hash(*parts: Any, length: int = 10) -> str:
    """Hash of validated sections (and plain JSON-able extras) for cache and run keys."""
    return config_hash([p.to_dict() if isinstance(p, _Section) else p for p in parts], length)

