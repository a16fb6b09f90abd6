"""Assignment 2, "Optimizers from scratch": the cases each optimizer is checked on.

Eight graded optimizers, each compared step for step with its reference in ``coursekit.optim``
by `coursekit.grading.optimizers` (``check_optimizer(SGD, "SGD", lr=0.05)`` in a visible test,
``record_optimizer("ps2.sgd", SGD)`` in a hidden one). The hidden cases differ from the visible
ones where they can (dampening, a centred RMSprop, AMSGrad, other betas), so a class that only
handles the visible settings loses points. Every case runs in every variant of
`coursekit.grading.optimizers.variants` (float64, float32, two parameter groups, a
``state_dict`` resume; float32 on CUDA where there is a GPU).
"""

from __future__ import annotations

from ..optimizers import OptimizerTask
from ..registry import TASKS

TASKS["ps2.sgd"] = OptimizerTask(
    [("SGD", {"lr": 0.05}), ("SGD", {"lr": 0.05, "weight_decay": 0.1})]
)
TASKS["ps2.sgd_momentum"] = OptimizerTask(
    [
        ("SGD", {"lr": 0.05, "momentum": 0.9}),
        ("SGD", {"lr": 0.05, "momentum": 0.9, "dampening": 0.5}),
        ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    ]
)
TASKS["ps2.rprop"] = OptimizerTask(
    [
        ("Rprop", {"lr": 0.01}),
        ("Rprop", {"lr": 0.02, "etas": (0.4, 1.3), "step_sizes": (1e-4, 0.05)}),
    ]
)
TASKS["ps2.adagrad"] = OptimizerTask(
    [("Adagrad", {"lr": 0.1}), ("Adagrad", {"lr": 0.1, "eps": 1e-3})]
)
TASKS["ps2.rmsprop"] = OptimizerTask(
    [
        ("RMSprop", {"lr": 0.01}),
        ("RMSprop", {"lr": 0.01, "alpha": 0.9, "centered": True}),
    ]
)
TASKS["ps2.adadelta"] = OptimizerTask(
    [("Adadelta", {"lr": 1.0}), ("Adadelta", {"lr": 0.5, "rho": 0.8, "eps": 1e-4})]
)
TASKS["ps2.adam"] = OptimizerTask(
    [
        ("Adam", {"lr": 0.01}),
        ("Adam", {"lr": 0.01, "betas": (0.8, 0.9), "weight_decay": 0.1}),
        ("Adam", {"lr": 0.01, "amsgrad": True}),
    ]
)
TASKS["ps2.adamax"] = OptimizerTask(
    [("Adamax", {"lr": 0.01}), ("Adamax", {"lr": 0.02, "betas": (0.5, 0.9)})]
)
