"""Running trained networks on images: codes, features, shapes, coefficients, and scores.

How a network's shape is decoded follows the methods table
(:data:`~disentangled_face.methods.METHODS`): a network whose weights come from a
Phase I checkpoint ("3DMM-CNN-like", ``decode == "3dmm"``) has untrained decoders, so its
codes are decoded through the morphable model. :func:`reconstruct` and :func:`evaluate` do so
when given the model and **raise** otherwise; they never return the untrained decoders' shape.
A network's phase is ``net.trained_phase`` (set by
:func:`~disentangled_face.training.load_model` and by the trainer); a network built in memory
(``trained_phase`` None) or whose decoders were set to the 3DMM bases
(:meth:`~disentangled_face.networks.DisentangledFaceNet.init_decoders_from_model`) decodes
with its decoders.
"""

from __future__ import annotations

import copy
import math
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ..config import ExperimentsConfig
from ..methods import method_for_phase
from .disentangled import DisentangledFaceNet

#: Images per forward pass: the typed default of ``experiments.batch_size``.
BATCH_SIZE = ExperimentsConfig.model_fields["batch_size"].default

__all__ = ["BATCH_SIZE", "decodes_through_3dmm", "encode", "features", "reconstruct", "alpha_from_images", "evaluate"]


def decodes_through_3dmm(model: nn.Module) -> bool:
    """Whether ``model``'s shape must come from the morphable model (a Phase I network).

    True when its ``trained_phase`` is a method's phase whose ``decode`` is ``"3dmm"`` and its
    decoders have not been set to the 3DMM bases.
    """
    phase = getattr(model, "trained_phase", None)
    if phase is None or getattr(model, "decoders_from_3dmm", False):
        return False
    try:
        return method_for_phase(phase).decode == "3dmm"
    except KeyError:  # phase2: decoders trained, no compared method of its own
        return False


def _phase1_error(fn: str) -> ValueError:
    return ValueError(f"{fn}: this network comes from a Phase I checkpoint (3DMM-CNN-like), whose decoders are "
                      "untrained; pass morphable=<the MorphableModel> to decode its codes through the 3DMM")


def _as_images(images) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(images, np.float32) if not torch.is_tensor(images) else images, dtype=torch.float32)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W) or (3, H, W) in [-1, 1], got {tuple(x.shape)}")
    return x


def _batched(model: nn.Module, images, fn: Callable, batch_size: int):
    x = _as_images(images)
    dev = next(model.parameters()).device
    outs = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            outs.append(fn(x[i:i + batch_size].to(dev)))
    return [torch.cat([o[j] for o in outs]).cpu().numpy() for j in range(len(outs[0]))]


def encode(model: DisentangledFaceNet, images, batch_size: int = BATCH_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Codes of images: ``(c_id (B, k_id), c_res (B, k_exp))`` in [-1, 1].

    Parameters
    ----------
    images : array or tensor (B, 3, H, W) or (3, H, W), float in [-1, 1]

    Raises
    ------
    ValueError
        On a wrong image shape or a network without codes (:class:`TextureNet`).
    """
    if not isinstance(model, DisentangledFaceNet):
        raise ValueError(f"encode needs a DisentangledFaceNet, got {type(model).__name__}; use features()")
    model.eval()
    c_id, c_res = _batched(model, images, lambda x: model.encode(x)[1:], batch_size)
    return c_id, c_res


def features(model: nn.Module, images, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """The encoder's feature (B, feature_dim) of either network (the texture network's descriptor)."""
    model.eval()
    return _batched(model, images, lambda x: (model.encoder(x),), batch_size)[0]


def reconstruct(model: DisentangledFaceNet, images, batch_size: int = BATCH_SIZE, morphable=None,
                components: bool = False):
    """Reconstruct 3D shapes from images (Eq. 2).

    Parameters
    ----------
    model : DisentangledFaceNet
    images : array or tensor (B, 3, H, W) or (3, H, W) in [-1, 1]
    morphable : MorphableModel, optional
        When given, decode with the 3DMM instead of the network's decoders:
        ``morphable.shape(*scaler.from_code(c_id, c_res))`` (the "3DMM-CNN-like" baseline, whose
        Phase I network has no trained decoders). Required for a Phase I network.
    components : bool
        Also return the identity part.

    Returns
    -------
    ndarray (B, n, 3) mm, or with ``components`` a dict with ``shape``, ``identity_shape``
    (``s_mean + Delta s_Id``, the expression-free shape) and ``delta_res``, each (B, n, 3) mm.

    Raises
    ------
    ValueError
        For a network without decoders, or a Phase I network without ``morphable``.
    """
    if not isinstance(model, DisentangledFaceNet):
        raise ValueError(f"reconstruct needs a DisentangledFaceNet, got {type(model).__name__}")
    if morphable is None and decodes_through_3dmm(model):
        raise _phase1_error("reconstruct")
    model.eval()
    n = model.n_vertices

    def fn(x):
        _, c_id, c_res = model.encode(x)
        if morphable is not None:
            a_id, a_exp = model.scaler.from_code(c_id, c_res)
            d_id = morphable.delta_id(a_id, flat=True)
            d_res = morphable.delta_res(a_exp, flat=True)
            mean = torch.as_tensor(morphable.s_mean, device=x.device)
        else:
            d_id, d_res, _ = model.decode(c_id, c_res)
            mean = model.s_mean
        return mean + d_id + d_res, mean + d_id, d_res

    s, s_id, d_res = (a.reshape(len(a), n, 3) for a in _batched(model, images, fn, batch_size))
    return {"shape": s, "identity_shape": s_id, "delta_res": d_res} if components else s


def alpha_from_images(model: DisentangledFaceNet, images, batch_size: int = BATCH_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Regressed 3DMM coefficients ``(alpha_id, alpha_exp)`` = the codes unscaled (:class:`CodeScaler`)."""
    c_id, c_res = encode(model, images, batch_size)
    a_id, a_exp = model.scaler.from_code(torch.as_tensor(c_id), torch.as_tensor(c_res))
    return a_id.numpy(), a_exp.numpy()


def evaluate(model: nn.Module, dataset: Dataset, morphable=None, batch_size: int = BATCH_SIZE,
             gt_keys: tuple[str, str] = ("alpha_id", "alpha_exp")) -> dict[str, float]:
    """Reconstruction error and identification accuracy of a network on a dataset.

    A Phase I network is decoded through the 3DMM (its decoders set to the scaled 3DMM bases on
    a copy, :meth:`~disentangled_face.networks.DisentangledFaceNet.init_decoders_from_model`).

    Parameters
    ----------
    model : DisentangledFaceNet or TextureNet
    dataset : Dataset
        Items with ``image``, ``label`` and the reference coefficients under ``gt_keys``.
    morphable : MorphableModel
        For the reference shapes ``morphable.shape(alpha_id, alpha_exp)``; without it only
        ``acc`` is computed.

    Returns
    -------
    dict
        ``rmse_mm``: root of the mean over images of the mean squared per-vertex distance to
        the reference shape, in the model frame, no alignment (mm; DisentangledFaceNet only);
        ``rmse_id_mm``: the same for the identity (neutral) part; ``acc``: top-1 accuracy of
        the softmax classifier over the training subjects (labels must be training subjects);
        ``n_images``.
    """
    shapes = isinstance(model, DisentangledFaceNet) and morphable is not None
    if shapes and decodes_through_3dmm(model):
        model = copy.deepcopy(model)
        model.init_decoders_from_model(morphable)
    model.eval()
    dev = next(model.parameters()).device
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    se = se_id = correct = count = 0.0
    with torch.no_grad():
        for b in loader:
            x = b["image"].to(dev)
            out = model(x)
            correct += float((out["logits"].argmax(1).cpu() == b["label"]).sum())
            count += len(x)
            if shapes:
                a_id, a_exp = b[gt_keys[0]], b[gt_keys[1]]
                ref = morphable.shape(a_id.float(), a_exp.float(), flat=True)
                ref_id = morphable.identity_shape(a_id.float(), flat=True)
                n = model.n_vertices
                se += float((out["shape"].cpu() - ref).pow(2).sum() / n)
                se_id += float((model.s_mean.cpu() + out["delta_id"].cpu() - ref_id).pow(2).sum() / n)
    res = {"acc": correct / max(count, 1), "n_images": int(count)}
    if shapes:
        res["rmse_mm"] = math.sqrt(se / max(count, 1))
        res["rmse_id_mm"] = math.sqrt(se_id / max(count, 1))
    return res
