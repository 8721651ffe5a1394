"""Adadelta (``torch.optim.Adadelta`` semantics)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from ._elementwise import ElementwiseOptimizer
from .optimizer import check_flags, check_non_negative

__all__ = ["Adadelta"]


class Adadelta(ElementwiseOptimizer):
    r"""Adadelta (Zeiler, 2012), with torch's learning rate, weight decay and
    maximization.

    For each param :math:`\theta` with a gradient :math:`g` (params whose
    gradient is ``None`` are skipped), with γ = ``lr``, ρ = ``rho`` and
    λ = ``weight_decay``, in this order::

        g  <- -g                                   if maximize
        g  <- g + λ·θ                              if λ != 0
        v  <- ρ·v + (1 - ρ)·g²                     (square_avg)
        d  =  sqrt(u + ε) / sqrt(v + ε) · g        (u: acc_delta before this step)
        u  <- ρ·u + (1 - ρ)·d²                     (acc_delta)
        θ  <- θ - γ·d

    Args:
      params: iterable of :class:`~rustoptim.Parameter`, plain float32/float64
        arrays, ``(name, param)`` tuples, or param-group dicts (see
        :class:`~rustoptim.Optimizer`).
      lr: γ >= 0, a factor on the update (default 1.0, the paper's method).
      rho: ρ in ``[0, 1]``, the decay of both running averages.
      eps: ε >= 0, added inside both square roots.
      weight_decay: λ >= 0 (coupled: added to the gradient).
      foreach: accepted for compatibility; every step is one fused
        multi-tensor call per param group, whatever the value.
      capturable: must be False (CUDA graph capture does not apply to NumPy).
      maximize: maximize the objective instead of minimizing it.
      differentiable: must be False (NumPy arrays have no autograd graph).

    State per param, created on its first step with a gradient: ``step`` (a
    Python float, counted in float32 as torch does, and not used by the
    update), ``square_avg`` and ``acc_delta`` (arrays shaped like the param).

    Example:
      >>> import numpy as np
      >>> import rustoptim
      >>> w = np.array([1.0, -2.0])
      >>> opt = rustoptim.Adadelta([w], lr=1.0)
      >>> _ = opt.step(grads=[2 * w])          # gradient of sum(w**2)
      >>> np.round(w, 4)       # the first step is sqrt(ε / (1 - ρ)) in size, whatever g
      array([ 0.9968, -1.9968])

    Reference: Zeiler, "ADADELTA: An Adaptive Learning Rate Method",
    arXiv:1212.5701, 2012.
    """

    _rule: ClassVar[str] = "adadelta"
    _state_slots: ClassVar[tuple[str, ...]] = ("square_avg", "acc_delta")
    _flag_defaults: ClassVar[dict[str, Any]] = dict(foreach=None, maximize=False, differentiable=False, capturable=False)

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0,
        foreach: bool | None = None,
        *,
        capturable: bool = False,
        maximize: bool = False,
        differentiable: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            rho=rho,
            eps=eps,
            weight_decay=weight_decay,
            maximize=maximize,
            capturable=capturable,
            foreach=foreach,
            differentiable=differentiable,
        )
        self._check_group(defaults)
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        check_non_negative("lr", group["lr"], "Invalid learning rate: {}")
        rho = group["rho"]
        check_non_negative("rho", rho, "Invalid rho value: {}")
        if not rho <= 1.0:
            raise ValueError(f"Invalid rho value: {rho}")
        check_non_negative("eps", group["eps"], "Invalid epsilon value: {}")
        check_non_negative("weight_decay", group["weight_decay"], "Invalid weight_decay value: {}")
        check_flags(group, ("maximize", "capturable", "differentiable"), optional_bools=("foreach",))
