"""Aligning a face to the networks' 112 x 96 crop (data.align) and a network on the crop (evaluation.photos)."""

import numpy as np
import pytest

from disentangled_face import data
from disentangled_face.data import generator as G


@pytest.fixture(scope="module")
def ict():
    from disentangled_face.shape import load_ict_facekit

    return load_ict_facekit()


def _subject(m, seed=0):
    a_id = np.random.default_rng(seed).standard_normal((1, m.n_id)).astype(np.float32)
    return a_id, np.zeros((1, m.n_exp), np.float32)


def _big_and_crop(m, yaw_deg, seed=0):
    """One face rendered as a training crop (default framing, no roll) and in a larger 'photo'
    (300 x 260, 2.3 times the scale, rolled 12 degrees, off centre)."""
    a_id, a_exp = _subject(m, seed)
    yaw = np.radians(yaw_deg)
    crop = G.render_faces(m, a_id, a_exp, yaw, 0.0, 0.0)
    big = G.render_faces(m, a_id, a_exp, yaw, 0.0, np.radians(12.0), size=(300, 260),
                         scale=2.3 * 0.85 * G.reference_scale(m), trans=np.array([[140.0, 170.0]]))
    return crop, big


def test_synthetic_framing_reference_points(ict):
    ref = data.crop_reference(ict)
    sf = data.crop_reference(framing="sphereface")
    np.testing.assert_allclose(ref.mean(0), sf.mean(0), atol=1e-9)          # the same centroid
    eyes = np.linalg.norm(ref[1] - ref[0]) / np.linalg.norm(sf[1] - sf[0])
    assert 0.85 < eyes < 0.95                                                 # a smaller face than SphereFace's
    with pytest.raises(ValueError, match="framing"):
        data.crop_reference(ict, framing="mtcnn")
    with pytest.raises(ValueError, match="morphable model"):
        data.crop_reference(None)


def test_aligning_a_rendered_face_reproduces_the_training_crop(ict):
    crop, big = _big_and_crop(ict, 0.0)
    al = data.align_face(big.images[0], big.landmarks_true[0], ict, pixel_centre=0.5)
    assert al.image.shape == (112, 96, 3) and al.image.dtype == np.uint8
    d = np.linalg.norm(al.landmarks - crop.landmarks_true[0], axis=1)        # crop pixels
    assert d.mean() < 0.5 and d.max() < 1.0
    assert al.scale == pytest.approx(1 / 2.3, rel=0.02)
    on_face = crop.mask[0]
    diff = np.abs(al.image.astype(float) - crop.images[0].astype(float)).mean(-1)
    shifted = np.abs(np.roll(crop.images[0], 2, axis=1).astype(float) - crop.images[0].astype(float)).mean(-1)
    assert diff[on_face].mean() < 8 and diff[on_face].mean() < shifted[on_face].mean()
    # SphereFace's own framing is another crop: the face comes out larger
    sf = data.align_face(big.images[0], big.landmarks_true[0], framing="sphereface", pixel_centre=0.5)
    assert np.linalg.norm(sf.landmarks - crop.landmarks_true[0], axis=1).mean() > 2.0


def test_aligning_a_turned_face_stays_within_two_pixels(ict):
    crop, big = _big_and_crop(ict, 20.0, seed=1)
    al = data.align_face(big.images[0], big.landmarks_true[0], ict, pixel_centre=0.5)
    d = np.linalg.norm(al.landmarks - crop.landmarks_true[0], axis=1)
    assert d.mean() < 1.5 and d.max() < 3.0        # the similarity fits a turned face's five points less well


def test_align_face_rejects_bad_input(ict):
    img = np.zeros((50, 40, 3), np.uint8)
    with pytest.raises(ValueError, match=r"\(68, 2\)"):
        data.align_face(img, np.zeros((5, 2)), ict)
    with pytest.raises(ValueError, match="RGB"):
        data.align_face(img[..., 0], np.zeros((68, 2)), ict)


def test_reconstruct_photo_runs_a_network_on_the_crop(ict):
    import torch

    from disentangled_face import evaluation as E
    from disentangled_face.networks import DisentangledFaceNet

    torch.manual_seed(0)
    net = DisentangledFaceNet(ict.n_vertices, ict.n_id, ict.n_exp, n_subjects=3, s_mean=ict.mean,
                              width=0.125, input_size=(28, 24), feature_dim=16).eval()
    _, big = _big_and_crop(ict, 0.0)
    r = E.reconstruct_photo(net, big.images[0], big.landmarks_true[0], ict, pixel_centre=0.5)
    assert r.aligned.image.shape == (112, 96, 3)
    assert r.shape.shape == (ict.n_vertices, 3) and r.identity_shape.shape == (ict.n_vertices, 3)
    x = E.net_images(r.aligned.image[None])
    np.testing.assert_allclose(r.shape, E.reconstruct(net, x)[0], atol=1e-5)
