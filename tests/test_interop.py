"""Arrays from other libraries: gradients NumPy can view without a copy are
accepted (buffer protocol, ``__array__``, DLPack); params must be writeable
NumPy arrays; torch CPU tensors work through ``t.numpy()`` views."""

from __future__ import annotations

import numpy as np
import pytest

import rustoptim
from rustoptim import DTypeError


class ArrayLike:
    """A foreign array that exposes its memory through ``__array__`` (as jax's does)."""

    def __init__(self, values: np.ndarray) -> None:
        self._values = values

    def __array__(self, dtype=None, copy=None):
        if dtype is not None and dtype != self._values.dtype:
            raise ValueError("no dtype change without a copy")
        view = self._values.view()
        view.flags.writeable = False
        return view


@pytest.mark.parametrize("make", [ArrayLike, memoryview], ids=["__array__", "buffer"])
def test_foreign_gradients_are_read_without_a_copy(make):
    w, reference = np.zeros(4), np.zeros(4)
    grad = np.array([1.0, -2.0, 3.0, -4.0])
    rustoptim.Adam([w], lr=0.1).step(grads=[make(grad)])
    rustoptim.Adam([reference], lr=0.1).step(grads=[grad])
    np.testing.assert_array_equal(w, reference)


def test_gradients_of_another_dtype_say_how_to_convert():
    w = np.zeros(3, np.float32)
    with pytest.raises(DTypeError, match=r"has dtype float64, expected float32 like its param \(convert it with"):
        rustoptim.SGD([w], lr=0.1).step(grads=[ArrayLike(np.ones(3))])


def test_a_list_as_a_gradient_says_how_to_make_an_array():
    with pytest.raises(DTypeError, match=r"is a list, not a NumPy array; pass a float32/float64 NumPy array"):
        rustoptim.SGD([np.zeros(3)], lr=0.1).step(grads=[[1.0, 2.0, 3.0]])


def test_an_immutable_param_is_refused_with_what_to_do():
    with pytest.raises(TypeError, match=r"must be writeable NumPy arrays.*np\.array\(x\)"):
        rustoptim.Adam([ArrayLike(np.zeros(3))])


def test_torch_cpu_tensors_share_memory_through_numpy_views():
    torch = pytest.importorskip("torch")
    t, g = torch.zeros(5, dtype=torch.float64), torch.ones(5, dtype=torch.float64)
    opt = rustoptim.SGD([t.numpy()], lr=0.5)
    opt.step(grads=[g.numpy()])
    assert torch.equal(t, torch.full((5,), -0.5, dtype=torch.float64))


def test_a_step_without_any_gradient_warns():
    w = np.ones(3)
    opt = rustoptim.Adam([w], lr=0.1)
    with pytest.warns(rustoptim.NoGradientWarning, match=r"opt\.step\(grads=\[\.\.\.\]\)"):
        opt.step()
    np.testing.assert_array_equal(w, np.ones(3))


def test_gradients_passed_positionally_are_refused_with_the_keyword():
    with pytest.raises(TypeError, match=r"pass gradients by keyword: opt\.step\(grads=\[\.\.\.\]\)"):
        rustoptim.SGD([np.zeros(2)], lr=0.1).step([np.ones(2)])


@pytest.mark.parametrize("cls", [rustoptim.Adam, rustoptim.SGD])
def test_a_closure_may_return_loss_and_grads(cls):
    w, reference = np.ones(3), np.ones(3)
    opt = cls([w], lr=0.1)
    loss = opt.step(lambda: (float(np.sum(w**2)), [2 * w]))
    assert loss == 3.0
    cls([reference], lr=0.1).step(grads=[2 * np.ones(3)])
    np.testing.assert_array_equal(w, reference)
