"""The paper's claims (chapter 11) judged on this project's runs, with paired significance tests.

:func:`claims` turns the results of the runners (:mod:`.runs`) into :class:`Claim` records whose
evidence sentences are templated on the computed numbers; :func:`claims_frame` tabulates them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..format import fmt_num, fmt_p
from .power import POWER, paired_mde
from .reconstruction import METRIC_LABELS, ReconResult
from .verification import VerificationTable

__all__ = ["Claim", "claims", "claims_frame", "claims_markdown", "ALPHA", "N_BOOTSTRAP", "BASES_MIN_OUTSIDE",
           "paired_test"]


@dataclass
class Claim:
    """One claim of the paper and whether this project's runs support it.

    Attributes
    ----------
    claim : str
        The paper's claim, paraphrased, with its table or figure.
    supported : bool or None
        The direction of the computed evidence (True: the numbers point the paper's way);
        ``None`` when the needed result was not computed.
    evidence : str
        A sentence templated on the computed numbers.
    topic : str
        ``reconstruction``, ``recognition``, ``bases`` or ``speed``.
    p_value : float or None
        Two-sided p-value of the paired test behind the verdict (``None``: no test).
    detectable : float or None
        The smallest true mean difference that test detects at level :data:`ALPHA` with power
        0.8 at the sample size used (:mod:`.power`), in ``unit``; ``None``: no test.
    unit : str
        Unit of ``detectable`` (``mm``, ``points``).
    """

    claim: str
    supported: bool | None
    evidence: str
    topic: str = "reconstruction"
    p_value: float | None = None
    detectable: float | None = None
    unit: str = ""

    @property
    def inconclusive(self) -> bool:
        """True when a paired test was run and the difference is within noise (p >= :data:`ALPHA`)."""
        return self.supported is not None and self.p_value is not None and self.p_value >= ALPHA

    def verdict(self) -> str:
        """``supported``, ``not supported``, ``inconclusive`` or ``not evaluated``."""
        if self.inconclusive:
            return "inconclusive"
        return {True: "supported", False: "not supported", None: "not evaluated"}[self.supported]


def _fold_signs(vt: VerificationTable, a: str, b: str, key: str = "accuracy") -> tuple[int, int, int]:
    """Folds where method a's per-fold ``key`` is higher, equal, lower than method b's."""
    x, y = vt.results[a].per_fold[key], vt.results[b].per_fold[key]
    return int((x > y).sum()), int((x == y).sum()), int((x < y).sum())


def _fold_test(vt: VerificationTable, a: str, b: str, key: str = "accuracy") -> tuple[float, float]:
    """Paired two-sided t-test over the folds of ``key`` (percent): (p-value, detectable difference in points)."""
    from scipy.stats import ttest_rel

    x = 100 * np.asarray(vt.results[a].per_fold[key], np.float64)  # fractions -> percent
    y = 100 * np.asarray(vt.results[b].per_fold[key], np.float64)
    if np.allclose(x, y):
        return 1.0, float("nan")
    return float(ttest_rel(x, y).pvalue), paired_mde(x, y, test="t")


def _p(pv: float) -> str:
    """``p = 0.20`` or ``p < 10⁻⁶`` (:func:`~disentangled_face.format.fmt_p`)."""
    t = fmt_p(pv)
    return f"p {t}" if t.startswith("<") else f"p = {t}"


def _fold_text(pv: float, mde: float, n: int) -> str:
    return (f"paired t-test over the {n} folds {_p(pv)}" + ("; within noise" if pv >= ALPHA else "")
            + f"; it detects a true difference of {fmt_num(mde)} points (α = {ALPHA:g}, power {POWER:g})")


def _folds_text(signs: tuple[int, int, int]) -> str:
    won, tied, lost = signs
    return f"higher in {won}, equal in {tied}, lower in {lost} of {won + tied + lost} folds"


#: Significance level of the paired tests of :func:`claims` (p >= ALPHA: "inconclusive").
ALPHA = 0.05
#: Bootstrap resamples of the Fig. 7 range test.
N_BOOTSTRAP = 2000


def paired_test(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value (:func:`scipy.stats.wilcoxon`) of paired
    per-item values ``a`` (N,) and ``b`` (N,); 1.0 when every pair is tied.

    Raises
    ------
    ValueError
        On arrays of different shapes.
    """
    from scipy.stats import wilcoxon

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"paired values must be two (N,) arrays, got {a.shape} and {b.shape}")
    d = a - b
    if not np.any(d != 0):
        return 1.0
    return float(wilcoxon(d[d != 0]).pvalue)


def _range_bootstrap_p(ea: np.ndarray, eb: np.ndarray, groups: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """Two-sided paired stratified bootstrap p-value of ``range_a - range_b``, where range is the
    max - min over groups of the per-group mean (items resampled within each group, the same
    indices for both methods), and the difference detectable with power 0.8 (normal
    approximation: ``(z_0.975 + z_0.8)`` bootstrap standard errors)."""
    rng = np.random.default_rng(seed)
    names = list(dict.fromkeys(groups.tolist()))
    idx = [np.flatnonzero(groups == g) for g in names]
    diffs = np.empty(N_BOOTSTRAP)
    for k in range(N_BOOTSTRAP):
        pick = [rng.choice(i, i.size) for i in idx]
        ma = np.array([ea[i].mean() for i in pick])
        mb = np.array([eb[i].mean() for i in pick])
        diffs[k] = (ma.max() - ma.min()) - (mb.max() - mb.min())
    from scipy.stats import norm

    mde = float((norm.ppf(1 - ALPHA / 2) + norm.ppf(POWER)) * diffs.std(ddof=1))
    # floor at 1 / N_BOOTSTRAP: the resampling cannot resolve smaller p-values
    return float(min(1.0, max(1.0 / N_BOOTSTRAP, 2 * min((diffs <= 0).mean(), (diffs >= 0).mean())))), mde


def _items(r: ReconResult, method: str, metric: str) -> np.ndarray:
    return r.errors.loc[r.errors["method"] == method, metric].to_numpy(np.float64)


#: Fig. 9 claim: the least rise of the identity decoder's energy share outside the 3DMM span
#: (a fraction) that counts as "capturing shape the 3DMM does not".
BASES_MIN_OUTSIDE = 1e-3


def claims(results: Mapping[str, Any], metric: str = "rmse_mm") -> list[Claim]:
    """The paper's claims judged on computed results; every sentence is built from the numbers.

    Verdict rules: a reconstruction claim holds when the proposed method's overall mean error
    is lower (for Fig. 6, lower in every expression) and a paired two-sided Wilcoxon
    signed-rank test over the test images (:func:`paired_test`) gives p < :data:`ALPHA`; the
    Fig. 7 claim when the Proposed identity-error range across expressions is smaller than the
    3DMM-CNN-like one, tested with a paired stratified bootstrap over the test images; a
    recognition claim when the mean accuracy is higher, with a paired two-sided t-test over the
    folds. Every tested claim states the smallest difference its test detects with power 0.8
    at the sizes used (:mod:`.power`; for the bootstrap, 2.8 bootstrap standard errors). A test with
    p >= :data:`ALPHA` makes the verdict "inconclusive" (the difference is within noise),
    whichever way the numbers point. The Fig. 9 claim holds when the identity decoder's energy
    outside the 3DMM span rises by at least :data:`BASES_MIN_OUTSIDE`; the speed claim when the
    proposed network is faster (these two have no test).

    Parameters
    ----------
    results : mapping
        Any of: ``"yaw"`` (ReconResult, Table 1), ``"micc"`` (ReconResult, Table 2),
        ``"expression"`` (ReconResult, Fig. 6), ``"expression_identity"`` (ReconResult,
        Fig. 7), ``"lfw"`` and ``"ytf"`` (VerificationTable, Table 3), ``"bases"`` (the
        :func:`learned_bases` dict, Fig. 9), ``"speed"`` (DataFrame, Table 4). A missing entry gives a claim with ``supported=None``.
    metric : str
        Reconstruction metric compared.

    Returns
    -------
    list of Claim
    """
    out: list[Claim] = []
    unit = "mm" if metric != "paper" else "(Sec. 4.1 units)"
    for key, text, rival, every in _RECON_CLAIMS:
        out.append(_recon_claim(results.get(key), key, text, metric, unit, rival, every))
    out.append(_identity_claim(results.get("expression_identity"), metric, unit))
    for key, name in (("lfw", "LFW"), ("ytf", "YTF")):
        out += _recognition_claims(results.get(key), name)
    out.append(_bases_claim(results.get("bases")))
    out.append(_speed_claim(results.get("speed")))
    return out


#: The reconstruction claims: (result key, claim, rival method, lower in every group).
_RECON_CLAIMS = (
    ("yaw", "Table 1: the proposed method reconstructs shapes more accurately than 3DMM-CNN "
            "(on average over yaw angles).", "3DMM-CNN-like", False),
    ("micc", "Table 2: the proposed method is more accurate than 3DMM-CNN on MICC.", "3DMM-CNN-like", False),
    ("expression", "Fig. 6: the proposed method is more accurate than 3DMM-CNN for every expression.",
     "3DMM-CNN-like", True),
    ("yaw", "Table 1: the proposed network is more accurate than single-image 3DMM fitting.", "3DMM fitting", False),
)


def _recon_claim(r: ReconResult | None, key: str, text: str, metric: str, unit: str, rival: str,
                 every_group: bool) -> Claim:
    """Proposed against ``rival`` on one reconstruction result (Tables 1-2, Fig. 6), Wilcoxon-tested."""
    if r is None:
        return Claim(text, None, f"The {key} experiment was not run.")
    t = r.table(metric)
    if "Proposed" not in t.index or rival not in t.index:
        return Claim(text, None, f"The {key} table lacks Proposed or {rival}.")
    p, q = float(t.loc["Proposed", "overall"]), float(t.loc[rival, "overall"])
    cols = [c for c in t.columns if c != "overall"]
    wins = int(sum(float(t.loc["Proposed", c]) < float(t.loc[rival, c]) for c in cols))
    ok = (wins == len(cols)) if every_group else (p < q)
    rel = 100 * abs(p - q) / q
    ea, eb = _items(r, "Proposed", metric), _items(r, rival, metric)
    pv, mde = paired_test(ea, eb), paired_mde(ea, eb, test="wilcoxon")
    return Claim(text, ok, (
        f"Overall {METRIC_LABELS[metric]}: Proposed {fmt_num(p)} {unit} against {rival} {fmt_num(q)} {unit} "
        f"({rel:.1f}% {'lower' if p < q else 'higher' if p > q else 'equal'}); Proposed is lower in "
        f"{wins} of {len(cols)} {r.group_name} groups and for {int((ea < eb).sum())} of {ea.size} test images "
        f"(paired Wilcoxon signed-rank test, {_p(pv)}{'; within noise' if pv >= ALPHA else ''}; "
        f"it detects a mean difference of {fmt_num(mde)} {unit} with power {POWER:g})."), p_value=pv,
        detectable=mde, unit=unit)


def _identity_claim(r: ReconResult | None, metric: str, unit: str) -> Claim:
    """Fig. 7: the Proposed identity error varies less across expressions (range, bootstrap-tested)."""
    text = ("Fig. 7: the identity component is disentangled from expression: its error stays nearly the "
            "same across expressions.")
    rival = "3DMM-CNN-like"
    if r is None or not {"Proposed", rival} <= set(r.table(metric).index):
        return Claim(text, None, "The identity-per-expression experiment was not run with Proposed and "
                                 f"{rival}.")
    t = r.table(metric)
    row, crow = t.loc["Proposed"].drop("overall"), t.loc[rival].drop("overall")
    spread, cspread = float(row.max() - row.min()), float(crow.max() - crow.min())
    ok = spread < cspread
    groups = r.errors.loc[r.errors["method"] == "Proposed", "group"].to_numpy()
    pv, mde = _range_bootstrap_p(_items(r, "Proposed", metric), _items(r, rival, metric), groups)
    return Claim(text, ok, (
        f"Across expressions the Proposed identity-shape error ranges over {fmt_num(spread)} {unit} "
        f"({fmt_num(row.min())} to {fmt_num(row.max())}), the {rival} identity-shape error over {fmt_num(cspread)} {unit} "
        f"({fmt_num(crow.min())} to {fmt_num(crow.max())}): the Proposed identity component varies "
        f"{'less' if ok else 'not less'} with expression (paired bootstrap over test images of the range "
        f"difference, {_p(pv)}{'; within noise' if pv >= ALPHA else ''}; it detects a range difference of "
        f"{fmt_num(mde)} {unit} with power {POWER:g})."), p_value=pv, detectable=mde, unit=unit)


def _recognition_claims(vt: VerificationTable | None, name: str) -> list[Claim]:
    """Table 3 on one protocol: Proposed against 3DMM-CNN-like, and texture + Proposed against texture."""
    return [_shape_feature_claim(vt, name), _fusion_claim(vt, name)]


def _shape_feature_claim(vt: VerificationTable | None, name: str) -> Claim:
    text = f"Table 3 ({name}): the proposed shape features are more discriminative than 3DMM-CNN's."
    if vt is None or not {"Proposed", "3DMM-CNN-like"} <= set(vt.results):
        return Claim(text, None, f"The {name}-like verification was not run with both methods.", "recognition")
    m = vt.mean()
    p, q = m.loc["Proposed", "accuracy"], m.loc["3DMM-CNN-like", "accuracy"]
    pa, qa = m.loc["Proposed", "AUC"], m.loc["3DMM-CNN-like", "AUC"]
    sg = _fold_signs(vt, "Proposed", "3DMM-CNN-like")
    pv, mde = _fold_test(vt, "Proposed", "3DMM-CNN-like")
    return Claim(text, bool(p > q), (
        f"On {name}-like, Proposed c_id reaches {p:.2f}% accuracy (AUC {pa:.2f}%) against {q:.2f}% "
        f"(AUC {qa:.2f}%) for the 3DMM-CNN-like codes; accuracy {_folds_text(sg)}, {_fold_text(pv, mde, sum(sg))}."),
        "recognition", pv, mde, "points")


def _fusion_claim(vt: VerificationTable | None, name: str) -> Claim:
    text = f"Table 3 ({name}): fusing the proposed shape features with texture improves on texture alone."
    if vt is None or not {"texture", "texture + Proposed"} <= set(vt.results):
        return Claim(text, None, f"The {name}-like texture fusion was not run.", "recognition")
    m, sd = vt.mean(), vt.std()
    p, q = m.loc["texture + Proposed", "accuracy"], m.loc["texture", "accuracy"]
    sg = _fold_signs(vt, "texture + Proposed", "texture")
    pv, mde = _fold_test(vt, "texture + Proposed", "texture")
    return Claim(text, bool(p > q), (
        f"On {name}-like, texture + Proposed reaches {p:.2f} ± {sd.loc['texture + Proposed', 'accuracy']:.2f}% "
        f"accuracy against {q:.2f} ± {sd.loc['texture', 'accuracy']:.2f}% for texture alone "
        f"({p - q:+.2f} points; {_folds_text(sg)}, {_fold_text(pv, mde, sum(sg))})."), "recognition", pv, mde, "points")


def _bases_claim(lb: Mapping | None) -> Claim:
    """Fig. 9: the identity decoder's energy outside the 3DMM span rises by >= BASES_MIN_OUTSIDE."""
    text = ("Fig. 9: joint training (Phase III) lets the identity bases capture shape the pre-trained "
            "(3DMM-like) bases do not.")
    col2, col3 = "energy in 3DMM subspace, Phase II", "energy in 3DMM subspace, Phase III"
    if lb is None or col3 not in lb["table"].columns:
        return Claim(text, None, "The learned-bases comparison was not run.", "bases")
    r = lb["table"].loc["identity"]
    e2, e3 = float(r[col2]), float(r[col3])
    ok = e3 < e2 - BASES_MIN_OUTSIDE
    return Claim(text, ok, (
        f"The share of the identity decoder's energy outside the 3DMM identity subspace goes from "
        f"{max(0.0, 100 * (1 - e2)):.3f}% after Phase II to {max(0.0, 100 * (1 - e3)):.3f}% after Phase III "
        f"(judged supported from a rise of {100 * BASES_MIN_OUTSIDE:g}% on); the decoder changed by "
        f"{100 * float(r['relative change ||W3-W2||/||W2||']):.1f}% of its norm."), "bases")


def _speed_claim(sp: pd.DataFrame | None) -> Claim:
    """Table 4: the proposed network is faster than single-image 3DMM fitting (no test)."""
    text = "Table 4: the proposed network reconstructs a face much faster than 3DMM fitting."
    if sp is None or not {"Proposed", "3DMM fitting"} <= set(sp.index):
        return Claim(text, None, "The speed experiment was not run with both methods.", "speed")
    p, q = float(sp.loc["Proposed", "ms/image"]), float(sp.loc["3DMM fitting", "ms/image"])
    return Claim(text, bool(p < q), (
        f"On this machine ({sp.loc['Proposed', 'device']}) the Proposed network takes {fmt_num(p)} ms per image and "
        f"single-image 3DMM fitting {fmt_num(q)} ms ({fmt_num(q / p)}x)."), "speed")


def claims_frame(claim_list: Sequence[Claim]) -> pd.DataFrame:
    """The claims as a table (topic, claim, verdict, p-value of its paired test or None, the
    difference that test detects with power 0.8 and its unit, evidence)."""
    return pd.DataFrame([{"topic": c.topic, "claim": c.claim, "verdict": c.verdict(), "p-value": c.p_value,
                          "detectable difference": c.detectable, "unit": c.unit, "evidence": c.evidence}
                         for c in claim_list])


def claims_markdown(claim_list: Sequence[Claim], topic: str | None = None) -> str:
    """The claims as Markdown a reader sees whole: one block per claim, its verdict in bold,
    then its evidence sentence (``topic``: only the claims of that topic).

    >>> print(claims_markdown([Claim("Table 2: lower error.", True, "2.0 mm against 3.0 mm.", p_value=0.01)]))
    > **supported**: Table 2: lower error.
    >
    > 2.0 mm against 3.0 mm.
    """
    blocks = [f"> **{c.verdict()}**: {c.claim}\n>\n> {c.evidence}" for c in claim_list
              if topic is None or c.topic == topic]
    return "\n\n".join(blocks)
