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

``max_norm`` is 1.0, so every call scales (the gradients stay near norm 1 after
the first call). Ratios are medians over rounds of per-round ratios; ">1x"
means rustoptim is faster.

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
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable, Dict, List, Sequence, Tuple  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _timing  # noqa: E402
from _timing import interleaved  # noqa: E402

import rustoptim  # noqa: E402

try:  # torch is optional: its column appears only when it imports.
    import torch  # type: ignore
except Exception as _torch_error:  # noqa: BLE001 - any import failure means "no torch"
    torch = None
    TORCH_MISSING = f"{type(_torch_error).__name__}: {_torch_error}"
else:
    TORCH_MISSING = ""

MAX_NORM = 1.0
WORKLOADS: Dict[str, List[Tuple[int, ...]]] = {
    "1e6": [(1_000_000,)],
    "1e7": [(10_000_000,)],
    "1000x1000": [(1000,)] * 1000,
}


def numpy_clip_grad_norm_(grads: Sequence[np.ndarray], max_norm: float) -> float:
    """torch's clip_grad_norm_ (p = 2) in NumPy, as fast as NumPy allows."""
    norms = np.empty(len(grads), dtype=grads[0].dtype)
    for i, g in enumerate(grads):
        flat = g.reshape(-1)
        norms[i] = math.sqrt(float(np.dot(flat, flat)))
    dtype = norms.dtype.type
    total = dtype(np.sqrt(np.dot(norms, norms)))
    coefficient = min(dtype(dtype(1) / dtype(total + dtype(1e-6)) * dtype(max_norm)), dtype(1))
    for g in grads:
        np.multiply(g, coefficient, out=g)
    return float(total)


def contenders(shapes: List[Tuple[int, ...]]) -> Dict[str, Callable[[int], None]]:
    rng = np.random.default_rng(0)
    original = [rng.standard_normal(s).astype(np.float32) for s in shapes]

    def repeat(function, grads):
        def run(n: int) -> None:
            for _ in range(n):
                function(grads, MAX_NORM)

        return run

    runs = {
        "rustoptim": repeat(rustoptim.clip_grad_norm_, [g.copy() for g in original]),
        "numpy": repeat(numpy_clip_grad_norm_, [g.copy() for g in original]),
    }
    if torch is not None:
        params = []
        for g in original:
            p = torch.nn.Parameter(torch.zeros(g.shape))
            p.grad = torch.from_numpy(g.copy())
            params.append(p)
        runs["torch"] = repeat(torch.nn.utils.clip_grad_norm_, params)
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
    header = ["workload", "threads", "rustoptim", "numpy", "vs NumPy"] + (["torch", "vs torch"] if torch else [])
    rows = []
    for name in args.workloads.split(","):
        shapes = WORKLOADS[name]
        for count in threads:
            rustoptim.set_num_threads(count)
            if torch is not None:
                torch.set_num_threads(count)
            runs = contenders(shapes)
            cpu_clock = args.cpu_clock and count == 1
            _timing._now_ns = time.thread_time_ns if cpu_clock else time.perf_counter_ns
            samples = interleaved(runs, rounds=rounds, target_ns=sample_ns)
            row = [name, str(count), _time(samples.median("rustoptim")), _time(samples.median("numpy"))]
            row.append(_ratio(samples.ratio_quartiles("numpy", "rustoptim")))
            if torch is not None:
                row += [_time(samples.median("torch")), _ratio(samples.ratio_quartiles("torch", "rustoptim"))]
            rows.append(row)
            print(("| " + " | ".join(row) + " |") if args.markdown else "  ".join(f"{c:>14}" for c in row), flush=True)
    if args.markdown:
        print()
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join([":---"] * 2 + ["---:"] * (len(header) - 2)) + "|")
        for row in rows:
            print("| " + " | ".join(row) + " |")


def _time(ns: float) -> str:
    return f"{ns / 1e3:.1f} us" if ns < 1e6 else f"{ns / 1e6:.2f} ms"


def _ratio(quartiles: Tuple[float, float, float]) -> str:
    q1, median, q3 = quartiles
    return f"{median:.2f}x ({q1:.2f}-{q3:.2f})"


if __name__ == "__main__":
    main()
