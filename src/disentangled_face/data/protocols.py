"""The paper's protocols as synthetic analogues: their names, identities, sizes and plans.

The paper trains on CASIA-WebFace and tests on LFW, YTF (verification), BU-3DFE and MICC
(3D reconstruction). None of them may be redistributed with this book, so every chapter can
run on *synthetic analogues* rendered from the morphable model (:mod:`.generator`), where the
ground truth the real datasets lack (the exact 3D shape of every image) is known.

A protocol's configuration is ``cfg.synth.protocol(name)`` (:class:`~disentangled_face.config.SynthConfig`):
the generator's settings (seed, pose, expression, light, landmark noise) with the protocol's
sizes and overrides merged in. :func:`plan_protocol` turns it into every per-image parameter
(deterministic in the config: every random draw is seeded per protocol); :mod:`.build` renders
the plan into an HDF5 file at :func:`protocol_path`.

Protocols use disjoint ranges of global subject ids (:data:`SUBJECT_OFFSETS`): test identities
never occur in training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..config import SynthConfig
from ..paths import config_hash, data_dir
from .expressions import EXPRESSIONS, expression_vector, has_expression_names, sample_expressions

__all__ = ["PROTOCOLS", "GENERATOR_VERSION", "SUBJECT_OFFSETS", "REAL_ANALOGUES", "protocol_config",
           "protocol_path", "protocol_sizes", "plan_protocol", "sample_light"]

#: The synthetic protocols (analogues of CASIA-WebFace, LFW, YTF, BU-3DFE, MICC).
PROTOCOLS = ("train", "lfw-like", "ytf-like", "bu3dfe-like", "micc-like")

#: Bumped whenever the generator's output for a given config changes (part of the cache key).
GENERATOR_VERSION = 3

#: First global subject id of each protocol: the id ranges, hence the identities, are disjoint.
SUBJECT_OFFSETS = {"train": 0, "lfw-like": 10_000_000, "ytf-like": 20_000_000,
                   "bu3dfe-like": 30_000_000, "micc-like": 40_000_000}
_PROTOCOL_CODE = {name: i + 1 for i, name in enumerate(PROTOCOLS)}

#: The real datasets each protocol stands in for, with their published sizes (for tables).
REAL_ANALOGUES = {
    "train": "CASIA-WebFace (10,575 subjects, 494,414 images)",
    "lfw-like": "LFW View 2 (10 folds x 300 + 300 pairs)",
    "ytf-like": "YouTube Faces (10 splits x 250 + 250 video pairs)",
    "bu3dfe-like": "BU-3DFE (100 subjects, neutral + 6 expressions x 4 intensities)",
    "micc-like": "MICC Florence (53 subjects, indoor/outdoor video)",
}


#: Keys of the ``synth:`` section that do not change the generated data (not hashed). The batch
#: size is hashed: an image's tile in the batch atlas can change OpenGL's attribute
#: interpolation in the last bit (a grey level in a few pixels).
_RUNTIME_KEYS = ("workers",)


def protocol_config(name: str, synth: SynthConfig) -> dict[str, Any]:
    """The merged generator config of one protocol, ``synth.protocol(name)`` (a plain dict).

    Raises
    ------
    TypeError
        When ``synth`` is not a :class:`~disentangled_face.config.SynthConfig` (``cfg.synth``).
    disentangled_face.config.ConfigError
        Unknown protocol, or the profile gives no sizes for it.
    """
    if not isinstance(synth, SynthConfig):
        raise TypeError(f"expected the synth section of a Config (cfg.synth, a SynthConfig), "
                        f"got {type(synth).__name__}")
    return synth.protocol(name)


#: The tag of the default model (what ``load_ict_facekit`` returns), for cache keys.
_DEFAULT_MODEL_TAG = ("ICT-FaceKit (face area)", 9409, 100, 53)


def _model_tag(model) -> tuple:
    return _DEFAULT_MODEL_TAG if model is None else (model.name, model.n_vertices, model.n_id, model.n_exp)


def protocol_path(name: str, synth: SynthConfig, model=None) -> Path:
    """Where :func:`build_protocol` stores a protocol: ``data/synth/<name>-<config_hash>.h5``.

    The hash covers the protocol's config (not ``workers``, which does not change the data),
    :data:`GENERATOR_VERSION` and the model (name and sizes; ICT-FaceKit by default).
    """
    cfg = protocol_config(name, synth)
    key = {k: v for k, v in cfg.items() if k not in _RUNTIME_KEYS}
    key.update(generator_version=GENERATOR_VERSION, model=list(_model_tag(model)))
    return data_dir("synth") / f"{name}-{config_hash(key)}.h5"


def protocol_sizes(name: str, synth: SynthConfig) -> dict:
    """Sizes a protocol will have under ``synth`` (``cfg.synth``), from its config alone (nothing rendered).

    Returns
    -------
    dict
        ``subjects``, ``images``, ``pairs`` (0 if none), ``folds`` (0 if none), ``sequences``
        (0 if none).
    """
    cfg = protocol_config(name, synth)
    out = {"subjects": 0, "images": 0, "pairs": 0, "folds": 0, "sequences": 0}
    if name in ("train", "micc-like"):
        out["subjects"] = cfg["subjects"]
        out["images"] = cfg["subjects"] * cfg["images_per_subject"]
    elif name == "lfw-like":
        out["subjects"] = cfg["folds"] * cfg["subjects_per_fold"]
        out["images"] = out["subjects"] * cfg["images_per_subject"]
    elif name == "ytf-like":
        out["subjects"] = cfg["folds"] * cfg["subjects_per_fold"]
        out["sequences"] = out["subjects"] * cfg["videos_per_subject"]
        out["images"] = out["sequences"] * cfg["frames_per_video"]
    elif name == "bu3dfe-like":
        y0, y1, step = cfg["yaw_sweep_deg"]
        per = 1 + 6 * len(cfg["intensities"]) + len(np.arange(y0, y1 + 1e-9, step))
        out["subjects"] = cfg["subjects"]
        out["images"] = cfg["subjects"] * per
    if name in ("lfw-like", "ytf-like"):
        out["folds"] = cfg["folds"]
        out["pairs"] = cfg["folds"] * (cfg["same_pairs_per_fold"] + cfg["diff_pairs_per_fold"])
    return out


# ----------------------------------------------------------------------------- sampling
def _truncnormal(rng, std_deg: float, max_deg: float, size) -> np.ndarray:
    """Normal(0, std) truncated to [-max, max] (resampling), returned in radians."""
    x = rng.normal(0.0, std_deg, size)
    for _ in range(100):
        bad = np.abs(x) > max_deg
        if not bad.any():
            break
        x[bad] = rng.normal(0.0, std_deg, int(bad.sum()))
    return np.radians(np.clip(x, -max_deg, max_deg))


def sample_light(rng, n: int, cfg: dict) -> dict:
    """Ambient (n, 3), direction (n, 3) toward the light, diffuse (n, 3) from a light config
    (``ambient`` and ``diffuse`` ranges, ``azimuth_deg`` half-range, ``elevation_deg`` range,
    ``tint`` per-channel relative variation)."""
    a = rng.uniform(*cfg["ambient"], n)[:, None] * (1 + rng.uniform(-cfg["tint"], cfg["tint"], (n, 3)))
    d = rng.uniform(*cfg["diffuse"], n)[:, None] * (1 + rng.uniform(-cfg["tint"], cfg["tint"], (n, 3)))
    az = np.radians(rng.uniform(-cfg["azimuth_deg"], cfg["azimuth_deg"], n))
    el = np.radians(rng.uniform(*cfg["elevation_deg"], n))
    direction = np.stack([np.sin(az) * np.cos(el), np.sin(el), np.cos(az) * np.cos(el)], 1)
    return {"ambient": a.astype(np.float32), "direction": direction.astype(np.float32),
            "diffuse": d.astype(np.float32)}


def _backgrounds(rng, n: int) -> np.ndarray:
    return rng.uniform(0.05, 0.95, (n, 2, 3)).astype(np.float32)


def _pose(rng, n: int, cfg: dict) -> dict:
    return {"yaw": _truncnormal(rng, cfg["yaw_std_deg"], cfg["yaw_max_deg"], n),
            "pitch": _truncnormal(rng, cfg["pitch_std_deg"], cfg["pitch_max_deg"], n),
            "roll": _truncnormal(rng, cfg["roll_std_deg"], cfg["roll_max_deg"], n),
            "scale_jitter": np.exp(rng.normal(0.0, cfg["scale_std"], n)),
            "trans_jitter": rng.normal(0.0, cfg["trans_std_px"], (n, 2))}


# ----------------------------------------------------------------------------- plans
def plan_protocol(name: str, synth: SynthConfig, model) -> dict:
    """All per-image parameters of a protocol, before rendering (deterministic in its config).

    Parameters
    ----------
    name : str
        One of :data:`PROTOCOLS`.
    synth : SynthConfig
        ``cfg.synth``; the protocol's config is ``synth.protocol(name)``.
    model : MorphableModel
        For the expression codes (its ``n_exp``, blendshape names and bounds).

    Returns
    -------
    dict
        ``subject_id`` (K,) global ids, ``subject`` (N,) index into them, ``alpha_exp``,
        ``yaw``, ``pitch``, ``roll``, ``scale_jitter``, ``trans_jitter``, ``light``,
        ``background``, ``blur_sigma``, ``noise_std``, ``image_seed`` (N,), ``low_res``,
        ``columns`` (the protocol's own columns: ``sequence``/``frame``, ``expression``/
        ``intensity``/``sweep``, ``blur_sigma``/``noise_std``) and, for pair protocols,
        ``pairs``, ``same``, ``fold`` (see :mod:`.synthset` for their meaning).

    Raises
    ------
    ValueError
        On inconsistent sizes (for example more pairs than the subjects allow).
    """
    cfg = protocol_config(name, synth)
    rng = np.random.default_rng([int(cfg["seed"]), _PROTOCOL_CODE[name]])
    plan: dict[str, Any] = {"columns": {}}
    subject, K, sweep_yaw = _LAYOUTS[name](rng, cfg, plan)
    N = subject.size
    plan["subject_id"] = SUBJECT_OFFSETS[name] + np.arange(K, dtype=np.int64)
    plan["subject"] = subject.astype(np.int64)
    pose = _pose(rng, N, cfg["pose"])
    light = sample_light(rng, N, cfg["light"])
    alpha_exp = sample_expressions(model, rng, N, cfg["expression"])
    background = _backgrounds(rng, N)
    blur = np.zeros(N, np.float32)
    noise = np.zeros(N, np.float32)
    if name == "ytf-like":
        _video_trajectories(rng, pose, light, alpha_exp, background, K * cfg["videos_per_subject"],
                            cfg["frames_per_video"], cfg, model)
    elif name == "bu3dfe-like":
        pose["yaw"] = sweep_yaw
        pose["pitch"][:] = 0.0
        pose["roll"][:] = 0.0
        alpha_exp = _bu3dfe_expressions(model, plan["columns"])
    elif name == "micc-like":
        blur = rng.uniform(*cfg["blur_sigma_px"], N).astype(np.float32)
        noise = rng.uniform(*cfg["noise_std"], N).astype(np.float32)
        plan["columns"]["blur_sigma"], plan["columns"]["noise_std"] = blur, noise
    plan.update(pose)
    plan["light"] = light
    plan["alpha_exp"] = alpha_exp.astype(np.float32)
    plan["background"] = background
    plan["blur_sigma"], plan["noise_std"] = blur, noise
    plan["image_seed"] = rng.integers(0, 2**63 - 1, N)
    plan["low_res"] = tuple(cfg["low_res"]) if name == "ytf-like" else None
    return plan


def _layout_images(rng, cfg: dict, plan: dict):
    """``train`` and ``micc-like``: ``subjects`` x ``images_per_subject`` images."""
    K, M = cfg["subjects"], cfg["images_per_subject"]
    return np.repeat(np.arange(K), M), K, None


def _layout_lfw(rng, cfg: dict, plan: dict):
    """``lfw-like``: ``folds`` x ``subjects_per_fold`` subjects, image pairs within each fold."""
    F, S, M = cfg["folds"], cfg["subjects_per_fold"], cfg["images_per_subject"]
    K = F * S
    plan["pairs"], plan["same"], plan["fold"] = _make_pairs(
        rng, F, S, M, cfg["same_pairs_per_fold"], cfg["diff_pairs_per_fold"], "images")
    return np.repeat(np.arange(K), M), K, None


def _layout_ytf(rng, cfg: dict, plan: dict):
    """``ytf-like``: videos of ``frames_per_video`` frames, pairs of videos within each fold."""
    F, S, V, T = cfg["folds"], cfg["subjects_per_fold"], cfg["videos_per_subject"], cfg["frames_per_video"]
    K = F * S
    plan["pairs"], plan["same"], plan["fold"] = _make_pairs(
        rng, F, S, V, cfg["same_pairs_per_fold"], cfg["diff_pairs_per_fold"], "videos")
    plan["columns"]["sequence"] = np.repeat(np.arange(K * V), T).astype(np.int64)
    plan["columns"]["frame"] = np.tile(np.arange(T), K * V).astype(np.int64)
    return np.repeat(np.arange(K), V * T), K, None


def _layout_bu3dfe(rng, cfg: dict, plan: dict):
    """``bu3dfe-like``: per subject a neutral frontal image, the six expressions at each
    intensity (frontal), and a neutral yaw sweep; returns the yaw column (radians)."""
    K = cfg["subjects"]
    intensities = [float(x) for x in cfg["intensities"]]
    y0, y1, ystep = cfg["yaw_sweep_deg"]
    sweep_yaw = np.arange(y0, y1 + 1e-9, ystep, dtype=np.float64)
    per = [("neutral", 0.0, 0.0, False)] + [(e, i, 0.0, False) for e in EXPRESSIONS if e != "neutral"
                                             for i in intensities]
    per += [("neutral", 0.0, float(y), True) for y in sweep_yaw]
    plan["columns"]["expression"] = np.array([p[0] for p in per] * K, dtype="S16")
    plan["columns"]["intensity"] = np.array([p[1] for p in per] * K, np.float32)
    plan["columns"]["sweep"] = np.array([p[3] for p in per] * K, bool)
    return np.repeat(np.arange(K), len(per)), K, np.radians(np.array([p[2] for p in per] * K))


_LAYOUTS = {"train": _layout_images, "micc-like": _layout_images, "lfw-like": _layout_lfw,
            "ytf-like": _layout_ytf, "bu3dfe-like": _layout_bu3dfe}


def _bu3dfe_expressions(model, columns: dict) -> np.ndarray:
    """The ``alpha_exp`` of each ``bu3dfe-like`` image from its expression name and intensity
    (zeros for a model without ICT blendshape names)."""
    named = has_expression_names(model)
    return np.stack([expression_vector(model, e.decode(), i) if named else np.zeros(model.n_exp, np.float32)
                     for e, i in zip(columns["expression"], columns["intensity"])])


def _make_pairs(rng, F: int, S: int, M: int, n_same: int, n_diff: int, what: str):
    """Verification pairs within each fold (subjects differ between folds, as LFW View 2).

    Items (images or videos) of subject ``k`` are ``k * M .. k * M + M - 1``.
    """
    same_avail = S * M * (M - 1) // 2
    if n_same > same_avail:
        raise ValueError(f"{n_same} same pairs per fold need more {what}: {S} subjects x {M} {what} "
                         f"give only {same_avail}")
    if n_diff > (S * M) * (S * M - M) // 2:
        raise ValueError(f"{n_diff} different pairs per fold exceed what {S} subjects x {M} {what} give")
    pairs, same, fold = [], [], []
    for f in range(F):
        subj = f * S + np.arange(S)
        within = np.array([(k * M + a, k * M + b) for k in subj for a in range(M) for b in range(a + 1, M)])
        pick = rng.choice(len(within), n_same, replace=False)
        pairs.append(within[pick])
        diff = set()
        while len(diff) < n_diff:
            k1, k2 = rng.choice(subj, 2, replace=False)
            a, b = k1 * M + rng.integers(M), k2 * M + rng.integers(M)
            diff.add((min(a, b), max(a, b)))
        pairs.append(np.array(sorted(diff)).reshape(-1, 2))
        same += [True] * n_same + [False] * n_diff
        fold += [f] * (n_same + n_diff)
    return np.concatenate(pairs).astype(np.int64), np.array(same), np.array(fold, np.int64)


def _video_trajectories(rng, pose, light, alpha_exp, background, n_videos, T, cfg, model):
    """Smooth pose, expression, scale and translation over each video (in place); one light
    and background per video. Yaw oscillates around a per-video centre with amplitude 5-25
    deg (``video.yaw_amp_deg``), pitch 2-8 deg, at 0.3-1 cycle per ``video.period_frames``
    frames; the expression blends smoothly from one draw to another over the clip."""
    t = np.linspace(0.0, 1.0, T)
    vcfg = cfg["video"]
    frames = np.arange(T) / float(vcfg["period_frames"])
    yaw_amp = np.radians(rng.uniform(*vcfg["yaw_amp_deg"], n_videos))
    pitch_amp = np.radians(rng.uniform(*vcfg["pitch_amp_deg"], n_videos))
    cycles = rng.uniform(0.3, 1.0, n_videos)
    phase = rng.uniform(0, 2 * np.pi, (n_videos, 2))
    centre = _pose(rng, n_videos, cfg["pose"])
    e0 = sample_expressions(model, rng, n_videos, cfg["expression"])
    e1 = sample_expressions(model, rng, n_videos, cfg["expression"])
    ramp = t * t * (3 - 2 * t)  # smoothstep
    for v in range(n_videos):
        sl = slice(v * T, (v + 1) * T)
        w = 2 * np.pi * cycles[v] * frames
        pose["yaw"][sl] = np.clip(centre["yaw"][v] + yaw_amp[v] * np.sin(w + phase[v, 0]),
                                  -np.pi / 2, np.pi / 2)
        pose["pitch"][sl] = centre["pitch"][v] + pitch_amp[v] * np.sin(w + phase[v, 1])
        pose["roll"][sl] = centre["roll"][v] + 0.3 * pitch_amp[v] * np.sin(w)
        pose["scale_jitter"][sl] = centre["scale_jitter"][v] * (1 + 0.02 * np.sin(w))
        pose["trans_jitter"][sl] = centre["trans_jitter"][v] + 0.5 * rng.normal(size=(T, 2)).cumsum(0) / np.sqrt(T)
        alpha_exp[sl] = (1 - ramp[:, None]) * e0[v] + ramp[:, None] * e1[v]
        for key in light:
            light[key][sl] = light[key][v * T]
        background[sl] = background[v * T]
