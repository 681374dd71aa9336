"""disentangled_face: an executable reproduction of Liu et al. (CVPR 2018),
*Disentangling Features in 3D Face Shapes for Joint Face Reconstruction and Recognition*.

One folder per part of the book, in the order data flows through them:

- :mod:`~disentangled_face.config`      the typed configuration, read once (:func:`~disentangled_face.config.load_config`)
- :mod:`~disentangled_face.shape`       morphable model and composite shape model (Eq. 1-3, 6), camera, ICT-FaceKit, BFM
- :mod:`~disentangled_face.data`        records, renderer, synthetic populations and protocols, real datasets, landmarks
- :mod:`~disentangled_face.fitting`     the multi-image alternating 3DMM fitter (Eq. 6-7) and the training targets
- :mod:`~disentangled_face.networks`    SphereFace-20 encoder, c_id / c_res heads, decoders, losses (Eq. 5)
- :mod:`~disentangled_face.training`    the three training phases, checkpoints, DDP, the pipeline, the command line
- :mod:`~disentangled_face.evaluation`  inference, metrics, the methods table, the paper's tables and figures, claims
- :mod:`~disentangled_face.plotting`    every figure: meshes, widgets with static fallbacks, training and experiment plots
"""

__version__ = "0.1.0"
