"""rustoptim.lr_scheduler: torch 2.15's schedules (tests/golden/ext), exact resume, bad input.

Every schedule case recorded from torch runs here with real optimizer steps:
the lrs (and the momentum or beta1 CyclicLR/OneCycleLR cycle) after every step,
``get_last_lr()`` and the state dict are compared with torch's. The resume tests
stop each case after every step, save the state dicts with ``rustoptim.save``,
resume in a new optimizer and scheduler and require the continued run to equal
the uninterrupted one bit for bit, from the lr in effect right after the load on.
"""

from __future__ import annotations

import copy
import io
import math
import warnings
from typing import Any, Callable

import numpy as np
import pytest

import rustoptim
from golden_ext import arrays, cases
from rustoptim import lr_scheduler as S
from rustoptim.errors import StateDictError

SCHEDULE_CASES = cases("schedule")
OPTIMIZERS = {"SGD": rustoptim.SGD, "Adam": rustoptim.Adam, "AdamW": rustoptim.AdamW}
#: What rustoptim adds to torch's state dicts (see rustoptim/lr_scheduler/_base.py).
EXTRA_KEYS = ("_group_lrs", "_group_momentums")


def case_id(case: dict) -> str:
    return case["name"]


# ------------------------------------------------------------------ building


def make_optimizer(case: dict, optimizer: str, params: list[np.ndarray]) -> rustoptim.Optimizer:
    """The case's optimizer with one param group per recorded lr; another
    optimizer than the recorded one gets a momentum (SGD) so that momentum
    cycling has something to drive."""
    if optimizer == case["optimizer"]:
        kwargs = dict(case["optimizer_kwargs"])
    else:
        kwargs = {"momentum": 0.9} if optimizer == "SGD" else {}
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    groups = [{"params": [p], "lr": lr} for p, lr in zip(params, case["group_lrs"])]
    return OPTIMIZERS[optimizer](groups, **kwargs)


def make_scheduler(case: dict, opt: rustoptim.Optimizer) -> S.LRScheduler:
    def make(name: str, kwargs: dict) -> S.LRScheduler:
        kwargs = dict(kwargs)
        if name in ("LambdaLR", "MultiplicativeLR"):
            kwargs["lr_lambda"] = eval("lambda epoch: " + case["lambda_formula"])
        return getattr(S, name)(opt, **kwargs)

    name, kwargs = case["scheduler"], case["scheduler_kwargs"]
    if name == "SequentialLR":
        inner = [make(n, k) for n, k in kwargs["schedulers"]]
        return S.SequentialLR(opt, inner, milestones=kwargs["milestones"])
    if name == "ChainedScheduler":
        inner = [make(n, k) for n, k in kwargs["schedulers"]]
        return S.ChainedScheduler(inner, optimizer=opt)
    return make(name, kwargs)


def build(case: dict, optimizer: str | None = None):
    params = [np.zeros(2) for _ in case["group_lrs"]]
    opt = make_optimizer(case, optimizer or case["optimizer"], params)
    return params, opt, make_scheduler(case, opt)


def advance(case: dict, params: list[np.ndarray], opt: Any, sched: Any, t: int) -> None:
    """Step ``t``: an optimizer step (gradients that change with t), then the scheduler's."""
    opt.step(grads=[np.array([0.5 - 0.1 * t, 1.0 + 0.01 * i]) for i in range(len(params))])
    if case["metrics"] is not None:
        sched.step(case["metrics"][t])
    elif case["epochs"] is not None:
        sched.step(case["epochs"][t])
    else:
        sched.step()


def snapshot(params: list[np.ndarray], opt: Any, sched: Any) -> tuple:
    """Everything a continued run must reproduce: every group's hyperparameters
    (lr, momentum, betas, initial_lr, ...), the params' bits and get_last_lr()."""
    groups = [{k: v for k, v in group.items() if k != "params"} for group in opt.param_groups]
    return groups, [p.tobytes() for p in params], sched.get_last_lr()


# ------------------------------------------------------------- torch's numbers


def _from_json(value: Any) -> Any:
    """A value of a recorded torch state dict as torch had it (JSON wrote inf as "inf")."""
    if isinstance(value, str) and value in ("inf", "-inf", "nan"):
        return float(value)
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _from_json(v) for k, v in value.items()}
    return value


def _as_json_keys(value: Any) -> Any:
    """Our state dict with dict keys as JSON wrote them (str)."""
    if isinstance(value, dict):
        return {str(k): _as_json_keys(v) for k, v in value.items() if k not in EXTRA_KEYS}
    if isinstance(value, (list, tuple)):
        return [_as_json_keys(v) for v in value]
    return value


def assert_same_state(ours: Any, torch_value: Any, where: str) -> None:
    """Same keys in the same order, numbers within 1e-12 relative, the rest equal."""
    if isinstance(torch_value, dict):
        assert isinstance(ours, dict), where
        assert list(ours) == list(torch_value), f"{where}: keys {list(ours)} != torch's {list(torch_value)}"
        for key in torch_value:
            assert_same_state(ours[key], torch_value[key], f"{where}[{key!r}]")
    elif isinstance(torch_value, list):
        assert isinstance(ours, list) and len(ours) == len(torch_value), f"{where}: {ours!r} != {torch_value!r}"
        for i, (a, b) in enumerate(zip(ours, torch_value)):
            assert_same_state(a, b, f"{where}[{i}]")
    elif isinstance(torch_value, float) and not isinstance(ours, bool):
        assert ours == pytest.approx(torch_value, rel=1e-12, abs=0), f"{where}: {ours!r} != torch's {torch_value!r}"
    else:
        assert type(ours) is type(torch_value) and ours == torch_value, f"{where}: {ours!r} != torch's {torch_value!r}"


@pytest.mark.parametrize("case", SCHEDULE_CASES, ids=case_id)
def test_matches_torch(case: dict) -> None:
    expected = arrays(case)
    params, opt, sched = build(case)

    def check(t: int) -> None:
        lrs = [group["lr"] for group in opt.param_groups]
        np.testing.assert_allclose(lrs, expected[f"lr{t}"], rtol=1e-12, atol=0, err_msg=f"lr after {t} steps")
        if f"momentum{t}" in expected:
            momentums = [group["momentum"] for group in opt.param_groups]
            np.testing.assert_allclose(momentums, expected[f"momentum{t}"], rtol=1e-12, atol=0, err_msg=f"momentum{t}")
        if f"beta1_{t}" in expected:
            beta1s = [group["betas"][0] for group in opt.param_groups]
            np.testing.assert_allclose(beta1s, expected[f"beta1_{t}"], rtol=1e-12, atol=0, err_msg=f"beta1 {t}")

    check(0)
    for t in range(case["steps"]):
        advance(case, params, opt, sched, t)
        check(t + 1)
    assert sched.get_last_lr() == pytest.approx(case["last_lr"], rel=1e-12, abs=0)
    assert_same_state(_as_json_keys(sched.state_dict()), _from_json(case["torch_state_dict"]), "state_dict()")


def test_every_scheduler_is_recorded() -> None:
    recorded = {case["scheduler"] for case in SCHEDULE_CASES}
    assert recorded == set(S.__all__) - {"LRScheduler"}


# ----------------------------------------------------------------- resuming


#: The orders of rebuilding: torch's documented pattern first, then the order
#: torch's LRScheduler docstring recommends, then loading the scheduler first.
LOAD_ORDERS = (
    "load optimizer, build, load scheduler",
    "build, load optimizer, load scheduler",
    "build, load scheduler, load optimizer",
)


def _resume(case: dict, optimizer: str, checkpoint: dict, params: list[np.ndarray], order: str):
    """A new optimizer and scheduler on ``params``, loaded from ``checkpoint``."""
    fresh = [p.copy() for p in params]
    opt = make_optimizer(case, optimizer, fresh)
    if order == LOAD_ORDERS[0]:
        opt.load_state_dict(checkpoint["optimizer"])
        sched = make_scheduler(case, opt)
        sched.load_state_dict(checkpoint["scheduler"])
    elif order == LOAD_ORDERS[1]:
        sched = make_scheduler(case, opt)
        opt.load_state_dict(checkpoint["optimizer"])
        sched.load_state_dict(checkpoint["scheduler"])
    else:
        sched = make_scheduler(case, opt)
        sched.load_state_dict(checkpoint["scheduler"])
        opt.load_state_dict(checkpoint["optimizer"])
    return fresh, opt, sched


def _save_and_load(opt: Any, sched: Any) -> dict:
    buffer = io.BytesIO()
    rustoptim.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, buffer)
    buffer.seek(0)
    return rustoptim.load(buffer)


def _check_resume_everywhere(
    case: dict, optimizer: str, order: str, edit: Callable[[dict], dict] = lambda s: s
) -> None:
    params, opt, sched = build(case, optimizer)
    reference = [snapshot(params, opt, sched)]
    for t in range(case["steps"]):
        advance(case, params, opt, sched, t)
        reference.append(snapshot(params, opt, sched))

    for stop in range(case["steps"]):
        params, opt, sched = build(case, optimizer)
        for t in range(stop):
            advance(case, params, opt, sched, t)
        checkpoint = _save_and_load(opt, sched)
        checkpoint["scheduler"] = edit(checkpoint["scheduler"])
        params, opt, sched = _resume(case, optimizer, checkpoint, params, order)
        assert snapshot(params, opt, sched) == reference[stop], f"right after resuming at step {stop}"
        for t in range(stop, case["steps"]):
            advance(case, params, opt, sched, t)
            assert snapshot(params, opt, sched) == reference[t + 1], f"resumed at {stop}, step {t + 1}"


@pytest.mark.parametrize("optimizer", ["SGD", "Adam"])
@pytest.mark.parametrize("case", SCHEDULE_CASES, ids=case_id)
def test_resume_continues_exactly(case: dict, optimizer: str) -> None:
    """torch's pattern (load the optimizer, build the scheduler, load the
    scheduler) at every step, through rustoptim.save/load: bit for bit."""
    _check_resume_everywhere(case, optimizer, LOAD_ORDERS[0])


@pytest.mark.parametrize("order", LOAD_ORDERS[1:])
@pytest.mark.parametrize("case", SCHEDULE_CASES, ids=case_id)
def test_resume_in_other_orders(case: dict, order: str) -> None:
    """The other orders of loading are exact too."""
    _check_resume_everywhere(case, case["optimizer"], order)


def _torch_layout(state: dict) -> dict:
    """A state dict as torch writes it: without rustoptim's extra entries."""
    state = {k: v for k, v in state.items() if k not in EXTRA_KEYS}
    if "_schedulers" in state:
        state["_schedulers"] = [_torch_layout(s) for s in state["_schedulers"]]
    return state


@pytest.mark.parametrize("case", SCHEDULE_CASES, ids=case_id)
def test_resume_from_torch_layout(case: dict) -> None:
    """Without '_group_lrs', the lrs come back from '_last_lr' (and a cycled
    momentum from the schedule at last_epoch): still exact."""
    _check_resume_everywhere(case, case["optimizer"], LOAD_ORDERS[0], edit=_torch_layout)


def test_linear_warmup_resumes_where_torch_does_not() -> None:
    """The issue's example: torch resumes this LinearLR at 0.0085 instead of 0.085."""
    w = np.zeros(2)
    opt = rustoptim.SGD([w], lr=0.1)
    sched = S.LinearLR(opt, start_factor=0.1, total_iters=10)
    for _ in range(7):
        opt.step(grads=[np.ones(2)])
        sched.step()
    lr = opt.param_groups[0]["lr"]
    assert lr == pytest.approx(0.073)
    saved = _save_and_load(opt, sched)
    opt2 = rustoptim.SGD([w.copy()], lr=0.1)
    opt2.load_state_dict(saved["optimizer"])
    sched2 = S.LinearLR(opt2, start_factor=0.1, total_iters=10)
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.0073)  # the constructor's step, as in torch
    sched2.load_state_dict(saved["scheduler"])
    assert opt2.param_groups[0]["lr"] == lr
    sched.step()
    sched2.step()
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"] == sched2.get_last_lr()[0]


def test_resume_with_lbfgs() -> None:
    w = np.array([1.0, -1.0])
    opt = rustoptim.LBFGS([w], lr=1.0)
    sched = S.ExponentialLR(opt, gamma=0.5)
    for _ in range(3):
        opt.step(lambda: (float(w @ w), 2 * w))
        sched.step()
    assert opt.param_groups[0]["lr"] == 0.125
    opt2 = rustoptim.LBFGS([w.copy()], lr=1.0)
    opt2.load_state_dict(opt.state_dict())
    sched2 = S.ExponentialLR(opt2, gamma=0.5)
    sched2.load_state_dict(sched.state_dict())
    sched.step()
    sched2.step()
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"] == 0.0625


# --------------------------------------------------- conventions and behaviour


def sgd(groups: int = 1, **kwargs: Any) -> rustoptim.SGD:
    return rustoptim.SGD([{"params": [np.zeros(2)], "lr": 0.1 * (i + 1)} for i in range(groups)], **kwargs)


def test_constructor_conventions() -> None:
    opt = sgd(2)
    sched = S.StepLR(opt, step_size=2)
    assert [g["initial_lr"] for g in opt.param_groups] == [0.1, 0.2]
    assert sched.base_lrs == [0.1, 0.2] and sched.last_epoch == 0 and sched._step_count == 1
    # a second scheduler keeps the first one's initial_lr
    opt.param_groups[0]["lr"] = 0.5
    S.ExponentialLR(opt, gamma=0.5)
    assert opt.param_groups[0]["initial_lr"] == 0.1
    assert rustoptim.lr_scheduler is S and "lr_scheduler" in rustoptim.__all__


def test_get_last_lr_and_state_dict_are_copies() -> None:
    opt = sgd()
    sched = S.MultiStepLR(opt, milestones=[1, 1, 3])
    sched.get_last_lr().append(1.0)
    state = sched.state_dict()
    state["milestones"][7] = 1
    state["base_lrs"][0] = 5.0
    assert sched.get_last_lr() == [0.1] and sched.milestones == {1: 2, 3: 1} and sched.base_lrs == [0.1]
    sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.001)


def test_warnings_as_in_torch() -> None:
    opt = sgd()
    sched = S.StepLR(opt, step_size=2)
    with pytest.warns(UserWarning, match="get_last_lr"):
        sched.get_lr()
    with pytest.warns(UserWarning, match="epoch parameter"):
        sched.step(4)
    assert sched.last_epoch == 4 and opt.param_groups[0]["lr"] == pytest.approx(0.001)  # closed form
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sched.step()


def test_cyclic_switches_sgd_momentum_on_and_cycles_adam_beta1() -> None:
    opt = sgd()
    S.CyclicLR(opt, base_lr=0.01, max_lr=0.1, step_size_up=2)
    assert opt.param_groups[0]["momentum"] == 0.9 and opt.param_groups[0]["lr"] == 0.01
    adam = rustoptim.Adam([np.zeros(2)], lr=0.1, betas=(0.5, 0.99))
    sched = S.OneCycleLR(adam, max_lr=0.1, total_steps=4)
    assert adam.param_groups[0]["betas"] == (0.95, 0.99)
    for _ in range(4):
        adam.step(grads=[np.ones(2)])
        sched.step()
    with pytest.raises(ValueError, match="Tried to step 5 times. The specified number of total steps is 4"):
        sched.step()


def test_warm_restarts_fractional_epochs_and_steps_interleave() -> None:
    opt = sgd()
    sched = S.CosineAnnealingWarmRestarts(opt, T_0=2, T_mult=2)
    sched.step(0.5)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05 * (1 + math.cos(math.pi / 4)))
    sched.step(3.0)  # second period (length 4), one step in
    assert (sched.T_i, sched.T_cur, sched.last_epoch) == (4, 1.0, 3)
    sched.step()
    assert sched.T_cur == 2.0 and sched.last_epoch == 4


def test_plateau_accepts_arrays_and_numpy_scalars() -> None:
    opt = sgd()
    sched = S.ReduceLROnPlateau(opt, patience=0)
    sched.step(np.float32(1.0))
    sched.step(np.array([2.0]))
    assert opt.param_groups[0]["lr"] == pytest.approx(0.01)


# -------------------------------------------------------------- bad input


def _lbfgs() -> rustoptim.LBFGS:
    return rustoptim.LBFGS([np.zeros(2)])


def _one(x: Any) -> float:
    return 1.0


CONSTRUCTOR_ERRORS = [
    ("not an optimizer", lambda opt: S.StepLR(object(), 2), TypeError, "optimizer: object is not an Optimizer"),
    ("last_epoch type", lambda opt: S.StepLR(opt, 2, last_epoch=1.5), TypeError, "last_epoch must be an integer"),
    (
        "last_epoch no initial_lr",
        lambda opt: S.StepLR(opt, 2, last_epoch=3),
        ValueError,
        r"param 'initial_lr' is not specified in param_groups\[0\]",
    ),
    ("step_size", lambda opt: S.StepLR(opt, 0), ValueError, "step_size must be an integer >= 1, got 0"),
    ("gamma type", lambda opt: S.StepLR(opt, 2, gamma="0.1"), TypeError, "gamma must be a real number"),
    ("gamma nan", lambda opt: S.ExponentialLR(opt, float("nan")), ValueError, "gamma must be a number, got nan"),
    ("milestones str", lambda opt: S.MultiStepLR(opt, "12"), TypeError, "milestones must be a list"),
    ("milestone float", lambda opt: S.MultiStepLR(opt, [1, 2.5]), TypeError, r"milestones\[1\] must be an integer"),
    (
        "milestone negative",
        lambda opt: S.MultiStepLR(opt, [-1]),
        ValueError,
        r"milestones\[0\] must be an integer >= 0",
    ),
    (
        "constant factor",
        lambda opt: S.ConstantLR(opt, factor=1.5),
        ValueError,
        "Constant multiplicative factor expected to be between 0 and 1.",
    ),
    (
        "constant total_iters",
        lambda opt: S.ConstantLR(opt, total_iters=0),
        ValueError,
        "total_iters must be an integer >= 1",
    ),
    (
        "linear start",
        lambda opt: S.LinearLR(opt, start_factor=0),
        ValueError,
        "Starting multiplicative factor expected to be greater than 0",
    ),
    (
        "linear end",
        lambda opt: S.LinearLR(opt, end_factor=1.5),
        ValueError,
        "Ending multiplicative factor expected to be between 0 and 1.",
    ),
    ("linear type", lambda opt: S.LinearLR(opt, start_factor=None), TypeError, "start_factor must be a real number"),
    ("polynomial power", lambda opt: S.PolynomialLR(opt, power=-1), ValueError, "power must be >= 0.0"),
    ("cosine T_max", lambda opt: S.CosineAnnealingLR(opt, T_max=0), ValueError, "T_max must be > 0.0"),
    (
        "restarts T_0",
        lambda opt: S.CosineAnnealingWarmRestarts(opt, T_0=0),
        ValueError,
        "Expected positive integer T_0, but got 0",
    ),
    (
        "restarts T_mult",
        lambda opt: S.CosineAnnealingWarmRestarts(opt, 2, T_mult=1.5),
        ValueError,
        "Expected integer T_mult >= 1, but got 1.5",
    ),
    (
        "restarts eta_min",
        lambda opt: S.CosineAnnealingWarmRestarts(opt, 2, eta_min="0"),
        ValueError,
        "Expected float or int eta_min",
    ),
    ("lambda count", lambda opt: S.LambdaLR(opt, [_one, _one]), ValueError, "Expected 1 lr_lambdas, but got 2"),
    ("lambda type", lambda opt: S.LambdaLR(opt, 0.5), TypeError, "lr_lambda should be a function, but got float"),
    (
        "multiplicative type",
        lambda opt: S.MultiplicativeLR(opt, [None]),
        TypeError,
        r"lr_lambda\[0\] should be a function, but got NoneType",
    ),
    (
        "cyclic base_lr count",
        lambda opt: S.CyclicLR(opt, [0.1, 0.2], 1.0),
        ValueError,
        "base_lr must have the same length as optimizer.param_groups. base_lr has 2 values, param_groups has 1.",
    ),
    ("cyclic max_lr type", lambda opt: S.CyclicLR(opt, 0.1, "1"), TypeError, "max_lr must be a real number"),
    (
        "cyclic mode",
        lambda opt: S.CyclicLR(opt, 0.1, 1.0, mode="tri"),
        ValueError,
        "mode is invalid and scale_fn is None",
    ),
    (
        "cyclic step_size_up",
        lambda opt: S.CyclicLR(opt, 0.1, 1.0, step_size_up=0),
        ValueError,
        "step_size_up must be > 0.0",
    ),
    (
        "cyclic scale_fn",
        lambda opt: S.CyclicLR(opt, 0.1, 1.0, scale_fn=2.0),
        TypeError,
        "scale_fn should be a function",
    ),
    (
        "cyclic scale_mode",
        lambda opt: S.CyclicLR(opt, 0.1, 1.0, scale_fn=_one, scale_mode="epochs"),
        ValueError,
        "scale_mode must be one of",
    ),
    (
        "cyclic no momentum",
        lambda opt: S.CyclicLR(_lbfgs(), 0.1, 1.0),
        ValueError,
        "optimizer must support momentum or beta1",
    ),
    (
        "onecycle total_steps",
        lambda opt: S.OneCycleLR(opt, 0.1, total_steps=0),
        ValueError,
        "Expected positive integer total_steps, but got 0",
    ),
    (
        "onecycle no length",
        lambda opt: S.OneCycleLR(opt, 0.1),
        ValueError,
        r"You must define either total_steps OR \(epochs AND steps_per_epoch\)",
    ),
    (
        "onecycle epochs",
        lambda opt: S.OneCycleLR(opt, 0.1, epochs=0, steps_per_epoch=3),
        ValueError,
        "Expected positive integer epochs, but got 0",
    ),
    (
        "onecycle pct_start",
        lambda opt: S.OneCycleLR(opt, 0.1, total_steps=9, pct_start=1.5),
        ValueError,
        "Expected float between 0 and 1 pct_start, but got 1.5",
    ),
    (
        "onecycle anneal",
        lambda opt: S.OneCycleLR(opt, 0.1, total_steps=9, anneal_strategy="exp"),
        ValueError,
        "anneal_strategy must be one of 'cos' or 'linear', instead got exp",
    ),
    (
        "onecycle div_factor",
        lambda opt: S.OneCycleLR(opt, 0.1, total_steps=9, div_factor=0),
        ValueError,
        "div_factor must be > 0.0",
    ),
    (
        "onecycle three_phase",
        lambda opt: S.OneCycleLR(opt, 0.1, total_steps=9, three_phase=1),
        TypeError,
        "three_phase must be a bool",
    ),
    (
        "onecycle zero-length phase",
        lambda opt: S.OneCycleLR(opt, 0.1, total_steps=10, pct_start=0.1),
        ValueError,
        "zero length",
    ),
    (
        "onecycle no momentum",
        lambda opt: S.OneCycleLR(_lbfgs(), 0.1, total_steps=9),
        ValueError,
        "optimizer must support momentum or beta1",
    ),
    ("plateau factor", lambda opt: S.ReduceLROnPlateau(opt, factor=1.0), ValueError, r"Factor should be < 1\.0\."),
    ("plateau negative factor", lambda opt: S.ReduceLROnPlateau(opt, factor=-0.5), ValueError, "factor must be >= 0.0"),
    ("plateau mode", lambda opt: S.ReduceLROnPlateau(opt, mode="avg"), ValueError, "mode avg is unknown!"),
    (
        "plateau threshold_mode",
        lambda opt: S.ReduceLROnPlateau(opt, threshold_mode="x"),
        ValueError,
        "threshold mode x is unknown!",
    ),
    (
        "plateau min_lr count",
        lambda opt: S.ReduceLROnPlateau(opt, min_lr=[0.1, 0.2]),
        ValueError,
        "expected 1 min_lrs, got 2",
    ),
    (
        "plateau patience",
        lambda opt: S.ReduceLROnPlateau(opt, patience=-1),
        ValueError,
        "patience must be an integer >= 0",
    ),
    (
        "swalr strategy",
        lambda opt: S.SWALR(opt, 0.01, anneal_strategy="exp"),
        ValueError,
        "anneal_strategy must be one of 'cos' or 'linear', instead got exp",
    ),
    (
        "swalr anneal_epochs",
        lambda opt: S.SWALR(opt, 0.01, anneal_epochs=-1),
        ValueError,
        "anneal_epochs must be equal or greater than 0, got -1",
    ),
    ("swalr swa_lr", lambda opt: S.SWALR(opt, "0.01"), TypeError, "swa_lr must be a real number"),
    (
        "sequential empty",
        lambda opt: S.SequentialLR(opt, [], []),
        ValueError,
        "SequentialLR expects at least one scheduler, but got no scheduler.",
    ),
    (
        "sequential milestones count",
        lambda opt: S.SequentialLR(opt, [S.StepLR(opt, 2), S.ExponentialLR(opt, 0.9)], []),
        ValueError,
        "Sequential Schedulers expects number of schedulers provided to be one more than the number of milestone",
    ),
    (
        "sequential milestones order",
        lambda opt: S.SequentialLR(opt, [S.StepLR(opt, 2)] * 3, [4, 2]),
        ValueError,
        "milestones must be increasing",
    ),
    (
        "sequential other optimizer",
        lambda opt: S.SequentialLR(opt, [S.StepLR(sgd(), 2)], []),
        ValueError,
        "SequentialLR expects all schedulers to belong to the same optimizer",
    ),
    (
        "sequential plateau",
        lambda opt: S.SequentialLR(opt, [S.ReduceLROnPlateau(opt)], []),
        ValueError,
        "SequentialLR does not support `ReduceLROnPlateau`",
    ),
    (
        "sequential not a scheduler",
        lambda opt: S.SequentialLR(opt, [object()], []),
        TypeError,
        "SequentialLR at index 0 should have `optimizer` as its attribute.",
    ),
    (
        "sequential nested later",
        lambda opt: S.SequentialLR(opt, [S.StepLR(opt, 2), S.ChainedScheduler([S.StepLR(opt, 3)])], [2]),
        ValueError,
        r"schedulers\[1\] is a ChainedScheduler",
    ),
    (
        "chained empty",
        lambda opt: S.ChainedScheduler([]),
        ValueError,
        "ChainedScheduler expects at least one scheduler to be chained",
    ),
    (
        "chained plateau",
        lambda opt: S.ChainedScheduler([S.ReduceLROnPlateau(opt)]),
        ValueError,
        "ChainedScheduler does not support",
    ),
]


@pytest.mark.parametrize("name, make, error, message", CONSTRUCTOR_ERRORS, ids=[c[0] for c in CONSTRUCTOR_ERRORS])
def test_constructor_errors(name: str, make: Callable, error: type, message: str) -> None:
    opt = sgd(momentum=0.5)
    before = copy.deepcopy([{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups])
    with pytest.raises(error, match=message):
        make(opt)
    # The inner schedulers a composite case builds first may change the groups; nothing else does.
    if not name.startswith(("sequential", "chained")):
        assert [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups] == before


def test_failed_constructor_changes_nothing() -> None:
    opt = sgd(2, momentum=0.5)
    before = copy.deepcopy([{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups])
    with pytest.raises(ValueError, match="zero length"):
        S.OneCycleLR(opt, 0.1, total_steps=10, pct_start=0.1)  # writes initial_lr, max_lr, ... then fails
    with pytest.raises(ZeroDivisionError):
        S.LambdaLR(opt, lambda e: 1 / e)
    assert [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups] == before


def _state(opt: Any, sched: Any) -> tuple:
    return copy.deepcopy([{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]), sched.state_dict()


STEP_ERRORS = [
    ("epoch negative", lambda opt: S.StepLR(opt, 2), lambda s: s.step(-1), ValueError, "epoch must be an integer >= 0"),
    ("epoch float", lambda opt: S.StepLR(opt, 2), lambda s: s.step(1.5), TypeError, "epoch must be an integer"),
    (
        "restarts negative epoch",
        lambda opt: S.CosineAnnealingWarmRestarts(opt, 2),
        lambda s: s.step(-1),
        ValueError,
        "Expected non-negative epoch, but got -1",
    ),
    (
        "lambda raises",
        lambda opt: S.LambdaLR(opt, lambda e: 1 / (3 - e)),
        lambda s: [s.step() for _ in range(3)],
        ZeroDivisionError,
        "division by zero",
    ),
    (
        "lambda returns str",
        lambda opt: S.MultiplicativeLR(opt, lambda e: "0.5"),
        lambda s: s.step(),
        TypeError,
        r"lr_lambda for param_groups\[0\] returned '0.5' at epoch 1",
    ),
    (
        "scale_fn returns None",
        lambda opt: S.CyclicLR(opt, 0.1, 1.0, scale_fn=lambda x: None if x > 1 else 1.0, scale_mode="iterations"),
        lambda s: [s.step() for _ in range(3)],
        TypeError,
        r"scale_fn\(2\) must be a real number",
    ),
    (
        "onecycle past the end",
        lambda opt: S.OneCycleLR(opt, 0.1, total_steps=3),
        lambda s: [s.step() for _ in range(4)],
        ValueError,
        "Tried to step 4 times. The specified number of total steps is 3",
    ),
    (
        "constant factor 0",
        lambda opt: S.ConstantLR(opt, factor=0.0, total_iters=2),
        lambda s: [s.step() for _ in range(2)],
        ValueError,
        "factor=0 cannot restore the lr",
    ),
    (
        "plateau metric str",
        lambda opt: S.ReduceLROnPlateau(opt),
        lambda s: s.step("0.5"),
        TypeError,
        "metrics must be a real number",
    ),
    (
        "plateau metric array",
        lambda opt: S.ReduceLROnPlateau(opt),
        lambda s: s.step(np.ones(3)),
        TypeError,
        r"shape \(3,\)",
    ),
    (
        "plateau added group",
        lambda opt: S.ReduceLROnPlateau(opt, min_lr=[0.0], patience=0),
        lambda s: (s.optimizer.add_param_group({"params": [np.zeros(1)]}), s.step(1.0), s.step(2.0)),
        ValueError,
        "The number of param groups in the `optimizer` \\(2\\) differs",
    ),
    (
        "chained second fails",
        lambda opt: S.ChainedScheduler([S.ExponentialLR(opt, 0.5), S.MultiplicativeLR(opt, lambda e: [e])]),
        lambda s: s.step(),
        TypeError,
        "returned \\[1\\]",
    ),
    (
        "sequential later fails",
        lambda opt: S.SequentialLR(opt, [S.ExponentialLR(opt, 0.5), S.LambdaLR(opt, lambda e: 1 / (e - 1))], [2]),
        lambda s: [s.step() for _ in range(3)],
        ZeroDivisionError,
        "division by zero",
    ),
]


@pytest.mark.parametrize("make, act, error, message", [c[1:] for c in STEP_ERRORS], ids=[c[0] for c in STEP_ERRORS])
def test_step_errors_change_nothing(make: Callable, act: Callable, error: type, message: str) -> None:
    opt = sgd(momentum=0.5)
    sched = make(opt)
    done = []

    def act_recording() -> None:
        # Multi-step actions: remember the state before the step that fails.
        original_step = sched.step

        def step(*args: Any) -> None:
            done.append(_state(opt, sched))
            original_step(*args)

        sched.step = step  # type: ignore[method-assign]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                act(sched)
        finally:
            del sched.step

    with pytest.raises(error, match=message):
        act_recording()
    assert _state(opt, sched) == done[-1]


def _stepped(make: Callable, steps: int = 3):
    opt = sgd(momentum=0.5)
    sched = make(opt)
    for _ in range(steps):
        sched.step()
    return opt, sched


STATE_DICT_ERRORS = [
    ("not a dict", lambda s, sd: [1, 2], "a StepLR state dict must be a dict, got list"),
    (
        "missing entry",
        lambda s, sd: {k: v for k, v in sd.items() if k != "gamma"},
        r"StepLR state dict has no \['gamma'\] entries",
    ),
    ("unknown entry", lambda s, sd: {**sd, "momentum": 0.9}, r"unknown entries \['momentum'\]"),
    ("step_size type", lambda s, sd: {**sd, "step_size": "2"}, "'step_size' must be an integer"),
    ("last_epoch", lambda s, sd: {**sd, "last_epoch": -5}, "'last_epoch' must be an integer >= -1"),
    (
        "base_lrs count",
        lambda s, sd: {**sd, "base_lrs": [0.1, 0.2]},
        r"'base_lrs' must hold 1 values \(one per param group\), got 2",
    ),
    ("base_lrs value", lambda s, sd: {**sd, "base_lrs": [None]}, r"'base_lrs'\[0\] must be a real number"),
    ("group lrs", lambda s, sd: {**sd, "_group_lrs": "0.1"}, "'_group_lrs' must be a list"),
    ("flag", lambda s, sd: {**sd, "_is_initial": 0}, "'_is_initial' must be a bool"),
]


@pytest.mark.parametrize("edit, message", [c[1:] for c in STATE_DICT_ERRORS], ids=[c[0] for c in STATE_DICT_ERRORS])
def test_state_dict_errors_change_nothing(edit: Callable, message: str) -> None:
    opt, sched = _stepped(lambda opt: S.StepLR(opt, 2))
    saved = sched.state_dict()
    opt2, sched2 = _stepped(lambda opt: S.StepLR(opt, 5, gamma=0.7), steps=1)
    before = _state(opt2, sched2)
    with pytest.raises(StateDictError, match=message):
        sched2.load_state_dict(edit(sched2, saved))
    assert _state(opt2, sched2) == before


OTHER_STATE_DICT_ERRORS = [
    (
        "milestones with str keys",
        lambda opt: S.MultiStepLR(opt, [2]),
        lambda sd: {**sd, "milestones": {"2": 1}},
        "'milestones' has key '2'",
    ),
    (
        "sequential sub count",
        lambda opt: S.SequentialLR(opt, [S.StepLR(opt, 2), S.ExponentialLR(opt, 0.9)], [2]),
        lambda sd: {**sd, "_schedulers": sd["_schedulers"][:1]},
        "'_schedulers' holds 1 state dicts, the scheduler wraps 2",
    ),
    (
        "sequential bad sub",
        lambda opt: S.SequentialLR(opt, [S.StepLR(opt, 2), S.ExponentialLR(opt, 0.9)], [2]),
        lambda sd: {**sd, "_schedulers": [sd["_schedulers"][0], {**sd["_schedulers"][1], "gamma": None}]},
        "SequentialLR state dict: '_schedulers'\\[1\\]: ExponentialLR state dict: 'gamma' must be a real number",
    ),
    (
        "chained sub of another class",
        lambda opt: S.ChainedScheduler([S.StepLR(opt, 2)]),
        lambda sd: {**sd, "_schedulers": [S.ExponentialLR(sgd(), 0.5).state_dict()]},
        "StepLR state dict has no",
    ),
    (
        "cyclic beta1 into sgd",
        lambda opt: S.CyclicLR(opt, 0.01, 0.1),
        lambda sd: {**sd, "use_beta1": True},
        "'use_beta1' is True, but the optimizer has no betas",
    ),
    ("cyclic mode", lambda opt: S.CyclicLR(opt, 0.01, 0.1), lambda sd: {**sd, "mode": "tri"}, "'mode' is 'tri'"),
    (
        "onecycle phases",
        lambda opt: S.OneCycleLR(opt, 0.1, total_steps=9),
        lambda sd: {**sd, "_schedule_phases": [{"end_step": 1.0}]},
        "'_schedule_phases' must be a list of 2 or 3 phases",
    ),
    (
        "onecycle phase key",
        lambda opt: S.OneCycleLR(opt, 0.1, total_steps=9),
        lambda sd: {**sd, "_schedule_phases": [dict(p, end_lr="lr") for p in sd["_schedule_phases"]]},
        "end_lr",
    ),
    (
        "plateau mode",
        lambda opt: S.ReduceLROnPlateau(opt),
        lambda sd: {**sd, "mode": "avg"},
        "'mode' must be one of 'min', 'max'",
    ),
    (
        "plateau factor",
        lambda opt: S.ReduceLROnPlateau(opt),
        lambda sd: {**sd, "factor": 1.0},
        "'factor' must be < 1.0",
    ),
    (
        "plateau best nan",
        lambda opt: S.ReduceLROnPlateau(opt),
        lambda sd: {**sd, "best": float("nan")},
        "'best' must be a number, got nan",
    ),
    (
        "lambda entries",
        lambda opt: S.LambdaLR(opt, _one),
        lambda sd: {**sd, "lr_lambdas": [None, None]},
        "'lr_lambdas' has 2 entries",
    ),
    (
        "swalr strategy",
        lambda opt: S.SWALR(opt, 0.05),
        lambda sd: {**sd, "_anneal_strategy": "exp"},
        "'_anneal_strategy' must be one of",
    ),
]


@pytest.mark.parametrize(
    "make, edit, message", [c[1:] for c in OTHER_STATE_DICT_ERRORS], ids=[c[0] for c in OTHER_STATE_DICT_ERRORS]
)
def test_other_state_dict_errors(make: Callable, edit: Callable, message: str) -> None:
    opt = sgd(momentum=0.5)
    sched = make(opt)
    saved = sched.state_dict()
    before = _state(opt, sched)
    with pytest.raises(StateDictError, match=message):
        sched.load_state_dict(edit(saved))
    assert _state(opt, sched) == before


def test_state_dicts_hold_plain_values_only() -> None:
    """What rustoptim.save stores: no callables, no Counter, no tuples of objects."""
    plain = (dict, list, str, int, float, bool, type(None))

    def check(value: Any, where: str) -> None:
        assert type(value) in plain, f"{where}: {type(value).__name__}"
        if isinstance(value, dict):
            for k, v in value.items():
                check(k, where)
                check(v, f"{where}[{k!r}]")
        elif isinstance(value, list):
            for i, v in enumerate(value):
                check(v, f"{where}[{i}]")

    for case in SCHEDULE_CASES:
        params, opt, sched = build(case)
        for t in range(min(3, case["steps"])):
            advance(case, params, opt, sched, t)
        check(sched.state_dict(), case["name"])


def test_docstring_examples() -> None:
    import doctest
    import importlib

    for module in ("_base", "_decay", "_lambda", "_cosine", "_cyclic", "_plateau", "_composite", "_swa"):
        result = doctest.testmod(importlib.import_module(f"rustoptim.lr_scheduler.{module}"))
        assert result.failed == 0, module
