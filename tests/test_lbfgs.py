"""rustoptim.LBFGS: torch's trajectories and counters (tests/golden), the NumPy
reference (tests/lbfgs_reference.py), closure semantics, failures, state dicts."""

from __future__ import annotations

import copy
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

import rustoptim
from lbfgs_reference import ReferenceLBFGS
from rustoptim import LBFGS, Parameter
from rustoptim.errors import AliasError, DTypeError, ReadOnlyError, ShapeError, StateDictError

GOLDEN = Path(__file__).parent / "golden"


def lbfgs_cases(folder: Path) -> list:
    """The LBFGS cases of a golden folder, each with the path of its data."""
    manifest = json.loads((folder / "manifest.json").read_text())
    return [dict(case, path=folder / case["file"]) for case in manifest["cases"] if case.get("optimizer") == "LBFGS"]


# torch 2.13 (golden/) and torch 2.15 (golden/ext/: float32 with strong Wolfe).
CASES = lbfgs_cases(GOLDEN) + lbfgs_cases(GOLDEN / "ext")


# ------------------------------------------------------------------ objectives


def rosenbrock(x: np.ndarray):
    """The golden's formula: Σ 100(x[i+1] − x[i]²)² + (1 − x[i])², in float64."""
    x = x.astype(np.float64)
    a = x[1:] - x[:-1] ** 2
    b = 1 - x[:-1]
    grad = np.zeros_like(x)
    grad[:-1] = -400 * x[:-1] * a - 2 * b
    grad[1:] += 200 * a
    return float(np.sum(100 * a * a + b * b)), grad


def convex(x: np.ndarray):
    """A smooth strongly convex objective with coupled coordinates: trajectories
    on it are stable, so two implementations stay close over many iterations."""
    x = x.astype(np.float64)
    i = np.arange(x.size)
    w, c = 1.0 + i % 7, np.sin(i)
    total = x.sum()
    loss = np.sum(0.5 * w * (x - c) ** 2 + 0.1 * np.logaddexp(0, x)) + 0.05 * total**2
    grad = w * (x - c) + 0.1 / (1 + np.exp(-x)) + 0.1 * total
    return float(loss), grad


def golden_objective(case: dict, data) -> callable:
    """The case's objective in float64, loss and gradient cast to the case dtype."""
    dtype = np.dtype(case["dtype"])
    if case["problem"] == "rosenbrock":
        f = rosenbrock
    elif case["problem"] == "quadratic":
        A, b = data["A"].astype(np.float64), data["b"].astype(np.float64)

        def f(x):
            x = x.astype(np.float64)
            return float(0.5 * x @ A @ x - b @ x), A @ x - b
    else:
        X, y = data["X"].astype(np.float64), data["y"].astype(np.float64)
        dim = X.shape[1]

        def f(x):
            x = x.astype(np.float64)
            w, bias = x[:dim], x[dim]
            z = X @ w + bias
            loss = np.mean(np.logaddexp(0, z) - y * z) + 0.5 * 0.01 * (w @ w)
            residual = (1 / (1 + np.exp(-z)) - y) / len(y)
            return float(loss), np.concatenate([X.T @ residual + 0.01 * w, [residual.sum()]])

    def objective(x):
        loss, grad = f(x)
        return dtype.type(loss), grad.astype(dtype)

    return objective


def flat(arrays) -> np.ndarray:
    return np.concatenate([np.asarray(a).reshape(-1) for a in arrays]) if arrays else np.zeros(0)


class Counted:
    """A closure over params: evaluates ``objective`` on their flattened values."""

    def __init__(self, objective, arrays, params=None):
        self.objective, self.arrays, self.params = objective, arrays, params
        self.calls = 0
        self.points = []

    def __call__(self):
        self.calls += 1
        x = flat(self.arrays)
        self.points.append(x.copy())
        loss, grad = self.objective(x)
        grads, offset = [], 0
        for a in self.arrays:
            grads.append(grad[offset:offset + a.size].reshape(a.shape))
            offset += a.size
        if self.params is None:
            return loss, grads
        for p, g in zip(self.params, grads):
            p.grad = g
        return loss


def assert_close(actual, expected, rtol, atol, what):
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    error = np.abs(actual - expected) / np.maximum(np.abs(expected), atol / rtol)
    assert error.max(initial=0) <= rtol, f"{what}: relative error {error.max():.3g}\n{actual}\n{expected}"


# ---------------------------------------------------------------------- golden


def tolerances(case, expected):
    """(rtol, atol) for values whose torch counterparts are ``expected``.

    README: float64 iterates within 1e-6 relative, 1e-8 absolute floor. In
    float32 torch's dot products and sums (BLAS) add in another order than
    rustoptim's, so the iterates agree to float32 rounding over the steps, and
    the counters exactly. With a line search on Rosenbrock (ext/, torch 2.15)
    that rounding is amplified over 15 iterations: within 1e-4 of the largest
    magnitude at that step (measured 3.6e-5; the NumPy reference, whose dot
    products are NumPy's, lands 8e-5 away).
    """
    if case["dtype"] == "float64":
        return 1e-6, 1e-8
    if case["defaults"].get("line_search_fn") is None:
        return 2e-5, 1e-6
    return 1e-4, 1e-4 * max(float(np.abs(expected).max(initial=0)), 1e-2)


@pytest.mark.parametrize("api", ["parameters", "plain"])
@pytest.mark.parametrize("layout", ["C", "F", "strided"])
@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_golden_trajectory(case, layout, api, place, untouched):
    data = np.load(case["path"])
    n = len(case["shapes"])
    placed = [place(data[f"p{i}_init"], layout) for i in range(n)]
    arrays = [view for view, _ in placed]
    params = [Parameter(a) for a in arrays] if api == "parameters" else None
    closure = Counted(golden_objective(case, data), arrays, params)
    opt = LBFGS(params if params is not None else arrays, **case["defaults"])
    for k in range(case["steps"]):
        loss = opt.step(closure)
        state = opt.state_dict()["state"][0]
        what = f"{case['name']} after step {k}"
        assert state["func_evals"] == int(data[f"func_evals_after{k}"]), what
        assert state["n_iter"] == int(data[f"n_iter_after{k}"]), what
        assert closure.calls == int(data[f"closure_calls_after{k}"]), what
        assert type(state["func_evals"]) is int and type(state["n_iter"]) is int
        assert_close(loss, data[f"loss{k}"], *tolerances(case, data[f"loss{k}"]), f"{what}: returned loss")
        expected = [data[f"p{i}_after{k}"] for i in range(n)]
        rtol, atol = tolerances(case, flat(expected))
        for i, (view, buffer) in enumerate(placed):
            assert view.dtype == np.dtype(case["dtype"])
            assert_close(view, expected[i], rtol, atol, f"{what}: param {i}")
            untouched(buffer, view)


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_golden_matches_the_numpy_reference(case):
    """The reference reproduces the golden counters too, and rustoptim follows
    the reference far more closely than the golden tolerance."""
    data = np.load(case["path"])
    n = len(case["shapes"])
    objective = golden_objective(case, data)
    x = flat([data[f"p{i}_init"] for i in range(n)])
    reference = ReferenceLBFGS(x, **case["defaults"])
    arrays = [data[f"p{i}_init"].copy() for i in range(n)]
    opt = LBFGS(arrays, **case["defaults"])
    closure = Counted(objective, arrays)
    for k in range(case["steps"]):
        reference.step(objective)
        opt.step(closure)
        assert reference.state["func_evals"] == int(data[f"func_evals_after{k}"])
        assert reference.state["n_iter"] == int(data[f"n_iter_after{k}"])
        if case["dtype"] == "float64":
            assert_close(flat(arrays), x, 1e-7, 1e-10, f"step {k}")


# ------------------------------------------------------- the NumPy reference

CONFIGS = {
    "default": dict(),
    "lr": dict(lr=0.3),
    "short": dict(max_iter=3),
    "one_iteration": dict(max_iter=1),
    "history_2": dict(history_size=2, max_iter=15),
    "wolfe": dict(line_search_fn="strong_wolfe"),
    "wolfe_tight_budget": dict(line_search_fn="strong_wolfe", max_iter=10, max_eval=11),
    "wolfe_history_1": dict(line_search_fn="strong_wolfe", history_size=1),
    "tolerance_grad": dict(tolerance_grad=1e-3, line_search_fn="strong_wolfe"),
    "tolerance_change": dict(tolerance_change=1e-3, max_iter=50),
}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("config", CONFIGS, ids=list(CONFIGS))
def test_matches_the_reference_step_by_step(config, dtype):
    kwargs = CONFIGS[config]
    rng = np.random.default_rng(7)
    shapes = [(3,), (2, 2), ()]
    arrays = [rng.uniform(-1.5, 1.5, size=s).astype(dtype) for s in shapes]
    if not kwargs.get("line_search_fn"):
        kwargs = {"lr": 0.1, **kwargs}
    objective_64 = convex

    def objective(x):
        loss, grad = objective_64(x)
        return np.dtype(dtype).type(loss), grad.astype(dtype)

    x = flat(arrays)
    reference = ReferenceLBFGS(x, **kwargs)
    opt = LBFGS(arrays, **kwargs)
    closure = Counted(objective, arrays)
    reference_calls = [0]

    def counted_reference(v):
        reference_calls[0] += 1
        return objective(v)

    rtol = 1e-10 if dtype == "float64" else 1e-4
    for k in range(6):
        expected_loss = reference.step(counted_reference)
        loss = opt.step(closure)
        state = opt.state_dict()["state"][0]
        assert (state["func_evals"], state["n_iter"]) == (reference.state["func_evals"], reference.state["n_iter"])
        assert closure.calls == reference_calls[0]
        assert loss == expected_loss if k == 0 else abs(float(loss) - float(expected_loss)) <= rtol * abs(float(expected_loss)) + 1e-12
        assert_close(flat(arrays), x, rtol, 1e-10, f"{config} step {k}")
        if "d" in reference.state:
            expected_d = reference.state["d"]
            # Near the optimum g, and so d, is dominated by cancellation: compare
            # relative to d's largest element.
            rtol_d = 1e-5 if dtype == "float64" else 1e-2
            assert_close(state["d"], expected_d, rtol_d, rtol_d * np.abs(expected_d).max(), "d")
            assert len(state["old_dirs"]) == len(reference.state["old_dirs"])


# --------------------------------------------------------- closure semantics


def test_step_returns_the_first_closure_value_unconverted():
    x = np.array([-1.2, 1.0])
    values = []

    class Loss(float):
        pass

    def closure():
        loss, grad = rosenbrock(x)
        values.append(Loss(loss))
        return values[-1], [grad]

    opt = LBFGS([x], max_iter=4, lr=0.01)
    result = opt.step(closure)
    assert result is values[0] and len(values) == 4


def test_parameter_closures_set_grad_and_return_the_loss():
    p = Parameter(np.array([-1.2, 1.0]))
    seen = []

    def closure():
        loss, p.grad = rosenbrock(p.data)
        seen.append(p.grad.copy())
        return loss

    opt = LBFGS([p], line_search_fn="strong_wolfe", max_iter=6)
    opt.step(closure)
    # After a line search p.grad belongs to the last point the search evaluated.
    np.testing.assert_array_equal(p.grad, seen[-1])


def test_without_a_line_search_the_last_iteration_is_not_evaluated():
    x = np.array([-1.2, 1.0])
    closure = Counted(rosenbrock, [x])
    opt = LBFGS([x], lr=0.001, max_iter=7)
    opt.step(closure)
    assert closure.calls == 7
    assert not np.array_equal(closure.points[-1], x)  # moved after the last evaluation
    assert opt.state_dict()["state"][0]["n_iter"] == 7


def test_an_optimal_start_returns_after_one_call_with_only_the_counters():
    x = np.array([1.0, 1.0])
    closure = Counted(rosenbrock, [x])
    opt = LBFGS([x])
    assert opt.step(closure) == 0.0
    assert closure.calls == 1
    assert opt.state_dict()["state"] == {0: {"func_evals": 1, "n_iter": 0}}
    # An infinite tolerance also returns at once.
    y = np.array([-1.2, 1.0])
    opt = LBFGS([y], tolerance_grad=float("inf"))
    opt.step(Counted(rosenbrock, [y]))
    np.testing.assert_array_equal(y, [-1.2, 1.0])


def test_first_iteration_rules_apply_only_once_and_history_carries_over():
    """Two step() calls of 5 iterations equal one call of 10 (without a line
    search the only difference is the evaluation skipped after the 5th)."""
    a, b = np.array([-1.2, 1.0]), np.array([-1.2, 1.0])
    opt_a = LBFGS([a], lr=0.05, max_iter=10, tolerance_change=0)
    opt_b = LBFGS([b], lr=0.05, max_iter=5, tolerance_change=0)
    opt_a.step(Counted(rosenbrock, [a]))
    for _ in range(2):
        opt_b.step(Counted(rosenbrock, [b]))
    np.testing.assert_array_equal(a, b)
    sa, sb = opt_a.state_dict()["state"][0], opt_b.state_dict()["state"][0]
    assert sa["n_iter"] == sb["n_iter"] == 10
    assert (sa["func_evals"], sb["func_evals"]) == (10, 10)
    assert sa["t"] == sb["t"] == 0.05


def test_the_line_search_gets_what_is_left_of_max_eval():
    """max_ls = max_eval − calls so far: with max_eval=1 the search may make only
    its first trial, even where the minimum is far and it would extrapolate."""
    def far(v):
        d = v.astype(np.float64) - 100.0
        return float(0.0005 * d @ d), 0.001 * d

    x = np.zeros(3)
    closure = Counted(far, [x])
    opt = LBFGS([x], line_search_fn="strong_wolfe", max_iter=1)
    assert opt.param_groups[0]["max_eval"] == 1
    y = np.zeros(3)
    reference = ReferenceLBFGS(y, line_search_fn="strong_wolfe", max_iter=1)
    # The first search stops after one trial (t = 1 is far too short; with
    # torch's default max_ls of 25 it would extrapolate); the second reaches the
    # minimum, where the third step returns after its first evaluation.
    for expected_calls in (2, 4, 5):
        opt.step(closure)
        reference.step(far)
        assert closure.calls == reference.state["func_evals"] == expected_calls
        np.testing.assert_allclose(x, y, rtol=1e-12)


def test_none_grads_count_as_zeros():
    p, q = Parameter(np.array([-1.2, 1.0])), Parameter(np.array([3.0]))

    def closure():
        loss, p.grad = rosenbrock(p.data)
        q.grad = None
        return loss

    opt = LBFGS([p, q], line_search_fn="strong_wolfe")
    for _ in range(4):
        opt.step(closure)
    assert q.data[0] == 3.0
    assert np.abs(p.data - 1).max() < 1e-3


def test_plain_arrays_with_one_param_may_return_the_grad_itself():
    x = np.array([-1.2, 1.0])
    opt = LBFGS([x], line_search_fn="strong_wolfe")
    for _ in range(3):
        opt.step(lambda: rosenbrock(x))
    np.testing.assert_allclose(x, [1, 1], atol=1e-4)


def test_changing_the_group_takes_effect_at_the_next_step():
    x = np.array([-1.2, 1.0])
    opt = LBFGS([x], lr=0.001, max_iter=2)
    opt.step(Counted(rosenbrock, [x]))
    opt.param_groups[0]["max_iter"] = opt.param_groups[0]["max_eval"] = 4
    closure = Counted(rosenbrock, [x])
    opt.step(closure)
    assert closure.calls == 4
    opt.param_groups[0]["history_size"] = 1
    opt.step(closure)
    assert len(opt.state_dict()["state"][0]["old_dirs"]) == 1
    opt.param_groups[0]["lr"] = -1.0
    with pytest.raises(ValueError, match="learning rate"):
        opt.step(closure)


# ------------------------------------------------------------------- failures


class Boom(Exception):
    pass


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
@pytest.mark.parametrize("fail_at", [1, 2, 5, 9])
def test_a_raising_closure_propagates_and_leaves_the_accepted_iterate(line_search_fn, fail_at):
    x = np.array([-1.2, 1.0])
    error = Boom("from the closure")
    calls = []

    def closure():
        calls.append(x.copy())
        if len(calls) == fail_at:
            raise error
        loss, grad = rosenbrock(x)
        return loss, [grad]

    kwargs = dict(line_search_fn=line_search_fn, lr=1 if line_search_fn else 0.01, max_iter=20)
    opt = LBFGS([x], **kwargs)
    with pytest.raises(Boom) as raised:
        opt.step(closure)
    assert raised.value is error
    # A twin that stops where the failed step had got to: same accepted iterate.
    accepted = calls[-1] if line_search_fn is None else None
    if line_search_fn is None:
        np.testing.assert_array_equal(x, accepted)
    else:
        # Every iteration starts where the previous line search was accepted;
        # x must be one of the points where an iteration began (never a trial).
        twin_x = np.array([-1.2, 1.0])
        twin = ReferenceLBFGS(twin_x, **kwargs)
        starts = [twin_x.copy()]
        for _ in range(fail_at):
            twin.config["max_iter"] = 1
            twin.step(lambda v: (lambda loss, g: (loss, g))(*rosenbrock(v)))
            starts.append(twin_x.copy())
        assert any(np.array_equal(x, s) for s in starts), (x, starts)
    state = opt.state_dict()["state"][0]
    assert state["func_evals"] == fail_at - 1
    # The optimizer keeps working from there.
    calls.clear()
    fail_at = 0
    start = rosenbrock(x)[0]
    for _ in range(3):
        opt.step(closure)
    assert rosenbrock(x)[0] < start
    assert opt.state_dict()["state"][0]["func_evals"] == state["func_evals"] + len(calls)


def test_wrong_grads_raise_and_leave_the_params_alone():
    x = np.array([-1.2, 1.0])
    opt = LBFGS([x])
    with pytest.raises(ShapeError):
        opt.step(lambda: (1.0, [np.zeros(3)]))
    with pytest.raises(DTypeError):
        opt.step(lambda: (1.0, [np.zeros(2, np.float32)]))
    with pytest.raises(ValueError, match="one per param"):
        opt.step(lambda: (1.0, [np.zeros(2), np.zeros(2)]))
    with pytest.raises(TypeError, match="loss"):
        opt.step(lambda: ("nope", [np.zeros(2)]))
    np.testing.assert_array_equal(x, [-1.2, 1.0])
    opt.step(Counted(rosenbrock, [x]))  # still usable


def test_a_param_made_read_only_by_the_closure_ends_the_step_cleanly():
    x, y = np.array([-1.2, 1.0]), np.array([0.5])
    calls = [0]

    def closure():
        calls[0] += 1
        if calls[0] == 3:
            y.flags.writeable = False
        loss, grad = rosenbrock(x)
        return loss + float(y[0] ** 2), [grad, 2 * y]

    opt = LBFGS([x, y], lr=0.01)
    with pytest.raises(ReadOnlyError, match="read-only"):
        opt.step(closure)
    # x (still writeable) holds the last accepted iterate: the one evaluated last.
    y.flags.writeable = True
    opt.step(closure)


def test_a_bad_grad_during_a_line_search_restores_the_accepted_iterate():
    x = np.array([-1.2, 1.0])
    calls = [0]

    def closure():
        calls[0] += 1
        loss, grad = rosenbrock(x)
        return loss, [grad if calls[0] < 3 else grad[:1]]

    opt = LBFGS([x], line_search_fn="strong_wolfe")
    with pytest.raises(ShapeError):
        opt.step(closure)
    np.testing.assert_array_equal(x, [-1.2, 1.0])


# --------------------------------------------------------------- construction


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(lr=-1.0), ValueError, "Invalid learning rate: -1.0"),
        (dict(lr=float("nan")), ValueError, "Invalid learning rate"),
        (dict(max_iter=0), ValueError, "max_iter"),
        (dict(max_eval=0), ValueError, "max_eval"),
        (dict(history_size=0), ValueError, "history_size"),
        (dict(tolerance_grad=float("nan")), ValueError, "tolerance_grad must not be NaN"),
        (dict(tolerance_change=float("nan")), ValueError, "tolerance_change must not be NaN"),
        (dict(tolerance_grad=np.array([1.0])), TypeError, "tolerance_grad"),
        (dict(lr=10**400), ValueError, "too large for a float"),
        (dict(maximize=1), TypeError, "maximize must be a bool"),
        (dict(line_search_fn="armijo"), ValueError, "only 'strong_wolfe' is supported"),
        (dict(max_iter=2.5), TypeError, "max_iter"),
        (dict(history_size=True), TypeError, "history_size"),
        (dict(lr=np.array([1.0, 2.0])), TypeError, "lr"),
    ],
)
def test_invalid_arguments_are_rejected_before_the_params(kwargs, error, match):
    with pytest.raises(error, match=match):
        LBFGS(None, **kwargs)


def test_defaults_and_group_layout_follow_torch():
    opt = LBFGS([np.zeros(2)])
    group = opt.state_dict()["param_groups"][0]
    assert group == dict(lr=1, max_iter=20, max_eval=25, tolerance_grad=1e-7, tolerance_change=1e-9,
                         history_size=100, line_search_fn=None, maximize=False, params=[0])
    # torch 2.15's keys and order: maximize is keyword-only and last.
    assert list(group) == ["lr", "max_iter", "max_eval", "tolerance_grad", "tolerance_change",
                           "history_size", "line_search_fn", "maximize", "params"]
    assert [LBFGS([np.zeros(1)], max_iter=m).defaults["max_eval"] for m in (20, 1, 3)] == [25, 1, 3]
    assert opt.state_dict()["state"] == {}


def test_one_param_group_only():
    message = r"LBFGS doesn't support per-parameter options \(parameter groups\)"
    with pytest.raises(ValueError, match=message):
        LBFGS([{"params": [np.zeros(1)]}, {"params": [np.zeros(1)]}])
    opt = LBFGS([np.zeros(1)])
    with pytest.raises(ValueError, match=message):
        opt.add_param_group({"params": [np.zeros(1)]})


def test_params_must_share_one_dtype_and_be_distinct():
    with pytest.raises(DTypeError, match="one dtype"):
        LBFGS([np.zeros(2), np.zeros(2, np.float32)])
    with pytest.raises(DTypeError):
        LBFGS([np.zeros(2, np.int64)])
    x = np.zeros(2)
    with pytest.raises(ValueError, match="distinct"), pytest.warns(UserWarning):
        LBFGS([x, x])


def test_read_only_and_overlapping_params_are_refused_at_step():
    x = np.zeros(2)
    opt = LBFGS([x])
    x.flags.writeable = False
    with pytest.raises(ReadOnlyError):
        opt.step(lambda: (0.0, [np.ones(2)]))
    assert dict(opt.state) == {} and opt.state_dict()["state"] == {}
    buffer = np.zeros(4)
    opt = LBFGS([buffer[:3], buffer[1:]])
    with pytest.raises(AliasError):
        opt.step(lambda: (0.0, [np.ones(3), np.ones(3)]))


def test_step_needs_a_closure():
    with pytest.raises(TypeError):
        LBFGS([np.zeros(1)]).step()
    with pytest.raises(TypeError, match="closure"):
        LBFGS([np.zeros(1)]).step(None)


# ------------------------------------------------------------------- layouts


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_layout_gives_the_same_trajectory(dtype, place, untouched):
    rng = np.random.default_rng(3)
    shapes = [(3, 4), (5,), (2, 1, 3)]
    values = [rng.uniform(-1, 1, s).astype(dtype) for s in shapes]
    results = {}
    for layout in ["C", "F", "strided", "negative"]:
        placed = [place(v, layout) for v in values]
        arrays = [a for a, _ in placed]
        opt = LBFGS(arrays, line_search_fn="strong_wolfe", history_size=4)
        closure = Counted(lambda x: tuple(np.asarray(r, dtype) if i else r for i, r in enumerate(rosenbrock(x))), arrays)
        for _ in range(3):
            opt.step(closure)
        for a, b in placed:
            untouched(b, a)
        results[layout] = (flat(arrays), closure.calls)
    first = results["C"]
    for layout, (x, calls) in results.items():
        np.testing.assert_array_equal(x, first[0], err_msg=layout)
        assert calls == first[1]


def test_threads_and_simd_levels_do_not_change_the_trajectory():
    """Every SIMD level and thread count gives bitwise the same trajectory (the
    threaded paths themselves are checked bitwise by the Rust tests)."""
    n = 20_000
    start = np.random.default_rng(0).uniform(-1, 1, n)
    runs = []
    before = rustoptim.get_num_threads()
    try:
        for threads in (1, 2):
            for level in rustoptim.simd_levels():
                rustoptim.set_num_threads(threads)
                rustoptim.set_simd_level(level)
                x = start.copy()
                opt = LBFGS([x], line_search_fn="strong_wolfe", history_size=4, max_iter=6)
                opt.step(Counted(rosenbrock, [x]))
                runs.append((threads, level, x))
    finally:
        rustoptim.set_num_threads(before)
        rustoptim.set_simd_level(None)
    for threads, level, x in runs[1:]:
        np.testing.assert_array_equal(x, runs[0][2], err_msg=f"{threads} threads, {level}")


# ---------------------------------------------------------------- state dicts


def run(opt, x, steps, closure=None):
    closure = closure or Counted(rosenbrock, [x])
    for _ in range(steps):
        opt.step(closure)
    return closure


WOLFE = dict(line_search_fn="strong_wolfe", history_size=3, max_iter=4)


def test_state_dict_layout():
    x = np.array([-1.2, 1.0, 0.5])
    opt = LBFGS([x], **WOLFE)
    run(opt, x, 2)
    state = opt.state_dict()["state"][0]
    assert list(state) == ["func_evals", "n_iter", "d", "t", "old_dirs", "old_stps", "ro", "H_diag",
                           "prev_flat_grad", "prev_loss", "al"]
    assert all(type(state[k]) is int for k in ("func_evals", "n_iter"))
    assert all(type(state[k]) is float for k in ("t", "H_diag", "prev_loss"))
    assert len(state["old_dirs"]) == len(state["old_stps"]) == len(state["ro"]) == 3
    assert all(v.shape == (3,) and v.dtype == np.float64 for v in [state["d"], state["prev_flat_grad"], *state["old_dirs"]])
    assert len(state["al"]) == 3 and all(type(a) is float for a in state["al"])


def test_state_dicts_are_copies():
    x = np.array([-1.2, 1.0])
    opt = LBFGS([x], **WOLFE)
    run(opt, x, 1)
    sd = opt.state_dict()
    sd["state"][0]["d"][:] = 99
    sd["state"][0]["old_dirs"][0][:] = 99
    assert not np.any(opt.state_dict()["state"][0]["d"] == 99)
    loaded = LBFGS([x.copy()], **WOLFE)
    source = opt.state_dict()
    loaded.load_state_dict(source)
    source["state"][0]["prev_flat_grad"][:] = 99
    assert not np.any(loaded.state_dict()["state"][0]["prev_flat_grad"] == 99)


@pytest.mark.parametrize("line_search_fn", [None, "strong_wolfe"])
@pytest.mark.parametrize("via", ["load_state_dict", "save_load", "pickle", "deepcopy"])
def test_a_mid_run_state_continues_identically(via, line_search_fn, tmp_path):
    kwargs = dict(WOLFE, line_search_fn=line_search_fn, lr=1 if line_search_fn else 0.05)
    x = np.array([-1.2, 1.0, 0.3, -0.4])
    opt = LBFGS([x], **kwargs)
    run(opt, x, 2)
    if via == "load_state_dict":
        y = x.copy()
        twin = LBFGS([y], lr=123.0, history_size=50)  # hyperparameters come from the dict
        twin.load_state_dict(opt.state_dict())
    elif via == "save_load":
        y = x.copy()
        twin = LBFGS([y])
        path = tmp_path / "lbfgs.state"
        rustoptim.save(opt.state_dict(), path)
        twin.load_state_dict(rustoptim.load(path))
    else:
        twin = pickle.loads(pickle.dumps(opt)) if via == "pickle" else copy.deepcopy(opt)
        y = twin.params[0].data
        assert y is not x
    for _ in range(3):
        run(opt, x, 1)
        run(twin, y, 1)
        np.testing.assert_array_equal(x, y)
    a, b = opt.state_dict(), twin.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for key, value in a["state"][0].items():
        other = b["state"][0][key]
        if isinstance(value, list):
            assert len(value) == len(other)
            for u, v in zip(value, other):
                np.testing.assert_array_equal(u, v, err_msg=key)
        else:
            np.testing.assert_array_equal(value, other, err_msg=key)


def test_a_state_dict_from_before_any_iteration_loads():
    x = np.array([1.0, 1.0])
    opt = LBFGS([x])
    run(opt, x, 1)  # optimal at once: counters only
    twin = LBFGS([x.copy()])
    twin.load_state_dict(opt.state_dict())
    assert twin.state_dict()["state"] == {0: {"func_evals": 1, "n_iter": 0}}
    empty = LBFGS([np.zeros(2)])
    twin.load_state_dict(empty.state_dict())
    assert twin.state_dict()["state"] == {}


def bad_state_dicts(good):
    def edit(change):
        sd = copy.deepcopy(good)
        change(sd["state"][0], sd["param_groups"][0])
        return sd

    yield "short d", edit(lambda s, g: s.update(d=s["d"][:2]))
    yield "float32 d", edit(lambda s, g: s.update(d=s["d"].astype(np.float32)))
    yield "2-D d", edit(lambda s, g: s.update(d=s["d"].reshape(1, -1)))
    yield "list d", edit(lambda s, g: s.update(d=list(s["d"])))
    yield "history too long", edit(lambda s, g: g.update(history_size=1))
    yield "lengths differ", edit(lambda s, g: s["ro"].pop())
    yield "bad history vector", edit(lambda s, g: s["old_stps"].__setitem__(0, np.zeros(7)))
    yield "missing key", edit(lambda s, g: s.pop("prev_loss"))
    yield "unknown key", edit(lambda s, g: s.update(momentum_buffer=np.zeros(3)))
    yield "negative count", edit(lambda s, g: s.update(n_iter=-1))
    yield "string t", edit(lambda s, g: s.update(t="1.0"))
    yield "bool H_diag", edit(lambda s, g: s.update(H_diag=True))
    yield "invalid hyperparameter", edit(lambda s, g: g.update(line_search_fn="newton"))
    yield "history_size no memory could hold", edit(lambda s, g: g.update(history_size=2**62))
    yield "maximize not a bool", edit(lambda s, g: g.update(maximize="yes"))
    yield "n_iter without d", edit(lambda s, g: [s.pop(k) for k in list(s) if k not in ("func_evals", "n_iter")])
    sd = copy.deepcopy(good)
    sd["state"][1] = sd["state"][0]
    yield "state for another param", sd


def test_a_bad_state_dict_raises_and_changes_nothing():
    x = np.array([-1.2, 1.0, 0.5])
    source = LBFGS([x], **WOLFE)
    run(source, x, 2)
    good = source.state_dict()
    y = np.array([0.3, 0.2, 0.1])
    target = LBFGS([y, np.zeros(0)], history_size=4, line_search_fn="strong_wolfe")
    run(target, y, 1, Counted(lambda v: rosenbrock(v), [y, np.zeros(0)]))
    before = target.state_dict()
    good["param_groups"][0]["params"] = [0, 1]
    for what, sd in bad_state_dicts(good):
        with pytest.raises(StateDictError):
            target.load_state_dict(sd)
        after = target.state_dict()
        assert after["param_groups"] == before["param_groups"], what
        assert pickle.dumps(after["state"]) == pickle.dumps(before["state"]), what
    target.load_state_dict(good)  # the unedited dict loads


def test_torch_shaped_state_dicts_load():
    """A dict as torch writes it (0-dim arrays for t, ro and H_diag, al with Nones) loads."""
    x = np.array([-1.2, 1.0])
    opt = LBFGS([x], **WOLFE)
    run(opt, x, 1)
    sd = opt.state_dict()
    s = sd["state"][0]
    s["t"] = np.array(s["t"])
    s["H_diag"] = np.array(s["H_diag"])
    s["ro"] = [np.array(r) for r in s["ro"]]
    s["al"] = s["al"][:1] + [None] * 2
    twin = LBFGS([x.copy()], **WOLFE)
    twin.load_state_dict(sd)
    y = twin.params[0].data
    run(opt, x, 2)
    run(twin, y, 2)
    np.testing.assert_array_equal(x, y)


def test_gil_is_released_while_the_core_works():
    """Outside the closure, a large LBFGS step spends its time in Rust with the
    GIL released: another Python thread runs meanwhile."""
    import sys
    import threading
    import time

    n = 2_000_000
    x = np.linspace(-1.0, 1.0, n)
    scale = np.linspace(0.5, 2.0, n)
    closure_spans = []

    def closure():
        start = time.perf_counter()
        grad = scale * x
        loss = float(0.5 * (x @ grad))
        closure_spans.append((start, time.perf_counter()))
        return loss, [grad]

    ticks = []
    stop = threading.Event()

    def count():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0)

    optimizer = LBFGS([x], history_size=20, max_iter=15, line_search_fn="strong_wolfe")
    old_interval = sys.getswitchinterval()
    # With a long switch interval, Python code keeps the GIL: the counter can only
    # run while the main thread is blocked or has released the GIL.
    sys.setswitchinterval(5.0)
    counter = threading.Thread(target=count)
    try:
        counter.start()
        time.sleep(0.01)
        begin = time.perf_counter()
        optimizer.step(closure)
        end = time.perf_counter()
    finally:
        stop.set()
        sys.setswitchinterval(old_interval)
        counter.join()
    outside_closure = [
        t for t in ticks
        if begin < t < end and not any(a <= t <= b for a, b in closure_spans)
    ]
    assert len(outside_closure) > 10, f"{len(outside_closure)} ticks outside the closure in {end - begin:.3f} s"
