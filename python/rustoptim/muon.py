"""Muon (``torch.optim.Muon`` semantics, torch 2.15)."""

from __future__ import annotations

import numbers
from typing import Any, ClassVar, Dict, Iterable, Optional, Tuple

import numpy as np

from ._tensorwise import TensorwiseOptimizer
from .optimizer import check_non_negative

__all__ = ["Muon"]

_ADJUST_LR_FNS = ("original", "match_rms_adamw", "spectral_unclamped")


class Muon(TensorwiseOptimizer):
    r"""Muon (Jordan et al., 2024): momentum whose update is orthogonalized by
    a Newton-Schulz iteration, for 2-D params (hidden layers' weight matrices;
    optimize biases, embeddings and other params with e.g. AdamW).

    For each matrix param :math:`\theta` of shape ``(A, B)`` with a gradient
    :math:`g` (params whose gradient is ``None`` are skipped), with γ = ``lr``,
    λ = ``weight_decay``, μ = ``momentum``, ``(a, b, c) = ns_coefficients``,
    in this order::

        m  <- m + (1 - μ)·(g - m)                 momentum_buffer (an EMA, as torch runs it)
        U  = g + μ·(m - g)   if nesterov else m
        X  = U / max(‖U‖_F, eps)                  (transposed first when A > B)
        repeat ns_steps:
            S = X·Xᵀ
            X <- a·X + (b·S + c·S·S)·X
        θ  <- θ · (1 - γ·λ)
        θ  <- θ - γ·r·X                            (transposed back)

    with r = ``sqrt(max(1, A/B))`` for ``adjust_lr_fn`` None or ``"original"``,
    ``0.2·sqrt(max(A, B))`` for ``"match_rms_adamw"`` and ``sqrt(A/B)`` for
    ``"spectral_unclamped"``.

    torch runs the Newton-Schulz iteration in bfloat16; here it runs in the
    param's dtype (float32 or float64), which is more accurate: each step's
    update lands within a few percent of torch's (relative Frobenius norm), the
    spread of bfloat16 rounding itself. Everything else follows torch's
    rounding, so the momentum buffer equals torch's. The matrix products run on
    all of rustoptim's threads, with the same result for any thread count.

    Args:
      params: iterable of 2-D :class:`~rustoptim.Parameter` objects or arrays,
        ``(name, param)`` tuples, or param-group dicts. Other shapes raise
        ``ValueError`` when the group is added (torch checks only the
        constructor's params and fails at the step for later groups).
      lr: γ >= 0.
      weight_decay: λ >= 0 (decoupled; default 0.1, so the default decays weights).
      momentum: μ >= 0.
      nesterov: use Nesterov momentum.
      ns_coefficients: ``(a, b, c)`` of the quintic Newton-Schulz polynomial.
      eps: floor of the norm ``X`` is divided by.
      ns_steps: Newton-Schulz iterations, an integer in ``[0, 100)``.
      adjust_lr_fn: None, ``"original"``, ``"match_rms_adamw"`` or ``"spectral_unclamped"``.

    State per param, created on its first step with a gradient:
    ``momentum_buffer`` (C-ordered, shaped like the param). No step count.

    Example:
      >>> import numpy as np
      >>> import rustoptim
      >>> w = np.eye(3) * 2.0
      >>> opt = rustoptim.Muon([w], lr=0.1, weight_decay=0.0)
      >>> _ = opt.step(grads=[w.copy()])
      >>> np.round(np.diag(w), 3)   # the same step along each singular direction: lr times NS's 0.69
      array([1.931, 1.931, 1.931])

    References: Jordan et al., "Muon: An optimizer for hidden layers in neural
    networks" (2024), kellerjordan.github.io/posts/muon; Liu et al., "Muon is
    Scalable for LLM Training" (2025), arXiv:2502.16982.
    """

    _rule: ClassVar[str] = "muon"
    _tuple_keys: ClassVar[Tuple[str, ...]] = ("ns_coefficients",)
    _state_slots: ClassVar[Tuple[str, ...]] = ("momentum_buffer",)

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_coefficients: Tuple[float, float, float] = (3.4445, -4.7750, 2.0315),
        eps: float = 1e-7,
        ns_steps: int = 5,
        adjust_lr_fn: Optional[str] = None,
    ) -> None:
        defaults = dict(
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            nesterov=nesterov,
            ns_coefficients=ns_coefficients,
            eps=eps,
            ns_steps=ns_steps,
            adjust_lr_fn=adjust_lr_fn,
        )
        self._check_hyperparameters(defaults)
        if isinstance(ns_coefficients, list):
            defaults["ns_coefficients"] = tuple(ns_coefficients)
        super().__init__(params, defaults)

    @staticmethod
    def _check_hyperparameters(group: Dict[str, Any]) -> None:
        check_non_negative("lr", group["lr"], "Learning rate should be >= 0 but is: {}")
        check_non_negative("momentum", group["momentum"], "momentum should be >= 0 but is: {}")
        check_non_negative("weight_decay", group["weight_decay"], "weight decay should be >= 0 but is: {}")
        adjust_lr_fn = group["adjust_lr_fn"]
        if adjust_lr_fn is not None and adjust_lr_fn not in _ADJUST_LR_FNS:
            raise ValueError(f"Adjust learning rate function {adjust_lr_fn} is not supported")
        if not isinstance(group["nesterov"], (bool, np.bool_)):
            raise TypeError(f"nesterov must be a bool, got {group['nesterov']!r}")
        eps = group["eps"]
        if isinstance(eps, np.ndarray) or isinstance(eps, (bool, np.bool_)) or not isinstance(eps, numbers.Real):
            raise TypeError(f"eps must be a real number, got {eps!r}")
        ns_steps = group["ns_steps"]
        if isinstance(ns_steps, (bool, np.bool_)) or not isinstance(ns_steps, (int, np.integer)) or ns_steps < 0:
            raise TypeError(f"ns_steps must be a non-negative integer, got {ns_steps!r}")
        if ns_steps >= 100:
            raise ValueError("Number of steps must be less than 100 for computational efficiency")
        coefficients = group["ns_coefficients"]
        if isinstance(coefficients, np.ndarray) or not isinstance(coefficients, (tuple, list)) or len(coefficients) != 3:
            raise ValueError("Coefficients must be a tuple of exactly 3 values")
        for x in coefficients:
            if isinstance(x, (bool, np.bool_, np.ndarray)) or not isinstance(x, numbers.Real):
                raise TypeError(f"ns_coefficients must be real numbers, got {coefficients!r}")

    def _check_group(self, group: Dict[str, Any]) -> None:
        self._check_hyperparameters(group)
        for p in group.get("params", ()):
            if p.data.ndim != 2:
                raise ValueError(
                    f"Muon only supports 2D parameters whereas we found a parameter with size: {p.data.shape}"
                )

    def _state_shapes(self, shape: Tuple[int, ...]) -> Dict[str, Tuple[int, ...]]:
        return {"momentum_buffer": shape}
