"""A synthetic protocol loaded from its HDF5 file (:class:`SynthSet`, :func:`load_protocol`).

HDF5 layout (one file per protocol, ``data/synth/<protocol>-<config_hash>.h5``)
-------------------------------------------------------------------------------
All protocols (N images):

=====================  ==================  ==========================================
dataset                shape, dtype        meaning
=====================  ==================  ==========================================
``images``             (N, 112, 96, 3) u8  RGB crops (lzf-compressed, chunked)
``landmarks``          (N, 68, 2) f32      pixels (u right, v down), with detector noise
``landmarks_true``     (N, 68, 2) f32      exact projections of the landmark vertices
``visible``            (N, 68) bool        z-buffer visibility of each landmark
``label``              (N,) i64            subject, contiguous 0..K-1 within the protocol
``subject_id``         (N,) i64            global subject id (seeds the subject)
``alpha_id``           (N, k_id) f32       identity code (standard normal prior)
``alpha_exp``          (N, k_exp) f32      expression code (blendshape weights)
``yaw, pitch, roll``   (N,) f32            radians (``camera.rotation_from_euler``)
``scale``              (N,) f32            f, pixels per mm
``trans``              (N, 2) f32          t = (t_u, t_v), pixels
=====================  ==================  ==========================================

Pair protocols (``lfw-like``, ``ytf-like``) add ``pairs`` (P, 2) i64, ``same`` (P,) bool and
``fold`` (P,) i64 (10 folds). For ``lfw-like`` pairs index images; for ``ytf-like`` they index
sequences: ``sequence`` (N,) i64 gives each frame's sequence and ``frame`` (N,) its position.
``bu3dfe-like`` adds ``expression`` (N,) ASCII names (keys of :data:`~disentangled_face.data.expressions.EXPRESSIONS`),
``intensity`` (N,) f32 and ``sweep`` (N,) bool (true for the neutral yaw sweep, whose yaw is
the ``yaw`` column). ``micc-like`` adds ``blur_sigma`` and ``noise_std`` (N,) f32. The file's
attributes hold ``protocol``, ``config`` (JSON of the generating config), ``model`` (the model
name), ``generator_version`` and ``n_subjects``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..shape import camera
from .records import FaceSample, Scan3D, VerificationPair

__all__ = ["SynthSet", "load_protocol"]


class _LazyImages:
    """The ``images`` dataset of a protocol file, read on indexing (h5py opened per access)."""

    def __init__(self, path: Path, shape: tuple) -> None:
        self.path, self.shape, self.dtype = path, shape, np.dtype(np.uint8)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, idx):
        import h5py

        with h5py.File(self.path, "r") as h5:
            d = h5["images"]
            if isinstance(idx, (list, np.ndarray)):
                idx = np.asarray(idx)
                if idx.dtype == bool:
                    idx = np.flatnonzero(idx)
                order = np.argsort(idx)
                out = np.empty((len(idx),) + self.shape[1:], np.uint8)
                out[order] = d[np.sort(idx)] if len(np.unique(idx)) == len(idx) else [d[i] for i in np.sort(idx)]
                return out
            return d[idx]

    def __array__(self, dtype=None, copy=None):
        a = self[:]
        return a if dtype is None else a.astype(dtype)


@dataclass
class SynthSet:
    """A synthetic protocol loaded from its HDF5 file (see the module docstring for the arrays).

    ``images`` is read lazily (index it, or ``np.asarray(s.images)`` for all). Optional
    columns are ``None`` when the protocol has none.
    """

    path: Path
    protocol: str
    config: dict
    model_name: str
    images: Any
    landmarks: np.ndarray
    landmarks_true: np.ndarray
    visible: np.ndarray
    label: np.ndarray
    subject_id: np.ndarray
    alpha_id: np.ndarray
    alpha_exp: np.ndarray
    yaw: np.ndarray
    pitch: np.ndarray
    roll: np.ndarray
    scale: np.ndarray
    trans: np.ndarray
    pairs: np.ndarray | None = None
    same: np.ndarray | None = None
    fold: np.ndarray | None = None
    sequence: np.ndarray | None = None
    frame: np.ndarray | None = None
    expression: np.ndarray | None = None
    intensity: np.ndarray | None = None
    sweep: np.ndarray | None = None
    blur_sigma: np.ndarray | None = None
    noise_std: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.label.shape[0])

    @property
    def n_subjects(self) -> int:
        """Number of distinct subjects."""
        return int(np.unique(self.label).size)

    def _idx(self, idx) -> np.ndarray:
        idx = np.arange(len(self)) if idx is None else np.atleast_1d(np.asarray(idx))
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise ValueError(f"indices must lie in [0, {len(self)}), got [{idx.min()}, {idx.max()}]")
        return idx

    def shapes(self, model, idx=None) -> np.ndarray:
        """Ground-truth 3D shapes ``model.shape(alpha_id, alpha_exp)`` (len(idx), n, 3), mm.

        Raises
        ------
        ValueError
            When the model's code sizes differ from the file's (a different model).
        """
        idx = self._idx(idx)
        if model.n_id != self.alpha_id.shape[1] or model.n_exp != self.alpha_exp.shape[1]:
            raise ValueError(f"{self.path} was generated with k_id={self.alpha_id.shape[1]}, "
                             f"k_exp={self.alpha_exp.shape[1]}; the model has {model.n_id}, {model.n_exp}")
        return model.shape(self.alpha_id[idx], self.alpha_exp[idx])

    def scans(self, model, idx=None) -> list:
        """Ground-truth 3D scans of images ``idx`` as :class:`~disentangled_face.data.records.Scan3D`
        records (the records real BU-3DFE / MICC loaders return): vertices
        ``model.shape(alpha_id, alpha_exp)`` (mm, model frame, no pose), the model's triangles,
        the 68 landmark vertices, the subject's global id, and the expression name and
        intensity (``bu3dfe-like``; ``"neutral"``/0 when all weights are zero, ``"mixed"``
        otherwise)."""
        idx = self._idx(idx)
        shapes = self.shapes(model, idx)
        out = []
        for k, i in enumerate(idx):
            if self.expression is not None:
                expr, inten = str(self.expression[i]), float(self.intensity[i])
            else:
                expr, inten = ("neutral", 0.0) if not np.any(self.alpha_exp[i]) else ("mixed", 1.0)
            out.append(Scan3D(vertices=shapes[k], triangles=model.triangles, landmarks=model.landmarks_of(shapes[k]),
                              subject=str(self.subject_id[i]), expression=expr, intensity=inten,
                              source=f"{self.protocol}:{i}"))
        return out

    def rotations(self, idx=None) -> np.ndarray:
        """Rotation matrices (len(idx), 3, 3) of ``camera.rotation_from_euler``."""
        idx = self._idx(idx)
        return camera.rotation_from_euler(self.yaw[idx], self.pitch[idx], self.roll[idx])

    def sample(self, i: int):
        """Image ``i`` as a :class:`~disentangled_face.data.records.FaceSample`."""
        i = int(self._idx(i)[0])
        return FaceSample(image=self.images[i], label=int(self.label[i]), subject=str(self.subject_id[i]),
                          landmarks=self.landmarks[i], visible=self.visible[i], alpha_id=self.alpha_id[i],
                          alpha_exp=self.alpha_exp[i], yaw=float(self.yaw[i]), pitch=float(self.pitch[i]),
                          roll=float(self.roll[i]), scale=float(self.scale[i]), trans=self.trans[i],
                          sequence=None if self.sequence is None else int(self.sequence[i]), index=i,
                          source=f"{self.protocol}:{i}")

    def verification_pairs(self) -> list:
        """The pairs as :class:`~disentangled_face.data.records.VerificationPair` records (image
        indices, or sequence ids for ``ytf-like``)."""
        if self.pairs is None:
            raise ValueError(f"protocol {self.protocol!r} has no verification pairs")
        kind = "sequence" if self.sequence is not None else "image"
        return [VerificationPair(int(a), int(b), bool(s), int(f), kind)
                for (a, b), s, f in zip(self.pairs, self.same, self.fold)]

    def sequence_indices(self, seq: int) -> np.ndarray:
        """Frame indices (in order) of sequence ``seq`` (``ytf-like``)."""
        if self.sequence is None:
            raise ValueError(f"protocol {self.protocol!r} has no sequences")
        idx = np.flatnonzero(self.sequence == seq)
        return idx[np.argsort(self.frame[idx])]


_REQUIRED = ("images", "landmarks", "landmarks_true", "visible", "label", "subject_id", "alpha_id",
             "alpha_exp", "yaw", "pitch", "roll", "scale", "trans")
_OPTIONAL = ("pairs", "same", "fold", "sequence", "frame", "expression", "intensity", "sweep",
             "blur_sigma", "noise_std")


def load_protocol(path: str | os.PathLike) -> SynthSet:
    """Load a protocol file written by :func:`build_protocol` (images stay on disk).

    Raises
    ------
    FileNotFoundError
        When the file does not exist.
    ValueError
        When it lacks a dataset of the layout (the message names the file and the dataset).
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"synthetic protocol file not found: {path} (build it with disentangled_face.data.build_protocol)")
    with h5py.File(path, "r") as h5:
        missing = [k for k in _REQUIRED if k not in h5]
        if missing:
            raise ValueError(f"{path} is not a synthetic protocol file: missing datasets {missing}")
        arrays = {k: h5[k][()] for k in _REQUIRED if k != "images"}
        opt = {k: h5[k][()] for k in _OPTIONAL if k in h5}
        if "expression" in opt:
            opt["expression"] = opt["expression"].astype(str)
        images = _LazyImages(path, h5["images"].shape)
        attrs = dict(h5.attrs)
    return SynthSet(path=path, protocol=str(attrs.get("protocol", "")), config=json.loads(attrs.get("config", "{}")),
                    model_name=str(attrs.get("model", "")), images=images, **arrays, **opt)
