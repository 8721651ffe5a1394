"""Test problems of Moré, Garbow & Hillstrom (1981), "Testing unconstrained
optimization software", ACM TOMS 7(1), 17-41, shared by the LBFGS and
``minimize`` tests.

A few are written out with their gradients (``rosenbrock``, ``beale``,
``powell_singular``, ``wood``, ``helical_valley``: each ``f(x) -> (loss, grad)``).
The others are sums of squares ``f(x) = Σ r_i(x)²`` given by their residuals
``r(x)``; their gradient ``2·J(x)ᵀ·r(x)`` is exact to rounding by complex-step
differentiation (every residual here is analytic: ``J_ij = Im r_i(x + i·h·e_j) / h``).

:data:`PROBLEMS` lists each problem with its standard start point (which fixes
its size) and ``f*``, the least value MGH report for that size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable

import numpy as np

Objective = Callable[[np.ndarray], tuple[float, np.ndarray]]


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


# ------------------------------------------------------------ sums of squares


def least_squares(residuals: Callable[[np.ndarray], np.ndarray]) -> Objective:
    """``f = Σ r_i²`` and ``∇f = 2·Jᵀr`` with ``J`` by complex steps."""
    step = 1e-30

    def objective(x):
        x = np.asarray(x, dtype=np.float64)
        # Far from the solution some residuals overflow (inf is a fair answer there).
        with np.errstate(over="ignore", invalid="ignore"):
            r = np.real(residuals(x.astype(np.complex128)))
            jacobian = np.empty((r.size, x.size))
            for j in range(x.size):
                shifted = x.astype(np.complex128)
                shifted[j] += 1j * step
                jacobian[:, j] = np.imag(residuals(shifted)) / step
            return float(r @ r), 2 * jacobian.T @ r

    return objective


def powell_badly_scaled(x):
    """MGH 3."""
    return np.array([1e4 * x[0] * x[1] - 1, np.exp(-x[0]) + np.exp(-x[1]) - 1.0001])


def brown_badly_scaled(x):
    """MGH 4: the minimizer is (1e6, 2e-6)."""
    return np.array([x[0] - 1e6, x[1] - 2e-6, x[0] * x[1] - 2])


def jennrich_sampson(x):
    """MGH 6, m = 10."""
    i = np.arange(1, 11)
    return 2 + 2 * i - (np.exp(i * x[0]) + np.exp(i * x[1]))


_BARD_Y = np.array([0.14, 0.18, 0.22, 0.25, 0.29, 0.32, 0.35, 0.39, 0.37, 0.58, 0.73, 0.96, 1.34, 2.10, 4.39])


def bard(x):
    """MGH 8."""
    u = np.arange(1, 16)
    v = 16 - u
    w = np.minimum(u, v)
    return _BARD_Y - (x[0] + u / (v * x[1] + w * x[2]))


_GAUSSIAN_Y = np.array([0.0009, 0.0044, 0.0175, 0.0540, 0.1295, 0.2420, 0.3521, 0.3989,
                        0.3521, 0.2420, 0.1295, 0.0540, 0.0175, 0.0044, 0.0009])


def gaussian(x):
    """MGH 9."""
    t = (8 - np.arange(1, 16)) / 2
    return x[0] * np.exp(-x[1] * (t - x[2]) ** 2 / 2) - _GAUSSIAN_Y


def box_3d(x):
    """MGH 12, m = 10."""
    t = 0.1 * np.arange(1, 11)
    return np.exp(-t * x[0]) - np.exp(-t * x[1]) - x[2] * (np.exp(-t) - np.exp(-10 * t))


_KOWALIK_Y = np.array([0.1957, 0.1947, 0.1735, 0.1600, 0.0844, 0.0627, 0.0456, 0.0342, 0.0323, 0.0235, 0.0246])
_KOWALIK_U = np.array([4, 2, 1, 0.5, 0.25, 0.167, 0.125, 0.1, 0.0833, 0.0714, 0.0625])


def kowalik_osborne(x):
    """MGH 15."""
    u = _KOWALIK_U
    return _KOWALIK_Y - x[0] * (u * u + u * x[1]) / (u * u + u * x[2] + x[3])


def brown_dennis(x):
    """MGH 16, m = 20."""
    t = np.arange(1, 21) / 5
    return (x[0] + t * x[1] - np.exp(t)) ** 2 + (x[2] + x[3] * np.sin(t) - np.cos(t)) ** 2


def watson(x):
    """MGH 20, m = 31."""
    n = x.size
    t = np.arange(1, 30) / 29
    j = np.arange(n)
    powers = t[:, None] ** j[None, :]  # t^(j), j = 0..n-1
    first = (powers[:, : n - 1] * (j[1:] * x[1:])[None, :]).sum(axis=1)  # Σ (j-1) x_j t^(j-2)
    second = (powers * x[None, :]).sum(axis=1)
    return np.concatenate([first - second**2 - 1, [x[0], x[1] - x[0] ** 2 - 1]])


def extended_powell_singular(x):
    """MGH 22: MGH 13 on each block of four."""
    a, b, c, d = x[0::4], x[1::4], x[2::4], x[3::4]
    return np.concatenate([a + 10 * b, math.sqrt(5) * (c - d), (b - 2 * c) ** 2, math.sqrt(10) * (a - d) ** 2])


def penalty_1(x):
    """MGH 23, m = n + 1."""
    return np.concatenate([math.sqrt(1e-5) * (x - 1), [np.sum(x * x) - 0.25]])


def penalty_2(x):
    """MGH 24, m = 2n."""
    n = x.size
    a = math.sqrt(1e-5)
    i = np.arange(2, n + 1)
    y = np.exp(i / 10) + np.exp((i - 1) / 10)
    weights = np.arange(n, 0, -1)
    return np.concatenate([
        [x[0] - 0.2],
        a * (np.exp(x[1:] / 10) + np.exp(x[:-1] / 10) - y),
        a * (np.exp(x[1:] / 10) - np.exp(-1 / 10)),
        [np.sum(weights * x * x) - 1],
    ])


def variably_dimensioned(x):
    """MGH 25, m = n + 2."""
    s = np.sum(np.arange(1, x.size + 1) * (x - 1))
    return np.concatenate([x - 1, [s, s * s]])


def trigonometric(x):
    """MGH 26."""
    n = x.size
    return n - np.sum(np.cos(x)) + np.arange(1, n + 1) * (1 - np.cos(x)) - np.sin(x)


def brown_almost_linear(x):
    """MGH 27."""
    n = x.size
    return np.concatenate([x[:-1] + np.sum(x) - (n + 1), [np.prod(x) - 1]])


def _grid(n):
    h = 1 / (n + 1)
    return h, h * np.arange(1, n + 1)


def discrete_boundary_value(x):
    """MGH 28."""
    h, t = _grid(x.size)
    padded = np.concatenate([[0], x, [0]])
    return 2 * x - padded[:-2] - padded[2:] + h * h * (x + t + 1) ** 3 / 2


def discrete_integral_equation(x):
    """MGH 29."""
    h, t = _grid(x.size)
    cube = (x + t + 1) ** 3
    below = np.cumsum(t * cube)  # Σ_{j ≤ i} t_j (x_j + t_j + 1)³
    above = np.concatenate([np.cumsum(((1 - t) * cube)[::-1])[::-1][1:], [0]])  # Σ_{j > i}
    return x + h * ((1 - t) * below + t * above) / 2


def broyden_tridiagonal(x):
    """MGH 30."""
    padded = np.concatenate([[0], x, [0]])
    return (3 - 2 * x) * x - padded[:-2] - 2 * padded[2:] + 1


def broyden_banded(x):
    """MGH 31: neighbours from 5 below to 1 above."""
    n = x.size
    q = x * (1 + x)
    return np.array([
        x[i] * (2 + 5 * x[i] ** 2) + 1 - (np.sum(q[max(0, i - 5):min(n, i + 2)]) - q[i]) for i in range(n)
    ])


def linear_full_rank(x, m=20):
    """MGH 32."""
    s = 2 * np.sum(x) / m
    return np.concatenate([x - s - 1, np.full(m - x.size, -s - 1)])


def chebyquad(x):
    """MGH 35: shifted Chebyshev polynomials on [0, 1]."""
    n = x.size
    m = n
    y = 2 * x - 1
    t_prev, t = np.ones_like(x), y
    r = []
    for i in range(1, m + 1):
        exact = 0.0 if i % 2 else -1.0 / (i * i - 1)
        r.append(np.mean(t) - exact)
        t_prev, t = t, 2 * y * t - t_prev
    return np.array(r)


@dataclass(frozen=True)
class Problem:
    name: str
    objective: Objective
    start: Sequence[float]
    #: MGH's least value (to their printed precision).
    f_star: float
    minimizer: Sequence[float] | None = None

    @property
    def n(self) -> int:
        return len(self.start)


def _start(n, rule):
    return [rule(j, n) for j in range(1, n + 1)]


#: name -> Problem. Sizes as in MGH's tables where n is free.
PROBLEMS = {p.name: p for p in [
    Problem("rosenbrock", rosenbrock, [-1.2, 1.0], 0.0, [1.0, 1.0]),
    Problem("powell_badly_scaled", least_squares(powell_badly_scaled), [0.0, 1.0], 0.0),
    Problem("brown_badly_scaled", least_squares(brown_badly_scaled), [1.0, 1.0], 0.0, [1e6, 2e-6]),
    Problem("beale", beale, [1.0, 1.0], 0.0, [3.0, 0.5]),
    Problem("jennrich_sampson", least_squares(jennrich_sampson), [0.3, 0.4], 124.362, [0.2578, 0.2578]),
    Problem("helical_valley", helical_valley, [-1.0, 0.0, 0.0], 0.0, [1.0, 0.0, 0.0]),
    Problem("bard", least_squares(bard), [1.0, 1.0, 1.0], 8.21487e-3),
    Problem("gaussian", least_squares(gaussian), [0.4, 1.0, 0.0], 1.12793e-8),
    Problem("box_3d", least_squares(box_3d), [0.0, 10.0, 20.0], 0.0),
    Problem("powell_singular", powell_singular, [3.0, -1.0, 0.0, 1.0], 0.0, [0.0, 0.0, 0.0, 0.0]),
    Problem("wood", wood, [-3.0, -1.0, -3.0, -1.0], 0.0, [1.0, 1.0, 1.0, 1.0]),
    Problem("kowalik_osborne", least_squares(kowalik_osborne), [0.25, 0.39, 0.415, 0.39], 3.07505e-4),
    Problem("brown_dennis", least_squares(brown_dennis), [25.0, 5.0, -5.0, -1.0], 85822.2),
    Problem("watson_6", least_squares(watson), [0.0] * 6, 2.28767e-3),
    Problem("extended_rosenbrock_100", rosenbrock, [-1.2, 1.0] * 50, 0.0, [1.0] * 100),
    Problem("extended_powell_singular_20", least_squares(extended_powell_singular), [3.0, -1.0, 0.0, 1.0] * 5, 0.0),
    Problem("penalty_1_10", least_squares(penalty_1), _start(10, lambda j, n: float(j)), 7.08765e-5),
    Problem("penalty_2_10", least_squares(penalty_2), [0.5] * 10, 2.93660e-4),
    Problem("variably_dimensioned_10", least_squares(variably_dimensioned), _start(10, lambda j, n: 1 - j / n), 0.0),
    # From the standard start the trigonometric function leads to a local
    # minimum, the value MGH report for n = 10 (f = 0 is attained elsewhere).
    Problem("trigonometric_10", least_squares(trigonometric), [0.1] * 10, 2.79506e-5),
    Problem("brown_almost_linear_10", least_squares(brown_almost_linear), [0.5] * 10, 0.0),
    Problem("discrete_boundary_value_10", least_squares(discrete_boundary_value),
            _start(10, lambda j, n: j / (n + 1) * (j / (n + 1) - 1)), 0.0),
    Problem("discrete_integral_equation_10", least_squares(discrete_integral_equation),
            _start(10, lambda j, n: j / (n + 1) * (j / (n + 1) - 1)), 0.0),
    Problem("broyden_tridiagonal_10", least_squares(broyden_tridiagonal), [-1.0] * 10, 0.0),
    Problem("broyden_banded_10", least_squares(broyden_banded), [-1.0] * 10, 0.0),
    Problem("linear_full_rank_10", least_squares(linear_full_rank), [1.0] * 10, 10.0),
    Problem("chebyquad_8", least_squares(chebyquad), _start(8, lambda j, n: j / (n + 1)), 3.51687e-3),
]}
