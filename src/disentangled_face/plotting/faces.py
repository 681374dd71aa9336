"""Figures of face images: a grid of crops with their landmarks (chapters 2-4)."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = ["plot_faces"]


def plot_faces(images, titles: Sequence[str] | None = None, ncols: int = 8, landmarks=None, visible=None,
               size: float = 1.35, marker_size: float = 4.0, max_width: float = 7.0, fontsize: float = 8.0):
    """A matplotlib grid of face crops, optionally with landmarks (visible green, hidden red).

    The figure is at most ``max_width`` inches wide (a book page column), so that it is shown at
    about its own size and the captions keep ``fontsize`` points; captions are wrapped onto as
    many lines as the image width needs.

    Parameters
    ----------
    images : ndarray (B, H, W, 3) uint8
    titles : sequence of str, optional
        One caption per image.
    ncols : int
    landmarks : ndarray (B, 68, 2), optional, pixels
    visible : ndarray (B, 68) bool, optional
    size : float
        Inches per image column, at most (fewer when ``ncols * size`` exceeds ``max_width``).
    max_width : float
        Width of the whole figure at most, inches.
    fontsize : float
        Caption size, points.

    Returns
    -------
    matplotlib.figure.Figure

    Raises
    ------
    ValueError
        When ``titles`` does not have one entry per image.
    """
    import textwrap

    import matplotlib.pyplot as plt

    images = np.asarray(images)
    B = len(images)
    if titles is not None and len(titles) != B:
        raise ValueError(f"titles must have {B} entries (one per image), got {len(titles)}")
    ncols = min(ncols, B)
    nrows = int(math.ceil(B / ncols))
    H, W = images.shape[1:3]
    width = min(size, max_width / ncols)
    chars = max(6, int(width * 72 / (0.55 * fontsize)))  # characters of the caption font per line
    wrapped = [textwrap.fill(str(s), chars) for s in titles] if titles is not None else None
    lines = max((s.count("\n") + 1 for s in wrapped), default=0) if wrapped else 0
    caption_h = lines * fontsize * 1.25 / 72 + (0.05 if lines else 0)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, nrows * (width * H / W + caption_h)),
                             squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= B:
            continue
        ax.imshow(images[k])
        if landmarks is not None:
            vis = np.ones(landmarks.shape[1], bool) if visible is None else np.asarray(visible[k], bool)
            ax.scatter(*landmarks[k][vis].T, s=marker_size, c="lime", linewidths=0)
            ax.scatter(*landmarks[k][~vis].T, s=marker_size, c="red", linewidths=0)
            ax.set_xlim(-0.5, W - 0.5)
            ax.set_ylim(H - 0.5, -0.5)
        if wrapped is not None:
            ax.set_title(wrapped[k], fontsize=fontsize, linespacing=1.1)
    fig.tight_layout(pad=0.2)
    return fig
