"""Interleaved timing for benchmarks whose machine drifts while they run.

Every contender is a callable ``run(n)`` that performs ``n`` steps. Contenders
are measured in rounds, one sample of each per round (A B C, B C A, C A B, ...),
so a change of the machine's state (a memory-bandwidth regime switch, another
process waking up) hits all of them alike. Ratios between two contenders are
taken within each round and then summarized by their median, which is what
makes them comparable even when absolute times are not.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Callable

Run = Callable[[int], None]

_now_ns = time.perf_counter_ns


def calls_per_sample(run: Run, target_ns: float, max_calls: int = 1 << 20) -> int:
    """How many calls of ``run`` make one sample of at least ``target_ns``.

    Runs ``run(1)`` once untimed (first-touch allocation, lazy state), then
    grows the probe until it takes a quarter of the target.
    """
    run(1)
    calls = 1
    while True:
        start = _now_ns()
        run(calls)
        elapsed = max(_now_ns() - start, 1)
        if elapsed >= target_ns / 4 or calls >= max_calls:
            break
        calls = min(max_calls, calls * max(2, min(64, int(target_ns / 4 / elapsed) + 1)))
    per_call = elapsed / calls
    return max(1, min(max_calls, math.ceil(target_ns / per_call)))


@dataclass
class Samples:
    """Per-step times in nanoseconds, one entry per round, for each contender."""

    per_step_ns: dict[str, list[float]]
    calls: dict[str, int]

    def median(self, name: str) -> float:
        return statistics.median(self.per_step_ns[name])

    def ratio(self, numerator: str, denominator: str) -> float:
        """Median over rounds of ``time(numerator) / time(denominator)``."""
        pairs = zip(self.per_step_ns[numerator], self.per_step_ns[denominator])
        return statistics.median(a / b for a, b in pairs)

    def ratio_quartiles(self, numerator: str, denominator: str) -> tuple[float, float, float]:
        """Quartiles (q1, median, q3) over rounds of ``time(numerator) / time(denominator)``."""
        pairs = zip(self.per_step_ns[numerator], self.per_step_ns[denominator])
        ratios = [a / b for a, b in pairs]
        if len(ratios) < 2:
            return ratios[0], ratios[0], ratios[0]
        q1, q2, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
        return q1, statistics.median(ratios), q3

    def difference(self, minuend: str, subtrahend: str) -> float:
        """Median over rounds of ``time(minuend) - time(subtrahend)``."""
        pairs = zip(self.per_step_ns[minuend], self.per_step_ns[subtrahend])
        return statistics.median(a - b for a, b in pairs)

    def share(self, minuend: str, subtrahend: str) -> float:
        """Median over rounds of ``(time(minuend) - time(subtrahend)) / time(minuend)``."""
        pairs = zip(self.per_step_ns[minuend], self.per_step_ns[subtrahend])
        return statistics.median((a - b) / a for a, b in pairs)

    def values(self, name: str) -> list[float]:
        return list(self.per_step_ns[name])


def interleaved(
    runs: Mapping[str, Run],
    rounds: int,
    target_ns: float,
    warmup_rounds: int = 1,
) -> Samples:
    """Time every contender of ``runs`` ``rounds`` times, interleaved.

    Each sample is ``calls`` consecutive calls (calibrated so a sample lasts
    about ``target_ns``), timed with ``perf_counter_ns`` and divided by
    ``calls``. The order rotates from round to round so no contender always
    follows the same one.
    """
    names: Sequence[str] = list(runs)
    calls = {name: calls_per_sample(runs[name], target_ns) for name in names}
    for _ in range(warmup_rounds):
        for name in names:
            runs[name](calls[name])
    per_step: dict[str, list[float]] = {name: [] for name in names}
    for index in range(rounds):
        shift = index % len(names)
        for name in list(names[shift:]) + list(names[:shift]):
            run, count = runs[name], calls[name]
            start = _now_ns()
            run(count)
            per_step[name].append((_now_ns() - start) / count)
    return Samples(per_step, calls)


def repeat_call(function: Callable[[], object]) -> Run:
    """``run(n)``: call ``function()`` ``n`` times (a tight loop, no per-call timing)."""

    def run(n: int) -> None:
        f = function
        for _ in range(n):
            f()

    return run
