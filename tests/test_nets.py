"""Encoder-decoder (networks/) and losses (networks/losses.py): shapes, exact decoder init, analytic losses."""

import math

import numpy as np
import pytest
import torch

from disentangled_face.config import Config, ConfigError, load_config, with_overrides
from disentangled_face.networks import (CodeScaler, DisentangledFaceNet, SphereFace20, TextureNet,
                                        build_from_arch, count_parameters, layer_table)
from disentangled_face.networks.losses import (code_regression_loss, identification_loss, joint_loss,
                                               reconstruction_loss)
from disentangled_face.shape import MorphableModel

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


ICT = dict(n_vertices=9409, n_id=100, n_exp=53)


@pytest.mark.parametrize("profile", ["book", "paper"])
def test_output_shapes_per_profile(profile):
    cfg = load_config(profile).network
    torch.manual_seed(0)
    net = DisentangledFaceNet(**ICT, n_subjects=7, width=cfg.width, input_size=cfg.input_size,
                              feature_dim=cfg.feature_dim)
    x = torch.rand(2, 3, 112, 96) * 2 - 1
    out = net(x)
    assert out["feature"].shape == (2, 512)
    assert out["c_id"].shape == (2, 100) and out["c_res"].shape == (2, 53)
    assert out["logits"].shape == (2, 7)
    for k in ("delta_id", "delta_res", "shape"):
        assert out[k].shape == (2, 3 * 9409)
    assert out["c_id"].abs().max() <= 1 and out["c_res"].abs().max() <= 1
    torch.testing.assert_close(out["shape"], net.s_mean + out["delta_id"] + out["delta_res"])
    tex = TextureNet.from_config(cfg, 7)
    t = tex(x)
    assert t["feature"].shape == (2, 512) and t["logits"].shape == (2, 7)


def test_paper_encoder_is_sphere20a():
    enc = SphereFace20(1.0, (112, 96), 512)
    convs = [m for m in enc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 20  # 4 stride-2 + 2 * (1 + 2 + 4 + 1)
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert [c.out_channels for c in convs if c.stride == (2, 2)] == [64, 128, 256, 512]
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in enc.modules())
    n_prelu = sum(isinstance(m, torch.nn.PReLU) for m in enc.modules())
    assert n_prelu == 20
    assert enc.out_hw == (7, 6) and enc.fc.in_features == 512 * 7 * 6
    # parameter count from the architecture: convs (3x3) + biases of stride-2 convs + PReLU + FC
    chans, units, c_in, expect = (64, 128, 256, 512), (1, 2, 4, 1), 3, 0
    for c, u in zip(chans, units):
        expect += 9 * c_in * c + c + c + u * 2 * (9 * c * c + c)
        c_in = c
    expect += 512 * 7 * 6 * 512 + 512
    assert count_parameters(enc) == expect
    rows = layer_table(enc, torch.zeros(1, 3, 112, 96))
    assert rows.params.sum() == expect
    assert tuple(rows[rows.layer == "fc"].output_shape.iloc[0]) == (1, 512)


def test_code_scaler_roundtrip_and_range():
    rng = np.random.default_rng(0)
    a_id, a_exp = rng.normal(size=(50, 6)) * 3, rng.uniform(0, 1, size=(50, 4))
    sc = CodeScaler.fit(a_id, a_exp, margin=1.25)
    c_id, c_res = sc.to_code(torch.as_tensor(a_id, dtype=torch.float32), torch.as_tensor(a_exp, dtype=torch.float32))
    assert float(c_id.abs().max()) == pytest.approx(0.8, abs=1e-6)
    assert float(c_res.abs().max()) == pytest.approx(0.8, abs=1e-6)
    b_id, b_exp = sc.from_code(c_id, c_res)
    np.testing.assert_allclose(b_id.numpy(), a_id, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(b_exp.numpy(), a_exp, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="positive"):
        CodeScaler(np.array([1.0, -1.0]), np.ones(2))
    with pytest.raises(ValueError, match="margin"):
        CodeScaler.fit(a_id, a_exp, margin=0.9)


def test_decoders_from_3dmm_reproduce_model_shape():
    m = MorphableModel.toy(n=120, k_id=8, k_exp=5, seed=3)
    a_id, a_exp = m.sample(6, rng=1)
    sc = CodeScaler.fit(a_id, a_exp, margin=1.25)
    net = DisentangledFaceNet(m.n_vertices, m.n_id, m.n_exp, 4, s_mean=None, scaler=sc,
                              width=0.125, input_size=(32, 32), feature_dim=16)
    net.init_decoders_from_model(m)
    c_id, c_res = sc.to_code(torch.as_tensor(a_id), torch.as_tensor(a_exp))
    d_id, d_res, s = net.decode(c_id, c_res)
    np.testing.assert_allclose(s.detach().numpy(), m.shape(a_id, a_exp, flat=True), atol=1e-3)
    np.testing.assert_allclose(d_id.detach().numpy(), m.delta_id(a_id, flat=True), atol=1e-3)
    b_id, b_res = net.bases()
    np.testing.assert_allclose(b_id, m.id_basis * sc.scale_id.numpy()[:, None, None], rtol=1e-6)
    assert b_res.shape == (5, 120, 3)
    with pytest.raises(ValueError, match="differ"):
        net.init_decoders_from_model(MorphableModel.toy(n=100, k_id=8, k_exp=5))


def test_build_from_arch_roundtrip():
    net = DisentangledFaceNet(50, 4, 3, 5, width=0.125, input_size=(32, 32), feature_dim=8)
    net2 = build_from_arch(net.arch())
    net2.load_state_dict(net.state_dict())
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(net.eval()(x)["shape"], net2.eval()(x)["shape"])
    assert isinstance(build_from_arch(TextureNet(3, 0.125, (32, 32), 8).arch()), TextureNet)
    with pytest.raises(ValueError, match="kind"):
        build_from_arch({"kind": "nope"})


def test_encoder_rejects_bad_images_and_resizes():
    enc = SphereFace20(0.125, (32, 32), 8)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        enc(torch.zeros(2, 1, 32, 32))
    assert enc(torch.zeros(2, 3, 112, 96)).shape == (2, 8)


@pytest.mark.parametrize("bad, key", [({"width": 0}, "network.width"), ({"input_size": [112]}, "network.input_size"),
                                      ({"feature_dim": 1.5}, "network.feature_dim"),
                                      ({"code_margin": 1.0}, "network.code_margin"),
                                      ({"arch": "resnet"}, "network.arch"), ({"widht": 1}, "widht")])
def test_bad_network_config_names_key(bad, key):
    with pytest.raises(ConfigError, match=key):
        with_overrides(Config(), {f"network.{k}": v for k, v in bad.items()})


def test_losses_analytic():
    n, d = 30, 2.5
    s_fit = torch.randn(4, 3 * n)
    s_pred = (s_fit.reshape(4, n, 3) + torch.tensor([d, 0.0, 0.0])).reshape(4, 3 * n)
    # every vertex off by d mm: L_R = d^2 mm^2
    assert float(reconstruction_loss(s_pred, s_fit)) == pytest.approx(d * d, rel=1e-5)
    logits = torch.zeros(5, 7)
    labels = torch.arange(5)
    assert float(identification_loss(logits, labels)) == pytest.approx(math.log(7), rel=1e-6)
    loss, parts = joint_loss(s_pred, s_fit, logits, labels, lambda_r=0.5)
    assert float(loss) == pytest.approx(0.5 * d * d + math.log(7), rel=1e-5)
    assert float(parts["L_R"]) == pytest.approx(d * d, rel=1e-5) and float(parts["acc"]) == pytest.approx(1 / 5)
    c = torch.zeros(3, 4)
    loss, parts = code_regression_loss(c, torch.zeros(3, 2), c + 0.5, torch.zeros(3, 2))
    assert float(loss) == pytest.approx(4 * 0.25)
    with pytest.raises(ValueError, match="labels must lie"):
        identification_loss(logits, torch.tensor([0, 1, 2, 3, 7]))
    with pytest.raises(ValueError, match="reconstruction_loss"):
        reconstruction_loss(s_pred, s_fit[:, :-3])
    with pytest.raises(ValueError, match="lambda_r"):
        joint_loss(s_pred, s_fit, logits, labels, lambda_r=-1)


def test_batchnorm_option_is_off_by_default_and_starts_units_as_identity():
    """network.norm: "none" is the published sphere20a (no BatchNorm); "batch" adds BatchNorm and
    each residual unit starts as the identity (its second BatchNorm's scale is zero)."""
    torch.manual_seed(0)
    plain = SphereFace20(width=0.125, input_size=(56, 48))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
    bn = SphereFace20(width=0.125, input_size=(56, 48), norm="batch").eval()
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in bn.modules())
    x = torch.randn(2, 3, 112, 96)
    out = bn(x)
    assert out.shape == (2, 512) and torch.isfinite(out).all()
    unit = next(m for m in bn.modules() if type(m).__name__ == "ResidualUnit")
    c = unit.conv1.in_channels
    h = torch.randn(1, c, 7, 6)
    torch.testing.assert_close(unit(h), h)
    with pytest.raises(ValueError, match="norm"):
        SphereFace20(width=0.125, norm="layer")
    with pytest.raises(ConfigError, match="network.norm"):
        load_config("book", {"network.norm": "layer"})


def test_reconstruction_loss_conventions():
    """per_vertex: mean squared distance per vertex; caffe: the sum over 3n coordinates / 2 (per
    sample), n/2 times the per-vertex value; an unknown convention is refused."""
    import torch

    from disentangled_face.networks import losses

    d = torch.zeros(4, 3 * 5)
    d[:, 0] = 3.0                       # one vertex 3 mm off in every shape of 5 vertices
    assert float(losses.reconstruction_loss(d, torch.zeros_like(d))) == pytest.approx(9 / 5)
    assert float(losses.reconstruction_loss(d, torch.zeros_like(d), "caffe")) == pytest.approx(9 / 2)
    with pytest.raises(ValueError, match="convention"):
        losses.reconstruction_loss(d, d, "sum")
    loss, parts = losses.joint_loss(d, torch.zeros_like(d), torch.zeros(4, 2), torch.zeros(4, dtype=torch.long), 0.5,
                                    "caffe")
    assert float(parts["L_R"]) == pytest.approx(4.5) and float(loss) == pytest.approx(0.5 * 4.5 + float(parts["L_C"]))


def test_phase3_step_uses_the_profiles_l_r_convention():
    """train.phase3.l_r reaches the trainer's step: caffe's L_R is n/2 times the per-vertex one."""
    import numpy as np
    import torch

    from disentangled_face.config import Phase3Config
    from disentangled_face.networks import CodeScaler, DisentangledFaceNet
    from disentangled_face.shape import load_ict_facekit
    from disentangled_face.training import PhaseStep, get_phase

    model = load_ict_facekit().subset(10, 5)
    a_id, a_exp = model.sample(4, rng=0)
    torch.manual_seed(0)
    net = DisentangledFaceNet(model.n_vertices, model.n_id, model.n_exp, 3, s_mean=model.s_mean, width=0.125,
                              input_size=(56, 48), scaler=CodeScaler.fit(a_id, a_exp, margin=1.25)).eval()
    batch = dict(image=torch.zeros(4, 3, 112, 96), label=torch.tensor([0, 1, 2, 0]),
                 alpha_id=torch.as_tensor(a_id, dtype=torch.float32), alpha_exp=torch.as_tensor(a_exp, dtype=torch.float32))
    parts = {}
    for conv in ("per_vertex", "caffe"):
        step = PhaseStep(get_phase("phase3"), net, model, Phase3Config(l_r=conv))
        step.lambda_r = 1.0
        with torch.no_grad():
            parts[conv] = step(**batch)[1]
    np.testing.assert_allclose(float(parts["caffe"]["L_R"]), float(parts["per_vertex"]["L_R"]) * model.n_vertices / 2,
                               rtol=1e-4)
