#!/usr/bin/env python
"""RAdam, ASGD and Rprop steps against their same-run memory ceiling (and
torch.optim when it imports), with Adam alongside as the known reference.

Uses the machinery of ``bench_step.py``: contenders timed interleaved in one
process, each shown as a fraction of ``rustoptim._core.stream_update`` moving
the step's exact memory traffic without arithmetic (RAdam: read the grad, read
and write param, exp_avg, exp_avg_sq; ASGD: param and ax, where ax is only written until averaging starts; Rprop: param, prev
and step_size).

    python benches/bench_radam_asgd_rprop.py                  # 1e7 and 10 elements, 1 and all threads
    python benches/bench_radam_asgd_rprop.py --workloads gpt2 --threads 2
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_step as bench  # noqa: E402
import rustoptim  # noqa: E402

SPECS = {
    s.key: s
    for s in [
        bench.OPTIMIZERS["adam"],
        bench.OptimizerSpec("radam", "RAdam", rustoptim.RAdam, {}, "RAdam", {}, ("param", "exp_avg", "exp_avg_sq")),
        bench.OptimizerSpec("asgd", "ASGD", rustoptim.ASGD, {}, "ASGD", {}, ("param", "ax")),
        # Averaging from the third step on: ax is read as well as written.
        bench.OptimizerSpec("asgd-avg", "ASGD t0=0", rustoptim.ASGD, {"t0": 0}, "ASGD", {"t0": 0}, ("param", "ax")),
        bench.OptimizerSpec("rprop", "Rprop", rustoptim.Rprop, {}, "Rprop", {}, ("param", "prev", "step_size")),
    ]
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--optimizers", default=",".join(SPECS), help=f"subset of {','.join(SPECS)}")
    parser.add_argument("--workloads", default="1e7,10", help=f"subset of {','.join(bench.WORKLOADS)}")
    parser.add_argument("--threads", default=None, help=f"thread counts (default: 1,{os.cpu_count()})")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per table (default: per workload)")
    parser.add_argument("--sample-ms", type=float, default=20.0, help="minimum duration of one sample")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()

    specs = [SPECS[k] for k in bench.parse_list(args.optimizers, list(SPECS), "optimizer")]
    workloads = [bench.WORKLOADS[k] for k in bench.parse_list(args.workloads, list(bench.WORKLOADS), "workload")]
    if args.threads:
        threads = [int(x) for x in args.threads.split(",") if x.strip()]
    else:
        threads = list(dict.fromkeys([1, os.cpu_count() or 1]))
    out = bench.Printer(args.markdown)
    out.text(f"torch: {bench.torch.__version__ if bench.torch is not None else 'not importable (' + bench.TORCH_MISSING + ')'}")
    order = ["ceiling", "rustoptim"] + [name for name, _ in bench.TORCH_VARIANTS]
    notes: list = []
    summary = []
    for wl in workloads:
        out.heading(wl.describe())
        p0, grads = bench.make_data(wl)
        for spec in specs:
            contenders = [
                bench.ceiling_contender(spec, p0, grads),
                bench.rust_contender(spec, p0, grads),
                *bench.torch_contenders(spec, p0, grads, notes),
            ]
            table = bench.measure(spec, wl, contenders, threads, args.rounds or wl.rounds, args.sample_ms * 1e6)
            bench.print_table(out, table, order)
            for note in notes:
                out.text(f"note: {note}")
            notes.clear()
            for n, rows in table.rows.items():
                row = rows["rustoptim"]
                summary.append([wl.label, spec.title, bench.thread_label(n), bench.fmt_time(row.time_ns),
                                f"{row.pct_ceiling:.0f}% ±{row.pct_spread:.0f}"])
            del contenders
            gc.collect()
        del p0, grads
        gc.collect()
    bench.set_threads(bench.DEFAULT_THREADS)
    out.heading("Summary: rustoptim as a fraction of its own ceiling")
    out.table(["workload", "optimizer", "threads", "time/step", "% of ceiling"], summary, "lllrr")


if __name__ == "__main__":
    main()
