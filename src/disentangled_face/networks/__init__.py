"""The networks (chapter 5): SphereFace-20, the disentangled encoder-decoder (Fig. 3, Eq. 2),
the code scaling, the texture-network baseline, the losses of Eq. 5, and running a trained
network on images (:mod:`disentangled_face.networks.inference`: codes, features, shapes).

>>> from disentangled_face.networks import DisentangledFaceNet
>>> net = DisentangledFaceNet.from_config(cfg.network, model, n_subjects=300)  # doctest: +SKIP
"""

from __future__ import annotations

from . import inference, losses
from .code_scaler import CodeScaler
from .disentangled import DisentangledFaceNet
from .layers import build_from_arch, count_parameters, layer_table
from .sphereface import STAGE_CHANNELS, STAGE_UNITS, ResidualUnit, SphereFace20
from .texture import TextureNet

__all__ = ["SphereFace20", "ResidualUnit", "STAGE_CHANNELS", "STAGE_UNITS", "CodeScaler",
           "DisentangledFaceNet", "TextureNet", "build_from_arch", "layer_table", "count_parameters",
           "losses", "inference"]
