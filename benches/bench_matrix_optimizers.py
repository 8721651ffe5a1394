"""Adafactor and Muon on GPT-2-sized matrices: rustoptim against careful NumPy
implementations and, when it imports, torch.optim (torch 2.15, foreach=False),
interleaved in one process.

    python benches/bench_matrix_optimizers.py [--threads N] [--rounds R] [--quick]

Each round times one step of every contender in turn (same shape, float32,
fresh random gradients); the table reports each contender's fastest round and
its time relative to rustoptim's. The fastest round, not the median: on a
shared machine a step is often preempted for a whole scheduler slice (10-15 ms
here), which the median of a few rounds still carries. With ``--threads 1`` the
time is the process's CPU time (``time.process_time``), which preemption does
not inflate; with more threads it is wall time. torch and NumPy get the same thread
count as rustoptim (torch.set_num_threads; OPENBLAS_NUM_THREADS is set before
NumPy is imported).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=15, help="Adafactor rounds (Muon: a third, at least 3)")
    parser.add_argument("--quick", action="store_true", help="one shape, 3 rounds")
    return parser.parse_args()


ARGS = parse_args()
for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = str(ARGS.threads)

import numpy as np  # noqa: E402

import rustoptim  # noqa: E402

try:
    import torch  # noqa: E402
except ImportError:
    torch = None

SHAPES = [(768, 768), (768, 3072), (3072, 768)]
#: CPU time when everything runs on one thread (see the module docstring), else wall time.
CLOCK = time.process_time if ARGS.threads == 1 else time.perf_counter
ADAFACTOR = dict(lr=1e-2, beta2_decay=-0.8, eps=(None, 1e-3), d=1.0, weight_decay=0.01)
MUON = dict(lr=0.02, weight_decay=0.1, momentum=0.95, nesterov=True, ns_coefficients=(3.4445, -4.7750, 2.0315),
            eps=1e-7, ns_steps=5)


# --------------------------------------------------------------- NumPy versions


class NumpyAdafactor:
    """torch's Adafactor for one matrix, in place with preallocated buffers."""

    def __init__(self, param):
        self.p = param
        self.row_var = np.zeros(param.shape[:-1] + (1,), param.dtype)
        self.col_var = np.zeros(param.shape[:-2] + (1, param.shape[-1]), param.dtype)
        self.buffer = np.empty_like(param)
        self.t = 0.0

    def step(self, g):
        c = ADAFACTOR
        p, buffer = self.p, self.buffer
        self.t += 1
        beta2_hat = self.t ** c["beta2_decay"]
        rho = min(c["lr"], 1 / self.t ** 0.5)
        alpha = max(c["eps"][1], float(np.linalg.norm(p)) / math.sqrt(p.size)) * rho
        p *= 1 - c["lr"] * c["weight_decay"]
        np.square(g, out=buffer)
        rows, cols = p.shape[-2], p.shape[-1]
        self.row_var += beta2_hat * (buffer.sum(axis=-1, keepdims=True) / cols - self.row_var)
        self.col_var += beta2_hat * (buffer.sum(axis=-2, keepdims=True) / rows - self.col_var)
        eps1 = float(np.finfo(p.dtype).eps)
        np.multiply(self.row_var, self.col_var, out=buffer)
        buffer /= max(float(self.row_var.mean()), eps1)
        np.maximum(buffer, eps1 * eps1, out=buffer)
        np.sqrt(buffer, out=buffer)
        np.divide(g, buffer, out=buffer)  # u
        denominator = max(1.0, float(np.linalg.norm(buffer)) / (math.sqrt(p.size) * c["d"]))
        buffer *= -alpha / denominator
        p += buffer


class NumpyMuon:
    """torch's Muon for one matrix, Newton-Schulz in the param's dtype (BLAS products)."""

    def __init__(self, param):
        self.p = param
        self.momentum_buffer = np.zeros_like(param)

    def step(self, g):
        c = MUON
        mu = c["momentum"]
        buf = self.momentum_buffer
        buf += (1 - mu) * (g - buf)
        update = g + mu * (buf - g) if c["nesterov"] else buf
        rows, cols = update.shape
        x = update.T if rows > cols else update
        x = x / max(float(np.linalg.norm(x)), c["eps"])
        a, b, cc = c["ns_coefficients"]
        for _ in range(c["ns_steps"]):
            gram = x @ x.T
            x = a * x + (b * gram + cc * (gram @ gram)) @ x
        if rows > cols:
            x = x.T
        self.p *= 1 - c["lr"] * c["weight_decay"]
        self.p -= (c["lr"] * math.sqrt(max(1, rows / cols))) * x


# ------------------------------------------------------------------ contenders


def contenders(name, shape, rng):
    """(label, step(grad)) for each implementation of ``name`` on a float32 matrix."""
    init = rng.standard_normal(shape).astype(np.float32)
    out = []
    rust_param = init.copy()
    if name == "Adafactor":
        rust = rustoptim.Adafactor([rust_param], **ADAFACTOR)
        numpy_impl = NumpyAdafactor(init.copy())
    else:
        rust = rustoptim.Muon([rust_param], **MUON)
        numpy_impl = NumpyMuon(init.copy())
    out.append(("rustoptim", lambda g: rust.step(grads=[g])))
    out.append(("NumPy", numpy_impl.step))
    if torch is not None:
        tparam = torch.nn.Parameter(torch.from_numpy(init.copy()))
        if name == "Adafactor":
            topt = torch.optim.Adafactor([tparam], **ADAFACTOR, foreach=False)
        else:
            topt = torch.optim.Muon([tparam], **MUON)

        def torch_step(g, tparam=tparam, topt=topt):
            tparam.grad = torch.from_numpy(g)
            topt.step()

        out.append(("torch", torch_step))
    return out


def measure(name, shape, rounds, rng):
    runs = contenders(name, shape, rng)
    times = {label: [] for label, _ in runs}
    for r in range(rounds + 1):
        grad = rng.standard_normal(shape).astype(np.float32)
        for label, step in runs:
            start = CLOCK()
            step(grad)
            elapsed = CLOCK() - start
            if r > 0:  # the first round warms up (allocations, thread pools)
                times[label].append(elapsed)
    return {label: float(np.min(values)) for label, values in times.items()}


def fmt(seconds):
    return f"{seconds * 1e3:.2f} ms" if seconds >= 1e-3 else f"{seconds * 1e6:.1f} us"


def main():
    rustoptim.set_num_threads(ARGS.threads)
    if torch is not None:
        torch.set_num_threads(ARGS.threads)
    shapes = SHAPES[1:2] if ARGS.quick else SHAPES
    rounds = 3 if ARGS.quick else ARGS.rounds
    rng = np.random.default_rng(0)
    clock = "CPU time" if ARGS.threads == 1 else "wall time"
    print(f"# {ARGS.threads} thread(s), float32, {clock}, fastest of {rounds} (Muon: {max(3, rounds // 3)}) interleaved rounds; "
          f"numpy {np.__version__}, torch {torch.__version__ if torch is not None else 'not installed'}")
    print("| optimizer | shape | rustoptim | NumPy | NumPy / rustoptim | torch | torch / rustoptim |")
    print("|:---|:---|---:|---:|---:|---:|---:|")
    for name in ("Adafactor", "Muon"):
        for shape in shapes:
            t = measure(name, shape, rounds if name == "Adafactor" else max(3, rounds // 3), rng)
            ours = t["rustoptim"]
            torch_cells = (fmt(t["torch"]), f"{t['torch'] / ours:.2f}x") if "torch" in t else ("n/a", "n/a")
            print(f"| {name} | {shape[0]}x{shape[1]} | {fmt(ours)} | {fmt(t['NumPy'])} | {t['NumPy'] / ours:.2f}x "
                  f"| {torch_cells[0]} | {torch_cells[1]} |", flush=True)


if __name__ == "__main__":
    sys.exit(main())
