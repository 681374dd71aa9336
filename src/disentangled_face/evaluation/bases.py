"""Fig. 9: the decoders' bases after Phase II (pre-trained) and Phase III (jointly learned)."""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["learned_bases"]


def learned_bases(bases_before: tuple[np.ndarray, np.ndarray], bases_after: tuple[np.ndarray, np.ndarray],
                  model=None) -> dict:
    """Compare decoder bases after Phase II (pre-trained) and Phase III (jointly learned), Fig. 9.

    Parameters
    ----------
    bases_before, bases_after : (identity (k_id, n, 3), residual (k_exp, n, 3))
        Decoder weight columns (``DisentangledFaceNet.bases()``), mm per unit code.
    model : MorphableModel, optional
        When given, also the fraction of each decoder's energy inside the span of the
        corresponding 3DMM basis (identity: ``A_id``, residual: ``A_exp``; 1.0 = a linear
        combination of the 3DMM modes).

    Returns
    -------
    dict
        ``table``: DataFrame per component (identity, residual) with the mean column norm (mm)
        before and after, the mean cosine between corresponding columns before/after and
        (with ``model``) the in-subspace energy fractions; ``magnitude``: per-vertex norms
        ``{(part, phase): (k, n)}`` for heat maps.
    """
    rows, mags = [], {}
    for part, i in (("identity", 0), ("residual", 1)):
        b0 = np.asarray(bases_before[i], dtype=np.float64)
        b1 = np.asarray(bases_after[i], dtype=np.float64)
        if b0.shape != b1.shape or b0.ndim != 3 or b0.shape[2] != 3:
            raise ValueError(f"{part} bases must both be (k, n, 3), got {b0.shape} and {b1.shape}")
        f0, f1 = b0.reshape(b0.shape[0], -1), b1.reshape(b1.shape[0], -1)
        n0, n1 = np.linalg.norm(f0, axis=1), np.linalg.norm(f1, axis=1)
        cos = (f0 * f1).sum(1) / np.maximum(n0 * n1, 1e-12)
        row = {"component": part, "columns": b0.shape[0], "mean column norm, Phase II (mm)": n0.mean(),
               "mean column norm, Phase III (mm)": n1.mean(), "mean cosine Phase II vs III": cos.mean(),
               "relative change ||W3-W2||/||W2||": np.linalg.norm(f1 - f0) / max(np.linalg.norm(f0), 1e-12)}
        if model is not None:
            A = (model.A_id if part == "identity" else model.A_exp).astype(np.float64)  # (3n, k)
            G = A.T @ A  # the projection onto span(A) is A G^-1 A^T; ||proj f||^2 = (f A) G^-1 (f A)^T
            for tag, f in (("Phase II", f0), ("Phase III", f1)):
                fa = f @ A
                inside = float((fa * np.linalg.solve(G, fa.T).T).sum())
                row[f"energy in 3DMM subspace, {tag}"] = inside / max(float((f**2).sum()), 1e-12)
        rows.append(row)
        mags[(part, "Phase II")] = np.linalg.norm(b0, axis=2)
        mags[(part, "Phase III")] = np.linalg.norm(b1, axis=2)
    return {"table": pd.DataFrame(rows).set_index("component"), "magnitude": mags}
