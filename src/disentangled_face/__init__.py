"""disentangled_face: an executable reproduction of Liu et al. (CVPR 2018),
*Disentangling Features in 3D Face Shapes for Joint Face Reconstruction and Recognition*.

Modules, in the order data flows through them:

- :mod:`~disentangled_face.fetch`     the ICT-FaceKit archive: download, verify, extract, convert
- :mod:`~disentangled_face.model`     morphable model and composite shape model (Eq. 1-3, 6)
- :mod:`~disentangled_face.render`    headless rasteriser for synthetic images
- :mod:`~disentangled_face.synth`     synthetic populations and the paper's protocols
- :mod:`~disentangled_face.datasets`  loaders for the paper's real datasets, torch datasets
- :mod:`~disentangled_face.landmarks` 68-point landmark detection (FAN, dlib)
- :mod:`~disentangled_face.fitting`   the multi-image alternating 3DMM fitter (Eq. 6-7)
- :mod:`~disentangled_face.nets`      SphereFace-20 encoder, c_id / c_res heads, decoders
- :mod:`~disentangled_face.losses`    L = lambda_r L_R + L_C (Eq. 5)
- :mod:`~disentangled_face.train`     the three training phases, checkpoints, DDP
- :mod:`~disentangled_face.metrics`   3D RMSE, Procrustes, verification metrics, fusion
- :mod:`~disentangled_face.experiments` the paper's tables and figures
- :mod:`~disentangled_face.viz`       plotly meshes, widgets with static fallbacks
"""

__version__ = "0.1.0"
