"""A trained network on a real photograph (the paper's actual use): align, then reconstruct.

:func:`reconstruct_photo` warps a face to the networks' 112 x 96 crop by the 5-point
similarity of :func:`disentangled_face.data.align_face` (SphereFace-style: eye centres, nose
tip and mouth corners from the 68 landmarks; by default onto the framing of the synthetic
training crops, which is about 15 % smaller than SphereFace's, see :mod:`disentangled_face.data.align`),
normalises it as in training (:func:`.cache.net_images`) and runs the encoder-decoder
(:func:`disentangled_face.networks.inference.reconstruct`): the Phase III "Proposed" network
decodes with its own decoders, a Phase I network through the 3DMM (``morphable``).

The networks of this book were trained on **synthetic** faces only (chapter 2): a photograph is
outside their training distribution, and nothing here measures how well they transfer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.align import AlignedFace, align_face
from ..networks.inference import decodes_through_3dmm, reconstruct
from .cache import net_images

__all__ = ["PhotoReconstruction", "reconstruct_photo"]


@dataclass
class PhotoReconstruction:
    """A network's 3D shape of a face in a photograph.

    Attributes
    ----------
    aligned : AlignedFace
        The 112 x 96 crop the network saw, with the landmarks mapped into it.
    shape : ndarray (n, 3) float32, mm
        The reconstruction ``s_mean + Delta s_Id + Delta s_Exp`` (Eq. 2), the network's frame
        (the model's: x to the subject's left, y up, z out of the face).
    identity_shape : ndarray (n, 3) float32, mm
        ``s_mean + Delta s_Id``, the expression-free part.
    """

    aligned: AlignedFace
    shape: np.ndarray
    identity_shape: np.ndarray


def reconstruct_photo(net, image, landmarks68, model: Any, framing: str = "synthetic",
                      pixel_centre: float = 0.0, morphable: Any = None) -> PhotoReconstruction:
    """Align a detected face to the 112 x 96 crop and reconstruct its 3D shape with ``net``.

    Parameters
    ----------
    net : DisentangledFaceNet
        E.g. ``evaluation.trained_networks(cfg)["phase3"]`` (Proposed); a Phase I network
        needs ``morphable``.
    image : ndarray (H, W, 3) uint8 RGB
    landmarks68 : array_like (68, 2), pixels
        iBUG-68 landmarks of the face (``data.landmarks.detect_landmarks(image).points``).
    model : MorphableModel
        The model of the training crops (their framing, :func:`~disentangled_face.data.crop_reference`).
    framing : {"synthetic", "sphereface"}
        ``"synthetic"`` (default) matches the training crops; ``"sphereface"`` is the paper's.
    pixel_centre : float
        Centre of pixel (0, 0) in the landmarks' convention (0 for dlib and FAN).
    morphable : MorphableModel, optional
        Decode through the 3DMM (required for the Phase I network).

    Returns
    -------
    PhotoReconstruction

    Raises
    ------
    ValueError
        As :func:`~disentangled_face.data.align_face` (landmarks not (68, 2), image not
        (H, W, 3)) and :func:`~disentangled_face.networks.inference.reconstruct` (a network
        without decoders, a Phase I network without ``morphable``).
    """
    if morphable is None and decodes_through_3dmm(net):
        raise ValueError("this network decodes through the 3DMM (Phase I): pass morphable=")
    # the crop is always 112 x 96, as the training images: the encoder resizes to its input size
    al = align_face(image, landmarks68, model, framing=framing, pixel_centre=pixel_centre)
    out = reconstruct(net, net_images(al.image[None]), morphable=morphable, components=True)
    return PhotoReconstruction(al, out["shape"][0], out["identity_shape"][0])
