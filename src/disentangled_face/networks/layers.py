"""Rebuilding a network from a checkpoint's architecture, and per-layer tables (chapter 5)."""

from __future__ import annotations

import torch
from torch import nn

from .disentangled import DisentangledFaceNet
from .texture import TextureNet

__all__ = ["build_from_arch", "layer_table", "count_parameters"]


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
                                   feature_dim=a["feature_dim"], decoder_bias=a["decoder_bias"],
                                   norm=a.get("norm", "none"), model_n_id=a.get("model_n_id"))
    if kind == "texture":
        return TextureNet(a["n_subjects"], a["width"], a["input_size"], a["feature_dim"], norm=a.get("norm", "none"))
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
