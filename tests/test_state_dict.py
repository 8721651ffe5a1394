"""state_dict / load_state_dict: torch's layout, copies in both directions,
bitwise-identical resumption (in memory, pickle, deepcopy, file), and
malformed state dicts rejected with StateDictError without changing anything."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

import rustoptim
from optimizer_table import CONFIG_IDS, CONFIGS, OPTIMIZERS, as_param, param_shape
from rustoptim import SGD, Adadelta, Adagrad, Adam, Adamax, AdamW, NAdam, Parameter, RMSprop, StateDictError

SHAPES = [(4,), (3, 2), (), (2, 3)]


def make_params(dtype=np.float64, cls=None):
    """Params of SHAPES (as matrices for optimizers of matrices, ``only_2d``)."""
    rng = np.random.default_rng(0)
    shapes = SHAPES if cls is None else [param_shape(cls, s) for s in SHAPES]
    arrays = [np.asarray(rng.standard_normal(s), dtype=dtype) for s in shapes]
    arrays[3] = np.asfortranarray(arrays[3])
    return [Parameter(a) for a in arrays]


def make_optimizer(cls, kwargs, params):
    """Two groups (the second with its own lr), as a scheduler-driven run would have."""
    return cls([{"params": params[:2]}, {"params": params[2:], "lr": 0.01}], **kwargs)


def grads_at(t, params):
    """Deterministic grads; param 1 has none at steps 0 and 3."""
    rng = np.random.default_rng(100 + t)
    grads = [np.asarray(rng.standard_normal(p.data.shape), dtype=p.data.dtype) for p in params]
    if t in (0, 3):
        grads[1] = None
    return grads


def run(optimizer, params, steps):
    for t in steps:
        for p, g in zip(params, grads_at(t, params)):
            p.grad = g
        optimizer.step()


def assert_same_tree(a, b, path="sd"):
    """Equal structure, equal values, arrays bitwise equal with the same dtype and shape."""
    assert type(a) is type(b), f"{path}: {type(a)} != {type(b)}"
    if isinstance(a, dict):
        assert list(a) == list(b), f"{path}: keys {list(a)} != {list(b)}"
        for k in a:
            assert_same_tree(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_tree(x, y, f"{path}[{i}]")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, path
        np.testing.assert_array_equal(a, b, err_msg=path)
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


def arrays_in(tree):
    if isinstance(tree, dict):
        for v in tree.values():
            yield from arrays_in(v)
    elif isinstance(tree, (list, tuple)):
        for v in tree:
            yield from arrays_in(v)
    elif isinstance(tree, np.ndarray):
        yield tree


def assert_no_shared_memory(optimizer, tree):
    ours = [a for entry in optimizer.state.values() for a in arrays_in(entry)]
    ours += [p.data for g in optimizer.param_groups for p in g["params"]]
    for theirs in arrays_in(tree):
        assert not any(np.shares_memory(theirs, a) for a in ours)


# ---------------------------------------------------------------- layout


def test_layout_matches_torch():
    params = make_params()
    optimizer = make_optimizer(Adam, dict(lr=0.05, amsgrad=True), params)
    run(optimizer, params, range(2))
    sd = optimizer.state_dict()
    assert list(sd) == ["state", "param_groups"]
    assert sd["param_groups"] == [
        {"lr": 0.05, "betas": (0.9, 0.999), "eps": 1e-08, "weight_decay": 0, "amsgrad": True, "maximize": False,
         "foreach": None, "capturable": False, "differentiable": False, "fused": None,
         "decoupled_weight_decay": False, "params": [0, 1]},
        {"lr": 0.01, "betas": (0.9, 0.999), "eps": 1e-08, "weight_decay": 0, "amsgrad": True, "maximize": False,
         "foreach": None, "capturable": False, "differentiable": False, "fused": None,
         "decoupled_weight_decay": False, "params": [2, 3]},
    ]
    # The group's own key (lr) first, then the defaults, then 'params' last.
    assert list(sd["param_groups"][1]) == list(sd["param_groups"][0])
    # Entries follow the order params first got state (param 1 had no grad at step 0).
    assert list(sd["state"]) == [0, 2, 3, 1]
    for index, entry in sd["state"].items():
        assert list(entry) == ["step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"]
        assert type(entry["step"]) is float
        assert entry["step"] == (1.0 if index == 1 else 2.0)
        assert entry["exp_avg"].shape == params[index].data.shape
    assert_no_shared_memory(optimizer, sd)


def test_sgd_without_momentum_has_empty_state():
    params = make_params()
    optimizer = SGD(params, lr=0.1)
    run(optimizer, params, range(2))
    assert optimizer.state_dict()["state"] == {}


def test_duplicates_leave_gaps_in_the_numbering():
    a, b, c = Parameter(np.zeros(1)), Parameter(np.zeros(1)), Parameter(np.zeros(1))
    with pytest.warns(UserWarning):
        optimizer = SGD([{"params": [a, a, b]}, {"params": [c]}])
    assert [g["params"] for g in optimizer.state_dict()["param_groups"]] == [[1, 1, 2], [3]]


@pytest.mark.parametrize("cls,kwargs", CONFIGS, ids=CONFIG_IDS)
def test_no_aliasing_in_either_direction(cls, kwargs):
    params = make_params(cls=cls)
    optimizer = make_optimizer(cls, kwargs, params)
    run(optimizer, params, range(3))
    sd = optimizer.state_dict()
    snapshot = copy.deepcopy(sd)
    assert_no_shared_memory(optimizer, sd)

    # Stepping the optimizer leaves the exported dict alone ...
    run(optimizer, params, range(3, 5))
    assert_same_tree(sd, snapshot)
    # ... and writing into the dict leaves the optimizer alone.
    before = copy.deepcopy(optimizer.state_dict())
    for array in arrays_in(sd):
        array[...] = 7.0
    assert_same_tree(optimizer.state_dict(), before)

    # A loaded optimizer copies too.
    other_params = make_params(cls=cls)
    loaded = make_optimizer(cls, kwargs, other_params)
    source = copy.deepcopy(before)
    loaded.load_state_dict(source)
    assert_no_shared_memory(loaded, source)
    run(loaded, other_params, range(5, 7))
    assert_same_tree(source, before)


# -------------------------------------------------------------- resuming


def _in_memory(sd):
    return sd


def _pickled(sd):
    return pickle.loads(pickle.dumps(sd))


def _deep_copied(sd):
    return copy.deepcopy(sd)


def _through_file(sd, tmp_path):
    path = tmp_path / "optimizer.state"
    rustoptim.save(sd, path)
    return rustoptim.load(path)


TRANSPORTS = {"memory": _in_memory, "pickle": _pickled, "deepcopy": _deep_copied, "file": _through_file}


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("cls,kwargs", CONFIGS, ids=CONFIG_IDS)
def test_resumed_run_is_bitwise_identical(cls, kwargs, dtype, transport, tmp_path):
    uninterrupted = make_params(dtype, cls)
    reference = make_optimizer(cls, kwargs, uninterrupted)
    run(reference, uninterrupted, range(8))

    first = make_params(dtype, cls)
    optimizer = make_optimizer(cls, kwargs, first)
    run(optimizer, first, range(4))
    sd = optimizer.state_dict()
    moved = TRANSPORTS[transport](sd, tmp_path) if transport == "file" else TRANSPORTS[transport](sd)

    # A fresh optimizer with other hyperparameters: the saved ones win (torch).
    second = [Parameter(p.data.copy(order="K")) for p in first]
    resumed = make_optimizer(cls, {**kwargs, "lr": 123.0}, second)
    resumed.load_state_dict(moved)
    assert resumed.param_groups[0]["lr"] == optimizer.param_groups[0]["lr"] and resumed.param_groups[1]["lr"] == 0.01
    assert_same_tree(resumed.state_dict(), optimizer.state_dict())
    run(resumed, second, range(4, 8))

    for p, q in zip(second, uninterrupted):
        np.testing.assert_array_equal(p.data, q.data)
    assert_same_tree(resumed.state_dict(), reference.state_dict())


@pytest.mark.parametrize("how", ["pickle", "deepcopy"])
@pytest.mark.parametrize("cls,kwargs", CONFIGS, ids=CONFIG_IDS)
def test_copied_optimizer_continues_identically(cls, kwargs, how):
    params = make_params(cls=cls)
    optimizer = make_optimizer(cls, kwargs, params)
    run(optimizer, params, range(3))
    clone = pickle.loads(pickle.dumps(optimizer)) if how == "pickle" else copy.deepcopy(optimizer)
    assert type(clone) is cls
    clone_params = clone.params
    assert len(clone_params) == len(params)
    assert all(c is not p and c.data is not p.data for c, p in zip(clone_params, params))
    assert all(c in clone.state for c in clone_params if params[clone_params.index(c)] in optimizer.state)
    run(optimizer, params, range(3, 6))
    run(clone, clone_params, range(3, 6))
    for c, p in zip(clone_params, params):
        np.testing.assert_array_equal(c.data, p.data)
    assert_same_tree(clone.state_dict(), optimizer.state_dict())
    assert repr(clone) == repr(optimizer)


# ---------------------------------------------------------- load details


def test_loaded_state_is_laid_out_like_its_param():
    f_param = Parameter(np.asfortranarray(np.ones((3, 4))))
    strided = Parameter(np.ones((4, 6))[:, ::2])
    optimizer = Adam([f_param, strided])
    sd = {
        "state": {
            0: {"step": 3, "exp_avg": np.ones((3, 4)), "exp_avg_sq": np.ones((3, 4))},  # C order, int step
            1: {"step": np.array(2.0, np.float32), "exp_avg": np.ones((4, 3)), "exp_avg_sq": np.ones((4, 3))},
        },
        "param_groups": [dict(optimizer.state_dict()["param_groups"][0])],
    }
    optimizer.load_state_dict(sd)
    assert optimizer.state[f_param]["exp_avg"].flags.f_contiguous
    assert not optimizer.state[f_param]["exp_avg"].flags.c_contiguous
    assert optimizer.state[strided]["exp_avg"].flags.c_contiguous
    assert optimizer.state[f_param]["step"] == 3.0 and type(optimizer.state[f_param]["step"]) is float
    assert optimizer.state[strided]["step"] == 2.0 and type(optimizer.state[strided]["step"]) is float
    f_param.grad, strided.grad = np.ones((3, 4)), np.ones((4, 3))
    optimizer.step()


# What torch's __setstate__ refills in a group that lacks the key (state dicts of older versions).
REFILLED_FLAGS = {
    "Adam": dict(amsgrad=False, maximize=False, foreach=None, capturable=False, differentiable=False,
                 decoupled_weight_decay=False, fused=None),
    "AdamW": dict(amsgrad=False, maximize=False, foreach=None, capturable=False, differentiable=False,
                  decoupled_weight_decay=True, fused=None),
    "SGD": dict(nesterov=False, maximize=False, foreach=None, differentiable=False, fused=False),
    "Adagrad": dict(foreach=None, maximize=False, differentiable=False, fused=None),
    "RMSprop": dict(momentum=0, centered=False, foreach=None, maximize=False, differentiable=False, capturable=False),
    "Adadelta": dict(foreach=None, maximize=False, differentiable=False, capturable=False),
    "Adamax": dict(foreach=None, maximize=False, differentiable=False, capturable=False),
    "NAdam": dict(maximize=False, foreach=None, capturable=False, differentiable=False, decoupled_weight_decay=False),
    "RAdam": dict(foreach=None, maximize=False, differentiable=False, decoupled_weight_decay=False, capturable=False),
    "ASGD": dict(foreach=None, maximize=False, differentiable=False, capturable=False),
    "Rprop": dict(foreach=None, maximize=False, differentiable=False, capturable=False),
    "Adafactor": dict(foreach=None, maximize=False),
    "Muon": dict(),
}


@pytest.mark.parametrize("cls", [info.cls for info in OPTIMIZERS], ids=lambda cls: cls.__name__)
def test_missing_flags_are_refilled(cls):
    params = make_params(cls=cls)
    optimizer = make_optimizer(cls, {}, params)
    run(optimizer, params, range(2))
    sd = optimizer.state_dict()
    expected = REFILLED_FLAGS[cls.__name__]
    for group in sd["param_groups"]:
        for flag in expected:
            group.pop(flag, None)
    fresh = make_optimizer(cls, {}, params)
    fresh.load_state_dict(sd)
    for group in fresh.param_groups:
        assert {k: group[k] for k in expected} == expected
    run(fresh, params, range(2, 4))


def test_adamw_forces_decoupled_weight_decay_on_load():
    params = make_params()
    adam = Adam(params, weight_decay=0.1)
    adamw = AdamW(make_params())
    adamw.load_state_dict(adam.state_dict())
    assert adamw.param_groups[0]["decoupled_weight_decay"] is True
    assert adamw.param_groups[0]["weight_decay"] == 0.1


def test_named_params_survive_a_load():
    a, b = Parameter(np.zeros(2)), Parameter(np.zeros(2))
    named = Adam([("w", a), ("b", b)])
    unnamed = Adam([Parameter(np.zeros(2)), Parameter(np.zeros(2))])
    unnamed.load_state_dict(named.state_dict())
    assert unnamed.param_groups[0]["param_names"] == ["w", "b"]
    named.load_state_dict(Adam([Parameter(np.zeros(2)), Parameter(np.zeros(2))]).state_dict())
    assert named.param_groups[0]["param_names"] == ["w", "b"]


def test_extra_group_keys_are_kept():
    params = make_params()
    optimizer = SGD(params, lr=0.1)
    optimizer.param_groups[0]["initial_lr"] = 0.1
    fresh = SGD(make_params())
    fresh.load_state_dict(optimizer.state_dict())
    assert fresh.param_groups[0]["initial_lr"] == 0.1


def test_load_does_not_modify_its_input():
    params = make_params()
    optimizer = make_optimizer(Adam, dict(amsgrad=True), params)
    run(optimizer, params, range(2))
    sd = optimizer.state_dict()
    snapshot = copy.deepcopy(sd)
    make_optimizer(Adam, {}, make_params()).load_state_dict(sd)
    assert_same_tree(sd, snapshot)


# --------------------------------------------------- malformed state dicts


def _set(path, value):
    def mutate(sd):
        target = sd
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        return sd
    return mutate


def _delete(path):
    def mutate(sd):
        target = sd
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]
        return sd
    return mutate


def _replace(value):
    return lambda sd: value


def _wrong_array(key, change):
    def mutate(sd):
        entry = sd["state"][0]
        entry[key] = change(entry[key])
        return sd
    return mutate


# (name, optimizer class, mutation of a valid state dict, message regex)
MALFORMED = [
    ("not a dict", Adam, _replace([1, 2]), r"a state dict must be a dict, got list"),
    ("no state", Adam, _delete(["state"]), r"no 'state' entry"),
    ("no param_groups", Adam, _delete(["param_groups"]), r"no 'param_groups' entry"),
    ("param_groups not a list", Adam, _set(["param_groups"], {}), r"'param_groups' must be a list, got dict"),
    ("state not a dict", Adam, _set(["state"], [1]), r"'state' must be a dict, got list"),
    ("one group too many", Adam, lambda sd: {**sd, "param_groups": sd["param_groups"] + [sd["param_groups"][0]]},
     r"^loaded state dict has a different number of parameter groups$"),
    ("group too small", Adam, _set(["param_groups", 1, "params"], [2]),
     r"^loaded state dict contains a parameter group that doesn't match the size of optimizer's group$"),
    ("group not a dict", Adam, _set(["param_groups", 1], [2, 3]), r"param_groups\[1\] must be a dict"),
    ("group without params", Adam, _delete(["param_groups", 0, "params"]),
     r"param_groups\[0\]\['params'\] must be a list of int indices"),
    ("index not an int", Adam, _set(["param_groups", 0, "params"], [0, "1"]), r"must be a list of int indices"),
    ("index used twice", Adam, _set(["param_groups", 0, "params"], [0, 0]), r"one to one"),
    ("index shared by groups", Adam, _set(["param_groups", 1, "params"], [1, 3]), r"one to one"),
    ("state of an unknown index", Adam, _set(["state", 9], {}),
     r"state key 9 is not the index of a param \(indices: \[0, 1, 2, 3\]\)"),
    ("state key a string", Adam, _set(["state", "0"], {}), r"state key '0' is not the index of a param"),
    ("state entry not a dict", Adam, _set(["state", 0], [1]), r"state\[0\] must be a dict, got list"),
    ("unknown state key", Adam, _set(["state", 0, "momentum_buffer"], np.zeros(4)),
     r"state\[0\]: unknown state key\(s\) \['momentum_buffer'\]"),
    ("missing state key", Adam, _delete(["state", 0, "exp_avg_sq"]),
     r"state\[0\]: missing state key\(s\) \['exp_avg_sq'\]"),
    ("missing max with amsgrad", Adam, lambda sd: _set(["param_groups", 0, "amsgrad"], True)(sd),
     r"state\[0\]: missing state key\(s\) \['max_exp_avg_sq'\]"),
    ("wrong shape", Adam, _wrong_array("exp_avg", lambda a: np.zeros(5)),
     r"state\[0\]: 'exp_avg' has shape \(5,\), but its param has shape \(4,\)"),
    ("transposed shape", Adam, lambda sd: _set(["state", 1, "exp_avg"], np.zeros((2, 3)))(sd),
     r"state\[1\]: 'exp_avg' has shape \(2, 3\), but its param has shape \(3, 2\)"),
    ("wrong dtype", Adam, _wrong_array("exp_avg_sq", lambda a: a.astype(np.float32)),
     r"state\[0\]: 'exp_avg_sq' has dtype float32, but its param has dtype float64"),
    ("list instead of array", Adam, _wrong_array("exp_avg", lambda a: a.tolist()),
     r"state\[0\]: 'exp_avg' must be a numpy.ndarray, got list"),
    ("negative step", Adam, _set(["state", 0, "step"], -1.0), r"state\[0\]: 'step' must be a finite non-negative"),
    ("nan step", Adam, _set(["state", 0, "step"], float("nan")), r"'step' must be a finite non-negative"),
    ("infinite step", Adam, _set(["state", 0, "step"], float("inf")), r"'step' must be a finite non-negative"),
    ("string step", Adam, _set(["state", 0, "step"], "3"), r"'step' must be a real number, got str"),
    ("bool step", Adam, _set(["state", 0, "step"], True), r"'step' must be a real number, got bool"),
    ("negative lr", Adam, _set(["param_groups", 1, "lr"], -0.1),
     r"param_groups\[1\] has an invalid hyperparameter: Invalid learning rate: -0.1"),
    ("string lr", Adam, _set(["param_groups", 0, "lr"], "fast"), r"param_groups\[0\] has an invalid hyperparameter"),
    ("no lr", Adam, _delete(["param_groups", 0, "lr"]), r"param_groups\[0\] has no 'lr' hyperparameter"),
    ("int betas", Adam, _set(["param_groups", 0, "betas"], (0, 0)), r"betas must be either both floats"),
    ("beta out of range", AdamW, _set(["param_groups", 0, "betas"], (0.9, 1.5)),
     r"Invalid beta parameter at index 1: 1.5"),
    ("capturable", Adam, _set(["param_groups", 0, "capturable"], True), r"capturable=True is not supported"),
    ("flag not a bool", Adam, _set(["param_groups", 0, "amsgrad"], "no"), r"amsgrad must be a bool"),
    ("param_names too short", Adam, _set(["param_groups", 0, "param_names"], ["w"]),
     r"param_groups\[0\]\['param_names'\] must be a list with one name per param"),
    ("negative momentum", SGD, _set(["param_groups", 0, "momentum"], -0.9), r"Invalid momentum value: -0.9"),
    ("nesterov with dampening", SGD, _set(["param_groups", 0, "dampening"], 0.5),
     r"Nesterov momentum requires a momentum and zero dampening"),
    ("buffer of the wrong shape", SGD, _wrong_array("momentum_buffer", lambda a: a[:2]),
     r"state\[0\]: 'momentum_buffer' has shape \(2,\), but its param has shape \(4,\)"),
    ("buffer None", SGD, _set(["state", 0, "momentum_buffer"], None),
     r"'momentum_buffer' must be a numpy.ndarray, got NoneType"),
    ("NAdam without mu_product", NAdam, _delete(["state", 0, "mu_product"]),
     r"state\[0\]: missing state key\(s\) \['mu_product'\]"),
    ("negative mu_product", NAdam, _set(["state", 0, "mu_product"], -0.5),
     r"state\[0\]: 'mu_product' must be a finite non-negative"),
    ("centered RMSprop without grad_avg", RMSprop, _set(["param_groups", 0, "centered"], True),
     r"state\[0\]: missing state key\(s\) \['grad_avg'\]"),
    ("Adagrad sum of another dtype", Adagrad, _wrong_array("sum", lambda a: a.astype(np.float32)),
     r"state\[0\]: 'sum' has dtype float32, but its param has dtype float64"),
    ("Adadelta without acc_delta", Adadelta, _delete(["state", 0, "acc_delta"]),
     r"state\[0\]: missing state key\(s\) \['acc_delta'\]"),
    ("Adamax exp_inf of another shape", Adamax, _wrong_array("exp_inf", lambda a: a[:2]),
     r"state\[0\]: 'exp_inf' has shape \(2,\), but its param has shape \(4,\)"),
    ("Adam state in SGD", SGD, _set(["state", 2], {"step": 1.0, "exp_avg": np.zeros(()), "exp_avg_sq": np.zeros(())}),
     r"state\[2\]: unknown state key\(s\) \['step', 'exp_avg', 'exp_avg_sq'\]"),
]
SGD_KWARGS = dict(lr=0.1, momentum=0.9, nesterov=True)


def _snapshot(optimizer):
    return (
        optimizer.param_groups,
        [(g, dict(g)) for g in optimizer.param_groups],
        optimizer.state,
        {p: (entry, copy.deepcopy(entry)) for p, entry in optimizer.state.items()},
    )


def _assert_unchanged(optimizer, snapshot):
    groups, group_items, state, entries = snapshot
    assert optimizer.param_groups is groups
    for group, items in group_items:
        assert list(group.items()) == list(items.items())
    assert optimizer.state is state
    assert list(state) == list(entries)
    for p, (entry, saved) in entries.items():
        assert state[p] is entry
        assert_same_tree(entry, saved)


@pytest.mark.parametrize("name,cls,mutate,message", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_state_dict_is_rejected_without_changes(name, cls, mutate, message):
    kwargs = SGD_KWARGS if cls is SGD else dict(lr=0.05)
    params = make_params(cls=cls)
    source = make_optimizer(cls, kwargs, params)
    run(source, params, range(4))
    if name == "param_names too short":
        for group in source.param_groups:
            group["param_names"] = [f"p{i}" for i in range(len(group["params"]))]
    sd = mutate(copy.deepcopy(source.state_dict()))

    target_params = make_params(cls=cls)
    target = make_optimizer(cls, kwargs, target_params)
    run(target, target_params, range(2))
    snapshot = _snapshot(target)
    with pytest.raises(StateDictError, match=message):
        target.load_state_dict(sd)
    _assert_unchanged(target, snapshot)
    assert isinstance(StateDictError(), ValueError)


@pytest.mark.parametrize("cls,kwargs", CONFIGS, ids=CONFIG_IDS)
@pytest.mark.parametrize("where", ["step", "lr"])
def test_values_beyond_a_float_are_a_state_dict_error(cls, kwargs, where):
    """10**400 is a Python int no float can hold: refused by name, not an OverflowError."""
    params = [rustoptim.Parameter(as_param(cls, np.ones(3)))]
    optimizer = cls(params, **kwargs)
    optimizer.step(grads=[as_param(cls, np.ones(3))])
    state_dict = optimizer.state_dict()
    if where == "lr":
        state_dict["param_groups"][0]["lr"] = 10**400
    elif state_dict["state"] and "step" in state_dict["state"][0]:
        state_dict["state"][0]["step"] = 10**400
    else:
        pytest.skip("no step count in this optimizer's state")
    before = optimizer.state_dict()
    with pytest.raises(StateDictError, match=where):
        optimizer.load_state_dict(state_dict)
    after = optimizer.state_dict()
    assert after["param_groups"] == before["param_groups"]
