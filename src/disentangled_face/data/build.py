"""Rendering a protocol's plan into its HDF5 file, in one process or a pool of workers.

A file is written to a temporary name and moved into place atomically
(:func:`disentangled_face.paths.atomic_path`), so an interrupted build never leaves a file that
looks complete. Identical configs give byte-identical arrays, whatever the number of worker
processes: every random draw is seeded per protocol, per subject or per image. The draw-call
batch size (``batch``, part of the cache key) can change a few pixels by one grey level: an
image's tile in the batch atlas changes OpenGL's attribute interpolation in the last bit.
The layout of the file is described in :mod:`disentangled_face.data.synthset`.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import numpy as np

from ..config import SynthConfig
from ..paths import atomic_path
from ..shape import MorphableModel, load_ict_facekit
from .generator import IMAGE_SIZE, get_albedo_model, reference_scale, render_faces, subject_albedo, subject_codes
from .protocols import GENERATOR_VERSION, plan_protocol, protocol_config, protocol_path
from .render import Light

__all__ = ["build_protocol"]


# ----------------------------------------------------------------------------- rendering a plan
class _PlanRenderer:
    """Renders ranges of a plan's images (in the main process or in a worker)."""

    def __init__(self, model, plan: dict, cfg: dict, max_batch: int) -> None:
        self.model, self.plan, self.cfg, self.max_batch = model, plan, cfg, max_batch
        self.alpha_id = subject_codes(model, cfg["seed"], plan["subject_id"])
        self.albedo_model = get_albedo_model(model)
        self._albedo: dict[int, np.ndarray] = {}
        self._identity: dict[int, np.ndarray] = {}
        self.f0 = cfg["pose"]["scale_factor"] * reference_scale(model)

    def albedo(self, k: int) -> np.ndarray:
        """Subject k's albedo as uint8 (n, 3) (cached)."""
        if k not in self._albedo:
            if len(self._albedo) > 512:
                self._albedo.clear()
            a = subject_albedo(self.albedo_model, self.cfg["seed"], int(self.plan["subject_id"][k]))
            self._albedo[k] = np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)
        return self._albedo[k]

    def expression_delta(self, alpha_exp: np.ndarray) -> np.ndarray:
        """``A_exp alpha_exp`` (n, 3) of one image, summed over its non-zero weights only
        (fast for sparse blendshape weights, and independent of the batch it is in)."""
        nz = np.flatnonzero(alpha_exp)
        E = self.model.exp_basis
        if nz.size == 0:
            return np.zeros(E.shape[1:], np.float32)
        return np.tensordot(alpha_exp[nz].astype(np.float32), E[nz], axes=1)

    def identity(self, k: int) -> np.ndarray:
        """Subject k's neutral shape ``s_mean + A_id alpha_id`` (n, 3) mm (cached)."""
        if k not in self._identity:
            if len(self._identity) > 512:
                self._identity.clear()
            self._identity[k] = self.model.identity_shape(self.alpha_id[k])
        return self._identity[k]

    def __call__(self, span: tuple[int, int]) -> dict:
        s, e = span
        p = self.plan
        sub = p["subject"][s:e]
        idx = np.arange(s, e)
        model = self.model
        f = self.f0 * p["scale_jitter"][idx]
        shapes = np.stack([self.identity(k) + self.expression_delta(p["alpha_exp"][i]) for k, i in zip(sub, idx)])
        light = Light(*(p["light"][k][idx] for k in ("ambient", "direction", "diffuse")))
        out = render_faces(model, self.alpha_id[sub], p["alpha_exp"][idx], p["yaw"][idx], p["pitch"][idx],
                           p["roll"][idx], albedo=np.stack([self.albedo(k) for k in sub]), light=light,
                           scale=f, trans_offset=p["trans_jitter"][idx], shapes=shapes,
                           background=p["background"][idx], low_res=p["low_res"],
                           blur_sigma=p["blur_sigma"][idx], noise_std=p["noise_std"][idx],
                           landmark_noise_px=float(self.cfg["landmark_noise_px"]),
                           rng=list(p["image_seed"][idx]), max_batch=self.max_batch,
                           jaw_landmarks=self.cfg.get("jaw_landmarks", "fixed"))
        return {"images": out.images, "landmarks": out.landmarks, "landmarks_true": out.landmarks_true,
                "visible": out.visible, "scale": out.scale, "trans": out.trans}


_WORKER: dict = {}


def _worker_init(model, plan, cfg, max_batch):
    _WORKER["r"] = _PlanRenderer(model, plan, cfg, max_batch)


def _worker_run(span):
    return span, _WORKER["r"](span)


def _render_plan(model, plan: dict, cfg: dict, batch: int, workers: int, progress: bool, desc: str):
    """Yield ((start, end), arrays) over the plan in order, using ``workers`` processes.

    With ``workers`` > 1 (and more than two spans per process) the spans are rendered by a
    :class:`concurrent.futures.ProcessPoolExecutor` of spawned processes, at most four spans per
    process in flight (bounded memory). A worker that dies (killed, out of memory, a crash in
    the OpenGL driver) raises a RuntimeError instead of leaving the build waiting.
    """
    from tqdm import tqdm  # text bar: no widget left behind in an executed notebook

    N = plan["subject"].size
    spans = [(s, min(N, s + batch)) for s in range(0, N, batch)]
    workers = max(1, min(int(workers), os.cpu_count() or 1))
    bar = tqdm(total=N, desc=desc, unit="img", disable=not progress)
    try:
        if workers > 1 and len(spans) > 2 * workers:
            yield from _render_pool(model, plan, cfg, batch, workers, spans, bar)
        else:
            r = _PlanRenderer(model, plan, cfg, batch)
            for span in spans:
                arrays = r(span)
                bar.update(span[1] - span[0])
                yield span, arrays
    finally:
        bar.close()


def _render_pool(model, plan: dict, cfg: dict, batch: int, workers: int, spans: list, bar):
    """The spans rendered in ``workers`` spawned processes, yielded in order."""
    ctx = multiprocessing.get_context("spawn")  # a fresh process for each OpenGL context
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                               initargs=(model, plan, cfg, batch))
    try:
        todo, running = iter(spans), deque()
        for span in todo:                           # fill the window
            running.append(pool.submit(_worker_run, span))
            if len(running) >= 4 * workers:
                break
        while running:
            span, arrays = running.popleft().result()
            nxt = next(todo, None)
            if nxt is not None:
                running.append(pool.submit(_worker_run, nxt))
            bar.update(span[1] - span[0])
            yield span, arrays
    except BrokenProcessPool as exc:
        raise RuntimeError(
            f"a rendering worker process died ({exc}); in a script, build under "
            "`if __name__ == '__main__':` (worker processes are spawned and import it), check the "
            "memory, or pass synth.workers: 1") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# ----------------------------------------------------------------------------- build
def build_protocol(name: str, synth: SynthConfig, model: MorphableModel | None = None, progress: bool = True,
                   path: str | os.PathLike | None = None, overwrite: bool = False) -> Path:
    """Build (or return the cached) HDF5 file of a synthetic protocol.

    Parameters
    ----------
    name : str
        One of :data:`~disentangled_face.data.protocols.PROTOCOLS`.
    synth : SynthConfig
        ``cfg.synth``; sizes come from its ``protocols.<name>`` entry, the number of rendering
        processes from ``workers``, the images per draw call from ``batch``.
    model : MorphableModel, optional
        The morphable model (ICT-FaceKit loaded when omitted).
    progress : bool
        Show a tqdm progress bar.
    path : path, optional
        Write here instead of ``data/synth/<name>-<config_hash>.h5`` (no caching check).
    overwrite : bool
        Rebuild even when the file exists.

    Returns
    -------
    pathlib.Path
        The HDF5 file (layout in :mod:`disentangled_face.data.synthset`).

    Raises
    ------
    disentangled_face.config.ConfigError
        Unknown protocol, or the profile gives no sizes for it.
    ValueError
        Inconsistent sizes (for example more pairs than the subjects allow).
    disentangled_face.data.render.RendererUnavailableError
        When no headless OpenGL context can be created.
    """
    cfg = protocol_config(name, synth)
    if path is None and not overwrite and protocol_path(name, synth, model).is_file():
        return protocol_path(name, synth, model)
    if model is None:
        model = load_ict_facekit()
    target = Path(path) if path is not None else protocol_path(name, synth, model)
    if target.is_file() and not overwrite:
        return target
    plan = plan_protocol(name, synth, model)
    with atomic_path(target, suffix=".h5") as tmp:
        _write_protocol(tmp, name, cfg, plan, model, progress)
    return target


def _write_protocol(path: Path, name: str, cfg: dict, plan: dict, model, progress: bool) -> None:
    """Render the plan into ``path``: the per-image arrays, the codes and columns, the attributes."""
    import h5py

    N = plan["subject"].size
    H, W = IMAGE_SIZE
    with h5py.File(path, "w") as h5:
        dsets = {
            "images": h5.create_dataset("images", (N, H, W, 3), np.uint8, chunks=(min(N, 64), H, W, 3),
                                        compression="lzf"),
            "landmarks": h5.create_dataset("landmarks", (N, 68, 2), np.float32),
            "landmarks_true": h5.create_dataset("landmarks_true", (N, 68, 2), np.float32),
            "visible": h5.create_dataset("visible", (N, 68), bool),
            "scale": h5.create_dataset("scale", (N,), np.float32),
            "trans": h5.create_dataset("trans", (N, 2), np.float32),
        }
        for (s, e), arrays in _render_plan(model, plan, cfg, int(cfg["batch"]), int(cfg["workers"]),
                                           progress, desc=f"synth {name}"):
            for k, d in dsets.items():
                d[s:e] = arrays[k]
        alpha_id = subject_codes(model, cfg["seed"], plan["subject_id"])
        h5["label"] = plan["subject"]
        h5["subject_id"] = plan["subject_id"][plan["subject"]]
        h5["alpha_id"] = alpha_id[plan["subject"]]
        h5["alpha_exp"] = plan["alpha_exp"]
        for k in ("yaw", "pitch", "roll"):
            h5[k] = plan[k].astype(np.float32)
        for k, v in plan["columns"].items():
            h5[k] = v
        if "pairs" in plan:
            h5["pairs"], h5["same"], h5["fold"] = plan["pairs"], plan["same"], plan["fold"]
        h5.attrs["protocol"] = name
        h5.attrs["config"] = json.dumps(cfg, sort_keys=True)
        h5.attrs["model"] = model.name
        h5.attrs["generator_version"] = GENERATOR_VERSION
        h5.attrs["n_subjects"] = int(plan["subject_id"].size)
