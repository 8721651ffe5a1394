"""``step(grad_scale=s)``: the step reads every gradient as ``g · s`` without
writing it, so clipping by norm fused into the step gives bitwise what
``clip_grad_norm_`` followed by ``step()`` gives, for every optimizer."""

from __future__ import annotations

import numpy as np
import pytest

import rustoptim
from optimizer_table import CONFIG_IDS, CONFIGS, param_shape
from rustoptim.errors import HyperparameterError

# Shapes of every kind: a tensor longer than the step's staging chunk (512) and
# not a multiple of it, 0-d, empty, a matrix.
SHAPES = [(1301,), (3, 7), (), (0,), (40, 33)]


def arrays(cls, dtype, seed, layouts=True):
    rng = np.random.default_rng(seed)
    out = [np.asarray(rng.standard_normal(param_shape(cls, s)), dtype=dtype) for s in SHAPES]
    if layouts:
        out[1] = np.asfortranarray(out[1])
        # A strided view: every other row of a larger array.
        wide = np.asarray(rng.standard_normal((2 * out[4].shape[0], out[4].shape[1])), dtype=dtype)
        out[4] = wide[::2]
    return out


def assert_same_state(ours, theirs):
    assert ours["param_groups"] == theirs["param_groups"]
    for index, entry in ours["state"].items():
        for key, value in entry.items():
            np.testing.assert_array_equal(value, theirs["state"][index][key], strict=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("cls,kwargs", CONFIGS, ids=CONFIG_IDS)
def test_fused_clipping_equals_clip_then_step(cls, kwargs, dtype):
    fused_params = arrays(cls, dtype, 0)
    clipped_params = [p.copy(order="K") for p in fused_params]
    fused = cls([{"params": fused_params[:2]}, {"params": fused_params[2:], "lr": 0.01}], **kwargs)
    clipped = cls([{"params": clipped_params[:2]}, {"params": clipped_params[2:], "lr": 0.01}], **kwargs)
    for t in range(4):
        # Large gradients at odd steps (clipped), small ones at even steps (scale 1).
        grads = [np.asarray(g * (30.0 if t % 2 else 0.01), dtype=dtype) for g in arrays(cls, dtype, 100 + t)]
        originals = [g.copy() for g in grads]
        total, scale = rustoptim.clip_grad_norm_scale(grads, max_norm=1.0)
        fused.step(grads=grads, grad_scale=scale)
        for g, original in zip(grads, originals):
            np.testing.assert_array_equal(g, original, strict=True)  # the grads are only read

        assert rustoptim.clip_grad_norm_(grads, max_norm=1.0) == total
        clipped.step(grads=grads)
        for ours, theirs in zip(fused_params, clipped_params):
            np.testing.assert_array_equal(ours, theirs, strict=True)
    assert_same_state(fused.state_dict(), clipped.state_dict())


@pytest.mark.parametrize("cls,kwargs", CONFIGS[:1] + [c for c in CONFIGS if c[0] is rustoptim.Adafactor][:1])
def test_mixed_dtypes_clip_in_the_wider_dtype(cls, kwargs):
    """float32 and float64 grads together: the coefficient is float64 and is
    rounded to float32 for the float32 grads, as clip_grad_norm_ rounds it."""
    params = arrays(cls, np.float64, 1, layouts=False)
    params[0] = params[0].astype(np.float32)
    params[2] = params[2].astype(np.float64)  # 0-d: float64 (a 0-d float32 is the documented exception)
    copies = [p.copy() for p in params]
    fused, clipped = cls(params, **kwargs), cls(copies, **kwargs)
    for t in range(3):
        grads = [np.asarray(g * 50, dtype=p.dtype) for g, p in zip(arrays(cls, np.float64, 7 + t, False), params)]
        _, scale = rustoptim.clip_grad_norm_scale(grads, max_norm=0.5)
        fused.step(grads=grads, grad_scale=scale)
        rustoptim.clip_grad_norm_(grads, max_norm=0.5)
        clipped.step(grads=grads)
        for ours, theirs in zip(params, copies):
            np.testing.assert_array_equal(ours, theirs, strict=True)


@pytest.mark.parametrize("cls,kwargs", CONFIGS, ids=CONFIG_IDS)
def test_any_scale_equals_scaling_the_grads_first(cls, kwargs):
    params = arrays(cls, np.float32, 2)
    copies = [p.copy(order="K") for p in params]
    fused, scaled = cls(params, **kwargs), cls(copies, **kwargs)
    for t, s in enumerate([0.37, 1.0, -2.5, 0.0, 1e-30]):
        grads = arrays(cls, np.float32, 50 + t)
        fused.step(grads=grads, grad_scale=s)
        scaled.step(grads=[np.asarray(g * np.float32(s), dtype=np.float32) for g in grads])
        for ours, theirs in zip(params, copies):
            np.testing.assert_array_equal(ours, theirs, strict=True)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), True, "0.5", np.array([0.5]), 1j, None])
@pytest.mark.parametrize("cls,kwargs", [CONFIGS[0], next(c for c in CONFIGS if c[0] is rustoptim.Muon)])
def test_a_bad_scale_is_refused_before_any_write(cls, kwargs, bad):
    params = arrays(cls, np.float64, 3, layouts=False)
    before = [p.copy() for p in params]
    opt = cls(params, **kwargs)
    grads = arrays(cls, np.float64, 4, layouts=False)
    if bad is None:  # None means no scaling: the same as a plain step
        plain_params = [b.copy() for b in before]
        cls(plain_params, **kwargs).step(grads=grads)
        opt.step(grads=grads, grad_scale=None)
        for ours, theirs in zip(params, plain_params):
            np.testing.assert_array_equal(ours, theirs, strict=True)
        assert any(not np.array_equal(p, b) for p, b in zip(params, before))
        return
    with pytest.raises(HyperparameterError, match="grad_scale must be a finite real number"):
        opt.step(grads=grads, grad_scale=bad)
    for p, b in zip(params, before):
        np.testing.assert_array_equal(p, b, strict=True)
    assert opt.state_dict()["state"] == {}


def test_numpy_scalars_are_accepted():
    w, v = np.ones(3, dtype=np.float32), np.ones(3, dtype=np.float32)
    g = np.array([1.0, -2.0, 3.0], dtype=np.float32)
    rustoptim.SGD([w], lr=0.1).step(grads=[g], grad_scale=np.float32(0.5))
    rustoptim.SGD([v], lr=0.1).step(grads=[g * np.float32(0.5)])
    np.testing.assert_array_equal(w, v, strict=True)


def test_error_if_nonfinite():
    with pytest.raises(rustoptim.errors.NonFiniteNormError):
        rustoptim.clip_grad_norm_scale([np.array([np.inf, 1.0])], 1.0, error_if_nonfinite=True)
    total, scale = rustoptim.clip_grad_norm_scale([np.array([3.0, 4.0]), rustoptim.Parameter(np.ones(2))], 10.0, norm_type="inf")
    assert (total, scale) == (4.0, 1.0)
    assert rustoptim.clip_grad_norm_scale([], 1.0) == (0.0, 1.0)


@pytest.mark.filterwarnings("ignore:optimizer contains a parameter group with duplicate parameters")
@pytest.mark.parametrize("duplicate", [False, True], ids=["unique", "listed-twice"])
@pytest.mark.parametrize("cls,kwargs", [CONFIGS[0], next(c for c in CONFIGS if c[0] is rustoptim.Adafactor)])
def test_every_step_path_scales(cls, kwargs, duplicate):
    """Parameters with .grad, a grads list with a None entry and a param listed
    twice in a group take different paths to the core: each applies the scale."""

    def run(scale_in_step):
        arrays_ = [np.linspace(-1, 1, 12).reshape(3, 4) + k for k in range(3)]
        params = [rustoptim.Parameter(a) for a in arrays_]
        first_group = [params[0], params[1]] + ([params[0]] if duplicate else [])
        opt = cls([{"params": first_group}, {"params": [params[2]]}], **kwargs)
        for t in range(3):
            grads = [np.full((3, 4), 0.25 * (t + k + 1)) for k in range(3)]
            for p, g in zip(params, grads):
                p.grad = g if scale_in_step else g * 0.3
            if t == 1:  # a None entry: the third param is skipped at this step
                listed = [p.grad for p in params[:2]] + [None]
                opt.step(grads=listed, grad_scale=0.3 if scale_in_step else None)
            else:
                opt.step(grad_scale=0.3 if scale_in_step else None)
        return [p.data for p in params]

    for ours, theirs in zip(run(True), run(False)):
        np.testing.assert_array_equal(ours, theirs, strict=True)
