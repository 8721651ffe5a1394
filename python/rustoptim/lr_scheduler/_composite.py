"""Schedulers made of other schedulers: SequentialLR (one after the other, switching
at milestones) and ChainedScheduler (all of them at every step)."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ..errors import StateDictError
from ._base import GROUP_LRS, Check, LRScheduler, _restore_attributes, _Rollback, integer, per_group
from ._checks import check_int, check_optimizer
from ._plateau import ReduceLROnPlateau

__all__ = ["SequentialLR", "ChainedScheduler"]


def _check_schedulers(owner: str, optimizer: Any, schedulers: Any) -> list[LRScheduler]:
    """torch's checks (with its messages), and that every entry is a rustoptim scheduler."""
    if isinstance(schedulers, (LRScheduler, str)) or not isinstance(schedulers, Sequence):
        raise TypeError(f"schedulers must be a list of lr schedulers, got {type(schedulers).__name__}")
    if len(schedulers) < 1:
        if owner == "ChainedScheduler":
            raise ValueError(f"{owner} expects at least one scheduler to be chained, but got no scheduler.")
        raise ValueError(f"{owner} expects at least one scheduler, but got no scheduler.")
    for i, scheduler in enumerate(schedulers):
        if not hasattr(scheduler, "optimizer"):
            raise TypeError(f"{owner} at index {i} should have `optimizer` as its attribute.")
        if not isinstance(scheduler, LRScheduler):
            raise TypeError(f"{owner}: schedulers[{i}] is a {type(scheduler).__name__}, not a rustoptim lr scheduler")
        if isinstance(scheduler, ReduceLROnPlateau):
            raise ValueError(
                f"{owner} does not support `ReduceLROnPlateau` scheduler as it requires additional kwargs to be "
                f"specified when calling `step`, but got one at index {i} in the given schedulers sequence."
            )
        if scheduler.optimizer is not optimizer:
            raise ValueError(
                f"{owner} expects all schedulers to belong to the same optimizer, but got scheduler "
                f"{type(scheduler).__name__} at index {i} has {scheduler.optimizer!r}, which is different from "
                f"{type(optimizer).__name__}."
            )
    return list(schedulers)


class _Composite(LRScheduler):
    """State dicts of a scheduler that wraps others: its own entries plus
    ``'_schedulers'``, the wrapped schedulers' state dicts."""

    _schedulers: list[LRScheduler]

    def _family(self) -> Iterator[LRScheduler]:
        yield self
        for scheduler in self._schedulers:
            yield from scheduler._family()

    def _state_keys(self) -> list[str]:
        return list(self._fields)

    def state_dict(self) -> dict[str, Any]:
        """torch's entries (``'_schedulers'``: the wrapped schedulers' state dicts)
        plus ``'_group_lrs'``."""
        state = super().state_dict()
        group_lrs = state.pop(GROUP_LRS)
        state["_schedulers"] = [scheduler.state_dict() for scheduler in self._schedulers]
        state[GROUP_LRS] = group_lrs
        return state

    def _expected_fields(self, state_dict: Mapping[str, Any]) -> tuple[dict[str, Check], dict[str, Check]]:
        return {**self._fields, "_schedulers": _check_list}, {GROUP_LRS: per_group(finite=False)}

    def _parse_state(self, state_dict: Any) -> dict[str, Any]:
        parsed = super()._parse_state(state_dict)
        saved = parsed["_schedulers"]
        name = type(self).__name__
        if len(saved) != len(self._schedulers):
            raise StateDictError(
                f"{name} state dict: '_schedulers' holds {len(saved)} state dicts, "
                f"the scheduler wraps {len(self._schedulers)}"
            )
        entries = []
        for i, (scheduler, entry) in enumerate(zip(self._schedulers, saved)):
            try:
                entries.append(scheduler._parse_state(entry))
            except StateDictError as e:
                raise StateDictError(f"{name} state dict: '_schedulers'[{i}]: {e}") from None
        parsed["_schedulers"] = entries
        return parsed

    def _apply_state(self, parsed: dict[str, Any]) -> None:
        super()._apply_state({k: v for k, v in parsed.items() if k != "_schedulers"})
        for scheduler, entry in zip(self._schedulers, parsed["_schedulers"]):
            scheduler._apply_state(entry)

    def _restore_groups(self, parsed: dict[str, Any]) -> None:
        # The wrapped schedulers first: they restore what they cycle (a CyclicLR's
        # momentum); then the lrs this scheduler recorded.
        for scheduler, entry in zip(self._schedulers, parsed["_schedulers"]):
            scheduler._restore_groups(entry)
        super()._restore_groups(parsed)


def _check_list(name: str, value: Any, n: int) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"{name} must be a list of state dicts, got {type(value).__name__}")
    return value


def _undo_initial_steps(scheduler: LRScheduler) -> None:
    """torch's ``recursive_undo``: every wrapped scheduler's ``last_epoch -= 1``."""
    if isinstance(scheduler, _Composite):
        for inner in scheduler._schedulers:
            _undo_initial_steps(inner)
    elif hasattr(scheduler, "last_epoch"):
        scheduler.last_epoch -= 1


def _check_milestones(name: str, value: Any, n: int = 0) -> list[int]:
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{name} must be a list of integers, got {type(value).__name__}")
    milestones = [check_int(f"{name}[{i}]", m, minimum=0) for i, m in enumerate(value)]
    if any(a >= b for a, b in zip(milestones, milestones[1:])):
        raise ValueError(f"{name} must be increasing, got {milestones}")
    return milestones


class SequentialLR(_Composite):
    r"""Run schedulers one after the other: ``schedulers[i]`` is in charge from
    ``milestones[i-1]`` to ``milestones[i]``.

    The constructor resets every group's lr to its ``initial_lr``, undoes the
    wrapped schedulers' constructor steps (``last_epoch -= 1``) and performs the
    first scheduler's initial step. At a milestone the next scheduler restarts
    from epoch 0 (its closed form at 0, e.g. ``base_lr`` for CosineAnnealingLR);
    otherwise the scheduler in charge steps as usual.

    Args:
      optimizer: a rustoptim optimizer, the one every scheduler schedules.
      schedulers: the schedulers, built on ``optimizer`` (not ReduceLROnPlateau).
      milestones: increasing epochs, one fewer than the schedulers.
      last_epoch: see :class:`LRScheduler`.

    Example (linear warm-up for 5 steps, then cosine decay):
      >>> import numpy as np, rustoptim
      >>> from rustoptim.lr_scheduler import LinearLR, CosineAnnealingLR, SequentialLR
      >>> opt = rustoptim.AdamW([np.zeros(2)], lr=1e-3)
      >>> warmup = LinearLR(opt, start_factor=0.1, total_iters=5)
      >>> decay = CosineAnnealingLR(opt, T_max=95)
      >>> sched = SequentialLR(opt, [warmup, decay], milestones=[5])
      >>> sched.get_last_lr()
      [0.0001]
    """

    _fields = {"_milestones": _check_milestones, "last_epoch": integer(minimum=0), "_last_lr": per_group(finite=False)}

    def __init__(
        self, optimizer: Any, schedulers: Sequence[LRScheduler], milestones: Sequence[int], last_epoch: int = -1
    ) -> None:
        check_optimizer(optimizer)
        schedulers = _check_schedulers(type(self).__name__, optimizer, schedulers)
        if not isinstance(milestones, (list, tuple)):
            raise TypeError(f"milestones must be a list of integers, got {type(milestones).__name__}")
        if len(milestones) != len(schedulers) - 1:
            raise ValueError(
                "Sequential Schedulers expects number of schedulers provided to be one more than the number of "
                f"milestone points, but got number of schedulers {len(schedulers)} and the number of milestones "
                f"to be equal to {len(milestones)}"
            )
        milestones = _check_milestones("milestones", milestones)
        for i, scheduler in enumerate(schedulers[1:], 1):
            if isinstance(scheduler, _Composite):
                raise ValueError(
                    f"SequentialLR: schedulers[{i}] is a {type(scheduler).__name__}, which cannot restart at a "
                    "milestone; only the first scheduler may wrap others"
                )
        last_epoch = check_int("last_epoch", last_epoch, minimum=-1)
        for i, group in enumerate(optimizer.param_groups):
            if "initial_lr" not in group:
                raise ValueError(f"param_groups[{i}] has no 'initial_lr'; build the schedulers on this optimizer first")

        self._schedulers = schedulers
        self._milestones = milestones
        self.last_epoch = last_epoch + 1
        self.optimizer = optimizer
        with _Rollback(self):
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"]
            _undo_initial_steps(self)
            first = schedulers[bisect_right(milestones, 0)]
            first._initial_step()
            self._last_lr = first.get_last_lr()

    # torch's signature, narrower than LRScheduler.step(epoch): hence the override ignore.
    def step(self) -> None:  # type: ignore[override]
        """Advance by one step: restart the next scheduler at a milestone, else step the current one."""
        i = bisect_right(self._milestones, self.last_epoch + 1)
        scheduler = self._schedulers[i]
        # One scheduler acts, and it computes every lr before writing any: on
        # failure only its attributes and this scheduler's need restoring.
        saved = [(s, s.__dict__.copy()) for s in (self, scheduler)]
        try:
            self.last_epoch += 1
            if i > 0 and self._milestones[i - 1] == self.last_epoch:
                scheduler._update_lr(0)
            else:
                scheduler.step()
            self._last_lr = scheduler.get_last_lr()
        except BaseException:
            for s, attributes in saved:
                _restore_attributes(s, attributes)
            raise

    def _check_state(self, parsed: dict[str, Any]) -> None:
        if len(parsed["_milestones"]) != len(self._schedulers) - 1:
            raise ValueError(
                f"'_milestones' has {len(parsed['_milestones'])} entries for {len(self._schedulers)} schedulers"
            )


class ChainedScheduler(_Composite):
    r"""Step several schedulers together: ``step()`` calls every scheduler's
    ``step()`` in order, so their (chainable) factors multiply.

    Args:
      schedulers: the schedulers, all built on the same optimizer (not
        ReduceLROnPlateau).
      optimizer: that optimizer (default: the first scheduler's).

    There is no constructor step and no ``last_epoch`` (as in torch).

    Example:
      >>> import numpy as np, rustoptim
      >>> from rustoptim.lr_scheduler import ConstantLR, ExponentialLR, ChainedScheduler
      >>> opt = rustoptim.SGD([np.zeros(2)], lr=1.0)
      >>> sched = ChainedScheduler([ConstantLR(opt, factor=0.1, total_iters=2), ExponentialLR(opt, gamma=0.9)])
      >>> sched.step(); sched.get_last_lr()
      [0.09000000000000001]
    """

    _fields = {"_last_lr": per_group(finite=False)}

    def __init__(self, schedulers: Sequence[LRScheduler], optimizer: Any = None) -> None:
        if optimizer is None and isinstance(schedulers, (list, tuple)) and schedulers:
            optimizer = getattr(schedulers[0], "optimizer", None)
        schedulers = _check_schedulers(type(self).__name__, optimizer, schedulers)
        check_optimizer(optimizer)
        self._schedulers = schedulers
        self.optimizer = optimizer
        self._last_lr = [group["lr"] for group in optimizer.param_groups]

    # torch's signature, narrower than LRScheduler.step(epoch): hence the override ignore.
    def step(self) -> None:  # type: ignore[override]
        """Step every scheduler, in order."""
        with _Rollback(self):
            for scheduler in self._schedulers:
                scheduler.step()
            self._last_lr = [group["lr"] for group in self.optimizer.param_groups]
