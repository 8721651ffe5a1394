"""The Rust kernels against the pure-NumPy reference (tests/reference.py).

Optimizers of matrices (``only_2d`` in the table) get the same shapes as
matrices of as many elements (``param_shape``).

Every option combination of every optimizer in the table
(tests/optimizer_table.py), float32 and float64, shapes
including 0-d and empty ones, and params and grads in C order, Fortran order,
strided views and views with negative strides. The reference fuses the same
multiply-adds as torch, so results agree to a few ulps (in practice bitwise).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import rustoptim
from optimizer_table import BY_NAME, REFERENCE_CONFIGS, REFERENCE_IDS, param_shape
from reference import ReferenceAdam

LAYOUTS = ("C", "F", "strided", "negative")  # see conftest.place_array
SHAPES = [(7,), (3, 5), (2, 2, 3), (), (0,), (1,), (4, 1, 3), (33, 17)]
DTYPES = [np.float32, np.float64]
MAX_ULP = 4

def random_grad(rng, shape, dtype):
    """Gradients spanning 1e-6..1e2 in magnitude, with exact zeros."""
    values = rng.standard_normal(shape) * 10.0 ** rng.integers(-6, 3, size=shape)
    values = np.where(rng.random(shape) < 0.1, 0.0, values)
    return np.asarray(values, dtype=dtype)


def assert_same(actual, expected, what):
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, what
    np.testing.assert_array_max_ulp(actual, expected, maxulp=MAX_ULP)


def assert_param_matches(info, actual, expected, what):
    """In ulps, or at the row's ``reference_rtol`` (of the largest magnitude) when
    the reference's arithmetic only approximates the kernel's (Muon's products)."""
    if info.reference_rtol is None:
        assert_same(actual, expected, what)
        return
    assert actual.shape == expected.shape and actual.dtype == expected.dtype, what
    rtol = info.reference_rtol[expected.dtype.name]
    scale = np.abs(expected).max() if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=what)


def assert_state_matches(optimizer, params, reference):
    for i, p in enumerate(params):
        expected = reference.state[i]
        actual = optimizer.state.get(p)
        if expected is None:
            assert not actual
            continue
        assert list(actual) == list(expected), f"state keys of param {i}"
        for key, value in expected.items():
            if not isinstance(value, np.ndarray):  # step, NAdam's mu_product, ASGD's eta and mu: float32 values, exactly
                assert type(actual[key]) is float and actual[key] == value, f"state {key} of param {i}"
            else:
                assert_same(actual[key], value, f"state {key} of param {i}")


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("info,kwargs", REFERENCE_CONFIGS, ids=REFERENCE_IDS)
def test_every_option_matches_reference(info, kwargs, dtype, place, untouched):
    optimizer_class, reference_class = info.cls, info.reference
    rng = np.random.default_rng(7)
    shapes = [param_shape(info.cls, shape) for shape in SHAPES]
    initial = [np.asarray(rng.standard_normal(shape), dtype=dtype) for shape in shapes]
    # Params and grads cycle through the layouts, never pairing the same one.
    placed = [place(values, LAYOUTS[i % 4]) for i, values in enumerate(initial)]
    params = [rustoptim.Parameter(view) for view, _ in placed]
    optimizer = optimizer_class(params, **kwargs)
    reference = reference_class(initial, **{**info.reference_extra, **kwargs})
    for t in range(6):
        if t == 3:
            optimizer.param_groups[0]["lr"] = reference.lr = 0.02
        grads = [random_grad(rng, shape, dtype) for shape in shapes]
        if t == 2:
            grads[1] = None  # skipped: no decay, no step count, no state change
        for i, (p, g) in enumerate(zip(params, grads)):
            p.grad = None if g is None else place(g, LAYOUTS[(i + 1) % 4])[0]
        optimizer.step()
        reference.step(grads)
        for i, ((view, buffer), p) in enumerate(zip(placed, params)):
            assert p.data is view
            assert_param_matches(info, view, reference.params[i], f"param {i} after step {t}")
            untouched(buffer, view)
        assert_state_matches(optimizer, params, reference)


@pytest.mark.parametrize("grad_layout", LAYOUTS)
@pytest.mark.parametrize("param_layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("name", [name for name, info in BY_NAME.items() if info.reference is not None])
def test_every_layout_pair_matches_reference(name, dtype, param_layout, grad_layout, place, untouched):
    info = BY_NAME[name]
    kwargs = info.configs[0]
    rng = np.random.default_rng(11)
    shapes = [param_shape(info.cls, shape) for shape in SHAPES]
    initial = [np.asarray(rng.standard_normal(shape), dtype=dtype) for shape in shapes]
    placed = [place(values, param_layout) for values in initial]
    params = [rustoptim.Parameter(view) for view, _ in placed]
    optimizer = info.cls(params, **kwargs)
    reference = info.reference(initial, **{**info.reference_extra, **kwargs})
    for _ in range(4):
        grads = [random_grad(rng, shape, dtype) for shape in shapes]
        for p, g in zip(params, grads):
            p.grad = place(g, grad_layout)[0]
        optimizer.step()
        reference.step(grads)
    for i, (view, buffer) in enumerate(placed):
        assert_param_matches(info, view, reference.params[i], f"param {i}")
        untouched(buffer, view)
    assert_state_matches(optimizer, params, reference)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_float32_and_float64_in_one_group(dtype):
    """A group mixing dtypes makes one core call per dtype; both match the reference."""
    rng = np.random.default_rng(3)
    other = np.float64 if dtype == np.float32 else np.float32
    initial = [np.asarray(rng.standard_normal(s), dtype=d) for s, d in zip(SHAPES, itertools.cycle([dtype, other]))]
    params = [rustoptim.Parameter(v.copy()) for v in initial]
    optimizer = rustoptim.Adam(params, lr=0.05, amsgrad=True)
    reference = ReferenceAdam(initial, lr=0.05, amsgrad=True)
    for _ in range(3):
        grads = [random_grad(rng, v.shape, v.dtype) for v in initial]
        for p, g in zip(params, grads):
            p.grad = g
        optimizer.step()
        reference.step(grads)
    for i, p in enumerate(params):
        assert_same(p.data, reference.params[i], f"param {i}")
    assert_state_matches(optimizer, params, reference)
