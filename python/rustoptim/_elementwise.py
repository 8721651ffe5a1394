"""``ElementwiseOptimizer``: the one class behind every element-wise optimizer.

An element-wise optimizer (Adam, SGD, RMSprop, ...) is declared by a subclass
that gives

- ``_rule``: the name of its rule in the Rust core (``_core.step``), which holds
  the math, reads the hyperparameters it needs from each param group at every
  step, and names the state it keeps;
- ``_state_slots``: every state-array key the optimizer may keep, in torch's
  order (which of them exist depends on the group, e.g. ``max_exp_avg_sq`` only
  with ``amsgrad``; the core says which);
- ``__init__`` with torch's signature and defaults, ``_check_group`` with
  torch's checks and messages, ``_flag_defaults`` for groups loaded from older
  state dicts, and the update equations in its docstring.

This class does the rest: the step (one core call for all param groups, so a
step that raises has changed nothing), loading and exporting state, and
serializing concurrent steps on one optimizer.
"""

from __future__ import annotations

import operator
import warnings
from typing import Any, ClassVar, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from . import _core
from ._arrays import state_copy, state_step
from .errors import NoGradientWarning
from .optimizer import Optimizer, _typename
from .parameter import Parameter

__all__ = ["ElementwiseOptimizer"]

# C-level getter: mapping it over a group is faster than a comprehension.
_GRAD = operator.attrgetter("grad")

# One core batch: (group index, group, params, grads, state entries, positions or None).
_Batch = Tuple[int, Dict[str, Any], List[Parameter], List[Any], List[Any], Optional[List[int]]]


class ElementwiseOptimizer(Optimizer):
    """Base class of the element-wise optimizers (see the module docstring)."""

    #: The rule's name in the Rust core.
    _rule: ClassVar[str]
    #: Every state-array key the optimizer may keep, in torch's order.
    _state_slots: ClassVar[Tuple[str, ...]] = ()
    #: Whether the rule runs through ``_core.step_groups`` (gradients read from
    #: ``.grad`` by the core); the whole-tensor rules go through ``_run_batches``.
    _steps_groups: ClassVar[bool] = True

    def step(
        self,
        closure: Optional[Any] = None,
        *,
        grads: Optional[Sequence[Optional[np.ndarray]]] = None,
        grad_scale: Optional[float] = None,
    ) -> Any:
        """Perform one optimization step; return what ``closure`` returned (else None).

        Args:
          closure: optional callable that re-evaluates the model; it runs first,
            so it may set ``.grad`` on the params, or return ``(loss, grads)``
            with ``grads`` a list as for the ``grads`` argument (then ``loss``
            is returned).
          grads: optional list with one gradient (or ``None`` to skip the param)
            per param of :attr:`params`, in that order. It replaces ``.grad`` for
            this step without being stored on the params: this is how gradients
            of params given as plain arrays are passed. A list of the wrong length
            raises ``ValueError`` before anything else happens.
          grad_scale: optional finite real number ``s``: the step uses
            ``g · s`` (``s`` rounded to each gradient's dtype, the product
            rounded as an in-place multiplication rounds it) wherever it reads
            a gradient ``g``, and leaves the gradients themselves unchanged.
            With ``s`` from :func:`rustoptim.clip_grad_norm_scale` this is
            ``clip_grad_norm_`` followed by ``step()`` with one pass less over
            the gradients and none writing them (bitwise the same params and
            state; see that function for the one exception).

        Params whose gradient is ``None`` are skipped (no state, no decay, no step
        count); a zero gradient is processed. A step in which no param has a
        gradient changes nothing and warns (``NoGradientWarning``). Everything the step needs (every
        group's hyperparameters, every array's dtype, shape, layout and
        writeability, memory shared between any two arrays of the step) is
        checked before the first write, so a step that raises changes no param
        and no state. Concurrent steps on one optimizer from several threads run
        one after the other.
        """
        if closure is not None and not callable(closure):
            raise TypeError(
                f"step() got a {_typename(closure)} as its closure; pass gradients by keyword: "
                "opt.step(grads=[...]) with one array (or None) per param"
            )
        with self._step_lock:
            if grads is not None and closure is None and self._steps_groups:
                # One gradient per param, read by the core: when no param is listed
                # twice and none is skipped; otherwise (or for a malformed ``grads``)
                # the core changes nothing and the general path below decides.
                stepped = _core.step_groups(
                    self._rule, self.param_groups, self.state, self.defaults, grad_scale, grads
                )
                if stepped is not None:
                    return None
            # The length of ``grads`` is checked before the closure runs.
            with_grads = None if grads is None else self._split_grads(grads)
            loss = None
            if closure is not None:
                loss = closure()
                if with_grads is None and _is_loss_and_grads(loss):
                    # An LBFGS-style closure returning (loss, grads).
                    loss, closure_grads = loss
                    with_grads = self._split_grads(closure_grads)
            if with_grads is None and self._steps_groups:
                # The common case: gradients in ``.grad``, read by the core itself.
                stepped = _core.step_groups(self._rule, self.param_groups, self.state, self.defaults, grad_scale)
                if stepped is not None:
                    if stepped == 0:
                        _warn_no_gradient()
                    return loss
                # A group lists a param twice: nothing was done; step each occurrence below.
            if with_grads is None:
                with_grads = self._split_grads(None)
                if not any(params for params, _, _ in with_grads):
                    _warn_no_gradient()
            state_get = self.state.get
            batches: List[_Batch] = []
            rounds: List[List[_Batch]] = []
            for index, (group, (params, group_grads, positions)) in enumerate(zip(self.param_groups, with_grads)):
                if not params:
                    continue
                if len(set(params)) == len(params):
                    batches.append((index, group, params, group_grads, list(map(state_get, params)), positions))
                else:
                    rounds.append(_occurrence_rounds(index, group, params, group_grads, positions))
            if not rounds:
                self._run_batches(batches, grad_scale)
                return loss
            # A param listed twice in a group is updated twice, as in torch: the
            # k-th occurrences go to the k-th core call (each all-or-nothing).
            for k in range(max(len(r) for r in rounds)):
                round_batches = list(batches) if k == 0 else []
                for group_rounds in rounds:
                    if k < len(group_rounds):
                        index, group, params, group_grads, _, positions = group_rounds[k]
                        entries = list(map(state_get, params))
                        round_batches.append((index, group, params, group_grads, entries, positions))
                self._run_batches(round_batches, grad_scale)
            return loss

    def _run_batches(self, batches: List[_Batch], grad_scale: Optional[float] = None) -> None:
        """One all-or-nothing core call over ``batches``; optimizers whose
        update needs whole tensors (Adafactor, Muon) use ``_core.tensor_step``."""
        _core.step(self._rule, batches, self.state, self.defaults, grad_scale)

    def _split_grads(
        self, grads: Optional[Sequence[Optional[np.ndarray]]]
    ) -> List[Tuple[List[Parameter], List[Any], Optional[List[int]]]]:
        """Per group: the params that have a gradient, their gradients, and their
        positions in the group when some were skipped (else None). Gradients come
        from ``grads`` (one entry per param of :attr:`params`) or from ``.grad``."""
        groups = self.param_groups
        if grads is None:
            per_group = [list(map(_GRAD, group["params"])) for group in groups]
        else:
            # Lists and tuples first: the abstract Sequence check is slow.
            if not isinstance(grads, (list, tuple)) and (
                isinstance(grads, np.ndarray) or not isinstance(grads, Sequence)
            ):
                raise TypeError(
                    f"grads must be a list with one array (or None) per param, got {_typename(grads)}"
                )
            flat = groups[0]["params"] if len(groups) == 1 else [p for group in groups for p in group["params"]]
            distinct = len(set(flat))
            if len(grads) != distinct:
                raise ValueError(
                    f"grads has {len(grads)} entries, but the optimizer has {distinct} params "
                    "(one entry per param, in the order of opt.params; None skips a param)"
                )
            if distinct == len(flat):
                per_group, start = [], 0
                for group in groups:
                    stop = start + len(group["params"])
                    per_group.append(list(grads[start:stop]))
                    start = stop
            else:
                by_param = dict(zip(dict.fromkeys(flat), grads))
                per_group = [[by_param[p] for p in group["params"]] for group in groups]
        split = []
        for group, group_grads in zip(groups, per_group):
            params = group["params"]
            present = [g for g in group_grads if g is not None]
            if len(present) == len(params):
                split.append((params, present, None))
                continue
            positions = [i for i, g in enumerate(group_grads) if g is not None]
            split.append(([params[i] for i in positions], present, positions))
        return split

    # -------------------------------------------------------------- state dict

    def _import_param_state(self, param: Parameter, saved: Mapping, group: Dict[str, Any]) -> Dict[str, Any]:
        scalars, slots = _core.state_keys(self._rule, group)
        self._check_state_keys(saved, tuple(scalars) + tuple(slots), optional=self._state_slots)
        state: Dict[str, Any] = {name: state_step(repr(name), saved[name]) for name in scalars}
        for key in self._state_slots:
            if key in saved:
                state[key] = state_copy(repr(key), saved[key], param.data)
        return state



def _warn_no_gradient() -> None:
    warnings.warn(
        "step() did nothing: no param has a gradient. Params given as plain arrays get "
        "theirs through opt.step(grads=[...]) (one array or None per param, in the order "
        "of opt.params); Parameters through .grad",
        NoGradientWarning,
        stacklevel=3,
    )


def _is_loss_and_grads(result: Any) -> bool:
    """Whether a closure returned ``(loss, grads)`` with grads a list or tuple."""
    return isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], (list, tuple))


def _occurrence_rounds(
    index: int, group: Dict[str, Any], params: List[Parameter], grads: List[Any], positions: Optional[List[int]]
) -> List[_Batch]:
    """Split a group's batch so that round k holds the k-th occurrence of each param."""
    rounds: List[_Batch] = []
    seen: Dict[Parameter, int] = {}
    for i, (p, g) in enumerate(zip(params, grads)):
        k = seen.get(p, 0)
        seen[p] = k + 1
        if k == len(rounds):
            rounds.append((index, group, [], [], [], []))
        rounds[k][2].append(p)
        rounds[k][3].append(g)
        rounds[k][5].append(i if positions is None else positions[i])  # type: ignore[union-attr]
    return rounds
