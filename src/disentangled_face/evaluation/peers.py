"""The data pipeline's speed against its peers and the book's goals (chapter 9).

:func:`fitter_against_eos` fits the same synthetic 68-point landmarks with our batched fitter
(single-image and the paper's multi-image mode, one torch thread) and with eos-py's
``fit_shape_and_pose`` (one image at a time, one thread; eos-py 1.5, the C++ library eos's
Python bindings), and reports images per second, reprojection error and 3D error against the
truth, with each rate's ratio to eos-py's measured in the same run.
:func:`renderer_throughput` times the synthetic-face generator as ``data.build_protocol`` runs
it (batched instanced draws, one process) against one image per call.
``benchmarks/bench_fitting.py`` and ``benchmarks/bench_synth.py`` run the same measurements at
larger sizes.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from .. import fitting
from ..config import Config
from ..shape import camera

__all__ = ["EOS_ROW", "FITTER_GOAL", "RENDERER_GOAL", "eos_model", "eos_fit", "eos_project", "fit_project", "fitter_against_eos",
           "renderer_throughput"]

#: The peer's row name in :func:`fitter_against_eos`.
EOS_ROW = "eos-py 1.5 (1 thread)"
#: The book's goals for its data pipeline (set by the project, not results): the fitter's
#: images/s over eos-py's on identical landmarks at equal or lower error, and the renderer's
#: images/s on 2 cores.
FITTER_GOAL, RENDERER_GOAL = 20.0, 400.0


def eos_model(model):
    """An eos ``MorphableModel`` and ``LandmarkMapper`` from our model (identity PCA with
    orthonormal columns and eigenvalues = squared mode norms, so eos's coefficients are our
    ``alpha_id``; the expressions as blendshapes; the 68 landmark vertices, 1-based names)."""
    import eos

    modes = model.id_basis.reshape(model.n_id, -1).astype(np.float64)          # (k, 3n), mm per unit
    norms = np.linalg.norm(modes, axis=1)
    basis = (modes / norms[:, None]).T.astype(np.float32)
    shape = eos.morphablemodel.PcaModel(model.mean.reshape(-1).astype(np.float32), basis,
                                        (norms ** 2).astype(np.float32), model.triangles.tolist())
    blend = [eos.morphablemodel.Blendshape(nm, model.exp_basis[j].reshape(-1).astype(np.float32))
             for j, nm in enumerate(model.exp_names)]
    mm = eos.morphablemodel.MorphableModel(shape, blend, color_model=eos.morphablemodel.PcaModel(),
                                           vertex_definitions=None, texture_coordinates=[])
    d = Path(tempfile.mkdtemp())
    (d / "map.txt").write_text("[landmark_mappings]\n" + "".join(f"{j + 1} = {int(v)}\n" for j, v in enumerate(model.landmarks)))
    return mm, eos.core.LandmarkMapper(str(d / "map.txt"))


def eos_fit(mm, mapper, landmarks, width: int, height: int, n_id: int, n_exp: int, iters: int = 5,
            lam_id: float = 30.0, lam_exp: float = 30.0):
    """``eos.fitting.fit_shape_and_pose`` on every image of ``landmarks`` (N, 68, 2) pixels;
    returns ``alpha_id`` (N, n_id), ``alpha_exp`` (N, n_exp) and eos's render parameters."""
    import eos

    a_id, a_exp, poses = [], [], []
    for lm in landmarks:
        pts = [eos.core.Landmark(str(j + 1), [float(u), float(v)]) for j, (u, v) in enumerate(lm)]
        _, pose, sc, bc = eos.fitting.fit_shape_and_pose(
            mm, pts, mapper, width, height, num_iterations=iters, num_shape_coefficients_to_fit=n_id,
            lambda_identity=lam_id, num_expression_coefficients_to_fit=n_exp, lambda_expressions=lam_exp)
        a_id.append(sc), a_exp.append(bc), poses.append(pose)
    return np.asarray(a_id), np.asarray(a_exp), poses


def eos_project(model, a_id, a_exp, poses, width: int, height: int) -> np.ndarray:
    """The landmark vertices of eos's fitted shapes projected with its render parameters
    (OpenGL projection and modelview, OpenCV viewport): (N, 68, 2) pixels."""
    X = model.landmarks_of(model.shape(a_id, a_exp)).astype(np.float64)
    out = np.empty(X.shape[:2] + (2,))
    for i, p in enumerate(poses):
        M = np.asarray(p.get_projection()) @ np.asarray(p.get_modelview())
        h = np.c_[X[i], np.ones(len(X[i]))] @ M.T
        ndc = h[:, :2] / h[:, 3:4]
        out[i, :, 0] = (ndc[:, 0] + 1) * 0.5 * width
        out[i, :, 1] = (1 - ndc[:, 1]) * 0.5 * height
    return out


def fit_project(model, fit) -> np.ndarray:
    """Our fitted landmarks in the image (N, 68, 2) pixels: at the vertices each landmark was
    fitted to (with landmark marching the jaw's differ per image)."""
    shapes = fit.shapes(model).astype(np.float64)
    pts = (model.landmarks_of(shapes) if fit.landmark_vertices is None
           else np.take_along_axis(shapes, np.asarray(fit.landmark_vertices)[..., None], axis=1))
    return camera.project(pts, fit.R, fit.f, fit.t)


def fitter_against_eos(cfg: Config, model, subjects: int = 50, images: int = 6, eos_images: int = 60,
                       noise_px: float = 1.0, seed: int = 0,
                       variants: Mapping[str, Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """Our fitter (the profile's ``fitting`` options, float32, one torch thread) against
    eos-py on identical landmarks: ``subjects`` x ``images`` simulated images (the profile's
    ``synth.jaw_landmarks``, Gaussian noise ``noise_px``), 112 x 96 pixels.

    ``variants`` maps a row name to fitter options that replace the profile's (for example
    ``{"fewer iterations": {"max_iter": 4}}``): each is fitted in multi-image mode on the same
    landmarks, so the table shows what other options would buy in speed and cost in error.

    Returns
    -------
    DataFrame
        Rows ``ours, single-image``, ``ours, multi-image``, then one row per variant, then
        :data:`EOS_ROW`; columns
        ``images/s``, ``× eos-py`` (the ratio of images/s), ``images per CPU-second``, ``CPU × eos-py``,
        ``reprojection (px)`` (RMS over landmarks, mean over images), ``3D error (mm)`` (full shape
        after a similarity alignment on the 68 landmarks, mean over images), ``images``.

    Raises
    ------
    ImportError
        Without eos-py (pinned in ``requirements.txt``).
    ValueError
        A variant named like a fixed row, or with an option :class:`~disentangled_face.config.FittingConfig`
        does not have (pydantic's message).
    """
    variants = dict(variants or {})
    fixed = {"ours, single-image", "ours, multi-image", EOS_ROW}
    if fixed & set(variants):
        raise ValueError(f"variant names must differ from the fixed rows {sorted(fixed)}; got {sorted(fixed & set(variants))}")
    opts = cfg.fitting
    variant_opts = {name: opts.model_validate({**opts.model_dump(), **dict(v)}) for name, v in variants.items()}
    H, W = 112, 96
    syn = fitting.simulate_landmarks(model, subjects, images, noise_px=noise_px, image_size=(H, W), seed=seed,
                                     jaw_landmarks=cfg.synth.jaw_landmarks)
    over, rows = dict(threads=1, dtype="float32"), {}

    def record(name, wall, cpu, a_id, a_exp, proj, sel):
        rep = np.sqrt(((proj - syn.landmarks[sel]) ** 2).sum(-1).mean(-1)).mean()
        err = fitting.shape_errors(model, a_id, a_exp, syn.alpha_id[syn.label[sel]], syn.alpha_exp[sel])["shape_aligned"]
        rows[name] = {"images/s": len(sel) / wall, "images per CPU-second": len(sel) / cpu,
                      "reprojection (px)": float(rep), "3D error (mm)": float(np.mean(err)), "images": len(sel)}

    everything = np.arange(len(syn.label))
    fitting.fit_subjects(model, syn.landmarks[:8], None, opts, **over)  # warm-up
    runs = [("ours, single-image", None, opts), ("ours, multi-image", syn.label, opts)]
    runs += [(name, syn.label, o) for name, o in variant_opts.items()]
    for name, labels, options in runs:
        t0, c0 = time.perf_counter(), time.process_time()
        fit = fitting.fit_subjects(model, syn.landmarks, labels, options, **over)
        record(name, time.perf_counter() - t0, time.process_time() - c0, fit.alpha_id, fit.alpha_exp,
               fit_project(model, fit), everything)
    mm, mapper = eos_model(model)
    sel = np.arange(min(eos_images, len(syn.label)))
    eos_fit(mm, mapper, syn.landmarks[:2], W, H, model.n_id, model.n_exp)  # warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    e_id, e_exp, poses = eos_fit(mm, mapper, syn.landmarks[sel], W, H, model.n_id, model.n_exp)
    record(EOS_ROW, time.perf_counter() - t0, time.process_time() - c0, e_id, e_exp,
           eos_project(model, e_id, e_exp, poses, W, H), sel)
    t = pd.DataFrame(rows).T
    t.insert(1, "× eos-py", t["images/s"] / t.loc[EOS_ROW, "images/s"])
    t.insert(3, "CPU × eos-py", t["images per CPU-second"] / t.loc[EOS_ROW, "images per CPU-second"])
    return t.astype({"images": int})


def renderer_throughput(model, images: int = 1024, batch: int = 64, naive_images: int = 32, seed: int = 11,
                        rounds: int = 2) -> pd.DataFrame:
    """The generator as ``data.build_protocol`` runs it (``batch`` images per instanced draw, one
    process) against one image per call, on a ``train``-like plan of ``images`` images; the
    best of ``rounds`` batched runs (other processes on a shared machine slow any one round).

    Returns
    -------
    DataFrame
        Rows ``one image per call``, ``batched (one process)``; columns ``images/s``,
        ``× one per call``, ``images``.
    """
    from .. import data
    from ..config import load_config
    from ..data.build import _render_plan
    from ..data.render import Light

    synth = load_config("book", {"synth.seed": seed, "synth.batch": batch,
                                 "synth.protocols": {"train": {"subjects": max(1, images // 8),
                                                               "images_per_subject": 8}}}).synth
    cfg = data.protocol_config("train", synth)
    plan = data.plan_protocol("train", synth, model)
    alpha_id = data.subject_codes(model, cfg["seed"], plan["subject_id"])
    albedo_model = data.get_albedo_model(model)
    data.render_faces(model, alpha_id[:1], plan["alpha_exp"][:1], 0.0, max_batch=1)  # warm-up
    n_naive = min(naive_images, plan["subject"].size)
    t0 = time.perf_counter()
    for i in range(n_naive):
        k = plan["subject"][i]
        light = Light(*(plan["light"][key][i:i + 1] for key in ("ambient", "direction", "diffuse")))
        data.render_faces(model, alpha_id[k:k + 1], plan["alpha_exp"][i:i + 1], plan["yaw"][i], plan["pitch"][i],
                           plan["roll"][i], albedo=data.subject_albedo(albedo_model, cfg["seed"], int(plan["subject_id"][k])),
                           light=light, background=plan["background"][i:i + 1], max_batch=1)
    naive = n_naive / (time.perf_counter() - t0)
    best = float("inf")
    for _ in range(max(1, int(rounds))):
        t0 = time.perf_counter()
        for _ in _render_plan(model, plan, cfg, batch, 1, progress=False, desc=""):
            pass
        best = min(best, time.perf_counter() - t0)
    batched = plan["subject"].size / best
    return pd.DataFrame({"images/s": [naive, batched], "× one per call": [1.0, batched / naive],
                         "images": [n_naive, int(plan["subject"].size)]},
                        index=["one image per call", "batched (one process)"])
