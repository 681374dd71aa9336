"""Synthetic protocols: layout, ground truth, determinism, disjoint identities, pairs, caching."""

import h5py
import numpy as np
import pytest

from disentangled_face import data
from disentangled_face.config import ConfigError, _validate, load_config
from disentangled_face.data import build as synth_build
from disentangled_face.data.synthset import _REQUIRED
from disentangled_face.shape import camera

TINY = {"seed": 7, "batch": 16, "workers": 1, "protocols": {
    "train": {"subjects": 4, "images_per_subject": 5},
    "lfw-like": {"folds": 10, "subjects_per_fold": 3, "images_per_subject": 2,
                 "same_pairs_per_fold": 2, "diff_pairs_per_fold": 3},
    "ytf-like": {"folds": 10, "subjects_per_fold": 2, "videos_per_subject": 2, "frames_per_video": 4,
                 "same_pairs_per_fold": 2, "diff_pairs_per_fold": 2, "low_res": [56, 48]},
    "bu3dfe-like": {"subjects": 2, "intensities": [0.5, 1.0], "yaw_sweep_deg": [-90, 90, 10]},
    "micc-like": {"subjects": 2, "images_per_subject": 3, "blur_sigma_px": [1.0, 2.0], "noise_std": [5.0, 10.0],
                  "light": {"ambient": [0.03, 0.1], "diffuse": [0.9, 1.2], "azimuth_deg": 90.0,
                            "elevation_deg": [-45.0, 70.0], "tint": 0.25}},
}}


def tiny(**changes):
    """The tiny ``synth`` section (a validated SynthConfig), with top-level keys changed: its
    ``protocols`` replace the book's whole (an override would merge them key by key), and the
    jaw landmarks are the fixed landmark vertices unless a test asks for the silhouette."""
    raw = load_config("book").to_dict()
    raw["synth"] = {**raw["synth"], "jaw_landmarks": "fixed", **TINY, **changes}
    return _validate(raw, "tiny test profile").synth


@pytest.fixture(scope="module")
def model():
    from disentangled_face.shape import load_ict_facekit

    return load_ict_facekit()


@pytest.fixture(scope="module")
def built(model, tmp_path_factory):
    d = tmp_path_factory.mktemp("synth")
    paths = {name: data.build_protocol(name, tiny(), model=model, progress=False, path=d / f"{name}.h5")
             for name in data.PROTOCOLS}
    return {name: data.load_protocol(p) for name, p in paths.items()}


def test_expressions_use_ict_blendshapes(model):
    assert list(data.EXPRESSIONS) == ["neutral", "happiness", "disgust", "fear", "anger", "surprise", "sadness"]
    for name in data.EXPRESSIONS:
        v = data.expression_vector(model, name)
        assert v.shape == (model.n_exp,) and v.min() >= 0 and v.max() <= 1
        assert (v > 0).sum() == len(data.EXPRESSIONS[name])
    happy = data.expression_vector(model, "happiness", 0.5)
    assert happy[model.exp_names.index("mouthSmile_L")] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="unknown expression"):
        data.expression_vector(model, "boredom")


def test_layout_of_every_protocol(built, model):
    sizes = {"train": 20, "lfw-like": 60, "ytf-like": 160, "bu3dfe-like": 2 * (1 + 6 * 2 + 19), "micc-like": 6}
    for name, s in built.items():
        N = sizes[name]
        assert len(s) == N and s.protocol == name and s.model_name == model.name
        assert s.images.shape == (N, 112, 96, 3) and s.images[0].dtype == np.uint8
        assert s.landmarks.shape == (N, 68, 2) and s.landmarks.dtype == np.float32
        assert s.visible.shape == (N, 68) and s.visible.dtype == bool
        assert s.label.dtype == np.int64 and s.alpha_id.shape == (N, model.n_id)
        assert s.alpha_exp.shape == (N, model.n_exp)
        assert s.scale.shape == (N,) and s.trans.shape == (N, 2)
        # labels contiguous 0..K-1 within the protocol
        np.testing.assert_array_equal(np.unique(s.label), np.arange(s.n_subjects))
        # each subject has one alpha_id
        for k in range(s.n_subjects):
            assert np.unique(s.alpha_id[s.label == k], axis=0).shape[0] == 1
        assert s.config["protocol"] == name
        # images are not blank: the face covers part of the crop and differs from the background
        assert np.asarray(s.images[:4]).std() > 10


def test_landmarks_are_the_projected_landmark_vertices(built, model):
    for name in ("train", "ytf-like", "bu3dfe-like"):
        s = built[name]
        idx = np.arange(0, len(s), 3)
        lm3 = model.landmarks_of(s.shapes(model, idx))
        uv = camera.project(lm3, s.rotations(idx), s.scale[idx], s.trans[idx])
        np.testing.assert_allclose(s.landmarks_true[idx], uv, atol=2e-3)
        np.testing.assert_array_equal(s.landmarks, s.landmarks_true)  # no detector noise configured


def test_faces_are_centred_like_sphereface(built):
    s = built["train"]
    five = data.five_points(s.landmarks_true.astype(np.float64))
    centre = five.mean(1)
    ref = data.SPHEREFACE_REFERENCE.mean(0)
    # centring plus N(0, 2 px) jitter
    assert np.abs(centre - ref).max() < 8.0
    assert np.abs(centre - ref).mean() < 3.0


def test_pose_ranges(built):
    s = built["train"]
    assert np.abs(s.yaw).max() <= np.pi / 2 + 1e-6
    assert np.abs(s.pitch).max() <= np.radians(25) + 1e-6
    assert np.abs(s.roll).max() <= np.radians(20) + 1e-6


def test_visibility_of_far_side_at_large_yaw(built, model):
    s = built["bu3dfe-like"]
    x = model.mean[model.landmarks][:, 0]
    for i in np.flatnonzero(s.sweep):
        yaw = np.degrees(s.yaw[i])
        if yaw >= 80:
            assert not s.visible[i][x > 25].any()
        if yaw <= -80:
            assert not s.visible[i][x < -25].any()
        if abs(yaw) < 1:
            assert s.visible[i].all()


def test_identical_config_gives_identical_arrays(built, model, tmp_path):
    a = built["micc-like"]  # exercises per-image blur and noise
    p = data.build_protocol("micc-like", tiny(), model=model, progress=False, path=tmp_path / "m.h5")
    b = data.load_protocol(p)
    for key in _REQUIRED[1:] + ("blur_sigma", "noise_std"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key), err_msg=key)
    np.testing.assert_array_equal(np.asarray(a.images), np.asarray(b.images))
    # another draw-call batch size: same parameters, images equal up to a grey level in a few pixels
    p = data.build_protocol("micc-like", tiny(batch=4), model=model, progress=False, path=tmp_path / "b.h5")
    d = data.load_protocol(p)
    for key in ("landmarks", "label", "alpha_id", "alpha_exp", "yaw", "scale", "trans"):
        np.testing.assert_array_equal(getattr(a, key), getattr(d, key), err_msg=key)
    diff = np.abs(np.asarray(a.images, np.int16) - np.asarray(d.images, np.int16))
    assert (diff > 0).mean() < 0.01 and diff.max() <= 12  # noise and blur spread a one-level change
    c = data.load_protocol(data.build_protocol("micc-like", tiny(seed=8), model=model, progress=False,
                                               path=tmp_path / "c.h5"))
    assert not np.array_equal(a.alpha_id, c.alpha_id)
    assert not np.array_equal(np.asarray(a.images), np.asarray(c.images))


def test_worker_processes_give_the_same_data(built, model, tmp_path):
    one = data.load_protocol(data.build_protocol("train", tiny(batch=4, workers=1), model=model,
                                                 progress=False, path=tmp_path / "1.h5"))
    two = data.load_protocol(data.build_protocol("train", tiny(batch=4, workers=2), model=model,
                                                 progress=False, path=tmp_path / "2.h5"))
    np.testing.assert_array_equal(np.asarray(two.images), np.asarray(one.images))
    np.testing.assert_array_equal(two.visible, one.visible)
    np.testing.assert_array_equal(two.landmarks, built["train"].landmarks)


def test_identities_are_disjoint_between_train_and_tests(built):
    train = built["train"]
    train_codes = {row.tobytes() for row in train.alpha_id}
    for name in data.PROTOCOLS[1:]:
        s = built[name]
        assert not set(s.subject_id) & set(train.subject_id)
        assert not {row.tobytes() for row in s.alpha_id} & train_codes
    # subjects are reproducible from their global id alone
    np.testing.assert_array_equal(train.alpha_id[0], data.subject_codes(
        _model_stub(train.alpha_id.shape[1]), 7, [int(train.subject_id[0])])[0])


def _model_stub(k_id):
    class M:
        n_id = k_id
    return M()


def test_lfw_like_pairs(built):
    s = built["lfw-like"]
    assert s.pairs.shape == (10 * 5, 2) and s.same.dtype == bool
    for f in range(10):
        in_fold = s.fold == f
        assert s.same[in_fold].sum() == 2 and (~s.same[in_fold]).sum() == 3
    la, lb = s.label[s.pairs[:, 0]], s.label[s.pairs[:, 1]]
    np.testing.assert_array_equal(la == lb, s.same)
    assert np.all(s.pairs[:, 0] != s.pairs[:, 1])
    # folds are subject-disjoint, as LFW View 2
    subjects = [set(s.label[s.pairs[s.fold == f].ravel()]) for f in range(10)]
    for i in range(10):
        for j in range(i + 1, 10):
            assert not subjects[i] & subjects[j]
    recs = s.verification_pairs()
    assert len(recs) == 50 and recs[0].kind == "image"


def test_ytf_like_sequences_and_pairs(built):
    s = built["ytf-like"]
    n_seq = 10 * 2 * 2
    assert s.sequence.max() + 1 == n_seq
    for q in range(n_seq):
        idx = s.sequence_indices(q)
        assert len(idx) == 4 and len(set(s.label[idx])) == 1
        # smooth trajectories: consecutive frames differ by a few degrees at most
        assert np.abs(np.diff(s.yaw[idx])).max() < np.radians(5)
    seq_label = np.array([s.label[s.sequence == q][0] for q in range(n_seq)])
    np.testing.assert_array_equal(seq_label[s.pairs[:, 0]] == seq_label[s.pairs[:, 1]], s.same)
    assert s.verification_pairs()[0].kind == "sequence"


def test_ytf_like_frames_are_low_resolution(built):
    """Rendered at 56 x 48 and upsampled: little energy above the low-res Nyquist frequency."""
    def high_freq_ratio(img):
        g = np.asarray(img, np.float64).mean(-1)
        F = np.abs(np.fft.fft2(g - g.mean())) ** 2
        fy, fx = np.meshgrid(np.fft.fftfreq(112), np.fft.fftfreq(96), indexing="ij")
        return F[(np.abs(fy) > 0.25) | (np.abs(fx) > 0.25)].sum() / F.sum()

    ytf = np.mean([high_freq_ratio(im) for im in built["ytf-like"].images[:8]])
    train = np.mean([high_freq_ratio(im) for im in built["train"].images[:8]])
    assert ytf < 0.5 * train


def test_bu3dfe_like_expressions_and_sweep(built, model):
    s = built["bu3dfe-like"]
    expr = s.expression[~s.sweep]
    assert set(expr) == set(data.EXPRESSIONS)
    for i in np.flatnonzero(~s.sweep):
        np.testing.assert_allclose(s.alpha_exp[i], data.expression_vector(model, s.expression[i], s.intensity[i]))
        assert s.yaw[i] == 0
    sweep = s.sweep & (s.label == 0)
    np.testing.assert_allclose(np.degrees(s.yaw[sweep]), np.arange(-90, 91, 10), atol=1e-4)
    assert np.all(s.alpha_exp[s.sweep] == 0)


def test_micc_like_is_degraded(built):
    s = built["micc-like"]
    assert np.all((s.blur_sigma >= 1.0) & (s.blur_sigma <= 2.0))
    assert np.all((s.noise_std >= 5.0) & (s.noise_std <= 10.0))


def test_interrupted_build_leaves_no_file(model, tmp_path, monkeypatch):
    real = synth_build._render_plan

    def interrupted(*args, **kwargs):
        for k, item in enumerate(real(*args, **kwargs)):
            if k == 1:
                raise KeyboardInterrupt
            yield item

    monkeypatch.setattr(synth_build, "_render_plan", interrupted)
    target = tmp_path / "train.h5"
    with pytest.raises(KeyboardInterrupt):
        data.build_protocol("train", tiny(batch=4), model=model, progress=False, path=target)
    assert list(tmp_path.iterdir()) == []


def test_cache_is_keyed_by_config(model, tmp_path, monkeypatch):
    monkeypatch.setenv("DISENTANGLED_FACE_DATA", str(tmp_path))
    p1 = data.build_protocol("micc-like", tiny(), model=model, progress=False)
    assert p1.parent == tmp_path / "synth" and p1.name.startswith("micc-like-") and p1.suffix == ".h5"
    mtime = p1.stat().st_mtime_ns
    assert data.build_protocol("micc-like", tiny(), model=model, progress=False) == p1
    assert p1.stat().st_mtime_ns == mtime  # not rebuilt
    assert data.protocol_path("micc-like", tiny(workers=3), model) == p1  # worker count not hashed
    assert data.protocol_path("micc-like", tiny(seed=9), model) != p1
    with h5py.File(p1) as h5:
        assert h5.attrs["protocol"] == "micc-like" and "seed" in h5.attrs["config"]


def test_bad_configs_raise():
    with pytest.raises(ConfigError, match="unknown protocol"):
        data.protocol_config("casia", tiny())
    with pytest.raises(TypeError, match="cfg.synth"):
        data.protocol_path("train", "book")  # a profile name is no longer accepted
    bad = tiny(protocols={**TINY["protocols"], "lfw-like": {**TINY["protocols"]["lfw-like"], "same_pairs_per_fold": 50}})
    with pytest.raises(ValueError, match="same pairs per fold"):
        data.plan_protocol("lfw-like", bad, _model_stub(3))
    # a missing size is refused when the profile is read, naming the key's path
    train = {k: v for k, v in TINY["protocols"]["train"].items() if k != "subjects"}
    with pytest.raises(ConfigError, match=r"synth\.protocols\.train\.subjects: missing"):
        tiny(protocols={**TINY["protocols"], "train": train})


def test_misspelt_synth_key_raises():
    """``synth.sed: 1`` (a new user's typo of ``seed``) was accepted silently and changed the cache
    file name; it is refused with the key's path."""
    with pytest.raises(ConfigError, match=r"synth\.sed: unknown key; expected one of \[.*'seed'"):
        load_config("book", {"synth.sed": 1})
    with pytest.raises(ConfigError, match=r"synth\.protocols\.micc-like\.noise_sd: unknown key"):
        load_config("book", {"synth.protocols.micc-like.noise_sd": [1.0, 2.0]})
    with pytest.raises(ConfigError, match=r"synth\.seed: "):
        load_config("book", {"synth.seed": "2018"})


def test_load_protocol_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        data.load_protocol(tmp_path / "nope.h5")
    with h5py.File(tmp_path / "x.h5", "w") as h5:
        h5["images"] = np.zeros((1, 112, 96, 3), np.uint8)
    with pytest.raises(ValueError, match="missing datasets"):
        data.load_protocol(tmp_path / "x.h5")


def test_book_profile_sizes_are_recorded():
    for profile in ("book", "paper"):
        cfg = load_config(profile).synth
        assert set(cfg.protocols.to_dict()) == set(data.PROTOCOLS)
        for name in data.PROTOCOLS:
            assert data.protocol_config(name, cfg)["protocol"] == name
    paper = load_config("paper").synth
    train = data.protocol_config("train", paper)
    assert (train["subjects"], train["images_per_subject"]) == (10575, 46)
    lfw = data.protocol_config("lfw-like", paper)
    assert (lfw["folds"], lfw["same_pairs_per_fold"], lfw["diff_pairs_per_fold"]) == (10, 300, 300)


def test_landmark_noise(model):
    B = 4
    out = data.render_faces(model, np.zeros((B, model.n_id)), np.zeros((B, model.n_exp)), np.zeros(B),
                             landmark_noise_px=2.0, rng=[1, 2, 3, 4])
    d = out.landmarks - out.landmarks_true
    assert 1.6 < d.std() < 2.4
    again = data.render_faces(model, np.zeros((B, model.n_id)), np.zeros((B, model.n_exp)), np.zeros(B),
                               landmark_noise_px=2.0, rng=[1, 2, 3, 4])
    np.testing.assert_array_equal(out.landmarks, again.landmarks)


def test_protocol_sizes_match_the_built_files(built):
    for name, s in built.items():
        sizes = data.protocol_sizes(name, tiny())
        assert (sizes["subjects"], sizes["images"]) == (s.n_subjects, len(s))
        assert sizes["pairs"] == (0 if s.pairs is None else len(s.pairs))
        if s.sequence is not None:
            assert sizes["sequences"] == s.sequence.max() + 1


def test_ground_truth_scans(built, model):
    s = built["bu3dfe-like"]
    i = int(np.flatnonzero(s.expression == "surprise")[0])
    (scan,) = s.scans(model, [i])
    np.testing.assert_allclose(scan.vertices, model.shape(s.alpha_id[i], s.alpha_exp[i]), atol=1e-5)
    np.testing.assert_array_equal(scan.landmarks, scan.vertices[model.landmarks])
    assert (scan.expression, scan.intensity, scan.subject) == ("surprise", s.intensity[i], str(s.subject_id[i]))
    assert scan.triangles.shape == model.triangles.shape


def test_dead_render_worker_raises(model, first_result_then_dead_worker):
    """synth.workers > 1: a rendering process that dies (here killed after the first span, as the
    kernel's out-of-memory killer would) raises a RuntimeError naming the cause; the build
    does not wait for it forever."""

    synth = tiny(batch=1, workers=2)
    cfg, plan = data.protocol_config("train", synth), data.plan_protocol("train", synth, model)
    gen = synth_build._render_plan(model, plan, cfg, 1, 2, False, "")
    span, arrays = first_result_then_dead_worker(gen, "rendering worker process died")
    assert span == (0, 1) and arrays["images"].shape[0] == 1
