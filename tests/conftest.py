"""Shared fixtures of rustoptim's optimizer tests: arrays in every memory layout."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest

#: What the buffer elements around a strided view hold; a step must not touch them.
SENTINEL = 1234.5


def place_array(values: np.ndarray, layout: str) -> tuple[np.ndarray, np.ndarray]:
    """A writeable copy of ``values`` in ``layout`` and the buffer it lives in.

    ``"C"``/``"F"``: a contiguous copy (the buffer is the array itself).
    ``"strided"``: every other element of a larger 1-D buffer, reshaped (a view).
    ``"negative"``: the same, walking the buffer backwards (negative strides).
    In the strided layouts the elements of ``buffer[0::2]`` are not part of the
    view and hold ``SENTINEL``.
    """
    values = np.asarray(values)
    assert layout in ("C", "F", "strided", "negative"), layout
    if layout in ("C", "F"):
        array = np.array(values, order=layout, copy=True)
        return array, array
    size = values.size
    buffer = np.full(2 * size + 1, SENTINEL, dtype=values.dtype)
    walk = buffer if layout == "strided" else buffer[::-1]
    view = walk[1::2][:size].reshape(values.shape)
    assert size == 0 or np.shares_memory(view, buffer), "reshape copied"
    view[...] = values
    return view, buffer


def assert_untouched_outside(buffer: np.ndarray, view: np.ndarray) -> None:
    """The buffer elements around a strided view still hold ``SENTINEL``."""
    if buffer is not view:
        assert np.all(buffer[0::2] == SENTINEL)


@pytest.fixture
def place() -> Callable[[np.ndarray, str], tuple[np.ndarray, np.ndarray]]:
    return place_array


@pytest.fixture
def untouched() -> Callable[[np.ndarray, np.ndarray], None]:
    return assert_untouched_outside
