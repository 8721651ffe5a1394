"""ReduceLROnPlateau: lower the lr when a metric stops improving."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from ._base import (
    EPOCH_DEPRECATION_WARNING,
    GROUP_LRS,
    Check,
    LRScheduler,
    _restore_attributes,
    integer,
    one_of,
    per_group,
    real,
)
from ._checks import check_choice, check_int, check_optimizer, check_real, check_real_list

__all__ = ["ReduceLROnPlateau"]


def _check_min_lrs(name: str, value: Any, n: int) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"{name} must be a list of real numbers, got {type(value).__name__}")
    return [check_real(f"{name}[{i}]", v, minimum=0.0) for i, v in enumerate(value)]


def _metric_value(metrics: Any) -> float:
    """``float(metrics)``: a real number, a one-element array or any object with
    ``__float__`` (a 0-d tensor of another library); not a string or a bool."""
    if isinstance(metrics, np.ndarray):
        if metrics.size != 1:
            raise TypeError(
                f"metrics must be a real number or a one-element array, got an array of shape {metrics.shape}"
            )
        metrics = metrics.reshape(-1)[0]
    if metrics is None or isinstance(metrics, (str, bytes, bool, np.bool_)):
        raise TypeError(f"metrics must be a real number, got {metrics!r}")
    try:
        return float(metrics)
    except (TypeError, ValueError):
        raise TypeError(f"metrics must be a real number, got {metrics!r}") from None


class ReduceLROnPlateau(LRScheduler):
    r"""Multiply the lr by ``factor`` when a metric has not improved for more than
    ``patience`` steps.

    Each ``step(metrics)``, with ``best`` the best metric so far and
    t = ``threshold``::

        better = metrics < best·(1 - t)   (mode 'min', threshold_mode 'rel')
                 metrics < best - t       ('min', 'abs')
                 metrics > best·(1 + t)   ('max', 'rel')
                 metrics > best + t       ('max', 'abs')          NaN is never better
        better: best = metrics, bad = 0;  otherwise bad += 1
        in cooldown: cooldown_counter -= 1, bad = 0
        bad > patience: per group  new = max(lr·factor, min_lr);  lr = new if lr - new > eps
                        cooldown_counter = cooldown, bad = 0

    There is no constructor step and no ``base_lrs``/``initial_lr`` (as in torch).

    Args:
      optimizer: a rustoptim optimizer.
      mode: ``'min'`` (default) or ``'max'``.
      factor: the multiplier, in [0, 1) (default 0.1).
      patience: steps without improvement tolerated, an integer >= 0 (default 10).
      threshold: the improvement that counts (default 1e-4).
      threshold_mode: ``'rel'`` (default) or ``'abs'``.
      cooldown: steps to wait after a reduction, an integer >= 0 (default 0).
      min_lr: a lower bound >= 0, or one per param group (default 0).
      eps: reductions smaller than this are skipped (default 1e-8).

    Example:
      >>> import numpy as np, rustoptim
      >>> opt = rustoptim.SGD([np.zeros(2)], lr=0.1)
      >>> sched = rustoptim.lr_scheduler.ReduceLROnPlateau(opt, patience=1)
      >>> for loss in [1.0, 1.0, 1.0]:
      ...     sched.step(loss)
      >>> sched.get_last_lr()
      [0.010000000000000002]
    """

    _fields: ClassVar[dict[str, Check]] = {
        "factor": real(minimum=0.0),
        "default_min_lr": lambda name, value, n: None if value is None else check_real(name, value, minimum=0.0),
        "min_lrs": _check_min_lrs,
        "patience": integer(minimum=0),
        "cooldown": integer(minimum=0),
        "eps": real(minimum=0.0),
        "last_epoch": integer(minimum=0),
        "_last_lr": per_group(finite=False),
        "mode_worse": real(finite=False),
        "mode": one_of("min", "max"),
        "threshold": real(),
        "threshold_mode": one_of("rel", "abs"),
        "best": real(finite=False),
        "cooldown_counter": integer(minimum=0),
        "num_bad_epochs": integer(minimum=0),
    }

    def __init__(
        self,
        optimizer: Any,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: Any = 0,
        eps: float = 1e-8,
    ) -> None:
        check_real("factor", factor)
        if factor >= 1.0:
            raise ValueError("Factor should be < 1.0.")
        check_real("factor", factor, minimum=0.0)
        check_optimizer(optimizer)
        groups = len(optimizer.param_groups)
        if isinstance(min_lr, (list, tuple)):
            if len(min_lr) != groups:
                raise ValueError(f"expected {groups} min_lrs, got {len(min_lr)}")
            default_min_lr = None
            min_lrs = [check_real(f"min_lr[{i}]", v, minimum=0.0) for i, v in enumerate(min_lr)]
        else:
            default_min_lr = check_real("min_lr", min_lr, minimum=0.0)
            min_lrs = [default_min_lr] * groups
        patience = check_int("patience", patience, minimum=0)
        cooldown = check_int("cooldown", cooldown, minimum=0)
        check_real("eps", eps, minimum=0.0)
        self._check_modes(mode, threshold, threshold_mode)
        for i, group in enumerate(optimizer.param_groups):
            check_real(f"param_groups[{i}]['lr']", group["lr"], finite=False)

        self.factor = factor
        self.optimizer = optimizer
        self.default_min_lr = default_min_lr
        self.min_lrs = min_lrs
        self.patience = patience
        self.cooldown = cooldown
        self.eps = eps
        self.last_epoch = 0
        self._last_lr = [group["lr"] for group in optimizer.param_groups]
        self._init_is_better(mode, threshold, threshold_mode)
        self._reset()

    @staticmethod
    def _check_modes(mode: Any, threshold: Any, threshold_mode: Any) -> None:
        check_choice("mode", mode, ("min", "max"), "mode {} is unknown!")
        check_real("threshold", threshold)
        check_choice("threshold_mode", threshold_mode, ("rel", "abs"), "threshold mode {} is unknown!")

    def _init_is_better(self, mode: str, threshold: float, threshold_mode: str) -> None:
        self.mode_worse = math.inf if mode == "min" else -math.inf
        self.mode = mode
        self.threshold = threshold
        self.threshold_mode = threshold_mode

    def _reset(self) -> None:
        """Forget the best metric, the bad-step count and the cooldown."""
        self.best = self.mode_worse
        self.cooldown_counter = 0
        self.num_bad_epochs = 0

    @property
    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def _is_better(self, a: float, best: float) -> bool:
        if self.mode == "min" and self.threshold_mode == "rel":
            return a < best * (1.0 - self.threshold)
        if self.mode == "min":
            return a < best - self.threshold
        if self.threshold_mode == "rel":
            return a > best * (self.threshold + 1.0)
        return a > best + self.threshold

    # torch's signature, which LRScheduler.step(epoch) cannot accept: hence the override ignore.
    def step(self, metrics: Any, epoch: int | None = None) -> None:  # type: ignore[override]
        """Record ``metrics`` (a real number, e.g. the validation loss) and reduce
        the lrs if it has not improved for more than ``patience`` steps."""
        current = _metric_value(metrics)
        if epoch is None:
            epoch = self.last_epoch + 1
        else:
            epoch = check_int("epoch", epoch, minimum=0)
            warnings.warn(EPOCH_DEPRECATION_WARNING, UserWarning, stacklevel=2)
        saved = self.__dict__.copy()
        try:
            self.last_epoch = epoch
            if self._is_better(current, self.best):
                self.best = current
                self.num_bad_epochs = 0
            else:
                self.num_bad_epochs += 1
            if self.in_cooldown:
                self.cooldown_counter -= 1
                self.num_bad_epochs = 0  # bad steps in cooldown do not count
            if self.num_bad_epochs > self.patience:
                self._reduce_lr()
                self.cooldown_counter = self.cooldown
                self.num_bad_epochs = 0
            self._last_lr = [group["lr"] for group in self.optimizer.param_groups]
        except BaseException:
            _restore_attributes(self, saved)
            raise

    def _reduce_lr(self) -> None:
        groups = self.optimizer.param_groups
        if len(groups) != len(self.min_lrs):
            if self.default_min_lr is None:
                raise ValueError(
                    f"The number of param groups in the `optimizer` ({len(groups)}) differs from when "
                    f"`ReduceLROnPlateau` was initialized ({len(self.min_lrs)}), usually due to a new param "
                    "group being added to the optimizer. Please modify the `min_lrs` field to match the length "
                    "of the `optimizer` param groups."
                )
            self.min_lrs = [self.default_min_lr] * len(groups)
        new_lrs = []
        for group, min_lr in zip(groups, self.min_lrs):
            old_lr = float(group["lr"])
            new_lr = max(old_lr * self.factor, min_lr)
            new_lrs.append(new_lr if old_lr - new_lr > self.eps else group["lr"])
        for group, lr in zip(groups, new_lrs):
            group["lr"] = lr

    def get_lr(self) -> list[Any]:
        raise NotImplementedError("ReduceLROnPlateau computes its lrs in step(metrics); use get_last_lr()")

    def _initial_step(self) -> None:
        raise NotImplementedError("ReduceLROnPlateau has no initial step")

    # ------------------------------------------------------ state dicts

    def _state_keys(self) -> list[str]:
        return list(self._fields)

    def _expected_fields(self, state_dict: Mapping[str, Any]) -> tuple[dict[str, Check], dict[str, Check]]:
        return dict(self._fields), {GROUP_LRS: per_group(finite=False)}

    def _check_state(self, parsed: dict[str, Any]) -> None:
        if not parsed["factor"] < 1.0:
            raise ValueError(f"'factor' must be < 1.0, got {parsed['factor']!r}")
        if parsed["default_min_lr"] is None:
            check_real_list("'min_lrs'", parsed["min_lrs"], len(self.optimizer.param_groups), minimum=0.0)

    def _apply_state(self, parsed: dict[str, Any]) -> None:
        super()._apply_state(parsed)
        self._init_is_better(self.mode, self.threshold, self.threshold_mode)
