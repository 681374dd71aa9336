"""The published results of Liu et al. (CVPR 2018) as data, each tied to its table or figure.

Every number the paper publishes in Tables 1-4, in the captions of Figs. 6-7 and in the
sentence of Sec. 4.2 on fusing with SphereFace is written out here as Python data, transcribed
from the paper's text and checked against it (``tests/test_paper_results.py`` compares every
value with the project's checked transcription when that file is at hand). The module never
reads a file: it works on any machine.

Two kinds of gap are kept apart:

* the paper's "–" (a cell it leaves empty: 3DMM-CNN at ``|yaw|`` ≥ 60° in Table 1) is stored as
  ``None`` (:data:`NOT_REPORTED`) and shown as :data:`DASH`;
* a value *we* lack (a method of ours with no row in a paper table, or a paper method we do not
  rebuild) is not a cell of the paper's table at all; :func:`counterpart` and
  :func:`beside` say so in words.

Units: Tables 1-2 and Figs. 6-7 are RMSE in **mm** (Sec. 4.1, after Procrustes alignment on 68
landmarks and a 95 mm crop); they are compared only with our ``rmse_mm`` column, never with the
literal Sec. 4.1 formula (``paper`` metric), whose value depends on the vertex count. Table 3
is in percent (mean ± std over 10 folds), Table 4 in milliseconds per image on
:data:`HARDWARE`.

Row names are the paper's own. Reference numbers of the paper: VRN [16] (Jackson et al.,
ICCV 2017), 3DDFA [42] (Zhu et al.), 3DMM-CNN [33] (Tran et al., CVPR 2017),
3DSR [23] (Liu et al., ECCV 2016), 3DMM [28] (Romdhani and Vetter, CVPR 2005), SphereFace [24]
(Liu et al., CVPR 2017); see :data:`CITATIONS`.

>>> get("table1").value("VRN", "Avg.")
5.29
>>> get("table1").value("3DMM-CNN", "±90") is NOT_REPORTED
True
>>> TABLE3["YTF"].row("Proposed").mean["accuracy"]
88.74
>>> YTF_FUSION["SphereFace + Proposed"]
95.18
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

__all__ = ["PAPER", "CITATIONS", "NOT_REPORTED", "DASH", "NOT_MEASURED", "HARDWARE", "VERIFICATION_METRICS",
           "TABLE1_COLUMNS", "PaperTable", "VerificationRow", "PaperVerification", "TABLES", "TABLE3",
           "YTF_FUSION", "SETUP", "get", "n_values", "counterpart", "beside", "verification_counterparts",
           "verification_beside"]

#: Citation of the paper.
PAPER = ("F. Liu, R. Zhu, D. Zeng, Q. Zhao, X. Liu. Disentangling Features in 3D Face Shapes for "
         "Joint Face Reconstruction and Recognition. CVPR 2018, pp. 5216-5225.")

#: The paper's reference for each method it compares against (its bibliography numbers).
CITATIONS = {
    "VRN": "[16] Jackson, Bulat, Argyriou, Tzimiropoulos, ICCV 2017",
    "3DDFA": "[42] Zhu, Lei, Yan, Yi, Li, CVPR 2015 (the paper's citation; 3DDFA's own paper is its [41], "
             "Zhu, Lei, Liu, Shi, Li, CVPR 2016)",
    "3DMM-CNN": "[33] Tran, Hassner, Masi, Medioni, CVPR 2017",
    "3DSR": "[23] Liu, Zeng, Zhao, Liu, ECCV 2016",
    "3DMM": "[28] Romdhani, Vetter, CVPR 2005",
    "SphereFace": "[24] Liu, Wen, Yu, Li, Raj, Song, CVPR 2017",
}

#: A cell the paper leaves empty ("–", not reported). Not the same as a value we lack.
NOT_REPORTED = None

#: How a :data:`NOT_REPORTED` cell is shown.
DASH = "–"

#: How :func:`beside` shows a cell of ours that has no value (not the paper's :data:`DASH`).
NOT_MEASURED = "not measured"

#: The machine on which the paper timed Table 4 (Sec. 4.3).
HARDWARE = "Intel Core i7-5930K @ 3.5 GHz, 32 GB RAM, GeForce GTX 1080"

#: The five verification metrics of Table 3 (percent), in the paper's column order.
VERIFICATION_METRICS = ("accuracy", "100-EER", "AUC", "TAR@FAR=10%", "TAR@FAR=1%")

#: Table 1's columns: +yaw and -yaw pooled per magnitude, frontal, and the mean of those ten.
TABLE1_COLUMNS = ("±90", "±80", "±70", "±60", "±50", "±40", "±30", "±20", "±10", "0", "Avg.")


@dataclass(frozen=True)
class PaperTable:
    """One numeric table (or figure caption) of the paper, in its own layout.

    Attributes
    ----------
    key : str
        Name in :data:`TABLES` (``table1``, ``table2``, ``fig6``, ``fig7``, ``table4``).
    ref : str
        Where in the paper ("Table 1", "Fig. 6 caption").
    title : str
    rows : tuple of str
        The paper's method names, in its order.
    columns : tuple of str
    units : str
    values : mapping row -> tuple of (float or None)
        One entry per column; ``None`` is the paper's "–" (:data:`NOT_REPORTED`).
    note : str
    """

    key: str
    ref: str
    title: str
    rows: tuple
    columns: tuple
    units: str
    values: Mapping[str, tuple]
    note: str = ""

    def __post_init__(self):
        if tuple(self.values) != tuple(self.rows):
            raise ValueError(f"{self.ref}: values rows {tuple(self.values)} != layout {self.rows}")
        for r, v in self.values.items():
            if len(v) != len(self.columns):
                raise ValueError(f"{self.ref}: row {r!r} has {len(v)} values for {len(self.columns)} columns")

    def value(self, row: str, column: str) -> Optional[float]:
        """The published value; ``None`` where the paper prints "–".

        Raises
        ------
        KeyError
            When ``row`` or ``column`` is not part of the paper's table (the paper has no such
            cell: that is not the same as "–").
        """
        if row not in self.rows or column not in self.columns:
            raise KeyError(f"{self.ref}: no cell ({row!r}, {column!r}); rows {self.rows}, columns {self.columns}")
        return self.values[row][self.columns.index(column)]

    @property
    def n_values(self) -> int:
        """How many numbers the paper prints in this table ("–" cells not counted)."""
        return sum(v is not None for row in self.values.values() for v in row)

    def numeric(self):
        """The table as a float DataFrame (rows x columns); "–" cells are NaN."""
        import numpy as np
        import pandas as pd

        df = pd.DataFrame([[np.nan if v is None else v for v in self.values[r]] for r in self.rows],
                          index=list(self.rows), columns=list(self.columns))
        df.index.name = f"paper {self.ref} ({self.units})"
        return df

    def frame(self, digits: int = 2):
        """The table for display: the paper's numbers as it prints them, with ``digits``
        decimals (``"2.00"``, ``"29.80"``: strings, so that no table formatter trims or rounds
        them), "–" where it reports none; :meth:`numeric` gives the floats."""
        import pandas as pd

        df = pd.DataFrame([[DASH if v is None else f"{v:.{digits}f}" for v in self.values[r]] for r in self.rows],
                          index=list(self.rows), columns=list(self.columns), dtype=object)
        df.index.name = f"paper {self.ref} ({self.units})"
        return df


@dataclass(frozen=True)
class VerificationRow:
    """One row of Table 3: a method, the features it uses, and five metrics (percent).

    ``mean`` and ``std`` map each of :data:`VERIFICATION_METRICS` to the mean and standard
    deviation over the 10 folds.
    """

    method: str
    shape: bool
    texture: bool
    mean: Mapping[str, float]
    std: Mapping[str, float]

    @property
    def features(self) -> str:
        """``"shape"``, ``"texture"`` or ``"shape + texture"``."""
        return " + ".join(n for n, on in (("shape", self.shape), ("texture", self.texture)) if on)

    @property
    def label(self) -> str:
        """Row label, e.g. ``"3DMM-CNN (shape + texture)"``."""
        return f"{self.method} ({self.features})"


def _vrow(method, shape, texture, mean, std) -> VerificationRow:
    return VerificationRow(method, shape, texture, dict(zip(VERIFICATION_METRICS, mean)),
                           dict(zip(VERIFICATION_METRICS, std)))


@dataclass(frozen=True)
class PaperVerification:
    """Table 3 for one dataset (LFW or YTF): eight rows, percent, mean ± std over 10 folds.

    The "texture" rows (Texture ✓) are the *texture parameters* that 3DMM [28] and 3DMM-CNN [33]
    estimate alongside their shape parameters, not a separate texture network; Shape ✓ and
    Texture ✓ together is the fusion of the two parameter sets. 3DDFA and Proposed give shape
    only.
    """

    dataset: str
    rows: tuple  # of VerificationRow

    @property
    def ref(self) -> str:
        return f"Table 3 ({self.dataset})"

    @property
    def n_values(self) -> int:
        """How many numbers the paper prints here (means and stds)."""
        return sum(len(r.mean) + len(r.std) for r in self.rows)

    def row(self, method: str, shape: bool = True, texture: bool = False) -> VerificationRow:
        """The row of ``method`` with these feature flags (default: shape only).

        Raises
        ------
        KeyError
            The paper has no such row (it names the rows it has).
        """
        for r in self.rows:
            if (r.method, r.shape, r.texture) == (method, shape, texture):
                return r
        raise KeyError(f"{self.ref}: no row ({method!r}, shape={shape}, texture={texture}); "
                       f"rows {[r.label for r in self.rows]}")

    def numeric(self, stat: str = "mean"):
        """Rows (labels) x metrics, float: ``stat`` ``"mean"`` or ``"std"``."""
        import pandas as pd

        if stat not in ("mean", "std"):
            raise ValueError(f"stat must be 'mean' or 'std', got {stat!r}")
        df = pd.DataFrame([getattr(r, stat) for r in self.rows], index=[r.label for r in self.rows])
        df.index.name = f"paper {self.ref} (%, {stat})"
        return df[list(VERIFICATION_METRICS)]

    def frame(self, digits: int = 2):
        """The paper's layout: Method, Shape, Texture (✓/×), then "mean ± std" per metric."""
        import pandas as pd

        mark = {True: "✓", False: "×"}
        df = pd.DataFrame([{"Method": r.method, "Shape": mark[r.shape], "Texture": mark[r.texture],
                            **{m: f"{r.mean[m]:.{digits}f} ± {r.std[m]:.{digits}f}" for m in VERIFICATION_METRICS}}
                           for r in self.rows])
        df.index = pd.RangeIndex(1, len(df) + 1, name=f"paper {self.ref} (%, mean ± std over 10 folds)")
        return df


_T1_ROWS = ("VRN", "3DDFA", "3DMM-CNN", "3DSR", "Proposed")
_X = NOT_REPORTED

TABLES: dict[str, PaperTable] = {
    "table1": PaperTable(
        "table1", "Table 1", "RMSE under yaw angles on BU3DFE", _T1_ROWS, TABLE1_COLUMNS, "RMSE, mm",
        {"VRN": (6.96, 6.20, 6.14, 6.01, 5.91, 5.50, 4.93, 3.86, 3.70, 3.66, 5.29),
         "3DDFA": (2.90, 2.88, 2.81, 2.82, 2.77, 2.79, 2.76, 2.73, 2.55, 2.48, 2.75),
         "3DMM-CNN": (_X, _X, _X, _X, 2.30, 2.26, 2.23, 2.22, 2.19, 2.17, 2.23),
         "3DSR": (2.11, 2.11, 2.12, 2.13, 2.16, 2.14, 2.12, 2.10, 2.10, 2.09, 2.12),
         "Proposed": (2.09, 2.04, 2.03, 2.03, 2.00, 1.99, 2.03, 2.01, 1.97, 1.93, 2.01)},
        note="+yaw and -yaw pooled into one column per magnitude; Avg. is the mean of the ten "
             "columns (of the six reported ones for 3DMM-CNN)."),
    "table2": PaperTable(
        "table2", "Table 2", "RMSE on MICC (5,000 outdoor video frames, 53 subjects)", _T1_ROWS, ("RMSE",),
        "RMSE, mm",
        {"VRN": (5.34,), "3DDFA": (2.73,), "3DMM-CNN": (2.20,), "3DSR": (2.07,), "Proposed": (2.00,)}),
    "fig6": PaperTable(
        "fig6", "Fig. 6 caption", "full shape (with the input's expression), mean over the 7 BU3DFE expressions",
        ("VRN", "3DDFA", "Proposed"), ("mean over expressions",), "RMSE, mm",
        {"VRN": (4.68,), "3DDFA": (2.56,), "Proposed": (2.19,)},
        note="The per-expression bars are a plot; the text gives only these means."),
    "fig7": PaperTable(
        "fig7", "Fig. 7 caption", "identity (expression-normalised) shape, mean over the 7 BU3DFE expressions",
        ("3DMM-CNN", "3DSR", "Proposed"), ("mean over expressions",), "RMSE, mm",
        {"3DMM-CNN": (2.21,), "3DSR": (2.10,), "Proposed": (2.00,)},
        note="The per-expression bars are a plot; the text gives only these means."),
    "table4": PaperTable(
        "table4", "Table 4", f"average time per image over 700 images on {HARDWARE}", _T1_ROWS, ("ms/image",),
        "ms per image",
        {"VRN": (55.68,), "3DDFA": (39.17,), "3DMM-CNN": (30.12,), "3DSR": (29.80,), "Proposed": (4.79,)},
        note="Landmark detection is not included in the times."),
}

#: Table 3, per dataset (``"LFW"``, ``"YTF"``): the paper's eight rows each.
TABLE3: dict[str, PaperVerification] = {
    "LFW": PaperVerification("LFW", (
        _vrow("3DMM", True, False, (66.13, 65.70, 72.24, 35.90, 12.37), (2.79, 2.81, 2.75, 3.74, 4.81)),
        _vrow("3DMM", False, True, (74.93, 74.50, 82.94, 60.40, 28.73), (1.14, 1.21, 1.14, 3.15, 7.17)),
        _vrow("3DMM", True, True, (75.25, 74.73, 83.21, 59.40, 29.67), (2.12, 2.56, 1.93, 4.64, 4.73)),
        _vrow("3DDFA", True, False, (66.98, 67.13, 73.30, 36.76, 10.00), (2.56, 1.90, 2.49, 6.27, 3.22)),
        _vrow("3DMM-CNN", True, False, (90.53, 90.63, 96.60, 91.13, 58.20), (1.34, 1.61, 0.79, 2.62, 12.14)),
        _vrow("3DMM-CNN", False, True, (90.60, 90.70, 96.75, 91.23, 52.60), (1.07, 1.17, 0.59, 2.42, 8.14)),
        _vrow("3DMM-CNN", True, True, (92.35, 92.33, 97.71, 94.20, 65.57), (1.29, 1.33, 0.64, 2.00, 6.93)),
        _vrow("Proposed", True, False, (94.43, 94.40, 98.12, 95.07, 74.54), (1.47, 1.52, 0.90, 2.39, 4.33)),
    )),
    "YTF": PaperVerification("YTF", (
        _vrow("3DMM", True, False, (73.26, 73.08, 80.41, 51.36, 24.04), (2.51, 2.65, 2.60, 5.11, 4.56)),
        _vrow("3DMM", False, True, (77.34, 76.96, 85.32, 63.16, 31.36), (2.54, 2.64, 2.63, 5.07, 5.21)),
        _vrow("3DMM", True, True, (79.56, 79.20, 87.35, 69.08, 34.56), (2.08, 2.07, 1.92, 5.00, 6.89)),
        _vrow("3DDFA", True, False, (68.10, 67.96, 74.95, 40.52, 12.20), (2.93, 3.12, 3.04, 3.65, 2.67)),
        _vrow("3DMM-CNN", True, False, (88.28, 88.32, 95.95, 86.60, 51.12), (1.84, 2.16, 1.38, 3.95, 8.86)),
        _vrow("3DMM-CNN", False, True, (87.56, 87.68, 94.44, 84.80, 40.92), (2.56, 2.25, 1.38, 4.89, 8.26)),
        _vrow("3DMM-CNN", True, True, (88.80, 88.84, 95.37, 87.92, 46.56), (2.21, 2.40, 1.43, 4.18, 6.20)),
        _vrow("Proposed", True, False, (88.74, 88.70, 96.28, 89.00, 53.44), (1.03, 1.15, 0.63, 2.40, 4.51)),
    )),
}

#: Sec. 4.2 (text, not Table 3): YTF verification accuracy (%) of SphereFace [24] alone and fused
#: at score level with the proposed shape feature. The paper gives no LFW fusion figure.
YTF_FUSION: dict[str, float] = {"SphereFace": 94.78, "SphereFace + Proposed": 95.18}

#: Sizes and settings the paper's text states (Secs. 3-4), for reference beside the profiles.
SETUP: dict[str, object] = {
    "training_images": 488848,  # CASIA-WebFace after discarding failed detections/alignments
    "training_subjects": 10575,
    "vertices": 29495,  # decoder output 88,485 = 3 x 29,495
    "c_id_dims": 199,  # BFM identity bases
    "c_res_dims": 29,  # FaceWarehouse blendshapes
    "encoder": "SphereFace, 20 conv layers + FC 512; input 112x96 in [-1, 1]; faces detected by MTCNN",
    "landmarks": "68, by FAN (Bulat and Tzimiropoulos, ICCV 2017)",
    "fit_iterations": "converges within 7 alternations (pose, expression, identity)",
    "phase3": "lambda_R = 0.5 until the loss saturates (about 10 epochs), then 1.0 (about 20 more epochs)",
    "rmse": "Procrustes on 68 3D landmarks, crop 95 mm around the nose tip",
    "bu3dfe_test": "100 subjects; neutral + first intensity of 6 expressions = 700 samples; "
                   "neutral rendered at yaw -90..90 step 10",
    "micc_test": "5,000 frames drawn from 31,466 outdoor video frames of 53 subjects",
    "lfw": "13,323 images; 10 folds x (300 same + 300 different) pairs",
    "ytf": "3,425 videos of 1,595 individuals",
}

_TABLE3_KEYS = {"table3_lfw": "LFW", "table3_ytf": "YTF"}


def get(name: str):
    """A table by key: ``table1``, ``table2``, ``fig6``, ``fig7``, ``table4`` (a
    :class:`PaperTable`) or ``table3_lfw``, ``table3_ytf`` (a :class:`PaperVerification`).

    Raises
    ------
    KeyError
        Unknown key (the message lists the known ones).
    """
    if name in TABLES:
        return TABLES[name]
    if name in _TABLE3_KEYS:
        return TABLE3[_TABLE3_KEYS[name]]
    raise KeyError(f"unknown paper table {name!r}; known: {sorted(TABLES) + sorted(_TABLE3_KEYS)}")


def n_values() -> int:
    """How many numbers of the paper this module holds (Tables 1-4, Figs. 6-7, the YTF fusion)."""
    return (sum(t.n_values for t in TABLES.values()) + sum(t.n_values for t in TABLE3.values())
            + len(YTF_FUSION))


def _paper_row(name: str) -> Optional[str]:
    """The paper row of our method ``name``; a row label with a note after the method's name
    (``"texture (feature only)"`` in Table 4) counts as that method."""
    from ..methods import METHODS

    m = METHODS.get(name) or METHODS.get(name.split(" (")[0])
    return None if m is None else m.paper_row


def counterpart(name: str, table: PaperTable) -> str:
    """Which row of ``table`` our method ``name`` stands for, or a sentence saying it has none.

    Uses :attr:`.methods.Method.paper_row`; a name that is not a method of
    :data:`.methods.METHODS` has no counterpart.
    """
    row = _paper_row(name)
    if row is not None and row in table.rows:
        return row
    if row is None:
        return f"no counterpart in the paper's {table.ref}"
    return f"no counterpart: the paper's {table.ref} has no {row} row"


def beside(table: PaperTable, ours, metric: str = "rmse_mm", column_map: Optional[Mapping[str, str]] = None):
    """The paper's rows, then ours, in the paper's columns, each of ours naming its paper row.

    Parameters
    ----------
    table : PaperTable
        One of :data:`TABLES`.
    ours : DataFrame
        Our methods (index) x columns. Columns that are among ``table.columns`` (after
        ``column_map``) are kept; the paper's other columns read "not measured".
    metric : str
        The metric of ``ours``. For the RMSE tables (units in mm) only ``"rmse_mm"`` is
        accepted: the paper's mm never sit beside the Sec. 4.1 formula's units.
    column_map : mapping, optional
        Our column name -> the paper's (e.g. ``{"overall": "RMSE"}``).

    Returns
    -------
    DataFrame
        Index (source, row): ``("paper", <paper row>)`` and ``("ours", <our method>)``; the
        paper's columns, then ``"paper row"`` (for ours: the paper row it stands for, or why none).
        Every cell is text, so that a table formatter shows it as written: the paper's at its own
        precision (:meth:`PaperTable.frame`: ``"2.00"``, ``"–"`` where it reports none), ours to
        three significant figures with their zeros (``"2.40"``, ``"107"``), and
        :data:`NOT_MEASURED` where ours has no value (a missing column, or NaN).

    Raises
    ------
    ValueError
        A metric other than ``rmse_mm`` beside an mm table, or ``ours`` sharing no column
        with the table.
    """
    import pandas as pd

    if table.units == "RMSE, mm" and metric != "rmse_mm":
        raise ValueError(f"the paper's {table.ref} is RMSE in mm: compare it with our rmse_mm, not {metric!r}")
    ours = ours.rename(columns=dict(column_map or {}))
    shared = [c for c in table.columns if c in ours.columns]
    if not shared:
        raise ValueError(f"our table has none of the columns of the paper's {table.ref} {table.columns}")
    from ..format import fmt_num

    def cell(v):  # ours: three significant figures, zeros kept ("2.00"); a number we lack is no "–"
        if isinstance(v, str):
            return v
        return NOT_MEASURED if v is None or v != v else fmt_num(v, 3, trim=False)

    paper = table.frame()
    paper["paper row"] = ""
    mine = pd.DataFrame({c: (ours[c].map(cell) if c in ours.columns else NOT_MEASURED)
                         for c in table.columns}, index=ours.index)
    mine["paper row"] = [counterpart(str(n), table) for n in ours.index]
    out = pd.concat({"paper": paper, "ours": mine})
    out.index.names = ["source", f"{table.ref} ({table.units})"]
    return out


def verification_counterparts(names: Sequence[str], dataset: str) -> "pd.Series":  # noqa: F821
    """For each of our Table 3 rows (methods and fusions), the paper's row it stands for.

    Our method with :attr:`~.methods.Method.paper_row` ``R`` stands for the paper's shape-only
    row of ``R`` (``"3DMM-CNN (shape)"``). Our texture network stands for SphereFace, which the
    paper reports only in its YTF fusion sentence (accuracy); our "texture + Proposed" for the
    fused SphereFace + Proposed of that sentence. Our other fusions have no counterpart: the
    paper's Shape ✓ Texture ✓ rows fuse a method's own shape and texture *parameters*, not a
    texture network (our "texture + 3DMM-CNN-like"); for 3DDFA, which gives shape only, the
    paper has no texture or fused row at all (our "texture + 3DDFA-like").

    Parameters
    ----------
    names : sequence of str
        Our row names (as in :class:`.verification.VerificationTable`).
    dataset : {"LFW", "YTF"}

    Returns
    -------
    Series (name -> str), with the paper's published value where it has one.
    """
    import pandas as pd

    from ..methods import FUSIONS

    t = TABLE3[dataset]
    out = {}
    for n in names:
        row = _paper_row(n)
        if n in FUSIONS:
            parts = [_paper_row(p) for p in FUSIONS[n]]
            if sorted(map(str, parts)) == ["Proposed", "SphereFace"]:
                out[n] = (f"SphereFace + Proposed (Sec. 4.2 text, accuracy {YTF_FUSION['SphereFace + Proposed']:.2f} %)"
                          if dataset == "YTF" else "no counterpart: the paper gives its fusion with SphereFace on YTF only")
            elif not any(r.method in parts and r.texture for r in t.rows):
                shape_row = next(p for p in parts if p != "SphereFace")
                out[n] = (f"no counterpart: the paper's {shape_row} gives shape only (no texture row, no fusion), "
                          "and its shape + texture rows fuse a method's own texture parameters, not a texture network")
            else:
                out[n] = ("no counterpart: the paper's shape + texture rows fuse a method's own texture "
                          "parameters, not a texture network")
        elif row == "SphereFace":
            out[n] = (f"SphereFace (Sec. 4.2 text, accuracy {YTF_FUSION['SphereFace']:.2f} %)" if dataset == "YTF"
                      else "no counterpart: the paper reports SphereFace on YTF only, in its text")
        elif row is not None and any(r.method == row for r in t.rows):
            out[n] = t.row(row).label
        else:
            out[n] = f"no counterpart in the paper's {t.ref}"
    return pd.Series(out, name=f"paper row ({t.ref})")


def verification_beside(ours, dataset: str):
    """Table 3 for one dataset: the paper's eight rows, its text's YTF fusion, then ours.

    Parameters
    ----------
    ours : DataFrame
        Our verification table (:meth:`.verification.VerificationTable.table`: methods and
        fusions x :data:`VERIFICATION_METRICS`, "mean ± std" strings, percent).
    dataset : {"LFW", "YTF"}
        The paper's dataset our protocol stands for (``lfw-like`` -> LFW, ``ytf-like`` -> YTF).

    Returns
    -------
    DataFrame
        Index (source, row), source ``"paper"`` (Table 3; its Texture ✓ rows labelled as the
        method's texture *parameters*, ``"3DMM-CNN (texture parameters)"``, ``"3DMM (shape +
        texture parameters)"``, which they are), ``"paper, Sec. 4.2 text"`` (YTF only:
        SphereFace alone and fused, accuracy only; its other metrics read "not in the paper")
        or ``"ours"``; columns Shape, Texture (✓/×; ours: "network" for the texture network),
        the five metrics and "paper row" (for ours: :func:`verification_counterparts`).
    """
    import pandas as pd

    from ..methods import FUSIONS, METHODS

    t = TABLE3[dataset]
    paper = t.frame().set_index("Method")
    # the paper's Texture ✓ is a method's own texture parameters (3DMM [28], 3DMM-CNN [33]), not a network
    paper.index = [f"{r.method} ({r.features} parameters)" if r.texture else r.label for r in t.rows]
    paper["paper row"] = ""
    parts = {"paper": paper}
    if dataset == "YTF":
        text = pd.DataFrame({"Shape": ["×", "✓"], "Texture": ["✓", "✓"],
                             **{m: ([f"{v:.2f}" for v in YTF_FUSION.values()] if m == "accuracy"
                                    else ["not in the paper"] * 2) for m in VERIFICATION_METRICS},
                             "paper row": ["", ""]}, index=list(YTF_FUSION))
        parts["paper, Sec. 4.2 text"] = text

    def flags(name):
        members = FUSIONS.get(name, (name,))
        ms = [METHODS.get(n) for n in members]
        shape = any(m is not None and m.has_shape for m in ms)
        texture = any(m is not None and not m.has_shape for m in ms)
        return ("✓" if shape else "×"), ("network" if texture else "×")

    mine = ours[list(VERIFICATION_METRICS)].astype(object).copy()
    fl = [flags(str(n)) for n in mine.index]
    mine.insert(0, "Texture", [f[1] for f in fl])
    mine.insert(0, "Shape", [f[0] for f in fl])
    mine["paper row"] = verification_counterparts([str(n) for n in mine.index], dataset)
    parts["ours"] = mine
    out = pd.concat(parts)
    out.index.names = ["source", f"{t.ref} (%, mean ± std over 10 folds)"]
    return out
