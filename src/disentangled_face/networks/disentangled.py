"""The encoder-decoder of the paper (Sec. 3.2-3.3.1, Fig. 3).

::

    image (3, 112, 96) --SphereFace-20--> feature (512) --FC+tanh--> c_id  (k_id)  --FC--> Delta s_Id (3n)
                                                       \\--FC+tanh--> c_res (k_exp) --FC--> Delta s_Res (3n)
    s = s_mean + Delta s_Id + Delta s_Res                                            (Eq. 2)

* **Encoder**: SphereFace-20 (:class:`~disentangled_face.networks.SphereFace20`).
* **Heads**: two parallel FC layers from the feature to ``c_id`` and ``c_res``, each normalised
  to ``[-1, 1]`` by a ``tanh``.
* **Decoders**: one FC layer each (no bias by default), ``c_id -> Delta s_Id`` and
  ``c_res -> Delta s_Res``; a decoder's weight columns are its bases (Fig. 9).
* **Identification**: a linear softmax classifier on ``c_id`` over the training subjects (L_C of
  Eq. 5).

The codes are the scaled 3DMM coefficients (:class:`~disentangled_face.networks.CodeScaler`).
The ``paper`` profile is the published network (width 1, 112 x 96).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ..config import NetworkConfig
from .code_scaler import CodeScaler
from .sphereface import STAGE_CHANNELS, SphereFace20

__all__ = ["DisentangledFaceNet"]


class DisentangledFaceNet(nn.Module):
    """Encoder, c_id / c_res heads, identity classifier and the two decoders (Fig. 3, Eq. 2).

    Parameters
    ----------
    n_vertices : int
        n; decoders output 3n (Eq. 1 layout, mm).
    n_id, n_exp : int
        Dimensions of c_id (identity modes: 199 BFM, 100 ICT) and c_res (29 FaceWarehouse, 53 ICT).
    n_subjects : int
        Classes of the softmax classifier on c_id (the training subjects).
    s_mean : array (n, 3) or (3n,), optional
        Mean shape in mm (zeros when omitted).
    scaler : CodeScaler, optional
        Code scaling (unit factors when omitted).
    width, input_size, feature_dim, decoder_bias, norm
        See :class:`SphereFace20` and :class:`~disentangled_face.config.NetworkConfig`.
    model_n_id : int, optional
        The morphable model's identity modes (default ``n_id``); more than ``n_id`` when
        ``c_id`` codes only its first ``n_id`` modes (``network.id_codes``, see :class:`CodeScaler`).

    Raises
    ------
    ValueError
        On inconsistent sizes.
    """

    def __init__(self, n_vertices: int, n_id: int, n_exp: int, n_subjects: int, s_mean=None,
                 scaler: CodeScaler | None = None, width: float = 1.0,
                 input_size: Sequence[int] = (112, 96), feature_dim: int = 512,
                 decoder_bias: bool = False, norm: str = "none", model_n_id: int | None = None):
        super().__init__()
        if min(n_vertices, n_id, n_exp, n_subjects) < 1:
            raise ValueError(f"sizes must be >= 1, got n={n_vertices}, k_id={n_id}, k_exp={n_exp}, subjects={n_subjects}")
        self.n_vertices, self.n_id, self.n_exp, self.n_subjects = n_vertices, n_id, n_exp, n_subjects
        self.encoder = SphereFace20(width, input_size, feature_dim, norm=norm)
        self.head_id = nn.Linear(feature_dim, n_id)
        self.head_res = nn.Linear(feature_dim, n_exp)
        self.classifier = nn.Linear(n_id, n_subjects)
        self.dec_id = nn.Linear(n_id, 3 * n_vertices, bias=decoder_bias)
        self.dec_res = nn.Linear(n_exp, 3 * n_vertices, bias=decoder_bias)
        for lin in (self.head_id, self.head_res, self.classifier):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)
        if norm == "batch":  # normalised features: small heads keep the tanh codes off saturation at the start
            with torch.no_grad():
                for lin in (self.head_id, self.head_res):
                    lin.weight.mul_(0.1)
        for lin in (self.dec_id, self.dec_res):
            nn.init.normal_(lin.weight, std=1.0 / math.sqrt(lin.in_features))
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)
        mean = torch.zeros(3 * n_vertices) if s_mean is None else torch.as_tensor(np.asarray(s_mean, np.float32)).reshape(-1)
        if mean.numel() != 3 * n_vertices:
            raise ValueError(f"s_mean must have 3n = {3 * n_vertices} entries, got {mean.numel()}")
        self.register_buffer("s_mean", mean.clone())
        if scaler is None:
            scaler = CodeScaler(np.ones(n_id), np.ones(n_exp), model_n_id=model_n_id)
        self.scaler = scaler
        if (scaler.n_id, scaler.n_exp) != (n_id, n_exp) or (model_n_id is not None and scaler.model_n_id != model_n_id):
            raise ValueError(f"scaler is for ({scaler.n_id}, {scaler.n_exp}) codes of {scaler.model_n_id} identity "
                             f"modes, the network for ({n_id}, {n_exp}) of {model_n_id or n_id}")
        #: The morphable model's identity modes (``c_id`` codes the first :attr:`n_id` of them).
        self.model_n_id = scaler.model_n_id
        #: The training phase these weights come from (set by the trainer and by ``load_model``;
        #: ``None`` for a network built here). A ``phase1`` network's decoders are untrained:
        #: :mod:`disentangled_face.networks.inference` then decodes through the 3DMM.
        self.trained_phase: str | None = None
        #: True once :meth:`init_decoders_from_model` has set the decoders to the 3DMM bases.
        self.decoders_from_3dmm = False

    # ---------------------------------------------------------------- construction helpers
    @classmethod
    def from_config(cls, network: NetworkConfig, model, n_subjects: int,
                    scaler: CodeScaler | None = None) -> "DisentangledFaceNet":
        """Build from ``cfg.network`` and a :class:`~disentangled_face.shape.MorphableModel`
        (its sizes and mean shape); ``c_id`` has ``network.id_codes`` entries (default the
        model's identity modes).

        Raises
        ------
        ValueError
            When ``network.id_codes`` exceeds the model's identity modes.
        """
        k = network.id_codes or model.n_id
        if k > model.n_id:
            raise ValueError(f"network.id_codes = {k} but the model has {model.n_id} identity modes")
        return cls(model.n_vertices, k, model.n_exp, n_subjects, s_mean=model.s_mean,
                   scaler=scaler, width=network.width, input_size=network.input_size,
                   feature_dim=network.feature_dim, decoder_bias=network.decoder_bias, norm=network.norm,
                   model_n_id=model.n_id)

    def arch(self) -> dict:
        """Constructor arguments (primitives only) so a checkpoint can rebuild the network."""
        return {"kind": "disentangled", "n_vertices": self.n_vertices, "n_id": self.n_id,
                "n_exp": self.n_exp, "n_subjects": self.n_subjects,
                "width": self.encoder.channels[0] / STAGE_CHANNELS[0],
                "input_size": list(self.encoder.input_size), "feature_dim": self.encoder.feature_dim,
                "decoder_bias": self.dec_id.bias is not None,
                **({"norm": self.encoder.norm} if self.encoder.norm != "none" else {}),
                **({"model_n_id": self.model_n_id} if self.model_n_id != self.n_id else {})}

    @torch.no_grad()
    def init_decoders_from_model(self, model) -> None:
        """Set the decoders to the 3DMM bases: ``W_id = A_id diag(scale_id)``, ``W_res = A_exp diag(scale_exp)``.

        With ``c = alpha / scale`` (:class:`CodeScaler`) the decoded shape then equals
        ``model.shape(alpha_id, alpha_exp)`` (Eq. 6) up to float rounding. A network whose
        ``c_id`` codes the model's first :attr:`n_id` modes gets those modes' columns.

        Raises
        ------
        ValueError
            When the model's sizes differ from the network's.
        """
        if (model.n_vertices, model.n_id, model.n_exp) != (self.n_vertices, self.model_n_id, self.n_exp):
            raise ValueError(f"model sizes (n={model.n_vertices}, k_id={model.n_id}, k_exp={model.n_exp}) differ "
                             f"from the network's ({self.n_vertices}, {self.model_n_id}, {self.n_exp})")
        dev = self.dec_id.weight.device
        self.dec_id.weight.copy_(torch.as_tensor(model.A_id[:, :self.n_id], device=dev) * self.scaler.scale_id)
        self.dec_res.weight.copy_(torch.as_tensor(model.A_exp, device=dev) * self.scaler.scale_exp)
        for lin in (self.dec_id, self.dec_res):
            if lin.bias is not None:
                lin.bias.zero_()
        self.s_mean.copy_(torch.as_tensor(model.s_mean, device=dev))
        self.decoders_from_3dmm = True

    @torch.no_grad()
    def init_classifier_from_codes(self, c_id: torch.Tensor, labels: torch.Tensor) -> float:
        """Set the softmax classifier on ``c_id`` to the nearest-class-mean rule of the given codes.

        With class means ``mu_k`` and the pooled within-class variance ``v`` (per dimension),
        ``W_k = mu_k / v`` and ``b_k = -||mu_k||² / (2 v)``: the softmax of a Gaussian model with
        shared isotropic covariance, whose arg-max is the nearest class mean. A classifier that
        starts here already identifies the training subjects as well as the codes allow, so
        Phase III's L_C starts from a meaningful gradient instead of log(n_subjects).

        Parameters
        ----------
        c_id : tensor (N, k_id)
            Codes of training images (e.g. the Phase I encoder's), in [-1, 1].
        labels : tensor (N,) int64
            Their subjects, in ``[0, n_subjects)``.

        Returns
        -------
        float
            Top-1 accuracy of the initialised classifier on the given codes.

        Raises
        ------
        ValueError
            On mismatched shapes, labels out of range, or identical codes (zero variance).
        """
        c_id, labels = torch.as_tensor(c_id, dtype=torch.float32), torch.as_tensor(labels, dtype=torch.int64)
        if c_id.ndim != 2 or c_id.shape[1] != self.n_id or labels.shape != (len(c_id),):
            raise ValueError(f"expected c_id (N, {self.n_id}) and labels (N,), got {tuple(c_id.shape)} and "
                             f"{tuple(labels.shape)}")
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= self.n_subjects):
            raise ValueError(f"labels must lie in [0, {self.n_subjects}), got [{int(labels.min())}, {int(labels.max())}]")
        k = self.n_subjects
        counts = torch.bincount(labels, minlength=k).clamp(min=1)[:, None].float()
        mu = torch.zeros(k, self.n_id).index_add_(0, labels, c_id) / counts
        var = float((c_id - mu[labels]).pow(2).mean())
        if not var > 0:
            raise ValueError("the codes do not vary within subjects: cannot scale a class-mean classifier")
        dev = self.classifier.weight.device
        self.classifier.weight.copy_((mu / var).to(dev))
        self.classifier.bias.copy_((-0.5 * mu.pow(2).sum(1) / var).to(dev))
        return float(((c_id @ (mu / var).T - 0.5 * mu.pow(2).sum(1) / var).argmax(1) == labels).float().mean())

    # ---------------------------------------------------------------- forward parts
    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """images (B, 3, H, W) in [-1, 1] -> (feature (B, F), c_id (B, k_id), c_res (B, k_exp)) in [-1, 1]."""
        f = self.encoder(images)
        return f, torch.tanh(self.head_id(f)), torch.tanh(self.head_res(f))

    def decode(self, c_id: torch.Tensor, c_res: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Codes -> (Delta s_Id, Delta s_Res, s), each (B, 3n) in mm (Eq. 2)."""
        d_id, d_res = self.dec_id(c_id), self.dec_res(c_res)
        return d_id, d_res, self.s_mean + d_id + d_res

    def forward(self, images: torch.Tensor, decode: bool = True) -> dict[str, torch.Tensor]:
        """Full forward pass.

        Returns
        -------
        dict
            ``feature`` (B, F); ``c_id`` (B, k_id); ``c_res`` (B, k_exp); ``logits``
            (B, n_subjects); and with ``decode``: ``delta_id``, ``delta_res``, ``shape``
            (B, 3n) mm.
        """
        f, c_id, c_res = self.encode(images)
        out = {"feature": f, "c_id": c_id, "c_res": c_res, "logits": self.classifier(c_id)}
        if decode:
            out["delta_id"], out["delta_res"], out["shape"] = self.decode(c_id, c_res)
        return out

    def bases(self) -> tuple[np.ndarray, np.ndarray]:
        """The decoders' bases: (identity (k_id, n, 3), residual (k_exp, n, 3)) mm per unit code (Fig. 9)."""
        n = self.n_vertices
        return (self.dec_id.weight.detach().cpu().numpy().T.reshape(self.n_id, n, 3),
                self.dec_res.weight.detach().cpu().numpy().T.reshape(self.n_exp, n, 3))
