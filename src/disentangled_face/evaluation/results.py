"""Results a reader can compare: every table a chapter shows, written as CSV.

A chapter's first cell calls :func:`record_chapter`; from then on every pandas table the
notebook displays (``display(df)``, a ``Styler``, a ``Series``, or a table left as a cell's last
expression) is also written to ``data/results/<chapter>/table_NN.csv`` in display order, and
:meth:`ChapterResults.headline` adds named numbers to ``headline.json``. Two builds compare with
``diff -r``; a user tracks their own runs the same way.

>>> import pandas as pd, tempfile, json
>>> with tempfile.TemporaryDirectory() as d:
...     log = ChapterResults("demo", root=d)
...     _ = log.table(pd.DataFrame({"rmse_mm": [1.5]}))
...     log.headline(rmse_mm=1.5)
...     sorted(p.name for p in log.folder.iterdir())
['headline.json', 'manifest.json', 'table_01.csv']
"""

from __future__ import annotations

import json
import numbers
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..paths import atomic_path, data_dir

__all__ = ["ChapterResults", "record_chapter", "results_dir"]


def results_dir(chapter: str | None = None, root: str | os.PathLike | None = None) -> Path:
    """``data/results`` (or ``root``), or the folder of one chapter below it."""
    base = Path(root) if root is not None else data_dir("results")
    return base / chapter if chapter else base


def _as_frame(obj: Any) -> pd.DataFrame | None:
    if isinstance(obj, pd.DataFrame):
        return obj
    if isinstance(obj, pd.Series):
        return obj.to_frame()
    data = getattr(obj, "data", None)  # pandas Styler
    if type(obj).__name__ == "Styler" and isinstance(data, pd.DataFrame):
        return data
    return None


def _plain(value: Any) -> Any:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    return value if value is None or isinstance(value, str) else str(value)


class ChapterResults:
    """The results folder of one chapter: numbered table CSVs and a headline JSON.

    Parameters
    ----------
    chapter : str
        Folder name, e.g. ``"07_reconstruction"``.
    root : path, optional
        Results root; default ``data/results``.

    Opening a chapter clears the tables an earlier run of it wrote, so the folder always
    holds exactly what the last run showed. Files are written atomically.
    """

    def __init__(self, chapter: str, root: str | os.PathLike | None = None):
        if not chapter or "/" in chapter or chapter.startswith("."):
            raise ValueError(f"chapter must be a plain folder name, got {chapter!r}")
        self.chapter = chapter
        self.folder = results_dir(chapter, root)
        self.folder.mkdir(parents=True, exist_ok=True)
        for old in list(self.folder.glob("table_*.csv")) + [self.folder / "headline.json",
                                                             self.folder / "manifest.json"]:
            old.unlink(missing_ok=True)
        self._n = 0
        self._manifest: list[dict[str, Any]] = []
        self._headline: dict[str, Any] = {}

    def table(self, obj: Any, name: str | None = None) -> Any:
        """Write ``obj`` (DataFrame, Series or Styler) as the next ``table_NN.csv``; return ``obj``."""
        frame = _as_frame(obj)
        if frame is None:
            raise TypeError(f"expected a pandas DataFrame, Series or Styler, got {type(obj).__name__}")
        self._n += 1
        file = self.folder / f"table_{self._n:02d}.csv"
        with atomic_path(file) as tmp:
            frame.to_csv(tmp)
        self._manifest.append({"file": file.name, "name": name, "shape": list(frame.shape),
                               "columns": [str(c) for c in frame.columns]})
        self._write_json("manifest.json", self._manifest)
        return obj

    def headline(self, **numbers: Any) -> None:
        """Add named headline numbers (plain floats, ints, strings) to ``headline.json``."""
        self._headline.update({k: _plain(v) for k, v in numbers.items()})
        self._write_json("headline.json", self._headline)

    def _write_json(self, name: str, obj: Any) -> None:
        with atomic_path(self.folder / name) as tmp:
            tmp.write_text(json.dumps(obj, indent=1, sort_keys=False) + "\n")


def record_chapter(chapter: str, root: str | os.PathLike | None = None) -> ChapterResults:
    """Start recording a chapter: every pandas table the notebook displays is saved as CSV.

    Outside IPython it only returns the :class:`ChapterResults` (call ``.table`` yourself).
    Calling it again (a re-run first cell) replaces the earlier hook.
    """
    log = ChapterResults(chapter, root)
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython ships with the book's kernel
        return log
    ip = get_ipython()
    if ip is None:
        return log
    formatter = ip.display_formatter
    original = getattr(formatter, "_df_original_format", formatter.format)
    formatter._df_original_format = original

    def format(obj, *args, **kwargs):
        if _as_frame(obj) is not None:
            log.table(obj)
        return original(obj, *args, **kwargs)

    formatter.format = format
    return log
