"""Per-iteration overhead of L-BFGS: rustoptim against torch.optim.LBFGS and
scipy's L-BFGS-B, on the same NumPy closure.

Overhead per iteration = time per iteration minus the closure's own time (the
closure times itself). Workloads: n = 2, 100, 10,000 parameters, history 10
and 100. The objective is the chained Rosenbrock function
``Σ 100(x[i+1] − x[i]²)² + (1 − x[i])²`` from ``(-1.2, 1, -1.2, 1, ...)``.

- rustoptim and torch run without a line search, with a small fixed step
  (lr=1e-3), so that every iteration is one closure call and the run never
  converges during the measurement. Both are first warmed up until their
  history is full; every sample then restarts from that warm state (params and
  ``load_state_dict``) and runs ``max_iter=20`` iterations per ``step()``.
- scipy's L-BFGS-B (``maxcor`` = history) runs its own line search; its
  overhead is measured between its per-iteration callbacks once its history is
  full (``maxcor + 5`` iterations in), which also leaves out the per-call
  setup. Where scipy converges before that (small n; the table shows how many
  iterations it made), it is measured from the 5th iteration on, with a
  partial history.

Contenders are measured in interleaved rounds; the table shows medians.
BLAS runs single-threaded (the environment is set before NumPy is imported:
numpy's and scipy's thread pools fight each other at 2 threads; torch reads
the same variables). rustoptim uses its own pool (``RUSTOPTIM_NUM_THREADS``,
default all cores), which at these sizes it leaves idle: the kernels thread
only from 4M elements and the two-loop recursion from n·history = 4M.

The last column relates rustoptim's overhead at n = 10,000 to the memory
traffic the two-loop recursion cannot avoid: reading the 2·history vectors of
the history twice, at the read bandwidth NumPy reaches on arrays of the same
total size (single-threaded dot product).

``--baseline DIR`` adds another build of rustoptim as a contender, interleaved
in the same process: DIR is a copy of an installed ``rustoptim`` package
directory (its ``__init__.py`` and ``_core`` extension), imported under another
name. The "vs baseline" column is the baseline's overhead over this build's
(above 1: this build is faster). This is how a change is checked for
per-iteration regressions, side by side rather than across runs.

Usage: ``python benches/bench_lbfgs.py [--quick] [--rounds N] [--n N ...] [--history H ...] [--baseline DIR]``.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
              "NUMEXPR_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402
import copy  # noqa: E402
import importlib.util  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

import rustoptim  # noqa: E402

try:
    import torch  # noqa: E402
except ImportError:
    torch = None
try:
    from scipy import optimize  # noqa: E402
except ImportError:
    optimize = None

now = time.perf_counter_ns
LR = 1e-3
MAX_ITER = 20


class Objective:
    """Chained Rosenbrock with its own stopwatch."""

    def __init__(self, n: int):
        self.n = n
        self.ns = 0
        self.calls = 0

    def __call__(self, x: np.ndarray):
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

    def reset(self):
        self.ns = 0
        self.calls = 0


def start_point(n: int) -> np.ndarray:
    x = np.empty(n)
    x[0::2], x[1::2] = -1.2, 1.0
    return x


def load_baseline(path: str):
    """The rustoptim package copied at ``path``, imported as ``rustoptim_baseline``."""
    spec = importlib.util.spec_from_file_location(
        "rustoptim_baseline", os.path.join(path, "__init__.py"), submodule_search_locations=[path]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules["rustoptim_baseline"] = module
    spec.loader.exec_module(module)
    return module


class Rustoptim:
    name = "rustoptim"
    package = rustoptim

    def __init__(self, n, history):
        self.f = Objective(n)
        self.x = start_point(n)
        self.opt = self.package.LBFGS([self.x], lr=LR, max_iter=MAX_ITER, history_size=history,
                                      tolerance_grad=0.0, tolerance_change=0.0)
        closure = self.closure = lambda: self.f(self.x)
        for _ in range(history // MAX_ITER + 2):
            self.opt.step(closure)
        self.warm_x = self.x.copy()
        self.warm_state = self.opt.state_dict()

    def sample(self, steps):
        self.x[...] = self.warm_x
        self.opt.load_state_dict(self.warm_state)
        self.f.reset()
        step, closure = self.opt.step, self.closure
        start = now()
        for _ in range(steps):
            step(closure)
        total = now() - start
        iterations = steps * MAX_ITER
        return (total - self.f.ns) / iterations, iterations


class Torch:
    name = "torch"

    def __init__(self, n, history):
        self.f = Objective(n)
        self.p = torch.nn.Parameter(torch.from_numpy(start_point(n)))
        self.view = self.p.detach().numpy()
        self.opt = torch.optim.LBFGS([self.p], lr=LR, max_iter=MAX_ITER, history_size=history,
                                     tolerance_grad=0.0, tolerance_change=0.0)

        def closure():
            loss, grad = self.f(self.view)
            self.p.grad = torch.from_numpy(grad)
            return loss

        self.closure = closure
        for _ in range(history // MAX_ITER + 2):
            self.opt.step(closure)
        self.warm_x = self.view.copy()
        self.warm_state = {
            "state": {k: {kk: (vv.clone() if torch.is_tensor(vv) else
                               [t.clone() if torch.is_tensor(t) else t for t in vv] if isinstance(vv, list) else vv)
                          for kk, vv in v.items()} for k, v in self.opt.state_dict()["state"].items()},
            "param_groups": self.opt.state_dict()["param_groups"],
        }

    def sample(self, steps):
        with torch.no_grad():
            self.view[...] = self.warm_x
        self.opt.load_state_dict(copy.deepcopy(self.warm_state))
        self.f.reset()
        step, closure = self.opt.step, self.closure
        start = now()
        for _ in range(steps):
            step(closure)
        total = now() - start
        iterations = steps * MAX_ITER
        return (total - self.f.ns) / iterations, iterations


class Scipy:
    name = "scipy L-BFGS-B"

    def __init__(self, n, history):
        self.n, self.history = n, history
        self.f = Objective(n)

    def sample(self, steps):
        marks = []

        def callback(*_):
            marks.append((now(), self.f.ns))

        self.f.reset()
        optimize.minimize(self.f, start_point(self.n), jac=True, method="L-BFGS-B", callback=callback,
                          options=dict(maxcor=self.history, maxiter=self.history + 5 + steps * MAX_ITER,
                                       gtol=0.0, ftol=0.0))
        # From the iteration where the history is full, if the run got there.
        first = min(self.history + 5, max(len(marks) - 1 - steps * MAX_ITER, 5), len(marks) - 2)
        (t0, c0), (t1, c1) = marks[first], marks[-1]
        iterations = len(marks) - 1 - first
        return ((t1 - t0) - (c1 - c0)) / iterations, len(marks)


def read_bandwidth(elements: int, repeats: int = 7) -> float:
    """Bytes per second NumPy reads in a single-threaded dot product of two arrays of ``elements / 2``."""
    a = np.random.default_rng(0).standard_normal(max(elements // 2, 1))
    b = a.copy()
    np.dot(a, b)
    best = min(_timed(lambda: np.dot(a, b)) for _ in range(repeats))
    return 2 * a.nbytes / best


def _timed(fn) -> float:
    start = now()
    fn()
    return (now() - start) / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--n", type=int, nargs="+", default=[2, 100, 10_000], help="sizes to run")
    parser.add_argument("--history", type=int, nargs="+", default=[10, 100], help="history sizes to run")
    parser.add_argument("--baseline", help="directory of another rustoptim build to compare with")
    args = parser.parse_args()
    rounds = args.rounds or (5 if args.quick else 11)

    contenders = [Rustoptim]
    if args.baseline:
        contenders.append(type("Baseline", (Rustoptim,), {"name": "baseline", "package": load_baseline(args.baseline)}))
    if torch is not None:
        contenders.append(Torch)
    if optimize is not None:
        contenders.append(Scipy)

    print("# L-BFGS overhead per iteration (time per iteration minus the closure's own time)")
    print(f"python {platform.python_version()}, numpy {np.__version__}, rustoptim {rustoptim.__version__} "
          f"({rustoptim.get_num_threads()} threads, {rustoptim.get_simd_level()}), "
          f"torch {torch.__version__ if torch else 'not installed'}, "
          f"scipy {optimize and __import__('scipy').__version__ or 'not installed'}; "
          f"{os.cpu_count()} cores; median of {rounds} interleaved rounds")
    print()
    header = ["n", "history", "closure"] + [c.name for c in contenders]
    if args.baseline:
        header.append("vs baseline")
    header += ["vs torch", "vs scipy", "traffic floor", "rustoptim / floor"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(["---:"] * len(header)) + "|")
    for n in args.n:
        for history in args.history:
            steps = 2 if n == 10_000 else 10
            runners = [c(n, history) for c in contenders]
            samples = {r.name: [] for r in runners}
            iterations = {}
            closure_ns = []
            for round_index in range(rounds):
                order = runners[round_index % len(runners):] + runners[:round_index % len(runners)]
                for r in order:
                    overhead, its = r.sample(steps)
                    samples[r.name].append(overhead)
                    iterations[r.name] = its
                    if r.name == "rustoptim":
                        closure_ns.append(r.f.ns / max(r.f.calls, 1))
            med = {name: statistics.median(v) for name, v in samples.items()}
            row = [f"{n:,}", str(history), _us(statistics.median(closure_ns))]
            for r in runners:
                cell = _us(med[r.name])
                if r.name.startswith("scipy"):
                    cell += f" ({iterations[r.name]} it)"
                row.append(cell)
            ours = med["rustoptim"]
            if args.baseline:
                row.append(f"{med['baseline'] / ours:.2f}")
            row.append(f"{med['torch'] / ours:.1f}x less" if "torch" in med else "n/a")
            row.append(f"{med['scipy L-BFGS-B'] / ours:.1f}x less" if "scipy L-BFGS-B" in med else "n/a")
            if n >= 10_000:
                floor = 4 * history * n * 8 / read_bandwidth(2 * history * n) * 1e9
                row += [_us(floor), f"{ours / floor:.2f}"]
            else:
                row += ["", ""]
            print("| " + " | ".join(row) + " |", flush=True)


def _us(ns: float) -> str:
    return f"{ns / 1000:.1f} us" if ns >= 10_000 else f"{ns / 1000:.2f} us"


if __name__ == "__main__":
    main()
