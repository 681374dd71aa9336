"""The one torch ``Dataset`` of face images: synthetic protocol files, real photographs, tensors.

:class:`FaceImageDataset` reads its images from one of three sources and gives every item the
same dictionary (the schema the trainer and the evaluation read):

=============  ==============================  ==================================================
key            type, shape                     meaning
=============  ==============================  ==================================================
``image``      float32 tensor (3, H, W)        in [-1, 1] (:func:`to_network_input`)
``label``      int64 tensor ()                 subject (0-based for training data)
``alpha_id``   float32 tensor (k_id,)          identity coefficients (fitted or true); (0,) unknown
``alpha_exp``  float32 tensor (k_exp,)         expression coefficients; (0,) when unknown
``landmarks``  float32 tensor (68, 2)          2D landmarks, pixels of the source image (the
                                               112 x 96 crop); NaN when unknown
``index``      Python ``int``                  the item's row in its source (protocol file row,
                                               position in the sample list, row of the tensors)
further keys   tensors                         the ``extra`` fields (e.g. ``fit_alpha_id``)
=============  ==============================  ==================================================

``index`` is always a Python ``int`` (a ``DataLoader`` batches it into an int64 tensor).
The HDF5 file of a protocol is opened lazily in each process, so the dataset works with a
``DataLoader`` with ``num_workers > 0``.
"""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .loaders import to_network_input

__all__ = ["FaceImageDataset", "dataset_codes"]


def _rows(values, n: int, name: str, dtype) -> np.ndarray:
    out = np.ascontiguousarray(values, dtype)
    if len(out) != n:
        raise ValueError(f"{name} has {len(out)} items, the dataset {n}")
    return out


class FaceImageDataset(Dataset):
    """Face images with their labels, 3DMM coefficients and landmarks (items: module docstring).

    Parameters
    ----------
    source : path, SynthSet or list of FaceSample
        A synthetic protocol file (or its loaded :class:`~disentangled_face.data.SynthSet`),
        streamed from HDF5; or real (or synthetic) :class:`~disentangled_face.data.FaceSample`
        records. For images already in memory use :meth:`from_tensors`.
    indices : sequence of int, optional
        A subset of the items (rows of the file / positions in the list), in this order.
    size : (H, W)
        Resize real images to this size (default 112 x 96); synthetic ones already are. Real
        images are only resized here: align them first (SphereFace's five-point similarity
        transform) when they are not crops of that kind.
    labels, alpha_id, alpha_exp : arrays (len(indices), ...), optional
        Replace the protocol file's labels and coefficients of the chosen items (training
        labels 0-based, fitted coefficients as targets). Protocol files only.
    extra : dict of arrays (len(indices), ...), optional
        Further per-item fields (for example the fitted codes of held-out images).

    Raises
    ------
    ValueError
        When an index is out of range or a per-item array has another length.
    """

    def __init__(self, source, indices: Sequence[int] | None = None, size: tuple[int, int] = (112, 96), *,
                 labels=None, alpha_id=None, alpha_exp=None, extra: Mapping | None = None) -> None:
        self.size = tuple(size)
        self.samples, self.path, self.images = None, None, None
        if isinstance(source, (list, tuple)):
            self.samples = list(source)
            n_source = len(self.samples)
            if any(v is not None for v in (labels, alpha_id, alpha_exp)):
                raise ValueError("labels / alpha_id / alpha_exp replace a protocol file's; samples carry their own")
        else:
            from .synthset import SynthSet, load_protocol

            sset = source if isinstance(source, SynthSet) else load_protocol(source)
            self.path, n_source = sset.path, len(sset)
        rows = np.arange(n_source) if indices is None else np.asarray(indices, np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= n_source):
            raise ValueError(f"indices must lie in [0, {n_source}), got [{rows.min()}, {rows.max()}]")
        self.rows = rows
        if self.samples is None:
            self._set_fields(sset.label[rows] if labels is None else labels,
                             sset.alpha_id[rows] if alpha_id is None else alpha_id,
                             sset.alpha_exp[rows] if alpha_exp is None else alpha_exp,
                             sset.landmarks[rows], extra)
        else:
            self._set_sample_fields(extra)
        self._h5, self._pid = None, None

    @classmethod
    def from_tensors(cls, images, labels, alpha_id, alpha_exp, *, landmarks=None, extra: Mapping | None = None,
                     index: Sequence[int] | None = None) -> "FaceImageDataset":
        """Images already in memory (the trainer's in-memory training data, tests).

        Parameters
        ----------
        images : array or tensor (N, 3, H, W) float in [-1, 1]
        labels : int array (N,)
        alpha_id : array (N, k_id); alpha_exp : array (N, k_exp)
        landmarks : array (N, 68, 2), optional
            NaN when omitted.
        extra : dict of arrays (N, ...), optional
        index : int array (N,), optional
            The items' rows in their source (default ``0 .. N-1``).

        Raises
        ------
        ValueError
            When the arrays disagree in length or the images are not (N, 3, H, W).
        """
        self = cls.__new__(cls)
        self.size, self.samples, self.path, self._h5, self._pid = None, None, None, None, None
        self.images = torch.as_tensor(np.asarray(images, np.float32) if not torch.is_tensor(images) else images,
                                      dtype=torch.float32)
        if self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be (N, 3, H, W), got {tuple(self.images.shape)}")
        n = len(self.images)
        self.rows = np.arange(n) if index is None else _rows(index, n, "index", np.int64)
        self._set_fields(labels, alpha_id, alpha_exp,
                         np.full((n, 68, 2), np.nan, np.float32) if landmarks is None else landmarks, extra)
        return self

    def _set_fields(self, labels, alpha_id, alpha_exp, landmarks, extra) -> None:
        n = len(self.rows)
        self.labels = _rows(labels, n, "labels", np.int64)
        self.alpha_id = _rows(alpha_id, n, "alpha_id", np.float32)
        self.alpha_exp = _rows(alpha_exp, n, "alpha_exp", np.float32)
        self.landmarks = _rows(landmarks, n, "landmarks", np.float32)
        self.extra = {k: np.ascontiguousarray(_rows(v, n, k, None)) for k, v in (extra or {}).items()}

    def _set_sample_fields(self, extra) -> None:
        chosen = [self.samples[i] for i in self.rows]
        self.labels = np.asarray([s.label for s in chosen], np.int64)
        have = chosen and all(s.alpha_id is not None and s.alpha_exp is not None for s in chosen)
        self.alpha_id = np.stack([np.asarray(s.alpha_id, np.float32) for s in chosen]) if have else None
        self.alpha_exp = np.stack([np.asarray(s.alpha_exp, np.float32) for s in chosen]) if have else None
        self.landmarks = None
        self.extra = {k: np.ascontiguousarray(_rows(v, len(chosen), k, None)) for k, v in (extra or {}).items()}

    def __len__(self) -> int:
        return int(self.rows.size)

    def _h5_images(self):
        import h5py

        if self._h5 is None or self._pid != os.getpid():
            self._h5 = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._h5["images"]

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_h5"] = None  # h5py handles do not pickle; each worker reopens
        return state

    def _sample_item(self, k: int) -> dict:
        s = self.samples[int(self.rows[k])]
        img = s.load_image()
        if img.shape[:2] != self.size:
            from PIL import Image

            img = np.asarray(Image.fromarray(img).resize((self.size[1], self.size[0]), Image.BILINEAR))
        nan_lm = np.full((68, 2), np.nan, np.float32)
        return {"image": torch.from_numpy(to_network_input(img)), "label": torch.tensor(s.label, dtype=torch.int64),
                "alpha_id": torch.from_numpy(np.asarray(s.alpha_id if s.alpha_id is not None else np.zeros(0),
                                                        np.float32)),
                "alpha_exp": torch.from_numpy(np.asarray(s.alpha_exp if s.alpha_exp is not None else np.zeros(0),
                                                         np.float32)),
                "landmarks": torch.from_numpy(np.asarray(s.landmarks if s.landmarks is not None else nan_lm,
                                                         np.float32))}

    def __getitem__(self, k: int) -> dict:
        k = int(k)
        if self.samples is not None:
            item = self._sample_item(k)
        else:
            image = self.images[k] if self.images is not None else \
                torch.from_numpy(to_network_input(self._h5_images()[int(self.rows[k])]))
            item = {"image": image, "label": torch.tensor(self.labels[k]),
                    "alpha_id": torch.from_numpy(self.alpha_id[k]), "alpha_exp": torch.from_numpy(self.alpha_exp[k]),
                    "landmarks": torch.from_numpy(self.landmarks[k])}
        item["index"] = int(self.rows[k])
        item.update({key: torch.from_numpy(np.asarray(v[k])) for key, v in self.extra.items()})
        return item

    def subset(self, positions: Sequence[int]) -> "FaceImageDataset":
        """The items at ``positions`` (of this dataset, in that order) as a dataset of the same kind.

        Raises
        ------
        ValueError
            When a position is out of range.
        """
        import copy  # noqa: PLC0415

        pos = np.asarray(positions, np.int64).reshape(-1)
        if pos.size and (pos.min() < 0 or pos.max() >= len(self)):
            raise ValueError(f"positions must lie in [0, {len(self)}), got [{pos.min()}, {pos.max()}]")
        out = copy.copy(self)
        out._h5, out._pid = None, None
        out.rows = self.rows[pos]
        if self.images is not None:
            out.images = self.images[torch.from_numpy(pos)]
        for key in ("labels", "alpha_id", "alpha_exp", "landmarks"):
            value = getattr(self, key)
            setattr(out, key, None if value is None else value[pos])
        out.extra = {k: np.ascontiguousarray(v[pos]) for k, v in self.extra.items()}
        return out

    def with_codes(self, alpha_id, alpha_exp, extra: Mapping | None = None) -> "FaceImageDataset":
        """The same items with other coefficients: ``alpha_id`` (N, k_id), ``alpha_exp``
        (N, k_exp), and the arrays of ``extra`` (N, ...) added or replacing those of that name.

        Raises
        ------
        ValueError
            When an array's length is not the dataset's N.
        """
        import copy  # noqa: PLC0415

        out = copy.copy(self)
        out._h5, out._pid = None, None
        n = len(self)
        out.alpha_id = _rows(alpha_id, n, "alpha_id", np.float32)
        out.alpha_exp = _rows(alpha_exp, n, "alpha_exp", np.float32)
        out.extra = {**self.extra, **{k: np.ascontiguousarray(_rows(v, n, k, None)) for k, v in (extra or {}).items()}}
        return out

    def codes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All ``(alpha_id (N, k_id), alpha_exp (N, k_exp), labels (N,))`` of the items, float32 / int64.

        Raises
        ------
        ValueError
            For real samples without coefficients.
        """
        if self.alpha_id is None:
            raise ValueError("these samples carry no 3DMM coefficients")
        return self.alpha_id, self.alpha_exp, self.labels


def dataset_codes(dataset: Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """All (alpha_id (N, k_id), alpha_exp (N, k_exp), labels (N,)) of any dataset of face items.

    Uses :meth:`FaceImageDataset.codes` when it is one, else iterates over the items (labels
    -1 where an item has none).
    """
    if isinstance(dataset, FaceImageDataset):
        return dataset.codes()
    ids, exps, labs = [], [], []
    for i in range(len(dataset)):
        it = dataset[i]
        ids.append(np.asarray(it["alpha_id"], np.float32))
        exps.append(np.asarray(it["alpha_exp"], np.float32))
        labs.append(int(it["label"]) if "label" in it else -1)
    return np.stack(ids), np.stack(exps), np.asarray(labs, np.int64)
