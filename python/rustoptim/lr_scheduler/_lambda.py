"""Schedulers driven by user functions of the epoch: LambdaLR, MultiplicativeLR."""

from __future__ import annotations

import copy
import types
from collections.abc import Mapping, Sequence
from typing import Any, Callable

from ._base import _BASE_FIELDS, GROUP_LRS, Check, LRScheduler, per_group
from ._checks import check_callable, check_optimizer, is_real

__all__ = ["LambdaLR", "MultiplicativeLR"]

LrLambda = Callable[[int], float]


def _lr_lambdas(optimizer: Any, lr_lambda: LrLambda | Sequence[LrLambda]) -> list[LrLambda]:
    """One callable per param group: ``lr_lambda`` repeated, or the list itself."""
    groups = len(optimizer.param_groups)
    if isinstance(lr_lambda, (list, tuple)):
        if len(lr_lambda) != groups:
            raise ValueError(f"Expected {groups} lr_lambdas, but got {len(lr_lambda)}")
        return [check_callable(f"lr_lambda[{i}]", fn) for i, fn in enumerate(lr_lambda)]
    return [check_callable("lr_lambda", lr_lambda)] * groups


def _check_lambda_states(name: str, value: Any, n: int) -> list[Any]:
    """A state dict's ``lr_lambdas``: per callable, None or the ``__dict__`` of a callable object."""
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{name} must be a list with None or a dict per lr_lambda, got {type(value).__name__}")
    for i, entry in enumerate(value):
        if entry is not None and not isinstance(entry, dict):
            raise TypeError(
                f"{name}[{i}] must be None or a dict of the callable's attributes, got {type(entry).__name__}"
            )
    return list(value)


class _LambdaScheduler(LRScheduler):
    """The state-dict handling LambdaLR and MultiplicativeLR share (torch's)."""

    lr_lambdas: list[LrLambda]

    def _factor(self, i: int, fn: LrLambda) -> Any:
        factor = fn(self.last_epoch)
        if not is_real(factor):
            raise TypeError(
                f"lr_lambda for param_groups[{i}] returned {factor!r} at epoch {self.last_epoch}; "
                "it must return a real number"
            )
        return factor

    def _state_keys(self) -> list[str]:
        return [*_BASE_FIELDS]

    def state_dict(self) -> dict[str, Any]:
        """torch's entries, with ``'lr_lambdas'`` last: per group None for a plain
        function or lambda (not stored, as in torch), or a copy of a callable
        object's ``__dict__``; plus ``'_group_lrs'``."""
        state = super().state_dict()
        group_lrs = state.pop(GROUP_LRS)
        state["lr_lambdas"] = [
            None if isinstance(fn, types.FunctionType) or not hasattr(fn, "__dict__") else copy.deepcopy(fn.__dict__)
            for fn in self.lr_lambdas
        ]
        state[GROUP_LRS] = group_lrs
        return state

    def _expected_fields(self, state_dict: Mapping[str, Any]) -> tuple[dict[str, Check], dict[str, Check]]:
        return {**_BASE_FIELDS, "lr_lambdas": _check_lambda_states}, {GROUP_LRS: per_group(finite=False)}

    def _check_state(self, parsed: dict[str, Any]) -> None:
        saved = parsed["lr_lambdas"]
        if len(saved) != len(self.lr_lambdas):
            raise ValueError(
                f"'lr_lambdas' has {len(saved)} entries, the scheduler has {len(self.lr_lambdas)} lr_lambdas"
            )
        for i, (entry, fn) in enumerate(zip(saved, self.lr_lambdas)):
            if entry is not None and not hasattr(fn, "__dict__"):
                raise ValueError(f"'lr_lambdas'[{i}] holds attributes, but lr_lambda {fn!r} has no __dict__")

    def _apply_state(self, parsed: dict[str, Any]) -> None:
        super()._apply_state({k: v for k, v in parsed.items() if k != "lr_lambdas"})
        for entry, fn in zip(parsed["lr_lambdas"], self.lr_lambdas):
            if entry is not None:
                fn.__dict__.update(entry)


class LambdaLR(_LambdaScheduler):
    r"""Set the lr to ``base_lr`` times a function of the epoch.

    ::

        lr_e = base_lr · λ(e)        (also at the constructor's step, e = 0)

    Args:
      optimizer: a rustoptim optimizer.
      lr_lambda: a function of the integer epoch returning a real factor, or a
        list with one function per param group.
      last_epoch: see :class:`LRScheduler`.

    ``state_dict()`` stores no functions (torch's rule: the ``__dict__`` of
    callable objects only); rebuild the scheduler with the same functions before
    ``load_state_dict``.

    Example:
      >>> import numpy as np, rustoptim
      >>> opt = rustoptim.Adam([np.zeros(2)], lr=0.1)
      >>> warmup = rustoptim.lr_scheduler.LambdaLR(opt, lambda e: min(1.0, (e + 1) / 10))
      >>> warmup.get_last_lr()
      [0.010000000000000002]
    """

    def __init__(self, optimizer: Any, lr_lambda: LrLambda | Sequence[LrLambda], last_epoch: int = -1) -> None:
        check_optimizer(optimizer)
        self.lr_lambdas = _lr_lambdas(optimizer, lr_lambda)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[Any]:
        self._warn_outside_step()
        return [base_lr * self._factor(i, fn) for i, (fn, base_lr) in enumerate(zip(self.lr_lambdas, self.base_lrs))]


class MultiplicativeLR(_LambdaScheduler):
    r"""Multiply the lr by a function of the epoch at every step.

    ::

        lr_e = lr_{e-1} · λ(e)       (the constructor's step keeps the lr)

    Args:
      optimizer: a rustoptim optimizer.
      lr_lambda: a function of the integer epoch returning a real factor, or a
        list with one function per param group.
      last_epoch: see :class:`LRScheduler`.

    There is no closed form: ``step(epoch)`` multiplies by ``λ(epoch)`` once more
    (as in torch).
    """

    def __init__(self, optimizer: Any, lr_lambda: LrLambda | Sequence[LrLambda], last_epoch: int = -1) -> None:
        check_optimizer(optimizer)
        self.lr_lambdas = _lr_lambdas(optimizer, lr_lambda)
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[Any]:
        self._warn_outside_step()
        groups = self.optimizer.param_groups
        if self._is_initial:
            return [group["lr"] for group in groups]
        return [group["lr"] * self._factor(i, fn) for i, (fn, group) in enumerate(zip(self.lr_lambdas, groups))]
