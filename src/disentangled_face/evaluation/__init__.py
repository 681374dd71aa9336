"""Evaluation (chapters 7-11): inference, metrics, the methods table, the paper's tables and figures, claims.

``from disentangled_face import evaluation as E`` gives what the chapters call:

* the methods compared (:mod:`disentangled_face.methods`): :data:`METHODS`, :data:`FUSIONS`, :data:`PAPER_ONLY`,
  :data:`RIVALS` (switched on by ``experiments.rivals``; :func:`active_methods`);
* the table builders, pure functions of arrays: :func:`reconstruction_vs_yaw` (Table 1),
  :func:`reconstruction_micc` (Table 2), :func:`rmse_per_expression` (Figs. 6-7),
  :func:`verification_table` (Table 3), :func:`speed_table` (Table 4), :func:`learned_bases`
  (Fig. 9) and :func:`claims` (chapter 12). They take reconstructions, ground truth, features
  or callables and know nothing about where these came from, so the tests run them on tiny
  fake inputs;
* the runners, which take the whole :class:`~disentangled_face.config.Config`:
  :func:`run_reconstruction`, :func:`run_verification`, :func:`run_speed`,
  :func:`run_learned_bases`, :func:`run_all`; every method's outputs come from :mod:`.cache`
  (:func:`method_outputs`), cached under ``data/experiments/<config hash>/``;
* running a trained network (:mod:`disentangled_face.networks.inference`): :func:`encode`, :func:`features`,
  :func:`reconstruct`, :func:`alpha_from_images`, :func:`evaluate`; on a photograph,
  :func:`reconstruct_photo` (:mod:`.photos`: 5-point alignment to the crop, then the network);
  on a real textured scan, :func:`render_scan` and :func:`scan_fit_experiment` (:mod:`.scan_fits`:
  render, detect, fit, errors against the scan);
* :mod:`.metrics` (Sec. 4.1-4.2), :mod:`.paper_results` (the published numbers) and
  :func:`record_chapter` (:mod:`.results`).

Methods compared (all fitted or trained by this project on the ``train`` population; see
:data:`METHODS`):

========================  ==================================================================
``3DMM fitting``          single-image landmark fitting (:func:`fitting.fit_subjects` with one
                          image per subject), shape from ``alpha_id, alpha_exp``; feature
                          ``alpha_id``
``3DDFA-like``            a rival (``experiments.rivals``, its own run): the Phase I encoder
                          trained on the single-image fit of every training image (no pooling,
                          no identification loss), decoded through the 3DMM; feature its
                          ``alpha_id``
``3DMM-CNN-like``         the Phase I encoder regressing the fitted codes (no identification
                          loss), decoded through the 3DMM; feature: its ``alpha_id`` (the
                          descaled ``c_id``)
``Proposed``              the jointly trained encoder-decoder (Phase III); feature ``c_id``
``texture``               SphereFace-20 trained for identification only; feature: its 512-d
                          output (no shape)
``texture + ...``         score-level fusion (z-score, sum; :func:`metrics.fuse_scores`)
========================  ==================================================================

VRN and 3DSR are not rebuilt: they appear only in the paper's tables (:mod:`.paper_results`).
The figures of these experiments are in :mod:`disentangled_face.plotting.experiments`.
"""

from . import metrics, paper_results
from .bases import learned_bases
from .cache import (cache_dir, fit_codes, load_morphable, method_outputs, net_images, networks_fingerprint,
                    pairs_arrays, protocol_codes, sample_images, trained_networks)
from .contour import contour_error_vs_yaw
from .claims import (ALPHA, VERDICTS, Claim, claims, claims_frame, claims_markdown, holm, paired_test,
                     verdict_counts, yaw_columns, yaw_slopes)
from ..networks.inference import alpha_from_images, decodes_through_3dmm, encode, evaluate, features, reconstruct
from ..methods import (FUSIONS, METHODS, PAPER_ONLY, RIVALS, Method, active_methods, method, method_for_phase,
                      reconstruction_methods, rival_names, verification_methods)
from .reconstruction import (METRIC_LABELS, ReconResult, error_map, reconstruction_errors, reconstruction_micc,
                             reconstruction_vs_yaw, rmse_per_expression, scan_reconstruction_errors)
from .results import ChapterResults, record_chapter
from .photos import PhotoReconstruction, reconstruct_photo
from .scan_fits import ScanFitResult, ScanRenders, render_scan, scan_crop_mesh, scan_distance_map, scan_fit_experiment
from .power import min_detectable_difference, paired_mde, t_test_power
from .scaling import SCALING_METHODS, aligned_errors, held_out_aligned, scaling_study, subjects_for_ratio
from .runs import cached_speed, run_all, run_learned_bases, run_reconstruction, run_speed, run_verification
from .speed import speed_table, time_per_image
from .standing import standing, standing_markdown
from .verification import VerificationTable, sequence_features, verification_table

__all__ = [
    "metrics", "paper_results", "METHODS", "FUSIONS", "PAPER_ONLY", "RIVALS", "Method", "method", "method_for_phase",
    "active_methods", "rival_names",
    "reconstruction_methods", "verification_methods", "METRIC_LABELS", "ReconResult", "reconstruction_errors",
    "reconstruction_vs_yaw", "reconstruction_micc", "rmse_per_expression", "error_map",
    "scan_reconstruction_errors", "sequence_features", "VerificationTable", "verification_table",
    "time_per_image", "speed_table", "learned_bases", "Claim", "claims", "claims_frame", "claims_markdown", "ALPHA",
    "VERDICTS", "verdict_counts", "holm", "yaw_columns", "yaw_slopes",
    "paired_test", "cache_dir", "load_morphable", "net_images", "pairs_arrays", "trained_networks",
    "networks_fingerprint", "fit_codes", "protocol_codes", "method_outputs", "sample_images",
    "run_reconstruction", "run_verification", "run_speed", "cached_speed", "run_learned_bases", "run_all",
    "ChapterResults", "record_chapter", "encode", "features", "reconstruct", "alpha_from_images", "evaluate",
    "decodes_through_3dmm", "min_detectable_difference", "paired_mde", "t_test_power", "scaling_study", "subjects_for_ratio",
    "SCALING_METHODS", "aligned_errors", "held_out_aligned", "standing", "standing_markdown",
    "PhotoReconstruction", "reconstruct_photo", "contour_error_vs_yaw",
    "ScanRenders", "ScanFitResult", "render_scan", "scan_fit_experiment", "scan_distance_map", "scan_crop_mesh",
]
