"""``TensorwiseOptimizer``: the class behind the optimizers whose update of a
tensor needs the whole tensor (Adafactor: sums over rows and columns; Muon:
matrix products).

They share everything with the element-wise optimizers (param groups, grads,
duplicate params, the all-or-nothing step, state dicts) except the core entry
point, ``_core.tensor_step``, and the shapes of their state arrays, which a
subclass gives with ``_state_shapes``. Their state arrays are C-ordered
whatever the param's layout (the kernels work on rows and columns in C order).
"""

from __future__ import annotations

from typing import Any, ClassVar, Dict, List, Mapping, Optional, Tuple

from . import _core
from ._arrays import state_copy_shaped, state_step
from ._elementwise import ElementwiseOptimizer
from .parameter import Parameter

__all__ = ["TensorwiseOptimizer"]


class TensorwiseOptimizer(ElementwiseOptimizer):
    """Base class of Adafactor and Muon (see the module docstring)."""

    #: Scalar state keys (a Python float each), before the arrays in torch's order.
    _scalar_keys: ClassVar[Tuple[str, ...]] = ()
    _steps_groups: ClassVar[bool] = False

    def _run_batches(self, batches: List[Any], grad_scale: Optional[float] = None) -> None:
        _core.tensor_step(self._rule, batches, self.state, grad_scale)

    def _state_shapes(self, shape: Tuple[int, ...]) -> Dict[str, Tuple[int, ...]]:
        """The state arrays a param of ``shape`` carries, in torch's order, with their shapes."""
        raise NotImplementedError

    def _import_param_state(self, param: Parameter, saved: Mapping, group: Dict[str, Any]) -> Dict[str, Any]:
        shapes = self._state_shapes(param.data.shape)
        self._check_state_keys(saved, self._scalar_keys + tuple(shapes))
        state: Dict[str, Any] = {name: state_step(repr(name), saved[name]) for name in self._scalar_keys}
        for key, shape in shapes.items():
            state[key] = state_copy_shaped(repr(key), saved[key], param.data, shape)
        return state
