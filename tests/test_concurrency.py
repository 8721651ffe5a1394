"""Steps from several threads, and interrupted steps.

A step of 32k elements or more runs with the GIL released. Two threads stepping
one optimizer are serialized (no update is lost, no step count skipped), kernels
of different optimizers that share arrays never run at the same time, and a
KeyboardInterrupt arrives either before a step's first write or after its last.
"""

from __future__ import annotations

import signal
import threading

import numpy as np
import pytest

import rustoptim
from optimizer_table import CONFIG_IDS, CONFIGS, as_param

BIG = 1 << 17  # well above the size at which the GIL is released


def _run_threads(target, count):
    threads = [threading.Thread(target=target) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


@pytest.mark.parametrize("cls,kwargs", CONFIGS, ids=CONFIG_IDS)
def test_two_threads_stepping_one_optimizer_lose_nothing(cls, kwargs):
    steps_per_thread = 20
    grads = [as_param(cls, np.full(BIG, 0.5)), as_param(cls, np.full(7, -0.25))]

    def run(optimizer):
        for _ in range(steps_per_thread):
            optimizer.step(grads=grads)

    concurrent = [as_param(cls, np.linspace(-1, 1, BIG)), as_param(cls, np.linspace(0, 1, 7))]
    optimizer = cls(concurrent, **kwargs)
    _run_threads(lambda: run(optimizer), 2)

    sequential = [as_param(cls, np.linspace(-1, 1, BIG)), as_param(cls, np.linspace(0, 1, 7))]
    reference = cls(sequential, **kwargs)
    run(reference)
    run(reference)
    # The same gradient every step: the order of the steps does not matter, so
    # serialized concurrent steps equal sequential ones bitwise.
    for a, b in zip(concurrent, sequential):
        np.testing.assert_array_equal(a, b)
    for p, q in zip(optimizer.params, reference.params):
        assert optimizer.state[p].get("step") == reference.state[q].get("step")


def test_optimizers_sharing_a_param_in_two_threads_do_not_race():
    """Two SGD optimizers over one array: every update lands (plain SGD with a
    constant gradient moves the param by exactly lr·g per step)."""
    shared = np.zeros(BIG)
    grads = [np.ones(BIG)]
    first, second = rustoptim.SGD([shared], lr=1.0), rustoptim.SGD([shared], lr=1.0)
    steps = 50

    def run(optimizer):
        return lambda: [optimizer.step(grads=grads) for _ in range(steps)]

    threads = [threading.Thread(target=run(first)), threading.Thread(target=run(second))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    np.testing.assert_array_equal(shared, np.full(BIG, -2.0 * steps))


def test_keyboard_interrupt_lands_before_or_after_a_whole_step():
    """Interrupt a multi-group Adam loop every ~100 us: afterwards every param
    has taken the same number of steps, and the params equal an uninterrupted
    run of that many steps, bitwise."""
    shapes = [(300,), (40, 5), (), (17,)]
    rng = np.random.default_rng(1)
    initial = [rng.standard_normal(s) for s in shapes]
    grads = [np.full(s, 0.1) for s in shapes]

    params = [a.copy() for a in initial]
    optimizer = rustoptim.Adam([{"params": [params[0], params[1]]}, {"params": [params[2]], "lr": 0.01},
                                {"params": [params[3]], "lr": 0.1}], lr=0.05, amsgrad=True)

    # The handler raises only while a step is being called, so the test's own
    # loop is never interrupted; inside that window it may land anywhere.
    armed = [False]

    def interrupt(signum, frame):
        if armed[0]:
            armed[0] = False
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGALRM, interrupt)
    interrupts = 0
    try:
        signal.setitimer(signal.ITIMER_REAL, 1e-4, 1e-4)
        for _ in range(3000):
            try:
                armed[0] = True
                optimizer.step(grads=grads)
                armed[0] = False
            except KeyboardInterrupt:
                interrupts += 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

    counts = {optimizer.state[p]["step"] for p in optimizer.params if optimizer.state.get(p)}
    assert len(counts) == 1, f"params at different step counts {counts} after {interrupts} interrupts"
    (count,) = counts
    assert interrupts > 0
    assert len(optimizer.state) in (0, len(shapes))

    clean = [a.copy() for a in initial]
    reference = rustoptim.Adam([{"params": [clean[0], clean[1]]}, {"params": [clean[2]], "lr": 0.01},
                                {"params": [clean[3]], "lr": 0.1}], lr=0.05, amsgrad=True)
    for _ in range(int(count)):
        reference.step(grads=grads)
    for a, b in zip(params, clean):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("cls,kwargs", CONFIGS[:1], ids=CONFIG_IDS[:1])
def test_pickled_optimizer_gets_its_own_lock(cls, kwargs):
    import pickle

    optimizer = cls([as_param(cls, np.zeros(3))], **kwargs)
    copy = pickle.loads(pickle.dumps(optimizer))
    assert copy._step_lock is not optimizer._step_lock
    copy.step(grads=[as_param(cls, np.ones(3))])
