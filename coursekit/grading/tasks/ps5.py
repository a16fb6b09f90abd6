"""Assignment 5, "Distributed SGD": what each answer is compared with.

Five graded answers, each checked against a reference on the cases below
(``check_function("ps5.easgd_step", easgd_step)`` in a visible test, ``record_function`` in a
hidden one):

* ``easgd_step(workers, center, grads, lr, alpha, communicate)``: one synchronous EASGD step of
  p workers held as the rows of one ``(p, d)`` tensor;
* ``downpour_step(workers, server, velocity, grad_fn, lr, communicate)``: one step of
  synchronous Downpour (push the accumulated updates, pull the server, then a local step);
* ``mode_maps(eta, beta, tau, p)``: one period of synchronous EASGD on f(x) = x^2/2 split into
  the 2x2 mean-mode matrix and the difference-mode factor;
* ``which_stable``: the student's verdict (two booleans) on the two settings of `SETTINGS`;
* ``simulate(X, y, x0, p, lr, alpha, tau, steps, batch_size, seed)``: synchronous EASGD of p
  simulated workers on least squares, with the minibatches of a real p-process run.

The references are `coursekit.distributed.simulate` and `coursekit.distributed.stability`, called
from the private functions at the end of this module. Both modules (and the modules that run the
same algorithms in real processes) are hidden while a submission is graded, so a submission
that calls them fails there; the inputs are therefore built here with plain torch, and the
least-squares gradient the notebook and the cases use is this module's own `least_squares_grads`.

The student's functions take positional arguments in the order of the library's (the library
makes the hyper-parameters keyword-only; the grader calls ``fn(*args)``), so the references
below are thin wrappers that pass them on by name.

Tolerances: every case is float64. A student's arithmetic can differ from the reference's in the
order of operations only (``x - lr g - d`` against ``x - (lr g + d)``, a batched einsum against
a matmul per worker); over the 40-step runs of `simulate` such rounding stays near 1e-15
relative, since the runs contract. The default ``rtol = 1e-6`` catches any real mistake (a
wrong sign, the center updated from the new workers, a step in the wrong order inside the
period).

The real multi-process run of part 4 is not graded (the simulation it checks is, and the
notebook skips the run in the grader's sandbox to save time): `easgd_rank` is the worker the
notebook launches on the student's machine with `coursekit.distributed.runtime.launch` (a
function defined in a notebook cannot be sent to a spawned process; one in this module can).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ..functions import TASKS, Task

F64 = torch.float64
HIDDEN = (
    "coursekit.distributed.simulate",
    "coursekit.distributed.stability",
    "coursekit.distributed.sync",
    "coursekit.distributed.asynchronous",
)
SEED = 2026_05  # every case below draws from a generator seeded from this

# Part 3's question: (eta, beta, tau, p) of settings A and B. A diverges (spectral radius of one
# period about 1.32), B converges (about 0.044): the same p and tau, and the small step is the
# unstable one.
SETTINGS = {"A": (0.2, 1.9, 10, 1), "B": (1.5, 1.0, 10, 1)}


def _generator(offset: int) -> torch.Generator:
    return torch.Generator().manual_seed(SEED + offset)


def least_squares_grads(X: Tensor, y: Tensor, w: Tensor) -> Tensor:
    r"""Each worker's gradient of its minibatch's mean squared error, all workers at once.

    ``X`` (p, B, d), ``y`` (p, B), ``w`` (p, d) -> (p, d): :math:`\tfrac{2}{B} X_i^\top
    (X_i w_i - y_i)` for worker i, the gradient of ``F.mse_loss(X_i @ w_i, y_i)``.
    """
    residual = (X @ w.unsqueeze(-1)).squeeze(-1) - y  # (p, B)
    return (2.0 / X.shape[1]) * (X.transpose(1, 2) @ residual.unsqueeze(-1)).squeeze(-1)


def problem(n: int, d: int, offset: int, noise: float = 0.1) -> tuple[Tensor, Tensor, Tensor]:
    """A least-squares problem ``(X (n, d), y (n,), x0 (d,))`` in float64 from a fixed seed."""
    gen = _generator(offset)
    X = torch.randn(n, d, generator=gen, dtype=F64)
    w_true = torch.randn(d, generator=gen, dtype=F64)
    y = X @ w_true + noise * torch.randn(n, generator=gen, dtype=F64)
    x0 = torch.randn(d, generator=gen, dtype=F64)
    return X, y, x0


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


def _which_stable_cases() -> list[tuple]:
    return [()]


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


def easgd_rank(
    X: Tensor,
    y: Tensor,
    x0: Tensor,
    *,
    lr: float,
    alpha: float,
    tau: int,
    steps: int,
    batch_size: int,
    seed: int,
) -> tuple[Tensor, Tensor]:
    """One rank of a real synchronous EASGD run on least squares: returns ``(x_i, center)``.

    Runs inside a process started by `coursekit.distributed.runtime.launch`, with the default
    process group initialised. Rank r draws its t-th minibatch as the t-th item of
    ``minibatches(n, batch_size, steps, seed=seed + r)``; every rank keeps its own copy of the
    center, and at a communication step the elastic differences ``alpha (x_i - center)`` of all
    ranks are summed by one all-reduce, so the copies stay equal.
    """
    # Written out by hand, not through `coursekit.distributed.sync.EASGD`: the notebook asks
    # students to read this loop next to their own simulation. tests/test_ps5.py checks it
    # against `simulate_easgd`, and tests/test_distributed_sim_vs_real.py checks the library's
    # EASGD the same way.
    import torch.distributed as dist

    from coursekit.distributed import runtime
    from coursekit.ensembles import minibatches

    rank = dist.get_rank()
    x, center = x0.clone(), x0.clone()
    for t, index in enumerate(minibatches(len(X), batch_size, steps, seed=seed + rank)):
        Xb, yb = X[index], y[index]  # (B, d), (B,)
        grad = (2.0 / len(index)) * Xb.T @ (Xb @ x - yb)  # at the old x
        if t % tau == 0:
            elastic = alpha * (x - center)  # from the old x and the old center
            center = center + runtime.all_reduce(elastic.clone())  # + the sum over all ranks
            x = x - lr * grad - elastic
        else:
            x = x - lr * grad
    return x, center


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


def _which_stable() -> tuple[bool, bool]:
    from coursekit.distributed import stability

    def stable(eta, beta, tau, p):
        radius = stability.stability_map(_grid([eta]), _grid([beta]), tau=tau, p=p)
        return bool(radius.item() < 1.0)

    return stable(*SETTINGS["A"]), stable(*SETTINGS["B"])


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


TASKS["ps5.easgd_step"] = Task(
    reference=f"{__name__}:_easgd_step",
    cases=_easgd_cases,
    describe=(
        "p = 1 worker, d = 3, communicating",
        "p = 3, d = 5, communicating",
        "p = 3, d = 5, not communicating",
        "p = 8, d = 4, communicating",
    ),
    hidden=HIDDEN,
)
TASKS["ps5.downpour_step"] = Task(
    reference=f"{__name__}:_downpour_step",
    cases=_downpour_cases,
    describe=(
        "p = 1 worker, d = 3, communicating",
        "p = 3, d = 4, communicating",
        "p = 3, d = 4, not communicating",
        "p = 5, d = 2, communicating",
    ),
    hidden=HIDDEN,
)
TASKS["ps5.mode_maps"] = Task(
    reference=f"{__name__}:_mode_maps",
    cases=_mode_cases,
    describe=(
        "eta = 0.5, beta = 0.9, tau = 1, p = 1",
        "eta = 1.2, beta = 0.3, tau = 10, p = 4",
        "five (eta, beta) pairs of shape (5,), tau = 1, p = 3",
        "a (2, 3) grid of (eta, beta), tau = 3, p = 100",
    ),
    hidden=HIDDEN,
)
TASKS["ps5.which_stable"] = Task(
    reference=f"{__name__}:_which_stable",
    cases=_which_stable_cases,
    describe=("(STABLE_A, STABLE_B)",),
    hidden=HIDDEN,
)
TASKS["ps5.simulate"] = Task(
    reference=f"{__name__}:_simulate",
    cases=_simulate_cases,
    describe=(
        "p = 1, tau = 1, 40 steps",
        "p = 2, tau = 1, 40 steps",
        "p = 4, tau = 3, batches of 8, 40 steps",
        "p = 3, tau = 5, batches of 12 out of 50 samples, 40 steps",
    ),
    hidden=HIDDEN,
)
