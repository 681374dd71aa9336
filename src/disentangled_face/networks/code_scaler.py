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
    model_n_id : int, optional
        Identity coefficients of the morphable model, ``>= k_id`` (default ``k_id``). With more
        (``network.id_codes`` below the model's modes) ``c_id`` codes the first ``k_id`` of
        them: :meth:`to_code` drops the rest, :meth:`from_code` returns them as zeros.

    Raises
    ------
    ValueError
        When a factor is not positive and finite, or ``model_n_id < k_id``.

    Examples
    --------
    >>> s = CodeScaler(np.full(2, 4.0), np.ones(1), model_n_id=3)
    >>> s.from_code(torch.ones(1, 2), torch.ones(1, 1))[0]
    tensor([[4., 4., 0.]])
    """

    def __init__(self, scale_id, scale_exp, model_n_id: int | None = None):
        super().__init__()
        for name, s in (("scale_id", scale_id), ("scale_exp", scale_exp)):
            t = torch.as_tensor(np.asarray(s, np.float32) if not torch.is_tensor(s) else s, dtype=torch.float32)
            if t.ndim != 1 or not torch.isfinite(t).all() or not (t > 0).all():
                raise ValueError(f"{name} must be a 1-D array of positive finite factors, got {t}")
            self.register_buffer(name, t.clone())
        self.model_n_id = self.n_id if model_n_id is None else int(model_n_id)
        if self.model_n_id < self.n_id:
            raise ValueError(f"model_n_id must be >= the {self.n_id} codes, got {self.model_n_id}")

    @classmethod
    def fit(cls, alpha_id, alpha_exp, margin: float, floor: float = 1e-3, n_id: int | None = None) -> "CodeScaler":
        """Factors ``scale_d = margin * max_i |alpha_{i,d}|`` (at least ``floor``) from targets.

        Parameters
        ----------
        alpha_id : array (N, k_id); alpha_exp : array (N, k_exp)
            Fitted training coefficients (the Phase I targets).
        margin : float
            > 1; every training target then lies within ``[-1/margin, 1/margin]``.
        n_id : int, optional
            Code only the first ``n_id`` of the ``k_id`` identity coefficients (``model_n_id = k_id``).
        """
        if margin <= 1:
            raise ValueError(f"margin must be > 1, got {margin}")
        a_id = np.abs(np.asarray(alpha_id, np.float64))
        a_exp = np.abs(np.asarray(alpha_exp, np.float64))
        if a_id.ndim != 2 or a_exp.ndim != 2 or len(a_id) != len(a_exp) or len(a_id) == 0:
            raise ValueError(f"alpha_id and alpha_exp must be (N, k) with the same N >= 1, got {a_id.shape}, {a_exp.shape}")
        k = a_id.shape[1] if n_id is None else int(n_id)
        if not 1 <= k <= a_id.shape[1]:
            raise ValueError(f"n_id must lie in [1, {a_id.shape[1]}], got {n_id}")
        return cls(np.maximum(margin * a_id[:, :k].max(0), floor), np.maximum(margin * a_exp.max(0), floor),
                   model_n_id=a_id.shape[1])

    @property
    def n_id(self) -> int:
        return int(self.scale_id.shape[0])

    @property
    def n_exp(self) -> int:
        return int(self.scale_exp.shape[0])

    def to_code(self, alpha_id: torch.Tensor, alpha_exp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(alpha_id (B, model_n_id), alpha_exp (B, k_exp)) -> (c_id (B, k_id), c_res (B, k_exp)).

        Raises
        ------
        ValueError
            When ``alpha_id`` does not have ``model_n_id`` entries.
        """
        if alpha_id.shape[-1] != self.model_n_id:
            raise ValueError(f"alpha_id must have {self.model_n_id} entries (the model's identity modes), "
                             f"got {alpha_id.shape[-1]}")
        return alpha_id[..., :self.n_id] / self.scale_id.to(alpha_id), alpha_exp / self.scale_exp.to(alpha_exp)

    def from_code(self, c_id: torch.Tensor, c_res: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(c_id (B, k_id), c_res (B, k_exp)) -> (alpha_id (B, model_n_id), alpha_exp (B, k_exp))."""
        a_id = c_id * self.scale_id.to(c_id)
        if self.model_n_id > self.n_id:
            a_id = torch.nn.functional.pad(a_id, (0, self.model_n_id - self.n_id))
        return a_id, c_res * self.scale_exp.to(c_res)
