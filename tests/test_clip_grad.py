"""Gradient clipping against torch (tests/golden/ext) and a NumPy reference,
in every layout and dtype, with the error cases.

Tolerances (tests/golden/ext/README.md): 1e-12 (float64) / 2e-6 (float32) of
the largest magnitude. Where rustoptim reproduces torch's rounding (p = 2, 1,
inf and clip_grad_value_ on tensors of at most 32768 elements, C order) the
golden cases are also compared bitwise.
"""

from __future__ import annotations

import math
import threading
import time
import warnings

import numpy as np
import pytest

import clip_reference as ref
import golden_ext
import rustoptim
from rustoptim.errors import AliasError, DTypeError, LayoutError, NonFiniteNormError, ReadOnlyError, ShapeError

CLIP_CASES = golden_ext.cases("clip_grad_norm") + golden_ext.cases("clip_grad_value")
LAYOUTS = ["C", "F", "strided", "negative"]
NORM_TYPES = [2.0, 1.0, math.inf, -math.inf, 0.0, 3.0, 0.5, -1.5]
EXACT_NORMS = (2.0, 1.0, math.inf)


def assert_close(actual, expected, what: str) -> None:
    """The README's clipping tolerance, relative to the largest magnitude."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, what
    if expected.size == 0:
        return
    scale = max(float(np.nanmax(np.abs(expected.astype(np.float64)))), 1e-300)
    tolerance = 2e-6 if expected.dtype == np.float32 else 1e-12
    error = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    assert np.array_equal(np.isnan(actual), np.isnan(expected)), what
    finite = ~np.isnan(expected)
    assert np.all(error[finite] <= tolerance * scale), f"{what}: error {error[finite].max():.3g} of {scale:.3g}"


def random_grads(rng, shapes, dtypes):
    return [np.asarray(rng.standard_normal(s) * 10.0 ** rng.uniform(-3, 3, s)).astype(d) for s, d in zip(shapes, dtypes)]


# ------------------------------------------------------------------ torch golden


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("as_parameters", [False, True])
@pytest.mark.parametrize("case", CLIP_CASES, ids=[c["name"] for c in CLIP_CASES])
def test_golden(case, layout, as_parameters, place, untouched):
    data = golden_ext.arrays(case)
    count = len(case["shapes"])
    placed = [place(data[f"g{i}"], layout) for i in range(count)]
    grads = [view for view, _ in placed]
    if as_parameters:
        params = []
        for grad in grads:
            param = rustoptim.Parameter(np.zeros(grad.shape, grad.dtype))
            param.grad = grad
            params.append(param)
    else:
        params = grads
    if case["kind"] == "clip_grad_norm":
        total = rustoptim.clip_grad_norm_(params, case["max_norm"], float(case["norm_type"]))
        assert isinstance(total, float)
        exact = layout != "F" and float(case["norm_type"]) in EXACT_NORMS
        if exact:
            assert total == float(data["total_norm"])
        assert_close(np.float64(total), data["total_norm"], "total_norm")
    else:
        assert rustoptim.clip_grad_value_(params, case["clip_value"]) is None
        exact = True
    for i, (grad, buffer) in enumerate(placed):
        expected = data[f"clipped{i}"]
        assert grad.dtype == expected.dtype
        if exact:
            np.testing.assert_array_equal(grad, expected, err_msg=f"grad {i}")
        assert_close(grad, expected, f"grad {i}")
        untouched(buffer, grad)


# ------------------------------------------------------------- NumPy reference

SHAPES = [(7,), (), (0,), (3, 5), (40_000,), (2, 2, 3), (1,), (33, 31)]


@pytest.mark.parametrize("norm_type", NORM_TYPES)
@pytest.mark.parametrize("dtypes", ["float32", "float64", "mixed32first", "mixed64first"])
def test_total_norm_and_clipping_match_the_reference(norm_type, dtypes):
    rng = np.random.default_rng([NORM_TYPES.index(norm_type), len(dtypes)])
    # inf, -inf and negative norms are undefined for empty tensors (as in torch).
    shapes = [s for s in SHAPES if 0 <= norm_type < math.inf or 0 not in s]
    if dtypes in ("float32", "float64"):
        kinds = [np.dtype(dtypes)] * len(shapes)
    else:
        first, second = (np.float32, np.float64) if dtypes == "mixed32first" else (np.float64, np.float32)
        kinds = [first if i % 3 != 1 else second for i in range(len(shapes))]
    grads = random_grads(rng, shapes, kinds)
    grads[0][3] = 0.0
    expected_total = ref.total_norm(grads, norm_type)
    assert_close(rustoptim.get_total_norm(grads, norm_type), expected_total, "get_total_norm")
    originals = [g.copy() for g in grads]
    max_norm = 0.5 * float(expected_total)
    total = rustoptim.clip_grad_norm_(grads, max_norm, norm_type)
    assert total == rustoptim.get_total_norm(originals, norm_type)
    assert_close(np.float64(total), expected_total, "clip_grad_norm_ total")
    # The scaling itself is bitwise torch's, given the total in its dtype.
    coefficient = ref.clip_coefficient(max_norm, type(expected_total)(total))
    for i, (grad, original) in enumerate(zip(grads, originals)):
        np.testing.assert_array_equal(grad, ref.scaled(original, coefficient), err_msg=f"grad {i}")


def test_p0_counts_tensors_with_a_non_zero_element():
    grads = [np.array([3.0, 4.0, 0.0]), np.zeros((2, 2)), np.array(0.5), np.zeros(0)]
    assert rustoptim.get_total_norm(grads, 0) == 2.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clip_grad_value_matches_the_reference(dtype):
    rng = np.random.default_rng(5)
    grads = random_grads(rng, SHAPES, [dtype] * len(SHAPES))
    grads[0][:3] = [np.nan, np.inf, -np.inf]
    expected = [ref.clamped(g, 0.7) for g in grads]
    rustoptim.clip_grad_value_(grads, 0.7)
    for grad, want in zip(grads, expected):
        np.testing.assert_array_equal(grad, want)


def test_get_total_norm_then_clip_grads_with_norm_equals_clip_grad_norm_():
    rng = np.random.default_rng(9)
    for kinds in ([np.float32] * 3, [np.float64, np.float32, np.float32], [np.float32, np.float64, np.float32]):
        grads = random_grads(rng, [(), (5,), (300,)], kinds)
        copies = [g.copy() for g in grads]
        total = rustoptim.get_total_norm(grads)
        rustoptim.clip_grads_with_norm_(grads, 0.1, total)
        assert rustoptim.clip_grad_norm_(copies, 0.1) == total
        for a, b in zip(grads, copies):
            np.testing.assert_array_equal(a, b)


# ------------------------------------------------------------------------ API


def test_parameters_stand_for_their_grads_and_none_grads_are_skipped():
    with_grad = rustoptim.Parameter(np.zeros(2))
    with_grad.grad = np.array([3.0, 4.0])
    without = rustoptim.Parameter(np.zeros(3))
    total = rustoptim.clip_grad_norm_([with_grad, without], 1.0)
    assert total == 5.0
    assert without.grad is None
    np.testing.assert_array_equal(with_grad.grad, np.array([3.0, 4.0]) * ((1 / (5 + 1e-6)) * 1.0))
    assert rustoptim.clip_grad_norm_(without, 1.0) == 0.0
    assert rustoptim.clip_grad_norm_([], 1.0) == 0.0


def test_a_single_array_and_zero_dim_and_empty_grads():
    grad = np.array([[3.0], [4.0]], dtype=np.float32)
    assert rustoptim.clip_grad_norm_(grad, 10.0) == 5.0
    np.testing.assert_array_equal(grad, np.array([[3.0], [4.0]], np.float32))  # coef 1
    scalar = np.array(-2.0)
    rustoptim.clip_grad_value_([scalar, np.zeros(0)], 1.0)
    assert scalar == -1.0
    assert rustoptim.get_total_norm(np.zeros((0, 3))) == 0.0


def test_non_finite_totals_scale_like_torch_or_raise():
    grads = [np.array([1.0, np.inf, -2.0]), np.array([1.0, 3.0])]
    assert rustoptim.clip_grad_norm_(grads, 1.0) == math.inf
    np.testing.assert_array_equal(grads[0], [0.0, np.nan, -0.0])
    np.testing.assert_array_equal(grads[1], [0.0, 0.0])
    grads = [np.array([1.0, np.nan]), np.array([2.0])]
    with pytest.raises(NonFiniteNormError, match="non-finite, so it cannot be clipped") as raised:
        rustoptim.clip_grad_norm_(grads, 1.0, error_if_nonfinite=True)
    assert isinstance(raised.value, RuntimeError)
    np.testing.assert_array_equal(grads[1], [2.0])
    with pytest.raises(RuntimeError, match="order inf"):
        rustoptim.get_total_norm(grads, "inf", error_if_nonfinite=True)


def test_an_empty_generator_warns_like_torch():
    with pytest.warns(UserWarning, match="empty generator"):
        assert rustoptim.clip_grad_norm_((p for p in []), 1.0) == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rustoptim.clip_grad_norm_([], 1.0)


@pytest.mark.parametrize("foreach", [None, True, False])
def test_foreach_is_accepted(foreach):
    grad = np.array([3.0, 4.0])
    assert rustoptim.clip_grad_norm_([grad], 1.0, foreach=foreach) == 5.0
    rustoptim.clip_grad_value_([grad], 0.1, foreach=foreach)
    assert rustoptim.get_total_norm([grad], foreach=foreach) == pytest.approx(0.1 * math.sqrt(2))


def test_read_only_grads_can_be_measured():
    grad = np.array([3.0, 4.0])
    grad.flags.writeable = False
    assert rustoptim.get_total_norm([grad]) == 5.0


# ------------------------------------------------------------------ bad input


def _fresh():
    return [np.array([3.0, 4.0]), np.arange(6, dtype=np.float32).reshape(2, 3)]


def _assert_unchanged(grads):
    for grad, original in zip(grads, _fresh()):
        np.testing.assert_array_equal(grad, original)


def _clip_everything(grads):
    """Every writing entry point, each expected to refuse."""
    yield lambda: rustoptim.clip_grad_norm_(grads, 0.1)
    yield lambda: rustoptim.clip_grad_value_(grads, 0.1)
    yield lambda: rustoptim.clip_grads_with_norm_(grads, 0.1, 10.0)


@pytest.mark.parametrize(
    "make_bad, error, match",
    [
        (lambda: np.arange(3), DTypeError, "grad 2 has dtype int64"),
        (lambda: np.ones(3, dtype=">f8"), DTypeError, "grad 2 has dtype >f8"),
        (lambda: np.ones(3, dtype=np.float16), DTypeError, "grad 2 has dtype float16"),
        (lambda: _read_only(), ReadOnlyError, "grad 2 is read-only"),
        (lambda: np.lib.stride_tricks.as_strided(np.ones(4), (3, 2), (8, 0), writeable=True), AliasError, "grad 2"),
        (lambda: np.frombuffer(bytearray(8 * 3 + 1), dtype=np.float64, offset=1, count=3), LayoutError, "aligned"),
    ],
)
def test_a_bad_grad_raises_before_any_grad_changes(make_bad, error, match):
    grads = _fresh()
    bad = make_bad()
    for call in _clip_everything(grads + [bad]):
        with pytest.raises(error, match=match):
            call()
        _assert_unchanged(grads)


def _read_only():
    array = np.ones(3)
    array.flags.writeable = False
    return array


def test_grads_sharing_memory_are_refused():
    base = np.arange(10.0)
    for grads in ([base[:6], base[4:]], [base, base]):
        for call in _clip_everything(grads):
            with pytest.raises(AliasError, match="share memory"):
                call()
        np.testing.assert_array_equal(base, np.arange(10.0))
    # Interleaved views of one buffer do not overlap.
    rustoptim.clip_grad_value_([base[0::2], base[1::2]], 3.0)
    np.testing.assert_array_equal(base, np.minimum(np.arange(10.0), 3.0))


def test_entries_that_are_not_arrays_or_parameters():
    with pytest.raises(DTypeError, match=r"parameters\[1\] is a list"):
        rustoptim.clip_grad_norm_([np.ones(2), [1.0, 2.0]], 1.0)
    param = rustoptim.Parameter(np.zeros(2))
    param.grad = [1.0, 2.0]
    with pytest.raises(DTypeError, match="grad 0 is a list"):
        rustoptim.clip_grad_value_([param], 1.0)


@pytest.mark.parametrize("norm_type", [math.inf, -math.inf, -1.0])
def test_norms_without_identity_refuse_empty_grads(norm_type):
    grads = [np.array([1.0, -2.0]), np.zeros((2, 0))]
    with pytest.raises(ShapeError, match=r"grad 1 is empty \(shape \(2, 0\)\)"):
        rustoptim.clip_grad_norm_(grads, 0.5, norm_type)
    np.testing.assert_array_equal(grads[0], [1.0, -2.0])
    with pytest.raises(ShapeError):
        rustoptim.get_total_norm(grads, norm_type)


def test_bad_numbers_are_refused():
    grad = np.array([3.0, 4.0])
    with pytest.raises(ValueError, match="norm_type must be a number"):
        rustoptim.clip_grad_norm_([grad], 1.0, norm_type=math.nan)
    for bad in (math.nan, -1.0):
        with pytest.raises(ValueError, match="max_norm must be a non-negative number"):
            rustoptim.clip_grad_norm_([grad], bad)
        with pytest.raises(ValueError, match="max_norm"):
            rustoptim.clip_grads_with_norm_([grad], bad, 5.0)
        with pytest.raises(ValueError, match="clip_value must be a non-negative number"):
            rustoptim.clip_grad_value_([grad], bad)
    with pytest.raises(TypeError, match="max_norm must be a number"):
        rustoptim.clip_grad_norm_([grad], np.ones(2))
    np.testing.assert_array_equal(grad, [3.0, 4.0])


# ------------------------------------------------------ threads and SIMD levels


@pytest.fixture
def restore_runtime():
    threads = rustoptim.get_num_threads()
    yield
    rustoptim.set_num_threads(threads)
    rustoptim.set_simd_level(None)


def _clip_run(dtype, norm_type):
    rng = np.random.default_rng(1)
    shapes = [(300_001,), (257, 131), (3,), (), (70_000,), (1000, 100)]
    grads = random_grads(rng, shapes, [dtype] * len(shapes))
    grads[1] = np.asfortranarray(grads[1])
    grads[4] = np.repeat(grads[4], 2)[::2]  # strided
    total = rustoptim.clip_grad_norm_(grads, 1.0, norm_type)
    clamped = [g.copy() for g in grads]
    rustoptim.clip_grad_value_(clamped, 1e-3)
    return [np.float64(total).tobytes()] + [g.tobytes() for g in grads + clamped]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf, 0.0, 3.0])
def test_bitwise_identical_for_every_thread_count_and_simd_level(restore_runtime, dtype, norm_type):
    rustoptim.set_num_threads(1)
    rustoptim.set_simd_level("baseline")
    expected = _clip_run(dtype, norm_type)
    for level in rustoptim.simd_levels():
        for threads in (1, 2, 3, 5):
            rustoptim.set_num_threads(threads)
            rustoptim.set_simd_level(level)
            assert _clip_run(dtype, norm_type) == expected, (level, threads)


def test_gil_is_released_while_a_large_clip_runs(restore_runtime):
    """Another Python thread keeps running while the norm and scaling run in Rust."""
    rustoptim.set_num_threads(1)
    grad = np.full(30_000_000, 0.5, dtype=np.float32)
    ticks = []
    started, done = threading.Event(), threading.Event()

    def count():
        started.wait()
        while not done.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0)

    counter = threading.Thread(target=count)
    counter.start()
    started.set()
    start = time.perf_counter()
    rustoptim.clip_grad_norm_([grad], 1.0)
    end = time.perf_counter()
    done.set()
    counter.join()
    during = [t for t in ticks if start < t < end]
    assert len(during) > 10, f"{len(during)} ticks during a {1e3 * (end - start):.1f} ms clip"


def test_per_gradient_norms_for_the_distributed_code():
    """_core.tensor_norms: each gradient's norm in its own dtype, None skipped."""
    from rustoptim import _core

    grads = [np.array([3.0, 4.0], np.float32), None, np.array([[1.0], [-2.0]]), np.zeros(0)]
    for norm_type in (2.0, 1.0, 3.0):
        norms = _core.tensor_norms(grads, norm_type)
        assert norms == [rustoptim.get_total_norm(g, norm_type) for g in grads if g is not None]
    assert _core.tensor_norms(grads, 0.0) == [2.0, 2.0, 0.0]  # non-zero elements per gradient
    with pytest.raises(ShapeError):
        _core.tensor_norms(grads, math.inf)
