"""Benchmark: our batched 3DMM fitter against eos (eos-py) on the same landmarks.

Both fit the same ICT-FaceKit model (identity PCA + expression blendshapes) to the same
synthetic 68-point landmarks (known ground truth, Gaussian noise) in single-image mode, and our
fitter also in the paper's multi-image mode. Printed per method: throughput (images/s),
throughput per CPU second (one thread each: steadier on a shared machine), landmark
reprojection RMSE (px), full-shape RMSE against the truth after a similarity alignment
on the 68 landmarks (mm), and the ratios to eos measured in the same run; then the projected time
to fit CASIA-WebFace (488,848 images, 10,575 subjects) on 2 cores.

    python benchmarks/bench_fitting.py [--subjects 50] [--images 20] [--n-id 100] [--n-exp 53]

Both are projected to 2 cores as 2 single-threaded processes, each fitting half of the subjects
(subjects are independent), i.e. twice the measured one-thread throughput; torch's own threads
(``--threads``) are slower than that on a shared machine. eos uses its default regularisation
(lambda 30 for identity and expressions) and 5 iterations; ours the profile's ``fitting`` options.
The machine is shared: the ratios, measured in the same run, are the figures to read.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from disentangled_face import fitting
from disentangled_face.config import load_config
from disentangled_face.evaluation.peers import eos_fit, eos_model, eos_project, fit_project
from disentangled_face.shape import load_ict_facekit

CASIA_IMAGES, CASIA_SUBJECTS = 488_848, 10_575


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subjects", type=int, default=50)
    ap.add_argument("--images", type=int, default=20, help="images per subject")
    ap.add_argument("--eos-images", type=int, default=300, help="images fitted by eos (it is slower)")
    ap.add_argument("--n-id", type=int, default=100)
    ap.add_argument("--n-exp", type=int, default=53)
    ap.add_argument("--noise", type=float, default=1.0, help="landmark noise, px per coordinate")
    ap.add_argument("--eos-iterations", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for ours (1: the per-process figure)")
    ap.add_argument("--profile", default="book")
    a = ap.parse_args(argv)

    model = load_ict_facekit().subset(a.n_id, a.n_exp)
    H, W = 112, 96
    prof = load_config(a.profile)
    # the profile's jaw landmarks (book: on the silhouette, as a detector puts them) and fitter
    # options (book: landmark marching on); eos-py's fit_shape_and_pose ties them to fixed vertices
    syn = fitting.simulate_landmarks(model, a.subjects, a.images, noise_px=a.noise, image_size=(H, W), seed=0,
                                     jaw_landmarks=prof.synth.jaw_landmarks)
    N = len(syn.label)
    true_exp = syn.alpha_exp
    opts = prof.fitting                                   # the profile's `fitting:` section
    over = dict(threads=a.threads, dtype="float32")
    rows = {}

    def record(name, secs, cpu, n, a_id, a_exp, proj, sel):
        rep = np.sqrt(((proj - syn.landmarks[sel]) ** 2).sum(-1).mean(-1)).mean()
        err = fitting.shape_errors(model, a_id, a_exp, syn.alpha_id[syn.label[sel]], true_exp[sel])["shape_aligned"].mean()
        rows[name] = dict(images_per_s=n / secs, images_per_cpu_s=n / cpu, reproj_px=rep, shape_mm=err, secs=secs, n=n)

    # ours: single-image mode (every image on its own) and the paper's multi-image mode
    fitting.fit_subjects(model, syn.landmarks[:64], None, opts, **over)         # warm-up
    for name, labels in (("ours, single-image", None), ("ours, multi-image", syn.label)):
        t0, c0 = time.perf_counter(), time.process_time()
        fit = fitting.fit_subjects(model, syn.landmarks, labels, opts, **over)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        record(name, dt, dc, N, fit.alpha_id, fit.alpha_exp, fit_project(model, fit), slice(None))

    # eos: single-image fits, one thread, on the first eos_images images
    mm, mapper = eos_model(model)
    sel = np.arange(min(a.eos_images, N))
    eos_fit(mm, mapper, syn.landmarks[:3], W, H, a.n_id, a.n_exp, a.eos_iterations, 30.0, 30.0)  # warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    e_id, e_exp, poses = eos_fit(mm, mapper, syn.landmarks[sel], W, H, a.n_id, a.n_exp, a.eos_iterations, 30.0, 30.0)
    dt, dc = time.perf_counter() - t0, time.process_time() - c0
    # eos's PCA coefficients are in standard deviations (basis * sqrt(eigenvalue) = our mode): alpha_id
    record("eos 1.5 (1 thread)", dt, dc, len(sel), e_id, e_exp, eos_project(model, e_id, e_exp, poses, W, H), sel)

    eos_row = rows["eos 1.5 (1 thread)"]
    print(f"\nICT-FaceKit {a.n_id} identity + {a.n_exp} expression modes, {model.n_vertices} vertices; "
          f"{N} images of {a.subjects} subjects ({a.images} each), {a.noise} px landmark noise, {W}x{H} px")
    print(f"jaw landmarks: {prof.synth.jaw_landmarks}; ours: contour correspondence '{opts.contour}'")
    print(f"ours: profile '{a.profile}' options, float32, {a.threads} threads; eos: fit_shape_and_pose, "
          f"{a.eos_iterations} iterations, lambda 30 (its default), {len(sel)} images\n")
    print(f"{'method':24s} {'images/s':>10s} {'x eos':>7s} {'img/CPU-s':>10s} {'x eos':>7s} {'reproj px':>10s} {'shape mm':>9s}")
    for name, r in rows.items():
        print(f"{name:24s} {r['images_per_s']:10.1f} {r['images_per_s'] / eos_row['images_per_s']:7.1f} "
              f"{r['images_per_cpu_s']:10.1f} {r['images_per_cpu_s'] / eos_row['images_per_cpu_s']:7.1f} "
              f"{r['reproj_px']:10.3f} {r['shape_mm']:9.3f}")
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (wall-clock rates include waiting for "
          "the other processes; the CPU-time rates, one thread each, do not)")
    procs = 2 if a.threads == 1 else 1          # 2 cores: two one-thread processes, or one multi-threaded
    eos2 = 2 * eos_row["images_per_s"]
    print(f"\nCASIA-WebFace ({CASIA_IMAGES:,} images of {CASIA_SUBJECTS:,} subjects) on 2 cores "
          f"(ours: {procs} process(es) x {a.threads} thread(s); eos: 2 processes):")
    for name in ("ours, multi-image", "ours, single-image"):
        r2 = procs * rows[name]["images_per_s"]
        print(f"  {name:20s} {CASIA_IMAGES / r2 / 3600:6.2f} h   ({r2 / eos2:.1f}x eos)")
    print(f"  {'eos':20s} {CASIA_IMAGES / eos2 / 3600:6.2f} h")
    return rows


if __name__ == "__main__":
    main()
