"""The shape model (chapter 1): the morphable model of Eq. 1-3 and 6, the camera of Eq. 6, the
similarity Procrustes alignment of two shapes, and the model's inputs (ICT-FaceKit, the book's
default; the Basel Face Model 2009).

>>> from disentangled_face.shape import load_model, camera
>>> model = load_model(cfg.model)                      # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from ..config import ModelConfig
from . import camera
from .bfm import load_bfm2009
from .morphable import NOSE_TIP_LANDMARK, MorphableModel, load_landmark_indices
from .overlap import expression_energy_in_identity_span
from .population import expected_mean_rms, neutral_mean
from .procrustes import apply_similarity, similarity_procrustes

__all__ = ["MorphableModel", "NOSE_TIP_LANDMARK", "load_landmark_indices", "load_ict_facekit",
           "expression_energy_in_identity_span", "neutral_mean", "expected_mean_rms",
           "fetch_ict_facekit", "load_bfm2009", "load_model", "camera", "ModelNotFoundError",
           "HashMismatchError", "similarity_procrustes", "apply_similarity"]


#: Names of :mod:`.ict_facekit`, imported on first use: ``python -m disentangled_face.shape.ict_facekit``
#: (the command that fetches the model) would otherwise find the module already imported by
#: this package and warn that it runs twice.
_ICT_NAMES = ("load_ict_facekit", "fetch_ict_facekit", "ModelNotFoundError", "HashMismatchError")


def __getattr__(name: str) -> Any:
    if name in _ICT_NAMES:
        from . import ict_facekit

        return getattr(ict_facekit, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_ICT_NAMES))


def load_model(model_cfg: ModelConfig | None = None) -> MorphableModel:
    """The morphable model a profile names (``cfg.model``; ICT-FaceKit when omitted).

    Parameters
    ----------
    model_cfg : disentangled_face.config.ModelConfig, optional
        ``cfg.model``. Its ``name`` is ``"ict-facekit"`` (the only model loadable by name;
        BFM 2009 needs files the reader supplies: :func:`load_bfm2009`).

    Raises
    ------
    ValueError
        A model name this function cannot load.
    ModelNotFoundError
        ICT-FaceKit cannot be found or downloaded.
    """
    name = "ict-facekit" if model_cfg is None else model_cfg.name
    if name != "ict-facekit":
        raise ValueError(f"load_model can load only the 'ict-facekit' model by name, got {name!r}; "
                         f"load another model yourself (e.g. load_bfm2009) and pass model=...")
    from .ict_facekit import load_ict_facekit

    return load_ict_facekit()
