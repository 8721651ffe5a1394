"""Seeded mutation fuzzing of rustoptim.load.

Thousands of damaged and crafted variants of valid state files (bit flips,
truncations, splices, rewritten sizes/offsets/methods, rewritten header.json and
.npy headers, compressed, duplicated, reordered, nested and ZIP64 archives; see
tests/crafted_files.py) are loaded in a child process (tests/load_probe.py).
Every load must either succeed or raise FileFormatError (or MemoryError), and
must stay within the memory bound the README promises (load_probe.memory_bound).

RUSTOPTIM_FUZZ_CASES and RUSTOPTIM_FUZZ_SEED run a longer or different campaign.
"""

from __future__ import annotations

import collections
import os

import pytest

from load_probe import memory_bound
from load_probe import run as run_probe

CASES = int(os.environ.get("RUSTOPTIM_FUZZ_CASES", "2100"))
SEED = int(os.environ.get("RUSTOPTIM_FUZZ_SEED", "20261124"))
ALLOWED = {"loaded", "rustoptim.errors.FileFormatError", "builtins.MemoryError"}


@pytest.fixture(scope="module")
def fuzz_rows():
    return run_probe("fuzz", str(SEED), str(CASES))


def test_every_mutant_loads_or_raises_file_format_error(fuzz_rows):
    assert len(fuzz_rows) == CASES
    unexpected = [row for row in fuzz_rows if row["outcome"] not in ALLOWED]
    assert not unexpected, "\n".join(map(str, unexpected[:20]))


def test_memory_stays_bounded_by_the_file_size(fuzz_rows):
    over = [row for row in fuzz_rows if row["peak"] > memory_bound(row)]
    assert not over, "\n".join(map(str, over[:20]))


def test_the_fuzzing_reaches_past_the_checksum(fuzz_rows):
    """Guards the fuzzer itself: mutants must mostly carry a valid CRC and hit many different checks."""
    by_mutation = collections.defaultdict(collections.Counter)
    for row in fuzz_rows:
        by_mutation[row["case"].split("#")[0]][row["outcome"]] += 1
    for mutation, outcomes in by_mutation.items():
        assert outcomes["rustoptim.errors.FileFormatError"] > 0, mutation
    crc_failures = sum("CRC-32 mismatch" in row["message"] for row in fuzz_rows)
    assert crc_failures < 0.2 * len(fuzz_rows)
    distinct = {row["message"].split(": ", 2)[-1][:50] for row in fuzz_rows if row["outcome"] != "loaded"}
    assert len(distinct) > 100
    assert by_mutation["restructure"]["loaded"] > 0  # the ZIP64 variants are valid files
