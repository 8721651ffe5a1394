"""rustoptim: torch.optim's optimizers for NumPy arrays, with a Rust core.

The optimizers update the caller's float32/float64 arrays in place. Params are
:class:`Parameter` objects (set ``.grad`` before ``step()``) or plain arrays
(pass ``step(grads=[...])``, one gradient per param)::

    import numpy as np
    import rustoptim

    w = np.zeros(10)
    opt = rustoptim.AdamW([w], lr=1e-2)
    opt.step(grads=[np.ones(10)])

Bookkeeping (param groups, state, state dicts) follows ``torch.optim``; the
arithmetic runs in ``rustoptim._core``.
"""

from . import errors
from . import lr_scheduler
from .adam import Adam, AdamW
from .errors import (
    AliasError,
    DTypeError,
    FileFormatError,
    HyperparameterError,
    InternalError,
    LayoutError,
    ReadOnlyError,
    RustoptimError,
    ShapeError,
    StateDictError,
)
from .lbfgs import LBFGS
from .optimizer import Optimizer
from .parameter import Parameter
from .runtime import (
    get_num_threads,
    get_simd_level,
    set_num_threads,
    set_simd_level,
    simd_levels,
)
from .serialization import load, save
from .sgd import SGD
from .adafactor import Adafactor
from .muon import Muon

__all__ = [
    "Parameter",
    "Optimizer",
    "Adam",
    "AdamW",
    "SGD",
    "LBFGS",
    "save",
    "load",
    "set_num_threads",
    "get_num_threads",
    "simd_levels",
    "get_simd_level",
    "set_simd_level",
    "errors",
    "lr_scheduler",
    "RustoptimError",
    "ShapeError",
    "DTypeError",
    "ReadOnlyError",
    "AliasError",
    "LayoutError",
    "StateDictError",
    "FileFormatError",
    "HyperparameterError",
    "InternalError",
    "Adafactor",
    "Muon",
]

__version__ = "0.1.0"
