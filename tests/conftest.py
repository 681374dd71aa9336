"""Fixtures shared by several test modules."""

import pytest
import torch


@pytest.fixture
def one_torch_thread():
    """Tiny networks: one intra-op thread is faster and immune to a busy second core."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def first_result_then_dead_worker():
    """``check(gen, match)``: take a process-pool generator's first result, SIGKILL one of the
    worker processes it started, and assert that the rest of it raises a RuntimeError matching
    ``match`` (a dead worker must not hang the pool). Returns the first result."""
    import multiprocessing
    import os
    import signal

    def check(gen, match):
        before = {p.pid for p in multiprocessing.active_children()}
        first = next(gen)
        workers = [p for p in multiprocessing.active_children() if p.pid not in before]
        assert workers
        os.kill(workers[0].pid, signal.SIGKILL)
        with pytest.raises(RuntimeError, match=match):
            for _ in gen:
                pass
        return first

    return check
