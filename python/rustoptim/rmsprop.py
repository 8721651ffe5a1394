"""RMSprop, optionally centered and with momentum (``torch.optim.RMSprop`` semantics)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from ._elementwise import ElementwiseOptimizer
from .optimizer import check_flags, check_non_negative

__all__ = ["RMSprop"]


class RMSprop(ElementwiseOptimizer):
    r"""RMSprop (Hinton, 2012), with torch's options: centering, momentum,
    weight decay and maximization.

    For each param :math:`\theta` with a gradient :math:`g` (params whose
    gradient is ``None`` are skipped), with γ = ``lr``, α = ``alpha``,
    μ = ``momentum`` and λ = ``weight_decay``, in this order::

        g   <- -g                             if maximize
        g   <- g + λ·θ                        if λ != 0
        v   <- α·v + (1 - α)·g²               (square_avg)
        if centered:
            ḡ   <- ḡ + (1 - α)·(g - ḡ)        (grad_avg)
            avg =  sqrt(v - ḡ²) + ε
        else:
            avg =  sqrt(v) + ε
        if μ > 0:
            b <- μ·b + g / avg                (momentum_buffer)
            θ <- θ - γ·b
        else:
            θ <- θ - γ·g / avg

    Args:
      params: iterable of :class:`~rustoptim.Parameter`, plain float32/float64
        arrays, ``(name, param)`` tuples, or param-group dicts (see
        :class:`~rustoptim.Optimizer`).
      lr: learning rate γ >= 0 (default 1e-2).
      alpha: smoothing constant α >= 0 (no upper bound, as in torch).
      eps: ε >= 0, added to the denominator outside the square root.
      weight_decay: λ >= 0 (coupled: added to the gradient).
      momentum: μ >= 0.
      centered: normalize by an estimate of the gradient's variance instead
        of its second moment.
      capturable: must be False (CUDA graph capture does not apply to NumPy).
      foreach: accepted for compatibility; every step is one fused
        multi-tensor call per param group, whatever the value.
      maximize: maximize the objective instead of minimizing it.
      differentiable: must be False (NumPy arrays have no autograd graph).

    State per param, created on its first step with a gradient: ``step`` (a
    Python float, counted in float32 as torch does, and not used by the
    update), ``square_avg``, ``momentum_buffer`` if μ > 0 and ``grad_avg`` if
    centered (arrays shaped like the param). Which arrays exist is decided at
    that first step; a buffer a later change of the group needs (momentum
    turned on, say) is created then, starting at zero, where torch raises
    ``KeyError``.

    Example:
      >>> import numpy as np
      >>> import rustoptim
      >>> w = np.array([1.0, -2.0])
      >>> opt = rustoptim.RMSprop([w], lr=0.01, momentum=0.5, centered=True)
      >>> for _ in range(200):
      ...     _ = opt.step(grads=[2 * w])          # gradient of sum(w**2)
      >>> bool(np.abs(w).max() < 0.1)
      True
      >>> list(opt.state[opt.params[0]])
      ['step', 'square_avg', 'momentum_buffer', 'grad_avg']

    Reference: Hinton, "Neural Networks for Machine Learning", lecture 6e
    (2012); Graves, "Generating Sequences With Recurrent Neural Networks",
    arXiv:1308.0850 (the centered form).
    """

    _rule: ClassVar[str] = "rmsprop"
    _state_slots: ClassVar[tuple[str, ...]] = ("square_avg", "momentum_buffer", "grad_avg")
    _flag_defaults: ClassVar[dict[str, Any]] = dict(
        momentum=0, centered=False, foreach=None, maximize=False, differentiable=False, capturable=False
    )

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        capturable: bool = False,
        foreach: bool | None = None,
        maximize: bool = False,
        differentiable: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            alpha=alpha,
            eps=eps,
            centered=centered,
            weight_decay=weight_decay,
            capturable=capturable,
            foreach=foreach,
            maximize=maximize,
            differentiable=differentiable,
        )
        self._check_group(defaults)
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        check_non_negative("lr", group["lr"], "Invalid learning rate: {}")
        check_non_negative("eps", group["eps"], "Invalid epsilon value: {}")
        check_non_negative("momentum", group["momentum"], "Invalid momentum value: {}")
        check_non_negative("weight_decay", group["weight_decay"], "Invalid weight_decay value: {}")
        check_non_negative("alpha", group["alpha"], "Invalid alpha value: {}")
        check_flags(group, ("centered", "capturable", "maximize", "differentiable"), optional_bools=("foreach",))
