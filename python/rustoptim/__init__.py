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
from . import swa_utils
from ._core import __version__ as __version__  # Cargo.toml's version, compiled in; the wheel's metadata has the same.
from .adadelta import Adadelta
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .adamax import Adamax
from .clip_grad import (
    GradNormScale,
    clip_grad_norm_,
    clip_grad_norm_scale,
    clip_grad_value_,
    clip_grads_with_norm_,
    get_total_norm,
)
from .errors import (
    AliasError,
    BoundsError,
    DTypeError,
    FileFormatError,
    HyperparameterError,
    InternalError,
    NoGradientWarning,
    LayoutError,
    NonFiniteNormError,
    NonFiniteError,
    OptionError,
    ReadOnlyError,
    RustoptimError,
    ShapeError,
    StateDictError,
)
from .lbfgs import LBFGS
from .nadam import NAdam
from .minimize import LbfgsInvHessProduct, minimize
from .optimizer import Optimizer
from .parameter import Parameter
from .rmsprop import RMSprop
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

# RAdam, ASGD, Rprop.
from .asgd import ASGD
from .radam import RAdam
from .rprop import Rprop

__all__ = [
    "Parameter",
    "Optimizer",
    "Adam",
    "AdamW",
    "SGD",
    "Adagrad",
    "RMSprop",
    "Adadelta",
    "Adamax",
    "NAdam",
    "LBFGS",
    "clip_grad_norm_",
    "clip_grad_norm_scale",
    "GradNormScale",
    "clip_grad_value_",
    "get_total_norm",
    "clip_grads_with_norm_",
    "swa_utils",
    "minimize",
    "LbfgsInvHessProduct",
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
    "NonFiniteNormError",
    "BoundsError",
    "NonFiniteError",
    "OptionError",
    "InternalError",
    "NoGradientWarning",
    # RAdam, ASGD, Rprop.
    "RAdam",
    "ASGD",
    "Rprop",
    "Adafactor",
    "Muon",
]
