"""Assignment 1, "Gradient descent and conditioning": what each answer is compared with.

Six functions, each checked against its reference in `coursekit.linear_unit` on the cases
below (``check_function("ps1.hessian", hessian)`` in a visible test, ``record_function`` in a
hidden one). The inputs come from fixed seeds and are built here with plain torch, because this
module is imported inside the student's kernel, where `coursekit.linear_unit` and
`coursekit.curvature` are hidden while grading (calling them would answer the questions).

Every case is in float64. Conventions (the notebook states them too): the linear unit has a
bias, theta = (w, b) with the bias last; its loss is E(theta) = 1/(2P) sum_p (y_p - w'x_p - b)^2;
`standardize` divides by the population standard deviation (1/P) and leaves constant columns at
zero.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..functions import FunctionTask
from ..registry import TASKS

F64 = torch.float64
HIDDEN = ("coursekit.linear_unit", "coursekit.curvature")
SEED = 2026_01  # every case below draws from a generator seeded from this


def _generator(offset: int) -> torch.Generator:
    return torch.Generator().manual_seed(SEED + offset)


def _inputs(offset: int, p: int, mean, scale) -> Tensor:
    """(P, d) Gaussian inputs with per-column mean and scale."""
    mean, scale = torch.tensor(mean, dtype=F64), torch.tensor(scale, dtype=F64)
    return torch.randn(p, len(mean), generator=_generator(offset), dtype=F64) * scale + mean


def _blobs(offset: int, p: int, mean, scale) -> tuple[Tensor, Tensor]:
    """Two classes (targets -1 and +1) around -c and +c, c = (1, 1), then scaled and shifted."""
    gen = _generator(offset)
    y = torch.where(torch.arange(p) % 2 == 0, -1.0, 1.0).to(F64)
    x = torch.randn(p, 2, generator=gen, dtype=F64) + y[:, None]
    return x * torch.tensor(scale, dtype=F64) + torch.tensor(mean, dtype=F64), y


def _moments(x: Tensor) -> Tensor:
    """(1/P) sum of (x, 1)(x, 1)': written out here, not imported (see the module docstring)."""
    design = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
    return design.T @ design / len(x)


def _rotated(eigenvalues, offset: int) -> Tensor:
    """Q diag(eigenvalues) Q' with a random rotation Q."""
    n = len(eigenvalues)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=_generator(offset), dtype=F64))
    return q @ torch.diag(torch.tensor(eigenvalues, dtype=F64)) @ q.T


def _random_spd(n: int, offset: int) -> Tensor:
    a = torch.randn(n, n, generator=_generator(offset), dtype=F64)
    return a @ a.T / n + 0.05 * torch.eye(n, dtype=F64)


RAW = dict(p=150, mean=(0.5, 6.0), scale=(0.5, 3.0))  # large mean, unequal scales


def _hessian_cases() -> list[tuple]:
    return [
        (torch.tensor([[1.0], [2.0], [-1.0], [0.5]], dtype=F64),),
        (_inputs(1, **RAW),),
        (_inputs(2, 40, mean=[0.0] * 5, scale=[1.0, 2.0, 0.5, 1.0, 3.0]),),
        (_inputs(3, 1, mean=[1.0, -2.0, 0.5], scale=[1.0, 1.0, 1.0]),),
    ]


def _matrix_cases() -> list[tuple]:
    return [
        (torch.diag(torch.tensor([1.0, 10.0, 100.0], dtype=F64)),),
        (_rotated([1.0, 50.0], 4),),
        (_moments(_inputs(5, **RAW)),),
        (torch.eye(4, dtype=F64),),
        (_random_spd(6, 6),),
    ]


_MATRIX_LABELS = (
    "diag(1, 10, 100)",
    "a rotated 2x2 matrix with eigenvalues 1 and 50",
    "the 3x3 Hessian of inputs with a large mean",
    "the 4x4 identity",
    "a random 6x6 positive definite matrix",
)


def _step_cases() -> list[tuple]:
    raw = _inputs(7, **RAW)
    targets = torch.randn(len(raw), generator=_generator(8), dtype=F64)
    design = torch.cat([raw, torch.ones(len(raw), 1, dtype=F64)], dim=1)
    gradient_at_zero = -design.T @ targets / len(raw)  # grad E(0) = -(1/P) X'y
    return [
        (torch.diag(torch.tensor([1.0, 4.0], dtype=F64)), torch.tensor([0.0, 3.0], dtype=F64)),
        (_rotated([1.0, 50.0], 9), torch.randn(2, generator=_generator(10), dtype=F64)),
        (_moments(raw), gradient_at_zero),
        (_random_spd(5, 11), torch.randn(5, generator=_generator(12), dtype=F64)),
    ]


def _standardize_cases() -> list[tuple]:
    constant = _inputs(14, 20, mean=[1.0, 0.0, -3.0], scale=[2.0, 1.0, 0.1])
    constant[:, 1] = 4.0
    return [
        (_inputs(13, **RAW),),
        (_inputs(15, 30, mean=[5.0, -1.0, 0.0, 2.0, 100.0], scale=[1.0, 0.1, 3.0, 1.0, 20.0]),),
        (constant,),
        (torch.tensor([[1.0, 10.0], [3.0, 30.0]], dtype=F64),),
    ]


def _descent_cases() -> list[tuple]:
    x_raw, y_raw = _blobs(16, **RAW)
    x_std = (x_raw - x_raw.mean(0)) / x_raw.std(0, correction=0)
    limit = 2.0 / torch.linalg.eigvalsh(_moments(x_raw))[-1].item()  # 2 / lambda_max
    x_one = torch.tensor([[1.0], [3.0]], dtype=F64)
    return [
        (x_one, torch.tensor([1.0, 1.0], dtype=F64), 0.1, 1),
        (x_std, y_raw, 0.5, 20),
        (x_raw, y_raw, 0.9 * limit, 50),
        (x_raw, y_raw, 1.1 * limit, 30),
    ]


# --- The references: coursekit.linear_unit, imported where the comparison runs ----------------
# (inside the student's kernel the module is hidden, so these import it only when called)


def _hessian(x):
    from coursekit.linear_unit import hessian

    return hessian(x)


def _condition_number(h):
    from coursekit.linear_unit import condition_number

    return condition_number(h)


def _max_stable_lr(h):
    from coursekit.linear_unit import max_stable_lr

    return max_stable_lr(h)


def _optimal_step(h, g):
    from coursekit.linear_unit import optimal_step

    return optimal_step(h, g)


def _standardize(x):
    from coursekit.linear_unit import standardize

    return standardize(x)


def _gradient_descent(x, y, lr, steps):
    from coursekit.linear_unit import gradient_descent_on_data

    return gradient_descent_on_data(x, y, lr, steps)


TASKS["ps1.hessian"] = FunctionTask(
    reference=_hessian,
    cases=_hessian_cases,
    describe=(
        "one input, four points",
        "two inputs with a large mean and unequal scales",
        "five inputs, 40 points",
        "a single point with three inputs",
    ),
    hidden=HIDDEN,
)
TASKS["ps1.condition_number"] = FunctionTask(
    reference=_condition_number,
    cases=_matrix_cases,
    describe=_MATRIX_LABELS,
    hidden=HIDDEN,
)
TASKS["ps1.max_stable_lr"] = FunctionTask(
    reference=_max_stable_lr,
    cases=_matrix_cases,
    describe=_MATRIX_LABELS,
    hidden=HIDDEN,
)
TASKS["ps1.optimal_step"] = FunctionTask(
    reference=_optimal_step,
    cases=_step_cases,
    describe=(
        "g along an eigenvector of diag(1, 4)",
        "a rotated 2x2 H with eigenvalues 1 and 50, a random g",
        "a linear unit's H and its gradient at theta = 0",
        "a random 5x5 H and g",
    ),
    hidden=HIDDEN,
)
TASKS["ps1.standardize"] = FunctionTask(
    reference=_standardize,
    cases=_standardize_cases,
    describe=(
        "two inputs with a large mean and unequal scales",
        "five inputs of very different scales",
        "a constant column",
        "two points",
    ),
    hidden=HIDDEN,
)
TASKS["ps1.gradient_descent"] = FunctionTask(
    reference=_gradient_descent,
    cases=_descent_cases,
    describe=(
        "one step on two points",
        "standardised inputs, lr = 0.5, 20 steps",
        "raw inputs, lr = 0.9 x 2/lambda_max, 50 steps",
        "raw inputs, lr = 1.1 x 2/lambda_max, 30 steps (diverges)",
    ),
    hidden=HIDDEN,
)
