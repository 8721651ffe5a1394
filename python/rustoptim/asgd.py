"""ASGD, averaged stochastic gradient descent (``torch.optim.ASGD`` semantics)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable
from typing import Any, ClassVar

import numpy as np

from ._elementwise import ElementwiseOptimizer
from .optimizer import check_flags, check_non_negative

__all__ = ["ASGD"]


class ASGD(ElementwiseOptimizer):
    r"""Averaged SGD (Polyak & Juditsky, 1992) with torch's decaying step size.

    For each param :math:`\theta` with a gradient :math:`g` (params whose
    gradient is ``None`` are skipped), with η and μ the param's stored step
    size and averaging weight, λ = ``lambd``, and :math:`t` the param's step
    count after this step's increment, in this order::

        g   <- -g                            if maximize
        g   <- g + weight_decay·θ            if weight_decay != 0
        θ   <- θ · (1 - λ·η)
        θ   <- θ - η·g
        ax  <- ax + μ·(θ - ax)               if μ != 1
        ax  <- θ                             otherwise
        η   <- lr / (1 + λ·lr·t)^α           (lr: the group's current lr)
        μ   <- 1 / max(1, t - t0)

    ``ax`` is the running average of the params (the optimizer's output, read
    it from ``opt.state[p]['ax']``): with an integer ``t0`` it equals the param
    through step ``t0 + 2``, then it is the mean of the params since that step.
    A param's first step uses ``η = lr`` and ``μ = 1``, so a
    change of ``lr`` reaches η one step later, as in torch. As in torch,
    ``step``, ``eta`` and ``mu`` are float32 numbers (also for float64 params)
    and are updated in float32.

    Args:
      params: iterable of :class:`~rustoptim.Parameter`, plain float32/float64
        arrays, ``(name, param)`` tuples, or param-group dicts (see
        :class:`~rustoptim.Optimizer`).
      lr: learning rate (a real number >= 0; ndarray learning rates are not
        supported: pass ``float(lr)``).
      lambd: decay term λ >= 0.
      alpha: power α >= 0 of the step-size decay.
      t0: the step at which averaging starts (a finite real number).
      weight_decay: coupled weight decay >= 0 (added to the gradient).
      foreach: accepted for compatibility; every step is one fused multi-tensor
        call per param group, whatever the value.
      maximize: maximize the objective instead of minimizing it.
      differentiable: must be False (NumPy arrays have no autograd graph).
      capturable: must be False (CUDA graph capture does not apply to NumPy).

    State per param, created on its first step with a gradient: ``step``,
    ``eta``, ``mu`` (Python floats holding float32 values) and ``ax`` (an array
    shaped like the param).

    Example:
      >>> import numpy as np
      >>> import rustoptim
      >>> w = np.array([1.0, -2.0])
      >>> opt = rustoptim.ASGD([w], lr=0.1, t0=10)
      >>> for _ in range(100):
      ...     _ = opt.step(grads=[2 * w])          # gradient of sum(w**2)
      >>> average = opt.state[opt.params[0]]["ax"]
      >>> bool(np.abs(w).max() < 1e-3 and np.abs(average).max() < 0.1)
      True

    Reference: Polyak & Juditsky, "Acceleration of Stochastic Approximation by
    Averaging", SIAM Journal on Control and Optimization, 1992.
    """

    _rule: ClassVar[str] = "asgd"
    _state_slots: ClassVar[tuple[str, ...]] = ("ax",)
    _flag_defaults: ClassVar[dict[str, Any]] = dict(
        foreach=None,
        maximize=False,
        differentiable=False,
        capturable=False,
    )

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        lambd: float = 1e-4,
        alpha: float = 0.75,
        t0: float = 1e6,
        weight_decay: float = 0,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
        capturable: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            lambd=lambd,
            alpha=alpha,
            t0=t0,
            weight_decay=weight_decay,
            foreach=foreach,
            maximize=maximize,
            differentiable=differentiable,
            capturable=capturable,
        )
        self._check_group(defaults)
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        check_non_negative("lr", group["lr"], "Invalid learning rate: {}")
        check_non_negative("lambd", group["lambd"], "Invalid lambd value: {}")
        check_non_negative("alpha", group["alpha"], "Invalid alpha value: {}")
        check_non_negative("weight_decay", group["weight_decay"], "Invalid weight_decay value: {}")
        # torch does not check t0; the core needs a finite number.
        t0 = group["t0"]
        if isinstance(t0, (bool, np.bool_, np.ndarray)) or not isinstance(t0, numbers.Real):
            raise TypeError(f"t0 must be a real number, got {t0!r}")
        try:
            finite = math.isfinite(t0)
        except OverflowError:  # an int beyond the range of a float
            finite = False
        if not finite:
            raise ValueError(f"Invalid t0 value: {t0} (t0 must be finite; a large t0 such as 1e6 never averages)")
        check_flags(group, ("maximize", "differentiable", "capturable"), optional_bools=("foreach",))
