"""The 3DDFA-like rival (issue 11): its own run, its row wherever methods are listed, the paper's
3DDFA beside it. No training here (tests/test_experiments.py runs it end to end)."""

import pytest

from disentangled_face import evaluation as E
from disentangled_face import training as T
from disentangled_face.config import ConfigError, ExperimentsConfig, load_config, with_overrides
from disentangled_face.evaluation import paper_results as P
from disentangled_face.fitting.targets import targets_path
from disentangled_face.methods import METHODS, RIVALS, active_methods, method_for_phase, rival_names
from synthetic_inputs import verification_features


def test_the_rival_is_phase1_on_single_image_fits_decoded_through_the_3dmm():
    r, cnn = METHODS["3DDFA-like"], METHODS["3DMM-CNN-like"]
    assert RIVALS == ("3DDFA-like",)
    assert (r.phase, r.decode, r.feature, r.paper_row, r.targets) == ("phase1", "3dmm", "alpha_id", "3DDFA",
                                                                      "single_image")
    assert (cnn.phase, cnn.decode, cnn.feature, cnn.targets) == ("phase1", "3dmm", "alpha_id", "fitted")
    assert r.is_rival and not cnn.is_rival and r.network != cnn.network == "phase1"
    # the main run's phase1 is still 3DMM-CNN-like; the rival's run's is 3DDFA-like
    assert method_for_phase("phase1").name == "3DMM-CNN-like"
    assert method_for_phase("phase1", "single_image").name == "3DDFA-like"
    assert "single_image" in T.TARGETS


def test_switched_on_by_experiments_rivals_in_the_book_and_paper_profiles():
    book = load_config("book")
    assert book.experiments.rivals == load_config("paper").experiments.rivals == ("3DDFA-like",)
    off = with_overrides(book, {"experiments.rivals": []})
    assert rival_names(book) == ("3DDFA-like",) and rival_names(off) == () == rival_names(None)
    assert "3DDFA-like" in [m.name for m in E.reconstruction_methods(book)]
    assert "3DDFA-like" in [m.name for m in E.verification_methods(book)]
    assert "3DDFA-like" not in [m.name for m in E.reconstruction_methods(off) + E.verification_methods(off)]
    assert [m.name for m in active_methods(book)] == list(METHODS)  # table order: 3DDFA-like before 3DMM-CNN-like
    # at its default the key is left out of every hash; the experiments cache folder ignores it
    assert "rivals" not in ExperimentsConfig().to_dict() and "rivals" not in off.experiments.to_dict()
    assert E.cache_dir(book) == E.cache_dir(off)
    with pytest.raises(ConfigError, match="experiments.rivals"):
        with_overrides(book, {"experiments.rivals": ["VRN"]})
    with pytest.raises(KeyError, match="unknown rival"):
        rival_names(["VRN"])


def test_its_run_hash_differs_from_the_main_runs_through_the_targets(tmp_path, monkeypatch):
    monkeypatch.setenv("DISENTANGLED_FACE_DATA", str(tmp_path))
    cfg = load_config("book")
    main, rival = T.run_config(cfg), T.run_config(cfg, "single_image")
    assert rival["targets"] == "single_image" and main["targets"] == "fitted"
    assert rival["data"]["single_image_targets"] == targets_path(cfg, kind="single_image").name
    assert "single_image_targets" not in main["data"] and "fitted_targets" not in rival["data"]
    assert targets_path(cfg, kind="single_image") != targets_path(cfg)
    hashes = {T.run_hash(cfg, t) for t in T.TARGETS}
    assert len(hashes) == 3
    # the single-image targets follow the fitter options, so the rival's run does too
    other = with_overrides(cfg, {"fitting.max_iter": 3})
    assert T.run_hash(other, "single_image") != T.run_hash(cfg, "single_image")
    # the rival switch is not part of any run: the main run is the same with it on or off
    assert T.run_hash(with_overrides(cfg, {"experiments.rivals": []})) == T.run_hash(cfg)


def test_the_papers_3ddfa_rows_stand_beside_ours():
    import pandas as pd

    for key in ("table1", "table2", "fig6"):
        assert P.counterpart("3DDFA-like", P.get(key)) == "3DDFA"
    assert P.counterpart("3DDFA-like", P.get("fig7")) == "no counterpart: the paper's Fig. 7 caption has no 3DDFA row"
    col = P.get("table2").columns[0]
    t = P.beside(P.get("table2"), pd.DataFrame({col: [2.5, 2.4]}, index=["3DDFA-like", "3DMM-CNN-like"]))
    assert t.loc[("ours", "3DDFA-like"), "paper row"] == "3DDFA"
    for ds in ("LFW", "YTF"):
        rows = P.verification_counterparts(["3DDFA-like"], ds)
        assert rows["3DDFA-like"] == P.TABLE3[ds].row("3DDFA").label


def test_the_rival_is_fused_with_the_texture_network_like_the_main_runs_networks():
    F_tex, _, pairs, same, folds = verification_features(noise=1.5, seed=1)
    F_shape, *_ = verification_features(noise=0.5)
    vt = E.verification_table({"texture": F_tex, "3DDFA-like": F_shape}, pairs, same, folds, protocol="toy")
    assert set(vt.results) == {"texture", "3DDFA-like", "texture + 3DDFA-like"}  # no fusion of absent matchers
    m = vt.mean()
    assert m.loc["texture + 3DDFA-like", "AUC"] > m.loc["texture", "AUC"]
    ours = vt.table()
    for ds in ("LFW", "YTF"):
        t = P.verification_beside(ours, ds)
        row = t.loc[("ours", "texture + 3DDFA-like")]
        assert (row["Shape"], row["Texture"]) == ("✓", "network")
        assert row["paper row"].startswith("no counterpart: the paper's 3DDFA gives shape only")
