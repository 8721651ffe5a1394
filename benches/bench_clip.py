#!/usr/bin/env python
"""How fast is ``clip_grad_norm_``? rustoptim against a careful NumPy version
and torch (when importable), measured side by side in one process.

Workloads (float32 gradients): one tensor of 1e6 elements, one of 1e7, and
1000 tensors of 1000 elements. For each, with 1 thread and with all threads,
the contenders are timed interleaved (benches/_timing.py) on their own copies
of the gradients:

- ``rustoptim``: ``rustoptim.clip_grad_norm_(grads, max_norm)``: one pass for
  the per-tensor norms and their norm, one in-place pass for the scaling;
- ``numpy``: the same in NumPy, written for speed: each tensor's norm as
  ``sqrt(dot(g, g))`` (BLAS, single-threaded here), the total from those, then
  ``np.multiply(g, coef, out=g)``; single-threaded, so it does not change with
  the thread count;
- ``torch``: ``torch.nn.utils.clip_grad_norm_`` on tensors sharing the
  gradients' memory (default ``foreach=None``: the foreach path on CPU), with
  torch set to the same thread count.

Two cases: "clips" (``max_norm`` half the gradients' norm; every call first
restores the gradients, and the time of that restore, measured alone in the
same rounds, is subtracted) and "no clip" (``max_norm`` 1e9: rustoptim and
the NumPy version skip the multiply by 1, torch does it). Ratios are medians
(quartiles) over rounds of per-round ratios; ">1x" means rustoptim is faster.

    python benches/bench_clip.py [--quick] [--markdown] [--threads 1,2] [--cpu-clock]

``--cpu-clock`` times the 1-thread rows with the calling thread's CPU clock
instead of the wall clock (every contender then computes on that thread), so
time the thread spends descheduled on a machine shared with other work is not
counted; rows with more threads keep the wall clock.
"""

from __future__ import annotations

import os

# NumPy's BLAS would otherwise start its own threads for dot(): keep the NumPy
# baseline single-threaded, as in bench_step.py.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

import argparse  # noqa: E402
import datetime  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _timing  # noqa: E402
import rustoptim  # noqa: E402
from _timing import interleaved  # noqa: E402

try:  # torch is optional: its column appears only when it imports.
    import torch  # type: ignore[import-not-found]
except Exception as _torch_error:  # noqa: BLE001 - any import failure means "no torch"
    torch = None
    TORCH_MISSING = f"{type(_torch_error).__name__}: {_torch_error}"
else:
    TORCH_MISSING = ""

WORKLOADS: dict[str, list[tuple[int, ...]]] = {
    "1e6": [(1_000_000,)],
    "1e7": [(10_000_000,)],
    "1000x1000": [(1000,)] * 1000,
}
SCENARIOS = ("clips", "no clip")


def numpy_clip_grad_norm_(grads: Sequence[np.ndarray], max_norm: float) -> float:
    """torch's clip_grad_norm_ (p = 2) in NumPy, as fast as NumPy allows:
    BLAS dot products, in-place multiplies, none when nothing needs clipping."""
    norms = np.empty(len(grads), dtype=grads[0].dtype)
    for i, g in enumerate(grads):
        flat = g.reshape(-1)
        norms[i] = math.sqrt(float(np.dot(flat, flat)))
    dtype = norms.dtype.type
    total = dtype(np.sqrt(np.dot(norms, norms)))
    coefficient = min(dtype(dtype(1) / dtype(total + dtype(1e-6)) * dtype(max_norm)), dtype(1))
    if coefficient != 1:
        for g in grads:
            np.multiply(g, coefficient, out=g)
    return float(total)


def contenders(shapes: list[tuple[int, ...]], scenario: str) -> dict[str, Callable[[int], None]]:
    """``run(n)`` for every contender. "clips": every call first restores the
    gradients (a clip converges to gradients that need no more clipping), and
    a "refresh" contender times that restore alone, to be subtracted."""
    rng = np.random.default_rng(0)
    original = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    total = float(np.sqrt(sum(np.dot(g.ravel(), g.ravel()) for g in original)))
    clips = scenario == "clips"
    max_norm = 0.5 * total if clips else 1e9

    def repeat(function, arguments, arrays):
        def run(n: int) -> None:
            for _ in range(n):
                if clips:
                    for array, values in zip(arrays, original):
                        np.copyto(array, values)
                function(arguments, max_norm)

        return run

    runs = {}
    for name, function in (("rustoptim", rustoptim.clip_grad_norm_), ("numpy", numpy_clip_grad_norm_)):
        grads = [g.copy() for g in original]
        runs[name] = repeat(function, grads, grads)
    if torch is not None:
        arrays = [g.copy() for g in original]
        params = []
        for array in arrays:
            p = torch.nn.Parameter(torch.zeros(array.shape))
            p.grad = torch.from_numpy(array)  # shares the array's memory
            params.append(p)
        runs["torch"] = repeat(torch.nn.utils.clip_grad_norm_, params, arrays)
    if clips:
        grads = [g.copy() for g in original]
        runs["refresh"] = repeat(lambda arguments, max_norm: None, None, grads)
    return runs


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer rounds, shorter samples")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    parser.add_argument("--threads", default=None, help="thread counts, e.g. 1,2 (default: 1 and all)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="subset of " + ",".join(WORKLOADS))
    parser.add_argument("--cpu-clock", action="store_true", help="1-thread rows: time with the thread's CPU clock")
    args = parser.parse_args(argv)
    all_threads = os.cpu_count() or 1
    threads = [int(t) for t in args.threads.split(",")] if args.threads else sorted({1, all_threads})
    rounds, sample_ns = (7, 5e6) if args.quick else (15, 20e6)

    print(
        f"# clip_grad_norm_ benchmark, {datetime.date.today()}, {platform.processor() or platform.machine()}, "
        f"{all_threads} cores, Python {platform.python_version()}, NumPy {np.__version__}, "
        f"SIMD {rustoptim.get_simd_level()}, torch {torch.__version__ if torch else 'absent (' + TORCH_MISSING + ')'}, "
        f"clock: {'thread CPU time for 1 thread' if args.cpu_clock else 'wall'}, load {os.getloadavg()[0]:.1f}"
    )
    header = ["workload", "threads", "case", "rustoptim", "numpy", "vs NumPy"] + (["torch", "vs torch"] if torch else [])
    rows = []
    for name in args.workloads.split(","):
        for count in threads:
            rustoptim.set_num_threads(count)
            if torch is not None:
                torch.set_num_threads(count)
            cpu_clock = args.cpu_clock and count == 1
            _timing._now_ns = time.thread_time_ns if cpu_clock else time.perf_counter_ns
            for scenario in SCENARIOS:
                samples = interleaved(contenders(WORKLOADS[name], scenario), rounds=rounds, target_ns=sample_ns)
                times = _net_times(samples)
                row = [name, str(count), scenario, _time(times["rustoptim"]), _time(times["numpy"])]
                row.append(_ratio(times, "numpy"))
                if torch is not None:
                    row += [_time(times["torch"]), _ratio(times, "torch")]
                rows.append(row)
                line = ("| " + " | ".join(row) + " |") if args.markdown else "  ".join(f"{c:>12}" for c in row)
                print(line, flush=True)
    if args.markdown:
        print()
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join([":---"] * 3 + ["---:"] * (len(header) - 3)) + "|")
        for row in rows:
            print("| " + " | ".join(row) + " |")


def _net_times(samples) -> dict[str, list[float]]:
    """Per-round times of each contender, minus the round's restore time when measured."""
    names = [n for n in samples.per_step_ns if n != "refresh"]
    if "refresh" not in samples.per_step_ns:
        return {n: samples.values(n) for n in names}
    refresh = samples.values("refresh")
    return {n: [t - r for t, r in zip(samples.values(n), refresh)] for n in names}


def _time(per_round: list[float]) -> str:
    ns = statistics.median(per_round)
    return f"{ns / 1e3:.1f} us" if ns < 1e6 else f"{ns / 1e6:.2f} ms"


def _ratio(times: dict[str, list[float]], other: str) -> str:
    """Median and quartiles over rounds of time(other) / time(rustoptim)."""
    ratios = [a / b for a, b in zip(times[other], times["rustoptim"])]
    q1, median, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    return f"{median:.2f}x ({q1:.2f}-{q3:.2f})"


if __name__ == "__main__":
    main()
