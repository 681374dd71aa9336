"""Live ipywidgets for JupyterLab (the static book shows :func:`~.meshes.morph_slider_figure`)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .meshes import mesh_figure
from .show import show

__all__ = ["shape_explorer_widget"]


def shape_explorer_widget(model, n_id: int = 4, expressions: Sequence[str] | None = None,
                          id_range: float = 3.0):
    """Live ipywidgets sliders for ``alpha_id`` and ``alpha_exp`` driving a plotly mesh.

    For JupyterLab with a running kernel; the static book shows :func:`morph_slider_figure`
    instead (see :func:`is_static_build`).

    Parameters
    ----------
    model : MorphableModel
    n_id : int
        Number of identity sliders (the first modes), each in ``[-id_range, id_range]``.
    expressions : sequence of str, optional
        Expression names to expose (sliders in the model's ``exp_bounds``).
    """
    import ipywidgets as W
    from IPython.display import clear_output

    expressions = list(expressions or model.exp_names[:4])
    unknown = [e for e in expressions if e not in model.exp_names]
    if unknown:
        raise ValueError(f"unknown expression names {unknown}; the model has {model.exp_names}")
    lo, hi = model.exp_bounds or (-3.0, 3.0)
    id_sliders = [W.FloatSlider(value=0.0, min=-id_range, max=id_range, step=0.1,
                                description=f"α_id[{i + 1}]", continuous_update=False) for i in range(n_id)]
    exp_sliders = [W.FloatSlider(value=0.0, min=lo, max=hi, step=0.05, description=name,
                                 continuous_update=False) for name in expressions]
    out = W.Output()

    def redraw(*_):
        a = np.zeros(model.n_id, np.float32)
        e = np.zeros(model.n_exp, np.float32)
        for i, s in enumerate(id_sliders):
            a[i] = s.value
        for name, s in zip(expressions, exp_sliders):
            e[model.exp_names.index(name)] = s.value
        with out:
            clear_output(wait=True)
            show(mesh_figure(model.shape(a, e), model.triangles, title="s = s_mean + A_id α_id + A_exp α_exp"))

    for s in id_sliders + exp_sliders:
        s.observe(redraw, names="value")
    redraw()
    return W.HBox([W.VBox([W.Label("identity"), *id_sliders, W.Label("expression"), *exp_sliders]), out])
