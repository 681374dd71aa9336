"""Losses of the three training phases (paper Eq. 5, Sec. 3.3.2-3.3.3).

Normalisation and units, used consistently by every phase:

* **Reconstruction** ``L_R`` (Euclidean): for shapes ``s_pred``, ``s_fit`` of n vertices in mm,

  .. math:: L_R = \\frac{1}{B} \\sum_b \\frac{1}{n} \\lVert s^{(b)}_{pred} - s^{(b)}_{fit} \\rVert_2^2

  in **mm²**: the mean over the batch of the mean squared per-vertex distance, so
  ``sqrt(L_R)`` is the root-mean-square vertex error in mm. ``s_fit`` is the fitted shape
  ``model.shape(alpha_id, alpha_exp)`` (Eq. 6) of the image's multi-image 3DMM fit (Sec. 3.3.2).
  This is the ``per_vertex`` convention (``train.phase3.l_r``). The paper trains in Caffe,
  whose Euclidean loss sums over all 3n coordinates and divides by 2B: the ``caffe``
  convention, ``(1/B) sum_b ||s_pred - s_fit||² / 2 = (n / 2) L_R`` per vertex, which weighs
  the same per-vertex error n/2 times more against ``L_C`` (the paper's mesh has 29,495
  vertices, ours 9,409; the paper does not state its units, so ``caffe`` here is in mm²).
* **Identification** ``L_C``: softmax cross-entropy (natural log, mean over the batch) of a
  linear classifier on ``c_id`` over the training subjects.
* **Joint** (Eq. 5): ``L = lambda_r * L_R + L_C``.
* **Code regression** (Phase I): ``mean_b (||c_id - c_id*||² + ||c_res - c_res*||²)``, codes
  dimensionless in [-1, 1] (the scaled fitted coefficients, see :class:`~disentangled_face.networks.CodeScaler`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _check_pair(a: torch.Tensor, b: torch.Tensor, name: str) -> None:
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"{name}: prediction and target must both be (B, d), got {tuple(a.shape)} and {tuple(b.shape)}")


L_R_CONVENTIONS = ("per_vertex", "caffe")


def reconstruction_loss(s_pred: torch.Tensor, s_fit: torch.Tensor, convention: str = "per_vertex") -> torch.Tensor:
    """Euclidean reconstruction loss ``L_R`` in mm² (Eq. 5; normalisation in the module doc).

    Parameters
    ----------
    s_pred, s_fit : tensor, shape (B, 3n)
        Predicted and fitted shapes (or shape deltas) in mm, Eq. 1 layout.
    convention : {"per_vertex", "caffe"}
        ``per_vertex``: ``mean_b ||s_pred - s_fit||² / n``; ``caffe``: ``mean_b ||.||² / 2``
        (Caffe's EuclideanLoss, the paper's framework).

    Returns
    -------
    tensor, scalar
        mm².

    Raises
    ------
    ValueError
        When the shapes differ, the last axis is not a multiple of 3, or the convention is unknown.

    >>> d = torch.ones(2, 6)            # two shapes of 2 vertices, every coordinate 1 mm off
    >>> float(reconstruction_loss(d, torch.zeros(2, 6))), float(reconstruction_loss(d, torch.zeros(2, 6), "caffe"))
    (3.0, 3.0)
    """
    _check_pair(s_pred, s_fit, "reconstruction_loss")
    if s_pred.shape[1] % 3:
        raise ValueError(f"reconstruction_loss: last axis must be 3n, got {s_pred.shape[1]}")
    if convention not in L_R_CONVENTIONS:
        raise ValueError(f"reconstruction_loss: convention must be one of {L_R_CONVENTIONS}, got {convention!r}")
    n = s_pred.shape[1] // 3
    return (s_pred.float() - s_fit.float()).pow(2).sum(1).mean() / (n if convention == "per_vertex" else 2)


def identification_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy ``L_C`` (Eq. 5), mean over the batch, nats.

    Parameters
    ----------
    logits : tensor (B, n_subjects); labels : int64 tensor (B,) in [0, n_subjects)

    Raises
    ------
    ValueError
        On mismatched batch sizes or a label outside ``[0, n_subjects)``.
    """
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(f"identification_loss: logits (B, C) and labels (B,), got {tuple(logits.shape)} and {tuple(labels.shape)}")
    if labels.numel() and (labels.min() < 0 or labels.max() >= logits.shape[1]):
        raise ValueError(f"identification_loss: labels must lie in [0, {logits.shape[1]}), "
                         f"got [{int(labels.min())}, {int(labels.max())}]")
    return F.cross_entropy(logits.float(), labels)


def joint_loss(s_pred: torch.Tensor, s_fit: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor,
               lambda_r: float, convention: str = "per_vertex") -> tuple[torch.Tensor, dict[str, float]]:
    """``L = lambda_r * L_R + L_C`` (Eq. 5), ``L_R`` in the given ``convention``
    (:func:`reconstruction_loss`).

    Returns
    -------
    loss : tensor, scalar
    parts : dict
        ``loss``, ``L_R`` (mm²), ``L_C`` (nats), ``lambda_r``, ``acc`` (top-1 batch accuracy) as
        detached scalar tensors (no device sync).
    """
    if lambda_r < 0:
        raise ValueError(f"lambda_r must be >= 0, got {lambda_r}")
    l_r = reconstruction_loss(s_pred, s_fit, convention)
    l_c = identification_loss(logits, labels)
    loss = lambda_r * l_r + l_c
    acc = (logits.argmax(1) == labels).float().mean()
    return loss, {"loss": loss.detach(), "L_R": l_r.detach(), "L_C": l_c.detach(),
                  "lambda_r": torch.tensor(float(lambda_r)), "acc": acc.detach()}


def shape_energy_weights(model, scaler) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-code weights that make the Phase I code loss a shape error (the ``shape_energy`` loss).

    A code error ``dc_k`` moves the decoded shape by ``A_k scale_k dc_k`` (Eq. 6 with
    ``alpha = scale * c``), whose mean squared per-vertex length is ``w_k dc_k²`` with
    ``w_k = ||A_k||² scale_k² / n`` (mm² per vertex). Weighting the code loss by ``w_k`` makes
    it the 3DMM-decoded shape error (exactly when the basis columns are orthogonal, as PCA
    identity modes are), so the encoder does not spend itself on modes that move the face by
    a tenth of a millimetre, whose fitted codes the scaler blows up. The weights are divided by
    their mean, so the loss keeps the plain code loss's magnitude (and learning rates).

    Parameters
    ----------
    model : MorphableModel
        ``A_id`` (3n, k_id), ``A_exp`` (3n, k_exp), mm.
    scaler : CodeScaler
        ``scale_id`` (k_id,), ``scale_exp`` (k_exp,).

    Returns
    -------
    w_id : tensor (k_id,), w_res : tensor (k_exp,)
        Dimensionless, mean 1 over all k_id + k_exp codes.
    """
    n = model.n_vertices
    e_id = torch.as_tensor(model.A_id[:, :scaler.n_id], dtype=torch.float32).pow(2).sum(0) / n
    e_exp = torch.as_tensor(model.A_exp, dtype=torch.float32).pow(2).sum(0) / n
    w_id = e_id * torch.as_tensor(scaler.scale_id, dtype=torch.float32).pow(2)
    w_res = e_exp * torch.as_tensor(scaler.scale_exp, dtype=torch.float32).pow(2)
    mean = torch.cat([w_id, w_res]).mean()
    return w_id / mean, w_res / mean


def code_regression_loss(c_id: torch.Tensor, c_res: torch.Tensor, t_id: torch.Tensor,
                         t_res: torch.Tensor, w_id: torch.Tensor | None = None,
                         w_res: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, float]]:
    """Phase I Euclidean loss on the codes: ``mean_b (||c_id - t_id||² + ||c_res - t_res||²)``.

    With weights (:func:`shape_energy_weights`) each squared code error is multiplied by its
    code's weight: ``mean_b (sum_k w_id,k (c_id,k - t_id,k)² + sum_k w_res,k (...)²)``.

    Parameters
    ----------
    c_id, t_id : tensor (B, k_id); c_res, t_res : tensor (B, k_exp)
        Predicted and target (scaled fitted) codes.
    w_id : tensor (k_id,), optional; w_res : tensor (k_exp,), optional
        Per-code weights (None: 1, the paper's plain Euclidean loss).

    Returns
    -------
    loss : tensor, scalar
    parts : dict
        ``loss``, ``L_id``, ``L_res`` as detached scalar tensors.
    """
    _check_pair(c_id, t_id, "code_regression_loss (c_id)")
    _check_pair(c_res, t_res, "code_regression_loss (c_res)")
    d_id = (c_id.float() - t_id.float()).pow(2)
    d_res = (c_res.float() - t_res.float()).pow(2)
    if w_id is not None:
        d_id = d_id * w_id.to(d_id.device)
    if w_res is not None:
        d_res = d_res * w_res.to(d_res.device)
    l_id = d_id.sum(1).mean()
    l_res = d_res.sum(1).mean()
    loss = l_id + l_res
    return loss, {"loss": loss.detach(), "L_id": l_id.detach(), "L_res": l_res.detach()}
