"""The published results of Liu et al. (CVPR 2018) as data, each tied to its table or figure.

Policy: a number appears here only when it has been transcribed from the paper (CVPR 2018
open-access version, pp. 5216-5225) and checked against it. A value that has not been checked
is ``None`` and is shown as "not transcribed" in the book; a wrong "paper number" would be worse
than a missing one. Each :class:`PaperTable` records a layout (methods, columns, units) so the
chapters can show a paper column beside ours, and a reader can fill in values from the PDF by
adding ``values={(row, column): number}`` to its entry in :data:`TABLES`.

The layouts follow *this book's* experiments (its methods, plus the paper's VRN and 3DSR
baselines, and its yaw sweep and expression names); they have not been checked against the
paper's exact row and column sets either, and a transcriber should adapt them to the PDF. At
the time of writing no value has been transcribed: the book shows "not transcribed" cells,
and every claim in chapter 11 is judged on our own runs only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["PAPER", "PaperTable", "TABLES", "NOT_TRANSCRIBED", "HARDWARE", "get", "YAW_DEGREES",
           "BU3DFE_EXPRESSIONS", "VERIFICATION_METRICS"]

#: Citation of the paper.
PAPER = ("F. Liu, R. Zhu, D. Zeng, Q. Zhao, X. Liu. Disentangling Features in 3D Face Shapes for "
         "Joint Face Reconstruction and Recognition. CVPR 2018, pp. 5216-5225.")

#: Shown in place of a value that was not transcribed from the paper.
NOT_TRANSCRIBED = "not transcribed"

#: The hardware on which the paper timed Table 4: not transcribed (``None``) rather than guessed.
HARDWARE: str | None = None

#: Yaw angles (degrees) of the BU3DFE pose sweep of Table 1 in this project (-90..90, step 10).
YAW_DEGREES = tuple(range(-90, 91, 10))

#: The BU3DFE expressions (neutral plus the six prototypical expressions) of Figs. 6-7.
BU3DFE_EXPRESSIONS = ("neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise")

#: The five verification metrics of Table 3 (percent).
VERIFICATION_METRICS = ("accuracy", "100-EER", "AUC", "TAR@FAR=10%", "TAR@FAR=1%")


@dataclass(frozen=True)
class PaperTable:
    """One table or figure of the paper: its layout and the transcribed values.

    Attributes
    ----------
    ref : str
        Where in the paper (e.g. "Table 3").
    title : str
    rows, columns : tuple of str
    units : str
    values : dict of (row, column) -> float
        Only transcribed, checked values; a missing key means "not transcribed".
    note : str
    """

    ref: str
    title: str
    rows: tuple
    columns: tuple
    units: str
    values: dict = field(default_factory=dict)
    note: str = ""

    @property
    def transcribed(self) -> bool:
        """Whether any value has been transcribed."""
        return bool(self.values)

    def value(self, row: str, column: str):
        """The published value, or ``None`` when not transcribed.

        Raises
        ------
        KeyError
            When ``row`` or ``column`` is not part of the table's layout.
        """
        if row not in self.rows or column not in self.columns:
            raise KeyError(f"{self.ref}: no cell ({row!r}, {column!r}); rows {self.rows}, columns {self.columns}")
        return self.values.get((row, column))

    def frame(self, compact: bool = True):
        """The table as a pandas DataFrame; cells not transcribed read "not transcribed".

        With ``compact`` and no value transcribed at all, the columns collapse into one that
        names the paper's column range, so an empty table does not fill a screen.
        """
        import pandas as pd

        if compact and not self.values:
            cols = self.columns[0] if len(self.columns) == 1 else f"{self.columns[0]} … {self.columns[-1]}"
            df = pd.DataFrame({f"{self.ref}: {cols}": [NOT_TRANSCRIBED] * len(self.rows)}, index=list(self.rows))
            df.index.name = f"paper ({self.units})"
            return df
        data = {c: [self.values.get((r, c), NOT_TRANSCRIBED) for r in self.rows] for c in self.columns}
        df = pd.DataFrame(data, index=list(self.rows))
        df.index.name = f"paper {self.ref} ({self.units})"
        return df


#: Row labels of the paper's tables as laid out here (the book's own display names are those of
#: :data:`.methods.METHODS`).
_PAPER_RECON_ROWS = ("3DMM fitting", "3DMM-CNN", "VRN", "3DSR", "Proposed")
_PAPER_VERIF_ROWS = ("texture (SphereFace)", "3DMM-CNN", "Proposed (shape)",
                     "texture + 3DMM-CNN", "texture + Proposed")

TABLES: dict[str, PaperTable] = {
    "table1": PaperTable(
        "Table 1", "3D RMSE on BU3DFE under different yaw angles", _PAPER_RECON_ROWS,
        tuple(f"{y:+d}°" for y in YAW_DEGREES), "3D RMSE, Sec. 4.1 formula",
        note="The paper's column set may differ from this project's -90..90 sweep; values not transcribed."),
    "table2": PaperTable(
        "Table 2", "3D RMSE on MICC", _PAPER_RECON_ROWS, ("3D RMSE",), "3D RMSE, Sec. 4.1 formula",
        note="Published column split not transcribed."),
    "fig6": PaperTable(
        "Fig. 6", "3D RMSE of the full shape per BU3DFE expression", _PAPER_RECON_ROWS,
        BU3DFE_EXPRESSIONS, "3D RMSE, Sec. 4.1 formula", note="A bar chart in the paper; values not read off."),
    "fig7": PaperTable(
        "Fig. 7", "3D RMSE of the identity shape per BU3DFE expression", ("3DMM-CNN", "Proposed"),
        BU3DFE_EXPRESSIONS, "3D RMSE, Sec. 4.1 formula", note="A bar chart in the paper; values not read off."),
    "table3_lfw": PaperTable(
        "Table 3 (LFW)", "Face verification on LFW", _PAPER_VERIF_ROWS, VERIFICATION_METRICS, "%"),
    "table3_ytf": PaperTable(
        "Table 3 (YTF)", "Face verification on YTF", _PAPER_VERIF_ROWS, VERIFICATION_METRICS, "%"),
    "table4": PaperTable(
        "Table 4", "Time to reconstruct one face", ("3DMM fitting", "3DMM-CNN", "VRN", "3DSR", "Proposed"),
        ("ms/image",), "ms per image", note="The paper's hardware is not transcribed here either."),
}


def get(name: str) -> PaperTable:
    """A table by key (``table1``, ``table2``, ``fig6``, ``fig7``, ``table3_lfw``,
    ``table3_ytf``, ``table4``).

    Raises
    ------
    KeyError
        Unknown key (the message lists the known ones).
    """
    if name not in TABLES:
        raise KeyError(f"unknown paper table {name!r}; known: {sorted(TABLES)}")
    return TABLES[name]
