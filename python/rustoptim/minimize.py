"""``rustoptim.minimize``: ``scipy.optimize.minimize(method="L-BFGS-B")`` with
the iteration in Rust.

The arguments, options, defaults and result follow scipy's; this module checks
them and converts them for ``rustoptim._core.lbfgsb_minimize``, which runs the
whole minimization (calling ``fun`` from Rust) and returns the raw result, from
which the ``OptimizeResult`` is built here.
"""

from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Mapping
from typing import Any, Callable

import numpy as np

from . import _core
from .errors import BoundsError, DTypeError, NonFiniteError, OptionError, ShapeError

__all__ = ["minimize", "LbfgsInvHessProduct"]

#: scipy's defaults for L-BFGS-B (``scipy.optimize._lbfgsb_py._minimize_lbfgsb``).
_DEFAULTS = {
    "maxcor": 10,
    "ftol": 2.2204460492503131e-09,
    "gtol": 1e-5,
    "eps": 1e-8,
    "maxfun": 15000,
    "maxiter": 15000,
    "maxls": 20,
    "finite_diff_rel_step": None,
}
#: Accepted and ignored (scipy deprecated them: they only controlled printing).
_IGNORED = ("disp", "iprint")
#: The largest count the core takes; ``inf`` means no limit.
_UNLIMITED = 2**63 - 1

#: ``(status, message)`` for each way a run ends; messages are scipy's.
_OUTCOMES = {
    "gtol": (0, "CONVERGENCE: NORM OF PROJECTED GRADIENT <= PGTOL"),
    "ftol": (0, "CONVERGENCE: RELATIVE REDUCTION OF F <= FACTR*EPSMCH"),
    "maxiter": (1, "STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT"),
    "maxfun": (1, "STOP: TOTAL NO. OF F,G EVALUATIONS EXCEEDS LIMIT"),
    "callback": (99, "`callback` raised `StopIteration`."),
    "abnormal": (2, "ABNORMAL: "),
}


class _FallbackResult(dict[str, Any]):
    """What ``scipy.optimize.OptimizeResult`` is when scipy is not installed:
    a dict whose keys are also attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError as e:
            raise AttributeError(name) from e

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        del self[name]

    def __dir__(self) -> list[str]:
        return list(self.keys())

    def __repr__(self) -> str:
        if not self:
            return f"{type(self).__name__}()"
        width = max(len(k) for k in self) + 1
        return "\n".join(f"{k.rjust(width)}: {v!r}" for k, v in self.items())


_result_class: type | None = None


def _result(**fields: Any) -> Any:
    """A ``scipy.optimize.OptimizeResult`` when scipy imports, else an
    equivalent dict with attribute access."""
    global _result_class
    if _result_class is None:
        try:
            from scipy.optimize import OptimizeResult as scipy_result
        except ImportError:
            _result_class = _FallbackResult
        else:
            _result_class = scipy_result
    return _result_class(**fields)


class LbfgsInvHessProduct:
    """The inverse of the L-BFGS-B matrix at the solution, as an operator.

    ``H = B⁻¹`` where ``B`` is the limited-memory BFGS matrix the run ended
    with: the pairs ``s_k = x_{k+1} − x_k``, ``y_k = g_{k+1} − g_k`` kept in
    its memory (oldest first) applied by the two-loop recursion from
    ``H₀ = I/θ``, ``θ = yᵀy/sᵀy`` of the newest pair (``H = I`` with no pairs).
    scipy's ``LbfgsInvHessProduct`` starts from ``H₀ = I`` instead.

    Works where a ``scipy.sparse.linalg.LinearOperator`` is expected (it has
    ``shape``, ``dtype``, ``matvec``, ``matmat``); ``H @ v``, ``H(v)``,
    ``H.dot(v)`` and ``H.todense()`` work too.
    """

    def __init__(self, sk: np.ndarray, yk: np.ndarray, theta: float = 1.0):
        sk = np.asarray(sk, dtype=np.float64)
        yk = np.asarray(yk, dtype=np.float64)
        if sk.shape != yk.shape or sk.ndim != 2:
            raise ShapeError(f"sk and yk must have the same shape (n_corrs, n); got {sk.shape} and {yk.shape}")
        self.sk = sk
        self.yk = yk
        self.n_corrs, n = sk.shape
        self.shape = (n, n)
        self.dtype = np.dtype(np.float64)
        self.theta = float(theta)
        self.rho = 1.0 / np.einsum("ij,ij->i", sk, yk) if self.n_corrs else np.empty(0)

    def _apply(self, q: np.ndarray) -> np.ndarray:
        """``H·Q`` for ``Q`` of shape ``(n, k)`` (a copy is updated)."""
        s, y, rho = self.sk, self.yk, self.rho
        alpha = np.empty((self.n_corrs, q.shape[1]))
        for i in range(self.n_corrs - 1, -1, -1):
            alpha[i] = rho[i] * (s[i] @ q)
            q -= np.outer(y[i], alpha[i])
        r = q / self.theta
        for i in range(self.n_corrs):
            beta = rho[i] * (y[i] @ r)
            r += np.outer(s[i], alpha[i] - beta)
        return r

    def matvec(self, x: Any) -> np.ndarray:
        """``H·x`` for ``x`` of shape ``(n,)`` or ``(n, 1)`` (the same shape back)."""
        x = np.asarray(x)
        n = self.shape[0]
        if x.shape not in ((n,), (n, 1)):
            raise ShapeError(f"matvec needs a vector of shape ({n},) or ({n}, 1), got {x.shape}")
        out = self._apply(np.array(x, dtype=np.float64).reshape(n, 1))
        return out.reshape(x.shape)

    def rmatvec(self, x: Any) -> np.ndarray:
        """``Hᵀ·x = H·x`` (``H`` is symmetric)."""
        return self.matvec(x)

    def matmat(self, X: Any) -> np.ndarray:
        """``H·X`` for ``X`` of shape ``(n, k)``."""
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[0] != self.shape[0]:
            raise ShapeError(f"matmat needs a matrix of shape ({self.shape[0]}, k), got {X.shape}")
        return self._apply(np.array(X, dtype=np.float64))

    def dot(self, x: Any) -> np.ndarray:
        x = np.asarray(x)
        return self.matvec(x) if x.ndim == 1 or (x.ndim == 2 and x.shape[1] == 1) else self.matmat(x)

    __call__ = dot
    __matmul__ = dot

    def todense(self) -> np.ndarray:
        """``H`` as a dense ``(n, n)`` array."""
        return self._apply(np.eye(self.shape[0]))

    def __repr__(self) -> str:
        return f"<{self.shape[0]}x{self.shape[1]} LbfgsInvHessProduct with {self.n_corrs} pairs>"


def minimize(
    fun: Callable[..., Any],
    x0: Any,
    args: Any = (),
    method: str | None = "L-BFGS-B",
    jac: Any = None,
    bounds: Any = None,
    tol: float | None = None,
    callback: Callable[..., Any] | None = None,
    options: Mapping[str, Any] | None = None,
) -> Any:
    """Minimize ``fun`` subject to bounds with L-BFGS-B, like
    ``scipy.optimize.minimize(fun, x0, method="L-BFGS-B", ...)``.

    Parameters are scipy's:

    - ``fun(x, *args) -> float``; with ``jac=True`` it returns ``(f, g)``.
      ``x`` is a fresh float64 array of shape ``(n,)`` at every call.
    - ``x0``: the start, a scalar or 1-D array (float32 is accepted; the run is
      in float64). Projected into the bounds if it lies outside.
    - ``jac``: ``True``, a callable ``jac(x, *args)``, ``None`` (forward
      differences with absolute step ``eps``) or ``'2-point'`` (forward
      differences with scipy's relative step). Difference steps are fitted to
      the bounds as scipy fits them.
    - ``bounds``: ``None``, a sequence of ``(min, max)`` pairs (``None`` for no
      bound), or a ``scipy.optimize.Bounds``.
    - ``tol``: the default of ``ftol`` and ``gtol``.
    - ``callback``: called once per iteration as ``callback(intermediate_result)``
      (an ``OptimizeResult`` with ``x`` and ``fun``) if its only parameter is
      named ``intermediate_result``, else as ``callback(x)``. Raising
      ``StopIteration`` ends the run (``status`` 99).
    - ``options``: ``maxcor`` (10), ``ftol`` (2.22e-9), ``gtol`` (1e-5),
      ``eps`` (1e-8), ``maxfun`` (15000), ``maxiter`` (15000), ``maxls`` (20),
      ``finite_diff_rel_step`` (None); ``disp``/``iprint`` are accepted and ignored.

    The run stops when ``max|proj g_i| <= gtol`` or
    ``(f_k - f_{k+1}) / max(|f_k|, |f_{k+1}|, 1) <= ftol`` (``status`` 0),
    after ``maxiter`` iterations or once more than ``maxfun`` evaluations were
    made (checked after each iteration; ``status`` 1), or when no step can be
    found even along steepest descent (``status`` 2, message ``ABNORMAL: ...``).

    Returns a ``scipy.optimize.OptimizeResult`` (a dict with attribute access
    when scipy is not installed) with ``fun, jac, nfev, njev, nit, status,
    message, x, success, hess_inv`` (an :class:`LbfgsInvHessProduct`).

    Where it differs from scipy: a NaN or infinite value or gradient at a
    line-search trial shortens the step (halving toward the best point of the
    search) instead of ending the run; a failed line search is retried along
    steepest descent with the memory dropped before the run gives up;
    ``maxiter=0`` evaluates ``x0`` only; unknown options raise
    :class:`~rustoptim.errors.OptionError`.

    Raises (all ``ValueError``/``TypeError`` subclasses from
    :mod:`rustoptim.errors`): ``ShapeError`` (``x0`` not 1-D or empty, bounds
    of the wrong length, a gradient of the wrong shape), ``NonFiniteError``
    (``x0`` not finite), ``BoundsError`` (lower > upper, NaN, malformed
    pairs), ``OptionError``, ``DTypeError`` (complex or non-numeric input or
    output). Exceptions raised by ``fun``, ``jac`` or ``callback`` propagate.
    """
    if method is not None and (not isinstance(method, str) or method.lower() != "l-bfgs-b"):
        raise OptionError(f"rustoptim.minimize implements method='L-BFGS-B' only, got method={method!r}")
    if not callable(fun):
        raise TypeError(f"fun must be callable, got a {type(fun).__name__}")
    if not isinstance(args, tuple):
        args = (args,)
    x = _start_point(x0)
    n = x.size
    lower, upper = _bounds(bounds, n)
    opts = _options(options, tol)
    mode, jac_fn, steps = _gradient(jac, opts, n)
    on_iterate = _iteration_hook(callback)
    raw = _core.lbfgsb_minimize(
        fun, x, lower, upper, args, mode, jac_fn, steps, on_iterate,
        opts["maxcor"], opts["ftol"], opts["gtol"], opts["maxiter"], opts["maxfun"], opts["maxls"],
    )
    status, message = _OUTCOMES[raw["termination"]]
    message += raw["detail"]
    jacobian = raw["jac"]
    if mode in ("absolute", "relative"):
        # Like scipy, no derivative is taken in a variable the bounds fix.
        jacobian[lower == upper] = np.nan
    return _result(
        fun=raw["fun"],
        jac=jacobian,
        nfev=raw["nfev"],
        njev=raw["njev"],
        nit=raw["nit"],
        status=status,
        message=message,
        x=raw["x"],
        success=status == 0,
        hess_inv=LbfgsInvHessProduct(raw["s"], raw["y"], raw["theta"]),
    )


def _start_point(x0: Any) -> np.ndarray:
    try:
        array = np.asarray(x0)
    except Exception as e:  # ragged lists and the like
        raise ShapeError(f"x0 is not an array of numbers: {e}") from e
    if array.dtype.kind == "c":
        raise DTypeError(f"x0 is complex ({array.dtype}); L-BFGS-B minimizes over real numbers")
    if array.dtype.kind not in "biuf":
        try:
            array = array.astype(np.float64)
        except (TypeError, ValueError) as e:
            raise DTypeError(f"x0 has dtype {array.dtype}, not numbers") from e
    array = np.atleast_1d(array)
    if array.ndim != 1:
        raise ShapeError(f"x0 must be a scalar or 1-D, got shape {array.shape}")
    if array.size == 0:
        raise ShapeError("x0 is empty; there is nothing to minimize")
    x = np.array(array, dtype=np.float64, order="C", copy=True)
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        raise NonFiniteError(f"x0[{bad[0]}] is {x[bad[0]]}; the start point must be finite")
    return x


def _bound_value(value: Any, default: float, where: str) -> float:
    if value is None:
        return default
    try:
        v = np.asarray(value, dtype=np.float64)
        if v.size != 1:
            raise ValueError
        return float(v.reshape(()))
    except (TypeError, ValueError) as e:
        raise BoundsError(f"{where} is {value!r}, not a number or None") from e


def _pairs(bounds: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds from ``n`` (min, max) pairs, ``None`` for no bound."""
    # Fast path, in NumPy: pairs of numbers or None.
    try:
        table = np.array(bounds, dtype=object)
        if table.shape == (n, 2):
            missing = table == None  # noqa: E711 (elementwise on an object array)
            table[missing[:, 0], 0] = -np.inf
            table[missing[:, 1], 1] = np.inf
            values = table.astype(np.float64)
            return values[:, 0].copy(), values[:, 1].copy()
    except (TypeError, ValueError):
        pass
    # Anything else, pair by pair, for a message naming the pair at fault.
    lower, upper = np.empty(n), np.empty(n)
    for i, pair in enumerate(bounds):
        try:
            lo, hi = pair
        except (TypeError, ValueError) as e:
            raise BoundsError(f"bounds[{i}] is {pair!r}, not a (min, max) pair") from e
        lower[i] = _bound_value(lo, -np.inf, f"the lower bound of bounds[{i}]")
        upper[i] = _bound_value(hi, np.inf, f"the upper bound of bounds[{i}]")
    return lower, upper


def _bounds(bounds: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    if bounds is None:
        return np.full(n, -np.inf), np.full(n, np.inf)
    if hasattr(bounds, "lb") and hasattr(bounds, "ub"):  # scipy.optimize.Bounds
        try:
            lower = np.broadcast_to(np.asarray(bounds.lb, dtype=np.float64), (n,)).copy()
            upper = np.broadcast_to(np.asarray(bounds.ub, dtype=np.float64), (n,)).copy()
        except ValueError as e:
            raise ShapeError(f"the Bounds do not broadcast to x0's {n} variables: {e}") from e
        except TypeError as e:
            raise BoundsError(f"the Bounds hold something other than numbers: {e}") from e
    else:
        if isinstance(bounds, (str, bytes)) or not hasattr(bounds, "__len__"):
            raise BoundsError(
                f"bounds must be a sequence of (min, max) pairs or a scipy.optimize.Bounds, got a {type(bounds).__name__}"
            )
        if len(bounds) != n:
            raise ShapeError(f"bounds has {len(bounds)} (min, max) pairs, but x0 has {n} variables")
        lower, upper = _pairs(bounds, n)
    for i in np.flatnonzero(np.isnan(lower) | np.isnan(upper)):
        raise BoundsError(f"bounds[{i}] = ({lower[i]}, {upper[i]}) holds NaN")
    for i in np.flatnonzero((lower > upper) | (lower == np.inf) | (upper == -np.inf)):
        raise BoundsError(f"bounds[{i}] = ({lower[i]}, {upper[i]}): no value satisfies lower <= x <= upper")
    return lower, upper


def _count(name: str, value: Any, minimum: int) -> int:
    """An option that counts something: an int (or an integral float; ``inf``: unlimited)."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, numbers.Real)):
        raise OptionError(f"option {name} must be an integer, got {value!r}")
    if isinstance(value, numbers.Integral):
        count = int(value)
    elif value == math.inf:
        count = _UNLIMITED
    elif float(value).is_integer():
        count = int(float(value))
    else:
        raise OptionError(f"option {name} must be an integer, got {value!r}")
    if count < minimum:
        raise OptionError(f"option {name} must be at least {minimum}, got {value!r}")
    return min(count, _UNLIMITED)


def _real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise OptionError(f"option {name} must be a real number, got {value!r}")
    value = float(value)
    if math.isnan(value):
        raise OptionError(f"option {name} is NaN")
    return value


def _options(options: Mapping[str, Any] | None, tol: float | None) -> dict[str, Any]:
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise OptionError(f"options must be a dict, got a {type(options).__name__}")
    unknown = sorted(set(options) - set(_DEFAULTS) - set(_IGNORED) - {"workers"})
    if unknown:
        raise OptionError(f"unknown option(s) for L-BFGS-B: {', '.join(map(repr, unknown))}; "
                          f"known: {', '.join(sorted(_DEFAULTS))}")
    if options.get("workers") is not None:
        raise OptionError("option workers (parallel finite differences) is not supported")
    opts: dict[str, Any] = dict(_DEFAULTS)
    opts.update((k, v) for k, v in options.items() if k in _DEFAULTS)
    if tol is not None:
        for key in ("ftol", "gtol"):
            if key not in options:
                opts[key] = tol
    opts["maxcor"] = _count("maxcor", opts["maxcor"], 1)
    opts["maxls"] = _count("maxls", opts["maxls"], 1)
    opts["maxiter"] = _count("maxiter", opts["maxiter"], 0)
    opts["maxfun"] = _count("maxfun", opts["maxfun"], 0)
    opts["ftol"] = _real("ftol", opts["ftol"])
    if opts["ftol"] < 0:
        raise OptionError(f"option ftol must be non-negative, got {opts['ftol']}")
    opts["gtol"] = _real("gtol", opts["gtol"])
    return opts


def _steps(name: str, value: Any, n: int) -> np.ndarray:
    """A finite-difference step option: one number, or one per variable."""
    try:
        steps = np.atleast_1d(np.asarray(value, dtype=np.float64))
    except (TypeError, ValueError) as e:
        raise OptionError(f"option {name} must be a number or an array of numbers, got {value!r}") from e
    if steps.ndim != 1 or steps.size not in (1, n):
        raise OptionError(f"option {name} must be one number or one per variable ({n}), got shape {steps.shape}")
    if not np.all(np.isfinite(steps)):
        raise OptionError(f"option {name} must be finite, got {value!r}")
    return np.ascontiguousarray(steps)


def _gradient(jac: Any, opts: dict[str, Any], n: int) -> tuple[str, Any, np.ndarray | None]:
    """The core's gradient mode, the jac callable and the difference steps."""
    if jac is True:
        return "fun", None, None
    if callable(jac):
        return "jac", jac, None
    if jac is None or jac is False:
        return "absolute", None, _steps("eps", opts["eps"], n)
    if isinstance(jac, str) and jac == "2-point":
        rel = opts["finite_diff_rel_step"]
        return "relative", None, None if rel is None else _steps("finite_diff_rel_step", rel, n)
    if isinstance(jac, str) and jac in ("3-point", "cs"):
        raise OptionError(f"jac={jac!r} is not supported; use '2-point', None, True or a callable")
    raise OptionError(f"jac must be True, a callable, None or '2-point', got {jac!r}")


def _iteration_hook(callback: Callable[..., Any] | None) -> Callable[[np.ndarray, float], bool] | None:
    """What the core calls after each iteration with ``(x, f)``: runs the
    user's callback the way scipy does and returns True to stop."""
    if callback is None:
        return None
    if not callable(callback):
        raise TypeError(f"callback must be callable, got a {type(callback).__name__}")
    try:
        new_style = set(inspect.signature(callback).parameters) == {"intermediate_result"}
    except (TypeError, ValueError):  # builtins without a signature
        new_style = False

    def on_iterate(x: np.ndarray, f: float) -> bool:
        try:
            if new_style:
                callback(intermediate_result=_result(x=x, fun=f))
            else:
                callback(x)
        except StopIteration:
            return True
        return False

    return on_iterate
