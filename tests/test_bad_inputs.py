"""Bad inputs at step time: the right exception and message, and nothing
changed (params and state bitwise as before), even when the bad tensor comes
after tensors that were fine, or in a later group."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from optimizer_table import BY_NAME, CONFIG_IDS, CONFIGS, as_param, param_shape
from rustoptim import (
    SGD,
    Adam,
    AliasError,
    DTypeError,
    HyperparameterError,
    LayoutError,
    Parameter,
    ReadOnlyError,
    ShapeError,
)


def make_params(cls):
    """Three float64 params; the last one is the one the cases break. Optimizers
    of matrices (``only_2d`` in the table) get (1, 4) for (4,)."""
    rng = np.random.default_rng(5)
    return [Parameter(rng.standard_normal(param_shape(cls, shape))) for shape in [(4,), (3, 2), (4,)]]


def good_grads(params):
    return [np.full_like(p.data, 0.25) for p in params]


def _grad(value):
    """Case setup: the last param's grad becomes ``value(params)``."""
    def setup(params, optimizer):
        grads = good_grads(params)
        grads[-1] = value(params)
        return grads
    return setup


def _readonly_param(params, optimizer):
    params[-1].data.flags.writeable = False
    return good_grads(params)


def _integer_param(params, optimizer):
    params[-1].data = np.zeros(4, dtype=np.int64)
    return good_grads(params[:-1]) + [np.zeros(4, dtype=np.int64)]


def _overlapping_params(params, optimizer):
    # Two param arrays viewing the same memory (allowed at construction: they
    # are different arrays), caught by the core at step time.
    params[-1].data = params[0].data[::-1]
    return good_grads(params)


def _self_overlapping_param(params, optimizer):
    # A writeable view whose four elements are one memory location.
    params[-1].data = np.lib.stride_tricks.as_strided(params[-1].data, (4,), (0,), writeable=True)
    return good_grads(params)


def _state_in_wrong_layout(params, optimizer):
    # The first state array, replaced by a strided view of its shape.
    state = optimizer.state[params[1]]
    key = next(k for k, v in state.items() if isinstance(v, np.ndarray))
    shape = state[key].shape
    state[key] = np.zeros(shape[:-1] + (2 * shape[-1],))[..., ::2]
    return good_grads(params)


# (name, setup(params, optimizer) -> grads, exception, message regex)
CASES = [
    ("grad shape", _grad(lambda ps: np.zeros(3)), ShapeError,
     r"the grad of param 2 of param_groups\[0\] has shape \(3,\), but its param has shape \((1, )?4,?\)"),
    ("grad transposed", _grad(lambda ps: np.zeros((4, 1))), ShapeError, r"the grad of param 2 of param_groups\[0\] has shape \(4, 1\)"),
    ("grad float32", _grad(lambda ps: np.zeros(4, np.float32)), DTypeError,
     r"the grad of param 2 of param_groups\[0\] has dtype float32, expected float64"),
    ("grad int", _grad(lambda ps: np.zeros(4, np.int32)), DTypeError, r"the grad of param 2 of param_groups\[0\] has dtype int32"),
    ("grad a list", _grad(lambda ps: [0.0] * 4), DTypeError, r"the grad of param 2 of param_groups\[0\] is a list, not a NumPy array"),
    ("grad is its param", _grad(lambda ps: ps[-1].data), AliasError, r"param 2 of param_groups\[0\] and the grad of param 2 .*share memory"),
    ("grad is another param", _grad(lambda ps: ps[0].data), AliasError,
     r"param 0 of param_groups\[0\] and the grad of param 2 of param_groups\[0\] share memory"),
    ("read-only param", _readonly_param, ReadOnlyError, r"param 2 of param_groups\[0\] is read-only"),
    ("integer param", _integer_param, DTypeError, r"int64"),
    ("overlapping params", _overlapping_params, AliasError, r"param 0 of param_groups\[0\] and param 2 of param_groups\[0\] share memory"),
    ("param overlapping itself", _self_overlapping_param, AliasError,
     r"param 2 of param_groups\[0\] has elements that share memory with each other"),
    ("state in the wrong layout", _state_in_wrong_layout, LayoutError,
     r"state '\w+' of param 1 of param_groups\[0\] is not contiguous in its param's C order"),
]


def state_entries_before_any_step(cls, params) -> int:
    """Adagrad creates its state with the optimizer; the others at the first step."""
    return len({id(p) for p in params}) if BY_NAME[cls.__name__].eager_state else 0


def _keeps_arrays(cls, kwargs):
    params = make_params(cls)
    optimizer = cls(params, **kwargs)
    optimizer.step(grads=good_grads(params))
    return any(isinstance(v, np.ndarray) for entry in optimizer.state.values() for v in entry.values())


def snapshot(params, optimizer):
    state = {p: copy.deepcopy(entry) for p, entry in optimizer.state.items()}
    return [p.data.copy() for p in params], state, [dict(g) for g in optimizer.param_groups]


def assert_unchanged(params, optimizer, before):
    datas, state, groups = before
    for p, data in zip(params, datas):
        np.testing.assert_array_equal(p.data, data, strict=True)
    assert list(optimizer.state) == list(state)
    for p, entry in state.items():
        current = optimizer.state[p]
        assert list(current) == list(entry)
        for key, value in entry.items():
            if isinstance(value, np.ndarray):
                np.testing.assert_array_equal(current[key], value)
            else:
                assert current[key] == value
    assert [dict(g) for g in optimizer.param_groups] == groups


def _failed_step_cases():
    for (cls, kwargs), config_id in zip(CONFIGS, CONFIG_IDS):
        for name, setup, error, message in CASES:
            for first_step in (True, False):
                # A state array in the wrong layout needs state arrays to exist.
                if name == "state in the wrong layout" and (first_step or not _keeps_arrays(cls, kwargs)):
                    continue
                yield pytest.param(
                    cls, kwargs, setup, error, message, first_step,
                    id=f"{config_id}-{name}-{'fresh' if first_step else 'with-state'}",
                )


@pytest.mark.parametrize("cls,kwargs,setup,error,message,first_step", list(_failed_step_cases()))
def test_failed_step_changes_nothing(cls, kwargs, setup, error, message, first_step):
    params = make_params(cls)
    optimizer = cls(params, **kwargs)
    if not first_step:
        for p, g in zip(params, good_grads(params)):
            p.grad = g
        optimizer.step()
    grads = setup(params, optimizer)
    before = snapshot(params, optimizer)
    for p, g in zip(params, grads):
        p.grad = g
    with pytest.raises(error, match=message):
        optimizer.step()
    assert_unchanged(params, optimizer, before)
    if first_step:
        assert len(optimizer.state) == state_entries_before_any_step(cls, params)


@pytest.mark.parametrize("name,setup,error,message", [c for c in CASES if c[0] in (
    "grad shape", "grad float32", "grad a list", "read-only param", "integer param")], ids=lambda v: v if isinstance(v, str) else "")
@pytest.mark.parametrize("cls,kwargs", CONFIGS, ids=CONFIG_IDS)
def test_bad_tensor_in_a_later_group_changes_nothing(cls, kwargs, name, setup, error, message):
    """A step spanning several core calls is checked up front: the first group is not half-applied."""
    params = make_params(cls)
    optimizer = cls([{"params": params[:2]}, {"params": params[2:], "lr": 0.5}], **kwargs)
    grads = setup(params, optimizer)
    before = snapshot(params, optimizer)
    for p, g in zip(params, grads):
        p.grad = g
    with pytest.raises(error, match=r"param 0 of param_groups\[1\]"):
        optimizer.step()
    assert_unchanged(params, optimizer, before)
    assert len(optimizer.state) == state_entries_before_any_step(cls, params)


@pytest.mark.parametrize("cls,kwargs", CONFIGS, ids=CONFIG_IDS)
def test_bad_tensor_in_a_second_dtype_changes_nothing(cls, kwargs):
    params = make_params(cls) + [Parameter(as_param(cls, np.zeros(3, np.float32)))]
    optimizer = cls(params, **kwargs)
    before = snapshot(params, optimizer)
    grads = good_grads(params)
    grads[-1] = as_param(cls, np.zeros(3, np.float64))
    for p, g in zip(params, grads):
        p.grad = g
    # float32 and float64 params of one group share one core call.
    with pytest.raises(DTypeError, match=r"the grad of param 3 of param_groups\[0\] has dtype float64, expected float32 like its param"):
        optimizer.step()
    assert_unchanged(params, optimizer, before)


def test_interleaved_params_do_not_overlap():
    """Even and odd elements of one buffer are separate params: not an alias."""
    buffer = np.arange(8.0)
    even, odd = Parameter(buffer[0::2]), Parameter(buffer[1::2])
    optimizer = SGD([even, odd], lr=1.0)
    even.grad, odd.grad = np.ones(4), np.full(4, 2.0)
    optimizer.step()
    np.testing.assert_array_equal(buffer, np.arange(8.0) - np.tile([1.0, 2.0], 4))


@pytest.mark.parametrize("cls,kwargs", CONFIGS, ids=CONFIG_IDS)
def test_plain_array_grads_of_the_wrong_length(cls, kwargs):
    arrays = [as_param(cls, np.ones(3)), as_param(cls, np.ones(2))]
    optimizer = cls(arrays, **kwargs)
    before = [a.copy() for a in arrays]
    called = []
    with pytest.raises(ValueError, match=r"grads has 1 entries, but the optimizer has 2 params"):
        optimizer.step(lambda: called.append(1), grads=[np.ones(3)])
    with pytest.raises(ValueError, match=r"grads has 3 entries, but the optimizer has 2 params"):
        optimizer.step(grads=[np.ones(3), np.ones(2), None])
    with pytest.raises(TypeError, match=r"grads must be a list with one array \(or None\) per param"):
        optimizer.step(grads=np.ones((2, 3)))
    assert called == []  # the length is checked before the closure runs
    for a, b in zip(arrays, before):
        np.testing.assert_array_equal(a, b)
    assert len(optimizer.state) == state_entries_before_any_step(cls, arrays)


@pytest.mark.parametrize("cls,kwargs", CONFIGS, ids=CONFIG_IDS)
def test_hyperparameter_changed_to_a_non_number_is_named(cls, kwargs):
    params = make_params(cls)
    optimizer = cls(params, **kwargs)
    optimizer.param_groups[0]["lr"] = "0.1"
    for p, g in zip(params, good_grads(params)):
        p.grad = g
    before = snapshot(params, optimizer)
    with pytest.raises(HyperparameterError, match=r"param_groups\[0\]\['lr'\] must be a finite real number, got '0.1'"):
        optimizer.step()
    assert_unchanged(params, optimizer, before)


@pytest.mark.parametrize("cls,kwargs", CONFIGS, ids=CONFIG_IDS)
def test_non_number_hyperparameter_in_a_later_group_changes_nothing(cls, kwargs):
    params = make_params(cls)
    optimizer = cls([{"params": params[:1]}, {"params": params[1:]}], **kwargs)
    optimizer.param_groups[1]["lr"] = None
    for p, g in zip(params, good_grads(params)):
        p.grad = g
    before = snapshot(params, optimizer)
    with pytest.raises(HyperparameterError, match=r"param_groups\[1\]\['lr'\] must be a finite real number, got None"):
        optimizer.step()
    assert_unchanged(params, optimizer, before)


# Hyperparameter values a step refuses, whatever the group's position (each is
# checked before the first write): (value, message regex).
BAD_STEP_HYPERPARAMETERS = [
    (float("nan"), r"must be a finite real number, got nan"),
    (float("inf"), r"must be a finite real number, got inf"),
    (0.1 + 0.2j, r"must be a finite real number, got \(0.1\+0.2j\)"),
    (True, r"must be a finite real number, got True"),
    (np.array([0.1]), r"must be a finite real number, got array"),
    (np.array(0.1), r"must be a finite real number, got array"),
    (10**400, r"must be a finite real number"),
]


@pytest.mark.parametrize("group_index", [0, 1, 2])
@pytest.mark.parametrize("value,message", BAD_STEP_HYPERPARAMETERS, ids=repr)
@pytest.mark.parametrize("cls,kwargs", CONFIGS, ids=CONFIG_IDS)
def test_bad_lr_between_steps_is_refused_in_any_group(cls, kwargs, value, message, group_index):
    params = make_params(cls)
    optimizer = cls([{"params": [p]} for p in params], **kwargs)
    for p, g in zip(params, good_grads(params)):
        p.grad = g
    optimizer.step()
    optimizer.param_groups[group_index]["lr"] = value
    before = snapshot(params, optimizer)
    with pytest.raises(HyperparameterError, match=rf"param_groups\[{group_index}\]\['lr'\] {message}"):
        optimizer.step()
    assert_unchanged(params, optimizer, before)


@pytest.mark.parametrize("cls,kwargs", CONFIGS, ids=CONFIG_IDS)
def test_alias_across_groups_changes_nothing(cls, kwargs):
    """Memory shared between arrays of different groups is caught before the first write."""
    params = make_params(cls)
    params[2].data = params[0].data[::-1]
    optimizer = cls([{"params": params[:2]}, {"params": params[2:]}], **kwargs)
    for p, g in zip(params, good_grads(params)):
        p.grad = g
    before = snapshot(params, optimizer)
    with pytest.raises(AliasError, match=r"param 0 of param_groups\[0\] and param 0 of param_groups\[1\] share memory"):
        optimizer.step()
    assert_unchanged(params, optimizer, before)


def test_betas_of_the_wrong_length_in_a_later_group_changes_nothing():
    params = make_params(Adam)
    optimizer = Adam([{"params": params[:2]}, {"params": params[2:]}], lr=0.1)
    optimizer.param_groups[1]["betas"] = (0.9,)
    for p, g in zip(params, good_grads(params)):
        p.grad = g
    before = snapshot(params, optimizer)
    with pytest.raises(HyperparameterError, match=r"param_groups\[1\]\['betas'\] must be a pair"):
        optimizer.step()
    assert_unchanged(params, optimizer, before)


UNALIGNED = {
    "packed structured field": lambda: np.zeros(4, dtype=[("tag", "u1"), ("x", "<f8")])["x"],
    "odd byte offset": lambda: np.frombuffer(bytearray(41), np.float64, offset=3, count=4),
}


@pytest.mark.parametrize("role", ["param", "grad"])
@pytest.mark.parametrize("make", UNALIGNED.values(), ids=UNALIGNED.keys())
@pytest.mark.parametrize("cls,kwargs", CONFIGS, ids=CONFIG_IDS)
def test_unaligned_arrays_are_refused_before_any_write(cls, kwargs, make, role):
    """Strides that are not multiples of the item size, or data at an odd byte
    offset, are refused with LayoutError (they used to be written wrongly)."""
    params = make_params(cls)
    unaligned = as_param(cls, make())
    if not unaligned.flags.writeable:
        unaligned = np.lib.stride_tricks.as_strided(unaligned, writeable=True) if role == "param" else unaligned
    if role == "param":
        params[2] = Parameter(unaligned) if unaligned.flags.writeable else params[2]
    optimizer = cls([{"params": params[:2]}, {"params": params[2:]}], **kwargs)
    grads = good_grads(params)
    if role == "grad":
        grads[2] = unaligned
    for p, g in zip(params, grads):
        p.grad = g
    base = unaligned.base if unaligned.base is not None else unaligned
    raw_before = bytes(memoryview(base).cast("B")) if isinstance(base, (bytearray, np.ndarray)) else None
    before = snapshot(params, optimizer)
    with pytest.raises(LayoutError, match=r"not aligned to its 8-byte elements"):
        optimizer.step()
    assert_unchanged(params, optimizer, before)
    if raw_before is not None:
        assert bytes(memoryview(base).cast("B")) == raw_before


@pytest.mark.parametrize("entry", ["adam", "adafactor"])
@pytest.mark.parametrize(
    "batch",
    [
        "not a tuple",
        (0, {}, [], [], []),  # five fields
        (0, [], [], [], [], None),  # group not a dict
        (0, {}, [1], [], [None], None),  # grads shorter than params
        (0, {}, [], [], [], [3]),  # positions longer than params
        ("0", {}, [], [], [], None),  # index not an int
    ],
)
def test_malformed_core_batches_are_refused(entry, batch):
    """The core's step entry points refuse batches the optimizer classes never build."""
    from rustoptim import _core

    step = _core.step if entry == "adam" else _core.tensor_step
    with pytest.raises(ValueError, match="a step batch must be"):
        step(entry, [batch], {})


@pytest.mark.parametrize("cls", [Adam, BY_NAME["Adafactor"].cls])
def test_a_state_entry_that_is_not_a_dict_is_refused(cls):
    """A param's state replaced by something else is named, and the step changes nothing."""
    w, v = Parameter(np.ones((2, 3))), Parameter(np.ones((2, 3)))
    w.grad, v.grad = np.full((2, 3), 0.5), np.full((2, 3), 0.5)
    opt = cls([w, v])
    opt.state[v] = [1.0]
    with pytest.raises(ValueError, match=r"the state of param 1 of param_groups\[0\] must be a dict, got list"):
        opt.step()
    np.testing.assert_array_equal(w.data, np.ones((2, 3)))
    assert w not in opt.state
