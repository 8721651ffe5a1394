"""RAdam (``torch.optim.RAdam`` semantics)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from ._elementwise import ElementwiseOptimizer
from .optimizer import check_adam_hyperparameters, check_flags

__all__ = ["RAdam"]


class RAdam(ElementwiseOptimizer):
    r"""RAdam (Liu et al., 2020): Adam whose adaptive learning rate is switched
    on, and rectified, only once the variance of its estimate is tractable.

    For each param :math:`\theta` with a gradient :math:`g` (params whose
    gradient is ``None`` are skipped), with :math:`t` the param's step count
    after this step's increment, γ = ``lr`` and λ = ``weight_decay``, in this
    order::

        g   <- -g                                  if maximize
        θ   <- θ · (1 - γ·λ)                       if decoupled_weight_decay
        g   <- g + λ·θ                             otherwise, if λ != 0
        m   <- m + (1 - β1)·(g - m)                first moment  (exp_avg)
        v   <- β2·v + (1 - β2)·g²                  second moment (exp_avg_sq)
        m̂   <- m / (1 - β1^t)
        ρ∞  <- 2 / (1 - β2) - 1
        ρt  <- ρ∞ - 2t·β2^t / (1 - β2^t)
        if ρt > 5:
            l <- sqrt(1 - β2^t) / (sqrt(v) + ε)    adaptive learning rate
            r <- sqrt((ρt - 4)(ρt - 2)ρ∞ / ((ρ∞ - 4)(ρ∞ - 2)ρt))
            θ <- θ - γ·m̂·l·r
        else:
            θ <- θ - γ·m̂

    With the default β2 the first 5 steps take the un-adapted branch. The
    arithmetic follows torch's order and rounding: the step count is a float32
    number (as torch keeps it), the scalars are double precision and rounded to
    the param's dtype where they are applied, ``ε`` is added to ``sqrt(v)``
    before the reciprocal.

    Args:
      params: iterable of :class:`~rustoptim.Parameter`, plain float32/float64
        arrays, ``(name, param)`` tuples, or param-group dicts (see
        :class:`~rustoptim.Optimizer`).
      lr: learning rate γ (a real number >= 0; ndarray learning rates are not
        supported: pass ``float(lr)``).
      betas: ``(β1, β2)``, real numbers in ``[0, 1)``.
      eps: ε >= 0, added to ``sqrt(v)``.
      weight_decay: λ >= 0.
      decoupled_weight_decay: apply decay as ``θ·(1 - γλ)`` (as AdamW does)
        instead of adding ``λθ`` to the gradient.
      foreach: accepted for compatibility; every step is one fused multi-tensor
        call per param group, whatever the value.
      maximize: maximize the objective instead of minimizing it.
      capturable: must be False (CUDA graph capture does not apply to NumPy).
      differentiable: must be False (NumPy arrays have no autograd graph).

    State per param, created on its first step with a gradient: ``step`` (a
    Python float holding a float32 count), ``exp_avg`` and ``exp_avg_sq``
    (arrays shaped like the param).

    Example:
      >>> import numpy as np
      >>> import rustoptim
      >>> w = np.array([1.0, -2.0])
      >>> opt = rustoptim.RAdam([w], lr=0.1)
      >>> for _ in range(200):
      ...     _ = opt.step(grads=[2 * w])          # gradient of sum(w**2)
      >>> bool(np.abs(w).max() < 0.1)
      True

    Reference: Liu et al., "On the Variance of the Adaptive Learning Rate and
    Beyond", ICLR 2020.
    """

    _rule: ClassVar[str] = "radam"
    _tuple_keys: ClassVar[tuple[str, ...]] = ("betas",)
    _state_slots: ClassVar[tuple[str, ...]] = ("exp_avg", "exp_avg_sq")
    _flag_defaults: ClassVar[dict[str, Any]] = dict(
        foreach=None,
        maximize=False,
        differentiable=False,
        decoupled_weight_decay=False,
        capturable=False,
    )

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        decoupled_weight_decay: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            maximize=maximize,
            foreach=foreach,
            capturable=capturable,
            decoupled_weight_decay=decoupled_weight_decay,
            differentiable=differentiable,
        )
        self._check_group(defaults)
        defaults["betas"] = tuple(betas)
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        check_adam_hyperparameters(group)
        check_flags(
            group,
            ("maximize", "capturable", "decoupled_weight_decay", "differentiable"),
            optional_bools=("foreach",),
        )
