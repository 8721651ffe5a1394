"""NAdam, Adam with Nesterov momentum (``torch.optim.NAdam`` semantics)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from ._elementwise import ElementwiseOptimizer
from .optimizer import check_adam_hyperparameters, check_flags, check_non_negative

__all__ = ["NAdam"]


class NAdam(ElementwiseOptimizer):
    r"""NAdam (Dozat, 2016): Adam with Nesterov momentum and a momentum
    schedule, with torch's coupled or decoupled weight decay.

    For each param :math:`\theta` with a gradient :math:`g` (params whose
    gradient is ``None`` are skipped), with :math:`t` the param's step count
    after this step's increment, γ = ``lr``, λ = ``weight_decay`` and
    ψ = ``momentum_decay``, in this order::

        g   <- -g                                      if maximize
        θ   <- θ · (1 - γ·λ)                           if decoupled_weight_decay (NAdamW)
        g   <- g + λ·θ                                 otherwise, if λ != 0
        μ   =  β1 · (1 - 0.5 · 0.96^(t·ψ))
        μ'  =  β1 · (1 - 0.5 · 0.96^((t+1)·ψ))
        P   <- P · μ                                   (mu_product, in float32)
        m   <- m + (1 - β1)·(g - m)                    (exp_avg)
        v   <- β2·v + (1 - β2)·g²                      (exp_avg_sq)
        den =  sqrt(v / (1 - β2^t)) + ε
        θ   <- θ - γ·(1 - μ)/(1 - P) · g / den
        θ   <- θ - γ·μ'/(1 - P·μ') · m / den

    As in torch, ``step`` and ``mu_product`` are float32 quantities even for
    float64 params (``mu_product *= mu`` is a float32 multiplication, with μ
    rounded to float32 first); they are stored as the Python floats of those
    values. After ``load_state_dict`` rustoptim keeps computing
    ``mu_product`` in float32 (torch switches it to the param's dtype, which
    changes a float64 run's later numbers).

    Args:
      params: iterable of :class:`~rustoptim.Parameter`, plain float32/float64
        arrays, ``(name, param)`` tuples, or param-group dicts (see
        :class:`~rustoptim.Optimizer`).
      lr: learning rate γ >= 0 (default 2e-3).
      betas: ``(β1, β2)``, each in ``[0, 1)``.
      eps: ε >= 0, added outside the square root.
      weight_decay: λ >= 0.
      momentum_decay: ψ >= 0 (default 4e-3).
      decoupled_weight_decay: apply decay as ``θ·(1 - γλ)`` (NAdamW) instead
        of adding ``λθ`` to the gradient.
      foreach: accepted for compatibility; every step is one fused
        multi-tensor call per param group, whatever the value.
      maximize: maximize the objective instead of minimizing it.
      capturable: must be False (CUDA graph capture does not apply to NumPy).
      differentiable: must be False (NumPy arrays have no autograd graph).

    State per param, created on its first step with a gradient: ``step`` and
    ``mu_product`` (Python floats), ``exp_avg`` and ``exp_avg_sq`` (arrays
    shaped like the param).

    Example:
      >>> import numpy as np
      >>> import rustoptim
      >>> w = np.array([1.0, -2.0])
      >>> opt = rustoptim.NAdam([w], lr=0.1)
      >>> for _ in range(100):
      ...     _ = opt.step(grads=[2 * w])          # gradient of sum(w**2)
      >>> bool(np.abs(w).max() < 0.2)
      True
      >>> opt.state[opt.params[0]]["mu_product"] == float(np.float32(opt.state[opt.params[0]]["mu_product"]))
      True

    Reference: Dozat, "Incorporating Nesterov Momentum into Adam", ICLR 2016
    workshop; Loshchilov & Hutter, "Decoupled Weight Decay Regularization",
    ICLR 2019 (the decoupled decay).
    """

    _rule: ClassVar[str] = "nadam"
    _tuple_keys: ClassVar[tuple[str, ...]] = ("betas",)
    _state_slots: ClassVar[tuple[str, ...]] = ("exp_avg", "exp_avg_sq")
    _flag_defaults: ClassVar[dict[str, Any]] = dict(
        maximize=False, foreach=None, capturable=False, differentiable=False, decoupled_weight_decay=False
    )

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum_decay: float = 4e-3,
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
            momentum_decay=momentum_decay,
            decoupled_weight_decay=decoupled_weight_decay,
            maximize=maximize,
            foreach=foreach,
            capturable=capturable,
            differentiable=differentiable,
        )
        self._check_group(defaults)
        defaults["betas"] = tuple(betas)
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        check_adam_hyperparameters(group)
        check_non_negative("momentum_decay", group["momentum_decay"], "Invalid momentum_decay value: {}")
        check_flags(
            group,
            ("decoupled_weight_decay", "maximize", "capturable", "differentiable"),
            optional_bools=("foreach",),
        )
