"""Argument checks shared by the schedulers' constructors and ``load_state_dict``.

Each check raises ``TypeError`` (wrong kind of value) or ``ValueError`` (a
value out of range) with a message that names the argument, and returns the
value to store: integers become Python ``int`` (NumPy integers are accepted),
reals are kept as given (an ``int`` lr stays an ``int``, as in torch).
``load_state_dict`` runs the same checks on a state dict's entries and turns
their errors into ``StateDictError``.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Sequence
from typing import Any, Callable

import numpy as np

from ..optimizer import Optimizer

__all__ = [
    "check_bool",
    "check_callable",
    "check_choice",
    "check_int",
    "check_optimizer",
    "check_real",
    "check_real_list",
    "format_param",
    "is_int",
    "is_real",
]


def is_real(value: object) -> bool:
    """A real number: int, float or NumPy scalar, not a bool and not an array."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def is_int(value: object) -> bool:
    """An integer (Python or NumPy), not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"a numpy.ndarray of shape {value.shape}"
    return repr(value)


def check_real(
    name: str,
    value: object,
    *,
    finite: bool = True,
    minimum: float | None = None,
    above: float | None = None,
    maximum: float | None = None,
) -> Any:
    """``value`` must be a real number (finite unless ``finite=False``; NaN never
    passes), ``>= minimum``, ``> above`` and ``<= maximum`` where given."""
    # is_real's test spelled out, so that the type checker narrows ``value`` to Real.
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {_describe(value)}")
    if math.isnan(value):
        raise ValueError(f"{name} must be a number, got nan")
    if finite and math.isinf(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    # NaN is excluded above, so ``value < minimum`` is ``not value >= minimum``
    # (numbers.Real promises only ``<`` and ``<=``).
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    if above is not None and value <= above:
        raise ValueError(f"{name} must be > {above}, got {value!r}")
    if maximum is not None and not value <= maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value!r}")
    return value


def check_int(name: str, value: object, *, minimum: int | None = None) -> int:
    """``value`` must be an integer ``>= minimum``; returned as a Python ``int``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {_describe(value)}")
    number = operator.index(value)
    if minimum is not None and number < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {number}")
    return number


def check_bool(name: str, value: object) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {_describe(value)}")
    return bool(value)


def check_choice(name: str, value: object, choices: Sequence[str], message: str | None = None) -> str:
    """``value`` must be one of ``choices``; ``message`` (formatted with the value)
    replaces the default message, to keep torch's wording."""
    if not isinstance(value, str) or value not in choices:
        if message is not None:
            raise ValueError(message.format(value))
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def check_callable(name: str, value: object) -> Callable[..., Any]:
    if not callable(value):
        raise TypeError(f"{name} should be a function, but got {type(value).__name__}")
    return value


def check_real_list(name: str, value: object, length: int, **limits: Any) -> list[Any]:
    """A list (or tuple) of ``length`` real numbers, each passing ``check_real(**limits)``."""
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{name} must be a list of {length} real numbers, got {_describe(value)}")
    if len(value) != length:
        raise ValueError(f"{name} must hold {length} values (one per param group), got {len(value)}")
    return [check_real(f"{name}[{i}]", v, **limits) for i, v in enumerate(value)]


def format_param(name: str, optimizer: Any, value: object, **limits: Any) -> list[Any]:
    """One value per param group: ``value`` itself if it is a list or tuple (of the
    groups' length), else ``value`` repeated; each must be a real number
    passing ``check_real(**limits)``."""
    groups = len(optimizer.param_groups)
    if isinstance(value, (list, tuple)):
        if len(value) != groups:
            raise ValueError(
                f"{name} must have the same length as optimizer.param_groups. "
                f"{name} has {len(value)} values, param_groups has {groups}."
            )
        return [check_real(f"{name}[{i}]", v, **limits) for i, v in enumerate(value)]
    return [check_real(name, value, **limits)] * groups


def check_optimizer(optimizer: object) -> None:
    """``optimizer`` must be a rustoptim optimizer (torch's ``TypeError``)."""
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"optimizer: {type(optimizer).__name__} is not an Optimizer")
