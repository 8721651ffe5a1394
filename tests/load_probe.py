"""Loads hostile files in a child process and reports what each load did.

Run by the load tests in a subprocess, so that a loader that aborts or runs
out of memory fails a test instead of killing pytest (or the machine: the
child's address space is capped a little above what it has after importing).

    python load_probe.py files PATH...          load each file
    python load_probe.py fuzz SEED CASES        load CASES mutants of valid files (crafted_files.MUTATIONS)

prints one JSON line per load: {"case", "size", "header_len", "outcome", "message", "peak"},
where ``outcome`` is "loaded" or the exception's qualified class name and
``peak`` the peak of memory traced by tracemalloc during the load (Python
objects and NumPy array data), minus what was allocated before it.
``header_len`` is the size the first local header declares for its member
(header.json in a valid file), at most the file's size: the part of the file
that is parsed as JSON.
"""

from __future__ import annotations

import io
import json
import os
import random
import resource
import struct
import subprocess
import sys
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

import crafted_files  # noqa: E402
import rustoptim  # noqa: E402

HEADROOM = 1 << 30
BYTES_PER_HEADER_BYTE = 32
READ_BUFFER = 1 << 20
SLACK = 256 << 10


def memory_bound(row: dict) -> int:
    """What a load may allocate at most (the README's promise): the file's size, at most 32 bytes
    per byte of header.json (the Python objects it describes), one read buffer, and some slack."""
    return row["size"] + BYTES_PER_HEADER_BYTE * row["header_len"] + min(row["size"], READ_BUFFER) + SLACK


def cap_address_space() -> None:
    if not sys.platform.startswith("linux"):
        return
    with open("/proc/self/statm") as f:
        current = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_AS, (current + HEADROOM, resource.RLIM_INFINITY))


def declared_header_len(head: bytes, size: int) -> int:
    if len(head) < 30 or head[:4] != b"PK\x03\x04":
        return size
    compressed, uncompressed = struct.unpack_from("<2L", head, 18)
    return min(max(compressed, uncompressed), size)


def probe(case: str, source, size: int, head: bytes) -> dict:
    tracemalloc.reset_peak()
    before = tracemalloc.get_traced_memory()[0]
    try:
        rustoptim.load(source)
        outcome, message = "loaded", ""
    except BaseException as e:  # noqa: B036 - reporting everything is the point
        outcome, message = f"{type(e).__module__}.{type(e).__qualname__}", str(e)[:300]
    peak = tracemalloc.get_traced_memory()[1] - before
    return {"case": case, "size": size, "header_len": declared_header_len(head, size), "outcome": outcome,
            "message": message, "peak": peak}


def seed_files() -> list:
    """Valid files of the shapes state dicts have: several arrays, layouts, dtypes, tagged values."""
    rng = np.random.default_rng(7)
    values = [
        {"state": {i: {"step": 3.0, "exp_avg": rng.standard_normal((8, 4)).astype(np.float32),
                       "exp_avg_sq": rng.random((8, 4)).astype(np.float32)} for i in range(3)},
         "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "params": [0, 1, 2],
                           "foreach": None, "name": "group ü"}]},
        {"a": np.asfortranarray(rng.standard_normal((5, 3))), "b": np.float64(2.5), "c": np.zeros((0, 3)),
         "d": np.array(1.5), "e": np.arange(6, dtype=np.int8), "f": np.ones(3, dtype=bool),
         "g": (2**70, -(2**64), float("nan"), complex(1, -2)), "h": [[1, [2, (3,)]], {4: "x"}]},
        {"big": rng.standard_normal(20_000), "list": [rng.standard_normal(50) for _ in range(5)],
         "small": np.complex64(1 - 2j), "ints": list(range(100))},
    ]
    files = []
    for value in values:
        buffer = io.BytesIO()
        rustoptim.save(value, buffer)
        files.append(buffer.getvalue())
    return files


def run(*args: str) -> list:
    """Run this script in a child process with ``args``; returns its report, one dict per load."""
    result = subprocess.run([sys.executable, os.path.abspath(__file__), *args], capture_output=True, text=True,
                            timeout=900)
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 0, f"the probe died (exit code {result.returncode}) after {len(rows)} loads:\n" + (
        f"last case: {rows[-1] if rows else None}\n{result.stderr[-3000:]}")
    return rows


def main() -> None:
    mode = sys.argv[1]
    seeds = seed_files() if mode == "fuzz" else []
    tracemalloc.start()
    cap_address_space()
    if mode == "files":
        for path in sys.argv[2:]:
            with open(path, "rb") as f:
                head = f.read(30)
            print(json.dumps(probe(os.path.basename(path), path, os.path.getsize(path), head)), flush=True)
        return
    seed, cases = int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(seed)
    names = sorted(crafted_files.MUTATIONS)
    for i in range(cases):
        name = names[i % len(names)]
        data, other = rng.choice(seeds), rng.choice(seeds)
        mutant = crafted_files.MUTATIONS[name](rng, data, other)
        source = io.BytesIO(mutant)
        print(json.dumps(probe(f"{name}#{i}", source, len(mutant), mutant[:30])), flush=True)
        del source, mutant


if __name__ == "__main__":
    main()
