"""Evaluation metrics of the paper: 3D reconstruction error (Sec. 4.1) and verification (Sec. 4.2).

Reconstruction
--------------
:func:`similarity_procrustes` is Umeyama's least-squares similarity fit (scale, proper rotation,
translation; Umeyama 1991, "Least-squares estimation of transformation parameters between two
point patterns", IEEE TPAMI 13(4)). :func:`shape_error` follows Sec. 4.1 of the paper: align the
reconstruction to the ground truth by Procrustes on the 68 3D landmarks, crop the ground truth to
a 95 mm radius around its nose tip, and compare, reporting three numbers:

* ``paper``: the paper's formula as written, ``||s - s*||_2 / n`` over the kept vertices (norm
  of the flattened 3n-vector divided by the vertex count). This is **not** an RMSE in mm: it has
  units of mm but scales like ``rmse / sqrt(n)``, so it shrinks as the mesh gets denser;
* ``mean_mm``: the mean per-vertex Euclidean distance, mm;
* ``rmse_mm``: the true root-mean-square per-vertex distance, ``sqrt(mean ||v_i - v_i*||^2)``, mm.

Verification
------------
:func:`verification` evaluates pair scores over 10 folds (the LFW/YTF "unrestricted" protocol
of Sec. 4.2): accuracy with the threshold chosen on the other nine folds only, ``100% - EER``,
ROC AUC, and TAR at FAR 10% and 1%, each as mean and standard deviation over folds. ROC curves
come from scikit-learn (:func:`sklearn.metrics.roc_curve`, :func:`sklearn.metrics.roc_auc_score`).
Several matchers are fused at score level by summation after z-score normalisation whose
parameters come from the training folds (:func:`fuse_scores`).

Modules: :mod:`disentangled_face.shape.procrustes` (Umeyama alignment, re-exported here), :mod:`.shape_error` (Sec. 4.1),
:mod:`.verification` (Sec. 4.2, 10 folds), :mod:`.fusion` (score-level fusion). Every name is
re-exported here: ``from disentangled_face.evaluation import metrics; metrics.eer(...)``.
"""

from .fusion import fuse_scores, zscore_apply, zscore_params
from ...shape.procrustes import apply_similarity, similarity_procrustes
from .shape_error import CROP_RADIUS_MM, ShapeError, model_shape_error, shape_error, surface_distance
from .verification import (VerificationResult, auc, best_accuracy_threshold, check_features, cosine_similarity,
                           eer, pair_scores, roc, tar_at_far, verification)

__all__ = [
    "similarity_procrustes", "apply_similarity", "ShapeError", "shape_error", "surface_distance", "model_shape_error",
    "check_features", "cosine_similarity", "pair_scores", "roc", "eer", "auc",
    "zscore_params", "zscore_apply", "fuse_scores", "tar_at_far", "best_accuracy_threshold",
    "VerificationResult", "verification", "CROP_RADIUS_MM",
]
