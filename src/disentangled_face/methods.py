"""One table of the methods the book compares: display name, where each comes from, the paper's row.

Every chapter names a method by its display name (``"3DMM-CNN-like"``), takes its checkpoint
phase or fitter from here, and labels the paper's numbers with :attr:`Method.paper_row`. A
method decodes its shape either through the morphable model (its codes are 3DMM
coefficients: :attr:`Method.decode` ``"3dmm"``) or with the network's own decoders
(``"decoders"``); a Phase I checkpoint's decoders are untrained, so it is always decoded
through the 3DMM.

The main run (chapter 6) trains every network on the paper's targets, the multi-image fits.
A *rival* (:data:`RIVALS`) is a network trained in a run of its own, on other targets
(:attr:`Method.targets`), and is compared only when the profile lists it in
``experiments.rivals``: ``3DDFA-like`` is Phase I trained on the single-image fit of every
training image. Beside 3DMM-CNN-like (the same encoder and loss, on the pooled fits) it shows
what pooling a subject's images buys; beside Proposed, what the identification loss buys.

>>> METHODS["3DMM-CNN-like"].phase
'phase1'
>>> method_for_phase("phase3").name
'Proposed'
>>> [m.name for m in reconstruction_methods()]
['mean face', '3DMM fitting', '3DMM-CNN-like', 'Proposed']
>>> [m.name for m in reconstruction_methods(["3DDFA-like"])]
['mean face', '3DMM fitting', '3DDFA-like', '3DMM-CNN-like', 'Proposed']
>>> [m.name for m in verification_methods()]
['texture', '3DMM fitting', '3DMM-CNN-like', 'Proposed']
>>> METHODS["3DDFA-like"].network, METHODS["3DMM-CNN-like"].network
('single_image_phase1', 'phase1')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Literal, Optional

__all__ = ["Method", "METHODS", "RIVALS", "method", "method_for_phase", "active_methods", "rival_names",
           "reconstruction_methods", "verification_methods", "FUSIONS", "PAPER_ONLY"]


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
    targets : {"fitted", "single_image"}
        What its run's networks were trained on (:data:`disentangled_face.training.TARGETS`):
        the paper's multi-image fits (the main run, chapter 6) or, for a rival, the single-image
        fit of every training image (its own run folder, :func:`.training.run_hash`).
    """

    name: str
    source: Literal["checkpoint", "fitter", "mean"]
    phase: Optional[str]
    decode: Optional[Literal["3dmm", "decoders"]]
    feature: Optional[str]
    paper_row: Optional[str]
    description: str
    targets: str = "fitted"

    @property
    def has_shape(self) -> bool:
        """Whether the method reconstructs a 3D shape."""
        return self.decode is not None

    @property
    def is_rival(self) -> bool:
        """Whether it comes from a run of its own (not the main run), compared when switched on."""
        return self.targets != "fitted"

    @property
    def network(self) -> Optional[str]:
        """Its key among the trained networks (``evaluation.trained_networks``) and in the cached
        codes: the phase for the main run (``"phase1"``), ``"<targets>_<phase>"`` for a rival
        (``"single_image_phase1"``); ``None`` when it is no checkpoint."""
        if self.phase is None:
            return None
        return self.phase if not self.is_rival else f"{self.targets}_{self.phase}"


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("mean face", "mean", None, "3dmm", None, None,
           "the morphable model's mean shape for every image, the shape every network decodes around "
           "(alpha = 0): the floor a reconstruction method must beat"),
    Method("3DMM fitting", "fitter", None, "3dmm", "alpha_id", "3DMM",
           "single-image landmark fitting of the morphable model (Eq. 7 with one image)"),
    Method("3DDFA-like", "checkpoint", "phase1", "3dmm", "alpha_id", "3DDFA",
           "Phase I encoder regressing the single-image fit of every training image (no pooling of a "
           "subject's images, no identification loss), decoded through the 3DMM", targets="single_image"),
    Method("3DMM-CNN-like", "checkpoint", "phase1", "3dmm", "alpha_id", "3DMM-CNN",
           "Phase I encoder regressing the fitted codes, decoded through the 3DMM"),
    Method("Proposed", "checkpoint", "phase3", "decoders", "c_id", "Proposed",
           "the jointly trained encoder-decoder (Phase III, L = lambda_r L_R + L_C)"),
    Method("texture", "checkpoint", "texture", None, "embedding", "SphereFace",
           "SphereFace-20 trained for identification only (no shape)"),
)}

#: Score-level fusions of Table 3: name -> the matchers summed (z-scored), in table order. A
#: fusion is computed where all its matchers are (``texture + 3DDFA-like`` only with that rival on).
FUSIONS: dict[str, tuple[str, str]] = {"texture + 3DDFA-like": ("texture", "3DDFA-like"),
                                       "texture + 3DMM-CNN-like": ("texture", "3DMM-CNN-like"),
                                       "texture + Proposed": ("texture", "Proposed")}
#: Methods of the paper that this project does not rebuild (the paper's numbers only).
PAPER_ONLY = ("VRN", "3DSR")
#: The methods trained in runs of their own, compared when ``experiments.rivals`` lists them.
RIVALS = tuple(m.name for m in METHODS.values() if m.is_rival)


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


def method_for_phase(phase: str, targets: str = "fitted") -> Method:
    """The method a training phase's checkpoint stands for, in a run trained on ``targets``
    (default: the main run's).

    >>> method_for_phase("phase1", "single_image").name
    '3DDFA-like'

    Raises
    ------
    KeyError
        When no method comes from that phase (``phase2`` trains decoders only) of such a run.
    """
    for m in METHODS.values():
        if m.phase == phase and m.targets == targets:
            return m
    raise KeyError(f"no compared method comes from phase {phase!r} trained on {targets!r} targets; "
                   f"phases with a method: {[(m.phase, m.targets) for m in METHODS.values() if m.phase]}")


def rival_names(rivals: Any = ()) -> tuple[str, ...]:
    """The rivals switched on: ``rivals`` is a list of names, a validated ``Config`` or its
    ``ExperimentsConfig`` (their ``experiments.rivals``), or ``None`` (none).

    Raises
    ------
    KeyError
        On a name that is not in :data:`RIVALS`.
    """
    if rivals is None:
        return ()
    exp = getattr(rivals, "experiments", rivals)
    names = tuple(getattr(exp, "rivals", exp))
    bad = [n for n in names if n not in RIVALS]
    if bad:
        raise KeyError(f"unknown rival(s) {bad}: expected some of {list(RIVALS)}")
    return names


def active_methods(rivals: Any = ()) -> list[Method]:
    """Every method of the main run plus the rivals switched on (see :func:`rival_names`), in
    table order.

    >>> [m.name for m in active_methods()] == [n for n in METHODS if n not in RIVALS]
    True
    """
    on = set(rival_names(rivals))
    return [m for m in METHODS.values() if not m.is_rival or m.name in on]


def reconstruction_methods(rivals: Iterable[str] | Any = ()) -> list[Method]:
    """Methods with a 3D shape, in table order (the rivals of ``rivals`` included, see
    :func:`rival_names`: pass the ``Config``)."""
    return [m for m in active_methods(rivals) if m.has_shape]


def verification_methods(rivals: Iterable[str] | Any = ()) -> list[Method]:
    """Methods with a recognition feature, in table order (texture first; the rivals of
    ``rivals`` included, see :func:`rival_names`)."""
    ms = active_methods(rivals)
    return [METHODS["texture"]] + [m for m in ms if m.name != "texture" and m.feature is not None]
