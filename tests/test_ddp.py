"""Two-process DistributedDataParallel (gloo, CPU), interrupted and resumed, gives the single-process result.

With a global batch B split as B/2 per process, the DistributedSampler shards of one step are
exactly the single-process batch of that step, and DDP averages the gradients: the parameters
after training match (up to float summation order).
"""

import os
import shutil
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).parent))
from test_train import toy_data, toy_net  # noqa: E402

from disentangled_face import train as T  # noqa: E402

CFG = {"batch_size": 16, "checkpoint_every": 5, "seed": 3,
       "phase3": {"epochs": 2, "lr": 1e-2, "lambda_r": [0.5, 1.0], "plateau_patience": 1,
                  "plateau_min_delta": 0.0, "epochs_after_switch": 1}}


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


def test_two_process_ddp_matches_single_process(tmp_path):
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        m, ds = toy_data()
        single = toy_net(m, ds, seed=0)
        r1 = T.train_phase("phase3", single, ds, CFG, tmp_path / "single", model=m, chash="ddp", progress=False)
    finally:
        torch.set_num_threads(n)
    ddp_dir = tmp_path / "ddp"
    ddp_dir.mkdir()
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(ddp_dir)), nprocs=2, join=True)
    s0 = torch.load(ddp_dir / "rank0.pt", weights_only=True)
    s1 = torch.load(ddp_dir / "rank1.pt", weights_only=True)
    for k, v in single.state_dict().items():
        torch.testing.assert_close(s0[k], s1[k], rtol=0, atol=0, msg=f"ranks differ: {k}")
        torch.testing.assert_close(s0[k], v, rtol=1e-4, atol=1e-5, msg=k)
    # the same number of steps, the same plateau switch, and close per-step losses (rank 0 logs
    # its own shard's loss, the single process the whole batch's; their epoch means agree)
    import pandas as pd

    h = pd.read_csv(ddp_dir / "phase3.csv")
    e_ddp, e_single = pd.read_csv(ddp_dir / "phase3_epochs.csv"), r1.epochs
    assert h.step.tolist() == r1.history.step.tolist()
    assert e_ddp.switch.tolist() == e_single.switch.tolist()
    assert e_ddp.loss.to_numpy() == pytest.approx(e_single.loss.to_numpy(), rel=1e-4)
    ck = torch.load(ddp_dir / "interrupted.pt", weights_only=True)
    assert ck["world_size"] == 2 and len(ck["ranks"]) == 2 and ck["step"] == 5
    assert not (ddp_dir / "phase3.state.pt").exists()  # removed once the phase completed
