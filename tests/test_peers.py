"""Chapter 9's measurements of the data pipeline against eos-py and the one-image-per-call renderer."""

from __future__ import annotations

import numpy as np
import pytest

from disentangled_face.config import load_config
from disentangled_face.evaluation import peers


@pytest.fixture(scope="module")
def ict():
    from disentangled_face import paths
    from disentangled_face.shape import load_model

    if not (paths.data_dir("ict-facekit", create=False) / "ict_face_mm.npz").is_file():
        pytest.skip("ICT-FaceKit model not converted (run `make model`)")
    return load_model()


def test_fitter_against_eos_on_identical_landmarks(ict):
    pytest.importorskip("eos")
    cfg = load_config("book")
    t = peers.fitter_against_eos(cfg, ict, subjects=4, images=3, eos_images=6)
    assert list(t.index) == ["ours, single-image", "ours, multi-image", peers.EOS_ROW]
    assert t.loc[peers.EOS_ROW, "× eos-py"] == pytest.approx(1.0)
    assert (t["images/s"] > 0).all() and t["images"].tolist() == [12, 12, 6]
    # silhouette jaw points: our marching fit beats eos-py's fixed jaw vertices in 3D and in the image
    assert (t.loc[["ours, single-image", "ours, multi-image"], "3D error (mm)"] < t.loc[peers.EOS_ROW, "3D error (mm)"]).all()
    assert t.loc["ours, multi-image", "reprojection (px)"] < t.loc[peers.EOS_ROW, "reprojection (px)"]


def test_fitter_variants_fit_the_same_landmarks_with_their_options(ict):
    pytest.importorskip("eos")
    cfg = load_config("book")
    same = {k: getattr(cfg.fitting, k) for k in ("max_iter", "joint_iters")}
    t = peers.fitter_against_eos(cfg, ict, subjects=4, images=3, eos_images=2,
                                 variants={"same options": same, "one pass": {"max_iter": 1, "joint_iters": 0}})
    assert list(t.index) == ["ours, single-image", "ours, multi-image", "same options", "one pass", peers.EOS_ROW]
    # the profile's options again: the same fit, to float32 rounding
    for col in ("reprojection (px)", "3D error (mm)"):
        assert t.loc["same options", col] == pytest.approx(t.loc["ours, multi-image", col], rel=1e-4)
    # one alternation and no joint refinement leaves the landmarks further off
    assert t.loc["one pass", "reprojection (px)"] > t.loc["ours, multi-image", "reprojection (px)"]


def test_fitter_variants_refuse_bad_names_and_options(ict):
    cfg = load_config("book")
    with pytest.raises(ValueError, match="fixed rows"):
        peers.fitter_against_eos(cfg, ict, subjects=2, images=2, eos_images=2, variants={"ours, multi-image": {}})
    with pytest.raises(ValueError, match="max_iters"):
        peers.fitter_against_eos(cfg, ict, subjects=2, images=2, eos_images=2, variants={"x": {"max_iters": 3}})


def test_renderer_throughput_table(ict):
    t = peers.renderer_throughput(ict, images=16, batch=8, naive_images=2)
    assert list(t.index) == ["one image per call", "batched (one process)"]
    assert t["images"].tolist() == [2, 16] and np.isfinite(t["images/s"]).all() and (t["images/s"] > 0).all()
    assert t.loc["one image per call", "× one per call"] == 1.0
