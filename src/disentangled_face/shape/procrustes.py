"""Least-squares similarity alignment of point sets (Umeyama 1991), used by Sec. 4.1.

:func:`similarity_procrustes` is Umeyama's least-squares similarity fit (scale, proper rotation,
translation; Umeyama 1991, "Least-squares estimation of transformation parameters between two
point patterns", IEEE TPAMI 13(4)); :func:`apply_similarity` applies it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["similarity_procrustes", "apply_similarity"]


def similarity_procrustes(source, target, weights=None):
    """Least-squares similarity transform mapping ``source`` onto ``target`` (Umeyama 1991).

    Finds scale ``c``, proper rotation ``R`` (``det R = +1``) and translation ``t`` minimising
    ``sum_i w_i || target_i - (c R source_i + t) ||^2``. A plain SVD (Kabsch) solution can be a
    reflection; Umeyama's sign correction ``S = diag(1, ..., 1, det(U) det(V))`` rules it out,
    including for degenerate (rank-deficient) point sets such as two points in 2D.

    Parameters
    ----------
    source, target : array_like, shape (n, d) or (B, n, d), d in {2, 3}
        Corresponding points (for Sec. 4.1: the 68 3D landmarks of the reconstruction and of the
        ground truth, mm). Batches are solved at once.
    weights : array_like, shape (n,) or (B, n), optional
        Non-negative point weights (default: all ones).

    Returns
    -------
    scale : float or ndarray (B,)
    R : ndarray, shape (d, d) or (B, d, d), det +1
    t : ndarray, shape (d,) or (B, d)
        ``target ~ scale * source @ R.T + t``.

    Raises
    ------
    ValueError
        When the shapes differ, ``d`` is not 2 or 3, fewer than 2 points are given, the source
        points all coincide (scale undefined), or a value is not finite.
    """
    X = np.asarray(source, dtype=np.float64)
    Y = np.asarray(target, dtype=np.float64)
    if X.shape != Y.shape:
        raise ValueError(f"source and target must have the same shape, got {X.shape} and {Y.shape}")
    if X.ndim not in (2, 3) or X.shape[-1] not in (2, 3):
        raise ValueError(f"points must have shape (n, d) or (B, n, d) with d in (2, 3), got {X.shape}")
    if X.shape[-2] < 2:
        raise ValueError(f"need at least 2 corresponding points, got {X.shape[-2]}")
    if not (np.isfinite(X).all() and np.isfinite(Y).all()):
        raise ValueError("source and target must be finite (found NaN or inf)")
    single = X.ndim == 2
    if single:
        X, Y = X[None], Y[None]
    B, n, d = X.shape
    if weights is None:
        w = np.ones((B, n))
    else:
        w = np.broadcast_to(np.asarray(weights, dtype=np.float64), (B, n)) if np.ndim(weights) == 1 \
            else np.asarray(weights, dtype=np.float64)
        if w.shape != (B, n) or (w < 0).any() or not (w.sum(-1) > 0).all():
            raise ValueError(f"weights must be non-negative with shape ({n},) or ({B}, {n}) and a positive sum")
    w = w / w.sum(-1, keepdims=True)
    mx = np.einsum("bn,bnd->bd", w, X)
    my = np.einsum("bn,bnd->bd", w, Y)
    Xc, Yc = X - mx[:, None], Y - my[:, None]
    var_x = np.einsum("bn,bnd->b", w, Xc**2)
    if (var_x <= 1e-12 * max(1.0, float(np.abs(X).max()) ** 2)).any():
        raise ValueError("source points coincide: the similarity scale is undefined")
    cov = np.einsum("bn,bni,bnj->bij", w, Yc, Xc)  # (B, d, d), Sigma_xy of Umeyama
    U, D, Vt = np.linalg.svd(cov)
    S = np.ones((B, d))
    S[:, -1] = np.sign(np.linalg.det(U) * np.linalg.det(Vt))
    S[S == 0] = 1.0
    R = U @ (S[:, :, None] * Vt)
    scale = (D * S).sum(-1) / var_x
    t = my - scale[:, None] * np.einsum("bij,bj->bi", R, mx)
    if single:
        return float(scale[0]), R[0], t[0]
    return scale, R, t


def as_torch(x: np.ndarray):
    """A float64 torch view of ``x`` when it is a writable C-contiguous float64 array, else a copy."""
    import torch  # noqa: PLC0415

    ok = x.dtype == np.float64 and x.flags.writeable and x.flags.c_contiguous
    return torch.from_numpy(x if ok else np.array(x, dtype=np.float64, order="C"))


def apply_similarity(points, scale, R, t):
    """Apply ``scale * points @ R.T + t`` (the transform of :func:`similarity_procrustes`).

    Parameters
    ----------
    points : array_like, shape (n, d) or (B, n, d)
    scale : float or (B,); R : (d, d) or (B, d, d); t : (d,) or (B, d)

    Returns
    -------
    ndarray, same shape as ``points``
    """
    P = np.asarray(points, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    R = np.asarray(R, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    if P.ndim == 3 and P.shape[0] > 1:
        # a batch: one torch baddbmm in float64 (the same transform, about 3 x faster than
        # NumPy's stacked matmul of (n, 3) by (3, 3) on 2 cores)
        import torch  # noqa: PLC0415 (the module otherwise needs NumPy only)

        B, n, d = P.shape
        M = np.broadcast_to(R, (B, d, d)) * np.broadcast_to(scale, (B,))[:, None, None]
        T = as_torch(np.broadcast_to(t, (B, d)))[:, None, :]
        return torch.baddbmm(T.expand(B, n, d), as_torch(P), as_torch(M).transpose(1, 2)).numpy()
    out = P @ np.swapaxes(R, -1, -2)
    if scale.ndim == 1:
        out = out * scale[:, None, None]
    else:
        out = out * scale
    return out + (t[:, None, :] if t.ndim == 2 else t)
