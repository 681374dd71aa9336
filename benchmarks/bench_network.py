"""Speed of the encoder-decoder on this machine, beside the single-image landmark fitter.

For the ``book`` and ``paper`` profiles' networks (``disentangled_face.networks``):

* training throughput, images/s: one Phase III step (forward, Eq. 5 loss, backward, Adam)
  on a batch, the trainer's own step module;
* inference, ms/image: image -> shape (encoder, heads, decoders), at batch 1 and batch 64;

and, on the same images, the single-image 3DMM landmark fitter
(``fitting.fit_single_image``, landmarks given), ms/image. Every figure is printed with its ratio
to the fitter measured in the same run (the paper's Table 4 compares its network with fitting
methods in the same way).

Usage::

    .venv/bin/python benchmarks/bench_network.py [--repeats 5] [--threads N] [--profiles book paper]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch


def _timed(fn, repeats: int) -> float:
    """Median wall time (s) of ``fn()`` over ``repeats`` calls after one warm-up call."""
    fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def _faces(model, n: int):
    """n synthetic faces: images (n, 3, 112, 96) in [-1, 1] and their 68 landmarks (n, 68, 2) px."""
    from disentangled_face.data import render_faces, to_network_input

    a_id, a_exp = model.sample(n, rng=0)
    yaw = np.radians(np.linspace(-40, 40, n))
    r = render_faces(model, a_id, a_exp, yaw=yaw, rng=0)
    return torch.from_numpy(to_network_input(r.images)), r.landmarks, a_id, a_exp


def bench_profile(profile: str, model, images, a_id, a_exp, repeats: int, train_batch: int) -> dict:
    from disentangled_face.config import load_config
    from disentangled_face.networks import CodeScaler, DisentangledFaceNet
    from disentangled_face.training import PhaseStep, get_phase

    ncfg = load_config(profile).network
    torch.manual_seed(0)
    net = DisentangledFaceNet.from_config(ncfg, model, n_subjects=100,
                                          scaler=CodeScaler.fit(a_id, a_exp, margin=ncfg.code_margin))
    # training: the trainer's Phase III step on a batch of train_batch images
    reps = -(-train_batch // len(images))
    xb = images.repeat(reps, 1, 1, 1)[:train_batch]
    batch = {"image": xb, "label": torch.arange(train_batch) % 100,
             "alpha_id": torch.as_tensor(np.resize(a_id, (train_batch, a_id.shape[1]))),
             "alpha_exp": torch.as_tensor(np.resize(a_exp, (train_batch, a_exp.shape[1])))}
    step = PhaseStep(get_phase("phase3"), net, model)
    step.lambda_r = 0.5
    opt = torch.optim.Adam(net.parameters(), 1e-4)
    net.train()

    def train_step():
        loss, _ = step(**batch)
        opt.zero_grad()
        loss.backward()
        opt.step()

    t_train = _timed(train_step, max(2, repeats // 2))
    net.eval()
    out = {"train images/s": train_batch / t_train}
    for b in (1, 64):
        reps = -(-b // len(images))
        x = images.repeat(reps, 1, 1, 1)[:b]

        def infer():
            with torch.no_grad():
                net(x)

        out[f"inference ms/image (batch {b})"] = 1e3 * _timed(infer, repeats) / b
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--profiles", nargs="+", default=["book", "paper"])
    ap.add_argument("--train-batch", type=int, default=32)
    ap.add_argument("--faces", type=int, default=8)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from disentangled_face.shape import load_ict_facekit

    model = load_ict_facekit()
    images, landmarks, a_id, a_exp = _faces(model, args.faces)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.faces} synthetic faces, "
          f"ICT-FaceKit n={model.n_vertices}, k_id={model.n_id}, k_exp={model.n_exp}")

    fitter_ms = None
    try:
        from disentangled_face.fitting import fit_single_image
    except ImportError:
        print("fitting.fit_single_image not available: no fitter comparison")
    else:
        def fit_all():
            for lm in landmarks:
                fit_single_image(model, lm)

        fitter_ms = 1e3 * _timed(fit_all, max(1, args.repeats // 2)) / len(landmarks)
        print(f"\nsingle-image landmark fitter: {fitter_ms:.1f} ms/image (the reference, ratio 1.00)")

    for profile in args.profiles:
        res = bench_profile(profile, model, images, a_id, a_exp, args.repeats, args.train_batch)
        print(f"\n{profile} profile network")
        for k, v in res.items():
            line = f"  {k:32s} {v:10.2f}"
            if fitter_ms is not None and k.startswith("inference"):
                line += f"   fitter / network = {fitter_ms / v:8.2f}x"
            if fitter_ms is not None and k.startswith("train"):
                line += f"   = {v * fitter_ms / 1e3:8.2f} training images per fitted image"
            print(line)


if __name__ == "__main__":
    main()
