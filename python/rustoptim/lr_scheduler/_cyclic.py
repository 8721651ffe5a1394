"""Schedulers that cycle the lr and, inversely, the momentum: CyclicLR and OneCycleLR.

Both compute the lr and the momentum of step ``e`` in closed form from ``e``
(they are not chainable). With ``cycle_momentum=True`` they also set SGD's
``momentum`` (switching momentum on for an SGD built with ``momentum=0``, as
torch does) or the first of Adam's ``betas``; which one is decided by the
optimizer's defaults (``'betas'`` present: beta1).
"""

from __future__ import annotations

import copy
import math
import types
from collections.abc import Mapping, Sequence
from typing import Any, Callable

from ._base import (
    _BASE_FIELDS,
    GROUP_LRS,
    GROUP_MOMENTUMS,
    Check,
    LRScheduler,
    boolean,
    integer,
    one_of,
    per_group,
    real,
)
from ._checks import (
    check_bool,
    check_callable,
    check_choice,
    check_int,
    check_optimizer,
    check_real,
    format_param,
    is_int,
)

__all__ = ["CyclicLR", "OneCycleLR"]

_CYCLE_MOMENTUM_ERROR = "optimizer must support momentum or beta1 with `cycle_momentum` option enabled"


def _uses_beta1(optimizer: Any) -> bool:
    """Whether momentum cycling drives ``betas[0]`` (else ``momentum``); ValueError if neither exists."""
    if "momentum" not in optimizer.defaults and "betas" not in optimizer.defaults:
        raise ValueError(_CYCLE_MOMENTUM_ERROR)
    return "betas" in optimizer.defaults


class _MomentumCycling(LRScheduler):
    """Writing, saving and restoring the cycled momentum (``momentum`` or ``betas[0]``)."""

    cycle_momentum: bool
    use_beta1: bool

    def _set_group_momentum(self, group: dict[str, Any], momentum: Any) -> None:
        if self.use_beta1:
            group["betas"] = (momentum, *group["betas"][1:])
        else:
            group["momentum"] = momentum

    def _write_momentums(self, momentums: Sequence[Any]) -> None:
        for group, momentum in zip(self.optimizer.param_groups, momentums):
            self._set_group_momentum(group, momentum)

    def state_dict(self) -> dict[str, Any]:
        """torch's entries plus every group's current lr (``'_group_lrs'``) and,
        with ``cycle_momentum``, its current momentum or beta1 (``'_group_momentums'``)."""
        state = super().state_dict()
        if self.cycle_momentum:
            state[GROUP_MOMENTUMS] = [
                group["betas"][0] if self.use_beta1 else group["momentum"] for group in self.optimizer.param_groups
            ]
        return state

    def _check_momentum_state(self, parsed: dict[str, Any]) -> None:
        if parsed["cycle_momentum"]:
            if _uses_beta1(self.optimizer) != parsed["use_beta1"]:
                raise ValueError(
                    f"'use_beta1' is {parsed['use_beta1']}, but the optimizer "
                    f"{'has' if not parsed['use_beta1'] else 'has no'} betas"
                )
        elif GROUP_MOMENTUMS in parsed:
            raise ValueError("'_group_momentums' is given, but 'cycle_momentum' is False")

    def _restore_groups(self, parsed: dict[str, Any]) -> None:
        super()._restore_groups(parsed)
        if not self.cycle_momentum:
            return
        momentums = parsed.get(GROUP_MOMENTUMS)
        if momentums is None:
            if self.last_epoch < 0:
                return  # not started (a later scheduler of a SequentialLR): nothing cycled yet
            # A torch-layout state dict: the momentum follows from last_epoch.
            momentums = self._get_momentums()
        if momentums is not None:  # always, with cycle_momentum
            self._write_momentums(momentums)


class CyclicLR(_MomentumCycling):
    r"""Cyclical learning rate (CLR): the lr goes from ``base_lr`` up to ``max_lr``
    in ``step_size_up`` steps and back down in ``step_size_down`` steps, with an
    amplitude scaled per cycle or per step; the momentum moves inversely.

    With U = ``step_size_up``, D = ``step_size_down``, S = U + D, r = U / S::

        cycle = floor(1 + e / S)
        x     = 1 + e / S - cycle                    (position in the cycle, in [0, 1))
        h     = x / r if x <= r else (x - 1) / (r - 1)
        s     = scale_fn(cycle) if scale_mode == 'cycle' else scale_fn(e)
        lr    = base_lr + (max_lr - base_lr) · h · s
        mom   = max_momentum - (max_momentum - base_momentum) · h · s

    Built-in modes: ``'triangular'`` (s = 1), ``'triangular2'`` (s = 1 / 2^(cycle-1),
    per cycle), ``'exp_range'`` (s = gamma^e, per step). The constructor sets
    every group's lr to ``base_lr`` (and momentum to ``max_momentum``) when
    ``last_epoch == -1``.

    Args:
      optimizer: a rustoptim optimizer.
      base_lr, max_lr: a real number >= 0 or one per param group.
      step_size_up: steps of the rising half, > 0 (default 2000).
      step_size_down: steps of the falling half, >= 0 (default: step_size_up).
      mode: ``'triangular'``, ``'triangular2'`` or ``'exp_range'``; ignored when
        ``scale_fn`` is given.
      gamma: the base of ``'exp_range'`` (default 1.0).
      scale_fn: a custom scale function of one argument, returning a real number.
      scale_mode: ``'cycle'`` or ``'iterations'``: what ``scale_fn`` is called with.
      cycle_momentum: cycle SGD's ``momentum`` or Adam's beta1 (default True).
      base_momentum, max_momentum: the momentum bounds (default 0.8, 0.9).
      last_epoch: the index of the last batch (default -1: start).

    Reference: Smith, "Cyclical Learning Rates for Training Neural Networks", WACV 2017.
    """

    _fields = {
        "max_lrs": per_group(minimum=0.0),
        "total_size": real(above=0.0),
        "step_ratio": real(above=0.0, maximum=1.0),
        "mode": lambda name, value, n: _check_mode(name, value),
        "gamma": real(),
        "scale_mode": one_of("cycle", "iterations"),
        "cycle_momentum": boolean(),
        "use_beta1": boolean(),
        "base_momentums": per_group(),
        "max_momentums": per_group(),
    }

    def __init__(
        self,
        optimizer: Any,
        base_lr: Any,
        max_lr: Any,
        step_size_up: float = 2000,
        step_size_down: float | None = None,
        mode: str = "triangular",
        gamma: float = 1.0,
        scale_fn: Callable[[float], float] | None = None,
        scale_mode: str = "cycle",
        cycle_momentum: bool = True,
        base_momentum: Any = 0.8,
        max_momentum: Any = 0.9,
        last_epoch: int = -1,
    ) -> None:
        check_optimizer(optimizer)
        self.optimizer = optimizer
        base_lrs = format_param("base_lr", optimizer, base_lr, minimum=0.0)
        self.max_lrs = format_param("max_lr", optimizer, max_lr, minimum=0.0)
        up = float(check_real("step_size_up", step_size_up, above=0.0))
        down = float(check_real("step_size_down", step_size_down, minimum=0.0)) if step_size_down is not None else up
        self.total_size = up + down
        self.step_ratio = up / self.total_size
        if scale_fn is None:
            check_choice(
                "mode", mode, ("triangular", "triangular2", "exp_range"), "mode is invalid and scale_fn is None"
            )
        elif not isinstance(mode, str):
            raise TypeError(f"mode must be a str, got {mode!r}")
        self.mode = mode
        self.gamma = check_real("gamma", gamma)
        self._scale_fn_custom = None if scale_fn is None else check_callable("scale_fn", scale_fn)
        self.scale_mode = check_choice("scale_mode", scale_mode, ("cycle", "iterations"))
        self._init_scale_mode()
        self.cycle_momentum = check_bool("cycle_momentum", cycle_momentum)
        if self.cycle_momentum:
            self.use_beta1 = _uses_beta1(optimizer)
            self.base_momentums = format_param("base_momentum", optimizer, base_momentum)
            self.max_momentums = format_param("max_momentum", optimizer, max_momentum)
        self._start_lrs = base_lrs
        super().__init__(optimizer, last_epoch)
        # As in torch: the constructor's step ran with base_lrs = initial_lr.
        del self._start_lrs
        self.base_lrs = base_lrs

    def _prepare_groups(self, last_epoch: int) -> None:
        if last_epoch != -1:
            return
        for group, lr in zip(self.optimizer.param_groups, self._start_lrs):
            group["lr"] = lr
        if self.cycle_momentum:
            for group, max_m, base_m in zip(self.optimizer.param_groups, self.max_momentums, self.base_momentums):
                self._set_group_momentum(group, max_m)
                group["max_momentum"] = max_m
                group["base_momentum"] = base_m

    def _init_scale_mode(self) -> None:
        """The built-in modes fix what the scale function is called with."""
        if self._scale_fn_custom is None:
            self.scale_mode = "iterations" if self.mode == "exp_range" else "cycle"

    def scale_fn(self, x: float) -> Any:
        """The amplitude scale at ``x`` (the cycle number or the step, see ``scale_mode``)."""
        if self._scale_fn_custom is not None:
            return check_real(f"scale_fn({x!r})", self._scale_fn_custom(x), finite=False)
        if self.mode == "triangular":
            return 1.0
        if self.mode == "triangular2":
            return 1 / (2.0 ** (x - 1))
        return self.gamma**x

    def _position(self) -> tuple[float, Any]:
        """(h, s) of the docstring at ``last_epoch``."""
        cycle = math.floor(1 + self.last_epoch / self.total_size)
        x = 1.0 + self.last_epoch / self.total_size - cycle
        if x <= self.step_ratio:
            scale_factor = x / self.step_ratio
        else:
            scale_factor = (x - 1) / (self.step_ratio - 1)
        scale = self.scale_fn(cycle if self.scale_mode == "cycle" else self.last_epoch)
        return scale_factor, scale

    def get_lr(self) -> list[Any]:
        self._warn_outside_step()
        scale_factor, scale = self._position()
        return [
            base_lr + (max_lr - base_lr) * scale_factor * scale for base_lr, max_lr in zip(self.base_lrs, self.max_lrs)
        ]

    def _get_momentums(self) -> list[Any] | None:
        if not self.cycle_momentum:
            return None
        scale_factor, scale = self._position()
        return [
            max_m - (max_m - base_m) * scale_factor * scale
            for base_m, max_m in zip(self.base_momentums, self.max_momentums)
        ]

    # torch's state dict: no scale function reference; the custom function's
    # __dict__ (callable objects only) last.
    def _state_keys(self) -> list[str]:
        own = [
            k for k in self._fields if self.cycle_momentum or k not in ("use_beta1", "base_momentums", "max_momentums")
        ]
        return [*own, *_BASE_FIELDS]

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        tail = {k: state.pop(k) for k in (GROUP_LRS, GROUP_MOMENTUMS) if k in state}
        fn = self._scale_fn_custom
        state["_scale_fn_custom"] = (
            None
            if fn is None or isinstance(fn, types.FunctionType) or not hasattr(fn, "__dict__")
            else copy.deepcopy(fn.__dict__)
        )
        state.update(tail)
        return state

    def _expected_fields(self, state_dict: Mapping[str, Any]) -> tuple[dict[str, Check], dict[str, Check]]:
        fields = {**self._fields, **_BASE_FIELDS, "_scale_fn_custom": _check_fn_state}
        if state_dict.get("cycle_momentum") is not True:
            for key in ("use_beta1", "base_momentums", "max_momentums"):
                del fields[key]
        optional_fields = {GROUP_LRS: per_group(finite=False), GROUP_MOMENTUMS: per_group()}
        return fields, optional_fields

    def _check_state(self, parsed: dict[str, Any]) -> None:
        self._check_momentum_state(parsed)
        if parsed["_scale_fn_custom"] is not None and (
            self._scale_fn_custom is None or not hasattr(self._scale_fn_custom, "__dict__")
        ):
            raise ValueError(
                "'_scale_fn_custom' holds attributes, but the scheduler has no scale_fn object to take them"
            )
        if self._scale_fn_custom is None and parsed["mode"] not in ("triangular", "triangular2", "exp_range"):
            raise ValueError(f"'mode' is {parsed['mode']!r} and the scheduler has no scale_fn")

    def _apply_state(self, parsed: dict[str, Any]) -> None:
        super()._apply_state({k: v for k, v in parsed.items() if k != "_scale_fn_custom"})
        if parsed["_scale_fn_custom"] is not None:
            self._scale_fn_custom.__dict__.update(parsed["_scale_fn_custom"])
        self._init_scale_mode()


def _check_mode(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {value!r}")
    return value


def _check_fn_state(name: str, value: Any, n: int) -> dict[str, Any] | None:
    if value is not None and not isinstance(value, dict):
        raise TypeError(f"{name} must be None or a dict of the scale function's attributes, got {type(value).__name__}")
    return value


_PHASE_LR_KEYS = ("initial_lr", "max_lr", "min_lr")
_PHASE_MOMENTUM_KEYS = ("max_momentum", "base_momentum")


def _check_phases(name: str, value: Any, n: int) -> list[dict[str, Any]]:
    """A state dict's ``_schedule_phases``."""
    if not isinstance(value, list) or len(value) not in (2, 3):
        raise ValueError(f"{name} must be a list of 2 or 3 phases, got {value!r}")
    for i, phase in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(phase, dict) or set(phase) != {
            "end_step",
            "start_lr",
            "end_lr",
            "start_momentum",
            "end_momentum",
        }:
            raise ValueError(f"{where} must be a dict with end_step, start_lr, end_lr, start_momentum, end_momentum")
        check_real(f"{where}['end_step']", phase["end_step"])
        for key, allowed in (
            ("start_lr", _PHASE_LR_KEYS),
            ("end_lr", _PHASE_LR_KEYS),
            ("start_momentum", _PHASE_MOMENTUM_KEYS),
            ("end_momentum", _PHASE_MOMENTUM_KEYS),
        ):
            check_choice(f"{where}[{key!r}]", phase[key], allowed)
    return value


class OneCycleLR(_MomentumCycling):
    r"""The 1cycle policy: the lr rises from ``max_lr / div_factor`` to ``max_lr``,
    then falls to ``initial_lr / final_div_factor``; the momentum moves inversely
    between ``max_momentum`` and ``base_momentum``.

    With N = ``total_steps`` and p = ``pct_start``, the phases (end step:
    lr from -> to, momentum from -> to) are::

        two phases (default):  p·N - 1: initial -> max,  max_m -> base_m
                               N - 1:   max -> min,      base_m -> max_m
        three_phase=True:      p·N - 1:  initial -> max,  max_m -> base_m
                               2p·N - 2: max -> initial,  base_m -> max_m
                               N - 1:    initial -> min,  max_m -> max_m

    At step e the first phase whose end is >= e (or the last) interpolates with
    ``pct = (e - start) / (end - start)``, start being the previous phase's end::

        cos:     to + (from - to) / 2 · (cos(π·pct) + 1)
        linear:  (to - from) · pct + from

    ``e`` may reach N (one extrapolated value, as in torch); stepping past N
    raises ``ValueError``. The constructor writes ``initial_lr``, ``max_lr``,
    ``min_lr`` (and ``max_momentum``, ``base_momentum``) into each group when
    ``last_epoch == -1``.

    Args:
      optimizer: a rustoptim optimizer.
      max_lr: the peak lr, a real number >= 0 or one per param group.
      total_steps: the number of steps, a positive integer; or give ``epochs``
        and ``steps_per_epoch`` (N = their product).
      pct_start: the fraction of steps spent rising, a float in [0, 1] (default 0.3).
      anneal_strategy: ``'cos'`` (default) or ``'linear'``.
      cycle_momentum: cycle SGD's ``momentum`` or Adam's beta1 (default True).
      base_momentum, max_momentum: the momentum bounds (default 0.85, 0.95).
      div_factor: ``initial_lr = max_lr / div_factor`` (default 25), > 0.
      final_div_factor: ``min_lr = initial_lr / final_div_factor`` (default 1e4), > 0.
      three_phase: use the three-phase schedule of the paper (default False).
      last_epoch: the index of the last batch (default -1: start).

    A configuration whose phase of zero length would be evaluated (torch divides
    by zero there, e.g. ``pct_start · total_steps == 1``) raises ``ValueError``.

    Reference: Smith & Topin, "Super-Convergence: Very Fast Training of Neural
    Networks Using Large Learning Rates", 2018.
    """

    _fields = {
        "total_steps": integer(minimum=1),
        "_schedule_phases": _check_phases,
        "_anneal_func_type": one_of("cos", "linear"),
        "cycle_momentum": boolean(),
        "use_beta1": boolean(),
    }

    def __init__(
        self,
        optimizer: Any,
        max_lr: Any,
        total_steps: int | None = None,
        epochs: int | None = None,
        steps_per_epoch: int | None = None,
        pct_start: float = 0.3,
        anneal_strategy: str = "cos",
        cycle_momentum: bool = True,
        base_momentum: Any = 0.85,
        max_momentum: Any = 0.95,
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        three_phase: bool = False,
        last_epoch: int = -1,
    ) -> None:
        check_optimizer(optimizer)
        self.optimizer = optimizer
        if total_steps is not None:
            if not is_int(total_steps) or total_steps <= 0:
                raise ValueError(f"Expected positive integer total_steps, but got {total_steps}")
            self.total_steps = int(total_steps)
        elif epochs is not None and steps_per_epoch is not None:
            if not is_int(epochs) or epochs <= 0:
                raise ValueError(f"Expected positive integer epochs, but got {epochs}")
            if not is_int(steps_per_epoch) or steps_per_epoch <= 0:
                raise ValueError(f"Expected positive integer steps_per_epoch, but got {steps_per_epoch}")
            self.total_steps = int(epochs) * int(steps_per_epoch)
        else:
            raise ValueError("You must define either total_steps OR (epochs AND steps_per_epoch)")
        if not isinstance(pct_start, float) or not 0 <= pct_start <= 1:
            raise ValueError(f"Expected float between 0 and 1 pct_start, but got {pct_start}")
        n = self.total_steps
        if check_bool("three_phase", three_phase):
            self._schedule_phases = [
                _phase(float(pct_start * n) - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                _phase(float(2 * pct_start * n) - 2, "max_lr", "initial_lr", "base_momentum", "max_momentum"),
                _phase(n - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum"),
            ]
        else:
            self._schedule_phases = [
                _phase(float(pct_start * n) - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"),
                _phase(n - 1, "max_lr", "min_lr", "base_momentum", "max_momentum"),
            ]
        self._anneal_func_type = check_choice(
            "anneal_strategy",
            anneal_strategy,
            ("cos", "linear"),
            "anneal_strategy must be one of 'cos' or 'linear', instead got {}",
        )
        self._max_lrs = format_param("max_lr", optimizer, max_lr, minimum=0.0)
        self._div_factor = check_real("div_factor", div_factor, above=0.0)
        self._final_div_factor = check_real("final_div_factor", final_div_factor, above=0.0)
        self.cycle_momentum = check_bool("cycle_momentum", cycle_momentum)
        if self.cycle_momentum:
            self.use_beta1 = _uses_beta1(optimizer)
            self._max_momentums = format_param("max_momentum", optimizer, max_momentum)
            self._base_momentums = format_param("base_momentum", optimizer, base_momentum)
        last_epoch = check_int("last_epoch", last_epoch, minimum=-1)
        if last_epoch != -1:
            needed = _PHASE_LR_KEYS + (_PHASE_MOMENTUM_KEYS if self.cycle_momentum else ())
            for i, group in enumerate(optimizer.param_groups):
                missing = [key for key in needed if key not in group]
                if missing:
                    raise ValueError(
                        f"param_groups[{i}] has no {missing} (OneCycleLR resumed with last_epoch={last_epoch}); "
                        "load the optimizer's state dict first"
                    )
        super().__init__(optimizer, last_epoch)
        for name in ("_max_lrs", "_div_factor", "_final_div_factor", "_max_momentums", "_base_momentums"):
            self.__dict__.pop(name, None)

    def _prepare_groups(self, last_epoch: int) -> None:
        if last_epoch != -1:
            return
        for group, max_lr in zip(self.optimizer.param_groups, self._max_lrs):
            group["initial_lr"] = max_lr / self._div_factor
            group["max_lr"] = max_lr
            group["min_lr"] = group["initial_lr"] / self._final_div_factor
        if self.cycle_momentum:
            for group, max_m, base_m in zip(self.optimizer.param_groups, self._max_momentums, self._base_momentums):
                self._set_group_momentum(group, max_m)
                group["max_momentum"] = max_m
                group["base_momentum"] = base_m

    def _anneal(self, start: Any, end: Any, pct: float) -> Any:
        if self._anneal_func_type == "cos":
            cos_out = math.cos(math.pi * pct) + 1
            return end + (start - end) / 2.0 * cos_out
        return (end - start) * pct + start

    def _phase_position(self) -> tuple[dict[str, Any], float]:
        """The phase of step ``last_epoch`` and the fraction of it covered."""
        step_num = self.last_epoch
        if step_num > self.total_steps:
            raise ValueError(
                f"Tried to step {step_num} times. The specified number of total steps is {self.total_steps}"
            )
        start_step = 0.0
        phases = self._schedule_phases
        for i, phase in enumerate(phases):
            end_step = phase["end_step"]
            if step_num <= end_step or i == len(phases) - 1:
                if end_step == start_step:
                    raise ValueError(
                        f"OneCycleLR phase {i} has zero length (it starts and ends at step {end_step}) and step "
                        f"{step_num} falls in it; with total_steps={self.total_steps} pick a pct_start for which "
                        "pct_start * total_steps is not 1 (torch divides by zero here)"
                    )
                return phase, (step_num - start_step) / (end_step - start_step)
            start_step = phase["end_step"]
        raise AssertionError("unreachable: the last phase always matches")

    def get_lr(self) -> list[Any]:
        self._warn_outside_step()
        phase, pct = self._phase_position()
        return [
            self._anneal(group[phase["start_lr"]], group[phase["end_lr"]], pct) for group in self.optimizer.param_groups
        ]

    def _get_momentums(self) -> list[Any] | None:
        if not self.cycle_momentum:
            return None
        phase, pct = self._phase_position()
        return [
            self._anneal(group[phase["start_momentum"]], group[phase["end_momentum"]], pct)
            for group in self.optimizer.param_groups
        ]

    def _state_keys(self) -> list[str]:
        own = [k for k in self._fields if self.cycle_momentum or k != "use_beta1"]
        return [*own, *_BASE_FIELDS]

    def _expected_fields(self, state_dict: Mapping[str, Any]) -> tuple[dict[str, Check], dict[str, Check]]:
        fields = {**self._fields, **_BASE_FIELDS}
        if state_dict.get("cycle_momentum") is not True:
            del fields["use_beta1"]
        return fields, {GROUP_LRS: per_group(finite=False), GROUP_MOMENTUMS: per_group()}

    def _check_state(self, parsed: dict[str, Any]) -> None:
        self._check_momentum_state(parsed)
        keys = {phase[k] for phase in parsed["_schedule_phases"] for k in ("start_lr", "end_lr")}
        if parsed["cycle_momentum"]:
            keys |= {phase[k] for phase in parsed["_schedule_phases"] for k in ("start_momentum", "end_momentum")}
        for i, group in enumerate(self.optimizer.param_groups):
            missing = sorted(k for k in keys if k not in group)
            if missing:
                raise ValueError(f"the schedule needs {missing} in param_groups[{i}], which has none")


def _phase(end_step: float, start_lr: str, end_lr: str, start_momentum: str, end_momentum: str) -> dict[str, Any]:
    return {
        "end_step": end_step,
        "start_lr": start_lr,
        "end_lr": end_lr,
        "start_momentum": start_momentum,
        "end_momentum": end_momentum,
    }
