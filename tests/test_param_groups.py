"""Construction, param groups and the step contract, driven by two tables
(in the manner of torch's OptimizerInfo): valid configurations, and inputs that
must raise (or warn) with a given exception and message."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional, Tuple, Type

import numpy as np
import pytest
import rustoptim
from rustoptim import (
    SGD,
    Adadelta,
    Adagrad,
    Adam,
    Adamax,
    AdamW,
    DTypeError,
    NAdam,
    Parameter,
    ReadOnlyError,
    RMSprop,
    ShapeError,
)

ALL = (Adam, AdamW, SGD, Adagrad, RMSprop, Adadelta, Adamax, NAdam)
ADAMS = (Adam, AdamW)
#: Optimizers with betas range-checked as torch's Adam does (only Adam also refuses int betas).
WITH_BETAS = (Adam, AdamW, Adamax, NAdam)
WITH_EPS = tuple(cls for cls in ALL if cls is not SGD)
WITH_FUSED = (Adam, AdamW, SGD, Adagrad)
WITH_CAPTURABLE = (Adam, AdamW, RMSprop, Adadelta, Adamax, NAdam)

DEFAULT_KEYS = {
    Adam: ["lr", "betas", "eps", "weight_decay", "amsgrad", "maximize", "foreach", "capturable",
           "differentiable", "fused", "decoupled_weight_decay"],
    SGD: ["lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize", "foreach",
          "differentiable", "fused"],
    Adagrad: ["lr", "lr_decay", "eps", "weight_decay", "initial_accumulator_value", "foreach", "maximize",
              "differentiable", "fused"],
    RMSprop: ["lr", "momentum", "alpha", "eps", "centered", "weight_decay", "capturable", "foreach", "maximize",
              "differentiable"],
    Adadelta: ["lr", "rho", "eps", "weight_decay", "maximize", "capturable", "foreach", "differentiable"],
    Adamax: ["lr", "betas", "eps", "weight_decay", "foreach", "maximize", "differentiable", "capturable"],
    NAdam: ["lr", "betas", "eps", "weight_decay", "momentum_decay", "decoupled_weight_decay", "maximize", "foreach",
            "capturable", "differentiable"],
}
DEFAULT_KEYS[AdamW] = DEFAULT_KEYS[Adam]

DEFAULT_VALUES = {
    Adam: dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, maximize=False, foreach=None,
               capturable=False, differentiable=False, fused=None, decoupled_weight_decay=False),
    AdamW: dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, maximize=False,
                foreach=None, capturable=False, differentiable=False, fused=None, decoupled_weight_decay=True),
    SGD: dict(lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, maximize=False, foreach=None,
              differentiable=False, fused=None),
    Adagrad: dict(lr=1e-2, lr_decay=0, eps=1e-10, weight_decay=0, initial_accumulator_value=0, foreach=None,
                  maximize=False, differentiable=False, fused=None),
    RMSprop: dict(lr=1e-2, momentum=0, alpha=0.99, eps=1e-8, centered=False, weight_decay=0, capturable=False,
                  foreach=None, maximize=False, differentiable=False),
    Adadelta: dict(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, maximize=False, capturable=False, foreach=None,
                   differentiable=False),
    Adamax: dict(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, foreach=None, maximize=False,
                 differentiable=False, capturable=False),
    NAdam: dict(lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, momentum_decay=4e-3,
                decoupled_weight_decay=False, maximize=False, foreach=None, capturable=False, differentiable=False),
}


def param(*shape: int, dtype=np.float64) -> Parameter:
    return Parameter(np.linspace(-1.0, 1.0, int(np.prod(shape or (2, 2)))).reshape(shape or (2, 2)).astype(dtype))


# ----------------------------------------------------------- valid configs

VALID: Dict[Type, list] = {
    Adam: [
        dict(),
        dict(lr=0.01, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1),
        dict(lr=0.01, weight_decay=0.1, amsgrad=True),
        dict(lr=0.01, maximize=True, weight_decay=0.1),
        dict(lr=0.01, decoupled_weight_decay=True, weight_decay=0.1),
        dict(lr=0.01, foreach=True),
        dict(lr=0.01, fused=True),
        dict(lr=1, eps=1, weight_decay=0),  # ints accepted for lr, eps and weight decay, as in torch
        dict(lr=np.float32(0.01), betas=[np.float64(0.9), 0.99]),
    ],
    AdamW: [
        dict(),
        dict(lr=0.01, weight_decay=0.5, amsgrad=True),
        dict(lr=0.01, maximize=True),
        dict(lr=0.01, weight_decay=0),
    ],
    SGD: [
        dict(),
        dict(lr=0.1),
        dict(lr=0.1, weight_decay=0.01),
        dict(lr=0.1, momentum=0.9),
        dict(lr=0.1, momentum=0.9, dampening=0.5),
        dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
        dict(lr=0.1, momentum=0.9, maximize=True),
        dict(lr=0.05, momentum=0.5, dampening=-0.5),  # no range check on dampening, as in torch
        dict(lr=0.1, foreach=False, fused=True),
    ],
    Adagrad: [
        dict(),
        dict(lr=0.1, lr_decay=0.01),
        dict(lr=0.1, weight_decay=0.1, initial_accumulator_value=0.5),
        dict(lr=0.1, maximize=True, eps=1e-8),
        dict(lr=0.1, fused=True),
        dict(lr=0.1, foreach=True),
    ],
    RMSprop: [
        dict(),
        dict(lr=0.01, momentum=0.9),
        dict(lr=0.01, centered=True, weight_decay=0.1),
        dict(lr=0.01, alpha=0.9, momentum=0.5, centered=True, maximize=True),
        dict(lr=0.01, foreach=True),
    ],
    Adadelta: [
        dict(),
        dict(lr=0.5, rho=0.5, weight_decay=0.1),
        dict(rho=1.0, maximize=True),
        dict(rho=0),
    ],
    Adamax: [
        dict(),
        dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1),
        dict(lr=0.01, maximize=True),
        dict(betas=(0, 0.5)),  # int betas accepted, as in torch's Adamax
    ],
    NAdam: [
        dict(),
        dict(lr=0.01, weight_decay=0.1),
        dict(lr=0.01, weight_decay=0.1, decoupled_weight_decay=True),
        dict(lr=0.01, momentum_decay=0.1, maximize=True, betas=[0.8, 0.95]),
    ],
}
VALID_CASES = [(cls, kwargs) for cls, table in VALID.items() for kwargs in table]


def valid_id(case) -> str:
    cls, kwargs = case
    return f"{cls.__name__}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())})"


valid_configs = pytest.mark.parametrize("case", VALID_CASES, ids=[valid_id(c) for c in VALID_CASES])


def keeps_state(cls, group) -> bool:
    return cls is not SGD or group["momentum"] != 0


def decays(cls, group) -> bool:
    return group["weight_decay"] != 0


@valid_configs
def test_group_holds_every_hyperparameter_in_torchs_order(case):
    cls, kwargs = case
    optimizer = cls([param()], **kwargs)
    group = optimizer.param_groups[0]
    assert list(group) == ["params"] + DEFAULT_KEYS[cls]
    expected = {**DEFAULT_VALUES[cls], **kwargs}
    if "betas" in expected:
        expected["betas"] = tuple(expected["betas"])
    assert {k: group[k] for k in DEFAULT_KEYS[cls]} == expected
    for key in DEFAULT_KEYS[cls]:
        assert group[key] is optimizer.defaults[key]  # defaults are shared by reference
    if "betas" in group:
        assert type(group["betas"]) is tuple


@valid_configs
def test_steps_go_the_right_direction(case):
    """Gradient of 0.5·|w|² is w: minimizing shrinks |w|, maximize grows it."""
    cls, kwargs = case
    w = param(10, 5)
    bias = param(10)
    optimizer = cls([w, bias], **{**kwargs, "lr": 0.05})
    start = np.abs(w.data).sum() + np.abs(bias.data).sum()
    for _ in range(20):
        w.grad, bias.grad = w.data.copy(), bias.data.copy()
        optimizer.step()
    end = np.abs(w.data).sum() + np.abs(bias.data).sum()
    assert (end > start) if kwargs.get("maximize") else (end < start)


@valid_configs
def test_lr_change_takes_effect_at_next_step(case):
    cls, kwargs = case
    p = param(3, 4)
    optimizer = cls([p], **kwargs)
    for _ in range(2):
        p.grad = np.full_like(p.data, 0.5)
        optimizer.step()
    optimizer.param_groups[0]["lr"] = 0.0
    before = p.data.copy()
    p.grad = np.full_like(p.data, 0.5)
    optimizer.step()
    np.testing.assert_array_equal(p.data, before)  # lr 0: no update, decay included
    if cls is not SGD:
        assert optimizer.state[p]["step"] == 3.0  # but the step still counts
    optimizer.param_groups[0]["lr"] = 0.1
    optimizer.step()
    assert not np.array_equal(p.data, before)


@valid_configs
def test_none_grad_is_skipped_but_zero_grad_is_processed(case):
    cls, kwargs = case
    skipped, zero = param(3), param(3)
    optimizer = cls([skipped, zero], **kwargs)
    group = optimizer.param_groups[0]
    before_skipped, before_zero = skipped.data.copy(), zero.data.copy()
    zero.grad = np.zeros(3)
    for _ in range(2):
        optimizer.step()
    np.testing.assert_array_equal(skipped.data, before_skipped)
    if cls is Adagrad:  # state made with the optimizer, untouched by skipped steps
        assert optimizer.state[skipped]["step"] == 0.0
    else:
        assert skipped not in optimizer.state
    assert (zero in optimizer.state) == keeps_state(cls, group)
    if cls is not SGD:
        assert optimizer.state[zero]["step"] == 2.0
    # A zero gradient moves the param only through weight decay.
    assert (not np.array_equal(zero.data, before_zero)) == decays(cls, group)


@valid_configs
def test_step_returns_the_closures_value(case):
    cls, kwargs = case
    p = param()
    optimizer = cls([p], **kwargs)
    calls = []
    loss = object()

    def closure():
        calls.append(1)
        p.grad = np.ones_like(p.data)
        return loss

    assert optimizer.step(closure) is loss
    assert calls == [1]
    assert optimizer.step() is None


@valid_configs
def test_zero_grad(case):
    cls, kwargs = case
    a, b = param(), param()
    optimizer = cls([a, b], **kwargs)
    grad = np.ones_like(a.data)
    a.grad = grad
    optimizer.zero_grad(set_to_none=False)
    assert a.grad is grad and not grad.any() and b.grad is None
    optimizer.zero_grad()
    assert a.grad is None and b.grad is None


@valid_configs
def test_repr_lists_groups_with_sorted_keys(case):
    cls, kwargs = case
    optimizer = cls([param()], **kwargs)
    optimizer.add_param_group({"params": [param()], "lr": 0.5})
    text = repr(optimizer)
    lines = text.splitlines()
    assert lines[0] == f"{cls.__name__} ("
    assert lines[1] == "Parameter Group 0" and lines[-1] == ")"
    group_lines = lines[2 : 2 + len(DEFAULT_KEYS[cls])]
    assert group_lines == [f"    {k}: {optimizer.param_groups[0][k]}" for k in sorted(DEFAULT_KEYS[cls])]
    assert "Parameter Group 1" in lines and "    lr: 0.5" in lines
    assert "params" not in text


# ----------------------------------------------------------- error inputs


@dataclass
class ErrorCase:
    name: str
    classes: Tuple[Type, ...]
    params: Callable[[], Any]
    kwargs: Dict[str, Any] = field(default_factory=dict)
    error: Optional[Type[BaseException]] = ValueError
    match: str = ""
    warning: Optional[Type[Warning]] = None  # a warning instead of an error


def _readonly():
    a = np.zeros(3)
    a.flags.writeable = False
    return [a]


def _same_param_twice():
    p = param()
    return [p, p]


def _same_param_in_two_groups():
    p = param()
    return [{"params": p}, {"params": p}]


def _same_array_in_two_groups():
    a = np.zeros(3)
    return [{"params": [a]}, {"params": [a]}]


ERRORS = [
    # --- generic: every optimizer (torch's get_error_inputs_for_all_optims and §1.2)
    ErrorCase("single Parameter", ALL, param, error=TypeError,
              match=r"params argument given to the optimizer should be an iterable of Tensors or dicts, "
                    r"but got rustoptim\.parameter\.Parameter"),
    ErrorCase("single ndarray", ALL, lambda: np.zeros(3), error=TypeError,
              match=r"should be an iterable of Tensors or dicts, but got numpy\.ndarray"),
    ErrorCase("empty list", ALL, lambda: [], match="optimizer got an empty parameter list"),
    ErrorCase("empty generator", ALL, lambda: (p for p in []), match="optimizer got an empty parameter list"),
    ErrorCase("params None", ALL, lambda: None, error=TypeError, match="not iterable"),
    ErrorCase("duplicate in a group", ALL, _same_param_twice, error=None,
              warning=UserWarning, match=".*a parameter group with duplicate parameters.*"),
    ErrorCase("same param in two groups", ALL, _same_param_in_two_groups,
              match="some parameters appear in more than one parameter group"),
    ErrorCase("same array in two groups", ALL,
              _same_array_in_two_groups,
              match="some parameters appear in more than one parameter group"),
    ErrorCase("some params unnamed", ALL, lambda: [("weight", param()), param()],
              match=r"all optimizer params should be with/without names\. Some param names are missing"),
    ErrorCase("named group after unnamed", ALL,
              lambda: [{"params": [param()], "lr": 1e-2}, {"params": [("weight", param())]}],
              match=r"all optimizer param groups should be with/without names\. "
                    r"cannot add param group with names to the optimizer"),
    ErrorCase("unnamed group after named", ALL,
              lambda: [{"params": [("weight", param())]}, {"params": [param()]}],
              match="cannot add param group without names to the optimizer"),
    ErrorCase("set inside a group", ALL, lambda: [{"params": {param()}}], error=TypeError,
              match=r"optimizer parameters need to be organized in ordered collections, but the ordering of "
                    r"tensors in sets will change between runs\. Please use a list instead\."),
    ErrorCase("param after a group", ALL, lambda: [{"params": [param()]}, param()], error=TypeError,
              match=r"param_group must be a dict, but got <class 'rustoptim\.parameter\.Parameter'>"),
    ErrorCase("dict in a list of params", ALL, lambda: [param(), {"params": [param()]}], error=TypeError,
              match=r"optimizer can only optimize NumPy arrays and rustoptim.Parameters, but one of the params is dict; "),
    ErrorCase("a number as a param", ALL, lambda: [param(), 3.0], error=TypeError,
              match=r"optimizer can only optimize NumPy arrays and rustoptim.Parameters, but one of the params is float; "),
    ErrorCase("a list as a param", ALL, lambda: [[1.0, 2.0]], error=TypeError,
              match=r"one of the params is list; params are updated in place"),
    ErrorCase("group without params", ALL, lambda: [{"lr": 0.1}], error=KeyError, match="must have a .params. entry"),
    ErrorCase("integer array", ALL, lambda: [np.zeros(3, np.int64)], error=DTypeError,
              match="float32 or float64 array.*int64"),
    ErrorCase("float16 array", ALL, lambda: [np.zeros(3, np.float16)], error=DTypeError, match="float16"),
    ErrorCase("complex array", ALL, lambda: [np.zeros(3, np.complex128)], error=DTypeError, match="complex128"),
    ErrorCase("big-endian array", ALL, lambda: [np.zeros(3, ">f8")], error=DTypeError, match="byte order"),
    ErrorCase("read-only array", ALL, _readonly, error=ReadOnlyError, match="read-only"),
    ErrorCase("negative lr", ALL, lambda: None, dict(lr=-1), match=r"^Invalid learning rate: -1$"),
    ErrorCase("nan lr", ALL, lambda: None, dict(lr=float("nan")), match=r"^Invalid learning rate: nan$"),
    ErrorCase("array lr", ALL, lambda: None, dict(lr=np.array([1e-3, 1e-3])), error=TypeError,
              match="lr must be a real number, not a numpy.ndarray"),
    ErrorCase("0-d array lr", ALL, lambda: None, dict(lr=np.array(1e-3)), error=TypeError,
              match=r"pass float\(lr\)"),
    ErrorCase("negative weight decay", ALL, lambda: None, dict(lr=1e-2, weight_decay=-1),
              match=r"^Invalid weight_decay value: -1$"),
    ErrorCase("differentiable", ALL, lambda: None, dict(differentiable=True),
              match="differentiable=True is not supported"),
    ErrorCase("fused and foreach", WITH_FUSED, lambda: [param()], dict(fused=True, foreach=True), error=RuntimeError,
              match=r"^`fused` and `foreach` cannot be `True` together\.$"),
    ErrorCase("maximize not a bool", ALL, lambda: None, dict(maximize="yes"), error=TypeError,
              match="maximize must be a bool"),
    ErrorCase("foreach not a bool", ALL, lambda: None, dict(foreach=1), error=TypeError,
              match="foreach must be None or a bool"),
    # Unlike torch, the hyperparameters of every group are validated.
    ErrorCase("invalid group lr", ALL, lambda: [{"params": [param()], "lr": -0.5}],
              match=r"^Invalid learning rate: -0\.5$"),
    # --- Adam and AdamW (torch's optim_error_inputs_func_adam(w))
    ErrorCase("beta 0 is 1", WITH_BETAS, lambda: None, dict(lr=1e-2, betas=(1.0, 0.0)),
              match=r"^Invalid beta parameter at index 0: 1\.0$"),
    ErrorCase("beta 1 is negative", WITH_BETAS, lambda: None, dict(betas=(0.9, -0.1)),
              match=r"^Invalid beta parameter at index 1: -0\.1$"),
    ErrorCase("int betas", ADAMS, lambda: None, dict(betas=(0, 0)),
              match="^betas must be either both floats or both Tensors$"),
    ErrorCase("array beta", WITH_BETAS, lambda: None, dict(lr=1e-2, betas=(0.9, np.array(0.99))),
              match="betas must be Python floats"),
    ErrorCase("three betas", WITH_BETAS, lambda: None, dict(betas=(0.9, 0.99, 0.999)), match="betas must be a pair"),
    ErrorCase("negative eps", WITH_EPS, lambda: None, dict(eps=-1e-8), match=r"^Invalid epsilon value: -1e-08$"),
    ErrorCase("capturable", WITH_CAPTURABLE, lambda: None, dict(capturable=True), match="capturable=True is not supported"),
    ErrorCase("amsgrad not a bool", ADAMS, lambda: None, dict(amsgrad=None), error=TypeError,
              match="amsgrad must be a bool"),
    ErrorCase("AdamW with decoupled_weight_decay", (AdamW,), lambda: [param()],
              dict(decoupled_weight_decay=False), error=TypeError, match="decoupled_weight_decay"),
    # --- SGD
    ErrorCase("negative momentum", (SGD, RMSprop), lambda: None, dict(lr=1e-2, momentum=-0.5),
              match=r"^Invalid momentum value: -0\.5$"),
    ErrorCase("nesterov without momentum", (SGD,), lambda: None, dict(nesterov=True),
              match="^Nesterov momentum requires a momentum and zero dampening$"),
    ErrorCase("nesterov with dampening", (SGD,), lambda: None, dict(momentum=0.9, dampening=0.1, nesterov=True),
              match="^Nesterov momentum requires a momentum and zero dampening$"),
    ErrorCase("array dampening", (SGD,), lambda: None, dict(dampening=np.zeros(2)), error=TypeError,
              match="dampening must be a real number"),
    # --- Adagrad, RMSprop, Adadelta, Adamax, NAdam: torch's messages, in torch's order of checks
    ErrorCase("negative lr_decay", (Adagrad,), lambda: None, dict(lr_decay=-0.1), match=r"^Invalid lr_decay value: -0\.1$"),
    ErrorCase("negative initial_accumulator_value", (Adagrad,), lambda: None, dict(initial_accumulator_value=-1),
              match=r"^Invalid initial_accumulator_value value: -1$"),
    ErrorCase("Adagrad checks lr_decay before weight_decay", (Adagrad,), lambda: None,
              dict(lr_decay=-1, weight_decay=-1), match="^Invalid lr_decay value: -1$"),
    ErrorCase("Adagrad checks initial_accumulator_value before eps", (Adagrad,), lambda: None,
              dict(initial_accumulator_value=-1, eps=-1), match="^Invalid initial_accumulator_value value: -1$"),
    ErrorCase("negative alpha", (RMSprop,), lambda: None, dict(alpha=-0.5), match=r"^Invalid alpha value: -0\.5$"),
    ErrorCase("RMSprop checks eps before momentum", (RMSprop,), lambda: None, dict(eps=-1, momentum=-1),
              match="^Invalid epsilon value: -1$"),
    ErrorCase("RMSprop checks weight_decay before alpha", (RMSprop,), lambda: None, dict(weight_decay=-1, alpha=-1),
              match="^Invalid weight_decay value: -1$"),
    ErrorCase("centered not a bool", (RMSprop,), lambda: None, dict(centered=1), error=TypeError,
              match="centered must be a bool"),
    ErrorCase("rho above 1", (Adadelta,), lambda: None, dict(rho=1.5), match=r"^Invalid rho value: 1\.5$"),
    ErrorCase("negative rho", (Adadelta,), lambda: None, dict(rho=-0.1), match=r"^Invalid rho value: -0\.1$"),
    ErrorCase("nan rho", (Adadelta,), lambda: None, dict(rho=float("nan")), match=r"^Invalid rho value: nan$"),
    ErrorCase("Adadelta checks rho before eps", (Adadelta,), lambda: None, dict(rho=2, eps=-1),
              match="^Invalid rho value: 2$"),
    ErrorCase("Adamax and NAdam check eps before betas", (Adamax, NAdam), lambda: None,
              dict(eps=-1, betas=(1.0, 0.9)), match="^Invalid epsilon value: -1$"),
    ErrorCase("Adamax and NAdam check betas before weight_decay", (Adamax, NAdam), lambda: None,
              dict(betas=(0.9, 1.0), weight_decay=-1), match=r"^Invalid beta parameter at index 1: 1\.0$"),
    ErrorCase("negative momentum_decay", (NAdam,), lambda: None, dict(momentum_decay=-0.1),
              match=r"^Invalid momentum_decay value: -0\.1$"),
    ErrorCase("NAdam checks weight_decay before momentum_decay", (NAdam,), lambda: None,
              dict(weight_decay=-1, momentum_decay=-1), match="^Invalid weight_decay value: -1$"),
    ErrorCase("decoupled_weight_decay not a bool", (NAdam,), lambda: None, dict(decoupled_weight_decay="yes"),
              error=TypeError, match="decoupled_weight_decay must be a bool"),
]
ERROR_CASES = [(case, cls) for case in ERRORS for cls in case.classes]


@pytest.mark.parametrize("case,cls", ERROR_CASES, ids=[f"{cls.__name__}-{case.name}" for case, cls in ERROR_CASES])
def test_error_inputs(case, cls):
    params = case.params()
    if case.warning is not None:
        with pytest.warns(case.warning, match=case.match):
            cls(params, **case.kwargs)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(case.error, match=case.match):
            cls(params, **case.kwargs)


def test_unchecked_hyperparameters_are_accepted():
    # As in torch: eps = 0, momentum > 1 and any dampening are allowed.
    Adam([param()], eps=0)
    SGD([param()], momentum=2.0, dampening=-1.0)
    RMSprop([param()], alpha=2.0, momentum=5.0)  # only alpha >= 0 is checked
    Adagrad([param()], eps=0, lr_decay=10)
    Adamax([param()], betas=(0, 0))


@pytest.mark.parametrize("cls", ALL)
def test_hyperparameters_are_checked_before_params(cls):
    # params=None would raise TypeError; the lr check must come first (torch's order).
    with pytest.raises(ValueError, match="Invalid learning rate: -1"):
        cls(None, lr=-1)


# ------------------------------------------------------------ group semantics


def test_group_key_order_puts_user_keys_first():
    optimizer = SGD([{"params": [param()], "foo": 1}])
    assert list(optimizer.param_groups[0]) == ["params", "foo"] + DEFAULT_KEYS[SGD]
    optimizer = SGD([{"momentum": 0.5, "params": [param()]}], lr=0.1)
    assert list(optimizer.param_groups[0]) == ["momentum", "params"] + [k for k in DEFAULT_KEYS[SGD] if k != "momentum"]


def test_group_dict_is_kept_and_params_become_a_list():
    a = param()
    group = {"params": a, "lr": 0.5}
    optimizer = Adam([group])
    assert optimizer.param_groups[0] is group
    assert group["params"] == [a] and group["lr"] == 0.5 and group["betas"] == (0.9, 0.999)


def test_add_param_group_merges_defaults_and_validates():
    a, b = param(), param()
    optimizer = Adam([a], lr=0.01, betas=(0.8, 0.9))
    optimizer.add_param_group({"params": [b], "eps": 1e-3})
    group = optimizer.param_groups[1]
    assert list(group) == ["params", "eps"] + [k for k in DEFAULT_KEYS[Adam] if k != "eps"]
    assert group["lr"] == 0.01 and group["betas"] == (0.8, 0.9) and group["eps"] == 1e-3
    with pytest.raises(ValueError, match="some parameters appear in more than one parameter group"):
        optimizer.add_param_group({"params": [a]})
    with pytest.raises(ValueError, match="Invalid epsilon value: -1"):
        optimizer.add_param_group({"params": [param()], "eps": -1})
    with pytest.raises(TypeError, match="param_group must be a dict, but got <class 'list'>"):
        optimizer.add_param_group([param()])
    assert len(optimizer.param_groups) == 2
    # An empty group is allowed; a step without any gradient warns and changes nothing.
    optimizer.add_param_group({"params": []})
    with pytest.warns(rustoptim.NoGradientWarning):
        optimizer.step()


def test_top_level_set_and_generators_are_accepted():
    a, b = param(), param()
    assert set(SGD({a, b}).param_groups[0]["params"]) == {a, b}
    generator = (p for p in [a, b])
    assert SGD(generator).param_groups[0]["params"] == [a, b]


def test_named_params_are_recorded():
    a, b = param(), param()
    optimizer = Adam([("weight", a), ("bias", b)])
    group = optimizer.param_groups[0]
    assert group["params"] == [a, b] and group["param_names"] == ["weight", "bias"]
    assert optimizer.state_dict()["param_groups"][0]["param_names"] == ["weight", "bias"]
    named_arrays = SGD([("w", np.zeros(2))])
    assert named_arrays.param_groups[0]["param_names"] == ["w"]


@pytest.mark.parametrize("cls,kwargs", [(Adam, dict(lr=0.1, weight_decay=0.1)), (SGD, dict(lr=0.1, momentum=0.9))])
def test_duplicate_param_in_a_group_is_updated_twice(cls, kwargs):
    """torch's rule: a duplicate shares its state and is updated once per appearance."""
    values = np.linspace(-1, 1, 6)
    grad = np.cos(values)
    twice, other = Parameter(values.copy()), param(3)
    with pytest.warns(UserWarning, match="duplicate parameters"):
        optimizer = cls([twice, other, twice], **kwargs)
    single = Parameter(values.copy())
    reference = cls([single], **kwargs)
    for _ in range(3):
        twice.grad, other.grad, single.grad = grad, np.ones(3), grad
        optimizer.step()
        reference.step()
        reference.step()
        np.testing.assert_array_equal(twice.data, single.data)
    assert optimizer.state_dict()["param_groups"][0]["params"] == [2, 1, 2]  # torch's numbering
    assert optimizer.params == [twice, other]


def test_duplicate_empty_param_steps_twice():
    """A param without elements has no memory the alias check could see; listed
    twice, its step count still advances once per appearance."""
    empty = Parameter(np.zeros((0, 3), np.float32))
    with pytest.warns(UserWarning, match="duplicate parameters"):
        optimizer = Adam([empty, param(2), empty])
    for p in optimizer.params:
        p.grad = np.zeros_like(p.data)
    optimizer.step()
    assert optimizer.state[empty]["step"] == 2.0


def test_state_edits_between_steps_are_seen():
    """Each step reads the state as it is: a replaced or resized state array, a
    changed step count and a changed hyperparameter all count at the next step."""
    p = param(4)
    optimizer = Adam([p], lr=0.1)
    p.grad = np.ones(4)
    optimizer.step()
    state = optimizer.state[p]
    state["exp_avg"] = np.full(4, 0.5)
    state["step"] = 10.0
    optimizer.param_groups[0]["betas"] = (0.5, 0.999)
    reference = Parameter(p.data.copy())
    expected = Adam([reference], lr=0.1, betas=(0.5, 0.999))
    reference.grad = np.ones(4)
    expected.state[reference] = dict(step=10.0, exp_avg=np.full(4, 0.5), exp_avg_sq=state["exp_avg_sq"].copy())
    optimizer.step()
    expected.step()
    np.testing.assert_array_equal(p.data, reference.data)
    assert state["step"] == 11.0
    state["exp_avg_sq"].resize((5,), refcheck=False)
    with pytest.raises(ShapeError, match="state 'exp_avg_sq' of param 0 of param_groups\\[0\\]"):
        optimizer.step()
    state["exp_avg_sq"] = np.zeros(4)
    state["exp_avg"].setflags(write=False)
    with pytest.raises(ReadOnlyError, match="state 'exp_avg' of param 0"):
        optimizer.step()
    assert state["step"] == 11.0


def test_same_array_maps_to_one_parameter():
    a = np.zeros(3)
    with pytest.warns(UserWarning, match="duplicate parameters"):
        optimizer = SGD([a, a])
    first, second = optimizer.param_groups[0]["params"]
    assert first is second and first.data is a
    p = Parameter(np.zeros(2))
    with pytest.raises(ValueError, match="more than one parameter group"):
        SGD([{"params": [p]}, {"params": [p.data]}])


def test_hyperparameters_are_reread_every_step():
    p = Parameter(np.zeros(2))
    optimizer = SGD([p], lr=1.0)
    p.grad = np.ones(2)
    optimizer.step()
    optimizer.param_groups[0].update(lr=0.5, weight_decay=1.0, maximize=True)
    optimizer.step()
    # g = -1 + 1.0·(-1) = -2 ; p = -1 - 0.5·(-2) = 0
    np.testing.assert_array_equal(p.data, [0.0, 0.0])


def test_groups_with_different_hyperparameters():
    a, b = Parameter(np.ones(2)), Parameter(np.ones(2))
    optimizer = SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1)
    a.grad = b.grad = np.ones(2)
    optimizer.step()
    np.testing.assert_array_equal(a.data, 0.9)
    np.testing.assert_array_equal(b.data, 0.5)


# --------------------------------------------------------------- Parameter


def test_parameter_wraps_the_callers_array():
    a = np.zeros((2, 3), np.float32, order="F")
    p = Parameter(a)
    assert p.data is a and p.grad is None
    assert repr(p) == "Parameter(shape=(2, 3), dtype=float32, grad=None)"
    p.grad = np.ones((2, 3), np.float32)
    assert repr(p) == "Parameter(shape=(2, 3), dtype=float32, grad=set)"
    with pytest.raises(AttributeError):
        p.other = 1  # __slots__


@pytest.mark.parametrize(
    "value,error,match",
    [
        ([1.0, 2.0], DTypeError, "must be a numpy.ndarray.*got list"),
        (np.zeros(2, np.int32), DTypeError, "int32"),
        (np.zeros(2, np.float16), DTypeError, "float16"),
        (np.zeros(2, "<f4").astype(">f4"), DTypeError, "byte order"),
        (np.broadcast_to(np.zeros(1), (3,)), ReadOnlyError, "read-only"),
    ],
    ids=["list", "int32", "float16", "big-endian", "broadcast view"],
)
def test_parameter_rejects(value, error, match):
    with pytest.raises(error, match=match):
        Parameter(value)
    assert issubclass(error, rustoptim.RustoptimError)
