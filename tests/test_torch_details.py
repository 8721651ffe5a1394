"""Details of Adagrad, RMSprop, Adadelta, Adamax and NAdam that torch 2.15 pins
down and the generic tests do not reach: Adagrad's state made with the
optimizer, RMSprop's state depending on its group, the float32 step counter
and NAdam's float32 ``mu_product`` (also after a load)."""

from __future__ import annotations

import numpy as np
import pytest

import rustoptim
from reference import ReferenceNAdam
from rustoptim import Adadelta, Adagrad, Adamax, NAdam, Parameter, RMSprop


def test_adagrad_makes_its_state_with_the_optimizer():
    f_order = Parameter(np.asfortranarray(np.ones((3, 2), np.float32)))
    strided = Parameter(np.ones(8)[::2])
    scalar = Parameter(np.array(1.0))
    groups = [{"params": [f_order]}, {"params": [strided, scalar], "lr": 0.5}]
    optimizer = Adagrad(groups, initial_accumulator_value=0.1)
    for p in (f_order, strided, scalar):
        entry = optimizer.state[p]
        assert list(entry) == ["step", "sum"]
        assert type(entry["step"]) is float and entry["step"] == 0.0
        assert entry["sum"].shape == p.data.shape and entry["sum"].dtype == p.data.dtype
        np.testing.assert_array_equal(entry["sum"], np.full(p.data.shape, 0.1, p.data.dtype))
    assert optimizer.state[f_order]["sum"].flags.f_contiguous
    assert optimizer.state[strided]["sum"].flags.c_contiguous
    # Every param has an entry in the state dict before the first step, as in torch.
    assert sorted(optimizer.state_dict()["state"]) == [0, 1, 2]


def test_adagrad_fills_a_later_groups_state_with_the_constructors_value():
    """torch reads initial_accumulator_value from the constructor, not the group."""
    first, later = Parameter(np.zeros(3)), Parameter(np.zeros(3))
    optimizer = Adagrad([first], lr=0.1, initial_accumulator_value=0.5)
    optimizer.add_param_group({"params": [later], "initial_accumulator_value": 7.0})
    assert later not in optimizer.state  # made at its first step
    assert optimizer.param_groups[1]["initial_accumulator_value"] == 7.0
    later.grad = np.ones(3)
    optimizer.step()
    np.testing.assert_array_equal(optimizer.state[later]["sum"], np.full(3, 1.5))
    assert optimizer.state[later]["step"] == 1.0
    assert optimizer.state[first]["step"] == 0.0  # no grad: skipped


def test_rmsprop_state_depends_on_each_groups_config():
    plain, centered = Parameter(np.ones(2)), Parameter(np.ones(2))
    optimizer = RMSprop([{"params": [plain]}, {"params": [centered], "centered": True, "momentum": 0.9}])
    plain.grad = centered.grad = np.ones(2)
    optimizer.step()
    assert list(optimizer.state[plain]) == ["step", "square_avg"]
    assert list(optimizer.state[centered]) == ["step", "square_avg", "momentum_buffer", "grad_avg"]


def test_rmsprop_momentum_turned_on_later_starts_a_zero_buffer():
    """torch raises KeyError('momentum_buffer'); rustoptim creates the buffer at zero."""
    p = Parameter(np.ones(2))
    optimizer = RMSprop([p], lr=0.1)
    p.grad = np.ones(2)
    optimizer.step()
    optimizer.param_groups[0]["momentum"] = 0.9
    optimizer.step()
    assert list(optimizer.state[p]) == ["step", "square_avg", "momentum_buffer"]
    v = optimizer.state[p]["square_avg"]
    np.testing.assert_array_equal(optimizer.state[p]["momentum_buffer"], 1.0 / (np.sqrt(v) + 1e-8))


OPTIMIZERS_WITH_STEP = [
    (Adagrad, dict(lr=0.1, lr_decay=0.5)),
    (RMSprop, dict(lr=0.1)),
    (Adadelta, dict()),
    (Adamax, dict(lr=0.1)),
    (NAdam, dict(lr=0.1)),
]


@pytest.mark.parametrize("cls,kwargs", OPTIMIZERS_WITH_STEP, ids=[c.__name__ for c, _ in OPTIMIZERS_WITH_STEP])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_step_count_is_a_float32_counter(cls, kwargs, dtype):
    """torch keeps step in a float32 tensor even for float64 params: it stops at 2^24."""
    p = Parameter(np.ones(3, dtype))
    optimizer = cls([p], **kwargs)
    p.grad = np.ones(3, dtype)
    optimizer.step()
    optimizer.state[p]["step"] = 2.0**24 - 1
    optimizer.step()
    assert optimizer.state[p]["step"] == 2.0**24
    optimizer.step()
    assert optimizer.state[p]["step"] == 2.0**24


def test_nadam_mu_product_stays_float32_after_loading_a_float64_value():
    """A state dict may carry any mu_product (torch's own loads make it float64):
    the next step rounds it to float32 and multiplies in float32."""
    p = Parameter(np.ones(4))
    optimizer = NAdam([p], lr=0.01)
    p.grad = np.full(4, 0.5)
    optimizer.step()
    sd = optimizer.state_dict()
    sd["state"][0]["mu_product"] = 0.1  # not a float32 value
    sd["state"][0]["step"] = np.array(1.0, np.float32)  # torch's 0-d tensor, as NumPy
    optimizer.load_state_dict(sd)
    assert optimizer.state[p]["mu_product"] == 0.1 and type(optimizer.state[p]["step"]) is float
    optimizer.step()
    mu = 0.9 * (1.0 - 0.5 * 0.96 ** (2.0 * 4e-3))
    assert optimizer.state[p]["mu_product"] == float(np.float32(0.1) * np.float32(mu))


def test_nadam_float64_run_resumes_bitwise_through_torch_style_scalars():
    """A resumed float64 run equals the uninterrupted one (torch's does not)."""
    rng = np.random.default_rng(3)
    start = rng.standard_normal(5)
    grads = [rng.standard_normal(5) for _ in range(6)]
    reference = ReferenceNAdam([start], lr=0.01, weight_decay=0.1)
    first = Parameter(start.copy())
    optimizer = NAdam([first], lr=0.01, weight_decay=0.1)
    for g in grads[:3]:
        optimizer.step(grads=[g])
        reference.step([g])
    sd = optimizer.state_dict()
    entry = sd["state"][0]
    entry["step"] = np.array(entry["step"], np.float32)
    entry["mu_product"] = np.array(entry["mu_product"], np.float32)
    second = Parameter(first.data.copy())
    resumed = rustoptim.NAdam([second], lr=1.0)
    resumed.load_state_dict(sd)
    for g in grads[3:]:
        resumed.step(grads=[g])
        reference.step([g])
    np.testing.assert_array_equal(second.data, reference.params[0])
    assert resumed.state[second]["mu_product"] == reference.state[0]["mu_product"]
