"""The paper's published numbers (evaluation/paper_results.py) and the Table 1 pooling of ours."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from disentangled_face.evaluation import paper_results as P
from disentangled_face.evaluation.reconstruction import ReconResult, pooled_yaw_table
from disentangled_face.methods import FUSIONS, METHODS

RESULTS_YAML = Path(__file__).resolve().parents[1] / ".." / "shared" / "paper" / "results.yaml"


@pytest.fixture(scope="module")
def checked():
    """The project's checked transcription (not shipped to users: skip when absent)."""
    if not RESULTS_YAML.is_file():
        pytest.skip(f"{RESULTS_YAML} is not on this machine (it is the project's shared copy, not part of the package)")
    import yaml

    return yaml.safe_load(RESULTS_YAML.read_text(encoding="utf-8"))


def test_every_value_of_results_yaml_is_in_paper_results(checked):
    t1 = checked["table1_rmse_vs_yaw_bu3dfe"]
    assert tuple(t1["columns"]) == P.get("table1").columns == P.TABLE1_COLUMNS
    assert list(t1["rows"]) == list(P.get("table1").rows)
    for row, vals in t1["rows"].items():
        assert tuple(vals) == P.get("table1").values[row], row  # None (the paper's "–") included
    for key, name in (("table2_rmse_micc", "table2"), ("fig6_mean_rmse_full_shape_over_expressions", "fig6"),
                      ("fig7_mean_rmse_identity_shape_over_expressions", "fig7")):
        t = P.get(name)
        assert list(checked[key]) == list(t.rows), name
        assert {r: (v,) for r, v in checked[key].items()} == dict(t.values), name
    t3 = checked["table3_verification"]
    assert tuple(t3["metrics"]) == P.VERIFICATION_METRICS
    for ds in ("LFW", "YTF"):
        ours = P.TABLE3[ds].rows
        assert len(t3[ds]) == len(ours) == 8
        for y, r in zip(t3[ds], ours):
            assert (y["method"], y["shape"], y["texture"]) == (r.method, r.shape, r.texture)
            assert y["mean"] == [r.mean[m] for m in P.VERIFICATION_METRICS], r.label
            assert y["std"] == [r.std[m] for m in P.VERIFICATION_METRICS], r.label
    assert t3["fusion_with_sphereface_ytf_accuracy"] == P.YTF_FUSION
    t4 = dict(checked["table4_ms_per_image"])
    assert t4.pop("hardware") == P.HARDWARE
    assert list(t4) == list(P.get("table4").rows)
    assert {r: (v,) for r, v in t4.items()} == dict(P.get("table4").values)
    assert checked["setup"] == P.SETUP
    known = {"table1_rmse_vs_yaw_bu3dfe", "table2_rmse_micc", "fig6_mean_rmse_full_shape_over_expressions",
             "fig7_mean_rmse_identity_shape_over_expressions", "table3_verification", "table4_ms_per_image", "setup"}
    assert set(checked) == known  # a section added to the YAML must be transcribed too


def test_table1_avg_is_the_mean_of_the_pooled_columns():
    t = P.get("table1")
    assert t.columns[-1] == "Avg." and len(t.columns) == 11
    for row in t.rows:
        vals = [v for v in t.values[row][:-1] if v is not None]
        assert abs(np.mean(vals) - t.value(row, "Avg.")) <= 0.01, row
    assert [v is None for v in t.values["3DMM-CNN"]].count(True) == 4  # "–" at ±90 … ±60, six columns averaged
    assert all(v is not None for r in t.rows if r != "3DMM-CNN" for v in t.values[r])


def test_layouts_have_the_papers_rows():
    assert P.get("table1").rows == P.get("table2").rows == P.get("table4").rows == (
        "VRN", "3DDFA", "3DMM-CNN", "3DSR", "Proposed")
    assert P.get("table2").columns == ("RMSE",)
    assert P.get("fig6").rows == ("VRN", "3DDFA", "Proposed")
    assert P.get("fig7").rows == ("3DMM-CNN", "3DSR", "Proposed")
    for ds in ("LFW", "YTF"):
        t = P.TABLE3[ds]
        assert [(r.method, r.shape, r.texture) for r in t.rows] == [
            ("3DMM", True, False), ("3DMM", False, True), ("3DMM", True, True), ("3DDFA", True, False),
            ("3DMM-CNN", True, False), ("3DMM-CNN", False, True), ("3DMM-CNN", True, True), ("Proposed", True, False)]
        f = t.frame()
        assert list(f.columns) == ["Method", "Shape", "Texture", *P.VERIFICATION_METRICS]
        assert f.iloc[1]["Shape"] == "×" and f.iloc[1]["Texture"] == "✓"
        assert f.iloc[-1]["accuracy"] == {"LFW": "94.43 ± 1.47", "YTF": "88.74 ± 1.03"}[ds]
    assert "GTX 1080" in P.HARDWARE and "i7-5930K" in P.HARDWARE
    assert P.n_values() == 51 + 5 + 3 + 3 + 2 * 8 * 5 * 2 + 2 + 5


def test_not_reported_is_not_a_missing_cell():
    t1 = P.get("table1")
    assert t1.value("3DMM-CNN", "±90") is P.NOT_REPORTED
    assert t1.frame().loc["3DMM-CNN", "±90"] == P.DASH and np.isnan(t1.numeric().loc["3DMM-CNN", "±90"])
    with pytest.raises(KeyError, match="no cell"):
        t1.value("3DMM", "±90")  # the paper has no such row: not "–"
    with pytest.raises(KeyError, match="no row"):
        P.TABLE3["LFW"].row("3DDFA", shape=False, texture=True)
    with pytest.raises(KeyError, match="known"):
        P.get("table5")


def test_each_of_our_methods_names_its_paper_row():
    assert METHODS["3DMM fitting"].paper_row == "3DMM"
    assert METHODS["3DMM-CNN-like"].paper_row == "3DMM-CNN"
    assert METHODS["Proposed"].paper_row == "Proposed"
    assert METHODS["texture"].paper_row == "SphereFace"
    t1 = P.get("table1")
    assert P.counterpart("Proposed", t1) == "Proposed"
    assert P.counterpart("3DMM-CNN-like", t1) == "3DMM-CNN"
    assert P.counterpart("3DMM fitting", t1).startswith("no counterpart")
    assert P.counterpart("3DMM-CNN-like", P.get("fig6")).startswith("no counterpart")
    assert P.counterpart("something else", t1).startswith("no counterpart")
    names = ["texture", "3DMM fitting", "3DMM-CNN-like", "Proposed", *FUSIONS]
    ytf, lfw = P.verification_counterparts(names, "YTF"), P.verification_counterparts(names, "LFW")
    assert ytf["3DMM fitting"] == lfw["3DMM fitting"] == "3DMM (shape)"
    assert ytf["3DMM-CNN-like"] == "3DMM-CNN (shape)" and ytf["Proposed"] == "Proposed (shape)"
    assert "94.78" in ytf["texture"] and "95.18" in ytf["texture + Proposed"]
    assert lfw["texture"].startswith("no counterpart") and lfw["texture + Proposed"].startswith("no counterpart")
    assert ytf["texture + 3DMM-CNN-like"].startswith("no counterpart")
    assert "3DDFA gives shape only" not in ytf["texture + 3DMM-CNN-like"]
    both = P.verification_counterparts(["3DDFA-like", "texture + 3DDFA-like"], "LFW")
    assert both["3DDFA-like"] == "3DDFA (shape)"
    assert both["texture + 3DDFA-like"].startswith("no counterpart: the paper's 3DDFA gives shape only")


def test_beside_keeps_mm_apart_from_the_formula():
    ours = pd.DataFrame({"RMSE": [3.004, 1.5]}, index=["Proposed", "3DMM fitting"])
    t = P.beside(P.get("table2"), ours)
    assert list(t.index) == [("paper", r) for r in P.get("table2").rows] + [("ours", "Proposed"), ("ours", "3DMM fitting")]
    assert t.loc[("ours", "Proposed"), "paper row"] == "Proposed"
    assert t.loc[("ours", "3DMM fitting"), "paper row"].startswith("no counterpart")
    assert t.loc[("paper", "Proposed"), "RMSE"] == "2.00"  # at the paper's precision, not trimmed to "2"
    assert t.loc[("ours", "Proposed"), "RMSE"] == "3.00"  # ours with its zeros too, beside the paper's
    assert P.get("table4").frame().loc["3DSR", "ms/image"] == "29.80"
    no_row = "no counterpart: the paper's Table 4 has no SphereFace row"
    assert P.counterpart("texture (feature only)", P.get("table4")) == no_row
    with pytest.raises(ValueError, match="rmse_mm"):
        P.beside(P.get("table2"), ours, metric="paper")
    with pytest.raises(ValueError, match="none of the columns"):
        P.beside(P.get("table2"), ours.rename(columns={"RMSE": "x"}))
    t1 = P.beside(P.get("table1"), pd.DataFrame({"0": [2.0], "Avg.": [2.5]}, index=["Proposed"]))
    assert t1.loc[("ours", "Proposed"), "±90"] == "not measured" and t1.loc[("paper", "3DMM-CNN"), "±90"] == P.DASH
    nan = P.beside(P.get("table1"), pd.DataFrame({"0": [np.nan], "Avg.": [2.456]}, index=["Proposed"]))
    assert nan.loc[("ours", "Proposed"), "0"] == P.NOT_MEASURED and nan.loc[("ours", "Proposed"), "Avg."] == "2.46"


def _sweep(errors_by_yaw):
    rows = [dict(method=m, group=y, rmse_mm=e, mean_mm=e / 2, paper=e / 100, n_kept=10)
            for m, by in errors_by_yaw.items() for y, es in by.items() for e in es]
    return ReconResult(pd.DataFrame(rows), "yaw (deg)")


def test_pooled_yaw_table_weights_images_and_averages_columns():
    r = _sweep({"A": {-10: [1.0], 10: [2.0, 3.0], 0: [4.0], -90: [5.0], 90: [7.0]},
                "B": {-10: [1.0], 10: [1.0], 0: [1.0]}})
    t = pooled_yaw_table(r)
    assert list(t.columns) == ["±90", "±10", "0", "Avg."]
    assert t.loc["A", "±10"] == pytest.approx(2.0)  # (1 + 2 + 3) / 3 images, not (1 + 2.5) / 2
    assert t.loc["A", "±90"] == pytest.approx(6.0)
    assert t.loc["A", "Avg."] == pytest.approx((6.0 + 2.0 + 4.0) / 3)
    assert np.isnan(t.loc["B", "±90"]) and t.loc["B", "Avg."] == pytest.approx(1.0)  # like 3DMM-CNN's six columns
    assert pooled_yaw_table(r, "mean_mm").loc["A", "0"] == pytest.approx(2.0)
    with pytest.raises(ValueError, match="metric"):
        pooled_yaw_table(r, "rms")
    with pytest.raises(ValueError, match="yaw"):
        pooled_yaw_table(ReconResult(r.errors.assign(group="neutral")), "rmse_mm")


def test_pooled_full_sweep_has_the_papers_columns():
    rng = np.random.default_rng(0)
    r = _sweep({"Proposed": {y: list(rng.random(3)) for y in range(-90, 91, 10)}})
    t = pooled_yaw_table(r)
    assert tuple(t.columns) == P.TABLE1_COLUMNS
    assert t.loc["Proposed", "Avg."] == pytest.approx(t.loc["Proposed"].drop("Avg.").mean())
    signed = r.table()
    assert t.loc["Proposed", "±30"] == pytest.approx((signed.loc["Proposed", 30] + signed.loc["Proposed", -30]) / 2)
    assert P.beside(P.get("table1"), t).loc[("ours", "Proposed"), "paper row"] == "Proposed"


def test_verification_beside_lays_ours_under_the_papers_rows():
    ours = pd.DataFrame({m: ["50.00 ± 1.00"] * 3 for m in P.VERIFICATION_METRICS},
                        index=["texture", "Proposed", "texture + Proposed"])
    y = P.verification_beside(ours, "YTF")
    assert [s for s, _ in y.index].count("paper") == 8 and [s for s, _ in y.index].count("ours") == 3
    assert y.loc[("paper, Sec. 4.2 text", "SphereFace + Proposed"), "accuracy"] == "95.18"
    assert y.loc[("ours", "texture"), "Texture"] == "network" and y.loc[("ours", "Proposed"), "Texture"] == "×"
    assert y.loc[("ours", "texture + Proposed"), "Shape"] == "✓"
    assert y.loc[("ours", "Proposed"), "paper row"] == "Proposed (shape)"
    assert y.loc[("paper", "3DMM-CNN (texture parameters)"), "accuracy"] == "87.56 ± 2.56"  # not a texture network
    assert ("paper", "3DMM (shape + texture parameters)") in y.index and ("paper", "3DDFA (shape)") in y.index
    lfw = P.verification_beside(ours, "LFW")
    assert "paper, Sec. 4.2 text" not in {s for s, _ in lfw.index}
