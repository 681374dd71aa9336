"""Contour landmarks at large yaw (issue 12): silhouette jaw points and landmark marching."""

import warnings

import numpy as np
import pytest

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


def test_render_faces_contour_jaw(ict):
    """The synthetic generator's ``jaw_landmarks='contour'``: same images, jaw on the silhouette."""
    from disentangled_face.data import render_faces
    from disentangled_face.data.render import RendererUnavailableError

    yaw = np.radians([0.0, 70.0])
    codes = np.zeros((2, ict.n_id)), np.zeros((2, ict.n_exp))
    try:
        a = render_faces(ict, *codes, yaw)
    except RendererUnavailableError:
        pytest.skip("no headless OpenGL context")
    b = render_faces(ict, *codes, yaw, jaw_landmarks="contour")
    np.testing.assert_array_equal(a.images, b.images)
    S = ict.shape(*codes).astype(np.float64)
    R = camera.rotation_from_euler(yaw, 0.0, 0.0)
    np.testing.assert_allclose(b.landmarks_true, contour_landmarks(ict, S, R, b.scale, b.trans), atol=1e-3)
    np.testing.assert_array_equal(a.landmarks_true[0], b.landmarks_true[0])
    assert np.abs(a.landmarks_true[1, 10:17] - b.landmarks_true[1, 10:17]).max() > 5.0
    with pytest.raises(ValueError, match="jaw_landmarks"):
        render_faces(ict, *codes, yaw, jaw_landmarks="silhouette")
