"""Type stub of ``rustoptim._core``, the Rust extension module.

Every step function validates all its arrays before touching any, so a call
that raises has changed nothing; large updates run with the GIL released.
Errors: ``rustoptim.errors.ShapeError``, ``DTypeError``, ``ReadOnlyError``,
``AliasError`` (a grad sharing memory with a param, overlapping params, shared
state), ``LayoutError`` (a state array not contiguous in its param's order, an
unaligned array), ``HyperparameterError`` (a group's hyperparameter that is not a
finite number or a bool), each naming the array ("the grad of param 2 of
param_groups[1]") or key; ``ValueError`` for malformed calls and invalid
settings; ``InternalError`` for a bug caught at the boundary.
"""

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

#: The package version, Cargo.toml's ``version`` compiled in (``rustoptim.__version__``).
__version__: str

# ------------------------------------------------------------ element-wise step

# One batch per param group: (group index, group dict, params that have a
# gradient, their gradients, their state dicts or None, their positions in the
# group or None when no param was skipped).
_Batch = Tuple[int, Dict[str, Any], List[Any], List[Any], List[Optional[Dict[str, Any]]], Optional[List[int]]]

def step(rule: str, batches: List[_Batch], state: Dict[Any, Dict[str, Any]]) -> None:
    """One step of the element-wise rule ``rule`` ("adam", "sgd", ...) over every
    batch, all-or-nothing: everything is checked before the first write, and new
    scalar state and new state arrays are stored into ``state`` afterwards."""

def state_keys(rule: str, group: Dict[str, Any], group_index: int = 0) -> Tuple[List[str], List[str]]:
    """``(scalar state keys, state-array keys)`` of ``rule`` under ``group``'s configuration."""

# ----------------------------------------------------------------- benchmarks

def stream_update(reads: Sequence[np.ndarray], updates: Sequence[Sequence[np.ndarray]]) -> None:
    """``x += reads[i]`` for every ``x`` in ``updates[i]``: a step's memory
    traffic without its arithmetic (the benchmarks' bandwidth ceiling)."""

# -------------------------------------------------------------------- runtime

def set_num_threads(num_threads: int) -> None: ...
def get_num_threads() -> int: ...
def max_num_threads() -> int: ...
def num_threads_env_problem() -> Optional[str]: ...
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
