"""Weight averaging (rustoptim.swa_utils) against torch (tests/golden/ext)
and a NumPy reference, with state dicts, user functions and the error cases."""

from __future__ import annotations

import numpy as np
import pytest

import clip_reference as ref
import golden_ext
import rustoptim
from rustoptim import swa_utils
from rustoptim.errors import AliasError, DTypeError, ShapeError, StateDictError

AVERAGE_CASES = golden_ext.cases("ema") + golden_ext.cases("swa")
LAYOUTS = ["C", "F", "strided", "negative"]

SHAPES = [(5,), (3, 4), (), (0,), (40_000,), (7, 3)]
DTYPES = [np.float32, np.float64, np.float32, np.float64, np.float32, np.float64]


def weights(rng, scale_exponent=0.0):
    return [np.asarray(rng.standard_normal(s) * 10.0**scale_exponent).astype(d) for s, d in zip(SHAPES, DTYPES)]


# ------------------------------------------------------------------ torch golden


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", AVERAGE_CASES, ids=[c["name"] for c in AVERAGE_CASES])
def test_golden(case, layout, place):
    """Averages equal torch's bitwise after every update, whatever the layout
    of the weights passed in (and of the weights the model was built from)."""
    data = golden_ext.arrays(case)
    count = len(case["shapes"])
    kwargs = {"multi_avg_fn": swa_utils.get_ema_multi_avg_fn(case["decay"])} if case["kind"] == "ema" else {}
    params = [rustoptim.Parameter(place(data[f"model0_{i}"], layout)[0]) for i in range(count)]
    model = swa_utils.AveragedModel(params, **kwargs)
    for t in range(case["steps"]):
        currents = [place(data[f"model{t}_{i}"], layout)[0] for i in range(count)]
        for param, current in zip(params, currents):
            param.data[...] = current
        model.update_parameters(params if t % 2 else currents)
        for i in range(count):
            expected = data[f"avg{t}_{i}"]
            assert model.params[i].dtype == expected.dtype
            np.testing.assert_array_equal(model.params[i], expected, err_msg=f"update {t}, array {i}")
    assert model.n_averaged == case["n_averaged"]


# ------------------------------------------------------------- NumPy reference

BUILTINS = {
    "default": ({}, lambda a, x, n: ref.running_mean(a, x, n)),
    "swa_avg_fn": ({"avg_fn": swa_utils.get_swa_avg_fn()}, lambda a, x, n: ref.running_mean(a, x, n)),
    "ema_avg_fn": ({"avg_fn": swa_utils.get_ema_avg_fn(0.9)}, lambda a, x, n: ref.weighted_sum(a, x, 0.9)),
    "ema_multi": ({"multi_avg_fn": swa_utils.get_ema_multi_avg_fn(0.9)}, lambda a, x, n: ref.lerp(a, x, 1 - 0.9)),
    "ema_multi_low_decay": (
        {"multi_avg_fn": swa_utils.get_ema_multi_avg_fn(0.3)},
        lambda a, x, n: ref.lerp(a, x, 1 - 0.3),
    ),
    "swa_multi": (
        {"multi_avg_fn": swa_utils.get_swa_multi_avg_fn()},
        lambda a, x, n: ref.lerp(a, x, float(np.float32(1) / np.float32(n + 1))),
    ),
}


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_averages_match_the_reference(name):
    kwargs, formula = BUILTINS[name]
    rng = np.random.default_rng(len(name))
    first = weights(rng)
    model = swa_utils.AveragedModel(first, **kwargs)
    expected = [w.copy() for w in first]
    assert all(a is not w for a, w in zip(model.params, first))  # copies
    for n in range(5):
        current = weights(rng, n - 2)
        model.update_parameters(current)
        expected = [w.copy() for w in current] if n == 0 else [formula(a, x, n) for a, x in zip(expected, current)]
        for i, (average, want) in enumerate(zip(model.params, expected)):
            assert average.dtype == want.dtype and average.shape == want.shape
            if "multi" in name and "ema" in name or name == "swa_multi":
                # The reference's lerp is not exactly fused in float64: the
                # README's tolerance, relative to the largest magnitude.
                scale = np.abs(want).max(initial=0.0) * (2e-6 if want.dtype == np.float32 else 1e-12)
                np.testing.assert_allclose(average, want, rtol=0, atol=scale)
            else:
                np.testing.assert_array_equal(average, want, err_msg=f"update {n}, array {i}")
        expected = [a.copy() for a in model.params]
    assert model.n_averaged == 5


@pytest.mark.parametrize("name", ["ema_avg_fn", "swa_avg_fn", "ema_multi", "swa_multi"])
def test_builtins_called_directly_give_what_the_model_computes(name):
    """Called as torch calls a user function, each built-in gives bitwise what
    AveragedModel's single Rust call gives."""
    kwargs, _ = BUILTINS[name]
    fn = next(iter(kwargs.values()))
    rng = np.random.default_rng(3)
    first, second, third = weights(rng), weights(rng), weights(rng)
    model = swa_utils.AveragedModel(first, **kwargs)
    model.update_parameters(second)
    model.update_parameters(third)
    averages = [w.copy() for w in second]
    if "multi" in name:
        # torch passes n_averaged as a 0-d int64 tensor: a NumPy integer here.
        for dtype in (np.float32, np.float64):
            group = [i for i, d in enumerate(DTYPES) if d == dtype]
            fn([averages[i] for i in group], [third[i] for i in group], np.int64(1))
    else:
        averages = [np.asarray(fn(a, x, 1)) for a, x in zip(averages, third)]
    for average, want in zip(averages, model.params):
        assert average.dtype == want.dtype
        np.testing.assert_array_equal(average, want)


def test_swa_multi_weight_follows_the_type_of_n():
    """torch: 1 / (n + 1) is float32 for a tensor n, float64 for a Python int."""
    average, current = np.zeros(1), np.ones(1)
    swa_utils.get_swa_multi_avg_fn()([average], [current], 2)
    assert average[0] == 1 / 3
    average[0] = 0.0
    swa_utils.get_swa_multi_avg_fn()([average], [current], np.int64(2))
    assert average[0] == float(np.float32(1) / np.float32(3))


# -------------------------------------------------------------- user functions


def test_user_functions_are_called_as_torch_calls_them():
    calls = []

    def multi(averages, currents, n):
        calls.append(([a.dtype for a in averages], len(currents), n))
        for a, x in zip(averages, currents):
            a += x

    rng = np.random.default_rng(0)
    first = weights(rng)
    model = swa_utils.AveragedModel(first, multi_avg_fn=multi)
    model.update_parameters(first)
    model.update_parameters(first)
    model.update_parameters(first)
    # Once per dtype, in the order the dtypes first appear; n is a Python int.
    assert calls == [([np.float32] * 3, 3, 1), ([np.float64] * 3, 3, 1), ([np.float32] * 3, 3, 2), ([np.float64] * 3, 3, 2)]
    assert all(type(n) is int for _, _, n in calls)
    for average, w in zip(model.params, first):
        np.testing.assert_array_equal(average, w * 3)

    def single(average, current, n):
        return average * n + current

    model = swa_utils.AveragedModel(first, avg_fn=single)
    for _ in range(3):
        model.update_parameters(first)
    for average, w in zip(model.params, first):
        np.testing.assert_array_equal(average, (w * 1 + w) * 2 + w)


def test_an_avg_fn_returning_a_bad_array_changes_nothing():
    first = [np.zeros(3), np.zeros(2)]
    outputs = iter([np.ones(3), np.ones(5)])
    model = swa_utils.AveragedModel(first, avg_fn=lambda a, x, n: next(outputs))
    model.update_parameters(first)
    with pytest.raises(ShapeError, match="avg_fn returned shape"):
        model.update_parameters(first)
    assert model.n_averaged == 1
    np.testing.assert_array_equal(model.params[0], np.zeros(3))
    model = swa_utils.AveragedModel(first, avg_fn=lambda a, x, n: a.astype(np.complex128))
    model.update_parameters(first)
    with pytest.raises(DTypeError, match="avg_fn returned dtype complex128"):
        model.update_parameters(first)


# ------------------------------------------------------------------ state dicts


@pytest.mark.parametrize("name", ["default", "ema_multi", "swa_multi"])
def test_an_average_survives_save_and_load(name, tmp_path):
    kwargs, _ = BUILTINS[name]
    rng = np.random.default_rng(2)
    sequence = [weights(rng) for _ in range(6)]
    uninterrupted = swa_utils.AveragedModel(sequence[0], **kwargs)
    for w in sequence:
        uninterrupted.update_parameters(w)

    first = swa_utils.AveragedModel(sequence[0], **kwargs)
    for w in sequence[:3]:
        first.update_parameters(w)
    path = tmp_path / "average.rustoptim"
    rustoptim.save(first.state_dict(), path)
    resumed = swa_utils.AveragedModel(weights(rng), **kwargs)
    held = resumed.params[1]
    resumed.load_state_dict(rustoptim.load(path))
    assert resumed.params[1] is held  # loaded into the existing arrays
    assert resumed.n_averaged == 3
    for w in sequence[3:]:
        resumed.update_parameters(w)
    for a, b in zip(resumed.params, uninterrupted.params):
        np.testing.assert_array_equal(a, b)
    assert resumed.n_averaged == uninterrupted.n_averaged


def test_state_dict_holds_copies():
    model = swa_utils.AveragedModel([np.ones(2)])
    state = model.state_dict()
    state["params"][0][0] = 5.0
    assert model.params[0][0] == 1.0
    assert state["n_averaged"] == 0


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda s: s.pop("params"), "no 'params' entry"),
        (lambda s: s.update(extra=1), "unexpected key"),
        (lambda s: s.update(n_averaged=-1), "must be >= 0"),
        (lambda s: s.update(n_averaged=True), "must be an int"),
        (lambda s: s.update(n_averaged=2.5), "must be an int"),
        (lambda s: s["params"].pop(), "has 1 arrays, but this model averages 2"),
        (lambda s: s["params"].__setitem__(1, np.ones(3, np.float32)), r"\[1\] has dtype float32"),
        (lambda s: s["params"].__setitem__(1, np.ones(4)), r"\[1\] has shape \(4,\)"),
        (lambda s: s["params"].__setitem__(0, [1.0, 2.0]), r"\[0\] must be a numpy.ndarray"),
        (lambda s: s.update(params="x"), "must be a list of arrays"),
    ],
)
def test_a_bad_state_dict_changes_nothing(edit, match):
    model = swa_utils.AveragedModel([np.ones(2), np.ones(3)])
    model.update_parameters([np.ones(2), np.ones(3)])
    state = model.state_dict()
    state["params"] = [np.full(2, 7.0), np.full(3, 7.0)]
    state["n_averaged"] = 4
    edit(state)
    with pytest.raises(StateDictError, match=match):
        model.load_state_dict(state)
    assert model.n_averaged == 1
    np.testing.assert_array_equal(model.params[0], np.ones(2))
    np.testing.assert_array_equal(model.params[1], np.ones(3))
    with pytest.raises(StateDictError, match="must be a dict"):
        model.load_state_dict([1, 2])
    # torch stores n_averaged as a 0-d int64 tensor; an array is accepted.
    model.load_state_dict({"n_averaged": np.array(3), "params": [np.zeros(2), np.zeros(3)]})
    assert model.n_averaged == 3 and type(model.n_averaged) is int


# ------------------------------------------------------------------ bad input


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="Only one of avg_fn and multi_avg_fn"):
        swa_utils.AveragedModel([np.ones(2)], avg_fn=swa_utils.get_swa_avg_fn(), multi_avg_fn=swa_utils.get_swa_multi_avg_fn())
    with pytest.raises(TypeError, match="avg_fn must be callable"):
        swa_utils.AveragedModel([np.ones(2)], avg_fn=3)
    with pytest.raises(DTypeError, match=r"params\[1\] has dtype int64"):
        swa_utils.AveragedModel([np.ones(2), np.arange(2)])
    with pytest.raises(DTypeError, match=r"params\[0\] is a list"):
        swa_utils.AveragedModel([[1.0]])
    for decay in (-0.1, 1.5, float("nan")):
        for factory in (swa_utils.get_ema_avg_fn, swa_utils.get_ema_multi_avg_fn):
            with pytest.raises(ValueError, match=r"Invalid decay value .* \[0,1\] range"):
                factory(decay)


@pytest.mark.parametrize("n_updates", [0, 2])
def test_bad_weights_change_nothing(n_updates):
    model = swa_utils.AveragedModel([np.ones(2), np.ones((2, 2), np.float32)])
    for _ in range(n_updates):
        model.update_parameters([np.ones(2), np.ones((2, 2), np.float32)])
    good = np.full(2, 3.0)
    cases = [
        ([good], ValueError, "got 1 arrays"),
        ([good, np.ones((2, 2))], DTypeError, "current 1 has dtype float64, but its average has dtype float32"),
        ([good, np.ones((4,), np.float32)], ShapeError, r"current 1 has shape \(4,\), but its average has shape \(2, 2\)"),
        ([good, model.params[1]], AliasError, "share memory"),
    ]
    for currents, error, match in cases:
        with pytest.raises(error, match=match):
            model.update_parameters(currents)
        np.testing.assert_array_equal(model.params[0], np.ones(2))
        assert model.n_averaged == n_updates


def test_use_buffers_is_accepted_and_averages_every_array():
    model = swa_utils.AveragedModel([np.zeros(2)], use_buffers=True)
    model.update_parameters([np.ones(2)])
    model.update_parameters([np.full(2, 3.0)])
    np.testing.assert_array_equal(model.params[0], [2.0, 2.0])


def test_swalr_is_reexported_when_the_schedulers_are_present():
    lr_scheduler = pytest.importorskip("rustoptim.lr_scheduler")
    assert swa_utils.SWALR is lr_scheduler.SWALR


# ------------------------------------------------------ threads and SIMD levels


@pytest.fixture
def restore_runtime():
    threads = rustoptim.get_num_threads()
    yield
    rustoptim.set_num_threads(threads)
    rustoptim.set_simd_level(None)


def _average_run(name):
    kwargs, _ = BUILTINS[name]
    rng = np.random.default_rng(4)
    shapes = [(300_001,), (257, 131), (), (70_000,)]
    model = swa_utils.AveragedModel([np.zeros(s, np.float32) for s in shapes], **kwargs)
    for _ in range(3):
        currents = [np.asarray(rng.standard_normal(s)).astype(np.float32) for s in shapes]
        currents[1] = np.asfortranarray(currents[1])
        model.update_parameters(currents)
    return [a.tobytes() for a in model.params]


@pytest.mark.parametrize("name", list(BUILTINS))
def test_bitwise_identical_for_every_thread_count_and_simd_level(restore_runtime, name):
    rustoptim.set_num_threads(1)
    rustoptim.set_simd_level("baseline")
    expected = _average_run(name)
    for level in rustoptim.simd_levels():
        for threads in (1, 2, 3):
            rustoptim.set_num_threads(threads)
            rustoptim.set_simd_level(level)
            assert _average_run(name) == expected, (level, threads)
