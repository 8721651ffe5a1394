"""Adamax, Adam with the infinity norm (``torch.optim.Adamax`` semantics)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from ._elementwise import ElementwiseOptimizer
from .optimizer import check_adam_hyperparameters, check_flags

__all__ = ["Adamax"]


class Adamax(ElementwiseOptimizer):
    r"""Adamax (Kingma & Ba, 2015, section 7.1): Adam with the second moment
    replaced by an exponentially weighted infinity norm.

    For each param :math:`\theta` with a gradient :math:`g` (params whose
    gradient is ``None`` are skipped), with :math:`t` the param's step count
    after this step's increment, γ = ``lr`` and λ = ``weight_decay``, in this
    order::

        g  <- -g                                   if maximize
        g  <- g + λ·θ                              if λ != 0
        m  <- m + (1 - β1)·(g - m)                 (exp_avg)
        u  <- max(β2·u, |g| + ε)                   (exp_inf; NaN propagates)
        θ  <- θ - (γ / (1 - β1^t)) · m / u

    ε is added to ``|g|`` inside the maximum, as torch does. The step count is
    counted in float32 (torch keeps it in a float32 tensor).

    Args:
      params: iterable of :class:`~rustoptim.Parameter`, plain float32/float64
        arrays, ``(name, param)`` tuples, or param-group dicts (see
        :class:`~rustoptim.Optimizer`).
      lr: learning rate γ >= 0 (default 2e-3).
      betas: ``(β1, β2)``, each in ``[0, 1)``.
      eps: ε >= 0.
      weight_decay: λ >= 0 (coupled: added to the gradient).
      foreach: accepted for compatibility; every step is one fused
        multi-tensor call per param group, whatever the value.
      maximize: maximize the objective instead of minimizing it.
      differentiable: must be False (NumPy arrays have no autograd graph).
      capturable: must be False (CUDA graph capture does not apply to NumPy).

    State per param, created on its first step with a gradient: ``step`` (a
    Python float), ``exp_avg`` and ``exp_inf`` (arrays shaped like the param).

    Example:
      >>> import numpy as np
      >>> import rustoptim
      >>> w = np.array([1.0, -2.0])
      >>> opt = rustoptim.Adamax([w], lr=0.1)
      >>> for _ in range(100):
      ...     _ = opt.step(grads=[2 * w])          # gradient of sum(w**2)
      >>> bool(np.abs(w).max() < 0.2)
      True

    Reference: Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
    """

    _rule: ClassVar[str] = "adamax"
    _tuple_keys: ClassVar[tuple[str, ...]] = ("betas",)
    _state_slots: ClassVar[tuple[str, ...]] = ("exp_avg", "exp_inf")
    _flag_defaults: ClassVar[dict[str, Any]] = dict(foreach=None, maximize=False, differentiable=False, capturable=False)

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        differentiable: bool = False,
        capturable: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            foreach=foreach,
            maximize=maximize,
            differentiable=differentiable,
            capturable=capturable,
        )
        self._check_group(defaults)
        defaults["betas"] = tuple(betas)
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        check_adam_hyperparameters(group)
        check_flags(group, ("maximize", "differentiable", "capturable"), optional_bools=("foreach",))
