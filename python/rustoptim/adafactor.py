"""Adafactor (``torch.optim.Adafactor`` semantics, torch 2.15)."""

from __future__ import annotations

import numbers
from typing import Any, ClassVar, Dict, Iterable, Optional, Tuple

import numpy as np

from ._tensorwise import TensorwiseOptimizer
from .optimizer import check_flags, check_non_negative

__all__ = ["Adafactor"]


def _real(name: str, value: object) -> float:
    if isinstance(value, np.ndarray) or isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    return value  # type: ignore[return-value]


class Adafactor(TensorwiseOptimizer):
    r"""Adafactor (Shazeer & Stern, 2018) as torch implements it: a second
    moment kept as row and column factors for params of 2+ dimensions, a
    relative step size, update clipping and decoupled weight decay.

    For each param :math:`\theta` with a gradient :math:`g` (params whose
    gradient is ``None`` are skipped), with :math:`t` its step count after this
    step's increment, :math:`n` its element count, γ = ``lr``, λ =
    ``weight_decay``, ``(ε1, ε2) = eps``, in this order::

        g   <- -g                                         if maximize
        β̂   = t ** beta2_decay                            (1 at t = 1: the first step overwrites)
        ρ   = min(γ, 1 / sqrt(t))
        α   = max(ε2, ‖θ‖ / sqrt(n)) · ρ                  (‖θ‖ before the decay)
        θ   <- θ · (1 - γ·λ)                              if λ != 0
        2+ dimensions (..., R, C), factored over the last two:
          R_v <- lerp(R_v, mean(g², axis=-1), β̂)          row_var, shape (..., R, 1)
          C_v <- lerp(C_v, mean(g², axis=-2), β̂)          col_var, shape (..., 1, C)
          V   = R_v · C_v / max(mean(R_v, axis=-2), ε1)
        0-d and 1-d:
          V   <- lerp(V, g², β̂)                           variance, shaped like the param
        u   = g / sqrt(max(V, ε1²))
        θ   <- θ - α / max(1, RMS(u) / d) · u

    ``ε1 = None`` (the default) means the machine epsilon of the dtype of the
    group's first param that has a gradient, used for the whole group, as torch
    does (a float64 param after a float32 one in the same group gets float32's
    epsilon). Row and column means are squared norms divided by the count, in
    torch's rounding; sums of squares are accumulated in float64 in a fixed
    order, so results do not depend on the thread count.

    Args:
      params: iterable of :class:`~rustoptim.Parameter`, plain float32/float64
        arrays, ``(name, param)`` tuples, or param-group dicts.
      lr: γ >= 0: the largest relative step size and the weight-decay rate.
      beta2_decay: <= 0, the exponent of the second moment's decay schedule.
      eps: ``(ε1, ε2)``: ε1 (None or >= 0) floors the second moment, ε2 >= 0 the
        param's RMS in the step size.
      d: clipping threshold >= 1 of the update's RMS.
      weight_decay: λ >= 0 (decoupled, scaled by γ).
      foreach: accepted for compatibility (every setting runs the same kernel).
      maximize: maximize the objective instead of minimizing it.

    State per param, created on its first step with a gradient: ``step`` (a
    Python float), then ``row_var`` and ``col_var`` (2+ dimensions) or
    ``variance`` (0-d and 1-d). State arrays are C-ordered.

    Example:
      >>> import numpy as np
      >>> import rustoptim
      >>> w = np.full((4, 3), 2.0)
      >>> opt = rustoptim.Adafactor([w], lr=0.1)
      >>> for _ in range(200):
      ...     _ = opt.step(grads=[2 * w])          # gradient of sum(w**2)
      >>> bool(np.abs(w).max() < 0.5)
      True
      >>> opt.state[opt.params[0]]["row_var"].shape
      (4, 1)

    Reference: Shazeer & Stern, "Adafactor: Adaptive Learning Rates with
    Sublinear Memory Cost", ICML 2018.
    """

    _rule: ClassVar[str] = "adafactor"
    _tuple_keys: ClassVar[Tuple[str, ...]] = ("eps",)
    _scalar_keys: ClassVar[Tuple[str, ...]] = ("step",)
    _state_slots: ClassVar[Tuple[str, ...]] = ("row_var", "col_var", "variance")
    _flag_defaults: ClassVar[Dict[str, Any]] = dict(foreach=None, maximize=False)

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-2,
        beta2_decay: float = -0.8,
        eps: Tuple[Optional[float], float] = (None, 1e-3),
        d: float = 1.0,
        weight_decay: float = 0.0,
        *,
        foreach: Optional[bool] = None,
        maximize: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            beta2_decay=beta2_decay,
            eps=eps,
            d=d,
            weight_decay=weight_decay,
            foreach=foreach,
            maximize=maximize,
        )
        self._check_group(defaults)
        defaults["eps"] = tuple(eps)
        super().__init__(params, defaults)

    def _check_group(self, group: Dict[str, Any]) -> None:
        check_non_negative("lr", group["lr"], "Learning rate should be >= 0 but is: {}")
        beta2_decay = _real("beta2_decay", group["beta2_decay"])
        if not 0.0 >= beta2_decay:
            raise ValueError(f"beta2_decay should be <= 0 but is: {beta2_decay}")
        eps = group["eps"]
        if isinstance(eps, np.ndarray) or not isinstance(eps, (tuple, list)) or len(eps) != 2:
            raise ValueError(f"eps must be a pair (epsilon1 or None, epsilon2), got {eps!r}")
        if eps[0] is not None:
            check_non_negative("eps[0]", eps[0], "epsilon1 should be >= 0 but is: {}")
        check_non_negative("eps[1]", eps[1], "epsilon2 should be >= 0 but is: {}")
        d = _real("d", group["d"])
        if not 1.0 <= d:
            raise ValueError(f"Clipping threshold d should be >= 1 but is: {d}")
        check_non_negative("weight_decay", group["weight_decay"], "weight_decay should be >= 0 but is: {}")
        check_flags(group, ("maximize",), optional_bools=("foreach",))

    def _state_shapes(self, shape: Tuple[int, ...]) -> Dict[str, Tuple[int, ...]]:
        if len(shape) >= 2:
            return {"row_var": shape[:-1] + (1,), "col_var": shape[:-2] + (1, shape[-1])}
        return {"variance": shape}
