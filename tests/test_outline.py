"""Jaw landmarks on the projected face outline (issue 12): ``synth.jaw_landmarks: outline``."""

import warnings

import numpy as np
import pytest

from disentangled_face.config import SynthConfig, load_config
from disentangled_face.evaluation.contour import contour_error_vs_yaw
from disentangled_face.shape import camera, load_ict_facekit
from disentangled_face.shape.contour import JAW_LANDMARKS, contour_landmarks
from disentangled_face.data.outline import (face_region, jaw_normals, outline_landmarks, outline_points, ray_extent,
                                             region_edges, rendered_outline_points)

F, T = 0.5, np.array([[48.0, 56.0]])


@pytest.fixture(scope="module")
def ict():
    return load_ict_facekit()


def _ellipsoid(a, b, c, n_theta=90, n_phi=180):
    """A closed latitude-longitude mesh of the ellipsoid x^2/a^2 + y^2/b^2 + z^2/c^2 = 1."""
    th = np.linspace(0, np.pi, n_theta + 1)
    ph = np.linspace(0, 2 * np.pi, n_phi, endpoint=False)
    T_, P_ = np.meshgrid(th, ph, indexing="ij")
    V = np.stack([a * np.sin(T_) * np.cos(P_), b * np.cos(T_), c * np.sin(T_) * np.sin(P_)], -1).reshape(-1, 3)
    idx = np.arange(V.shape[0]).reshape(n_theta + 1, n_phi)
    q = np.stack([idx[:-1], np.roll(idx[:-1], -1, 1), idx[1:], np.roll(idx[1:], -1, 1)], -1).reshape(-1, 4)
    tri = np.concatenate([q[:, [0, 1, 2]], q[:, [1, 3, 2]]])
    e = np.unique(np.sort(np.concatenate([tri[:, [0, 1]], tri[:, [1, 2]], tri[:, [2, 0]]]), 1), axis=0)
    return V, e[e[:, 0] != e[:, 1]]


@pytest.mark.parametrize("yaw_deg", [0.0, 35.0, 80.0])
def test_ray_extent_on_an_ellipsoid(yaw_deg):
    """The projection of an ellipsoid (semi-axes a, b, c) turned by yaw is the ellipse with
    semi-axes sqrt(a^2 cos^2 + c^2 sin^2) and b: rays from its centre end on that ellipse."""
    a, b, c = 60.0, 80.0, 40.0
    V, E = _ellipsoid(a, b, c)
    R = camera.rotation_from_euler(np.radians([yaw_deg]), 0.0, 0.0)
    uv = camera.project(V[None], R, [1.0], np.zeros((1, 2)))                    # pixels = mm, v down
    ang = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    d = np.stack([np.cos(ang), np.sin(ang)], -1)[None]
    s, k, lam = ray_extent(uv, E, np.zeros((1, 24, 2)), d)
    A = np.sqrt(a ** 2 * np.cos(np.radians(yaw_deg)) ** 2 + c ** 2 * np.sin(np.radians(yaw_deg)) ** 2)
    r = 1.0 / np.sqrt(np.cos(ang) ** 2 / A ** 2 + np.sin(ang) ** 2 / b ** 2)
    np.testing.assert_allclose(s[0], r, rtol=2e-3)                          # the mesh's chords: < 0.1 %
    assert ((lam >= 0) & (lam <= 1)).all() and k.shape == (1, 24)
    miss, _, _ = ray_extent(uv, E, np.full((1, 1, 2), 500.0), np.array([[[1.0, 0.0]]]))
    assert miss[0, 0] == -np.inf                                              # a line that misses


def test_face_region_leaves_out_ears_and_neck(ict):
    tri = face_region(ict)
    used = np.unique(tri)
    M = ict.mean
    assert np.isin(ict.landmarks, used).all()                                 # every landmark is in
    assert np.abs(M[used, 0]).max() < np.abs(M[ict.landmarks[:17], 0]).max() + 2.5    # no ear
    assert M[used, 1].min() > M[ict.landmarks[8], 1] - 2.5                     # no neck
    assert 0.5 * len(ict.triangles) < len(tri) < len(ict.triangles)
    n = jaw_normals(ict)
    np.testing.assert_allclose(np.linalg.norm(n, axis=1), 1.0)
    np.testing.assert_allclose(n[8], [0.0, -1.0], atol=1e-9)
    assert (n[:8, 0] < 0).all() and (n[9:, 0] > 0).all()
    assert len(region_edges(ict)) > len(tri)


def test_frontal_outline_is_the_fixed_jaw(ict):
    """Frontal, nothing is turned away: the landmarks are the fixed vertices, and the outline
    points themselves lie within the region's margin (2 mm, 1 px at 0.5 px/mm) of them."""
    S = ict.mean[None].astype(np.float64)
    R = camera.rotation_from_euler(np.zeros(1), 0.0, 0.0)
    fixed = camera.project(ict.landmarks_of(S), R, [F], T)[0]
    np.testing.assert_array_equal(outline_landmarks(ict, S, R, [F], T)[0], fixed)
    o, _ = outline_points(ict, S, R, [F], T)
    gap = np.linalg.norm(o[0] - fixed[JAW_LANDMARKS], axis=-1)
    assert gap.max() <= 2.0 * F + 1e-9, gap


@pytest.mark.parametrize("yaw", [45.0, 70.0, -70.0])
def test_turned_away_jaw_on_the_outline(ict, yaw):
    """The side turned away moves outward of its hidden vertices; the other side keeps them; and
    the jaw points lie within a few pixels of, but not on, the candidate rows' points."""
    S = ict.mean[None].astype(np.float64)
    R = camera.rotation_from_euler(np.radians([yaw]), 0.0, 0.0)
    lm, z = outline_landmarks(ict, S, R, [F], T, return_depth=True)
    fixed = camera.project(ict.landmarks_of(S), R, [F], T)[0]
    away = (JAW_LANDMARKS >= 9) if yaw > 0 else (JAW_LANDMARKS < 8)
    np.testing.assert_array_equal(lm[0, JAW_LANDMARKS[~away]], fixed[JAW_LANDMARKS[~away]])
    np.testing.assert_array_equal(lm[0, 17:], fixed[17:])
    cheek = JAW_LANDMARKS[away & (np.abs(JAW_LANDMARKS - 8) >= 3)]
    assert (np.linalg.norm(lm[0, cheek] - fixed[cheek], axis=-1) > 2.0).all()       # > 4 mm
    off = np.linalg.norm(lm[0] - contour_landmarks(ict, S, R, [F], T)[0], axis=-1)[JAW_LANDMARKS[away]]
    assert 0.5 < off.mean() < 10.0 and off.max() < 15.0, off
    hidden = camera.depth(ict.landmarks_of(S), R)[0, cheek]
    assert (z[0, cheek] > hidden).all()                                       # in front of the hidden vertices


def test_rendered_mask_agrees(ict):
    """The exact outline against the rasterised face region's mask (0.5 px/mm, a canvas wide
    enough for the turned face): within 1.5 pixels everywhere, 0.5 px in the median."""
    yaw = np.radians([30.0, 70.0, 90.0])
    S = np.repeat(ict.mean[None].astype(np.float64), 3, 0)
    R = camera.rotation_from_euler(yaw, 0.0 * yaw, 0.0 * yaw)
    f, t = np.full(3, F), np.tile([80.0, 56.0], (3, 1))
    from disentangled_face.data.render import RendererUnavailableError

    try:
        r = rendered_outline_points(ict, S, R, f, t, (112, 160))
    except RendererUnavailableError:
        pytest.skip("no headless OpenGL context")
    o, _ = outline_points(ict, S, R, f, t)
    e = np.linalg.norm(o - r, axis=-1)
    assert e.max() < 1.5 and np.median(e) < 0.5, e


def test_outline_checks_its_inputs(ict):
    S = ict.mean[None].astype(np.float64)
    with pytest.raises(ValueError, match="direction"):
        outline_points(ict, S, np.eye(3)[None], [F], T, direction="radial")
    with pytest.raises(ValueError, match="jaw landmarks"):
        outline_points(ict, S, np.eye(3)[None], [F], T, landmarks=[8])
    with pytest.raises(ValueError, match="shapes must be"):
        outline_points(ict, np.zeros((1, 5, 3)), np.eye(3)[None], [F], T)
    with pytest.raises(ValueError, match="jaw_landmarks"):
        contour_error_vs_yaw(ict, (0,), 1, jaw_landmarks="detector")


def test_config_accepts_outline():
    assert SynthConfig(jaw_landmarks="outline").jaw_landmarks == "outline"
    assert SynthConfig().jaw_landmarks == "fixed" and load_config("book").synth.jaw_landmarks == "contour"


def test_marching_on_the_independent_outline_at_yaw70(ict):
    """The issue's acceptance test on jaw points that are not the fitter's candidates (outline
    along the jawline normals): at yaw 70 the marching fit's identity is within 1 mm (RMSE after
    Procrustes) of the yaw-0 fit for the mean face (0.90 mm measured) but only within 1.5 mm
    for all four subjects (0.90-1.37 mm: the 1 mm bar of the candidate-based points is not met
    here); the fixed-vertex fit is about 4.8 mm off, more than three times marching's."""
    opts = load_config("book").fitting
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = contour_error_vs_yaw(ict, (0, 70), n_subjects=4, seed=0, options=opts, jaw_landmarks="outline")
    march, fixed = r["marching"][1], r["fixed"][1]
    assert march[0] < 1.0, march
    assert march.max() < 1.5, march
    assert (fixed > 3 * march).all() and fixed.min() > 4.0, (fixed, march)
    # the reference itself: the same landmarks fitted in a batch of another size, in float32 (2e-6 mm
    # seen on one AMD EPYC machine, 5e-14 on another)
    assert (r["marching"][0] < 1e-4).all()
    assert r["offset_px"][1].max() > 3.0                                     # not the candidates' points
