"""``LRScheduler``: what every rustoptim lr scheduler shares.

torch's conventions (``torch.optim.lr_scheduler.LRScheduler``, 2.15): the
constructor stores ``initial_lr`` in every param group (unless present),
copies it to ``base_lrs`` and performs the first step (``last_epoch`` -1 -> 0);
``step()`` advances ``last_epoch`` and writes the new lrs into the groups;
most schedulers compute the new lr from the group's current one (the
"chainable" recursive form), and ``step(epoch)`` uses the closed form where a
class has one. ``state_dict()`` has torch's keys and order.

What rustoptim adds:

- **Exact resume.** ``state_dict()`` also records every group's lr at the time
  of the call (``'_group_lrs'``; CyclicLR and OneCycleLR also the cycled
  momentum or beta1, ``'_group_momentums'``), and ``load_state_dict()`` writes
  them back into the groups. Building a scheduler performs its first step,
  which rewrites the lrs (LinearLR multiplies them by ``start_factor``, CyclicLR
  resets them to ``base_lr``, ...); loading the state dict undoes exactly that,
  so ``opt.load_state_dict(sd)``, build the scheduler,
  ``sched.load_state_dict(ssd)`` continues the uninterrupted run bit for bit,
  in any order of the two loads. (A state dict without these keys, as torch
  writes it, restores the lrs from ``'_last_lr'``.)
- **Validation.** Constructor arguments are checked up front (``ValueError`` /
  ``TypeError`` naming the argument; torch's messages where torch checks);
  ``load_state_dict`` checks every entry and raises ``StateDictError``.
- **All or nothing.** A constructor, ``step()`` or ``load_state_dict()`` that
  raises (a user ``lr_lambda`` that fails, OneCycleLR stepped past its end, a
  bad state dict) leaves the param groups and the scheduler as they were.
- State dicts hold plain values only (lists, dicts, numbers, strings), so
  ``rustoptim.save`` stores them; callables are not stored (as in torch).

Schedulers only read and write ``optimizer.param_groups`` (``lr``; CyclicLR and
OneCycleLR also ``momentum`` or ``betas[0]``), so they work with every rustoptim
optimizer. Unlike torch they do not wrap ``optimizer.step`` to warn when
``scheduler.step()`` is called first.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Callable, ClassVar

from ..errors import StateDictError
from ._checks import check_bool, check_int, check_optimizer, check_real, check_real_list, is_real

__all__ = ["LRScheduler", "EPOCH_DEPRECATION_WARNING"]

EPOCH_DEPRECATION_WARNING = (
    "The epoch parameter in `scheduler.step()` was not necessary and is being "
    "deprecated where possible. Please use `scheduler.step()` to step the "
    "scheduler. During the deprecation, if epoch is different from None, the "
    "closed form is used instead of the new chainable form, where available."
)

_GET_LR_WARNING = "To get the last learning rate computed by the scheduler, please use `get_last_lr()`."

#: A state-dict entry's check: ``check(name, value, n_groups)`` returns the value
#: to store or raises ``TypeError``/``ValueError`` naming ``name``.
Check = Callable[[str, Any, int], Any]


# ------------------------------------------------------------ entry checks


def real(**limits: Any) -> Check:
    return lambda name, value, n: check_real(name, value, **limits)


def integer(minimum: int | None = None) -> Check:
    return lambda name, value, n: check_int(name, value, minimum=minimum)


def boolean() -> Check:
    return lambda name, value, n: check_bool(name, value)


def per_group(**limits: Any) -> Check:
    """A list of one real number per param group."""
    return lambda name, value, n: check_real_list(name, value, n, **limits)


def one_of(*choices: str) -> Check:
    def check(name: str, value: Any, n: int) -> str:
        if not isinstance(value, str) or value not in choices:
            raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
        return value

    return check


#: The base class's state-dict entries, after each class's own (torch's order).
_BASE_FIELDS: dict[str, Check] = {
    "base_lrs": per_group(finite=False),
    "last_epoch": integer(minimum=-1),
    "_step_count": integer(minimum=0),
    "_is_initial": boolean(),
    "_get_lr_called_within_step": boolean(),
    "_last_lr": per_group(finite=False),
}

#: Entries rustoptim adds for exact resume: written into the groups on load, not
#: kept as attributes. Optional, so that torch-layout state dicts load too.
GROUP_LRS = "_group_lrs"
GROUP_MOMENTUMS = "_group_momentums"


def _restore_attributes(scheduler: LRScheduler, saved: dict[str, Any]) -> None:
    scheduler.__dict__.clear()
    scheduler.__dict__.update(saved)


class _Rollback:
    """Undo a scheduler call that raises: the param groups and the attributes of
    the scheduler (and of the schedulers it wraps) are put back as they were.

    Shallow copies suffice: schedulers replace values (lrs, the ``betas`` tuple,
    lists of counters) instead of mutating them in place. Constructors, loads
    and composite schedulers (whose inner schedulers write one after the other)
    use it. A single scheduler's ``step()`` computes every value before it
    writes any (``_write_groups``), so it only restores its own attributes
    (a copy of ``__dict__``, which is cheaper).
    """

    def __init__(self, scheduler: LRScheduler) -> None:
        self.groups = scheduler.optimizer.param_groups
        self.saved_groups = [dict(group) for group in self.groups]
        self.saved_attributes = [(s, dict(s.__dict__)) for s in scheduler._family()]

    def __enter__(self) -> _Rollback:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            for group, saved in zip(self.groups, self.saved_groups):
                group.clear()
                group.update(saved)
            for scheduler, saved in self.saved_attributes:
                _restore_attributes(scheduler, saved)


class LRScheduler:
    r"""Base class of rustoptim's lr schedulers (``torch.optim.lr_scheduler.LRScheduler``).

    Args:
      optimizer: a rustoptim optimizer; the scheduler sets ``lr`` in its
        ``param_groups``.
      last_epoch: the index of the last epoch; -1 (the default) starts the
        schedule. Any other value needs ``initial_lr`` in every group (torch's
        older way to resume; prefer ``load_state_dict``).

    Attributes:
      optimizer, base_lrs (every group's ``initial_lr``), last_epoch.

    Subclasses implement ``get_lr()`` (the recursive form, used by ``step()``)
    and may implement ``_get_closed_form_lr()`` (used by ``step(epoch)``).
    """

    _get_lr_called_within_step: bool = False
    _is_initial: bool = False

    #: This class's own state-dict entries and their checks, in torch's order
    #: (before the base entries).
    _fields: ClassVar[dict[str, Check]] = {}

    def __init__(self, optimizer: Any, last_epoch: int = -1) -> None:
        check_optimizer(optimizer)
        last_epoch = check_int("last_epoch", last_epoch, minimum=-1)
        self.optimizer = optimizer
        groups = optimizer.param_groups
        for i, group in enumerate(groups):
            check_real(f"param_groups[{i}]['lr']", group["lr"], finite=False)
        if last_epoch != -1:
            for i, group in enumerate(groups):
                if "initial_lr" not in group:
                    raise ValueError(
                        f"param 'initial_lr' is not specified in param_groups[{i}] when resuming "
                        f"scheduler with last_epoch >= 0 (last_epoch={last_epoch}). Load the optimizer's "
                        "state dict first, or build the scheduler with last_epoch=-1 and resume with "
                        "scheduler.load_state_dict()."
                    )
        with _Rollback(self):
            self._prepare_groups(last_epoch)
            if last_epoch == -1:
                for group in optimizer.param_groups:
                    group.setdefault("initial_lr", group["lr"])
            self.base_lrs: list[Any] = [group["initial_lr"] for group in optimizer.param_groups]
            self.last_epoch = last_epoch
            self._initial_step()

    # ------------------------------------------------------------- hooks

    def _prepare_groups(self, last_epoch: int) -> None:
        """Write the keys a class keeps in the groups (CyclicLR's momentum, SWALR's
        ``swa_lr``, ...) before ``initial_lr``; arguments are checked already."""

    def _family(self) -> Iterator[LRScheduler]:
        """This scheduler and every scheduler it wraps."""
        yield self

    def get_lr(self) -> list[Any]:
        """The lrs of the next step (``last_epoch`` already advanced), recursive form.

        Called by ``step()``; a direct call warns, as in torch: use
        :meth:`get_last_lr` for the lrs in effect.
        """
        raise NotImplementedError

    def _get_momentums(self) -> list[Any] | None:
        """Momentums (or beta1s) to write with the lrs of this step, or None."""
        return None

    def _warn_outside_step(self) -> None:
        if not self._get_lr_called_within_step:
            warnings.warn(_GET_LR_WARNING, UserWarning, stacklevel=3)

    # -------------------------------------------------------------- steps

    def get_last_lr(self) -> list[Any]:
        """The lrs the scheduler last wrote, one per param group (a copy)."""
        return list(self._last_lr)

    def _initial_step(self) -> None:
        """The constructor's step: ``last_epoch`` -1 -> 0, ``_step_count`` 0 -> 1.
        Chainable schedulers keep the group's lr here (``_is_initial``)."""
        self._step_count = 0
        self._is_initial = True
        try:
            self.step()
        finally:
            self._is_initial = False

    def step(self, epoch: int | None = None) -> None:
        """Advance the schedule by one step and write the new lrs into the groups.

        Call it after ``optimizer.step()``. ``epoch`` (deprecated in torch, and
        warned about as there) jumps to that epoch using the closed form where
        the class has one, else the recursive form.
        """
        if epoch is not None:
            epoch = check_int("epoch", epoch, minimum=0)
            warnings.warn(EPOCH_DEPRECATION_WARNING, UserWarning, stacklevel=2)
        saved = self.__dict__.copy()
        try:
            self._step_count += 1
            self._update_lr(epoch)
        except BaseException:
            _restore_attributes(self, saved)
            raise

    def _update_lr(self, epoch: int | None = None) -> None:
        self._get_lr_called_within_step = True
        try:
            if epoch is None:
                self.last_epoch += 1
                lrs = self.get_lr()
            else:
                self.last_epoch = epoch
                closed_form = getattr(self, "_get_closed_form_lr", None)
                lrs = closed_form() if closed_form is not None else self.get_lr()
            momentums = self._get_momentums()
        finally:
            self._get_lr_called_within_step = False
        self._write_groups(lrs, momentums)

    def _write_groups(self, lrs: Sequence[Any], momentums: Sequence[Any] | None = None) -> None:
        groups = self.optimizer.param_groups
        if len(lrs) != len(groups):
            raise ValueError(
                f"{type(self).__name__} computed {len(lrs)} lrs for {len(groups)} param groups "
                "(param groups added after the scheduler was built are not scheduled)"
            )
        for i, lr in enumerate(lrs):
            if type(lr) is not float and not is_real(lr):
                raise TypeError(
                    f"{type(self).__name__} computed lr {lr!r} for param_groups[{i}]; expected a real number"
                )
        if momentums is not None:
            self._write_momentums(momentums)
        for group, lr in zip(groups, lrs):
            group["lr"] = lr
        self._last_lr = [group["lr"] for group in groups]

    def _write_momentums(self, momentums: Sequence[Any]) -> None:
        raise NotImplementedError

    # -------------------------------------------------------- state dicts

    def _state_keys(self) -> list[str]:
        """The entries of ``state_dict()`` (torch's, in its order), before rustoptim's."""
        return [*self._fields, *_BASE_FIELDS]

    def state_dict(self) -> dict[str, Any]:
        """The scheduler's state: torch's entries, plus every group's current lr
        under ``'_group_lrs'`` (see the module docstring). Plain values only, all
        copies; callables are not included (as in torch)."""
        state = {key: copy.deepcopy(getattr(self, key)) for key in self._state_keys()}
        state[GROUP_LRS] = [group["lr"] for group in self.optimizer.param_groups]
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Load a state dict made by :meth:`state_dict` and restore the groups' lrs
        it recorded, so that the next ``step()`` continues the saved run exactly.

        Hyperparameters come from the state dict (as in torch). Everything is
        checked first: a bad state dict raises ``StateDictError`` and changes
        nothing.
        """
        parsed = self._parse_state(state_dict)
        try:
            with _Rollback(self):
                self._apply_state(parsed)
                self._restore_groups(parsed)
        except StateDictError:
            raise
        except (TypeError, ValueError) as e:
            raise StateDictError(f"{type(self).__name__} state dict: {e}") from None

    def _expected_fields(self, state_dict: Mapping[str, Any]) -> tuple[dict[str, Check], dict[str, Check]]:
        """The checks of the entries ``state_dict`` must have, and of those it may have."""
        return {**self._fields, **_BASE_FIELDS}, {GROUP_LRS: per_group(finite=False)}

    def _parse_state(self, state_dict: Any) -> dict[str, Any]:
        """Checked copies of the entries of ``state_dict`` (``StateDictError`` otherwise)."""
        name = type(self).__name__
        if not isinstance(state_dict, Mapping):
            raise StateDictError(f"a {name} state dict must be a dict, got {type(state_dict).__name__}")
        fields, optional_fields = self._expected_fields(state_dict)
        unknown = [k for k in state_dict if k not in fields and k not in optional_fields]
        if unknown:
            raise StateDictError(f"{name} state dict has unknown entries {unknown}; expected {list(fields)}")
        missing = [k for k in fields if k not in state_dict]
        if missing:
            raise StateDictError(f"{name} state dict has no {missing} entries")
        n = len(self.optimizer.param_groups)
        checks = {**fields, **optional_fields}
        parsed = {}
        for key, value in state_dict.items():
            try:
                parsed[key] = checks[key](repr(key), copy.deepcopy(value), n)
            except (TypeError, ValueError) as e:
                raise StateDictError(f"{name} state dict: {e}") from None
        try:
            self._check_state(parsed)
        except (TypeError, ValueError) as e:
            raise StateDictError(f"{name} state dict: {e}") from None
        return parsed

    def _check_state(self, parsed: dict[str, Any]) -> None:
        """Checks across entries (raise ``ValueError``/``TypeError``)."""

    def _apply_state(self, parsed: dict[str, Any]) -> None:
        """Set the attributes from checked entries (the groups are restored after)."""
        for key, value in parsed.items():
            if key not in (GROUP_LRS, GROUP_MOMENTUMS):
                setattr(self, key, value)

    def _restore_groups(self, parsed: dict[str, Any]) -> None:
        """Write the lrs in effect at save time back into the groups."""
        lrs = parsed.get(GROUP_LRS, parsed.get("_last_lr"))
        if lrs is not None:
            for group, lr in zip(self.optimizer.param_groups, lrs):
                group["lr"] = lr

    def __repr__(self) -> str:
        return f"{type(self).__name__}(last_epoch={getattr(self, 'last_epoch', None)})"
