"""rustoptim.minimize (L-BFGS-B) against scipy.optimize.minimize(method="L-BFGS-B"):
the Moré-Garbow-Hillstrom problems, bounded problems, objectives that are NaN
outside their domain, callbacks, finite differences, the result and bad input.

scipy is optional for rustoptim; the tests that compare with it skip without it.
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest

import rustoptim
from mgh import PROBLEMS, rosenbrock
from rustoptim import minimize
from rustoptim.errors import (
    BoundsError,
    DTypeError,
    NonFiniteError,
    OptionError,
    RustoptimError,
    ShapeError,
)

try:
    from scipy import optimize
except ImportError:  # pragma: no cover - scipy is installed in the test environment
    optimize = None

needs_scipy = pytest.mark.skipif(optimize is None, reason="scipy is not installed")


# scipy < 1.15 (its Fortran L-BFGS-B; the last scipy for Python 3.9 is 1.13) words two
# messages as below; rustoptim words them as scipy >= 1.15 does.
SCIPY_OLD_MESSAGES = {
    "CONVERGENCE: REL_REDUCTION_OF_F_<=_FACTR*EPSMCH": "CONVERGENCE: RELATIVE REDUCTION OF F <= FACTR*EPSMCH",
    "CONVERGENCE: NORM_OF_PROJECTED_GRADIENT_<=_PGTOL": "CONVERGENCE: NORM OF PROJECTED GRADIENT <= PGTOL",
}


def scipy_minimize(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's overflow and invalid-value warnings
        return optimize.minimize(*args, method="L-BFGS-B", **kwargs)


def recording(fun, points):
    """``fun`` that appends a copy of every point it is called at to ``points``."""

    def wrapped(x, *args):
        points.append(np.array(x, copy=True))
        return fun(x, *args)

    return wrapped


def assert_inside(points, lower, upper):
    for x in points:
        assert np.all(x >= lower) and np.all(x <= upper), x


# ------------------------------------------------------------------ MGH problems

#: Tight tolerances: stop on the projected gradient only, so both solvers are
#: asked to reach f*.
TIGHT = dict(gtol=1e-9, ftol=0.0, maxiter=100_000, maxfun=100_000)


def reached(f, f_star):
    """``f`` is ``f*`` to MGH's printed precision (six digits) or below 1e-6."""
    return f <= f_star * (1 + 1e-5) + 1e-6


def evaluations_to_reach(objective, f_star):
    """``objective`` that counts its calls and notes the call at which the
    value first reached ``f*`` (in ``.first``)."""

    def wrapped(x):
        wrapped.calls += 1
        value, grad = objective(x)
        if wrapped.first is None and reached(value, f_star):
            wrapped.first = wrapped.calls
        return value, grad

    wrapped.calls, wrapped.first = 0, None
    return wrapped


@needs_scipy
@pytest.mark.parametrize("name", PROBLEMS)
def test_mgh_problem_is_solved_to_f_star_with_at_most_scipys_evaluations(name):
    """Both solvers run to the tight tolerances; what is compared is how many
    evaluations each needed to first reach f* (past that point, both spend
    evaluations at the noise floor of f, differently with rounding)."""
    problem = PROBLEMS[name]
    x0 = np.array(problem.start, dtype=np.float64)
    ours_counted = evaluations_to_reach(problem.objective, problem.f_star)
    theirs_counted = evaluations_to_reach(problem.objective, problem.f_star)
    ours = minimize(ours_counted, x0, jac=True, options=TIGHT)
    theirs = scipy_minimize(theirs_counted, x0, jac=True, options=TIGHT)
    assert reached(ours.fun, problem.f_star), (ours.fun, problem.f_star, ours.message)
    assert ours.fun <= max(theirs.fun, problem.f_star + 1e-12) * (1 + 1e-6) + 1e-15
    assert ours.nfev == ours_counted.calls
    if theirs_counted.first is not None:
        assert ours_counted.first <= 1.15 * theirs_counted.first + 5, (ours_counted.first, theirs_counted.first)
    if problem.minimizer is not None:
        scale = np.maximum(1.0, np.abs(problem.minimizer))
        tolerance = 2e-2 if name == "powell_singular" else 1e-4  # f ~ |x|^4 near Powell's minimizer
        np.testing.assert_allclose(ours.x / scale, np.array(problem.minimizer) / scale, atol=tolerance)


def test_mgh_gradients_are_right():
    """Against central differences, relative to the gradient's size."""
    rng = np.random.default_rng(0)
    for name, problem in PROBLEMS.items():
        x = np.array(problem.start) + 0.05 * rng.standard_normal(problem.n)
        _, grad = problem.objective(x)
        numeric = np.empty_like(grad)
        for i in range(problem.n):
            e = np.zeros_like(x)
            e[i] = 1e-6 * max(1.0, abs(x[i]))
            numeric[i] = (problem.objective(x + e)[0] - problem.objective(x - e)[0]) / (2 * e[i])
        assert np.abs(numeric - grad).max() <= 1e-5 * max(1.0, np.abs(grad).max()), name


@needs_scipy
@pytest.mark.parametrize("name", ["rosenbrock", "beale", "helical_valley", "wood", "extended_rosenbrock_100"])
def test_default_options_follow_scipys_iterations(name):
    """With scipy's defaults the iterates are the same algorithm's: the same
    iteration and evaluation counts and the same point to rounding."""
    problem = PROBLEMS[name]
    x0 = np.array(problem.start)
    ours = minimize(problem.objective, x0, jac=True)
    theirs = scipy_minimize(problem.objective, x0, jac=True)
    assert (ours.nit, ours.nfev, ours.status) == (theirs.nit, theirs.nfev, theirs.status)
    assert ours.message == SCIPY_OLD_MESSAGES.get(theirs.message, theirs.message)
    np.testing.assert_allclose(ours.x, theirs.x, rtol=1e-6, atol=1e-8)


# ------------------------------------------------------------------ bounds


def quadratic(a, b):
    """½xᵀAx − bᵀx."""

    def fun(x):
        ax = a @ x
        return float(0.5 * x @ ax - b @ x), ax - b

    return fun


BOUNDED = {
    # name: (fun, x0, bounds)
    "rosenbrock_upper_active": (rosenbrock, [-1.2, 1.0], [(-2, 0.5), (None, 3)]),
    "rosenbrock_lower_active": (rosenbrock, [-1.2, 1.0] * 3, [(1.5, None), (None, None)] * 3),
    "one_sided_and_infinite": (
        rosenbrock, [-1.2, 1.0, -1.2, 1.0], [(None, 0.8), (-np.inf, np.inf), (0.9, None), (None, 2.0)]),
    "start_outside_the_box": (rosenbrock, [5.0, -5.0, 5.0, -5.0], [(-1, 0.5), (0, 2), (-3, 3), (0.5, 0.75)]),
    "quadratic_box": (
        quadratic(np.array([[4.0, 1, 0], [1, 3, 1], [0, 1, 2]]), np.array([10.0, -8, 3])),
        [0.0, 0.0, 0.0], [(0, 1), (-1, 1), (-1, 1)]),
    "fixed_variable": (rosenbrock, [-1.2, 1.0, -1.2, 1.0], [(None, None), (0.7, 0.7), (None, None), (None, None)]),
}


@needs_scipy
@pytest.mark.parametrize("name", BOUNDED)
@pytest.mark.parametrize("jac", [True, None])
def test_bounded_problem_reaches_scipys_optimum(name, jac):
    fun, x0, bounds = BOUNDED[name]
    x0 = np.array(x0, dtype=np.float64)
    lower = np.array([-np.inf if lo is None else lo for lo, _ in bounds])
    upper = np.array([np.inf if hi is None else hi for _, hi in bounds])
    objective = fun if jac else (lambda x: fun(x)[0])
    points = []
    ours = minimize(recording(objective, points), x0, jac=jac, bounds=bounds, options=TIGHT)
    theirs = scipy_minimize(objective, x0, jac=jac, bounds=bounds, options=TIGHT)
    assert_inside(points, lower, upper)
    assert np.all(ours.x >= lower) and np.all(ours.x <= upper)
    tolerance = 1e-7 if jac else 1e-5
    assert ours.fun <= theirs.fun + tolerance * max(1.0, abs(theirs.fun))
    np.testing.assert_allclose(ours.x, theirs.x, atol=100 * tolerance)
    assert ours.nfev == len(points)


@needs_scipy
def test_nonnegative_least_squares_matches_nnls():
    rng = np.random.default_rng(3)
    a = rng.standard_normal((30, 10))
    b = rng.standard_normal(30)
    expected, residual = optimize.nnls(a, b)
    assert np.sum(expected == 0) >= 2  # some bounds are active

    def fun(x):
        r = a @ x - b
        return float(r @ r), 2 * a.T @ r

    result = minimize(fun, np.zeros(10), jac=True, bounds=[(0, None)] * 10, options=dict(gtol=1e-10, ftol=0))
    np.testing.assert_allclose(result.x, expected, atol=1e-9)
    assert result.fun == pytest.approx(residual**2, rel=1e-12)
    assert result.success


def test_scipy_bounds_object_broadcasts():
    optimize = pytest.importorskip("scipy.optimize")
    fun = quadratic(np.eye(3), np.array([5.0, -5.0, 0.5]))
    result = minimize(fun, np.zeros(3), jac=True, bounds=optimize.Bounds(-1.0, [1.0, 2.0, 3.0]))
    np.testing.assert_allclose(result.x, [1.0, -1.0, 0.5], atol=1e-8)


def test_all_variables_fixed():
    calls = []
    result = minimize(recording(lambda x: float(x @ x), calls), [3.0, 4.0], bounds=[(1, 1), (2, 2)])
    np.testing.assert_array_equal(result.x, [1.0, 2.0])
    assert result.fun == 5.0 and result.success and result.nit == 0
    assert len(calls) == result.nfev == 1  # no difference is taken in a fixed variable
    assert np.all(np.isnan(result.jac))


def test_start_outside_the_box_is_projected_first():
    points = []
    minimize(recording(lambda x: (float(x @ x), 2 * x), points), [10.0, -10.0], jac=True, bounds=[(1, 2), (-3, 5)])
    np.testing.assert_array_equal(points[0], [2.0, -3.0])


# ------------------------------------------------------------------ NaN outside the domain


def log_barrier(x):
    """f(x) = Σ x_i − 2·log x_i: NaN (and a warning-free NaN) for x_i < 0, minimum at x = 2."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.sum(x - 2 * np.log(x)))


def log_barrier_grad(x):
    with np.errstate(divide="ignore"):
        return 1 - 2 / x


@pytest.mark.parametrize("n", [5, 10, 20, 50])
@pytest.mark.parametrize("jac", ["exact", "differences"])
def test_objective_that_is_nan_outside_its_domain_reaches_the_minimum(n, jac):
    x0 = 100 + np.linspace(0, 1, n)
    points = []
    gradient = log_barrier_grad if jac == "exact" else None
    result = minimize(recording(log_barrier, points), x0, jac=gradient)
    assert result.success, result.message
    np.testing.assert_allclose(result.x, 2.0, atol=1e-4)
    assert np.isfinite(result.fun) and np.all(np.isfinite(result.jac))
    # Trials did land in the NaN region (that is what the test is about).
    assert any(np.any(p < 0) for p in points)
    if optimize is not None:
        # scipy 1.17 stops ABNORMAL with f = nan on this problem.
        theirs = scipy_minimize(log_barrier, x0, jac=gradient)
        assert not theirs.fun < result.fun - 1e-9


def test_nan_gradient_with_finite_value_shortens_the_step():
    """The value is finite everywhere but the gradient is NaN for x < 1."""

    def fun(x):
        g = 2 * (x - 1.5)
        if np.any(x < 1):
            g = np.full_like(x, np.nan)
        return float(np.sum((x - 1.5) ** 2)), g

    result = minimize(fun, np.array([40.0, 60.0]), jac=True)
    assert result.success
    np.testing.assert_allclose(result.x, 1.5, atol=1e-6)


def test_infinite_objective_is_a_failed_trial_too():
    def fun(x):
        if np.any(x > 3):
            return np.inf, np.full_like(x, np.inf)
        return float(np.sum((x - 2.5) ** 2)), 2 * (x - 2.5)

    result = minimize(fun, np.zeros(4), jac=True, options=dict(maxcor=3))
    assert result.success
    np.testing.assert_allclose(result.x, 2.5, atol=1e-6)


def test_nan_at_the_start_is_reported_not_raised():
    result = minimize(lambda x: np.nan, [1.0, 2.0])
    assert not result.success and result.status == 2
    assert result.message.startswith("ABNORMAL: ")
    assert "start" in result.message
    assert result.nfev == 1  # no differences around a NaN value


def test_wrong_gradient_ends_abnormal_at_the_last_iterate():
    result = minimize(lambda x: (float(x @ x), -2 * x), [1.0, -1.0], jac=True)
    assert result.status == 2 and not result.success
    assert result.message.startswith("ABNORMAL: ")
    np.testing.assert_array_equal(result.x, [1.0, -1.0])


# ------------------------------------------------------------------ callback


def test_callback_with_intermediate_result_runs_once_per_iteration():
    seen = []

    def callback(intermediate_result):
        seen.append((intermediate_result.x.copy(), intermediate_result.fun))
        assert intermediate_result["fun"] == intermediate_result.fun

    result = minimize(rosenbrock, [-1.2, 1.0], jac=True, callback=callback)
    assert len(seen) == result.nit
    np.testing.assert_array_equal(seen[-1][0], result.x)
    assert seen[-1][1] == result.fun
    assert all(b[1] <= a[1] for a, b in zip(seen, seen[1:]))  # each iterate is lower


def test_legacy_callback_gets_a_copy_of_x():
    seen = []

    def callback(xk):
        seen.append(xk)
        xk[:] = 1e6  # must not disturb the run

    result = minimize(rosenbrock, [-1.2, 1.0], jac=True, callback=callback)
    assert result.success and len(seen) == result.nit
    np.testing.assert_allclose(result.x, [1.0, 1.0], atol=1e-4)


def test_stop_iteration_in_callback_stops_like_scipy():
    count = [0]

    def callback(intermediate_result):
        count[0] += 1
        if count[0] == 3:
            raise StopIteration

    result = minimize(rosenbrock, [-1.2, 1.0], jac=True, callback=callback)
    assert result.nit == 3 and count[0] == 3
    assert result.status == 99 and not result.success
    assert result.message == "`callback` raised `StopIteration`."
    if optimize is not None:
        count[0] = 0
        theirs = scipy_minimize(rosenbrock, [-1.2, 1.0], jac=True, callback=callback)
        assert (theirs.status, theirs.message, theirs.nit) == (result.status, result.message, result.nit)
        np.testing.assert_allclose(result.x, theirs.x, rtol=1e-10)


def test_exceptions_from_user_code_propagate():
    class Boom(Exception):
        pass

    def fun(x):
        if x[0] > 0.5:
            raise Boom("objective")
        return float((x[0] - 1) ** 2), np.array([2 * (x[0] - 1)])

    with pytest.raises(Boom):
        minimize(fun, [0.0], jac=True)

    def callback(xk):
        raise Boom("callback")

    with pytest.raises(Boom):
        minimize(rosenbrock, [-1.2, 1.0], jac=True, callback=callback)


# ------------------------------------------------------------------ finite differences


@needs_scipy
@pytest.mark.parametrize("jac", [None, "2-point"])
def test_finite_differences_take_scipys_steps(jac):
    fun = PROBLEMS["box_3d"].objective
    x0 = np.array(PROBLEMS["box_3d"].start)
    ours_points, their_points = [], []
    value = lambda x: fun(x)[0]  # noqa: E731
    ours = minimize(recording(value, ours_points), x0, jac=jac)
    theirs = scipy_minimize(recording(value, their_points), x0, jac=jac)
    assert ours.nfev == len(ours_points)
    # The same evaluation points as scipy for the first three gradients (four
    # points each); later ones drift apart with rounding, amplified by the
    # differences.
    np.testing.assert_allclose(np.array(ours_points[:12]), np.array(their_points[:12]), rtol=1e-12)
    assert (ours.nit, ours.nfev, ours.njev) == (theirs.nit, theirs.nfev, theirs.njev)
    np.testing.assert_allclose(ours.x, theirs.x, rtol=1e-5)


def test_finite_difference_options():
    def value(x):
        return float(np.sum((x - 3) ** 2))

    points = []
    minimize(recording(value, points), [1.0, 2.0], options=dict(eps=[1e-3, 1e-4], maxiter=0))
    assert len(points) == 3
    np.testing.assert_allclose(points[1] - points[0], [1e-3, 0.0])
    np.testing.assert_allclose(points[2] - points[0], [0.0, 1e-4])
    points.clear()
    minimize(recording(value, points), [1.0, -4.0], jac="2-point",
             options=dict(finite_diff_rel_step=1e-3, maxiter=0))
    np.testing.assert_allclose(points[1] - points[0], [1e-3, 0.0])
    np.testing.assert_allclose(points[2] - points[0], [0.0, -4e-3])


def test_finite_difference_steps_stay_in_the_box():
    points = []
    result = minimize(recording(lambda x: float(np.sum((x - 5) ** 2)), points), [1.0, 0.0],
                      bounds=[(0, 1), (0, 1e-12)])
    assert_inside(points, [0, 0], [1, 1e-12])
    np.testing.assert_allclose(result.x, [1.0, 1e-12], atol=2e-12)


def test_fixed_variables_get_no_difference():
    points = []
    result = minimize(recording(lambda x: float(np.sum((x - 2) ** 2)), points), [0.0, 0.0, 0.0],
                      bounds=[(None, None), (1, 1), (None, None)])
    assert all(p[1] == 1 for p in points)
    np.testing.assert_allclose(result.x, [2.0, 1.0, 2.0], atol=1e-6)
    assert np.isnan(result.jac[1]) and np.all(np.isfinite(result.jac[[0, 2]]))


def test_separate_jac_callable_and_counts():
    calls = {"fun": 0, "jac": 0}

    def fun(x, a):
        calls["fun"] += 1
        return float(a * np.sum((x - 1) ** 2))

    def jac(x, a):
        calls["jac"] += 1
        return 2 * a * (x - 1)

    result = minimize(fun, [0.0, 3.0], args=(2.0,), jac=jac)
    assert result.success
    assert result.nfev == calls["fun"] and result.njev == calls["jac"]
    np.testing.assert_allclose(result.x, [1.0, 1.0], atol=1e-6)


# ------------------------------------------------------------------ the result


def test_result_fields():
    result = minimize(rosenbrock, np.array([-1.2, 1.0], dtype=np.float32), jac=True)
    assert set(result.keys()) == {"fun", "jac", "nfev", "njev", "nit", "status", "message", "x", "success", "hess_inv"}
    assert result.x.dtype == np.float64 and result.x.shape == (2,)
    assert isinstance(result.fun, float) and result.jac.dtype == np.float64
    assert isinstance(result.nit, int) and isinstance(result.nfev, int) and isinstance(result.status, int)
    assert result.success is True and result.status == 0
    assert result.message.startswith("CONVERGENCE: ")
    if optimize is not None:
        assert isinstance(result, optimize.OptimizeResult)


def test_hess_inv_is_the_inverse_lbfgs_matrix():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((12, 6))
    hessian = 2 * a.T @ a
    fun = quadratic(hessian, rng.standard_normal(6))
    result = minimize(fun, np.zeros(6), jac=True)
    assert result.success
    h = result.hess_inv
    dense = h.todense()
    assert dense.shape == h.shape == (6, 6)
    np.testing.assert_allclose(dense, dense.T, atol=1e-12)
    v = rng.standard_normal(6)
    np.testing.assert_allclose(h.matvec(v), dense @ v, rtol=1e-12)
    np.testing.assert_allclose(h @ v, dense @ v, rtol=1e-12)
    np.testing.assert_allclose(h.matvec(v[:, None])[:, 0], dense @ v, rtol=1e-12)
    np.testing.assert_allclose(h.matmat(np.eye(6)), dense, rtol=1e-12)
    # The secant equation of the newest pair: H·y = s.
    np.testing.assert_allclose(h.matvec(h.yk[-1]), h.sk[-1], rtol=1e-8, atol=1e-14)
    # On a quadratic the BFGS inverse approaches the true inverse Hessian.
    exact = np.linalg.inv(hessian)
    assert np.abs(dense - exact).max() < 0.5 * np.abs(exact).max()
    if optimize is not None:
        from scipy.sparse.linalg import aslinearoperator

        np.testing.assert_allclose(aslinearoperator(h).matvec(v), dense @ v, rtol=1e-12)


def test_result_without_scipy(monkeypatch):
    from rustoptim import minimize as module

    module_obj = sys.modules["rustoptim.minimize"]
    monkeypatch.setattr(module_obj, "_result_class", None)
    monkeypatch.setitem(sys.modules, "scipy.optimize", None)  # makes `from scipy.optimize import ...` fail
    result = module(rosenbrock, [-1.2, 1.0], jac=True)
    assert type(result).__name__ == "_FallbackResult"
    assert result.success and result["x"] is result.x
    assert "message" in repr(result)
    monkeypatch.setattr(module_obj, "_result_class", None)


def test_status_and_messages_of_limits():
    result = minimize(rosenbrock, [-1.2, 1.0], jac=True, options=dict(maxiter=5))
    assert (result.nit, result.status, result.success) == (5, 1, False)
    assert result.message == "STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT"
    result = minimize(rosenbrock, [-1.2, 1.0], jac=True, options=dict(maxfun=10))
    assert result.status == 1 and result.nfev > 10
    assert result.message == "STOP: TOTAL NO. OF F,G EVALUATIONS EXCEEDS LIMIT"
    result = minimize(rosenbrock, [-1.2, 1.0], jac=True, options=dict(maxiter=0))
    assert (result.nit, result.nfev, result.status) == (0, 1, 1)


def test_tol_sets_ftol_and_gtol():
    loose = minimize(rosenbrock, [-1.2, 1.0], jac=True, tol=1e-2)
    tight = minimize(rosenbrock, [-1.2, 1.0], jac=True, tol=1e-12)
    assert loose.nit < tight.nit and tight.fun < 1e-15
    explicit = minimize(rosenbrock, [-1.2, 1.0], jac=True, tol=1e-2, options=dict(gtol=1e-12, ftol=0))
    assert explicit.nit == minimize(rosenbrock, [-1.2, 1.0], jac=True, options=dict(gtol=1e-12, ftol=0)).nit


def test_scalar_start_and_args():
    result = minimize(lambda x, c: float((x[0] - c) ** 2), 3.0, args=(1.5,))
    assert result.x.shape == (1,)
    assert result.x[0] == pytest.approx(1.5, abs=1e-6)
    result = minimize(lambda x, c: float((x[0] - c) ** 2), 3.0, args=1.5)  # a lone arg, as scipy allows
    assert result.x[0] == pytest.approx(1.5, abs=1e-6)


def test_the_objective_gets_a_fresh_array_each_call():
    seen = []

    def fun(x):
        seen.append(x)
        value = float(np.sum((x - 1) ** 2)), 2 * (x - 1)
        x[:] = np.nan  # scribbling on it must not matter
        return value

    result = minimize(fun, [4.0, -2.0], jac=True)
    assert result.success
    assert len({id(x) for x in seen}) == len(seen)


@pytest.mark.parametrize("keep", ["nothing", "weakref", "view", "readonly", "reshaped"])
def test_an_x_array_is_reused_only_when_nothing_can_see_it(keep):
    """The array of the last call is refilled only if nothing but rustoptim
    references it; anything the objective kept keeps its values."""
    import weakref

    kept, snapshots, ids = [], [], []

    def fun(x):
        ids.append(id(x))
        snapshots.append(x.copy())
        if keep == "weakref":
            kept.append(weakref.ref(x))
        elif keep == "view":
            kept.append(x[::-1])
        elif keep == "readonly":
            x.flags.writeable = False
        elif keep == "reshaped":
            # Reshaping in place (deprecated since NumPy 2.5, still what a user's code may do).
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                x.shape = (1, x.size)
        value = float(np.sum((x - 1) ** 2)), 2 * (x.ravel() - 1)
        return value

    result = minimize(fun, [4.0, -2.0, 0.5], jac=True)
    assert result.success and result.nfev == len(snapshots) >= 3
    if keep == "nothing":
        assert len(set(ids)) == 1  # refilled in place
    if keep == "view":
        for view, snapshot in zip(kept, snapshots):
            assert np.array_equal(view[::-1], snapshot)
    if keep == "weakref":
        assert all(ref() is None for ref in kept[:-1])  # freed, not refilled


def test_runs_are_deterministic():
    problem = PROBLEMS["chebyquad_8"]
    a = minimize(problem.objective, problem.start, jac=True, options=TIGHT)
    b = minimize(problem.objective, problem.start, jac=True, options=TIGHT)
    assert a.x.tobytes() == b.x.tobytes() and a.nfev == b.nfev


@pytest.mark.parametrize("bounded", [False, True])
def test_results_are_bitwise_the_same_at_every_simd_level_and_thread_count(bounded):
    problem = PROBLEMS["extended_rosenbrock_100"]
    bounds = [(-1.0, 0.9)] * problem.n if bounded else None
    reference = None
    threads_before = rustoptim.get_num_threads()
    try:
        for level in rustoptim.simd_levels():
            for threads in (1, 2):
                rustoptim.set_simd_level(level)
                rustoptim.set_num_threads(threads)
                result = minimize(problem.objective, problem.start, jac=True, bounds=bounds, options=TIGHT)
                fingerprint = (result.x.tobytes(), result.fun, result.nfev, result.hess_inv.todense().tobytes())
                if reference is None:
                    reference = fingerprint
                assert fingerprint == reference, (level, threads)
    finally:
        rustoptim.set_simd_level(None)
        rustoptim.set_num_threads(threads_before)


def test_objective_returning_a_one_element_array_is_accepted():
    result = minimize(lambda x: (np.array([np.sum(x * x)]), 2 * x), [1.0, 2.0], jac=True)
    assert result.success and result.fun == pytest.approx(0.0, abs=1e-12)


# ------------------------------------------------------------------ bad input


def square(x):
    return float(x @ x), 2 * x


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        (dict(x0=[1.0, 2.0], bounds=[(0, 1)]), ShapeError, "bounds has 1"),
        (dict(x0=[1.0], bounds=[(2, 1)]), BoundsError, "no value satisfies"),
        (dict(x0=[1.0], bounds=[(np.nan, 1)]), BoundsError, "NaN"),
        (dict(x0=[1.0], bounds=[(0, 1, 2)]), BoundsError, "not a (min, max) pair"),
        (dict(x0=[1.0], bounds=[("a", 1)]), BoundsError, "not a number"),
        (dict(x0=[1.0], bounds=5), BoundsError, "sequence of (min, max) pairs"),
        (dict(x0=[1.0, np.nan]), NonFiniteError, "x0[1] is nan"),
        (dict(x0=[np.inf]), NonFiniteError, "x0[0] is inf"),
        (dict(x0=np.ones((2, 2))), ShapeError, "1-D"),
        (dict(x0=[]), ShapeError, "empty"),
        (dict(x0=[1j]), DTypeError, "complex"),
        (dict(x0=["a"]), DTypeError, "dtype"),
        (dict(x0=[1.0], method="BFGS"), OptionError, "L-BFGS-B"),
        (dict(x0=[1.0], options=dict(maxiters=3)), OptionError, "maxiters"),
        (dict(x0=[1.0], options=dict(maxcor=0)), OptionError, "maxcor"),
        (dict(x0=[1.0], options=dict(maxls=0)), OptionError, "maxls"),
        (dict(x0=[1.0], options=dict(maxiter=-1)), OptionError, "maxiter"),
        (dict(x0=[1.0], options=dict(maxiter=2.5)), OptionError, "maxiter"),
        (dict(x0=[1.0], options=dict(ftol=-1.0)), OptionError, "ftol"),
        (dict(x0=[1.0], options=dict(gtol=np.nan)), OptionError, "gtol"),
        (dict(x0=[1.0], options=dict(workers=2)), OptionError, "workers"),
        (dict(x0=[1.0], jac=None, options=dict(eps=[1e-8, 1e-8])), OptionError, "eps"),
        (dict(x0=[1.0], jac="3-point"), OptionError, "3-point"),
        (dict(x0=[1.0], jac="exact"), OptionError, "jac"),
        (dict(x0=[1.0], options=[("maxiter", 3)]), OptionError, "dict"),
    ],
)
def test_bad_input_raises_a_clear_error(kwargs, error, words):
    kwargs = dict(kwargs)
    kwargs.setdefault("jac", True)
    x0 = kwargs.pop("x0")
    with pytest.raises(error) as info:
        minimize(square, x0, **kwargs)
    assert words in str(info.value)
    assert isinstance(info.value, RustoptimError)
    assert isinstance(info.value, (ValueError, TypeError))


@pytest.mark.parametrize(
    "fun, jac, error, words",
    [
        (lambda x: (float(x @ x), np.ones(3)), True, ShapeError, "shape (3,)"),
        (lambda x: (float(x @ x), np.ones((2, 1))), True, ShapeError, "shape (2, 1)"),
        (lambda x: float(x @ x), True, ShapeError, "pair"),
        (lambda x: (np.ones(2), 2 * x), True, ShapeError, "scalar"),
        (lambda x: ("a", 2 * x), True, DTypeError, "real number"),
        (lambda x: (float(x @ x), "ab"), True, DTypeError, "gradient"),
        (lambda x: (float(x @ x), 2j * x), True, DTypeError, "complex"),
        (lambda x: np.ones(2), None, ShapeError, "scalar"),
    ],
)
def test_bad_objective_output_raises_a_clear_error(fun, jac, error, words):
    with pytest.raises(error) as info:
        minimize(fun, [1.0, 2.0], jac=jac)
    assert words in str(info.value)


def test_non_callables_raise_type_error():
    with pytest.raises(TypeError):
        minimize(3, [1.0])
    with pytest.raises(TypeError):
        minimize(square, [1.0], jac=True, callback=3)


def test_memory_that_cannot_be_allocated_raises_memory_error():
    with pytest.raises(MemoryError, match="cannot allocate"):
        minimize(square, np.ones(1000), jac=True, options=dict(maxcor=2**60))


def test_hess_inv_without_pairs_is_the_identity():
    result = minimize(square, [1.0, 2.0], jac=True, options=dict(maxiter=0))
    assert result.hess_inv.n_corrs == 0
    np.testing.assert_array_equal(result.hess_inv.todense(), np.eye(2))


def test_gradient_as_list_is_accepted():
    result = minimize(lambda x: (float(x @ x), list(2 * x)), [1.0, 2.0], jac=True)
    assert result.success


def test_exported():
    assert rustoptim.minimize is minimize
    assert "minimize" in rustoptim.__all__
