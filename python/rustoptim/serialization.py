"""Save and load optimizer state dicts without pickle.

``save(state_dict, path)`` writes a nest of dicts, lists, tuples, scalars and
NumPy arrays to a file; ``load(path)`` gives it back: arrays bit for bit with
the same dtype and shape, every other value equal and of the same type (a
tuple stays a tuple, an ``int`` key stays an ``int`` key, dict order is kept,
float bits including ``nan`` payloads and ``-0.0`` are kept).

Loading never runs code from the file: there is no pickle anywhere, arrays
are read with ``allow_pickle=False``, and object arrays are refused when saving.

Supported values
----------------
``dict`` (keys: any supported hashable value), ``list``, ``tuple``, ``str``,
``int`` (any size), ``float``, ``complex``, ``bool``, ``None``, NumPy scalars of
bool/integer/float/complex dtypes (``np.float32(0.1)`` loads as ``np.float32``),
and ``np.ndarray`` of those dtypes, of any shape (0-d and empty included) and
layout. Types are matched exactly, so subclasses (``OrderedDict``, named tuples,
``np.memmap``, ...) are refused with a ``TypeError`` rather than silently
converted. An array that is Fortran-contiguous (and not C-contiguous) loads
Fortran-contiguous; any other array loads C-contiguous. An array object that
appears several times is stored once and loads as one object appearing several
times, as ``copy.deepcopy`` would give.

File format, version 1
----------------------
A ZIP archive (every member stored uncompressed) holding, in this order::

    header.json      {"format": "rustoptim-state", "version": 1, "arrays": N, "root": NODE}
    arrays/0.npy     NumPy .npy files, one per distinct array, referenced by index
    ...
    arrays/N-1.npy

and the archive comment ``rustoptim-state/1 crc32:XXXXXXXX``: the CRC-32 (8 hex
digits) of every byte of the file before those 8 digits. It is checked before
anything else is parsed, so any damaged byte, including in the ZIP structure,
is reported as corruption. This trailer, with its CRC, is the part every future
version keeps, so an older rustoptim can say "this file is newer" instead of
"this file is corrupt".

``root`` is the saved value, written as JSON with tags where JSON is ambiguous::

    "text", true, false, null, [NODE, ...]   str, bool, None, list
    12                                       int with |x| < 2**63
    {"int": "-0x1f..."}                      any other int, in hex
    0.001                                    finite float (Python's repr, exact)
    {"float": "7ff8000000000000"}            nan and +-inf, by IEEE-754 bits
    {"complex": [FLOAT, FLOAT]}              complex (real, imaginary)
    {"tuple": [NODE, ...]}                   tuple
    {"dict": [[KEY, NODE], ...]}             dict, in insertion order
    {"scalar": ["<f4", "cdcccc3d"]}          NumPy scalar: dtype.str and raw bytes in hex
    {"array": 0}                             the array in arrays/0.npy

Values may nest at most ``MAX_DEPTH`` (100) dicts, lists and tuples deep
(a state dict needs about 5); deeper ones are refused with ``StateDictError``
naming the entry, on save and on load, instead of a ``RecursionError``.

Writes to a path are atomic: the file is written to a temporary file next to
the target, flushed and fsynced, then renamed over the target; on any error the
temporary file is removed and an existing target is left as it was. An existing
file keeps its permission bits, a symlink is written through, and temporary
files of writers killed mid-save are removed by the next save to the same path
(details in ``_atomic_file.py``). The same state dict always gives the same
bytes (member timestamps are fixed).

Loading a file
--------------
A file is trusted no more than a network packet. After the whole-file CRC, the
ZIP structure is read and checked by ``_zip_layout.py`` (not by ``zipfile``)
before any member is: every member stored uncompressed, the members back to back
from the first byte with nothing between or overlapping, local headers that agree
with the central directory, the member names and count the header declares. Each
``.npy`` header is checked against its member's size (an allowed dtype, a shape
whose bytes are exactly the member's data) before the array is allocated, and
the data is read straight into it; member CRC-32s are checked too. The JSON may
hold only numbers ``save`` writes (ints within +-2**63, finite floats, both at
most 20-32 characters) and nest only as deep as ``save`` allows.

So a load allocates at most the file's size for arrays, plus the Python objects
``header.json`` describes (at most about 32 bytes per byte of it, for headers
made of empty containers; about 6 for typical ones), plus a 1 MiB read buffer.
Every damaged or crafted file raises ``FileFormatError`` before anything large
is allocated; a valid file whose arrays do not fit in memory raises ``MemoryError``.
"""

from __future__ import annotations

import io
import itertools
import json
import math
import os
import re
import reprlib
import shutil
import struct
import tempfile
import zipfile
import zlib
from typing import IO, Any, Union, cast

import numpy as np
from numpy.lib import format as npy

from ._atomic_file import write_atomically
from ._zip_layout import LayoutInvalid, Member, read_members
from .errors import FileFormatError, StateDictError

__all__ = ["save", "load", "MAX_DEPTH"]

FORMAT_NAME = "rustoptim-state"
FORMAT_VERSION = 1

PathOrFile = Union[str, "os.PathLike[str]", IO[bytes]]

_HEADER = "header.json"
_ARRAY_KINDS = "biufc"  # bool, signed and unsigned integers, floats, complex
_INT_JSON_LIMIT = 2**63
#: How many dicts, lists and tuples deep a saved value may nest (a state dict needs about 5).
MAX_DEPTH = 100
# The JSON of a value MAX_DEPTH containers deep: the header object, 3 levels per
# dict ({"dict": [[key, value]]}) and 2 for the deepest leaf ({"complex": [re, im]}).
_MAX_JSON_DEPTH = 3 * MAX_DEPTH + 3
_TRAILER = re.compile(rb"rustoptim-state/(\d{1,6}) crc32:([0-9a-f]{8})\Z")
_DIGEST_LEN = 8
_CHUNK = 1 << 20
# Arrays this large get ZIP64 local headers (zipfile must know before writing
# whether a member may pass 2 GiB; the .npy header adds a little to the array).
_ZIP64_FROM = 2**30 + 1
# Fixed member timestamps make the output depend on the state dict only.
_TIMESTAMP = (1980, 1, 1, 0, 0, 0)


# --------------------------------------------------------------------------- save


def save(state_dict: Any, path: PathOrFile) -> None:
    """Write ``state_dict`` to ``path`` atomically (see the module docstring for the format).

    ``path`` is a ``str``, an ``os.PathLike`` or a writable binary file object
    (written at its current position; atomicity is then up to the caller).
    Raises ``TypeError`` naming the offending entry, before anything is
    written, if ``state_dict`` holds a value that cannot be saved, and
    ``StateDictError`` (a ``ValueError``) if it contains itself or is nested
    more than ``MAX_DEPTH`` containers deep.
    """
    encoder = _Encoder()
    root = encoder.encode(state_dict, "state_dict", 0)
    header = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "arrays": len(encoder.arrays), "root": root}
    header_bytes = json.dumps(header, allow_nan=False, separators=(",", ":")).encode("ascii")

    def write(f: IO[bytes]) -> None:
        _write_archive(f, header_bytes, encoder.arrays)

    if hasattr(path, "write"):
        # The archive is finished in a seekable scratch file (the checksum is
        # patched in at the end), then copied into the caller's stream.
        with tempfile.TemporaryFile() as scratch:
            write(scratch)
            scratch.seek(0)
            shutil.copyfileobj(scratch, cast(IO[bytes], path), _CHUNK)
        return
    write_atomically(os.fspath(path), write)


def _write_archive(f: IO[bytes], header_bytes: bytes, arrays: list[np.ndarray]) -> None:
    """Write the archive to the seekable file ``f``, from its current position to its end."""
    start = f.tell()
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        zf.comment = b"%s/%d crc32:%s" % (FORMAT_NAME.encode(), FORMAT_VERSION, b"0" * _DIGEST_LEN)
        zf.writestr(_member(_HEADER), header_bytes)
        for i, array in enumerate(arrays):
            with zf.open(_member(f"arrays/{i}.npy"), "w", force_zip64=array.nbytes >= _ZIP64_FROM) as out:
                npy.write_array(out, array, allow_pickle=False)
    end = f.tell()
    f.seek(start)
    crc = _crc32(f, end - start - _DIGEST_LEN)
    f.seek(end - _DIGEST_LEN)
    f.write(b"%08x" % crc)


def _member(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=_TIMESTAMP)
    info.external_attr = 0o644 << 16
    return info


def _crc32(f: IO[bytes], size: int) -> int:
    """CRC-32 of the next ``size`` bytes of ``f``."""
    crc = 0
    while size > 0:
        chunk = f.read(min(size, _CHUNK))
        if not chunk:
            raise EOFError("file ended early")
        crc = zlib.crc32(chunk, crc)
        size -= len(chunk)
    return crc


class _Encoder:
    """Turns a value into a JSON node, collecting its arrays."""

    def __init__(self) -> None:
        self.arrays: list[np.ndarray] = []
        self._array_index: dict[int, int] = {}
        self._open_containers: set[int] = set()

    def encode(self, x: Any, where: str, depth: int) -> Any:
        """The node of ``x``, found at ``where`` inside ``depth`` containers."""
        t = type(x)
        if x is None or t is str or t is bool:
            return x
        if t is int:
            return x if -_INT_JSON_LIMIT <= x < _INT_JSON_LIMIT else {"int": hex(x)}
        if t is float:
            return x if math.isfinite(x) else {"float": struct.pack(">d", x).hex()}
        if t is complex:
            return {"complex": [self.encode(x.real, where, depth), self.encode(x.imag, where, depth)]}
        if t is np.ndarray:
            return {"array": self._add_array(x, where)}
        if isinstance(x, np.generic):
            _check_dtype(x.dtype, where, "NumPy scalar")
            return {"scalar": [x.dtype.str, x.tobytes().hex()]}
        if t is list or t is tuple or t is dict:
            if id(x) in self._open_containers:
                raise StateDictError(f"{where} contains itself; a state dict must be a tree")
            if depth >= MAX_DEPTH:
                raise StateDictError(
                    f"{_shorten(where)} is nested {depth + 1} containers deep; rustoptim.save takes at "
                    f"most {MAX_DEPTH} levels of dicts, lists and tuples"
                )
            self._open_containers.add(id(x))
            try:
                if t is dict:
                    return {"dict": [
                        [self.encode(k, f"{where} key {k!r}", depth + 1), self.encode(v, f"{where}[{k!r}]", depth + 1)]
                        for k, v in x.items()
                    ]}
                nodes = [self.encode(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(x)]
                return nodes if t is list else {"tuple": nodes}
            finally:
                self._open_containers.discard(id(x))
        raise TypeError(
            f"{where}: cannot save a {t.__module__}.{t.__qualname__}; rustoptim.save takes dict, list, "
            "tuple, str, int, float, complex, bool, None, NumPy scalars and numeric/bool NumPy arrays "
            "(exact types, so convert subclasses first: dict(...), tuple(...), np.asarray(...))"
        )

    def _add_array(self, array: np.ndarray, where: str) -> int:
        _check_dtype(array.dtype, where, "array")
        index = self._array_index.get(id(array))
        if index is None:
            index = self._array_index[id(array)] = len(self.arrays)
            self.arrays.append(array)
        return index


def _shorten(where: str) -> str:
    """A path of a deeply nested entry, cut in the middle to stay readable."""
    return where if len(where) <= 120 else f"{where[:60]}...{where[-50:]}"


def _check_dtype(dtype: np.dtype, where: str, what: str) -> None:
    if dtype.kind not in _ARRAY_KINDS or dtype.fields is not None:
        raise TypeError(
            f"{where}: cannot save a {what} of dtype {dtype}; only bool, integer, float and complex "
            "dtypes are supported (object arrays would need pickle)"
        )


# --------------------------------------------------------------------------- load


class _Invalid(Exception):
    """What is wrong with the file; ``load`` turns it into a ``FileFormatError`` naming the file."""


def load(path: PathOrFile) -> Any:
    """Read a value written by :func:`save`.

    ``path`` is a ``str``, an ``os.PathLike`` or a readable binary file object
    (read from its current position to its end). Raises ``FileNotFoundError``
    if the file does not exist, ``FileFormatError`` naming the file and the
    problem if it is not a rustoptim state file, is truncated, corrupted or
    crafted, or was written by a newer rustoptim, and ``MemoryError`` if the
    arrays it holds do not fit in memory. Whatever the file says, loading it
    allocates about as much memory as the file's size (see "Loading a file").
    """
    if hasattr(path, "read"):
        name = str(getattr(path, "name", "<file object>"))
        return _load_from(cast(IO[bytes], path), name)
    name = os.fspath(path)
    with open(name, "rb") as f:
        return _load_from(f, name)


def _load_from(f: IO[bytes], name: str) -> Any:
    if not f.seekable():  # the member table is at the end of the file
        with tempfile.SpooledTemporaryFile(max_size=64 << 20) as spooled:
            shutil.copyfileobj(f, spooled, _CHUNK)
            spooled.seek(0)
            # Not _load_from again: before Python 3.11 a SpooledTemporaryFile
            # has no seekable() (nor readinto(), which _read_into does without).
            return _load_seekable(spooled, name)
    return _load_seekable(f, name)


def _load_seekable(f: IO[bytes], name: str) -> Any:
    start = f.tell()
    try:
        size, comment_size = _check_trailer(f, start)
    except _Invalid as e:
        raise FileFormatError(f"{name}: {e}") from None
    try:
        return _read_archive(f, start, size, comment_size)
    except (_Invalid, LayoutInvalid) as e:
        raise FileFormatError(f"{name}: invalid rustoptim state file: {e}") from None
    except (MemoryError, OSError):
        raise  # not the file's fault: out of memory, or the disk failed
    except Exception as e:
        # The checksum has passed, so the file was made to look valid. Whatever
        # json or numpy raise on it, the caller gets one exception type.
        raise FileFormatError(f"{name}: invalid rustoptim state file ({type(e).__name__}: {e})") from e


def _check_trailer(f: IO[bytes], start: int) -> tuple[int, int]:
    """Check the whole-file CRC-32, then the format version, before anything is parsed.

    Returns the archive's size and the length of its comment (the trailer).
    """
    end = f.seek(0, os.SEEK_END)
    size = end - start
    if size == 0:
        raise _Invalid("empty file, not a rustoptim state file")
    f.seek(max(start, end - 64))
    tail = f.read()
    trailer = _TRAILER.search(tail)
    if trailer is None:
        f.seek(start)
        head = f.read(30 + len(_HEADER))
        if not head.startswith(b"PK\x03\x04"):
            raise _Invalid("not a rustoptim state file (not a ZIP archive)")
        if _HEADER.encode().startswith(head[30:]):
            raise _Invalid("truncated or corrupted rustoptim state file (its end is missing or damaged)")
        raise _Invalid("not a rustoptim state file (a ZIP archive without the rustoptim-state trailer)")
    f.seek(start)
    if _crc32(f, size - _DIGEST_LEN) != int(trailer[2], 16):
        raise _Invalid("corrupted rustoptim state file (CRC-32 mismatch)")
    version = int(trailer[1])
    if version > FORMAT_VERSION:
        raise _Invalid(
            f"written by a newer rustoptim (state format version {version}; this rustoptim reads "
            f"version {FORMAT_VERSION}); upgrade rustoptim to load it"
        )
    if version != FORMAT_VERSION:
        raise _Invalid(f"unknown state format version {version}")
    return size, len(tail) - trailer.start()


def _read_archive(f: IO[bytes], start: int, size: int, comment_size: int) -> Any:
    # The member table is checked in full before any member is read, so a
    # member's declared size is a range of this file, not a promise.
    members = read_members(f, start, size, comment_size)
    if members[0].name != _HEADER:
        raise _Invalid(f"the archive does not start with {_HEADER}")
    header = _parse_header(_read_member(f, start, members[0]))
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise _Invalid(f"{_HEADER} does not describe a {FORMAT_NAME} file")
    if header.get("version") != FORMAT_VERSION or type(header.get("version")) is not int:
        raise _Invalid(f"{_HEADER} has version {header.get('version')!r}, the trailer says {FORMAT_VERSION}")
    count = header.get("arrays")
    if type(count) is not int or set(header) != {"format", "version", "arrays", "root"}:
        raise _Invalid(f"{_HEADER} is malformed")
    if count != len(members) - 1:
        raise _Invalid(f"{_HEADER} declares {count} arrays, the archive holds {len(members) - 1} members besides it")
    for i, member in enumerate(members[1:]):
        if member.name != f"arrays/{i}.npy":
            raise _Invalid(f"archive member {i + 1} is {member.name!r}, expected 'arrays/{i}.npy'")
    arrays = _Arrays(f, start, members[1:])
    value = _decode(header["root"], arrays, 0)
    missing = arrays.first_unread()
    if missing is not None:
        raise _Invalid(f"arrays/{missing}.npy is not referenced by {_HEADER}")
    return value


def _read_member(f: IO[bytes], start: int, member: Member) -> bytes:
    f.seek(start + member.data_offset)
    data = f.read(member.size)
    if len(data) != member.size:
        raise _Invalid(f"the file ended inside {member.name}")
    if zlib.crc32(data) != member.crc32:
        raise _Invalid(f"{member.name} does not match its CRC-32")
    return data


# JSON as ``save`` writes it: ints within +-2**63 (larger ones are tagged hex
# strings) and finite floats in Python's shortest repr; anything longer is refused
# before it is converted (a 100,000-digit number costs quadratic time to parse).
_LONGEST_INT = len(str(-_INT_JSON_LIMIT))
_LONGEST_FLOAT = 32


def _parse_header(data: bytes) -> Any:
    text = data.decode("utf-8")
    depth = _json_depth(text)
    if depth > _MAX_JSON_DEPTH:
        raise _Invalid(f"{_HEADER} is nested {depth} levels deep; a file written by save has at most {_MAX_JSON_DEPTH}")
    return json.loads(text, parse_constant=_reject_constant, parse_int=_parse_int, parse_float=_parse_float)


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def _json_depth(text: str) -> int:
    """How deeply the arrays and objects of the JSON ``text`` nest, counted without recursion."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(itertools.accumulate(map(_BRACKET_STEP.__getitem__, brackets)), default=0)


def _reject_constant(constant: str) -> None:
    raise _Invalid(f"{_HEADER} contains the non-JSON constant {constant}")


def _parse_int(text: str) -> int:
    value = int(text) if len(text) <= _LONGEST_INT else None
    if value is None or not -_INT_JSON_LIMIT <= value < _INT_JSON_LIMIT:
        raise _Invalid(f"{_HEADER} has the number {_short_text(text)}, outside the range save writes as a plain number")
    return value


def _parse_float(text: str) -> float:
    value = float(text) if len(text) <= _LONGEST_FLOAT else math.nan
    if not math.isfinite(value):
        raise _Invalid(f"{_HEADER} has the number {_short_text(text)}, which is not a finite float as save writes it")
    return value


def _short_text(text: str) -> str:
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} characters)"


class _Arrays:
    """The array members, each read when the header first refers to it."""

    def __init__(self, f: IO[bytes], start: int, members: list[Member]) -> None:
        self._f, self._start, self._members = f, start, members
        self._loaded: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._members)

    def __getitem__(self, index: int) -> np.ndarray:
        array = self._loaded.get(index)
        if array is None:
            array = self._loaded[index] = _read_array(self._f, self._start, self._members[index])
        return array

    def first_unread(self) -> int | None:
        return next((i for i in range(len(self._members)) if i not in self._loaded), None)


_NPY_MAGIC = b"\x93NUMPY"
_DTYPE_STR = re.compile(r"[<>|][biufc][0-9]{1,2}\Z")


def _read_array(f: IO[bytes], start: int, member: Member) -> np.ndarray:
    """Read a .npy member, checking its header against the member's size before allocating anything."""
    where = member.name
    f.seek(start + member.data_offset)
    prefix = f.read(min(member.size, 12))
    if len(prefix) < 10 or not prefix.startswith(_NPY_MAGIC):
        raise _Invalid(f"{where} is not a .npy file")
    version = (prefix[6], prefix[7])
    if version == (1, 0):
        header_start, header_len = 10, struct.unpack_from("<H", prefix, 8)[0]
    elif version == (2, 0) and len(prefix) == 12:
        header_start, header_len = 12, struct.unpack_from("<I", prefix, 8)[0]
    else:
        raise _Invalid(f"{where} has unsupported .npy version {version}")
    data_start = header_start + header_len
    if data_start > member.size or header_len > _NPY_LONGEST_HEADER:
        raise _Invalid(f"{where} has a .npy header longer than the member or than any save writes")
    f.seek(start + member.data_offset)
    head = f.read(data_start)
    if len(head) != data_start:
        raise _Invalid(f"the file ended inside {where}")
    reader = io.BytesIO(head)
    npy.read_magic(reader)
    read_header = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
    shape, fortran_order, dtype = read_header(reader)
    if dtype.kind not in _ARRAY_KINDS or dtype.fields is not None or not _DTYPE_STR.match(dtype.str):
        raise _Invalid(f"{where} has dtype {dtype}; only bool and numeric arrays are allowed")
    if any(type(n) is not int or not 0 <= n <= _LARGEST_DIMENSION for n in shape):
        raise _Invalid(f"{where} has the invalid shape {shape}")
    nbytes = math.prod(shape) * dtype.itemsize
    if member.size - data_start != nbytes:
        raise _Invalid(f"{where}: the array data does not match its shape {shape} and dtype {dtype}")
    # The size check above bounds this allocation by the member's size, a part of the file.
    try:
        array = np.empty(shape, dtype=dtype, order="F" if fortran_order else "C")
    except MemoryError:
        raise MemoryError(f"cannot allocate {nbytes} bytes for {where} of shape {shape} and dtype {dtype}") from None
    crc = zlib.crc32(head)
    crc = _read_into(f, array.ravel(order="K").view(np.uint8).data, crc, where)
    if crc != member.crc32:
        raise _Invalid(f"{where} does not match its CRC-32")
    return array


_NPY_LONGEST_HEADER = 10_000  # numpy's own limit on headers it parses (and far more than 64 dimensions need)
_LARGEST_DIMENSION = 2**62


def _read_into(f: IO[bytes], out: memoryview, crc: int, where: str) -> int:
    """Fill ``out`` from ``f`` in chunks (no second copy of the data); returns the CRC-32 continued over it."""
    readinto = getattr(f, "readinto", None)
    pos = 0
    while pos < len(out):
        chunk = out[pos:pos + _CHUNK]
        if readinto is not None:
            n = readinto(chunk)
        else:
            data = f.read(len(chunk))
            n = len(data)
            chunk[:n] = data
        if not n:
            raise _Invalid(f"the file ended inside {where}")
        crc = zlib.crc32(chunk[:n], crc)
        pos += n
    return crc


_HEX_INT = re.compile(r"-?0x[0-9a-f]+\Z")
_FLOAT_BITS = re.compile(r"[0-9a-f]{16}\Z")


def _decode(node: Any, arrays: _Arrays, depth: int) -> Any:
    t = type(node)
    if node is None or t is str or t is bool or t is int or t is float:
        return node
    if t is list:
        _check_depth(depth)
        # Decoded in place: the parsed list becomes the value, and each parsed
        # child is released as soon as its value replaces it, so the parsed
        # JSON and the value it describes are not both held in full.
        for i, v in enumerate(node):
            node[i] = _decode(v, arrays, depth + 1)
        return node
    if t is not dict or len(node) != 1:
        raise _Invalid(f"{_HEADER} has a malformed node {_short(node)}")
    (tag, body), = node.items()
    if tag == "dict" and type(body) is list:
        _check_depth(depth)
        out: dict[Any, Any] = {}
        for i, item in enumerate(body):
            body[i] = None  # released once decoded, as for lists
            if type(item) is not list or len(item) != 2:
                raise _Invalid(f"{_HEADER} has a malformed dict item {_short(item)}")
            key = _decode(item[0], arrays, depth + 1)
            try:
                duplicate = key in out
            except TypeError:
                raise _Invalid(f"{_HEADER} has an unhashable dict key {_short(item[0])}") from None
            if duplicate:
                raise _Invalid(f"{_HEADER} has the dict key {_short(key)} twice")
            out[key] = _decode(item[1], arrays, depth + 1)
        return out
    if tag == "tuple" and type(body) is list:
        _check_depth(depth)
        for i, v in enumerate(body):
            body[i] = _decode(v, arrays, depth + 1)
        return tuple(body)
    if tag == "int" and type(body) is str and _HEX_INT.match(body):
        return int(body, 16)
    if tag == "float" and type(body) is str and _FLOAT_BITS.match(body):
        return struct.unpack(">d", bytes.fromhex(body))[0]
    if tag == "complex" and type(body) is list and len(body) == 2:
        real, imag = (_decode(v, arrays, depth) for v in body)
        if type(real) is float and type(imag) is float:
            return complex(real, imag)
    if tag == "scalar" and type(body) is list and len(body) == 2 and all(type(v) is str for v in body):
        if _DTYPE_STR.match(body[0]):
            dtype = np.dtype(body[0])
            if (dtype.kind in _ARRAY_KINDS and dtype.fields is None and len(body[1]) == 2 * dtype.itemsize
                    and re.fullmatch("[0-9a-f]*", body[1])):
                return np.frombuffer(bytes.fromhex(body[1]), dtype=dtype)[0]
    if tag == "array" and type(body) is int and 0 <= body < len(arrays):
        return arrays[body]
    raise _Invalid(f"{_HEADER} has a malformed node {_short(node)}")


def _check_depth(depth: int) -> None:
    """A container inside ``depth`` others: refused past the depth ``save`` allows."""
    if depth >= MAX_DEPTH:
        raise _Invalid(f"{_HEADER} nests dicts, lists and tuples more than {MAX_DEPTH} levels deep")


def _short(node: Any) -> str:
    """A bounded description of a (partly decoded) node, whatever its size."""
    return reprlib.repr(node)
