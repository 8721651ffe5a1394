"""The one table of optimizers that drives the generic tests.

Each row says how to test one optimizer class: representative valid configs
(the first is the one most generic tests use), option combinations for the
NumPy reference, the name its golden cases carry, and its state keys in torch's
order. Adding an optimizer means adding a row here (and its reference in
``reference.py``); every generic test then covers it: golden parity in every
layout, the reference across dtypes, shapes and layouts, all-or-nothing
failures, state-dict and file round trips, thread and SIMD invariance.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import rustoptim
from reference import ReferenceAdam, ReferenceSGD


@dataclass(frozen=True)
class OptimizerInfo:
    cls: type
    #: Valid configs for the generic tests; the first has state and decay where the optimizer has them.
    configs: Sequence[Dict[str, Any]]
    #: The pure-NumPy reference class (``Reference(params, **kwargs)``, ``.step(grads)``, ``.params``, ``.state``).
    reference: Optional[type] = None
    #: Option combinations compared with the reference (default: ``configs``).
    reference_configs: Sequence[Dict[str, Any]] = ()
    #: Every state key the optimizer may keep, in torch's order.
    state_keys: Tuple[str, ...] = ()
    #: Params must be matrices (Muon).
    only_2d: bool = False
    #: Reference keyword arguments that stand for the class's own defaults (AdamW: decoupled decay 0.01).
    reference_extra: Dict[str, Any] = field(default_factory=dict)
    #: Params compared with the reference at these relative tolerances (by dtype name) instead of
    #: ulps: the reference's matrix products round differently (Muon); state still in ulps.
    reference_rtol: Optional[Dict[str, float]] = None
    #: Golden cases compared by each step's update at this relative Frobenius tolerance instead of
    #: element-wise (Muon: torch orthogonalizes in bfloat16; state still element-wise).
    golden_update_rtol: Optional[float] = None

    @property
    def name(self) -> str:
        return self.cls.__name__


ADAM_OPTIONS = [
    dict(lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=wd, amsgrad=amsgrad, maximize=maximize,
         decoupled_weight_decay=decoupled)
    for amsgrad, maximize, decoupled, wd in itertools.product([False, True], [False, True], [False, True], [0, 0.1])
] + [dict(), dict(betas=(0.3, 0.6), eps=1e-30, lr=1e-2)]

SGD_OPTIONS = [
    dict(lr=0.05, momentum=momentum, dampening=dampening, weight_decay=wd, nesterov=nesterov, maximize=maximize)
    for momentum, dampening, nesterov, maximize, wd in itertools.product(
        [0, 0.9], [0, 0.3], [False, True], [False, True], [0, 0.05]
    )
    if not (nesterov and (momentum == 0 or dampening != 0))
] + [dict(), dict(lr=0.1, momentum=1.5, dampening=-0.5)]

OPTIMIZERS: List[OptimizerInfo] = [
    OptimizerInfo(
        rustoptim.Adam,
        configs=[dict(lr=0.1, amsgrad=True, weight_decay=0.1), dict(lr=0.05)],
        reference=ReferenceAdam,
        reference_configs=ADAM_OPTIONS,
        state_keys=("step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"),
    ),
    OptimizerInfo(
        rustoptim.AdamW,
        configs=[dict(lr=0.1), dict(lr=0.05, amsgrad=True, maximize=True)],
        reference=ReferenceAdam,
        reference_configs=[dict(lr=0.05, weight_decay=0.1), dict(lr=0.05, amsgrad=True, maximize=True)],
        state_keys=("step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"),
        reference_extra=dict(decoupled_weight_decay=True, weight_decay=0.01),
    ),
    OptimizerInfo(
        rustoptim.SGD,
        configs=[dict(lr=0.1, momentum=0.9), dict(lr=0.1), dict(lr=0.05, momentum=0.9, nesterov=True)],
        reference=ReferenceSGD,
        reference_configs=SGD_OPTIONS,
        state_keys=("momentum_buffer",),
    ),
]

BY_NAME = {info.name: info for info in OPTIMIZERS}


def config_id(cls: type, kwargs: Dict[str, Any]) -> str:
    return cls.__name__ + "(" + ",".join(f"{k}={v}" for k, v in kwargs.items()) + ")"


#: (cls, kwargs) for every config of every optimizer (the element-wise steps' generic tests).
CONFIGS = [(info.cls, kwargs) for info in OPTIMIZERS for kwargs in info.configs]
CONFIG_IDS = [config_id(cls, kwargs) for cls, kwargs in CONFIGS]

#: (info, kwargs) compared with the NumPy reference.
REFERENCE_CONFIGS = [
    (info, kwargs) for info in OPTIMIZERS if info.reference is not None
    for kwargs in (info.reference_configs or info.configs)
]
REFERENCE_IDS = [config_id(info.cls, kwargs) for info, kwargs in REFERENCE_CONFIGS]


# ---------------------------------------------------------------------------
# Whole-tensor optimizers.

from reference import ReferenceAdafactor, ReferenceMuon  # noqa: E402

ADAFACTOR_OPTIONS = [
    dict(lr=lr, beta2_decay=beta2_decay, eps=eps, d=d, weight_decay=wd, maximize=maximize)
    for (lr, beta2_decay, d), eps, wd, maximize in itertools.product(
        [(0.05, -0.5, 2.0), (1e-2, -0.8, 1.0)], [(None, 1e-3), (1e-4, 1e-2)], [0, 0.1], [False, True]
    )
] + [dict(), dict(lr=0.5, eps=(1e-10, 0.0), beta2_decay=0.0)]

MUON_OPTIONS = [
    dict(lr=0.02, weight_decay=wd, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps, adjust_lr_fn=adjust)
    for wd, momentum, nesterov, ns_steps, adjust in itertools.product(
        [0, 0.1], [0.95, 0.6], [True, False], [5, 2], [None, "match_rms_adamw", "spectral_unclamped"]
    )
] + [dict(), dict(ns_steps=0, eps=1e-3), dict(ns_coefficients=(2.0, -1.5, 0.5), adjust_lr_fn="original")]

OPTIMIZERS += [
    OptimizerInfo(
        rustoptim.Adafactor,
        configs=[dict(lr=0.05, weight_decay=0.1), dict(), dict(maximize=True, eps=(1e-3, 1e-3), d=2.0)],
        reference=ReferenceAdafactor,
        reference_configs=ADAFACTOR_OPTIONS,
        state_keys=("step", "row_var", "col_var", "variance"),
    ),
    OptimizerInfo(
        rustoptim.Muon,
        configs=[dict(lr=0.02), dict(nesterov=False, adjust_lr_fn="match_rms_adamw", weight_decay=0.0)],
        reference=ReferenceMuon,
        reference_configs=MUON_OPTIONS,
        state_keys=("momentum_buffer",),
        only_2d=True,
        reference_rtol={"float32": 1e-5, "float64": 1e-12},
        golden_update_rtol=0.08,
    ),
]
BY_NAME.update({info.name: info for info in OPTIMIZERS[-2:]})
CONFIGS += [(info.cls, kwargs) for info in OPTIMIZERS[-2:] for kwargs in info.configs]
CONFIG_IDS += [config_id(cls, kwargs) for cls, kwargs in CONFIGS[len(CONFIG_IDS):]]
REFERENCE_CONFIGS += [(info, kwargs) for info in OPTIMIZERS[-2:] for kwargs in info.reference_configs]
REFERENCE_IDS += [config_id(info.cls, kwargs) for info, kwargs in REFERENCE_CONFIGS[len(REFERENCE_IDS):]]


def param_shape(cls: type, shape: Tuple[int, ...]) -> Tuple[int, ...]:
    """The shape a generic test gives a param of ``cls``: ``shape`` itself, or for
    optimizers of matrices (``only_2d``) a matrix of as many elements: ``()`` ->
    ``(1, 1)``, ``(n,)`` -> ``(1, n)``, ``(..., r, c)`` -> ``(prod(...)*r, c)``."""
    if not BY_NAME[cls.__name__].only_2d or len(shape) == 2:
        return tuple(shape)
    if len(shape) < 2:
        return (1, shape[0] if shape else 1)
    return (int(np.prod(shape[:-1])), shape[-1])


def as_param(cls: type, array: np.ndarray) -> np.ndarray:
    """``array`` reshaped (a view where NumPy can) to ``param_shape``."""
    return array.reshape(param_shape(cls, array.shape))
