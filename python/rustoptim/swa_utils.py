"""Weight averaging (EMA and SWA), as ``torch.optim.swa_utils``.

:class:`AveragedModel` keeps a running average of a list of arrays (or
:class:`~rustoptim.Parameter` objects, which stand for their ``.data``)::

    ema = rustoptim.swa_utils.AveragedModel(params, multi_avg_fn=get_ema_multi_avg_fn(0.999))
    for batch in data:
        ...                            # an optimizer step on params
        ema.update_parameters(params)
    evaluate(ema.params)              # the averaged arrays, in order

The first ``update_parameters`` copies the weights; each later one applies the
averaging function (with ``n`` the number of models averaged so far):

- default (no function), and ``avg_fn=get_swa_avg_fn()``: the running mean
  ``a ← a + (x − a) / (n + 1)``, torch's default on CPU;
- ``multi_avg_fn=get_swa_multi_avg_fn()``: ``a ← lerp(a, x, 1 / (n + 1))``, the
  weight rounded to float32 as torch does;
- ``multi_avg_fn=get_ema_multi_avg_fn(decay)``: ``a ← lerp(a, x, 1 − decay)``;
- ``avg_fn=get_ema_avg_fn(decay)``: ``a ← decay·a + (1 − decay)·x``.

(``lerp`` is torch's: ``a + w·(x − a)`` for ``|w| < 0.5``, else
``x + (w − 1)·(x − a)``, each with one fused multiply-add.) The built-in
functions run as one multi-threaded Rust call over all arrays, rounded exactly
as torch rounds them; any other callable is called as torch calls it:
``multi_avg_fn(averaged_list, current_list, n)`` once per dtype (it updates the
averaged arrays in place), ``avg_fn(averaged, current, n)`` per array (it
returns the new average, which is copied in). ``n`` is a Python int (torch
passes a 0-d int64 tensor). ``SWALR``, torch's SWA learning-rate schedule,
lives in :mod:`rustoptim.lr_scheduler` and is re-exported here.

``state_dict()`` / ``load_state_dict()`` save and restore the averages and
``n_averaged`` (``rustoptim.save``/``load`` store them); averaging functions
are not saved, as in torch.
"""

from __future__ import annotations

import numbers
import operator
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Callable, Union

import numpy as np

from . import _core
from ._arrays import FLOAT_DTYPES
from .errors import DTypeError, ShapeError, StateDictError
from .lr_scheduler import SWALR
from .parameter import Parameter

__all__ = [
    "AveragedModel",
    "SWALR",
    "get_ema_multi_avg_fn",
    "get_swa_multi_avg_fn",
    "get_ema_avg_fn",
    "get_swa_avg_fn",
]

ArraysOrParams = Union[Parameter, np.ndarray, Iterable[Union[Parameter, np.ndarray]]]


class _BuiltinAverage:
    """A built-in averaging function: callable as torch's, and run by
    ``AveragedModel`` as one Rust call over all arrays (``_rule``)."""

    #: True for a ``multi_avg_fn``, False for an ``avg_fn``.
    multi = False

    def _rule(self, n_averaged: int) -> tuple[str, float]:
        """The core's averaging rule and its parameter when ``AveragedModel``
        has averaged ``n_averaged`` models (torch passes that count as an int64 tensor)."""
        raise NotImplementedError


class _EmaMultiAvg(_BuiltinAverage):
    multi = True

    def __init__(self, decay: float) -> None:
        self.decay = decay

    def _rule(self, n_averaged: int) -> tuple[str, float]:
        return "lerp", 1 - self.decay

    def __call__(self, ema_param_list: Sequence[np.ndarray], current_param_list: Sequence[Any], _: Any = None) -> None:
        """``ema ← lerp(ema, current, 1 − decay)`` for every pair, in place."""
        _core.update_averages(list(ema_param_list), _arrays_of(current_param_list), "lerp", weight=1 - self.decay)

    def __repr__(self) -> str:
        return f"get_ema_multi_avg_fn(decay={self.decay!r})"


class _SwaMultiAvg(_BuiltinAverage):
    multi = True

    def _rule(self, n_averaged: int) -> tuple[str, float]:
        return "lerp", _float32_reciprocal(n_averaged + 1)

    def __call__(
        self, averaged_param_list: Sequence[np.ndarray], current_param_list: Sequence[Any], num_averaged: Any
    ) -> None:
        """``avg ← lerp(avg, current, 1 / (num_averaged + 1))`` for every pair, in place.

        As in torch, the weight is float32 when ``num_averaged`` is an array or
        NumPy scalar (torch: a tensor) and float64 when it is a Python int.
        """
        if isinstance(num_averaged, (np.ndarray, np.generic)):
            weight = _float32_reciprocal(operator.index(num_averaged.item()) + 1)
        else:
            weight = 1 / (operator.index(num_averaged) + 1)
        _core.update_averages(list(averaged_param_list), _arrays_of(current_param_list), "lerp", weight=weight)

    def __repr__(self) -> str:
        return "get_swa_multi_avg_fn()"


class _EmaAvg(_BuiltinAverage):
    def __init__(self, decay: float) -> None:
        self.decay = decay

    def _rule(self, n_averaged: int) -> tuple[str, float]:
        return "weighted_sum", self.decay

    def __call__(self, ema_param: np.ndarray, current_param: np.ndarray, num_averaged: Any = None) -> np.ndarray:
        """``decay·ema + (1 − decay)·current``, a new array (rounded as torch: each product, then the sum)."""
        return self.decay * ema_param + (1 - self.decay) * current_param

    def __repr__(self) -> str:
        return f"get_ema_avg_fn(decay={self.decay!r})"


class _SwaAvg(_BuiltinAverage):
    def _rule(self, n_averaged: int) -> tuple[str, float]:
        return "running_mean", n_averaged

    def __call__(self, averaged_param: np.ndarray, current_param: np.ndarray, num_averaged: Any) -> np.ndarray:
        """``avg + (current − avg) / (num_averaged + 1)``, a new array."""
        count = operator.index(np.asarray(num_averaged).item()) + 1
        average: np.ndarray = averaged_param + (current_param - averaged_param) / count
        return average

    def __repr__(self) -> str:
        return "get_swa_avg_fn()"


def get_ema_multi_avg_fn(decay: float = 0.999) -> Callable[..., None]:
    """The ``multi_avg_fn`` of an exponential moving average:
    ``ema ← lerp(ema, current, 1 − decay)`` over every array, in place.
    ``decay`` must be in [0, 1]."""
    return _EmaMultiAvg(_check_decay(decay))


def get_swa_multi_avg_fn() -> Callable[..., None]:
    """The ``multi_avg_fn`` of a running mean: ``avg ← lerp(avg, current, 1 / (n + 1))``."""
    return _SwaMultiAvg()


def get_ema_avg_fn(decay: float = 0.999) -> Callable[..., np.ndarray]:
    """The ``avg_fn`` of an exponential moving average: returns
    ``decay·ema + (1 − decay)·current``. ``decay`` must be in [0, 1]."""
    return _EmaAvg(_check_decay(decay))


def get_swa_avg_fn() -> Callable[..., np.ndarray]:
    """The ``avg_fn`` of a running mean: returns ``avg + (current − avg) / (n + 1)``."""
    return _SwaAvg()


class AveragedModel:
    """A running average (SWA or EMA) of a list of weight arrays.

    Args:
      params: float32/float64 arrays or :class:`~rustoptim.Parameter` objects
        (their ``.data``), or one of them. They are copied: the averages are
        new arrays, in ``params``' order at ``.params``.
      avg_fn: ``avg_fn(averaged, current, n) -> new average``, called per array;
        or ``get_ema_avg_fn(decay)`` / ``get_swa_avg_fn()``.
      multi_avg_fn: ``multi_avg_fn(averaged_list, current_list, n)``, updating
        in place, called once per dtype; or ``get_ema_multi_avg_fn(decay)`` /
        ``get_swa_multi_avg_fn()``. At most one of the two functions; with
        neither, the running mean of ``get_swa_avg_fn`` (torch's CPU default).
      use_buffers: accepted for torch compatibility. A list of arrays has no
        separate buffers: every array given is averaged either way.

    Attributes:
      params: the averaged arrays (updated in place by ``update_parameters``).
      n_averaged: the number of models averaged so far (an int).
    """

    def __init__(
        self,
        params: ArraysOrParams,
        avg_fn: Callable[..., Any] | None = None,
        multi_avg_fn: Callable[..., Any] | None = None,
        use_buffers: bool = False,
    ) -> None:
        if avg_fn is not None and multi_avg_fn is not None:
            raise ValueError("Only one of avg_fn and multi_avg_fn should be provided")
        for name, fn in (("avg_fn", avg_fn), ("multi_avg_fn", multi_avg_fn)):
            if fn is not None and not callable(fn):
                raise TypeError(f"{name} must be callable or None, got {type(fn).__name__}")
        self.params: list[np.ndarray] = [np.array(a, order="K", copy=True) for a in _arrays_of(params)]
        self.n_averaged = 0
        self.avg_fn = avg_fn
        self.multi_avg_fn = multi_avg_fn
        self.use_buffers = use_buffers

    def update_parameters(self, params: ArraysOrParams) -> None:
        """Average in the current weights ``params`` (same count, shapes and
        dtypes as ``.params``, any layout): copied on the first call, averaged
        on later ones. With a built-in or no averaging function, a call that
        raises has changed nothing."""
        currents = _arrays_of(params)
        if len(currents) != len(self.params):
            raise ValueError(
                f"update_parameters got {len(currents)} arrays, but the model averages {len(self.params)}; "
                "pass the weights in the order they were given to AveragedModel"
            )
        n = self.n_averaged
        if n == 0:
            _core.update_averages(self.params, currents, "copy")
        elif self.avg_fn is None and self.multi_avg_fn is None:
            _core.update_averages(self.params, currents, "running_mean", n_averaged=n)
        elif isinstance(self.multi_avg_fn, _BuiltinAverage) and self.multi_avg_fn.multi:
            self._run_builtin(self.multi_avg_fn, currents, n)
        elif isinstance(self.avg_fn, _BuiltinAverage) and not self.avg_fn.multi:
            self._run_builtin(self.avg_fn, currents, n)
        elif self.multi_avg_fn is not None:
            self._call_multi_avg_fn(currents, n)
        else:
            self._call_avg_fn(currents, n)
        self.n_averaged = n + 1

    def _run_builtin(self, fn: _BuiltinAverage, currents: list[np.ndarray], n: int) -> None:
        rule, parameter = fn._rule(n)
        if rule == "running_mean":
            _core.update_averages(self.params, currents, rule, n_averaged=int(parameter))
        else:
            _core.update_averages(self.params, currents, rule, weight=parameter)

    def _call_multi_avg_fn(self, currents: list[np.ndarray], n: int) -> None:
        """torch's grouping: one call per dtype, in the order the dtypes first appear."""
        self._check_currents(currents)
        groups: dict[np.dtype, tuple[list[np.ndarray], list[np.ndarray]]] = {}
        for average, current in zip(self.params, currents):
            averages, currents_of_dtype = groups.setdefault(average.dtype, ([], []))
            averages.append(average)
            currents_of_dtype.append(current)
        assert self.multi_avg_fn is not None
        for averages, currents_of_dtype in groups.values():
            self.multi_avg_fn(averages, currents_of_dtype, n)

    def _call_avg_fn(self, currents: list[np.ndarray], n: int) -> None:
        """Every new average is computed and checked before any is copied in."""
        self._check_currents(currents)
        assert self.avg_fn is not None
        results = [np.asarray(self.avg_fn(average, current, n)) for average, current in zip(self.params, currents)]
        for index, (average, result) in enumerate(zip(self.params, results)):
            if not np.can_cast(result.dtype, average.dtype, casting="same_kind"):
                raise DTypeError(f"avg_fn returned dtype {result.dtype} for average {index} of dtype {average.dtype}")
            try:
                np.broadcast_to(result, average.shape)
            except ValueError:
                raise ShapeError(
                    f"avg_fn returned shape {result.shape} for average {index} of shape {average.shape}"
                ) from None
        for average, result in zip(self.params, results):
            np.copyto(average, result, casting="same_kind")

    def _check_currents(self, currents: list[np.ndarray]) -> None:
        for index, (average, current) in enumerate(zip(self.params, currents)):
            if current.dtype != average.dtype:
                raise DTypeError(f"current {index} has dtype {current.dtype}, but its average has dtype {average.dtype}")
            if current.shape != average.shape:
                raise ShapeError(f"current {index} has shape {current.shape}, but its average has shape {average.shape}")

    def state_dict(self) -> dict[str, Any]:
        """``{"n_averaged": int, "params": [copies of the averages]}``; storable
        with ``rustoptim.save``."""
        return {"n_averaged": self.n_averaged, "params": [a.copy(order="K") for a in self.params]}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore ``state_dict()``'s values (copied into ``.params``). Checks
        keys, the count, and each array's shape and dtype (no casts) first, and
        raises ``StateDictError`` with nothing changed on any mismatch."""
        if not isinstance(state_dict, Mapping):
            raise StateDictError(f"an AveragedModel state dict must be a dict, got {type(state_dict).__name__}")
        expected = ("n_averaged", "params")
        for key in expected:
            if key not in state_dict:
                raise StateDictError(f"the state dict has no {key!r} entry")
        unexpected = [key for key in state_dict if key not in expected]
        if unexpected:
            raise StateDictError(f"unexpected key(s) in the state dict: {', '.join(map(repr, unexpected))}")
        n_averaged = _saved_count(state_dict["n_averaged"])
        saved = state_dict["params"]
        if not isinstance(saved, (list, tuple)):
            raise StateDictError(f"state_dict['params'] must be a list of arrays, got {type(saved).__name__}")
        if len(saved) != len(self.params):
            raise StateDictError(
                f"state_dict['params'] has {len(saved)} arrays, but this model averages {len(self.params)}"
            )
        for index, (average, value) in enumerate(zip(self.params, saved)):
            where = f"state_dict['params'][{index}]"
            if not isinstance(value, np.ndarray):
                raise StateDictError(f"{where} must be a numpy.ndarray, got {type(value).__name__}")
            if value.shape != average.shape:
                raise StateDictError(f"{where} has shape {value.shape}, but the average has shape {average.shape}")
            if value.dtype != average.dtype:
                raise StateDictError(f"{where} has dtype {value.dtype}, but the average has dtype {average.dtype}")
        for average, value in zip(self.params, saved):
            np.copyto(average, value, casting="no")
        self.n_averaged = n_averaged

    def __repr__(self) -> str:
        fn = self.multi_avg_fn if self.multi_avg_fn is not None else self.avg_fn
        return f"AveragedModel({len(self.params)} arrays, n_averaged={self.n_averaged}, fn={fn!r})"


def _arrays_of(params: Any) -> list[np.ndarray]:
    """The float32/float64 arrays of ``params``: a Parameter's ``.data``, an array itself."""
    if isinstance(params, (Parameter, np.ndarray)):
        params = [params]
    arrays = []
    for index, entry in enumerate(params):
        array = entry.data if isinstance(entry, Parameter) else entry
        if not isinstance(array, np.ndarray):
            raise DTypeError(
                f"params[{index}] is a {type(entry).__name__}; expected a numpy.ndarray or a rustoptim.Parameter"
            )
        if array.dtype not in FLOAT_DTYPES:
            raise DTypeError(f"params[{index}] has dtype {array.dtype}; averaging supports float32 and float64")
        arrays.append(array)
    return arrays


def _check_decay(decay: Any) -> float:
    value = float(decay)
    if not 0.0 <= value <= 1.0:  # NaN is refused too
        raise ValueError(f"Invalid decay value {decay} provided. Please provide a value in [0,1] range.")
    return value


def _float32_reciprocal(count: int) -> float:
    """torch's ``1 / (n + 1)`` for an int64 tensor ``n``: float32 division."""
    return float(np.float32(1.0) / np.float32(count))


def _saved_count(value: Any) -> int:
    if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in "iu":
        value = value.reshape(()).item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise StateDictError(f"state_dict['n_averaged'] must be an int, got {type(value).__name__}")
    if value < 0:
        raise StateDictError(f"state_dict['n_averaged'] must be >= 0, got {value}")
    return int(value)
