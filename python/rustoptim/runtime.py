"""Run-time settings of the Rust core: worker threads and SIMD level.

Results never depend on these settings: every kernel gives bitwise the same
numbers for any thread count and any SIMD level. They exist for performance
tuning and for tests that check exactly that.

The thread count defaults to the ``RUSTOPTIM_NUM_THREADS`` environment variable,
or all cores. It is at most :func:`max_num_threads`: 1024, or the number of
cores if that is larger (more threads than cores only slow a step down, and
thousands of threads take many seconds to start). A ``RUSTOPTIM_NUM_THREADS``
that is not a whole number in that range is ignored, with a ``RuntimeWarning``
at import saying so, and all cores are used.
"""

from __future__ import annotations

import warnings

from . import _core

__all__ = [
    "set_num_threads", "get_num_threads", "max_num_threads", "simd_levels", "get_simd_level", "set_simd_level",
]


def set_num_threads(num_threads: int) -> None:
    """Use ``num_threads`` worker threads (1 to :func:`max_num_threads`) for every following step.

    Raises ``ValueError`` at once, before starting any thread, for a count out of range.
    """
    if isinstance(num_threads, bool) or not isinstance(num_threads, int):
        raise TypeError(f"num_threads must be an int, got {type(num_threads).__name__}")
    if num_threads < 1:
        raise ValueError(f"num_threads must be at least 1, got {num_threads}")
    limit = max_num_threads()
    if num_threads > limit:
        raise ValueError(
            f"num_threads must be at most {limit} (max_num_threads(): 1024, or the number of cores if larger), "
            f"got {num_threads}"
        )
    _core.set_num_threads(num_threads)


def max_num_threads() -> int:
    """The largest thread count :func:`set_num_threads` accepts: 1024, or the number of cores if larger."""
    return _core.max_num_threads()


def get_num_threads() -> int:
    """The number of worker threads kernels split their work across."""
    return _core.get_num_threads()


def simd_levels() -> list[str]:
    """The SIMD levels this CPU can run, lowest first (``"baseline"``, ``"avx2"``, ``"avx512"``)."""
    return list(_core.simd_levels())


def get_simd_level() -> str:
    """The SIMD level kernels run at now."""
    return _core.get_simd_level()


def set_simd_level(level: str | None) -> None:
    """Force a SIMD level from :func:`simd_levels`, or ``None`` for the best one this CPU has."""
    _core.set_simd_level(level)


def _warn_about_environment() -> None:
    problem = _core.num_threads_env_problem()
    if problem is not None:
        warnings.warn(problem, RuntimeWarning, stacklevel=2)


_warn_about_environment()
