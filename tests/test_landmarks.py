"""Landmark detection: backend choice, image formats, no-face handling, dlib on a real photograph."""

import logging

import numpy as np
import pytest
from skimage import data

from disentangled_face.data import landmarks as lm


@pytest.fixture(scope="module")
def dlib_det():
    return lm.LandmarkDetector("dlib")


@pytest.fixture(scope="module")
def astronaut():
    return data.astronaut()


def test_astronaut_face_found_with_68_points(dlib_det, astronaut):
    d = dlib_det.detect(astronaut)
    assert d.found and d.backend == "dlib"
    assert d.points.shape == (68, 2)
    left, top, right, bottom = d.box
    # Eileen Collins' face: the box lies in the upper middle of the 512 x 512 photo
    assert 120 < left < right < 330 and 30 < top < bottom < 230
    inside = ((d.points[:, 0] > left - 15) & (d.points[:, 0] < right + 15)
              & (d.points[:, 1] > top - 15) & (d.points[:, 1] < bottom + 25))
    assert inside.all()
    # iBUG order: jaw 0-16 from the image's left to right, nose tip 30 between the eyes' centres,
    # eyes above the mouth
    assert d.points[0, 0] < d.points[8, 0] < d.points[16, 0]
    reye, leye = d.points[36:42].mean(0), d.points[42:48].mean(0)
    assert reye[0] < d.points[30, 0] < leye[0]
    assert max(reye[1], leye[1]) < d.points[30, 1] < d.points[48:68, 1].mean()


def test_image_formats_give_the_same_landmarks(dlib_det, astronaut):
    ref = dlib_det.detect(astronaut).points
    rgba = np.concatenate([astronaut, np.full(astronaut.shape[:2] + (1,), 255, np.uint8)], -1)
    np.testing.assert_array_equal(dlib_det.detect(rgba).points, ref)
    np.testing.assert_array_equal(dlib_det.detect(astronaut / 255.0).points, ref)
    grey = np.round(astronaut.mean(-1)).astype(np.uint8)
    grey_rgb = np.repeat(grey[..., None], 3, -1)
    g = dlib_det.detect(grey).points
    np.testing.assert_array_equal(g, dlib_det.detect(grey_rgb).points)
    ga = np.stack([grey, np.full_like(grey, 255)], -1)
    np.testing.assert_array_equal(dlib_det.detect(ga).points, g)
    # grey and colour find the same face to a few pixels
    assert np.abs(g - ref).mean() < 3.0


def test_to_rgb_conversions():
    grey = np.array([[0, 128], [255, 7]], np.uint8)
    out = lm.to_rgb_uint8(grey)
    assert out.shape == (2, 2, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[..., 1], grey)
    half = lm.to_rgb_uint8(np.dstack([np.zeros((2, 2)), np.full((2, 2), 0.5)]))  # black at alpha 0.5 over white
    assert (half == 128).all()
    np.testing.assert_array_equal(lm.to_rgb_uint8(np.ones((2, 2, 3))), 255)


@pytest.mark.parametrize("bad, msg", [
    (np.zeros((8, 8, 5), np.uint8), "shape"),
    (np.zeros((8,), np.uint8), "shape"),
    (np.full((8, 8, 3), 2.0), r"\[0, 1\]"),
    (np.full((8, 8, 3), np.nan), "NaN"),
    (np.full((8, 8), 300, np.int32), "255"),
    (np.zeros((0, 8, 3), np.uint8), "empty"),
])
def test_bad_images_raise(dlib_det, bad, msg):
    with pytest.raises(ValueError, match=msg):
        dlib_det.detect(bad)


def test_no_face_is_a_typed_result(dlib_det):
    blank = np.full((120, 120, 3), 127, np.uint8)
    d = dlib_det.detect(blank)
    assert d.found is False and d.points is None and d.n_faces == 0
    with pytest.raises(lm.NoFaceFound):
        dlib_det.landmarks(blank)


def test_auto_backend_is_reported(caplog, tmp_path):
    assert lm.fan_weights_cached(tmp_path) is False          # an empty hub folder: nothing cached
    with caplog.at_level(logging.INFO, logger="disentangled_face.data.landmarks"):
        det = lm.LandmarkDetector("auto")
    expected = "fan" if lm.fan_weights_cached() else "dlib"
    assert det.backend == expected
    assert f"landmark detector: {expected}" in caplog.text
    with pytest.raises(ValueError, match="backend"):
        lm.LandmarkDetector("mtcnn")


def test_fan_weights_detection_looks_for_both_files(tmp_path):
    ck = tmp_path / "checkpoints"
    ck.mkdir()
    (ck / lm.FAN_WEIGHT_FILES[0]).write_bytes(b"x")
    assert not lm.fan_weights_cached(tmp_path)
    (ck / lm.FAN_WEIGHT_FILES[1]).write_bytes(b"x")
    assert lm.fan_weights_cached(tmp_path)


def test_detection_then_fit_on_the_photograph(dlib_det, astronaut):
    from disentangled_face import fitting
    from disentangled_face.shape import load_ict_facekit

    m = load_ict_facekit()
    d = dlib_det.detect(astronaut)
    fit = fitting.fit_shape_and_pose(m, [d], threads=1)
    assert fit.kept == [0] and fit.discarded == []
    # a near-frontal portrait: small yaw, and the model explains dlib's points to a few pixels
    assert abs(np.degrees(fit.yaw[0])) < 30
    assert fit.rmse_px[0] < 0.05 * (d.box[2] - d.box[0])


def test_fit_images_discards_images_without_a_face(dlib_det, astronaut):
    from disentangled_face import fitting
    from disentangled_face.shape import load_ict_facekit

    m = load_ict_facekit()
    blank = np.full((200, 200, 3), 90, np.uint8)
    with pytest.warns(UserWarning, match="no face found in 1 of 3"):
        fit = fitting.fit_images(m, [astronaut, blank, astronaut[:, ::-1]], detector=dlib_det, threads=1)
    assert fit.discarded == [1] and fit.kept == [0, 2] and fit.R.shape == (2, 3, 3)
    # the mirrored photo turns the head the other way
    assert np.sign(fit.yaw[0]) != np.sign(fit.yaw[1]) or abs(fit.yaw[0]) < np.radians(2)
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="no usable image"):
        fitting.fit_images(m, [blank, blank], detector=dlib_det)
    with pytest.raises(ValueError, match="at least one"):
        fitting.fit_images(m, [], detector=dlib_det)
