"""Exceptions raised by rustoptim.

Every class also derives from the built-in exception a caller would expect
(``ValueError`` or ``TypeError``), so ``except ValueError`` keeps working, while
``except rustoptim.errors.RustoptimError`` catches everything rustoptim raises on
bad input. The Rust extension raises these same classes.
"""

from __future__ import annotations

__all__ = [
    "RustoptimError",
    "ShapeError",
    "DTypeError",
    "ReadOnlyError",
    "AliasError",
    "LayoutError",
    "HyperparameterError",
    "StateDictError",
    "FileFormatError",
    "NonFiniteNormError",
    "BoundsError",
    "NonFiniteError",
    "OptionError",
    "InternalError",
    "NoGradientWarning",
]


class RustoptimError(Exception):
    """Base class of every error rustoptim raises on bad input."""


class ShapeError(RustoptimError, ValueError):
    """A gradient or state array does not have its parameter's shape."""


class DTypeError(RustoptimError, TypeError):
    """An array is not float32/float64, or its dtype differs from its parameter's."""


class ReadOnlyError(RustoptimError, ValueError):
    """An array that must be updated in place is not writeable."""


class AliasError(RustoptimError, ValueError):
    """Two arrays of one step share memory (a gradient that is its parameter, two parameters that overlap, ...)."""


class LayoutError(RustoptimError, ValueError):
    """A state array is not laid out like its parameter (it must be contiguous in the parameter's order)."""


class HyperparameterError(RustoptimError, ValueError, TypeError):
    """A param group's hyperparameter, read at a step, is missing, not a finite
    real number where one is needed (NaN, a complex number, an array, a bool),
    or not a bool where a flag is needed.

    It is both a ``ValueError`` and a ``TypeError``: it stands for what torch
    raises as either.
    """


class StateDictError(RustoptimError, ValueError):
    """A state dict does not fit the optimizer it is loaded into, or cannot be saved
    (it contains itself, or nests more than 100 dicts/lists/tuples deep)."""


class FileFormatError(StateDictError):
    """A file is not a rustoptim state file, or it is truncated, corrupted or crafted."""


class NonFiniteNormError(RustoptimError, ValueError, RuntimeError):
    """The total norm of the gradients is nan or inf and ``error_if_nonfinite=True``
    was passed to a clipping function. Also a ``RuntimeError``, the class torch raises."""


class BoundsError(RustoptimError, ValueError):
    """Bounds of ``minimize`` that no point satisfies (lower > upper), hold NaN, or are not (min, max) pairs."""


class NonFiniteError(RustoptimError, ValueError):
    """An input that must be finite (``x0`` of ``minimize``) holds NaN or an infinity."""


class OptionError(RustoptimError, ValueError):
    """An unknown or out-of-range option (``minimize``'s ``method``, ``jac``, ``options``)."""


class InternalError(RustoptimError, RuntimeError):
    """A bug in rustoptim itself (a Rust panic caught at the boundary); please report it.

    Inputs are validated before anything is written, so this never leaves a
    half-applied step behind from bad input.
    """


class NoGradientWarning(UserWarning):
    """A step found no gradient for any param, so it changed nothing (plain
    arrays get theirs through ``step(grads=[...])``)."""
