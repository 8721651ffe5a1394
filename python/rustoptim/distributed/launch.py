"""Helpers for the script that ``mpiexec`` starts on every rank.

``mpiexec -n 4 python -m mpi4py train.py`` runs ``train.py`` on 4 ranks
(``python -m mpi4py`` ends the whole job on an uncaught exception); across
machines, ``mpiexec --hostfile hosts -n 16 ...``. In the script:

    from rustoptim import distributed as dist
    rows = dist.local_slice(len(x))              # this rank's share of the batch
    dist.broadcast_params(params)                # every rank starts from rank 0's params
    ...
    dist.save(lambda: {"opt": opt.state_dict()}, "ckpt.rop")   # rank 0 writes, all agree
"""

from __future__ import annotations

from typing import Any

from ..serialization import save as _save
from ._consensus import abort_on_exception, agree
from ._mpi import get_comm

__all__ = ["local_slice", "save", "abort_on_exception"]


def local_slice(n: int, comm: Any = None) -> slice:
    """This rank's contiguous share of ``n`` items: ``slice(r·n // N, (r+1)·n // N)``.

    Shares differ by at most one item. With equal shares, averaging the ranks'
    mean gradients (``allreduce_grads``) gives the mean gradient of the whole
    batch.
    """
    comm = get_comm(comm)
    r, size = comm.Get_rank(), comm.Get_size()
    return slice(r * n // size, (r + 1) * n // size)


def save(obj: Any, path: Any, comm: Any = None, root: int = 0) -> None:
    """Write a checkpoint from one rank: rank ``root`` saves ``obj`` (or what ``obj()``
    returns, called on ``root`` only) with :func:`rustoptim.save`, which writes a
    temporary file and renames it, so the file is either the old one or the whole
    new one. Collective: every rank returns once the file is in place, or every
    rank raises :class:`~rustoptim.distributed.DistributedError` if writing failed.
    Other ranks may pass None as ``obj``.
    """
    comm = get_comm(comm)
    error: BaseException | None = None
    if not (isinstance(root, int) and 0 <= root < comm.Get_size()):
        error = ValueError(f"root must be a rank of comm (0 to {comm.Get_size() - 1}), got {root!r}")
    elif comm.Get_rank() == root:
        try:
            _save(obj() if callable(obj) else obj, path)
        except Exception as e:  # an OSError, a TypeError for unsupported values, ...
            error = e
    agree(comm, f"save({str(path)!r}) on rank {root}", error)
