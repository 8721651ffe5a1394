"""SGD with momentum, dampening, Nesterov momentum and weight decay
(``torch.optim.SGD`` semantics)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import numpy as np

from ._elementwise import ElementwiseOptimizer
from .optimizer import check_flags, check_non_negative

__all__ = ["SGD"]


class SGD(ElementwiseOptimizer):
    r"""Stochastic gradient descent, optionally with (Nesterov) momentum.

    For each param :math:`\theta` with a gradient :math:`g` (params whose
    gradient is ``None`` are skipped), with γ = ``lr``, μ = ``momentum``,
    τ = ``dampening`` and λ = ``weight_decay``, in this order::

        g  <- -g                          if maximize
        g  <- g + λ·θ                     if λ != 0
        if μ != 0:
            b <- g                        on the param's first step (no dampening)
            b <- μ·b + (1 - τ)·g          on later steps
            g <- g + μ·b                  if nesterov
            g <- b                        otherwise
        θ  <- θ - γ·g

    Args:
      params: iterable of :class:`~rustoptim.Parameter`, plain float32/float64
        arrays, ``(name, param)`` tuples, or param-group dicts (see
        :class:`~rustoptim.Optimizer`).
      lr: learning rate γ (a real number >= 0; ndarray learning rates are not
        supported: pass ``float(lr)``).
      momentum: μ >= 0 (no upper bound is enforced, as in torch).
      dampening: τ, applied from the second step on (not range-checked, as in torch).
      weight_decay: λ >= 0 (coupled: added to the gradient).
      nesterov: use Nesterov momentum; requires μ > 0 and τ = 0.
      maximize: maximize the objective instead of minimizing it.
      foreach, fused: accepted for compatibility; every step is one fused
        multi-tensor call per param group, whatever the value.
      differentiable: must be False (NumPy arrays have no autograd graph).

    State per param: ``momentum_buffer`` (an array shaped like the param), only
    when μ != 0; with μ = 0 the state stays empty.

    Example:
      >>> import numpy as np
      >>> import rustoptim
      >>> w = np.array([3.0, -1.0])
      >>> opt = rustoptim.SGD([w], lr=0.1, momentum=0.9, nesterov=True)
      >>> for _ in range(50):
      ...     _ = opt.step(grads=[2 * w])          # gradient of sum(w**2)
      >>> bool(np.abs(w).max() < 1e-2)
      True

    Reference: Sutskever et al., "On the importance of initialization and
    momentum in deep learning", ICML 2013 (the momentum form used here).
    """

    _rule: ClassVar[str] = "sgd"
    _state_slots: ClassVar[tuple[str, ...]] = ("momentum_buffer",)
    _flag_defaults: ClassVar[dict[str, Any]] = dict(nesterov=False, maximize=False, foreach=None, differentiable=False, fused=False)

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
            foreach=foreach,
            differentiable=differentiable,
            fused=fused,
        )
        self._check_group(defaults)
        super().__init__(params, defaults)
        if fused and foreach:
            raise RuntimeError("`fused` and `foreach` cannot be `True` together.")

    def _check_group(self, group: dict[str, Any]) -> None:
        check_non_negative("lr", group["lr"], "Invalid learning rate: {}")
        check_non_negative("momentum", group["momentum"], "Invalid momentum value: {}")
        check_non_negative("weight_decay", group["weight_decay"], "Invalid weight_decay value: {}")
        momentum, dampening = group["momentum"], group["dampening"]
        if isinstance(dampening, np.ndarray) or not isinstance(dampening, (int, float, np.number)):
            raise TypeError(f"dampening must be a real number, got {dampening!r}")
        if group["nesterov"] and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        check_flags(group, ("nesterov", "maximize", "differentiable"))
