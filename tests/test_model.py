"""The composite shape model (Eq. 1-3, 6) on the real ICT-FaceKit model and on toy models."""

import numpy as np
import pytest
import torch

from disentangled_face.shape import MorphableModel, load_ict_facekit, load_landmark_indices


@pytest.fixture(scope="module")
def ict():
    return load_ict_facekit()


def test_ict_sizes_and_units(ict):
    assert (ict.n_vertices, ict.n_id, ict.n_exp) == (9409, 100, 53)
    assert ict.triangles.shape[1] == 3 and ict.triangles.min() == 0 and ict.triangles.max() < 9409
    # millimetres: the face area is about 18 cm wide, the eye corners ~ 9 cm apart
    width = ict.mean[:, 0].max() - ict.mean[:, 0].min()
    assert 150 < width < 220
    outer_eyes = np.linalg.norm(ict.mean[ict.landmarks[36]] - ict.mean[ict.landmarks[45]])
    assert 80 < outer_eyes < 100
    assert ict.exp_names[0] == "browDown_L" and len(set(ict.exp_names)) == 53


def test_landmark_indices_zero_based_in_range(ict):
    assert ict.landmarks.shape == (68,)
    assert ict.landmarks.min() >= 0 and ict.landmarks.max() < ict.n_vertices
    # iBUG order: the nose tip (30) is the most forward landmark; 36 (right eye outer corner
    # in the image) lies left of 45
    lm = ict.mean[ict.landmarks]
    assert np.argmax(lm[:, 2]) == 30
    assert lm[36, 0] < lm[45, 0]
    assert ict.nose_tip == ict.landmarks[30]


def test_linearity_and_decomposition(ict):
    rng = np.random.default_rng(0)
    a1, e1 = ict.sample(1, rng)
    a2, e2 = ict.sample(1, rng)
    s = lambda a, e: ict.shape(a[0], e[0])  # noqa: E731
    # s is affine in the codes: s(a1 + a2) - s(0) = (s(a1) - s(0)) + (s(a2) - s(0))
    z_id, z_exp = np.zeros(ict.n_id), np.zeros(ict.n_exp)
    lhs = ict.shape(a1[0] + a2[0], e1[0] + e2[0]) - ict.shape(z_id, z_exp)
    rhs = (s(a1, e1) - ict.shape(z_id, z_exp)) + (s(a2, e2) - ict.shape(z_id, z_exp))
    np.testing.assert_allclose(lhs, rhs, atol=1e-3)
    # Eq. 2: s = s_mean + delta_id + delta_res
    np.testing.assert_allclose(s(a1, e1), ict.mean + ict.delta_id(a1[0]) + ict.delta_res(e1[0]), atol=1e-3)
    # identity shape carries no expression
    np.testing.assert_allclose(ict.identity_shape(a1[0]), ict.shape(a1[0]), atol=1e-4)
    # zero codes give the mean shape exactly
    np.testing.assert_array_equal(ict.shape(z_id, z_exp), ict.mean)


def test_flat_layout_matches_eq1(ict):
    a, e = ict.sample(3, 1)
    pts = ict.shape(a, e)
    flat = ict.shape(a, e, flat=True)
    assert pts.shape == (3, 9409, 3) and flat.shape == (3, 3 * 9409)
    # [x1, y1, z1, x2, ...]
    np.testing.assert_array_equal(flat[:, 0:3], pts[:, 0])
    np.testing.assert_array_equal(flat[:, 3:6], pts[:, 1])
    # the matrix form of Eq. 3
    np.testing.assert_allclose(flat[0], ict.s_mean + ict.A_id @ a[0] + ict.A_exp @ e[0], atol=1e-3)


def test_torch_matches_numpy_batched(ict):
    a, e = ict.sample(4, 2)
    ref = ict.shape(a, e)
    out = ict.shape(torch.from_numpy(a), torch.from_numpy(e))
    assert isinstance(out, torch.Tensor) and out.shape == (4, 9409, 3)
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-3)
    out64 = ict.shape(torch.from_numpy(a).double(), torch.from_numpy(e).double())
    assert out64.dtype == torch.float64


def test_landmark_subset(ict):
    a, e = ict.sample(2, 3)
    s = ict.shape(a, e)
    lm = ict.landmarks_of(s)
    assert lm.shape == (2, 68, 3)
    np.testing.assert_array_equal(lm[1, 5], s[1, ict.landmarks[5]])
    np.testing.assert_array_equal(ict.landmarks_of(ict.shape(a, e, flat=True)), lm)
    mean_U, id_U, exp_U = ict.landmark_bases()
    np.testing.assert_allclose(lm[0], mean_U + np.einsum("k,knd->nd", a[0], id_U) + np.einsum("k,knd->nd", e[0], exp_U), atol=1e-3)


def test_prior_sampling_statistics(ict):
    a, e = ict.sample(4000, 7, exp_active=4)
    assert abs(a.mean()) < 0.01 and abs(a.std() - 1) < 0.01
    assert e.min() >= 0 and e.max() <= 1
    assert np.all((e > 0).sum(1) == 4)
    # the mean of sampled identity shapes converges to the mean shape (sd of the mean ~ 1/sqrt(N))
    mean_shape = ict.identity_shape(a[:2000]).mean(0)
    err = np.sqrt(((mean_shape - ict.mean) ** 2).sum(1)).mean()
    per_face = np.sqrt((ict.delta_id(a[:50]) ** 2).sum(2)).mean()
    assert err < 3 * per_face / np.sqrt(2000)


def test_wrong_shapes_raise(ict):
    with pytest.raises(ValueError, match=r"alpha_id must have shape \(100,\) or \(B, 100\)"):
        ict.shape(np.zeros(99))
    with pytest.raises(ValueError, match=r"alpha_exp must have shape \(53,\)"):
        ict.shape(np.zeros(100), np.zeros((2, 52)))
    with pytest.raises(ValueError, match="batches differ"):
        ict.shape(np.zeros((2, 100)), np.zeros((3, 53)))
    with pytest.raises(ValueError, match="n=9409"):
        ict.landmarks_of(np.zeros((100, 3)))


def test_constructor_validation():
    m = MorphableModel.toy(n=70, k_id=3, k_exp=2)
    with pytest.raises(ValueError, match="landmarks indices must lie in"):
        MorphableModel(m.mean, m.id_basis, m.exp_basis, m.triangles, np.arange(68) + 10)
    with pytest.raises(ValueError, match=r"id_basis must have shape \(k, 70, 3\)"):
        MorphableModel(m.mean, m.id_basis[:, :60], m.exp_basis, m.triangles, m.landmarks)


def test_landmark_index_files_one_based(tmp_path):
    idx = np.arange(1, 69) * 10
    p = tmp_path / "lm.txt"
    np.savetxt(p, idx, fmt="%d")
    np.testing.assert_array_equal(load_landmark_indices(p, 1000, one_based=True), idx - 1)
    # auto-detection: the largest index equals n, which only a 1-based index can
    idx[-1] = 1000
    assert load_landmark_indices(idx, 1000)[-1] == 999
    with pytest.raises(ValueError, match=r"\[0, 500\)"):
        load_landmark_indices(np.arange(68) + 600, 500)
    with pytest.raises(ValueError, match="expected 68"):
        load_landmark_indices(np.arange(5), 500)


def test_expression_energy_in_identity_span_analytic():
    """A blendshape equal to an identity mode keeps all its energy, one orthogonal to them none,
    and their normalised sum half."""
    import numpy as np

    from disentangled_face.shape import MorphableModel, expression_energy_in_identity_span

    e = np.eye(9)
    ident = np.stack([e[0], e[1]]).reshape(2, 3, 3) * [[[2.0]], [[0.5]]]
    exp = np.stack([e[1], e[5], (e[0] + e[5]) / np.sqrt(2), 3 * e[0] - e[1]]).reshape(4, 3, 3)
    m = MorphableModel(mean=np.zeros((3, 3)), id_basis=ident, exp_basis=exp, triangles=np.zeros((0, 3), int),
                       landmarks=np.zeros(0, int), exp_names=["same", "orthogonal", "half", "inside"])
    np.testing.assert_allclose(expression_energy_in_identity_span(m).to_numpy(), [1.0, 0.0, 0.5, 1.0], atol=1e-12)


def test_neutral_mean_counts_each_subject_once_and_measures_its_distance():
    from disentangled_face.shape import expected_mean_rms, neutral_mean

    toy = MorphableModel.toy(n=40, k_id=4, k_exp=2, seed=1)
    a, b = np.array([1.0, 0.0, 0.0, 0.0]), np.array([0.0, -2.0, 0.0, 0.0])
    codes, labels = np.stack([a, a, a, b]), np.array([7, 7, 7, 3])  # subject 7 on three images
    mean, rms = neutral_mean(toy, codes, labels)
    np.testing.assert_allclose(mean, toy.identity_shape((a + b) / 2), atol=1e-5)
    d = toy.identity_shape((a + b) / 2) - toy.mean
    assert rms == pytest.approx(np.sqrt((d ** 2).sum(axis=1).mean()), rel=1e-5)
    _, per_image = neutral_mean(toy, codes)  # without labels every row counts: (3a + b) / 4
    d4 = toy.identity_shape((3 * a + b) / 4) - toy.mean
    assert per_image == pytest.approx(np.sqrt((d4 ** 2).sum(axis=1).mean()), rel=1e-5)
    assert per_image != pytest.approx(rms)
    # one unit of identity mode 0: the RMS of that basis shape
    unit = np.sqrt((toy.id_basis[0].astype(float) ** 2).sum(1).mean())
    assert neutral_mean(toy, a[None])[1] == pytest.approx(unit, rel=1e-5)
    with pytest.raises(ValueError, match="alpha_id must have shape"):
        neutral_mean(toy, np.zeros((2, 3)))
    with pytest.raises(ValueError, match="labels must have shape"):
        neutral_mean(toy, codes, labels[:2])
    with pytest.raises(ValueError, match="n_subjects"):
        expected_mean_rms(toy, 0)


def test_expected_mean_rms_matches_draws_from_the_prior():
    from disentangled_face.shape import expected_mean_rms, neutral_mean

    toy = MorphableModel.toy(n=30, k_id=5, k_exp=2, seed=2)
    rng = np.random.default_rng(0)
    n_subj = 20
    ms = [neutral_mean(toy, rng.standard_normal((n_subj, 5)))[1] ** 2 for _ in range(2000)]
    # the root of the mean square over 2000 populations, within 5 % of the formula
    assert np.sqrt(np.mean(ms)) == pytest.approx(expected_mean_rms(toy, n_subj), rel=0.05)
    assert expected_mean_rms(toy, 4 * n_subj) == pytest.approx(expected_mean_rms(toy, n_subj) / 2)
