"""Expressions of synthetic faces: the seven BU-3DFE expressions as ICT-FaceKit blendshape
weights, and the per-image expression prior of the synthetic protocols."""

from __future__ import annotations

import numpy as np

__all__ = ["EXPRESSIONS", "expression_vector", "has_expression_names", "sample_expressions"]

#: The seven BU-3DFE expressions as ICT-FaceKit (ARKit-style) blendshape weights at full
#: intensity, following the prototypical FACS action units of each emotion (Ekman & Friesen):
#: AU1 inner brow raiser = browInnerUp, AU2 outer brow raiser = browOuterUp, AU4 brow lowerer =
#: browDown, AU5 upper lid raiser = eyeWide, AU6 cheek raiser = cheekSquint, AU7 lid tightener
#: = eyeSquint, AU9 nose wrinkler = noseSneer, AU10 upper lip raiser = mouthUpperUp, AU12 lip
#: corner puller = mouthSmile, AU15 lip corner depressor = mouthFrown, AU16 lower lip depressor
#: = mouthLowerDown, AU20 lip stretcher = mouthStretch, AU23/24 lip tightener/pressor =
#: mouthPress, AU26 jaw drop = jawOpen.
EXPRESSIONS: dict[str, dict[str, float]] = {
    "neutral": {},
    # AU6 + AU12
    "happiness": {"mouthSmile_L": 1.0, "mouthSmile_R": 1.0, "cheekSquint_L": 0.7, "cheekSquint_R": 0.7,
                  "eyeSquint_L": 0.3, "eyeSquint_R": 0.3, "mouthDimple_L": 0.3, "mouthDimple_R": 0.3},
    # AU9 + AU10 + AU15 (+ AU4)
    "disgust": {"noseSneer_L": 1.0, "noseSneer_R": 1.0, "mouthUpperUp_L": 0.8, "mouthUpperUp_R": 0.8,
                "mouthFrown_L": 0.4, "mouthFrown_R": 0.4, "browDown_L": 0.5, "browDown_R": 0.5,
                "cheekSquint_L": 0.3, "cheekSquint_R": 0.3},
    # AU1 + AU2 + AU4 + AU5 + AU20 + AU26
    "fear": {"browInnerUp_L": 1.0, "browInnerUp_R": 1.0, "browOuterUp_L": 0.4, "browOuterUp_R": 0.4,
             "browDown_L": 0.3, "browDown_R": 0.3, "eyeWide_L": 1.0, "eyeWide_R": 1.0,
             "mouthStretch_L": 0.8, "mouthStretch_R": 0.8, "jawOpen": 0.25},
    # AU4 + AU5 + AU7 + AU23/24
    "anger": {"browDown_L": 1.0, "browDown_R": 1.0, "eyeWide_L": 0.3, "eyeWide_R": 0.3,
              "eyeSquint_L": 0.6, "eyeSquint_R": 0.6, "mouthPress_L": 0.8, "mouthPress_R": 0.8,
              "noseSneer_L": 0.3, "noseSneer_R": 0.3},
    # AU1 + AU2 + AU5 + AU26
    "surprise": {"browInnerUp_L": 1.0, "browInnerUp_R": 1.0, "browOuterUp_L": 1.0, "browOuterUp_R": 1.0,
                 "eyeWide_L": 0.8, "eyeWide_R": 0.8, "jawOpen": 0.6, "mouthFunnel": 0.2},
    # AU1 + AU4 + AU15 (+ AU17)
    "sadness": {"browInnerUp_L": 0.9, "browInnerUp_R": 0.9, "browDown_L": 0.3, "browDown_R": 0.3,
                "mouthFrown_L": 1.0, "mouthFrown_R": 1.0, "mouthShrugLower": 0.5,
                "eyeLookDown_L": 0.3, "eyeLookDown_R": 0.3},
}


def expression_vector(model, name: str, intensity: float = 1.0) -> np.ndarray:
    """The blendshape weights ``alpha_exp`` (k_exp,) of an :data:`EXPRESSIONS` entry.

    Parameters
    ----------
    model : MorphableModel
        Its ``exp_names`` must contain the blendshape names of the expression.
    name : str
        A key of :data:`EXPRESSIONS`.
    intensity : float
        Multiplier in [0, 1] of the full-intensity weights.

    Raises
    ------
    ValueError
        Unknown expression, or the model lacks one of its blendshapes (e.g. a PCA expression
        model such as BFM + FaceWarehouse).
    """
    if name not in EXPRESSIONS:
        raise ValueError(f"unknown expression {name!r}: expected one of {list(EXPRESSIONS)}")
    idx = {n: i for i, n in enumerate(model.exp_names)}
    out = np.zeros(model.n_exp, np.float32)
    for bs, w in EXPRESSIONS[name].items():
        if bs not in idx:
            raise ValueError(f"expression {name!r} needs blendshape {bs!r}, which model {model.name!r} "
                             f"does not have (expected ICT-FaceKit / ARKit blendshape names)")
        out[idx[bs]] = w * intensity
    return out


def has_expression_names(model) -> bool:
    """Whether the model has every blendshape :data:`EXPRESSIONS` uses (ICT-FaceKit / ARKit names)."""
    names = set(model.exp_names)
    return all(bs in names for e in EXPRESSIONS.values() for bs in e)


def sample_expressions(model, rng, n: int, cfg: dict) -> np.ndarray:
    """``alpha_exp`` (n, k_exp): neutral with probability ``neutral_prob``, else one of the six
    :data:`EXPRESSIONS` at an intensity in ``intensity``; plus ``random_active`` random
    blendshapes with weights in [0, ``random_max``], clipped to the model's bounds. A model
    without ICT blendshape names (PCA expressions) gets ``model.sample``'s prior instead."""
    if not has_expression_names(model):
        return model.sample(n, rng)[1]
    protos = np.stack([expression_vector(model, e) for e in EXPRESSIONS if e != "neutral"])
    pick = rng.integers(0, len(protos), n)
    inten = rng.uniform(*cfg["intensity"], n) * (rng.uniform(size=n) >= cfg["neutral_prob"])
    out = protos[pick] * inten[:, None]
    k = min(int(cfg["random_active"]), model.n_exp)
    for i in range(n):
        idx = rng.choice(model.n_exp, size=k, replace=False)
        out[i, idx] += rng.uniform(0.0, cfg["random_max"], k)
    lo, hi = model.exp_bounds if model.exp_bounds is not None else (-np.inf, np.inf)
    return np.clip(out, lo, hi).astype(np.float32)
