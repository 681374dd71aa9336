"""Random image augmentation of training batches (kornia.augmentation): a deviation from the paper.

The paper trains on 494,414 real photographs of 10,575 people; the book profile trains on a few
thousand synthetic subjects with a handful of images each, and its networks memorise them (the
texture network reaches 100 % on its training images within three epochs). A fresh, random
change of every training image at every step, one that keeps what the targets describe, is
the field's cheapest remedy. :func:`make_augment` builds it with kornia: a small similarity
warp (the scaled-orthographic pose of the crop changes, the 3D shape and the identity do not),
brightness and contrast, Gaussian blur and Gaussian noise (the test sets' harsh light, blur and
noise: ``micc-like``). Mirroring is left out: it would swap the face's left and right
identity and expression modes, which the codes do not allow.

A phase switches it on in its section of ``train:``: ``augment: full`` (warp and light, the
book's texture network) or ``augment: photometric`` (light, blur and noise only, the book's
shape phases: the warp made Phase I's held-out and unseen errors larger, the photometric part
alone made the ``micc-like`` error smaller); ``none`` by default. The settings are the
:class:`AugmentSettings` defaults (one place). The held-out images and every evaluation see
the images unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["AugmentSettings", "Augment", "make_augment", "AUGMENT_KINDS"]

#: The values of a phase's ``augment`` key.
AUGMENT_KINDS = ("none", "photometric", "full")


@dataclass(frozen=True)
class AugmentSettings:
    """What :func:`make_augment` draws per image (each with its own probability).

    Attributes
    ----------
    degrees : float
        In-plane rotation, uniform in ``[-degrees, degrees]`` (degrees).
    translate : float
        Shift, uniform up to this fraction of the width and height.
    scale : (float, float)
        Zoom range.
    brightness, contrast : float
        kornia ``ColorJitter`` ranges (additive brightness, multiplicative contrast on [0, 1] images).
    jitter_p : float
        Probability of the brightness/contrast change.
    blur_sigma_px : (float, float)
        Gaussian blur's sigma range in pixels of the network input; ``blur_p`` its probability.
    noise_std : float
        Gaussian noise's standard deviation on [0, 1] images; ``noise_p`` its probability.
    """

    degrees: float = 8.0
    translate: float = 0.06
    scale: tuple[float, float] = (0.92, 1.08)
    brightness: float = 0.3
    contrast: float = 0.3
    jitter_p: float = 0.8
    blur_sigma_px: tuple[float, float] = (0.1, 1.2)
    blur_p: float = 0.3
    noise_std: float = 0.03
    noise_p: float = 0.3


class Augment(nn.Module):
    """A random change of a batch of network inputs (a new draw at every call).

    Input and output: float tensors (B, 3, H, W) in [-1, 1] (the network's input convention);
    the kornia pipeline works on [0, 1] images in between. Raises ``ValueError`` on another shape.

    >>> aug = make_augment("full")
    >>> x = torch.zeros(4, 3, 56, 48)
    >>> y = aug(x)
    >>> tuple(y.shape), bool(y.abs().max() <= 1.0)
    ((4, 3, 56, 48), True)
    """

    def __init__(self, pipeline: nn.Module):
        super().__init__()
        self.pipeline = pipeline

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected images (B, 3, H, W), got {tuple(x.shape)}")
        with torch.no_grad():
            y = self.pipeline((x + 1.0) * 0.5)
        return (y.clamp(0.0, 1.0) * 2.0 - 1.0).to(x.dtype)


def make_augment(kind: str = "full", settings: AugmentSettings | None = None) -> Augment | None:
    """The augmentation of training batches (module docstring; source: kornia.augmentation).

    Parameters
    ----------
    kind : {"none", "photometric", "full"}
        ``full``: the similarity warp, then brightness/contrast, blur and noise;
        ``photometric``: without the warp; ``none``: returns None.
    settings : AugmentSettings, optional
        Default: ``AugmentSettings()``.

    Raises
    ------
    ValueError
        On another ``kind``.
    """
    if kind not in AUGMENT_KINDS:
        raise ValueError(f"augment must be one of {AUGMENT_KINDS}, got {kind!r}")
    if kind == "none":
        return None
    import kornia.augmentation as K  # noqa: PLC0415 - only training with augmentation needs it

    s = settings or AugmentSettings()
    warp = [K.RandomAffine(degrees=s.degrees, translate=(s.translate, s.translate), scale=s.scale,
                           padding_mode="border", p=1.0)] if kind == "full" else []
    return Augment(nn.Sequential(
        *warp,
        K.ColorJitter(brightness=s.brightness, contrast=s.contrast, p=s.jitter_p),
        K.RandomGaussianBlur((5, 5), s.blur_sigma_px, p=s.blur_p),
        K.RandomGaussianNoise(std=s.noise_std, p=s.noise_p),
    ))
