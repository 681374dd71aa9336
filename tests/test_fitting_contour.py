"""Contour landmarks at large yaw (issue 12): silhouette jaw points and landmark marching."""

import warnings

import numpy as np
import pytest
import torch

from disentangled_face import fitting
from disentangled_face.config import FittingConfig, SynthConfig, load_config, with_overrides
from disentangled_face.evaluation.metrics import model_shape_error
from disentangled_face.shape import camera, load_ict_facekit
from disentangled_face.shape.contour import JAW_LANDMARKS, contour_landmarks, contour_lines, contour_vertices

F, T = 0.5, np.array([[48.0, 56.0]])


@pytest.fixture(scope="module")
def ict():
    return load_ict_facekit()


@pytest.fixture(scope="module")
def book_fitting():
    """The book's fitter options with fixed jaw vertices (``contour`` is switched per test)."""
    return load_config("book", {"fitting.contour": "none"}).fitting


def _silhouette(model, a_id, yaw_deg, pitch_deg=0.0, roll_deg=0.0):
    """Landmarks (68, 2) of a neutral face with the jaw on the silhouette."""
    S = model.identity_shape(a_id)[None].astype(np.float64)
    R = camera.rotation_from_euler(np.radians([yaw_deg]), np.radians(pitch_deg), np.radians(roll_deg))
    return contour_landmarks(model, S, R, [F], T)[0]


# ------------------------------------------------------------------ the silhouette landmarks
def test_lines_end_at_the_fixed_vertices(ict):
    lines = contour_lines(ict)
    assert np.array_equal(lines.landmarks, JAW_LANDMARKS)
    last = lines.vertices[np.arange(len(JAW_LANDMARKS)), lines.fixed]
    assert np.array_equal(last, ict.landmarks[JAW_LANDMARKS])
    assert (lines.valid.sum(1) >= 3).all()
    assert np.array_equal(lines.side, np.where(JAW_LANDMARKS < 8, -1.0, 1.0))


def test_frontal_contour_is_the_fixed_vertices_and_symmetric(ict):
    S = ict.mean[None].astype(np.float64)
    R = camera.rotation_from_euler(np.zeros(1), 0.0, 0.0)
    assert np.array_equal(contour_vertices(ict, S, R, [F], T)[0], ict.landmarks)
    uv = contour_landmarks(ict, S, R, [F], T)[0]
    mirror = uv[16 - np.arange(17)]                      # landmark l against 16 - l
    np.testing.assert_allclose(uv[:17, 0] + mirror[:, 0], 2 * uv[8, 0], atol=0.05)
    np.testing.assert_allclose(uv[:17, 1], mirror[:, 1], atol=0.05)


@pytest.mark.parametrize("yaw", [40.0, 70.0, -70.0])
def test_turned_away_side_is_outermost(ict, yaw):
    """At yaw != 0 the jaw points of the side turned away are the outermost projections of
    their lines, further out than the fixed vertices; the other side keeps its vertices."""
    S = ict.mean[None].astype(np.float64)
    R = camera.rotation_from_euler(np.radians([yaw]), 0.0, 0.0)
    lines = contour_lines(ict)
    uv = contour_landmarks(ict, S, R, [F], T)[0]
    fixed = camera.project(ict.landmarks_of(S), R, [F], T)[0]
    away = (JAW_LANDMARKS >= 9) if yaw > 0 else (JAW_LANDMARKS < 8)
    sign = 1.0 if yaw > 0 else -1.0                          # the away side's outward image direction
    cand = camera.project(S[:, lines.vertices.reshape(-1)], R, [F], T)[0].reshape(*lines.vertices.shape, 2)
    for j, lm in enumerate(JAW_LANDMARKS):
        if not away[j]:
            np.testing.assert_allclose(uv[lm], fixed[lm], atol=1e-9)
            continue
        u = sign * cand[j, lines.valid[j], 0]
        assert sign * uv[lm, 0] == pytest.approx(u.max())
        assert sign * uv[lm, 0] >= sign * fixed[lm, 0] - 1e-9
    far = JAW_LANDMARKS[away & (np.abs(JAW_LANDMARKS - 8) >= 3)]   # the cheek, not the chin
    assert (sign * (uv[far, 0] - fixed[far, 0]) > 1.0).all()


def test_contour_vertices_checks_shapes(ict):
    with pytest.raises(ValueError, match="shapes must be"):
        contour_vertices(ict, np.zeros((1, 10, 3)), np.eye(3)[None], [F], T)


def test_simulated_contour_landmarks_share_the_draws(ict):
    a = fitting.simulate_landmarks(ict, 2, 3, seed=4)
    b = fitting.simulate_landmarks(ict, 2, 3, seed=4, jaw_landmarks="contour")
    inner = np.setdiff1d(np.arange(68), JAW_LANDMARKS)
    np.testing.assert_array_equal(a.clean[:, inner], b.clean[:, inner])
    np.testing.assert_array_equal(a.R, b.R)
    S = ict.shape(a.alpha_id[a.label], a.alpha_exp).astype(np.float64)
    np.testing.assert_allclose(b.clean, contour_landmarks(ict, S, a.R, a.f, a.t), atol=1e-3)
    with pytest.raises(ValueError, match="jaw_landmarks"):
        fitting.simulate_landmarks(ict, 1, 1, jaw_landmarks="silhouette")


# ------------------------------------------------------------------ the options and their hashes
def test_default_keys_stay_out_of_the_hashes():
    assert "jaw_landmarks" not in SynthConfig().to_dict()
    assert "contour" not in FittingConfig().to_dict()
    cfg = load_config("book", {"synth.jaw_landmarks": "fixed", "fitting.contour": "none"})
    assert "jaw_landmarks" not in cfg.synth.protocol("train") and "contour" not in cfg.fitting.to_dict()
    on = with_overrides(cfg, {"synth.jaw_landmarks": "contour", "fitting.contour": "marching"})
    assert on.synth.protocol("train")["jaw_landmarks"] == "contour"
    assert on.fitting.to_dict()["contour"] == "marching"
    from disentangled_face.data.protocols import protocol_path
    from disentangled_face.fitting.targets import targets_path

    assert protocol_path("train", on.synth) != protocol_path("train", cfg.synth)
    assert targets_path(on) != targets_path(cfg)


# ------------------------------------------------------------------ the fitter
def test_acceptance_yaw70_contour_within_1mm(ict, book_fitting):
    """The issue's test: silhouette jaw points at yaw 70 deg. The identity fitted with landmark
    marching is within 1 mm (RMSE after Procrustes, Sec. 4.1) of the yaw-0 fit; the fit that
    ties them to fixed vertices is not."""
    a_id = np.zeros(ict.n_id)                                    # the mean face
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                          # the fixed fit's soft signs
        ref = fitting.fit_single_image(ict, _silhouette(ict, a_id, 0.0), book_fitting)
        fixed = fitting.fit_single_image(ict, _silhouette(ict, a_id, 70.0), book_fitting)
        march = fitting.fit_single_image(ict, _silhouette(ict, a_id, 70.0), book_fitting, contour="marching")
    ref_shape = ref.identity_shape(ict)
    e_fixed = float(model_shape_error(ict, fixed.identity_shape(ict), ref_shape).rmse_mm)
    e_march = float(model_shape_error(ict, march.identity_shape(ict), ref_shape).rmse_mm)
    assert e_march < 1.0, e_march
    assert e_fixed > 1.0, e_fixed
    assert e_fixed > 5 * e_march
    assert np.abs(march.alpha_id).max() < 1.0 < np.abs(fixed.alpha_id).max()
    # the jaw of the side turned away was re-assigned, the rest kept its vertices
    moved = march.landmark_vertices[0] != ict.landmarks
    assert moved[10:17].all() and not moved[17:].any()
    assert march.quality.reprojection_iod[0] < fixed.quality.reprojection_iod[0]


def test_marching_multi_image_and_batched(ict, book_fitting):
    """Several subjects and yaws at once: the multi-image fit with marching recovers each
    subject's identity better than with fixed vertices, and the batch does not change a fit."""
    syn = fitting.simulate_landmarks(ict, 3, 4, yaw_deg=(50.0, 80.0), pitch_deg=5.0, roll_deg=5.0, seed=1,
                                     jaw_landmarks="contour")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fx = fitting.fit_subjects(ict, syn.landmarks, syn.label, book_fitting)
        mc = fitting.fit_subjects(ict, syn.landmarks, syn.label, book_fitting, contour="marching")
        one = fitting.fit_shape_and_pose(ict, syn.landmarks[syn.label == 1], book_fitting, contour="marching")
    true = ict.identity_shape(syn.alpha_id)
    e_fx = model_shape_error(ict, ict.identity_shape(fx.subject_alpha_id), true).rmse_mm
    e_mc = model_shape_error(ict, ict.identity_shape(mc.subject_alpha_id), true).rmse_mm
    assert (e_mc < e_fx).all()
    np.testing.assert_allclose(one.alpha_id, mc.subject_alpha_id[1], atol=2e-3)
    assert mc.landmark_vertices.shape == (12, 68)


def test_marching_reference_expression_solver_agrees(ict):
    """The explicit design matrices (scipy path) and the Gram blocks agree with marching."""
    syn = fitting.simulate_landmarks(ict.subset(10, 8), 1, 2, yaw_deg=(60.0, 70.0), seed=2, jaw_landmarks="contour")
    model = ict.subset(10, 8)
    opts = dict(dtype="float64", threads=1, joint_iters=0, contour="marching")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = fitting.fit_shape_and_pose(model, syn.landmarks, exp_solver="torch", **opts)
        b = fitting.fit_shape_and_pose(model, syn.landmarks, exp_solver="scipy", **opts)
    np.testing.assert_allclose(a.alpha_id, b.alpha_id, atol=1e-5)
    np.testing.assert_allclose(a.alpha_exp, b.alpha_exp, atol=1e-5)


def test_marching_costs_little_frontal(ict, book_fitting):
    """Frontal, the silhouette is the fixed jaw line: marching (whose nearest-in-image rule lets
    the jaw points of the side facing the camera slide along their lines) stays within 0.1 mm
    of the fixed-vertex fit's identity error."""
    syn = fitting.simulate_landmarks(ict, 10, 1, yaw_deg=(-5.0, 5.0), seed=3, jaw_landmarks="contour")
    true = ict.identity_shape(syn.alpha_id)
    err = {}
    for c in ("none", "marching"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = fitting.fit_subjects(ict, syn.landmarks, syn.label, book_fitting, contour=c)
        err[c] = model_shape_error(ict, ict.identity_shape(fit.subject_alpha_id), true).rmse_mm.mean()
    assert err["marching"] < err["none"] + 0.1, err


@pytest.mark.parametrize("kind", ["contour", "outline"])
def test_render_faces_silhouette_jaw(ict, kind):
    """The synthetic generator's ``jaw_landmarks='contour'`` (candidate rows) and ``'outline'``
    (the projected face outline, :mod:`disentangled_face.data.outline`): same images, jaw on the
    silhouette, and for the outline in sight."""
    from disentangled_face.data import render_faces
    from disentangled_face.data.outline import outline_landmarks
    from disentangled_face.data.render import RendererUnavailableError

    yaw = np.radians([0.0, 70.0])
    codes = np.zeros((2, ict.n_id)), np.zeros((2, ict.n_exp))
    try:
        a = render_faces(ict, *codes, yaw)
    except RendererUnavailableError:
        pytest.skip("no headless OpenGL context")
    b = render_faces(ict, *codes, yaw, jaw_landmarks=kind)
    np.testing.assert_array_equal(a.images, b.images)
    S = ict.shape(*codes).astype(np.float64)
    R = camera.rotation_from_euler(yaw, 0.0, 0.0)
    expected = (contour_landmarks if kind == "contour" else outline_landmarks)(ict, S, R, b.scale, b.trans)
    np.testing.assert_allclose(b.landmarks_true, expected, atol=1e-3)
    np.testing.assert_array_equal(a.landmarks_true[0], b.landmarks_true[0])
    assert np.abs(a.landmarks_true[1, 10:17] - b.landmarks_true[1, 10:17]).max() > 5.0
    if kind == "outline":
        assert b.visible[1, 10:17].all() and not a.visible[1, 12:17].all()       # the outline is in sight
    with pytest.raises(ValueError, match="jaw_landmarks"):
        render_faces(ict, *codes, yaw, jaw_landmarks="silhouette")


# ------------------------------------------------------------------ batched marching = per-image reference
def _reference_marching(model, fx, st):
    """The previous per-image computation (issue 10's speed work keeps it only here): per image,
    the candidates of its codes, the marching rule on that image alone, then its landmark
    bases with the jaw at the chosen vertices, X, the Gram blocks and the contraction."""
    from disentangled_face.shape.contour import candidate_points, contour_lines, marching_choice

    lines = contour_lines(model)
    J = len(lines.landmarks)
    subj = fx.subj.numpy()
    y = fx.y.numpy()
    R, f, t, s = st.R.numpy(), st.f.numpy(), st.t.numpy(), fx.s.numpy()
    a_id, a_exp = st.a_id.numpy()[subj], st.a_exp.numpy()
    out = dict(pos=[], X=[], H_ii=[], H_ei=[], H_ee=[])
    for n in range(len(subj)):
        P = candidate_points(model, lines, a_id[n], a_exp[n])                        # (1, J, K, 3)
        uv = f[n] * P @ R[n, :2].T + t[n]
        pos = marching_choice(torch.as_tensor(uv), torch.as_tensor(R[n:n + 1]),
                              torch.as_tensor(y[n:n + 1, lines.landmarks]), lines, v_down=False)[0].numpy()
        verts = np.asarray(model.landmarks).copy()
        verts[lines.landmarks] = lines.vertices[np.arange(J), pos]
        Bi, Be = model.id_basis[:, verts].astype(np.float64), model.exp_basis[:, verts].astype(np.float64)
        out["pos"].append(pos)
        out["X"].append(model.mean[verts] + np.einsum("k,kld->ld", a_id[n], Bi) + np.einsum("k,kld->ld", a_exp[n], Be))
        Ai = (f[n] / s[n]) * np.einsum("kld,ed->lek", Bi, R[n, :2]).reshape(-1, Bi.shape[0])   # (2L, k)
        Ae = (f[n] / s[n]) * np.einsum("kld,ed->lek", Be, R[n, :2]).reshape(-1, Be.shape[0])
        out["H_ii"].append(Ai.T @ Ai), out["H_ei"].append(Ae.T @ Ai), out["H_ee"].append(Ae.T @ Ae)
        out.setdefault("B_exp", []).append(Be)
    return {k: np.asarray(v) for k, v in out.items()}


@pytest.mark.parametrize("labels", [[0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2],       # several images a subject
                                    [2, 0, 1, 0, 2, 1, 1, 0, 2, 0, 1, 2],       # unordered labels
                                    [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5],       # two images a subject
                                    list(range(12))])                          # single-image mode
def test_batched_marching_equals_per_image_reference(ict, labels):
    """The fitter's batched landmark marching (candidates of all images at once, the jaw bases
    gathered per image, one product per image or per subject) gives the per-image computation's
    vertices, landmarks, Gram blocks (per image and per subject) and contractions, in float64."""
    from disentangled_face.fitting.alternation import Fitter, State

    model = ict.subset(12, 9)
    labels = np.asarray(labels)
    S = labels.max() + 1
    rng = np.random.default_rng(0)
    yaw = np.radians(rng.uniform(-80, 80, len(labels)))
    R = camera.rotation_from_euler(yaw, np.radians(rng.uniform(-10, 10, len(labels))), 0.0)
    a_id, a_exp = rng.normal(size=(S, model.n_id)), rng.uniform(0, 0.6, (len(labels), model.n_exp))
    shapes = model.shape(a_id[labels], a_exp).astype(np.float64)
    y = contour_landmarks(model, shapes, R, np.full(len(labels), 0.5), np.tile([48.0, 56.0], (len(labels), 1)))
    y = y + rng.normal(0, 0.5, y.shape)
    opts = FittingConfig(dtype="float64", contour="marching")
    fx = Fitter(model, y, labels, S, opts)
    st0 = fx.pose_step(fx.start(), True)                     # fixes the scales s
    st = State(torch.as_tensor(a_id + 0.1 * rng.normal(size=a_id.shape)), torch.as_tensor(a_exp),
               st0.R, st0.f, st0.t)
    fx.update_contour(st)
    ref = _reference_marching(model, fx, st)
    assert (ref["pos"] != np.asarray(contour_lines(model).fixed)).any()   # some jaw points marched
    np.testing.assert_array_equal(fx.pos.numpy(), ref["pos"])
    np.testing.assert_allclose(fx.X(st).numpy(), ref["X"], atol=1e-9)
    np.testing.assert_allclose(fx.gram(st, "exp", "exp").numpy(), ref["H_ee"], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(fx.gram(st, "exp", "id").numpy(), ref["H_ei"], rtol=1e-10, atol=1e-10)
    per_subject = np.stack([ref["H_ii"][labels == k].sum(0) for k in range(S)])
    np.testing.assert_allclose(fx.gram(st, "id", "id", per_subject=True).numpy(), per_subject, rtol=1e-10, atol=1e-10)
    v = rng.normal(size=(len(labels), 68, 3, 2))
    np.testing.assert_allclose(fx.contract(torch.as_tensor(v), "exp").numpy(),
                               np.einsum("nld...,nkld->nk...", v, ref["B_exp"]), atol=1e-10)
    # a second marching step moves only some images: the partial re-gather keeps the rest
    st2 = State(st.a_id, st.a_exp, camera_rotate(st.R, 0.3), st.f, st.t)
    fx.update_contour(st2)
    ref2 = _reference_marching(model, fx, st2)
    np.testing.assert_array_equal(fx.pos.numpy(), ref2["pos"])
    np.testing.assert_allclose(fx.X(st2).numpy(), ref2["X"], atol=1e-9)
    np.testing.assert_allclose(fx.gram(st2, "exp", "exp").numpy(), ref2["H_ee"], rtol=1e-10, atol=1e-10)


def camera_rotate(R, yaw_rad):
    """Every second camera turned by ``yaw_rad`` about the model's vertical axis (the others kept)."""
    Ry = torch.as_tensor(camera.rotation_from_euler(np.array([yaw_rad]), 0.0, 0.0)[0])
    out = R.clone()
    out[::2] = R[::2] @ Ry
    return out
