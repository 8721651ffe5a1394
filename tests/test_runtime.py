"""The Rust core's run-time behaviour: bitwise determinism across thread counts
and SIMD levels, and the GIL released while a step runs."""

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import rustoptim
from optimizer_table import OPTIMIZERS, param_shape

# Large enough that a step is split across threads (and within the big tensor),
# with odd sizes so pieces end mid-vector.
SHAPES = [(300_001,), (257, 131), (3,), (), (0,), (70_000,)]

# Each optimizer of the table in its first config (with state and decay where it has them).
CONFIGS = [(info.cls, info.configs[0]) for info in OPTIMIZERS]


def run_steps(optimizer_class, kwargs, dtype, steps=3):
    rng = np.random.default_rng(0)
    shapes = [param_shape(optimizer_class, shape) for shape in SHAPES]  # matrices for Muon
    params = [rng.standard_normal(shape).astype(dtype) for shape in shapes]
    optimizer = optimizer_class(params, **kwargs)
    for _ in range(steps):
        grads = [rng.standard_normal(shape).astype(dtype) for shape in shapes]
        optimizer.step(grads=grads)
    state = optimizer.state_dict()["state"]
    arrays = params + [value for entry in state.values() for value in entry.values() if isinstance(value, np.ndarray)]
    return [a.tobytes() for a in arrays]


@pytest.fixture
def restore_runtime():
    threads = rustoptim.get_num_threads()
    yield
    rustoptim.set_num_threads(threads)
    rustoptim.set_simd_level(None)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("optimizer_class, kwargs", CONFIGS, ids=[cls.__name__ for cls, _ in CONFIGS])
def test_bitwise_identical_for_every_thread_count_and_simd_level(restore_runtime, optimizer_class, kwargs, dtype):
    rustoptim.set_num_threads(1)
    rustoptim.set_simd_level("baseline")
    expected = run_steps(optimizer_class, kwargs, dtype)
    for level in rustoptim.simd_levels():
        for threads in (1, 2, 3, 5):
            rustoptim.set_num_threads(threads)
            rustoptim.set_simd_level(level)
            assert run_steps(optimizer_class, kwargs, dtype) == expected, (level, threads)


def test_runtime_settings_are_validated(restore_runtime):
    with pytest.raises(ValueError, match="at least 1"):
        rustoptim.set_num_threads(0)
    with pytest.raises(TypeError):
        rustoptim.set_num_threads(2.5)
    with pytest.raises(ValueError, match="unknown SIMD level"):
        rustoptim.set_simd_level("sse9")
    assert rustoptim.simd_levels()[0] == "baseline"
    rustoptim.set_simd_level("baseline")
    assert rustoptim.get_simd_level() == "baseline"
    rustoptim.set_num_threads(3)
    assert rustoptim.get_num_threads() == 3


def test_gil_is_released_during_a_large_step(restore_runtime):
    """Another Python thread keeps running while a step is in Rust."""
    rustoptim.set_num_threads(1)
    n = 30_000_000
    param = np.ones(n, dtype=np.float32)
    grad = np.full(n, 0.5, dtype=np.float32)
    optimizer = rustoptim.Adam([param], lr=1e-3)
    optimizer.step(grads=[grad])  # allocate the state outside the measured step

    ticks = []
    in_step = threading.Event()
    step_done = threading.Event()

    def count_while_stepping():
        in_step.wait()
        while not step_done.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0)

    counter = threading.Thread(target=count_while_stepping)
    counter.start()
    in_step.set()
    start = time.perf_counter()
    optimizer.step(grads=[grad])
    end = time.perf_counter()
    step_done.set()
    counter.join()
    during = [t for t in ticks if start < t < end]
    # With the GIL held for the whole step, the counter could not run inside it.
    assert len(during) > 10, f"{len(during)} ticks during a {1e3 * (end - start):.1f} ms step"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
# Python 3.12+ warns about fork() in a process with threads: forking one is what this tests.
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded, use of fork:DeprecationWarning")
def test_parallel_step_works_in_a_forked_child(restore_runtime):
    """The pool's threads do not survive fork(); the child builds its own pool."""
    rustoptim.set_num_threads(2)
    params, grads = [np.ones(200_000, np.float32)], [np.full(200_000, 0.5, np.float32)]
    rustoptim.SGD(params, lr=0.1).step(grads=grads)  # start the pool in the parent
    expected = params[0] - np.float32(0.1) * grads[0]
    pid = os.fork()
    if pid == 0:  # child: exit code 0 only if the parallel step ran and was right
        try:
            rustoptim.SGD(params, lr=0.1).step(grads=grads)
            os._exit(0 if np.array_equal(params[0], expected) else 1)
        except BaseException:
            os._exit(2)
    deadline = time.monotonic() + 60
    while True:  # a child deadlocked on the parent's pool would never exit
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            pytest.fail("the forked child hung in its step")
        time.sleep(0.01)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status


def _run_child(code: str, env_value=None) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter (a hang or crash there fails the test instead of the suite)."""
    env = dict(os.environ)
    env.pop("RUSTOPTIM_NUM_THREADS", None)
    if env_value is not None:
        env["RUSTOPTIM_NUM_THREADS"] = env_value
    return subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True, text=True, env=env,
                          timeout=300)


def test_thread_counts_above_the_limit_are_refused_before_starting_threads():
    """set_num_threads(5000) took 13.5 s, 20000 and 2**63 never returned; now they are refused at once."""
    code = (
        "import rustoptim\n"
        "from rustoptim import runtime\n"
        "limit = runtime.max_num_threads()\n"
        "before = rustoptim.get_num_threads()\n"
        "for n in (limit + 1, 5000 if limit < 5000 else limit + 2, 20000 + limit, 2**63, 2**64 + 1, 10**400):\n"
        "    try:\n"
        "        rustoptim.set_num_threads(n)\n"
        "    except ValueError as e:\n"
        "        assert f'at most {limit}' in str(e) and str(n)[:20] in str(e), e\n"
        "    else:\n"
        "        raise AssertionError(n)\n"
        "assert rustoptim.get_num_threads() == before\n"
        "try:\n"
        "    rustoptim._core.set_num_threads(limit + 1)\n"  # the extension checks on its own too
        "except ValueError as e:\n"
        "    assert f'at most {limit}' in str(e), e\n"
        "print('ok', limit)\n"
    )
    result = _run_child(code)
    assert result.returncode == 0 and result.stdout.startswith("ok "), result
    limit = int(result.stdout.split()[1])
    assert limit >= 1024 and limit >= (os.cpu_count() or 1)


REPORT_THREADS = "import rustoptim; print(rustoptim.get_num_threads())"


@pytest.mark.parametrize("value", ["abc", "0", "-2", "1e3", "20000", "99999999999999999999999999", "1.5"])
def test_absurd_environment_thread_counts_warn_and_use_all_cores(value):
    default = _run_child(REPORT_THREADS)
    result = _run_child(REPORT_THREADS, env_value=value)
    assert result.returncode == 0, result
    assert result.stdout == default.stdout  # all cores, as with the variable unset
    assert "RuntimeWarning" in result.stderr and f'RUSTOPTIM_NUM_THREADS="{value}"' in result.stderr
    assert "is not a whole number from 1 to" in result.stderr and "using all" in result.stderr


@pytest.mark.parametrize("value, expected", [("3", "3"), (" 2 ", "2"), ("", None)])
def test_valid_environment_thread_counts(value, expected):
    result = _run_child(REPORT_THREADS, env_value=value)
    assert result.returncode == 0 and result.stderr == "", result
    if expected is not None:
        assert result.stdout.strip() == expected
