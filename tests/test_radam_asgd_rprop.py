"""RAdam, ASGD and Rprop beyond the generic table tests: resuming a run from a
state dict (float32 scalar state included) through every transport, bitwise
results for every thread count and SIMD level, torch's float32 scalar
arithmetic, and the torch behaviours these optimizers are known
for (ASGD's late eta and averaging, Rprop's once-read lr and NaN handling)."""

from __future__ import annotations

import numpy as np
import pytest

import rustoptim
from reference import ReferenceASGD, ReferenceRprop
from rustoptim import ASGD, Parameter, RAdam, Rprop, StateDictError
from test_runtime import restore_runtime, run_steps  # noqa: F401, F811 (a fixture)
from test_state_dict import TRANSPORTS, assert_no_shared_memory, assert_same_tree, make_optimizer, make_params, run

CONFIGS = [
    (RAdam, dict(lr=0.05, betas=(0.8, 0.9), weight_decay=0.1)),
    (RAdam, dict(lr=0.05, weight_decay=0.1, decoupled_weight_decay=True, maximize=True)),
    (ASGD, dict(lr=0.05, lambd=0.01, alpha=0.6, t0=2, weight_decay=0.01)),
    (ASGD, dict(lr=0.05, maximize=True)),
    (Rprop, dict(lr=0.05)),
    (Rprop, dict(lr=0.05, etas=(0.3, 1.5), step_sizes=(1e-3, 0.2), maximize=True)),
]
CONFIG_IDS = [f"{cls.__name__}-{i}" for i, (cls, _) in enumerate(CONFIGS)]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("cls,kwargs", CONFIGS, ids=CONFIG_IDS)
def test_resumed_run_is_bitwise_identical(cls, kwargs, dtype, transport, tmp_path):
    """Stop after 6 steps (RAdam rectified from step 6 with β2 = 0.9, ASGD averaging
    from step 5 with t0 = 2), move the state dict, continue for 6 more."""
    uninterrupted = make_params(dtype)
    reference = make_optimizer(cls, kwargs, uninterrupted)
    run(reference, uninterrupted, range(12))

    first = make_params(dtype)
    optimizer = make_optimizer(cls, kwargs, first)
    run(optimizer, first, range(6))
    sd = optimizer.state_dict()
    moved = TRANSPORTS[transport](sd, tmp_path) if transport == "file" else TRANSPORTS[transport](sd)

    second = [Parameter(p.data.copy(order="K")) for p in first]
    resumed = make_optimizer(cls, {**kwargs, "lr": 123.0}, second)
    resumed.load_state_dict(moved)
    assert_no_shared_memory(resumed, moved)
    assert_same_tree(resumed.state_dict(), optimizer.state_dict())
    run(resumed, second, range(6, 12))

    for p, q in zip(second, uninterrupted):
        np.testing.assert_array_equal(p.data, q.data)
    assert_same_tree(resumed.state_dict(), reference.state_dict())


@pytest.mark.parametrize("cls,kwargs", CONFIGS, ids=CONFIG_IDS)
def test_scalar_state_is_float32_for_float64_params(cls, kwargs):
    params = make_params(np.float64)
    optimizer = make_optimizer(cls, kwargs, params)
    run(optimizer, params, range(7))
    for entry in optimizer.state_dict()["state"].values():
        scalars = {k: v for k, v in entry.items() if not isinstance(v, np.ndarray)}
        assert list(scalars) == (["step", "eta", "mu"] if cls is ASGD else ["step"])
        for value in scalars.values():
            assert type(value) is float and float(np.float32(value)) == value


@pytest.mark.parametrize("cls,kwargs", CONFIGS, ids=CONFIG_IDS)
def test_step_count_stops_at_two_to_the_24_like_torchs_float32_step(cls, kwargs):
    params = make_params()
    optimizer = make_optimizer(cls, kwargs, params)
    run(optimizer, params, range(2))
    sd = optimizer.state_dict()
    for entry in sd["state"].values():
        entry["step"] = 2.0**24
    optimizer.load_state_dict(sd)
    run(optimizer, params, range(2, 4))
    assert all(entry["step"] == 2.0**24 for entry in optimizer.state_dict()["state"].values())
    assert all(np.isfinite(p.data).all() for p in params)


def test_torch_style_scalar_state_loads():
    """torch's state dict holds 0-d float32 tensors; as NumPy arrays they load as floats."""
    params = make_params()
    optimizer = make_optimizer(ASGD, dict(lr=0.05, t0=1), params)
    run(optimizer, params, range(4))
    sd = optimizer.state_dict()
    expected = optimizer.state_dict()
    for entry in sd["state"].values():
        for key in ("step", "eta", "mu"):
            entry[key] = np.array(entry[key], dtype=np.float32)
    optimizer.load_state_dict(sd)
    assert_same_tree(optimizer.state_dict(), expected)


@pytest.mark.parametrize("key,value", [("eta", -0.1), ("mu", float("nan")), ("eta", "0.1")])
def test_bad_asgd_scalar_state_is_refused(key, value):
    params = make_params()
    optimizer = make_optimizer(ASGD, dict(lr=0.05), params)
    run(optimizer, params, range(2))
    sd = optimizer.state_dict()
    before = optimizer.state_dict()
    sd["state"][0][key] = value
    with pytest.raises(StateDictError, match=rf"state\[0\]: '{key}' must be"):
        optimizer.load_state_dict(sd)
    assert_same_tree(optimizer.state_dict(), before)


def test_asgd_eta_follows_an_lr_change_one_step_late():
    w = np.ones(3)
    optimizer = ASGD([w], lr=0.1, lambd=0.0)
    optimizer.step(grads=[np.ones(3)])                 # eta = f32(0.1) for this step
    np.testing.assert_array_equal(w, 1 - np.float32(0.1).item())
    optimizer.param_groups[0]["lr"] = 0.5
    optimizer.step(grads=[np.ones(3)])                 # still the eta computed with lr = 0.1
    np.testing.assert_array_equal(w, 1 - 2 * np.float32(0.1).item())
    assert optimizer.state[optimizer.params[0]]["eta"] == float(np.float32(0.5))
    optimizer.step(grads=[np.ones(3)])
    np.testing.assert_array_equal(w, 1 - 2 * np.float32(0.1).item() - np.float32(0.5).item())


def test_asgd_averages_the_params_from_step_t0_plus_2():
    w = np.array([4.0])
    optimizer = ASGD([w], lr=0.1, lambd=0.0, t0=3)
    reference = ReferenceASGD([w], lr=0.1, lambd=0.0, t0=3)
    history = []
    for t in range(1, 9):
        optimizer.step(grads=[2 * w])
        reference.step([2 * reference.params[0]])
        history.append(w.copy())
        ax = optimizer.state[optimizer.params[0]]["ax"]
        if t <= 5:
            np.testing.assert_array_equal(ax, w)   # mu = 1: ax copies the param
        np.testing.assert_array_equal(w, reference.params[0])
        np.testing.assert_array_equal(ax, reference.state[0]["ax"])
    # Then ax is the running mean of the params since step t0 + 2 = 5 (up to
    # the float32 rounding of mu = 1/2, 1/3, ...).
    np.testing.assert_allclose(ax, np.mean(history[4:], axis=0), rtol=1e-7)


def test_rprop_reads_lr_only_when_a_params_state_is_created():
    a, b = np.zeros(2), np.zeros(2)
    optimizer = Rprop([a, b], lr=0.1)
    optimizer.step(grads=[np.ones(2), None])
    optimizer.param_groups[0]["lr"] = 0.3
    optimizer.step(grads=[np.ones(2), np.ones(2)])
    state = optimizer.state
    np.testing.assert_array_equal(state[optimizer.params[0]]["step_size"], 0.1 * 1.2)
    np.testing.assert_array_equal(state[optimizer.params[1]]["step_size"], 0.3)
    np.testing.assert_array_equal(a, -0.1 - 0.1 * 1.2)
    np.testing.assert_array_equal(b, -0.3)


def test_rprop_ignores_nan_gradients_like_torch():
    w = np.array([1.0, 1.0], dtype=np.float32)
    optimizer = Rprop([w], lr=0.1)
    reference = ReferenceRprop([w], lr=0.1)
    for grad in ([np.nan, 1.0], [1.0, np.nan], [1.0, 1.0], [-1.0, 1.0]):
        grad = np.array(grad, dtype=np.float32)
        optimizer.step(grads=[grad])
        reference.step([grad])
        np.testing.assert_array_equal(w, reference.params[0])
    state = optimizer.state[optimizer.params[0]]
    for key in ("prev", "step_size"):
        np.testing.assert_array_equal(state[key], reference.state[0][key])
    assert np.isfinite(w).all()


@pytest.mark.parametrize(
    "make,error,message",
    [
        (lambda p: Rprop(p, step_sizes=(1e-6, float("inf"))), ValueError, r"Invalid step_sizes: 1e-06, inf"),
        (lambda p: Rprop(p, step_sizes=(1e-6,)), TypeError, r"step_sizes must be a pair of real numbers"),
        (lambda p: Rprop(p, etas=np.array([0.5, 1.2])), TypeError, r"etas must be a pair of real numbers"),
        (lambda p: ASGD(p, t0=float("nan")), ValueError, r"Invalid t0 value: nan"),
        (lambda p: ASGD(p, t0="1"), TypeError, r"t0 must be a real number"),
        (lambda p: RAdam(p, betas=(0.9,)), ValueError, r"betas must be a pair"),
        (lambda p: RAdam(p, capturable=True), ValueError, r"capturable=True is not supported"),
        (lambda p: ASGD(p, differentiable=True), ValueError, r"differentiable=True is not supported"),
        (lambda p: Rprop(p, foreach="yes"), TypeError, r"foreach must be None or a bool"),
    ],
)
def test_constructor_refuses(make, error, message):
    with pytest.raises(error, match=message):
        make([np.zeros(2)])


def test_exported_from_the_package():
    for name in ("RAdam", "ASGD", "Rprop"):
        assert name in rustoptim.__all__ and getattr(rustoptim, name).__module__.startswith("rustoptim.")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "optimizer_class,kwargs,steps",
    [
        (RAdam, dict(lr=1e-2, weight_decay=0.1), 7),  # steps 6 and 7 rectified
        (RAdam, dict(lr=1e-2, weight_decay=0.1, decoupled_weight_decay=True, maximize=True), 7),
        (ASGD, dict(lr=1e-2, t0=0, weight_decay=0.01), 4),  # averaging from step 3
        (Rprop, dict(lr=1e-2, maximize=True), 4),
    ],
)
def test_bitwise_identical_for_every_thread_count_and_simd_level(restore_runtime, optimizer_class, kwargs, steps, dtype):  # noqa: F811 (the fixture)
    rustoptim.set_num_threads(1)
    rustoptim.set_simd_level("baseline")
    expected = run_steps(optimizer_class, kwargs, dtype, steps)
    for level in rustoptim.simd_levels():
        for threads in (1, 2, 3):
            rustoptim.set_num_threads(threads)
            rustoptim.set_simd_level(level)
            assert run_steps(optimizer_class, kwargs, dtype, steps) == expected, (level, threads)


def test_asgd_new_state_takes_its_groups_lr_even_after_reading_opt_state():
    a, b = np.ones(3), np.ones(2)
    optimizer = ASGD([{"params": [a]}, {"params": [b], "lr": 0.3}], lr=0.1, lambd=0.01, t0=0)
    assert optimizer.state[optimizer.params[0]] == {}  # reading creates an empty entry, as in torch
    references = [ReferenceASGD([a], lr=0.1, lambd=0.01, t0=0), ReferenceASGD([b], lr=0.3, lambd=0.01, t0=0)]
    for t in range(4):
        grads = [np.full(3, 0.5 + t), np.full(2, -1.5 + t)]
        optimizer.step(grads=grads)
        for reference, grad in zip(references, grads):
            reference.step([grad])
    for p, reference in zip(optimizer.params, references):
        np.testing.assert_array_equal(p.data, reference.params[0])
        assert optimizer.state[p] == {**reference.state[0], "ax": optimizer.state[p]["ax"]}
        np.testing.assert_array_equal(optimizer.state[p]["ax"], reference.state[0]["ax"])


def test_adams_half_power_is_pythons_pow_not_sqrt():
    """torch writes ``bias_correction2 ** 0.5`` (C pow); for this β2 at step 1,
    pow and sqrt of 1 - β2 differ in the last bit (0.8295720632035004 vs ...05)."""
    from reference import ReferenceAdam

    beta2 = 1 - 0.6881898080477126
    assert (1 - beta2) ** 0.5 != np.sqrt(1 - beta2)
    grad = np.linspace(0.1, 3.0, 2001)
    w = np.zeros_like(grad)
    kwargs = dict(lr=1.0, betas=(0.9, beta2), eps=1e-3)
    reference = ReferenceAdam([w], **kwargs)
    rustoptim.Adam([w], **kwargs).step(grads=[grad])
    reference.step([grad])
    np.testing.assert_array_equal(w, reference.params[0])
