"""Every figure of the book: plotly meshes, widgets with static fallbacks, the experiments' figures.

``from disentangled_face import plotting as viz`` gives :func:`~.show.show`, :func:`~.show.show_image`, :func:`~.show.show_markdown`,
:func:`~.show.show_summary`,
:func:`~.show.is_static_build`, the mesh figures of :mod:`.meshes` and the widgets of
:mod:`.widgets`. The figures of one part live in their own modules and are imported from
there: :mod:`.experiments` (Tables 1-3, Figs. 6-7 and 9; chapters 7-10), :mod:`.diagram` (the
encoder-decoder's block diagram, chapter 5), and the faces and training figures of the chapters
that draw them. Every number a chapter shows, in a table or a
sentence, is written by :mod:`disentangled_face.format`.
"""

from .meshes import (DISPLAY_FACES, SKIN, display_mesh, face_scene, mesh_figure, mesh_grid, mesh_trace,
                     morph_slider_figure, wrap_title)
from .show import STATIC_ENV, is_static_build, show, show_image, show_markdown, show_summary
from .widgets import description_width, shape_explorer_widget, sweep_error_widget

__all__ = ["show", "show_image", "show_markdown", "show_summary", "is_static_build", "STATIC_ENV", "wrap_title", "SKIN", "DISPLAY_FACES", "display_mesh", "mesh_trace",
           "face_scene", "mesh_figure", "mesh_grid", "morph_slider_figure", "shape_explorer_widget",
           "sweep_error_widget", "description_width"]
