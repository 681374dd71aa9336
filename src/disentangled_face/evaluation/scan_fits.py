"""A real textured scan, rendered, detected and fitted: errors against the scan itself.

:func:`render_scan` draws a textured scan (:mod:`disentangled_face.data.scan_texture`) with the
project's renderer and camera (Eq. 6) at several yaws; :func:`scan_fit_experiment` then does
what a user would do with such images (detect the 68 landmarks, fit the 3DMM to one image at
a time and to all of them together, run the trained network) and measures every result
against the scan (:func:`~.reconstruction.scan_reconstruction_errors`: the Sec. 4.1
similarity on the 68 landmarks, the 95 mm nose-tip crop of the scan, each kept scan vertex to
the nearest point of the reconstruction's surface or to its nearest vertex), beside the mean
face's error, the floor every method must beat.

The *projected-landmark* variant fits the scan's own 68 3D landmarks projected with the
renders' cameras instead of the detections, so the difference between the two rows is the
detector's share of the error and what remains is the fitter's (with the model, the prior and
the landmark definitions). Those landmarks are fixed surface points: their jaw points are not
on the silhouette at a yaw, so they are fitted with fixed landmark vertices
(``contour="none"``), and also, for comparison, with the profile's correspondence.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from ..data.render import Light, Renderer, create_context, vertex_normals
from ..shape import camera
from ..shape.procrustes import apply_similarity, similarity_procrustes
from . import metrics
from .reconstruction import ReconResult, scan_reconstruction_errors

__all__ = ["SCAN_YAWS_DEG", "SCAN_RENDER_SIZE", "SCAN_RENDER_SCALE", "ScanRenders", "ScanFitResult",
           "canonical_rotation", "render_scan", "scan_fit_experiment", "scan_distance_map", "scan_crop_mesh"]

#: Yaws (degrees) of the renders.
SCAN_YAWS_DEG = (0.0, 30.0, 60.0)
#: Render size (H, W) pixels: four times the networks' 112 x 96, so that the face is as large as
#: a 68-point detector expects (about 120 pixels between the outer eye corners at yaw 0).
SCAN_RENDER_SIZE = (448, 384)
#: Camera scale f, pixels per mm.
SCAN_RENDER_SCALE = 1.3


@dataclass
class ScanRenders:
    """Renders of one scan at B yaws, with their cameras (Eq. 6, applied to the scan's coordinates).

    Attributes
    ----------
    images : ndarray (B, H, W, 3) uint8
    mask : ndarray (B, H, W) bool, pixels on the scan
    yaw_deg : ndarray (B,), degrees
    R : ndarray (B, 3, 3)
        Camera rotation of the scan's coordinates: ``R_y(yaw) @ canonical``.
    f : ndarray (B,), pixels per mm
    t : ndarray (B, 2), pixels
    canonical : ndarray (3, 3)
        The rotation that turns the scan to face the camera like the mean face
        (:func:`canonical_rotation`).
    landmarks2d : ndarray (B, 68, 2), pixels
        The scan's 68 3D landmarks projected with each camera.
    """

    images: np.ndarray
    mask: np.ndarray
    yaw_deg: np.ndarray
    R: np.ndarray
    f: np.ndarray
    t: np.ndarray
    canonical: np.ndarray
    landmarks2d: np.ndarray


def canonical_rotation(landmarks: np.ndarray, model) -> np.ndarray:
    """The rotation (3, 3) of the similarity mapping a scan's 68 landmarks onto the mean face's.

    Applied to the scan it faces the camera as the model's mean face does (x to the right in
    a frontal image, y up, z toward the camera), so that its renders' yaws are the model's.

    Raises
    ------
    ValueError
        ``landmarks`` not (68, 3).
    """
    lm = np.asarray(landmarks, np.float64)
    if lm.shape != (68, 3):
        raise ValueError(f"landmarks must be (68, 3), got {lm.shape}")
    _, R, _ = similarity_procrustes(lm, np.asarray(model.landmarks_of(model.mean), np.float64))
    return R


def render_scan(scan, mesh, model, yaws_deg: Sequence[float] = SCAN_YAWS_DEG,
                size: tuple[int, int] = SCAN_RENDER_SIZE, scale: float = SCAN_RENDER_SCALE,
                background: float = 0.5, light: Light | None = None) -> ScanRenders:
    """Render a textured scan at several yaws with the project's renderer and camera (Eq. 6).

    The scan is first turned to face the camera (:func:`canonical_rotation`), then rotated by
    each yaw; the 68 landmarks' centroid projects to the image centre. The drawn mesh is
    ``mesh`` (:func:`~disentangled_face.data.scan_texture.render_mesh`: the scan split at its
    texture seams, subdivided, coloured from the texture), smooth-shaded under a white light
    that adds a little shape shading to the texture's own (ambient 0.8, frontal diffuse 0.3 by
    default); back faces are drawn too (an open scan shows its inside at the edges).

    Parameters
    ----------
    scan : data.Scan3D
        Vertices and 68 landmarks (mm).
    mesh : data.scan_texture.RenderMesh
        The mesh to draw, in the scan's coordinates (mm).
    model : MorphableModel
        Its mean face gives the frontal orientation.
    yaws_deg : sequence of float
        Degrees; positive turns the nose to the image's right.
    size : (H, W)
        Pixels.
    scale : float
        f, pixels per mm.
    background : float
        Grey level in [0, 1] of the pixels off the scan.
    light : Light, optional
        One per render.

    Returns
    -------
    ScanRenders

    Raises
    ------
    ValueError
        A scan without 68 landmarks, a non-positive ``scale``, no yaw.
    disentangled_face.data.render.RendererUnavailableError
        No headless OpenGL context.
    """
    if scan.landmarks is None or np.shape(scan.landmarks) != (68, 3):
        got = None if scan.landmarks is None else np.shape(scan.landmarks)
        raise ValueError(f"the scan needs 68 landmarks (68, 3), got {got}")
    yaws = np.asarray(yaws_deg, np.float64).reshape(-1)
    if yaws.size == 0 or not scale > 0:
        raise ValueError(f"need at least one yaw and a positive scale, got {yaws_deg!r} and {scale}")
    B, (H, W) = len(yaws), size
    R0 = canonical_rotation(scan.landmarks, model)
    R = camera.rotation_from_euler(np.radians(yaws), np.zeros(B), np.zeros(B)) @ R0
    f = np.full(B, float(scale))
    lm = np.asarray(scan.landmarks, np.float64)
    centre = camera.project(np.repeat(lm.mean(0)[None, None], B, 0), R, f, np.zeros((B, 2)))[:, 0]
    t = np.array([W / 2.0, H / 2.0]) - centre            # the landmarks' centroid at the image centre
    P = np.repeat(np.asarray(mesh.vertices, np.float64)[None], B, 0)
    uvz = np.concatenate([camera.project(P, R, f, t), camera.depth(P, R)[..., None]], -1)
    normals = vertex_normals(P @ np.swapaxes(R, 1, 2), mesh.triangles)
    renderer = Renderer(mesh.triangles, len(mesh.vertices), height=H, width=W, max_batch=B, ctx=create_context(),
                        cull_back=False)
    try:
        out = renderer.render(uvz, normals=normals, albedo=mesh.colors,
                              light=light if light is not None else Light.frontal(B, ambient=0.8, diffuse=0.3))
    finally:
        renderer.release()
    bg = np.uint8(round(255 * float(background)))
    images = np.where(out.mask[..., None], out.rgb, bg).astype(np.uint8)
    return ScanRenders(images, out.mask, yaws, R, f, t, R0, camera.project(np.repeat(lm[None], B, 0), R, f, t))


@dataclass
class ScanFitResult:
    """Everything :func:`scan_fit_experiment` computed.

    Attributes
    ----------
    renders : ScanRenders
    detections : list of Detection, one per render
    fits : dict name -> list of FitResult
        Single-image methods: one fit per render with a face (None where none was found);
        multi-image methods: one fit of all of them.
    shapes : dict name -> ndarray (B, n, 3), mm
        Each method's full shape per render (NaN where it has none); the mean face repeated.
    errors : dict correspondence -> ReconResult
        ``"surface"`` and ``"nearest"``: one row per (method, render), groups the yaws.
    detector_rmse_px : ndarray (B,)
        RMSE between the detected and the projected landmarks, pixels (NaN where none).
    detector_rmse_iod : ndarray (B,)
        The same over the projected outer-eye-corner distance (36-45) at yaw 0.
    notes : list of str
        Renders without a face, and the fits' quality warnings (soft signs), in order.
    landmark_errors : DataFrame
        Per (method, render): the 3D distance (mm, RMS) between the method's 68 landmark
        vertices and the scan's 68 landmarks after the Sec. 4.1 alignment, over all 68
        (``all``), the jaw 0-16 (``jaw``) and the other 51 (``inner``).
    """

    renders: ScanRenders
    detections: list
    fits: dict
    shapes: dict
    errors: dict
    detector_rmse_px: np.ndarray
    detector_rmse_iod: np.ndarray
    notes: list = field(default_factory=list)
    landmark_errors: pd.DataFrame | None = None

    def landmark_table(self, which: str = "all") -> pd.DataFrame:
        """Methods x yaw (degrees) table of the aligned landmark RMS distance (mm): ``which`` is
        ``all``, ``jaw`` or ``inner``, with an ``overall`` column (mean over the renders)."""
        e = self.landmark_errors
        t = e.pivot_table(index="method", columns="yaw (deg)", values=which, sort=False)
        t = t.reindex(index=list(dict.fromkeys(e["method"])), columns=list(dict.fromkeys(e["yaw (deg)"])))
        t["overall"] = e.groupby("method", sort=False)[which].mean()
        t.index.name = f"landmark RMS distance (mm), {which}"
        return t

    def table(self, metric: str = "rmse_mm", correspondence: str = "surface") -> pd.DataFrame:
        """Methods x yaw (degrees) table of ``metric`` (mm), with an ``overall`` column."""
        return self.errors[correspondence].table(metric)


def scan_distance_map(model, shape: np.ndarray, scan, radius_mm: float = metrics.CROP_RADIUS_MM
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Per scan vertex, the distance (mm) to a reconstruction's surface after the Sec. 4.1 alignment.

    Parameters
    ----------
    model : MorphableModel
    shape : ndarray (n, 3), mm, of the model's topology
    scan : data.Scan3D, with 68 landmarks

    Returns
    -------
    distance : ndarray (m,), mm, 0 outside the crop
    keep : ndarray (m,) bool, scan vertices within ``radius_mm`` of its nose tip (landmark 30)
    """
    from ..shape import NOSE_TIP_LANDMARK

    s = np.asarray(shape, np.float64)
    c, R, t = similarity_procrustes(model.landmarks_of(s), scan.landmarks)
    keep = np.linalg.norm(scan.vertices - scan.landmarks[NOSE_TIP_LANDMARK], axis=1) <= radius_mm
    d = np.zeros(len(scan.vertices))
    d[keep] = metrics.surface_distance(scan.vertices[keep], apply_similarity(s, c, R, t), model.triangles)
    return d, keep


def scan_crop_mesh(scan, keep: np.ndarray, rotation: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The part of a scan's mesh inside a crop (for drawing its distance maps).

    Parameters
    ----------
    scan : data.Scan3D
    keep : ndarray (m,) bool
        The scan vertices to keep (:func:`scan_distance_map`'s crop).
    rotation : ndarray (3, 3), optional
        Applied to the vertices (e.g. ``ScanRenders.canonical``, to face the viewer).

    Returns
    -------
    vertices : ndarray (k, 3), mm
    triangles : ndarray (q, 3), int64, the triangles with all three corners kept, re-indexed
    index : ndarray (k,), int64, the kept vertices' indices in the scan
    """
    keep = np.asarray(keep, bool)
    index = np.flatnonzero(keep)
    new = np.full(len(keep), -1, np.int64)
    new[index] = np.arange(index.size)
    tri = np.asarray(scan.triangles, np.int64)
    tri = new[tri[keep[tri].all(1)]]
    V = np.asarray(scan.vertices, np.float64)[index]
    return (V @ np.asarray(rotation).T if rotation is not None else V), tri, index


def _errors(model, shapes: dict, scan, yaws: np.ndarray, radius_mm: float, correspondence: str) -> ReconResult:
    frames = []
    for name, S in shapes.items():
        ok = np.flatnonzero(np.isfinite(S).all(axis=(1, 2)))
        if not ok.size:
            continue
        r = scan_reconstruction_errors(model, {name: S[ok]}, [scan] * len(ok), groups=[f"{y:g}" for y in yaws[ok]],
                                       group_name="yaw (deg)", radius_mm=radius_mm, correspondence=correspondence)
        frames.append(r.errors)
    return ReconResult(pd.concat(frames, ignore_index=True), "yaw (deg)")


def scan_fit_experiment(model, scan, renders: ScanRenders, options, detector, networks: dict | None = None,
                        radius_mm: float = metrics.CROP_RADIUS_MM,
                        correspondences: Sequence[str] = ("surface", "nearest")) -> ScanFitResult:
    """Detect, fit and reconstruct the renders of a scan; errors against the scan (mm).

    Methods (names of the result's tables):

    * ``mean face``: the model's mean shape;
    * ``single-image fit`` / ``multi-image fit``: the 3DMM fitted to the detected landmarks of
      each render alone (:func:`~disentangled_face.fitting.fit_single_image`) or of all renders
      together (:func:`~disentangled_face.fitting.fit_shape_and_pose`, Eq. 7: one identity,
      per-image pose and expression), with ``options`` (the profile's ``cfg.fitting``);
    * ``... (projected)``: the same on the scan's own 68 landmarks projected with each render's
      camera, with fixed landmark vertices (``contour="none"``), and ``... (projected,
      profile's contour)`` with ``options`` unchanged;
    * each network of ``networks`` on each render (:func:`.photos.reconstruct_photo`, the
      detected landmarks aligning the crop).

    Parameters
    ----------
    model : MorphableModel
    scan : data.Scan3D
        The scan (mm, 68 landmarks in iBUG order).
    renders : ScanRenders
        :func:`render_scan` of ``scan``.
    options : FittingConfig
    detector : LandmarkDetector
        E.g. ``LandmarkDetector.from_config(cfg.landmarks)``; the largest face of each render.
    networks : dict name -> network, optional
        E.g. ``{"Proposed": trained_networks(cfg)["phase3"]}`` (decoding with its own decoders).
    radius_mm : float
        The crop (95 mm).
    correspondences : sequence of {"surface", "nearest"}
        Which errors to compute (``ScanFitResult.errors`` keys).

    Returns
    -------
    ScanFitResult

    Raises
    ------
    ValueError
        No face found in any render.
    """
    from .. import fitting
    from .photos import reconstruct_photo

    B = len(renders.images)
    nan = np.full((B, model.n_vertices, 3), np.nan)
    dets = [detector.detect(im) for im in renders.images]
    found = [i for i, d in enumerate(dets) if d.found]
    if not found:
        raise ValueError(f"the {detector.backend} detector found no face in any of the {B} renders")
    proj = renders.landmarks2d
    iod = np.linalg.norm(proj[0, 36] - proj[0, 45])
    det_px = np.array([np.sqrt(((d.points - p) ** 2).sum(-1).mean()) if d.found else np.nan for d, p in zip(dets, proj)])
    shapes: dict[str, np.ndarray] = {"mean face": np.repeat(np.asarray(model.mean, np.float64)[None], B, 0)}
    fits: dict[str, list] = {}
    notes = [f"no face found at yaw {renders.yaw_deg[i]:g} deg" for i in range(B) if i not in found]

    def single(name, points, **kw):
        S, out = nan.copy(), [None] * B
        for i in found if points is None else range(B):
            out[i] = fitting.fit_single_image(model, dets[i].points if points is None else points[i], options, **kw)
            S[i] = out[i].shapes(model)[0]
        shapes[name], fits[name] = S, out

    def multi(name, points, **kw):
        idx = found if points is None else list(range(B))
        fit = fitting.fit_shape_and_pose(model, [dets[i].points for i in idx] if points is None else points, options, **kw)
        S = nan.copy()
        S[idx] = fit.shapes(model)
        shapes[name], fits[name] = S, [fit]

    with warnings.catch_warnings(record=True) as caught:   # the fits' soft signs: kept in notes, not printed
        warnings.simplefilter("always", UserWarning)
        single("single-image fit", None)
        multi("multi-image fit", None)
        single("single-image fit (projected)", proj, contour="none")
        multi("multi-image fit (projected)", proj, contour="none")
        single("single-image fit (projected, profile's contour)", proj)
        multi("multi-image fit (projected, profile's contour)", proj)
    notes += [str(w.message) for w in caught]
    for name, net in (networks or {}).items():
        S = nan.copy()
        for i in found:
            S[i] = reconstruct_photo(net, renders.images[i], dets[i].points, model).shape
        shapes[f"{name} network"] = S
    errors = {c: _errors(model, shapes, scan, renders.yaw_deg, radius_mm, c) for c in correspondences}
    return ScanFitResult(renders, dets, fits, shapes, errors, det_px, det_px / iod, notes,
                         _landmark_errors(model, shapes, scan, renders.yaw_deg))


def _landmark_errors(model, shapes: dict, scan, yaws: np.ndarray) -> pd.DataFrame:
    """The 3D landmark residuals of the Sec. 4.1 alignment, per method and render (RMS, mm)."""
    rows = []
    for name, S in shapes.items():
        for i in np.flatnonzero(np.isfinite(S).all(axis=(1, 2))):
            L = np.asarray(model.landmarks_of(S[i]), np.float64)
            c, R, t = similarity_procrustes(L, scan.landmarks)
            d = np.linalg.norm(apply_similarity(L, c, R, t) - scan.landmarks, axis=1)
            rms = lambda x: float(np.sqrt((x ** 2).mean()))
            rows.append({"method": name, "yaw (deg)": f"{yaws[i]:g}", "all": rms(d), "jaw": rms(d[:17]),
                         "inner": rms(d[17:])})
    return pd.DataFrame(rows)
