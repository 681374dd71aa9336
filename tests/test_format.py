"""The shared number formatter (plotting/format.py) on the values the chapters print."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from disentangled_face.format import (fmt_int, fmt_interval, fmt_list, fmt_num, fmt_p, fmt_pct,
                                               fmt_value, format_table, superscript)


def test_integers_keep_their_digits_and_get_separators():
    # chapter 1's vertex and mode counts, as numpy hands them over
    assert fmt_int(np.float64(9409.0)) == "9,409"
    assert fmt_num(100.0) == "100"
    assert fmt_num(np.int64(488_848)) == "488,848"
    with pytest.raises(ValueError, match="expects an integer"):
        fmt_int(2.5)


def test_floats_to_three_significant_figures_without_float32_noise():
    assert fmt_num(np.float32(41.8)) == "41.8"            # float32 prints as 41.799999
    assert fmt_num(np.float32(11998.762695)) == "11,999"  # E (mm^2) of chapter 3
    assert fmt_num(1 / 3) == "0.333"
    assert fmt_num(np.float32(0.8)) == "0.8"              # 8.000001e-01 of chapter 5
    assert fmt_num(3.051758e-05) == "3.05 × 10⁻⁵"
    assert fmt_num(0.19611613) == "0.196"
    assert fmt_num(7.470413, sig=2) == "7.5"
    assert fmt_num(float("nan")) == "–" and fmt_num(None) == "–"


def test_p_values_as_a_paper_writes_them():
    assert fmt_p(2.042954e-01) == "0.20"
    assert fmt_p(8.462990e-03) == "0.0085"
    assert fmt_p(6.262920e-33) == "< 10⁻⁶"
    assert fmt_p(0.0) == "< 10⁻⁶"
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fmt_p(1.5)


def test_percentages_and_exponents():
    assert fmt_pct(85.714) == "85.7%"
    assert fmt_pct(0.99375, fraction=True, decimals=2) == "99.38%"
    assert superscript(-12) == "⁻¹²"


def test_pandas_bins_read_as_ranges():
    bins = pd.cut(pd.Series([0.0, 10.0, 20.0, 50.0, 89.0]), [0, 15, 30, 60, 90], include_lowest=True)
    labels = [fmt_interval(iv, "°") for iv in bins.cat.categories]
    assert labels == ["0–15°", "15–30°", "30–60°", "60–90°"]
    assert fmt_interval(pd.Interval(0.5, 0.75)) == "0.5–0.75"


def test_values_of_any_kind():
    assert fmt_value({7: np.int64(300)}) == "7: 300"
    assert fmt_value(np.array([0.5, 2.0])) == "0.5, 2"
    assert fmt_list(["a", "b", "c"]) == "a, b and c"


def test_format_table_keeps_numbers_and_writes_them_readably():
    df = pd.DataFrame({"vertices": [9409.0, 100.0], "E": [np.float32(11998.762695), np.float32(41.8)],
                       "p": [2.042954e-01, 6.26292e-33], "acc": [99.5, 87.25]},
                      index=pd.Index([pd.Interval(-0.001, 15.0), pd.Interval(15.0, 30.0)], name="yaw"))
    t = format_table(df, units={"E": "mm²", "acc": "%"}, pvalues=["p"], percent=["acc"])
    # the data (what the results files record) keeps its numbers; headers carry the units
    assert list(t.data.columns) == ["vertices", "E (mm²)", "p", "acc (%)"]
    assert t.data["vertices"].tolist() == [9409.0, 100.0]
    html = t.to_html()
    for text in ["9,409", "11,999", "41.8", "0.20", "&lt; 10⁻⁶", "99.5%", "0–15", "15–30"]:
        assert text in html, text
    for raw in ["9409.0", "41.799999", "e-33", "(-0.001"]:
        assert raw not in html, raw
    with pytest.raises(KeyError, match="no columns"):
        format_table(df, units={"missing": "mm"})


def test_format_table_fixed_decimals_and_series():
    s = pd.Series([1.0, 2.5], name="x")
    assert "2.50" in format_table(s, decimals={"x": 2}).to_html()
    assert "2.5" in format_table(s).to_html()


def test_mixed_columns_write_each_value_alone():
    # chapter 3's fitter options: a Series of numbers and text, no column precision to keep
    html = format_table(pd.Series({"lambda_id": 4.0, "tol": 0.01, "dtype": "float32"}, dtype=object)).to_html()
    assert ">4<" in html and ">0.01<" in html and "0.0100" not in html and "float32" in html
