"""Input checks of the fitter: landmark arrays, the model, failed detections and the options.

Every public fitting function validates its input here before any solve, so degenerate input
(wrong shape, NaN, all landmarks on one point or one line) raises a ``ValueError`` naming the
problem instead of producing a NaN fit, and a misspelt option raises
:class:`~disentangled_face.config.ConfigError` naming the key.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from ..config import ConfigError, FittingConfig, replace_section
from ..shape import MorphableModel

__all__ = ["check_landmarks", "check_model", "split_detections", "fitter_options", "torch_dtype", "EXP_SOLVERS"]

#: Solvers of the bounded expression step: batched torch active set, or scipy's lsq_linear (reference).
EXP_SOLVERS = ("torch", "scipy")


def check_landmarks(lm: Any, n_points: int, name: str = "landmarks2d") -> np.ndarray:
    """Validate a (M, L, 2) landmark array (pixels) and return it as float64 (a (L, 2) gets M = 1).

    Raises
    ------
    ValueError
        Wrong shape, no image, NaN or inf coordinates, all landmarks on one point or one line.
    """
    arr = np.asarray(lm, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[2] != 2 or arr.shape[1] != n_points:
        raise ValueError(f"{name} must have shape (M, {n_points}, 2) or ({n_points}, 2) (pixels), "
                         f"got {np.shape(lm)}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} holds no image (shape {arr.shape})")
    bad = ~np.isfinite(arr).all(axis=(1, 2))
    if bad.any():
        raise ValueError(f"{name} has NaN or inf coordinates in image(s) {np.flatnonzero(bad)[:10].tolist()}")
    c = arr - arr.mean(axis=1, keepdims=True)
    sv = np.linalg.svd(c, compute_uv=False)  # (M, 2)
    scale = np.abs(arr).max(axis=(1, 2)) + 1.0
    point = sv[:, 0] <= 1e-9 * scale
    if point.any():
        raise ValueError(f"{name}: all landmarks fall on one point in image(s) {np.flatnonzero(point)[:10].tolist()}")
    line = sv[:, 1] <= 1e-6 * sv[:, 0]
    if line.any():
        raise ValueError(f"{name}: all landmarks lie on one line in image(s) {np.flatnonzero(line)[:10].tolist()}; "
                         "a weak-perspective pose needs a 2D spread")
    return arr


def check_model(model: MorphableModel) -> None:
    """Raise ValueError unless ``model`` is a :class:`MorphableModel` with at least 4 landmarks."""
    if not isinstance(model, MorphableModel):
        raise ValueError(f"model must be a MorphableModel, got {type(model).__name__}")
    if model.landmarks.shape[0] < 4:
        raise ValueError(f"the model needs at least 4 landmarks, has {model.landmarks.shape[0]}")


def torch_dtype(name: str) -> torch.dtype:
    """``"float32"`` / ``"float64"`` (``FittingConfig.dtype``) as a torch dtype."""
    return {"float32": torch.float32, "float64": torch.float64}[name]


def fitter_options(options: FittingConfig | None = None, **overrides: Any) -> FittingConfig:
    """The fitter options: ``options`` (default: :class:`FittingConfig`'s typed defaults) with
    ``overrides`` applied and validated.

    Raises
    ------
    ConfigError
        ``options`` is not a FittingConfig, an override is not a fitting option, or a value has
        the wrong type or range; the message names the key (``fitting.lambda_id``).
    """
    if options is None:
        options = FittingConfig()
    if not isinstance(options, FittingConfig):
        raise ConfigError(f"fitting options must be a FittingConfig (cfg.fitting), got {type(options).__name__}")
    if not overrides:
        return options
    known = sorted(FittingConfig.model_fields)
    unknown = sorted(set(overrides) - set(known))
    if unknown:
        raise ConfigError(f"fitting.{unknown[0]}: unknown fitting option(s) {unknown}; expected one of {known}")
    return replace_section(options, overrides, "fitting", strict=False)


def split_detections(landmarks2d: Any) -> tuple[np.ndarray, list, list]:
    """Accept an array (M, L, 2) or a sequence of arrays / detections; drop the not-found ones.

    Returns the stacked landmarks, the indices kept and the indices discarded (with a warning).

    Raises
    ------
    ValueError
        No usable image left, or landmark sets of different shapes.
    """
    if isinstance(landmarks2d, (np.ndarray, torch.Tensor)):
        arr = np.asarray(landmarks2d)
        return arr, list(range(arr.shape[0] if arr.ndim == 3 else 1)), []
    kept, discarded, pts = [], [], []
    for i, item in enumerate(landmarks2d):
        found = getattr(item, "found", True)
        if item is None or not found:
            discarded.append(i)
            continue
        pts.append(np.asarray(getattr(item, "points", item), dtype=np.float64))
        kept.append(i)
    if discarded:
        warnings.warn(f"no face found in {len(discarded)} of {len(kept) + len(discarded)} image(s) "
                      f"{discarded[:10]}: discarded from the fit", stacklevel=3)
    if not pts:
        raise ValueError(f"no usable image left: no face was found in any of the {len(discarded)} image(s)")
    shapes = {p.shape for p in pts}
    if len(shapes) != 1:
        raise ValueError(f"every landmark set must have the same shape, got {sorted(shapes)}")
    return np.stack(pts), kept, discarded
