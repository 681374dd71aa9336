"""Plotly face meshes: a decimated display mesh, one mesh, a grid of meshes in one scene, sliders.

For display only: metrics always use the full mesh.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

__all__ = ["SKIN", "DISPLAY_FACES", "display_mesh", "mesh_trace", "face_scene", "mesh_figure", "mesh_grid",
           "wrap_title", "morph_slider_figure"]

#: A skin-like single colour for meshes without a heat map.
SKIN = "#e0b8a0"

#: Meshes with more triangles than this are drawn through a decimated display mesh, which keeps
#: each book page a few MB at most. Pass ``max_faces=None`` to draw the full resolution.
DISPLAY_FACES = 4000

_display_cache: dict = {}


def display_mesh(vertices: np.ndarray, triangles: np.ndarray, max_faces: int | None = DISPLAY_FACES):
    """Vertex subset and triangles of a lighter mesh for drawing (quadric decimation).

    The mesh is decimated once per topology with trimesh's ``simplify_quadric_decimation``
    (fast-simplification); each decimated vertex is then snapped to its nearest original
    vertex (scipy KD-tree), so any shape of the same topology is drawn as ``shape[idx]`` with
    the returned triangles. For display only: metrics always use the full mesh.

    Returns
    -------
    idx : ndarray (p,)
        Original vertex indices to draw.
    tris : ndarray (q, 3)
        Triangles indexing into ``idx``.
    """
    triangles = np.asarray(triangles)
    if max_faces is None or len(triangles) <= max_faces:
        return np.arange(len(vertices)), triangles
    key = (len(vertices), triangles.shape, hash(triangles.tobytes()), max_faces)
    if key not in _display_cache:
        import trimesh
        from scipy.spatial import cKDTree

        low = trimesh.Trimesh(np.asarray(vertices, np.float64), triangles, process=False)
        low = low.simplify_quadric_decimation(face_count=max_faces)
        _, nearest = cKDTree(np.asarray(vertices)).query(low.vertices)
        idx, inverse = np.unique(nearest, return_inverse=True)
        tris = inverse[np.asarray(low.faces)]
        keep = (tris[:, 0] != tris[:, 1]) & (tris[:, 1] != tris[:, 2]) & (tris[:, 0] != tris[:, 2])
        _display_cache[key] = (idx, tris[keep].astype(np.int32))
    return _display_cache[key]


def mesh_trace(vertices: np.ndarray, triangles: np.ndarray, intensity: np.ndarray | None = None,
               colorscale: str = "Viridis", name: str = "", showscale: bool = False,
               cmin: float | None = None, cmax: float | None = None,
               max_faces: int | None = DISPLAY_FACES, **kwargs):
    """A plotly ``Mesh3d`` trace of a face mesh.

    Parameters
    ----------
    vertices : ndarray, shape (n, 3)
        Vertex positions (mm).
    triangles : ndarray, shape (m, 3)
        0-based vertex indices.
    intensity : ndarray, shape (n,), optional
        Per-vertex scalar drawn as a heat map (for example a mode's magnitude in mm).
    max_faces : int or None
        Draw through :func:`display_mesh` when the mesh has more triangles.

    Raises
    ------
    ValueError
        When ``vertices`` is not (n, 3) or ``intensity`` does not have n entries.
    """
    import plotly.graph_objects as go

    v = np.asarray(vertices, dtype=np.float32)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"vertices must have shape (n, 3), got {v.shape}")
    idx, t = display_mesh(v, triangles, max_faces)
    v = v[idx]
    args = dict(x=v[:, 0], y=v[:, 1], z=v[:, 2], i=t[:, 0], j=t[:, 1], k=t[:, 2], name=name,
                flatshading=False, lighting=dict(ambient=0.45, diffuse=0.7, specular=0.15, roughness=0.6),
                lightposition=dict(x=0, y=100, z=300), hoverinfo="skip")
    if intensity is not None:
        intensity = np.asarray(intensity, dtype=np.float32).reshape(-1)
        if intensity.shape[0] != len(vertices):
            raise ValueError(f"intensity must have {len(vertices)} entries, got {intensity.shape[0]}")
        intensity = intensity[idx]
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


def wrap_title(text: str, width: int = 16) -> str:
    """Break a title into lines of at most ``width`` characters (plotly's ``<br>``), at spaces.

    >>> wrap_title("Phase III: residual 1", 12)
    'Phase III:<br>residual 1'
    >>> wrap_title("sample 1")
    'sample 1'
    """
    lines: list[str] = []
    for word in text.split(" "):
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "<br>".join(lines)


def mesh_grid(meshes: Sequence[np.ndarray], triangles: np.ndarray, titles: Sequence[str],
              intensities: Sequence[np.ndarray | None] | None = None, cols: int = 3,
              height_per_row: int = 300, colorscale: str = "Viridis", shared_range: bool = False,
              gap: float = 0.15, colorbar_title: str | None = None, title_wrap: int = 16):
    """Several meshes side by side, laid out in **one** 3D scene.

    Browsers allow only about 16 WebGL contexts per page and every plotly 3D scene takes one,
    so a grid of subplots would blank the oldest figures of a chapter. Here the meshes are
    translated onto a grid inside a single scene, each titled by a 3D annotation.

    Parameters
    ----------
    meshes : sequence of ndarray (n, 3)
        Vertex positions (mm); the same topology ``triangles`` for all.
    triangles : ndarray (m, 3)
    titles : sequence of str
    intensities : sequence of ndarray (n,) or None, optional
        A heat map per mesh (``None`` draws it in skin colour).
    shared_range : bool
        Use one colour range for every heat map (else each is scaled to its own range).
    gap : float
        Space between meshes, as a fraction of the largest mesh's extent.
    colorbar_title : str, optional
        The heat maps' quantity and unit (for example ``"mm per σ"``): the heat maps then share
        one colour range and one colour bar with this title, so a colour reads as a number.
    title_wrap : int
        Titles longer than this many characters are broken into lines of at most this length
        (a title wider than its mesh was clipped at the scene's edge).

    Raises
    ------
    ValueError
        When ``titles`` or ``intensities`` do not have one entry per mesh.
    """
    import plotly.graph_objects as go

    k = len(meshes)
    if len(titles) != k:
        raise ValueError(f"titles must have {k} entries (one per mesh), got {len(titles)}")
    intensities = list(intensities) if intensities is not None else [None] * k
    if len(intensities) != k:
        raise ValueError(f"intensities must have {k} entries (one per mesh), got {len(intensities)}")
    rng = None
    shared_range = shared_range or colorbar_title is not None
    if shared_range and any(i is not None for i in intensities):
        vals = np.concatenate([np.asarray(i).ravel() for i in intensities if i is not None])
        rng = (float(vals.min()), float(vals.max()))
    extent = np.max([np.ptp(np.asarray(m), axis=0) for m in meshes], axis=0)
    step_x, step_y = extent[0] * (1 + gap), extent[1] * (1 + 2 * gap)
    fig = go.Figure()
    annotations = []
    last_heat = max((i for i, h in enumerate(intensities) if h is not None), default=-1)
    for idx, (v, inten) in enumerate(zip(meshes, intensities)):
        r, c = divmod(idx, cols)
        v = np.asarray(v, np.float32)
        centre = (v.max(0) + v.min(0)) / 2
        shifted = v - centre + np.array([c * step_x, -r * step_y, 0], np.float32)
        bar = dict(title=dict(text=colorbar_title or "", side="right"), len=0.6, thickness=14)
        fig.add_trace(mesh_trace(shifted, triangles, inten, colorscale=colorscale, name=titles[idx],
                                 showscale=(inten is not None and shared_range and idx == last_heat),
                                 colorbar=bar, cmin=rng[0] if rng else None, cmax=rng[1] if rng else None))
        top = shifted[:, 1].max()
        annotations.append(dict(x=c * step_x, y=top + extent[1] * gap * 0.6, z=float(shifted[:, 2].max()),
                                text=wrap_title(titles[idx], title_wrap), showarrow=False, font=dict(size=13),
                                yanchor="bottom"))
    rows = int(np.ceil(k / cols))
    eye_z = 2.6  # far enough that a portrait grid (a page column is narrow) is not cut at its sides
    # the scene's box is widened around the grid so that the titles above the top row and beside
    # the outer columns stay inside it (a scene clips what lies outside its box)
    box = np.array([[-0.5 * step_x, (min(k, cols) - 0.5) * step_x],      # every mesh is centred on its
                    [-(rows - 1) * step_y - extent[1] / 2, extent[1] * (0.5 + 3 * gap)],  # grid cell
                    [-extent[2] / 2, extent[2] / 2]])
    axes = {f"{a}axis": dict(visible=False, range=list(map(float, r)), autorange=False)
            for a, r in zip("xyz", box)}
    fig.update_layout(height=height_per_row * rows + 40, margin=dict(l=0, r=0, t=10, b=0), showlegend=False,
                      # perspective: plotly's orthographic camera darkens the lighting of Mesh3d
                      scene=face_scene(annotations=annotations, **axes,  # aspectmode "data": of these ranges
                                       camera=dict(eye=dict(x=0.0, y=0.0, z=eye_z), up=dict(x=0, y=1, z=0))))
    return fig


def morph_slider_figure(frames: Sequence[tuple[str, np.ndarray]], triangles: np.ndarray,
                        title: str = "", slider_prefix: str = "", height: int = 480,
                        decimals: int = 1):
    """A mesh with a plotly slider over precomputed shapes: explorable without a kernel.

    Each slider step restyles the mesh's vertex positions, so the static HTML book can be
    explored like a widget. Coordinates are rounded to ``decimals`` (mm) to keep pages small.

    Parameters
    ----------
    frames : sequence of (label, ndarray (n, 3))
        Step label and vertex positions (mm). The current step's label is written above the
        slider; the labels under it are hidden when they would overlap.
    triangles : ndarray (m, 3)

    Raises
    ------
    ValueError
        When ``frames`` is empty.
    """
    import plotly.graph_objects as go

    if not frames:
        raise ValueError("frames must hold at least one (label, vertices) pair")
    first = np.asarray(frames[0][1], np.float32)
    fig = go.Figure(mesh_trace(first, triangles))
    idx, _ = display_mesh(first, triangles)
    steps = []
    for label, v in frames:
        # slider arguments are written as JSON text: short decimals keep the page small
        v = np.round(np.asarray(v, np.float64)[idx], decimals)
        steps.append(dict(method="restyle", label=label,
                          args=[{"x": [v[:, 0].tolist()], "y": [v[:, 1].tolist()], "z": [v[:, 2].tolist()]}, [0]]))
    # the step labels under the slider are drawn only where they fit; the current one is
    # written in full above it. The margins keep both inside the figure (not clipped).
    crowded = len(frames) * max(len(label) for label, _ in frames) > 90
    fig.update_layout(
        title=title, height=height + 90, margin=dict(l=30, r=30, t=40, b=90), scene=face_scene(),
        sliders=[dict(active=0, steps=steps, x=0.03, len=0.94, pad=dict(t=10, b=10),
                      currentvalue=dict(prefix=slider_prefix, visible=True, font=dict(size=15, color="#2a3f5f")),
                      font=dict(size=11, color="rgba(0,0,0,0)" if crowded else None))],
    )
    return fig
