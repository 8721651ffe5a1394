"""L-BFGS (``torch.optim.LBFGS`` semantics) with the numerical work in Rust."""

from __future__ import annotations

import math
import numbers
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Callable

import numpy as np

from . import _core
from .errors import DTypeError, StateDictError
from .optimizer import Optimizer, check_non_negative
from .parameter import Parameter

__all__ = ["LBFGS"]

_ONE_GROUP = "LBFGS doesn't support per-parameter options (parameter groups)"
_LINE_SEARCHES = (None, "strong_wolfe")
# More iterations or evaluations than this can never run; larger counts are
# passed to the core as this (the same behaviour).
_MAX_COUNT = sys.maxsize
# torch's state keys, in the order ``state_dict()`` lists them.
_COUNTERS = ("func_evals", "n_iter")
_ITERATION_KEYS = ("d", "t", "old_dirs", "old_stps", "ro", "H_diag", "prev_flat_grad", "prev_loss")


def _check_count(value: object, name: str) -> None:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")


def _check_float(name: str, value: object) -> float:
    """``value`` (already known to be a real number) as a float, or ``ValueError``."""
    if not isinstance(value, numbers.Real):  # checked by the caller; narrows the type
        raise TypeError(f"{name} must be a real number, got {value!r}")
    try:
        return float(value)
    except OverflowError:
        raise ValueError(f"{name} is too large for a float: {value}") from None


def _check_tolerance(name: str, value: object) -> None:
    """Any real number but NaN: torch accepts negative and infinite tolerances
    (``tolerance_grad=-inf`` makes every iteration run)."""
    if isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a real number, not a numpy.ndarray of shape {value.shape}")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    if math.isnan(_check_float(name, value)):
        raise ValueError(f"{name} must not be NaN")


def _check_history_size(history_size: int, params: Sequence[Parameter]) -> None:
    """Refuse a ``history_size`` whose full history could never be addressed
    (``LbfgsCore.max_history_size``: more than ``isize::MAX`` bytes)."""
    dtypes = {str(p.data.dtype) for p in params if isinstance(getattr(p, "data", None), np.ndarray)}
    if not dtypes <= {"float32", "float64"}:
        return  # the dtype check names the param
    dtype = "float64" if "float64" in dtypes or not dtypes else "float32"
    n = sum(p.data.size for p in params)
    limit = _core.LbfgsCore.max_history_size(dtype, n)
    if history_size > limit:
        raise ValueError(
            f"history_size={history_size} is too large: a full history of that many pairs of {n}-element "
            f"{dtype} vectors could never be addressed (at most {limit} for these params)"
        )


def _check_hyperparameters(
    lr: object,
    max_iter: object,
    max_eval: object,
    tolerance_grad: object,
    tolerance_change: object,
    history_size: object,
    line_search_fn: object,
    maximize: object = False,
) -> None:
    check_non_negative("lr", lr, "Invalid learning rate: {}")
    _check_float("lr", lr)
    _check_count(max_iter, "max_iter")
    _check_count(max_eval, "max_eval")
    _check_tolerance("tolerance_grad", tolerance_grad)
    _check_tolerance("tolerance_change", tolerance_change)
    _check_count(history_size, "history_size")
    if not any(line_search_fn is choice or line_search_fn == choice for choice in _LINE_SEARCHES):
        raise ValueError(f"only 'strong_wolfe' is supported as line_search_fn (or None), got {line_search_fn!r}")
    if not isinstance(maximize, (bool, np.bool_)):
        raise TypeError(f"maximize must be a bool, got {maximize!r}")


class LBFGS(Optimizer):
    r"""L-BFGS with torch's algorithm, counters and stopping rules.

    One ``step(closure)`` runs up to ``max_iter`` iterations of limited-memory
    BFGS (Nocedal & Wright, *Numerical Optimization*, Algorithm 7.4/7.5), with
    ``x`` the params flattened in C order and concatenated, ``g`` the gradient::

        first iteration ever:  d = -g,  t = min(1, 1/‖g‖₁)·lr
        afterwards:            y = g - g_prev,  s = t_prev·d_prev
                               if yᵀs > 1e-10: keep (s, y, ρ = 1/yᵀs), dropping the
                                 oldest pair beyond history_size; H₀ = yᵀs / yᵀy
                               d = -H·g  (two-loop recursion over the kept pairs)
                               t = lr
        stop if gᵀd > -tolerance_change
        move: x = x + t·d                                   (line_search_fn=None)
              t = strong-Wolfe search on x + t·d, then move (line_search_fn="strong_wolfe")

    and stops early when ``max|g| <= tolerance_grad``, when the step moved no
    element by more than ``tolerance_change``, when the loss changed by less
    than ``tolerance_change``, or after ``max_eval`` closure calls. The strong
    Wolfe search uses ``c1 = 1e-4``, ``c2 = 0.9``, cubic interpolation, its own
    ``tolerance_change = 1e-9``, and at most ``max_eval`` minus the calls made
    so far in this step. History, direction and step length carry over from one
    ``step()`` to the next; ``func_evals`` and ``n_iter`` count over the
    optimizer's lifetime. With ``maximize=True`` (torch 2.15) the loss ``f`` and
    the gradient are negated as they arrive, so the step minimizes ``-f``
    (``p.grad`` is left as the closure set it, ``prev_loss`` holds ``-f``).
    Wherever every loss and gradient is finite, all of this matches
    ``torch.optim.LBFGS`` exactly, including when the closure is called.

    NaN and infinity (where rustoptim differs from torch, which carries them
    into its arithmetic and can end a step at a point with a NaN loss):

    - a step whose first closure call gives a non-finite loss or gradient
      returns at once, without moving;
    - with ``line_search_fn="strong_wolfe"``, a trial point whose loss or
      gradient is not finite counts as a step too long: the search never
      accepts it and tries the midpoint between it and the best finite point
      (so ``x - 2*log(x)`` from ``x = 30`` reaches its minimum at 2);
    - without a line search the step length is fixed, so it cannot shrink:
      when the loss or gradient at a new iterate is not finite, the step ends
      and puts the params back at the previous iterate (lower ``lr`` or use
      ``"strong_wolfe"`` to get past such a point).

    So a step never leaves the params at a point whose loss or gradient it saw
    to be non-finite, unless it started there.

    The vectors, the history, the two-loop recursion and the line search live
    in Rust; Python only calls the closure. The history grows as pairs are
    accepted (memory in proportion to the pairs stored, as in torch), so a
    large ``history_size`` costs nothing until it fills.

    Args:
      params: :class:`~rustoptim.Parameter` objects or plain float32/float64
        arrays (any shapes and layouts, all of one dtype), or one param-group
        dict. More than one group raises ``ValueError`` (torch's message).
      lr: step length factor (real, >= 0).
      max_iter: iterations per ``step()`` (int >= 1).
      max_eval: closure calls per ``step()`` (int >= 1; default ``max_iter * 5 // 4``).
      tolerance_grad: stop when ``max|g| <= tolerance_grad`` (any real number
        but NaN; ``-inf`` never stops on the gradient, as in torch).
      tolerance_change: stop when the step or the loss change is below it (any
        real number but NaN).
      history_size: curvature pairs kept (int >= 1). A value whose full history
        could never be addressed (more than ``isize::MAX`` bytes, e.g.
        ``2**62``) raises ``ValueError``.
      line_search_fn: ``None`` or ``"strong_wolfe"``.
      maximize: maximize the objective instead of minimizing it (keyword-only).

    ``step(closure)``: ``closure()`` re-evaluates the objective at the params'
    current values. With :class:`~rustoptim.Parameter` params it sets each
    ``p.grad`` (``None`` counts as zeros) and returns the loss. With plain
    arrays it returns ``(loss, grads)``, ``grads`` a list with one array (or
    None) per param in the order of :attr:`params`. ``step`` returns the first
    loss of the call, as the closure returned it. After a line search, ``p.grad``
    is the gradient of the last point the search evaluated, as in torch.

    If the closure raises, the exception propagates unchanged and the params are
    left at the last iterate the optimizer had accepted (never at a line-search
    trial point); the state is what a step ending at that iterate leaves, so the
    next ``step()`` continues from it (``func_evals`` counts the calls that
    returned). Gradients of the wrong shape or dtype end the step the same way,
    with ``ShapeError`` or ``DTypeError``; a param or gradient whose memory is
    not aligned for its dtype (a field of a packed structured array,
    ``np.frombuffer`` at an odd offset) with ``LayoutError``. If the history
    cannot grow (out of memory), the step ends the same way with ``MemoryError``.

    State: ``state_dict()['state'][0]`` holds torch's keys: ``func_evals`` and
    ``n_iter`` (ints) and, once an iteration has run, ``d``, ``t``,
    ``old_dirs``, ``old_stps`` (lists of 1-D arrays, oldest first), ``ro``
    (list of floats), ``H_diag``, ``prev_flat_grad``, ``prev_loss`` and ``al``
    (the ``α_i`` that have been set; torch pads its list with None up to
    ``history_size``, and both forms load).
    They are copies; ``load_state_dict`` checks them (lengths, dtypes, list
    sizes up to ``history_size``) before changing anything and continues the
    run exactly. ``opt.state[param]`` itself only shows the two counters: the
    vectors live in the Rust core.

    Example:
      >>> import numpy as np
      >>> import rustoptim
      >>> x = np.array([-1.2, 1.0])
      >>> def rosenbrock():
      ...     a, b = x
      ...     loss = 100 * (b - a * a) ** 2 + (1 - a) ** 2
      ...     grad = np.array([-400 * a * (b - a * a) - 2 * (1 - a), 200 * (b - a * a)])
      ...     return loss, [grad]
      >>> opt = rustoptim.LBFGS([x], line_search_fn="strong_wolfe")
      >>> for _ in range(5):
      ...     _ = opt.step(rosenbrock)
      >>> bool(np.allclose(x, [1.0, 1.0]))
      True

    Reference: Liu & Nocedal, "On the limited memory BFGS method for large
    scale optimization", Mathematical Programming 45 (1989).
    """

    #: Groups saved before ``maximize`` existed (torch < 2.15) load as minimizing.
    _flag_defaults = {"maximize": False}

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1,
        max_iter: int = 20,
        max_eval: int | None = None,
        tolerance_grad: float = 1e-7,
        tolerance_change: float = 1e-9,
        history_size: int = 100,
        line_search_fn: str | None = None,
        *,
        maximize: bool = False,
    ) -> None:
        check_non_negative("lr", lr, "Invalid learning rate: {}")
        if max_eval is None:
            _check_count(max_iter, "max_iter")
            max_eval = max_iter * 5 // 4
        _check_hyperparameters(
            lr, max_iter, max_eval, tolerance_grad, tolerance_change, history_size, line_search_fn, maximize
        )
        defaults = dict(
            lr=lr,
            max_iter=max_iter,
            max_eval=max_eval,
            tolerance_grad=tolerance_grad,
            tolerance_change=tolerance_change,
            history_size=history_size,
            line_search_fn=line_search_fn,
            maximize=maximize,
        )
        super().__init__(params, defaults)
        params = self._params
        if len(set(params)) != len(params):
            raise ValueError("LBFGS params must be distinct: a param listed twice would be moved twice")
        dtypes = list(dict.fromkeys(p.data.dtype for p in params))
        if len(dtypes) > 1:
            raise DTypeError(
                f"LBFGS needs all params of one dtype, got {' and '.join(str(d) for d in dtypes)}; "
                "convert them (or use one optimizer per dtype)"
            )
        self._core: _core.LbfgsCore | None = None
        # The core built by _import_param_state, kept only during load_state_dict.
        self._loaded_core: _core.LbfgsCore | None

    @property
    def _params(self) -> list[Parameter]:
        params: list[Parameter] = self.param_groups[0]["params"]
        return params

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Only the constructor's single group exists: adding one raises ``ValueError``."""
        if self.param_groups:
            raise ValueError(_ONE_GROUP)
        super().add_param_group(param_group)

    def _check_group(self, group: dict[str, Any]) -> None:
        _check_hyperparameters(*(group[k] for k in (
            "lr", "max_iter", "max_eval", "tolerance_grad", "tolerance_change", "history_size", "line_search_fn",
            "maximize",
        )))
        _check_history_size(group["history_size"], group["params"])

    # -------------------------------------------------------------------- step

    def _new_core(self, history_size: int) -> _core.LbfgsCore:
        params = self._params
        return _core.LbfgsCore(str(params[0].data.dtype), sum(p.data.size for p in params), int(history_size))

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Run up to ``max_iter`` L-BFGS iterations; return the closure's first loss.

        ``closure`` is required (the default None only keeps the base class's
        signature, and raises ``TypeError``); see the class docstring for what
        it returns.
        """
        if not callable(closure):
            raise TypeError(f"LBFGS.step() needs a closure that re-evaluates the loss, got {closure!r}")
        group = self.param_groups[0]
        params = self._params
        if not params:
            # torch 2.15: a group without params evaluates the closure once.
            return _split(closure(), params)[0]
        arrays = [p.data for p in params]
        try:
            max_iter, max_eval = group["max_iter"], group["max_eval"]
            if max_iter > _MAX_COUNT or max_eval > _MAX_COUNT:
                max_iter, max_eval = min(max_iter, _MAX_COUNT), min(max_eval, _MAX_COUNT)
            if self._core is None:
                self._core = self._new_core(group["history_size"])
            core = self._core
            core.begin(
                arrays,
                lr=float(group["lr"]),
                max_iter=max_iter,
                max_eval=max_eval,
                tolerance_grad=float(group["tolerance_grad"]),
                tolerance_change=float(group["tolerance_change"]),
                history_size=group["history_size"],
                line_search_fn=group["line_search_fn"],
                maximize=group["maximize"],
            )
        except (TypeError, ValueError, OverflowError):
            # A hyperparameter changed since the last check into something the
            # core cannot take: name it (the core's message cannot), else re-raise.
            try:
                self._check_group(group)
            except (TypeError, ValueError) as clear:
                raise clear from None
            raise
        state = self.state[params[0]]
        resume = core.resume
        first = True
        orig_loss = None
        try:
            while True:
                loss, grads = _split(closure(), params)
                if first:
                    orig_loss, first = loss, False
                if resume(_loss_value(loss), grads, arrays):
                    break
        except BaseException:
            core.abort(arrays)
            raise
        finally:
            state["func_evals"] = core.func_evals
            state["n_iter"] = core.n_iter
        return orig_loss

    # -------------------------------------------------------------- state dict

    def _export_param_state(self, param: Parameter, state: dict[str, Any]) -> dict[str, Any]:
        if self._core is not None and param is self._params[0]:
            return self._core.export_state()
        return super()._export_param_state(param, state)

    def _import_param_state(self, param: Parameter, saved: Mapping[str, Any], group: dict[str, Any]) -> dict[str, Any]:
        if param is not self._params[0]:
            raise StateDictError("LBFGS keeps its state under the first param (index of params[0]) only")
        self._check_state_keys(saved, _COUNTERS, (*_ITERATION_KEYS, "al"))
        entry = _checked_state(saved, self._params, int(group["history_size"]))
        core = self._new_core(group["history_size"])
        core.import_state(entry, int(group["history_size"]))
        self._loaded_core = core
        return {"func_evals": entry["func_evals"], "n_iter": entry["n_iter"]}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Load a state dict of an LBFGS over params of the same sizes and dtype.

        Hyperparameters come from the saved group (torch). Everything is checked
        before anything changes; a load that raises leaves the optimizer as it was.
        """
        self._loaded_core = None
        try:
            super().load_state_dict(state_dict)
            self._core = self._loaded_core
        finally:
            del self._loaded_core

    # ---------------------------------------------------------------- pickling

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        full: dict[Any, dict[str, Any]] = defaultdict(dict)
        for param, entry in self.state.items():
            if self._core is not None and param is self._params[0]:
                full[param] = self._core.export_state()
            else:
                full[param] = entry
        return {**state, "state": full}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._core = None
        entry = self.state.get(self._params[0])
        if entry:
            history_size = int(self.param_groups[0]["history_size"])
            self._core = self._new_core(history_size)
            self._core.import_state(_checked_state(entry, self._params, history_size), history_size)
            self.state[self._params[0]] = {"func_evals": entry["func_evals"], "n_iter": entry["n_iter"]}


def _split(result: Any, params: Sequence[Parameter]) -> tuple[Any, list[Any]]:
    """``(loss, grads)`` from what the closure returned."""
    if isinstance(result, tuple) and len(result) == 2:
        loss, grads = result
        if isinstance(grads, np.ndarray) and len(params) == 1:
            return loss, [grads]
        if isinstance(grads, (list, tuple)):
            return loss, list(grads)
    return result, [p.grad for p in params]


def _loss_value(loss: Any) -> float:
    try:
        return float(loss)
    except (TypeError, ValueError):
        raise TypeError(
            "the closure must return the loss (a real number), or (loss, grads) for plain-array params; "
            f"got {type(loss).__name__}"
        ) from None


def _real(where: str, value: object) -> float:
    if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in "iuf":
        value = value.reshape(()).item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise StateDictError(f"{where} must be a real number, got {type(value).__name__}")
    return float(value)


def _count(where: str, value: object) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or value < 0:
        raise StateDictError(f"{where} must be a non-negative int, got {value!r}")
    return int(value)


def _checked_state(saved: Mapping[str, Any], params: Sequence[Parameter], history_size: int) -> dict[str, Any]:
    """A validated copy of an LBFGS state entry, in the layout ``LbfgsCore.import_state`` takes."""
    dtype = params[0].data.dtype
    n = sum(p.data.size for p in params)

    def vector(where: str, value: object) -> np.ndarray:
        if not isinstance(value, np.ndarray):
            raise StateDictError(f"{where} must be a numpy.ndarray, got {type(value).__name__}")
        if value.shape != (n,):
            raise StateDictError(f"{where} has shape {value.shape}, but the params have {n} elements: expected ({n},)")
        if value.dtype != dtype:
            raise StateDictError(f"{where} has dtype {value.dtype}, but the params have dtype {dtype}")
        return np.array(value, dtype=dtype, order="C", copy=True)

    entry: dict[str, Any] = {key: _count(key, saved[key]) for key in _COUNTERS}
    if "d" not in saved:
        present = [k for k in (*_ITERATION_KEYS, "al") if k in saved]
        if present:
            raise StateDictError(f"the state has {present} but no 'd'")
        if entry["n_iter"] > 0:
            raise StateDictError(f"n_iter is {entry['n_iter']}, but the state has no 'd' (an iteration leaves one)")
        return entry
    missing = [k for k in _ITERATION_KEYS if k not in saved]
    if missing:
        raise StateDictError(f"missing state key(s) {missing}")
    lists = {}
    for key in ("old_dirs", "old_stps", "ro"):
        value = saved[key]
        if not isinstance(value, (list, tuple)):
            raise StateDictError(f"{key!r} must be a list, got {type(value).__name__}")
        lists[key] = value
    lengths = {len(v) for v in lists.values()}
    if len(lengths) != 1:
        raise StateDictError(
            "old_dirs, old_stps and ro must have the same length, got "
            + ", ".join(str(len(lists[k])) for k in ("old_dirs", "old_stps", "ro"))
        )
    if len(lists["ro"]) > history_size:
        raise StateDictError(f"the history holds {len(lists['ro'])} pairs, more than history_size={history_size}")
    entry["d"] = vector("'d'", saved["d"])
    entry["t"] = _real("'t'", saved["t"])
    entry["old_dirs"] = [vector(f"old_dirs[{i}]", v) for i, v in enumerate(lists["old_dirs"])]
    entry["old_stps"] = [vector(f"old_stps[{i}]", v) for i, v in enumerate(lists["old_stps"])]
    entry["ro"] = [_real(f"ro[{i}]", v) for i, v in enumerate(lists["ro"])]
    entry["H_diag"] = _real("'H_diag'", saved["H_diag"])
    entry["prev_flat_grad"] = vector("'prev_flat_grad'", saved["prev_flat_grad"])
    entry["prev_loss"] = _real("'prev_loss'", saved["prev_loss"])
    if "al" in saved:
        al = saved["al"]
        if not isinstance(al, (list, tuple)):
            raise StateDictError(f"'al' must be a list, got {type(al).__name__}")
        values: list[float | None] = []
        for i, v in enumerate(al):
            values.append(None if v is None else _real(f"al[{i}]", v))
        # The entries are scratch values of the last two-loop recursion; only a
        # set prefix is kept, at most history_size long.
        prefix = []
        for v in values[:history_size]:
            if v is None:
                break
            prefix.append(v)
        entry["al"] = prefix
    return entry
