"""rustoptim.distributed on this machine: collective bandwidth, step times, state memory, bytes moved.

    python benches/bench_distributed.py [--quick] [--ranks 2]

Launches itself with mpiexec (Open MPI, shared memory between the ranks, one
rustoptim thread per rank) and prints markdown tables:

1. Collectives of the same run on a flat 100 MB float32 buffer: all-reduce,
   reduce-scatter, all-gather, and the small all-reduce that every call of the
   package starts with (the error agreement). "bus bandwidth" is nccl-tests'
   convention: bytes × 2(N-1)/N / time for an all-reduce, × (N-1)/N for the
   others, i.e. the per-rank link speed the collective achieved.
2. Steps on a 25M-param float32 model (8 transformer-like blocks of width
   512, 96 tensors, 101 MB): allreduce_grads (blocking and overlapped) against
   one raw all-reduce of the same bytes; a data-parallel Adam step (allreduce +
   full local step) and a ZeRO Adam step (reduce-scatter + 1/N local step +
   all-gather) against the single-process Adam step and the raw collectives.
   Medians over the repetitions; each time is the slowest rank's.
3. Optimizer state per rank: ZeRO's shard and its buffers against the
   single-process Adam state.
4. Bytes moved per step, counted by Open MPI's monitoring component
   (``--mca pml_monitoring_enable 2``: every byte the collectives send, per
   rank) in one-step jobs on 2 and 3 ranks, against the bandwidth-optimal
   minimum 2(N-1)/N × 101 MB per rank for an all-reduce, or for a
   reduce-scatter plus an all-gather.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

LAYERS, WIDTH = 8, 512
MB = 1e6


def model_shapes():
    shapes = []
    for _ in range(LAYERS):
        shapes += [(WIDTH, 3 * WIDTH), (3 * WIDTH,), (WIDTH, WIDTH), (WIDTH,), (WIDTH, 4 * WIDTH), (4 * WIDTH,)]
        shapes += [(4 * WIDTH, WIDTH), (WIDTH,), (WIDTH,), (WIDTH,), (WIDTH,), (WIDTH,)]
    return shapes


def make_model(seed):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s, dtype=np.float32) * 0.02 for s in model_shapes()]
    grads = [rng.standard_normal(s, dtype=np.float32) * 1e-3 for s in model_shapes()]
    return params, grads


# ------------------------------------------------------------------ the ranks


def worker_time(reps):
    from mpi4py import MPI

    import rustoptim
    from rustoptim import distributed as dist
    from rustoptim.distributed._consensus import agree

    comm = MPI.COMM_WORLD
    n, rank = comm.Get_size(), comm.Get_rank()
    params, grads = make_model(0)
    dist.broadcast_params(params)
    total = sum(p.size for p in params)
    flat = np.ones(25_000_000, np.float32)  # 100 MB
    part = np.empty(flat.size // n, np.float32)

    def timed(fn, repeat=reps):
        fn()  # warm-up (page faults, buffers)
        times = []
        for _ in range(repeat):
            comm.Barrier()
            t0 = time.perf_counter()
            fn()
            times.append(comm.allreduce(time.perf_counter() - t0, op=MPI.MAX))
        return statistics.median(times)

    out = {"ranks": n, "elements": total, "tensors": len(params)}
    out["allreduce_100MB"] = timed(lambda: comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM))
    out["reduce_scatter_100MB"] = timed(lambda: comm.Reduce_scatter_block(flat, part, op=MPI.SUM))
    out["allgather_100MB"] = timed(lambda: comm.Allgather(MPI.IN_PLACE, flat))
    out["agree"] = timed(lambda: [agree(comm, "bench") for _ in range(100)], repeat=3) / 100

    model_flat = np.ones(total, np.float32)
    model_part = np.empty(total // n, np.float32)
    out["allreduce_model"] = timed(lambda: comm.Allreduce(MPI.IN_PLACE, model_flat, op=MPI.SUM))
    out["rs_ag_model"] = timed(lambda: (comm.Reduce_scatter_block(model_flat, model_part, op=MPI.SUM),
                                        comm.Allgather(MPI.IN_PLACE, model_flat)))
    out["allreduce_grads"] = timed(lambda: dist.allreduce_grads(grads))
    out["allreduce_grads_overlap"] = timed(lambda: dist.allreduce_grads(grads, overlap=True))
    for mb in (4, 100):
        out[f"allreduce_grads_{mb}MB"] = timed(lambda mb=mb: dist.allreduce_grads(grads, bucket_mb=mb))

    full = rustoptim.Adam(params, lr=1e-5)
    out["adam_step_full"] = timed(lambda: full.step(grads=grads))
    out["ddp_step"] = timed(lambda: (dist.allreduce_grads(grads), full.step(grads=grads)))
    full_state = sum(v.nbytes for e in full.state.values() for v in e.values() if isinstance(v, np.ndarray))
    full = None  # free its state before building the ZeRO optimizer

    zero = dist.ZeroRedundancyOptimizer(params, rustoptim.Adam, lr=1e-5)
    out["zero_step"] = timed(lambda: zero.step(grads=grads))
    out["zero_reduce_scatter"] = timed(lambda: zero.reduce_grads(grads))
    zero.reduce_grads(grads)
    mask, layouts = zero._pending
    local = zero._local_grads(mask, layouts)
    out["zero_local_adam"] = timed(lambda: zero.optim.step(grads=local))
    out["zero_allgather"] = timed(lambda: zero._share_params(layouts))
    zero._pending = None
    shard_state = sum(v.nbytes for e in zero.state.values() for v in e.values() if isinstance(v, np.ndarray))
    shard_buffers = sum(b.nbytes for b in zero._shard.values())
    out["state_full"] = full_state
    out["state_shard_max"] = comm.allreduce(shard_state, op=MPI.MAX)
    out["state_shard_min"] = comm.allreduce(shard_state, op=MPI.MIN)
    out["shard_grad_buffer_max"] = comm.allreduce(shard_buffers, op=MPI.MAX)
    out["pack_buffer"] = 25 * 2**20
    if rank == 0:
        print("RESULT " + json.dumps(out), flush=True)


def worker_traffic(method):
    from mpi4py import MPI

    import rustoptim
    from rustoptim import distributed as dist

    comm = MPI.COMM_WORLD
    params, grads = make_model(0)
    if method == "raw_allreduce":
        flat = np.ones(sum(p.size for p in params), np.float32)
        comm.Allreduce(MPI.IN_PLACE, flat, op=MPI.SUM)
    elif method == "allreduce_grads":
        dist.allreduce_grads(grads)
    elif method == "zero_step":
        zero = dist.ZeroRedundancyOptimizer(params, rustoptim.Adam, lr=1e-5)
        zero.step(grads=grads)


# ------------------------------------------------------------------- the driver


def mpiexec(n, args, extra=()):
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
               OMPI_MCA_btl="self,sm", RUSTOPTIM_NUM_THREADS="1")
    mpi = Path(sys.executable).parent / "mpiexec"
    command = [str(mpi) if mpi.exists() else "mpiexec", "-n", str(n), "--oversubscribe", *extra,
               sys.executable, str(Path(__file__).resolve()), *args]
    job = subprocess.run(command, env=env, capture_output=True, text=True, errors="replace")
    if job.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{job.stdout}\n{job.stderr}")
    return job.stdout


def bytes_sent(n, method):
    """Bytes each rank's collectives sent (Open MPI monitoring), as a list over ranks."""
    with tempfile.TemporaryDirectory() as d:
        mpiexec(n, ["--worker", "traffic", method], extra=[
            "--mca", "pml_monitoring_enable", "2", "--mca", "pml_monitoring_enable_output", "3",
            "--mca", "pml_monitoring_filename", f"{d}/prof"])
        sent = []
        for path in sorted(glob.glob(f"{d}/prof.*.prof"), key=lambda p: int(p.split(".")[-2])):
            total = 0
            for line in open(path):
                if line[:2] in ("I\t", "E\t"):  # collectives' internal messages, and point-to-point
                    total += int(line.split("\t")[3].split()[0])
            sent.append(total)
        return sent


def ms(seconds):
    return f"{seconds * 1e3:.1f} ms"


def report(r, traffic):
    n = r["ranks"]
    size = r["elements"] * 4
    busbw = lambda factor, t: f"{100 * MB * factor / t / 1e9:.2f} GB/s"  # noqa: E731
    print(f"\n### Collectives, {n} ranks, 100 MB float32 (Open MPI, shared memory)\n")
    print("| collective | time | bus bandwidth |\n|:---|---:|---:|")
    print(f"| all-reduce | {ms(r['allreduce_100MB'])} | {busbw(2 * (n - 1) / n, r['allreduce_100MB'])} |")
    print(f"| reduce-scatter | {ms(r['reduce_scatter_100MB'])} | {busbw((n - 1) / n, r['reduce_scatter_100MB'])} |")
    print(f"| all-gather | {ms(r['allgather_100MB'])} | {busbw((n - 1) / n, r['allgather_100MB'])} |")
    print(f"| error agreement (3 int64 all-reduce) | {r['agree'] * 1e6:.1f} us | |")
    print(f"\n### Steps, {n} ranks, model of {r['elements'] / 1e6:.1f}M float32 params in {r['tensors']} tensors ({size / MB:.0f} MB)\n")
    print("| what | time | against |\n|:---|---:|:---|")
    raw = r["allreduce_model"]
    print(f"| raw all-reduce of {size / MB:.0f} MB (one buffer) | {ms(raw)} | |")
    for key, label in [("allreduce_grads", "allreduce_grads, 25 MB buckets"),
                       ("allreduce_grads_overlap", "allreduce_grads, 25 MB, overlap=True"),
                       ("allreduce_grads_4MB", "allreduce_grads, 4 MB buckets"),
                       ("allreduce_grads_100MB", "allreduce_grads, 100 MB buckets")]:
        print(f"| {label} | {ms(r[key])} | {r[key] / raw:.2f}x raw all-reduce |")
    print(f"| Adam step, all params, one process | {ms(r['adam_step_full'])} | |")
    print(f"| data parallel: allreduce_grads + Adam step | {ms(r['ddp_step'])} | "
          f"{r['ddp_step'] / (raw + r['adam_step_full']):.2f}x (raw all-reduce + Adam step) |")
    print(f"| raw reduce-scatter + all-gather of {size / MB:.0f} MB | {ms(r['rs_ag_model'])} | |")
    print(f"| ZeRO step (Adam) | {ms(r['zero_step'])} | "
          f"{r['zero_step'] / (r['rs_ag_model'] + r['adam_step_full'] / n):.2f}x (raw RS + AG + Adam step / {n}) |")
    print(f"| - reduce_grads (pack + reduce-scatter) | {ms(r['zero_reduce_scatter'])} | |")
    print(f"| - local Adam step on the shard | {ms(r['zero_local_adam'])} | {r['zero_local_adam'] / r['adam_step_full']:.2f}x the full step |")
    print(f"| - all-gather of the params (+ unpack) | {ms(r['zero_allgather'])} | |")
    print(f"\n### Optimizer state per rank ({n} ranks)\n")
    print("| | bytes | of single-process Adam state |\n|:---|---:|---:|")
    print(f"| single process: Adam state | {r['state_full'] / MB:.1f} MB | 100% |")
    print(f"| ZeRO: state of the largest shard | {r['state_shard_max'] / MB:.1f} MB | {100 * r['state_shard_max'] / r['state_full']:.1f}% |")
    print(f"| ZeRO: state of the smallest shard | {r['state_shard_min'] / MB:.1f} MB | {100 * r['state_shard_min'] / r['state_full']:.1f}% |")
    print(f"| ZeRO: + reduced-gradient shard | {r['shard_grad_buffer_max'] / MB:.1f} MB | {100 * r['shard_grad_buffer_max'] / r['state_full']:.1f}% |")
    print(f"| + packing buffer (all methods, 25 MB buckets) | {r['pack_buffer'] / MB:.1f} MB | |")
    print(f"\n### Bytes sent per rank per step (Open MPI monitoring), model of {size / MB:.0f} MB\n")
    print("| ranks | method | sent per rank (max) | minimum 2(N-1)/N x size | ratio |\n|---:|:---|---:|---:|---:|")
    for (ranks, method), sent in traffic.items():
        minimum = 2 * (ranks - 1) / ranks * size
        print(f"| {ranks} | {method} | {max(sent) / MB:.1f} MB | {minimum / MB:.1f} MB | {max(sent) / minimum:.3f} |")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--worker", nargs="+")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--ranks", type=int, default=2)
    args = parser.parse_args()
    if args.worker:
        if args.worker[0] == "time":
            worker_time(int(args.worker[1]))
        else:
            worker_traffic(args.worker[1])
        return
    reps = 3 if args.quick else 7
    out = mpiexec(args.ranks, ["--worker", "time", str(reps)])
    result = json.loads(next(line[7:] for line in out.splitlines() if line.startswith("RESULT ")))
    traffic = {(n, m): bytes_sent(n, m) for n in (2, 3) for m in ("raw_allreduce", "allreduce_grads", "zero_step")}
    print(f"rustoptim.distributed, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, one rustoptim thread per rank")
    report(result, traffic)
    print("\nRESULT " + json.dumps({"timing": result, "traffic": {f"{n} {m}": s for (n, m), s in traffic.items()}}))


if __name__ == "__main__":
    main()
