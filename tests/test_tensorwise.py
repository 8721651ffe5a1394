"""Adafactor and Muon beyond the generic tests: torch's constructor checks and
messages, state shapes, step-time checks of what only these optimizers have
(matrix params, integer and string hyperparameters, state of other shapes),
torch's once-per-group epsilon, layouts and thread counts."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import rustoptim
from reference import ReferenceAdafactor
from rustoptim import Adafactor, HyperparameterError, Muon, Parameter, ShapeError, StateDictError


def grads_for(params, seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(p.shape).astype(p.dtype) for p in params]


# ------------------------------------------------------------- constructors


@pytest.mark.parametrize("kwargs,message", [
    (dict(lr=-1.0), "Learning rate should be >= 0 but is: -1.0"),
    (dict(beta2_decay=0.5), "beta2_decay should be <= 0 but is: 0.5"),
    (dict(eps=(-1.0, 1e-3)), "epsilon1 should be >= 0 but is: -1.0"),
    (dict(eps=(None, -1e-3)), "epsilon2 should be >= 0 but is: -0.001"),
    (dict(d=0.5), "Clipping threshold d should be >= 1 but is: 0.5"),
    (dict(weight_decay=-0.1), "weight_decay should be >= 0 but is: -0.1"),
])
def test_adafactor_constructor_messages_are_torchs(kwargs, message):
    with pytest.raises(ValueError, match=f"^{message}$".replace("(", r"\(").replace(")", r"\)")):
        Adafactor([np.zeros(3)], **kwargs)


@pytest.mark.parametrize("kwargs,message", [
    (dict(lr=-1.0), "Learning rate should be >= 0 but is: -1.0"),
    (dict(momentum=-0.5), "momentum should be >= 0 but is: -0.5"),
    (dict(weight_decay=-0.1), "weight decay should be >= 0 but is: -0.1"),
    (dict(adjust_lr_fn="bogus"), "Adjust learning rate function bogus is not supported"),
    (dict(ns_steps=100), "Number of steps must be less than 100 for computational efficiency"),
    (dict(ns_coefficients=(1.0, 2.0)), "Coefficients must be a tuple of exactly 3 values"),
])
def test_muon_constructor_messages_are_torchs(kwargs, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        Muon([np.zeros((2, 2))], **kwargs)


def test_defaults_and_group_keys_are_torchs():
    adafactor = Adafactor([np.zeros(3)])
    assert list(adafactor.param_groups[0]) == ["params", "lr", "beta2_decay", "eps", "d", "weight_decay", "foreach", "maximize"]
    assert adafactor.defaults == dict(lr=1e-2, beta2_decay=-0.8, eps=(None, 1e-3), d=1.0, weight_decay=0.0,
                                      foreach=None, maximize=False)
    muon = Muon([np.zeros((2, 2))])
    assert list(muon.param_groups[0]) == ["params", "lr", "weight_decay", "momentum", "nesterov", "ns_coefficients",
                                          "eps", "ns_steps", "adjust_lr_fn"]
    assert muon.defaults == dict(lr=1e-3, weight_decay=0.1, momentum=0.95, nesterov=True,
                                 ns_coefficients=(3.4445, -4.7750, 2.0315), eps=1e-7, ns_steps=5, adjust_lr_fn=None)


@pytest.mark.parametrize("shape", [(3,), (), (2, 3, 4)])
def test_muon_refuses_params_that_are_not_matrices(shape):
    message = rf"^Muon only supports 2D parameters whereas we found a parameter with size: {re_shape(shape)}$"
    with pytest.raises(ValueError, match=message):
        Muon([np.zeros((2, 2)), np.zeros(shape)])
    muon = Muon([np.zeros((2, 2))])
    with pytest.raises(ValueError, match=message):
        muon.add_param_group({"params": [np.zeros(shape)]})  # torch only fails at the step
    assert len(muon.param_groups) == 1


def re_shape(shape):
    return str(tuple(shape)).replace("(", r"\(").replace(")", r"\)")


# -------------------------------------------------------------- state


def test_adafactor_state_shapes_and_order():
    params = [np.zeros((2, 3, 4)), np.zeros((5, 6)), np.zeros(7), np.zeros(())]
    optimizer = Adafactor(params)
    optimizer.step(grads=[np.ones_like(p) for p in params])
    states = [optimizer.state[p] for p in optimizer.params]
    assert [list(s) for s in states] == [["step", "row_var", "col_var"]] * 2 + [["step", "variance"]] * 2
    assert states[0]["row_var"].shape == (2, 3, 1) and states[0]["col_var"].shape == (2, 1, 4)
    assert states[1]["row_var"].shape == (5, 1) and states[1]["col_var"].shape == (1, 6)
    assert states[2]["variance"].shape == (7,) and states[3]["variance"].shape == ()
    assert all(s["step"] == 1.0 for s in states)


def test_adafactor_load_refuses_state_of_the_wrong_shape():
    params = [np.ones((3, 4))]
    optimizer = Adafactor(params)
    optimizer.step(grads=[np.ones((3, 4))])
    sd = optimizer.state_dict()
    sd["state"][0]["row_var"] = np.zeros((3, 4))
    with pytest.raises(StateDictError, match=r"'row_var' has shape \(3, 4\), expected \(3, 1\)"):
        optimizer.load_state_dict(sd)
    sd["state"][0]["row_var"] = np.zeros((3, 1))
    sd["state"][0]["variance"] = np.zeros((3, 4))
    with pytest.raises(StateDictError, match=r"unknown state key\(s\) \['variance'\]"):
        optimizer.load_state_dict(sd)


def test_adafactor_step_refuses_edited_state_of_the_wrong_shape():
    params = [Parameter(np.ones((3, 4))), Parameter(np.ones(2))]
    optimizer = Adafactor(params)
    optimizer.step(grads=[np.ones((3, 4)), np.ones(2)])
    optimizer.state[params[0]]["col_var"] = np.zeros((3, 1))
    before = [p.data.copy() for p in params], copy.deepcopy(dict(optimizer.state))
    with pytest.raises(ShapeError, match=r"state 'col_var' of param 0 of param_groups\[0\] has shape \(3, 1\), expected \(1, 4\)"):
        optimizer.step(grads=[np.ones((3, 4)), np.ones(2)])
    for p, data in zip(params, before[0]):
        np.testing.assert_array_equal(p.data, data)
    assert optimizer.state[params[1]]["step"] == 1.0


# ----------------------------------------------------------- step-time checks


def test_muon_step_refuses_a_param_that_stopped_being_a_matrix():
    params = [Parameter(np.ones((3, 2))), Parameter(np.ones((2, 2)))]
    optimizer = Muon(params)
    params[1].data = np.ones(4)
    with pytest.raises(ShapeError, match=r"param 1 of param_groups\[0\] has shape \(4,\); Muon only supports 2D parameters"):
        optimizer.step(grads=[np.ones((3, 2)), np.ones(4)])
    np.testing.assert_array_equal(params[0].data, np.ones((3, 2)))
    assert len(optimizer.state) == 0


@pytest.mark.parametrize("key,value,message", [
    ("ns_steps", 100, r"\['ns_steps'\] must be an integer in \[0, 100\), got 100"),
    ("ns_steps", 2.0, r"\['ns_steps'\] must be an integer"),
    ("ns_coefficients", (1.0, 2.0), r"\['ns_coefficients'\] must be a sequence of 3 entries"),
    ("adjust_lr_fn", "bogus", r"\['adjust_lr_fn'\] must be None or one of"),
    ("nesterov", 1, r"\['nesterov'\] must be a bool"),
])
def test_muon_hyperparameters_changed_between_steps_are_checked(key, value, message):
    params = [Parameter(np.ones((3, 2))), Parameter(np.ones((2, 2)))]
    optimizer = Muon([{"params": params[:1]}, {"params": params[1:]}])
    optimizer.param_groups[1][key] = value
    with pytest.raises(HyperparameterError, match=r"param_groups\[1\]" + message):
        optimizer.step(grads=[np.ones((3, 2)), np.ones((2, 2))])
    np.testing.assert_array_equal(params[0].data, np.ones((3, 2)))


def test_adafactor_eps_changed_to_a_non_pair_is_named():
    optimizer = Adafactor([np.ones(3)])
    optimizer.param_groups[0]["eps"] = (None,)
    with pytest.raises(HyperparameterError, match=r"param_groups\[0\]\['eps'\] must be a sequence of 2 entries"):
        optimizer.step(grads=[np.ones(3)])


# -------------------------------------------------------------- numbers


def test_adafactor_epsilon_comes_from_the_groups_first_param():
    """torch sets eps1 = finfo(first param's dtype).eps once per group: a float64
    param after a float32 one uses float32's epsilon."""
    rng = np.random.default_rng(4)
    initial = [rng.standard_normal((5, 3)).astype(np.float32), rng.standard_normal(6)]
    params = [a.copy() for a in initial]
    optimizer = Adafactor(params, lr=0.1)
    reference = ReferenceAdafactor(initial, lr=0.1, eps=(float(np.finfo(np.float32).eps), 1e-3))
    plain = ReferenceAdafactor(initial, lr=0.1, eps=(float(np.finfo(np.float64).eps), 1e-3))
    for seed in range(3):
        # Gradients small enough that the floor eps1² (float32's: 1.4e-14) matters.
        grads = [g * 1e-8 for g in grads_for(initial, seed)]
        optimizer.step(grads=grads)
        reference.step(grads)
        plain.step(grads)
    for ours, theirs in zip(params, reference.params):
        np.testing.assert_array_max_ulp(ours, theirs, maxulp=4)
    assert not np.allclose(params[1], plain.params[1], rtol=1e-9, atol=0)  # the trap changes the numbers


def run_muon(shape, order, threads, steps=3):
    rustoptim.set_num_threads(threads)
    rng = np.random.default_rng(2)
    param = np.array(rng.standard_normal(shape), order=order)
    optimizer = Muon([param], lr=0.02)
    for seed in range(steps):
        optimizer.step(grads=[np.asfortranarray(g) for g in grads_for([param], seed)])
    return param.copy(order="C"), optimizer.state[optimizer.params[0]]["momentum_buffer"].copy()


@pytest.mark.parametrize("shape", [(200, 150), (96, 300)])
def test_muon_is_bitwise_the_same_for_every_layout_and_thread_count(shape):
    threads = rustoptim.get_num_threads()
    try:
        expected = run_muon(shape, "C", 1)
        for order, count in [("F", 1), ("C", 2), ("F", 3)]:
            got = run_muon(shape, order, count)
            for a, b in zip(got, expected):
                np.testing.assert_array_equal(a, b)
    finally:
        rustoptim.set_num_threads(threads)


def test_muon_update_is_orthogonal():
    """Enough Newton-Schulz steps make the update's singular values close to 1."""
    rng = np.random.default_rng(0)
    param = np.zeros((40, 30))
    optimizer = Muon([param], lr=1.0, weight_decay=0.0, momentum=0.0, nesterov=False, ns_steps=30,
                     ns_coefficients=(1.5, -0.5, 0.0))
    optimizer.step(grads=[rng.standard_normal((40, 30))])
    singular = np.linalg.svd(-param / np.sqrt(40 / 30), compute_uv=False)
    np.testing.assert_allclose(singular, 1.0, atol=1e-6)


@pytest.mark.parametrize("module", ["adafactor", "muon"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"rustoptim.{module}"))
    assert result.attempted > 0 and result.failed == 0
