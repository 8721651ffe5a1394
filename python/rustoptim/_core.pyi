"""Type stub of ``rustoptim._core``, the Rust extension module.

Every step function validates all its arrays before touching any, so a call
that raises has changed nothing; large updates run with the GIL released.
Errors: ``rustoptim.errors.ShapeError``, ``DTypeError``, ``ReadOnlyError``,
``AliasError`` (a grad sharing memory with a param, overlapping params, shared
state), ``LayoutError`` (a state array not contiguous in its param's order),
each naming the tensor index and the array's role; ``ValueError`` for lists of
mismatched lengths and invalid settings.
"""

from typing import Any, Dict, List, Optional, Sequence

import numpy as np

# ---------------------------------------------------------------- first order

def adam_step(
    params: List[np.ndarray],
    grads: List[np.ndarray],
    exp_avgs: List[np.ndarray],
    exp_avg_sqs: List[np.ndarray],
    max_exp_avg_sqs: Optional[List[np.ndarray]],
    steps: List[float],
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

    Every argument list is a ``list`` with one entry per param.
    ``params``: writeable float32 or float64 arrays (both may appear in one
    call), any layout. ``grads``: each with its param's shape and dtype, any layout. State arrays: same shape and
    dtype as their param, contiguous in the param's order (see
    ``rustoptim._arrays.state_zeros``). ``max_exp_avg_sqs`` is given exactly
    when ``amsgrad``. ``steps``: each param's step count after this step's
    increment (finite, >= 1).
    """

def sgd_step(
    params: List[np.ndarray],
    grads: List[np.ndarray],
    momentum_buffers: Optional[List[np.ndarray]],
    new_buffers: List[bool],
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    maximize: bool,
) -> None:
    """One SGD step over a param group, in place (arguments as for ``adam_step``).

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

# ---------------------------------------------------------------------- LBFGS

class LbfgsCore:
    """The numeric state of one ``rustoptim.LBFGS`` and the machinery of its
    steps. Python runs the loop: ``begin``, then call the closure and pass its
    result to ``resume`` until it returns True. The params (any shapes and
    layouts, one dtype) are flattened in C order and concatenated."""

    def __init__(self, dtype: str, dim: int, history_size: int) -> None:
        """A fresh state for ``dim`` params of ``dtype`` ("float32"/"float64")."""
    @property
    def dtype(self) -> str: ...
    @property
    def dim(self) -> int: ...
    @property
    def func_evals(self) -> int: ...
    @property
    def n_iter(self) -> int: ...
    @property
    def in_step(self) -> bool: ...
    def begin(
        self,
        params: Sequence[np.ndarray],
        *,
        lr: float,
        max_iter: int,
        max_eval: int,
        tolerance_grad: float,
        tolerance_change: float,
        history_size: int,
        line_search_fn: Optional[str],
    ) -> None:
        """Start a step at the params' current values (checked: dtype, writeable,
        no overlaps, ``dim`` elements in all); evaluate the closure next."""
    def resume(self, loss: float, grads: Sequence[Optional[np.ndarray]], params: Sequence[np.ndarray]) -> bool:
        """Continue with the closure's loss and grads (one per param, None for
        zeros). Writes the next point into ``params`` and returns False, or ends
        the step with the params at the accepted iterate and returns True. On
        error the step is abandoned as by ``abort``."""
    def abort(self, params: Sequence[np.ndarray]) -> None:
        """End the step after a failed closure; params go back to the last accepted iterate."""
    def export_state(self) -> Dict[str, Any]:
        """A copy of the state with torch's keys (``func_evals``, ``n_iter``, ``d``,
        ``t``, ``old_dirs``, ``old_stps``, ``ro``, ``H_diag``, ``prev_flat_grad``,
        ``prev_loss``, ``al``)."""
    def import_state(self, state: Dict[str, Any], history_size: int) -> None:
        """Replace the state (``export_state``'s layout, 1-D arrays of this dtype);
        ``StateDictError`` and no change if anything is wrong."""

# ------------------------------------------------------- whole-tensor optimizers

def tensor_step(rule: str, batches: List[Any], state: Dict[Any, Dict[str, Any]]) -> None:
    """One step of a whole-tensor optimizer (``"adafactor"``, ``"muon"``) over
    every param group, in place; batches as for ``step``: ``(group_index, group,
    params, grads, entries, positions)``. Every group's hyperparameters and
    arrays (state arrays of the shapes the rule gives, C-ordered) are checked
    and the scratch memory is allocated (``MemoryError`` if it cannot be)
    before anything is written; new scalar state and created state arrays are
    stored into ``state`` after the kernels succeed. Params of any layout."""
