"""How large a difference a comparison could have detected: the minimum detectable effect.

Beside every verdict the book states the smallest true difference its test would detect at
significance ``alpha`` (two-sided) with probability ``power``, at the sample size it used. For
a paired comparison of ``n`` items whose differences have standard deviation ``sd``, the
paired t-test detects a mean difference ``delta`` when the non-central t distribution with
``n - 1`` degrees of freedom and non-centrality ``delta * sqrt(n) / sd`` exceeds the critical
value with probability ``power`` (scipy.stats.nct); :func:`min_detectable_difference` solves
that for ``delta`` (scipy.optimize.brentq). The Wilcoxon signed-rank test, used for the
per-image reconstruction comparisons, needs ``1 / ARE`` times as many items as the t-test
for normal differences (asymptotic relative efficiency ``3 / pi``), so its detectable
difference is the t-test's times ``sqrt(pi / 3)``.

>>> round(min_detectable_difference(1.0, 10_000), 4)  # large n: (1.96 + 0.84) / sqrt(n)
0.028
>>> round(min_detectable_difference(1.0, 10), 2)  # 10 folds: the t distribution's wider tails
1.0
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, stats

__all__ = ["ALPHA", "POWER", "WILCOXON_ARE", "t_test_power", "min_detectable_difference", "paired_mde"]

#: Significance level (two-sided) and power of the book's detectable-difference statements.
ALPHA, POWER = 0.05, 0.8
#: Asymptotic relative efficiency of the Wilcoxon signed-rank test to the t-test (normal data).
WILCOXON_ARE = 3 / math.pi


def t_test_power(delta: float, sd: float, n: int, alpha: float = ALPHA) -> float:
    """Power of the two-sided paired (one-sample) t-test to detect a mean difference ``delta``.

    Parameters
    ----------
    delta : float
        True mean of the paired differences (any unit; ``sd`` in the same unit).
    sd : float
        Standard deviation of the paired differences, > 0.
    n : int
        Number of pairs, >= 2.

    Raises
    ------
    ValueError
        On ``n < 2`` or ``sd <= 0``.

    >>> round(t_test_power(0.0, 1.0, 20), 3)  # no effect: the test's own false-positive rate
    0.05
    """
    if n < 2:
        raise ValueError(f"a paired t-test needs at least 2 pairs, got {n}")
    if not sd > 0:
        raise ValueError(f"the differences' standard deviation must be > 0, got {sd}")
    df = n - 1
    crit = stats.t.ppf(1 - alpha / 2, df)
    nc = delta * math.sqrt(n) / sd
    lower = float(stats.nct.cdf(-crit, df, nc))  # the far tail: scipy returns NaN where it underflows
    return float(stats.nct.sf(crit, df, nc)) + (0.0 if math.isnan(lower) else lower)


def min_detectable_difference(sd: float, n: int, alpha: float = ALPHA, power: float = POWER,
                              test: str = "t") -> float:
    """Smallest mean paired difference the test detects with probability ``power`` (two-sided, level ``alpha``).

    Parameters
    ----------
    sd : float
        Standard deviation of the paired differences (the result is in its unit).
    n : int
        Number of pairs (test images, or folds).
    test : {"t", "wilcoxon"}
        The paired t-test, or the Wilcoxon signed-rank test through its relative efficiency.

    Raises
    ------
    ValueError
        On ``n < 2``, ``sd <= 0``, ``power`` not in (alpha, 1) or an unknown test.
    """
    if test not in ("t", "wilcoxon"):
        raise ValueError(f"test must be 't' or 'wilcoxon', got {test!r}")
    if not alpha < power < 1:
        raise ValueError(f"power must lie in ({alpha}, 1), got {power}")
    t_test_power(0.0, sd, n, alpha)  # validates n and sd
    df = n - 1  # bracket: four times the central-t approximation (the non-central t is finite there)
    hi = 4 * (stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * sd / math.sqrt(n)
    delta = optimize.brentq(lambda d: t_test_power(d, sd, n, alpha) - power, 0.0, hi, xtol=sd * 1e-6)
    return float(delta / math.sqrt(WILCOXON_ARE) if test == "wilcoxon" else delta)


def paired_mde(a, b, test: str = "t", alpha: float = ALPHA, power: float = POWER) -> float:
    """:func:`min_detectable_difference` for the observed paired values ``a`` and ``b`` (each (N,)).

    The standard deviation is that of ``a - b``; NaN when it is 0 or there are fewer than 2 pairs.

    >>> round(paired_mde([1.0, 2.0, 3.0, 4.0], [0.0, 2.0, 2.0, 5.0]), 2)
    2.04
    """
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    if d.ndim != 1:
        raise ValueError(f"paired values must be (N,) arrays, got shape {d.shape}")
    sd = float(d.std(ddof=1)) if d.size >= 2 else 0.0
    if d.size < 2 or sd == 0:
        return float("nan")
    return min_detectable_difference(sd, d.size, alpha, power, test)
