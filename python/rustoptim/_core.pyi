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

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

#: The package version, Cargo.toml's ``version`` compiled in (``rustoptim.__version__``).
__version__: str

# ------------------------------------------------------------ element-wise step

# One batch per param group: (group index, group dict, params that have a
# gradient, their gradients, their state dicts or None, their positions in the
# group or None when no param was skipped).
_Batch = Tuple[int, Dict[str, Any], List[Any], List[Any], List[Optional[Dict[str, Any]]], Optional[List[int]]]

def step(
    rule: str,
    batches: List[_Batch],
    state: Dict[Any, Dict[str, Any]],
    defaults: Optional[Dict[str, Any]] = None,
    grad_scale: Optional[float] = None,
) -> None:
    """One step of the element-wise rule ``rule`` ("adam", "sgd", "adagrad",
    "rmsprop", "adadelta", "adamax", "nadam", "radam", "asgd", "rprop") over
    every batch, all-or-nothing: everything is checked before the first write,
    and new scalar state and new state arrays are stored into ``state``
    afterwards. Hyperparameters come from each group's dict; ``defaults`` (the
    optimizer's) supplies the values torch reads from the constructor instead
    (Adagrad's ``initial_accumulator_value``). ``grad_scale`` (a finite real
    number, else ``HyperparameterError``) multiplies every gradient as it is
    read, without writing it."""

def step_groups(
    rule: str,
    groups: List[Dict[str, Any]],
    state: Dict[Any, Dict[str, Any]],
    defaults: Optional[Dict[str, Any]] = None,
    grad_scale: Optional[float] = None,
    grads: Optional[Sequence[Any]] = None,
) -> Optional[int]:
    """``step`` over every param of ``groups`` (an optimizer's ``param_groups``)
    whose ``.grad`` is not None, with the batches read by the core (each state
    entry looked up with ``state.get``); returns how many params were stepped.
    ``grads`` (a list or tuple with one array per param of the groups, in
    order) replaces ``.grad``. Returns None, having changed nothing, when a
    group lists a param twice, a group or its ``'params'`` is not a dict or
    list, or ``grads`` has a None entry, another length or type: the caller
    then makes the batches itself (with its own checks and messages) and steps
    each occurrence with ``step``."""

def state_keys(rule: str, group: Dict[str, Any], group_index: int = 0) -> Tuple[List[str], List[str]]:
    """``(scalar state keys, state-array keys)`` of ``rule`` under ``group``'s configuration."""

# ---------------------------------------------------------- gradient clipping
# Gradients: a list of float32/float64 arrays (both may appear), any layout, or
# None (skipped; errors name the list index). Writing functions need writeable
# grads that share no memory; everything is validated before anything is written.

def total_norm(grads: List[Optional[np.ndarray]], norm_type: float) -> float:
    """torch's total norm: the ``norm_type``-norm of the per-grad norms, float64
    if any grad is, else float32 (returned as a float; 0.0 for no grads).
    ``ValueError`` for a NaN ``norm_type``; ``ShapeError`` for an empty grad
    under inf, -inf or a negative order. Nothing is written."""

def tensor_norms(grads: List[Optional[np.ndarray]], norm_type: float) -> List[float]:
    """The ``norm_type``-norm of each grad (``None`` entries skipped), each in its
    own dtype as ``total_norm`` computes it, in order (``rustoptim.distributed``
    combines them across ranks). Checks as ``total_norm``."""

def clip_grad_norm_scale(
    grads: List[Optional[np.ndarray]], max_norm: float, norm_type: float
) -> Tuple[float, float]:
    """``(total_norm, min(max_norm / (total + 1e-6), 1))``, the coefficient in
    the total's dtype as ``clip_grad_norm`` computes it. Nothing is written."""

def clip_grad_norm(
    grads: List[Optional[np.ndarray]], max_norm: float, norm_type: float, error_if_nonfinite: bool
) -> float:
    """``total_norm``, then every grad ``*= min(max_norm / (total + 1e-6), 1)``
    (torch's rounding), in place; returns the total. With ``error_if_nonfinite``
    a non-finite total leaves the grads untouched (the caller raises)."""

def clip_grads_with_norm(grads: List[Optional[np.ndarray]], max_norm: float, total_norm: float) -> None:
    """Every grad ``*= min(max_norm / (total_norm + 1e-6), 1)``, the coefficient
    computed in float64 if any grad is float64, else in float32."""

def clip_grad_value(grads: List[Optional[np.ndarray]], clip_value: float) -> None:
    """Every element clamped into ``[-clip_value, clip_value]`` in place (NaN stays NaN)."""

# ---------------------------------------------------------- weight averaging

def update_averages(
    averages: List[np.ndarray],
    currents: List[np.ndarray],
    rule: str,
    weight: float = 0.0,
    n_averaged: int = 0,
) -> None:
    """``averages[i]`` updated in place from ``currents[i]`` (same shape and
    dtype, any layout; averages writeable, sharing no memory with anything):
    ``"copy"``; ``"lerp"``: torch's ``lerp(a, x, weight)``; ``"weighted_sum"``:
    ``weight·a + (1 − weight)·x``; ``"running_mean"``: ``a + (x − a) / (n_averaged + 1)``."""

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
        """A fresh state for ``dim`` params of ``dtype`` ("float32"/"float64");
        ``MemoryError`` if its vectors cannot be allocated (the history grows
        later, as pairs arrive)."""
    @staticmethod
    def max_history_size(dtype: str, dim: int) -> int:
        """The largest ``history_size`` for ``dim`` params of ``dtype``: a full
        history of more pairs would exceed ``isize::MAX`` bytes."""
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
        maximize: bool = False,
    ) -> None:
        """Start a step at the params' current values (checked: dtype, writeable,
        aligned, no overlaps, ``dim`` elements in all); evaluate the closure next."""
    def resume(self, loss: float, grads: Sequence[Optional[np.ndarray]], params: Sequence[np.ndarray]) -> bool:
        """Continue with the closure's loss and grads (one per param, None for
        zeros). Writes the next point into ``params`` and returns False, or ends
        the step with the params at the accepted iterate and returns True. On
        error (``MemoryError`` if the history cannot grow) the step is abandoned
        as by ``abort``."""
    def abort(self, params: Sequence[np.ndarray]) -> None:
        """End the step after a failed closure; params go back to the last accepted iterate."""
    def export_state(self) -> Dict[str, Any]:
        """A copy of the state with torch's keys (``func_evals``, ``n_iter``, ``d``,
        ``t``, ``old_dirs``, ``old_stps``, ``ro``, ``H_diag``, ``prev_flat_grad``,
        ``prev_loss``, ``al``: the entries that have been set)."""
    def import_state(self, state: Dict[str, Any], history_size: int) -> None:
        """Replace the state (``export_state``'s layout, 1-D arrays of this dtype);
        ``StateDictError`` (``MemoryError``) and no change if anything is wrong."""

# ------------------------------------------------------------------- minimize

def lbfgsb_minimize(
    fun: Callable[..., Any],
    x0: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    args: Tuple[Any, ...],
    gradient: str,
    jac: Optional[Callable[..., Any]],
    fd_steps: Optional[np.ndarray],
    callback: Optional[Callable[[np.ndarray, float], bool]],
    maxcor: int,
    ftol: float,
    gtol: float,
    maxiter: int,
    maxfun: int,
    maxls: int,
) -> Dict[str, Any]:
    """Run L-BFGS-B to the end; ``rustoptim.minimize`` checks the arguments first.

    ``x0``, ``lower``, ``upper``: contiguous float64 vectors of one length
    (``±inf`` for no bound). ``gradient``: ``"fun"`` (``fun(x, *args)`` returns
    ``(f, g)``), ``"jac"`` (``jac(x, *args)`` returns ``g``), ``"absolute"`` or
    ``"relative"`` (forward differences of ``fun`` with ``fd_steps``, one value
    or one per variable; for ``"relative"`` None means scipy's default). Every
    call gets a fresh float64 copy of the point. ``callback(x, f)`` runs after
    each iteration and returns True to stop. Exceptions from ``fun``, ``jac``
    and ``callback`` propagate.

    Returns ``x``, ``fun``, ``jac``, ``nit``, ``nfev``, ``njev``, ``restarts``,
    ``termination`` (``"gtol"``, ``"ftol"``, ``"maxiter"``, ``"maxfun"``,
    ``"callback"``, ``"abnormal"``), ``detail`` (why, for ``"abnormal"``), and
    the memory at the end: ``s`` and ``y`` (``k × n``, oldest first) and ``theta``.
    Raises ``ShapeError``/``BoundsError``/``NonFiniteError``/``OptionError`` on
    inconsistent arguments, ``ShapeError``/``DTypeError`` when ``fun`` or ``jac``
    returns something that is not a number / a gradient of ``x0``'s shape.
    """

# ------------------------------------------------------- whole-tensor optimizers

def tensor_step(
    rule: str, batches: List[Any], state: Dict[Any, Dict[str, Any]], grad_scale: Optional[float] = None
) -> None:
    """One step of a whole-tensor optimizer (``"adafactor"``, ``"muon"``) over
    every param group, in place; batches as for ``step``: ``(group_index, group,
    params, grads, entries, positions)``. Every group's hyperparameters and
    arrays (state arrays of the shapes the rule gives, C-ordered) are checked
    and the scratch memory is allocated (``MemoryError`` if it cannot be)
    before anything is written; new scalar state and created state arrays are
    stored into ``state`` after the kernels succeed. Params of any layout.
    ``grad_scale`` as for ``step``."""
