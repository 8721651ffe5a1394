"""Schedulers that multiply the current lr by a factor at some steps: StepLR,
MultiStepLR, ConstantLR, LinearLR, ExponentialLR, PolynomialLR.

Each ``step()`` computes the new lr from the group's current lr (torch's
chainable form, so several schedulers can act on one optimizer and the
floating-point results equal torch's); ``step(epoch)`` uses the closed form in
``base_lr``. In the formulas ``e`` is ``last_epoch`` after the step's increment
and ``lr`` the group's current lr. The constructor's step (``e = 0``) keeps the
lr, except in ConstantLR and LinearLR, which apply their first factor there.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable
from typing import Any

from ._base import LRScheduler, integer, real
from ._checks import check_int, check_real, is_int

__all__ = ["StepLR", "MultiStepLR", "ConstantLR", "LinearLR", "ExponentialLR", "PolynomialLR"]


def _current_lrs(scheduler: LRScheduler) -> list[Any]:
    return [group["lr"] for group in scheduler.optimizer.param_groups]


class StepLR(LRScheduler):
    r"""Multiply the lr by ``gamma`` every ``step_size`` steps.

    ::

        lr_e = lr_{e-1} · γ     if e > 0 and e % step_size == 0
        lr_e = lr_{e-1}         otherwise
        closed form (step(epoch)):  base_lr · γ^(e // step_size)

    Args:
      optimizer: a rustoptim optimizer.
      step_size: period of the decay, an integer >= 1.
      gamma: multiplicative factor γ (default 0.1).
      last_epoch: see :class:`LRScheduler`.

    Example:
      >>> import numpy as np, rustoptim
      >>> opt = rustoptim.SGD([np.zeros(2)], lr=0.1)
      >>> sched = rustoptim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
      >>> for _ in range(4):
      ...     _ = opt.step(grads=[np.ones(2)]); sched.step()
      >>> sched.get_last_lr()
      [0.025]
    """

    _fields = {"step_size": integer(minimum=1), "gamma": real()}

    def __init__(self, optimizer: Any, step_size: int, gamma: float = 0.1, last_epoch: int = -1) -> None:
        self.step_size = check_int("step_size", step_size, minimum=1)
        self.gamma = check_real("gamma", gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[Any]:
        self._warn_outside_step()
        if self.last_epoch == 0 or self.last_epoch % self.step_size != 0:
            return _current_lrs(self)
        return [group["lr"] * self.gamma for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[Any]:
        return [base_lr * self.gamma ** (self.last_epoch // self.step_size) for base_lr in self.base_lrs]


def _check_milestones(name: str, value: Any, n: int = 0) -> dict[int, int]:
    """A state dict's ``milestones``: ``{epoch: how many times it was given}``."""
    if not isinstance(value, dict):
        raise TypeError(f"{name} must be a dict {{milestone: count}}, got {type(value).__name__}")
    for milestone, count in value.items():
        if not is_int(milestone) or milestone < 0:
            raise ValueError(f"{name} has key {milestone!r}; milestones are integers >= 0")
        check_int(f"{name}[{milestone!r}]", count, minimum=1)
    return {int(m): int(c) for m, c in value.items()}


class MultiStepLR(LRScheduler):
    r"""Multiply the lr by ``gamma`` at each milestone.

    ::

        lr_e = lr_{e-1} · γ^k   where k = how many times e appears in milestones
        closed form (step(epoch)):  base_lr · γ^(number of milestones <= e)

    Args:
      optimizer: a rustoptim optimizer.
      milestones: epochs (integers >= 0); a milestone given twice decays twice.
      gamma: multiplicative factor γ (default 0.1).
      last_epoch: see :class:`LRScheduler`.

    ``milestones`` is kept (and saved) as a plain dict ``{epoch: count}`` in the
    order first given, where torch keeps a ``Counter``.
    """

    _fields = {"milestones": _check_milestones, "gamma": real()}

    def __init__(self, optimizer: Any, milestones: Iterable[int], gamma: float = 0.1, last_epoch: int = -1) -> None:
        if isinstance(milestones, (str, bytes, dict)) or not isinstance(milestones, Iterable):
            raise TypeError(f"milestones must be a list of integers, got {type(milestones).__name__}")
        counts: dict[int, int] = {}
        for i, milestone in enumerate(milestones):
            milestone = check_int(f"milestones[{i}]", milestone, minimum=0)
            counts[milestone] = counts.get(milestone, 0) + 1
        self.milestones = counts
        self.gamma = check_real("gamma", gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[Any]:
        self._warn_outside_step()
        if self.last_epoch not in self.milestones:
            return _current_lrs(self)
        factor = self.gamma ** self.milestones[self.last_epoch]
        return [group["lr"] * factor for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[Any]:
        milestones = sorted(m for m, count in self.milestones.items() for _ in range(count))
        return [base_lr * self.gamma ** bisect_right(milestones, self.last_epoch) for base_lr in self.base_lrs]


class ConstantLR(LRScheduler):
    r"""Multiply the lr by ``factor`` for the first ``total_iters`` steps.

    ::

        e = 0:           lr_0 = lr · factor           (the constructor's step)
        e = total_iters: lr_e = lr_{e-1} · (1 / factor)
        otherwise:       lr_e = lr_{e-1}
        closed form (step(epoch)):  base_lr · (factor if e < total_iters else 1)

    Args:
      optimizer: a rustoptim optimizer.
      factor: in [0, 1] (default 1/3). With 0, the step at ``total_iters``
        raises ``ValueError`` (torch divides by zero there).
      total_iters: number of steps with the reduced lr, an integer >= 1
        (default 5).
      last_epoch: see :class:`LRScheduler`.
    """

    _fields = {"factor": real(minimum=0.0, maximum=1.0), "total_iters": integer(minimum=1)}

    def __init__(self, optimizer: Any, factor: float = 1.0 / 3, total_iters: int = 5, last_epoch: int = -1) -> None:
        check_real("factor", factor)
        if factor > 1.0 or factor < 0:
            raise ValueError("Constant multiplicative factor expected to be between 0 and 1.")
        self.factor = factor
        self.total_iters = check_int("total_iters", total_iters, minimum=1)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[Any]:
        self._warn_outside_step()
        if self.last_epoch == 0:
            return [group["lr"] * self.factor for group in self.optimizer.param_groups]
        if self.last_epoch != self.total_iters:
            return _current_lrs(self)
        if self.factor == 0:
            raise ValueError(
                "ConstantLR with factor=0 cannot restore the lr at total_iters (it would divide by zero); "
                "use a factor > 0"
            )
        return [group["lr"] * (1.0 / self.factor) for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[Any]:
        return [
            base_lr * (self.factor + (self.last_epoch >= self.total_iters) * (1 - self.factor))
            for base_lr in self.base_lrs
        ]


class LinearLR(LRScheduler):
    r"""Ramp the lr's factor linearly from ``start_factor`` to ``end_factor`` over
    ``total_iters`` steps (a warm-up with the defaults).

    With s = ``start_factor``, f = ``end_factor``, T = ``total_iters``::

        e = 0:       lr_0 = lr · s                            (the constructor's step)
        0 < e <= T:  lr_e = lr_{e-1} · (1 + (f - s) / (T·s + (e - 1)·(f - s)))
        e > T:       lr_e = lr_{e-1}
        closed form (step(epoch)):  base_lr · (s + (f - s) · min(T, e) / T)

    The recursion makes ``lr_e = base_lr · (s + (f - s)·e/T)`` up to rounding
    (torch's rounding: 0.060000000000000005 where the closed form gives
    0.06000000000000001).

    Args:
      optimizer: a rustoptim optimizer.
      start_factor: in (0, 1] (default 1/3).
      end_factor: in [0, 1] (default 1.0).
      total_iters: an integer >= 1 (default 5).
      last_epoch: see :class:`LRScheduler`.
    """

    _fields = {
        "start_factor": real(above=0.0, maximum=1.0),
        "end_factor": real(minimum=0.0, maximum=1.0),
        "total_iters": integer(minimum=1),
    }

    def __init__(
        self,
        optimizer: Any,
        start_factor: float = 1.0 / 3,
        end_factor: float = 1.0,
        total_iters: int = 5,
        last_epoch: int = -1,
    ) -> None:
        check_real("start_factor", start_factor)
        check_real("end_factor", end_factor)
        if start_factor > 1.0 or start_factor <= 0:
            raise ValueError("Starting multiplicative factor expected to be greater than 0 and less or equal to 1.")
        if end_factor > 1.0 or end_factor < 0:
            raise ValueError("Ending multiplicative factor expected to be between 0 and 1.")
        self.start_factor = start_factor
        self.end_factor = end_factor
        self.total_iters = check_int("total_iters", total_iters, minimum=1)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[Any]:
        self._warn_outside_step()
        if self.last_epoch == 0:
            return [group["lr"] * self.start_factor for group in self.optimizer.param_groups]
        if self._is_initial or self.last_epoch > self.total_iters:
            return _current_lrs(self)
        s, f = self.start_factor, self.end_factor
        factor = 1.0 + (f - s) / (self.total_iters * s + (self.last_epoch - 1) * (f - s))
        return [group["lr"] * factor for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[Any]:
        s, f = self.start_factor, self.end_factor
        return [
            base_lr * (s + (f - s) * min(self.total_iters, self.last_epoch) / self.total_iters)
            for base_lr in self.base_lrs
        ]


class ExponentialLR(LRScheduler):
    r"""Multiply the lr by ``gamma`` at every step.

    ::

        lr_e = lr_{e-1} · γ       (the constructor's step keeps the lr)
        closed form (step(epoch)):  base_lr · γ^e

    Args:
      optimizer: a rustoptim optimizer.
      gamma: multiplicative factor γ.
      last_epoch: see :class:`LRScheduler`.
    """

    _fields = {"gamma": real()}

    def __init__(self, optimizer: Any, gamma: float, last_epoch: int = -1) -> None:
        self.gamma = check_real("gamma", gamma)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[Any]:
        self._warn_outside_step()
        if self._is_initial:
            return _current_lrs(self)
        return [group["lr"] * self.gamma for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[Any]:
        return [base_lr * self.gamma**self.last_epoch for base_lr in self.base_lrs]


class PolynomialLR(LRScheduler):
    r"""Decay the lr polynomially to 0 over ``total_iters`` steps.

    With T = ``total_iters``, p = ``power``::

        0 < e <= T:  lr_e = lr_{e-1} · ((1 - e/T) / (1 - (e - 1)/T))^p
        e > T:       lr_e = lr_{e-1}                 (the constructor's step keeps the lr)
        closed form (step(epoch)):  base_lr · (1 - min(T, e)/T)^p

    Args:
      optimizer: a rustoptim optimizer.
      total_iters: an integer >= 1 (default 5).
      power: p >= 0 (default 1.0).
      last_epoch: see :class:`LRScheduler`.
    """

    _fields = {"total_iters": integer(minimum=1), "power": real(minimum=0.0)}

    def __init__(self, optimizer: Any, total_iters: int = 5, power: float = 1.0, last_epoch: int = -1) -> None:
        self.total_iters = check_int("total_iters", total_iters, minimum=1)
        self.power = check_real("power", power, minimum=0.0)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[Any]:
        self._warn_outside_step()
        if self._is_initial or self.last_epoch > self.total_iters:
            return _current_lrs(self)
        e, total = self.last_epoch, self.total_iters
        decay_factor = ((1.0 - e / total) / (1.0 - (e - 1) / total)) ** self.power
        return [group["lr"] * decay_factor for group in self.optimizer.param_groups]

    def _get_closed_form_lr(self) -> list[Any]:
        return [
            base_lr * (1.0 - min(self.total_iters, self.last_epoch) / self.total_iters) ** self.power
            for base_lr in self.base_lrs
        ]
