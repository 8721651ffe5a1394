#!/usr/bin/env python
"""How fast is one optimizer step? rustoptim against NumPy, torch.optim and the
memory-bandwidth ceiling, measured side by side in one process.

For every optimizer (Adam, AdamW, SGD with momentum, plain SGD, Adagrad,
RMSprop, Adadelta, Adamax, NAdam) and workload
(one float32 tensor of 1e6 / 1e7 / 1e8 elements, the 148 parameter tensors of
GPT-2 small, 1000 tensors of 1000 elements, one tensor of 10 elements, one
float64 tensor of 1e7 elements) the contenders are timed interleaved, with
1 thread and with all threads:

- ``ceiling``: ``rustoptim._core.stream_update``, the same memory traffic as the
  step (Adam: read 4 arrays, write 3) with no arithmetic, split across threads
  like the optimizer kernels; every contender is shown as a fraction of it;
- ``rustoptim``: ``rustoptim.Adam(...)`` etc. with default settings, params as
  ``rustoptim.Parameter`` with ``.grad`` set, timed per ``opt.step()``;
- ``numpy``: a careful NumPy implementation of the same update (torch's order
  of operations, in-place ufuncs with ``out=``, preallocated scratch, large
  tensors walked in cache-sized blocks), for Adam, AdamW and SGD;
- ``torch default`` / ``torch foreach`` / ``torch fused``: ``torch.optim`` on
  tensors sharing the arrays' memory, when ``import torch`` works.

Then the targets of the benchmark issue are checked against the measured
ratios, and the small steps (10 elements, 1000 x 1000) are broken down into
Python bookkeeping and the native call.

Run ``python benches/bench_step.py --help`` for the options; see benches/README.md.
"""

from __future__ import annotations

import argparse
import cProfile
import datetime
import gc
import os
import platform
import pstats
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _timing  # noqa: E402
from _timing import Samples, interleaved, repeat_call  # noqa: E402

import rustoptim  # noqa: E402
from rustoptim import _core  # noqa: E402

try:  # torch is optional: its columns appear only when it imports.
    import torch  # type: ignore
except Exception as _torch_error:  # noqa: BLE001 - any import failure means "no torch"
    torch = None
    TORCH_MISSING = f"{type(_torch_error).__name__}: {_torch_error}"
else:
    TORCH_MISSING = ""

#: NumPy walks large tensors in blocks of this many bytes per array, so the
#: chain of ufuncs of one block stays in L2 instead of streaming from memory
#: once per ufunc (best of 32 KiB ... 512 KiB on a 2 MiB-L2 core: 1.9x faster than
#: whole-array ufuncs for Adam at 1e7).
NUMPY_BLOCK_BYTES = 128 * 1024


# --------------------------------------------------------------------- workloads


def gpt2_small_shapes() -> List[Tuple[int, ...]]:
    """The 148 parameter tensors of GPT-2 small (124,439,808 parameters)."""
    d, vocab, context, layers = 768, 50257, 1024, 12
    shapes: List[Tuple[int, ...]] = [(vocab, d), (context, d)]  # wte, wpe
    for _ in range(layers):
        shapes += [
            (d,), (d,),                  # ln_1 weight, bias
            (d, 3 * d), (3 * d,),        # attn.c_attn
            (d, d), (d,),                # attn.c_proj
            (d,), (d,),                  # ln_2 weight, bias
            (d, 4 * d), (4 * d,),        # mlp.c_fc
            (4 * d, d), (d,),            # mlp.c_proj
        ]
    shapes += [(d,), (d,)]  # ln_f weight, bias
    return shapes


@dataclass(frozen=True)
class Workload:
    key: str
    label: str
    shapes: Tuple[Tuple[int, ...], ...]
    dtype: Any
    rounds: int
    quick_rounds: int
    #: Also time the ceiling on one tensor holding all elements (many small tensors).
    flat_ceiling: bool = False

    @property
    def elements(self) -> int:
        return sum(int(np.prod(s)) for s in self.shapes)

    @property
    def itemsize(self) -> int:
        return np.dtype(self.dtype).itemsize

    def describe(self) -> str:
        dtype = np.dtype(self.dtype).name
        count = len(self.shapes)
        tensors = "1 tensor" if count == 1 else f"{count} tensors"
        return f"{self.label}: {tensors}, {self.elements:,} {dtype} elements"


WORKLOADS: Dict[str, Workload] = {
    w.key: w
    for w in [
        Workload("1e6", "1e6", ((10**6,),), np.float32, 21, 7),
        Workload("1e7", "1e7", ((10**7,),), np.float32, 15, 5),
        Workload("1e8", "1e8", ((10**8,),), np.float32, 9, 3),
        Workload("gpt2", "GPT-2 small", tuple(gpt2_small_shapes()), np.float32, 9, 3),
        Workload("1000x1000", "1000 x 1000", ((1000,),) * 1000, np.float32, 21, 7, flat_ceiling=True),
        Workload("10", "10 elements", ((10,),), np.float32, 15, 7),
        Workload("f64", "1e7 float64", ((10**7,),), np.float64, 15, 5),
    ]
}
QUICK_WORKLOADS = ["1e6", "1e7", "gpt2", "1000x1000", "10", "f64"]
#: Workloads the "large tensor" target applies to.
LARGE = ("1e7", "1e8", "gpt2", "f64")


# -------------------------------------------------------------------- optimizers


@dataclass(frozen=True)
class OptimizerSpec:
    key: str
    title: str
    rust: Callable[..., Any]
    rust_kwargs: Dict[str, Any]
    torch_name: str
    torch_kwargs: Dict[str, Any]
    #: Arrays the step reads and writes besides the gradient (the ceiling's updates).
    updated: Tuple[str, ...]

    @property
    def arrays_touched(self) -> int:
        """Useful traffic in arrays per element: the gradient is read, every updated array read and written."""
        return 1 + 2 * len(self.updated)


OPTIMIZERS: Dict[str, OptimizerSpec] = {
    o.key: o
    for o in [
        OptimizerSpec("adam", "Adam", rustoptim.Adam, {}, "Adam", {}, ("param", "exp_avg", "exp_avg_sq")),
        OptimizerSpec("adamw", "AdamW", rustoptim.AdamW, {}, "AdamW", {}, ("param", "exp_avg", "exp_avg_sq")),
        OptimizerSpec(
            "sgd-momentum", "SGD momentum=0.9", rustoptim.SGD, {"momentum": 0.9},
            "SGD", {"lr": 1e-3, "momentum": 0.9}, ("param", "momentum_buffer"),
        ),
        OptimizerSpec("sgd", "SGD (plain)", rustoptim.SGD, {}, "SGD", {"lr": 1e-3}, ("param",)),
        OptimizerSpec("adagrad", "Adagrad", rustoptim.Adagrad, {}, "Adagrad", {}, ("param", "sum")),
        OptimizerSpec("rmsprop", "RMSprop", rustoptim.RMSprop, {}, "RMSprop", {}, ("param", "square_avg")),
        OptimizerSpec(
            "rmsprop-centered", "RMSprop centered momentum=0.9", rustoptim.RMSprop,
            {"centered": True, "momentum": 0.9}, "RMSprop", {"centered": True, "momentum": 0.9},
            ("param", "square_avg", "momentum_buffer", "grad_avg"),
        ),
        OptimizerSpec("adadelta", "Adadelta", rustoptim.Adadelta, {}, "Adadelta", {},
                      ("param", "square_avg", "acc_delta")),
        OptimizerSpec("adamax", "Adamax", rustoptim.Adamax, {}, "Adamax", {}, ("param", "exp_avg", "exp_inf")),
        OptimizerSpec("nadam", "NAdam", rustoptim.NAdam, {}, "NAdam", {}, ("param", "exp_avg", "exp_avg_sq")),
    ]
}


def numpy_hyperparameters(spec: OptimizerSpec) -> Dict[str, Any]:
    """The hyperparameters rustoptim's constructor fills in, for the NumPy and torch contenders."""
    probe = spec.rust([np.zeros(1, np.float32)], **spec.rust_kwargs)
    group = probe.param_groups[0]
    return {k: v for k, v in group.items() if k != "params"}


# ---------------------------------------------------------- NumPy implementations


def _blocks(arrays: Sequence[np.ndarray], block: int) -> List[Tuple[np.ndarray, ...]]:
    """Views of ``arrays`` (same shape, contiguous) in blocks of ``block`` elements."""
    flat = [a.reshape(-1) for a in arrays]
    n = flat[0].size
    return [tuple(f[start:start + block] for f in flat) for start in range(0, n, block)]


class NumpyAdam:
    """Adam/AdamW in torch's order of operations (torch.optim's single-tensor
    path), with in-place ufuncs, preallocated scratch and cache-sized blocks."""

    def __init__(self, params, grads, lr, betas, eps, weight_decay, decoupled_weight_decay, **_):
        dtype = params[0].dtype
        block = max(1, NUMPY_BLOCK_BYTES // dtype.itemsize)
        size = min(block, max(p.size for p in params))
        scratch = np.empty(size, dtype)
        scratch_grad = np.empty(size, dtype)
        self.exp_avg = [np.zeros_like(p) for p in params]
        self.exp_avg_sq = [np.zeros_like(p) for p in params]
        self.chunks = []
        for arrays in zip(params, grads, self.exp_avg, self.exp_avg_sq):
            for p, g, m, v in _blocks(arrays, block):
                self.chunks.append((p, g, m, v, scratch[: p.size], scratch_grad[: p.size]))
        self.t = 0
        self.type = dtype.type
        self.lr, (self.beta1, self.beta2), self.eps = lr, betas, eps
        self.weight_decay, self.decoupled = weight_decay, decoupled_weight_decay

    def step(self) -> None:
        self.t += 1
        f = self.type
        lr, beta1, beta2 = self.lr, self.beta1, self.beta2
        bias_correction1 = 1 - beta1**self.t
        bias_correction2 = 1 - beta2**self.t
        neg_step_size = f(-(lr / bias_correction1))
        bias_correction2_sqrt = f(bias_correction2**0.5)
        lerp_weight, one_minus_beta2 = f(1 - beta1), f(1 - beta2)
        beta2, eps = f(beta2), f(self.eps)
        wd = self.weight_decay
        decay = f(1 - lr * wd) if (wd and self.decoupled) else None
        coupled = f(wd) if (wd and not self.decoupled) else None
        multiply, subtract, sqrt, divide = np.multiply, np.subtract, np.sqrt, np.divide
        for p, g, m, v, s, sg in self.chunks:
            if decay is not None:
                p *= decay                              # param.mul_(1 - lr * wd)
            elif coupled is not None:
                multiply(p, coupled, out=sg)            # grad = grad.add(param, alpha=wd)
                sg += g
                g = sg
            subtract(g, m, out=s)                       # exp_avg.lerp_(grad, 1 - beta1)
            s *= lerp_weight
            m += s
            v *= beta2                                  # exp_avg_sq.mul_(beta2)
            multiply(g, g, out=s)                       #   .addcmul_(grad, grad, value=1 - beta2)
            s *= one_minus_beta2
            v += s
            sqrt(v, out=s)                              # denom = (exp_avg_sq.sqrt()
            s /= bias_correction2_sqrt                  #   / bias_correction2_sqrt)
            s += eps                                    #   .add_(eps)
            divide(m, s, out=s)                         # param.addcdiv_(exp_avg, denom,
            s *= neg_step_size                          #   value=-step_size)
            p += s


class NumpySGD:
    """SGD (optionally with momentum) in torch's order of operations, in place, in blocks."""

    def __init__(self, params, grads, lr, momentum, dampening, weight_decay, nesterov, **_):
        if nesterov:
            raise NotImplementedError("the benchmark's NumPy SGD has no Nesterov path")
        dtype = params[0].dtype
        block = max(1, NUMPY_BLOCK_BYTES // dtype.itemsize)
        size = min(block, max(p.size for p in params))
        scratch = np.empty(size, dtype)
        scratch_grad = np.empty(size, dtype)
        self.momentum_buffer = [np.zeros_like(p) for p in params] if momentum else None
        buffers = self.momentum_buffer or [None] * len(params)
        self.chunks = []
        for p, g, b in zip(params, grads, buffers):
            arrays = (p, g) if b is None else (p, g, b)
            for views in _blocks(arrays, block):
                n = views[0].size
                self.chunks.append((views[0], views[1], views[2] if b is not None else None, scratch[:n], scratch_grad[:n]))
        self.first = True
        f = dtype.type
        self.neg_lr, self.momentum = f(-lr), f(momentum)
        self.one_minus_dampening = f(1 - dampening)
        self.weight_decay = f(weight_decay) if weight_decay else None

    def step(self) -> None:
        multiply, copyto = np.multiply, np.copyto
        neg_lr, momentum, wd = self.neg_lr, self.momentum, self.weight_decay
        undamped = self.one_minus_dampening == 1
        first = self.first
        for p, g, b, s, sg in self.chunks:
            if wd is not None:
                multiply(p, wd, out=sg)                 # d_p = grad.add(param, alpha=wd)
                sg += g
                g = sg
            if b is not None:
                if first:
                    copyto(b, g)                        # buf = clone(d_p)
                else:
                    b *= momentum                       # buf.mul_(momentum)
                    if undamped:
                        b += g                          #   .add_(d_p, alpha=1 - dampening)
                    else:
                        multiply(g, self.one_minus_dampening, out=s)
                        b += s
                g = b
            multiply(g, neg_lr, out=s)                  # param.add_(d_p, alpha=-lr)
            p += s
        self.first = False


def numpy_optimizer(spec: OptimizerSpec, params, grads, hyper):
    """The NumPy contender of ``spec``, or None (only Adam, AdamW and SGD have one)."""
    if spec.key in ("adam", "adamw"):
        return NumpyAdam(params, grads, **hyper)
    if spec.key in ("sgd", "sgd-momentum"):
        return NumpySGD(params, grads, **hyper)
    return None


# --------------------------------------------------------------------- contenders


@dataclass
class Contender:
    name: str
    run: Callable[[int], None]
    keep: List[Any] = field(default_factory=list)  # objects kept alive with it


def make_data(workload: Workload, seed: int = 0) -> Tuple[List[np.ndarray], List[np.ndarray]]:
    rng = np.random.default_rng(seed)
    dtype = workload.dtype
    params = [(rng.standard_normal(s, dtype=dtype) * dtype(0.02)).astype(dtype, copy=False) for s in workload.shapes]
    grads = [rng.standard_normal(s, dtype=dtype) for s in workload.shapes]
    return params, grads


def rust_contender(spec: OptimizerSpec, p0, grads) -> Contender:
    params = []
    for p, g in zip(p0, grads):
        param = rustoptim.Parameter(p.copy())
        param.grad = g
        params.append(param)
    opt = spec.rust(params, **spec.rust_kwargs)
    return Contender("rustoptim", repeat_call(opt.step), [opt])


def numpy_contenders(spec: OptimizerSpec, p0, grads, hyper) -> List[Contender]:
    opt = numpy_optimizer(spec, [p.copy() for p in p0], grads, hyper)
    return [] if opt is None else [Contender("numpy", repeat_call(opt.step), [opt])]


def ceiling_contender(spec: OptimizerSpec, p0, grads, flat: bool = False) -> Contender:
    """The bandwidth kernel over the same arrays, or (``flat``) over one tensor
    holding all elements: the traffic alone, without any per-tensor cost."""
    if flat:
        p0 = [np.concatenate([p.reshape(-1) for p in p0])]
        grads = [np.concatenate([g.reshape(-1) for g in grads])]
    updates = [[p.copy()] + [np.zeros_like(p) for _ in spec.updated[1:]] for p in p0]
    reads = list(grads)
    stream = _core.stream_update
    name = FLAT_CEILING if flat else "ceiling"
    return Contender(name, repeat_call(lambda: stream(reads, updates)), [updates, reads])


FLAT_CEILING = "ceiling, 1 tensor"


TORCH_VARIANTS = (("torch default", {}), ("torch foreach", {"foreach": True}), ("torch fused", {"fused": True}))


def torch_contenders(spec: OptimizerSpec, p0, grads, notes: List[str]) -> List[Contender]:
    if torch is None:
        return []
    out = []
    torch_grads = [torch.from_numpy(g) for g in grads]
    for name, extra in TORCH_VARIANTS:
        try:
            params = [torch.nn.Parameter(torch.from_numpy(p.copy())) for p in p0]
            for param, g in zip(params, torch_grads):
                param.grad = g
            opt = getattr(torch.optim, spec.torch_name)(params, **spec.torch_kwargs, **extra)
            opt.step()
        except Exception as e:  # noqa: BLE001 - e.g. a torch without fused CPU kernels
            notes.append(f"{name} skipped for {spec.title}: {type(e).__name__}: {e}")
            continue
        out.append(Contender(name, repeat_call(opt.step), [opt, params]))
    return out


# ------------------------------------------------------------------- measurement


@dataclass
class Row:
    time_ns: float
    gbps: float
    pct_ceiling: float   # median over rounds of t_ceiling / t, in percent
    pct_spread: float    # half the interquartile range of that ratio, in percentage points
    rust_speedup: float  # median over rounds of t / t_rustoptim


@dataclass
class Table:
    spec: OptimizerSpec
    workload: Workload
    rounds: int
    rows: Dict[int, Dict[str, Row]]                       # threads -> contender -> row
    ceiling_range: Dict[int, Tuple[float, float]]          # threads -> (min, max) GB/s over rounds


def set_threads(n: int) -> None:
    rustoptim.set_num_threads(n)
    if torch is not None:
        torch.set_num_threads(n)


def measure(spec, workload, contenders, threads, rounds, target_ns) -> Table:
    useful_bytes = spec.arrays_touched * workload.itemsize * workload.elements
    rows: Dict[int, Dict[str, Row]] = {}
    ranges: Dict[int, Tuple[float, float]] = {}
    runs = {c.name: c.run for c in contenders}
    for n in threads:
        set_threads(n)
        samples: Samples = interleaved(runs, rounds, target_ns)
        rows[n] = {}
        for name in runs:
            q1, _, q3 = samples.ratio_quartiles("ceiling", name)  # t_ceiling / t: fraction of ceiling speed
            rows[n][name] = Row(
                time_ns=samples.median(name),
                gbps=useful_bytes / samples.median(name),
                pct_ceiling=100.0 / samples.ratio(name, "ceiling"),
                pct_spread=100.0 * (q3 - q1) / 2,
                rust_speedup=samples.ratio(name, "rustoptim"),
            )
        ceiling = [useful_bytes / t for t in samples.values("ceiling")]
        ranges[n] = (min(ceiling), max(ceiling))
    return Table(spec, workload, rounds, rows, ranges)


# ----------------------------------------------------------------------- output


def fmt_bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n:.0f} B"


def fmt_time(ns: float) -> str:
    if ns < 1e3:
        return f"{ns:.0f} ns"
    if ns < 1e6:
        return f"{ns / 1e3:.2f} us"
    if ns < 1e9:
        return f"{ns / 1e6:.2f} ms"
    return f"{ns / 1e9:.2f} s"


def render(headers: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool, align: Optional[str] = None) -> str:
    """A table as markdown or as aligned text. ``align``: one of 'l'/'r' per column."""
    align = align or "l" + "r" * (len(headers) - 1)
    if markdown:
        lines = ["| " + " | ".join(headers) + " |"]
        lines.append("|" + "|".join(":---" if a == "l" else "---:" for a in align) + "|")
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells):
        return "  ".join(c.ljust(w) if a == "l" else c.rjust(w) for c, w, a in zip(cells, widths, align)).rstrip()

    return "\n".join([line(headers), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


class Printer:
    def __init__(self, markdown: bool):
        self.markdown = markdown

    def heading(self, text: str, level: int = 2) -> None:
        if self.markdown:
            print(f"\n{'#' * (level + 1)} {text}\n", flush=True)
        else:
            print(f"\n{'=' * 3 if level <= 2 else '---'} {text}", flush=True)

    def text(self, text: str = "") -> None:
        print(text, flush=True)

    def table(self, headers, rows, align=None) -> None:
        print(render(headers, rows, self.markdown, align), flush=True)
        if self.markdown:
            print(flush=True)  # a following text line must not continue the table


def thread_label(n: int) -> str:
    return f"{n} thread" + ("" if n == 1 else "s")


def print_table(out: Printer, table: Table, order: Sequence[str]) -> None:
    spec, wl = table.spec, table.workload
    useful = spec.arrays_touched * wl.itemsize * wl.elements
    out.heading(f"{spec.title} · {wl.describe()}", level=3)
    ranges = "; ".join(
        f"{thread_label(n)} {lo:.1f}-{hi:.1f}" for n, (lo, hi) in table.ceiling_range.items()
    )
    out.text(
        f"{fmt_bytes(useful)} useful traffic per step ({spec.arrays_touched} x {wl.itemsize} bytes per element); "
        f"medians of {table.rounds} interleaved rounds (± half the interquartile range of the per-round ratio); "
        f"ceiling GB/s over rounds: {ranges}"
    )
    if out.markdown:
        out.text()
    headers = ["contender"]
    for n in table.rows:
        t = f"{n}T"
        headers += [f"{t} time/step", f"{t} GB/s", f"{t} % ceiling", f"{t} rustoptim speed-up"]
    rows = []
    for name in order:
        if not all(name in r for r in table.rows.values()):
            continue
        cells = [name]
        for contenders in table.rows.values():
            row = contenders[name]
            speedup = "-" if name == "rustoptim" else f"{row.rust_speedup:.2f}x"
            spread = "" if name == "ceiling" else f" ±{row.pct_spread:.0f}"
            cells += [fmt_time(row.time_ns), f"{row.gbps:.1f}", f"{row.pct_ceiling:.0f}%{spread}", speedup]
        rows.append(cells)
    out.table(headers, rows)


# ---------------------------------------------------------------------- targets


def check_targets(out: Printer, tables: Dict[Tuple[str, str], Table], threads: Sequence[int]) -> None:
    """Issue 3 item 2, evaluated on this run's tables."""
    out.heading("Targets (benchmark issue, item 2), on this run")
    have_torch = torch is not None
    opt_keys = list(dict.fromkeys(k for k, _ in tables))
    headers = ["target", "workload"] + [OPTIMIZERS[k].title for k in opt_keys]
    rows: List[List[str]] = []
    failures: List[str] = []
    total = met = 0

    def cell(opt_key, wl_key, value_of, passes, fmt) -> str:
        nonlocal total, met
        table = tables.get((opt_key, wl_key))
        if table is None:
            return "n/a"
        parts = []
        for n in threads:
            value = value_of(table.rows[n])
            if value is None:
                parts.append("n/a")
                continue
            ok = passes(value)
            total += 1
            met += ok
            if not ok:
                failures.append(f"{OPTIMIZERS[opt_key].title}, {WORKLOADS[wl_key].label}, {thread_label(n)}: {fmt(value)}")
            parts.append(f"{fmt(value)} {'ok' if ok else 'MISSED'}")
        return " / ".join(parts)

    def add(target, wl_key, value_of, passes, fmt, only=None):
        if not any((k, wl_key) in tables for k in opt_keys):
            return
        cells = [cell(k, wl_key, value_of, passes, fmt) if (only is None or k in only) else "-" for k in opt_keys]
        rows.append([target, WORKLOADS[wl_key].label] + cells)

    def speedup_over(name):
        return lambda r: r[name].rust_speedup if name in r else None

    pct = lambda r: r["rustoptim"].pct_ceiling  # noqa: E731
    time_of = lambda r: r["rustoptim"].time_ns  # noqa: E731
    for wl in LARGE:
        add(">= 95% of ceiling speed", wl, pct, lambda v: v >= 95.0, lambda v: f"{v:.0f}%")
    if have_torch:
        for wl in LARGE:
            add(">= 1.0x torch fused", wl, speedup_over("torch fused"), lambda v: v >= 1.0, lambda v: f"{v:.2f}x")
            add(">= 5x torch default", wl, speedup_over("torch default"), lambda v: v >= 5.0, lambda v: f"{v:.1f}x",
                only=("adam", "adamw"))
        add(">= 1.5x torch fused", "1e6", speedup_over("torch fused"), lambda v: v >= 1.5, lambda v: f"{v:.2f}x")
        add(">= 10x torch fused", "1000x1000", speedup_over("torch fused"), lambda v: v >= 10.0, lambda v: f"{v:.1f}x")
    else:
        # Without torch, the issue's own side-by-side measurements give the
        # equivalent bound relative to the ceiling: torch fused took 1.86x the
        # ceiling at 1e6 and 28-33x at 1000 x 1000.
        add(">= 1.5x torch fused (proxy: time <= 1.24x ceiling, i.e. >= 81% of ceiling)", "1e6", pct,
            lambda v: v >= 100 * 1.5 / 1.86, lambda v: f"{v:.0f}%")
        # At 1000 x 1000 the kernel ran one parallel region over all
        # elements, so the matching reference is the ceiling on one flat tensor.
        add(f">= 10x torch fused (proxy: time <= 2.8x '{FLAT_CEILING}', i.e. >= 36% of its speed)", "1000x1000",
            lambda r: 100 * r[FLAT_CEILING].rust_speedup if FLAT_CEILING in r else None,
            lambda v: v >= 100 * 10 / 28, lambda v: f"{v:.0f}%")
    add("whole step() < 3 us", "10", time_of, lambda v: v < 3000.0, lambda v: fmt_time(v))
    out.text(f"cells: {' / '.join(thread_label(n) for n in threads)}")
    if out.markdown:
        out.text()
    out.table(headers, rows, align="ll" + "l" * len(opt_keys))
    out.text()
    out.text(f"{met} of {total} checks met.")
    if not have_torch:
        out.text(
            "torch is not importable here, so the torch-relative targets are checked through the issue's "
            "side-by-side ratios of torch fused to a native bandwidth kernel (1e6: 1.86x; 1000 x 1000: 28-33x); "
            "those ratios were taken against a C/OpenMP kernel, not this run's ceiling."
        )
    if failures:
        out.text("missed: " + "; ".join(failures))


# ---------------------------------------------------------------------- profile


def profile_small(out: Printer, opt_keys: Sequence[str], wl_keys: Sequence[str], threads: Sequence[int],
                  rounds: int, target_ns: float) -> None:
    """Where the time of a small step goes: Python bookkeeping vs the native call."""
    out.heading("Where the time goes in small steps")
    out.text(
        "step(): opt.step() with .grad set; step(grads=): opt.step(grads=[...]); native call: the "
        "rustoptim._core function step() ends in (_core.step_groups, which reads the params, their .grad and "
        "their state itself), called directly on the optimizer's param_groups, i.e. reading + validation + "
        "kernel + storing the state; empty native call: the same function with "
        "no tensors (the fixed cost of entering it); Python = step() - native call (median of the per-round differences). "
        "For 1000 x 1000, 'native, 1 tensor' is the native call on one tensor with the same 1e6 elements: "
        "the difference to 'native call' is the per-tensor cost."
    )
    for wl_key in wl_keys:
        wl = WORKLOADS[wl_key]
        flat = wl.key == "1000x1000"
        headers = ["optimizer", "threads", "step()", "step(grads=)", "native call", "empty native call"]
        if flat:
            headers.append("native, 1 tensor")
        headers += ["Python", "Python share"]
        rows = []
        profiles = []
        notes: List[str] = []
        p0, grads = make_data(wl)
        for key in opt_keys:
            spec = OPTIMIZERS[key]
            for n in threads:
                set_threads(n)
                runs, opt, problem = small_step_runs(spec, p0, grads, flat)
                if problem:
                    notes.append(problem)
                samples = interleaved(runs, rounds, target_ns)

                def median(name, samples=samples, runs=runs):
                    return fmt_time(samples.median(name)) if name in runs else "n/a"

                cells = [spec.title, str(n), median("step()"), median("step(grads=)"),
                         median("native call"), median("empty native call")]
                if flat:
                    cells.append(median("native, 1 tensor"))
                if "native call" in runs:
                    cells += [fmt_time(samples.difference("step()", "native call")),
                              f"{100 * samples.share('step()', 'native call'):.0f}%"]
                else:
                    cells += ["n/a", "n/a"]
                rows.append(cells)
            if key in ("adam", "sgd-momentum"):
                profiles.append((spec, opt))
        out.heading(f"{wl.describe()}", level=3)
        out.table(headers, rows)
        for note in dict.fromkeys(notes):
            out.text(f"note: {note}")
        for spec, opt in profiles:
            print_cprofile(out, spec, wl, opt)
        del p0, grads
        gc.collect()


def small_step_runs(spec: OptimizerSpec, p0, grads, flat: bool):
    params = []
    for p, g in zip(p0, grads):
        param = rustoptim.Parameter(p.copy())
        param.grad = g
        params.append(param)
    opt = spec.rust(params, **spec.rust_kwargs)
    for _ in range(3):
        opt.step()
    glist = list(grads)
    rule = opt._rule

    def native():
        _core.step_groups(rule, opt.param_groups, opt.state, opt.defaults)

    def empty():
        _core.step_groups(rule, [], opt.state, opt.defaults)

    # The same elements as one tensor: per-tensor cost excluded.
    flat_param = rustoptim.Parameter(np.concatenate([p.data.reshape(-1) for p in params]))
    flat_opt = spec.rust([flat_param], **spec.rust_kwargs)
    flat_param.grad = np.concatenate([g.reshape(-1) for g in glist])
    flat_opt.step()

    def native_flat():
        _core.step_groups(rule, flat_opt.param_groups, flat_opt.state, flat_opt.defaults)

    step = opt.step
    runs = {
        "step()": repeat_call(step),
        "step(grads=)": repeat_call(lambda: step(grads=glist)),
    }
    native_runs = {"native call": native, "empty native call": empty}
    if flat:
        native_runs["native, 1 tensor"] = native_flat
    try:
        for call in native_runs.values():
            call()
    except Exception as e:  # noqa: BLE001 - the private core API changed under the benchmark
        return runs, opt, f"direct native calls skipped for {spec.title}: {type(e).__name__}: {e}"
    runs.update((name, repeat_call(call)) for name, call in native_runs.items())
    return runs, opt, None


def print_cprofile(out: Printer, spec: OptimizerSpec, wl: Workload, opt) -> None:
    calls = 20000 if wl.elements < 1000 else 200
    profiler = cProfile.Profile()
    step = opt.step
    profiler.enable()
    for _ in range(calls):
        step()
    profiler.disable()
    stats = pstats.Stats(profiler)
    entries = []
    total = 0.0
    for (filename, line, name), (_, nc, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        total += tottime
        where = name if filename == "~" else f"{Path(filename).name}:{line} {name}"
        entries.append((tottime, nc, where))
    entries.sort(reverse=True)
    out.text()
    out.text(f"cProfile of {calls} x {spec.title} step() ({wl.label}), own time per function "
             f"(the profiler inflates Python calls; read the shares, not the times):")
    if out.markdown:
        out.text()
    rows = [[where, f"{nc // calls}", f"{tottime / calls * 1e6:.2f} us", f"{100 * tottime / total:.0f}%"]
            for tottime, nc, where in entries[:8]]
    out.table(["function", "calls/step", "own time/step", "share"], rows)


# ------------------------------------------------------------------------ checks


def check_correctness(out: Printer, opt_keys: Sequence[str]) -> None:
    """rustoptim, the NumPy contender (and torch) must compute the same update."""
    shapes = ((1000,), (70000,), (3, 5))  # 70000 > one NumPy block: exercises the blocking
    rng = np.random.default_rng(1)
    lines = []
    for key in opt_keys:
        spec = OPTIMIZERS[key]
        p0 = [rng.standard_normal(s).astype(np.float32) for s in shapes]
        gs = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(3)]
        hyper = numpy_hyperparameters(spec)
        rust = [p.copy() for p in p0]
        ref = [p.copy() for p in p0]
        opt = spec.rust(rust, **spec.rust_kwargs)
        grads = [g.copy() for g in gs[0]]
        np_opt = numpy_optimizer(spec, ref, grads, hyper)
        for step_grads in gs:
            opt.step(grads=step_grads)
            for g, new in zip(grads, step_grads):
                g[...] = new
            if np_opt is not None:
                np_opt.step()
        if np_opt is not None:
            diff = max(float(np.max(np.abs(a - b))) for a, b in zip(rust, ref))
            ok = all(np.allclose(a, b, rtol=1e-5, atol=1e-6) for a, b in zip(rust, ref))
            line = f"{spec.title}: rustoptim vs numpy max |diff| {diff:.1e} after 3 steps"
        else:
            ok, line = True, f"{spec.title}: no numpy contender"
        if torch is not None:
            tp = [torch.nn.Parameter(torch.from_numpy(p.copy())) for p in p0]
            topt = getattr(torch.optim, spec.torch_name)(tp, **spec.torch_kwargs)
            for step_grads in gs:
                for param, g in zip(tp, step_grads):
                    param.grad = torch.from_numpy(g)
                topt.step()
            tdiff = max(float(np.max(np.abs(a - t.detach().numpy()))) for a, t in zip(rust, tp))
            ok = ok and all(np.allclose(a, t.detach().numpy(), rtol=1e-5, atol=1e-6) for a, t in zip(rust, tp))
            line += f", vs torch {tdiff:.1e}"
        lines.append(line + ("" if ok else "  <-- MISMATCH: the timings below compare different updates"))
    out.text(("- " if out.markdown else "") + "correctness: " + "; ".join(lines))


# ------------------------------------------------------------------------ header


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cache_sizes() -> str:
    sizes = {}
    base = Path("/sys/devices/system/cpu/cpu0/cache")
    try:
        for index in sorted(base.glob("index*")):
            level = (index / "level").read_text().strip()
            kind = (index / "type").read_text().strip()
            if kind == "Instruction":
                continue
            sizes[f"L{level}{'d' if kind == 'Data' else ''}"] = (index / "size").read_text().strip()
    except OSError:
        return ""
    return ", ".join(f"{k} {v}" for k, v in sizes.items())


def memory_total() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return f"{int(line.split()[1]) / (1 << 20):.1f} GiB RAM"
    except OSError:
        pass
    return ""


def git_revision() -> str:
    repo = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--", "src", "python", "Cargo.toml"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
    if not rev:
        return ""
    return f"git {rev}" + (" + uncommitted changes in src/ or python/" if dirty else "")


def load_average() -> str:
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except (AttributeError, OSError):
        return "?"


def print_header(out: Printer, args, threads: Sequence[int]) -> None:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out.heading(f"rustoptim step benchmark, {now}", level=1)
    rev = git_revision()
    machine = ", ".join(x for x in [cpu_model(), f"{os.cpu_count()} cores", cache_sizes(), memory_total()] if x)
    if torch is not None:
        torch_version = f"torch {torch.__version__}"
    else:
        torch_version = f"torch not importable ({TORCH_MISSING}): torch columns skipped"
    load = load_average()
    items = [
        f"machine: {machine}",
        f"SIMD level: {rustoptim.get_simd_level()} (available: {', '.join(rustoptim.simd_levels())})",
        f"rustoptim threads: default {DEFAULT_THREADS}; measured with {', '.join(map(str, threads))}",
        f"versions: Python {platform.python_version()}, NumPy {np.__version__}, rustoptim "
        f"{getattr(rustoptim, '__version__', '?')}{f' ({rev})' if rev else ''}, {torch_version}",
        f"load average at start (1, 5, 15 min): {load}",
        f"mode: {'quick' if args.quick else 'full'}; sample >= {args.sample_ms:g} ms "
        f"({'process CPU time' if args.clock == 'cpu' else 'wall clock'}), one warm-up round, "
        "rounds as listed per table",
        "note: on this VM the memory bandwidth jumps between two regimes every few tens of seconds (see the "
        "ceiling's GB/s range under each table), so absolute times and GB/s are not comparable across tables or runs. "
        "Only the ratios are meaningful: contenders are measured interleaved (A B C, B C A, ...) and every "
        "ratio is the median over rounds of the ratio within one round.",
    ]
    for item in items:
        out.text(("- " if out.markdown else "") + item)


# -------------------------------------------------------------------------- main


DEFAULT_THREADS = rustoptim.get_num_threads()


def parse_list(text: str, choices: Sequence[str], what: str) -> List[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    bad = [x for x in items if x not in choices]
    if bad:
        raise SystemExit(f"unknown {what}: {', '.join(bad)} (choose from {', '.join(choices)})")
    return items


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="fewer rounds, shorter samples, and no 1e8 workload (about 1-2 minutes)")
    parser.add_argument("--optimizers", default=",".join(OPTIMIZERS),
                        help=f"comma-separated subset of {','.join(OPTIMIZERS)}")
    parser.add_argument("--workloads", default=None,
                        help=f"comma-separated subset of {','.join(WORKLOADS)} "
                        f"(default: all; --quick: {','.join(QUICK_WORKLOADS)})")
    parser.add_argument("--threads", default=None,
                        help=f"comma-separated thread counts (default: 1,{os.cpu_count()})")
    parser.add_argument("--rounds", type=int, default=None, help="rounds per table (default: per workload)")
    parser.add_argument("--sample-ms", type=float, default=None, help="minimum duration of one sample (default 20, quick 5)")
    parser.add_argument("--markdown", action="store_true", help="print markdown (for benches/README.md)")
    parser.add_argument("--no-profile", action="store_true", help="skip the small-step breakdown")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="time samples by wall clock (default) or by the process's CPU time; use cpu with "
                        "--threads 1 on a machine with more runnable processes than cores, where wall time "
                        "mostly measures the scheduler (CPU time still includes memory stalls)")
    args = parser.parse_args(argv)
    if args.clock == "cpu":
        _timing._now_ns = time.process_time_ns

    opt_keys = parse_list(args.optimizers, list(OPTIMIZERS), "optimizer")
    wl_default = QUICK_WORKLOADS if args.quick else list(WORKLOADS)
    wl_keys = parse_list(args.workloads, list(WORKLOADS), "workload") if args.workloads else wl_default
    if args.threads:
        threads = [int(x) for x in args.threads.split(",") if x.strip()]
        if any(n < 1 for n in threads):
            raise SystemExit("thread counts must be at least 1")
    else:
        threads = list(dict.fromkeys([1, os.cpu_count() or 1]))
    if args.sample_ms is None:
        args.sample_ms = 5.0 if args.quick else 20.0
    target_ns = args.sample_ms * 1e6

    started = time.perf_counter()
    out = Printer(args.markdown)
    print_header(out, args, threads)
    check_correctness(out, opt_keys)

    order = ["ceiling", FLAT_CEILING, "rustoptim", "numpy"] + [name for name, _ in TORCH_VARIANTS]
    tables: Dict[Tuple[str, str], Table] = {}
    notes: List[str] = []
    for wl_key in wl_keys:
        wl = WORKLOADS[wl_key]
        rounds = args.rounds or (wl.quick_rounds if args.quick else wl.rounds)
        out.heading(wl.describe())
        p0, grads = make_data(wl)
        for key in opt_keys:
            spec = OPTIMIZERS[key]
            hyper = numpy_hyperparameters(spec)
            contenders = [
                ceiling_contender(spec, p0, grads),
                *([ceiling_contender(spec, p0, grads, flat=True)] if wl.flat_ceiling else []),
                rust_contender(spec, p0, grads),
                *numpy_contenders(spec, p0, grads, hyper),
                *torch_contenders(spec, p0, grads, notes),
            ]
            table = measure(spec, wl, contenders, threads, rounds, target_ns)
            tables[(key, wl_key)] = table
            print_table(out, table, order)
            for note in notes:
                out.text(f"note: {note}")
            notes.clear()
            del contenders
            gc.collect()
        del p0, grads
        gc.collect()
    set_threads(DEFAULT_THREADS)

    check_targets(out, tables, threads)

    small = [k for k in ("10", "1000x1000") if k in wl_keys]
    if small and not args.no_profile:
        profile_small(out, opt_keys, small, threads, rounds=7 if args.quick else 11, target_ns=target_ns)
        set_threads(DEFAULT_THREADS)
    out.text()
    out.text(f"run took {time.perf_counter() - started:.0f} s; load average at end (1, 5, 15 min): {load_average()}")


if __name__ == "__main__":
    main()
