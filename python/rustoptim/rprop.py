"""Rprop, resilient backpropagation (``torch.optim.Rprop`` semantics)."""

from __future__ import annotations

import math
import numbers
from typing import Any, ClassVar, Dict, Iterable, Optional, Tuple

import numpy as np

from ._elementwise import ElementwiseOptimizer
from .optimizer import check_flags, check_non_negative

__all__ = ["Rprop"]


class Rprop(ElementwiseOptimizer):
    r"""Rprop (Riedmiller & Braun, 1993): every element moves by its own step
    size in the direction opposite to its gradient's sign; the step size grows
    while the sign holds and shrinks when it flips.

    For each param :math:`\theta` with a gradient :math:`g` (params whose
    gradient is ``None`` are skipped), with ``etas = (η-, η+)`` and
    ``step_sizes = (min, max)``, element by element, in this order::

        g         <- -g                              if maximize
        σ         <- η+ if g·prev > 0,  η- if g·prev < 0,  1 otherwise
        step_size <- clamp(step_size·σ, min, max)
        g         <- 0                               where σ = η- (the sign flipped)
        θ         <- θ - sign(g)·step_size
        prev      <- g

    ``step_size`` starts at ``lr`` when a param's state is created, and ``lr``
    is not read again for that param (as in torch: an lr scheduler has no
    effect on it). A NaN gradient element leaves its param element unchanged
    (its σ is 1 and ``sign(NaN)`` is 0).

    Args:
      params: iterable of :class:`~rustoptim.Parameter`, plain float32/float64
        arrays, ``(name, param)`` tuples, or param-group dicts (see
        :class:`~rustoptim.Optimizer`).
      lr: initial step size (a real number >= 0; ndarray learning rates are not
        supported: pass ``float(lr)``).
      etas: ``(η-, η+)`` with ``0 < η- < 1 < η+``.
      step_sizes: ``(min, max)``, finite real numbers (torch does not check
        them; rustoptim refuses infinite bounds: pass a large finite max).
      capturable: must be False (CUDA graph capture does not apply to NumPy).
      foreach: accepted for compatibility; every step is one fused multi-tensor
        call per param group, whatever the value.
      maximize: maximize the objective instead of minimizing it.
      differentiable: must be False (NumPy arrays have no autograd graph).

    State per param, created on its first step with a gradient: ``step`` (a
    Python float holding a float32 count), ``prev`` and ``step_size`` (arrays
    shaped like the param).

    Example:
      >>> import numpy as np
      >>> import rustoptim
      >>> w = np.array([1.0, -2.0])
      >>> opt = rustoptim.Rprop([w], lr=0.1)
      >>> for _ in range(60):
      ...     _ = opt.step(grads=[2 * w])          # gradient of sum(w**2)
      >>> bool(np.abs(w).max() < 1e-3)
      True

    Reference: Riedmiller & Braun, "A Direct Adaptive Method for Faster
    Backpropagation Learning: The RPROP Algorithm", IEEE ICNN 1993.
    """

    _rule: ClassVar[str] = "rprop"
    _tuple_keys: ClassVar[Tuple[str, ...]] = ("etas", "step_sizes")
    _state_slots: ClassVar[Tuple[str, ...]] = ("prev", "step_size")
    _flag_defaults: ClassVar[Dict[str, Any]] = dict(
        foreach=None,
        maximize=False,
        differentiable=False,
        capturable=False,
    )

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        etas: Tuple[float, float] = (0.5, 1.2),
        step_sizes: Tuple[float, float] = (1e-6, 50),
        *,
        capturable: bool = False,
        foreach: Optional[bool] = None,
        maximize: bool = False,
        differentiable: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            etas=etas,
            step_sizes=step_sizes,
            foreach=foreach,
            maximize=maximize,
            differentiable=differentiable,
            capturable=capturable,
        )
        self._check_group(defaults)
        defaults["etas"] = tuple(etas)
        defaults["step_sizes"] = tuple(step_sizes)
        super().__init__(params, defaults)

    def _check_group(self, group: Dict[str, Any]) -> None:
        check_non_negative("lr", group["lr"], "Invalid learning rate: {}")
        etas = _real_pair("etas", group["etas"])
        if not 0.0 < etas[0] < 1.0 < etas[1]:
            raise ValueError(f"Invalid eta values: {etas[0]}, {etas[1]}")
        step_sizes = _real_pair("step_sizes", group["step_sizes"])
        if not all(map(_is_finite, step_sizes)):
            raise ValueError(
                f"Invalid step_sizes: {step_sizes[0]}, {step_sizes[1]} (rustoptim needs finite bounds)"
            )
        check_flags(group, ("maximize", "differentiable", "capturable"), optional_bools=("foreach",))


def _real_pair(name: str, value: Any) -> Tuple[Any, Any]:
    """``value`` as a pair of real numbers, else ``TypeError`` naming ``name``."""
    if isinstance(value, np.ndarray) or not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{name} must be a pair of real numbers, got {value!r}")
    for item in value:
        if isinstance(item, (bool, np.bool_, np.ndarray)) or not isinstance(item, numbers.Real):
            raise TypeError(f"{name} must be a pair of real numbers, got {value!r}")
    return value[0], value[1]


def _is_finite(x: Any) -> bool:
    try:
        return math.isfinite(x)
    except OverflowError:  # an int beyond the range of a float
        return False
