"""An exception on one rank ends the whole job (run under mpiexec; the job must fail).

    mpiexec -n N python [-m mpi4py] tests/mpi/check_abort.py MODE

MODE ``uncaught``: the last rank raises in its own code (a failing data
loader) while the others wait in ``allreduce_grads``; run with ``python -m
mpi4py``, which aborts the job on an uncaught exception. MODE ``context``: the
same inside ``with abort_on_exception():``, without ``-m mpi4py``. MODE
``zero_step``: the last rank's local optimizer fails inside
``ZeroRedundancyOptimizer.step`` after the reduce-scatter, when the other ranks
are about to wait in the all-gather; the step itself aborts the job.

In every mode the job must end (no rank left waiting) with a non-zero exit
code and the error on stderr; the test checks both.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from mpi4py import MPI  # noqa: E402

import rustoptim  # noqa: E402
from _common import groups_of, make_params, rank_grads  # noqa: E402
from rustoptim import distributed as dist  # noqa: E402

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
last = size - 1


def data_loader_step():
    params = make_params()
    if rank == last:
        raise RuntimeError(f"data loader failed on purpose on rank {rank}")
    dist.allreduce_grads(rank_grads(params, 0, rank, size))


def zero_step():
    params = make_params()
    opt = dist.ZeroRedundancyOptimizer(groups_of(params), rustoptim.Adam, lr=0.01)
    if rank == last:
        def failing_step(*args, **kwargs):
            raise MemoryError(f"local step failed on purpose on rank {rank}")

        opt.optim.step = failing_step
    opt.step(grads=rank_grads(params, 0, rank, size))


def main():
    mode = sys.argv[1]
    if mode == "uncaught":
        data_loader_step()
    elif mode == "context":
        with dist.abort_on_exception():
            data_loader_step()
    elif mode == "zero_step":
        zero_step()
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(f"rank {rank}: finished without the expected failure", flush=True)


if __name__ == "__main__":
    main()
