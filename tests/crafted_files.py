"""Builders of hostile rustoptim state files, for the load regression and fuzz tests.

Every builder returns the bytes of a file with a valid ``rustoptim-state/1``
trailer (the whole-file CRC-32 is right), so a loader that trusts the trailer
gets past its first check and has to catch the problem in the archive itself.
The ZIP structures are written by hand here, so they can say things that
Python's ``zipfile`` would never write.
"""

from __future__ import annotations

import bz2
import io
import json
import struct
import zlib
from collections.abc import Sequence

import numpy as np
from numpy.lib import format as npy

TRAILER = b"rustoptim-state/1 crc32:"


def seal(data: bytes) -> bytes:
    """``data`` (a ZIP whose comment ends in ``crc32:`` plus 8 placeholder bytes) with its CRC filled in."""
    return data[:-8] + b"%08x" % zlib.crc32(data[:-8])


def header_json(root, arrays: int = 0, **overrides) -> bytes:
    fields = {"format": "rustoptim-state", "version": 1, "arrays": arrays, "root": root}
    fields.update(overrides)
    return json.dumps(fields).encode()


def npy_header(shape: tuple[int, ...], descr: str = "|u1", fortran_order: bool = False) -> bytes:
    buffer = io.BytesIO()
    npy.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": fortran_order, "shape": shape})
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def local_header(name: bytes, data: bytes, method: int = 0, stored_size: int = -1) -> bytes:
    size = len(data) if stored_size < 0 else stored_size
    return struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0x21, zlib.crc32(data), size, size,
                       len(name), 0) + name


def central_entry(name: bytes, data: bytes, offset: int, method: int = 0, compressed_size: int = -1,
                  size: int = -1) -> bytes:
    csize = len(data) if compressed_size < 0 else compressed_size
    usize = len(data) if size < 0 else size
    return struct.pack("<4s6H3L5HLL", b"PK\x01\x02", 20, 20, 0, method, 0, 0x21, zlib.crc32(data), csize, usize,
                       len(name), 0, 0, 0, 0, 0o644 << 16, offset) + name


def end_records(entries: int, directory_size: int, directory_offset: int) -> bytes:
    comment = TRAILER + b"00000000"
    return struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, entries, entries, directory_size, directory_offset,
                       len(comment)) + comment


def archive(members: Sequence[tuple[bytes, bytes]]) -> bytes:
    """A plain stored archive of ``(name, data)`` members, laid out as rustoptim writes it."""
    body, directory = b"", b""
    for name, data in members:
        directory += central_entry(name, data, len(body))
        body += local_header(name, data) + data
    return seal(body + directory + end_records(len(members), len(directory), len(body)))


def compressed_header_bomb(inflated_size: int) -> bytes:
    """header.json compressed with bzip2: a few kB that inflate to ``inflated_size`` bytes of JSON."""
    compressor = bz2.BZ2Compressor(9)
    head = b'{"format":"rustoptim-state","version":1,"arrays":0,"root":"'
    parts = [compressor.compress(head)]
    chunk = b"a" * (1 << 20)
    remaining = inflated_size - len(head) - 2
    while remaining > 0:
        parts.append(compressor.compress(chunk[: min(remaining, len(chunk))]))
        remaining -= len(chunk)
    parts.append(compressor.compress(b'"}'))
    parts.append(compressor.flush())
    packed = b"".join(parts)
    name = b"header.json"
    # The CRC and sizes describe the inflated data, as a real bzip2 member would.
    crc = 0
    remaining = inflated_size - len(head) - 2
    crc = zlib.crc32(head, crc)
    while remaining > 0:
        crc = zlib.crc32(chunk[: min(remaining, len(chunk))], crc)
        remaining -= len(chunk)
    crc = zlib.crc32(b'"}', crc)
    local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 46, 0, 12, 0, 0x21, crc, len(packed), inflated_size,
                        len(name), 0) + name
    central = struct.pack("<4s6H3L5HLL", b"PK\x01\x02", 46, 46, 0, 12, 0, 0x21, crc, len(packed), inflated_size,
                          len(name), 0, 0, 0, 0, 0o644 << 16, 0) + name
    body = local + packed
    return seal(body + central + end_records(1, len(central), len(body)))


def huge_array_count(count: int = 2**53 + 1) -> bytes:
    """A header declaring ``count`` arrays in an archive that holds none."""
    return archive([(b"header.json", header_json([], arrays=count))])


def nested_members(layers: int, payload: int) -> bytes:
    """Every array member stored inside the previous one's data (a "quoted overlap" bomb).

    The file holds ``payload`` bytes once, plus about 180 bytes per layer; a
    reader that trusts the central directory reads about ``layers * payload`` bytes.
    """
    names = [b"arrays/%d.npy" % i for i in range(layers)]
    # Build from the innermost member outwards: member i's data is its .npy
    # header followed by member i+1's local header and data.
    datas: list[bytes] = [b""] * layers
    npy_header_sizes = [0] * layers
    for i in reversed(range(layers)):
        rest = b"\0" * payload if i == layers - 1 else local_header(names[i + 1], datas[i + 1]) + datas[i + 1]
        head = npy_header((len(rest),))
        npy_header_sizes[i] = len(head)
        datas[i] = head + rest
    header = header_json([{"array": i} for i in range(layers)], arrays=layers)
    body = local_header(b"header.json", header) + header
    offsets = [len(body)]
    for i in range(layers - 1):
        offsets.append(offsets[i] + 30 + len(names[i]) + npy_header_sizes[i])
    body += local_header(names[0], datas[0]) + datas[0]
    directory = central_entry(b"header.json", header, 0)
    for i in range(layers):
        directory += central_entry(names[i], datas[i], offsets[i])
    return seal(body + directory + end_records(layers + 1, len(directory), len(body)))


def zip64_archive(members: Sequence[tuple[bytes, bytes]]) -> bytes:
    """A valid stored archive with every ZIP64 structure Python's zipfile writes for files over 2 GiB:
    ZIP64 sizes in the local headers, ZIP64 sizes and offsets in the central directory, and the
    ZIP64 end record and locator. Small enough for a test, laid out as a huge file would be."""
    body, directory = b"", b""
    for name, data in members:
        crc = zlib.crc32(data)
        extra = struct.pack("<HHQQ", 1, 16, len(data), len(data))
        local = struct.pack("<4s5H3L2H", b"PK\x03\x04", 45, 0, 0, 0, 0x21, crc, 0xFFFFFFFF, 0xFFFFFFFF,
                            len(name), len(extra)) + name + extra
        central_extra = struct.pack("<HHQQQ", 1, 24, len(data), len(data), len(body))
        directory += struct.pack("<4s6H3L5HLL", b"PK\x01\x02", 45, 45, 0, 0, 0, 0x21, crc, 0xFFFFFFFF,
                                 0xFFFFFFFF, len(name), len(central_extra), 0, 0, 0, 0o644 << 16,
                                 0xFFFFFFFF) + name + central_extra
        body += local + data
    end64 = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, len(members), len(members),
                        len(directory), len(body))
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, len(body) + len(directory), 1)
    comment = TRAILER + b"00000000"
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, len(comment))
    return seal(body + directory + end64 + locator + end + comment)


def members_of(data: bytes) -> list[tuple[bytes, bytes]]:
    """The ``(name, data)`` members of a valid file written by ``rustoptim.save`` (or :func:`archive`)."""
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return [(info.filename.encode(), zf.read(info)) for info in zf.infolist()]


# --------------------------------------------------------------------------- mutations of valid files
#
# Each mutation takes a random.Random and a valid file and returns a damaged or
# crafted variant, almost always with a valid trailer (so the loader's checks
# past the CRC are exercised, not just the CRC).


def _signatures(data: bytes, signature: bytes) -> list[int]:
    positions, pos = [], data.find(signature)
    while pos >= 0:
        positions.append(pos)
        pos = data.find(signature, pos + 1)
    return positions


def _maybe_seal(rng, data: bytes) -> bytes:
    if len(data) >= 8 and data[-40:].find(TRAILER) >= 0 and rng.random() < 0.9:
        return seal(data)
    return data


def flip_bits(rng, data: bytes) -> bytes:
    damaged = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        damaged[rng.randrange(len(damaged) - 8)] ^= 1 << rng.randrange(8)
    return _maybe_seal(rng, bytes(damaged))


def truncate(rng, data: bytes) -> bytes:
    if rng.random() < 0.3:
        return data[:rng.randrange(len(data))]  # the trailer is gone
    a = rng.randrange(len(data) - 40)
    b = rng.randint(a, len(data) - 40)
    return _maybe_seal(rng, data[:a] + data[b:])


def splice(rng, data: bytes, other: bytes) -> bytes:
    source = other if rng.random() < 0.5 else data
    a = rng.randrange(len(source))
    piece = source[a:a + rng.choice([1, 4, 30, 46, 200, 5000])]
    at = rng.randrange(len(data) - 40)
    if rng.random() < 0.5:  # overwrite
        mutated = data[:at] + piece + data[at + len(piece):]
        mutated = mutated[:len(data)]
    else:  # insert
        mutated = data[:at] + piece + data[at:]
    return _maybe_seal(rng, mutated)


_SIZE_CHOICES = [0, 1, 0xFFFF, 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000]


def edit_sizes(rng, data: bytes) -> bytes:
    """Change sizes, offsets, counts, methods or flags in local headers, the central directory or the end records."""
    damaged = bytearray(data)
    edits = [(pos, field) for pos in _signatures(data, b"PK\x01\x02")
             for field in (8, 10, 20, 24, 28, 30, 42)]  # flags, method, sizes, name/extra lengths, offset
    edits += [(pos, field) for pos in _signatures(data, b"PK\x03\x04") for field in (6, 8, 18, 22, 26, 28)]
    edits += [(pos, field) for pos in _signatures(data, b"PK\x05\x06") for field in (8, 10, 12, 16)]
    for _ in range(rng.randint(1, 3)):
        pos, field = rng.choice(edits)
        width = 4 if (data[pos:pos + 4] == b"PK\x01\x02" and field in (20, 24, 42)) or (
            data[pos:pos + 4] == b"PK\x03\x04" and field in (18, 22)) or (
            data[pos:pos + 4] == b"PK\x05\x06" and field in (12, 16)) else 2
        old = int.from_bytes(damaged[pos + field:pos + field + width], "little")
        new = rng.choice([old + 1, old - 1, old + rng.randint(2, 1000), old * 2, rng.randrange(len(data)),
                          *_SIZE_CHOICES, len(data)])
        new %= 1 << (8 * width)
        damaged[pos + field:pos + field + width] = new.to_bytes(width, "little")
    return _maybe_seal(rng, bytes(damaged))


def _json_text(node, raw: dict) -> str:
    """JSON text of ``node`` in which the strings that are keys of ``raw`` are replaced by raw JSON text."""
    text = json.dumps(node, separators=(",", ":"))
    for placeholder, replacement in raw.items():
        text = text.replace(json.dumps(placeholder), replacement)
    return text


_RAW_VALUES = [
    "1" + "0" * 400, "-1" + "0" * 400, "1e400", "-1e400", "NaN", "Infinity", str(2**63), str(-(2**63) - 1),
    "1" * 5000, "0.1" + "1" * 100, "1e-400", '{"int":"0x' + "f" * 20000 + '"}', '{"int":"0x_1"}',
    '{"int":" 0x1"}', '{"float":"7FF8000000000000"}', '{"float":"7ff8"}', '{"array":-1}', '{"array":99}',
    '{"array":0.0}', '{"array":true}', '{"scalar":["|O","0000000000000000"]}', '{"scalar":["<U1","61000000"]}',
    '{"scalar":["(2,)<f8","' + "00" * 16 + '"]}', '{"scalar":["<f8","00"]}', '{"scalar":["<f8","zz' + "0" * 14 + '"]}',
    '{"dict":[[[1],2]]}', '{"dict":[["a",1],["a",2]]}', '{"dict":[[1]]}', '{"tuple":5}', '{"complex":[1,2]}',
    '{"complex":[1.0]}', '{"set":[1]}', '{"tuple":[],"int":"0x1"}', '{}', '"\\ud800"', '"\\u0000"',
]


def _deep(rng) -> str:
    depth = rng.choice([99, 100, 101, 150, 400, 2000, 100_000])
    kind = rng.choice(["list", "tuple", "dict"])
    if kind == "list":
        return "[" * depth + "]" * depth
    if kind == "tuple":
        return '{"tuple":[' * depth + "]}" * depth
    return '{"dict":[["k",' * depth + "null" + "]]}" * depth


def _random_node_path(rng, node, path=()):
    """A random path of keys/indices into a parsed JSON value."""
    while True:
        children = list(node.items()) if isinstance(node, dict) else list(enumerate(node)) if isinstance(node, list) else []
        if not children or rng.random() < 0.3:
            return path
        key, node = rng.choice(children)
        path = path + (key,)


def _replace_at(node, path, value):
    if not path:
        return value
    copy = dict(node) if isinstance(node, dict) else list(node)
    copy[path[0]] = _replace_at(node[path[0]], path[1:], value)
    return copy


def rewrite_header(rng, data: bytes) -> bytes:
    """Rebuild a valid file with a rewritten header.json (numbers out of range, bad tags, deep nesting, ...)."""
    members = members_of(data)
    header = json.loads(members[0][1])
    choice = rng.random()
    raw = {}
    if choice < 0.25:
        header["arrays"] = rng.choice([-1, 0, header["arrays"] + 1, header["arrays"] - 1, 2**53 + 1, "1", 1.0,
                                       None, "@count"])
        raw["@count"] = "1" + "0" * 400
    elif choice < 0.3:
        header["version"] = rng.choice([2, 0, True, "1", 1.0])
    elif choice < 0.35:
        if rng.random() < 0.5:
            del header[rng.choice(sorted(header))]
        else:
            header["extra"] = 1
    else:
        path = _random_node_path(rng, header["root"])
        replacement = _deep(rng) if rng.random() < 0.25 else rng.choice(_RAW_VALUES)
        header["root"] = _replace_at(header["root"], path, "@node")
        raw["@node"] = replacement
    text = _json_text(header, raw).encode("utf-8", "surrogatepass")
    if rng.random() < 0.1:
        text = rng.choice([b"\xef\xbb\xbf", b" ", b"\xff", b""]) + text
    return archive([(b"header.json", text)] + members[1:])


_DESCRS = ["|O", "<U4", ">f8", "<f8", "<f4", "|V8", "|b1", "<f2", "<c16", "<M8[D]", "<m8[s]", "|S3",
           "[('a', '<f8')]", "('<f8', (2,))"]


def rewrite_npy(rng, data: bytes) -> bytes:
    """Rebuild a valid file with one .npy member's header rewritten (dtype, shape, order, version, length)."""
    members = members_of(data)
    if len(members) < 2:
        return rewrite_header(rng, data)
    index = rng.randrange(1, len(members))
    name, content = members[index]
    header_len = int.from_bytes(content[8:10], "little")
    payload = content[10 + header_len:]
    choice = rng.random()
    if choice < 0.7:
        descr = rng.choice(_DESCRS)
        n = len(payload)
        shape = rng.choice([(n,), (n + 1,), (max(n - 1, 0),), (-1,), (2**62,), (2**31, 2**31), (0, 2**62),
                            (2**62, 2**62, 0), (n // 8,), (n // 4,), (1,) * 40, ()])
        descr_text = descr if descr.startswith(("[", "(")) else repr(descr)
        fortran_text = rng.choice(["False", "True", "0", "None"])
        text = f"{{'descr': {descr_text}, 'fortran_order': {fortran_text}, 'shape': {shape!r}, }}"
        head = text.encode("latin1")
        head += b" " * (-(10 + len(head) + 1) % 64) + b"\n"
        content = b"\x93NUMPY\x01\x00" + len(head).to_bytes(2, "little") + head + payload
    elif choice < 0.85:
        content = content[:6] + bytes([rng.choice([0, 2, 3, 9]), 0]) + content[8:]
    else:
        new_len = rng.choice([0, header_len - 1, header_len + 1, 0xFFFF, len(content)]) % 0x10000
        content = content[:8] + new_len.to_bytes(2, "little") + content[10:]
    members[index] = (name, content)
    return archive(members)


def restructure(rng, data: bytes) -> bytes:
    """Same members, different archive: compressed, duplicated, reordered, renamed, nested or ZIP64."""
    import warnings
    import zipfile

    members = members_of(data)
    choice = rng.randrange(7)
    if choice == 0:
        method = rng.choice([zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", compression=method) as zf:
            zf.comment = TRAILER + b"00000000"
            for name, content in members:
                zf.writestr(name.decode(), content, compress_type=method if rng.random() < 0.7 else zipfile.ZIP_STORED)
        return seal(buffer.getvalue())
    if choice == 1:
        dup = rng.randrange(len(members))
        members.insert(rng.randrange(len(members) + 1), members[dup])
    elif choice == 2:
        rng.shuffle(members)
    elif choice == 3:
        i = rng.randrange(len(members))
        members[i] = (rng.choice([b"arrays/7.npy", b"header.json", b"../x", b"arrays/0.npy\0", b"\xff"]), members[i][1])
    elif choice == 4:
        del members[rng.randrange(len(members))]
    elif choice == 5:
        return nested_members(rng.randint(2, 40), rng.choice([0, 1, 1000, 100_000, 400_000]))
    else:
        return zip64_archive(members)  # valid: must load
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return archive(members)


MUTATIONS = {
    "flip_bits": lambda rng, data, other: flip_bits(rng, data),
    "truncate": lambda rng, data, other: truncate(rng, data),
    "splice": splice,
    "edit_sizes": lambda rng, data, other: edit_sizes(rng, data),
    "rewrite_header": lambda rng, data, other: rewrite_header(rng, data),
    "rewrite_npy": lambda rng, data, other: rewrite_npy(rng, data),
    "restructure": lambda rng, data, other: restructure(rng, data),
}
