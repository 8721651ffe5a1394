"""``Optimizer``: the bookkeeping every rustoptim optimizer shares.

Param groups, lazily created per-param state, ``zero_grad``, ``state_dict`` /
``load_state_dict`` and pickling follow ``torch.optim.Optimizer``. The
arithmetic runs in the Rust extension (``rustoptim._core``), one call per param
group. Where torch is unsafe rustoptim does better:

- ``state_dict()`` returns copies of the state arrays, and ``load_state_dict``
  copies the arrays it is given, so an optimizer never shares memory with a
  state dict in either direction;
- ``load_state_dict`` validates everything (keys, shapes, dtypes, step counts,
  hyperparameters) before it changes anything, and raises ``StateDictError``;
- a step that raises changes no param and no state;
- every param group's hyperparameters are validated, not only the
  constructor's arguments.
"""

from __future__ import annotations

import copy
import numbers
import threading
import warnings
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import (
    Any,
    Callable,
    ClassVar,
)

import numpy as np

from .errors import StateDictError
from .parameter import Parameter

__all__ = ["Optimizer"]

_DUPLICATE_PARAMS_WARNING = (
    "optimizer contains a parameter group with duplicate parameters; "
    "in future, this will cause an error; "
    "see github.com/pytorch/pytorch/issues/40967 for more information"
)


# What to do with an array NumPy does not own (jax, torch, ...) as a param.
_AS_PARAM_HINT = (
    "params are updated in place, so they must be writeable NumPy arrays: for a torch CPU tensor "
    "pass t.numpy() (a view sharing its memory); for an immutable array (jax) optimize "
    "w = np.array(x) and convert back after the step"
)


def _typename(obj: object) -> str:
    cls = type(obj)
    module = cls.__module__
    if module in ("builtins", "", None):
        return cls.__qualname__
    return f"{module}.{cls.__qualname__}"


def _is_index(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_non_negative(name: str, value: object, message: str) -> None:
    """``value`` must be a real number >= 0 (NaN rejected), else ``ValueError(message.format(value))``.

    rustoptim has no array hyperparameters (torch's tensor lr or betas): an
    ndarray raises ``TypeError``; pass ``float(value)``. NumPy scalars are fine.
    """
    if isinstance(value, np.ndarray):
        raise TypeError(
            f"{name} must be a real number, not a numpy.ndarray of shape {value.shape}; "
            f"rustoptim has no array hyperparameters (pass float({name}))"
        )
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    # numbers.Real promises ``<`` and ``<=`` only; ``value != value`` is NaN.
    if value < 0.0 or value != value:
        raise ValueError(message.format(value))
    try:
        float(value)
    except OverflowError:
        raise ValueError(f"{message.format(value)} ({name} is too large for a float)") from None


def check_betas(betas: object) -> None:
    """``betas`` must be a pair of real numbers, each in ``[0, 1)``; otherwise
    torch's ``ValueError("Invalid beta parameter at index i: ...")`` (a value
    that is not a pair, or not a real number, raises ``ValueError``/``TypeError``
    naming betas)."""
    if isinstance(betas, np.ndarray) or not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"betas must be a pair of floats, got {betas!r}")
    for i, beta in enumerate(betas):
        if isinstance(beta, np.ndarray):
            raise ValueError("betas must be Python floats: rustoptim has no array betas")
        if isinstance(beta, (bool, np.bool_)) or not isinstance(beta, numbers.Real):
            raise TypeError(f"betas[{i}] must be a real number, got {beta!r}")
        if beta < 0.0 or not beta < 1.0:  # NaN fails ``beta < 1.0``
            raise ValueError(f"Invalid beta parameter at index {i}: {beta}")


def check_adam_hyperparameters(group: dict[str, Any]) -> None:
    """The checks the Adam family (Adam, AdamW, Adamax, NAdam, RAdam) shares, in
    torch's order and with its messages: ``lr``, ``eps``, ``betas``, ``weight_decay``."""
    check_non_negative("lr", group["lr"], "Invalid learning rate: {}")
    check_non_negative("eps", group["eps"], "Invalid epsilon value: {}")
    check_betas(group["betas"])
    check_non_negative("weight_decay", group["weight_decay"], "Invalid weight_decay value: {}")


def check_flags(
    group: dict[str, Any], bools: tuple[str, ...], optional_bools: tuple[str, ...] = ("foreach", "fused")
) -> None:
    """Flags are bools (``foreach``/``fused`` may also be None); ``differentiable``
    and ``capturable`` cannot be honoured on NumPy arrays and must be False."""
    for name in bools:
        if not isinstance(group[name], (bool, np.bool_)):
            raise TypeError(f"{name} must be a bool, got {group[name]!r}")
    for name in optional_bools:
        if group[name] is not None and not isinstance(group[name], (bool, np.bool_)):
            raise TypeError(f"{name} must be None or a bool, got {group[name]!r}")
    if group.get("differentiable"):
        raise ValueError(
            "differentiable=True is not supported: NumPy arrays carry no autograd graph, "
            "so a rustoptim step cannot be differentiated through"
        )
    if group.get("capturable"):
        raise ValueError(
            "capturable=True is not supported: it exists for CUDA graph capture, "
            "and rustoptim runs on NumPy arrays on the CPU"
        )


class Optimizer:
    """Base class of rustoptim's optimizers (``torch.optim.Optimizer`` semantics).

    Args:
      params: an iterable of parameters or of param-group dicts. A parameter is
        a :class:`~rustoptim.Parameter` (set its ``.grad`` before ``step()``), a
        plain NumPy array (wrapped in an internal ``Parameter`` whose ``data``
        *is* that array; pass its gradient with ``step(grads=...)``), or a
        ``(name, parameter)`` tuple. A group dict holds ``'params'`` plus any
        hyperparameters that override ``defaults`` for that group.
      defaults: the default hyperparameters of every group (kept by reference,
        as torch does).

    Attributes:
      param_groups: list of dicts; hyperparameters are re-read at every step, so
        changing ``param_groups[i]['lr']`` takes effect at the next step.
      state: ``defaultdict(dict)`` keyed by ``Parameter``, filled lazily on the
        first step in which a param has a gradient.
      defaults: the constructor's default hyperparameters.

    ``pickle`` and ``copy.deepcopy`` copy the params with the optimizer (as in
    torch): the copy's :attr:`params` hold new arrays, not the caller's.

    Subclasses implement ``step`` (the element-wise optimizers share one, in
    ``ElementwiseOptimizer``) and may override the hooks ``_check_group``,
    ``_restore_group``, ``_import_param_state`` and ``_export_param_state``.
    ``_step_lock`` serializes steps of one optimizer called from several threads.
    """

    #: Flags refilled by ``_restore_group`` when a loaded or unpickled group lacks
    #: them (state dicts written before the flag existed), like torch's ``__setstate__``.
    _flag_defaults: ClassVar[dict[str, Any]] = {}

    #: Hyperparameters kept as tuples (torch's ``betas``, ...): ``_restore_group``
    #: turns a loaded group's lists back into tuples.
    _tuple_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        self.defaults = defaults
        self._step_lock = threading.RLock()
        if isinstance(params, (Parameter, np.ndarray)):
            raise TypeError(
                "params argument given to the optimizer should be an iterable of Tensors or dicts, "
                f"but got {_typename(params)}"
            )
        self.state: dict[Any, dict[str, Any]] = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []
        param_groups = list(params)
        if len(param_groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(param_groups[0], dict):
            param_groups = [{"params": param_groups}]
        for param_group in param_groups:
            self.add_param_group(param_group)

    # ------------------------------------------------------------------ groups

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group (a dict with ``'params'`` and optional hyperparameters).

        Follows ``torch.optim.Optimizer.add_param_group``: the dict itself is
        appended, missing hyperparameters are filled from ``defaults`` (by
        reference, after the group's own keys), ``(name, param)`` tuples store
        names in ``'param_names'``, a duplicate param inside the group warns
        (it is then updated twice per step), a param already in another group
        raises ``ValueError``. Plain arrays are wrapped in ``Parameter`` objects;
        the same array object always maps to the same ``Parameter``.
        Unlike torch, the group's hyperparameters are validated like the
        constructor's (``ValueError`` with the constructor's message).
        """
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group)}")
        if "params" not in param_group:
            raise KeyError(
                "a param group must have a 'params' entry (a list of arrays or Parameters), "
                f"got keys {sorted(param_group)}"
            )
        params = param_group["params"]
        if isinstance(params, (Parameter, np.ndarray)):
            param_group["params"] = [params]
        elif isinstance(params, set):
            raise TypeError(
                "optimizer parameters need to be organized in ordered collections, but "
                "the ordering of tensors in sets will change between runs. "
                "Please use a list instead."
            )
        else:
            param_group["params"] = list(params)

        extracted: list[Any] = []
        names: list[Any] = []
        for param in param_group["params"]:
            if isinstance(param, tuple):
                names.append(param[0])
                extracted.append(param[1])
            else:
                extracted.append(param)
        param_group["params"] = extracted
        if names:
            if len(names) != len(extracted):
                raise ValueError(
                    "all optimizer params should be with/without names. Some param names are missing"
                )
            param_group["param_names"] = names

        # Plain arrays become Parameters; an array object already known (in this
        # or an earlier group) maps to the Parameter that holds it.
        known = {id(p.data): p for group in self.param_groups for p in group["params"]}
        wrapped = []
        for param in extracted:
            if not isinstance(param, Parameter):
                if not isinstance(param, np.ndarray):
                    raise TypeError(
                        "optimizer can only optimize NumPy arrays and rustoptim.Parameters, but one of the "
                        f"params is {_typename(param)}; {_AS_PARAM_HINT}"
                    )
                param = known.get(id(param)) or Parameter(param)
            known.setdefault(id(param.data), param)
            wrapped.append(param)
        param_group["params"] = wrapped

        for name, default in self.defaults.items():
            param_group.setdefault(name, default)
        self._check_group(param_group)

        if len(wrapped) != len(set(wrapped)):
            warnings.warn(_DUPLICATE_PARAMS_WARNING, stacklevel=3)

        param_set = set()
        for group in self.param_groups:
            param_set.update(group["params"])
            if ("param_names" in param_group) != ("param_names" in group):
                current = "with names" if "param_names" in param_group else "without names"
                raise ValueError(
                    "all optimizer param groups should be with/without names. "
                    f"cannot add param group {current} to the optimizer"
                )
        if not param_set.isdisjoint(wrapped):
            raise ValueError("some parameters appear in more than one parameter group")

        self.param_groups.append(param_group)

    @property
    def params(self) -> list[Parameter]:
        """Every param once, in order of first appearance across ``param_groups``.

        This is the order of ``step(grads=...)`` and of the ``state_dict()``
        indices (torch numbers a param listed twice in one group by its last
        position, which may reorder it). For params given as plain arrays,
        ``params[i].data`` is the caller's array.
        """
        return list(dict.fromkeys(p for group in self.param_groups for p in group["params"]))

    # ------------------------------------------------------------------- hooks

    def _check_group(self, group: dict[str, Any]) -> None:
        """Raise ``ValueError``/``TypeError`` if the group's hyperparameters are invalid."""

    def _restore_group(self, group: dict[str, Any]) -> None:
        """Bring a loaded or unpickled group up to date (missing flags, ...), in place."""
        for name, value in self._flag_defaults.items():
            group.setdefault(name, value)
        for key in self._tuple_keys:
            if isinstance(group.get(key), list):
                group[key] = tuple(group[key])

    def _import_param_state(self, param: Parameter, saved: Mapping[str, Any], group: dict[str, Any]) -> dict[str, Any]:
        """The state of ``param`` built from a state-dict entry: validated and copied.

        Raises ``StateDictError`` (the caller prefixes the entry's index).
        """
        return copy.deepcopy(dict(saved))

    def _export_param_state(self, param: Parameter, state: dict[str, Any]) -> dict[str, Any]:
        """The state-dict entry of ``param``: a copy sharing no memory with ``state``."""
        return copy.deepcopy(state)

    @staticmethod
    def _check_state_keys(saved: Mapping[str, Any], required: Sequence[str], optional: Sequence[str] = ()) -> None:
        """``StateDictError`` unless ``saved`` has every required key and no unknown key."""
        unknown = [k for k in saved if k not in required and k not in optional]
        if unknown:
            expected = ", ".join(repr(k) for k in dict.fromkeys((*required, *optional)))
            raise StateDictError(f"unknown state key(s) {unknown}; expected {expected}")
        missing = [k for k in required if k not in saved]
        if missing:
            raise StateDictError(f"missing state key(s) {missing}")

    # -------------------------------------------------------------------- step

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients stored on the params (``.grad``).

        Args:
          set_to_none: ``True`` sets ``.grad = None``, so ``step()`` skips the
            param; ``False`` fills the existing gradient arrays with zeros in
            place, so ``step()`` still processes the param (decay, step count).
        """
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    if set_to_none:
                        p.grad = None
                    else:
                        p.grad[...] = 0

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Perform one optimization step (implemented by each optimizer)."""
        raise NotImplementedError

    # -------------------------------------------------------------- state dict

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state as ``{'state': {...}, 'param_groups': [...]}`` (torch layout).

        ``param_groups`` holds one dict per group with every hyperparameter and
        ``'params'`` (the params' integer indices) last. ``state`` maps the index
        of each param that has state to its state dict. Params are numbered as
        torch does: by first appearance, with duplicates inside a group leaving
        gaps. Everything is a copy: the returned arrays share no memory with the
        optimizer.
        """
        mappings: dict[int, int] = {}
        start = 0
        groups = []
        for group in self.param_groups:
            packed = copy.deepcopy({k: v for k, v in group.items() if k != "params"})
            params = group["params"]
            mappings.update({id(p): i for i, p in enumerate(params, start) if id(p) not in mappings})
            packed["params"] = [mappings[id(p)] for p in params]
            start += len(params)
            groups.append(packed)
        state = {
            mappings[id(p)]: self._export_param_state(p, entry)
            for p, entry in self.state.items()
            if entry and id(p) in mappings
        }
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Load a state dict made by :meth:`state_dict` (possibly of another optimizer).

        As in torch, hyperparameters come from the saved groups and params are
        matched by position. Unlike torch, everything is validated first and
        ``StateDictError`` names the first problem (missing keys, group count or
        size, unknown or missing state keys, an index that is not a param, an
        array whose shape or dtype differs from its param's, a step that is not
        a finite non-negative number, invalid hyperparameters); a load that
        raises leaves the optimizer exactly as it was. Arrays are copied into new
        state arrays, so the optimizer never shares memory with ``state_dict``.
        """
        if not isinstance(state_dict, Mapping):
            raise StateDictError(f"a state dict must be a dict, got {_typename(state_dict)}")
        for key in ("state", "param_groups"):
            if key not in state_dict:
                raise StateDictError(f"the state dict has no {key!r} entry")
        saved_groups = state_dict["param_groups"]
        saved_state = state_dict["state"]
        if not isinstance(saved_groups, (list, tuple)):
            raise StateDictError(f"'param_groups' must be a list, got {_typename(saved_groups)}")
        if not isinstance(saved_state, Mapping):
            raise StateDictError(f"'state' must be a dict, got {_typename(saved_state)}")
        if len(saved_groups) != len(self.param_groups):
            raise StateDictError("loaded state dict has a different number of parameter groups")
        for i, saved in enumerate(saved_groups):
            if not isinstance(saved, Mapping):
                raise StateDictError(f"param_groups[{i}] must be a dict, got {_typename(saved)}")
            indices = saved.get("params")
            if not isinstance(indices, (list, tuple)) or not all(_is_index(k) for k in indices):
                raise StateDictError(f"param_groups[{i}]['params'] must be a list of int indices")
        if any(len(s["params"]) != len(g["params"]) for s, g in zip(saved_groups, self.param_groups)):
            raise StateDictError(
                "loaded state dict contains a parameter group that doesn't match the size of optimizer's group"
            )

        # Match saved indices to params by position, refusing ambiguous maps.
        id_map: dict[int, Parameter] = {}
        index_of: dict[Parameter, int] = {}
        group_of: dict[Parameter, dict[str, Any]] = {}
        new_groups = []
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            for k, p in zip(saved["params"], group["params"]):
                k = int(k)
                if id_map.setdefault(k, p) is not p or index_of.setdefault(p, k) != k:
                    raise StateDictError(
                        f"param_groups[{i}]['params'] does not match the optimizer's params one to one "
                        f"(index {k} would stand for two params, or one param for two indices)"
                    )
            # Saved hyperparameters (copied) in the saved key order, current params.
            new_group = {k: group["params"] if k == "params" else copy.deepcopy(v) for k, v in saved.items()}
            if "param_names" in group and "param_names" not in new_group:
                new_group["param_names"] = group["param_names"]
            names = new_group.get("param_names")
            if names is not None and (not isinstance(names, (list, tuple)) or len(names) != len(group["params"])):
                raise StateDictError(f"param_groups[{i}]['param_names'] must be a list with one name per param")
            self._restore_group(new_group)
            try:
                self._check_group(new_group)
            except KeyError as e:
                raise StateDictError(f"param_groups[{i}] has no {e.args[0]!r} hyperparameter") from None
            except (TypeError, ValueError) as e:
                raise StateDictError(f"param_groups[{i}] has an invalid hyperparameter: {e}") from None
            new_groups.append(new_group)
            for p in group["params"]:
                group_of[p] = new_group

        new_state: dict[Any, dict[str, Any]] = defaultdict(dict)
        for k, entry in saved_state.items():
            param = id_map.get(int(k)) if _is_index(k) else None
            if param is None:
                raise StateDictError(
                    f"state key {k!r} is not the index of a param (indices: {sorted(id_map)})"
                )
            if not isinstance(entry, Mapping):
                raise StateDictError(f"state[{k!r}] must be a dict, got {_typename(entry)}")
            if not entry:
                continue
            try:
                new_state[param] = self._import_param_state(param, entry, group_of[param])
            except StateDictError as e:
                raise StateDictError(f"state[{k!r}]: {e}") from None

        self.state = new_state
        self.param_groups = new_groups

    # ---------------------------------------------------------------- pickling

    def __getstate__(self) -> dict[str, Any]:
        return {"defaults": self.defaults, "state": self.state, "param_groups": self.param_groups}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._step_lock = threading.RLock()
        self.defaults.setdefault("differentiable", False)
        for group in self.param_groups:
            self._restore_group(group)

    def __repr__(self) -> str:
        text = self.__class__.__name__ + " ("
        for i, group in enumerate(self.param_groups):
            text += f"\nParameter Group {i}\n"
            for key in sorted(group):
                if key != "params":
                    text += f"    {key}: {group[key]}\n"
        return text + ")"

