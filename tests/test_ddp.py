"""Two-process DistributedDataParallel (gloo, CPU), interrupted and resumed, gives the single-process result.

With a global batch B split as B/2 per process, the DistributedSampler shards of one step are
exactly the single-process batch of that step (rank r takes its items r, r+2, ...), and DDP
averages the two shards' gradients. So DDP computes, in float32, exactly what one process
computes when it takes the gradient of each half-batch and averages them (:class:`SplitBatch`):
the test asserts that to float32 rounding of single operations (a defect of the sampler, the
gradient averaging or the resume path would differ at the percent level).

Against the ordinary full-batch single process the only difference is the summation order
of the batch's gradients (one sum of 16 against two of 8). Adam amplifies those rounding
differences in parameters with tiny gradients (the 0.01-std convolutions of the residual
units), so the weights differ by up to ~3e-4 relative after 12 steps, by an amount that
depends on the CPU's kernels (AVX2, AVX-512). The full-batch comparison is therefore on what
the order cannot change beyond rounding: the per-step losses (agreeing to ~1e-5 relative), the
epoch losses, the steps and the λ_R switch.
"""

import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).parent))
from test_train import tcfg, toy_data, toy_net  # noqa: E402

from disentangled_face import training as T  # noqa: E402
from disentangled_face.training.phases import Phase3  # noqa: E402

CFG = tcfg({"batch_size": 16, "checkpoint_every": 5, "seed": 3,
            "phase3": {"epochs": 2, "lr": 1e-2, "lambda_r": [0.5, 1.0], "plateau_patience": 1,
                       "plateau_min_delta": 0.0, "epochs_after_switch": 1}})


class SplitBatch(Phase3):
    """Phase III on the two shards of a batch that two DDP ranks see, gradients averaged as DDP does."""

    def loss(self, step, image, label, alpha_id, alpha_exp):
        l0, p0 = super().loss(step, image[0::2], label[0::2], alpha_id[0::2], alpha_exp[0::2])
        l1, p1 = super().loss(step, image[1::2], label[1::2], alpha_id[1::2], alpha_exp[1::2])
        return 0.5 * l0 + 0.5 * l1, {k: 0.5 * (p0[k] + p1[k]) for k in p0}


def _worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        m, ds = toy_data()
        net = toy_net(m, ds, seed=rank)  # different starting weights: DDP broadcasts rank 0's
        if rank == 0:  # rank 0's weights are what a single process starts from (seed 0)
            net = toy_net(m, ds, seed=0)
        # interrupted after 5 steps (a state checkpoint at step 5), then resumed to the end
        T.train_phase("phase3", net, ds, CFG, out_dir, model=m, chash="ddp", progress=False, max_steps=5)
        if rank == 0:
            shutil.copy(os.path.join(out_dir, "phase3.state.pt"), os.path.join(out_dir, "interrupted.pt"))
        dist.barrier()
        T.train_phase("phase3", net, ds, CFG, out_dir, model=m, chash="ddp", progress=False, resume=True)
        torch.save(net.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _single(tmp_path, phase, name):
    m, ds = toy_data()
    net = toy_net(m, ds, seed=0)
    res = T.train_phase(phase, net, ds, CFG, tmp_path / name, model=m, chash="ddp", progress=False)
    return net, res


def test_two_process_ddp_matches_single_process(tmp_path):
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _, r1 = _single(tmp_path, "phase3", "single")
        split, r2 = _single(tmp_path, SplitBatch(), "split")
    finally:
        torch.set_num_threads(n)
    ddp_dir = tmp_path / "ddp"
    ddp_dir.mkdir()
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(ddp_dir)), nprocs=2, join=True)
    s0 = torch.load(ddp_dir / "rank0.pt", weights_only=True)
    s1 = torch.load(ddp_dir / "rank1.pt", weights_only=True)
    for k, v in split.state_dict().items():
        torch.testing.assert_close(s0[k], s1[k], rtol=0, atol=0, msg=f"ranks differ: {k}")
        # the same arithmetic as DDP in one process: equal up to the rounding of single operations
        torch.testing.assert_close(s0[k], v, rtol=1e-6, atol=1e-9, msg=f"DDP differs from the split batch: {k}")
    # against the full batch: the same steps and switch, per-step and epoch losses equal up to
    # the summation order (rank 0 logs its own shard's loss, so per-step losses are compared
    # between the two single-process runs; the epoch means are over all ranks)
    import pandas as pd

    h = pd.read_csv(ddp_dir / "phase3.csv")
    e_ddp, e_single = pd.read_csv(ddp_dir / "phase3_epochs.csv"), r1.epochs
    assert h.step.tolist() == r1.history.step.tolist() == r2.history.step.tolist()
    np.testing.assert_allclose(r2.history.loss.to_numpy(), r1.history.loss.to_numpy(), rtol=1e-4)
    assert e_ddp.switch.tolist() == e_single.switch.tolist()
    assert e_ddp.loss.to_numpy() == pytest.approx(e_single.loss.to_numpy(), rel=1e-4)
    ck = torch.load(ddp_dir / "interrupted.pt", weights_only=True)
    assert ck["world_size"] == 2 and len(ck["ranks"]) == 2 and ck["step"] == 5
    assert not (ddp_dir / "phase3.state.pt").exists()  # removed once the phase completed
