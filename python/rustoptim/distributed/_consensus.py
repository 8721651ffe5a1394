"""How a failure on one rank reaches every rank, so that none is left waiting.

Two mechanisms, for two kinds of failure:

- **Agreement before the first collective.** Every collective call of this
  package first checks its inputs locally, then runs one small all-reduce
  (three int64: a failure flag and a fingerprint of what the rank is about to
  send, e.g. the dtypes and sizes of its gradients). Either every rank goes on,
  or every rank raises the same :class:`DistributedError` (naming the rank that
  failed and its error) with nothing changed anywhere, so the job may catch it
  and go on. Errors of this kind are bad input (a gradient of the wrong shape on
  one rank, ranks passing different arrays, a checkpoint that cannot be written),
  and recovering from them matters in long jobs.
- **Abort for everything else.** An exception in the caller's own code between
  two collective calls (one rank's data loader fails while the others wait in
  ``allreduce_grads``) never reaches this package, and an error after some ranks
  have changed their params cannot be undone. Both must end the job:
  :func:`abort_on_exception` (or running the script with ``python -m mpi4py``,
  which does the same for uncaught exceptions) prints the traceback with the
  rank and calls ``MPI_Abort``, which ends every rank. The ZeRO step wraps its
  part between the reduce-scatter and the all-gather in the same way.

Abort alone would end a job on errors it could survive; flags alone cannot see
errors raised outside this package. The agreement costs one latency-bound
all-reduce per call (measured in ``benches/bench_distributed.py``).
"""

from __future__ import annotations

import contextlib
import sys
import traceback
from collections.abc import Iterator
from typing import Any, Callable

import numpy as np

from ..errors import RustoptimError
from ._mpi import MPI, get_comm

__all__ = ["DistributedError", "agree", "abort_on_exception", "abort_job"]

#: Fingerprints are taken modulo this, so that both f and -f fit an int64.
FINGERPRINT_MODULUS = 1 << 62


class DistributedError(RustoptimError, RuntimeError):
    """A collective call failed on some rank before any rank changed anything.

    Raised on every rank with the same message, which names the failing rank(s)
    and their errors. On a failing rank the original exception is the
    ``__cause__``. Attributes: ``ranks`` (the failing ranks, or every rank whose
    inputs differ from rank 0's), ``reports`` (one string or None per rank).
    """

    def __init__(
        self, message: str, ranks: tuple[int, ...] = (), reports: tuple[str | None, ...] = ()
    ) -> None:
        super().__init__(message)
        self.ranks = ranks
        self.reports = reports


def agree(
    comm: Any,
    what: str,
    error: BaseException | None = None,
    fingerprint: int = 0,
    describe: Callable[[], str] | None = None,
) -> None:
    """Share this rank's verdict on its inputs; raise ``DistributedError`` on every rank
    if any rank failed or the fingerprints differ.

    Collective: every rank of ``comm`` calls it. ``what`` names the operation in
    the message; ``describe()`` (called only when fingerprints differ) says what
    this rank passed.
    """
    fingerprint %= FINGERPRINT_MODULUS
    flags = np.array([error is not None, fingerprint, -fingerprint], dtype=np.int64)
    comm.Allreduce(MPI.IN_PLACE, flags, op=MPI.MAX)
    any_failed, highest, minus_lowest = (int(x) for x in flags)
    if not any_failed and highest == -minus_lowest:
        return
    if any_failed:
        report = None if error is None else f"{type(error).__name__}: {error}"
        reports = tuple(comm.allgather(report))
        ranks = tuple(r for r, rep in enumerate(reports) if rep is not None)
        others = f" (and on rank{'s' if len(ranks) > 2 else ''} {', '.join(map(str, ranks[1:]))})" if len(ranks) > 1 else ""
        message = (
            f"{what} failed on rank {ranks[0]}{others}, before any rank changed anything: {reports[ranks[0]]}"
        )
    else:
        mine = describe() if describe is not None else f"fingerprint {fingerprint:#x}"
        both = tuple(comm.allgather((fingerprint, mine)))
        reports = tuple(d for _, d in both)
        ranks = tuple(r for r, (f, _) in enumerate(both) if f != both[0][0])
        first = ranks[0]
        message = (
            f"{what}: the ranks passed different arrays, so nothing was changed (every rank must pass "
            f"the same dtypes and sizes, in the same order): rank 0 has {reports[0]}, "
            f"rank {first} has {reports[first]}"
        )
    raise DistributedError(message, ranks, reports) from error


def abort_job(comm: Any, context: str, exit_code: int = 1) -> None:
    """Print the current exception with this rank's number to stderr, then end every rank (``MPI_Abort``)."""
    text = traceback.format_exc()
    sys.stdout.flush()
    sys.stderr.write(f"rank {comm.Get_rank()} of {comm.Get_size()}: {context}; ending the job (MPI_Abort)\n{text}")
    sys.stderr.flush()
    comm.Abort(exit_code)


@contextlib.contextmanager
def abort_on_exception(comm: Any = None, exit_code: int = 1) -> Iterator[None]:
    """End the whole job if the block raises on any rank, instead of leaving the others waiting.

    ``with abort_on_exception(): train()``: an exception (other than
    ``SystemExit(0)``) prints its traceback prefixed with the rank, then calls
    ``comm.Abort(exit_code)``, which makes ``mpiexec`` end every rank and exit
    with an error. ``python -m mpi4py train.py`` does the same for uncaught
    exceptions of the whole script.
    """
    comm = get_comm(comm)
    try:
        yield
    except SystemExit as e:
        if e.code in (None, 0):
            raise
        abort_job(comm, f"SystemExit({e.code!r})", exit_code)
    except BaseException:
        abort_job(comm, "an exception ended this rank", exit_code)
