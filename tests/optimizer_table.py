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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import rustoptim
from reference import (
    ReferenceAdadelta,
    ReferenceAdagrad,
    ReferenceAdam,
    ReferenceAdamax,
    ReferenceNAdam,
    ReferenceRMSprop,
    ReferenceSGD,
)


@dataclass(frozen=True)
class OptimizerInfo:
    cls: type
    #: Valid configs for the generic tests; the first has state and decay where the optimizer has them.
    configs: Sequence[dict[str, Any]]
    #: The pure-NumPy reference class (``Reference(params, **kwargs)``, ``.step(grads)``, ``.params``, ``.state``).
    reference: type | None = None
    #: Option combinations compared with the reference (default: ``configs``).
    reference_configs: Sequence[dict[str, Any]] = ()
    #: Every state key the optimizer may keep, in torch's order.
    state_keys: tuple[str, ...] = ()
    #: Params must be matrices (Muon).
    only_2d: bool = False
    #: Reference keyword arguments that stand for the class's own defaults (AdamW: decoupled decay 0.01).
    reference_extra: dict[str, Any] = field(default_factory=dict)
    #: The optimizer creates every param's state with itself, not at its first step (Adagrad).
    eager_state: bool = False
    #: Params compared with the reference at these relative tolerances (by dtype name) instead of
    #: ulps: the reference's matrix products round differently (Muon); state still in ulps.
    reference_rtol: dict[str, float] | None = None
    #: Golden cases compared by each step's update at this relative Frobenius tolerance instead of
    #: element-wise (Muon: torch orthogonalizes in bfloat16; state still element-wise).
    golden_update_rtol: float | None = None

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

ADAGRAD_OPTIONS = [
    dict(lr=0.05, lr_decay=lr_decay, weight_decay=wd, initial_accumulator_value=iav, eps=1e-8, maximize=maximize)
    for lr_decay, wd, iav, maximize in itertools.product([0, 0.05], [0, 0.1], [0, 0.5], [False, True])
] + [dict()]

RMSPROP_OPTIONS = [
    dict(lr=0.01, alpha=0.9, eps=1e-6, weight_decay=wd, momentum=momentum, centered=centered, maximize=maximize)
    for centered, momentum, wd, maximize in itertools.product([False, True], [0, 0.9], [0, 0.1], [False, True])
] + [dict(), dict(lr=0.01, alpha=0.3, centered=True)]  # alpha < 0.5: torch's other lerp form

ADADELTA_OPTIONS = [
    dict(lr=0.5, rho=rho, eps=1e-5, weight_decay=wd, maximize=maximize)
    for rho, wd, maximize in itertools.product([0.9, 0.3], [0, 0.1], [False, True])
] + [dict(), dict(rho=1.0), dict(rho=0.0)]

ADAMAX_OPTIONS = [
    dict(lr=0.01, betas=betas, eps=1e-6, weight_decay=wd, maximize=maximize)
    for betas, wd, maximize in itertools.product([(0.9, 0.999), (0.3, 0.6)], [0, 0.1], [False, True])
] + [dict()]

NADAM_OPTIONS = [
    dict(lr=0.01, betas=(0.8, 0.99), weight_decay=wd, decoupled_weight_decay=decoupled, maximize=maximize)
    for wd, decoupled, maximize in itertools.product([0, 0.1], [False, True], [False, True])
] + [dict(), dict(betas=(0.3, 0.6), momentum_decay=0.5, eps=1e-6)]

OPTIMIZERS: list[OptimizerInfo] = [
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
    OptimizerInfo(
        rustoptim.Adagrad,
        configs=[dict(lr=0.1, lr_decay=0.01, weight_decay=0.1, initial_accumulator_value=0.1), dict(lr=0.05)],
        reference=ReferenceAdagrad,
        reference_configs=ADAGRAD_OPTIONS,
        state_keys=("step", "sum"),
        eager_state=True,
    ),
    OptimizerInfo(
        rustoptim.RMSprop,
        configs=[
            dict(lr=0.01, momentum=0.9, centered=True, weight_decay=0.1),
            dict(lr=0.01),
            dict(lr=0.01, alpha=0.9, momentum=0.5, maximize=True),
        ],
        reference=ReferenceRMSprop,
        reference_configs=RMSPROP_OPTIONS,
        state_keys=("step", "square_avg", "momentum_buffer", "grad_avg"),
    ),
    OptimizerInfo(
        rustoptim.Adadelta,
        configs=[dict(lr=0.5, rho=0.8, weight_decay=0.1), dict()],
        reference=ReferenceAdadelta,
        reference_configs=ADADELTA_OPTIONS,
        state_keys=("step", "square_avg", "acc_delta"),
    ),
    OptimizerInfo(
        rustoptim.Adamax,
        configs=[dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1), dict()],
        reference=ReferenceAdamax,
        reference_configs=ADAMAX_OPTIONS,
        state_keys=("step", "exp_avg", "exp_inf"),
    ),
    OptimizerInfo(
        rustoptim.NAdam,
        configs=[
            dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
            dict(),
            dict(lr=0.01, weight_decay=0.05, momentum_decay=0.01),
        ],
        reference=ReferenceNAdam,
        reference_configs=NADAM_OPTIONS,
        state_keys=("step", "mu_product", "exp_avg", "exp_avg_sq"),
    ),
]

# ------------------------------------------------------------ RAdam, ASGD, Rprop
from reference import ReferenceASGD, ReferenceRAdam, ReferenceRprop  # noqa: E402

RADAM_OPTIONS = [
    dict(lr=0.05, betas=(0.8, 0.9), eps=1e-6, weight_decay=wd, decoupled_weight_decay=decoupled, maximize=maximize)
    for decoupled, maximize, wd in itertools.product([False, True], [False, True], [0, 0.1])
] + [dict(), dict(lr=0.1, betas=(0.3, 0.95), eps=1e-30), dict(lr=0.1, betas=(0.0, 0.0))]

ASGD_OPTIONS = [
    dict(lr=0.05, lambd=lambd, alpha=0.6, t0=t0, weight_decay=wd, maximize=maximize)
    for lambd, t0, wd, maximize in itertools.product([0, 0.01], [1, 2.5], [0, 0.05], [False, True])
] + [dict(), dict(lr=0.1, t0=-3, alpha=0), dict(lr=0.1, lambd=5.0, alpha=2.0, t0=0)]

RPROP_OPTIONS = [
    dict(lr=0.05, etas=etas, step_sizes=step_sizes, maximize=maximize)
    for etas, step_sizes, maximize in itertools.product(
        [(0.5, 1.2), (0.3, 2.0)], [(1e-6, 50), (0.01, 0.08)], [False, True]
    )
] + [
    dict(),
    # float32 rounds η- to 0 (torch then uses 1) and both etas to 1 (every σ equals η-).
    dict(lr=0.1, etas=(1e-50, 1.5)),
    dict(lr=0.1, etas=(0.99999999, 1.00000001)),
    dict(lr=0.1, step_sizes=(0.5, 0.1)),  # min > max: torch's clamp gives max
]

OPTIMIZERS += [
    OptimizerInfo(
        rustoptim.RAdam,
        configs=[dict(lr=0.1, weight_decay=0.1), dict(lr=0.05, decoupled_weight_decay=True, weight_decay=0.1)],
        reference=ReferenceRAdam,
        reference_configs=RADAM_OPTIONS,
        state_keys=("step", "exp_avg", "exp_avg_sq"),
    ),
    OptimizerInfo(
        rustoptim.ASGD,
        configs=[dict(lr=0.05, t0=1, weight_decay=0.1), dict(lr=0.05)],
        reference=ReferenceASGD,
        reference_configs=ASGD_OPTIONS,
        state_keys=("step", "eta", "mu", "ax"),
    ),
    OptimizerInfo(
        rustoptim.Rprop,
        configs=[dict(lr=0.05), dict(lr=0.05, etas=(0.3, 1.5), step_sizes=(1e-3, 1.0), maximize=True)],
        reference=ReferenceRprop,
        reference_configs=RPROP_OPTIONS,
        state_keys=("step", "prev", "step_size"),
    ),
]

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
BY_NAME = {info.name: info for info in OPTIMIZERS}


def config_id(cls: type, kwargs: dict[str, Any]) -> str:
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




def param_shape(cls: type, shape: tuple[int, ...]) -> tuple[int, ...]:
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
