"""Data-parallel training equals single-process training, bit for bit (run under mpiexec).

    mpiexec -n N python -m mpi4py tests/mpi/check_training.py [--save CHECKPOINT]

Every rank trains the model of ``_common.py`` on its share of each batch and
also runs the single-process reference on the averaged gradients; after every
step the params must have the same bits. Covered: allreduce_grads with a full
optimizer on each rank (default and tiny buckets, blocking and overlapped),
ZeroRedundancyOptimizer averaging the gradients itself or taking averaged
ones, a scheduler on the wrapper, clipping with the global norm, the
consolidated state dict against the reference's, and the errors that every
rank must raise together. With ``--save``, a 3-step ZeRO run writes a
checkpoint for check_resume.py. Exits non-zero (the whole job aborts) on the
first failure.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from mpi4py import MPI  # noqa: E402

import rustoptim  # noqa: E402
from _common import (  # noqa: E402
    assert_same_params,
    assert_same_state_dict,
    expect_distributed_error,
    groups_of,
    log,
    make_params,
    mean_grads,
    rank_grads,
    same_bits,
    skipped_at,
)
from rustoptim import distributed as dist  # noqa: E402
from rustoptim.lr_scheduler import ExponentialLR  # noqa: E402

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
STEPS = 4

CONFIGS = [
    ("Adam", rustoptim.Adam, dict(lr=0.01, weight_decay=0.01)),
    ("SGD", rustoptim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    ("RAdam", rustoptim.RAdam, dict(lr=0.01)),
    ("ASGD", rustoptim.ASGD, dict(lr=0.05, t0=1)),  # t0=1: the average 'ax' starts moving at step 3
]


def awkward_layouts(grads):
    """Give some gradients other layouts than their params: F order, a strided view."""
    grads = list(grads)
    grads[0] = np.asfortranarray(grads[0])
    strided = np.zeros(2 * grads[5].size, grads[5].dtype)[::2]
    strided[...] = grads[5]
    grads[5] = strided
    return grads


def state_bytes(state) -> int:
    return sum(v.nbytes for entry in state.values() for v in entry.values() if isinstance(v, np.ndarray))


def train_ddp(name, cls, kwargs, bucket_mb, overlap):
    params, ref_params = make_params(), make_params()
    opt, ref = cls(groups_of(params), **kwargs), cls(groups_of(ref_params), **kwargs)
    for step in range(STEPS):
        skip = skipped_at(step)
        grads = awkward_layouts(rank_grads(params, step, rank, size, skip))
        dist.allreduce_grads(grads, bucket_mb=bucket_mb, overlap=overlap)
        want = mean_grads(ref_params, step, size, skip)
        for k, (g, w) in enumerate(zip(grads, want)):
            if (g is None) != (w is None) or (g is not None and not same_bits(g, w)):
                raise AssertionError(f"{name}: averaged grad {k} at step {step} differs from the exact mean")
        opt.step(grads=grads)
        ref.step(grads=want)
        assert_same_params(params, ref_params, f"{name} allreduce_grads(bucket_mb={bucket_mb}, overlap={overlap}) step {step}")


def train_zero(name, cls, kwargs, average_grads, bucket_mb, with_scheduler=False):
    params, ref_params = make_params(), make_params()
    opt = dist.ZeroRedundancyOptimizer(
        groups_of(params), cls, average_grads=average_grads, bucket_mb=bucket_mb, **kwargs
    )
    ref = cls(groups_of(ref_params), **kwargs)
    schedulers = (ExponentialLR(opt, 0.8), ExponentialLR(ref, 0.8)) if with_scheduler else ()
    where = f"{name} ZeRO(average_grads={average_grads}, bucket_mb={bucket_mb}, scheduler={with_scheduler})"
    for step in range(STEPS):
        skip = skipped_at(step)
        grads = rank_grads(params, step, rank, size, skip)
        if not average_grads:
            dist.allreduce_grads(grads)
        opt.step(grads=grads)
        ref.step(grads=mean_grads(ref_params, step, size, skip))
        for s in schedulers:
            s.step()
        assert_same_params(params, ref_params, f"{where} step {step}")
        owned = {p for p in opt.params if opt.owner(p) == rank}
        if not set(opt.state) <= owned:
            raise AssertionError(f"{where}: rank {rank} keeps state of params it does not own")
        if [g["lr"] for g in opt.param_groups] != [g["lr"] for g in ref.param_groups]:
            raise AssertionError(f"{where}: the wrapper's lrs differ from the reference's")
    # Every state entry lives on exactly one rank: the shards add up to the whole state.
    total = comm.allreduce(state_bytes(opt.state))
    if total != state_bytes(ref.state):
        raise AssertionError(f"{where}: the ranks hold {total} state bytes, the reference {state_bytes(ref.state)}")
    for to in sorted({0, size - 1}):
        opt.consolidate_state_dict(to=to)
        if rank == to:
            assert_same_state_dict(opt.state_dict(), ref.state_dict(), f"{where} consolidated on rank {to}")
        else:
            try:
                opt.state_dict()
            except RuntimeError as e:
                assert "consolidate_state_dict" in str(e)
            else:
                raise AssertionError("state_dict() on a rank that did not gather the state must raise")
    return opt, ref, params, ref_params


def train_zero_clipped(name, cls, kwargs, max_norm):
    """reduce_grads, clip_grad_norm_ (global norm), step: against clipping on one rank."""
    params, ref_params = make_params(), make_params()
    opt = dist.ZeroRedundancyOptimizer(groups_of(params), cls, **kwargs)
    ref = cls(groups_of(ref_params), **kwargs)
    for step in range(STEPS):
        opt.reduce_grads(rank_grads(params, step, rank, size))
        total = opt.clip_grad_norm_(max_norm)
        opt.step()
        # The global clip must equal rustoptim.clip_grad_norm_ on one rank (torch's
        # per-gradient norms, each in its dtype), to rounding.
        want = [g.copy() for g in mean_grads(ref_params, step, size)]
        want_total = rustoptim.clip_grad_norm_(want, max_norm)
        ref.step(grads=want)
        if not np.isclose(total, want_total, rtol=1e-6, atol=0):
            raise AssertionError(f"{name} clipped: total norm {total} != {want_total}")
        for k, (p, q) in enumerate(zip(params, ref_params)):
            tol = 1e-5 if p.dtype == np.float32 else 1e-12
            if not np.allclose(p, q, rtol=tol, atol=tol):
                raise AssertionError(f"{name} clipped step {step}: param {k} differs by {np.max(np.abs(p - q), initial=0)}")


def add_group_midway():
    """add_param_group after two steps: old params keep their ranks and state, the new group is
    partitioned after them, and training still equals the reference."""
    params, ref_params = make_params(), make_params()
    opt = dist.ZeroRedundancyOptimizer(groups_of(params)[:2], rustoptim.SGD, lr=0.1, momentum=0.9)
    ref = rustoptim.SGD(groups_of(ref_params)[:2], lr=0.1, momentum=0.9)
    owners = [opt.owner(p) for p in opt.params]
    for step in range(4):
        if step == 2:
            opt.add_param_group(groups_of(params)[2])
            ref.add_param_group(groups_of(ref_params)[2])
            assert [opt.owner(p) for p in opt.params[:7]] == owners, "add_param_group moved old params"
        count = 7 if step < 2 else 8
        opt.step(grads=rank_grads(params[:count], step, rank, size))
        ref.step(grads=mean_grads(ref_params[:count], step, size))
        assert_same_params(params, ref_params, f"add_param_group, step {step}")
    bad = {"params": [np.zeros(3, np.float32)], "lr": -1.0 if rank == 0 else 0.1}
    expect_distributed_error(comm, lambda: opt.add_param_group(bad), "failed on rank 0", "Invalid learning rate")
    assert len(opt.param_groups) == len(opt.optim.param_groups) == 3, "a failed add_param_group left a group"


def flat_streams():
    """ZeRO's flat view of several arrays: any element range reads and writes the right elements,
    whatever the layouts (C, Fortran, strided, 0-d, empty)."""
    from rustoptim.distributed.zero import _Stream

    rng = np.random.default_rng(rank)
    for _ in range(20):
        arrays = [np.asfortranarray(rng.standard_normal((3, 4))), rng.standard_normal(7), np.zeros((0, 2)),
                  rng.standard_normal(12)[::3], np.array(rng.standard_normal()), rng.standard_normal((2, 3))]
        reference = np.concatenate([a.reshape(-1) for a in arrays])
        stream = _Stream(arrays)
        start, stop = sorted(rng.integers(0, reference.size + 1, 2))
        out = np.full(stop - start, np.nan)
        stream.read(start, stop, out)
        assert np.array_equal(out, reference[start:stop]), "_Stream.read"
        new = rng.standard_normal(stop - start)
        stream.write(start, stop, new)
        stream.finish()
        reference[start:stop] = new
        assert np.array_equal(np.concatenate([a.reshape(-1) for a in arrays]), reference), "_Stream.write"


def partition_has_empty_groups():
    """The test model gives some rank no param of some group (the case torch handles with empty groups)."""
    opt = dist.ZeroRedundancyOptimizer(groups_of(make_params()), rustoptim.SGD, lr=0.1)
    empty = comm.allreduce(sum(1 for g in opt.optim.param_groups if not g["params"]))
    assert len(opt.optim.param_groups) == 3 and empty > 0, "no rank has an empty group"
    owners = [opt.owner(p) for p in opt.params]
    assert comm.allgather(owners) == [owners] * size, "the ranks disagree on the partition"


def collective_failures():
    """Errors found on one rank are raised on every rank, and nothing changed anywhere."""
    last = size - 1
    params = make_params()
    grads = rank_grads(params, 0, rank, size)
    before = [g.copy() for g in grads]
    bad = list(grads)
    if rank == last:
        bad[1] = bad[1].astype(np.int64)
    expect_distributed_error(comm, lambda: dist.allreduce_grads(bad), f"failed on rank {last}", "DTypeError", "grads[1]")
    assert all(same_bits(g, b) for g, b in zip(grads, before)), "a failed allreduce_grads changed a gradient"
    extra = grads + [np.zeros(3)] if rank == last else grads
    expect_distributed_error(comm, lambda: dist.allreduce_grads(extra), "different arrays", f"rank {last} has 9 entries")
    read_only = list(grads)
    if rank == 0:
        read_only[0] = grads[0].copy()
        read_only[0].flags.writeable = False
    expect_distributed_error(comm, lambda: dist.allreduce_grads(read_only), "failed on rank 0", "read-only")
    aliased = list(grads)
    if rank == last:
        aliased[6] = aliased[5][:10]
    expect_distributed_error(comm, lambda: dist.allreduce_grads(aliased), "AliasError", "grads[5] and grads[6]")

    # ZeRO: a bad gradient on the last rank; params and state unchanged on every rank.
    opt = dist.ZeroRedundancyOptimizer(groups_of(params), rustoptim.Adam, lr=0.01)
    ref_params = make_params()
    ref = rustoptim.Adam(groups_of(ref_params), lr=0.01)
    opt.step(grads=rank_grads(params, 0, rank, size))
    ref.step(grads=mean_grads(ref_params, 0, size))
    saved_params = [p.copy() for p in params]
    saved_state = {p: {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in e.items()} for p, e in opt.state.items()}
    bad = rank_grads(params, 1, rank, size)
    if rank == last:
        bad[4] = np.zeros((3, 4), np.float32)
    expect_distributed_error(comm, lambda: opt.step(grads=bad), f"failed on rank {last}", "ShapeError", "param 4")
    missing = rank_grads(params, 1, rank, size, skip=2 if rank == 0 else None)
    expect_distributed_error(comm, lambda: opt.step(grads=missing), "different arrays")
    opt.param_groups[2]["lr"] = -1.0  # group 2 has one param: most ranks own nothing of it
    expect_distributed_error(comm, lambda: opt.step(grads=rank_grads(params, 1, rank, size)), "Invalid learning rate")
    opt.param_groups[2]["lr"] = 0.01
    assert_same_params(params, saved_params, "after failed ZeRO steps")
    for p, entry in saved_state.items():
        for k, v in entry.items():
            assert same_bits(np.asarray(opt.state[p][k]), np.asarray(v)), "a failed step changed the state"
    opt.step(grads=rank_grads(params, 1, rank, size))
    ref.step(grads=mean_grads(ref_params, 1, size))
    assert_same_params(params, ref_params, "the step after failed ones")

    # load_state_dict: a bad entry that only its owner checks fails on every rank, and no rank loads.
    opt.consolidate_state_dict(to=0)
    good = comm.bcast(opt.state_dict() if rank == 0 else None, root=0)
    victim = next(i for i, p in enumerate(opt.params) if opt.owner(p) == last and i in good["state"])
    corrupt = comm.bcast(good if rank == 0 else None, root=0)
    corrupt["state"][victim]["exp_avg"] = np.zeros((7,), corrupt["state"][victim]["exp_avg"].dtype)
    state_object, groups_object = opt.optim.state, opt.optim.param_groups
    expect_distributed_error(comm, lambda: opt.load_state_dict(corrupt), f"failed on rank {last}", "StateDictError", "exp_avg")
    assert opt.optim.state is state_object and opt.optim.param_groups is groups_object, "a failed load changed a rank"
    opt.load_state_dict(good)
    opt.consolidate_state_dict(to=0)
    if rank == 0:
        assert_same_state_dict(opt.state_dict(), good, "reloaded")

    # A checkpoint that cannot be written: every rank raises, no file.
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "no-such-dir", "ckpt.rop")
    expect_distributed_error(comm, lambda: dist.save({"x": 1}, path), "failed on rank 0", "save(")
    assert not os.path.exists(os.path.dirname(path))

    # Ranks constructing with different params.
    mismatched = make_params()
    if rank == last:
        mismatched[1] = np.zeros(6)
    expect_distributed_error(
        comm, lambda: dist.ZeroRedundancyOptimizer(groups_of(mismatched), rustoptim.SGD, lr=0.1), "different arrays"
    )


def write_checkpoint(path):
    """3 ZeRO Adam steps with a scheduler on this many ranks, then a checkpoint from rank 0."""
    params = make_params()
    opt = dist.ZeroRedundancyOptimizer(groups_of(params), rustoptim.Adam, lr=0.01, weight_decay=0.01)
    sched = ExponentialLR(opt, 0.8)
    for step in range(3):
        opt.step(grads=rank_grads(params, step, rank, size, skipped_at(step)))
        sched.step()
    opt.consolidate_state_dict(to=0)
    dist.save(lambda: {"opt": opt.state_dict(), "sched": sched.state_dict(), "params": params, "ranks": size}, path)
    assert os.path.exists(path), f"rank {rank}: save() returned before the file was in place"


def main():
    for name, cls, kwargs in CONFIGS:
        train_ddp(name, cls, kwargs, bucket_mb=25, overlap=False)
        train_zero(name, cls, kwargs, average_grads=True, bucket_mb=25)
        log(comm, f"ok {name}: allreduce_grads and ZeRO equal the reference on {size} ranks")
    adam = CONFIGS[0]
    tiny = 0.001  # 1 KiB buckets: many buckets, arrays split across them
    train_ddp(*adam, bucket_mb=tiny, overlap=False)
    train_ddp(*adam, bucket_mb=tiny, overlap=True)
    train_zero(*adam, average_grads=True, bucket_mb=tiny, with_scheduler=True)
    train_zero(*adam, average_grads=False, bucket_mb=tiny)
    train_zero(*CONFIGS[3], average_grads=False, bucket_mb=25, with_scheduler=True)
    log(comm, "ok tiny buckets, overlap, average_grads=False, schedulers")
    train_zero_clipped("Adam", rustoptim.Adam, dict(lr=0.01), max_norm=0.5)
    train_zero_clipped("SGD", rustoptim.SGD, dict(lr=0.1, momentum=0.9), max_norm=0.5)
    log(comm, "ok clipping with the global norm")
    add_group_midway()
    flat_streams()
    partition_has_empty_groups()
    collective_failures()
    log(comm, "ok errors on one rank raise DistributedError on every rank, nothing changed")
    if "--save" in sys.argv:
        write_checkpoint(sys.argv[sys.argv.index("--save") + 1])
        log(comm, f"ok checkpoint written by rank 0 of {size}")


if __name__ == "__main__":
    main()
