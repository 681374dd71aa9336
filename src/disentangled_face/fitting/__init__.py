"""Fitting the 3DMM to 2D landmarks (chapters 3-4): the paper's multi-image alternating fitter.

The paper builds its training targets by fitting the morphable model to the 68 landmarks of
*every image of a subject at once* (Sec. 3.3). For images ``i = 1..M`` of one subject the
landmarks ``U_i`` (68, 2) are explained by one shared identity ``alpha_id`` and, per image, an
expression ``alpha_exp_i`` and a weak-perspective camera ``(f_i, R_i, t_i)`` (Eq. 6, see
:mod:`disentangled_face.shape.camera`)::

    U_i ~ f_i P R_i (s_mean,U + A_id,U alpha_id + A_exp,U alpha_exp_i) + t_i          (Eq. 6)

and the fitter minimises (Eq. 7, with the model's Gaussian prior written as ridge terms)::

    E = sum_i ||U_i - U^_i||^2 / s_i^2 + lambda_id ||alpha_id||^2
        + lambda_exp sum_i ||alpha_exp_i||^2                                           (Eq. 7)

where ``s_i`` is a per-image constant (the scale of the first pose estimate, pixels per mm), so
the data term is in mm^2 whatever the image resolution and ``lambda`` reads as a landmark noise
variance in mm^2 (MAP with ``alpha_id ~ N(0, I)``). Starting from ``alpha_id = alpha_exp = 0``
it alternates, each step with the other two fixed:

1. **pose** per image: the closed-form affine camera (linear least squares of the 2D landmarks
   on the centred 3D model landmarks), then the nearest scaled rotation (SVD, det +1), then a
   few Gauss-Newton steps on (f, R, t) of the exact weak-perspective objective;
2. **expression** per image: ridge least squares, box-constrained to the blendshape range
   ``[0, 1]`` (a primal-dual active-set method batched in torch, warm-started; or
   :func:`scipy.optimize.lsq_linear` per image as the reference path);
3. **identity** per subject: ridge least squares jointly over all of the subject's images,

and a subject stops when the relative change of its ``E`` over one iteration drops below ``tol``
(the paper reports about 7 iterations) or after ``max_iter`` iterations. Every step keeps ``E``
from increasing. The alternation converges only linearly, so ``joint_iters``
Levenberg-Marquardt steps on all parameters at once follow (our addition; 0 gives the paper's
alternation alone). The single-image variant (a baseline of the paper's tables) is the same
fitter with one image per subject.

Every fitting function takes the fitter options as ``options`` (``cfg.fitting``, a
:class:`~disentangled_face.config.FittingConfig`; its typed defaults when omitted) plus keyword
overrides of single options, validated (``ConfigError`` naming the key)::

    from disentangled_face import fitting
    fit = fitting.fit_shape_and_pose(model, landmarks, cfg.fitting, joint_iters=0)

=================  ===============================================================================
module             what
=================  ===============================================================================
``checks``         input checks (landmarks, model, detections) and the options (overrides validated)
``pose``           the pose step: closed form, nearest scaled rotation, Gauss-Newton
``solvers``        SPD solves, the box-constrained ridge of the expression step
``alternation``    the problem (:class:`Fitter`), its three steps and the Eq. 7 loop
``joint``          the Levenberg-Marquardt refinement (Schur complement on ``alpha_id``)
``api``            :func:`fit_shape_and_pose`, :func:`fit_single_image`, :func:`fit_images`,
                   :func:`fit_subjects`, :class:`FitResult`, :class:`SubjectsFit`
``targets``        the training targets: :func:`build_targets`, :func:`targets_path`, :func:`load_targets`
``simulate``       landmarks of known faces, :func:`identity_error_vs_images`, shape errors
=================  ===============================================================================
"""

from __future__ import annotations

from ..data.landmarks import LandmarkOrderError
from .quality import FitQuality
from .api import FitResult, ImageParameters, ShapeAndPose, SubjectsFit, fit_images, fit_shape_and_pose, fit_single_image, fit_subjects
from .checks import fitter_options
from .pose import estimate_pose, nearest_scaled_rotation
from .simulate import (SyntheticLandmarks, identity_error_vs_images, shape_errors, shape_rmse,
                       simulate_landmarks)
from .targets import build_targets, load_targets, targets_path

__all__ = ["ImageParameters", "ShapeAndPose", "FitResult", "SubjectsFit", "fit_shape_and_pose", "fit_single_image", "fit_images", "fit_subjects",
           "fitter_options", "estimate_pose", "nearest_scaled_rotation", "SyntheticLandmarks", "simulate_landmarks",
           "identity_error_vs_images", "shape_rmse", "shape_errors", "build_targets", "targets_path",
           "load_targets", "FitQuality", "LandmarkOrderError"]
