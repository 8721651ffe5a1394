"""rustoptim.LBFGS on test functions of Moré, Garbow & Hillstrom (1981),
"Testing unconstrained optimization software", ACM TOMS 7(1), from their
standard starting points, compared with scipy's L-BFGS-B when scipy is
installed."""

from __future__ import annotations

import math

import numpy as np
import pytest
from rustoptim import LBFGS, Parameter


def rosenbrock(x):
    """MGH 1 (n = 2) and its extension MGH 21 (n even): pairs (x[2i], x[2i+1])."""
    a, b = x[0::2], x[1::2]
    r1, r2 = 10 * (b - a * a), 1 - a
    grad = np.empty_like(x)
    grad[0::2] = -40 * a * r1 - 2 * r2
    grad[1::2] = 20 * r1
    return float(np.sum(r1 * r1 + r2 * r2)), grad


def beale(x):
    """MGH 5."""
    y = np.array([1.5, 2.25, 2.625])
    i = np.arange(1, 4)
    r = y - x[0] * (1 - x[1] ** i)
    dr0 = -(1 - x[1] ** i)
    dr1 = x[0] * i * x[1] ** (i - 1)
    return float(r @ r), np.array([2 * r @ dr0, 2 * r @ dr1])


def powell_singular(x):
    """MGH 13: the Hessian is singular at the minimizer 0."""
    a, b, c, e = x[0] + 10 * x[1], x[2] - x[3], x[1] - 2 * x[2], x[0] - x[3]
    loss = a * a + 5 * b * b + c**4 + 10 * e**4
    grad = np.array([2 * a + 40 * e**3, 20 * a + 4 * c**3, 10 * b - 8 * c**3, -10 * b - 40 * e**3])
    return float(loss), grad


def wood(x):
    """MGH 14."""
    x1, x2, x3, x4 = x
    loss = (
        100 * (x2 - x1**2) ** 2 + (1 - x1) ** 2 + 90 * (x4 - x3**2) ** 2 + (1 - x3) ** 2
        + 10.1 * ((x2 - 1) ** 2 + (x4 - 1) ** 2) + 19.8 * (x2 - 1) * (x4 - 1)
    )
    grad = np.array([
        -400 * x1 * (x2 - x1**2) - 2 * (1 - x1),
        200 * (x2 - x1**2) + 20.2 * (x2 - 1) + 19.8 * (x4 - 1),
        -360 * x3 * (x4 - x3**2) - 2 * (1 - x3),
        180 * (x4 - x3**2) + 20.2 * (x4 - 1) + 19.8 * (x2 - 1),
    ])
    return float(loss), grad


def helical_valley(x):
    """MGH 7, with MGH's θ (arctan(x2/x1)/2π, plus 1/2 when x1 < 0)."""
    x1, x2, x3 = x
    theta = math.atan(x2 / x1) / (2 * math.pi) + (0.5 if x1 < 0 else 0.0)
    r = math.hypot(x1, x2)
    u, v = x3 - 10 * theta, r - 1
    dtheta = np.array([-x2, x1]) / (2 * math.pi * r * r)
    grad12 = 200 * u * (-10 * dtheta) + 200 * v * np.array([x1, x2]) / r
    return float(100 * (u * u + v * v) + x3 * x3), np.array([*grad12, 200 * u + 2 * x3])


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
