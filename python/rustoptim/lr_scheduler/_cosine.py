"""Cosine annealing: CosineAnnealingLR (recursive, without restarts) and
CosineAnnealingWarmRestarts (SGDR, closed form in the position in the cycle)."""

from __future__ import annotations

import math
from typing import Any

from ._base import LRScheduler, _restore_attributes, integer, real
from ._checks import check_int, check_real, is_int, is_real

__all__ = ["CosineAnnealingLR", "CosineAnnealingWarmRestarts"]


class CosineAnnealingLR(LRScheduler):
    r"""Anneal the lr from ``base_lr`` to ``eta_min`` along half a cosine over
    ``T_max`` steps, then back up (a cosine of period ``2·T_max``, no restarts).

    torch's recursion, with η = ``eta_min``, T = ``T_max``, b = ``base_lr``::

        (e - 1 - T) % (2T) == 0:  lr_e = lr_{e-1} + (b - η)·(1 - cos(π/T)) / 2
        otherwise:                lr_e = η + (lr_{e-1} - η) · (1 + cos(π·e/T)) / (1 + cos(π·(e-1)/T))
        closed form (step(epoch)):  η + (b - η)·(1 + cos(π·e/T)) / 2

    The constructor's step keeps the lr. The recursion follows the closed form
    up to rounding and also follows an lr changed from outside.

    Args:
      optimizer: a rustoptim optimizer.
      T_max: half period in steps, a number > 0.
      eta_min: the minimum lr η (default 0).
      last_epoch: see :class:`LRScheduler`.

    Reference: Loshchilov & Hutter, "SGDR: Stochastic Gradient Descent with Warm
    Restarts", ICLR 2017.
    """

    _fields = {"T_max": real(above=0.0), "eta_min": real()}

    def __init__(self, optimizer: Any, T_max: int, eta_min: float = 0.0, last_epoch: int = -1) -> None:
        self.T_max = check_real("T_max", T_max, above=0.0)
        self.eta_min = check_real("eta_min", eta_min)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[Any]:
        self._warn_outside_step()
        groups = self.optimizer.param_groups
        e, T, eta_min = self.last_epoch, self.T_max, self.eta_min
        if self._is_initial:
            return [group["lr"] for group in groups]
        if self._step_count == 1 and e > 0:
            # torch's branch for a first step at e > 0; ordinary runs never take it.
            return [eta_min + (base_lr - eta_min) * (1 + math.cos(e * math.pi / T)) / 2 for base_lr in self.base_lrs]
        if (e - 1 - T) % (2 * T) == 0:
            return [
                group["lr"] + (base_lr - eta_min) * (1 - math.cos(math.pi / T)) / 2
                for base_lr, group in zip(self.base_lrs, groups)
            ]
        return [
            (1 + math.cos(math.pi * e / T)) / (1 + math.cos(math.pi * (e - 1) / T)) * (group["lr"] - eta_min) + eta_min
            for group in groups
        ]

    def _get_closed_form_lr(self) -> list[Any]:
        e, T, eta_min = self.last_epoch, self.T_max, self.eta_min
        return [eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * e / T)) / 2 for base_lr in self.base_lrs]


class CosineAnnealingWarmRestarts(LRScheduler):
    r"""Cosine annealing with warm restarts (SGDR): the lr falls from ``base_lr``
    to ``eta_min`` over ``T_i`` steps, then restarts; each period is ``T_mult``
    times the previous one, starting with ``T_0``.

    ::

        lr = η + (b - η) · (1 + cos(π · T_cur / T_i)) / 2

    ``step()`` advances ``T_cur`` by one and restarts (``T_cur -= T_i``,
    ``T_i *= T_mult``) when it reaches ``T_i``. ``step(epoch)`` accepts a
    fractional epoch (for per-batch updates, e.g. ``epoch + i / iters``) and
    places it in its cycle:

        epoch < T_0:  T_i = T_0, T_cur = epoch
        T_mult = 1:   T_cur = epoch % T_0
        T_mult > 1:   n = int(log_{T_mult}(epoch/T_0 · (T_mult - 1) + 1)),
                      T_cur = epoch - T_0·(T_mult^n - 1)/(T_mult - 1), T_i = T_0·T_mult^n

    and sets ``last_epoch = floor(epoch)``. As in torch, this class's ``step``
    neither warns about the epoch argument nor counts ``_step_count``.

    Args:
      optimizer: a rustoptim optimizer.
      T_0: the first period, a positive integer.
      T_mult: the period's growth factor, an integer >= 1 (default 1).
      eta_min: the minimum lr η (default 0).
      last_epoch: see :class:`LRScheduler`.
    """

    _fields = {
        "T_0": integer(minimum=1),
        "T_i": integer(minimum=1),
        "T_mult": integer(minimum=1),
        "eta_min": real(),
        "T_cur": real(minimum=-1),
    }

    def __init__(self, optimizer: Any, T_0: int, T_mult: int = 1, eta_min: float = 0.0, last_epoch: int = -1) -> None:
        if not is_int(T_0) or T_0 <= 0:
            raise ValueError(f"Expected positive integer T_0, but got {T_0}")
        if not is_int(T_mult) or T_mult < 1:
            raise ValueError(f"Expected integer T_mult >= 1, but got {T_mult}")
        if not is_real(eta_min):
            raise ValueError(f"Expected float or int eta_min, but got {eta_min} of type {type(eta_min)}")
        self.T_0 = int(T_0)
        self.T_i = int(T_0)
        self.T_mult = int(T_mult)
        self.eta_min = check_real("eta_min", eta_min)
        self.T_cur: float = check_int("last_epoch", last_epoch, minimum=-1)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[Any]:
        self._warn_outside_step()
        eta_min = self.eta_min
        return [
            eta_min + (base_lr - eta_min) * (1 + math.cos(math.pi * self.T_cur / self.T_i)) / 2
            for base_lr in self.base_lrs
        ]

    def step(self, epoch: float | None = None) -> None:
        """Advance by one step, or go to ``epoch`` (a real number >= 0, fractions allowed)."""
        if epoch is not None:
            if not is_real(epoch):
                raise TypeError(f"epoch must be a real number, got {epoch!r}")
            if not epoch >= 0:
                raise ValueError(f"Expected non-negative epoch, but got {epoch}")
            if math.isinf(epoch):
                raise ValueError(f"epoch must be finite, got {epoch}")
        saved = self.__dict__.copy()
        try:
            if epoch is None and self.last_epoch < 0:
                epoch = 0
            if epoch is None:
                epoch = self.last_epoch + 1
                self.T_cur = self.T_cur + 1
                if self.T_cur >= self.T_i:
                    self.T_cur = self.T_cur % self.T_i
                    self.T_i = self.T_i * self.T_mult
            elif epoch >= self.T_0:
                if self.T_mult == 1:
                    self.T_cur = epoch % self.T_0
                else:
                    n = int(math.log((epoch / self.T_0 * (self.T_mult - 1) + 1), self.T_mult))
                    self.T_cur = epoch - self.T_0 * (self.T_mult**n - 1) / (self.T_mult - 1)
                    self.T_i = self.T_0 * self.T_mult**n
            else:
                self.T_i = self.T_0
                self.T_cur = epoch
            self.last_epoch = math.floor(epoch)
            self._get_lr_called_within_step = True
            try:
                lrs = self.get_lr()
            finally:
                self._get_lr_called_within_step = False
            self._write_groups(lrs)
        except BaseException:
            _restore_attributes(self, saved)
            raise
