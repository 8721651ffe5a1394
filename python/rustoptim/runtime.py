"""Run-time settings of the Rust core: worker threads and SIMD level.

Results never depend on these settings: every kernel gives bitwise the same
numbers for any thread count and any SIMD level. They exist for performance
tuning and for tests that check exactly that.

The thread count defaults to the ``RUSTOPTIM_NUM_THREADS`` environment variable,
or all cores.
"""

from __future__ import annotations

from typing import List, Optional

from . import _core

__all__ = ["set_num_threads", "get_num_threads", "simd_levels", "get_simd_level", "set_simd_level"]


def set_num_threads(num_threads: int) -> None:
    """Use ``num_threads`` worker threads (at least 1) for every following step."""
    if isinstance(num_threads, bool) or not isinstance(num_threads, int):
        raise TypeError(f"num_threads must be an int, got {type(num_threads).__name__}")
    if num_threads < 1:
        raise ValueError(f"num_threads must be at least 1, got {num_threads}")
    _core.set_num_threads(num_threads)


def get_num_threads() -> int:
    """The number of worker threads kernels split their work across."""
    return _core.get_num_threads()


def simd_levels() -> List[str]:
    """The SIMD levels this CPU can run, lowest first (``"baseline"``, ``"avx2"``, ``"avx512"``)."""
    return list(_core.simd_levels())


def get_simd_level() -> str:
    """The SIMD level kernels run at now."""
    return _core.get_simd_level()


def set_simd_level(level: Optional[str]) -> None:
    """Force a SIMD level from :func:`simd_levels`, or ``None`` for the best one this CPU has."""
    _core.set_simd_level(level)
