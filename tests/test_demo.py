"""The ``python -m rustoptim`` demo (python/rustoptim/__main__.py): it trains, and what it times is the same update."""

from __future__ import annotations

import numpy as np
import pytest

import rustoptim
from rustoptim import __main__ as demo

OPTIMIZERS = {
    "adam": lambda params: rustoptim.Adam(params, lr=1e-2),
    "sgd_momentum": lambda params: rustoptim.SGD(params, lr=0.05, momentum=0.9),
}


@pytest.mark.parametrize("make_optimizer", OPTIMIZERS.values(), ids=OPTIMIZERS.keys())
def test_training_reduces_the_loss(make_optimizer):
    x, y = demo.make_spirals()
    before = demo.init_mlp()
    params, history = demo.train(make_optimizer, x, y, epochs=40, report_every=10, verbose=False)
    assert [epoch for epoch, _, _ in history] == [0, 10, 20, 30, 40]
    losses = [loss for _, loss, _ in history]
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.85 * losses[0]
    assert all(p.dtype == demo.DTYPE for p in params)
    assert all(not np.array_equal(p, q) for p, q in zip(params, before))


def test_spirals():
    x, y = demo.make_spirals(n_per_class=50)
    assert x.shape == (100, 2) and x.dtype == demo.DTYPE
    assert np.array_equal(np.bincount(y), [50, 50])
    np.testing.assert_array_equal(x, demo.make_spirals(n_per_class=50)[0])  # fixed seed


def test_backprop_matches_finite_differences():
    x, y = demo.make_spirals(n_per_class=20, seed=2)
    x = x.astype(np.float64)
    params = [p.astype(np.float64) for p in demo.init_mlp(sizes=(2, 5, 4, 2), seed=2)]
    for p in params[1::2]:
        p[:] = np.random.default_rng(3).standard_normal(p.shape) * 0.1  # nonzero biases
    _, _, grads = demo.forward_backward(params, x, y)
    h = 1e-6
    for p, g in zip(params, grads):
        assert g.shape == p.shape
        for index in np.ndindex(p.shape):
            saved = p[index]
            p[index] = saved + h
            up = demo.forward_backward(params, x, y)[0]
            p[index] = saved - h
            down = demo.forward_backward(params, x, y)[0]
            p[index] = saved
            assert g[index] == pytest.approx((up - down) / (2 * h), rel=1e-5, abs=1e-8)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_numpy_reference_is_rustoptim_adam(dtype):
    rng = np.random.default_rng(4)
    shapes = [(3, 4), (7,), ()]
    start = [rng.standard_normal(s).astype(dtype) for s in shapes]
    rust_params, numpy_params = [a.copy() for a in start], [a.copy() for a in start]
    optimizer = rustoptim.Adam(rust_params, lr=1e-2)
    state: dict = {}
    for _ in range(10):
        grads = [rng.standard_normal(s).astype(dtype) for s in shapes]
        optimizer.step(grads=grads)
        demo.numpy_adam_step(numpy_params, grads, state, lr=1e-2)
    tolerance = 1e-12 if dtype == np.float64 else 1e-5
    for a, b in zip(rust_params, numpy_params):
        np.testing.assert_allclose(a, b, rtol=tolerance, atol=tolerance)


def test_time_steps_reports_medians_and_difference():
    rust, numpy_, difference = demo.time_steps([(8, 8), (8,)], repeats=3)
    assert rust > 0 and numpy_ > 0
    assert difference < 1e-5


def test_main_runs(monkeypatch, capsys):
    real_train, real_time_steps = demo.train, demo.time_steps
    monkeypatch.setattr(demo, "train", lambda *args, **kwargs: real_train(*args, **kwargs, epochs=4, report_every=2))
    monkeypatch.setattr(demo, "time_steps", lambda shapes, repeats: real_time_steps(shapes[:1], repeats=2))
    demo.main()
    out = capsys.readouterr().out
    assert "rustoptim.Adam" in out and "rustoptim.SGD" in out
    assert out.count("final accuracy") == 2
    assert out.count("speed-up") == 2
