"""Assignment 6, "Deep linear networks": what each answer is compared with.

Six graded functions, each recorded by ``record_function("ps6.<name>", <name>)`` in a hidden
test and checked by ``check_function`` in the visible one, against `coursekit.trajectories`
(seed 004; Arora, Cohen and Hazan 2018; Arora, Cohen, Golowich and Hu 2019):

* ``end_to_end(weights)``: :math:`W_N \\cdots W_1` for ``weights[j]`` of shape
  ``(d_{j+1}, d_j)``, against `coursekit.trajectories.end_to_end`;
* ``balancedness(weights)``: :math:`\\|W_{j+1}^\\top W_{j+1} - W_j W_j^\\top\\|_F` for every
  adjacent pair, a ``(N - 1,)`` tensor, against `coursekit.trajectories.balancedness`;
* ``preconditioner(w_e, depth)``: :math:`P(W)` on row-major vectorisations, against
  `coursekit.trajectories.preconditioner`;
* ``end_to_end_step(w_e, grad, lr, depth)``: the discrete end-to-end update, against
  `coursekit.trajectories.end_to_end_step`;
* ``l4_losses(weights, x, y, lr, steps)``: the :math:`\\ell_4` loss
  :math:`\\frac{1}{4m}\\sum_i \\|W_e x_i - y_i\\|_4^4` along ``steps`` full-batch gradient
  descent steps on the weights (the start included), against `coursekit.trajectories.depth_run`
  with `coursekit.trajectories.lp_loss`;
* ``steps_by_depth(inits, x, y, lrs, threshold, max_steps)``: for each depth's starting
  weights, the fewest steps (over the learning rates ``lrs``) after which the loss is at most
  ``threshold``, ``inf`` where no rate gets there within ``max_steps``: the acceleration
  experiment, against `depth_run` and `coursekit.trajectories.steps_to_threshold`.

Cases are built here with plain torch from fixed seeds (this module also runs in the student's
kernel): end-to-end matrices that are square and well conditioned (smallest singular value at
least 0.3), because a fractional power of a zero eigenvalue turns rounding into real numbers
(:math:`(10^{-17})^{1/3} \\approx 2 \\cdot 10^{-6}`) and two right answers could then disagree.
The starts of the acceleration experiment are balanced factorisations of one matrix (its SVD
with the singular values split evenly over the layers and random rotations between them), the
start the lecture uses.

`coursekit.trajectories` answers every question and `coursekit.models.DeepLinear` the first two,
so both are hidden while grading; delegating to them fails there.

Tolerances: float64 throughout, ``rtol = 1e-6`` and ``atol = 1e-9`` (the defaults) for the
first five: right answers differ in the order of operations (and in the eigendecomposition
routine) only, by far less. The loss curves stay within them because every case's rate is
stable, so rounding does not grow. The step counts are compared to within one step
(``atol = 1``): a loss that lands within rounding of the threshold may be counted a step
earlier or later by another correct loop; any real mistake (a missing 1/4, a mean over the
wrong axis, a rate grid searched wrongly) moves them by far more.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..functions import FunctionTask
from ..registry import TASKS

F64 = torch.float64
LIBRARY = ("coursekit.trajectories", "coursekit.models")


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _weights(widths: tuple[int, ...], seed: int, scale: float = 0.7) -> list[Tensor]:
    """Gaussian layers with entries N(0, scale^2 / d_in): neither balanced nor special."""
    g = _generator(seed)
    return [
        torch.randn(d_out, d_in, generator=g, dtype=F64) * (scale / math.sqrt(d_in))
        for d_in, d_out in zip(widths[:-1], widths[1:])
    ]


def _rotation(n: int, g: torch.Generator) -> Tensor:
    q, r = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=F64))
    return q * torch.sign(torch.diagonal(r))


def _balanced(a: Tensor, depth: int, seed: int) -> list[Tensor]:
    """W_N ... W_1 = a with W_1 = Q_1 S^(1/N) V^T, W_j = Q_j S^(1/N) Q_(j-1)^T, W_N = U S^(1/N)
    Q_(N-1)^T (hidden width min(a.shape)): balanced, W_(j+1)^T W_(j+1) = W_j W_j^T."""
    u, s, vt = torch.linalg.svd(a, full_matrices=False)
    root = torch.diag(s ** (1.0 / depth))
    g = _generator(seed)
    rotations = [_rotation(len(s), g) for _ in range(depth - 1)]
    lefts = [*rotations, u]
    rights = [vt, *(q.T for q in rotations)]
    return [left @ root @ right for left, right in zip(lefts, rights)]


def _square(d: int, seed: int) -> Tensor:
    """A d x d matrix with singular values spread over [0.3, 1.5] and random singular vectors."""
    g = _generator(seed)
    values = torch.linspace(0.3, 1.5, d, dtype=F64)
    return _rotation(d, g) @ torch.diag(values) @ _rotation(d, g)


def _regression(m: int, d: int, seed: int) -> tuple[Tensor, Tensor]:
    """Inputs with scales from 1 to 0.3 and a linear teacher with a little noise: ``(m, d)``,
    ``(m, 1)``."""
    g = _generator(seed)
    x = torch.randn(m, d, generator=g, dtype=F64) * torch.logspace(0, math.log10(0.3), d, dtype=F64)
    teacher = torch.randn(d, 1, generator=g, dtype=F64)
    return x, x @ teacher + 0.05 * torch.randn(m, 1, generator=g, dtype=F64)


def _product_cases() -> list[tuple]:
    return [
        (_weights((3, 4, 2), 0),),
        (_weights((5, 5, 5, 5), 1),),
        (_weights((2, 6, 3, 4, 1), 2),),
        (_balanced(_square(4, 3), 3, 4),),
    ]


# (d, depth, seed): depth 1 (P = I), the square nets of the lecture, one deeper.
PRECONDITIONER_CASES = ((3, 1, 5), (3, 2, 6), (4, 3, 7), (2, 5, 8))


def _preconditioner_cases() -> list[tuple]:
    return [(_square(d, seed), depth) for d, depth, seed in PRECONDITIONER_CASES]


# (d, depth, lr, seed)
STEP_CASES = ((3, 1, 0.1, 9), (3, 2, 0.05, 10), (4, 3, 0.2, 11), (2, 4, 0.01, 12))


def _step_cases() -> list[tuple]:
    cases = []
    for d, depth, lr, seed in STEP_CASES:
        grad = torch.randn(d, d, generator=_generator(seed + 100), dtype=F64)
        cases.append((_square(d, seed), grad, lr, depth))
    return cases


# (depth, lr, steps, seed): stable rates, so the curves contract and rounding does not grow.
LOSS_CASES = ((1, 0.05, 30, 13), (2, 0.05, 30, 14), (3, 0.1, 20, 15))


def _loss_cases() -> list[tuple]:
    cases = []
    for depth, lr, steps, seed in LOSS_CASES:
        x, y = _regression(40, 4, seed)
        a = torch.randn(1, 4, generator=_generator(seed + 200), dtype=F64) * 0.5
        cases.append((_balanced(a, depth, seed + 300), x, y, lr, steps))
    return cases


# (m, d, seed, threshold as a fraction of the starting loss, max_steps)
DEPTH_CASES = ((64, 6, 16, 1e-3, 200), (48, 4, 17, 1e-3, 400))
DEPTH_LRS = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0)


def _depth_cases() -> list[tuple]:
    cases = []
    for m, d, seed, fraction, max_steps in DEPTH_CASES:
        x, y = _regression(m, d, seed)
        a = torch.randn(1, d, generator=_generator(seed + 400), dtype=F64) * (0.1 / math.sqrt(d))
        inits = [_balanced(a, depth, seed + 500) for depth in (1, 2, 3)]
        start = ((x @ a.T - y) ** 4).sum().item() / (4 * m)
        cases.append((inits, x, y, list(DEPTH_LRS), fraction * start, max_steps))
    return cases


# --- The references: the library, imported where the comparison runs ---------------------------


def _end_to_end(weights) -> Tensor:
    from coursekit.trajectories import end_to_end

    return end_to_end(weights)


def _balancedness(weights) -> Tensor:
    from coursekit.trajectories import balancedness

    return balancedness(weights)


def _preconditioner(w_e, depth) -> Tensor:
    from coursekit.trajectories import preconditioner

    return preconditioner(w_e, depth)


def _end_to_end_step(w_e, grad, lr, depth) -> Tensor:
    from coursekit.trajectories import end_to_end_step

    return end_to_end_step(w_e, grad, lr, depth)


def _l4_losses(weights, x, y, lr, steps) -> Tensor:
    from coursekit.trajectories import depth_run, lp_loss

    return depth_run(weights, lp_loss(x, y, 4.0), lr, steps)


def _steps_by_depth(inits, x, y, lrs, threshold, max_steps) -> Tensor:
    from coursekit.trajectories import depth_run, lp_loss, steps_to_threshold

    loss = lp_loss(x, y, 4.0)
    best = []
    for weights in inits:
        counts = [
            steps_to_threshold(depth_run(weights, loss, lr, max_steps), threshold) for lr in lrs
        ]
        best.append(min((c for c in counts if c is not None), default=math.inf))
    return torch.tensor(best, dtype=F64)


TASKS["ps6.end_to_end"] = FunctionTask(
    reference=_end_to_end,
    cases=_product_cases,
    describe=("widths 3-4-2", "widths 5-5-5-5", "widths 2-6-3-4-1", "a balanced 4-4-4-4 net"),
    hidden=LIBRARY,
)
TASKS["ps6.balancedness"] = FunctionTask(
    reference=_balancedness,
    cases=_product_cases,
    describe=("widths 3-4-2", "widths 5-5-5-5", "widths 2-6-3-4-1", "a balanced 4-4-4-4 net"),
    hidden=LIBRARY,
)
TASKS["ps6.preconditioner"] = FunctionTask(
    reference=_preconditioner,
    cases=_preconditioner_cases,
    describe=tuple(f"a {d} x {d} W, depth {n}" for d, n, _ in PRECONDITIONER_CASES),
    hidden=LIBRARY,
)
TASKS["ps6.end_to_end_step"] = FunctionTask(
    reference=_end_to_end_step,
    cases=_step_cases,
    describe=tuple(f"a {d} x {d} W, depth {n}, lr {lr:g}" for d, n, lr, _ in STEP_CASES),
    hidden=LIBRARY,
)
TASKS["ps6.l4_losses"] = FunctionTask(
    reference=_l4_losses,
    cases=_loss_cases,
    describe=tuple(f"depth {n}, lr {lr:g}, {t} steps" for n, lr, t, _ in LOSS_CASES),
    hidden=LIBRARY,
)
TASKS["ps6.steps_by_depth"] = FunctionTask(
    reference=_steps_by_depth,
    cases=_depth_cases,
    describe=tuple(
        f"{m} samples in {d} dimensions, threshold {f:g} of the start, {t} steps at most"
        for m, d, _, f, t in DEPTH_CASES
    ),
    hidden=LIBRARY,
    rtol=0.0,
    atol=1.0,
)
