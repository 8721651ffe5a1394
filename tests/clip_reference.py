"""A small NumPy reference of gradient clipping and weight averaging, written
from torch's definitions (see rustoptim.clip_grad and rustoptim.swa_utils) to
check the Rust kernels against.

Norms keep the structure rustoptim (and torch, per tensor) uses, so float32
rounding is comparable: chunks of 32768 elements; in a chunk, p = 2 sums
squares in 8 (float32) or 4 (float64) lanes, p = 1 and other p sum
sequentially. The reference rounds every square separately where rustoptim
fuses torch's tail multiply-adds, so it agrees to within rounding, not bitwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

CHUNK = 1 << 15


def memory_order(x: np.ndarray) -> np.ndarray:
    """The elements in the order the kernels visit them: memory order for a
    contiguous array, C order for a strided view."""
    if not x.flags.c_contiguous and x.flags.f_contiguous:
        return x.ravel(order="F")
    return x.ravel(order="C")


def _chunk_partial(x: np.ndarray, p: float) -> np.generic:
    dtype = x.dtype.type
    a = np.abs(x)
    if p == 2.0:
        lanes = 8 if x.dtype == np.float32 else 4
        whole = x.size - x.size % lanes
        squares = (x * x).astype(x.dtype)
        lane_sums = np.add.reduce(squares[:whole].reshape(-1, lanes), axis=0, dtype=x.dtype) if whole else np.zeros(lanes, x.dtype)
        total = dtype(0)
        for value in list(lane_sums) + list(squares[whole:]):
            total = dtype(total + value)
        return total
    if p == math.inf:
        return a.max()
    if p == -math.inf:
        return a.min()
    if p == 0.0:
        return dtype(np.count_nonzero(x))
    with np.errstate(divide="ignore"):  # 0 ** negative p = inf, as in torch
        # The power in float64, rounded once to x's dtype: correctly rounded, as the
        # kernels' powf is here, whatever NumPy's own float32 power does (NumPy
        # 2.0's is an ulp off for a fifth of the elements).
        terms = a if p == 1.0 else np.power(a.astype(np.float64), float(dtype(p))).astype(x.dtype)
    return np.add.accumulate(terms, dtype=x.dtype)[-1]


def tensor_norm(x: np.ndarray, p: float) -> np.generic:
    """torch's ``vector_norm(x, p)`` in x's dtype."""
    flat = memory_order(x)
    dtype = x.dtype.type
    if flat.size == 0:
        assert p > 0 or p == 0, "undefined for an empty tensor"
        return dtype(0)
    partials = [_chunk_partial(flat[i : i + CHUNK], p) for i in range(0, flat.size, CHUNK)]
    total = partials[0]
    for partial in partials[1:]:
        if math.isnan(total) or math.isnan(partial):
            total = dtype(math.nan)
        elif p == math.inf:
            total = max(total, partial)
        elif p == -math.inf:
            total = min(total, partial)
        else:
            total = dtype(total + partial)
    if p == 2.0:
        return np.sqrt(total)
    if p not in (0.0, 1.0, math.inf, -math.inf):
        return dtype(np.power(np.float64(total), float(dtype(dtype(1) / dtype(p)))))  # rounded once, as above
    return total


def total_norm(grads: Sequence[np.ndarray], p: float) -> np.generic:
    """The norm of the per-tensor norms, float64 if any grad is; torch lists
    the norms grouped by dtype, in reverse order of first appearance."""
    if not grads:
        return np.float32(0.0)
    dtypes: list[np.dtype] = []
    for g in grads:
        if g.dtype not in dtypes:
            dtypes.append(g.dtype)
    norms = [tensor_norm(g, p) for dtype in reversed(dtypes) for g in grads if g.dtype == dtype]
    wide = np.float64 if np.dtype(np.float64) in dtypes else np.float32
    return tensor_norm(np.array(norms, dtype=wide), p)


def clip_coefficient(max_norm: float, total: np.generic) -> np.generic:
    """``min(max_norm / (total + 1e-6), 1)`` in total's dtype, rounded as torch:
    ``max_norm / t`` is a reciprocal times ``max_norm``."""
    dtype = type(total)
    coefficient = dtype(dtype(dtype(1) / dtype(total + dtype(1e-6))) * dtype(max_norm))
    return coefficient if (math.isnan(coefficient) or coefficient <= 1) else dtype(1)


def scaled(grad: np.ndarray, coefficient: np.generic) -> np.ndarray:
    """torch's ``grad.mul_(coef)``: coef rounded to grad's dtype, except that a
    0-d float32 grad times a float64 coef multiplies in float64."""
    if grad.ndim == 0 and grad.dtype == np.float32 and isinstance(coefficient, np.float64):
        return np.float32(np.float64(grad) * coefficient)
    return grad * grad.dtype.type(coefficient)


def clamped(grad: np.ndarray, clip_value: float) -> np.ndarray:
    high = grad.dtype.type(clip_value)
    return np.minimum(np.maximum(grad, -high), high)


def lerp(average: np.ndarray, current: np.ndarray, weight: float) -> np.ndarray:
    """torch's lerp, with its fused multiply-add computed in float64 (exact
    products; for float64 arrays only approximately fused)."""
    dtype = average.dtype.type
    w = dtype(weight)
    diff = (current - average).astype(average.dtype)
    if abs(w) < 0.5:
        return (np.float64(w) * diff.astype(np.float64) + average).astype(average.dtype)
    return (np.float64(dtype(w - dtype(1))) * diff.astype(np.float64) + current).astype(average.dtype)


def running_mean(average: np.ndarray, current: np.ndarray, n_averaged: int) -> np.ndarray:
    return average + (current - average) / average.dtype.type(n_averaged + 1)


def weighted_sum(average: np.ndarray, current: np.ndarray, decay: float) -> np.ndarray:
    dtype = average.dtype.type
    return dtype(decay) * average + dtype(1 - decay) * current
