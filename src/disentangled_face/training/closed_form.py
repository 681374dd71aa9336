"""Phase II by its exact minimiser (``train.phase2.optimizer: lstsq``).

Each decoder is linear and the Phase II loss quadratic, so the decoder that minimises it over
the training set solves the normal equations (ridge 1e-6 relative, for codes that never vary,
e.g. an expression the fitter never activates):
``W = A (alpha^T C) (C^T C + eps I)^{-1}`` with ``C`` the target codes and ``A alpha^T`` the
fitted deltas (``C`` gains a column of ones when the decoder has a bias). Gradient training of
the same loss converges to the same ``W``; this gets there in one step.
"""

from __future__ import annotations

import torch

from ..data.torch_dataset import dataset_codes
from ..networks import losses
from ..paths import atomic_path
from .checkpoints import save_final
from .distributed import barrier
from .logging import RunFiles

__all__ = ["solve_decoders", "train_closed_form"]


@torch.no_grad()
def solve_decoders(net, alpha_id: torch.Tensor, alpha_exp: torch.Tensor, model, batch: int) -> dict[str, float]:
    """Set ``net.dec_id`` / ``net.dec_res`` to the least-squares solution; the Phase II loss at it.

    Parameters
    ----------
    net : DisentangledFaceNet
    alpha_id : tensor (N, k_id); alpha_exp : tensor (N, k_exp)
        The fitted training coefficients (float64).
    model : MorphableModel
    batch : int
        Images per chunk when evaluating the loss.

    Returns
    -------
    dict
        ``L_id``, ``L_res`` (mm², the mean over the training set) and ``loss`` (their sum).
    """
    c_id, c_res = net.scaler.to_code(alpha_id, alpha_exp)
    rows = {}
    for dec, A, alpha, c, key in ((net.dec_id, model.A_id, alpha_id, c_id, "L_id"),
                                  (net.dec_res, model.A_exp, alpha_exp, c_res, "L_res")):
        A = torch.as_tensor(A, dtype=torch.float64)
        C = torch.cat([c, torch.ones(len(c), 1, dtype=c.dtype)], 1) if dec.bias is not None else c
        G = C.T @ C
        G = G + 1e-6 * G.diagonal().mean().clamp_min(1e-12) * torch.eye(len(G), dtype=G.dtype)
        W = A @ torch.linalg.solve(G, C.T @ alpha).T  # (3n, k[+1]) = A alpha^T C G^-1
        if dec.bias is not None:
            dec.weight.copy_(W[:, :-1].to(dec.weight))
            dec.bias.copy_(W[:, -1].to(dec.bias))
        else:
            dec.weight.copy_(W.to(dec.weight))
        se = 0.0
        for i in range(0, len(c), batch):  # the Phase II loss at the solution, mm^2
            pred = dec(c[i:i + batch].to(dec.weight))
            se += float(losses.reconstruction_loss(pred, (alpha[i:i + batch] @ A.T).to(pred))) * len(pred)
        rows[key] = se / len(c)
    rows["loss"] = rows["L_id"] + rows["L_res"]
    return rows


def train_closed_form(phase, net, dataset, model, files: RunFiles, chash: str, batch: int, rank: int, world: int):
    """Phase II solved exactly: the decoders, a one-row history, the final checkpoint (rank 0).

    The decoders are linear and the Phase II loss quadratic, so its minimiser is a least-squares
    solution (``optimizer: lstsq``): ``dec_id`` maps the target codes ``c_id*`` to the fitted
    ``Delta s_Id`` and ``dec_res`` the ``c_res*`` to ``Delta s_Res`` (Eq. 2, mm).

    Parameters
    ----------
    phase : Phase
        The Phase II object (:mod:`.phases`).
    net : DisentangledFaceNet
        Its decoders are overwritten in place.
    dataset : Dataset
        Items with the fitted ``alpha_id`` (k_id,) and ``alpha_exp`` (k_exp,).
    model : MorphableModel
        Gives the targets ``A_id alpha_id`` and ``A_exp alpha_exp``.
    files : RunFiles
        Where the checkpoint and the logs go.
    chash : str
        Run hash stored in the checkpoint.
    batch : int
        Rows read at a time (memory only).
    rank, world : int
        This process and the number of processes (rank 0 writes).

    Returns
    -------
    (history, epochs) : pandas.DataFrame, pandas.DataFrame
        As the trained phases log them (one step, one epoch).

    Raises
    ------
    ValueError
        Without the morphable model.
    """
    import pandas as pd

    phase.check_model(net, model)
    a_id, a_exp, _ = dataset_codes(dataset)
    rows = solve_decoders(net, torch.as_tensor(a_id, dtype=torch.float64), torch.as_tensor(a_exp, dtype=torch.float64),
                          model, batch)
    hist = pd.DataFrame([{"step": 1, "epoch": 0, "lr": 0.0, **{k: rows[k] for k in phase.metrics},
                          "images_per_s": float("nan")}])
    epochs = pd.DataFrame([{"epoch": 0, "step": 1, "loss": rows["loss"], "stage": 0, "lambda_r": 0.0, "switch": 0}])
    if rank == 0:
        files.run_dir.mkdir(parents=True, exist_ok=True)
        for df, pth in ((hist, files.steps), (epochs, files.epochs)):
            with atomic_path(pth) as tmp:
                df.to_csv(tmp, index=False)
        save_final(net, files.final, chash, phase.name, extra={"steps": 1, "epochs": 1, "solver": "lstsq"})
    barrier(world)
    return hist, epochs
