"""Overhead per iteration of ``rustoptim.minimize`` against
``scipy.optimize.minimize(method="L-BFGS-B")``, measured side by side.

Overhead per iteration = (time of a whole ``minimize`` call − the objective's
own time) / iterations. It counts everything the solver does around the
objective: argument handling, the wrapper calls, the array copies handed to the
objective, the algorithm itself, and building the result.

Clock (``--clock``): ``cpu`` (default) measures the thread's CPU time, so time
spent waiting for a core on a busy machine is not counted; the objective's own
CPU time per call is calibrated in each round by calling it alone (its cost does
not depend on ``x``), which costs one clock read per round instead of two per
call. ``wall`` uses ``perf_counter`` around the call and a stopwatch inside the
objective (exact on a quiet machine).

Workload: the chained Rosenbrock function
``Σ 100(x[i+1] − x[i]²)² + (1 − x[i])²`` from ``(-1.2, 1, -1.2, 1, ...)`` with
its gradient (``jac=True``), ``maxcor=10``, ``gtol=ftol=0`` so that neither
solver stops early, a fixed ``maxiter``; without bounds, and (``--bounds``,
default on) with the box ``[-2, 0.9]`` for every variable, given as a list of
pairs. Both solvers run the same algorithm and take nearly the same iterates
(the table shows evaluations per iteration).

Contenders alternate within each round (the order rotates); the table shows
medians over rounds, and the ratio is the median of the per-round ratios.
BLAS runs single-threaded (set before NumPy is imported).

Usage: ``python benches/bench_minimize.py [--quick] [--rounds N] [--n N ...]``.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
              "NUMEXPR_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

import rustoptim  # noqa: E402

try:
    import scipy  # noqa: E402
    from scipy import optimize  # noqa: E402
except ImportError:
    scipy = optimize = None

now = time.perf_counter_ns
MAXCOR = 10
#: Iterations per call: enough that the per-call setup is a small share.
ITERATIONS = {100: 200, 10_000: 60}


class Objective:
    """Chained Rosenbrock with its own stopwatch."""

    def __init__(self):
        self.ns = 0
        self.calls = 0

    def __call__(self, x):
        start = now()
        a = x[1:] - x[:-1] * x[:-1]
        b = 1.0 - x[:-1]
        grad = np.zeros_like(x)
        grad[:-1] = -400.0 * x[:-1] * a - 2.0 * b
        grad[1:] += 200.0 * a
        loss = float(np.dot(a, a) * 100.0 + np.dot(b, b))
        self.calls += 1
        self.ns += now() - start
        return loss, grad


def start_point(n: int) -> np.ndarray:
    x = np.empty(n)
    x[0::2], x[1::2] = -1.2, 1.0
    return x


def objective_cpu_ns(n: int, calls: int) -> float:
    """CPU time of one call of the objective alone."""
    f = Objective()
    x = start_point(n)
    start = time.thread_time_ns()
    for _ in range(calls):
        f(x)
    return (time.thread_time_ns() - start) / calls


def sample(solver, n: int, iterations: int, clock: str, objective_ns: float, bounded: bool):
    """One whole call: (overhead per iteration in ns, objective ns per
    iteration, evaluations per iteration, iterations)."""
    f = Objective()
    x0 = start_point(n)
    options = dict(maxcor=MAXCOR, maxiter=iterations, gtol=0.0, ftol=0.0)
    bounds = [(-2.0, 0.9)] * n if bounded else None
    read = time.thread_time_ns if clock == "cpu" else now
    start = read()
    result = solver(f, x0, jac=True, method="L-BFGS-B", bounds=bounds, options=options)
    total = read() - start
    nit = max(result.nit, 1)
    inside = f.ns if clock == "wall" else f.calls * objective_ns
    return (total - inside) / nit, inside / nit, f.calls / nit, result.nit


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--n", type=int, nargs="+", default=[100, 10_000], help="sizes to run")
    parser.add_argument("--clock", choices=["cpu", "wall"], default="cpu",
                        help="thread CPU time (default) or wall time")
    parser.add_argument("--bounds", action=argparse.BooleanOptionalAction, default=True,
                        help="also run with the box [-2, 0.9] (default on)")
    args = parser.parse_args()
    rounds = args.rounds or (5 if args.quick else 15)
    warnings.simplefilter("ignore")

    contenders = {"rustoptim": rustoptim.minimize}
    if optimize is not None:
        contenders["scipy"] = optimize.minimize

    print("# minimize(method='L-BFGS-B'): overhead per iteration beyond the objective")
    print(f"python {platform.python_version()}, numpy {np.__version__}, rustoptim {rustoptim.__version__} "
          f"({rustoptim.get_simd_level()}), scipy {scipy.__version__ if scipy else 'not installed'}; "
          f"{os.cpu_count()} cores; chained Rosenbrock, maxcor {MAXCOR}; {args.clock} time; "
          f"median of {rounds} interleaved rounds")
    print()
    header = ["n", "bounds", "iterations", "objective / it", "evals / it"] + [f"{name} overhead / it" for name in contenders]
    if "scipy" in contenders:
        header.append("rustoptim vs scipy")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(["---:"] * len(header)) + "|")
    cases = [(n, bounded) for n in args.n for bounded in ([False, True] if args.bounds else [False])]
    for n, bounded in cases:
        iterations = ITERATIONS.get(n, 100)
        names = list(contenders)
        overhead = {name: [] for name in names}
        objective, evals, nits = [], {name: [] for name in names}, {name: [] for name in names}
        for name in names:  # warm-up (imports, first-touch allocations)
            sample(contenders[name], n, 5, args.clock, 0.0, bounded)
        for index in range(rounds):
            shift = index % len(names)
            objective_ns = objective_cpu_ns(n, 20 * iterations // 10) if args.clock == "cpu" else 0.0
            for name in names[shift:] + names[:shift]:
                per_it, objective_per_it, evals_per_it, nit = sample(
                    contenders[name], n, iterations, args.clock, objective_ns, bounded)
                overhead[name].append(per_it)
                evals[name].append(evals_per_it)
                nits[name].append(nit)
                if name == "rustoptim":
                    objective.append(objective_per_it)
        row = [f"{n:,}", "[-2, 0.9]" if bounded else "none", "/".join(str(statistics.median(nits[name])) for name in names),
               _us(statistics.median(objective)),
               "/".join(f"{statistics.median(evals[name]):.2f}" for name in names)]
        row += [_us(statistics.median(overhead[name])) for name in names]
        if "scipy" in contenders:
            ratios = [s / r for s, r in zip(overhead["scipy"], overhead["rustoptim"])]
            row.append(f"{statistics.median(ratios):.1f}x less")
        print("| " + " | ".join(row) + " |", flush=True)


def _us(ns: float) -> str:
    return f"{ns / 1000:.1f} us" if ns >= 10_000 else f"{ns / 1000:.2f} us"


if __name__ == "__main__":
    main()
