"""Metrics of Sec. 4.1-4.2 against hand-computed cases."""

import numpy as np
import pytest

from disentangled_face.evaluation import metrics as M
from disentangled_face.shape import MorphableModel
from disentangled_face.shape.camera import rotation_from_euler


# ---------------------------------------------------------------------- Procrustes
def test_procrustes_two_points_2d_is_a_rotation_not_a_reflection():
    X = np.array([[2.7186, 89.4185], [97.2688, 8.6692]])
    Y = np.array([[3.5839, 89.7787], [96.7098, 7.3831]])
    # a plain SVD (Kabsch without the sign fix) gives a reflection for this case
    U, _, Vt = np.linalg.svd((Y - Y.mean(0)).T @ (X - X.mean(0)))
    assert np.linalg.det(U @ Vt) == pytest.approx(-1.0)
    c, R, t = M.similarity_procrustes(X, Y)
    assert np.linalg.det(R) == pytest.approx(1.0)
    angle = np.degrees(np.arctan2(R[1, 0], R[0, 0]))
    # direction p1->p2 turns from atan2(-80.7493, 94.5502) to atan2(-82.3956, 93.1259)
    expected = np.degrees(np.arctan2(-82.3956, 93.1259) - np.arctan2(-80.7493, 94.5502))
    assert angle == pytest.approx(expected, abs=1e-6)
    assert -1.1 < angle < -0.9
    assert c == pytest.approx(np.hypot(93.1259, -82.3956) / np.hypot(94.5502, -80.7493), rel=1e-6)
    np.testing.assert_allclose(M.apply_similarity(X, c, R, t), Y, atol=1e-9)


def test_procrustes_recovers_known_similarity_3d_batched():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4, 68, 3)) * 40
    scales = np.array([0.5, 1.0, 1.7, 3.0])
    Rs = rotation_from_euler(np.array([0.3, -1.2, 2.0, 0.0]), np.array([0.1, 0.4, -0.5, 0.0]),
                             np.array([-0.2, 0.0, 1.0, np.pi]))
    ts = rng.normal(size=(4, 3)) * 100
    Y = M.apply_similarity(X, scales, Rs, ts)
    c, R, t = M.similarity_procrustes(X, Y)
    np.testing.assert_allclose(c, scales, rtol=1e-10)
    np.testing.assert_allclose(R, Rs, atol=1e-10)
    np.testing.assert_allclose(t, ts, atol=1e-8)
    np.testing.assert_allclose(np.linalg.det(R), 1.0)


def test_procrustes_mirrored_shape_gets_a_rotation_and_a_residual():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 3)) * 20
    Y = X * np.array([-1.0, 1.0, 1.0])  # mirror image: no proper rotation maps X onto Y
    c, R, t = M.similarity_procrustes(X, Y)
    assert np.linalg.det(R) == pytest.approx(1.0)
    assert np.abs(M.apply_similarity(X, c, R, t) - Y).max() > 1.0


def test_procrustes_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        M.similarity_procrustes(np.zeros((5, 3)), np.zeros((6, 3)))
    with pytest.raises(ValueError, match="coincide"):
        M.similarity_procrustes(np.ones((5, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="finite"):
        M.similarity_procrustes(np.full((5, 3), np.nan), np.zeros((5, 3)))


# ---------------------------------------------------------------------- shape error
def _grid_face(n_side=11, spacing=10.0):
    """A flat grid of points, 10 mm apart, centred at the origin (nose tip = centre)."""
    g = (np.arange(n_side) - n_side // 2) * spacing
    xx, yy = np.meshgrid(g, g)
    return np.stack([xx.ravel(), yy.ravel(), np.zeros(xx.size)], 1)


def test_shape_error_known_offset_invariant_to_similarity():
    truth = _grid_face()
    n = truth.shape[0]
    lm = np.arange(0, n, 3)  # landmark subset
    recon = truth.copy()
    moved = np.zeros(n, bool)
    moved[1::3] = True  # non-landmark vertices pushed 2 mm along z
    recon[moved, 2] += 2.0
    centre = truth[n // 2]
    # apply an arbitrary similarity to the reconstruction: it must not change the errors
    R = rotation_from_euler(0.4, -0.3, 0.2)
    recon_t = M.apply_similarity(recon, 1.3, R, np.array([5.0, -7.0, 100.0]))
    err = M.shape_error(recon_t, truth, recon_t[lm], truth[lm], centre, radius_mm=1000.0)
    k = moved.sum()
    assert err.n_kept == n
    assert err.mean_mm == pytest.approx(2.0 * k / n, rel=1e-9)
    assert err.rmse_mm == pytest.approx(np.sqrt(4.0 * k / n), rel=1e-9)
    assert err.paper == pytest.approx(np.sqrt(4.0 * k) / n, rel=1e-9)
    assert err.paper == pytest.approx(err.rmse_mm / np.sqrt(n), rel=1e-9)


def test_shape_error_crop_boundary_is_inclusive():
    truth = _grid_face()  # 10 mm grid; distances from the centre: 0, 10, 14.1, 20, ...
    n = truth.shape[0]
    lm = np.arange(n)
    centre = truth[n // 2]
    recon = truth.copy()
    err = M.shape_error(recon, truth, recon[lm], truth[lm], centre, radius_mm=10.0)
    assert err.n_kept == 5  # centre and its 4 neighbours at exactly 10 mm
    err2 = M.shape_error(recon, truth, recon[lm], truth[lm], centre, radius_mm=9.999)
    assert err2.n_kept == 1
    assert err.mean_mm == pytest.approx(0.0, abs=1e-9)
    # an error outside the crop is not counted; one inside is
    recon_far = truth.copy()
    corner = np.argmax(np.linalg.norm(truth - centre, axis=1))
    recon_far[corner, 2] += 50.0
    e = M.shape_error(recon_far, truth, truth, truth, centre, radius_mm=10.0)
    assert e.mean_mm == pytest.approx(0.0, abs=1e-9)


def test_shape_error_nearest_matches_vertex_for_same_points_and_handles_other_topology():
    truth = _grid_face()
    n = truth.shape[0]
    centre = truth[n // 2]
    perm = np.random.default_rng(0).permutation(n)
    recon = truth[perm]  # same points, other vertex order
    e = M.shape_error(recon, truth, truth[:10], truth[:10], centre, correspondence="nearest")
    assert e.mean_mm == pytest.approx(0.0, abs=1e-9)
    # a denser scan of the same plane lifted by 3 mm: nearest distances are all 3 mm
    dense = _grid_face(21, 5.0) + np.array([0, 0, 3.0])
    lm_t = truth[[0, 10, 60, 110, 120]]
    e2 = M.shape_error(dense, truth, lm_t + np.array([0, 0, 3.0]), lm_t, centre, correspondence="nearest")
    assert e2.mean_mm == pytest.approx(0.0, abs=1e-9)  # Procrustes removes the lift
    with pytest.raises(ValueError, match="same vertex count"):
        M.shape_error(dense, truth, lm_t, lm_t, centre, correspondence="vertex")


# a flat square of side 10 mm in z = 0, two triangles; the scan points lie at known heights above it
_FLAT_V = np.array([[0.0, 0, 0], [10, 0, 0], [10, 10, 0], [0, 10, 0]])
_FLAT_T = np.array([[0, 1, 2], [0, 2, 3]])


def test_surface_distance_to_a_flat_mesh_is_the_height():
    pts = np.array([[2.0, 3.0, 1.0], [5.0, 5.0, 2.0], [7.0, 1.0, 0.5], [4.0, 6.0, -3.0], [5.0, 5.0, 0.0]])
    heights = np.abs(pts[:, 2])
    np.testing.assert_allclose(M.surface_distance(pts, _FLAT_V, _FLAT_T), heights, atol=1e-9)
    # a point beside the square: the distance to its nearest edge point, here the corner (10, 10, 0)
    assert M.surface_distance([[13.0, 14.0, 0.0]], _FLAT_V, _FLAT_T)[0] == pytest.approx(5.0)
    # through shape_error: identical landmarks give the identity alignment; a huge crop keeps all
    lm = _FLAT_V[[0, 1, 3]]
    e = M.shape_error(_FLAT_V, pts, lm, lm, pts[1], radius_mm=1e3, correspondence="surface",
                      recon_triangles=_FLAT_T)
    assert e.mean_mm == pytest.approx(heights.mean(), abs=1e-9)
    assert e.rmse_mm == pytest.approx(np.sqrt((heights ** 2).mean()), abs=1e-9)
    assert e.n_kept == len(pts)
    # the nearest *vertex* is a corner of the square: a larger distance, known in closed form
    corner = np.min(np.linalg.norm(pts[:, None, :] - _FLAT_V[None], axis=-1), axis=1)
    assert (corner > heights).all()
    e_v = M.shape_error(_FLAT_V, pts, lm, lm, pts[1], radius_mm=1e3, correspondence="nearest")
    assert e_v.mean_mm == pytest.approx(corner.mean(), abs=1e-9) and e_v.mean_mm > e.mean_mm
    with pytest.raises(ValueError, match="recon_triangles"):
        M.shape_error(_FLAT_V, pts, lm, lm, pts[1], radius_mm=1e3, correspondence="surface")
    with pytest.raises(ValueError, match="outside"):
        M.surface_distance(pts, _FLAT_V, _FLAT_T + 4)
    with pytest.raises(ValueError, match="'surface'"):
        M.shape_error(_FLAT_V, pts, lm, lm, pts[1], correspondence="closest")


def test_surface_error_of_a_scan_equal_to_the_mesh_is_zero():
    m = MorphableModel.toy(n=150, k_id=6, k_exp=3, seed=3)
    s = m.shape(*m.sample(2, rng=0))                       # (2, n, 3) mm, a batch
    rng = np.random.default_rng(1)
    perm = rng.permutation(m.n_vertices)                   # the scan lists the same points in another order
    lm = m.landmarks_of(s)
    e = M.shape_error(s, s[:, perm], lm, lm, s[:, m.nose_tip], radius_mm=1e4, correspondence="surface",
                      recon_triangles=m.triangles)
    np.testing.assert_allclose(e.mean_mm, 0.0, atol=1e-6)
    # a denser scan: points inside the triangles are on the surface (0) but not on a vertex
    bary = rng.dirichlet(np.ones(3), size=len(m.triangles))
    inside = np.einsum("tk,tkd->td", bary, s[0][m.triangles])
    e_s = M.shape_error(s[0], inside, lm[0], lm[0], s[0, m.nose_tip], radius_mm=1e4, correspondence="surface",
                        recon_triangles=m.triangles)
    e_n = M.shape_error(s[0], inside, lm[0], lm[0], s[0, m.nose_tip], radius_mm=1e4, correspondence="nearest")
    assert e_s.mean_mm == pytest.approx(0.0, abs=1e-6) and e_n.mean_mm > 0.1


def test_model_shape_error_batched_and_mismatch_raises():
    m = MorphableModel.toy(n=120, k_id=4, k_exp=2)
    a_id, a_exp = m.sample(3, rng=0)
    truth = m.shape(a_id, a_exp)
    e = M.model_shape_error(m, truth, truth, radius_mm=1e4)
    np.testing.assert_allclose(e.rmse_mm, 0.0, atol=1e-5)
    assert e.rmse_mm.shape == (3,)
    recon = m.shape(a_id * 0.5, a_exp)
    e2 = M.model_shape_error(m, recon, truth, radius_mm=1e4)
    assert (e2.rmse_mm > 0.1).all()
    assert (e2.mean_mm <= e2.rmse_mm + 1e-12).all()
    with pytest.raises(ValueError, match="n=120"):
        M.model_shape_error(m, recon[:, :100], truth)


# ---------------------------------------------------------------------- verification
def test_eer_hand_computed():
    assert M.eer([0.9, 0.6, 0.7, 0.3, 0.2], [1, 1, 0, 0, 0]) == pytest.approx(1 / 3)
    # the same data as distances
    assert M.eer([-0.9, -0.6, -0.7, -0.3, -0.2], [1, 1, 0, 0, 0], higher_is_genuine=False) == pytest.approx(1 / 3)
    # perfect separation and all-tied scores
    assert M.eer([5, 4, 1, 0], [1, 1, 0, 0]) == pytest.approx(0.0)
    assert M.eer([1, 1, 1, 1], [1, 0, 1, 0]) == pytest.approx(0.5)
    assert M.auc([1, 1, 1, 1], [1, 0, 1, 0]) == pytest.approx(0.5)
    assert M.auc([5, 4, 1, 0], [1, 1, 0, 0]) == pytest.approx(1.0)
    # reversed ranking
    assert M.eer([0, 1, 4, 5], [1, 1, 0, 0]) == pytest.approx(1.0)


def test_tar_at_far_picks_the_most_permissive_threshold():
    d = [1, 2, 3, 10, 20, 30]
    y = [1, 1, 1, 0, 0, 0]
    tar, far, tau = M.tar_at_far(d, y, d, y, 0.001, higher_is_genuine=False)
    assert (tar, far) == (1.0, 0.0)
    assert tau == pytest.approx(6.5)
    # overlapping similarities: genuine (0.9, 0.6), impostor (0.7, 0.3, 0.2)
    s, ys = [0.9, 0.6, 0.7, 0.3, 0.2], [1, 1, 0, 0, 0]
    assert M.tar_at_far(s, ys, s, ys, 0.0)[:2] == (0.5, 0.0)
    tar, far, _ = M.tar_at_far(s, ys, s, ys, 0.34)
    assert tar == 1.0 and far == pytest.approx(1 / 3)
    # threshold from training, rates on test
    tar, far, tau = M.tar_at_far(s, ys, [0.65, 0.85, 0.1, 0.55], [1, 1, 0, 0], 0.0)
    assert tau == pytest.approx(0.8) and tar == 0.5 and far == 0.0


def test_cosine_and_bad_features():
    a = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    b = np.array([[2.0, 0.0], [-1.0, -1.0], [3.0, 0.0]])
    np.testing.assert_allclose(M.cosine_similarity(a, b), [1.0, -1.0, 0.0], atol=1e-12)
    with pytest.raises(ValueError, match="zero vectors"):
        M.cosine_similarity(np.zeros((2, 3)), np.ones((2, 3)))
    with pytest.raises(ValueError, match="NaN"):
        M.pair_scores(np.array([[np.nan, 1.0], [1.0, 0.0]]), np.array([[0, 1]]))
    with pytest.raises(ValueError, match="both genuine"):
        M.eer([0.1, 0.2], [1, 1])


def test_fusion_zscore_and_constant_matcher():
    s1 = np.array([1.0, 2.0, 3.0, 4.0])
    train = np.array([True, True, True, False])
    fused = M.fuse_scores([s1], train)
    np.testing.assert_allclose(fused, (s1 - 2.0) / np.std([1, 2, 3]))
    const = np.full(4, 0.7)
    np.testing.assert_allclose(M.fuse_scores([s1, const], train), fused)  # contributes 0
    # a distance matcher is negated before normalising
    np.testing.assert_allclose(M.fuse_scores([s1, -s1], train, [True, False]), 2 * fused)


def _synthetic_pairs(sep, n=600, seed=0):
    rng = np.random.default_rng(seed)
    y = np.tile([1, 0], n // 2).astype(bool)
    s = rng.normal(size=n) + sep * y
    folds = np.repeat(np.arange(10), n // 10)
    return s, y, folds


def test_verification_perfect_and_chance():
    s, y, folds = _synthetic_pairs(0.0)
    perfect = M.verification(y.astype(float) + 0.01 * s, y, folds)
    sm = perfect.summary()
    for k in ("accuracy", "100-EER", "AUC", "TAR@FAR=10%", "TAR@FAR=1%"):
        assert sm[k] == (100.0, 0.0)
    chance = M.verification(s, y, folds).summary()
    assert 40 < chance["accuracy"][0] < 60 and 40 < chance["AUC"][0] < 60
    tied = M.verification(np.zeros_like(s), y, folds).summary()
    assert tied["AUC"] == (50.0, 0.0) and tied["100-EER"] == (50.0, 0.0)
    assert tied["accuracy"] == (50.0, 0.0)


def test_verification_far_respected_and_fusion_helps():
    s1, y, folds = _synthetic_pairs(1.5, n=2000, seed=1)
    s2, _, _ = _synthetic_pairs(1.5, n=2000, seed=2)
    r1 = M.verification(s1, y, folds).summary()
    rf = M.verification([s1, s2], y, folds).summary()
    # analytic: accuracy of one Gaussian matcher with d'=1.5 is Phi(0.75) = 77.3%;
    # the fused one has d' = 1.5*sqrt(2): Phi(1.06) = 85.5%
    assert r1["accuracy"][0] == pytest.approx(77.3, abs=2.5)
    assert rf["accuracy"][0] == pytest.approx(85.5, abs=2.5)
    assert rf["AUC"][0] > r1["AUC"][0]
    assert r1["FAR reached@10%"][0] == pytest.approx(10.0, abs=2.5)
    assert r1["FAR reached@1%"][0] < 3.0
    with pytest.raises(ValueError, match="2 folds"):
        M.verification(s1, y, np.zeros_like(folds))
