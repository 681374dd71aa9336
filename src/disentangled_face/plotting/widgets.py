"""Live ipywidgets for JupyterLab (the static book shows :func:`~.meshes.morph_slider_figure`
and :func:`~.training.sweep_figure` instead).

Each widget redraws a plotly mesh figure into an ``ipywidgets.Output`` when a slider moves; the
figure last drawn is kept as the returned box's ``figure`` attribute and the sliders as its
``sliders`` (name to slider), so the callbacks can be driven and checked without a browser.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from .meshes import mesh_figure
from .show import show

__all__ = ["shape_explorer_widget", "sweep_error_widget", "description_width"]


def description_width(labels: Sequence[str], px_per_char: float = 8.5, min_px: int = 60) -> str:
    """A CSS width for slider descriptions that fits the longest label whole.

    ipywidgets cuts a description at its default width (about 80 px: ``mouthSmile_L`` showed as
    ``mouthSmi…``); every slider of a widget gets this one width so that their tracks line up.

    >>> description_width(["jawOpen", "mouthSmile_L"])
    '102px'
    """
    longest = max((len(s) for s in labels), default=0)
    return f"{max(min_px, int(np.ceil(px_per_char * longest)))}px"


def _slider_style(labels: Sequence[str], track_px: int = 240) -> dict:
    """Keyword arguments of the sliders: one description width, and a total width that leaves
    the track ``track_px`` beside the description and the read-out."""
    import ipywidgets as W

    width = description_width(labels)
    return dict(style={"description_width": width},
                layout=W.Layout(width=f"{int(width[:-2]) + track_px + 70}px"))


def _fixed(width: str):
    """A layout that keeps a box at ``width`` beside a wide figure (an HBox shrinks it otherwise:
    the slider tracks were squeezed to nothing next to the mesh)."""
    import ipywidgets as W

    return W.Layout(width=width, min_width=width, flex="0 0 auto")


def shape_explorer_widget(model, n_id: int = 4, expressions: Sequence[str] | None = None,
                          id_range: float = 3.0):
    """Live ipywidgets sliders for ``alpha_id`` and ``alpha_exp`` driving a plotly mesh.

    For JupyterLab with a running kernel; the static book shows :func:`morph_slider_figure`
    instead (see :func:`is_static_build`). Every slider is labelled with its full name
    (``α_id[1]``, the expression's blendshape name), one description width for all.

    Parameters
    ----------
    model : MorphableModel
    n_id : int
        Number of identity sliders (the first modes, unitless: standard deviations), each in
        ``[-id_range, id_range]``.
    expressions : sequence of str, optional
        Expression names to expose (sliders in the model's ``exp_bounds``; default the first 4).
    id_range : float
        Half-range of the identity sliders.

    Returns
    -------
    ipywidgets.HBox
        The sliders and the mesh; ``.sliders`` maps each description to its ``FloatSlider`` and
        ``.figure`` is the plotly figure last drawn (vertices in mm).

    Raises
    ------
    ValueError
        When an expression name is not one of ``model.exp_names``.
    """
    import ipywidgets as W
    from IPython.display import clear_output

    expressions = list(expressions or model.exp_names[:4])
    unknown = [e for e in expressions if e not in model.exp_names]
    if unknown:
        raise ValueError(f"unknown expression names {unknown}; the model has {model.exp_names}")
    lo, hi = model.exp_bounds or (-3.0, 3.0)
    id_names = [f"α_id[{i + 1}]" for i in range(n_id)]
    style = _slider_style(id_names + expressions)
    id_sliders = [W.FloatSlider(value=0.0, min=-id_range, max=id_range, step=0.1, description=name,
                                continuous_update=False, **style) for name in id_names]
    exp_sliders = [W.FloatSlider(value=0.0, min=lo, max=hi, step=0.05, description=name,
                                 continuous_update=False, **style) for name in expressions]
    out = W.Output(layout=W.Layout(flex="1 1 0%", min_width="320px"))  # the mesh takes the rest
    controls = W.VBox([W.Label("identity"), *id_sliders, W.Label("expression"), *exp_sliders],
                      layout=_fixed(style["layout"].width))
    box = W.HBox([controls, out], layout=W.Layout(align_items="flex-start"))
    box.sliders = dict(zip(id_names + expressions, id_sliders + exp_sliders))

    def redraw(*_):
        a = np.zeros(model.n_id, np.float32)
        e = np.zeros(model.n_exp, np.float32)
        for i, s in enumerate(id_sliders):
            a[i] = s.value
        for name, s in zip(expressions, exp_sliders):
            e[model.exp_names.index(name)] = s.value
        box.figure = mesh_figure(model.shape(a, e), model.triangles, title="s = s_mean + A_id α_id + A_exp α_exp")
        with out:
            clear_output(wait=True)
            show(box.figure)

    for s in id_sliders + exp_sliders:
        s.observe(redraw, names="value")
    redraw()
    return box


def sweep_error_widget(shapes: Mapping[float, np.ndarray], truth: np.ndarray, triangles: np.ndarray,
                       description: str = "λ_R", unit: str = "mm"):
    """A live slider over a sweep: each setting's reconstruction coloured by its per-vertex error.

    The colour range is fixed across the whole sweep (``0`` to the largest error of any
    setting), so one colour is one error at every slider step and the settings compare by
    eye; the title gives the setting and its mean error.

    Parameters
    ----------
    shapes : mapping of float to ndarray (n, 3)
        The swept value (for example λ_R) to the reconstructed shape (mm), in slider order.
    truth : ndarray (n, 3)
        The ground-truth shape (mm).
    triangles : ndarray (m, 3)
    description : str
        The slider's label.
    unit : str
        The error's unit, for the colour bar.

    Returns
    -------
    ipywidgets.VBox
        The slider and the mesh; ``.sliders`` is ``{description: SelectionSlider}``,
        ``.figure`` the plotly figure last drawn and ``.color_range`` the fixed ``(cmin, cmax)``.

    Raises
    ------
    ValueError
        When ``shapes`` is empty or a shape is not ``truth``'s shape.
    """
    import ipywidgets as W
    from IPython.display import clear_output

    if not shapes:
        raise ValueError("shapes must hold at least one setting")
    truth = np.asarray(truth, np.float32)
    errors = {}
    for key, s in shapes.items():
        s = np.asarray(s, np.float32)
        if s.shape != truth.shape:
            raise ValueError(f"shape for {description} = {key:g} is {s.shape}, truth is {truth.shape}")
        errors[key] = np.linalg.norm(s - truth, axis=1)
    cmin, cmax = 0.0, float(max(e.max() for e in errors.values()))
    slider = W.SelectionSlider(options=list(shapes), description=description, continuous_update=False,
                               **_slider_style([description]))
    out = W.Output()
    box = W.VBox([slider, out], layout=W.Layout(align_items="stretch"))
    box.sliders, box.color_range = {description: slider}, (cmin, cmax)

    def redraw(*_):
        key = slider.value
        err = errors[key]
        box.figure = mesh_figure(shapes[key], triangles, intensity=err, showscale=True, cmin=cmin, cmax=cmax,
                                 colorbar=dict(title=dict(text=unit, side="right")),
                                 title=f"{description} = {key:g}: per-vertex error ({unit}), mean {err.mean():.2f}")
        with out:
            clear_output(wait=True)
            show(box.figure)

    slider.observe(redraw, names="value")
    redraw()
    return box
