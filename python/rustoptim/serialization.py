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

Writes to a path are atomic: the file is written to a temporary file next to
the target, flushed and fsynced, then renamed over the target; on any error the
temporary file is removed and an existing target is left as it was. The same
state dict always gives the same bytes (member timestamps are fixed).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import secrets
import shutil
import struct
import tempfile
import zipfile
import zlib
from typing import IO, Any, Union

import numpy as np
from numpy.lib import format as npy

from .errors import FileFormatError

__all__ = ["save", "load"]

FORMAT_NAME = "rustoptim-state"
FORMAT_VERSION = 1

PathOrFile = Union[str, "os.PathLike[str]", IO[bytes]]

_HEADER = "header.json"
_ARRAY_KINDS = "biufc"  # bool, signed and unsigned integers, floats, complex
_INT_JSON_LIMIT = 2**63
_TRAILER = re.compile(rb"rustoptim-state/(\d{1,6}) crc32:([0-9a-f]{8})\Z")
_DIGEST_LEN = 8
_CHUNK = 1 << 20
# Fixed member timestamps make the output depend on the state dict only.
_TIMESTAMP = (1980, 1, 1, 0, 0, 0)


# --------------------------------------------------------------------------- save


def save(state_dict: Any, path: PathOrFile) -> None:
    """Write ``state_dict`` to ``path`` atomically (see the module docstring for the format).

    ``path`` is a ``str``, an ``os.PathLike`` or a writable binary file object
    (written at its current position; atomicity is then up to the caller).
    Raises ``TypeError`` naming the offending entry, before anything is
    written, if ``state_dict`` holds a value that cannot be saved.
    """
    encoder = _Encoder()
    root = encoder.encode(state_dict, "state_dict")
    header = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "arrays": len(encoder.arrays), "root": root}
    header_bytes = json.dumps(header, allow_nan=False, separators=(",", ":")).encode("ascii")

    if hasattr(path, "write"):
        # The archive is finished in a seekable scratch file (the checksum is
        # patched in at the end), then copied into the caller's stream.
        with tempfile.TemporaryFile() as scratch:
            _write_archive(scratch, header_bytes, encoder.arrays)
            scratch.seek(0)
            shutil.copyfileobj(scratch, path, _CHUNK)
        return

    target = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(target))
    tmp, fd = _create_temp(target)
    try:
        with os.fdopen(fd, "w+b") as f:
            _write_archive(f, header_bytes, encoder.arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(directory)


def _create_temp(target: str) -> tuple[str, int]:
    """A new file next to ``target``, created with the permissions ``open(target, "wb")`` would give."""
    head, tail = os.path.split(target)
    while True:
        tmp = os.path.join(head, f".{tail}.{secrets.token_hex(6)}.tmp")
        try:
            return tmp, os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
        except FileExistsError:
            continue


def _fsync_directory(directory: str) -> None:
    """Make the rename itself durable. Not possible on every platform, hence best effort."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_archive(f: IO[bytes], header_bytes: bytes, arrays: list[np.ndarray]) -> None:
    """Write the archive to the seekable file ``f``, from its current position to its end."""
    start = f.tell()
    with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        zf.comment = b"%s/%d crc32:%s" % (FORMAT_NAME.encode(), FORMAT_VERSION, b"0" * _DIGEST_LEN)
        zf.writestr(_member(_HEADER), header_bytes)
        for i, array in enumerate(arrays):
            with zf.open(_member(f"arrays/{i}.npy"), "w", force_zip64=array.nbytes > 2**30) as out:
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

    def encode(self, x: Any, where: str) -> Any:
        t = type(x)
        if x is None or t is str or t is bool:
            return x
        if t is int:
            return x if -_INT_JSON_LIMIT <= x < _INT_JSON_LIMIT else {"int": hex(x)}
        if t is float:
            return x if math.isfinite(x) else {"float": struct.pack(">d", x).hex()}
        if t is complex:
            return {"complex": [self.encode(x.real, where), self.encode(x.imag, where)]}
        if t is np.ndarray:
            return {"array": self._add_array(x, where)}
        if isinstance(x, np.generic):
            _check_dtype(x.dtype, where, "NumPy scalar")
            return {"scalar": [x.dtype.str, x.tobytes().hex()]}
        if t is list or t is tuple or t is dict:
            if id(x) in self._open_containers:
                raise ValueError(f"{where} contains itself; a state dict must be a tree")
            self._open_containers.add(id(x))
            try:
                if t is dict:
                    return {"dict": [
                        [self.encode(k, f"{where} key {k!r}"), self.encode(v, f"{where}[{k!r}]")] for k, v in x.items()
                    ]}
                nodes = [self.encode(v, f"{where}[{i}]") for i, v in enumerate(x)]
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
    if the file does not exist, and ``FileFormatError`` naming the file and
    the problem if it is not a rustoptim state file, is truncated or
    corrupted, or was written by a newer rustoptim.
    """
    if hasattr(path, "read"):
        name = str(getattr(path, "name", "<file object>"))
        return _load_from(path, name)
    name = os.fspath(path)
    with open(name, "rb") as f:
        return _load_from(f, name)


def _load_from(f: IO[bytes], name: str) -> Any:
    if not f.seekable():  # zipfile needs to seek
        with tempfile.SpooledTemporaryFile(max_size=64 << 20) as spooled:
            shutil.copyfileobj(f, spooled, _CHUNK)
            spooled.seek(0)
            return _load_from(spooled, name)  # type: ignore[arg-type]
    start = f.tell()
    try:
        end = _check_trailer(f, start)
    except _Invalid as e:
        raise FileFormatError(f"{name}: {e}") from None
    try:
        f.seek(start)
        with zipfile.ZipFile(f) as zf:
            return _read_archive(zf, end)
    except _Invalid as e:
        raise FileFormatError(f"{name}: invalid rustoptim state file: {e}") from None
    except Exception as e:
        # The checksum has passed, so the file was made to look valid. Whatever
        # zipfile, json or numpy raise on it, the caller gets one exception type.
        raise FileFormatError(f"{name}: invalid rustoptim state file ({type(e).__name__}: {e})") from e


def _check_trailer(f: IO[bytes], start: int) -> int:
    """Check the whole-file CRC-32, then the format version, before anything is parsed; return the end offset."""
    end = f.seek(0, os.SEEK_END)
    size = end - start
    if size == 0:
        raise _Invalid("empty file, not a rustoptim state file")
    f.seek(max(start, end - 64))
    trailer = _TRAILER.search(f.read())
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
    return end


def _read_archive(zf: zipfile.ZipFile, archive_size: int) -> Any:
    infos = zf.infolist()
    if not infos or infos[0].filename != _HEADER:
        raise _Invalid(f"the archive does not start with {_HEADER}")
    header = json.loads(zf.read(infos[0]).decode("utf-8"), parse_constant=_reject_constant)
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise _Invalid(f"{_HEADER} does not describe a {FORMAT_NAME} file")
    if header.get("version") != FORMAT_VERSION or type(header.get("version")) is not int:
        raise _Invalid(f"{_HEADER} has version {header.get('version')!r}, the trailer says {FORMAT_VERSION}")
    count = header.get("arrays")
    if type(count) is not int or set(header) != {"format", "version", "arrays", "root"}:
        raise _Invalid(f"{_HEADER} is malformed")
    expected = [_HEADER] + [f"arrays/{i}.npy" for i in range(count)]
    if [info.filename for info in infos] != expected:
        raise _Invalid(f"the archive members are not {_HEADER} and {count} arrays")
    for info in infos:
        if info.compress_type != zipfile.ZIP_STORED or info.flag_bits & 1 or info.file_size != info.compress_size:
            raise _Invalid(f"member {info.filename} is compressed or encrypted")
        if info.file_size > archive_size:
            raise _Invalid(f"member {info.filename} claims to be larger than the file")
    arrays = [_read_array(zf, info) for info in infos[1:]]
    return _decode(header["root"], arrays)


def _reject_constant(constant: str) -> None:
    raise _Invalid(f"{_HEADER} contains the non-JSON constant {constant}")


def _read_array(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> np.ndarray:
    with zf.open(info) as f:
        # Check the .npy header against the member size first, so a bad header
        # cannot make numpy allocate more memory than the file could hold.
        version = npy.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = npy.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, _, dtype = npy.read_array_header_2_0(f)
        else:
            raise _Invalid(f"{info.filename} has unsupported .npy version {version}")
        if dtype.kind not in _ARRAY_KINDS or dtype.fields is not None:
            raise _Invalid(f"{info.filename} has dtype {dtype}; only bool and numeric arrays are allowed")
        if info.file_size - f.tell() != math.prod(shape) * dtype.itemsize:
            raise _Invalid(f"{info.filename}: the array data does not match its shape {shape} and dtype {dtype}")
        f.seek(0)
        array = npy.read_array(f, allow_pickle=False)
        if f.read(1):
            raise _Invalid(f"{info.filename} has trailing data")
    return array


def _decode(node: Any, arrays: list[np.ndarray]) -> Any:
    t = type(node)
    if node is None or t is str or t is bool or t is int or t is float:
        return node
    if t is list:
        return [_decode(v, arrays) for v in node]
    if t is not dict or len(node) != 1:
        raise _Invalid(f"{_HEADER} has a malformed node {_short(node)}")
    (tag, body), = node.items()
    if tag == "dict" and type(body) is list:
        out: dict[Any, Any] = {}
        for item in body:
            if type(item) is not list or len(item) != 2:
                raise _Invalid(f"{_HEADER} has a malformed dict item {_short(item)}")
            key = _decode(item[0], arrays)
            try:
                duplicate = key in out
            except TypeError:
                raise _Invalid(f"{_HEADER} has an unhashable dict key {_short(item[0])}") from None
            if duplicate:
                raise _Invalid(f"{_HEADER} has the dict key {key!r} twice")
            out[key] = _decode(item[1], arrays)
        return out
    if tag == "tuple" and type(body) is list:
        return tuple(_decode(v, arrays) for v in body)
    if tag == "int" and type(body) is str:
        return int(body, 16)
    if tag == "float" and type(body) is str and len(body) == 16:
        return struct.unpack(">d", bytes.fromhex(body))[0]
    if tag == "complex" and type(body) is list and len(body) == 2:
        real, imag = (_decode(v, arrays) for v in body)
        if type(real) is float and type(imag) is float:
            return complex(real, imag)
    if tag == "scalar" and type(body) is list and len(body) == 2 and all(type(v) is str for v in body):
        dtype = np.dtype(body[0])
        raw = bytes.fromhex(body[1])
        if dtype.kind in _ARRAY_KINDS and dtype.fields is None and len(raw) == dtype.itemsize:
            return np.frombuffer(raw, dtype=dtype)[0]
    if tag == "array" and type(body) is int and 0 <= body < len(arrays):
        return arrays[body]
    raise _Invalid(f"{_HEADER} has a malformed node {_short(node)}")


def _short(node: Any) -> str:
    text = json.dumps(node)
    return text if len(text) <= 80 else text[:77] + "..."
