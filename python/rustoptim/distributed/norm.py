"""Gradient norms and clipping over gradients spread across ranks.

With :class:`~rustoptim.distributed.ZeroRedundancyOptimizer` each rank holds
the averaged gradients of its own params only, so the total norm that
``rustoptim.clip_grad_norm_`` takes over all gradients is assembled from
per-rank parts: for ``p < inf`` each rank computes ``Σ ‖g_t‖_p^p`` over its
gradients and one all-reduce adds the parts (in float64); for ``p = inf`` the
all-reduce takes the maximum; for ``p = 0`` it adds the counts of non-zero
gradients. Every rank then knows the same total and scales its own gradients
by ``min(max_norm / (total + 1e-6), 1)``, computed as torch computes it (in
float32 unless some gradient on some rank is float64).

The per-rank part comes from the per-gradient norms of the Rust clipping
code (one pass, each norm in its gradient's dtype as torch computes it),
raised to the p-th power and summed in float64.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

from .. import _core
from .. import errors as _errors
from ._consensus import agree
from ._mpi import MPI, get_comm
from .buckets import ParamsOrGrads, check_float_arrays, entries_of

__all__ = ["get_total_norm", "clip_grad_norm_"]

#: torch's error for a non-finite norm with ``error_if_nonfinite=True`` (a RuntimeError).
NonFiniteNormError = _errors.NonFiniteNormError


def _norm_type(norm_type: float | str) -> float:
    if isinstance(norm_type, str) and norm_type.lower() == "inf":
        return math.inf
    if isinstance(norm_type, (bool, np.bool_)) or not isinstance(norm_type, numbers.Real):
        raise TypeError(f"norm_type must be a real number or 'inf', got {norm_type!r}")
    p = float(norm_type)
    if math.isnan(p) or p < 0:
        raise ValueError(f"norm_type must be >= 0 (or inf), got {norm_type!r}")
    return p


def _local_part(grads: list[np.ndarray], p: float) -> float:
    """``Σ_t ‖g_t‖_p^p`` in float64 (the largest norm for inf, the number of
    non-zero gradients for 0), from each gradient's norm in its own dtype."""
    norms = _core.tensor_norms(list(grads), p)
    if any(math.isnan(n) for n in norms):
        return math.nan
    if p == 0:
        return float(sum(n > 0 for n in norms))
    if p == math.inf:
        return max(norms, default=0.0)
    return math.fsum(n**p for n in norms)


def _total(grads: ParamsOrGrads, norm_type: float | str, comm: Any, writeable: bool, what: str) -> tuple[float, list[np.ndarray], bool]:
    """The global total norm, this rank's gradients, and whether any rank has a float64 gradient."""
    comm = get_comm(comm)
    error: BaseException | None = None
    present: list[np.ndarray] = []
    part, p = 0.0, 2.0
    try:
        p = _norm_type(norm_type)
        present = [g for g in entries_of(grads, "grads", "grad") if g is not None]
        check_float_arrays(present, "grads", writeable=writeable)
        part = _local_part(present, p)
    except (TypeError, ValueError) as e:
        error = e
    has_float64 = any(g.dtype == np.float64 for g in present)
    # [part, failed, nan, float64]: one all-reduce carries the part and the flags
    # (MAX of doubles with a NaN depends on the order, hence the NaN flag).
    values = np.array([0.0 if math.isnan(part) else part, error is not None, math.isnan(part), has_float64])
    comm.Allreduce(MPI.IN_PLACE, values, op=MPI.MAX if p == math.inf else MPI.SUM)
    if values[1] > 0:
        agree(comm, what, error)  # every rank gets here: raises DistributedError everywhere
    if values[2] > 0:
        total = math.nan
    elif p in (0.0, math.inf):
        total = float(values[0])
    else:
        total = float(values[0]) ** (1.0 / p)
    return total, present, bool(values[3] > 0)


def _check_finite(total: float, p: float, error_if_nonfinite: bool) -> None:
    if error_if_nonfinite and not math.isfinite(total):
        raise NonFiniteNormError(
            f"The total norm of order {p} for gradients from `parameters` is non-finite, so it cannot be "
            "clipped. To disable this error and scale the gradients by the non-finite norm anyway, set "
            "`error_if_nonfinite=False`"
        )


def get_total_norm(
    grads: ParamsOrGrads, norm_type: float | str = 2.0, comm: Any = None, error_if_nonfinite: bool = False
) -> float:
    """The total norm of the gradients of every rank: each rank passes the gradients it holds
    (disjoint across ranks, e.g. a ZeRO shard); every rank returns the same float.

    ``‖(‖g_1‖_p, …, ‖g_k‖_p)‖_p`` over all gradients of all ranks, as
    ``rustoptim.get_total_norm`` would give for all of them on one rank (to
    rounding). Collective.
    """
    total, _, _ = _total(grads, norm_type, comm, writeable=False, what="get_total_norm")
    _check_finite(total, _norm_type(norm_type), error_if_nonfinite)
    return total


def clip_grad_norm_(
    grads: ParamsOrGrads,
    max_norm: float,
    norm_type: float | str = 2.0,
    comm: Any = None,
    error_if_nonfinite: bool = False,
) -> float:
    """Scale every rank's gradients in place so that their total norm (across ranks) is at
    most ``max_norm``; returns the total norm before clipping. Collective.

    ``g ← g · min(max_norm / (total + 1e-6), 1)``, the coefficient computed in
    float64 if any rank has a float64 gradient, else in float32, as torch does.
    """
    if isinstance(max_norm, (bool, np.bool_)) or not isinstance(max_norm, numbers.Real) or not max_norm >= 0:
        raise ValueError(f"max_norm must be a real number >= 0, got {max_norm!r}")
    total, present, has_float64 = _total(grads, norm_type, comm, writeable=True, what="clip_grad_norm_")
    _check_finite(total, _norm_type(norm_type), error_if_nonfinite)
    dtype = np.float64 if has_float64 else np.float32
    with np.errstate(all="ignore"):
        coef = dtype(max_norm) / (dtype(total) + dtype(1e-6))
    if math.isnan(coef) or coef < 1:
        for g in present:
            np.multiply(g, g.dtype.type(coef), out=g)
    return total
