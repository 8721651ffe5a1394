#!/usr/bin/env python
"""Clip-then-step, fused or not: is ``step(grad_scale=...)`` worth it?

One training-loop tail, clipping by global norm then an Adam step, three ways,
measured side by side in one process (benches/_timing.py interleaves them):

- ``fused``: ``total, scale = rustoptim.clip_grad_norm_scale(grads, max_norm)``
  then ``opt.step(grads=grads, grad_scale=scale)``: the gradients are read
  twice (the norm, then the step) and never written;
- ``separate``: ``rustoptim.clip_grad_norm_(grads, max_norm)`` then
  ``opt.step(grads=grads)``: read three times (norm, scale, step) and written
  once. Both give bitwise the same params and state (tests/test_grad_scale.py);
- ``torch`` (when importable): ``torch.nn.utils.clip_grad_norm_`` then
  ``torch.optim.Adam(fused=True).step()`` on tensors sharing the arrays' memory.

float32, gradients at twice ``max_norm`` so every step clips. Every call first
restores the gradients (clipping in place changes them); that restore, timed
alone in the same rounds, is subtracted. Ratios are medians (quartiles) over
rounds of per-round ratios; ">1x" means the fused form is faster.

    python benches/bench_clip_step.py [--quick] [--markdown] [--threads 1,2] [--cpu-clock]
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _timing  # noqa: E402
from _timing import interleaved  # noqa: E402
from bench_clip import TORCH_MISSING, WORKLOADS, _net_times, _ratio, _time, torch  # noqa: E402

import rustoptim  # noqa: E402


def contenders(shapes: List[Tuple[int, ...]]) -> Dict[str, Callable[[int], None]]:
    rng = np.random.default_rng(0)
    original = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    total = float(np.sqrt(sum(np.dot(g.ravel(), g.ravel()) for g in original)))
    max_norm = 0.5 * total

    def repeat(tail: Callable[[], None], grads: List[np.ndarray]) -> Callable[[int], None]:
        def run(n: int) -> None:
            for _ in range(n):
                for array, values in zip(grads, original):
                    np.copyto(array, values)
                tail()

        return run

    def fused_run() -> Callable[[int], None]:
        grads = [g.copy() for g in original]
        opt = rustoptim.Adam([np.zeros(s, dtype=np.float32) for s in shapes], lr=1e-3)

        def tail() -> None:
            _, scale = rustoptim.clip_grad_norm_scale(grads, max_norm)
            opt.step(grads=grads, grad_scale=scale)

        return repeat(tail, grads)

    def separate_run() -> Callable[[int], None]:
        grads = [g.copy() for g in original]
        opt = rustoptim.Adam([np.zeros(s, dtype=np.float32) for s in shapes], lr=1e-3)

        def tail() -> None:
            rustoptim.clip_grad_norm_(grads, max_norm)
            opt.step(grads=grads)

        return repeat(tail, grads)

    runs = {"fused": fused_run(), "separate": separate_run()}
    if torch is not None:
        grads = [g.copy() for g in original]
        params = []
        for array in grads:
            p = torch.nn.Parameter(torch.zeros(array.shape))
            p.grad = torch.from_numpy(array)  # shares the array's memory
            params.append(p)
        opt = torch.optim.Adam(params, lr=1e-3, fused=True)

        def torch_tail() -> None:
            torch.nn.utils.clip_grad_norm_(params, max_norm)
            opt.step()

        runs["torch"] = repeat(torch_tail, grads)
    runs["refresh"] = repeat(lambda: None, [g.copy() for g in original])
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
        f"# clip + Adam step benchmark, {datetime.date.today()}, {platform.processor() or platform.machine()}, "
        f"{all_threads} cores, Python {platform.python_version()}, NumPy {np.__version__}, "
        f"SIMD {rustoptim.get_simd_level()}, torch {torch.__version__ if torch else 'absent (' + TORCH_MISSING + ')'}, "
        f"clock: {'thread CPU time for 1 thread' if args.cpu_clock else 'wall'}, load {os.getloadavg()[0]:.1f}"
    )
    header = ["workload", "threads", "fused", "separate", "separate / fused"]
    header += ["torch", "torch / fused"] if torch is not None else []
    rows = []
    for name in args.workloads.split(","):
        for count in threads:
            rustoptim.set_num_threads(count)
            if torch is not None:
                torch.set_num_threads(count)
            cpu_clock = args.cpu_clock and count == 1
            _timing._now_ns = time.thread_time_ns if cpu_clock else time.perf_counter_ns
            samples = interleaved(contenders(WORKLOADS[name]), rounds=rounds, target_ns=sample_ns)
            times = _net_times(samples)
            # _ratio(times, other) is time(other) / time("rustoptim"): the fused form here.
            times["rustoptim"] = times["fused"]
            row = [name, str(count), _time(times["fused"]), _time(times["separate"]), _ratio(times, "separate")]
            if torch is not None:
                row += [_time(times["torch"]), _ratio(times, "torch")]
            rows.append(row)
            print(("| " + " | ".join(row) + " |") if args.markdown else "  ".join(f"{c:>14}" for c in row), flush=True)
    if args.markdown:
        print()
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join([":---"] * 2 + ["---:"] * (len(header) - 2)) + "|")
        for row in rows:
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
