"""The "texture network" baseline: SphereFace-20 trained for identification only (Sec. 4.2)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..config import NetworkConfig
from .sphereface import STAGE_CHANNELS, SphereFace20

__all__ = ["TextureNet"]


class TextureNet(nn.Module):
    """The "texture network" baseline: SphereFace-20 trained for identification only.

    feature (512) -> linear softmax classifier over the training subjects; no shape. The
    published SphereFace uses the angular A-Softmax loss; this baseline uses the plain softmax
    of L_C so that it differs from the shape network only in what it is trained on.
    """

    def __init__(self, n_subjects: int, width: float = 1.0, input_size: Sequence[int] = (112, 96),
                 feature_dim: int = 512, norm: str = "none"):
        super().__init__()
        if n_subjects < 1:
            raise ValueError(f"n_subjects must be >= 1, got {n_subjects}")
        self.n_subjects = n_subjects
        self.encoder = SphereFace20(width, input_size, feature_dim, norm=norm)
        self.classifier = nn.Linear(feature_dim, n_subjects)
        nn.init.xavier_uniform_(self.classifier.weight)
        nn.init.zeros_(self.classifier.bias)

    @classmethod
    def from_config(cls, network: NetworkConfig, n_subjects: int) -> "TextureNet":
        """Build from ``cfg.network`` (its decoder settings do not apply)."""
        return cls(n_subjects, network.width, network.input_size, network.feature_dim, norm=network.norm)

    def arch(self) -> dict:
        return {"kind": "texture", "n_subjects": self.n_subjects,
                "width": self.encoder.channels[0] / STAGE_CHANNELS[0],
                "input_size": list(self.encoder.input_size), "feature_dim": self.encoder.feature_dim,
                **({"norm": self.encoder.norm} if self.encoder.norm != "none" else {})}

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images (B, 3, H, W) -> {"feature": (B, F), "logits": (B, n_subjects)}."""
        f = self.encoder(images)
        return {"feature": f, "logits": self.classifier(f)}
