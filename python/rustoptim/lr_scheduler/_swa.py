"""SWALR: anneal the lr to a fixed value for stochastic weight averaging."""

from __future__ import annotations

import math
from typing import Any

from ._base import LRScheduler, integer, one_of
from ._checks import check_choice, check_optimizer, format_param, is_int

__all__ = ["SWALR"]


class SWALR(LRScheduler):
    r"""Anneal each group's lr to ``swa_lr`` over ``anneal_epochs`` steps, then hold it.

    With k = ``_step_count - 1`` (the steps taken, counted by ``step()``), A =
    ``anneal_epochs`` and f the annealing curve (``'cos'``: f(t) = (1 - cos(πt))/2,
    ``'linear'``: f(t) = t)::

        k = max(1, k)                                   if A == 0
        a_prev = f(clamp((k - 1) / max(1, A), 0, 1))
        start  = swa_lr if a_prev == 1 else (lr - a_prev·swa_lr) / (1 - a_prev)
        a      = f(clamp(k / max(1, A), 0, 1))
        lr_new = swa_lr·a + start·(1 - a)

    ``start`` recovers the lr the annealing started from, so an lr changed by
    another scheduler is followed (torch's recursion). The constructor's step
    keeps the lr (with A = 0 it sets ``swa_lr`` at once). ``step(epoch)`` ignores
    the epoch's value (as in torch). The constructor stores ``swa_lr`` in every
    param group.

    Args:
      optimizer: a rustoptim optimizer.
      swa_lr: the target lr, a real number >= 0 or one per param group.
      anneal_epochs: the number of annealing steps, an integer >= 0 (default 10).
      anneal_strategy: ``'cos'`` (default) or ``'linear'``.
      last_epoch: see :class:`LRScheduler`.

    ``rustoptim.swa_utils.SWALR`` is this class.

    Reference: Izmailov et al., "Averaging Weights Leads to Wider Optima and
    Better Generalization", UAI 2018.
    """

    _fields = {"_anneal_strategy": one_of("cos", "linear"), "anneal_epochs": integer(minimum=0)}

    def __init__(
        self, optimizer: Any, swa_lr: Any, anneal_epochs: int = 10, anneal_strategy: str = "cos", last_epoch: int = -1
    ) -> None:
        check_optimizer(optimizer)
        self._swa_lrs = format_param("swa_lr", optimizer, swa_lr, minimum=0.0)
        self._anneal_strategy = check_choice(
            "anneal_strategy",
            anneal_strategy,
            ("cos", "linear"),
            "anneal_strategy must be one of 'cos' or 'linear', instead got {}",
        )
        if not is_int(anneal_epochs) or anneal_epochs < 0:
            raise ValueError(f"anneal_epochs must be equal or greater than 0, got {anneal_epochs}")
        self.anneal_epochs = int(anneal_epochs)
        super().__init__(optimizer, last_epoch)
        del self._swa_lrs

    def _prepare_groups(self, last_epoch: int) -> None:
        for group, swa_lr in zip(self.optimizer.param_groups, self._swa_lrs):
            group["swa_lr"] = swa_lr

    def anneal_func(self, t: float) -> float:
        """The annealing curve f(t) for t in [0, 1]."""
        if self._anneal_strategy == "cos":
            return (1 - math.cos(math.pi * t)) / 2
        return t

    def get_lr(self) -> list[Any]:
        self._warn_outside_step()
        step = self._step_count - 1
        if self.anneal_epochs == 0:
            step = max(1, step)
        prev_alpha = self.anneal_func(max(0, min(1, (step - 1) / max(1, self.anneal_epochs))))
        groups = self.optimizer.param_groups
        starts = [
            group["swa_lr"] if prev_alpha == 1 else (group["lr"] - prev_alpha * group["swa_lr"]) / (1 - prev_alpha)
            for group in groups
        ]
        alpha = self.anneal_func(max(0, min(1, step / max(1, self.anneal_epochs))))
        return [group["swa_lr"] * alpha + start * (1 - alpha) for group, start in zip(groups, starts)]

    def _check_state(self, parsed: dict[str, Any]) -> None:
        for i, group in enumerate(self.optimizer.param_groups):
            if "swa_lr" not in group:
                raise ValueError(f"param_groups[{i}] has no 'swa_lr'")
