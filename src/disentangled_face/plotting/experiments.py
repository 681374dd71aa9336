"""Figures of the experiments (chapters 7-10): Tables 1-2 and Figs. 6-7 as plots, ROC curves
of Table 3, and the learned bases of Fig. 9."""

from __future__ import annotations

import numpy as np

from ..evaluation.reconstruction import METRIC_LABELS, ReconResult
from ..evaluation.verification import VerificationTable
from .meshes import mesh_grid

__all__ = ["recon_figure", "roc_figure", "bases_figures", "bases_difference_figure"]


def recon_figure(result: ReconResult, metric: str = "rmse_mm", title: str = "", kind: str = "line"):
    """Plotly figure of :meth:`ReconResult.table` (lines over yaw, or grouped bars)."""
    import plotly.graph_objects as go

    t = result.table(metric, overall=False)
    fig = go.Figure()
    for m in t.index:
        if kind == "line":
            fig.add_trace(go.Scatter(x=list(t.columns), y=t.loc[m].values, mode="lines+markers", name=m))
        else:
            fig.add_trace(go.Bar(x=[str(c) for c in t.columns], y=t.loc[m].values, name=m))
    fig.update_layout(title=title, xaxis_title=result.group_name, yaxis_title=METRIC_LABELS[metric],
                      height=380, margin=dict(l=50, r=10, t=50, b=40), barmode="group")
    return fig


def roc_figure(table: VerificationTable, title: str = "", log_far: bool = True):
    """ROC curves (TAR against FAR) of every method and fusion of a :class:`VerificationTable`."""
    import plotly.graph_objects as go

    fig = go.Figure()
    positive = [r.roc_far[r.roc_far > 0].min() for r in table.results.values() if (r.roc_far > 0).any()]
    floor = 0.5 * min(positive) if positive else 1e-3  # FAR = 0 drawn at half the smallest FAR reached
    for name, r in table.results.items():
        far = np.maximum(r.roc_far, floor) if log_far else r.roc_far
        fig.add_trace(go.Scatter(x=far, y=r.roc_tar, mode="lines", name=name))
    xaxis = dict(type="log", range=[np.log10(floor), 0]) if log_far else dict(type="linear", range=[0, 1])
    fig.update_layout(title=title or f"ROC, {table.protocol}", xaxis_title="FAR" + (" (log; FAR 0 at the left edge)"
                      if log_far else ""), yaxis_title="TAR", xaxis=xaxis, height=420,
                      margin=dict(l=50, r=10, t=50, b=40), yaxis_range=[0, 1.02])
    return fig


def bases_figures(model, bases_before, bases_after, k: int = 4, code: float = 1.0):
    """Fig. 9 as two plotly figures: identity bases as meshes, residual bases as heat maps.

    Identity column j is drawn as the shape ``s_mean + code * W_id[:, j]`` (a code at the edge
    of ``[-1, 1]``); residual column j as its per-vertex magnitude (mm) on the mean shape.
    Rows: Phase II (pre-trained), Phase III (jointly learned).
    """
    k_id = min(k, bases_before[0].shape[0])
    k_res = min(k, bases_before[1].shape[0])
    mean = model.mean.astype(np.float64)
    id_meshes, id_titles = [], []
    for tag, b in (("Phase II", bases_before[0]), ("Phase III", bases_after[0])):
        for j in range(k_id):
            id_meshes.append(mean + code * np.asarray(b[j], dtype=np.float64))
            id_titles.append(f"{tag}: identity {j + 1}")
    fig_id = mesh_grid(id_meshes, model.triangles, id_titles, cols=k_id)
    res_int, res_titles = [], []
    for tag, b in (("Phase II", bases_before[1]), ("Phase III", bases_after[1])):
        for j in range(k_res):
            res_int.append(np.linalg.norm(np.asarray(b[j], dtype=np.float64), axis=1))
            res_titles.append(f"{tag}: residual {j + 1}")
    fig_res = mesh_grid([mean] * len(res_int), model.triangles, res_titles, intensities=res_int,
                        cols=k_res, colorscale="Hot", colorbar_title="mm per unit code")
    return fig_id, fig_res


def bases_difference_figure(model, bases_before, bases_after, k: int = 4, part: int = 0):
    """How far Phase III moved each basis: ``|W_III[:, j] - W_II[:, j]|`` per vertex (mm per unit
    code) on the mean shape, for the first ``k`` identity (``part=0``) or residual (``part=1``)
    columns, with one colour bar in mm.

    The Phase II and Phase III bases drawn as shapes (:func:`bases_figures`) can look alike
    when Phase III changes them by a few percent; their difference shows where it did.

    Raises
    ------
    ValueError
        When the two sets of bases do not have the same shape.

    >>> from disentangled_face.shape import MorphableModel
    >>> toy = MorphableModel.toy(n=60, k_id=4, k_exp=2, seed=0)
    >>> fig = bases_difference_figure(toy, (toy.id_basis, toy.exp_basis), (2 * toy.id_basis, toy.exp_basis), k=2)
    >>> len(fig.data), fig.data[0].colorbar.title.text
    (2, 'mm')
    """
    before, after = np.asarray(bases_before[part], np.float64), np.asarray(bases_after[part], np.float64)
    if before.shape != after.shape:
        raise ValueError(f"bases of different shapes: {before.shape} and {after.shape}")
    k = min(k, before.shape[0])
    name = "identity" if part == 0 else "residual"
    diff = [np.linalg.norm(after[j] - before[j], axis=1) for j in range(k)]
    mean = model.mean.astype(np.float64)
    fig = mesh_grid([mean] * k, model.triangles, [f"{name} {j + 1}" for j in range(k)],
                    intensities=diff, cols=k, colorscale="Hot", colorbar_title="mm")
    fig.update_layout(title=dict(text=f"|Phase III − Phase II| of the {name} bases, per vertex", font_size=13))
    return fig
