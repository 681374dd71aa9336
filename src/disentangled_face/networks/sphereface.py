"""The encoder: SphereFace-20 (``sphere20a`` of Liu et al., CVPR 2017), paper Sec. 3.2.

Every convolution 3x3 with padding 1 and a per-channel PReLU, no batch norm; four stages, each
a stride-2 convolution (64, 128, 256, 512 channels) followed by 1, 2, 4 and 1 residual units of
two convolutions; flatten (512 x 7 x 6) and a fully connected layer to a 512-d feature. The
initialisation follows the Caffe model: Xavier for the stride-2 convolutions and the FC layer,
Gaussian (std 0.01, no bias) for the convolutions inside residual units.

``network.norm = "batch"`` (a deviation from sphere20a, off by default) puts a BatchNorm after
every convolution (before its PReLU; the convolutions then have no bias) and starts each
residual unit's second BatchNorm at zero scale, so every unit begins as the identity: the
small book network then trains at higher learning rates and widths without diverging.

``network.width`` multiplies every channel count (1.0 is the published network) and
``network.input_size`` is the (height, width) the encoder sees; images of another size are
resized (bilinear, antialiased) inside :meth:`SphereFace20.forward`, so every dataset keeps
the paper's 112 x 96 crops.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["STAGE_CHANNELS", "STAGE_UNITS", "ResidualUnit", "SphereFace20"]

#: Channels of the four stages of SphereFace-20 at width 1.
STAGE_CHANNELS = (64, 128, 256, 512)
#: Residual units (of two convolutions) after each stride-2 convolution.
STAGE_UNITS = (1, 2, 4, 1)


def _conv_out(size: int) -> int:
    """Output size of a 3x3, stride-2, padding-1 convolution."""
    return (size - 1) // 2 + 1


class ResidualUnit(nn.Module):
    """``x + PReLU(conv(PReLU(conv(x))))``, both convolutions 3x3, padding 1 (SphereFace).

    With ``norm=True``: ``x + PReLU(BN(conv(PReLU(BN(conv(x))))))``, the second BatchNorm's
    scale starting at zero (the unit starts as the identity)."""

    def __init__(self, channels: int, norm: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.relu1 = nn.PReLU(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.relu2 = nn.PReLU(channels)
        for c in (self.conv1, self.conv2):
            nn.init.normal_(c.weight, std=0.01)
        self.norm = norm
        if norm:
            self.bn1, self.bn2 = nn.BatchNorm2d(channels), nn.BatchNorm2d(channels)
            nn.init.zeros_(self.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm:
            return x + self.relu2(self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x))))))
        return x + self.relu2(self.conv2(self.relu1(self.conv1(x))))


class SphereFace20(nn.Module):
    """SphereFace-20 (``sphere20a``) feature extractor, paper Sec. 3.2.

    Parameters
    ----------
    width : float
        Channel multiplier (1.0: 64, 128, 256, 512 channels as published).
    input_size : (int, int)
        (height, width) in pixels the convolutions see; (112, 96) as published.
    feature_dim : int
        Size of the output feature (512 as published).
    norm : {"none", "batch"}
        ``"none"`` (published): no normalisation layer; ``"batch"``: BatchNorm after every
        convolution (module docstring).

    Notes
    -----
    Input: images (B, 3, H, W) in [-1, 1]. When (H, W) differs from ``input_size`` the images
    are resized first (``F.interpolate``, bilinear, antialias). Output: (B, feature_dim).
    """

    def __init__(self, width: float = 1.0, input_size: Sequence[int] = (112, 96), feature_dim: int = 512,
                 norm: str = "none"):
        super().__init__()
        if norm not in ("none", "batch"):
            raise ValueError(f"norm must be 'none' or 'batch', got {norm!r}")
        self.norm = norm
        bn = norm == "batch"
        self.input_size = (int(input_size[0]), int(input_size[1]))
        chans = [max(1, int(round(c * width))) for c in STAGE_CHANNELS]
        layers: list[nn.Module] = []
        c_in = 3
        h, w = self.input_size
        for i, (c, units) in enumerate(zip(chans, STAGE_UNITS)):
            conv = nn.Conv2d(c_in, c, 3, 2, 1, bias=not bn)
            nn.init.xavier_uniform_(conv.weight)
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
            stage = [conv] + ([nn.BatchNorm2d(c)] if bn else []) + [nn.PReLU(c)] + \
                [ResidualUnit(c, norm=bn) for _ in range(units)]
            layers.append(nn.Sequential(*stage))
            c_in = c
            h, w = _conv_out(h), _conv_out(w)
        self.stages = nn.Sequential(*layers)
        self.out_hw = (h, w)
        self.channels = tuple(chans)
        self.fc = nn.Linear(c_in * h * w, feature_dim)
        nn.init.xavier_uniform_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)
        self.feature_dim = feature_dim

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must have shape (B, 3, H, W), got {tuple(images.shape)}")
        if tuple(images.shape[-2:]) != self.input_size:
            images = F.interpolate(images, size=self.input_size, mode="bilinear",
                                   align_corners=False, antialias=True)
        x = self.stages(images)
        return self.fc(torch.flatten(x, 1))
