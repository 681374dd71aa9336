"""The beyond-basis world (chapter 11): fewer fitting modes than the subjects have, networks
coding the first K modes, the true-shape L_R variant and Fig. 9's split of the decoders' change."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from disentangled_face import fitting, networks
from disentangled_face.config import FittingConfig, load_config, with_overrides
from disentangled_face.evaluation import beyond_basis as B
from disentangled_face.fitting.simulate import simulate_landmarks
from disentangled_face.shape import MorphableModel


def test_fitting_fewer_identity_modes_is_the_smaller_model_padded():
    model = MorphableModel.toy(n=80, k_id=8, k_exp=3, seed=1)
    sim = simulate_landmarks(model, 4, 3, seed=2)
    opts = FittingConfig(max_iter=3, joint_iters=2)
    part = fitting.fit_subjects(model, sim.landmarks, sim.label, opts.model_copy(update={"id_modes": 3}))
    small = fitting.fit_subjects(model.subset(n_id=3), sim.landmarks, sim.label, opts)
    assert part.alpha_id.shape == (12, 8) and np.all(part.alpha_id[:, 3:] == 0)
    np.testing.assert_allclose(part.alpha_id[:, :3], small.alpha_id, rtol=0, atol=1e-9)
    np.testing.assert_allclose(part.shapes(model), small.shapes(model.subset(n_id=3)), atol=1e-6)
    with pytest.raises(ValueError, match="id_modes = 9"):
        fitting.fit_subjects(model, sim.landmarks, sim.label, opts.model_copy(update={"id_modes": 9}))


def test_a_network_coding_the_first_modes_decodes_them_and_reloads(tmp_path):
    from disentangled_face.networks.layers import build_from_arch

    model = MorphableModel.toy(n=30, k_id=6, k_exp=2, seed=0)
    cfg = load_config("book").network.model_copy(update={"id_codes": 4})
    a_id = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
    a_exp = np.random.default_rng(1).uniform(size=(5, 2)).astype(np.float32)
    scaler = networks.CodeScaler.fit(a_id, a_exp, margin=1.25, n_id=4)
    net = networks.DisentangledFaceNet.from_config(cfg, model, n_subjects=3, scaler=scaler)
    assert (net.n_id, net.model_n_id, net.head_id.out_features) == (4, 6, 4)
    c_id, c_res = scaler.to_code(torch.from_numpy(a_id), torch.from_numpy(a_exp))
    assert c_id.shape == (5, 4) and float(c_id.abs().max()) <= 0.8 + 1e-6
    back, _ = scaler.from_code(c_id, c_res)
    np.testing.assert_allclose(back.numpy(), np.pad(a_id[:, :4], ((0, 0), (0, 2))), rtol=1e-6)
    net.init_decoders_from_model(model)
    _, _, shape = net.decode(c_id, c_res)
    kept = np.pad(a_id[:, :4], ((0, 0), (0, 2)))
    np.testing.assert_allclose(shape.detach().numpy().reshape(5, 30, 3), model.shape(kept, a_exp), atol=1e-4)
    again = build_from_arch(net.arch())
    again.load_state_dict(net.state_dict())
    assert again.model_n_id == 6 and again.scaler.model_n_id == 6
    with pytest.raises(ValueError, match="6 entries"):
        scaler.to_code(torch.zeros(1, 4), torch.zeros(1, 2))
    with pytest.raises(ValueError, match="id_codes = 7"):
        networks.DisentangledFaceNet.from_config(cfg.model_copy(update={"id_codes": 7}), model, n_subjects=3)


def test_decoder_change_split_on_analytic_changes():
    """A change made of basis modes is all in their span; one made of the missing identity modes
    is outside both spans and all of it in the missing modes; the energies add up."""
    rng = np.random.default_rng(0)
    n, k_all, k = 40, 6, 3
    Q = np.linalg.qr(rng.normal(size=(3 * n, k_all + 2)))[0]  # orthonormal columns: disjoint spans
    model = MorphableModel(mean=np.zeros((n, 3)), id_basis=Q[:, :k_all].T.reshape(k_all, n, 3),
                           exp_basis=Q[:, k_all:].T.reshape(2, n, 3), triangles=np.array([[0, 1, 2]]),
                           landmarks=np.arange(n)[:40] % n)
    w2 = (rng.normal(size=(k, n, 3)), rng.normal(size=(2, n, 3)))
    in_id = np.einsum("cj,jv->cv", rng.normal(size=(k, k)), Q[:, :k].T).reshape(k, n, 3)
    missing = np.einsum("cj,jv->cv", rng.normal(size=(k, k_all - k)), Q[:, k:k_all].T).reshape(k, n, 3)
    in_exp = np.einsum("cj,jv->cv", rng.normal(size=(2, 2)), Q[:, k_all:].T).reshape(2, n, 3)
    t = B.decoder_change_split(w2, (w2[0] + in_id, w2[1] + in_exp), model, k_id=k)
    assert t.loc["identity decoder", "A_id part"] == pytest.approx(1.0, abs=1e-9)
    assert t.loc["residual decoder", "A_exp part"] == pytest.approx(1.0, abs=1e-9)
    t = B.decoder_change_split(w2, (w2[0] + missing, w2[1]), model, k_id=k)
    assert t.loc["identity decoder", "outside both"] == pytest.approx(1.0, abs=1e-9)
    assert t.loc["identity decoder", "outside, in the missing identity modes"] == pytest.approx(1.0, abs=1e-9)
    t = B.decoder_change_split(w2, (w2[0] + in_id + missing, w2[1]), model, k_id=k)
    row = t.loc["identity decoder"]
    total = (in_id ** 2).sum() + (missing ** 2).sum()
    assert row["A_id part"] == pytest.approx((in_id ** 2).sum() / total, rel=1e-9)
    assert row["A_id part"] + row["A_exp part"] + row["outside both"] == pytest.approx(1.0, abs=1e-9)
    with pytest.raises(ValueError, match="k_id"):
        B.decoder_change_split(w2, w2, model, k_id=7)


def test_both_worlds_end_to_end_on_a_tiny_profile(tmp_path, monkeypatch, one_torch_thread):
    """Both worlds really trained on a tiny population: K-mode targets (zero above K), networks
    coding K modes, the true-shape L_R variant, Tables 1 and 3 in both worlds, the tests and the
    split: the true-shape variant moves the identity decoder further out of the span, and more of
    it into the modes the basis lacks, than the K-mode targets do."""
    from test_experiments import _tiny_data_dir

    from disentangled_face import fitting, training

    _tiny_data_dir(tmp_path, monkeypatch)
    cfg = with_overrides(load_config(tmp_path / "tiny.yaml"), {
        "synth.protocols.train": {"subjects": 12, "images_per_subject": 3},
        "targets.workers": 1, "experiments": {"beyond_basis_modes": 5, "beyond_basis_subjects": 8},
        "train": {"batch_size": 8, "val_fraction": 0.34, "num_threads": 1, "phase1": {"epochs": 2, "warmup_steps": 2},
                  "phase3": {"epochs": 2, "epochs_after_switch": 1}}})
    data = training.training_data(cfg, progress=False)
    kdata = B.beyond_basis_data(cfg, data)
    assert kdata.n_subjects == 8 and len(kdata.train) == len(training.first_subjects(data, 8).train)
    assert np.all(kdata.train.alpha_id[:, 5:] == 0) and np.any(kdata.train.alpha_id[:, :5] != 0)
    assert np.any(kdata.val.alpha_id[:, 5:] != 0)  # held-out images keep their true coefficients
    assert fitting.targets_path(B.beyond_basis_config(cfg), subjects=8).is_file()
    worlds = B.train_worlds(cfg, data)
    assert worlds.nets["beyond-basis"]["Proposed"].n_id == 5 and worlds.nets["in-span"]["Proposed"].n_id == 100
    assert worlds.runs["in-span"].run_dir != worlds.runs["beyond-basis"].run_dir
    res = B.world_results(cfg, worlds)
    t1 = res["yaw"]
    assert list(t1.index.get_level_values(0).unique()) == list(B.WORLDS)
    assert {"Avg.", "overall", "vs mean face"} <= set(t1.columns) and np.isfinite(t1["overall"]).all()
    assert t1.loc[("beyond-basis", "mean face"), "overall"] == pytest.approx(t1.loc[("in-span", "mean face"), "overall"])
    assert set(res["lfw"].loc["beyond-basis"].index) == {"3DMM fitting", "3DMM-CNN-like", "Proposed", B.GT_VARIANT}
    tests = B.premise_tests(res)
    assert len(tests) == 8 and set(tests.verdict) <= {"supported", "not supported", "inconclusive"}
    assert (tests.p >= 0).all() and (tests.p <= 1).all()
    split = B.world_bases_split(cfg, worlds)
    fitted = split.loc[("beyond-basis", "Proposed", "identity decoder")]
    gt = split.loc[("beyond-basis", B.GT_VARIANT, "identity decoder")]
    # the true shapes pull the identity decoder into the modes the basis lacks (Adam's
    # per-weight steps let some of any change out of the span, hence a comparison)
    missing = "outside, in the missing identity modes"
    assert fitted["outside both"] < gt["outside both"] and fitted[missing] + 0.05 < gt[missing]
    assert np.isnan(split.loc[("in-span", "Proposed", "identity decoder"), missing])
    text = B.premise_markdown(res, tests, split)
    assert "beyond-basis: Proposed" in text and "outside both spans" in text
