"""The data (chapter 2): one record schema, the renderer, the synthetic populations and the
paper's protocols, the real-dataset loaders and the landmark detector.

=====================  =====================================================================
module                 what
=====================  =====================================================================
``records``            :class:`FaceSample`, :class:`VerificationPair`, :class:`Scan3D`: the one
                       record schema of synthetic and real data
``render``             headless batch rasteriser (OpenGL through moderngl + EGL)
``expressions``        the BU-3DFE expressions as ICT blendshapes, the expression prior
``albedo``             procedural per-subject skin albedo
``generator``          subjects, the SphereFace-like crop, :func:`render_faces`
``protocols``          :data:`PROTOCOLS`, their sizes, cache paths and plans
``build``              :func:`build_protocol`: a plan rendered into an HDF5 file
``synthset``           :class:`SynthSet`, :func:`load_protocol`
``loaders``            CASIA-WebFace, LFW, YouTube Faces, BU-3DFE, MICC Florence
``scans``              3D scans (OBJ, PLY) with their landmarks, vertex order kept
``sample_scans``       menpo3d's textured ``james`` scan, fetched from PyPI, verified by hash
``scan_texture``       texture coordinates, texture sampling, a finer mesh for drawing a scan
``landmarks``          68-point landmark detection (FAN, dlib)
``torch_dataset``      :class:`FaceImageDataset`: the one torch ``Dataset`` of face images
=====================  =====================================================================

>>> from disentangled_face import data
>>> s = data.load_protocol(data.build_protocol("lfw-like", cfg.synth))   # doctest: +SKIP
"""

from __future__ import annotations

from .albedo import AlbedoModel
from .build import build_protocol
from .expressions import EXPRESSIONS, expression_vector, has_expression_names, sample_expressions
from .generator import (IMAGE_SIZE, SPHEREFACE_REFERENCE, RenderedFaces, centring_translation, five_points,
                        get_albedo_model, get_renderer, reference_scale, render_faces, subject_albedo,
                        subject_codes, subject_faces)
from .loaders import (load_bu3dfe, load_casia_webface, load_lfw_pairs, load_lfw_pairs_sklearn, load_micc, load_ytf,
                      to_network_input)
from .align import FRAMINGS, AlignedFace, align_face, crop_reference
from .scans import export_shape, load_scan, read_landmarks, read_landmarks_3d, read_mesh, write_mesh
from .sample_scans import SampleScanError, fetch_menpo3d_james
from .scan_texture import ObjTexture, RenderMesh, read_obj_texture, render_mesh, sample_texture, vertex_colors
from .protocols import (GENERATOR_VERSION, PROTOCOLS, REAL_ANALOGUES, SUBJECT_OFFSETS, plan_protocol,
                        protocol_config, protocol_path, protocol_sizes)
from .records import DatasetFormatError, FaceSample, Scan3D, VerificationPair, read_image
from .render import Light, Renderer, RendererUnavailableError
from .synthset import SynthSet, load_protocol
from .torch_dataset import FaceImageDataset

__all__ = [
    # records and real datasets
    "FaceSample", "VerificationPair", "Scan3D", "DatasetFormatError", "read_image", "read_mesh", "write_mesh", "export_shape",
    "read_landmarks_3d", "read_landmarks", "load_scan", "load_casia_webface", "load_lfw_pairs", "load_lfw_pairs_sklearn", "load_ytf",
    "load_bu3dfe", "load_micc", "to_network_input", "FaceImageDataset",
    # a real textured scan (menpo3d's james, fetched from PyPI) and its texture
    "SampleScanError", "fetch_menpo3d_james", "ObjTexture", "RenderMesh", "read_obj_texture", "render_mesh",
    "sample_texture", "vertex_colors",
    # aligning a photograph to the crop
    "FRAMINGS", "AlignedFace", "align_face", "crop_reference",
    # rendering and the generator
    "Light", "Renderer", "RendererUnavailableError", "EXPRESSIONS", "expression_vector",
    "has_expression_names", "sample_expressions", "AlbedoModel", "IMAGE_SIZE", "SPHEREFACE_REFERENCE",
    "RenderedFaces", "render_faces", "subject_faces", "subject_codes", "subject_albedo", "reference_scale",
    "five_points", "centring_translation", "get_renderer", "get_albedo_model",
    # protocols
    "PROTOCOLS", "SUBJECT_OFFSETS", "REAL_ANALOGUES", "GENERATOR_VERSION", "protocol_config", "protocol_path",
    "protocol_sizes", "plan_protocol", "build_protocol", "SynthSet", "load_protocol",
]
