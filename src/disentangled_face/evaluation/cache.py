"""Every method's outputs on a test protocol, computed once and cached for chapters 7-11.

The runners (:mod:`.runs`) need, for each test protocol, the reconstructions and features of
every method of :data:`.methods.METHODS` that the profile compares (the main run's, and the
rivals of ``experiments.rivals``: :func:`.methods.active_methods`). They come from the trained
networks (:func:`trained_networks`, through :func:`disentangled_face.training.train_pipeline`,
which loads chapter 6's checkpoints and trains a rival's run when it is missing) and from the
single-image 3DMM fitter
(:func:`disentangled_face.fitting.fit_subjects`), and are cached under
``data/experiments/<hash of the validated configuration>/`` (:func:`cache_dir`):

* ``<protocol>-fit.npz``: the fitted codes (independent of the networks);
* ``<protocol>-<networks_fingerprint>-codes.npz``: the networks' codes and features, keyed by
  a hash of the weights, so retrained networks never read codes cached from older ones.

:func:`method_outputs` decodes the cached codes into shapes (mm) and features per method.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Mapping

import numpy as np
import torch

from .. import fitting, training
from ..config import Config, ExperimentsConfig, section_hash
from ..data import build_protocol, load_protocol, to_network_input
from ..data.torch_dataset import FaceImageDataset
from ..paths import atomic_path, data_dir
from ..shape import MorphableModel, load_model
from ..networks.inference import encode, features
from ..methods import Method, active_methods, rival_names

__all__ = ["CACHE_VERSION", "cache_dir", "load_morphable", "load_set", "net_images", "pairs_arrays",
           "trained_networks", "networks_fingerprint", "fit_overrides", "fit_codes", "protocol_codes",
           "method_outputs", "sample_images"]

#: Bumped when what the runners cache changes (part of the cache key).
CACHE_VERSION = 2

#: Trained networks already loaded in this process, keyed by :func:`cache_dir` and the rivals.
_NETWORKS: dict = {}


def _encoder_methods(cfg: Config) -> list[Method]:
    """The compared methods whose codes are cached (``phase1_c_id``, ``single_image_phase1_c_res``
    ...): every encoder-decoder checkpoint among :func:`.methods.active_methods`."""
    return [m for m in active_methods(cfg) if m.source == "checkpoint" and m.decode is not None]


def _require_config(cfg) -> Config:
    if not isinstance(cfg, Config):
        raise TypeError(f"expected the validated Config (cfg = load_config(PROFILE)), got {type(cfg).__name__}")
    return cfg


#: ``experiments`` keys that do not change the cached fits and codes (see :func:`cache_dir`).
_NOT_IN_CACHE_KEY = ("rivals", "beyond_basis_modes", "beyond_basis_subjects")


def cache_dir(cfg: Config) -> Path:
    """``data/experiments/<hash>/``, keyed by every validated section that changes the results
    (``model``, ``synth``, ``fitting``, ``network``, ``train``, ``experiments``).

    ``experiments.rivals`` and the ``beyond_basis_*`` keys (chapter 11's world has its own
    config, whose ``fitting`` and ``network`` differ) are left out: the test-set fits do not depend on them, and the codes
    files are keyed by the fingerprint of the networks loaded (:func:`networks_fingerprint`),
    which the rivals' networks change, so switching a rival on reuses the fits.

    Raises
    ------
    TypeError
        When ``cfg`` is not a :class:`~disentangled_face.config.Config` (a profile name, say).
    """
    _require_config(cfg)
    exp = {k: v for k, v in cfg.experiments.to_dict().items() if k not in _NOT_IN_CACHE_KEY}
    key = section_hash(cfg.model, cfg.synth, cfg.fitting, cfg.network, cfg.train, exp, {"version": CACHE_VERSION})
    return data_dir("experiments", key)


def load_morphable(cfg: Config) -> MorphableModel:
    """The morphable model named by ``cfg.model`` (ICT-FaceKit), see :func:`..shape.load_model`."""
    return load_model(_require_config(cfg).model)


def load_set(cfg: Config, protocol: str):
    """The synthetic protocol ``protocol`` of ``cfg.synth`` (built on first use), a ``SynthSet``."""
    return load_protocol(build_protocol(protocol, _require_config(cfg).synth, progress=False))


def net_images(images) -> np.ndarray:
    """(N, H, W, 3) uint8 RGB -> (N, 3, H, W) float32, the networks' input normalisation
    (:func:`disentangled_face.data.to_network_input`, the same as in training).

    Raises
    ------
    ValueError
        When ``images`` is not (N, H, W, 3).
    """
    x = np.asarray(images)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"images must be (N, H, W, 3), got {x.shape}")
    return np.ascontiguousarray(to_network_input(x))


def pairs_arrays(pairs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``data.VerificationPair`` records -> (pairs (P, 2) int, same (P,) bool, fold (P,) int).

    Raises
    ------
    ValueError
        When there is no pair.
    """
    pairs = list(pairs)
    if not pairs:
        raise ValueError("no verification pairs")
    return (np.array([[p.a, p.b] for p in pairs], np.int64), np.array([p.same for p in pairs], bool),
            np.array([p.fold for p in pairs], np.int64))


def trained_networks(cfg: Config) -> dict:
    """The trained networks of the configuration, in eval mode on the CPU: ``phase1``
    (3DMM-CNN-like), ``phase2``, ``phase3`` (Proposed) and ``texture`` of the main run, and for
    each rival of ``experiments.rivals`` its network under :attr:`.methods.Method.network`
    (``single_image_phase1``: 3DDFA-like).

    They come from :func:`disentangled_face.training.train_pipeline`, which loads the
    checkpoints chapter 6 wrote under ``data/runs/<hash>/`` (and trains them first when they
    are missing); a rival's run (its own run hash, through its targets kind) trains only the
    phase it needs, with the profile's recipe for that phase. Loaded once per process and
    configuration.
    """
    key = (str(cache_dir(cfg)), rival_names(cfg))
    if key not in _NETWORKS:
        nets = _networks_from(training.train_pipeline(cfg, progress=False))
        for m in active_methods(cfg):
            if m.is_rival:
                tm = training.train_pipeline(cfg, progress=False, phases=(m.phase,), targets=m.targets)
                nets[m.network] = _networks_from(tm, (m.phase,))[m.phase]
        _NETWORKS[key] = nets
    return _NETWORKS[key]


def _networks_from(tm, phases=training.PHASES) -> dict:
    """``{phase: network}`` from :class:`training.TrainedModels` (or a mapping of networks)."""
    out = {}
    for phase in phases:
        net = tm[phase] if isinstance(tm, Mapping) else tm.load(phase)
        out[phase] = net.eval()
    return out


def networks_fingerprint(nets: Mapping) -> str:
    """A short SHA-256 of every parameter and buffer of the networks (part of the cache key,
    so retrained networks never read codes cached from older weights)."""
    h = hashlib.sha256()
    for phase in sorted(nets):
        for k, v in sorted(nets[phase].state_dict().items()):
            h.update(f"{phase}.{k}".encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def fit_overrides(exp: ExperimentsConfig) -> dict:
    """Fitter options the experiments change: ``max_iter`` capped by ``experiments.fit_iter``."""
    return {"max_iter": int(exp.fit_iter)} if exp.fit_iter else {}


def _load_npz(path: Path) -> dict:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def _save_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:  # a file handle: savez adds no suffix
        np.savez(fh, **arrays)


def fit_codes(cfg: Config, protocol: str) -> dict:
    """Single-image 3DMM fitting of every image of a protocol, computed once and cached.

    The fit depends on the landmarks and ``cfg.fitting`` (with :func:`fit_overrides`), not on
    the networks, so it is cached apart from them: ``cache_dir(cfg)/<protocol>-fit.npz``.

    Returns
    -------
    dict
        ``fit_alpha_id`` (N, k_id), ``fit_alpha_exp`` (N, k_exp).
    """
    path = cache_dir(cfg) / f"{protocol}-fit.npz"
    if path.is_file():
        return _load_npz(path)
    ds = load_set(cfg, protocol)
    fit = fitting.fit_subjects(load_morphable(cfg), np.asarray(ds.landmarks), labels=None, options=cfg.fitting,
                               workers=cfg.targets.workers, **fit_overrides(cfg.experiments))
    out = {"fit_alpha_id": np.asarray(fit.alpha_id), "fit_alpha_exp": np.asarray(fit.alpha_exp)}
    _save_npz(path, out)
    return out


def _encode_protocol(nets: Mapping, encoders: list[str], images, batch_size: int) -> dict:
    """Codes of the encoder-decoder networks ``encoders`` (keys of ``nets``) and the texture
    feature, 512 images at a time."""
    keys = [f"{net}_{code}" for net in encoders for code in ("c_id", "c_res")]
    parts: dict[str, list] = {k: [] for k in (*keys, "texture")}
    for i in range(0, len(images), 512):
        x = net_images(images[i:i + 512])
        for net in encoders:
            a, b = encode(nets[net], x, batch_size)
            parts[f"{net}_c_id"].append(a), parts[f"{net}_c_res"].append(b)
        parts["texture"].append(features(nets["texture"], x, batch_size))
    return {k: np.concatenate(v) for k, v in parts.items()}


def protocol_codes(cfg: Config, protocol: str, fit: bool = True) -> dict:
    """Every method's compact outputs on a test protocol, computed once and cached.

    Parameters
    ----------
    cfg : Config
    protocol : str
        A test protocol (``lfw-like``, ``ytf-like``, ``bu3dfe-like``, ``micc-like``).
    fit : bool
        Include the single-image 3DMM fitting (:func:`fit_codes`).

    Returns
    -------
    dict of ndarray
        ``phase1_c_id``, ``phase1_c_res`` (the 3DMM-CNN-like checkpoint), ``phase3_c_id``,
        ``phase3_c_res`` (Proposed), for each rival ``<network>_c_id``, ``<network>_c_res``
        (``single_image_phase1_*``: 3DDFA-like; :attr:`.methods.Method.network`), ``texture``
        (texture network features), cached in
        ``cache_dir(cfg)/<protocol>-<networks_fingerprint>-codes.npz``; with ``fit`` also
        ``fit_alpha_id``, ``fit_alpha_exp``. Codes are (N, k_id) and (N, k_exp), features (N, d).
    """
    nets = trained_networks(cfg)
    path = cache_dir(cfg) / f"{protocol}-{networks_fingerprint(nets)}-codes.npz"
    if path.is_file():
        out = _load_npz(path)
    else:
        out = _encode_protocol(nets, [m.network for m in _encoder_methods(cfg)], load_set(cfg, protocol).images,
                               cfg.experiments.batch_size)
        _save_npz(path, out)
    if fit:
        out.update(fit_codes(cfg, protocol))
    return out


def _through_3dmm(net, model: MorphableModel, c_id, c_res, shapes: bool) -> dict:
    """A Phase I checkpoint: codes -> 3DMM coefficients (its scaler) -> the morphable model.
    Its feature is the identity coefficients ``alpha_id``."""
    a_id, a_exp = net.scaler.from_code(torch.as_tensor(c_id), torch.as_tensor(c_res))
    a_id, a_exp = a_id.numpy(), a_exp.numpy()
    out = {"feature": a_id}
    if shapes:
        out.update(shape=model.shape(a_id, a_exp), identity_shape=model.identity_shape(a_id))
    return out


def _through_decoders(net, c_id, c_res, shapes: bool) -> dict:
    """A Phase III checkpoint: codes -> its own decoders (Eq. 2). Its feature is ``c_id``."""
    c_id = torch.as_tensor(c_id)
    out = {"feature": c_id.numpy()}
    if shapes:
        d_id, _, s = net.decode(c_id, torch.as_tensor(c_res))
        n = net.n_vertices
        out.update(shape=s.reshape(-1, n, 3).numpy(), identity_shape=(net.s_mean + d_id).reshape(-1, n, 3).numpy())
    return out


def method_outputs(cfg: Config, protocol: str, idx=None, shapes: bool = True, fit: bool = True) -> dict:
    """Reconstructions and features of every compared method on a protocol (images ``idx``,
    default all): the main run's and the rivals of ``experiments.rivals``.

    Parameters
    ----------
    shapes : bool
        Decode the shapes (False: features only, which is all verification needs).
    fit : bool
        Include the single-image 3DMM fitting baseline (the slowest method to compute).

    Returns
    -------
    dict method display name -> dict with ``shape`` (N, n, 3) mm, ``identity_shape`` (N, n, 3)
    mm (both absent for the texture network and when ``shapes`` is False) and ``feature`` (N, d).
    """
    codes = protocol_codes(cfg, protocol, fit=fit)
    model = load_morphable(cfg)
    nets = trained_networks(cfg)
    sel = slice(None) if idx is None else np.asarray(idx)
    out = {"texture": {"feature": codes["texture"][sel]}}
    if shapes:  # the mean face: alpha_id = alpha_exp = 0 for every image
        n_img = len(codes["texture"][sel])
        mean = np.broadcast_to(np.asarray(model.s_mean, np.float32).reshape(1, -1, 3), (n_img, model.n_vertices, 3))
        out["mean face"] = {"shape": mean, "identity_shape": mean}
    if fit:
        a_id, a_exp = codes["fit_alpha_id"][sel], codes["fit_alpha_exp"][sel]
        out["3DMM fitting"] = {"feature": a_id}
        if shapes:
            out["3DMM fitting"].update(shape=model.shape(a_id, a_exp), identity_shape=model.identity_shape(a_id))
    with torch.no_grad():
        for m in _encoder_methods(cfg):
            c_id, c_res = codes[f"{m.network}_c_id"][sel], codes[f"{m.network}_c_res"][sel]
            out[m.name] = (_through_3dmm(nets[m.network], model, c_id, c_res, shapes) if m.decode == "3dmm"
                           else _through_decoders(nets[m.network], c_id, c_res, shapes))
    return out


def sample_images(samples, size: tuple[int, int] = (112, 96)) -> np.ndarray:
    """Network inputs (N, 3, H, W) of :class:`data.FaceSample` records (real or synthetic),
    read and resized by the training pipeline's dataset (:class:`data.torch_dataset.FaceImageDataset`)."""
    ds = FaceImageDataset(list(samples), size=size)
    return np.stack([np.asarray(ds[i]["image"]) for i in range(len(ds))])
