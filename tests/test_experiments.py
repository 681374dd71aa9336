"""Experiment table builders on tiny fake inputs with known answers."""

import numpy as np
import pytest

from disentangled_face import evaluation as E
from disentangled_face.config import ConfigError, ExperimentsConfig, load_config, with_overrides
from disentangled_face.evaluation import paper_results as P
from disentangled_face.plotting.experiments import bases_figures, recon_figure, roc_figure
from disentangled_face.shape import MorphableModel
from synthetic_inputs import verification_features


@pytest.fixture(scope="module")
def toy():
    return MorphableModel.toy(n=150, k_id=6, k_exp=3, seed=3)


def _recon_setup(toy, n=12, seed=0):
    a_id, a_exp = toy.sample(n, rng=seed)
    truth = toy.shape(a_id, a_exp)
    rng = np.random.default_rng(seed)
    good = truth + rng.normal(scale=0.5, size=truth.shape)
    bad = truth + rng.normal(scale=2.0, size=truth.shape)
    return a_id, a_exp, truth, good, bad


def test_reconstruction_vs_yaw_groups_and_ranks(toy):
    a_id, a_exp, truth, good, bad = _recon_setup(toy)
    yaw = np.repeat([-92.0, 0.4, 88.0], 4)  # rounded to -90, 0, 90
    r = E.reconstruction_vs_yaw(toy, {"3DMM-CNN-like": bad, "Proposed": good}, truth, yaw)
    t = r.table("rmse_mm")
    assert list(t.columns) == [-90, 0, 90, "overall"]
    assert list(t.index) == ["3DMM-CNN-like", "Proposed"]
    assert (t.loc["Proposed"] < t.loc["3DMM-CNN-like"]).all()
    assert r.best() == "Proposed"
    # noise of std sigma per coordinate -> RMSE near sigma*sqrt(3) before alignment; alignment only lowers it
    assert t.loc["Proposed", "overall"] == pytest.approx(0.5 * np.sqrt(3), rel=0.15)
    # the "paper" column is rmse / sqrt(n_kept)
    e = r.errors
    np.testing.assert_allclose(e["paper"], e["rmse_mm"] / np.sqrt(e["n_kept"]))
    with pytest.raises(ValueError, match="shapes"):
        E.reconstruction_vs_yaw(toy, {"x": good[:5]}, truth, yaw)


def test_identity_per_expression_is_flat_when_identity_is_exact(toy):
    a_id, a_exp, truth, good, bad = _recon_setup(toy, n=9)
    expr = np.array(["happy", "sad", "surprise"] * 3)
    ident_truth = toy.identity_shape(a_id)
    # a perfectly disentangled identity component: exact -> zero error in every expression
    r = E.rmse_per_expression(toy, {"Proposed": ident_truth, "leaky": truth}, ident_truth, expr)
    t = r.table("mean_mm")
    assert t.loc["Proposed"].max() == pytest.approx(0.0, abs=1e-4)
    assert (t.loc["leaky"].drop("overall") > 0.01).all()


def test_experiment_figures(toy):
    a_id, a_exp, truth, good, bad = _recon_setup(toy)
    r = E.reconstruction_vs_yaw(toy, {"3DMM-CNN-like": bad, "Proposed": good}, truth, np.repeat([-90, 0, 90], 4))
    fig = recon_figure(r, "mean_mm", "Table 1")
    assert [tr.name for tr in fig.data] == ["3DMM-CNN-like", "Proposed"] and list(fig.data[0].x) == [-90, 0, 90]
    assert fig.layout.yaxis.title.text == E.METRIC_LABELS["mean_mm"]
    assert recon_figure(r, kind="bar").data[0].type == "bar"
    fig_id, fig_res = bases_figures(toy, (toy.id_basis, toy.exp_basis), (toy.id_basis, toy.exp_basis), k=2)
    assert len(fig_id.data) == 4 and len(fig_res.data) == 4  # Phase II and III rows, two columns each


_features = verification_features


def test_verification_table_known_separation_and_fusion():
    F_good, label, pairs, same, folds = _features(noise=0.2)
    F_weak, *_ = _features(noise=1.5, seed=1)
    rng = np.random.default_rng(5)
    F_rand = rng.normal(size=F_good.shape)
    vt = E.verification_table({"texture": F_weak, "Proposed": F_good, "3DMM-CNN-like": F_rand},
                              pairs, same, folds, protocol="toy")
    m = vt.mean()
    assert set(vt.results) == {"texture", "Proposed", "3DMM-CNN-like", "texture + Proposed",
                               "texture + 3DMM-CNN-like"}
    assert m.loc["Proposed", "accuracy"] > 99.0
    assert 35 < m.loc["3DMM-CNN-like", "accuracy"] < 65  # random features: chance
    assert m.loc["texture + Proposed", "AUC"] >= m.loc["texture", "AUC"]
    t = vt.table()
    assert list(t.columns) == list(P.VERIFICATION_METRICS)
    assert "±" in t.loc["Proposed", "accuracy"]
    fig = roc_figure(vt)
    assert len(fig.data) == 5
    with pytest.raises(ValueError, match="needs matchers"):
        E.verification_table({"Proposed": F_good}, pairs, same, folds, fusions={"x": ("texture", "Proposed")})
    F_bad = F_good.copy()
    F_bad[pairs[0, 0]] = 0.0
    with pytest.raises(ValueError, match="zero vectors"):
        E.verification_table({"Proposed": F_bad}, pairs, same, folds)


def test_sequence_features_mean():
    F = np.array([[1.0, 0], [3.0, 0], [0, 2.0]])
    out, ids = E.sequence_features(F, ["b", "b", "a"])
    assert list(ids) == ["a", "b"]
    np.testing.assert_allclose(out, [[0, 2.0], [2.0, 0]])


def test_speed_table_orders_by_work():
    def slow(x):
        s = 0.0
        for _ in range(20000):
            s += 1.0
        return s

    def fast(x):
        return 0.0

    df = E.speed_table({"3DMM fitting": (slow, None, 1), "Proposed": (fast, None, 1)}, repeats=3)
    assert df.loc["3DMM fitting", "ms/image"] > df.loc["Proposed", "ms/image"]
    assert df.loc["Proposed", "× Proposed"] == pytest.approx(1.0)
    assert (df["device"] == "cpu").all()


def test_learned_bases_stats(toy):
    b_id, b_res = toy.id_basis, toy.exp_basis
    same = E.learned_bases((b_id, b_res), (b_id, b_res), model=toy)
    t = same["table"]
    assert t.loc["identity", "mean cosine Phase II vs III"] == pytest.approx(1.0)
    assert t.loc["identity", "relative change ||W3-W2||/||W2||"] == pytest.approx(0.0)
    assert t.loc["identity", "energy in 3DMM subspace, Phase II"] == pytest.approx(1.0)
    assert t.loc["residual", "energy in 3DMM subspace, Phase III"] == pytest.approx(1.0)
    flipped = E.learned_bases((b_id, b_res), (-b_id, b_res))
    assert flipped["table"].loc["identity", "mean cosine Phase II vs III"] == pytest.approx(-1.0)
    assert same["magnitude"][("residual", "Phase III")].shape == (3, 150)


def test_pairs_per_fold_counts():
    F, label, pairs, same, folds = _features()
    vt = E.verification_table({"Proposed": F}, pairs, same, folds)
    t = vt.pairs_per_fold()
    assert list(t.index) == list(range(10))
    assert (t["same"] == 30).all() and (t["different"] == 30).all()
    with pytest.raises(ValueError, match="pair labels"):
        E.VerificationTable().pairs_per_fold()


def test_paper_tables_keep_their_layout():
    for key, t in P.TABLES.items():
        assert t.frame().shape == t.numeric().shape == (len(t.rows), len(t.columns))
        for row in t.rows:  # every cell is a published float or the paper's "–" (None)
            assert all(v is None or isinstance(v, float) for v in t.values[row])
    assert P.get("table1").frame().loc["3DMM-CNN", "±90"] == P.DASH
    assert P.get("table3_lfw").row("Proposed").mean["accuracy"] == 94.43
    with pytest.raises(KeyError):
        P.get("table9")
    with pytest.raises(KeyError):
        P.get("table4").value("nope", "ms/image")


def test_experiment_config_validates():
    assert ExperimentsConfig().crop_radius_mm == 95.0
    cfg = load_config("book")
    with pytest.raises(ConfigError, match="experiments.nope: unknown key"):
        with_overrides(cfg, {"experiments.nope": 1})
    with pytest.raises(ConfigError, match="experiments.metric"):
        with_overrides(cfg, {"experiments.metric": "rms"})
    with pytest.raises(ConfigError, match="experiments.crop_radius_mm"):
        with_overrides(cfg, {"experiments.crop_radius_mm": 0})
    with pytest.raises(TypeError, match="validated Config"):  # runners take the Config, not a profile name
        E.cache_dir("book")


def test_scan_errors_other_topology_and_missing_landmarks(toy):
    from disentangled_face.data import Scan3D

    a_id, a_exp, truth, good, bad = _recon_setup(toy, n=3)
    rng = np.random.default_rng(0)
    scans = []
    for s in truth:
        perm = rng.permutation(len(s))  # same surface points, another vertex order
        scans.append(Scan3D(s[perm], np.zeros((0, 3), int), toy.landmarks_of(s), "subj", "happiness"))
    r = E.scan_reconstruction_errors(toy, {"exact": truth, "noisy": bad}, scans, radius_mm=1e4)
    t = r.table("mean_mm")
    assert t.loc["exact", "overall"] == pytest.approx(0.0, abs=1e-4)
    assert t.loc["noisy", "overall"] > 0.5
    assert list(t.columns) == ["happiness", "overall"]
    r_v = E.scan_reconstruction_errors(toy, {"noisy": bad}, scans, radius_mm=1e4, correspondence="nearest")
    assert r.table("mean_mm").loc["noisy", "overall"] <= r_v.table("mean_mm").loc["noisy", "overall"] + 1e-9
    with pytest.raises(ValueError, match="'surface' or 'nearest'"):
        E.scan_reconstruction_errors(toy, {"exact": truth}, scans, correspondence="vertex")
    scans[1] = Scan3D(scans[1].vertices, scans[1].triangles, np.zeros((83, 3)), "subj")
    with pytest.raises(ValueError, match="68 iBUG landmarks"):
        E.scan_reconstruction_errors(toy, {"exact": truth}, scans)


TINY_PROFILE = """
profile: tiny-test
model: {name: ict-facekit}
synth:
  seed: 11
  protocols:
    bu3dfe-like: {subjects: 1, yaw_sweep_deg: [-90, 90, 30]}
    micc-like: {subjects: 1, images_per_subject: 2, blur_sigma_px: [0.0, 1.0], noise_std: [0.0, 2.0]}
    lfw-like: {folds: 2, subjects_per_fold: 2, images_per_subject: 2, same_pairs_per_fold: 2, diff_pairs_per_fold: 2}
    ytf-like: {folds: 2, subjects_per_fold: 2, videos_per_subject: 2, frames_per_video: 2,
               same_pairs_per_fold: 2, diff_pairs_per_fold: 2, low_res: [56, 48]}
fitting: {max_iter: 3}
network: {width: 0.125, input_size: [56, 48]}
train: {}
experiments: {speed_images: 1, speed_repeats: 1, speed_batch: 2, batch_size: 8}
"""


def _tiny_data_dir(tmp_path, monkeypatch):
    """A data folder of its own (the converted model linked in) and the tiny profile's YAML."""
    from disentangled_face import paths

    ict = paths.data_dir("ict-facekit", create=False)
    if not (ict / "ict_face_mm.npz").is_file():
        pytest.skip("ICT-FaceKit model not converted (run `make model`)")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "ict-facekit").symlink_to(ict)
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path / "data"))
    (tmp_path / "tiny.yaml").write_text(TINY_PROFILE)



def test_runners_end_to_end_on_a_tiny_profile(tmp_path, monkeypatch):
    """The runners on rendered tiny protocols, with untrained networks standing in for chapter 6's."""
    import torch

    from disentangled_face import networks, training
    from disentangled_face.evaluation import cache

    _tiny_data_dir(tmp_path, monkeypatch)
    cfg = load_config(tmp_path / "tiny.yaml")
    model = E.load_morphable(cfg)
    torch.manual_seed(0)

    def net():
        n = networks.DisentangledFaceNet.from_config(cfg.network, model, n_subjects=3)
        n.init_decoders_from_model(model)
        return n.eval()

    fake = {"phase1": net(), "phase2": net(), "phase3": net(),
            "texture": networks.TextureNet.from_config(cfg.network, 3).eval()}
    monkeypatch.setattr(training, "train_pipeline", lambda cfg, **kw: fake)
    monkeypatch.setattr(cache, "_NETWORKS", {})

    rec = E.run_reconstruction(cfg)
    assert set(rec) == {"yaw", "expression", "expression_identity", "micc"}
    t1 = rec["yaw"].table()
    assert list(t1.columns) == [-90, -60, -30, 0, 30, 60, 90, "overall"]
    assert list(t1.index) == [m.name for m in E.reconstruction_methods()]
    # exact landmarks: the fitter beats networks with random (untrained) encoders
    assert t1.loc["3DMM fitting", "overall"] < t1.loc["Proposed", "overall"]
    assert list(rec["expression"].table().columns)[:2] == ["neutral", "happiness"]
    codes = E.protocol_codes(cfg, "bu3dfe-like")
    assert (E.cache_dir(cfg) / f"bu3dfe-like-{E.networks_fingerprint(fake)}-codes.npz").is_file()
    np.testing.assert_array_equal(E.protocol_codes(cfg, "bu3dfe-like")["phase3_c_id"], codes["phase3_c_id"])
    for prot in ("lfw-like", "ytf-like"):
        vt = E.run_verification(cfg, prot)
        shown = {m.name for m in E.verification_methods()} - {"3DMM fitting"}
        assert set(vt.results) == shown | {f for f, parts in E.FUSIONS.items() if set(parts) <= shown}
        assert vt.table().shape == (5, 5)
    sp = E.run_speed(cfg, gpu=False)
    assert (sp["ms/image"] > 0).all()
    assert E.cached_speed(cfg).loc["Proposed", "ms/image"] > 0
    lb = E.run_learned_bases(cfg)
    assert lb["stats"]["table"].loc["identity", "mean cosine Phase II vs III"] == pytest.approx(1.0)
    cl = E.claims(E.run_all(cfg))  # every claim judged, but those naming a rival the book has no run of
    assert all(c.supported is not None for c in cl if "no 3DDFA-like run" not in c.evidence)
    assert sum(c.supported is None for c in cl) == 1


def test_bases_difference_figure_shows_where_phase_iii_moved_the_bases(toy):
    from disentangled_face.plotting.experiments import bases_difference_figure

    after = toy.id_basis.copy()
    after[0, :10] += 1.0                                    # column 1 moved at 10 vertices only
    fig = bases_difference_figure(toy, (toy.id_basis, toy.exp_basis), (after, toy.exp_basis), k=2)
    assert len(fig.data) == 2 and fig.data[0].colorbar.title.text == "mm"
    first = np.asarray(fig.data[0].intensity)
    assert np.allclose(first[:10], np.sqrt(3)) and np.allclose(first[10:], 0) and np.allclose(fig.data[1].intensity, 0)
    with pytest.raises(ValueError, match="different shapes"):
        bases_difference_figure(toy, (toy.id_basis, toy.exp_basis), (after[:3], toy.exp_basis))


def test_the_3ddfa_like_rival_end_to_end_on_a_tiny_profile(tmp_path, monkeypatch):
    """experiments.rivals on: the single-image targets are fitted, Phase I is really trained on
    them in a run folder of its own (only Phase I), and the 3DDFA-like row reaches every runner,
    the paper's 3DDFA rows and the claims (the main run's networks are untrained stand-ins)."""
    import torch

    from disentangled_face import fitting, networks, paths, training
    from disentangled_face.evaluation import cache
    from disentangled_face.evaluation.reconstruction import pooled_yaw_table

    _tiny_data_dir(tmp_path, monkeypatch)
    cfg = with_overrides(load_config(tmp_path / "tiny.yaml"), {
        "synth.protocols.train": {"subjects": 8, "images_per_subject": 3},
        "targets.workers": 1, "experiments.rivals": ["3DDFA-like"],
        "train": {"batch_size": 8, "val_fraction": 0.34, "num_threads": 1, "phase1": {"epochs": 2, "warmup_steps": 2}}})
    model = E.load_morphable(cfg)
    torch.manual_seed(0)
    net = lambda: networks.DisentangledFaceNet.from_config(cfg.network, model, n_subjects=8).eval()  # noqa: E731
    fake = {"phase1": net(), "phase2": net(), "phase3": net(), "texture": networks.TextureNet.from_config(cfg.network, 8).eval()}
    real, calls = training.train_pipeline, []

    def pipeline(cfg, targets="fitted", **kw):
        calls.append((targets, tuple(kw.get("phases", ()))))
        return fake if targets == "fitted" else real(cfg, targets=targets, **kw)

    monkeypatch.setattr(training, "train_pipeline", pipeline)
    monkeypatch.setattr(cache, "_NETWORKS", {})
    nets = E.trained_networks(cfg)
    assert calls == [("fitted", ()), ("single_image", ("phase1",))]
    run = paths.data_dir("runs", training.run_hash(cfg, "single_image"))
    assert run.name != training.run_hash(cfg) and sorted(p.name for p in run.glob("*.pt")) == ["phase1.pt"]
    assert fitting.targets_path(cfg, kind="single_image").is_file() and not fitting.targets_path(cfg).is_file()
    assert set(nets) == {"phase1", "phase2", "phase3", "texture", "single_image_phase1"}

    outs = E.method_outputs(cfg, "bu3dfe-like")
    ddfa, cnn = outs["3DDFA-like"], outs["3DMM-CNN-like"]
    assert ddfa["shape"].shape == cnn["shape"].shape and np.isfinite(ddfa["shape"]).all()
    assert ddfa["feature"].shape == (len(ddfa["shape"]), model.n_id) and not np.allclose(ddfa["shape"], cnn["shape"])
    rec = E.run_reconstruction(cfg)
    for r in rec.values():
        t = r.table("rmse_mm")
        assert list(t.index) == [m.name for m in E.reconstruction_methods(cfg)] and "3DDFA-like" in t.index
        assert np.isfinite(t.loc["3DDFA-like"]).all() and (t.loc["3DDFA-like"] > 0).all()
    b = P.beside(P.get("table1"), pooled_yaw_table(rec["yaw"], "rmse_mm"))
    assert b.loc[("ours", "3DDFA-like"), "paper row"] == "3DDFA"
    vt = E.run_verification(cfg, "lfw-like")
    assert "3DDFA-like" in vt.results and np.isfinite(vt.mean().loc["3DDFA-like", "accuracy"])
    vb = P.verification_beside(vt.table(), "LFW")
    assert vb.loc[("ours", "3DDFA-like"), "paper row"] == P.TABLE3["LFW"].row("3DDFA").label
    assert "texture + 3DDFA-like" in vt.results  # fused with the texture network like the main run's networks
    assert vb.loc[("ours", "texture + 3DDFA-like"), "paper row"].startswith("no counterpart")
    sp = E.run_speed(cfg, gpu=False).xs(("cpu", 1), level=("device", "batch"))
    assert {"3DDFA-like", "3DMM-CNN-like"} <= set(sp.index) and (sp["ms/image"] > 0).all()  # the rival timed too
    cl = E.claims({**rec, "lfw": vt})  # the claims judge the rival now that a run of it exists
    assert not [c for c in cl if "no 3DDFA-like run" in c.evidence]
    judged = [c for c in cl if "3DDFA-like" in c.claim]
    assert {c.claim.split(":")[0] for c in judged} >= {"Table 1", "Table 2", "Fig. 6"}
    assert all(c.supported is not None for c in judged)
