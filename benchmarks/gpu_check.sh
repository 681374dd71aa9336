#!/usr/bin/env bash
# GPU check of the paper profile's training (the published SphereFace-20 encoder-decoder).
#
# Runs a fixed number of Phase III steps (Eq. 5, lambda_r = 0.5) of the `paper` profile through
# the trainer itself (disentangled_face.training.train_phase: mixed precision, channels_last, the
# profile's optimiser and batch size), on random images unless the `train` protocol and its
# fitted targets are already built, then prints training images/s and the peak GPU memory
# (torch.cuda.max_memory_allocated). Fails with a clear message when CUDA is not available.
#
# Usage:  benchmarks/gpu_check.sh [STEPS] [NPROC]
#   STEPS  training steps to time (default 40; the first 5 are warm-up and not timed)
#   NPROC  GPUs, through torchrun + DistributedDataParallel (default 1)
# Environment: PYTHON (default .venv/bin/python if present, else python), BATCH (override the
# profile's global batch size).
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS="${1:-40}"
NPROC="${2:-1}"
PY="${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}"

DRY="${GPU_CHECK_DRY_CPU:-0}"  # 1: run the same code on the CPU (tests this script, not a GPU)
if [ "$DRY" != "1" ] && ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check.sh: CUDA is not available (torch.cuda.is_available() is False): this check needs an NVIDIA GPU." >&2
    exit 2
fi
NGPU=$("$PY" -c "import torch; print(torch.cuda.device_count())")
if [ "$DRY" != "1" ] && [ "$NPROC" -gt "$NGPU" ]; then
    echo "gpu_check.sh: asked for $NPROC processes but only $NGPU GPU(s) are visible." >&2
    exit 2
fi

SCRIPT=$(mktemp --suffix=.py)
OUTDIR=$(mktemp -d)
trap 'rm -rf "$SCRIPT" "$OUTDIR"' EXIT
cat > "$SCRIPT" <<'EOF'
import os, sys, time
import numpy as np
import pandas as pd
import torch
from disentangled_face import training
from disentangled_face.config import load_config, with_overrides
from disentangled_face.data.torch_dataset import FaceImageDataset, dataset_codes
from disentangled_face.networks import CodeScaler, DisentangledFaceNet
from disentangled_face.shape import load_model

steps, out_dir = int(sys.argv[1]), sys.argv[2]
rank, world = training.init_distributed()
dry = os.environ.get("GPU_CHECK_DRY_CPU") == "1"
over = {"train.phase3.lambda_r": [0.5], "train.phase3.epochs": 1, "train.checkpoint_every": 10**9,
        "train.log_every": 1}
if os.environ.get("BATCH"):
    over["train.batch_size"] = int(os.environ["BATCH"])
if dry:
    over["train.device"], over["train.num_workers"] = "cpu", 0
cfg = with_overrides(load_config("paper"), over)
tcfg, ncfg = cfg.train, cfg.network
B = tcfg.batch_size
model = load_model(cfg.model)
n_img = B * steps
source = "random images"  # speed does not depend on the pixels; the real data need not be built
g = torch.Generator().manual_seed(0)
a_id, a_exp = model.sample(n_img, rng=0)
ds = FaceImageDataset.from_tensors(torch.rand(n_img, 3, 112, 96, generator=g) * 2 - 1,
                                   np.arange(n_img) % 1000, a_id, a_exp)
a_id, a_exp, _ = dataset_codes(ds)
torch.manual_seed(0)
net = DisentangledFaceNet.from_config(ncfg, model, n_subjects=1000, scaler=CodeScaler.fit(a_id, a_exp))
dev = training.resolve_device(tcfg.device)
if not dry:
    torch.cuda.reset_peak_memory_stats(dev)
t0 = time.perf_counter()
res = training.train_phase("phase3", net, ds, tcfg, out_dir, model=model, chash="gpu-check",
                           progress=False, max_steps=steps)
if not dry:
    torch.cuda.synchronize(dev)
wall = time.perf_counter() - t0
peak = float("nan") if dry else torch.cuda.max_memory_allocated(dev) / 2**30
if rank == 0:
    h = pd.read_csv(os.path.join(out_dir, "phase3.csv"))
    timed = h.images_per_s.iloc[5:] if len(h) > 8 else h.images_per_s
    amp = training.amp_dtype(tcfg.amp, dev)
    name = "CPU (dry run)" if dry else torch.cuda.get_device_name(dev)
    print(f"device: {name} x {world}; AMP {amp}; channels_last {tcfg.channels_last}; "
          f"data: {source}")
    print(f"paper profile: global batch {B}, {len(h)} steps, final loss {h.loss.iloc[-1]:.4g}")
    span = f"steps 6-{len(h)}" if len(h) > 8 else "all steps"
    print(f"training throughput: {timed.median():.1f} images/s (median over {span}), "
          f"{B * len(h) / wall:.1f} images/s over the whole call")
    print(f"peak GPU memory (rank 0): {peak:.2f} GiB")
EOF
if [ "$NPROC" -gt 1 ]; then
    "$PY" -m torch.distributed.run --standalone --nproc_per_node="$NPROC" "$SCRIPT" "$STEPS" "$OUTDIR"
else
    "$PY" "$SCRIPT" "$STEPS" "$OUTDIR"
fi
