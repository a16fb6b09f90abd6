"""Assignment 5, "Distributed SGD": what each answer is compared with.

Six graded answers, each checked against a reference on the cases below
(``check_function("ps5.easgd_step", easgd_step)`` in a visible test, ``record_function`` in a
hidden one):

* ``easgd_step(workers, center, grads, lr, alpha, communicate)``: one synchronous EASGD step of
  p workers held as the rows of one ``(p, d)`` tensor;
* ``downpour_step(workers, server, velocity, grad_fn, lr, communicate)``: one step of
  synchronous Downpour (push the accumulated updates, pull the server, then a local step);
* ``mode_maps(eta, beta, tau, p)``: one period of synchronous EASGD on f(x) = x^2/2 split into
  the 2x2 mean-mode matrix and the difference-mode factor;
* ``largest_stable_beta(eta, tau, p)``: the end of the interval of stable beta = p alpha for
  the settings of `BETA_CASES`, to `BETA_TOL`;
* ``simulate(X, y, x0, p, lr, alpha, tau, steps, batch_size, seed)``: synchronous EASGD of p
  simulated workers on least squares, with the minibatches of a real p-process run;
* ``easgd_worker(X, y, x0, lr, alpha, tau, steps, batch_size, seed)``: one rank of a real
  synchronous EASGD run, launched in two processes by
  `coursekit.distributed.notebook.two_processes`; its result
  must equal the simulation's, and it must send exactly one all-reduce of d numbers per
  communication.

The references are `coursekit.distributed.simulate` and `coursekit.distributed.stability`, called
from the private functions at the end of this module (for ``largest_stable_beta``: a bisection
to 1e-12 on `stability.stability_map`). Both modules (and the modules that run the
same algorithms in real processes) are hidden while a submission is graded, so a submission
that calls them fails there. The inputs and the least-squares gradient come from
`coursekit.distributed.least_squares`, which stays available.

The student's functions take positional arguments in the order of the library's (the library
makes the hyper-parameters keyword-only; the grader calls ``fn(*args)``), so the references
below are thin wrappers that pass them on by name.

Tolerances: every case is float64. A student's arithmetic can differ from the reference's in the
order of operations only (``x - lr g - d`` against ``x - (lr g + d)``, a batched einsum against
a matmul per worker); over the 40-step runs of `simulate` such rounding stays near 1e-15
relative, since the runs contract. The default ``rtol = 1e-6`` catches any real mistake (a
wrong sign, the center updated from the new workers, a step in the wrong order inside the
period).

``largest_stable_beta`` is compared with ``atol = BETA_TOL = 1e-3`` and no relative tolerance:
the notebook asks for beta* to 1e-3, which a bisection on the student's own spectral radius
reaches in 11 halvings of [0, 2]; an answer read off the stability map (81 x 81 grid, spacing
0.025) or a guess does not. `BETA_CASES` are chosen so that the stable betas form one interval
(0, beta*) with beta* < BETA_MAX = 2 (checked by brute force in tests/test_ps5.py), the answers
are more than 0.05 apart (a constant passes at most one case), and in the last case the
difference mode, not the mean mode, ends the interval (forgetting it fails that case).

The real run (``easgd_worker``, part 4) runs in the grader's sandbox too:
`coursekit.distributed.notebook.two_processes` starts two processes with
`coursekit.distributed.runtime.launch`, which joins them over TCP on 127.0.0.1 (the sandbox's own
loopback; its network namespace has nothing else), and each compiles the worker's source text.
The record holds each rank's final x_i,
its copy of the center and the bytes it sent through `runtime.all_reduce`; the reference is
`simulate_easgd` with p = 2 and the byte count of one all-reduce of d float64 per communication
step. The same rtol = 1e-6 applies: the all-reduce adds the same two elastic differences as the
simulation's sum (the solution's real run and its simulation differ by 2e-16). What is checked is the numbers, not that they crossed between the processes:
a worker that simulates both ranks and all-reduces a dummy tensor of the right size would pass,
and a reader of the code would see it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ...distributed.least_squares import least_squares_grads, least_squares_problem
from ...distributed.notebook import WORLD_SIZE
from ..functions import FunctionTask
from ..registry import TASKS

F64 = torch.float64
HIDDEN = (
    "coursekit.distributed.simulate",
    "coursekit.distributed.stability",
    "coursekit.distributed.sync",
    "coursekit.distributed.asynchronous",
)
SEED = 2026_05  # every case below draws from a generator seeded from this

# Part 3's question: the largest stable beta for these (eta, tau, p). The first has the closed
# form (4 - 2 eta) / (4 - eta) = 6/7 (p = tau = 1); the second is the old setting "A"
# (eta = 0.2, tau = 10), where beta = 1.9 diverges although beta* is about 1.61; in the last the
# difference mode ends the interval (beta* = 0.19 / 0.45 = 0.4222...).
BETA_CASES = ((0.5, 1, 1), (0.2, 10, 1), (1.8, 3, 4), (1.9, 2, 2))
BETA_MAX = 2.0  # in every case the stable betas are (0, beta*) with beta* < BETA_MAX
BETA_TOL = 1e-3


def _generator(offset: int) -> torch.Generator:
    return torch.Generator().manual_seed(SEED + offset)


def problem(n: int, d: int, offset: int) -> tuple[Tensor, Tensor, Tensor]:
    """A case's least-squares problem ``(X, y, x0)`` in float64, from this module's seed."""
    return least_squares_problem(n, d, seed=SEED + offset)


# --- Part 1: EASGD's step -------------------------------------------------------------------


def _easgd_cases() -> list[tuple]:
    cases = []
    for offset, (p, d, lr, alpha, communicate) in enumerate(
        [
            (1, 3, 0.1, 0.5, True),
            (3, 5, 0.05, 0.2, True),
            (3, 5, 0.05, 0.2, False),
            (8, 4, 0.3, 0.1, True),
        ]
    ):
        gen = _generator(100 + offset)
        workers = torch.randn(p, d, generator=gen, dtype=F64)
        center = torch.randn(d, generator=gen, dtype=F64)
        grads = torch.randn(p, d, generator=gen, dtype=F64)
        cases.append((workers, center, grads, lr, alpha, communicate))
    return cases


# --- Part 2: Downpour's step ----------------------------------------------------------------


def _downpour_cases() -> list[tuple]:
    cases = []
    for offset, (p, d, batch, lr, communicate) in enumerate(
        [
            (1, 3, 4, 0.1, True),
            (3, 4, 6, 0.05, True),
            (3, 4, 6, 0.05, False),
            (5, 2, 3, 0.2, True),
        ]
    ):
        gen = _generator(200 + offset)
        X = torch.randn(p, batch, d, generator=gen, dtype=F64)
        y = torch.randn(p, batch, generator=gen, dtype=F64)
        workers = torch.randn(p, d, generator=gen, dtype=F64)
        server = torch.randn(d, generator=gen, dtype=F64)
        velocity = 0.1 * torch.randn(p, d, generator=gen, dtype=F64)

        def grad_fn(w: Tensor, X: Tensor = X, y: Tensor = y) -> Tensor:
            return least_squares_grads(X, y, w)

        cases.append((workers, server, velocity, grad_fn, lr, communicate))
    return cases


# --- Part 3: the stability analysis ---------------------------------------------------------


def _grid(values) -> Tensor:
    return torch.tensor(values, dtype=F64)


def _mode_cases() -> list[tuple]:
    return [
        (_grid(0.5), _grid(0.9), 1, 1),
        (_grid(1.2), _grid(0.3), 10, 4),
        (_grid([0.0, 0.4, 1.0, 1.7, 2.0]), _grid([0.9, 0.0, 1.5, 0.2, 2.0]), 1, 3),
        (
            _grid([[0.1, 0.6, 1.9], [1.0, 1.3, 0.05]]),
            _grid([[1.5, 0.7, 1.0], [1.9, 0.1, 1.2]]),
            3,
            100,
        ),
    ]


def _beta_cases() -> list[tuple]:
    return list(BETA_CASES)


# --- Part 4: the simulation -----------------------------------------------------------------


def _simulate_cases() -> list[tuple]:
    X, y, x0 = problem(64, 5, 300)
    X2, y2, x02 = problem(50, 3, 301)
    return [
        # X, y, x0, p, lr, alpha, tau, steps, batch_size, seed
        (X, y, x0, 1, 0.05, 0.3, 1, 40, 16, 0),
        (X, y, x0, 2, 0.05, 0.2, 1, 40, 16, 7),
        (X, y, x0, 4, 0.05, 0.05, 3, 40, 8, 1),
        (X2, y2, x02, 3, 0.1, 0.1, 5, 40, 12, 3),  # 50 = 4 x 12 + 2: a short batch per epoch
    ]


def _real_run_cases() -> list[tuple]:
    X, y, x0 = problem(50, 3, 400)
    # X, y, x0, lr, alpha, tau, steps, batch_size, seed: 10 communications in 30 steps, and a
    # short batch at the end of every epoch (50 = 4 x 12 + 2)
    return [(X, y, x0, 0.1, 0.2, 3, 30, 12, 3)]


# --- The references --------------------------------------------------------------------------


def _easgd_step(workers, center, grads, lr, alpha, communicate):
    from coursekit.distributed import simulate

    return simulate.easgd_step(workers, center, grads, lr=lr, alpha=alpha, communicate=communicate)


def _downpour_step(workers, server, velocity, grad_fn: Callable, lr, communicate):
    from coursekit.distributed import simulate

    return simulate.downpour_step(
        workers, server, velocity, grad_fn, lr=lr, communicate=communicate
    )


def _mode_maps(eta, beta, tau, p):
    from coursekit.distributed import stability

    return stability.easgd_mode_maps(eta, beta, tau=tau, p=p)


def _largest_stable_beta(eta: float, tau: int, p: int) -> float:
    """beta* by bisection on [0, BETA_MAX] to 1e-12: radius < 1 below it, >= 1 above."""
    from coursekit.distributed import stability

    lo, hi = 0.0, BETA_MAX
    while hi - lo > 1e-12:
        mid = (lo + hi) / 2
        radius = stability.stability_map(_grid([eta]), _grid([mid]), tau=tau, p=p).item()
        lo, hi = (mid, hi) if radius < 1.0 else (lo, mid)
    return (lo + hi) / 2


def _simulate(X, y, x0, p, lr, alpha, tau, steps, batch_size, seed):
    from coursekit.distributed import simulate

    result = simulate.simulate_easgd(
        X,
        y,
        x0,
        workers=p,
        lr=lr,
        alpha=alpha,
        tau=tau,
        steps=steps,
        batch_size=batch_size,
        seed=seed,
    )
    return result.workers, result.center


def _real_run(X, y, x0, lr, alpha, tau, steps, batch_size, seed) -> dict[str, Tensor]:
    workers, center = _simulate(X, y, x0, WORLD_SIZE, lr, alpha, tau, steps, batch_size, seed)
    communications = len(range(0, steps, tau))  # t = 0, tau, 2 tau, ...
    sent = communications * X.shape[1] * X.element_size()  # one all-reduce of d numbers each
    return {
        "workers": workers,
        "centers": center.expand(WORLD_SIZE, -1),
        "bytes_sent": torch.full((WORLD_SIZE,), float(sent), dtype=F64),
    }


TASKS["ps5.easgd_step"] = FunctionTask(
    reference=_easgd_step,
    cases=_easgd_cases,
    describe=(
        "p = 1 worker, d = 3, communicating",
        "p = 3, d = 5, communicating",
        "p = 3, d = 5, not communicating",
        "p = 8, d = 4, communicating",
    ),
    hidden=HIDDEN,
)
TASKS["ps5.downpour_step"] = FunctionTask(
    reference=_downpour_step,
    cases=_downpour_cases,
    describe=(
        "p = 1 worker, d = 3, communicating",
        "p = 3, d = 4, communicating",
        "p = 3, d = 4, not communicating",
        "p = 5, d = 2, communicating",
    ),
    hidden=HIDDEN,
)
TASKS["ps5.mode_maps"] = FunctionTask(
    reference=_mode_maps,
    cases=_mode_cases,
    describe=(
        "eta = 0.5, beta = 0.9, tau = 1, p = 1",
        "eta = 1.2, beta = 0.3, tau = 10, p = 4",
        "five (eta, beta) pairs of shape (5,), tau = 1, p = 3",
        "a (2, 3) grid of (eta, beta), tau = 3, p = 100",
    ),
    hidden=HIDDEN,
)
TASKS["ps5.largest_stable_beta"] = FunctionTask(
    reference=_largest_stable_beta,
    cases=_beta_cases,
    describe=tuple(f"eta = {e:g}, tau = {t}, p = {p}" for e, t, p in BETA_CASES),
    rtol=0.0,
    atol=BETA_TOL,
    hidden=HIDDEN,
)
TASKS["ps5.simulate"] = FunctionTask(
    reference=_simulate,
    cases=_simulate_cases,
    describe=(
        "p = 1, tau = 1, 40 steps",
        "p = 2, tau = 1, 40 steps",
        "p = 4, tau = 3, batches of 8, 40 steps",
        "p = 3, tau = 5, batches of 12 out of 50 samples, 40 steps",
    ),
    hidden=HIDDEN,
)
TASKS["ps5.real_run"] = FunctionTask(
    reference=_real_run,
    cases=_real_run_cases,
    describe=("two processes, tau = 3, batches of 12 out of 50 samples, 30 steps",),
    hidden=HIDDEN,
)
