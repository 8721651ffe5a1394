"""Type stub of ``rustoptim._core``, the Rust extension module.

Every step function validates all its arrays before touching any, so a call
that raises has changed nothing; the update runs with the GIL released.
Errors: ``rustoptim.errors.ShapeError``, ``DTypeError``, ``ReadOnlyError``,
``AliasError`` (a grad sharing memory with a param, overlapping params, shared
state), ``LayoutError`` (a state array not contiguous in its param's order),
each naming the tensor index and the array's role; ``ValueError`` for lists of
mismatched lengths and invalid settings.
"""

from typing import List, Optional, Sequence

import numpy as np

# ---------------------------------------------------------------- first order

def adam_step(
    params: Sequence[np.ndarray],
    grads: Sequence[np.ndarray],
    exp_avgs: Sequence[np.ndarray],
    exp_avg_sqs: Sequence[np.ndarray],
    max_exp_avg_sqs: Optional[Sequence[np.ndarray]],
    steps: Sequence[float],
    *,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    amsgrad: bool,
    maximize: bool,
    decoupled_weight_decay: bool,
) -> None:
    """One Adam/AdamW step over a param group, in place.

    ``params``: writeable arrays, all float32 or all float64, any layout.
    ``grads``: same shapes and dtype, any layout. State arrays: same shape and
    dtype as their param, contiguous in the param's order (see
    ``rustoptim._arrays.state_zeros``). ``max_exp_avg_sqs`` is given exactly
    when ``amsgrad``. ``steps``: each param's step count after this step's
    increment (finite, >= 1).
    """

def sgd_step(
    params: Sequence[np.ndarray],
    grads: Sequence[np.ndarray],
    momentum_buffers: Optional[Sequence[np.ndarray]],
    new_buffers: Sequence[bool],
    *,
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    maximize: bool,
) -> None:
    """One SGD step over a param group, in place.

    ``momentum_buffers`` is given exactly when ``momentum != 0``;
    ``new_buffers[i]`` is True where buffer ``i`` was just created: the kernel
    then sets it to the (decayed, sign-flipped) gradient instead of applying
    the momentum update.
    """

# ----------------------------------------------------------------- benchmarks

def stream_update(reads: Sequence[np.ndarray], updates: Sequence[Sequence[np.ndarray]]) -> None:
    """``x += reads[i]`` for every ``x`` in ``updates[i]``: a step's memory
    traffic without its arithmetic (the benchmarks' bandwidth ceiling)."""

# -------------------------------------------------------------------- runtime

def set_num_threads(num_threads: int) -> None: ...
def get_num_threads() -> int: ...
def simd_levels() -> List[str]: ...
def get_simd_level() -> str: ...
def set_simd_level(level: Optional[str] = None) -> None: ...
