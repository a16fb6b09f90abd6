"""Reference optimizers: torch.optim's algorithms, written to be read, plus the seeds' textbook forms.

Every class with a torch.optim name is a `torch.optim.Optimizer` with torch's arguments, defaults
and state keys, equal to torch.optim step for step. The textbook forms (`AveragedMomentumSGD`,
`SutskeverNesterov`, `RpropMinus`: seed 003's Rprop, which moves after a sign flip) differ from
torch on purpose; `StatisticalSGD` (seed 002) is what torch lacks; `feed_gradients` and `adamax_step_bound` serve lecture 4. Each file holds the algorithm as a per-tensor update that
reads like its equations (`foreach=False`) and a multi-tensor `torch._foreach_*` path
(`foreach=None` or `True`, the default). `fused=True` compiles the per-tensor update with
torch.compile into one kernel per step (`_fused.py`: when it pays, how it is cached).
"""

from .adadelta import Adadelta
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .adamax import Adamax
from .rmsprop import RMSprop
from .rprop import Rprop
from .schedules import inverse_decay, inverse_sqrt_decay, linear_scaling_warmup
from .sgd import SGD
from .statistical import StatisticalSGD
from .textbook import (
    AveragedMomentumSGD,
    RpropMinus,
    SutskeverNesterov,
    adamax_step_bound,
    feed_gradients,
)

__all__ = [
    "SGD",
    "Rprop",
    "Adagrad",
    "RMSprop",
    "Adadelta",
    "Adam",
    "AdamW",
    "Adamax",
    "AveragedMomentumSGD",
    "SutskeverNesterov",
    "RpropMinus",
    "StatisticalSGD",
    "feed_gradients",
    "adamax_step_bound",
    "inverse_decay",
    "inverse_sqrt_decay",
    "linear_scaling_warmup",
]
