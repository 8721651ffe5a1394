"""``ZeroRedundancyOptimizer``: optimizer state sharded across ranks (ZeRO stage 1).

After ``torch.distributed.optim.ZeroRedundancyOptimizer``. Each param belongs
to one rank (a greedy partition by size); each rank keeps the optimizer state
of its own params only, in a local optimizer ``.optim`` of any element-wise
rustoptim class. A step is

1. reduce-scatter: the local gradients of all ranks are summed (and divided by
   the number of ranks); each rank receives the sums of its own params only;
2. the local optimizer steps this rank's params with those gradients;
3. all-gather: every rank receives the updated params of the others.

Each rank sends and receives about (N-1)/N of the gradients in step 1 and of
the params in step 3: together, what one all-reduce of the gradients moves,
so ZeRO costs no more traffic than plain data parallelism, while the state
per rank shrinks to about 1/N. Both steps run in chunks so that the packing
buffer stays at ``bucket_mb``.
"""

from __future__ import annotations

import bisect
import copy
import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Callable

import numpy as np

from .._elementwise import ElementwiseOptimizer, _is_loss_and_grads
from ..adam import Adam
from ..errors import DTypeError, ShapeError, StateDictError
from ..optimizer import Optimizer, _typename
from ..parameter import Parameter
from . import norm as _norm
from ._consensus import abort_job, agree
from ._mpi import MPI, get_comm
from .buckets import (
    _POOL,
    MAX_BUCKET_ELEMENTS,
    bucket_elements,
    check_no_overlap,
    describe_layout,
    layout_fingerprint,
)

__all__ = ["ZeroRedundancyOptimizer"]

_MPI_TYPES = {np.dtype(np.float32): MPI.FLOAT, np.dtype(np.float64): MPI.DOUBLE}

_NOT_CONSOLIDATED = (
    "Optimizer state has not been consolidated on this rank. Please call `consolidate_state_dict(to={rank})` "
    "on all ranks beforehand if you meant to save the global state (a step, load_state_dict or "
    "add_param_group since the last consolidation discards it: it would be stale)"
)


class _Stream:
    """The elements of some arrays, one after the other in C order, as one flat range.

    Reads and writes of any sub-range go through flat views of C-contiguous
    arrays; a part of another array goes through a contiguous copy of it, made
    once and copied back by :meth:`finish` if it was written.
    """

    def __init__(self, arrays: Sequence[np.ndarray]) -> None:
        self.arrays = list(arrays)
        self.starts: list[int] = []
        total = 0
        for a in self.arrays:
            self.starts.append(total)
            total += a.size
        self.size = total
        self._flat: dict[int, np.ndarray] = {}
        self._pending_writes: dict[int, np.ndarray] = {}

    def _pieces(self, start: int, stop: int) -> Iterator[tuple[int, int, int, int]]:
        """(array index, offset in the array, offset in [start, stop), length) of each overlap."""
        i = bisect.bisect_right(self.starts, start) - 1
        while start < stop and i < len(self.arrays):
            a_start = self.starts[i]
            lo = max(start, a_start) - a_start
            hi = min(stop, a_start + self.arrays[i].size) - a_start
            if hi > lo:
                yield i, lo, a_start + lo - start, hi - lo
            i += 1
            if i < len(self.arrays) and self.starts[i] >= stop:
                break

    def _flat_view(self, i: int, for_write: bool) -> np.ndarray:
        """Array i as a flat C-order view: its own memory if C-contiguous, else a
        contiguous copy made on first use (written back by :meth:`finish` once written)."""
        a = self.arrays[i]
        if a.flags.c_contiguous:
            return a.reshape(-1)
        flat = self._flat.get(i)
        if flat is None:
            flat = self._flat[i] = np.array(a, order="C").reshape(-1)
        if for_write:
            self._pending_writes[i] = flat
        return flat

    def read(self, start: int, stop: int, out: np.ndarray) -> None:
        for i, lo, at, n in self._pieces(start, stop):
            a = self.arrays[i]
            if n == a.size and i not in self._flat:
                np.copyto(out[at : at + n].reshape(a.shape), a)
            else:
                out[at : at + n] = self._flat_view(i, for_write=False)[lo : lo + n]

    def write(self, start: int, stop: int, source: np.ndarray) -> None:
        for i, lo, at, n in self._pieces(start, stop):
            a = self.arrays[i]
            if n == a.size and i not in self._flat:
                np.copyto(a, source[at : at + n].reshape(a.shape))
            else:
                self._flat_view(i, for_write=True)[lo : lo + n] = source[at : at + n]

    def finish(self) -> None:
        for i, flat in self._pending_writes.items():
            np.copyto(self.arrays[i], flat.reshape(self.arrays[i].shape))
        self._pending_writes.clear()
        self._flat.clear()


class _Layout:
    """How one step moves one dtype: each rank's params (that have a gradient this
    step) in global order, and the chunks (equal element ranges of every rank's
    stream) that each collective call moves."""

    def __init__(self, dtype: np.dtype, per_rank: list[list[Parameter]], chunk: int) -> None:
        self.dtype = dtype
        self.per_rank = per_rank
        self.sizes = [sum(p.data.size for p in params) for params in per_rank]
        self.chunk = chunk
        longest = max(self.sizes)
        self.chunks = range(0, longest, chunk) if longest else range(0)

    def counts(self, start: int) -> list[int]:
        return [min(max(size - start, 0), self.chunk) for size in self.sizes]


class ZeroRedundancyOptimizer(Optimizer):
    """Shards an optimizer's state across the ranks of an MPI communicator (ZeRO stage 1).

    Args:
      params: params or param groups, as for any rustoptim optimizer (arrays or
        Parameters); the same shapes and dtypes on every rank, in the same
        order (start every rank from the same values, e.g. with
        :func:`~rustoptim.distributed.broadcast_params`).
      optimizer_class: the local optimizer: any element-wise rustoptim
        optimizer class (``Adam``, ``AdamW``, ``SGD``, ``RAdam``, ``ASGD``,
        ``Rprop``, ...). Not ``LBFGS``, which needs every param on one rank.
      comm: an mpi4py intracommunicator (default ``MPI.COMM_WORLD``).
      average_grads: True (default): the gradients given to :meth:`step` are this
        rank's own (e.g. of its share of the batch), and the step averages them
        across ranks with a reduce-scatter. False: they are already averaged on
        every rank (e.g. by :func:`allreduce_grads`, as torch's class expects
        after DDP), so the step uses this rank's share as it is.
      bucket_mb: the packing buffer for the reduce-scatter and the all-gather,
        in MiB; larger moves fewer messages.
      **defaults: the local optimizer's hyperparameters (``lr=1e-3``, ...).

    Attributes:
      optim: this rank's local optimizer (its ``param_groups`` hold this rank's
        params only; every group is there, possibly empty).
      param_groups: every param, with the hyperparameters; schedulers change
        these and the step passes them on to :attr:`optim`.
      state: the state of this rank's params (``optim.state``).

    The partition is torch's: within each group, params from largest to
    smallest go to the rank that holds the fewest bytes so far (lowest rank on
    ties), with the count carried across groups; a rank may own no param of
    some group, or none at all.

    Collective calls (every rank must call them, in the same order): the
    constructor, :meth:`step`, :meth:`reduce_grads`, :meth:`clip_grad_norm_`,
    :meth:`consolidate_state_dict`, :meth:`load_state_dict`,
    :meth:`add_param_group`. Each checks its inputs on every rank first; a
    failure anywhere raises :class:`~rustoptim.distributed.DistributedError` on
    every rank with nothing changed.

    Differences from torch: the gradients are averaged by the optimizer itself
    by default (``average_grads``); ``state_dict()`` after a later step,
    ``load_state_dict`` or ``add_param_group`` raises instead of returning the
    stale consolidated state; params are partitioned by bytes, not elements
    (the same for a single dtype); a param listed twice is refused.
    """

    def __init__(
        self,
        params: Iterable[Any],
        optimizer_class: type = Adam,
        comm: Any = None,
        *,
        average_grads: bool = True,
        bucket_mb: float = 25,
        **defaults: Any,
    ) -> None:
        self.comm = comm = get_comm(comm)
        self.rank = comm.Get_rank()
        self.world_size = comm.Get_size()
        self.average_grads = bool(average_grads)
        self.bucket_mb = bucket_mb
        self._initialized = False
        self._owner: dict[Parameter, int] = {}
        self._rank_bytes = [0] * self.world_size
        self._layouts: dict[tuple[bool, ...], list[_Layout]] = {}
        self._shard: dict[np.dtype, np.ndarray] = {}
        self._pending: tuple[tuple[bool, ...], list[_Layout]] | None = None
        self._consolidated: dict[int, dict[str, Any]] | None = None
        error: BaseException | None = None
        entries: list[np.ndarray | None] = []
        try:
            if not (isinstance(optimizer_class, type) and issubclass(optimizer_class, ElementwiseOptimizer)):
                raise TypeError(
                    f"optimizer_class must be an element-wise rustoptim optimizer class (Adam, SGD, ...), got "
                    f"{getattr(optimizer_class, '__name__', optimizer_class)!r}"
                    + ("; LBFGS needs every param and a closure on one rank"
                       if getattr(optimizer_class, "__name__", "") == "LBFGS" else "")
                )
            bucket_elements(bucket_mb, 8)
            Optimizer.__init__(self, params, defaults)
            check_no_overlap([p.data for p in self.params], "params")
            local_groups = [self._partition_group(group) for group in self.param_groups]
            self.optim = optimizer_class(local_groups, **defaults)
            self._sync_groups(self.optim.param_groups, self.param_groups)
            # Every param's dtype and size, a None between groups: the ranks must agree on all of it.
            for group in self.param_groups:
                entries.extend(p.data for p in group["params"])
                entries.append(None)
        except (TypeError, ValueError, KeyError) as e:
            error = e
        agree(comm, "ZeroRedundancyOptimizer()", error, layout_fingerprint(entries), lambda: describe_layout(entries))
        self._initialized = True

    # ------------------------------------------------------------- partition

    def _partition_group(self, group: dict[str, Any]) -> dict[str, Any]:
        """Assign the group's params to ranks (greedy, largest first); return this rank's local group."""
        params = group["params"]
        if len(set(params)) != len(params):
            raise ValueError("ZeroRedundancyOptimizer: a param group lists a param twice")
        for p in sorted(params, key=lambda p: p.data.nbytes, reverse=True):
            owner = min(range(self.world_size), key=self._rank_bytes.__getitem__)
            self._owner[p] = owner
            self._rank_bytes[owner] += p.data.nbytes
        local = {k: v for k, v in group.items() if k not in ("params", "param_names")}
        mine = [i for i, p in enumerate(params) if self._owner[p] == self.rank]
        local["params"] = [params[i] for i in mine]
        if "param_names" in group:
            local["params"] = [(group["param_names"][i], params[i]) for i in mine]
        return local

    def owner(self, param: Any) -> int:
        """The rank that keeps the state of ``param`` (a Parameter or one of the arrays given)."""
        for p in self._owner:
            if p is param or p.data is param:
                return self._owner[p]
        raise KeyError("not a param of this optimizer")

    @staticmethod
    def _sync_groups(source: list[dict[str, Any]], destination: list[dict[str, Any]]) -> None:
        """Copy every hyperparameter (not the params or their names) from source groups to destination groups."""
        for src, dst in zip(source, destination):
            for key, value in src.items():
                if key not in ("params", "param_names"):
                    dst[key] = value

    @property
    def state(self) -> dict[Any, dict[str, Any]]:
        """The state of this rank's params: ``optim.state``."""
        return self.optim.state if "optim" in self.__dict__ else {}

    @state.setter
    def state(self, value: Any) -> None:
        # The base class assigns an empty state in __init__; the state lives in ``optim``.
        pass

    # ------------------------------------------------------------------ groups

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a param group (collective: every rank adds the same group).

        The new params are partitioned after the existing ones, which keep
        their ranks, as in torch.
        """
        if not self._initialized:
            super().add_param_group(param_group)
            return
        groups_before = len(self.param_groups)
        owners_before, bytes_before = dict(self._owner), list(self._rank_bytes)
        error: BaseException | None = None
        try:
            super().add_param_group(param_group)
            check_no_overlap([p.data for p in self.params], "params")
            local = self._partition_group(self.param_groups[-1])
            self.optim.add_param_group(local)
            self._sync_groups(self.optim.param_groups[-1:], self.param_groups[-1:])
        except (TypeError, ValueError, KeyError) as e:
            error = e
        new = self.param_groups[-1]["params"] if len(self.param_groups) > groups_before else []
        try:
            agree(
                self.comm, "add_param_group", error, layout_fingerprint([p.data for p in new]),
                lambda: describe_layout([p.data for p in new]),
            )
        except BaseException:
            del self.param_groups[groups_before:]
            del self.optim.param_groups[groups_before:]
            self._owner, self._rank_bytes = owners_before, bytes_before
            raise
        self._layouts.clear()
        self._pending = None
        self._consolidated = None

    # -------------------------------------------------------------------- step

    def step(self, closure: Callable[[], Any] | None = None, *, grads: Sequence[Any] | None = None) -> Any:
        """One step of every rank's params; returns the closure's loss (this rank's), if any.

        Args:
          closure: optional; runs first on every rank. It may set ``.grad`` on
            the params, or return ``(loss, grads)``.
          grads: one gradient (or None) per param of :attr:`params`, in order,
            as for any rustoptim optimizer; default: the params' ``.grad``.
            With ``average_grads=True`` these are this rank's own gradients.
            Every rank must have gradients for the same params.

        A step without ``grads`` and without a closure that follows
        :meth:`reduce_grads` uses the gradients reduced there (and maybe
        clipped by :meth:`clip_grad_norm_`); ``.grad`` is then not read.
        """
        if closure is not None and not callable(closure):
            raise TypeError(f"step() got a {_typename(closure)} as its closure; pass gradients by keyword: grads=[...]")
        with self._step_lock:
            loss = None
            if closure is not None:
                loss = closure()
                if grads is None and _is_loss_and_grads(loss):
                    loss, grads = loss
            if grads is not None or closure is not None or self._pending is None:
                mask, layouts = self._reduce(grads, check_hyperparameters=True)
            else:
                agree(self.comm, "ZeroRedundancyOptimizer.step", self._hyperparameter_error())
                mask, layouts = self._pending
            self._pending = None
            self._consolidated = None
            # Past this point the ranks change their params one by one: an error here
            # cannot be undone on the others, so it ends the job.
            try:
                self.optim.step(grads=self._local_grads(mask, layouts))
                self._share_params(layouts)
            except BaseException:
                abort_job(self.comm, "ZeroRedundancyOptimizer.step failed between the reduce-scatter and the all-gather")
            self._sync_groups(self.optim.param_groups, self.param_groups)
            return loss

    def _hyperparameter_error(self) -> BaseException | None:
        """Pass the wrapper's hyperparameters to the local optimizer and check every group
        (also the groups this rank has no param of, so every rank reaches the same verdict)."""
        try:
            self._sync_groups(self.param_groups, self.optim.param_groups)
            for group in self.optim.param_groups:
                self.optim._check_group(group)
        except (TypeError, ValueError, KeyError) as e:
            return e
        return None

    def reduce_grads(self, grads: Sequence[Any] | None = None) -> None:
        """The first half of :meth:`step`: average the gradients across ranks (or, with
        ``average_grads=False``, take this rank's share of them) into this rank's shard.

        Then :meth:`clip_grad_norm_` may clip them, and ``step()`` (without
        gradients) steps with them. Collective.
        """
        with self._step_lock:
            self._reduce(grads, check_hyperparameters=False)

    def _reduce(
        self, grads: Sequence[Any] | None, check_hyperparameters: bool
    ) -> tuple[tuple[bool, ...], list[_Layout]]:
        """Reduce ``grads`` into this rank's shard buffers; returns (and keeps in
        ``_pending``) which params have a gradient and the layouts used."""
        params = self.params
        error: BaseException | None = None
        entries: list[np.ndarray | None] = []
        try:
            entries = self._checked_grads(params, grads)
            if check_hyperparameters:
                error = self._hyperparameter_error()
        except (TypeError, ValueError) as e:
            error = e
        mask = tuple(g is not None for g in entries)
        # The params are the same on every rank (checked by the constructor): the ranks
        # must also agree on which of them have a gradient.
        present = [p.data if m else None for p, m in zip(params, mask)]
        what = "ZeroRedundancyOptimizer.step" if check_hyperparameters else "reduce_grads"
        agree(self.comm, what, error, layout_fingerprint(present), lambda: describe_layout(present))
        layouts = self._layouts_for(mask, params)
        grad_of = {p: g for p, g in zip(params, entries) if g is not None}
        with _POOL.lock:
            for layout in layouts:
                shard = self._shard_buffer(layout)
                if self.average_grads:
                    self._reduce_scatter(layout, grad_of, shard)
                else:
                    _Stream([grad_of[p] for p in layout.per_rank[self.rank]]).read(0, layout.sizes[self.rank], shard)
        self._pending = (mask, layouts)
        self._consolidated = None
        return mask, layouts

    def _checked_grads(self, params: list[Parameter], grads: Sequence[Any] | None) -> list[np.ndarray | None]:
        if grads is None:
            grads = [p.grad for p in params]
        elif isinstance(grads, np.ndarray) or not isinstance(grads, (list, tuple)):
            raise TypeError(f"grads must be a list with one array (or None) per param, got {_typename(grads)}")
        elif len(grads) != len(params):
            raise ValueError(
                f"grads has {len(grads)} entries, but the optimizer has {len(params)} params "
                "(one entry per param, in the order of opt.params; None skips a param)"
            )
        entries: list[np.ndarray | None] = []
        for i, (p, g) in enumerate(zip(params, grads)):
            if g is not None:
                g = np.asarray(g)
                if g.shape != p.data.shape:
                    raise ShapeError(f"the grad of param {i} has shape {g.shape}, but its param has shape {p.data.shape}")
                if g.dtype != p.data.dtype:
                    raise DTypeError(f"the grad of param {i} has dtype {g.dtype}, but its param has dtype {p.data.dtype}")
            entries.append(g)
        return entries

    def _layouts_for(self, mask: tuple[bool, ...], params: list[Parameter]) -> list[_Layout]:
        layouts = self._layouts.get(mask)
        if layouts is None:
            by_dtype: dict[np.dtype, list[list[Parameter]]] = {}
            for p, present in zip(params, mask):
                if present and p.data.size:
                    by_dtype.setdefault(p.data.dtype, [[] for _ in range(self.world_size)])[self._owner[p]].append(p)
            layouts = []
            for dtype, per_rank in by_dtype.items():
                chunk = max(1, min(bucket_elements(self.bucket_mb, dtype.itemsize) // self.world_size, MAX_BUCKET_ELEMENTS))
                layouts.append(_Layout(dtype, per_rank, chunk))
            if len(self._layouts) >= 8:  # gradients present on changing subsets: keep a few layouts only
                self._layouts.clear()
            self._layouts[mask] = layouts
        return layouts

    def _shard_buffer(self, layout: _Layout) -> np.ndarray:
        """This rank's reduced gradients of ``layout``'s dtype, kept between steps."""
        needed = layout.sizes[self.rank]
        shard = self._shard.get(layout.dtype)
        if shard is None or shard.size < needed:
            owned = sum(p.data.size for p, r in self._owner.items() if r == self.rank and p.data.dtype == layout.dtype)
            shard = self._shard[layout.dtype] = np.empty(max(owned, needed), layout.dtype)
        return shard[:needed]

    def _reduce_scatter(self, layout: _Layout, grad_of: dict[Parameter, np.ndarray], shard: np.ndarray) -> None:
        streams = [_Stream([grad_of[p] for p in params]) for params in layout.per_rank]
        for start in layout.chunks:
            counts = layout.counts(start)
            buffer = _POOL.get(layout.dtype, sum(counts))
            at = 0
            for stream, n in zip(streams, counts):
                stream.read(start, start + n, buffer[at : at + n])
                at += n
            mine = counts[self.rank]
            self.comm.Reduce_scatter(buffer, shard[start : start + mine], recvcounts=counts, op=MPI.SUM)
        if self.world_size > 1:
            np.divide(shard, self.world_size, out=shard)

    def _local_grads(self, mask: tuple[bool, ...], layouts: list[_Layout]) -> list[np.ndarray | None]:
        """The local optimizer's gradients: views of the shard, None where there is no gradient."""
        view_of: dict[Parameter, np.ndarray] = {}
        for layout in layouts:
            shard, at = self._shard[layout.dtype], 0
            for p in layout.per_rank[self.rank]:
                view_of[p] = shard[at : at + p.data.size].reshape(p.data.shape)
                at += p.data.size
        present = {p for p, m in zip(self.params, mask) if m}
        empty = {p: np.zeros_like(p.data) for p in self.optim.params if p in present and p.data.size == 0}
        return [view_of.get(p, empty.get(p)) for p in self.optim.params]

    def _share_params(self, layouts: list[_Layout]) -> None:
        """All-gather the updated params, chunk by chunk."""
        for layout in layouts:
            streams = [_Stream([p.data for p in params]) for params in layout.per_rank]
            mpi_type = _MPI_TYPES[layout.dtype]
            with _POOL.lock:
                for start in layout.chunks:
                    counts = layout.counts(start)
                    displacements = [0, *itertools.accumulate(counts[:-1])]
                    buffer = _POOL.get(layout.dtype, sum(counts))
                    me = self.rank
                    streams[me].read(start, start + counts[me], buffer[displacements[me] : displacements[me] + counts[me]])
                    self.comm.Allgatherv(MPI.IN_PLACE, [buffer, counts, displacements, mpi_type])
                    for r, stream in enumerate(streams):
                        if r != me and counts[r]:
                            stream.write(start, start + counts[r], buffer[displacements[r] : displacements[r] + counts[r]])
            for r, stream in enumerate(streams):
                if r != self.rank:
                    stream.finish()

    # ---------------------------------------------------------------- clipping

    def clip_grad_norm_(self, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False) -> float:
        """Clip the gradients of the pending step (:meth:`reduce_grads`) to a total norm of
        ``max_norm``, the norm taken over every rank's shard; returns the total norm.

        The same as ``rustoptim.clip_grad_norm_`` on the averaged gradients of
        all params (to rounding: the per-rank partial sums are added in float64).
        Collective.
        """
        if self._pending is None:
            raise RuntimeError("clip_grad_norm_() needs reduced gradients: call reduce_grads(grads) first")
        mask, layouts = self._pending
        grads = [g for g in self._local_grads(mask, layouts) if g is not None]
        return _norm.clip_grad_norm_(grads, max_norm, norm_type, comm=self.comm, error_if_nonfinite=error_if_nonfinite)

    # -------------------------------------------------------------- state dict

    def _global_index(self) -> dict[Parameter, int]:
        return {p: i for i, p in enumerate(self.params)}

    def consolidate_state_dict(self, to: int = 0) -> None:
        """Gather every rank's state on rank ``to`` (collective), for :meth:`state_dict` there.

        Metadata travels pickled; arrays travel as raw buffers, point to point,
        in messages of at most 2**30 elements.
        """
        comm, rank = self.comm, self.rank
        error: BaseException | None = None
        if not (isinstance(to, (int, np.integer)) and 0 <= to < self.world_size):
            error = ValueError(f"to must be a rank of comm (0 to {self.world_size - 1}), got {to!r}")
        agree(comm, "consolidate_state_dict", error)
        self._sync_groups(self.param_groups, self.optim.param_groups)
        index = self._global_index()
        # (global index, [(key, array meta or value)]) for every param of this rank with state.
        mine = sorted((index[p], entry) for p, entry in self.optim.state.items() if entry and p in index)
        meta = [
            (i, [(k, ("array", v.shape, v.dtype.str, _order(v)) if isinstance(v, np.ndarray) else ("value", v)) for k, v in entry.items()])
            for i, entry in mine
        ]
        gathered = comm.gather(meta, root=to)
        received: dict[int, dict[str, Any]] = {}
        error = None
        if rank == to:
            try:
                for rank_meta in gathered:
                    for i, items in rank_meta:
                        received[i] = {
                            k: (np.empty(m[1], np.dtype(m[2]), order=m[3]) if m[0] == "array" else copy.deepcopy(m[1]))
                            for k, m in items
                        }
            except MemoryError as e:
                received = {}
                error = MemoryError(f"consolidate_state_dict: rank {to} cannot hold the whole state: {e}")
        agree(comm, "consolidate_state_dict", error)
        tag = 7723
        if rank == to:
            params = self.params
            for r, rank_meta in enumerate(gathered):
                for i, items in rank_meta:
                    for k, m in items:
                        if m[0] != "array":
                            continue
                        if r == to:
                            np.copyto(received[i][k], self.optim.state[params[i]][k])
                        else:
                            for piece in _message_pieces(received[i][k]):
                                comm.Recv(piece, source=r, tag=tag)
            self._consolidated = dict(sorted(received.items()))
        else:
            for _, entry in mine:
                for v in entry.values():
                    if isinstance(v, np.ndarray):
                        for piece in _message_pieces(v):
                            comm.Send(piece, dest=to, tag=tag)
            self._consolidated = None

    def state_dict(self) -> dict[str, Any]:
        """The whole optimizer's state dict, on the rank that :meth:`consolidate_state_dict`
        gathered it on; the layout of ``optimizer_class(...).state_dict()`` for all params
        (global indices), so it loads into this class on any number of ranks, or into a
        plain optimizer. Raises ``RuntimeError`` elsewhere (as torch)."""
        if self._consolidated is None:
            raise RuntimeError(_NOT_CONSOLIDATED.format(rank=self.rank))
        groups = Optimizer.state_dict(self)["param_groups"]  # hyperparameters now, global indices
        return {"state": dict(self._consolidated), "param_groups": groups}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Load a whole-optimizer state dict (from :meth:`state_dict`, or from a plain
        optimizer's ``state_dict()``), keeping the state of this rank's params only.

        Collective: every rank passes the same state dict. Each rank validates the
        entries it keeps (and the groups); if any rank finds a problem, every rank
        raises ``DistributedError`` and none has changed.
        """
        error: BaseException | None = None
        before = (self.optim.state, self.optim.param_groups)
        loaded = False
        try:
            self.optim.load_state_dict(self._local_state_dict(state_dict))
            loaded = True
        except (TypeError, ValueError, KeyError) as e:
            error = e
        try:
            agree(self.comm, "load_state_dict", error)
        except BaseException:
            if loaded:
                self.optim.state, self.optim.param_groups = before
            raise
        new_groups = []
        for group, local in zip(self.param_groups, self.optim.param_groups):
            new_group = {k: v for k, v in local.items() if k not in ("params", "param_names")}
            new_group["params"] = group["params"]
            if "param_names" in group:
                new_group["param_names"] = group["param_names"]
            new_groups.append(new_group)
        self.param_groups = new_groups
        self._pending = None
        self._consolidated = None

    def _local_state_dict(self, state_dict: Mapping[str, Any]) -> dict[str, Any]:
        """This rank's part of a whole state dict, indexed as ``self.optim`` numbers its params."""
        if not isinstance(state_dict, Mapping):
            raise StateDictError(f"a state dict must be a dict, got {_typename(state_dict)}")
        for key in ("state", "param_groups"):
            if key not in state_dict:
                raise StateDictError(f"the state dict has no {key!r} entry")
        saved_groups, saved_state = state_dict["param_groups"], state_dict["state"]
        if not isinstance(saved_groups, (list, tuple)):
            raise StateDictError(f"'param_groups' must be a list, got {_typename(saved_groups)}")
        if not isinstance(saved_state, Mapping):
            raise StateDictError(f"'state' must be a dict, got {_typename(saved_state)}")
        if len(saved_groups) != len(self.param_groups):
            raise StateDictError("loaded state dict has a different number of parameter groups")
        local_index = {p: i for i, p in enumerate(self.optim.params)}
        param_of: dict[int, Parameter] = {}
        local_groups = []
        for g, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if not isinstance(saved, Mapping):
                raise StateDictError(f"param_groups[{g}] must be a dict, got {_typename(saved)}")
            indices = saved.get("params")
            if not isinstance(indices, (list, tuple)) or not all(
                isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_)) for k in indices
            ):
                raise StateDictError(f"param_groups[{g}]['params'] must be a list of int indices")
            if len(indices) != len(group["params"]):
                raise StateDictError(
                    "loaded state dict contains a parameter group that doesn't match the size of optimizer's group"
                )
            for k, p in zip(indices, group["params"]):
                if param_of.setdefault(int(k), p) is not p:
                    raise StateDictError(f"param_groups[{g}]['params'] uses index {int(k)} for two params")
            mine = [j for j, p in enumerate(group["params"]) if self._owner[p] == self.rank]
            local = {k: v for k, v in saved.items() if k not in ("params", "param_names")}
            names = saved.get("param_names")
            if names is not None:
                if not isinstance(names, (list, tuple)) or len(names) != len(group["params"]):
                    raise StateDictError(f"param_groups[{g}]['param_names'] must be a list with one name per param")
                local["param_names"] = [names[j] for j in mine]
            local["params"] = [local_index[group["params"][j]] for j in mine]
            local_groups.append(local)
        local_state = {}
        for k, entry in saved_state.items():
            p = param_of.get(int(k)) if isinstance(k, (int, np.integer)) and not isinstance(k, bool) else None
            if p is None:
                raise StateDictError(f"state key {k!r} is not the index of a param (indices: {sorted(param_of)})")
            if self._owner[p] == self.rank:
                local_state[local_index[p]] = entry
        return {"state": local_state, "param_groups": local_groups}

    # ---------------------------------------------------------------- pickling

    def __getstate__(self) -> dict[str, Any]:
        raise TypeError(
            "a ZeroRedundancyOptimizer holds an MPI communicator and cannot be pickled or copied; save "
            "its state with consolidate_state_dict() and state_dict()"
        )


def _order(a: np.ndarray) -> str:
    return "F" if a.flags.f_contiguous and not a.flags.c_contiguous else "C"


def _message_pieces(a: np.ndarray) -> list[np.ndarray]:
    """Flat views of a contiguous array's memory, at most ``MAX_BUCKET_ELEMENTS`` each."""
    if not (a.flags.c_contiguous or a.flags.f_contiguous):
        a = np.ascontiguousarray(a)  # received as C order (``_order``)
    flat = a.ravel(order="K")
    return [flat[k : k + MAX_BUCKET_ELEMENTS] for k in range(0, flat.size, MAX_BUCKET_ELEMENTS)]
