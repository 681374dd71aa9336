"""Plotting for the book: plotly meshes, and widgets that degrade to static explorable figures.

Two display rules hold across the book:

* :func:`show` displays a plotly figure so that it works both live in JupyterLab (plotly's own
  mimetype) and in the static HTML book (a ``<div>`` whose script uses the single copy of
  plotly.js that the book loads once for every page, see ``_config.yml``).
* Live ipywidgets are shown only when a kernel is there to drive them. The book build sets
  ``DISENTANGLED_FACE_STATIC=1``; then :func:`is_static_build` is true and chapters show a
  plotly figure with sliders over precomputed frames instead, which needs no kernel.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

STATIC_ENV = "DISENTANGLED_FACE_STATIC"

#: A skin-like single colour for meshes without a heat map.
SKIN = "#e0b8a0"


def is_static_build() -> bool:
    """True while the static HTML book is being built (``$DISENTANGLED_FACE_STATIC`` set)."""
    return os.environ.get(STATIC_ENV, "") not in ("", "0")


def show(fig) -> None:
    """Display a plotly figure in JupyterLab and in the static book alike.

    The output carries plotly's JSON mimetype (rendered by JupyterLab) and an HTML ``<div>``
    without plotly.js (rendered by the book, which loads plotly.js once per page).
    """
    import plotly.io as pio
    from IPython.display import display

    bundle = {
        "application/vnd.plotly.v1+json": fig.to_plotly_json(),
        "text/html": pio.to_html(fig, include_plotlyjs=False, full_html=False,
                                 config={"responsive": True}),
        "text/plain": f"<plotly figure: {fig.layout.title.text or 'untitled'}>",
    }
    # plotly's JSON must be plain JSON types for the notebook file
    bundle["application/vnd.plotly.v1+json"] = _jsonable(bundle["application/vnd.plotly.v1+json"])
    display(bundle, raw=True)


def _jsonable(obj):
    import json

    import plotly.utils

    return json.loads(json.dumps(obj, cls=plotly.utils.PlotlyJSONEncoder))


def mesh_trace(vertices: np.ndarray, triangles: np.ndarray, intensity: np.ndarray | None = None,
               colorscale: str = "Viridis", name: str = "", showscale: bool = False,
               cmin: float | None = None, cmax: float | None = None, **kwargs):
    """A plotly ``Mesh3d`` trace of a face mesh.

    Parameters
    ----------
    vertices : ndarray, shape (n, 3)
        Vertex positions (mm).
    triangles : ndarray, shape (m, 3)
        0-based vertex indices.
    intensity : ndarray, shape (n,), optional
        Per-vertex scalar drawn as a heat map (for example a mode's magnitude in mm).

    Raises
    ------
    ValueError
        When ``vertices`` is not (n, 3) or ``intensity`` does not have n entries.
    """
    import plotly.graph_objects as go

    v = np.asarray(vertices, dtype=np.float32)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must have shape (n, 3), got {v.shape}")
    t = np.asarray(triangles)
    args = dict(x=v[:, 0], y=v[:, 1], z=v[:, 2], i=t[:, 0], j=t[:, 1], k=t[:, 2], name=name,
                flatshading=False, lighting=dict(ambient=0.45, diffuse=0.7, specular=0.15, roughness=0.6),
                lightposition=dict(x=0, y=100, z=300), hoverinfo="skip")
    if intensity is not None:
        intensity = np.asarray(intensity, dtype=np.float32).reshape(-1)
        if intensity.shape[0] != v.shape[0]:
            raise ValueError(f"intensity must have {v.shape[0]} entries, got {intensity.shape[0]}")
        args.update(intensity=intensity, colorscale=colorscale, showscale=showscale, cmin=cmin, cmax=cmax)
    else:
        args.update(color=SKIN)
    args.update(kwargs)
    return go.Mesh3d(**args)


def face_scene(**overrides) -> dict:
    """Scene layout looking at a face from the front (+z toward the viewer, y up)."""
    scene = dict(
        aspectmode="data",
        xaxis=dict(visible=False), yaxis=dict(visible=False), zaxis=dict(visible=False),
        camera=dict(eye=dict(x=0.0, y=0.0, z=1.6), up=dict(x=0, y=1, z=0)),
    )
    scene.update(overrides)
    return scene


def mesh_figure(vertices: np.ndarray, triangles: np.ndarray, intensity: np.ndarray | None = None,
                title: str = "", points: np.ndarray | None = None, height: int = 450, **trace_kwargs):
    """One face mesh as a plotly figure, optionally with highlighted points (for example landmarks).

    Parameters
    ----------
    vertices : ndarray, shape (n, 3), mm
    triangles : ndarray, shape (m, 3)
    intensity : ndarray, shape (n,), optional
        Heat map values.
    points : ndarray, shape (p, 3), optional
        Drawn as markers (for example the 68 landmarks ``s_U``).
    """
    import plotly.graph_objects as go

    fig = go.Figure(mesh_trace(vertices, triangles, intensity, **trace_kwargs))
    if points is not None:
        p = np.asarray(points)
        fig.add_trace(go.Scatter3d(x=p[:, 0], y=p[:, 1], z=p[:, 2], mode="markers",
                                   marker=dict(size=3, color="crimson"), name="landmarks",
                                   text=[str(i + 1) for i in range(len(p))], hoverinfo="text"))
    fig.update_layout(title=title, scene=face_scene(), height=height, margin=dict(l=0, r=0, t=40, b=0),
                      showlegend=False)
    return fig


def mesh_grid(meshes: Sequence[np.ndarray], triangles: np.ndarray, titles: Sequence[str],
              intensities: Sequence[np.ndarray | None] | None = None, cols: int = 3,
              height_per_row: int = 320, colorscale: str = "Viridis", shared_range: bool = False):
    """Several meshes side by side in one plotly figure (3D subplots).

    Parameters
    ----------
    meshes : sequence of ndarray (n, 3)
    triangles : ndarray (m, 3)
    titles : sequence of str
    intensities : sequence of ndarray (n,) or None, optional
        A heat map per mesh.
    shared_range : bool
        Use one colour range for every heat map.
    """
    from plotly.subplots import make_subplots

    k = len(meshes)
    rows = int(np.ceil(k / cols))
    fig = make_subplots(rows=rows, cols=cols, specs=[[{"type": "scene"}] * cols] * rows,
                        subplot_titles=list(titles), horizontal_spacing=0.01, vertical_spacing=0.04)
    intensities = list(intensities) if intensities is not None else [None] * k
    rng = None
    if shared_range and any(i is not None for i in intensities):
        vals = np.concatenate([np.asarray(i).ravel() for i in intensities if i is not None])
        rng = (float(vals.min()), float(vals.max()))
    for idx, (v, inten) in enumerate(zip(meshes, intensities)):
        r, c = idx // cols + 1, idx % cols + 1
        fig.add_trace(mesh_trace(v, triangles, inten, colorscale=colorscale,
                                 showscale=(inten is not None and (not shared_range or idx == k - 1)),
                                 cmin=rng[0] if rng else None, cmax=rng[1] if rng else None), row=r, col=c)
    scenes = {f"scene{'' if i == 0 else i + 1}": face_scene() for i in range(rows * cols)}
    fig.update_layout(height=height_per_row * rows, margin=dict(l=0, r=0, t=30, b=0), showlegend=False, **scenes)
    return fig
