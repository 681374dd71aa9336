"""One table of the methods the book compares: display name, where each comes from, the paper's row.

Every chapter names a method by its display name (``"3DMM-CNN-like"``), takes its checkpoint
phase or fitter from here, and labels the paper's numbers with :attr:`Method.paper_row`. A
method decodes its shape either through the morphable model (its codes are 3DMM
coefficients: :attr:`Method.decode` ``"3dmm"``) or with the network's own decoders
(``"decoders"``); a Phase I checkpoint's decoders are untrained, so it is always decoded
through the 3DMM.

>>> METHODS["3DMM-CNN-like"].phase
'phase1'
>>> method_for_phase("phase3").name
'Proposed'
>>> [m.name for m in reconstruction_methods()]
['mean face', '3DMM fitting', '3DMM-CNN-like', 'Proposed']
>>> [m.name for m in verification_methods()]
['texture', '3DMM fitting', '3DMM-CNN-like', 'Proposed']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

__all__ = ["Method", "METHODS", "method", "method_for_phase", "reconstruction_methods",
           "verification_methods", "FUSIONS", "PAPER_ONLY"]


@dataclass(frozen=True)
class Method:
    """One compared method.

    Attributes
    ----------
    name : str
        Display name used in every table and figure.
    source : {"checkpoint", "fitter", "mean"}
        A trained network (``phase`` names its checkpoint), the 3DMM fitter, or the morphable
        model's mean shape for every image (the floor a method must beat).
    phase : str or None
        The training phase whose final checkpoint is this network (``phase1``, ``phase3``,
        ``texture``); ``None`` for the fitter.
    decode : {"3dmm", "decoders", None}
        How its shape is made: codes through the morphable model, the network's decoders, or
        no shape at all (the texture network).
    feature : str or None
        What verification compares: ``alpha_id`` (fitted, or regressed and unscaled from
        ``c_id``), ``c_id`` or the 512-d ``embedding``; ``None``: not a recognition method.
    paper_row : str or None
        The paper's name of the method this one stands for, exactly as its tables spell it
        (``"3DMM"`` is the paper's ref. [28], ``"3DMM-CNN"`` its [33]; ``"SphereFace"`` its [24],
        reported only in the text's YTF fusion sentence); ``None``: no counterpart. Whether a
        given paper table has that row is for :func:`.evaluation.paper_results.counterpart`.
    description : str
        One line for the chapters.
    """

    name: str
    source: Literal["checkpoint", "fitter", "mean"]
    phase: Optional[str]
    decode: Optional[Literal["3dmm", "decoders"]]
    feature: Optional[str]
    paper_row: Optional[str]
    description: str

    @property
    def has_shape(self) -> bool:
        """Whether the method reconstructs a 3D shape."""
        return self.decode is not None


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("mean face", "mean", None, "3dmm", None, None,
           "the morphable model's mean shape for every image, the shape every network decodes around "
           "(alpha = 0): the floor a reconstruction method must beat"),
    Method("3DMM fitting", "fitter", None, "3dmm", "alpha_id", "3DMM",
           "single-image landmark fitting of the morphable model (Eq. 7 with one image)"),
    Method("3DMM-CNN-like", "checkpoint", "phase1", "3dmm", "alpha_id", "3DMM-CNN",
           "Phase I encoder regressing the fitted codes, decoded through the 3DMM"),
    Method("Proposed", "checkpoint", "phase3", "decoders", "c_id", "Proposed",
           "the jointly trained encoder-decoder (Phase III, L = lambda_r L_R + L_C)"),
    Method("texture", "checkpoint", "texture", None, "embedding", "SphereFace",
           "SphereFace-20 trained for identification only (no shape)"),
)}

#: Score-level fusions of Table 3: name -> the matchers summed (z-scored).
FUSIONS: dict[str, tuple[str, str]] = {"texture + 3DMM-CNN-like": ("texture", "3DMM-CNN-like"),
                                       "texture + Proposed": ("texture", "Proposed")}
#: Methods of the paper that this project does not rebuild (the paper's numbers only).
PAPER_ONLY = ("VRN", "3DSR")


def method(name: str) -> Method:
    """The method called ``name``.

    Raises
    ------
    KeyError
        Naming the known methods.
    """
    try:
        return METHODS[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}: expected one of {list(METHODS)}") from None


def method_for_phase(phase: str) -> Method:
    """The method a training phase's checkpoint stands for.

    Raises
    ------
    KeyError
        When no method comes from that phase (``phase2`` trains decoders only).
    """
    for m in METHODS.values():
        if m.phase == phase:
            return m
    raise KeyError(f"no compared method comes from phase {phase!r}; "
                   f"phases with a method: {[m.phase for m in METHODS.values() if m.phase]}")


def reconstruction_methods() -> list[Method]:
    """Methods with a 3D shape, in table order."""
    return [m for m in METHODS.values() if m.has_shape]


def verification_methods() -> list[Method]:
    """Methods with a recognition feature, in table order (texture first)."""
    return [METHODS["texture"]] + [m for m in METHODS.values() if m.name != "texture" and m.feature is not None]
