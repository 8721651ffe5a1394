"""Flat buckets: many arrays moved in a few large messages.

``allreduce_grads`` sums gradients across ranks (and divides by the number of
ranks), ``broadcast_params`` copies one rank's params to every rank. Both lay
the arrays of each dtype out as one stream of elements and cut it into
buckets of ``bucket_mb`` MiB:

- a C-contiguous array at least one bucket long is reduced in place, a bucket
  at a time, through a flat view of its own memory (no copy);
- smaller arrays are packed into a shared flat buffer (in C order, whatever
  their layout), reduced in place (``MPI.IN_PLACE``), and unpacked; the packed
  buffers are kept between calls (one or two per dtype, the bucket size), so
  a step does not pay page faults on fresh memory;
- a large array that is not C-contiguous is copied to a contiguous temporary,
  reduced like a contiguous one and copied back.

So the number of messages is about (total bytes / bucket) + (number of
dtypes), whatever the number of tensors. Each element is summed by one MPI
reduction; which ranks' values are added first is up to MPI, so for more than
two ranks the last bit may depend on the MPI library and the bucket size (for
two ranks, a + b is exact in any order). Every rank receives the same bits.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any, Union

import numpy as np

from .._arrays import FLOAT_DTYPES
from ..errors import AliasError, DTypeError, ReadOnlyError
from ..optimizer import _typename
from ..parameter import Parameter
from ._consensus import agree
from ._mpi import MPI, get_comm

__all__ = ["allreduce_grads", "broadcast_params"]

ParamsOrGrads = Union[Parameter, np.ndarray, Iterable[Union[Parameter, np.ndarray, None]]]

#: The largest count passed to one MPI call (every MPI accepts counts below 2**31).
MAX_BUCKET_ELEMENTS = 1 << 30


# ------------------------------------------------------------------ validation


def bucket_elements(bucket_mb: object, itemsize: int) -> int:
    """Elements of ``itemsize`` bytes in a bucket of ``bucket_mb`` MiB (at least 1)."""
    if isinstance(bucket_mb, (bool, np.bool_)) or not isinstance(bucket_mb, numbers.Real):
        raise TypeError(f"bucket_mb must be a real number of MiB, got {bucket_mb!r}")
    try:
        mb = float(bucket_mb)
    except OverflowError:
        mb = math.inf
    if not (math.isfinite(mb) and mb > 0):
        raise ValueError(f"bucket_mb must be a finite number > 0, got {bucket_mb!r}")
    return min(max(1, int(mb * (1 << 20)) // itemsize), MAX_BUCKET_ELEMENTS)


def entries_of(arrays: Any, what: str, attribute: str) -> list[np.ndarray | None]:
    """The arrays of ``arrays`` (a Parameter, an ndarray, or an iterable of those and None), in
    order: a Parameter stands for its ``attribute`` (``grad`` or ``data``), which may be None."""
    if isinstance(arrays, (Parameter, np.ndarray)):
        arrays = [arrays]
    elif isinstance(arrays, (str, bytes, dict)) or not isinstance(arrays, Iterable):
        raise TypeError(f"{what} must be a Parameter, an array or an iterable of them, got {type(arrays).__name__}")
    entries: list[np.ndarray | None] = []
    for i, x in enumerate(arrays):
        if isinstance(x, Parameter):
            x = getattr(x, attribute)
        if x is not None and not isinstance(x, np.ndarray):
            raise TypeError(
                f"{what}[{i}] is a {_typename(x)}; pass NumPy arrays or Parameters (for a torch CPU "
                "tensor, t.numpy() is a view of its memory)"
            )
        entries.append(x)
    return entries


def check_float_arrays(entries: Sequence[np.ndarray | None], what: str, writeable: bool) -> None:
    """float32/float64 native-order arrays (``DTypeError``), writeable if asked
    (``ReadOnlyError``), no two sharing memory if writeable (``AliasError``)."""
    for i, a in enumerate(entries):
        if a is None:
            continue
        if a.dtype not in FLOAT_DTYPES:
            raise DTypeError(f"{what}[{i}] has dtype {a.dtype.str!r} ({a.dtype}); expected float32 or float64")
        if writeable and not a.flags.writeable:
            raise ReadOnlyError(f"{what}[{i}] is read-only, but it is updated in place")
    if writeable:
        check_no_overlap(entries, what)


def _byte_extent(a: np.ndarray) -> tuple[int, int]:
    low = high = a.__array_interface__["data"][0]
    for n, s in zip(a.shape, a.strides):
        if s < 0:
            low += s * (n - 1)
        else:
            high += s * (n - 1)
    return low, high + a.itemsize


def check_no_overlap(entries: Sequence[np.ndarray | None], what: str) -> None:
    """``AliasError`` if two entries share memory (the same array twice included).

    Sorting by start address finds every pair whose byte ranges overlap in
    O(n log n); only those pairs get NumPy's exact (slower) test, so
    interleaved views such as ``w[::2]`` and ``w[1::2]`` are accepted.
    """
    spans = sorted((*_byte_extent(a), i) for i, a in enumerate(entries) if a is not None and a.size)
    open_spans: list[tuple[int, int]] = []  # (end, index) of spans that may still overlap the next
    for start, end, i in spans:
        open_spans = [(e, j) for e, j in open_spans if e > start]
        for _, j in open_spans:
            if np.shares_memory(entries[i], entries[j]):
                first, second = sorted((i, j))
                raise AliasError(f"{what}[{first}] and {what}[{second}] share memory")
        open_spans.append((end, i))


def layout_fingerprint(entries: Sequence[np.ndarray | None]) -> int:
    """A hash of (dtype, size) per entry (-1 for None): equal on every rank iff the
    ranks pass the same layout (up to hash collisions, 2**-62)."""
    codes = np.array(
        [(-1, -1) if a is None else (a.dtype.num, a.size) for a in entries], dtype=np.int64
    ).reshape(-1, 2)
    return int.from_bytes(hashlib.blake2b(codes.tobytes(), digest_size=8).digest(), "little")


def describe_layout(entries: Sequence[np.ndarray | None]) -> str:
    """What a rank passed, for the message of a layout mismatch."""
    present = [a for a in entries if a is not None]
    text = f"{len(entries)} entries"
    if len(entries) <= 6:
        text += " [" + ", ".join("None" if a is None else f"{a.dtype} {a.shape}" for a in entries) + "]"
    else:
        sizes: dict[str, int] = {}
        for a in present:
            sizes[str(a.dtype)] = sizes.get(str(a.dtype), 0) + a.size
        nones = [i for i, a in enumerate(entries) if a is None]
        text += " (" + ", ".join(f"{n} {d} elements" for d, n in sizes.items())
        text += f"; None at {nones[:8]}{'...' if len(nones) > 8 else ''})" if nones else ")"
    return text


# ------------------------------------------------------------------- the plan


class _Packed:
    """A bucket of small arrays packed into a shared buffer: ``(array, offset)`` in C order."""

    __slots__ = ("dtype", "size", "segments")

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = dtype
        self.size = 0
        self.segments: list[tuple[np.ndarray, int]] = []


class _Direct:
    """A bucket that is a flat view of one contiguous array's memory: no packing."""

    __slots__ = ("dtype", "size", "view")

    def __init__(self, view: np.ndarray) -> None:
        self.dtype = view.dtype
        self.size = view.size
        self.view = view


def plan_buckets(arrays: Sequence[np.ndarray], bucket_mb: object) -> tuple[list[Any], list[tuple[np.ndarray, np.ndarray]]]:
    """Buckets for ``arrays`` (dtype groups in order of first appearance), and the
    ``(array, contiguous copy)`` pairs of large non-contiguous arrays (the copies
    are bucketed in their place: the caller fills them and/or copies them back)."""
    by_dtype: dict[np.dtype, list[np.ndarray]] = {}
    for a in arrays:
        if a.size:
            by_dtype.setdefault(a.dtype, []).append(a)
    buckets: list[Any] = []
    copies: list[tuple[np.ndarray, np.ndarray]] = []
    for dtype, group in by_dtype.items():
        limit = bucket_elements(bucket_mb, dtype.itemsize)
        packed = _Packed(dtype)
        for a in group:
            if a.size < limit:
                if packed.size + a.size > limit:
                    buckets.append(packed)
                    packed = _Packed(dtype)
                packed.segments.append((a, packed.size))
                packed.size += a.size
                continue
            if not a.flags.c_contiguous:
                contiguous = np.empty(a.shape, dtype)
                copies.append((a, contiguous))
                a = contiguous
            flat = a.reshape(-1)
            buckets.extend(_Direct(flat[k : k + limit]) for k in range(0, a.size, limit))
        if packed.size:
            buckets.append(packed)
    return buckets, copies


class _BufferPool:
    """Packing buffers kept between calls: ``count`` per dtype, grown to the largest bucket seen."""

    def __init__(self) -> None:
        self._buffers: dict[tuple[np.dtype, int], np.ndarray] = {}
        self.lock = threading.Lock()

    def get(self, dtype: np.dtype, size: int, slot: int = 0) -> np.ndarray:
        buffer = self._buffers.get((dtype, slot))
        if buffer is None or buffer.size < size:
            buffer = np.empty(size, dtype)
            self._buffers[(dtype, slot)] = buffer
        return buffer[:size]


_POOL = _BufferPool()


def pack(bucket: _Packed, buffer: np.ndarray) -> None:
    for a, offset in bucket.segments:
        np.copyto(buffer[offset : offset + a.size].reshape(a.shape), a)


def unpack(bucket: _Packed, buffer: np.ndarray, divisor: int = 1) -> None:
    """Copy the buffer back into the arrays, divided by ``divisor`` (in one pass) unless it is 1."""
    for a, offset in bucket.segments:
        piece = buffer[offset : offset + a.size].reshape(a.shape)
        if divisor == 1:
            np.copyto(a, piece)
        else:
            np.divide(piece, divisor, out=a)


# ----------------------------------------------------------------- allreduce


def allreduce_grads(
    params_or_grads: ParamsOrGrads,
    comm: Any = None,
    average: bool = True,
    bucket_mb: float = 25,
    *,
    overlap: bool = False,
) -> None:
    """Sum (or average) gradients across the ranks of ``comm``, in place.

    ``g ← (g_0 + g_1 + … + g_{N-1}) / N`` on every rank (without ``/ N`` when
    ``average=False``), where ``g_r`` is the gradient on rank r.

    Args:
      params_or_grads: a :class:`~rustoptim.Parameter` (standing for its
        ``.grad``; a None grad is skipped), a float32/float64 ndarray (the
        gradient itself), or an iterable of those (None entries are skipped).
        Every rank must pass the same dtypes and sizes in the same order, with
        None at the same positions.
      comm: an mpi4py intracommunicator (default ``MPI.COMM_WORLD``).
      average: divide the sums by the number of ranks.
      bucket_mb: bucket size in MiB: arrays are moved in flat buckets of about
        this size (see the module docstring), not one message per array.
      overlap: start each bucket's reduction (``Iallreduce``) before packing the
        next one. It helps only where the network progresses messages without
        the CPU; on one machine (shared memory) it was measured slower, so it is
        off by default.

    Collective: every rank calls it. Inputs are checked first (float32/float64,
    writeable, no two gradients sharing memory, the same layout on every rank)
    and the verdict is shared: on any failure every rank raises
    :class:`~rustoptim.distributed.DistributedError` and no gradient changed.
    """
    comm = get_comm(comm)
    error: BaseException | None = None
    entries: list[np.ndarray | None] = []
    try:
        bucket_elements(bucket_mb, 8)
        entries = entries_of(params_or_grads, "grads", "grad")
        check_float_arrays(entries, "grads", writeable=True)
    except (TypeError, ValueError) as e:
        error = e
    agree(comm, "allreduce_grads", error, layout_fingerprint(entries), lambda: describe_layout(entries))
    size = comm.Get_size()
    divisor = size if average else 1
    arrays = [a for a in entries if a is not None]
    if size == 1 or not arrays:
        return
    buckets, copies = plan_buckets(arrays, bucket_mb)
    for a, contiguous in copies:
        np.copyto(contiguous, a)
    with _POOL.lock:
        if overlap:
            _reduce_overlapped(comm, buckets, divisor)
        else:
            _reduce_blocking(comm, buckets, divisor)
    for a, contiguous in copies:
        np.copyto(a, contiguous)


def _reduce_blocking(comm: Any, buckets: list[Any], divisor: int) -> None:
    for bucket in buckets:
        if isinstance(bucket, _Direct):
            comm.Allreduce(MPI.IN_PLACE, bucket.view, op=MPI.SUM)
            if divisor != 1:
                np.divide(bucket.view, divisor, out=bucket.view)
        else:
            buffer = _POOL.get(bucket.dtype, bucket.size)
            pack(bucket, buffer)
            comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)
            unpack(bucket, buffer, divisor)


def _reduce_overlapped(comm: Any, buckets: list[Any], divisor: int) -> None:
    """Pipelined: bucket k's ``Iallreduce`` is in flight while bucket k+1 is packed.

    Two packing buffers per dtype alternate. MPI progresses a nonblocking
    collective only inside MPI calls (no progress thread by default), so the
    packing loop tests the oldest request between arrays.
    """
    in_flight: deque[tuple[Any, _Packed | _Direct, np.ndarray]] = deque()
    slots: dict[np.dtype, int] = {}

    def finish_oldest() -> None:
        request, bucket, buffer = in_flight.popleft()
        request.Wait()
        if isinstance(bucket, _Direct):
            if divisor != 1:
                np.divide(bucket.view, divisor, out=bucket.view)
        else:
            unpack(bucket, buffer, divisor)

    for bucket in buckets:
        if len(in_flight) == 2:
            finish_oldest()  # frees the buffer this bucket is about to use
        if isinstance(bucket, _Direct):
            buffer = bucket.view
        else:
            slot = slots.get(bucket.dtype, 0)
            slots[bucket.dtype] = 1 - slot
            buffer = _POOL.get(bucket.dtype, bucket.size, slot)
            for a, offset in bucket.segments:
                np.copyto(buffer[offset : offset + a.size].reshape(a.shape), a)
                if in_flight:
                    in_flight[0][0].Test()
        in_flight.append((comm.Iallreduce(MPI.IN_PLACE, buffer, op=MPI.SUM), bucket, buffer))
    while in_flight:
        finish_oldest()


# ----------------------------------------------------------------- broadcast


def broadcast_params(params: ParamsOrGrads, comm: Any = None, root: int = 0, bucket_mb: float = 25) -> None:
    """Copy the params of rank ``root`` into the params of every rank, in place.

    Call it once before training so that every rank starts from the same
    params. ``params``: Parameters (their ``.data``) or arrays, the same dtypes
    and sizes on every rank. Collective; errors are shared as in
    :func:`allreduce_grads`.
    """
    comm = get_comm(comm)
    error: BaseException | None = None
    entries: list[np.ndarray | None] = []
    try:
        if not (isinstance(root, (int, np.integer)) and 0 <= root < comm.Get_size()):
            raise ValueError(f"root must be a rank of comm (0 to {comm.Get_size() - 1}), got {root!r}")
        bucket_elements(bucket_mb, 8)
        entries = entries_of(params, "params", "data")
        check_float_arrays(entries, "params", writeable=comm.Get_rank() != root)
    except (TypeError, ValueError) as e:
        error = e
    agree(comm, "broadcast_params", error, layout_fingerprint(entries), lambda: describe_layout(entries))
    arrays = [a for a in entries if a is not None]
    if comm.Get_size() == 1 or not arrays:
        return
    is_root = comm.Get_rank() == root
    buckets, copies = plan_buckets(arrays, bucket_mb)
    if is_root:
        for a, contiguous in copies:
            np.copyto(contiguous, a)
    with _POOL.lock:
        for bucket in buckets:
            if isinstance(bucket, _Direct):
                comm.Bcast(bucket.view, root=root)
                continue
            buffer = _POOL.get(bucket.dtype, bucket.size)
            if is_root:
                pack(bucket, buffer)
            comm.Bcast(buffer, root=root)
            if not is_root:
                unpack(bucket, buffer)
    if not is_root:
        for a, contiguous in copies:
            np.copyto(a, contiguous)
