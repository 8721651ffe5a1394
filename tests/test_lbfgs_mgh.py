"""rustoptim.LBFGS on test functions of Moré, Garbow & Hillstrom (1981),
"Testing unconstrained optimization software", ACM TOMS 7(1), from their
standard starting points, compared with scipy's L-BFGS-B when scipy is
installed."""

from __future__ import annotations

import numpy as np
import pytest

from mgh import beale, helical_valley, powell_singular, rosenbrock, wood
from rustoptim import LBFGS, Parameter

# name: (function, start, minimizer)
PROBLEMS = {
    "rosenbrock": (rosenbrock, [-1.2, 1.0], [1.0, 1.0]),
    "beale": (beale, [1.0, 1.0], [3.0, 0.5]),
    "powell_singular": (powell_singular, [3.0, -1.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0]),
    "wood": (wood, [-3.0, -1.0, -3.0, -1.0], [1.0, 1.0, 1.0, 1.0]),
    "helical_valley": (helical_valley, [-1.0, 0.0, 0.0], [1.0, 0.0, 0.0]),
    "extended_rosenbrock_100": (rosenbrock, [-1.2, 1.0] * 50, [1.0] * 100),
}
# Powell's minimizer is singular: f falls like |x|^4, so x is only near 0 to about f^(1/4).
X_TOLERANCE = {"powell_singular": 2e-2}


@pytest.mark.parametrize("name", PROBLEMS)
def test_gradients_are_right(name):
    f, start, _ = PROBLEMS[name]
    rng = np.random.default_rng(0)
    x = np.array(start) + 0.1 * rng.standard_normal(len(start))
    _, grad = f(x)
    for i in range(len(x)):
        e = np.zeros_like(x)
        e[i] = 1e-6
        numeric = (f(x + e)[0] - f(x - e)[0]) / 2e-6
        assert abs(numeric - grad[i]) <= 1e-5 * max(1.0, abs(grad[i])), (i, numeric, grad[i])


def minimize(name, **kwargs):
    f, start, _ = PROBLEMS[name]
    p = Parameter(np.array(start, dtype=np.float64))
    calls = [0]

    def closure():
        calls[0] += 1
        loss, p.grad = f(p.data)
        return loss

    opt = LBFGS([p], **kwargs)
    for _ in range(100):
        before = calls[0]
        opt.step(closure)
        if calls[0] - before == 1:  # converged: the first evaluation met tolerance_grad
            break
    return p.data, f(p.data)[0], calls[0]


SETTINGS = dict(line_search_fn="strong_wolfe", max_iter=500, max_eval=1000,
                tolerance_grad=1e-9, tolerance_change=0.0, history_size=20)


@pytest.mark.parametrize("name", PROBLEMS)
def test_converges(name):
    x, loss, calls = minimize(name, **SETTINGS)
    minimizer = np.array(PROBLEMS[name][2])
    assert loss < 1e-12, loss
    np.testing.assert_allclose(x, minimizer, atol=X_TOLERANCE.get(name, 1e-5))


@pytest.mark.parametrize("name", PROBLEMS)
def test_agrees_with_scipy_lbfgsb(name):
    optimize = pytest.importorskip("scipy.optimize")
    f, start, minimizer = PROBLEMS[name]
    result = optimize.minimize(
        f, np.array(start), jac=True, method="L-BFGS-B",
        options=dict(maxcor=SETTINGS["history_size"], maxiter=10_000, maxfun=100_000, ftol=0.0, gtol=1e-9),
    )
    x, loss, calls = minimize(name, **SETTINGS)
    tolerance = X_TOLERANCE.get(name, 1e-5)
    # Both reach the same minimizer, rustoptim at least as close in loss.
    np.testing.assert_allclose(result.x, minimizer, atol=tolerance)
    np.testing.assert_allclose(x, result.x, atol=2 * tolerance)
    assert loss <= max(result.fun, 1e-12)


def test_fixed_step_converges_on_a_convex_problem():
    """Without a line search (lr small enough), on the extended Rosenbrock's
    convex neighbourhood of the minimizer."""
    f = rosenbrock
    p = Parameter(np.ones(100) + 0.05 * np.sin(np.arange(100)))

    def closure():
        loss, p.grad = f(p.data)
        return loss

    opt = LBFGS([p], lr=0.5, max_iter=200, tolerance_change=0.0)
    start = f(p.data)[0]
    for _ in range(5):
        opt.step(closure)
    assert f(p.data)[0] < 1e-10 * start
