"""How far the expression blendshapes lie inside the span of the identity modes.

ICT-FaceKit's two bases are not orthogonal: much of what an expression blendshape does to the
face, an identity mode can do too. :func:`expression_energy_in_identity_span` measures it per
blendshape, as the share of its squared norm that the least-squares projection onto
``span(A_id)`` keeps (``numpy.linalg.lstsq``). It bounds any split of a shape into an identity
and a residual part with these bases (chapters 1, 3 and 10): a deformation in both spans can be
explained by either code.

>>> import numpy as np
>>> from disentangled_face.shape import MorphableModel
>>> m = MorphableModel(mean=np.zeros((2, 3)), id_basis=np.eye(6)[:1].reshape(1, 2, 3),
...                    exp_basis=np.eye(6)[:2].reshape(2, 2, 3), triangles=np.zeros((0, 3), int),
...                    landmarks=np.zeros(0, int), exp_names=["in", "out"])
>>> expression_energy_in_identity_span(m).round(3).tolist()
[1.0, 0.0]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .morphable import MorphableModel

__all__ = ["expression_energy_in_identity_span"]


def expression_energy_in_identity_span(model: MorphableModel) -> pd.Series:
    """Share (0-1) of each expression blendshape's energy inside ``span(A_id)``.

    Parameters
    ----------
    model : MorphableModel
        Its ``id_basis`` (k_id, n, 3) and ``exp_basis`` (k_exp, n, 3), mm per unit.

    Returns
    -------
    pandas.Series
        Indexed by the blendshape names (``model.exp_names``), ``||P b||² / ||b||²`` with ``P``
        the orthogonal projector onto the identity modes' span; 0 for a zero blendshape.
    """
    A = np.asarray(model.id_basis, np.float64).reshape(model.n_id, -1).T       # (3n, k_id)
    B = np.asarray(model.exp_basis, np.float64).reshape(model.n_exp, -1).T     # (3n, k_exp)
    coef = np.linalg.lstsq(A, B, rcond=None)[0]
    kept = ((A @ coef) ** 2).sum(0)
    total = (B ** 2).sum(0)
    share = np.divide(kept, total, out=np.zeros_like(total), where=total > 0)
    return pd.Series(share, index=list(model.exp_names), name="energy in identity span")
