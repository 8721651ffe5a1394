"""Plain NumPy arrays as params, gradients passed with ``step(grads=[...])``:
the same numbers, state and state dicts as the Parameter/.grad usage."""

from __future__ import annotations

import numpy as np
import pytest

from optimizer_table import CONFIG_IDS, CONFIGS, as_param, param_shape
from rustoptim import SGD, Parameter

SHAPES = [(5,), (2, 3), (), (4, 2)]


def initial_arrays(dtype, cls):
    rng = np.random.default_rng(9)
    arrays = [np.asarray(rng.standard_normal(param_shape(cls, s)), dtype=dtype) for s in SHAPES]
    arrays[3] = np.asfortranarray(arrays[3])
    return arrays


def grads_at(t, dtype, cls):
    rng = np.random.default_rng(t)
    grads = [np.asarray(rng.standard_normal(param_shape(cls, s)), dtype=dtype) for s in SHAPES]
    if t % 3 == 1:
        grads[2] = None  # skip param 2 at this step
    return grads


def groups_of(items):
    return [{"params": items[:2]}, {"params": items[2:], "lr": 0.01}]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("cls,kwargs", CONFIGS, ids=CONFIG_IDS)
def test_plain_arrays_match_parameters(cls, kwargs, dtype):
    arrays = initial_arrays(dtype, cls)
    plain = cls(groups_of(arrays), **kwargs)
    params = [Parameter(a.copy(order="K")) for a in arrays]
    wrapped = cls(groups_of(params), **kwargs)

    assert [p.data for p in plain.params] == arrays  # identity: each .data is the caller's array
    assert all(p.data is a for p, a in zip(plain.params, arrays))

    for t in range(6):
        grads = grads_at(t, dtype, cls)
        assert plain.step(grads=grads) is None
        for p, g in zip(params, grads):
            p.grad = g
        wrapped.step()
        for a, p in zip(arrays, params):
            np.testing.assert_array_equal(a, p.data, strict=True)

    assert all(p.grad is None for p in plain.params)  # grads= is never stored
    ours, theirs = plain.state_dict(), wrapped.state_dict()
    assert ours["param_groups"] == theirs["param_groups"]
    assert list(ours["state"]) == list(theirs["state"])
    for index, entry in ours["state"].items():
        assert list(entry) == list(theirs["state"][index])
        for key, value in entry.items():
            np.testing.assert_array_equal(value, theirs["state"][index][key], strict=True)


@pytest.mark.parametrize("cls,kwargs", CONFIGS, ids=CONFIG_IDS)
def test_grads_override_dot_grad_for_one_step(cls, kwargs):
    def vector(value):
        return as_param(cls, np.full(3, value))

    a, b = Parameter(vector(1.0)), Parameter(vector(1.0))
    optimizer = cls([a, b], **kwargs)
    stored = vector(5.0)
    a.grad = b.grad = stored
    reference_a, reference_b = Parameter(vector(1.0)), Parameter(vector(1.0))
    reference = cls([reference_a, reference_b], **kwargs)

    optimizer.step(grads=[vector(0.5), None])  # b is skipped although b.grad is set
    reference_a.grad = vector(0.5)
    reference.step()
    np.testing.assert_array_equal(a.data, reference_a.data)
    np.testing.assert_array_equal(b.data, vector(1.0))
    assert a.grad is stored and b.grad is stored


def test_mixing_parameters_and_arrays_and_the_closure():
    w = np.zeros(3)
    b = Parameter(np.zeros(()))
    optimizer = SGD([{"params": [w]}, {"params": [b], "lr": 0.5}], lr=0.1)
    assert optimizer.params[1] is b and optimizer.params[0].data is w

    def closure():
        return "loss"

    assert optimizer.step(closure, grads=[np.ones(3), np.array(2.0)]) == "loss"
    np.testing.assert_array_equal(w, [-0.1, -0.1, -0.1])
    assert b.data == -1.0


def test_duplicate_arrays_take_one_grad():
    """A param listed twice is one entry of ``params`` and of ``grads``, updated twice."""
    a, c = np.zeros(2), np.zeros(1)
    with pytest.warns(UserWarning):
        optimizer = SGD([a, c, a], lr=1.0)
    assert len(optimizer.params) == 2
    optimizer.step(grads=[np.ones(2), np.ones(1)])
    np.testing.assert_array_equal(a, [-2.0, -2.0])
    np.testing.assert_array_equal(c, [-1.0])
