"""Learning-rate schedulers: torch's ``torch.optim.lr_scheduler`` (2.15) for rustoptim optimizers.

Every scheduler of torch 2.15 with torch's arguments, defaults, messages and
arithmetic (the same recursions, so the lrs equal torch's to the last bit),
plus ``SWALR`` (also importable from ``rustoptim.swa_utils``)::

    opt = rustoptim.SGD(params, lr=0.1, momentum=0.9)
    sched = rustoptim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=1000)
    for batch in data:
        ...
        opt.step(grads=grads)
        sched.step()

Resuming continues the uninterrupted run exactly, for every scheduler::

    rustoptim.save({"opt": opt.state_dict(), "sched": sched.state_dict()}, path)
    ...
    ckpt = rustoptim.load(path)
    opt.load_state_dict(ckpt["opt"])
    sched = OneCycleLR(opt, max_lr=0.1, total_steps=1000)   # same arguments
    sched.load_state_dict(ckpt["sched"])                     # restores the lrs in effect at save time

(torch re-applies the constructor's first factor in this pattern, see
:mod:`rustoptim.lr_scheduler._base` for how rustoptim avoids it.)
"""

from ._base import LRScheduler
from ._composite import ChainedScheduler, SequentialLR
from ._cosine import CosineAnnealingLR, CosineAnnealingWarmRestarts
from ._cyclic import CyclicLR, OneCycleLR
from ._decay import ConstantLR, ExponentialLR, LinearLR, MultiStepLR, PolynomialLR, StepLR
from ._lambda import LambdaLR, MultiplicativeLR
from ._plateau import ReduceLROnPlateau
from ._swa import SWALR

#: torch's old name of the base class.
_LRScheduler = LRScheduler

__all__ = [
    "LRScheduler",
    "LambdaLR",
    "MultiplicativeLR",
    "StepLR",
    "MultiStepLR",
    "ConstantLR",
    "LinearLR",
    "ExponentialLR",
    "SequentialLR",
    "CosineAnnealingLR",
    "ChainedScheduler",
    "ReduceLROnPlateau",
    "CyclicLR",
    "CosineAnnealingWarmRestarts",
    "OneCycleLR",
    "PolynomialLR",
    "SWALR",
]
