"""The morphable model and the composite shape model of the paper (Eq. 1-3 and 6).

A face shape is the vector of n 3D vertices, flattened as in Eq. 1::

    s = [x1, y1, z1, x2, y2, z2, ..., xn, yn, zn]^T  (3n,)

and, equivalently here, an ``(n, 3)`` array. The 3DMM of Eq. 6 writes

    s = s_mean + A_id alpha_id + A_exp alpha_exp                         (Eq. 6)

and the paper's decomposition (Eq. 2) names the two deltas

    s = s_mean + Delta s_Id + Delta s_Res,  Delta s_Id = A_id alpha_id,
                                           Delta s_Res = A_exp alpha_exp.

The landmark subset ``s_U`` (Eq. 6) keeps the 68 landmark vertices.

Conventions (the same for every model loaded here):

* coordinates in **millimetres**;
* ``A_id`` is scaled by the identity standard deviations, so the prior of ``alpha_id`` is
  standard normal, ``alpha_id ~ N(0, I)``;
* ``A_exp`` per unit expression weight. For ICT-FaceKit these are blendshapes with weights in
  ``[0, 1]`` (``exp_bounds = (0, 1)``); for a PCA expression basis (FaceWarehouse) the basis is
  scaled by its standard deviations and ``exp_bounds`` is ``None``.

Every shape method accepts numpy arrays or torch tensors, a single code ``(k,)`` or a batch
``(B, k)``, and returns the same kind (torch on the input's device and dtype).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

Array = Any  # numpy.ndarray or torch.Tensor

#: iBUG 68-point index of the nose tip (0-based), the centre of the 95 mm crop of Sec. 4.1.
NOSE_TIP_LANDMARK = 30


def _is_torch(x: Any) -> bool:
    return isinstance(x, torch.Tensor)


@dataclass
class MorphableModel:
    """A linear 3D morphable model with identity and expression parts (paper Eq. 1-3 and 6).

    Parameters
    ----------
    mean : ndarray, shape (n, 3)
        Mean shape ``s_mean`` in mm.
    id_basis : ndarray, shape (k_id, n, 3)
        Identity modes in mm per unit of a standard-normal ``alpha_id``.
    exp_basis : ndarray, shape (k_exp, n, 3)
        Expression modes in mm per unit ``alpha_exp``.
    triangles : ndarray, shape (m, 3)
        0-based vertex indices of the mesh triangles (for drawing and rendering).
    landmarks : ndarray, shape (68,)
        0-based vertex indices of the iBUG 68 landmarks, in that scheme's order.
    exp_names : list of str
        A name per expression mode.
    exp_bounds : tuple (low, high) or None
        Admissible range of each expression weight (``(0, 1)`` for blendshapes), or ``None``
        for a standard-normal PCA expression prior.
    name : str
        Human-readable model name.

    Raises
    ------
    ValueError
        When the arrays' shapes disagree, or a landmark or triangle index is outside ``[0, n)``.

    Examples
    --------
    >>> m = MorphableModel.toy(n=10, k_id=3, k_exp=2)
    >>> m.shape(np.zeros(3), np.zeros(2)).shape
    (10, 3)
    """

    mean: np.ndarray
    id_basis: np.ndarray
    exp_basis: np.ndarray
    triangles: np.ndarray
    landmarks: np.ndarray
    exp_names: list[str] = field(default_factory=list)
    exp_bounds: tuple[float, float] | None = (0.0, 1.0)
    name: str = "morphable model"
    _torch_cache: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.mean = np.ascontiguousarray(self.mean, dtype=np.float32)
        self.id_basis = np.ascontiguousarray(self.id_basis, dtype=np.float32)
        self.exp_basis = np.ascontiguousarray(self.exp_basis, dtype=np.float32)
        self.triangles = np.ascontiguousarray(self.triangles, dtype=np.int64)
        self.landmarks = np.ascontiguousarray(self.landmarks, dtype=np.int64)
        n = self.mean.shape[0]
        if self.mean.ndim != 2 or self.mean.shape[1] != 3:
            raise ValueError(f"mean must have shape (n, 3), got {self.mean.shape}")
        for nm, b in (("id_basis", self.id_basis), ("exp_basis", self.exp_basis)):
            if b.ndim != 3 or b.shape[1:] != (n, 3):
                raise ValueError(f"{nm} must have shape (k, {n}, 3), got {b.shape}")
        if self.triangles.ndim != 2 or self.triangles.shape[1] != 3:
            raise ValueError(f"triangles must have shape (m, 3), got {self.triangles.shape}")
        for nm, idx in (("landmarks", self.landmarks), ("triangles", self.triangles)):
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                raise ValueError(f"{nm} indices must lie in [0, {n}), got [{idx.min()}, {idx.max()}]")
        if not self.exp_names:
            self.exp_names = [f"exp{i:02d}" for i in range(self.n_exp)]
        if len(self.exp_names) != self.n_exp:
            raise ValueError(f"exp_names must have {self.n_exp} entries, got {len(self.exp_names)}")
        self.exp_names = [str(s) for s in self.exp_names]

    # ------------------------------------------------------------------ sizes and matrices
    @property
    def n_vertices(self) -> int:
        """Number of vertices n."""
        return self.mean.shape[0]

    @property
    def n_id(self) -> int:
        """Number of identity modes (dimension of ``alpha_id``)."""
        return self.id_basis.shape[0]

    @property
    def n_exp(self) -> int:
        """Number of expression modes (dimension of ``alpha_exp``)."""
        return self.exp_basis.shape[0]

    @property
    def s_mean(self) -> np.ndarray:
        """Mean shape flattened as in Eq. 1, shape (3n,), mm."""
        return self.mean.reshape(-1)

    @property
    def A_id(self) -> np.ndarray:
        """Identity basis as the (3n, k_id) matrix of Eq. 6, mm per unit ``alpha_id``."""
        return self.id_basis.reshape(self.n_id, -1).T

    @property
    def A_exp(self) -> np.ndarray:
        """Expression basis as the (3n, k_exp) matrix of Eq. 6, mm per unit ``alpha_exp``."""
        return self.exp_basis.reshape(self.n_exp, -1).T

    @property
    def nose_tip(self) -> int:
        """Vertex index of the nose tip (iBUG landmark 31, 0-based 30)."""
        return int(self.landmarks[NOSE_TIP_LANDMARK])

    def _bases(self, like: Array) -> tuple[Array, Array, Array]:
        """(mean (n,3), id (k_id,n,3), exp (k_exp,n,3)) as numpy or torch matching ``like``."""
        if not _is_torch(like):
            return self.mean, self.id_basis, self.exp_basis
        key = (like.device, like.dtype)
        if key not in self._torch_cache:
            self._torch_cache[key] = tuple(
                torch.as_tensor(a, device=like.device, dtype=like.dtype)
                for a in (self.mean, self.id_basis, self.exp_basis)
            )
        return self._torch_cache[key]

    # ------------------------------------------------------------------ validation
    @staticmethod
    def _codes(alpha: Array, k: int, name: str) -> tuple[Array, bool]:
        """Return ``alpha`` as (B, k) and whether it was a single code."""
        if not _is_torch(alpha):
            alpha = np.asarray(alpha, dtype=np.float32)
        if alpha.ndim == 1 and alpha.shape[0] == k:
            return alpha[None], True
        if alpha.ndim == 2 and alpha.shape[1] == k:
            return alpha, False
        raise ValueError(f"{name} must have shape ({k},) or (B, {k}), got {tuple(alpha.shape)}")

    def _finish(self, out: Array, single: bool, flat: bool) -> Array:
        if flat:
            out = out.reshape(out.shape[0], -1)
        return out[0] if single else out

    # ------------------------------------------------------------------ Eq. 1-3
    def delta_id(self, alpha_id: Array, flat: bool = False) -> Array:
        """Identity deformation ``Delta s_Id = A_id alpha_id`` (Eq. 2-3).

        Parameters
        ----------
        alpha_id : array or tensor, shape (k_id,) or (B, k_id)
        flat : bool
            Return (B, 3n) as in Eq. 1 instead of (B, n, 3).

        Returns
        -------
        array or tensor, shape (B, n, 3) (or (n, 3) for a single code), mm

        Raises
        ------
        ValueError
            When ``alpha_id`` does not have k_id entries in its last axis.
        """
        a, single = self._codes(alpha_id, self.n_id, "alpha_id")
        _, B, _ = self._bases(a)
        out = (a @ B.reshape(self.n_id, -1)).reshape(a.shape[0], self.n_vertices, 3)
        return self._finish(out, single, flat)

    def delta_res(self, alpha_exp: Array, flat: bool = False) -> Array:
        """Residual (expression) deformation ``Delta s_Res = A_exp alpha_exp`` (Eq. 2-3).

        Shapes as :meth:`delta_id`, with k_exp in place of k_id.
        """
        a, single = self._codes(alpha_exp, self.n_exp, "alpha_exp")
        _, _, E = self._bases(a)
        out = (a @ E.reshape(self.n_exp, -1)).reshape(a.shape[0], self.n_vertices, 3)
        return self._finish(out, single, flat)

    def identity_shape(self, alpha_id: Array, flat: bool = False) -> Array:
        """Neutral, identity-only shape ``s_mean + Delta s_Id``, (B, n, 3) mm."""
        d = self.delta_id(alpha_id)
        mean, _, _ = self._bases(d)
        out = d + mean
        return out.reshape(*out.shape[:-2], -1) if flat else out

    def shape(self, alpha_id: Array, alpha_exp: Array | None = None, flat: bool = False) -> Array:
        """Full shape ``s = s_mean + A_id alpha_id + A_exp alpha_exp`` (Eq. 6).

        Parameters
        ----------
        alpha_id : array or tensor, shape (k_id,) or (B, k_id)
        alpha_exp : array or tensor, shape (k_exp,) or (B, k_exp), optional
            Zero (neutral) when omitted. Its batch must match ``alpha_id``'s.
        flat : bool
            Return the Eq. 1 layout (B, 3n) instead of (B, n, 3).

        Returns
        -------
        array or tensor, shape (B, n, 3) or (n, 3) for single codes, mm

        Raises
        ------
        ValueError
            On a wrong code dimension or mismatched batch sizes.
        """
        s = self.identity_shape(alpha_id)
        if alpha_exp is not None:
            r = self.delta_res(alpha_exp)
            if r.shape != s.shape:
                raise ValueError(
                    f"alpha_id and alpha_exp batches differ: shapes {tuple(s.shape)} and {tuple(r.shape)}"
                )
            s = s + r
        return s.reshape(*s.shape[:-2], -1) if flat else s

    # ------------------------------------------------------------------ landmarks (Eq. 6)
    def landmarks_of(self, shape: Array) -> Array:
        """Landmark subset ``s_U`` of a shape (Eq. 6).

        Parameters
        ----------
        shape : array or tensor, shape (n, 3), (B, n, 3), (3n,) or (B, 3n)

        Returns
        -------
        array or tensor, shape (68, 3) or (B, 68, 3), mm

        Raises
        ------
        ValueError
            When ``shape`` does not have n vertices.
        """
        s = self.as_points(shape)
        return s[..., self.landmarks, :]

    def as_points(self, shape: Array) -> Array:
        """Reshape a flattened (3n,) / (B, 3n) shape to (n, 3) / (B, n, 3); check n.

        Raises
        ------
        ValueError
            When the vertex count is not n.
        """
        n = self.n_vertices
        if shape.shape[-1] == 3 * n and (shape.ndim == 1 or shape.shape[-2:] != (n, 3)):
            return shape.reshape(*shape.shape[:-1], n, 3)
        if shape.ndim >= 2 and tuple(shape.shape[-2:]) == (n, 3):
            return shape
        raise ValueError(f"a shape must be (n, 3), (B, n, 3), (3n,) or (B, 3n) with n={n}, got {tuple(shape.shape)}")

    def landmark_bases(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mean and bases restricted to the landmarks (the ``U`` rows of Eq. 6).

        Returns
        -------
        mean_U : ndarray (68, 3); id_U : ndarray (k_id, 68, 3); exp_U : ndarray (k_exp, 68, 3)
        """
        L = self.landmarks
        return self.mean[L], self.id_basis[:, L], self.exp_basis[:, L]

    # ------------------------------------------------------------------ prior
    def sample(self, n: int, rng: np.random.Generator | int | None = None,
               exp_active: int = 4, exp_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """Draw codes from the model's prior.

        ``alpha_id ~ N(0, I)``. For bounded (blendshape) expressions, ``exp_active`` weights
        per face are drawn uniformly in ``[0, exp_scale]`` and the rest are zero; for a PCA
        expression basis, ``alpha_exp ~ N(0, exp_scale^2 I)``.

        Returns
        -------
        alpha_id : ndarray (n, k_id); alpha_exp : ndarray (n, k_exp)
        """
        rng = np.random.default_rng(rng)
        alpha_id = rng.standard_normal((n, self.n_id)).astype(np.float32)
        if self.exp_bounds is None:
            alpha_exp = (exp_scale * rng.standard_normal((n, self.n_exp))).astype(np.float32)
        else:
            alpha_exp = np.zeros((n, self.n_exp), np.float32)
            k = min(exp_active, self.n_exp)
            for i in range(n):
                idx = rng.choice(self.n_exp, size=k, replace=False)
                alpha_exp[i, idx] = rng.uniform(0.0, exp_scale, size=k)
            lo, hi = self.exp_bounds
            alpha_exp = np.clip(alpha_exp, lo, hi)
        return alpha_id, alpha_exp

    # ------------------------------------------------------------------ constructors
    @classmethod
    def toy(cls, n: int = 50, k_id: int = 5, k_exp: int = 3, seed: int = 0) -> "MorphableModel":
        """A small random model (for tests and examples); landmarks are the first min(68, n)."""
        rng = np.random.default_rng(seed)
        tris = np.array([[i, i + 1, i + 2] for i in range(n - 2)])
        return cls(
            mean=rng.normal(size=(n, 3)) * 50,
            id_basis=rng.normal(size=(k_id, n, 3)),
            exp_basis=rng.normal(size=(k_exp, n, 3)),
            triangles=tris,
            landmarks=np.arange(min(68, n)),
            name="toy",
        )

    def subset(self, n_id: int | None = None, n_exp: int | None = None) -> "MorphableModel":
        """The same model with only the first ``n_id`` identity and ``n_exp`` expression modes."""
        return MorphableModel(
            mean=self.mean, id_basis=self.id_basis[: n_id or self.n_id],
            exp_basis=self.exp_basis[: n_exp or self.n_exp], triangles=self.triangles,
            landmarks=self.landmarks, exp_names=self.exp_names[: n_exp or self.n_exp],
            exp_bounds=self.exp_bounds, name=self.name,
        )


def load_landmark_indices(indices: Any, n_vertices: int, one_based: bool | None = None) -> np.ndarray:
    """Read 68 landmark vertex indices (array or text file) and return them 0-based.

    Parameters
    ----------
    indices : array-like or path
        68 indices, or a text file with one index per line (or whitespace-separated).
    n_vertices : int
        Number of vertices; indices must lie in ``[0, n)`` after conversion.
    one_based : bool, optional
        Whether the indices are MATLAB-style 1-based. When ``None``, 1-based is assumed only
        if the smallest index is at least 1 and the largest equals ``n_vertices`` (which a
        0-based index cannot).

    Raises
    ------
    ValueError
        When there are not 68 indices or one lies outside ``[0, n)``.
    """
    if isinstance(indices, (str, os.PathLike)):
        idx = np.loadtxt(indices, dtype=np.int64).reshape(-1)
    else:
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    if idx.shape != (68,):
        raise ValueError(f"expected 68 landmark indices, got {idx.size}")
    if one_based is None:
        one_based = idx.min() >= 1 and idx.max() == n_vertices
    if one_based:
        idx = idx - 1
    if idx.min() < 0 or idx.max() >= n_vertices:
        raise ValueError(f"landmark indices must lie in [0, {n_vertices}), got [{idx.min()}, {idx.max()}]")
    return idx
