"""Assignment 4, "SGD theory and a statistical learning rate": what each answer is compared with.

Four graded answers (``check_function("ps4.stationary_variance", stationary_variance)`` or
``check_optimizer(StatisticalSGD, "StatisticalSGD", ...)`` in a visible test, ``record_function``
or ``record_optimizer`` in a hidden one):

* ``stationary_variance(lr, batch_size, curvature, noise)``: the variance SGD with a constant
  rate settles at on the one-dimensional noisy quadratic, eta sigma^2 / (B h (2 - eta h)),
  against `coursekit.sgd_theory.stationary_variance` (which takes the problem as a
  `NoisyQuadratic`; the reference below builds one);
* ``simulate_sgd(lr, batch_size, curvature, noise, start, chains, steps, seed)``: where
  ``chains`` SGD chains on that quadratic are after ``steps`` steps, all chains one float64
  tensor, against `coursekit.sgd_theory.sgd_chains` run for the same steps. The notebook fixes
  the draws as `sgd_chains` makes them: one generator seeded with ``seed``, at every step one
  ``torch.randn(chains, generator=..., dtype=float64)`` scaled by sigma / sqrt(B), so a right
  answer gives the reference's numbers, not only their statistics;
* ``linear_scaling_schedule(base_lr, batch_size, base_batch_size, warmup_steps, steps)``: the
  learning rates of steps 0, ..., steps - 1 under Goyal et al.'s linear scaling with a linear
  warm-up, against ``base_lr`` times `coursekit.optim.linear_scaling_warmup`'s factor;
* ``StatisticalSGD``: McAllester's per-coordinate statistical learning rate (seed 002) as a
  `torch.optim.Optimizer`, compared step for step with `coursekit.optim.StatisticalSGD` by
  `coursekit.grading.optimizers` on the cases of `STATISTICAL_CASES`, each in every variant
  (float64, float32, two parameter groups, a ``state_dict`` resume; float32 on CUDA where
  there is a GPU). The class has no learning rate to halve, so in the "two param groups"
  variant the second group doubles ``batch_size`` (`_double_batch`): b enters the weights
  b / B, the floor B >= b and the default lambda_eta = b / (32 L), so a class that reads it
  from anywhere but its group fails there. The hidden cases differ from the visible ones where
  they can (other warm-ups, a cap `max_lr` that binds, explicit lambdas and a large eps). In
  every case both parameters that get gradients have coordinates where the noise dominates
  (B_t > b) after the warm-up. Where B_t = b instead, the next weight b / B_t is 1, the
  averages hold only the last gradient, sigma^2 = 0 and B stays at b for good, with the step
  1/(2L) (or the cap) whatever b is; a one-step warm-up puts every coordinate there, which is
  why no case has one.

The references import the library when called: `coursekit.sgd_theory`,
`coursekit.statistical_lr` (its `scaled_lr` and `state_traces` answer nearby questions),
`coursekit.optim` and torch's optimizers are hidden while a submission is graded, so a
submission that hands a part to them fails there. The cases are built here from literals.

Tolerances: every function case is float64, compared with ``rtol = 1e-6`` and ``atol = 1e-9``
(the defaults). A right answer differs from the reference in the order of operations only:
the closed form and the schedule by an ulp or two; the chains by rounding that does not grow,
because every case has |1 - eta h| < 1, so the chains contract (the notebook's solution and
the reference agree exactly). A wrong formula, a missing sqrt(B), another draw order or an
off-by-one warm-up misses by far more. The optimizer's trajectories are compared with the
tolerances of `coursekit.grading.optimizers` (float32 to float32: 1e-4 relative); the update
is continuous in the running estimates where it switches (the floor B >= b, the clamp
sigma^2 >= 0, the cap), so rounding in another order of operations stays rounding.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..functions import FunctionTask
from ..optimizers import HIDDEN as OPTIMIZER_HIDDEN
from ..optimizers import OptimizerTask
from ..registry import TASKS

F64 = torch.float64
LIBRARY = ("coursekit.sgd_theory", "coursekit.statistical_lr", "coursekit.optim")

# (lr, batch_size, curvature, noise): eta h from 0.02 to 1.9, so every case has a stationary
# law, one where the chain overshoots (eta h > 1) and one near the edge eta h = 2.
VARIANCE_CASES = (
    (0.5, 4, 1.0, 1.0),
    (0.01, 32, 2.0, 3.0),
    (1.5, 1, 1.0, 0.5),
    (0.19, 8, 10.0, 2.0),
)

# (lr, batch_size, curvature, noise, start, chains, steps, seed): only the second has B = 1,
# where forgetting to divide the noise by sqrt(B) goes unnoticed.
CHAIN_CASES = (
    (0.1, 4, 1.0, 1.0, 0.0, 1000, 100, 0),
    (0.5, 1, 2.0, 0.5, 3.0, 500, 50, 1),
    (1.5, 16, 1.0, 2.0, -1.0, 200, 80, 2),
    (0.05, 64, 10.0, 3.0, 2.0, 300, 60, 3),
)

# (base_lr, batch_size, base_batch_size, warmup_steps, steps): a warm-up to 8x; no change of
# batch; no warm-up; a smaller batch (the rate falls during the "warm-up").
SCHEDULE_CASES = (
    (0.1, 256, 32, 5, 10),
    (0.05, 64, 64, 3, 6),
    (0.1, 512, 128, 0, 4),
    (0.2, 16, 64, 4, 8),
)

# The visible test's first setting; a longer warm-up with a cap that binds (the uncapped step at
# the floor is 1/(2L) = 1); explicit lambdas and a large eps.
STATISTICAL_CASES = (
    {"batch_size": 4, "smoothness": 2.0, "warmup": 3},
    {"batch_size": 16, "smoothness": 0.5, "warmup": 4, "max_lr": 0.3},
    {
        "batch_size": 2,
        "smoothness": 1.0,
        "warmup": 5,
        "lambda_b": 8.0,
        "lambda_eta": 0.05,
        "eps": 1e-3,
    },
)


def _variance_cases() -> list[tuple]:
    return list(VARIANCE_CASES)


def _chain_cases() -> list[tuple]:
    return list(CHAIN_CASES)


def _schedule_cases() -> list[tuple]:
    return list(SCHEDULE_CASES)


def _double_batch(hyper: dict) -> dict:
    """The second parameter group's overrides in the "two param groups" variant."""
    return {"batch_size": 2 * hyper["batch_size"]}


# --- The references: the library, imported where the comparison runs ---------------------------


def _stationary_variance(lr, batch_size, curvature, noise) -> float:
    from coursekit.sgd_theory import NoisyQuadratic, stationary_variance

    return stationary_variance(lr, batch_size, NoisyQuadratic(curvature=curvature, noise=noise))


def _simulate_sgd(lr, batch_size, curvature, noise, start, chains, steps, seed) -> Tensor:
    """theta_steps of every chain: `sgd_chains` yields theta_0, ..., theta_steps for steps + 1
    rates (the draw for the last gradient, taken at theta_steps, changes nothing)."""
    from coursekit.sgd_theory import NoisyQuadratic, sgd_chains

    problem = NoisyQuadratic(curvature=curvature, noise=noise)
    run = sgd_chains(
        problem.gradient,
        torch.full((steps + 1,), float(lr), dtype=F64),
        noise=noise,
        batch_size=batch_size,
        start=torch.full((chains,), float(start), dtype=F64),
        seed=seed,
    )
    *_, (theta, _) = run  # the last point, theta_steps
    return theta


def _linear_scaling_schedule(base_lr, batch_size, base_batch_size, warmup_steps, steps) -> Tensor:
    from coursekit.optim import linear_scaling_warmup

    factor = linear_scaling_warmup(batch_size, base_batch_size, warmup_steps)
    return torch.tensor([base_lr * factor(k) for k in range(steps)], dtype=F64)


TASKS["ps4.stationary_variance"] = FunctionTask(
    reference=_stationary_variance,
    cases=_variance_cases,
    describe=tuple(
        f"lr = {e:g}, B = {b}, h = {h:g}, sigma = {s:g}" for e, b, h, s in VARIANCE_CASES
    ),
    hidden=LIBRARY,
)
TASKS["ps4.simulate_sgd"] = FunctionTask(
    reference=_simulate_sgd,
    cases=_chain_cases,
    describe=tuple(
        f"lr = {e:g}, B = {b}, h = {h:g}, sigma = {s:g}, {n} chains from {x0:g}, {t} steps"
        for e, b, h, s, x0, n, t, _ in CHAIN_CASES
    ),
    hidden=LIBRARY,
)
TASKS["ps4.linear_scaling_schedule"] = FunctionTask(
    reference=_linear_scaling_schedule,
    cases=_schedule_cases,
    describe=tuple(
        f"base lr {lr:g}, B = {b} from {b0}, {w} warm-up steps, {t} steps"
        for lr, b, b0, w, t in SCHEDULE_CASES
    ),
    hidden=LIBRARY,
)
TASKS["ps4.statistical_sgd"] = OptimizerTask(
    [("StatisticalSGD", dict(hyper)) for hyper in STATISTICAL_CASES],
    hidden=OPTIMIZER_HIDDEN + LIBRARY[:2],
    second_group=_double_batch,
)
