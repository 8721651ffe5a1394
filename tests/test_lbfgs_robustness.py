"""rustoptim.LBFGS under hostile settings, files, memory layouts and objectives:
memory that grows with the history (never an abort), absurd settings refused,
arrays the core cannot address refused before anything is written, NaN and
infinity in the objective, and torch 2.15's ``maximize``.

Anything that could kill the interpreter (an abort on a failed allocation)
runs in a subprocess.
"""

from __future__ import annotations

import pickle
import re
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

import rustoptim
from rustoptim import LBFGS, Parameter
from rustoptim.errors import LayoutError, StateDictError

WOLFE = "strong_wolfe"


# The child's own peak resident memory. VmHWM belongs to the new process image;
# ru_maxrss would carry over the high-water mark of the (large) forked pytest process.
PEAK_MIB = """
def peak_mib():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) // 1024
"""


def run_python(code: str, timeout: float = 240) -> str:
    """Runs ``code`` in a fresh interpreter (with ``peak_mib()`` defined); fails
    the test unless it exits cleanly."""
    result = subprocess.run(
        [sys.executable, "-c", PEAK_MIB + textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"exit code {result.returncode}\n{result.stdout}\n{result.stderr[-3000:]}"
    return result.stdout


def quadratic(x: np.ndarray):
    """½·Σ(i+1)·x_i², gradient (i+1)·x_i: every L-BFGS iteration adds a pair."""
    w = np.arange(1, x.size + 1, dtype=np.float64)
    x64 = x.astype(np.float64)
    return float(0.5 * np.sum(w * x64 * x64)), (w * x64).astype(x.dtype)


def log_barrier(x: np.ndarray):
    """Σ x − 2·log x: minimum at x = 2, NaN for x < 0."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.sum(x - 2 * np.log(x))), 1 - 2 / x


# ----------------------------------------------------------------- memory


def test_a_huge_history_size_grows_lazily_in_a_step_and_through_a_file(tmp_path):
    # Aborted the interpreter ("memory allocation of 87960930222160 bytes failed").
    out = run_python(f"""
        import numpy as np, resource, rustoptim
        x = np.linspace(-1, 1, 10)
        def closure():
            w = np.arange(1, 11.0)
            return float(0.5 * np.sum(w * x * x)), [w * x]
        opt = rustoptim.LBFGS([x], history_size=2**40)
        opt.step(closure)
        assert len(opt.state_dict()["state"][0]["old_dirs"]) > 3
        # A state dict (and a small file) whose group says 2**40 loads and runs.
        path = {str(tmp_path / "h.state")!r}
        rustoptim.save(opt.state_dict(), path)
        y = np.linspace(-1, 1, 10)
        twin = rustoptim.LBFGS([y])
        twin.load_state_dict(rustoptim.load(path))
        assert twin.param_groups[0]["history_size"] == 2**40
        twin.step(lambda: (float(y @ y), [2 * y]))
        print("peak MiB", peak_mib())
    """)
    assert int(out.split()[-1]) < 500


def test_millions_of_params_with_a_long_history_start_small():
    # 5e6 float32 params, history_size=2000: a full history is 80 GB, which
    # aborted at the first step; torch grows its lists lazily and so does rustoptim.
    out = run_python("""
        import numpy as np, resource, rustoptim
        n = 5_000_000
        x = np.full(n, 0.5, dtype=np.float32)
        opt = rustoptim.LBFGS([x], history_size=2000, max_iter=3)
        opt.step(lambda: (float(x.astype(np.float64) @ x), [2 * x]))
        assert len(opt.state_dict()["state"][0]["old_dirs"]) == 1
        print("peak MiB", peak_mib())
    """)
    assert int(out.split()[-1]) < 2000


def test_a_history_that_cannot_grow_raises_memory_error_and_keeps_the_iterate():
    # Under an address-space limit the history runs out of room mid-step: the
    # step raises MemoryError naming the size, the params hold the last accepted
    # iterate, and the optimizer keeps working with a shorter history.
    out = run_python("""
        import re, resource, numpy as np, rustoptim
        n = 1_000_000
        x = np.linspace(-1.0, 1.0, n)
        w = np.linspace(1.0, 3.0, n)
        g = np.empty(n)
        seen = []
        def closure():
            np.multiply(w, x, out=g)
            seen.append(x.copy() if len(seen) < 2 else None)
            return float(0.5 * (g @ x)), [g]
        opt = rustoptim.LBFGS([x], lr=0.1, max_iter=3, tolerance_change=0, tolerance_grad=0)
        opt.step(closure)  # warm up: threads, first pairs
        opt.param_groups[0].update(max_iter=40, max_eval=50)
        before = opt.state_dict()["state"][0]["n_iter"]
        with open("/proc/self/status") as f:
            vm = next(int(l.split()[1]) for l in f if l.startswith("VmSize")) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (vm + 120 * 2**20, resource.RLIM_INFINITY))
        try:
            opt.step(closure)
        except MemoryError as e:
            message = str(e)
        else:
            raise AssertionError("no MemoryError")
        assert re.fullmatch(r"cannot allocate \\d+ bytes for the L-BFGS history \\(\\w+\\)", message), message
        resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        assert opt.state_dict()["state"][0]["n_iter"] > before
        # The params are the iterate the state continues from: a fresh step from
        # them evaluates there first.
        start = x.copy()
        opt.param_groups[0].update(history_size=2, max_iter=3)
        seen.clear()
        opt.step(closure)
        assert np.array_equal(seen[0], start)
        print("ok")
    """)
    assert out.strip() == "ok"


def test_the_core_reports_an_impossible_allocation_as_memory_error():
    out = run_python("""
        import rustoptim
        try:
            rustoptim._core.LbfgsCore("float64", 2**56, 1)  # 2**59 bytes per vector
        except MemoryError as e:
            print(e)
    """)
    assert re.fullmatch(r"cannot allocate \d+ bytes for the L-BFGS \w+( \w+)*\n", out), out


@pytest.mark.parametrize("history_size", [2**62, 2**64, 10**30])
def test_a_history_size_no_memory_could_hold_is_refused_everywhere(history_size):
    # 2**62 raised pyo3_runtime.PanicException (capacity overflow).
    x = np.zeros(10)
    with pytest.raises(ValueError, match="history_size=.* is too large"):
        LBFGS([x], history_size=history_size)
    opt = LBFGS([x])
    good = opt.state_dict()
    bad = {**good, "param_groups": [{**good["param_groups"][0], "history_size": history_size}]}
    with pytest.raises(StateDictError, match="too large"):
        opt.load_state_dict(bad)
    opt.param_groups[0]["history_size"] = history_size
    with pytest.raises(ValueError, match="too large"):
        opt.step(lambda: (float(x @ x), [2 * x]))
    np.testing.assert_array_equal(x, 0)
    # The limit is what a full history could occupy, so it depends on the params.
    limit = rustoptim._core.LbfgsCore.max_history_size("float64", 10)
    assert 2**40 < limit < 2**62
    LBFGS([np.zeros(10)], history_size=limit)
    with pytest.raises(ValueError, match="too large"):
        LBFGS([np.zeros(10)], history_size=limit + 1)


def test_huge_counts_are_accepted_as_torch_does():
    x = np.array([-1.2, 1.0])
    opt = LBFGS([x], max_iter=2**70, max_eval=12, line_search_fn=WOLFE)
    opt.step(lambda: quadratic(x))
    assert opt.state_dict()["state"][0]["func_evals"] <= 12


# ----------------------------------------------------------------- layouts


def packed_field(dtype=np.float64):
    record = np.zeros(4, dtype=[("tag", "u1"), ("x", dtype)])
    record["tag"] = 7
    return record, record["x"]


def unaligned(dtype=np.float64):
    item = np.dtype(dtype).itemsize
    return np.frombuffer(bytearray(4 * item + 5), dtype, offset=3, count=4)


@pytest.mark.parametrize("make", ["packed", "unaligned"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_param_the_core_cannot_address_is_refused_before_anything_is_written(make, dtype):
    if make == "packed":
        record, bad = packed_field(dtype)
    else:
        bad = unaligned(dtype)
        record = None
    assert not bad.flags.aligned
    good = np.ones(3, dtype)
    snapshot = bad.copy(), None if record is None else record.copy()
    opt = LBFGS([good, bad])
    calls = []

    def closure():
        calls.append(1)
        return 1.0, [np.ones(3, dtype), np.ones(4, dtype)]

    with pytest.raises(LayoutError, match=r"param 1 .*np\.ascontiguousarray"):
        opt.step(closure)
    assert calls == []
    np.testing.assert_array_equal(bad, snapshot[0])
    np.testing.assert_array_equal(good, 1)
    if record is not None:
        assert record.tobytes() == snapshot[1].tobytes()  # the tags too
    assert opt.state_dict()["state"] == {}


@pytest.mark.parametrize("make", ["packed", "unaligned"])
def test_a_grad_the_core_cannot_address_ends_the_step_at_the_accepted_iterate(make):
    x = np.array([0.5, -0.3, 0.2, 0.1])
    bad = packed_field()[1] if make == "packed" else unaligned()
    calls = []

    def closure():
        calls.append(x.copy())
        loss, grad = quadratic(x)
        if len(calls) < 3:
            return loss, [grad]
        bad[...] = grad
        return loss, [bad]

    opt = LBFGS([x], line_search_fn=WOLFE)
    with pytest.raises(LayoutError, match=r"the grad of param 0 .*copy"):
        opt.step(closure)
    # Never a trial point: the params are one of the points an iteration started from.
    assert any(np.array_equal(x, c) for c in calls[:2])
    opt.step(lambda: quadratic(x))  # still usable


def test_strided_and_fortran_params_are_still_fine(place):
    values = np.arange(12, dtype=np.float64).reshape(3, 4) / 10
    for layout in ("F", "strided", "negative"):
        x, _ = place(values, layout)

        def closure(x=x):  # x bound now (B023), though only this iteration calls it
            loss, grad = quadratic(x.reshape(-1))
            return loss, [grad.reshape(x.shape)]

        opt = LBFGS([x], line_search_fn=WOLFE)
        opt.step(closure)
        assert np.abs(x).max() < 1e-6, layout


# -------------------------------------------------------------------- NaN


def test_strong_wolfe_reaches_the_minimum_of_a_function_undefined_below_zero():
    # torch (and rustoptim before) used all 250 evaluations of one line search,
    # left x = -6.8e184 and returned the first (finite) loss.
    x = np.array([30.0])
    opt = LBFGS([x], line_search_fn=WOLFE)
    losses = [opt.step(lambda: log_barrier(x)) for _ in range(4)]
    assert all(np.isfinite(losses))
    assert abs(x[0] - 2.0) < 1e-4, x
    # Several variables, from far away (scipy 1.17 stops with f = nan here).
    x = np.array([100.0, 90.0, 120.0, 80.0, 95.0])
    opt = LBFGS([x], line_search_fn=WOLFE)
    for _ in range(10):
        opt.step(lambda: log_barrier(x))
    np.testing.assert_allclose(x, 2.0, atol=1e-4)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_line_search_never_ends_at_a_non_finite_point(bad):
    x = np.array([3.0, -2.0])
    evaluated = []

    def closure():
        # Smooth inside the disc of radius 4; non-finite loss (or gradient) outside.
        loss, grad = quadratic(x - 1.0)
        outside = float(x @ x) > 16
        evaluated.append((x.copy(), outside))
        if outside:
            return (bad, [grad]) if len(evaluated) % 2 else (loss, [np.array([bad, 0.0])])
        return loss, [grad]

    opt = LBFGS([x], line_search_fn=WOLFE, lr=50)
    for _ in range(3):
        assert np.isfinite(opt.step(closure))
        assert float(x @ x) <= 16
    assert any(outside for _, outside in evaluated)
    np.testing.assert_allclose(x, 1.0, atol=1e-4)


def test_without_a_line_search_a_step_stops_at_the_last_finite_iterate():
    x = np.array([30.0])
    seen = []

    def closure():
        seen.append(x[0])
        return log_barrier(x)

    opt = LBFGS([x], lr=100)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no NaN arithmetic warnings from rustoptim
        opt.step(closure)
    assert seen[-1] < 0 and x[0] == seen[-2] > 0
    assert np.isfinite(log_barrier(x)[0])
    state = opt.state_dict()["state"][0]
    assert state["func_evals"] == len(seen)
    # The next step starts there and, with the same fixed step, stops there again.
    before = x.copy()
    opt.step(closure)
    np.testing.assert_array_equal(x, before)
    # A smaller lr gets on.
    opt.param_groups[0]["lr"] = 0.01
    opt.step(closure)
    assert 2 < x[0] < before[0]


@pytest.mark.parametrize("line_search_fn", [None, WOLFE])
def test_a_non_finite_start_returns_at_once_without_moving(line_search_fn):
    x = np.array([-1.0, 2.0])
    calls = []

    def closure():
        calls.append(1)
        return log_barrier(x)

    opt = LBFGS([x], line_search_fn=line_search_fn)
    assert np.isnan(opt.step(closure))
    assert len(calls) == 1
    np.testing.assert_array_equal(x, [-1.0, 2.0])
    assert opt.state_dict()["state"][0] == {"func_evals": 1, "n_iter": 0}


@pytest.mark.parametrize("line_search_fn", [None, WOLFE])
def test_negative_and_infinite_tolerances_are_accepted_as_in_torch(line_search_fn):
    # torch's own tests use tolerance_grad=-inf to force every iteration.
    x = np.array([1.0, 1.0])  # the minimum: the gradient is 0 from the start
    opt = LBFGS([x], tolerance_grad=-np.inf, tolerance_change=-np.inf, max_iter=7, max_eval=100,
                line_search_fn=line_search_fn, lr=0.1)
    opt.step(lambda: quadratic(x - 1.0))
    assert opt.state_dict()["state"][0]["n_iter"] == 7
    opt = LBFGS([x], tolerance_grad=-1.0, tolerance_change=-1e-3)
    assert opt.param_groups[0]["tolerance_grad"] == -1.0


# --------------------------------------------------------------- maximize


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("line_search_fn", [None, WOLFE])
def test_maximize_is_minimizing_the_negated_objective(line_search_fn, dtype):
    """torch 2.15: the flat gradient and every loss are negated; p.grad is left
    alone; step returns the first closure value as it is; prev_loss is -f."""
    lr = 1 if line_search_fn else 0.05
    start = np.array([-1.2, 1.0, 0.4, -0.7], dtype)

    def rosenbrock(v):
        v = v.astype(np.float64)
        a, b = v[1:] - v[:-1] ** 2, 1 - v[:-1]
        g = np.zeros_like(v)
        g[:-1] = -400 * v[:-1] * a - 2 * b
        g[1:] += 200 * a
        return float(np.sum(100 * a * a + b * b)), g.astype(dtype)

    p = Parameter(start.copy())
    grads = []

    def negated():
        loss, g = rosenbrock(p.data)
        p.grad = -g
        grads.append(p.grad)
        return -loss

    x = start.copy()
    up = LBFGS([p], lr=lr, line_search_fn=line_search_fn, maximize=True)
    down = LBFGS([x], lr=lr, line_search_fn=line_search_fn)
    for _ in range(3):
        expected_first = -rosenbrock(p.data)[0]
        assert up.step(negated) == expected_first
        down.step(lambda: rosenbrock(x))
        np.testing.assert_array_equal(p.data, x)
        assert p.grad is grads[-1]  # the closure's array, not negated in place
    a, b = up.state_dict()["state"][0], down.state_dict()["state"][0]
    assert a["prev_loss"] == b["prev_loss"] > 0
    np.testing.assert_array_equal(a["prev_flat_grad"], b["prev_flat_grad"])
    assert up.state_dict()["param_groups"][0]["maximize"] is True


def test_maximize_returns_the_first_closure_value_unnegated():
    x = np.array([0.3, -0.2])
    values = []

    def closure():
        loss, grad = quadratic(x)
        values.append(-loss)
        return -loss, [-grad]

    opt = LBFGS([x], maximize=True, line_search_fn=WOLFE)
    assert opt.step(closure) == values[0] < 0
    np.testing.assert_allclose(x, 0, atol=1e-4)


def test_state_dicts_without_maximize_load_as_minimizing():
    x = np.array([0.3, -0.2])
    opt = LBFGS([x], line_search_fn=WOLFE)
    opt.step(lambda: quadratic(x))
    sd = opt.state_dict()
    del sd["param_groups"][0]["maximize"]  # written by torch < 2.15 or rustoptim before
    twin = LBFGS([x.copy()], maximize=True)
    twin.load_state_dict(sd)
    assert twin.param_groups[0]["maximize"] is False
    old = pickle.loads(pickle.dumps(opt))
    old.param_groups[0].pop("maximize")
    assert pickle.loads(pickle.dumps(old)).param_groups[0]["maximize"] is False


def test_a_group_without_params_returns_the_closure_value():
    opt = LBFGS([{"params": []}])
    assert opt.step(lambda: 3.5) == 3.5
    assert opt.state_dict()["state"] == {}


# ---------------------------------------------------------------- threads


def test_a_team_of_threads_gives_bitwise_the_single_thread_trajectory():
    """n·history above 4M: the two-loop recursion may run on a team of pool
    threads (each owning its slice of the direction); the result must not change."""
    n = 600_000
    start = np.random.default_rng(1).uniform(-1, 1, n)
    results = []
    before = rustoptim.get_num_threads()
    try:
        for threads in (1, 2, 1, 2):
            rustoptim.set_num_threads(threads)
            x = start.copy()
            opt = LBFGS([x], history_size=8, max_iter=14, lr=0.5, tolerance_change=0)
            opt.step(lambda x=x: quadratic(x))
            results.append(x)
    finally:
        rustoptim.set_num_threads(before)
    for x in results[1:]:
        np.testing.assert_array_equal(x, results[0])
