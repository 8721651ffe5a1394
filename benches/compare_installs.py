#!/usr/bin/env python
"""Compare the small-step time of two installs of rustoptim, interleaved.

Two builds of the extension cannot be imported into one process, so each
install runs in its own worker process (its venv's python) and the controller
asks them for samples in turn, alternating which goes first, round after round.
A change of the machine's state during the run then hits both alike, and the
per-round ratio ``time(B) / time(A)`` is what is reported (median and
quartiles over rounds).

The workloads are the tiny-step path, where per-call overhead (argument
conversion, the Python/C boundary) dominates: one float32 tensor of 10
elements, ``Parameter`` with ``.grad`` set, one ``opt.step()`` per call, for
Adam, SGD with momentum and plain SGD, plus Adam through ``step(grads=[...])``;
and, for the per-tensor cost, Adam on 1000 tensors of 1000 elements (one thread).

Used to decide between one abi3 wheel and per-version wheels (README,
"Building wheels")::

    python benches/compare_installs.py per-version=/tmp/venv-cp311/bin/python abi3=/tmp/venv-abi3/bin/python
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from typing import Callable, Dict, List

WORKLOADS = ("Adam step()", "Adam step(grads=)", "SGD momentum step()", "SGD step()", "Adam 1000 x 1000")


# ---------------------------------------------------------------------- worker


def make_workloads() -> Dict[str, Callable[[int], None]]:
    import numpy as np

    import rustoptim

    rng = np.random.default_rng(0)

    def parameter() -> "rustoptim.Parameter":
        p = rustoptim.Parameter(rng.standard_normal(10).astype(np.float32))
        p.grad = rng.standard_normal(10).astype(np.float32)
        return p

    def stepper(opt, **kwargs) -> Callable[[int], None]:
        step = opt.step

        def run(n: int) -> None:
            for _ in range(n):
                step(**kwargs)

        return run

    many = []
    for _ in range(1000):
        p = rustoptim.Parameter(rng.standard_normal(1000).astype(np.float32))
        p.grad = rng.standard_normal(1000).astype(np.float32)
        many.append(p)
    plain = rng.standard_normal(10).astype(np.float32)
    plain_grad = rng.standard_normal(10).astype(np.float32)
    return {
        "Adam step()": stepper(rustoptim.Adam([parameter()], lr=1e-3)),
        "Adam step(grads=)": stepper(rustoptim.Adam([plain], lr=1e-3), grads=[plain_grad]),
        "SGD momentum step()": stepper(rustoptim.SGD([parameter()], lr=1e-3, momentum=0.9)),
        "SGD step()": stepper(rustoptim.SGD([parameter()], lr=1e-3)),
        "Adam 1000 x 1000": stepper(rustoptim.Adam(many, lr=1e-3)),
    }


def worker() -> None:
    """Answers ``calls NAME TARGET_NS`` and ``run NAME CALLS`` on stdin, one line each."""
    import rustoptim
    from rustoptim import _core

    # The process's CPU time on a machine with more runnable threads than cores
    # (the wall clock then mostly measures the scheduler), else the wall clock.
    clock = time.process_time_ns if os.environ.get("RUSTOPTIM_BENCH_CLOCK") == "cpu" else time.perf_counter_ns

    runs = make_workloads()
    print(f"ready {rustoptim.__version__} {_core.__file__}", flush=True)
    for line in sys.stdin:
        parts = line.split()
        verb, arg = parts[0], int(float(parts[-1]))
        name = " ".join(parts[1:-1])
        run = runs[name]
        if verb == "calls":
            run(3)  # warm up
            calls = 1
            while True:
                start = clock()
                run(calls)
                elapsed = clock() - start
                if elapsed >= arg / 4:
                    break
                calls *= 2
            print(max(1, round(calls * arg / elapsed)), flush=True)
        else:
            start = clock()
            run(arg)
            print(clock() - start, flush=True)


# ---------------------------------------------------------------------- controller


class Install:
    def __init__(self, label: str, python: str, clock: str) -> None:
        self.label = label
        # Run from a neutral directory so the worker imports the install, not a source tree.
        self.proc = subprocess.Popen(
            [python, os.path.abspath(__file__), "--worker"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True, cwd="/", env={**os.environ, "RUSTOPTIM_NUM_THREADS": "1", "RUSTOPTIM_BENCH_CLOCK": clock},
        )
        self.banner = self.ask(None)

    def ask(self, line: "str | None") -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        if line is not None:
            self.proc.stdin.write(line + "\n")
            self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        if not answer:
            raise SystemExit(f"worker {self.label} died")
        return answer.strip()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait()


def quartiles(values: List[float]) -> List[float]:
    return statistics.quantiles(values, n=4, method="inclusive")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("installs", nargs=2, metavar="LABEL=PYTHON",
                        help="two installs: a label and the python of the venv holding it")
    parser.add_argument("--rounds", type=int, default=41)
    parser.add_argument("--sample-ms", type=float, default=20.0)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="time samples by the wall clock or by each worker's CPU time (a loaded machine)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    installs = [Install(*spec.split("=", 1), clock=args.clock) for spec in args.installs]
    for inst in installs:
        print(f"{inst.label}: {inst.banner}")
    target_ns = args.sample_ms * 1e6
    calls = {name: int(installs[0].ask(f"calls {name} {target_ns:.0f}")) for name in WORKLOADS}
    times: Dict[str, Dict[str, List[float]]] = {n: {i.label: [] for i in installs} for n in WORKLOADS}
    for r in range(args.rounds):
        order = installs if r % 2 == 0 else installs[::-1]
        for name in WORKLOADS:
            for inst in order:
                ns = int(inst.ask(f"run {name} {calls[name]}"))
                times[name][inst.label].append(ns / calls[name])
    for inst in installs:
        inst.close()

    a, b = installs[0].label, installs[1].label
    print(f"\n{args.rounds} rounds, {args.sample_ms:g} ms samples ({args.clock} clock), interleaved; "
          f"ratio = {b} / {a} per round")
    print(f"{'workload':<22} {a:>12} {b:>12} {'ratio median':>13} {'q1..q3':>14}")
    for name in WORKLOADS:
        ta, tb = times[name][a], times[name][b]
        ratios = [y / x for x, y in zip(ta, tb)]
        q1, _, q3 = quartiles(ratios)
        print(f"{name:<22} {statistics.median(ta):>9.0f} ns {statistics.median(tb):>9.0f} ns "
              f"{statistics.median(ratios):>13.3f} {q1:>6.3f}..{q3:.3f}")


if __name__ == "__main__":
    if "--worker" in sys.argv:
        worker()
    else:
        main()
