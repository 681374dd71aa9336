"""Reconstruction experiments of Sec. 4.1: Table 1 (error against yaw), Table 2 (micc-like),
Figs. 6-7 (error per expression), per-vertex error maps, and errors against real 3D scans.

The builders are pure functions of arrays: reconstructions and ground truth in mm, shaped
(N, n, 3), with the errors of :mod:`.metrics.shape_error`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from ..shape import NOSE_TIP_LANDMARK
from . import metrics

__all__ = ["METRIC_LABELS", "ReconResult", "reconstruction_errors", "reconstruction_vs_yaw", "reconstruction_micc",
           "pooled_yaw_table", "rmse_per_expression", "error_map", "scan_reconstruction_errors"]

METRIC_LABELS = {"paper": "Sec. 4.1 formula ||s-s*||/n", "mean_mm": "mean distance (mm)",
                 "rmse_mm": "RMSE (mm)"}


@dataclass
class ReconResult:
    """Per-shape reconstruction errors of several methods, grouped (by yaw, expression, ...).

    Attributes
    ----------
    errors : DataFrame
        One row per (method, shape): ``method``, ``group``, ``paper``, ``mean_mm``,
        ``rmse_mm``, ``n_kept`` (see :class:`metrics.ShapeError`), and ``subject`` when the
        builder was given the subjects.
    group_name : str
        What the groups are ("yaw (deg)", "expression", ...).
    """

    errors: pd.DataFrame
    group_name: str = "group"

    def table(self, metric: str = "rmse_mm", stat: str = "mean", overall: bool = True) -> pd.DataFrame:
        """Methods x groups table of the ``stat`` (mean, std, median) of ``metric``.

        With ``overall`` a last column "overall" aggregates every shape.
        """
        if metric not in METRIC_LABELS:
            raise ValueError(f"metric must be one of {sorted(METRIC_LABELS)}, got {metric!r}")
        methods = list(dict.fromkeys(self.errors["method"]))
        groups = list(dict.fromkeys(self.errors["group"]))
        t = self.errors.pivot_table(index="method", columns="group", values=metric, aggfunc=stat, sort=False)
        t = t.reindex(index=methods, columns=groups)
        if overall:
            t["overall"] = self.errors.groupby("method", sort=False)[metric].agg(stat).reindex(methods)
        t.index.name = f"{METRIC_LABELS[metric]}, {stat}"
        t.columns.name = self.group_name
        return t

    def best(self, metric: str = "rmse_mm") -> str:
        """The method with the lowest overall mean ``metric``."""
        return str(self.table(metric)["overall"].idxmin())


def reconstruction_errors(model, recon: Mapping[str, np.ndarray], truth: np.ndarray, groups: Sequence,
                          group_name: str = "group", radius_mm: float = metrics.CROP_RADIUS_MM,
                          subjects: Sequence | None = None) -> ReconResult:
    """Errors of Sec. 4.1 of each method's reconstructions against the ground truth.

    Parameters
    ----------
    model : MorphableModel
        Gives the topology: landmarks (for the Procrustes alignment) and the nose tip (crop).
    recon : mapping method -> ndarray (N, n, 3)
        Reconstructed shapes, mm, in the same order as ``truth``.
    truth : ndarray (N, n, 3)
        Ground-truth shapes, mm.
    groups : sequence (N,)
        Group of each shape (yaw angle, expression name, ...).
    subjects : sequence (N,), optional
        Subject of each shape; when given, ``errors`` has a ``subject`` column (the Table 1
        slope test of :mod:`.claims` pairs the methods by subject).

    Returns
    -------
    ReconResult

    Raises
    ------
    ValueError
        A method with another number of shapes than ``truth``, or (from
        :func:`metrics.model_shape_error`) a vertex-count mismatch.
    """
    truth = np.asarray(truth, dtype=np.float64)
    groups = np.asarray(groups)
    if truth.ndim != 3 or groups.shape != (truth.shape[0],):
        raise ValueError(f"truth must be (N, n, 3) with groups (N,), got {truth.shape} and {groups.shape}")
    if subjects is not None:
        subjects = np.asarray(subjects)
        if subjects.shape != groups.shape:
            raise ValueError(f"subjects must be ({groups.size},), got {subjects.shape}")
    frames = []
    for name, r in recon.items():
        r = np.asarray(r, dtype=np.float64)
        if r.shape[0] != truth.shape[0]:
            raise ValueError(f"method {name!r} has {r.shape[0]} shapes, the ground truth {truth.shape[0]}")
        e = metrics.model_shape_error(model, r, truth, radius_mm=radius_mm)
        f = pd.DataFrame({"method": name, "group": groups, "paper": e.paper, "mean_mm": e.mean_mm,
                          "rmse_mm": e.rmse_mm, "n_kept": e.n_kept})
        if subjects is not None:
            f["subject"] = subjects
        frames.append(f)
    return ReconResult(pd.concat(frames, ignore_index=True), group_name)


def reconstruction_vs_yaw(model, recon: Mapping[str, np.ndarray], truth: np.ndarray, yaw_deg: Sequence[float],
                          step_deg: float = 10.0, radius_mm: float = metrics.CROP_RADIUS_MM,
                          subjects: Sequence | None = None) -> ReconResult:
    """Table 1: reconstruction error against yaw (the bu3dfe-like sweep, -90..90 deg).

    ``yaw_deg`` (N,) is rounded to the nearest multiple of ``step_deg`` to form the columns;
    ``subjects`` (N,), optional, adds the ``subject`` column (see :func:`reconstruction_errors`).
    """
    yaw = np.round(np.asarray(yaw_deg, dtype=np.float64) / step_deg) * step_deg
    return reconstruction_errors(model, recon, truth, yaw.astype(int), "yaw (deg)", radius_mm, subjects)


def pooled_yaw_table(result: ReconResult, metric: str = "rmse_mm") -> pd.DataFrame:
    """Table 1 in the paper's layout: +yaw and -yaw pooled per magnitude, then their average.

    Each column ``"±m"`` is the mean ``metric`` over every image whose yaw is +m or -m
    degrees (so the two signs are weighted by their numbers of images); ``"0"`` is the frontal
    column. ``"Avg."`` is the unweighted mean of the pooled columns, as in the paper (whose
    Avg. is the mean of its ten columns, or of the six it reports for 3DMM-CNN): a column with
    no image of a method is NaN and left out of that method's average.

    Parameters
    ----------
    result : ReconResult
        From :func:`reconstruction_vs_yaw` (its groups are signed yaw angles in degrees).
    metric : str
        ``rmse_mm`` (mm; the only one to set beside the paper's values), ``mean_mm`` or ``paper``.

    Returns
    -------
    DataFrame
        Methods x [``"±90"``, ..., ``"±10"``, ``"0"``, ``"Avg."``] (magnitudes present in the data,
        largest first).

    Raises
    ------
    ValueError
        An unknown metric, or groups that are not yaw angles in degrees.
    """
    if metric not in METRIC_LABELS:
        raise ValueError(f"metric must be one of {sorted(METRIC_LABELS)}, got {metric!r}")
    e = result.errors
    try:
        yaw = pd.to_numeric(e["group"], errors="raise").astype(float)
    except (ValueError, TypeError):
        raise ValueError(f"pooled_yaw_table needs groups that are yaw angles (deg), got {e['group'].unique()[:5]}")
    mag = yaw.abs().round().astype(int)
    label = mag.map(lambda m: "0" if m == 0 else f"±{m}")
    order = [("0" if m == 0 else f"±{m}") for m in sorted(mag.unique(), reverse=True)]
    methods = list(dict.fromkeys(e["method"]))
    t = (e.assign(pooled=label).pivot_table(index="method", columns="pooled", values=metric, aggfunc="mean",
                                            sort=False).reindex(index=methods, columns=order))
    t["Avg."] = t[order].mean(axis=1, skipna=True)
    t.index.name = f"{METRIC_LABELS[metric]}, mean"
    t.columns.name = "|yaw| (deg), ± pooled"
    return t


def reconstruction_micc(model, recon: Mapping[str, np.ndarray], truth: np.ndarray, split: Sequence | None = None,
                        radius_mm: float = metrics.CROP_RADIUS_MM) -> ReconResult:
    """Table 2: reconstruction error on the micc-like protocol (optionally split by ``split``)."""
    groups = np.full(np.asarray(truth).shape[0], "micc-like") if split is None else np.asarray(split)
    r = reconstruction_errors(model, recon, truth, groups, "split", radius_mm)
    return r


def rmse_per_expression(model, recon: Mapping[str, np.ndarray], truth: np.ndarray, expression: Sequence[str],
                        radius_mm: float = metrics.CROP_RADIUS_MM) -> ReconResult:
    """Figs. 6-7: error per expression.

    For Fig. 6 pass full reconstructed shapes and full ground-truth shapes; for Fig. 7 pass the
    identity components (``s_mean + Delta s_Id``) and the ground-truth identity shapes
    (``model.identity_shape(alpha_id)``): an identity component that does not move with the
    expression keeps the same error in every column.
    """
    return reconstruction_errors(model, recon, truth, np.asarray(expression).astype(str), "expression", radius_mm)


def error_map(model, recon: np.ndarray, truth: np.ndarray, radius_mm: float = metrics.CROP_RADIUS_MM):
    """Per-vertex error of one reconstruction after the Sec. 4.1 alignment (for heat maps).

    Parameters
    ----------
    recon, truth : ndarray (n, 3), mm

    Returns
    -------
    aligned : ndarray (n, 3)
        The reconstruction after the landmark Procrustes fit, mm.
    distance : ndarray (n,)
        ``||aligned_i - truth_i||`` in mm, 0 outside the crop.
    keep : ndarray (n,) bool
        Ground-truth vertices inside the ``radius_mm`` crop around the nose tip.
    error : metrics.ShapeError
    """
    err, aligned = metrics.model_shape_error(model, recon, truth, radius_mm=radius_mm, return_aligned=True)
    truth = np.asarray(truth, dtype=np.float64)
    keep = np.linalg.norm(truth - truth[model.nose_tip], axis=1) <= radius_mm
    dist = np.where(keep, np.linalg.norm(aligned - truth, axis=1), 0.0)
    return aligned, dist, keep, err


def scan_reconstruction_errors(model, recon: Mapping[str, np.ndarray], scans: Sequence, landmarks68=None,
                               groups: Sequence | None = None, group_name: str = "expression",
                               radius_mm: float = metrics.CROP_RADIUS_MM, correspondence: str = "surface"
                               ) -> ReconResult:
    """Sec. 4.1 errors against real 3D scans (BU-3DFE, MICC): another topology, so each kept
    scan vertex is compared with the nearest point of the aligned reconstruction's surface
    (``correspondence="surface"``, the NoW benchmark's scan-to-mesh direction,
    :func:`trimesh.proximity.closest_point`) or with its nearest vertex (``"nearest"``,
    cKDTree). The alignment is one Umeyama similarity on the 68 landmarks (no reflection, no
    ICP-like refinement as NoW has; see :mod:`.metrics.shape_error`).

    Parameters
    ----------
    model : MorphableModel
        Topology of the reconstructions (their 68 landmarks are ``model.landmarks``).
    recon : mapping method -> ndarray (N, n, 3)
        Reconstructions of the images that correspond to ``scans`` (same order), mm.
    scans : sequence of data.Scan3D
        Ground truth, mm.
    landmarks68 : sequence of ndarray (68, 3), optional
        iBUG-68 landmarks of each scan, mm. Needed when a scan's own landmarks are not 68
        points (BU-3DFE ships 83): annotate them or take them from a 3DMM fitted to the scan.
        The nose tip is landmark 31 (index 30).
    groups : sequence (N,), optional
        Default: each scan's ``expression``.
    correspondence : {"surface", "nearest"}
        Scan vertex to reconstructed surface (triangles ``model.triangles``) or to the
        nearest reconstructed vertex.

    Raises
    ------
    ValueError
        When a scan has no 68 landmarks and none are given, the counts differ, or
        ``correspondence`` is neither.
    """
    if correspondence not in ("surface", "nearest"):
        raise ValueError(f"correspondence must be 'surface' or 'nearest' for scans, got {correspondence!r}")
    scans = list(scans)
    lms = []
    for i, sc in enumerate(scans):
        lm = landmarks68[i] if landmarks68 is not None else sc.landmarks
        lm = None if lm is None else np.asarray(lm, dtype=np.float64)
        if lm is None or lm.shape != (68, 3):
            raise ValueError(f"scan {i} ({getattr(sc, 'source', '')}): need 68 iBUG landmarks (68, 3) in mm, got "
                             f"{None if lm is None else lm.shape}; pass landmarks68=")
        lms.append(lm)
    groups = np.array([getattr(s, "expression", "all") for s in scans] if groups is None else groups).astype(str)
    frames = []
    for name, r in recon.items():
        r = np.asarray(r, dtype=np.float64)
        if r.shape[0] != len(scans):
            raise ValueError(f"method {name!r} has {r.shape[0]} shapes for {len(scans)} scans")
        rows = []
        for i, sc in enumerate(scans):
            e = metrics.shape_error(r[i], sc.vertices, model.landmarks_of(r[i]), lms[i], lms[i][NOSE_TIP_LANDMARK],
                                    radius_mm=radius_mm, correspondence=correspondence,
                                    recon_triangles=model.triangles if correspondence == "surface" else None)
            rows.append(e.as_dict())
        f = pd.DataFrame(rows)
        f.insert(0, "group", groups)
        f.insert(0, "method", name)
        frames.append(f)
    return ReconResult(pd.concat(frames, ignore_index=True), group_name)
