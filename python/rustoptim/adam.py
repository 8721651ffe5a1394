"""Adam and AdamW (``torch.optim.Adam`` / ``torch.optim.AdamW`` semantics)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

from ._elementwise import ElementwiseOptimizer
from .optimizer import check_adam_hyperparameters, check_flags

__all__ = ["Adam", "AdamW"]


class Adam(ElementwiseOptimizer):
    r"""Adam (Kingma & Ba, 2015), with torch's options: coupled or decoupled
    weight decay, AMSGrad and maximization.

    For each param :math:`\theta` with a gradient :math:`g` (params whose
    gradient is ``None`` are skipped), with :math:`t` the param's step count
    after this step's increment, :math:`\lambda` = ``weight_decay`` and
    :math:`\gamma` = ``lr``, in this order::

        g  <- -g                                   if maximize
        θ  <- θ · (1 - γ·λ)                        if decoupled_weight_decay (AdamW)
        g  <- g + λ·θ                              otherwise, if λ != 0
        m  <- m + (1 - β1)·(g - m)                 first moment  (exp_avg)
        v  <- β2·v + (1 - β2)·g²                   second moment (exp_avg_sq)
        u  <- max(u, v)                            if amsgrad    (max_exp_avg_sq; v itself is kept)
        θ  <- θ - (γ / (1 - β1^t)) · m / (sqrt(u or v) / sqrt(1 - β2^t) + ε)

    ε is added *after* dividing by the bias correction, outside the square
    root, exactly as torch does. Scalars are computed in double precision and
    rounded to the param's dtype where they are applied.

    Args:
      params: iterable of :class:`~rustoptim.Parameter`, plain float32/float64
        arrays, ``(name, param)`` tuples, or param-group dicts (see
        :class:`~rustoptim.Optimizer`).
      lr: learning rate γ (a real number >= 0; ndarray learning rates are not
        supported: pass ``float(lr)``).
      betas: ``(β1, β2)``, Python floats in ``[0, 1)`` (ints are rejected, as in torch).
      eps: ε >= 0, added to the denominator.
      weight_decay: λ >= 0.
      amsgrad: use the maximum of past second moments (AMSGrad).
      foreach: accepted for compatibility; every step is one fused multi-tensor
        call per param group, whatever the value.
      maximize: maximize the objective instead of minimizing it.
      capturable: must be False (CUDA graph capture does not apply to NumPy).
      differentiable: must be False (NumPy arrays have no autograd graph).
      fused: accepted for compatibility, like ``foreach``.
      decoupled_weight_decay: apply decay as ``θ·(1 - γλ)`` before the moments
        (AdamW) instead of adding ``λθ`` to the gradient.

    State per param, created on its first step with a gradient: ``step`` (a
    Python float), ``exp_avg``, ``exp_avg_sq`` and, with amsgrad,
    ``max_exp_avg_sq`` (arrays shaped like the param).

    Example:
      >>> import numpy as np
      >>> import rustoptim
      >>> w = np.array([1.0, -2.0])
      >>> opt = rustoptim.Adam([w], lr=0.1)
      >>> for _ in range(100):
      ...     _ = opt.step(grads=[2 * w])          # gradient of sum(w**2)
      >>> bool(np.abs(w).max() < 0.5)
      True

    Reference: Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015;
    Reddi et al., "On the Convergence of Adam and Beyond", ICLR 2018 (AMSGrad).
    """

    _rule: ClassVar[str] = "adam"
    _tuple_keys: ClassVar[tuple[str, ...]] = ("betas",)
    _state_slots: ClassVar[tuple[str, ...]] = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    _flag_defaults: ClassVar[dict[str, Any]] = dict(
        amsgrad=False,
        maximize=False,
        foreach=None,
        capturable=False,
        differentiable=False,
        decoupled_weight_decay=False,
        fused=None,
    )

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
        decoupled_weight_decay: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
            foreach=foreach,
            capturable=capturable,
            differentiable=differentiable,
            fused=fused,
            decoupled_weight_decay=decoupled_weight_decay,
        )
        self._check_group(defaults)
        defaults["betas"] = tuple(betas)
        super().__init__(params, defaults)
        if fused and foreach:
            raise RuntimeError("`fused` and `foreach` cannot be `True` together.")

    def _check_group(self, group: dict[str, Any]) -> None:
        check_adam_hyperparameters(group)
        betas = group["betas"]
        if not (isinstance(betas[0], float) and isinstance(betas[1], float)):
            raise ValueError("betas must be either both floats or both Tensors")
        check_flags(group, ("amsgrad", "maximize", "capturable", "differentiable", "decoupled_weight_decay"))


class AdamW(Adam):
    r"""AdamW (Loshchilov & Hutter, 2019): Adam with decoupled weight decay.

    Identical to ``Adam(..., decoupled_weight_decay=True)``, with
    ``weight_decay`` defaulting to ``0.01``. The decay is applied to the param
    before the moment updates, with the current lr::

        θ <- θ · (1 - γ·λ)
        ... then the Adam update of :class:`Adam` with g unchanged by λ.

    Because of the default decay, AdamW moves params even when gradients are
    zero. Passing ``decoupled_weight_decay`` raises ``TypeError``; the param
    groups still carry ``'decoupled_weight_decay': True`` (forced on load).

    Args:
      params, lr, betas, eps, amsgrad, maximize, foreach, capturable,
      differentiable, fused: as for :class:`Adam`.
      weight_decay: λ >= 0 (default 0.01).

    Example:
      >>> import numpy as np
      >>> import rustoptim
      >>> w = np.ones(4, dtype=np.float32)
      >>> opt = rustoptim.AdamW([w], lr=0.1, weight_decay=0.5)
      >>> _ = opt.step(grads=[np.zeros(4, np.float32)])
      >>> w                                      # decayed by 1 - 0.1·0.5
      array([0.95, 0.95, 0.95, 0.95], dtype=float32)

    Reference: Loshchilov & Hutter, "Decoupled Weight Decay Regularization", ICLR 2019.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        capturable: bool = False,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        super().__init__(
            params,
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
            foreach=foreach,
            maximize=maximize,
            capturable=capturable,
            differentiable=differentiable,
            fused=fused,
            decoupled_weight_decay=True,
        )

    def _restore_group(self, group: dict[str, Any]) -> None:
        super()._restore_group(group)
        group["decoupled_weight_decay"] = True
