"""The 3DMM fitter (Eq. 6-7): pose, recovery of known parameters, noise, degenerate input."""

import warnings

import numpy as np
import pytest

from disentangled_face import fitting
from disentangled_face.config import ConfigError, FittingConfig, load_config, with_overrides
from disentangled_face.data.landmarks import Detection
from disentangled_face.shape import MorphableModel, camera, load_ict_facekit, load_landmark_indices

FAST = dict(threads=1)


@pytest.fixture(scope="module")
def ict():
    return load_ict_facekit()


def _views(model, a_id, a_exp, yaw_deg, seed=0, f=0.5):
    """Noiseless landmarks of one subject (codes a_id (k,), a_exp (M, k)) at the given yaws."""
    rng = np.random.default_rng(seed)
    M = len(yaw_deg)
    R = camera.rotation_from_euler(np.radians(yaw_deg), np.radians(rng.uniform(-15, 15, M)),
                                   np.radians(rng.uniform(-10, 10, M)))
    fs = f * rng.uniform(0.9, 1.1, M)
    t = rng.uniform(40, 60, (M, 2))
    pts = model.landmarks_of(model.shape(np.repeat(a_id[None], M, 0), a_exp)).astype(np.float64)
    return camera.project(pts, R, fs, t), R, fs, t


# ------------------------------------------------------------------ pose
def test_nearest_rotation_of_sheared_affine_rows():
    M = np.array([[1.0, 0.0, 0.0], [0.2, 1.0, 0.0]])
    # the naive answer (normalise rows, cross them) is not a rotation
    r1, r2 = M[0] / np.linalg.norm(M[0]), M[1] / np.linalg.norm(M[1])
    naive = np.stack([r1, r2, np.cross(r1, r2)])
    assert abs(naive[0] @ naive[1]) > 0.1
    assert np.linalg.det(naive) < 0.99
    f, R = fitting.nearest_scaled_rotation(M)
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-9)
    assert np.linalg.det(R) == pytest.approx(1.0, abs=1e-9)
    yaw, pitch, roll = camera.euler_from_rotation(R)
    assert abs(yaw) < 1e-9 and abs(pitch) < 1e-9
    # polar decomposition of [[1, 0], [0.2, 1]]: roll = atan2(0.2, 2) = 5.711 deg
    assert np.degrees(roll) == pytest.approx(np.degrees(np.arctan2(0.2, 2.0)), abs=1e-9)
    assert 5.6 < np.degrees(roll) < 5.75
    # and it is the Frobenius-nearest scaled roll: brute force over angle and scale
    th = np.radians(np.linspace(0, 12, 24001))
    best = min(((np.linalg.norm(M - s * np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0]])), a)
                for s in np.linspace(0.95, 1.05, 201) for a in th[::40]))
    assert abs(best[1] - roll) < np.radians(0.03)
    assert f == pytest.approx(np.linalg.svd(M, compute_uv=False).mean())


def test_nearest_rotation_rejects_rank_deficient():
    with pytest.raises(ValueError, match="rank"):
        fitting.nearest_scaled_rotation(np.array([[1.0, 0, 0], [2.0, 0, 0]]))
    with pytest.raises(ValueError, match="shape"):
        fitting.nearest_scaled_rotation(np.eye(3))


@pytest.mark.parametrize("yaw", [-80.0, -45.0, 0.0, 30.0, 80.0])
def test_estimate_pose_recovers_camera(ict, yaw):
    X = ict.landmarks_of(ict.mean).astype(np.float64)
    R = camera.rotation_from_euler(np.radians(yaw), np.radians(10.0), np.radians(-7.0))
    y = camera.project(X, R, 0.47, np.array([50.0, 60.0]))
    R2, f2, t2 = fitting.estimate_pose(X, y)
    np.testing.assert_allclose(R2, R, atol=1e-9)
    assert f2 == pytest.approx(0.47, rel=1e-9)
    np.testing.assert_allclose(t2, [50.0, 60.0], atol=1e-7)
    assert np.degrees(camera.euler_from_rotation(R2)[0]) == pytest.approx(yaw, abs=1e-7)


# ------------------------------------------------------------------ recovery of known parameters
def test_multi_image_recovers_parameters_with_model_subset(ict):
    """20 identity + 10 expression modes, 8 noiseless views from -80 to +80 deg yaw."""
    m = ict.subset(20, 10)
    rng = np.random.default_rng(1)
    a_id = rng.standard_normal(20)
    a_exp = rng.uniform(0, 0.8, (8, 10)) * (rng.random((8, 10)) < 0.4)
    yaws = np.linspace(-80, 80, 8)
    y, R, f, t = _views(m, a_id, a_exp, yaws)
    fit = fitting.fit_shape_and_pose(m, y, lambda_id=1e-8, lambda_exp=1e-8, max_iter=10, joint_iters=30, **FAST)
    assert np.abs(fit.alpha_id - a_id).max() < 1e-3
    assert np.abs(fit.alpha_exp - a_exp).max() < 1e-3
    np.testing.assert_allclose(fit.R, R, atol=1e-5)
    np.testing.assert_allclose(fit.f, f, rtol=1e-5)
    np.testing.assert_allclose(fit.t, t, atol=1e-3)
    np.testing.assert_allclose(np.degrees(fit.yaw), yaws, atol=1e-3)
    assert fit.rmse_px.max() < 1e-3
    np.testing.assert_allclose(fit.project(m), y, atol=1e-2)
    assert fit.kept == list(range(8)) and fit.discarded == []


@pytest.mark.parametrize("yaw", [-80.0, -40.0, 0.0, 40.0, 80.0])
@pytest.mark.filterwarnings("ignore:fit quality:UserWarning")  # lambda 1e-4: codes beyond 5 SD, rightly flagged
def test_single_image_full_model_reprojects_exactly(ict, yaw):
    """With 68 landmarks and 100 + 53 modes one image under-determines the codes: the fit must
    still reproduce the landmarks and the camera."""
    rng = np.random.default_rng(int(yaw) + 100)
    a_id, a_exp = ict.sample(1, rng)
    y, R, f, t = _views(ict, a_id[0], a_exp, [yaw], seed=int(yaw) + 100)
    fit = fitting.fit_single_image(ict, y[0], lambda_id=1e-4, lambda_exp=1e-4, joint_iters=60, **FAST)
    assert fit.alpha_exp.shape == (1, ict.n_exp) and fit.R.shape == (1, 3, 3)
    assert fit.rmse_px[0] < 0.1                        # pixels, at ~0.5 px/mm: < 0.2 mm
    assert np.degrees(abs(fit.yaw[0] - np.radians(yaw))) < 3.0
    assert (fit.alpha_exp >= 0).all() and (fit.alpha_exp <= 1).all()


def test_multi_image_full_model_identity(ict):
    """16 noiseless views of one subject: landmarks reproduced and the identity close at the landmarks."""
    rng = np.random.default_rng(5)
    a_id, a_exp = ict.sample(16, rng)
    yaws = np.linspace(-80, 80, 16)
    y, *_ = _views(ict, a_id[0], a_exp, yaws, seed=5)
    fit = fitting.fit_shape_and_pose(ict, y, lambda_id=1e-4, lambda_exp=1e-4, joint_iters=30, **FAST)
    assert fit.rmse_px.max() < 0.02
    err = fitting.shape_rmse(fit.identity_shape(ict), ict.identity_shape(a_id[0]), ict.landmarks,
                             align_on=ict.landmarks)
    base = fitting.shape_rmse(ict.mean, ict.identity_shape(a_id[0]), ict.landmarks, align_on=ict.landmarks)
    assert err < 0.5 * base


def test_identity_error_falls_with_images(ict):
    res = fitting.identity_error_vs_images(ict, (1, 2, 4, 8, 16), n_subjects=10, noise_px=1.0, seed=0,
                                           max_iter=7, joint_iters=5, **FAST)
    e = res["rmse_mesh_aligned"].mean(1)
    assert e[-1] < 0.85 * e[0]
    assert e[2] < e[0] and e[4] < e[1]
    assert (np.diff(e) < 0.1).all()
    # noise of 1 px per coordinate: the fit explains the landmarks to about that level
    assert ((res["reproj_px"] > 0.8) & (res["reproj_px"] < 1.6)).all()


# ------------------------------------------------------------------ convergence, batching
def test_alternation_converges_and_never_increases(ict):
    syn = fitting.simulate_landmarks(ict, n_subjects=6, n_images=5, noise_px=0.5, seed=2)
    fit = fitting.fit_subjects(ict, syn.landmarks, syn.label, max_iter=20, tol=1e-2, joint_iters=0, **FAST)
    E = fit.objective.sum(0)
    assert (np.diff(E) <= 1e-6 * E[:-1]).all()          # each step lowers E (or keeps it)
    assert fit.converged and fit.n_iter <= 20
    assert np.median(fit.subject_n_iter) <= 10           # the paper: about 7 iterations
    assert fit.steps[:3] == ["pose", "expression", "identity"]
    assert E[-1] < 0.7 * E[2]                            # well below the first iteration's E
    # the joint Levenberg-Marquardt polish lowers E further, from the same start
    fit2 = fitting.fit_subjects(ict, syn.landmarks, syn.label, max_iter=20, tol=1e-2, joint_iters=10, **FAST)
    assert fit2.objective.sum(0)[-1] < E[-1]
    assert fit2.steps[-1] == "joint"


def test_iterates_are_the_states_of_shorter_runs(ict):
    """keep_iterates: iteration 0 is the first pose on the mean face; iteration k equals a run of k."""
    syn = fitting.simulate_landmarks(ict, n_subjects=1, n_images=3, noise_px=0.5, seed=4)
    fit = fitting.fit_shape_and_pose(ict, syn.landmarks, max_iter=4, tol=0.0, joint_iters=0,
                                     keep_iterates=True, **FAST)
    assert len(fit.iterates) == fit.n_iter + 1 == 5
    assert not fitting.fit_shape_and_pose(ict, syn.landmarks, max_iter=2, **FAST).iterates  # off by default
    first = fit.iterates[0]
    assert isinstance(first, fitting.ShapeAndPose) and not first.alpha_id.any() and not first.alpha_exp.any()
    np.testing.assert_allclose(fit.iterates[-1].alpha_id, fit.alpha_id)
    short = fitting.fit_shape_and_pose(ict, syn.landmarks, max_iter=2, tol=0.0, joint_iters=0, **FAST)
    np.testing.assert_allclose(fit.iterates[2].alpha_id, short.alpha_id, atol=1e-6)
    np.testing.assert_allclose(fit.iterates[2].project(ict), short.project(ict), atol=1e-4)
    err = [np.sqrt(((it.project(ict) - syn.landmarks) ** 2).sum(-1).mean()) for it in fit.iterates]
    assert err[-1] < err[0]                              # the landmarks move towards the data


def test_batched_equals_per_subject_and_is_deterministic(ict):
    syn = fitting.simulate_landmarks(ict.subset(30, 20), n_subjects=3, n_images=4, noise_px=0.5, seed=3)
    m = ict.subset(30, 20)
    kw = dict(max_iter=5, joint_iters=3, dtype="float64", **FAST)
    batch = fitting.fit_subjects(m, syn.landmarks, syn.label, **kw)
    again = fitting.fit_subjects(m, syn.landmarks, syn.label, **kw)
    np.testing.assert_array_equal(batch.alpha_id, again.alpha_id)
    chunked = fitting.fit_subjects(m, syn.landmarks, syn.label, chunk=1, **kw)
    for s in range(3):
        sel = syn.label == s
        one = fitting.fit_shape_and_pose(m, syn.landmarks[sel], **kw)
        np.testing.assert_allclose(batch.subject_alpha_id[s], one.alpha_id, atol=1e-6)
        np.testing.assert_allclose(batch.alpha_exp[sel], one.alpha_exp, atol=1e-6)
        np.testing.assert_allclose(chunked.alpha_id[sel], batch.alpha_id[sel], atol=1e-6)
    single = fitting.fit_subjects(m, syn.landmarks[:2], None, **kw)
    np.testing.assert_allclose(single.alpha_id[1], fitting.fit_single_image(m, syn.landmarks[1], **kw).alpha_id,
                               atol=1e-6)


def test_worker_processes_give_the_same_fit(ict):
    """targets.workers: chunks fitted in spawned processes equal the one-process fit exactly."""
    m = ict.subset(30, 20)
    syn = fitting.simulate_landmarks(m, n_subjects=4, n_images=3, noise_px=0.5, seed=5)
    kw = dict(max_iter=4, joint_iters=2, dtype="float64", **FAST)
    one = fitting.fit_subjects(m, syn.landmarks, syn.label, chunk=1, **kw)
    two = fitting.fit_subjects(m, syn.landmarks, syn.label, chunk=1, workers=2, **kw)
    for key in ("alpha_id", "alpha_exp", "R", "f", "t", "rmse_px", "subject_n_iter"):
        np.testing.assert_array_equal(getattr(two, key), getattr(one, key), err_msg=key)
    np.testing.assert_array_equal(two.objective, one.objective)
    single = fitting.fit_subjects(m, syn.landmarks, None, workers=2, **kw)  # 12 images, 3 per chunk
    np.testing.assert_allclose(single.alpha_id, fitting.fit_subjects(m, syn.landmarks, None, **kw).alpha_id,
                               atol=1e-9)


def test_dead_fitting_worker_raises(ict, first_result_then_dead_worker):
    """targets.workers > 1: a fitting process that dies (killed after the first chunk, as the
    out-of-memory killer would) raises a RuntimeError naming the cause instead of waiting."""

    from disentangled_face.fitting import api
    from disentangled_face.fitting.checks import fitter_options

    m = ict.subset(10, 8)
    syn = fitting.simulate_landmarks(m, n_subjects=60, n_images=2, seed=6)
    opts = fitter_options(None, max_iter=2, joint_iters=0, dtype="float64")
    gen = api._chunk_results(m, syn.landmarks, syn.label, 60, 1, opts, "torch", False, 2)
    s0, sel, r = first_result_then_dead_worker(gen, "fitting worker process died")
    assert s0 == 0 and len(sel) == 2


def test_float32_matches_float64(ict):
    syn = fitting.simulate_landmarks(ict, n_subjects=2, n_images=4, noise_px=0.5, seed=4)
    a = fitting.fit_subjects(ict, syn.landmarks, syn.label, dtype="float32", **FAST)
    b = fitting.fit_subjects(ict, syn.landmarks, syn.label, dtype="float64", **FAST)
    assert np.abs(a.rmse_px - b.rmse_px).max() < 0.02
    assert np.abs(a.shapes(ict) - b.shapes(ict)).max() < 0.5      # mm


def test_torch_expression_step_matches_scipy_reference(ict):
    syn = fitting.simulate_landmarks(ict, n_subjects=1, n_images=3, noise_px=0.5, seed=6)
    kw = dict(max_iter=3, joint_iters=0, tol=0.0, **FAST)
    a = fitting.fit_shape_and_pose(ict, syn.landmarks, exp_solver="torch", **kw)
    b = fitting.fit_shape_and_pose(ict, syn.landmarks, exp_solver="scipy", **kw)
    np.testing.assert_allclose(a.objective, b.objective, rtol=1e-5)
    np.testing.assert_allclose(a.alpha_exp, b.alpha_exp, atol=2e-3)


def test_one_based_landmark_indices_give_the_same_fit(ict):
    m = ict.subset(10, 5)
    idx = load_landmark_indices(m.landmarks + 1, m.n_vertices, one_based=True)
    m1 = MorphableModel(mean=m.mean, id_basis=m.id_basis, exp_basis=m.exp_basis, triangles=m.triangles,
                        landmarks=idx, exp_bounds=m.exp_bounds)
    syn = fitting.simulate_landmarks(m, 1, 3, noise_px=0.3, seed=7)
    a = fitting.fit_shape_and_pose(m, syn.landmarks, **FAST)
    b = fitting.fit_shape_and_pose(m1, syn.landmarks, **FAST)
    np.testing.assert_array_equal(a.alpha_id, b.alpha_id)
    with pytest.raises(ValueError, match="must lie in"):
        load_landmark_indices(np.r_[m.landmarks[:-1], m.n_vertices + 5], m.n_vertices, one_based=True)


# ------------------------------------------------------------------ degenerate input
def _good(ict):
    y, *_ = _views(ict, np.zeros(ict.n_id), np.zeros((1, ict.n_exp)), [10.0])
    return y[0]


def test_degenerate_landmarks_raise_before_solving(ict):
    good = _good(ict)
    cases = {
        "shape": good[:67],
        "shape ": good[:, :1],
        "point": np.full((68, 2), 100.0),
        "line": np.stack([np.linspace(10, 90, 68), np.full(68, 120.0)], -1),
        "NaN": np.where(np.arange(68)[:, None] == 5, np.nan, good),
        "inf": np.where(np.arange(68)[:, None] == 7, np.inf, good),
    }
    msgs = {"shape": "shape", "shape ": "shape", "point": "one point", "line": "one line", "NaN": "NaN or inf",
            "inf": "NaN or inf"}
    for name, y in cases.items():
        for fn in (lambda y: fitting.fit_shape_and_pose(ict, y), lambda y: fitting.fit_single_image(ict, y),
                   lambda y: fitting.fit_subjects(ict, y[None], [0])):
            with warnings.catch_warnings():
                warnings.simplefilter("error")      # no RuntimeWarning from a NaN solve
                with pytest.raises(ValueError, match=msgs[name]):
                    fn(y)
    with pytest.raises(ValueError, match="labels"):
        fitting.fit_subjects(ict, np.stack([good, good]), [0, 1, 2])
    with pytest.raises(ValueError, match="one landmark set"):
        fitting.fit_single_image(ict, np.stack([good, good]))
    with pytest.raises(ValueError, match="no image"):
        fitting.fit_shape_and_pose(ict, np.zeros((0, 68, 2)))


def test_failed_detections_are_discarded_with_a_warning(ict):
    good = _good(ict)
    miss = Detection(False, None, None, float("nan"), "dlib")
    hit = Detection(True, good, (0, 0, 10, 10), 1.0, "dlib", 1)
    with pytest.warns(UserWarning, match="1 of 3"):
        fit = fitting.fit_shape_and_pose(ict, [hit, miss, good + 1.0], **FAST)
    assert fit.discarded == [1] and fit.kept == [0, 2] and fit.alpha_exp.shape[0] == 2
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="no usable image"):
        fitting.fit_shape_and_pose(ict, [miss, miss])
    from disentangled_face.data.landmarks import NoFaceFound
    with pytest.raises(NoFaceFound):
        fitting.fit_single_image(ict, miss)


def test_bad_options_raise(ict):
    good = _good(ict)
    with pytest.raises(ValueError, match="unknown fitting option"):
        fitting.fit_shape_and_pose(ict, good, lamda_id=1.0)
    with pytest.raises(ValueError, match="lambda"):
        fitting.fit_shape_and_pose(ict, good, lambda_id=-1.0)
    with pytest.raises(ValueError, match="dtype"):
        fitting.fit_shape_and_pose(ict, good, dtype="float16")
    # the errors are ConfigErrors naming the key; options must be a FittingConfig
    with pytest.raises(ConfigError, match=r"fitting\.lamda_id"):
        fitting.fit_subjects(ict, good[None], [0], lamda_id=1.0)
    with pytest.raises(ConfigError, match=r"fitting\.max_iter"):
        fitting.fit_subjects(ict, good[None], [0], FittingConfig(), max_iter=0)
    with pytest.raises(ConfigError, match="FittingConfig"):
        fitting.fit_shape_and_pose(ict, good, {"max_iter": 3})


def test_options_and_overrides():
    """The typed defaults are the only defaults; overrides replace single options, validated."""
    assert fitting.fitter_options() == FittingConfig()
    book = load_config("book").fitting
    assert (book.active_set_iters, book.dtype) == (6, "float32")         # the book profile's values
    assert (FittingConfig().active_set_iters, FittingConfig().dtype) == (25, "float64")
    o = fitting.fitter_options(book, joint_iters=0, max_iter=np.int64(3))
    assert (o.joint_iters, o.max_iter, o.dtype) == (0, 3, "float32") and book.joint_iters == 5


# ------------------------------------------------------------------ training targets
def test_build_targets_small_protocol(ict, tmp_path, monkeypatch):
    import os

    from disentangled_face import data

    monkeypatch.setenv("DISENTANGLED_FACE_DATA", str(tmp_path))
    cfg = with_overrides(load_config("book"), {"synth.protocols.train.subjects": 3,
                                               "synth.protocols.train.images_per_subject": 4, "targets.chunk": 2})
    path = fitting.build_targets(cfg, ict)
    assert path == fitting.targets_path(cfg, ict)
    assert fitting.targets_path(with_overrides(cfg, {"targets.chunk": 5}), ict) == path   # memory only
    assert path.parent == tmp_path / "targets" and path.name.startswith("train-")
    assert not list(path.parent.glob(".*.part"))             # written atomically, nothing left over
    T = fitting.load_targets(path)
    ds = data.load_protocol(data.build_protocol("train", cfg.synth, model=ict, progress=False))
    np.testing.assert_array_equal(T["label"], ds.label)
    np.testing.assert_array_equal(T["index"], np.arange(12))
    assert T["alpha_id"].shape == (12, ict.n_id) and T["alpha_exp"].shape == (12, ict.n_exp)
    assert T["R"].shape == (12, 3, 3) and T["f"].shape == (12,) and T["t"].shape == (12, 2)
    for c in np.unique(ds.label):                             # one shared identity per subject
        assert np.ptp(T["alpha_id"][ds.label == c], axis=0).max() == 0
    # the targets are far closer to the true shapes than the mean face is (aligned, whole mesh)
    e = fitting.shape_errors(ict, T["alpha_id"], T["alpha_exp"], ds.alpha_id, ds.alpha_exp)
    e0 = fitting.shape_errors(ict, 0 * T["alpha_id"], 0 * T["alpha_exp"], ds.alpha_id, ds.alpha_exp)
    assert e["shape_aligned"].mean() < 0.6 * e0["shape_aligned"].mean()
    # cached: a second call returns the same file without refitting
    mtime = os.path.getmtime(path)
    assert fitting.build_targets(cfg, ict) == path and os.path.getmtime(path) == mtime
    with pytest.raises(FileNotFoundError, match="build_targets"):
        fitting.load_targets(tmp_path / "missing.npz")


def test_single_image_targets_fit_every_image_alone(ict, tmp_path, monkeypatch):
    """The 3DDFA-like rival's targets: each training image fitted on its own (fit_subjects with
    labels=None, the same cfg.fitting), in a file of their own, built on cfg.targets.workers
    processes; unlike the pooled targets, a subject's images get different alpha_id."""
    from disentangled_face import data

    monkeypatch.setenv("DISENTANGLED_FACE_DATA", str(tmp_path))
    cfg = with_overrides(load_config("book"), {"synth.workers": 1, "synth.protocols.train.subjects": 3,
                                               "synth.protocols.train.images_per_subject": 4,
                                               "targets.chunk": 1, "targets.workers": 2})
    single = fitting.build_targets(cfg, ict, kind="single_image")
    pooled = fitting.build_targets(cfg, ict)
    assert single == fitting.targets_path(cfg, ict, kind="single_image") != pooled
    assert single.parent == pooled.parent and single.name.startswith("train-single-")
    assert fitting.targets_path(with_overrides(cfg, {"targets.workers": 1, "targets.chunk": 7}), ict,
                                kind="single_image") == single      # speed and memory only
    assert fitting.targets_path(with_overrides(cfg, {"fitting.max_iter": 3}), ict, kind="single_image") != single
    assert not list(single.parent.glob(".*.part"))
    S, P = fitting.load_targets(single), fitting.load_targets(pooled)
    ds = data.load_protocol(data.build_protocol("train", cfg.synth, model=ict, progress=False))
    np.testing.assert_array_equal(S["label"], ds.label)       # the subjects, not the image indices
    np.testing.assert_array_equal(S["index"], np.arange(12))
    assert S["alpha_id"].shape == (12, ict.n_id) and S["objective"].shape[0] == 12
    # exactly the single-image fit of those landmarks in the same 4-image chunks, in one process
    # (other chunk sizes agree up to float32 rounding, which an ill-posed fit can amplify)
    ref = fitting.fit_subjects(ict, np.asarray(ds.landmarks, np.float64), None, cfg.fitting, chunk=4)
    np.testing.assert_allclose(S["alpha_id"], ref.alpha_id.astype(np.float32), rtol=0, atol=1e-6)
    np.testing.assert_allclose(S["alpha_exp"], ref.alpha_exp.astype(np.float32), rtol=0, atol=1e-6)
    for c in np.unique(ds.label):
        own = ds.label == c
        assert np.ptp(P["alpha_id"][own], axis=0).max() == 0          # pooled: one identity per subject
        assert np.ptp(S["alpha_id"][own], axis=0).max() > 0.05         # single: one per image
    with pytest.raises(ValueError, match="kind must be one of"):
        fitting.targets_path(cfg, ict, kind="pooled")


# ------------------------------------------------------------------ fit quality and the landmark order
from disentangled_face.fitting import quality as fq  # noqa: E402


def _frontal(ict, n=1, seed=7):
    rng = np.random.default_rng(seed)
    a_id, a_exp = ict.sample(n, rng)
    y, *_ = _views(ict, a_id[0], a_exp, [3.0] * n, seed=seed)
    return y


def test_swapped_outer_eye_corners_raise(ict):
    """iBUG 36 and 45 exchanged on a frontal face: a clear error, not a 16 px residual in silence."""
    y = _frontal(ict)[0]
    bad = y.copy()
    bad[[36, 45]] = bad[[45, 36]]
    with pytest.raises(fq.LandmarkOrderError, match="landmarks 36 and 45 look exchanged") as e:
        fitting.fit_single_image(ict, bad, **FAST)
    assert "iBUG 68-point order" in str(e.value)
    with pytest.raises(ValueError, match="36 and 45"):
        fitting.fit_subjects(ict, np.stack([y, bad]), [0, 0], **FAST)
    # the check off: the fit runs and the report says what is wrong, with the numbers
    with pytest.warns(UserWarning, match=r"fit quality: .*need identity codes beyond 5 standard deviations"):
        fit = fitting.fit_single_image(ict, bad, check_order=False, **FAST)
    assert not fit.quality.ok and int(np.argmax(fit.quality.residuals_px[0])) in (36, 45)


def test_mirrored_order_and_reflected_coordinates_raise(ict):
    y = _frontal(ict, 3)
    with pytest.raises(fq.LandmarkOrderError, match=r"3 image\(s\) \[0, 1, 2\] are mirrored \(left and right swapped\)"):
        fitting.fit_shape_and_pose(ict, y[:, fq.IBUG_MIRROR], **FAST)
    flipped = y.copy()
    flipped[..., 0] = 200.0 - flipped[..., 0]         # u reflected, labels kept
    with pytest.raises(ValueError, match="mirrored"):
        fitting.fit_subjects(ict, flipped, **FAST)
    # a mirrored *image* relabelled correctly is a valid face: the mirror permutation of the
    # reflected points passes
    fitting.fit_single_image(ict, flipped[0][fq.IBUG_MIRROR], **FAST)


def test_another_scheme_raises(ict):
    y = _frontal(ict)[0]
    perm = np.random.default_rng(0).permutation(68)
    with pytest.raises(fq.LandmarkOrderError, match="do not look like 68 landmarks in iBUG order"):
        fitting.fit_single_image(ict, y[perm], **FAST)


@pytest.mark.parametrize("yaw", [(-90.0, 90.0), (-80.0, 80.0)])
def test_correct_landmarks_pass_silently_at_every_yaw(ict, yaw):
    """The book's synthetic fits: no order error and no soft-sign warning, up to profile views."""
    book = load_config("book")   # its jaw landmarks (on the silhouette) and fitter (marching)
    syn = fitting.simulate_landmarks(ict, 40, 5, noise_px=1.0, yaw_deg=yaw, seed=11,
                                     jaw_landmarks=book.synth.jaw_landmarks)
    d = fq.order_diagnostics(ict, syn.landmarks)
    # the order check's rigid fit ties the jaw to fixed vertices: silhouette jaw points cost it up
    # to about 0.26 inter-ocular distances at profile views, far from a wrong order's residual
    assert d["facing"].min() > -0.1 and d["rmse_iod"].max() < 0.35
    assert (d["rmse_swapped_iod"] > 0.8 * d["rmse_iod"]).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = fitting.fit_subjects(ict, syn.landmarks, syn.label, book.fitting)
    q = fit.quality
    assert q.ok and q.residuals_px.shape == (200, 68) and q.max_abs_alpha_id.shape == (40,)
    np.testing.assert_allclose(q.reprojection_iod * q.interocular_px, fit.rmse_px, rtol=1e-5)
    assert q.reprojection_iod.max() < 0.05


def test_quality_report_convergence_follows_the_paper_rule(ict):
    syn = fitting.simulate_landmarks(ict, 6, 4, noise_px=1.0, seed=2)
    for max_iter in (2, 30):
        fit = fitting.fit_subjects(ict, syn.landmarks, syn.label, max_iter=max_iter, **FAST)
        q = fit.quality
        np.testing.assert_array_equal(q.n_iter, fit.subject_n_iter)
        assert bool(q.converged.all()) == fit.converged
        assert (q.converged[fit.subject_n_iter < max_iter]).all()     # stopped early: by the rule
        # the rule recomputed from E after each iteration (history columns 2, 5, 8, ...)
        for s, n in enumerate(fit.subject_n_iter):
            if n >= 2:
                E = fit.objective[s, 3 * n - 1]
                prev = fit.objective[s, 3 * (n - 1) - 1]
                assert q.converged[s] == (abs(prev - E) / abs(prev) < 1e-2)
    one = fitting.fit_shape_and_pose(ict, syn.landmarks[:4], max_iter=30, **FAST)
    assert one.quality.converged.tolist() == [one.converged] and one.quality.max_abs_alpha_id.shape == (1,)


def test_soft_signs_are_counted_in_one_warning(ict):
    """Many images: the soft signs come as one summary with counts, not one warning each."""
    syn = fitting.simulate_landmarks(ict, 30, 2, noise_px=0.5, yaw_deg=(-30, 30), seed=4)
    y = syn.landmarks.copy()
    rng = np.random.default_rng(1)
    bad = [3, 17, 40]
    y[bad] += rng.normal(0, 5.0, (3, 68, 2))        # ~0.2 inter-ocular distances of noise
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        fit = fitting.fit_subjects(ict, y, None, **FAST)
    msgs = [str(w.message) for w in rec if issubclass(w.category, UserWarning)]
    assert len(msgs) == 1 and msgs[0].startswith("fit quality: 3 of 60 image(s) [3, 17, 40]")
    np.testing.assert_array_equal(fit.quality.large_residual, bad)
    assert "3 of 60 image(s)" in fit.quality.summary()


def test_extreme_codes_are_reported(ict):
    m = ict.subset(10, 5)
    a_id = np.zeros(10)
    a_id[2] = 8.0                                      # 8 standard deviations
    y, *_ = _views(m, a_id, np.zeros((4, 5)), [-40, -10, 20, 50], seed=3)
    with pytest.warns(UserWarning, match=r"1 of 1 subject\(s\) \[0\] need identity codes beyond 5 standard deviations"):
        fit = fitting.fit_shape_and_pose(m, y, lambda_id=1e-6, lambda_exp=1e-6, **FAST)
    assert fit.quality.max_abs_alpha_id[0] == pytest.approx(8.0, abs=0.2)


def test_quality_report_does_not_change_the_fit(ict):
    syn = fitting.simulate_landmarks(ict, 3, 3, noise_px=1.0, seed=9)
    a = fitting.fit_subjects(ict, syn.landmarks, syn.label, **FAST)
    b = fitting.fit_subjects(ict, syn.landmarks, syn.label, check_order=False, **FAST)
    for k in ("alpha_id", "alpha_exp", "R", "f", "t", "rmse_px", "objective"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))


def test_shape_errors_equal_the_errors_of_the_shapes(ict):
    """shape_errors works in code space (the model's second moments); it must give the RMSE of
    the full shapes themselves: no alignment, Umeyama on the 68 landmarks, and the neutral
    identity shapes, to float rounding; identical codes give zero, a pure offset of the
    truth's expression is invisible to the identity error."""
    from disentangled_face.fitting.simulate import shape_rmse

    rng = np.random.default_rng(3)
    N = 40
    a_id, b_id = rng.normal(size=(2, N, ict.n_id))
    a_exp, b_exp = np.clip(rng.normal(0.2, 0.3, (2, N, ict.n_exp)), 0, 1)
    got = fitting.shape_errors(ict, a_id, a_exp, b_id, b_exp, chunk=16)   # chunks of 16, 16, 8
    est, true = ict.shape(a_id, a_exp).astype(np.float64), ict.shape(b_id, b_exp).astype(np.float64)
    L = ict.landmarks
    np.testing.assert_allclose(got["shape_raw"], shape_rmse(est, true), atol=1e-4)
    np.testing.assert_allclose(got["shape_aligned"], shape_rmse(est, true, align_on=L), atol=1e-4)
    np.testing.assert_allclose(got["identity_aligned"],
                               shape_rmse(ict.identity_shape(a_id), ict.identity_shape(b_id), align_on=L), atol=1e-4)
    assert got["shape_aligned"].min() > 1.0                     # random faces differ by millimetres
    same = fitting.shape_errors(ict, a_id, a_exp, a_id, a_exp)
    for k in ("shape_raw", "shape_aligned", "identity_aligned"):
        np.testing.assert_allclose(same[k], 0.0, atol=1e-3)
    other_exp = fitting.shape_errors(ict, a_id, a_exp, a_id, b_exp)
    np.testing.assert_allclose(other_exp["identity_aligned"], 0.0, atol=1e-3)
    assert (other_exp["shape_raw"] > 0.1).all()
    with pytest.raises(ValueError, match="alpha_exp must have shape"):
        fitting.shape_errors(ict, a_id, a_exp[:, :3], b_id, b_exp)
