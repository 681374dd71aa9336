"""Training-batch augmentation (training/augment.py): what it changes, what it keeps, and that resume stays exact."""

import numpy as np
import pytest
import torch

from disentangled_face import training as T
from disentangled_face.training.augment import AugmentSettings, make_augment
from test_train import CFG_D, _interrupted_equals_uninterrupted, tcfg, toy_data, toy_net

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # see conftest.py


def _faces(n=8, seed=0):
    """Smooth random images (B, 3, 56, 48) in [-0.8, 0.8]: coarse 7 x 6 noise, upsampled."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 7, 6, generator=g) * 1.6 - 0.8
    return torch.nn.functional.interpolate(coarse, size=(56, 48), mode="bilinear", align_corners=False)


def test_neutral_settings_give_the_images_back():
    x = _faces()
    neutral = AugmentSettings(degrees=0.0, translate=0.0, scale=(1.0, 1.0), jitter_p=0.0, blur_p=0.0, noise_p=0.0)
    torch.testing.assert_close(make_augment("full", neutral)(x), x, rtol=0, atol=1e-5)


def test_every_call_draws_a_new_change_within_the_input_range():
    x = _faces()
    aug = make_augment("full")
    torch.manual_seed(0)
    a, b = aug(x), aug(x)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert float(a.min()) >= -1.0 and float(a.max()) <= 1.0
    assert not torch.allclose(a, b) and not torch.allclose(a, x)
    # a shift of at most 6 % and a zoom of at most 8 % move the face by a few pixels only: the
    # augmented image stays far closer to its own original than to another face
    d_own = (a - x).abs().mean(dim=(1, 2, 3))
    d_other = (a - x.roll(1, 0)).abs().mean(dim=(1, 2, 3))
    assert float(d_own.mean()) < 0.7 * float(d_other.mean()), (d_own, d_other)
    torch.manual_seed(0)
    torch.testing.assert_close(aug(x), a)  # seeded by torch's RNG (what checkpoints store)


def test_photometric_keeps_the_geometry():
    """Without the warp, an image's edges stay where they were: brightness/contrast/blur/noise only."""
    x = torch.zeros(4, 3, 56, 48) - 0.6
    x[:, :, 20:36, 16:32] = 0.6  # a bright square
    torch.manual_seed(1)
    y = make_augment("photometric", AugmentSettings(noise_p=0.0, blur_p=0.0))(x)
    inside, outside = y[:, :, 22:34, 18:30].mean(dim=(1, 2, 3)), y[:, :, :16].mean(dim=(1, 2, 3))
    assert (inside > outside + 0.3).all()  # the square is still there, brighter than the rest
    # the contrast change is affine per image: every outside pixel keeps one value
    assert float(y[:, :, :16].std(dim=(1, 2, 3)).max()) < 1e-5


def test_bad_images_are_refused():
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        make_augment("full")(torch.zeros(3, 56, 48))
    with pytest.raises(ValueError, match="augment must be one of"):
        make_augment("flip")
    assert make_augment("none") is None


def test_resume_with_augmentation_matches_uninterrupted(tmp_path):
    cfg = tcfg({**CFG_D, "phase1": {"epochs": 2, "lr": 3e-3, "augment": "photometric"}})
    ra, _ = _interrupted_equals_uninterrupted(tmp_path, "phase1", cfg, max_steps=6, net_fn=toy_net)
    plain = tcfg({**CFG_D, "phase1": {"epochs": 2, "lr": 3e-3}})
    m, ds = toy_data()
    rp = T.train_phase("phase1", toy_net(m, ds), ds, plain, tmp_path / "plain", model=m, chash="h", progress=False)
    # the augmented run saw other images: its losses differ from the plain run's
    assert not np.allclose(ra.history.loss.to_numpy(), rp.history.loss.to_numpy())
