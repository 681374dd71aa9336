"""The trainer (training/): each phase learns, resume is exact, configs and checkpoints are checked."""

import copy

import numpy as np
import pytest
import torch

from disentangled_face import training as T
from disentangled_face.config import Config, ConfigError, load_config, with_overrides
from disentangled_face.data.torch_dataset import FaceImageDataset
from disentangled_face.networks import inference as I
from disentangled_face.networks import DisentangledFaceNet, TextureNet
from disentangled_face.plotting.training import history_figure, sweep_figure
from disentangled_face.shape import MorphableModel

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


N_SUBJ, PER_SUBJ = 8, 8


def toy_data(seed=0):
    """64 images of 8 subjects; the image carries its codes (a fixed random linear map + noise)."""
    m = MorphableModel.toy(n=80, k_id=6, k_exp=4, seed=seed)
    rng = np.random.default_rng(seed)
    n = N_SUBJ * PER_SUBJ
    labels = np.repeat(np.arange(N_SUBJ), PER_SUBJ)
    subj_id = rng.standard_normal((N_SUBJ, m.n_id)).astype(np.float32)
    a_id = subj_id[labels]
    a_exp = rng.uniform(0, 1, (n, m.n_exp)).astype(np.float32)
    proj = rng.standard_normal((m.n_id + m.n_exp, 3 * 16 * 16)).astype(np.float32) * 0.3
    imgs = np.tanh(np.concatenate([a_id, a_exp], 1) @ proj + 0.05 * rng.standard_normal((n, 768)))
    ds = FaceImageDataset.from_tensors(imgs.reshape(n, 3, 16, 16).astype(np.float32), labels, a_id, a_exp)
    return m, ds


def toy_net(m, ds, seed=0):
    torch.manual_seed(seed)
    sc = T.fit_code_scaler(ds)
    return DisentangledFaceNet(m.n_vertices, m.n_id, m.n_exp, N_SUBJ, s_mean=m.s_mean, scaler=sc,
                               width=0.125, input_size=(16, 16), feature_dim=32)


def tcfg(train: dict):
    """A validated ``cfg.train`` from a ``train:`` mapping (package defaults elsewhere)."""
    return with_overrides(Config(), {f"train.{k}": v for k, v in train.items()}).train


CFG_D = {"batch_size": 16, "checkpoint_every": 3, "seed": 1,
         "phase1": {"epochs": 4, "lr": 3e-3}, "phase2": {"epochs": 6, "lr": 3e-2},
         "phase3": {"epochs": 8, "lr": 1e-2, "lambda_r": [0.5]},
         "texture": {"epochs": 4, "lr": 3e-3}}
CFG = tcfg(CFG_D)


@pytest.mark.parametrize("phase", ["phase1", "phase2", "phase3", "texture"])
def test_each_phase_lowers_its_loss(phase, tmp_path):
    m, ds = toy_data()
    net = TextureNet(N_SUBJ, 0.125, (16, 16), 32) if phase == "texture" else toy_net(m, ds)
    res = T.train_phase(phase, net, ds, CFG, tmp_path, model=m, chash="h", progress=False)
    ep = res.epochs
    assert len(ep) == CFG_D[phase]["epochs"] and res.completed
    assert len(res.history) == CFG_D[phase]["epochs"] * (len(ds) // 16)
    assert ep.loss.iloc[-1] < 0.8 * ep.loss.iloc[0], ep.loss.tolist()
    assert np.isfinite(res.history.loss).all()
    # the final checkpoint loads with weights_only=True and gives the trained network
    ck = torch.load(res.checkpoint, weights_only=True)
    assert ck["phase"] == phase and ck["config_hash"] == "h"
    net2 = T.load_model(res.checkpoint)
    for (k, a), b in zip(net.state_dict().items(), net2.state_dict().values()):
        torch.testing.assert_close(a, b, msg=k)


def test_phase_trains_only_its_parts(tmp_path):
    m, ds = toy_data()
    net = toy_net(m, ds)
    before = copy.deepcopy(net.state_dict())
    T.train_phase("phase1", net, ds, tcfg({**CFG_D, "phase1": {"epochs": 1}}), tmp_path, chash="h", progress=False)
    after = net.state_dict()
    for k in before:
        changed = not torch.equal(before[k], after[k])
        assert changed == (k.split(".")[0] in ("encoder", "head_id", "head_res")), k


def test_phase2_recovers_3dmm_decoders(tmp_path):
    """Phase II is a linear regression whose exact solution is the scaled 3DMM basis."""
    m, ds = toy_data()
    expect = None
    for solver, epochs, tol in (("lstsq", 1, 1e-4), ("adam", 100, 0.2)):
        net = toy_net(m, ds)
        cfg = tcfg({**CFG_D, "phase2": {"optimizer": solver, "epochs": epochs, "lr": 0.1, "schedule": "cosine"}})
        res = T.train_phase("phase2", net, ds, cfg, tmp_path / solver, model=m, chash="h", progress=False)
        b_id, b_res = net.bases()
        expect = m.id_basis * net.scaler.scale_id.numpy()[:, None, None]
        rel = np.linalg.norm(b_id - expect) / np.linalg.norm(expect)
        assert rel < tol, (solver, rel)
        assert res.history.loss.iloc[-1] < (1e-6 if solver == "lstsq" else 1.0)
        assert T.load_model(res.checkpoint).dec_id.weight.shape == (3 * m.n_vertices, m.n_id)
    with pytest.raises(ConfigError, match="train.phase1.optimizer"):
        tcfg({"phase1": {"optimizer": "lstsq"}})


def _interrupted_equals_uninterrupted(tmp_path, phase, cfg, max_steps, model=None, net_fn=None):
    m, ds = toy_data()
    a = net_fn(m, ds)
    ra = T.train_phase(phase, a, ds, cfg, tmp_path / "a", model=m, chash="h", progress=False)
    b = net_fn(m, ds)
    rb = T.train_phase(phase, b, ds, cfg, tmp_path / "b", model=m, chash="h", progress=False, max_steps=max_steps)
    assert not rb.completed and not (tmp_path / "b" / f"{phase}.pt").exists()
    torch.manual_seed(1234)  # a fresh process would start from other RNG states: resume restores them
    np.random.seed(99)
    c = net_fn(m, ds)  # fresh weights; everything comes from the state checkpoint
    ck = torch.load(tmp_path / "b" / f"{phase}.state.pt", weights_only=True)
    assert 0 < ck["step"] <= max_steps and ck["position"] > 0  # a mid-epoch checkpoint
    rc = T.train_phase(phase, c, ds, cfg, tmp_path / "b", model=m, chash="h", progress=False, resume=True)
    assert rc.completed
    for (k, x), y in zip(a.state_dict().items(), c.state_dict().values()):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-6, msg=k)
    np.testing.assert_allclose(ra.history.loss.to_numpy(), rc.history.loss.to_numpy(), rtol=1e-6)
    assert ra.history.step.tolist() == rc.history.step.tolist()
    return ra, rc


def test_resume_matches_uninterrupted_phase3_with_plateau_switch(tmp_path):
    cfg = tcfg({**CFG_D, "checkpoint_every": 3,
                "phase3": {"epochs": 3, "lr": 1e-3, "lambda_r": [0.5, 1.0], "plateau_patience": 1,
                           "plateau_min_delta": 0.5, "epochs_after_switch": 2}})
    ra, rc = _interrupted_equals_uninterrupted(tmp_path, "phase3", cfg, max_steps=7, net_fn=toy_net)
    # min_delta 0.5: the second epoch cannot improve by 50 %, so the switch is a plateau after epoch 2
    ep = rc.epochs
    assert ep.switch.tolist() == [0, 1, 0, 0] and ep.lambda_r.tolist() == [0.5, 0.5, 1.0, 1.0]
    assert (ra.history.lambda_r.to_numpy() == np.repeat([0.5, 1.0], 8)).all()
    info = torch.load(rc.checkpoint, weights_only=True)["info"]
    assert info["switch_reason"] == "plateau" and info["switch_epoch"] == 2


def test_resume_matches_uninterrupted_sgd_step_schedule(tmp_path):
    cfg = tcfg({**CFG_D, "phase1": {"epochs": 3, "optimizer": "sgd", "lr": 0.05, "schedule": "step",
                                    "milestones": [2], "warmup_steps": 2}})
    _interrupted_equals_uninterrupted(tmp_path, "phase1", cfg, max_steps=10, net_fn=toy_net)


def test_mismatched_checkpoint_raises(tmp_path):
    m, ds = toy_data()
    net = toy_net(m, ds)
    T.train_phase("phase1", net, ds, CFG, tmp_path, chash="aaa", progress=False, max_steps=4)
    with pytest.raises(T.CheckpointMismatchError, match="config 'aaa'"):
        T.train_phase("phase1", net, ds, CFG, tmp_path, chash="bbb", progress=False, resume=True)
    (tmp_path / "phase1.state.pt").rename(tmp_path / "phase2.state.pt")
    with pytest.raises(T.CheckpointMismatchError, match="'phase1' checkpoint"):
        T.train_phase("phase2", net, ds, CFG, tmp_path, model=m, chash="aaa", progress=False, resume=True)
    with pytest.raises(T.CheckpointMismatchError, match="expected 'zzz'"):
        T.load_model(tmp_path / "phase2.state.pt", expect_hash="zzz")
    torch.save({"foo": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(T.CheckpointMismatchError, match="not a disentangled_face checkpoint"):
        T.load_model(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError):
        T.load_model(tmp_path / "missing.pt")


@pytest.mark.parametrize("bad, key", [
    ({"batch_size": 0}, "train.batch_size"), ({"seed": -1}, "train.seed"), ({"amp": "fp8"}, "train.amp"),
    ({"device": "tpu"}, "train.device"), ({"phase1": {"lr": 0}}, "train.phase1.lr"),
    ({"phase2": {"optimizer": "lbfgs"}}, "train.phase2.optimizer"),
    ({"phase3": {"lambda_r": [0.5, 1.0, 2.0]}}, "train.phase3.lambda_r"),
    ({"phase3": {"plateau_patience": 0}}, "train.phase3.plateau_patience"),
    ({"phase1": {"lambda_r": [1.0]}}, "train.phase1.lambda_r: unknown"), ({"epochs": 3}, "train.epochs: unknown"),
    ({"texture": {"schedule": "linear"}}, "train.texture.schedule"),
    ({"sweep": {"lambda_r": []}}, "train.sweep.lambda_r"), ({"val_fraction": 0.9}, "train.val_fraction"),
])
def test_bad_train_config_names_key(bad, key):
    with pytest.raises(ConfigError, match=key):
        tcfg(bad)


@pytest.mark.parametrize("profile", ["book", "paper"])
def test_profiles_validate(profile):
    assert load_config(profile).train.phase3.lambda_r == (0.5, 1.0)


def test_bad_inputs_raise(tmp_path):
    m, ds = toy_data()
    net = toy_net(m, ds)
    with pytest.raises(ValueError, match="phase must be"):
        T.train_phase("phase4", net, ds, CFG, tmp_path, progress=False)
    with pytest.raises(ValueError, match="smaller than one batch"):
        T.train_phase("phase1", net, ds, tcfg({**CFG_D, "batch_size": 128}), tmp_path, progress=False)
    with pytest.raises(ValueError, match="morphable model"):
        T.train_phase("phase3", net, ds, CFG, tmp_path, progress=False)
    with pytest.raises(ValueError, match="TextureNet"):
        T.train_phase("texture", net, ds, CFG, tmp_path, progress=False)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        I.encode(net, np.zeros((2, 16, 16)))


def test_lr_schedules():
    p = tcfg({"phase1": {"schedule": "cosine", "min_lr_factor": 0.1}}).phase1
    assert T.lr_factor(0, 10, 100, p) == pytest.approx(1.0)
    assert T.lr_factor(50, 10, 100, p) == pytest.approx(0.55)
    assert T.lr_factor(100, 10, 100, p) == pytest.approx(0.1)
    p = tcfg({"phase1": {"schedule": "step", "milestones": [2, 3], "gamma": 0.5, "warmup_steps": 4}}).phase1
    assert T.lr_factor(0, 10, 100, p) == pytest.approx(0.25)
    assert [T.lr_factor(s, 10, 100, p) for s in (19, 20, 30)] == pytest.approx([1.0, 0.5, 0.25])


def test_inference_helpers(tmp_path):
    m, ds = toy_data()
    net = toy_net(m, ds)
    net.init_decoders_from_model(m)
    imgs = ds.images[:5].numpy()
    c_id, c_res = I.encode(net, imgs, batch_size=2)
    assert c_id.shape == (5, 6) and c_res.shape == (5, 4)
    s = I.reconstruct(net, imgs, batch_size=2)
    a_id, a_exp = I.alpha_from_images(net, imgs)
    # decoders = 3DMM bases: the network's shape equals the 3DMM's shape of the unscaled codes
    np.testing.assert_allclose(s, m.shape(a_id, a_exp), atol=1e-3)
    s3 = I.reconstruct(net, imgs, morphable=m, components=True)
    np.testing.assert_allclose(s3["shape"], s, atol=1e-3)
    np.testing.assert_allclose(s3["identity_shape"], m.identity_shape(a_id), atol=1e-3)
    ev = I.evaluate(net, ds, m)
    assert ev["n_images"] == len(ds) and 0 <= ev["acc"] <= 1 and ev["rmse_mm"] > 0
    assert I.features(TextureNet(3, 0.125, (16, 16), 32), imgs).shape == (5, 32)


def test_phase1_network_decodes_through_the_3dmm_or_raises(tmp_path):
    """A Phase I checkpoint's decoders are untrained: its shapes come from the 3DMM, or an error."""
    m, ds = toy_data()
    net = toy_net(m, ds)
    res = T.train_phase("phase1", net, ds, tcfg({**CFG_D, "phase1": {"epochs": 1}}), tmp_path, chash="h",
                        progress=False)
    p1 = T.load_model(res.checkpoint)
    assert p1.trained_phase == "phase1" and net.trained_phase == "phase1"
    imgs = ds.images[:4].numpy()
    for n in (p1, net):
        with pytest.raises(ValueError, match="Phase I checkpoint"):
            I.reconstruct(n, imgs)
    a_id, a_exp = I.alpha_from_images(p1, imgs)
    np.testing.assert_allclose(I.reconstruct(p1, imgs, morphable=m), m.shape(a_id, a_exp), atol=1e-3)
    # evaluate decodes through the 3DMM: the network with the scaled 3DMM bases as its decoders
    ref = T.load_model(res.checkpoint)
    ref.init_decoders_from_model(m)
    ev = I.evaluate(p1, ds, m)
    assert ev == I.evaluate(ref, ds, m) and not p1.decoders_from_3dmm  # on a copy
    p1.trained_phase = None  # what the trap gave: the untrained decoders' shape
    assert I.evaluate(p1, ds, m)["rmse_mm"] > 1.1 * ev["rmse_mm"]  # another (worse) number


def test_split_per_subject():
    labels = np.repeat(np.arange(5), [10, 10, 3, 1, 20])
    tr, va = T.split_per_subject(labels, 0.1, seed=0)
    assert len(np.intersect1d(tr, va)) == 0 and len(tr) + len(va) == len(labels)
    counts = {s: int((labels[va] == s).sum()) for s in range(5)}
    assert counts == {0: 1, 1: 1, 2: 1, 3: 0, 4: 2}  # never a subject's last image
    assert np.array_equal(T.split_per_subject(labels, 0.1, seed=0)[1], va)


def test_pipeline_end_to_end_and_cache(tmp_path, monkeypatch, capsys):
    """A tiny profile through train_pipeline (ground-truth targets), cached, evaluated, swept."""
    from disentangled_face import paths

    real = paths.data_dir("ict-facekit")
    monkeypatch.setenv(paths.DATA_ENV, str(tmp_path))
    (tmp_path / "ict-facekit").symlink_to(real, target_is_directory=True)
    cfg = with_overrides(load_config("book"), {
        "synth.protocols": {"train": {"subjects": 4, "images_per_subject": 6}},
        "network.width": 0.125, "network.input_size": [16, 16], "network.feature_dim": 16,
        "train": {"batch_size": 8, "val_fraction": 0.2, "num_threads": 1,
                  "phase1": {"epochs": 1}, "phase2": {"optimizer": "lstsq"},
                  "phase3": {"epochs": 1, "epochs_after_switch": 1}, "texture": {"epochs": 1},
                  "sweep": {"lambda_r": [0.0, 1.0], "epochs": 1}}})
    data = T.training_data(cfg, targets="ground_truth", progress=False)
    assert (len(data.train), len(data.val), data.n_subjects) == (20, 4, 4)
    assert tuple(data.train[0]["image"].shape) == (3, 16, 16)
    # one item schema, in memory (resized once) or streamed from the protocol file
    streamed = T.training_data(cfg, targets="ground_truth", progress=False, in_memory=False)
    for mem, disk in ((data.train, streamed.train), (data.val, streamed.val)):
        a, b = mem[1], disk[1]
        assert set(a) == set(b) and type(a["index"]) is type(b["index"]) is int and a["index"] == b["index"]
        for k in set(a) - {"image", "index"}:
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)
        assert a["image"].dtype == b["image"].dtype == torch.float32 and b["image"].shape == (3, 112, 96)
    out = T.train_pipeline(cfg, progress=False, targets="ground_truth", data=data)
    assert set(out.checkpoints) == set(T.PHASES) and out.run_dir.parent.name == "runs"
    assert out.info["phase3"]["switch_reason"] in ("plateau", "max_epochs")
    mtimes = {p: c.stat().st_mtime_ns for p, c in out.checkpoints.items()}
    again = T.train_pipeline(cfg, progress=False, targets="ground_truth")  # cached: nothing retrained
    assert {p: c.stat().st_mtime_ns for p, c in again.checkpoints.items()} == mtimes
    assert again.histories["phase1"].equals(out.histories["phase1"])
    assert isinstance(again.load("texture"), TextureNet)
    scores = T.evaluate_phases(out, data).set_index("network")
    assert scores.loc["fit", "rmse_mm"] == 0.0  # ground-truth targets: the "fit" is the truth
    assert scores.loc["phase3", "rmse_mm"] > 0 and 0 <= scores.loc["phase3", "acc"] <= 1
    sw = T.lambda_sweep(cfg, trained=out, data=data, progress=False, targets="ground_truth")
    assert sw.lambda_r.tolist() == [0.0, 1.0] and np.isfinite(sw.rmse_mm).all()
    assert all(isinstance(T.load_model(c), DisentangledFaceNet) for c in sw.checkpoint)
    fig = sweep_figure(sw)
    assert len(fig.layout.sliders[0].steps) == 2
    assert len(history_figure(out).data) >= 4
    # the command line reads the profile once and finds the same run (cached: nothing retrained)
    import yaml

    from disentangled_face.training import cli

    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(cfg.to_dict()))
    capsys.readouterr()
    assert cli.main(["--config", str(tmp_path / "tiny.yaml"), "--targets", "ground_truth", "--no-progress"]) == 0
    assert f"run folder: {out.run_dir}" in capsys.readouterr().out
    assert {p: c.stat().st_mtime_ns for p, c in out.checkpoints.items()} == mtimes


def test_run_lock_serialises_processes(tmp_path):
    """A second trainer of the same run folder waits for the first (fcntl.flock)."""
    import threading
    import time

    order = []
    with T.RunLock(tmp_path):
        def other():
            with T.RunLock(tmp_path):
                order.append("second")

        th = threading.Thread(target=other)
        th.start()
        time.sleep(0.3)
        order.append("first done")
    th.join(5)
    assert order == ["first done", "second"]


def _phase_log(tmp_path, **kw):
    from disentangled_face.training.logging import PhaseLog, RunFiles

    return PhaseLog(RunFiles(tmp_path, "phase1"), ["loss"], rank=0, step=0, total_steps=2, log_every=1,
                    batch=4, progress=False, **kw)


def test_tensorboard_logs_beside_the_csv_when_asked(tmp_path):
    pytest.importorskip("tensorboard")
    log = _phase_log(tmp_path, tensorboard=True)
    log.step(1, 0, 1e-3, {"loss": 0.5})
    log.close()
    assert (tmp_path / "phase1.csv").read_text().count("\n") == 2
    assert list((tmp_path / "tensorboard" / "phase1").glob("events.out.tfevents.*"))


def test_tensorboard_off_by_default_and_a_clear_error_when_missing(tmp_path, monkeypatch):
    import builtins

    from disentangled_face.training import logging as tlog

    monkeypatch.delenv(tlog.TENSORBOARD_ENV, raising=False)
    log = _phase_log(tmp_path)
    assert log.tb is None
    log.close()
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith("torch.utils.tensorboard") or name.startswith("tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(ImportError, match=r"pip install \.\[tensorboard\]"):
        _phase_log(tmp_path, tensorboard=True)
    monkeypatch.setenv(tlog.TENSORBOARD_ENV, "1")
    with pytest.raises(ImportError, match="DISENTANGLED_FACE_TENSORBOARD"):
        _phase_log(tmp_path)
