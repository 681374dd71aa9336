"""The encoder-decoder of the paper (Sec. 3.2-3.3.1, Fig. 3).

::

    image (3, 112, 96) --SphereFace-20--> feature (512) --FC+tanh--> c_id  (k_id)  --FC--> Delta s_Id (3n)
                                                       \\--FC+tanh--> c_res (k_exp) --FC--> Delta s_Res (3n)
    s = s_mean + Delta s_Id + Delta s_Res                                            (Eq. 2)

* **Encoder**: SphereFace-20 as published (``sphere20a`` of Liu et al., CVPR 2017): every
  convolution 3x3 with padding 1 and a per-channel PReLU, no batch norm; four stages, each a
  stride-2 convolution (64, 128, 256, 512 channels) followed by 1, 2, 4 and 1 residual units of
  two convolutions; flatten (512 x 7 x 6) and a fully connected layer to a 512-d feature. The
  initialisation follows the Caffe model: Xavier for the stride-2 convolutions and the FC layer,
  Gaussian (std 0.01, no bias) for the convolutions inside residual units.
* **Heads**: two parallel FC layers from the feature to ``c_id`` and ``c_res``, each normalised
  to ``[-1, 1]`` by a ``tanh``.
* **Decoders**: one FC layer each (no bias by default), ``c_id -> Delta s_Id`` and
  ``c_res -> Delta s_Res``; a decoder's weight columns are its bases (Fig. 9).
* **Identification**: a linear softmax classifier on ``c_id`` over the training subjects (L_C of
  Eq. 5).

Code scaling. The Phase I targets are the fitted 3DMM coefficients, which are not in
``[-1, 1]``. :class:`CodeScaler` maps them with one fixed positive factor per dimension,
``c = alpha / scale`` and ``alpha = c * scale``, where
``scale_d = margin * max_i |alpha_{i,d}|`` over the training targets (``margin`` > 1 keeps the
targets off the tanh asymptotes, e.g. ``margin = 1.25`` puts them in ``[-0.8, 0.8]``). The map is
linear, so the decoder that reproduces the 3DMM exactly is ``A_id diag(scale_id)`` (and the same
for expressions): see :meth:`DisentangledFaceNet.init_decoders_from_model`.

Profiles. ``network.width`` multiplies every channel count (1.0 is the published network) and
``network.input_size`` is the (height, width) the encoder sees; images of another size are
resized (bilinear, antialiased) inside :meth:`SphereFace20.forward`, so every dataset keeps
the paper's 112 x 96 crops. The ``paper`` profile is the published network (width 1, 112 x 96).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .config import ConfigError

#: Channels of the four stages of SphereFace-20 at width 1.
STAGE_CHANNELS = (64, 128, 256, 512)
#: Residual units (of two convolutions) after each stride-2 convolution.
STAGE_UNITS = (1, 2, 4, 1)

NETWORK_DEFAULTS: dict[str, Any] = {
    "arch": "sphere20a",
    "width": 1.0,
    "input_size": [112, 96],
    "feature_dim": 512,
    "code_margin": 1.25,
    "decoder_bias": False,
}


def validate_network_config(cfg: dict | None) -> dict:
    """Fill defaults into a ``network:`` section and check every key.

    Keys: ``arch`` ("sphere20a"), ``width`` (> 0, channel multiplier), ``input_size``
    ([height, width] in pixels, each >= 16), ``feature_dim`` (int >= 1), ``code_margin``
    (> 1, see :class:`CodeScaler`), ``decoder_bias`` (bool).

    Raises
    ------
    ConfigError
        On an unknown key or a value of the wrong type or range; the message names the key.
    """
    cfg = dict(cfg or {})
    unknown = set(cfg) - set(NETWORK_DEFAULTS)
    if unknown:
        raise ConfigError(f"network: unknown key(s) {sorted(unknown)}; expected some of {sorted(NETWORK_DEFAULTS)}")
    out = {**NETWORK_DEFAULTS, **cfg}
    if out["arch"] != "sphere20a":
        raise ConfigError(f"network.arch: expected 'sphere20a', got {out['arch']!r}")
    w = out["width"]
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not w > 0:
        raise ConfigError(f"network.width: expected a number > 0, got {w!r}")
    size = out["input_size"]
    if (not isinstance(size, (list, tuple)) or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 16 for v in size)):
        raise ConfigError(f"network.input_size: expected [height, width], integers >= 16, got {size!r}")
    out["input_size"] = [int(size[0]), int(size[1])]
    fd = out["feature_dim"]
    if isinstance(fd, bool) or not isinstance(fd, int) or fd < 1:
        raise ConfigError(f"network.feature_dim: expected an integer >= 1, got {fd!r}")
    m = out["code_margin"]
    if isinstance(m, bool) or not isinstance(m, (int, float)) or not m > 1:
        raise ConfigError(f"network.code_margin: expected a number > 1, got {m!r}")
    if not isinstance(out["decoder_bias"], bool):
        raise ConfigError(f"network.decoder_bias: expected true or false, got {out['decoder_bias']!r}")
    out["width"], out["code_margin"] = float(w), float(m)
    return out


def _conv_out(size: int) -> int:
    """Output size of a 3x3, stride-2, padding-1 convolution."""
    return (size - 1) // 2 + 1


class ResidualUnit(nn.Module):
    """``x + PReLU(conv(PReLU(conv(x))))``, both convolutions 3x3, padding 1 (SphereFace)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.relu1 = nn.PReLU(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.relu2 = nn.PReLU(channels)
        for c in (self.conv1, self.conv2):
            nn.init.normal_(c.weight, std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
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

    Notes
    -----
    Input: images (B, 3, H, W) in [-1, 1]. When (H, W) differs from ``input_size`` the images
    are resized first (``F.interpolate``, bilinear, antialias). Output: (B, feature_dim).
    """

    def __init__(self, width: float = 1.0, input_size: Sequence[int] = (112, 96), feature_dim: int = 512):
        super().__init__()
        self.input_size = (int(input_size[0]), int(input_size[1]))
        chans = [max(1, int(round(c * width))) for c in STAGE_CHANNELS]
        layers: list[nn.Module] = []
        c_in = 3
        h, w = self.input_size
        for i, (c, units) in enumerate(zip(chans, STAGE_UNITS)):
            conv = nn.Conv2d(c_in, c, 3, 2, 1)
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)
            stage = [conv, nn.PReLU(c)] + [ResidualUnit(c) for _ in range(units)]
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
    def fit(cls, alpha_id, alpha_exp, margin: float = 1.25, floor: float = 1e-3) -> "CodeScaler":
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
    width, input_size, feature_dim, decoder_bias
        See :class:`SphereFace20` and :func:`validate_network_config`.

    Raises
    ------
    ValueError
        On inconsistent sizes.
    """

    def __init__(self, n_vertices: int, n_id: int, n_exp: int, n_subjects: int, s_mean=None,
                 scaler: CodeScaler | None = None, width: float = 1.0,
                 input_size: Sequence[int] = (112, 96), feature_dim: int = 512,
                 decoder_bias: bool = False):
        super().__init__()
        if min(n_vertices, n_id, n_exp, n_subjects) < 1:
            raise ValueError(f"sizes must be >= 1, got n={n_vertices}, k_id={n_id}, k_exp={n_exp}, subjects={n_subjects}")
        self.n_vertices, self.n_id, self.n_exp, self.n_subjects = n_vertices, n_id, n_exp, n_subjects
        self.encoder = SphereFace20(width, input_size, feature_dim)
        self.head_id = nn.Linear(feature_dim, n_id)
        self.head_res = nn.Linear(feature_dim, n_exp)
        self.classifier = nn.Linear(n_id, n_subjects)
        self.dec_id = nn.Linear(n_id, 3 * n_vertices, bias=decoder_bias)
        self.dec_res = nn.Linear(n_exp, 3 * n_vertices, bias=decoder_bias)
        for lin in (self.head_id, self.head_res, self.classifier):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)
        for lin in (self.dec_id, self.dec_res):
            nn.init.normal_(lin.weight, std=1.0 / math.sqrt(lin.in_features))
            if lin.bias is not None:
                nn.init.zeros_(lin.bias)
        mean = torch.zeros(3 * n_vertices) if s_mean is None else torch.as_tensor(np.asarray(s_mean, np.float32)).reshape(-1)
        if mean.numel() != 3 * n_vertices:
            raise ValueError(f"s_mean must have 3n = {3 * n_vertices} entries, got {mean.numel()}")
        self.register_buffer("s_mean", mean.clone())
        self.scaler = scaler if scaler is not None else CodeScaler(np.ones(n_id), np.ones(n_exp))
        if (self.scaler.n_id, self.scaler.n_exp) != (n_id, n_exp):
            raise ValueError(f"scaler is for ({self.scaler.n_id}, {self.scaler.n_exp}) codes, the network for ({n_id}, {n_exp})")

    # ---------------------------------------------------------------- construction helpers
    @classmethod
    def from_config(cls, network_cfg: dict, model, n_subjects: int,
                    scaler: CodeScaler | None = None) -> "DisentangledFaceNet":
        """Build from a ``network:`` section and a :class:`~disentangled_face.model.MorphableModel`."""
        cfg = validate_network_config(network_cfg)
        return cls(model.n_vertices, model.n_id, model.n_exp, n_subjects, s_mean=model.s_mean,
                   scaler=scaler, width=cfg["width"], input_size=cfg["input_size"],
                   feature_dim=cfg["feature_dim"], decoder_bias=cfg["decoder_bias"])

    def arch(self) -> dict:
        """Constructor arguments (primitives only) so a checkpoint can rebuild the network."""
        return {"kind": "disentangled", "n_vertices": self.n_vertices, "n_id": self.n_id,
                "n_exp": self.n_exp, "n_subjects": self.n_subjects,
                "width": self.encoder.channels[0] / STAGE_CHANNELS[0],
                "input_size": list(self.encoder.input_size), "feature_dim": self.encoder.feature_dim,
                "decoder_bias": self.dec_id.bias is not None}

    @torch.no_grad()
    def init_decoders_from_model(self, model) -> None:
        """Set the decoders to the 3DMM bases: ``W_id = A_id diag(scale_id)``, ``W_res = A_exp diag(scale_exp)``.

        With ``c = alpha / scale`` (:class:`CodeScaler`) the decoded shape then equals
        ``model.shape(alpha_id, alpha_exp)`` (Eq. 3) up to float rounding.

        Raises
        ------
        ValueError
            When the model's sizes differ from the network's.
        """
        if (model.n_vertices, model.n_id, model.n_exp) != (self.n_vertices, self.n_id, self.n_exp):
            raise ValueError(f"model sizes (n={model.n_vertices}, k_id={model.n_id}, k_exp={model.n_exp}) differ "
                             f"from the network's ({self.n_vertices}, {self.n_id}, {self.n_exp})")
        dev = self.dec_id.weight.device
        self.dec_id.weight.copy_(torch.as_tensor(model.A_id, device=dev) * self.scaler.scale_id)
        self.dec_res.weight.copy_(torch.as_tensor(model.A_exp, device=dev) * self.scaler.scale_exp)
        for lin in (self.dec_id, self.dec_res):
            if lin.bias is not None:
                lin.bias.zero_()
        self.s_mean.copy_(torch.as_tensor(model.s_mean, device=dev))

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


class TextureNet(nn.Module):
    """The "texture network" baseline: SphereFace-20 trained for identification only.

    feature (512) -> linear softmax classifier over the training subjects; no shape. The
    published SphereFace uses the angular A-Softmax loss; this baseline uses the plain softmax
    of L_C so that it differs from the shape network only in what it is trained on.
    """

    def __init__(self, n_subjects: int, width: float = 1.0, input_size: Sequence[int] = (112, 96),
                 feature_dim: int = 512):
        super().__init__()
        if n_subjects < 1:
            raise ValueError(f"n_subjects must be >= 1, got {n_subjects}")
        self.n_subjects = n_subjects
        self.encoder = SphereFace20(width, input_size, feature_dim)
        self.classifier = nn.Linear(feature_dim, n_subjects)
        nn.init.xavier_uniform_(self.classifier.weight)
        nn.init.zeros_(self.classifier.bias)

    @classmethod
    def from_config(cls, network_cfg: dict, n_subjects: int) -> "TextureNet":
        cfg = validate_network_config(network_cfg)
        return cls(n_subjects, cfg["width"], cfg["input_size"], cfg["feature_dim"])

    def arch(self) -> dict:
        return {"kind": "texture", "n_subjects": self.n_subjects,
                "width": self.encoder.channels[0] / STAGE_CHANNELS[0],
                "input_size": list(self.encoder.input_size), "feature_dim": self.encoder.feature_dim}

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """images (B, 3, H, W) -> {"feature": (B, F), "logits": (B, n_subjects)}."""
        f = self.encoder(images)
        return {"feature": f, "logits": self.classifier(f)}


def build_from_arch(arch: dict) -> nn.Module:
    """Rebuild an untrained network from :meth:`DisentangledFaceNet.arch` / :meth:`TextureNet.arch`.

    Raises
    ------
    ValueError
        On an unknown ``kind``.
    """
    a = dict(arch)
    kind = a.pop("kind", None)
    if kind == "disentangled":
        return DisentangledFaceNet(a["n_vertices"], a["n_id"], a["n_exp"], a["n_subjects"],
                                   width=a["width"], input_size=a["input_size"],
                                   feature_dim=a["feature_dim"], decoder_bias=a["decoder_bias"])
    if kind == "texture":
        return TextureNet(a["n_subjects"], a["width"], a["input_size"], a["feature_dim"])
    raise ValueError(f"unknown network kind {kind!r}; expected 'disentangled' or 'texture'")


def layer_table(net: nn.Module, images: torch.Tensor):
    """Per-layer output shapes and parameter counts, from forward hooks on one pass.

    Parameters
    ----------
    net : nn.Module
    images : tensor (B, 3, H, W)

    Returns
    -------
    pandas.DataFrame
        Columns ``layer`` (module path), ``type``, ``output_shape``, ``params`` (own
        parameters of that module, not its children); one row per leaf module in call order.
    """
    import pandas as pd

    rows: list[dict] = []
    hooks = []
    for name, mod in net.named_modules():
        if next(iter(mod.children()), None) is not None:
            continue

        def hook(m, inp, out, name=name):
            shape = tuple(out.shape) if torch.is_tensor(out) else None
            rows.append({"layer": name, "type": type(m).__name__, "output_shape": shape,
                         "params": sum(p.numel() for p in m.parameters(recurse=False))})
        hooks.append(mod.register_forward_hook(hook))
    try:
        with torch.no_grad():
            net.eval()
            net(images)
    finally:
        for h in hooks:
            h.remove()
    return pd.DataFrame(rows)


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
