"""The Basel Face Model 2009 with a user-supplied expression basis (the paper's 199 + 29 modes).

BFM 2009 may not be redistributed; a reader who has it loads it here into the same
:class:`~disentangled_face.shape.morphable.MorphableModel` conventions (mm, N(0, I) priors).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .morphable import MorphableModel, load_landmark_indices


def _load_mat(path: Path) -> dict[str, np.ndarray]:
    """Read a MATLAB file: v4-v7.2 with scipy.io, v7.3 (HDF5) with h5py."""
    import scipy.io

    try:
        return {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}
    except NotImplementedError:  # v7.3
        import h5py

        with h5py.File(path, "r") as f:
            return {k: np.asarray(f[k]).T for k in f.keys()}


def _scaled_basis(components: np.ndarray, std: np.ndarray, k: int | None, n: int, to_mm: float) -> np.ndarray:
    """The first ``k`` (all when None) principal components (3n, K) times their standard
    deviations (K,), as a basis (k, n, 3) in mm, so that the prior on the codes is N(0, I)."""
    k = k or std.size
    return (components[:, :k] * std[:k]).T.reshape(k, n, 3) * to_mm


def load_bfm2009(path: str | os.PathLike, expression: str | os.PathLike | dict,
                 landmarks: Any, landmarks_one_based: bool | None = None,
                 n_id: int | None = None, n_exp: int | None = None,
                 expression_units_mm: float = 1e-3) -> MorphableModel:
    """Load the Basel Face Model 2009 with a user-supplied expression basis (paper's 199 + 29).

    Parameters
    ----------
    path : path
        ``01_MorphableModel.mat`` of BFM 2009, holding ``shapeMU`` (3n, 1), ``shapePC``
        (3n, 199), ``shapeEV`` (199, 1) (standard deviations) and ``tl`` (m, 3) 1-based
        triangles, coordinates in micrometres (converted to mm here).
    expression : path or dict
        A ``.mat``/``.npz`` file or dict with ``w_exp`` (3n, k) (an expression PCA basis in
        the BFM's vertex order, for example from FaceWarehouse, as 3DDFA distributes it) and
        ``sigma_exp`` (k,) its standard deviations. Units: ``expression_units_mm`` mm per unit.
    landmarks : array-like or path
        68 landmark vertex indices in iBUG order (see :func:`load_landmark_indices`).
    landmarks_one_based : bool, optional
        Whether those indices are 1-based (MATLAB).
    n_id, n_exp : int, optional
        Keep only the first modes.
    expression_units_mm : float
        Millimetres per unit of ``w_exp`` (1e-3 for micrometres, as BFM).

    Returns
    -------
    MorphableModel
        Bases scaled by their standard deviations so both priors are N(0, I);
        ``exp_bounds`` is ``None``.

    Raises
    ------
    FileNotFoundError
        When a file does not exist.
    KeyError
        When a required variable is missing (the message names the file and the variable).
    ValueError
        When the sizes disagree.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"BFM 2009 file not found: {path} (expected 01_MorphableModel.mat)")
    mat = _load_mat(path)
    for key in ("shapeMU", "shapePC", "shapeEV", "tl"):
        if key not in mat:
            raise KeyError(f"{path} has no variable '{key}' (expected the BFM 2009 01_MorphableModel.mat layout)")
    um = 1e-3
    mu = np.asarray(mat["shapeMU"], np.float64).reshape(-1)
    if mu.size % 3:
        raise ValueError(f"{path}: shapeMU has {mu.size} entries, not a multiple of 3")
    n = mu.size // 3
    pc = np.asarray(mat["shapePC"], np.float64)
    ev = np.asarray(mat["shapeEV"], np.float64).reshape(-1)
    if pc.shape[0] != 3 * n or pc.shape[1] != ev.size:
        raise ValueError(f"{path}: shapePC {pc.shape} does not match shapeMU ({3 * n}) and shapeEV ({ev.size})")
    id_basis = _scaled_basis(pc, ev, n_id, n, um)

    if isinstance(expression, dict):
        emat = expression
        ename = "expression dict"
    else:
        epath = Path(expression)
        if not epath.is_file():
            raise FileNotFoundError(f"expression basis file not found: {epath} (expected w_exp and sigma_exp)")
        emat = dict(np.load(epath)) if epath.suffix == ".npz" else _load_mat(epath)
        ename = str(epath)
    for key in ("w_exp", "sigma_exp"):
        if key not in emat:
            raise KeyError(f"{ename} has no variable '{key}' (expected w_exp (3n, k) and sigma_exp (k,))")
    w = np.asarray(emat["w_exp"], np.float64)
    sig = np.asarray(emat["sigma_exp"], np.float64).reshape(-1)
    if w.shape[0] != 3 * n or w.shape[1] != sig.size:
        raise ValueError(f"{ename}: w_exp {w.shape} must be ({3 * n}, k) with k = len(sigma_exp) = {sig.size}")
    exp_basis = _scaled_basis(w, sig, n_exp, n, expression_units_mm)

    tl = np.asarray(mat["tl"], np.int64)
    if tl.ndim != 2 or 3 not in tl.shape:
        raise ValueError(f"{path}: tl must be (m, 3), got {tl.shape}")
    tl = tl if tl.shape[1] == 3 else tl.T
    return MorphableModel(
        mean=mu.reshape(n, 3) * um, id_basis=id_basis, exp_basis=exp_basis,
        triangles=tl - 1, landmarks=load_landmark_indices(landmarks, n, landmarks_one_based),
        exp_bounds=None, name="Basel Face Model 2009 + expression basis",
    )
