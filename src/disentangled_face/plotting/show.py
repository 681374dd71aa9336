"""Displaying a figure so that it works live in JupyterLab and in the static HTML book.

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

__all__ = ["STATIC_ENV", "is_static_build", "show", "show_image", "show_markdown", "show_summary"]

STATIC_ENV = "DISENTANGLED_FACE_STATIC"

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


def show_image(fig, dpi: int = 110) -> None:
    """Display a matplotlib ``Figure`` made without pyplot (such as
    :func:`~disentangled_face.plotting.diagram.network_diagram`'s) once, as a PNG.

    A figure not attached to pyplot has no display of its own until pyplot's inline backend has
    drawn something; this writes it to PNG (tight bounding box) and displays that.
    """
    import io

    from IPython.display import Image, display

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    display(Image(buf.getvalue()))


def _jsonable(obj):
    import json

    import plotly.utils

    return json.loads(json.dumps(obj, cls=plotly.utils.PlotlyJSONEncoder))


def show_markdown(text: str) -> None:
    """Display Markdown as rendered prose: a conclusion built from the chapter's numbers.

    Chapters write their conclusions with this rather than ``print``, so that the book shows
    them as text the reader sees whole (not monospace output behind a scroll bar).
    """
    from IPython.display import Markdown, display

    display(Markdown(text))


def show_summary(points, title: str = "What this chapter showed") -> None:
    """The end-of-chapter summary: a bold title and one bullet per point (Markdown strings).

    Raises
    ------
    ValueError
        When ``points`` is empty.
    """
    points = [str(p).strip() for p in points]
    if not points:
        raise ValueError("a summary needs at least one point")
    show_markdown(f"**{title}**\n\n" + "\n".join(f"- {p}" for p in points))
