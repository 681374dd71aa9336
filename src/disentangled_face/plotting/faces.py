"""Figures of face images: a grid of crops with their landmarks (chapters 2-4)."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

__all__ = ["plot_faces"]


def plot_faces(images, titles: Sequence[str] | None = None, ncols: int = 8, landmarks=None, visible=None,
               size: float = 1.35, marker_size: float = 4.0):
    """A matplotlib grid of face crops, optionally with landmarks (visible green, hidden red).

    Parameters
    ----------
    images : ndarray (B, H, W, 3) uint8
    titles : sequence of str, optional
    ncols : int
    landmarks : ndarray (B, 68, 2), optional, pixels
    visible : ndarray (B, 68) bool, optional
    size : float
        Inches per image column.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    images = np.asarray(images)
    B = len(images)
    ncols = min(ncols, B)
    nrows = int(math.ceil(B / ncols))
    H, W = images.shape[1:3]
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows * H / W + 0.25 * nrows),
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
        if titles is not None:
            ax.set_title(titles[k], fontsize=7)
    fig.tight_layout(pad=0.2)
    return fig
