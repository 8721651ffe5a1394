"""Adagrad (``torch.optim.Adagrad`` semantics)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from ._arrays import state_zeros
from ._elementwise import ElementwiseOptimizer
from .optimizer import check_flags, check_non_negative

__all__ = ["Adagrad"]


class Adagrad(ElementwiseOptimizer):
    r"""Adagrad (Duchi, Hazan & Singer, 2011), with torch's learning-rate decay,
    weight decay and maximization.

    For each param :math:`\theta` with a gradient :math:`g` (params whose
    gradient is ``None`` are skipped), with :math:`t` the param's step count
    after this step's increment, γ = ``lr``, η = ``lr_decay`` and
    λ = ``weight_decay``, in this order::

        g    <- -g                            if maximize
        g    <- g + λ·θ                       if λ != 0
        clr  =  γ / (1 + (t - 1)·η)
        s    <- s + g²                        (sum)
        θ    <- θ - clr · g / (sqrt(s) + ε)

    ε is added outside the square root, exactly as torch does. The step count
    is counted in float32 (torch keeps it in a float32 tensor), so it stops
    growing at 2^24.

    Unlike the other optimizers, Adagrad creates its state with the optimizer:
    every param of the constructor's groups gets ``step = 0.0`` and a ``sum``
    filled with ``initial_accumulator_value``. Params of groups added later with
    :meth:`add_param_group` get their state at their first step. Both use the
    *constructor's* ``initial_accumulator_value``: a group's own value is
    stored in the group but not used, as in torch.

    Args:
      params: iterable of :class:`~rustoptim.Parameter`, plain float32/float64
        arrays, ``(name, param)`` tuples, or param-group dicts (see
        :class:`~rustoptim.Optimizer`).
      lr: learning rate γ >= 0 (default 1e-2).
      lr_decay: η >= 0; the step size decays as γ / (1 + (t - 1)·η).
      weight_decay: λ >= 0 (coupled: added to the gradient).
      initial_accumulator_value: the value ``sum`` starts at (>= 0).
      eps: ε >= 0 (default 1e-10), added to the denominator.
      foreach, fused: accepted for compatibility; every step is one fused
        multi-tensor call per param group, whatever the value.
      maximize: maximize the objective instead of minimizing it.
      differentiable: must be False (NumPy arrays have no autograd graph).

    State per param: ``step`` (a Python float) and ``sum`` (an array shaped
    like the param). Sparse gradients do not exist for NumPy arrays.

    Example:
      >>> import numpy as np
      >>> import rustoptim
      >>> w = np.array([1.0, -2.0])
      >>> opt = rustoptim.Adagrad([w], lr=0.5)
      >>> opt.state[opt.params[0]]["sum"]     # created with the optimizer
      array([0., 0.])
      >>> for _ in range(100):
      ...     _ = opt.step(grads=[2 * w])          # gradient of sum(w**2)
      >>> bool(np.abs(w).max() < 0.1)
      True

    Reference: Duchi, Hazan & Singer, "Adaptive Subgradient Methods for Online
    Learning and Stochastic Optimization", JMLR 12, 2011.
    """

    _rule: ClassVar[str] = "adagrad"
    _state_slots: ClassVar[tuple[str, ...]] = ("sum",)
    _flag_defaults: ClassVar[dict[str, Any]] = dict(foreach=None, maximize=False, differentiable=False, fused=None)

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = 0,
        eps: float = 1e-10,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        defaults = dict(
            lr=lr,
            lr_decay=lr_decay,
            eps=eps,
            weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value,
            foreach=foreach,
            maximize=maximize,
            differentiable=differentiable,
            fused=fused,
        )
        self._check_group(defaults)
        super().__init__(params, defaults)
        if fused and foreach:
            raise RuntimeError("`fused` and `foreach` cannot be `True` together.")
        for group in self.param_groups:
            for p in group["params"]:
                accumulator = state_zeros(p.data)
                accumulator[...] = initial_accumulator_value
                self.state[p] = {"step": 0.0, "sum": accumulator}

    def _check_group(self, group: dict[str, Any]) -> None:
        check_non_negative("lr", group["lr"], "Invalid learning rate: {}")
        check_non_negative("lr_decay", group["lr_decay"], "Invalid lr_decay value: {}")
        check_non_negative("weight_decay", group["weight_decay"], "Invalid weight_decay value: {}")
        check_non_negative(
            "initial_accumulator_value",
            group["initial_accumulator_value"],
            "Invalid initial_accumulator_value value: {}",
        )
        check_non_negative("eps", group["eps"], "Invalid epsilon value: {}")
        check_flags(group, ("maximize", "differentiable"))
