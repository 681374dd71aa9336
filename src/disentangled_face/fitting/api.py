"""The public fitting functions: one subject's images, one image, photographs, many subjects.

Each takes the fitter options as ``options`` (a :class:`~disentangled_face.config.FittingConfig`,
normally ``cfg.fitting``; default: its typed defaults) and keyword overrides of single options
(``joint_iters=0``), validated (:func:`~disentangled_face.fitting.checks.fitter_options`).
Everything runs batched in torch over many images and subjects at once, deterministically.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from ..config import FittingConfig
from ..shape import MorphableModel, camera
from .alternation import Fitter, alternate
from .checks import check_landmarks, check_model, fitter_options, split_detections
from .joint import refine
from .pose import flip
from .quality import FitQuality, assess, check_landmark_order

__all__ = ["ImageParameters", "ShapeAndPose", "FitResult", "SubjectsFit", "fit_shape_and_pose", "fit_single_image", "fit_images", "fit_subjects"]


@dataclass
class ImageParameters:
    """Per-image parameters every fit result and simulated set carries (M images).

    ``alpha_exp`` (M, k_exp) expression weights; the weak-perspective camera ``R`` (M, 3, 3),
    ``f`` (M,) pixels per mm, ``t`` (M, 2) pixels (:func:`disentangled_face.shape.camera.project`);
    ``yaw``, ``pitch``, ``roll`` (M,) radians, ``camera.euler_from_rotation(R)``.
    """

    alpha_exp: np.ndarray
    R: np.ndarray
    f: np.ndarray
    t: np.ndarray
    yaw: np.ndarray
    pitch: np.ndarray
    roll: np.ndarray


@dataclass
class ShapeAndPose(ImageParameters):
    """One subject's shared ``alpha_id`` (k_id,) and its M images' parameters: what a fit
    estimates, without its diagnostics (also the state of the alternation after one iteration,
    ``FitResult.iterates``)."""

    alpha_id: np.ndarray

    def shapes(self, model: MorphableModel) -> np.ndarray:
        """Fitted full shapes ``s_i`` (M, n, 3), mm (Eq. 6)."""
        return model.shape(np.repeat(self.alpha_id[None], len(self.f), 0), self.alpha_exp)

    def identity_shape(self, model: MorphableModel) -> np.ndarray:
        """Fitted neutral identity shape ``s_mean + A_id alpha_id`` (n, 3), mm."""
        return model.identity_shape(self.alpha_id)

    def project(self, model: MorphableModel) -> np.ndarray:
        """The fitted landmarks in the images (M, 68, 2), pixels."""
        return camera.project(model.landmarks_of(self.shapes(model)), self.R, self.f, self.t)


@dataclass
class FitResult(ShapeAndPose):
    """The fit of one subject's images (Eq. 7).

    Attributes
    ----------
    alpha_id : ndarray (k_id,)
        Shared identity code (standard-normal units).
    alpha_exp : ndarray (M, k_exp)
        Per-image expression weights.
    R : ndarray (M, 3, 3); f : ndarray (M,) pixels per mm; t : ndarray (M, 2) pixels
        Per-image weak-perspective camera (see :func:`disentangled_face.shape.camera.project`).
    yaw, pitch, roll : ndarray (M,), radians
        ``camera.euler_from_rotation(R)``.
    objective : list of float
        ``E`` (Eq. 7, mm^2) after every step: pose, expression, identity, pose, ...
    steps : list of str
        Which step each ``objective`` entry follows.
    n_iter : int
        Full iterations run.
    converged : bool
        Whether the relative change fell below ``tol`` before ``max_iter``.
    rmse_px : ndarray (M,)
        Landmark reprojection RMSE per image (pixels, over the 2D points).
    kept : list of int
        Indices (into the input) of the images fitted.
    discarded : list of int
        Indices of the input images skipped (no face found).
    quality : FitQuality
        The fit's quality report (:class:`~disentangled_face.fitting.quality.FitQuality`):
        per-landmark residuals, reprojection error in inter-ocular units, largest ``|alpha_id|``,
        convergence by the paper's rule; ``print(fit.quality.summary())``.
    iterates : list of ShapeAndPose
        Only with ``keep_iterates=True``: the parameters after iteration 0 (the first pose step,
        on the mean face) and after every iteration of the alternation, ``iterates[k]`` after
        iteration ``k`` (the joint refinement's result is the fit itself).
    landmark_vertices : ndarray (M, 68) int or None
        The vertex each landmark was fitted to in every image: ``model.landmarks``, with the
        jaw landmarks at their final contour vertices under ``contour: marching``.
    """

    objective: list
    steps: list
    n_iter: int
    converged: bool
    rmse_px: np.ndarray
    kept: list = field(default_factory=list)
    discarded: list = field(default_factory=list)
    quality: FitQuality | None = None
    iterates: list = field(default_factory=list)
    landmark_vertices: np.ndarray | None = None


@dataclass
class SubjectsFit(ImageParameters):
    """Per-image results of :func:`fit_subjects` (N images of S subjects).

    ``alpha_id`` (N, k_id) repeats each subject's shared code on its images; ``subject_alpha_id``
    (S, k_id) holds it once per subject in the order of ``subjects`` (the sorted unique
    labels). ``landmark_vertices`` (N, 68) is the vertex each landmark was fitted to (the jaw's
    contour vertices under ``contour: marching``). ``objective`` (S, n_steps) is each subject's E after every step (``steps`` names
    them); ``subject_n_iter`` (S,) the alternation iterations each subject ran before its
    relative change fell below ``tol``; ``n_iter`` their maximum. ``quality`` is the fit's
    :class:`~disentangled_face.fitting.quality.FitQuality` (per image in the input order, per
    subject in the order of ``subjects``).
    """

    label: np.ndarray
    alpha_id: np.ndarray
    rmse_px: np.ndarray
    subjects: np.ndarray
    subject_alpha_id: np.ndarray
    objective: np.ndarray
    steps: list
    n_iter: int
    converged: bool
    subject_n_iter: np.ndarray
    quality: FitQuality | None = None
    landmark_vertices: np.ndarray | None = None

    def shapes(self, model: MorphableModel, idx: Any = None) -> np.ndarray:
        """Fitted shapes of images ``idx`` (all when None), (B, n, 3) mm."""
        idx = np.arange(len(self.label)) if idx is None else np.atleast_1d(idx)
        return model.shape(self.alpha_id[idx], self.alpha_exp[idx])


def _solve(fitter: Fitter, opts: FittingConfig, verbose: bool, snapshots: list | None = None):
    """The alternation, then the joint refinement, in torch's no-grad mode with ``opts.threads``."""
    threads = torch.get_num_threads()
    if opts.threads:
        torch.set_num_threads(opts.threads)
    try:
        with torch.no_grad():
            st, history, steps, n_iter, conv, sub_it = alternate(fitter, opts.max_iter, opts.tol, verbose, snapshots)
            if opts.joint_iters:
                st, more, more_steps = refine(fitter, st, opts.joint_iters)
                history, steps = history + more, steps + more_steps
            rmse = fitter.rmse_px(st)
    finally:
        torch.set_num_threads(threads)
    return st, np.stack(history, 1), steps, n_iter, conv, sub_it, rmse


def _arrays(st) -> dict[str, np.ndarray]:
    """A fitter state as float64 arrays in image coordinates (t with v down), with its angles."""
    R = st.R.double().numpy()
    yaw, pitch, roll = camera.euler_from_rotation(R)
    return dict(a_id=st.a_id.double().numpy(), a_exp=st.a_exp.double().numpy(), R=R,
                f=st.f.double().numpy(), t=flip(st.t).double().numpy(), yaw=yaw, pitch=pitch, roll=roll)


def _run(model: MorphableModel, y: np.ndarray, subj: np.ndarray, S: int, opts: FittingConfig,
         exp_solver: str = "torch", verbose: bool = False, keep_iterates: bool = False) -> dict[str, Any]:
    """Fit checked landmarks y (N, L, 2) of S subjects (``subj`` (N,) in [0, S)); plain arrays.

    With ``opts.id_modes`` = K below the model's modes the fitter sees the first K identity
    modes only, and the returned ``a_id`` is padded with zeros to all of the model's."""
    basis = _fitting_basis(model, opts)
    fitter = Fitter(basis, y, subj, S, opts, exp_solver)
    snapshots = [] if keep_iterates else None
    st, hist, steps, n_iter, conv, sub_it, rmse = _solve(fitter, opts, verbose, snapshots)

    def arrays(state):
        a = _arrays(state)
        a["a_id"] = np.pad(a["a_id"], ((0, 0), (0, model.n_id - basis.n_id)))
        return a

    return dict(arrays(st), hist=hist, steps=steps, n_iter=n_iter, converged=conv,
                rmse=rmse.double().numpy(), subject_iters=sub_it, vertices=fitter.landmark_vertices(basis),
                iterates=[arrays(s) for s in snapshots or []])


def _fitting_basis(model: MorphableModel, opts: FittingConfig) -> MorphableModel:
    """The model the fitter sees: its first ``opts.id_modes`` identity modes (all when None)."""
    k = opts.id_modes
    if k is None or k == model.n_id:
        return model
    if k > model.n_id:
        raise ValueError(f"fitting.id_modes = {k} but the model has {model.n_id} identity modes")
    return model.subset(n_id=k)


def fit_shape_and_pose(model: MorphableModel, landmarks2d: Any, options: FittingConfig | None = None, *,
                       exp_solver: str = "torch", verbose: bool = False, check_order: bool = True,
                       keep_iterates: bool = False, **overrides: Any) -> FitResult:
    """Fit one subject's images at once: shared ``alpha_id``, per-image pose and ``alpha_exp``.

    The paper's multi-image fitter (Sec. 3.3, Eq. 6-7): from ``alpha_id = alpha_exp = 0``,
    alternate pose -> expression -> identity until the relative change of ``E`` over an
    iteration is below ``tol``, then ``joint_iters`` Levenberg-Marquardt steps.

    Parameters
    ----------
    model : MorphableModel
    landmarks2d : ndarray (M, 68, 2) or (68, 2), or a sequence of (68, 2) arrays or
        :class:`~disentangled_face.data.landmarks.Detection` results
        Landmarks in pixels (u right, v down), iBUG order. Detections with ``found=False``
        are discarded with a warning and listed in ``FitResult.discarded``.
    options : FittingConfig, optional
        The fitter options (``cfg.fitting``); default: :class:`FittingConfig`'s defaults.
    exp_solver : {'torch', 'scipy'}
        Bounded expression step: batched projected gradient + active-set polish (torch), or
        :func:`scipy.optimize.lsq_linear` per image (reference).
    verbose : bool
        Log the objective after every iteration.
    check_order : bool
        Check the landmark order against iBUG's 68 points before fitting (68-point models;
        :func:`~disentangled_face.fitting.quality.check_landmark_order`). ``False`` skips it
        (for a model whose 68 landmarks follow another scheme).
    keep_iterates : bool
        Keep the parameters after every iteration of the alternation in ``FitResult.iterates``
        (iteration 0: the first pose step on the mean face), to show how the fit proceeds.
    **overrides
        Single fitter options replacing those of ``options``: ``lambda_id``, ``lambda_exp``
        (mm^2), ``max_iter``, ``tol``, ``pose_refine``, ``exp_iters``, ``active_set_iters``,
        ``joint_iters``, ``dtype``, ``threads`` (see :class:`FittingConfig`).

    Returns
    -------
    FitResult
        With its ``quality`` report; soft signs (a reprojection RMSE above 0.1 or a single
        landmark residual above 0.35 inter-ocular distances, ``|alpha_id|`` beyond 5 SD) give
        one ``UserWarning`` with the numbers.

    Raises
    ------
    ValueError
        Wrong shape (not (M, L, 2) with L the model's landmark count), NaN/inf coordinates,
        all landmarks at one point or on one line, or no usable image (every detection failed).
    LandmarkOrderError
        (a ValueError) The landmarks are decisively not in iBUG order: mirrored (left and right
        swapped), two points exchanged (e.g. outer eye corners 36 and 45), or another scheme.
    ConfigError
        An unknown option, or a value of the wrong type or range (a ValueError too).
    """
    opts = fitter_options(options, **overrides)
    check_model(model)
    arr, kept, discarded = split_detections(landmarks2d)
    y = check_landmarks(arr, model.landmarks.shape[0])
    if not kept or len(kept) != y.shape[0]:
        kept = list(range(y.shape[0]))
    if check_order:
        check_landmark_order(model, y)
    subj = np.zeros(y.shape[0], np.int64)
    r = _run(model, y, subj, 1, opts, exp_solver, verbose, keep_iterates)
    quality = _quality(model, y, subj, r["a_id"], r, r["hist"], r["subject_iters"], opts, check_order)
    iterates = [_shape_and_pose(a) for a in r["iterates"]]
    return FitResult(**vars(_shape_and_pose(r)), objective=r["hist"][0].tolist(),
                     steps=r["steps"], n_iter=r["n_iter"], converged=r["converged"],
                     rmse_px=r["rmse"], kept=kept, discarded=discarded, quality=quality, iterates=iterates,
                     landmark_vertices=r["vertices"])


def _shape_and_pose(a: dict[str, np.ndarray]) -> ShapeAndPose:
    """One subject's arrays of :func:`_arrays` as a :class:`ShapeAndPose`."""
    return ShapeAndPose(alpha_id=a["a_id"][0], alpha_exp=a["a_exp"], R=a["R"], f=a["f"], t=a["t"],
                        yaw=a["yaw"], pitch=a["pitch"], roll=a["roll"])


def _quality(model: MorphableModel, y: np.ndarray, subj: np.ndarray, a_id: np.ndarray, r: dict, hist: np.ndarray,
             iters: np.ndarray, opts: FittingConfig, checked: bool) -> FitQuality:
    """The quality report of a fit, with one warning summarising its soft signs."""
    q = assess(model, y, subj, a_id, r["a_exp"], r["R"], r["f"], r["t"], hist, iters, opts.tol,
               order_checked=checked and model.landmarks.shape[0] == 68, vertices=r.get("vertices"))
    q.warn(stacklevel=3)
    return q


def fit_single_image(model: MorphableModel, landmarks2d: Any, options: FittingConfig | None = None,
                     **kwargs: Any) -> FitResult:
    """Fit one image on its own (the single-image baseline of the paper's tables).

    Parameters
    ----------
    model : MorphableModel
    landmarks2d : ndarray (68, 2), pixels, or a :class:`~disentangled_face.data.landmarks.Detection`
    options : FittingConfig, optional
    **kwargs
        As :func:`fit_shape_and_pose` (``exp_solver``, ``verbose``, option overrides).

    Returns
    -------
    FitResult
        With M = 1 (``alpha_exp`` (1, k_exp), ``R`` (1, 3, 3), ...).

    Raises
    ------
    ValueError
        As :func:`fit_shape_and_pose`, and when more than one landmark set is given.
    NoFaceFound
        When given a detection that found no face.
    """
    arr = np.asarray(getattr(landmarks2d, "points", landmarks2d) if getattr(landmarks2d, "found", True)
                     else _raise_no_face())
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise ValueError(f"fit_single_image takes one landmark set (68, 2), got shape {arr.shape}")
    return fit_shape_and_pose(model, arr, options, **kwargs)


def _raise_no_face():
    from ..data.landmarks import NoFaceFound

    raise NoFaceFound("fit_single_image: the detection found no face")


def fit_images(model: MorphableModel, images: Sequence[Any], options: FittingConfig | None = None,
               detector: Any = None, face: Any = "largest", **kwargs: Any) -> FitResult:
    """Detect the 68 landmarks in every image of one subject and fit them together (Eq. 7).

    Images where no face is found are discarded with a warning (``FitResult.discarded`` lists
    them), as the paper discards the images its detector fails on.

    Parameters
    ----------
    model : MorphableModel
    images : sequence of ndarray
        Images of one subject, any format :func:`disentangled_face.data.landmarks.to_rgb_uint8` takes.
    options : FittingConfig, optional
        The fitter options (``cfg.fitting``).
    detector : LandmarkDetector, LandmarksConfig or str, optional
        A detector, the detector section of the configuration (``cfg.landmarks``: backend,
        upsampling, score thresholds), or the name of a backend (``'auto'``, ``'fan'``,
        ``'dlib'``), for the shared :func:`disentangled_face.data.landmarks.get_detector`.
        Default ``'auto'`` (FAN when its weights are cached, else dlib).
    face : 'largest', 'best', int, (left, top, right, bottom), or a list of one per image
        Which face of each image to fit (:meth:`~disentangled_face.data.landmarks.LandmarkDetector.detect`):
        the largest (default), the best-scoring, an index into the faces sorted by score, or
        the face of largest IoU with a box (pixels).
    **kwargs
        As :func:`fit_shape_and_pose` (``exp_solver``, ``verbose``, option overrides).

    Returns
    -------
    FitResult
        With ``quality`` (see :func:`fit_shape_and_pose`).

    Raises
    ------
    ValueError
        No image given, or no face found in any image; bad image formats; landmarks decisively
        not in iBUG order (``LandmarkOrderError``).
    """
    from ..data.landmarks import get_detector

    images = list(images)
    if not images:
        raise ValueError("fit_images needs at least one image")
    if detector is None or isinstance(detector, str):
        det = get_detector(detector or "auto")
    elif hasattr(detector, "low_score_dlib"):      # cfg.landmarks: its backend and thresholds
        det = get_detector(detector.detector, upsample=detector.upsample, score_threshold=detector.score_threshold,
                           low_score={"dlib": detector.low_score_dlib, "fan": detector.low_score_fan})
    else:
        det = detector
    return fit_shape_and_pose(model, det.detect_many(images, face), options, **kwargs)


_FIT_WORKER: dict[str, Any] = {}


def _fit_worker_init(model, y, subj, opts, exp_solver) -> None:
    """A fitting process: the landmarks and options once, one torch thread."""
    torch.set_num_threads(1)
    _FIT_WORKER.update(model=model, y=y, subj=subj, opts=opts, exp_solver=exp_solver)


def _fit_worker_chunk(span: tuple[int, int]):
    s0, s1 = span
    w = _FIT_WORKER
    sel = np.flatnonzero((w["subj"] >= s0) & (w["subj"] < s1))
    return s0, sel, _run(w["model"], w["y"][sel], w["subj"][sel] - s0, s1 - s0, w["opts"], w["exp_solver"])


def _chunk_results(model, y, subj, S, chunk, opts, exp_solver, verbose, workers):
    """Yield ``(s0, image indices, _run result)`` per chunk of subjects, in order.

    With ``workers > 1`` (and at least two chunks per process) the chunks are fitted by a pool
    of spawned processes; each chunk runs the same code on the same inputs as in one process,
    so the results are the same.
    """
    spans = [(s0, min(S, s0 + chunk)) for s0 in range(0, S, chunk)]
    workers = max(1, min(int(workers or 1), os.cpu_count() or 1))
    if workers > 1 and len(spans) >= 2 * workers:
        ctx = multiprocessing.get_context("spawn")  # no forked torch thread pools
        try:
            with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_fit_worker_init,
                                     initargs=(model, y, subj, opts, exp_solver)) as pool:
                yield from pool.map(_fit_worker_chunk, spans)
        except BrokenProcessPool as exc:  # a worker died (killed, out of memory, or a script without a main guard)
            raise RuntimeError(
                f"a fitting worker process died ({exc}); in a script, call the fitter under "
                "`if __name__ == '__main__':` (worker processes are spawned and import it), or pass "
                "workers=1 (targets.workers: 1)") from None
        return
    for s0, s1 in spans:
        sel = np.flatnonzero((subj >= s0) & (subj < s1))
        yield s0, sel, _run(model, y[sel], subj[sel] - s0, s1 - s0, opts, exp_solver, verbose)


def _fit_chunks(model: MorphableModel, y: np.ndarray, subj: np.ndarray, S: int, chunk: int,
                opts: FittingConfig, exp_solver: str, verbose: bool, workers: int | None = None
                ) -> tuple[dict, list, dict]:
    """Fit ``chunk`` subjects at a time (in ``workers`` processes); per-image arrays, the
    histories and per-subject results."""
    N, k_id, k_exp = y.shape[0], model.n_id, model.n_exp
    out = dict(a_id=np.zeros((N, k_id)), a_exp=np.zeros((N, k_exp)), R=np.zeros((N, 3, 3)),
               f=np.zeros(N), t=np.zeros((N, 2)), rmse=np.zeros(N), vertices=np.zeros(y.shape[:2], np.int64))
    per_subject = dict(a_id=np.zeros((S, k_id)), iters=np.zeros(S, np.int64), n_iter=0, converged=True, steps=[])
    hists = []
    for s0, sel, r in _chunk_results(model, y, subj, S, chunk, opts, exp_solver, verbose, workers):
        out["a_id"][sel] = r["a_id"][subj[sel] - s0]
        for k in ("a_exp", "R", "f", "t", "rmse", "vertices"):
            out[k][sel] = r[k]
        per_subject["a_id"][s0:s0 + chunk] = r["a_id"]
        per_subject["iters"][s0:s0 + chunk] = r["subject_iters"]
        hists.append(r["hist"])
        per_subject["n_iter"] = max(per_subject["n_iter"], r["n_iter"])
        per_subject["converged"] &= r["converged"]
        if len(r["steps"]) > len(per_subject["steps"]):
            per_subject["steps"] = r["steps"]
    return out, hists, per_subject


def fit_subjects(model: MorphableModel, landmarks: Any, labels: Any = None, options: FittingConfig | None = None,
                 *, chunk: int | None = None, workers: int | None = None, exp_solver: str = "torch",
                 verbose: bool = False, check_order: bool = True, **overrides: Any) -> SubjectsFit:
    """Fit many subjects at once, batched in torch (the multi-image fitter per subject).

    Parameters
    ----------
    model : MorphableModel
    landmarks : ndarray (N, 68, 2)
        Landmarks of all images, pixels (u right, v down).
    labels : ndarray (N,), optional
        Subject label of every image; images with the same label share ``alpha_id``.
        ``None`` fits every image on its own (the single-image mode).
    options : FittingConfig, optional
        The fitter options (``cfg.fitting``); default: :class:`FittingConfig`'s defaults.
    chunk : int, optional
        Fit at most this many subjects per batch (``cfg.targets.chunk``; bounds memory; results
        change only by float32 rounding, which an ill-posed fit can amplify). With ``workers`` > 1 and no ``chunk``, the subjects are split
        into four chunks per process.
    workers : int, optional
        Processes fitting chunks in parallel (``cfg.targets.workers``; spawned, one torch
        thread each; results do not depend on it). Default 1: this process.
    exp_solver, verbose, check_order
        As :func:`fit_shape_and_pose`.
    **overrides
        Single fitter options replacing those of ``options`` (see :func:`fit_shape_and_pose`).

    Returns
    -------
    SubjectsFit
        Per-image arrays in the input order, with the ``quality`` report; its soft signs over
        all images are counted and summarised in one ``UserWarning``.

    Raises
    ------
    ValueError
        Degenerate landmarks (as :func:`fit_shape_and_pose`), or ``labels`` not of length N.
    RuntimeError
        With ``workers`` > 1, when a worker process dies (the message says what to check).
    LandmarkOrderError
        (a ValueError) Landmarks decisively not in iBUG order (as :func:`fit_shape_and_pose`).
    ConfigError
        An unknown option, or a value of the wrong type or range.
    """
    opts = fitter_options(options, **overrides)
    check_model(model)
    y = check_landmarks(landmarks, model.landmarks.shape[0], "landmarks")
    N = y.shape[0]
    labels = np.arange(N) if labels is None else np.asarray(labels)
    if labels.shape != (N,):
        raise ValueError(f"labels must have shape ({N},) to match {N} landmark sets, got {labels.shape}")
    if check_order:
        check_landmark_order(model, y, "landmarks")
    subjects, subj = np.unique(labels, return_inverse=True)
    subj = subj.reshape(-1)
    S = len(subjects)
    workers = max(1, int(workers or 1))
    if not chunk:
        chunk = S if workers == 1 else -(-S // (4 * workers))
    out, hists, sub = _fit_chunks(model, y, subj, S, int(chunk), opts, exp_solver, verbose, workers)
    width = max(h.shape[1] for h in hists)
    hist = np.concatenate([np.pad(h, ((0, 0), (0, width - h.shape[1])), mode="edge") for h in hists])
    yaw, pitch, roll = camera.euler_from_rotation(out["R"])
    quality = _quality(model, y, subj, sub["a_id"], dict(a_exp=out["a_exp"], R=out["R"], f=out["f"], t=out["t"],
                                                         vertices=out["vertices"]),
                       hist, sub["iters"], opts, check_order)
    return SubjectsFit(label=labels, alpha_id=out["a_id"], alpha_exp=out["a_exp"], R=out["R"], f=out["f"],
                       t=out["t"], yaw=yaw, pitch=pitch, roll=roll, rmse_px=out["rmse"], subjects=subjects,
                       subject_alpha_id=sub["a_id"], objective=hist, steps=sub["steps"], n_iter=sub["n_iter"],
                       converged=sub["converged"], subject_n_iter=sub["iters"], quality=quality,
                       landmark_vertices=out["vertices"])

