"""Code scaling between 3DMM coefficients and the network's codes in [-1, 1] (Sec. 3.3.2).

The Phase I targets are the fitted 3DMM coefficients, which are not in ``[-1, 1]``.
:class:`CodeScaler` maps them with one fixed positive factor per dimension,
``c = alpha / scale`` and ``alpha = c * scale``, where
``scale_d = margin * max_i |alpha_{i,d}|`` over the training targets (``margin`` > 1 keeps the
targets off the tanh asymptotes, e.g. ``margin = 1.25`` puts them in ``[-0.8, 0.8]``). The map is
linear, so the decoder that reproduces the 3DMM exactly is ``A_id diag(scale_id)`` (and the same
for expressions): see :meth:`~disentangled_face.networks.DisentangledFaceNet.init_decoders_from_model`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

__all__ = ["CodeScaler"]


class CodeScaler(nn.Module):
    """Invertible per-dimension scaling between 3DMM coefficients and codes in [-1, 1].

    ``c_id = alpha_id / scale_id`` and ``c_res = alpha_exp / scale_exp`` (and back). Stored as
    buffers, so it travels in every checkpoint's ``state_dict``.

    Parameters
    ----------
    scale_id : array or tensor, shape (k_id,)
    scale_exp : array or tensor, shape (k_exp,)
        Positive factors (units of alpha per unit code).

    Raises
    ------
    ValueError
        When a factor is not positive and finite.
    """

    def __init__(self, scale_id, scale_exp):
        super().__init__()
        for name, s in (("scale_id", scale_id), ("scale_exp", scale_exp)):
            t = torch.as_tensor(np.asarray(s, np.float32) if not torch.is_tensor(s) else s, dtype=torch.float32)
            if t.ndim != 1 or not torch.isfinite(t).all() or not (t > 0).all():
                raise ValueError(f"{name} must be a 1-D array of positive finite factors, got {t}")
            self.register_buffer(name, t.clone())

    @classmethod
    def fit(cls, alpha_id, alpha_exp, margin: float, floor: float = 1e-3) -> "CodeScaler":
        """Factors ``scale_d = margin * max_i |alpha_{i,d}|`` (at least ``floor``) from targets.

        Parameters
        ----------
        alpha_id : array (N, k_id); alpha_exp : array (N, k_exp)
            Fitted training coefficients (the Phase I targets).
        margin : float
            > 1; every training target then lies within ``[-1/margin, 1/margin]``.
        """
        if margin <= 1:
            raise ValueError(f"margin must be > 1, got {margin}")
        a_id = np.abs(np.asarray(alpha_id, np.float64))
        a_exp = np.abs(np.asarray(alpha_exp, np.float64))
        if a_id.ndim != 2 or a_exp.ndim != 2 or len(a_id) != len(a_exp) or len(a_id) == 0:
            raise ValueError(f"alpha_id and alpha_exp must be (N, k) with the same N >= 1, got {a_id.shape}, {a_exp.shape}")
        return cls(np.maximum(margin * a_id.max(0), floor), np.maximum(margin * a_exp.max(0), floor))

    @property
    def n_id(self) -> int:
        return int(self.scale_id.shape[0])

    @property
    def n_exp(self) -> int:
        return int(self.scale_exp.shape[0])

    def to_code(self, alpha_id: torch.Tensor, alpha_exp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha_id (B, k_id), alpha_exp (B, k_exp)) -> (c_id, c_res), same shapes."""
        return alpha_id / self.scale_id.to(alpha_id), alpha_exp / self.scale_exp.to(alpha_exp)

    def from_code(self, c_id: torch.Tensor, c_res: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(c_id (B, k_id), c_res (B, k_exp)) -> (alpha_id, alpha_exp), same shapes."""
        return c_id * self.scale_id.to(c_id), c_res * self.scale_exp.to(c_res)
