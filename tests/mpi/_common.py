"""A small model and its single-process reference, shared by the scripts that mpiexec runs.

The model is a set of params of every kind the optimizers accept (float32 and
float64; C order, Fortran order, a strided view, 0-d, empty; three param
groups, one with a single small param so that most ranks own nothing of it).
The loss of sample i is ``0.5 · c_i · ‖P − T_i‖²`` per param P, so a rank's
gradient is the mean over its samples of ``c_i (P − T_i)``; it depends on the
params, so any divergence between ranks would grow.

Gradients are rounded to multiples of 2**-12 in [-2**8, 2**8]: a sum of up to
8 of them is exact in float32 and float64 whatever the order, so the sum MPI
computes (in an order it chooses) has the same bits as the reference's, and
data-parallel training must equal the single-process reference bit for bit.
"""

from __future__ import annotations

import sys
from typing import Callable

import numpy as np

BATCH = 12  # samples per step, split across the ranks
QUANTUM = 2.0**-12
LIMIT = 2.0**8


def make_params(seed: int = 0) -> list[np.ndarray]:
    """Fresh params: the same values on every rank."""
    rng = np.random.default_rng(seed)
    w1 = rng.standard_normal((6, 5))                                    # float64, C order
    b1 = rng.standard_normal(5)                                         # float64
    s = np.array(rng.standard_normal())                                 # float64, 0-d
    e = np.zeros((0, 3), np.float32)                                    # empty
    w2 = np.asfortranarray(rng.standard_normal((4, 3)).astype(np.float32))   # Fortran order
    big = rng.standard_normal(700).astype(np.float32)                   # > a tiny bucket
    v = rng.standard_normal(20).astype(np.float32)[::2]                 # strided view
    t = rng.standard_normal(3).astype(np.float32)                       # alone in group 2
    return [w1, b1, s, e, w2, big, v, t]


def groups_of(params: list[np.ndarray]) -> list:
    w1, b1, s, e, w2, big, v, t = params
    return [
        {"params": [w1, b1, s, e]},
        {"params": [w2, big, v], "lr": 0.05},
        {"params": [t], "weight_decay": 0.1},
    ]


def quantize(x: np.ndarray) -> np.ndarray:
    return np.asarray(np.clip(np.round(x / QUANTUM) * QUANTUM, -LIMIT, LIMIT), dtype=x.dtype)


def rank_grads(params: list[np.ndarray], step: int, rank: int, size: int, skip: int | None = None) -> list[np.ndarray | None]:
    """The gradients that rank ``rank`` of ``size`` computes at ``step`` (its share of the batch)."""
    lo, hi = rank * BATCH // size, (rank + 1) * BATCH // size
    grads: list[np.ndarray | None] = []
    for k, p in enumerate(params):
        rng = np.random.default_rng([step, k])
        targets = rng.standard_normal((BATCH,) + p.shape)[lo:hi]
        weights = rng.uniform(0.5, 2.0, BATCH)[lo:hi].reshape((-1,) + (1,) * p.ndim)
        g = (weights * (p.astype(np.float64) - targets)).mean(axis=0) if hi > lo else np.zeros(p.shape)
        grads.append(None if k == skip else quantize(np.asarray(g, dtype=p.dtype)))
    return grads


def mean_grads(params: list[np.ndarray], step: int, size: int, skip: int | None = None) -> list[np.ndarray | None]:
    """The average over ``size`` ranks of their gradients: what allreduce_grads must give (exactly)."""
    per_rank = [rank_grads(params, step, r, size, skip) for r in range(size)]
    out: list[np.ndarray | None] = []
    for k in range(len(params)):
        if per_rank[0][k] is None:
            out.append(None)
            continue
        total = per_rank[0][k].copy()
        for r in range(1, size):
            total += per_rank[r][k]
        out.append(np.asarray(total / size, dtype=total.dtype))
    return out


def skipped_at(step: int) -> int | None:
    """Step 2 has no gradient for b1 (on every rank): the ranks skip it together."""
    return 1 if step == 2 else None


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Same shape, dtype and bits (``tobytes`` is in C order whatever the layout)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


def assert_same_params(got: list[np.ndarray], want: list[np.ndarray], where: str) -> None:
    for k, (g, w) in enumerate(zip(got, want)):
        if not same_bits(g, w):
            raise AssertionError(f"{where}: param {k} differs from the reference: max |diff| {np.max(np.abs(g - w), initial=0)}")


def assert_same_state_dict(got: dict, want: dict, where: str) -> None:
    """Equal state dicts: same groups (hyperparameters and indices), same entries, arrays bitwise."""
    if got["param_groups"] != want["param_groups"]:
        raise AssertionError(f"{where}: param_groups differ:\n{got['param_groups']}\n{want['param_groups']}")
    if sorted(got["state"]) != sorted(want["state"]):
        raise AssertionError(f"{where}: state indices {sorted(got['state'])} != {sorted(want['state'])}")
    for i, entry in want["state"].items():
        other = got["state"][i]
        if sorted(other) != sorted(entry):
            raise AssertionError(f"{where}: state[{i}] keys {sorted(other)} != {sorted(entry)}")
        for key, value in entry.items():
            mine = other[key]
            if isinstance(value, np.ndarray):
                if not same_bits(mine, value):
                    raise AssertionError(f"{where}: state[{i}][{key!r}] differs")
            elif not (type(mine) is type(value) and mine == value):
                raise AssertionError(f"{where}: state[{i}][{key!r}] = {mine!r}, expected {value!r}")


def log(comm, message: str) -> None:
    if comm.Get_rank() == 0:
        print(message, flush=True)


def expect_distributed_error(comm, action: Callable[[], object], *needles: str) -> str:
    """``action()`` must raise DistributedError on this rank, with every needle in its message."""
    from rustoptim.distributed import DistributedError

    try:
        action()
    except DistributedError as e:
        text = str(e)
        for needle in needles:
            if needle not in text:
                raise AssertionError(f"rank {comm.Get_rank()}: {needle!r} not in the message: {text}") from e
        return text
    raise AssertionError(f"rank {comm.Get_rank()}: no DistributedError")


def on_path() -> None:
    here = __file__.rsplit("/", 1)[0]
    if here not in sys.path:
        sys.path.insert(0, here)
