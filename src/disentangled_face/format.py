"""One formatter for every number the book shows, in tables and in sentences alike.

The rules are the ones a person writing by hand follows:

* integers as integers, with thousands separators: ``9,409`` (also for a float that holds an
  integer, such as a count that went through numpy as ``9409.0``);
* other numbers to three significant figures (``41.8``, ``0.333``), never float32 noise
  (``41.799999``) or exponent notation for ordinary sizes; numbers of 100 or more are rounded
  to a whole number (``11,999``), tiny ones written as ``1.2 × 10⁻⁵``;
* p-values as ``0.20``, ``0.0034`` or ``< 10⁻⁶``; percentages as ``85.7%``;
* interval bins as ``0–15°`` instead of pandas' ``(-0.001, 15.0]``;
* tables through :func:`format_table`: units in the headers, integer columns kept integers, the
  numbers formatted as above, while the table keeps its numbers (the chapter's CSV results files
  are written from them).

Each function takes plain Python or numpy scalars; ``None`` and NaN are written ``–``.
"""

from __future__ import annotations

import html
import math
import numbers
from typing import Any, Iterable, Mapping

import numpy as np

__all__ = ["DASH", "compact", "superscript", "fmt_int", "fmt_num", "fmt_p", "fmt_pct", "fmt_interval", "fmt_value",
           "fmt_list", "format_table"]

#: What a missing value (None or NaN) is written as.
DASH = "–"
_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


def superscript(n: int) -> str:
    """An integer in Unicode superscript digits, for exponents in plain text.

    >>> superscript(-6)
    '⁻⁶'
    >>> "10" + superscript(12)
    '10¹²'
    """
    return str(int(n)).translate(_SUPERSCRIPT)


def _missing(x: Any) -> bool:
    if x is None:
        return True
    try:
        return bool(np.isnan(x))
    except (TypeError, ValueError):
        return False


def _integral(x: Any) -> bool:
    if isinstance(x, (bool, np.bool_)):
        return False
    if isinstance(x, numbers.Integral):
        return True
    return isinstance(x, numbers.Real) and math.isfinite(float(x)) and float(x) == round(float(x)) \
        and abs(float(x)) < 1e15


def fmt_int(n: Any) -> str:
    """An integer with thousands separators.

    Parameters
    ----------
    n : int, numpy integer, or a float holding an integer

    Raises
    ------
    ValueError
        When ``n`` is a number with a fractional part.

    >>> fmt_int(9409.0), fmt_int(np.int64(488848)), fmt_int(-1200)
    ('9,409', '488,848', '-1,200')
    >>> fmt_int(None)
    '–'
    """
    if _missing(n):
        return DASH
    if not _integral(n):
        raise ValueError(f"fmt_int expects an integer, got {n!r}")
    return f"{int(round(float(n))):,}"


def fmt_num(x: Any, sig: int = 3, trim: bool = True) -> str:
    """A number as a person would write it: integers exact, others to ``sig`` significant figures.

    Parameters
    ----------
    x : int or float (numpy scalars too)
    sig : int
        Significant figures for numbers below ``10**(sig-1)``; larger numbers are rounded to a
        whole number (never to ``12,000`` from ``11,998.8``).
    trim : bool
        Drop trailing zeros (``0.8`` rather than ``0.800``); tables keep them (``trim=False``) so
        that a column reads at one precision.

    >>> fmt_num(41.799999), fmt_num(0.3333333333333333), fmt_num(8.000001e-01)
    ('41.8', '0.333', '0.8')
    >>> fmt_num(11998.762695), fmt_num(100.0), fmt_num(np.float32(0.0012345))
    ('11,999', '100', '0.00123')
    >>> fmt_num(2.5e-7), fmt_num(0.8, trim=False), fmt_num(-0.0)
    ('2.5 × 10⁻⁷', '0.800', '0')
    """
    if _missing(x):
        return DASH
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "no"
    if _integral(x):
        return fmt_int(x)
    x = float(x)
    if not math.isfinite(x):
        return "∞" if x > 0 else "−∞"
    mag = math.floor(math.log10(abs(x)))
    if mag < -4:  # 0.0000123: write the exponent
        mant = f"{x / 10 ** mag:.{sig - 1}f}"
        if trim:
            mant = mant.rstrip("0").rstrip(".")
        return f"{mant} × 10{superscript(mag)}"
    decimals = max(0, sig - 1 - mag)
    text = f"{round(x, decimals):,.{decimals}f}"
    if trim and "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "0", "") else text


def fmt_p(p: Any, floor: float = 1e-6) -> str:
    """A p-value: two decimals from 0.01 up, two significant figures below, ``< 10⁻⁶`` at the floor.

    Raises
    ------
    ValueError
        When ``p`` is outside [0, 1].

    >>> fmt_p(2.042954e-01), fmt_p(0.0034), fmt_p(3.1e-5), fmt_p(6.262920e-33)
    ('0.20', '0.0034', '3.1 × 10⁻⁵', '< 10⁻⁶')
    >>> fmt_p(1.0)
    '1.00'
    """
    if _missing(p):
        return DASH
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"a p-value lies in [0, 1], got {p}")
    if p < floor:
        return f"< 10{superscript(math.floor(math.log10(floor)))}"
    if p >= 0.01:
        return f"{p:.2f}"
    return fmt_num(p, sig=2, trim=False)


def fmt_pct(x: Any, decimals: int = 1, fraction: bool = False) -> str:
    """A percentage with a fixed number of decimals.

    Parameters
    ----------
    x : float
        In percent, or a fraction of one with ``fraction=True``.

    >>> fmt_pct(85.71), fmt_pct(0.9523, fraction=True), fmt_pct(100.0, decimals=0)
    ('85.7%', '95.2%', '100%')
    """
    if _missing(x):
        return DASH
    value = float(x) * (100.0 if fraction else 1.0)
    return f"{value:,.{decimals}f}%"


def fmt_interval(iv: Any, unit: str = "", sig: int = 3) -> str:
    """A bin such as pandas' ``Interval(-0.001, 15.0)`` as ``0–15°``.

    The ends are rounded to the precision of the bin's width, so the small shift that
    ``pd.cut(..., include_lowest=True)`` gives the first edge disappears.

    >>> import pandas as pd
    >>> fmt_interval(pd.Interval(-0.001, 15.0), "°"), fmt_interval(pd.Interval(0.25, 0.5))
    ('0–15°', '0.25–0.5')
    >>> fmt_interval(pd.Interval(30.0, 45.0, closed="left"), " mm")
    '30–45 mm'
    """
    left, right = float(iv.left), float(iv.right)
    width = abs(right - left)
    if not math.isfinite(width) or width == 0:
        return f"{fmt_num(left, sig)}–{fmt_num(right, sig)}{unit}"
    decimals = max(0, sig - 1 - math.floor(math.log10(width)) - 1)

    def end(v: float) -> str:
        return fmt_num(round(v, decimals) + 0.0, sig=max(sig, decimals + 1))

    return f"{end(left)}–{end(right)}{unit}"


def fmt_value(v: Any, sig: int = 3) -> str:
    """Any value a table or sentence holds: numbers by :func:`fmt_num`, bins by
    :func:`fmt_interval`, mappings and sequences element by element, text as it is.

    >>> fmt_value({7: np.int64(300), 8: 12.5})
    '7: 300, 8: 12.5'
    >>> fmt_value([np.float32(0.1), 2]), fmt_value("jawOpen"), fmt_value(np.bool_(True))
    ('0.1, 2', 'jawOpen', 'yes')
    """
    import pandas as pd

    if isinstance(v, str):
        return v
    if isinstance(v, pd.Interval):
        return fmt_interval(v, sig=sig)
    if isinstance(v, Mapping):
        return ", ".join(f"{fmt_value(k, sig)}: {fmt_value(x, sig)}" for k, x in v.items())
    if isinstance(v, (list, tuple, np.ndarray)):
        return ", ".join(fmt_value(x, sig) for x in v)
    if isinstance(v, (numbers.Number, np.generic)) or v is None:
        return fmt_num(v, sig)
    return str(v)


def fmt_list(items: Iterable[Any], last: str = "and") -> str:
    """Items joined as in a sentence: ``a, b and c``.

    >>> fmt_list(["jawOpen", "eyeBlink_R", "mouthSmile_L"]), fmt_list([3]), fmt_list([1, 2], "or")
    ('jawOpen, eyeBlink_R and mouthSmile_L', '3', '1 or 2')
    """
    words = [fmt_value(i) for i in items]
    if len(words) <= 1:
        return "".join(words)
    return f"{', '.join(words[:-1])} {last} {words[-1]}"


def _column_formatter(values, sig: int, percent: bool, pvalue: bool, decimals: int | None):
    import pandas as pd

    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if pvalue:
        return fmt_p
    if percent:
        return lambda v: fmt_pct(v, decimals=1 if decimals is None else decimals)
    if decimals is not None:
        return lambda v: DASH if _missing(v) else f"{float(v):,.{decimals}f}"
    finite = [v for v in values if not _missing(v)] if numeric else []
    if numeric and finite and all(_integral(v) for v in finite):
        return fmt_int
    if not numeric:  # a column of mixed values (options, a Series of facts): each as written alone
        return lambda v: fmt_value(v, sig)
    return lambda v: fmt_num(v, sig, trim=False) if isinstance(v, (numbers.Real, np.floating)) \
        and not isinstance(v, (bool, np.bool_)) else fmt_value(v, sig)


def format_table(df, units: Mapping[str, str] | None = None, sig: int = 3,
                 percent: Iterable[str] = (), pvalues: Iterable[str] = (),
                 decimals: Mapping[str, int] | None = None, index: bool = True, caption: str | None = None):
    """A pandas table for display: units in the headers, every number written by the rules above.

    The result is a pandas ``Styler``: the notebook and the book show the formatted text, and
    ``.data`` keeps the numbers (with the unit-bearing headers), which the chapter's results
    files record.

    Parameters
    ----------
    df : pandas.DataFrame or pandas.Series
    units : mapping column -> unit, optional
        Appended to the header: ``{"E": "mm²"}`` gives the header ``E (mm²)``.
    sig : int
        Significant figures of non-integer numbers.
    percent, pvalues : iterables of column names
        Columns written as percentages (values in percent) or as p-values.
    decimals : mapping column -> int, optional
        A fixed number of decimals for these columns instead of significant figures.
    index : bool
        Show the index (interval bins and numbers in it are formatted too).
    caption : str, optional

    Raises
    ------
    KeyError
        When ``units``, ``percent``, ``pvalues`` or ``decimals`` name a column the table lacks.

    >>> import pandas as pd
    >>> t = format_table(pd.DataFrame({"n": [9409.0, 100.0], "E": [11998.762695, 41.799999]}),
    ...                  units={"E": "mm²"})
    >>> list(t.data.columns), t.data["n"].tolist()
    (['n', 'E (mm²)'], [9409.0, 100.0])
    >>> html = t.to_html()
    >>> "9,409" in html and "11,999" in html and "41.8" in html and "9409.0" not in html
    True
    >>> mixed = format_table(pd.Series({"tol": 0.01, "max_iter": 7, "dtype": "float32"}, dtype=object))
    >>> "0.01<" in mixed.to_html() and "0.0100" not in mixed.to_html()
    True
    """
    import pandas as pd

    frame = df.to_frame() if isinstance(df, pd.Series) else df.copy()
    units, decimals = dict(units or {}), dict(decimals or {})
    percent, pvalues = set(percent), set(pvalues)
    unknown = (set(units) | percent | pvalues | set(decimals)) - set(frame.columns)
    if unknown:
        raise KeyError(f"format_table: no columns {sorted(map(str, unknown))} in {list(frame.columns)}")
    formatters, names = {}, {}
    for col in frame.columns:
        name = f"{col} ({units[col]})" if col in units else col
        names[col] = name
        formatters[name] = _column_formatter(frame[col], sig, col in percent, col in pvalues, decimals.get(col))
    frame = frame.rename(columns=names)
    # the Styler is for HTML: the formatted text is escaped ("< 10⁻⁶")
    escaped = {name: (lambda f: lambda v: html.escape(f(v)))(f) for name, f in formatters.items()}
    styler = frame.style.format(escaped)
    for axis in (0, 1):  # index and column labels: bins, numbers (text stays as it is)
        styler = styler.format_index(lambda v: html.escape(fmt_value(v, sig)), axis=axis)
    styler = styler.set_table_attributes('class="dataframe"')
    if not index:
        styler = styler.hide(axis="index")
    if caption:
        styler = styler.set_caption(caption)
    return styler


def compact(table, font_size: str = "0.78em"):
    """A table in a smaller font, so that a wide one (Table 1's eleven yaw columns beside the
    paper's, Table 3's five metrics) fits the page without a scroll bar.

    ``table`` is a pandas DataFrame (formatted by :func:`format_table` first) or a Styler.

    >>> import pandas as pd
    >>> "font-size: 0.78em" in compact(pd.DataFrame({"a": [1.5]})).to_html()
    True
    """
    styler = table if type(table).__name__ == "Styler" else format_table(table)
    return styler.set_table_styles([{"selector": "", "props": f"font-size: {font_size}"}], overwrite=False)
