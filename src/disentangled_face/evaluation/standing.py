"""Where this build's networks stand: the introduction's box, read from the chapters' headlines.

The introduction is executed after every chapter (its page is read last, and it is executed on
every build), so it can state what this very build measured: :func:`standing` collects the
numbers the chapters wrote to ``data/results/<chapter>/headline.json`` (chapter 6: held-out
images of the training subjects and unseen subjects, chapter 8: verification accuracy, chapter
11: the premise's tests in the beyond-basis world, chapter 12: the claims' verdicts), and :func:`standing_markdown` writes them as sentences. Nothing is
typed in: a chapter that has not run yet is reported as such.

>>> import json, tempfile, pathlib
>>> with tempfile.TemporaryDirectory() as d:
...     p = pathlib.Path(d, "08_recognition"); p.mkdir()
...     _ = p.joinpath("headline.json").write_text(json.dumps({"lfw_Proposed_acc": 80.0}))
...     s = standing(root=d)
>>> s["lfw_accuracy_pct"]["Proposed"], s["missing"]
(80.0, ['06_training', '11_beyond_basis', '12_conclusions'])
"""

from __future__ import annotations

import json
import os
from collections import Counter
from typing import Any

from ..format import fmt_num, fmt_pct
from .results import results_dir

__all__ = ["standing", "standing_markdown"]

#: The chapters whose headlines the box reads.
CHAPTERS = ("06_training", "08_recognition", "11_beyond_basis", "12_conclusions")
_SHAPE_METHODS = ("3DMM-CNN-like", "Proposed")
_LFW_METHODS = ("texture", "3DMM-CNN-like", "Proposed", "texture + Proposed")


def _read(chapter: str, root) -> dict | None:
    path = results_dir(chapter, root) / "headline.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); rebuild chapter {chapter}") from None


def standing(root: str | os.PathLike | None = None) -> dict[str, Any]:
    """The numbers of the introduction's box, from the chapters' ``headline.json`` files.

    Parameters
    ----------
    root : path, optional
        The results folder (default ``data/results``).

    Returns
    -------
    dict
        ``held_out_vs_mean_face`` and ``unseen_vs_mean_face`` (method -> ratio of its aligned
        3D error to the mean face's, chapter 6), ``unseen_mean_face_mm`` (mm),
        ``lfw_accuracy_pct`` (method -> %, chapter 8), ``premise`` (question -> verdict,
        chapter 11), ``verdicts`` (verdict -> count, chapter 12), ``missing`` (chapters without a headline). Absent numbers are absent keys.

    Raises
    ------
    ValueError
        When a headline file is not valid JSON.
    """
    out: dict[str, Any] = {"missing": []}
    heads = {c: _read(c, root) for c in CHAPTERS}
    out["missing"] = [c for c, h in heads.items() if h is None]
    h6 = heads["06_training"] or {}
    for key, prefix in (("held_out_vs_mean_face", "held_out_aligned"), ("unseen_vs_mean_face", "unseen")):
        vals = {m: h6[f"{prefix}_{m}_vs_mean_face"] for m in _SHAPE_METHODS if f"{prefix}_{m}_vs_mean_face" in h6}
        if vals:
            out[key] = vals
    for key in ("unseen_mean_face_mm", "unseen_subjects_trained", "held_out_mean_face_mm"):
        if key in h6:
            out[key] = h6[key]
    h8 = heads["08_recognition"] or {}
    lfw = {m: h8[f"lfw_{m}_acc"] for m in _LFW_METHODS if f"lfw_{m}_acc" in h8}
    if lfw:
        out["lfw_accuracy_pct"] = lfw
    h11 = heads["11_beyond_basis"] or {}
    if "premise_verdicts" in h11:
        out["premise"] = {str(k): str(v) for k, v in h11["premise_verdicts"].items()}
    h12 = heads["12_conclusions"] or {}
    if "verdict_counts" in h12:
        out["verdicts"] = {str(k): int(v) for k, v in h12["verdict_counts"].items()}
    elif "verdicts" in h12:
        out["verdicts"] = dict(Counter(h12["verdicts"]))
    return out


def _ratios(r: dict[str, float]) -> str:
    return " and ".join(f"{fmt_num(v, 2, trim=False)} × ({m})" for m, v in r.items())


def standing_markdown(root: str | os.PathLike | None = None) -> str:
    """The box's sentences (Markdown) built from :func:`standing`; says which chapters have not run."""
    s = standing(root)
    parts = []
    if "held_out_vs_mean_face" in s:
        parts.append("On held-out photographs of the subjects they were trained on, the book's encoders reach "
                     + _ratios(s["held_out_vs_mean_face"])
                     + " of the mean face's 3D error (aligned, cropped RMSE; chapter 6).")
    if "unseen_vs_mean_face" in s:
        mean = s.get("unseen_mean_face_mm")
        parts.append("On subjects no network saw (the bu3dfe-like yaw sweep and micc-like) they reach "
                     + _ratios(s["unseen_vs_mean_face"])
                     + (f" of the mean face's {fmt_num(mean, 3)} mm" if mean is not None else " of the mean face's error")
                     + " (chapter 6's scaling study at its largest size; chapter 7 has the tables).")
    if "lfw_accuracy_pct" in s:
        a = s["lfw_accuracy_pct"]
        parts.append("On lfw-like verification (chance 50 %) they reach "
                     + ", ".join(f"{fmt_pct(v)} ({m})" for m, v in a.items())
                     + " (chapter 8; the paper's LFW figures are real photographs, ours synthetic).")
    if "premise" in s:
        n = Counter(s["premise"].values())
        parts.append(f"In the world where the paper's premise holds (faces beyond the fitting basis, chapter 11), "
                     f"{n.get('supported', 0)} of its {len(s['premise'])} tested questions are supported, "
                     f"{n.get('not supported', 0)} contradicted and {n.get('inconclusive', 0)} inconclusive.")
    if "verdicts" in s:
        v = s["verdicts"]
        parts.append(f"Of the paper's claims as chapter 12 tests them, {v.get('supported', 0)} are supported by "
                     f"our runs, {v.get('not supported', 0)} are not and {v.get('inconclusive', 0)} are inconclusive"
                     + (f"; {v['not evaluated']} could not be evaluated (no run of the method it compares with)"
                        if v.get("not evaluated") else "") + ".")
    if s["missing"]:
        parts.append("Not run yet in this build: " + ", ".join(f"chapter {c[:2].lstrip('0')}" for c in s["missing"]) + ".")
    return " ".join(parts)
