"""``Parameter``: a NumPy array the optimizers update in place, and its gradient."""

from __future__ import annotations

import numpy as np

from ._arrays import check_param_array

__all__ = ["Parameter"]


class Parameter:
    """An array to optimize, paired with its gradient.

    ``Parameter`` plays the role of ``torch.nn.Parameter``: an optimizer keys its
    state by the Parameter object and, on ``step()``, updates ``data`` in place
    using ``grad``.

    Args:
      data: the caller's array itself (never copied): a writeable ``float32`` or
        ``float64`` ndarray of any shape and layout (C order, Fortran order or a
        strided view). Other dtypes raise ``DTypeError``, read-only arrays
        ``ReadOnlyError``.

    Attributes:
      data: the array, updated in place by ``step()``.
      grad: ``None`` (the param is skipped by ``step()``) or an array of the same
        shape and dtype as ``data``, in any layout. It is a plain attribute: it is
        checked by the optimizer at step time, not when assigned.

    Example:
      >>> import numpy as np
      >>> import rustoptim
      >>> w = np.zeros(3)
      >>> p = rustoptim.Parameter(w)
      >>> p.data is w
      True
      >>> p.grad = np.ones(3)
      >>> opt = rustoptim.SGD([p], lr=0.5)
      >>> opt.step()
      >>> w
      array([-0.5, -0.5, -0.5])
    """

    __slots__ = ("data", "grad")

    data: np.ndarray
    grad: np.ndarray | None

    def __init__(self, data: np.ndarray) -> None:
        self.data = check_param_array(data)
        self.grad = None

    def __repr__(self) -> str:
        data = self.data
        grad = "None" if self.grad is None else "set"
        return f"Parameter(shape={data.shape}, dtype={data.dtype}, grad={grad})"
