"""The member table of a stored ZIP archive, read and checked without trusting it.

``rustoptim.load`` does not hand its input to :mod:`zipfile`: that module
inflates whatever a member declares (a few kB of bzip2 can become gigabytes),
and it does not notice members stored inside other members' data (an archive
of 1.8 MB that reads as 3.65 GiB). Instead :func:`read_members` parses the end
records and the central directory itself, checks every local header against
its central entry, and accepts only the layout ``rustoptim.save`` writes:

    local header 0, data 0, local header 1, data 1, ..., central directory,
    [ZIP64 end record, ZIP64 locator,] end record, comment

with every member stored (not compressed, not encrypted, no data descriptor),
the members back to back from the first byte, and nothing between or after the
pieces. So the member data ranges are disjoint and lie inside the file, and
their sizes add up to less than the file's size: whatever a caller allocates
for the members is bounded by the file's size. Everything read here (the
directory and the headers) is itself part of the file, so checking costs
memory proportional to the file's size, never more.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import IO, NamedTuple

_LOCAL = struct.Struct("<4s5H3L2H")  # signature, version, flags, method, time, date, crc, sizes, name/extra lengths
_CENTRAL = struct.Struct("<4s6H3L5HLL")
_END = struct.Struct("<4s4H2LH")
_END64 = struct.Struct("<4sQ2H2L4Q")
_LOCATOR64 = struct.Struct("<4sLQL")

_LOCAL_SIG = b"PK\x03\x04"
_CENTRAL_SIG = b"PK\x01\x02"
_END_SIG = b"PK\x05\x06"
_END64_SIG = b"PK\x06\x06"
_LOCATOR64_SIG = b"PK\x06\x07"

_STORED = 0
_UTF8_NAMES = 0x800  # the only flag a stored, unencrypted member written in one pass may carry
_ZIP64_EXTRA = 0x0001
_SATURATED16 = 0xFFFF
_SATURATED32 = 0xFFFFFFFF


class LayoutInvalid(Exception):
    """What is wrong with the archive's structure (the caller adds the file name)."""


@dataclass(frozen=True)
class Member:
    """One stored member: where its data starts (relative to the archive start) and how long it is."""

    name: str
    data_offset: int
    size: int
    crc32: int


def read_members(f: IO[bytes], start: int, archive_size: int, comment_size: int) -> list[Member]:
    """The members of the archive in ``f[start:start + archive_size]``, in file order.

    ``comment_size`` is the length of the archive comment the caller has
    already found at the end of the file. Raises :class:`LayoutInvalid` for
    any archive that is not laid out exactly as described in the module docstring.
    """
    reader = _Reader(f, start, archive_size)
    end_pos = archive_size - comment_size - _END.size
    if end_pos < 0:
        raise LayoutInvalid("too short to be a ZIP archive")
    sig, disk, directory_disk, disk_entries, entries, directory_size, directory_offset, stated_comment = (
        _END.unpack(reader.read(end_pos, _END.size, "end record")))
    if sig != _END_SIG or stated_comment != comment_size:
        raise LayoutInvalid("the ZIP end record is missing or damaged")
    if disk != 0 or directory_disk != 0 or disk_entries != entries:
        raise LayoutInvalid("a multi-volume ZIP archive is not a rustoptim state file")

    directory_end = end_pos
    locator_pos = end_pos - _LOCATOR64.size
    if locator_pos >= 0 and reader.read(locator_pos, 4, "ZIP64 locator") == _LOCATOR64_SIG:
        # ZIP64: the real counts and offsets are in the ZIP64 end record, which
        # must sit right before the locator; the classic record holds them saturated.
        _, disk_with_end64, end64_pos, disks = _LOCATOR64.unpack(reader.read(locator_pos, _LOCATOR64.size, "locator"))
        if disk_with_end64 != 0 or disks != 1 or end64_pos != locator_pos - _END64.size:
            raise LayoutInvalid("the ZIP64 locator is damaged")
        (sig, record_size, _, _, disk, directory_disk, disk_entries64, entries64, directory_size64,
         directory_offset64) = _END64.unpack(reader.read(end64_pos, _END64.size, "ZIP64 end record"))
        if sig != _END64_SIG or record_size != _END64.size - 12 or disk != 0 or directory_disk != 0:
            raise LayoutInvalid("the ZIP64 end record is damaged")
        if disk_entries64 != entries64 or not (
            _agrees(entries, entries64, _SATURATED16)
            and _agrees(directory_size, directory_size64, _SATURATED32)
            and _agrees(directory_offset, directory_offset64, _SATURATED32)
        ):
            raise LayoutInvalid("the ZIP end records disagree")
        entries, directory_size, directory_offset = entries64, directory_size64, directory_offset64
        directory_end = end64_pos

    if directory_offset + directory_size != directory_end:
        raise LayoutInvalid("the ZIP central directory is not where the end record says")
    if entries < 1 or entries * _CENTRAL.size > directory_size:
        raise LayoutInvalid(f"the ZIP central directory cannot hold {entries} members")

    directory = reader.read(directory_offset, directory_size, "central directory")
    members: list[Member] = []
    pos = 0
    expected_offset = 0  # the members lie back to back from the first byte
    for index in range(entries):
        entry, pos = _central_entry(directory, pos, index)
        if entry.local_offset != expected_offset:
            raise LayoutInvalid(
                f"member {index} ({entry.name!r}) starts at byte {entry.local_offset}, not right after the "
                f"previous member (byte {expected_offset}): overlapping or padded members")
        member = _check_local_header(reader, entry, index)
        expected_offset = member.data_offset + member.size
        if expected_offset > directory_offset:
            raise LayoutInvalid(f"member {index} ({member.name!r}) runs into the central directory")
        members.append(member)
    if pos != directory_size:
        raise LayoutInvalid("the ZIP central directory has trailing bytes")
    if expected_offset != directory_offset:
        raise LayoutInvalid("there are bytes between the last member and the central directory")
    return members


def _agrees(classic: int, zip64: int, saturated: int) -> bool:
    return classic == zip64 or classic == saturated


class _CentralEntry(NamedTuple):
    name: str
    local_offset: int
    size: int
    crc32: int


def _central_entry(directory: bytes, pos: int, index: int) -> tuple[_CentralEntry, int]:
    if pos + _CENTRAL.size > len(directory):
        raise LayoutInvalid(f"the ZIP central directory ends inside entry {index}")
    (sig, _, _, flags, method, _, _, crc, compressed_size, size, name_len, extra_len, comment_len,
     disk, _, _, local_offset) = _CENTRAL.unpack_from(directory, pos)
    if sig != _CENTRAL_SIG:
        raise LayoutInvalid(f"ZIP central directory entry {index} is damaged")
    pos += _CENTRAL.size
    end = pos + name_len + extra_len + comment_len
    if end > len(directory):
        raise LayoutInvalid(f"ZIP central directory entry {index} runs past the directory")
    name = _name(directory[pos:pos + name_len], index)
    extra = directory[pos + name_len:pos + name_len + extra_len]
    values = _zip64_values(extra, [size == _SATURATED32, compressed_size == _SATURATED32,
                                   local_offset == _SATURATED32, disk == _SATURATED16], name)
    size = values[0] if values[0] is not None else size
    compressed_size = values[1] if values[1] is not None else compressed_size
    local_offset = values[2] if values[2] is not None else local_offset
    disk = values[3] if values[3] is not None else disk
    _check_stored(name, flags, method, compressed_size, size)
    if disk != 0:
        raise LayoutInvalid(f"member {name!r} is on another volume")
    return _CentralEntry(name, local_offset, size, crc), end


def _check_local_header(reader: _Reader, entry: _CentralEntry, index: int) -> Member:
    offset = entry.local_offset
    fixed = reader.read(offset, _LOCAL.size, f"local header of member {index}")
    sig, _, flags, method, _, _, crc, compressed_size, size, name_len, extra_len = _LOCAL.unpack(fixed)
    if sig != _LOCAL_SIG:
        raise LayoutInvalid(f"the local header of member {index} ({entry.name!r}) is damaged")
    variable = reader.read(offset + _LOCAL.size, name_len + extra_len, f"local header of member {index}")
    name = _name(variable[:name_len], index)
    if size == _SATURATED32 or compressed_size == _SATURATED32:
        # A ZIP64 local header carries both sizes in its extra field.
        size, compressed_size = _zip64_values(variable[name_len:], [True, True], name)
    _check_stored(name, flags, method, compressed_size, size)
    if name != entry.name or crc != entry.crc32 or size != entry.size:
        raise LayoutInvalid(f"the local header of member {index} ({entry.name!r}) disagrees with the central directory")
    return Member(entry.name, offset + _LOCAL.size + name_len + extra_len, entry.size, entry.crc32)


def _check_stored(name: str, flags: int, method: int, compressed_size: int, size: int) -> None:
    if method != _STORED or flags & ~_UTF8_NAMES or compressed_size != size:
        raise LayoutInvalid(
            f"member {name!r} is compressed, encrypted or written with a data descriptor "
            "(rustoptim state files store every member as is)")


def _name(raw: bytes, index: int) -> str:
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise LayoutInvalid(f"member {index} has a non-ASCII name") from None


def _zip64_values(extra: bytes, present: list[bool], name: str) -> list[int | None]:
    """The 8-byte values of the ZIP64 extra field for the header fields marked ``present``, in order."""
    values: list[int | None] = [None] * len(present)
    wanted = sum(present)
    if not wanted:
        return values
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4:pos + 4 + length]
        pos += 4 + length
        if len(body) != length:
            break
        if tag != _ZIP64_EXTRA:
            continue
        if length < 8 * wanted:
            break
        fields = iter(struct.unpack_from(f"<{wanted}Q", body))
        return [next(fields) if p else None for p in present]
    raise LayoutInvalid(f"member {name!r} lacks the ZIP64 sizes its header refers to")


class _Reader:
    """Bounded reads of the archive: a request outside the file is an error, never a large allocation."""

    def __init__(self, f: IO[bytes], start: int, size: int) -> None:
        self.f, self.start, self.size = f, start, size

    def read(self, offset: int, length: int, what: str) -> bytes:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise LayoutInvalid(f"the {what} lies outside the file")
        self.f.seek(self.start + offset)
        data = self.f.read(length)
        if len(data) != length:
            raise LayoutInvalid(f"the file ended inside the {what}")
        return data
