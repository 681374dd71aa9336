"""Timing of Table 4: the median wall time per image of each method on this machine."""

from __future__ import annotations

import time
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

__all__ = ["time_per_image", "speed_table"]


def time_per_image(fn: Callable[[Any], Any], inputs: Any, n_images: int, repeats: int, warmup: int = 1,
                   sync: Callable[[], None] | None = None) -> float:
    """Median wall time of ``fn(inputs)`` per image, in ms (:func:`time.perf_counter`).

    Parameters
    ----------
    fn : callable
        Processes ``inputs`` (``n_images`` images) once.
    n_images : int
        Images in ``inputs``.
    repeats, warmup : int
        Timed runs (median reported) and untimed runs first.
    sync : callable, optional
        Called before reading the clock (``torch.cuda.synchronize`` for GPU work).
    """
    if n_images < 1 or repeats < 1:
        raise ValueError("n_images and repeats must be >= 1")
    for _ in range(warmup):
        fn(inputs)
    if sync:
        sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(inputs)
        if sync:
            sync()
        times.append(time.perf_counter() - t0)
    return 1000.0 * float(np.median(times)) / n_images


def speed_table(methods: Mapping[str, tuple[Callable, Any, int]], repeats: int, device: str = "cpu",
                reference: str | None = "Proposed", sync: Callable | None = None) -> pd.DataFrame:
    """Table 4: time per image of each method on this machine.

    Parameters
    ----------
    methods : mapping name -> (fn, inputs, n_images)
        ``fn(inputs)`` processes ``n_images`` images.
    reference : str, optional
        Add a column "x reference" with each time divided by this method's.

    Returns
    -------
    DataFrame
        Index: method; columns ``ms/image`` (and the ratio), ``device``.
    """
    rows = {name: time_per_image(fn, x, n, repeats, sync=sync) for name, (fn, x, n) in methods.items()}
    df = pd.DataFrame({"ms/image": pd.Series(rows)})
    if reference is not None and reference in rows:
        df[f"× {reference}"] = df["ms/image"] / rows[reference]
    df["device"] = device
    df.index.name = "method"
    return df
