"""The pieces that make the networks learn (issue 10): the shape-energy Phase I loss, the
class-mean classifier start of Phase III, the learning curves, the detectable-difference
computation, and the mean face as a method."""

import math

import numpy as np
import pytest
import torch

from disentangled_face import training as T
from disentangled_face.evaluation import power
from disentangled_face.methods import METHODS, reconstruction_methods, verification_methods
from disentangled_face.networks import CodeScaler, losses
from disentangled_face.shape import MorphableModel

from test_train import CFG_D, N_SUBJ, tcfg, toy_data, toy_net

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_shape_energy_loss_is_the_decoded_shape_error_for_an_orthogonal_basis():
    """With orthogonal basis columns the weighted code loss is the 3DMM-decoded shape error (mm²
    per vertex) up to the weights' normalisation constant."""
    rng = np.random.default_rng(0)
    n, k_id, k_exp = 50, 4, 3
    q, _ = np.linalg.qr(rng.standard_normal((3 * n, k_id + k_exp)))
    A = q * np.array([5.0, 2.0, 0.5, 0.1, 3.0, 1.0, 0.2])  # orthogonal columns, unequal energies
    model = MorphableModel(mean=np.zeros((n, 3)), id_basis=A[:, :k_id].T.reshape(k_id, n, 3),
                           exp_basis=A[:, k_id:].T.reshape(k_exp, n, 3), triangles=np.zeros((1, 3), np.int64),
                           landmarks=np.arange(10))
    sc = CodeScaler(rng.uniform(0.5, 3, k_id), rng.uniform(0.5, 1, k_exp))
    w_id, w_res = losses.shape_energy_weights(model, sc)
    assert float(torch.cat([w_id, w_res]).mean()) == pytest.approx(1.0)
    c = torch.as_tensor(rng.uniform(-1, 1, (8, k_id)), dtype=torch.float32)
    r = torch.as_tensor(rng.uniform(-1, 1, (8, k_exp)), dtype=torch.float32)
    t, tr = torch.zeros_like(c), torch.zeros_like(r)
    loss, _ = losses.code_regression_loss(c, r, t, tr, w_id, w_res)
    a_id, a_exp = sc.from_code(c, r)
    shape_mm2 = (model.shape(a_id, a_exp, flat=True) - torch.as_tensor(model.s_mean)).reshape(8, n, 3).pow(2).sum(-1).mean()
    e = torch.cat([torch.as_tensor(model.A_id).pow(2).sum(0) * torch.as_tensor(sc.scale_id) ** 2,
                   torch.as_tensor(model.A_exp).pow(2).sum(0) * torch.as_tensor(sc.scale_exp) ** 2]) / n
    assert float(loss) * float(e.mean()) == pytest.approx(float(shape_mm2), rel=1e-4)
    # without weights: the paper's plain loss
    plain, _ = losses.code_regression_loss(c, r, t, tr)
    assert float(plain) == pytest.approx(float(c.pow(2).sum(1).mean() + r.pow(2).sum(1).mean()), rel=1e-6)


def test_class_mean_classifier_identifies_separated_codes():
    m, ds = toy_data()
    net = toy_net(m, ds)
    rng = np.random.default_rng(1)
    centres = rng.uniform(-0.8, 0.8, (N_SUBJ, m.n_id))
    labels = np.repeat(np.arange(N_SUBJ), 5)
    codes = centres[labels] + 0.01 * rng.standard_normal((len(labels), m.n_id))
    acc = net.init_classifier_from_codes(torch.as_tensor(codes), torch.as_tensor(labels))
    assert acc == 1.0
    logits = net.classifier(torch.as_tensor(centres, dtype=torch.float32))
    assert (logits.argmax(1).numpy() == np.arange(N_SUBJ)).all()
    with pytest.raises(ValueError, match="labels must lie"):
        net.init_classifier_from_codes(torch.as_tensor(codes), torch.as_tensor(labels + N_SUBJ))
    with pytest.raises(ValueError, match="do not vary"):
        net.init_classifier_from_codes(torch.zeros(4, m.n_id), torch.arange(4))


def test_learning_curves_and_classifier_start_are_logged(tmp_path):
    """train_phase with a held-out monitor writes train/held-out errors per epoch; Phase III can
    start from the class means of the Phase I codes."""
    m, ds = toy_data()
    val = T.data.FaceImageDataset.from_tensors(
        torch.stack([ds[i]["image"] for i in range(8)]), np.arange(8) % N_SUBJ,
        torch.stack([ds[i]["alpha_id"] for i in range(8)]), torch.stack([ds[i]["alpha_exp"] for i in range(8)]),
        extra={"fit_alpha_id": torch.stack([ds[i]["alpha_id"] for i in range(8)]).numpy(),
               "fit_alpha_exp": torch.stack([ds[i]["alpha_exp"] for i in range(8)]).numpy()})
    net = toy_net(m, ds)
    cfg = tcfg({**CFG_D, "phase1": {"epochs": 2, "lr": 3e-3, "loss": "shape_energy"},
                "phase3": {"epochs": 2, "lr": 1e-3, "lambda_r": [0.5], "classifier_init": "class_means"}})
    r1 = T.train_phase("phase1", net, ds, cfg, tmp_path, model=m, chash="h", progress=False, monitor=val)
    cols = {"train_rmse_mm", "val_rmse_mm", "val_true_rmse_mm"}
    assert cols <= set(r1.epochs.columns) and np.isfinite(r1.epochs[list(cols)].to_numpy()).all()
    assert "val_acc" not in r1.epochs  # Phase I has no trained classifier
    r3 = T.train_phase("phase3", net, ds, cfg, tmp_path, model=m, chash="h", progress=False, monitor=val)
    assert {"train_acc", "val_acc"} | cols <= set(r3.epochs.columns)
    info = torch.load(r3.checkpoint, weights_only=True)["info"]
    assert 0.0 <= info["classifier_init_train_acc"] <= 1.0
    assert net.training  # the curves leave the network in training mode
    with pytest.raises(ValueError, match="morphable model"):
        T.train_phase("phase1", toy_net(m, ds), ds, cfg, tmp_path / "x", model=None, chash="h", progress=False)


def test_minimum_detectable_difference_by_hand():
    """Large n: the normal formula (z_0.975 + z_0.8) sd / sqrt(n); no effect: power = alpha;
    a small case checked by simulation; Wilcoxon through its efficiency 3/pi."""
    z = 1.959964 + 0.841621
    assert power.min_detectable_difference(2.0, 40_000) == pytest.approx(z * 2.0 / 200, rel=2e-3)
    assert power.t_test_power(0.0, 1.0, 10) == pytest.approx(0.05, abs=1e-9)
    d10 = power.min_detectable_difference(1.0, 10)
    assert d10 > z / math.sqrt(10)  # the t distribution's wider tails cost power at 10 folds
    from scipy import stats

    x = np.random.default_rng(0).normal(d10, 1.0, (20_000, 10))
    assert (stats.ttest_1samp(x, 0, axis=1).pvalue < 0.05).mean() == pytest.approx(0.8, abs=0.015)
    assert power.min_detectable_difference(1.0, 50, test="wilcoxon") == pytest.approx(
        power.min_detectable_difference(1.0, 50) * math.sqrt(math.pi / 3))
    assert np.isnan(power.paired_mde([1.0, 1.0], [0.0, 0.0]))  # no spread: nothing to say
    for bad in (dict(sd=0.0, n=10), dict(sd=1.0, n=1)):
        with pytest.raises(ValueError):
            power.min_detectable_difference(**bad)
    with pytest.raises(ValueError, match="test must be"):
        power.min_detectable_difference(1.0, 10, test="sign")


def test_mean_face_is_a_reconstruction_method_only():
    assert METHODS["mean face"].source == "mean" and METHODS["mean face"].feature is None
    assert "mean face" in [m.name for m in reconstruction_methods()]
    assert "mean face" not in [m.name for m in verification_methods()]


def test_subjects_for_ratio_extrapolates_a_log_line_and_refuses_bad_input():
    """An exact line in log10(S) is recovered (slope per decade, the size where it reaches the
    target); a curve that does not fall needs infinitely many subjects; bad input is refused."""
    import pandas as pd
    from disentangled_face.evaluation import subjects_for_ratio
    S = np.array([300, 600, 1000, 3000])
    down = 1.1 - 0.05 * np.log10(S)   # falls 0.05 per decade: 0.75 at 10**7 subjects
    flat = np.full(4, 0.97)
    df = pd.DataFrame({"subjects": np.r_[S, S], "method": ["a"] * 4 + ["b"] * 4, "vs_mean_face": np.r_[down, flat]})
    r = subjects_for_ratio(df, 0.75)
    assert r.loc["a", "per_decade"] == pytest.approx(-0.05)
    assert r.loc["a", "subjects_needed"] == pytest.approx(1e7, rel=1e-6)
    assert r.loc["a", "at_largest"] == pytest.approx(down[-1])
    assert math.isinf(r.loc["b", "subjects_needed"]) and int(r.loc["b", "largest"]) == 3000
    with pytest.raises(ValueError, match="target"):
        subjects_for_ratio(df, 1.5)
    with pytest.raises(ValueError, match="two population sizes"):
        subjects_for_ratio(df[df.subjects == 300], 0.75)
    with pytest.raises(ValueError, match="columns"):
        subjects_for_ratio(df.drop(columns="vs_mean_face"), 0.75)
