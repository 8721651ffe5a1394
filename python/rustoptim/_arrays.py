"""Array helpers shared by the optimizers: validation of parameter arrays and
creation of state arrays laid out the way the Rust kernels need them."""

from __future__ import annotations

import math
import numbers
from typing import Literal

import numpy as np

from .errors import DTypeError, ReadOnlyError, StateDictError

__all__ = ["FLOAT_DTYPES", "check_param_array", "state_zeros", "state_copy", "state_step"]

#: The dtypes rustoptim optimizes (native byte order only).
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def check_param_array(array: object) -> np.ndarray:
    """Return ``array`` if it can be optimized in place, else raise.

    Raises ``DTypeError`` for anything that is not a float32/float64 ndarray
    and ``ReadOnlyError`` for a read-only array.
    """
    if not isinstance(array, np.ndarray):
        raise DTypeError(
            f"a parameter must be a numpy.ndarray of float32 or float64, got {type(array).__name__}: "
            "params are updated in place, so they must be writeable NumPy arrays (for a torch CPU "
            "tensor pass t.numpy(); for an immutable array such as jax's, optimize np.array(x))"
        )
    if array.dtype not in FLOAT_DTYPES:
        raise DTypeError(
            f"a parameter must be a float32 or float64 array (native byte order), "
            f"got dtype {array.dtype.str!r} ({array.dtype})"
        )
    if not array.flags.writeable:
        raise ReadOnlyError(
            "a parameter array must be writeable: rustoptim updates it in place, "
            "but this one is read-only"
        )
    return array


def state_zeros(param: np.ndarray) -> np.ndarray:
    """Zeros shaped like ``param``, contiguous in the order the kernels visit it.

    A Fortran-ordered param (that is not also C-contiguous) gets Fortran-ordered
    state; everything else, strided views included, gets C-ordered state.
    """
    order: Literal["C", "F"] = "F" if (param.flags.f_contiguous and not param.flags.c_contiguous) else "C"
    return np.zeros(param.shape, param.dtype, order=order)


def state_copy(where: str, value: object, param: np.ndarray) -> np.ndarray:
    """A new state array for ``param`` holding a copy of ``value``.

    ``value`` must be an ndarray of exactly the param's shape and dtype (no
    casts, no broadcasting); otherwise ``StateDictError`` names ``where``.
    """
    if not isinstance(value, np.ndarray):
        raise StateDictError(f"{where} must be a numpy.ndarray, got {type(value).__name__}")
    if value.shape != param.shape:
        raise StateDictError(f"{where} has shape {value.shape}, but its param has shape {param.shape}")
    if value.dtype != param.dtype:
        raise StateDictError(f"{where} has dtype {value.dtype}, but its param has dtype {param.dtype}")
    out = state_zeros(param)
    np.copyto(out, value, casting="no")
    return out


def state_step(where: str, value: object) -> float:
    """A saved scalar state value (step count, ...) as a Python float: a finite,
    non-negative real number (Python or NumPy scalar, or a 0-d/1-element array
    as torch stores it)."""
    if isinstance(value, np.ndarray) and value.size == 1 and value.dtype.kind in "iuf":
        value = value.reshape(()).item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise StateDictError(f"{where} must be a real number, got {type(value).__name__}")
    try:
        step = float(value)
    except OverflowError:
        raise StateDictError(f"{where} is too large for a float: {value!r}") from None
    if not (math.isfinite(step) and step >= 0.0):
        raise StateDictError(f"{where} must be a finite non-negative number, got {value!r}")
    return step


def state_copy_shaped(where: str, value: object, param: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A new C-ordered state array of ``shape`` holding a copy of ``value``, for
    the optimizers whose kernels work in C order on whole tensors (Adafactor,
    Muon) and whose state may not have the param's shape (``row_var``).

    ``value`` must be an ndarray of exactly that shape and the param's dtype;
    otherwise ``StateDictError`` names ``where``.
    """
    if not isinstance(value, np.ndarray):
        raise StateDictError(f"{where} must be a numpy.ndarray, got {type(value).__name__}")
    if value.shape != tuple(shape):
        raise StateDictError(
            f"{where} has shape {value.shape}, expected {tuple(shape)} for its param of shape {param.shape}"
        )
    if value.dtype != param.dtype:
        raise StateDictError(f"{where} has dtype {value.dtype}, but its param has dtype {param.dtype}")
    out = np.zeros(shape, param.dtype)
    np.copyto(out, value, casting="no")
    return out
