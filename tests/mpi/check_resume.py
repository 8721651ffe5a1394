"""Resume a checkpoint written on another number of ranks (run under mpiexec).

    mpiexec -n N python -m mpi4py tests/mpi/check_resume.py CHECKPOINT

CHECKPOINT comes from ``check_training.py --save`` (3 ZeRO Adam steps with an
ExponentialLR scheduler on 3 ranks). Every rank loads it into a
ZeroRedundancyOptimizer on N ranks and takes 3 more steps; the params after
each step must equal, bit for bit, a single-process run that never stopped
(3 steps on the 3-rank average gradients, then 3 on the N-rank ones), and the
final consolidated state dict must equal that run's. On one rank, the
checkpoint also loads into a plain ``rustoptim.Adam``.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from mpi4py import MPI  # noqa: E402

import rustoptim  # noqa: E402
from _common import (  # noqa: E402
    assert_same_params,
    assert_same_state_dict,
    groups_of,
    log,
    make_params,
    mean_grads,
    rank_grads,
    skipped_at,
)
from rustoptim import distributed as dist  # noqa: E402
from rustoptim.lr_scheduler import ExponentialLR  # noqa: E402

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
HYPER = dict(lr=0.01, weight_decay=0.01)


def uninterrupted(saved_ranks: int):
    """The single-process run that never stopped: params and optimizer after each of the 6 steps."""
    params = make_params()
    opt = rustoptim.Adam(groups_of(params), **HYPER)
    sched = ExponentialLR(opt, 0.8)
    history = []
    for step in range(6):
        ranks = saved_ranks if step < 3 else size
        opt.step(grads=mean_grads(params, step, ranks, skipped_at(step)))
        sched.step()
        history.append([p.copy() for p in params])
    return history, opt


def resumed(optimizer_factory, checkpoint):
    params = make_params()
    for p, saved in zip(params, checkpoint["params"]):
        np.copyto(p, saved)  # keep make_params' layouts
    opt = optimizer_factory(params)
    opt.load_state_dict(checkpoint["opt"])
    sched = ExponentialLR(opt, 0.8)
    sched.load_state_dict(checkpoint["sched"])
    return params, opt, sched


def main():
    path = sys.argv[1]
    checkpoint = rustoptim.load(path)
    saved_ranks = checkpoint["ranks"]
    history, reference = uninterrupted(saved_ranks)
    assert_same_params(checkpoint["params"], history[2], "the checkpoint's params")

    params, opt, sched = resumed(
        lambda ps: dist.ZeroRedundancyOptimizer(groups_of(ps), rustoptim.Adam, **HYPER), checkpoint
    )
    for step in range(3, 6):
        opt.step(grads=rank_grads(params, step, rank, size, skipped_at(step)))
        sched.step()
        assert_same_params(params, history[step], f"resumed on {size} ranks from {saved_ranks}, step {step}")
    opt.consolidate_state_dict(to=0)
    if rank == 0:
        assert_same_state_dict(opt.state_dict(), reference.state_dict(), "the state after resuming")
    log(comm, f"ok a checkpoint from {saved_ranks} ranks resumes on {size}")

    if size == 1:
        params, plain, sched = resumed(lambda ps: rustoptim.Adam(groups_of(ps), **HYPER), checkpoint)
        for step in range(3, 6):
            plain.step(grads=mean_grads(params, step, 1, skipped_at(step)))
            sched.step()
            assert_same_params(params, history[step], f"plain Adam from the ZeRO checkpoint, step {step}")
        assert_same_state_dict(plain.state_dict(), reference.state_dict(), "plain Adam after resuming")
        log(comm, "ok the checkpoint also resumes a plain rustoptim.Adam")


if __name__ == "__main__":
    main()
