"""Gradient clipping, as ``torch.nn.utils``: ``clip_grad_norm_``,
``clip_grad_value_``, ``get_total_norm`` and ``clip_grads_with_norm_``.

Each function takes ``parameters``: a :class:`~rustoptim.Parameter` (which
stands for its ``.grad``; a ``None`` grad is skipped), a plain float32/float64
ndarray (which is itself the gradient), or an iterable of those. Gradients are
modified in place, in any layout. Each call is one pass in Rust over all the
gradients (two for ``clip_grad_norm_``: the norm, then the scaling), on all
cores, with a result that does not depend on the thread count or SIMD level.

The total norm is torch's: the p-norm of the per-gradient p-norms (not one
flat norm over all elements), in float64 if any gradient is float64, else in
float32; for p = 0 it counts the gradients that have a non-zero element.
Gradients of at most 32768 elements get torch's per-tensor norms to the bit
for p = 2, 1, 0 and inf (other p within an ulp or two of torch); larger ones
are summed in fixed chunks, so their norm is closer to exact than torch's.

Differences from torch: norms are returned as Python floats (torch returns
0-d tensors); a NaN or negative ``max_norm`` or ``clip_value`` and a NaN
``norm_type`` raise ``ValueError`` (torch flips or NaNs every gradient);
gradients that share memory raise ``AliasError`` (torch would scale shared
memory twice); a call that raises has changed no gradient.
"""

from __future__ import annotations

import math
import types
import warnings
from typing import Any, Iterable, List, NamedTuple, Optional, Union

import numpy as np

from . import _core
from .errors import DTypeError, NonFiniteNormError
from .parameter import Parameter

__all__ = [
    "clip_grad_norm_",
    "clip_grad_value_",
    "get_total_norm",
    "clip_grads_with_norm_",
    "clip_grad_norm_scale",
    "GradNormScale",
]

ParamsOrGrads = Union[Parameter, np.ndarray, Iterable[Union[Parameter, np.ndarray]]]


def clip_grad_norm_(
    parameters: ParamsOrGrads,
    max_norm: float,
    norm_type: Union[float, str] = 2.0,
    error_if_nonfinite: bool = False,
    foreach: Optional[bool] = None,
) -> float:
    """Scale the gradients in place so that their total norm is at most ``max_norm``.

    ``total = ‖(‖g_1‖_p, …, ‖g_k‖_p)‖_p`` with ``p = norm_type`` (a float,
    ``inf`` or the string ``"inf"``); then every gradient ``g ← g · coef`` with
    ``coef = min(max_norm / (total + 1e-6), 1)``, computed in the total's dtype
    and rounded as torch rounds it (a coefficient of exactly 1 leaves the
    gradients as they are without a pass over them). As in torch, a total of
    inf makes finite gradients 0 (and infinite ones NaN) and a NaN total makes
    every gradient NaN, unless ``error_if_nonfinite`` raises
    ``NonFiniteNormError`` (a ``RuntimeError``, as in torch) first, with no
    gradient changed. ``foreach`` is accepted for torch compatibility; every
    setting runs the same Rust pass.

    Returns the total norm as a Python float (0.0 when there is no gradient).

    Example:
      >>> import numpy as np, rustoptim
      >>> g = np.array([3.0, 4.0])
      >>> rustoptim.clip_grad_norm_([g], max_norm=1.0)
      5.0
      >>> g
      array([0.59999988, 0.79999984])
    """
    is_generator = isinstance(parameters, types.GeneratorType)
    grads = _grads_of(parameters)
    if is_generator and not grads:
        warnings.warn("`parameters` is an empty generator, no gradient clipping will occur.", stacklevel=2)
    max_norm = _non_negative("max_norm", max_norm)
    norm_type = float(norm_type)
    total = _core.clip_grad_norm(grads, max_norm, norm_type, bool(error_if_nonfinite))
    if error_if_nonfinite and not math.isfinite(total):
        raise NonFiniteNormError(_non_finite_message(norm_type))
    return total


class GradNormScale(NamedTuple):
    """What :func:`clip_grad_norm_scale` returns."""

    #: The gradients' total norm, as ``clip_grad_norm_`` returns it.
    total_norm: float
    #: The coefficient ``clip_grad_norm_`` would multiply the gradients by.
    scale: float


def clip_grad_norm_scale(
    parameters: ParamsOrGrads,
    max_norm: float,
    norm_type: Union[float, str] = 2.0,
    error_if_nonfinite: bool = False,
) -> GradNormScale:
    """The total norm and the clipping coefficient of ``clip_grad_norm_``,
    without changing the gradients: for an optimizer step that clips on the fly.

    ``clip_grad_norm_(params, max_norm)`` then ``opt.step()`` reads the
    gradients three times and writes them once; ::

        total, scale = rustoptim.clip_grad_norm_scale(params, max_norm)
        opt.step(grad_scale=scale)

    reads them twice and leaves them as they were, with bitwise the same params
    and optimizer state. (One exception: a 0-d float32 gradient among float64
    ones, which ``clip_grad_norm_`` multiplies in float64 as torch does and the
    step in float32, may differ in its last bit.) ``scale`` is
    ``min(max_norm / (total + 1e-6), 1)`` computed in the total's dtype, as
    ``clip_grad_norm_`` computes it; arguments and errors as there.

    Example:
      >>> import numpy as np, rustoptim
      >>> w = np.zeros(2); g = np.array([3.0, 4.0])
      >>> total, scale = rustoptim.clip_grad_norm_scale([g], max_norm=1.0)
      >>> total, round(scale, 6)
      (5.0, 0.2)
      >>> rustoptim.SGD([w], lr=1.0).step(grads=[g], grad_scale=scale)
      >>> w, g
      (array([-0.59999988, -0.79999984]), array([3., 4.]))
    """
    grads = _grads_of(parameters)
    max_norm = _non_negative("max_norm", max_norm)
    norm_type = float(norm_type)
    total, scale = _core.clip_grad_norm_scale(grads, max_norm, norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise NonFiniteNormError(_non_finite_message(norm_type))
    return GradNormScale(total, scale)


def get_total_norm(
    tensors: ParamsOrGrads,
    norm_type: Union[float, str] = 2.0,
    error_if_nonfinite: bool = False,
    foreach: Optional[bool] = None,
) -> float:
    """The total norm of ``tensors`` (gradient arrays, or Parameters standing
    for their ``.grad``) as ``clip_grad_norm_`` computes it, without changing
    anything. Returns a Python float (torch: a 0-d tensor); 0.0 for no tensors.
    ``error_if_nonfinite``: raise ``NonFiniteNormError`` if the total is nan or inf.
    """
    grads = _grads_of(tensors)
    norm_type = float(norm_type)
    total = _core.total_norm(grads, norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise NonFiniteNormError(_non_finite_message(norm_type))
    return total


def clip_grads_with_norm_(
    parameters: ParamsOrGrads,
    max_norm: float,
    total_norm: float,
    foreach: Optional[bool] = None,
) -> None:
    """Scale the gradients in place by ``min(max_norm / (total_norm + 1e-6), 1)``.

    The second half of ``clip_grad_norm_``, for a total norm computed
    beforehand (e.g. by ``get_total_norm``). The coefficient is computed in
    the dtype torch's total norm of these gradients has (float64 if any
    gradient is float64, else float32), so ``get_total_norm`` followed by
    this function gives exactly what ``clip_grad_norm_`` gives.
    """
    grads = _grads_of(parameters)
    max_norm = _non_negative("max_norm", max_norm)
    _core.clip_grads_with_norm(grads, max_norm, float(total_norm))


def clip_grad_value_(
    parameters: ParamsOrGrads,
    clip_value: float,
    foreach: Optional[bool] = None,
) -> None:
    """Clamp every gradient element into ``[-clip_value, clip_value]``, in place.

    ``clip_value`` is rounded to each gradient's dtype; NaN elements stay NaN.
    """
    grads = _grads_of(parameters)
    _core.clip_grad_value(grads, _non_negative("clip_value", clip_value))


def _grads_of(parameters: Any) -> List[Optional[np.ndarray]]:
    """The gradient of each entry, in order: a Parameter's ``.grad`` (maybe
    None, which the core skips but counts, so its errors name the caller's
    index), or the array itself."""
    if isinstance(parameters, (Parameter, np.ndarray)):
        parameters = [parameters]
    grads: List[Optional[np.ndarray]] = []
    for index, entry in enumerate(parameters):
        if isinstance(entry, Parameter):
            grads.append(entry.grad)
        elif isinstance(entry, np.ndarray):
            grads.append(entry)
        else:
            raise DTypeError(
                f"parameters[{index}] is a {type(entry).__name__}; "
                "expected a rustoptim.Parameter or a numpy.ndarray (the gradient itself)"
            )
    return grads


def _non_negative(name: str, value: Any) -> float:
    if isinstance(value, np.ndarray) and value.ndim != 0:
        raise TypeError(f"{name} must be a number, got an array of shape {value.shape}")
    number = float(value)
    if not number >= 0.0:
        raise ValueError(f"{name} must be a non-negative number, got {value!r}")
    return number


def _non_finite_message(norm_type: float) -> str:
    return (
        f"The total norm of order {norm_type} for gradients from "
        "`parameters` is non-finite, so it cannot be clipped. To disable "
        "this error and scale the gradients by the non-finite norm anyway, "
        "set `error_if_nonfinite=False`"
    )
