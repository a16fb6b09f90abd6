r"""p synchronous workers simulated in one process: one tensor of shape ``(p, d)`` holds them all.

Running p processes is the honest way to see distributed SGD (`coursekit.distributed.runtime`),
but it is slow for sweeps and awkward for analysis. On a quadratic problem every algorithm of
lecture 5 is a few lines of tensor algebra when the workers are the rows of one tensor
``workers`` (p, d) and the center variable is one vector ``center`` (d,): the update of all
workers is one batched expression, and a collective (the all-reduce of EASGD) is a ``sum``
over dim 0.

The simulator follows the course's conventions for real runs exactly, so that
``simulate_easgd`` equals a p-process synchronous EASGD run on the same data and seeds to
rounding error (float64: about 1e-12):

* all workers and the center start at ``x0``;
* worker r's t-th minibatch is the t-th item of ``minibatches(n, batch_size, steps,
  seed=seed + r)``;
* the model is ``nn.Linear(d, 1, bias=False)`` with loss ``F.mse_loss``, whose gradient on a
  batch of size B is :math:`g = \tfrac{2}{B} X_b^\top (X_b w - y_b)`;
* synchronous EASGD (Zhang, Choromanska, LeCun 2015, arXiv:1412.6651), step t, period
  :math:`\tau`, moving rate :math:`\alpha` (:math:`\beta = p\alpha`):

  .. math::
      g_i &= \nabla f_i(x_i) \quad\text{(at the old } x_i\text{)} \\
      d_i &= \alpha (x_i - \tilde x) \text{ if } t \bmod \tau = 0 \text{ else } 0
             \quad\text{(old } x_i\text{, old } \tilde x\text{)} \\
      x_i &\leftarrow x_i - \eta g_i - d_i, \qquad
      \tilde x \leftarrow \tilde x + \textstyle\sum_i d_i .

  EAMSGD (``momentum`` :math:`\delta > 0`) applies the elastic step first, then the Nesterov
  step :math:`v_i \leftarrow \delta v_i - \eta \nabla f_i(x_i + \delta v_i)`,
  :math:`x_i \leftarrow x_i + v_i`.

The updates are small pure functions (`easgd_step`, `eamsgd_step`, `local_sgd_step`,
`downpour_step`) that an assignment can ask students to write; the drivers only gather
minibatches and call them.

    result = simulate_easgd(x, y, x0, workers=4, lr=0.01, alpha=0.1, tau=4, steps=200,
                            batch_size=32, seed=0)
    result.workers, result.center, result.center_loss  # (4, d), (d,), (200,)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor

from coursekit.ensembles import minibatches

from .least_squares import least_squares_grads

__all__ = [
    "Simulation",
    "admm_center_step",
    "admm_dual_step",
    "admm_worker_step",
    "downpour_step",
    "eamsgd_step",
    "easgd_step",
    "local_sgd_step",
    "simulate_admm_round_robin",
    "simulate_downpour",
    "simulate_easgd",
    "simulate_easgd_quadratic",
    "simulate_local_sgd",
]

GradFn = Callable[[Tensor], Tensor]  # (p, d) points -> (p, d) gradients, one row per worker


@dataclass
class Simulation:
    """The end of a simulated run.

    workers: (p, d) the workers' final parameters.
    center: (d,) the final center variable (EASGD's center, Downpour's server, the workers'
        mean for local SGD).
    center_loss: (steps,) the full-data loss of the center after each step.
    """

    workers: Tensor
    center: Tensor
    center_loss: Tensor


# ---------------------------------------------------------------------------------------------
# The updates: pure functions of the state, vectorised over the workers (dim 0).
# ---------------------------------------------------------------------------------------------


def easgd_step(
    workers: Tensor, center: Tensor, grads: Tensor, *, lr: float, alpha: float, communicate: bool
) -> tuple[Tensor, Tensor]:
    r"""One synchronous EASGD step of all workers: returns ``(workers, center)``.

    .. math::
        d_i = \alpha (x_i - \tilde x)\ \text{(if communicate, else 0)}, \quad
        x_i \leftarrow x_i - \eta g_i - d_i, \quad
        \tilde x \leftarrow \tilde x + \textstyle\sum_i d_i

    ``workers`` and ``grads`` are (p, ...), ``center`` is (...); ``grads`` were computed at the
    old ``workers``. The elastic force pulls each worker toward the center and the center
    toward the workers by the same amount, so ``sum(workers) + center`` only moves by the
    gradient steps.
    """
    if not communicate:
        return workers - lr * grads, center
    elastic = alpha * (workers - center)  # (p, ...): the d_i, from the old values
    return workers - lr * grads - elastic, center + elastic.sum(dim=0)


def eamsgd_step(
    workers: Tensor,
    center: Tensor,
    velocity: Tensor,
    grad_fn: GradFn,
    *,
    lr: float,
    alpha: float,
    momentum: float,
    communicate: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""One synchronous EAMSGD step (seed's Algorithm 2): returns ``(workers, center, velocity)``.

    The elastic step first (as in `easgd_step` without gradient), then Nesterov momentum
    :math:`\delta`:

    .. math::
        v_i \leftarrow \delta v_i - \eta \nabla f_i(x_i + \delta v_i), \qquad
        x_i \leftarrow x_i + v_i

    ``grad_fn`` maps (p, d) points to the (p, d) gradients of each worker's minibatch loss.
    """
    if communicate:
        workers, center = easgd_step(
            workers, center, torch.zeros_like(workers), lr=0.0, alpha=alpha, communicate=True
        )
    velocity = momentum * velocity - lr * grad_fn(workers + momentum * velocity)
    return workers + velocity, center, velocity


def local_sgd_step(workers: Tensor, grads: Tensor, *, lr: float, average: bool) -> Tensor:
    r"""One step of synchronous local SGD (model averaging): returns ``workers``.

    .. math::
        x_i \leftarrow x_i - \eta g_i, \quad\text{then, if average:}\quad
        x_i \leftarrow \tfrac{1}{p} \textstyle\sum_j x_j

    The drivers average after every ``tau``-th step (``(t + 1) % tau == 0``), so after a
    multiple of ``tau`` steps all workers agree.
    """
    workers = workers - lr * grads
    if average:
        workers = workers.mean(dim=0, keepdim=True).expand_as(workers).clone()
    return workers


def downpour_step(
    workers: Tensor,
    server: Tensor,
    velocity: Tensor,
    grad_fn: GradFn,
    *,
    lr: float,
    communicate: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""One step of a synchronous Downpour (seed's Algorithm 3): ``(workers, server, velocity)``.

    If communicate, every worker pushes its accumulated update and pulls the new server
    parameters (all at once, which is what makes it synchronous):
    :math:`x \leftarrow x + \sum_i v_i,\ x_i \leftarrow x,\ v_i \leftarrow 0`. Then
    :math:`g_i = \nabla f_i(x_i)`, :math:`x_i \leftarrow x_i - \eta g_i`,
    :math:`v_i \leftarrow v_i - \eta g_i`.
    """
    if communicate:
        server = server + velocity.sum(dim=0)
        workers = server.expand_as(workers).clone()
        velocity = torch.zeros_like(velocity)
    grads = grad_fn(workers)
    return workers - lr * grads, server, velocity - lr * grads


# ---------------------------------------------------------------------------------------------
# Least squares with data, following the conventions of real runs.
# ---------------------------------------------------------------------------------------------


def _check(workers: int, lr: float, tau: int, steps: int, batch_size: int) -> None:
    if workers < 1:
        raise ValueError(f"Invalid workers: {workers} (must be >= 1)")
    if lr < 0.0:
        raise ValueError(f"Invalid lr: {lr} (must be >= 0)")
    if tau < 1:
        raise ValueError(f"Invalid tau: {tau} (must be >= 1)")
    if steps < 0:
        raise ValueError(f"Invalid steps: {steps} (must be >= 0)")
    if batch_size < 1:
        raise ValueError(f"Invalid batch_size: {batch_size} (must be >= 1)")


def _setup(
    X: Tensor, y: Tensor, x0: Tensor, p: int, steps: int, batch_size: int, seed: int
) -> tuple[Tensor, Tensor, Tensor, list]:
    """Flattened targets, the (p, d) starting workers and the p batch iterators."""
    y = y.reshape(len(X)).to(X)  # (n,): accepts (n,) or (n, 1)
    x0 = x0.reshape(X.shape[1]).to(X)  # (d,): accepts (d,) or nn.Linear's (1, d)
    batches = [minibatches(len(X), batch_size, steps, seed=seed + r) for r in range(p)]
    return y, x0, x0.expand(p, -1).clone(), batches


def _batch(X: Tensor, y: Tensor, batches: list) -> tuple[Tensor, Tensor]:
    # Every worker has the same n and batch_size, so their t-th batches have the same length
    # (also the short one at an epoch's end) and stack into (p, B).
    index = torch.stack([next(b) for b in batches])  # (p, B)
    return X[index], y[index]  # (p, B, d), (p, B)


def _loss(X: Tensor, y: Tensor, w: Tensor) -> Tensor:
    return ((X @ w - y) ** 2).mean()


def simulate_easgd(
    X: Tensor,
    y: Tensor,
    x0: Tensor,
    *,
    workers: int,
    lr: float,
    alpha: float,
    tau: int,
    steps: int,
    batch_size: int,
    seed: int,
    momentum: float = 0.0,
) -> Simulation:
    """Synchronous EASGD (or EAMSGD if ``momentum > 0``) of p workers on least squares.

    Follows the module's conventions step for step, so it equals a real run of
    ``workers`` processes on the same data and seeds. ``X`` (n, d), ``y`` (n,) or (n, 1),
    ``x0`` (d,) or (1, d). Use float64 data to compare with a real run to 1e-12.
    """
    _check(workers, lr, tau, steps, batch_size)
    if alpha < 0.0:
        raise ValueError(f"Invalid alpha: {alpha} (must be >= 0)")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"Invalid momentum: {momentum} (must be in [0, 1))")
    y, center, state, batches = _setup(X, y, x0, workers, steps, batch_size, seed)
    velocity = torch.zeros_like(state)
    losses = []
    for t in range(steps):
        Xb, yb = _batch(X, y, batches)
        communicate = t % tau == 0
        if momentum == 0.0:
            grads = least_squares_grads(Xb, yb, state)
            state, center = easgd_step(
                state, center, grads, lr=lr, alpha=alpha, communicate=communicate
            )
        else:
            state, center, velocity = eamsgd_step(
                state,
                center,
                velocity,
                partial(least_squares_grads, Xb, yb),
                lr=lr,
                alpha=alpha,
                momentum=momentum,
                communicate=communicate,
            )
        losses.append(_loss(X, y, center))
    return Simulation(state, center, torch.stack(losses) if losses else X.new_zeros(0))


def simulate_local_sgd(
    X: Tensor,
    y: Tensor,
    x0: Tensor,
    *,
    workers: int,
    lr: float,
    tau: int,
    steps: int,
    batch_size: int,
    seed: int,
) -> Simulation:
    """Synchronous local SGD: each worker takes SGD steps, all average after every tau steps.

    The center reported is the workers' mean (what an all-reduce would give at any step).
    """
    _check(workers, lr, tau, steps, batch_size)
    y, _, state, batches = _setup(X, y, x0, workers, steps, batch_size, seed)
    losses = []
    for t in range(steps):
        Xb, yb = _batch(X, y, batches)
        grads = least_squares_grads(Xb, yb, state)
        state = local_sgd_step(state, grads, lr=lr, average=(t + 1) % tau == 0)
        losses.append(_loss(X, y, state.mean(dim=0)))
    center = state.mean(dim=0)
    return Simulation(state, center, torch.stack(losses) if losses else X.new_zeros(0))


def simulate_downpour(
    X: Tensor,
    y: Tensor,
    x0: Tensor,
    *,
    workers: int,
    lr: float,
    tau: int,
    steps: int,
    batch_size: int,
    seed: int,
) -> Simulation:
    """Synchronous Downpour: every tau steps all workers push their updates and pull.

    The real Downpour is asynchronous (rank 0 serves, pushes arrive in any order); here all
    pushes of one step are summed at once.
    """
    _check(workers, lr, tau, steps, batch_size)
    y, server, state, batches = _setup(X, y, x0, workers, steps, batch_size, seed)
    velocity = torch.zeros_like(state)
    losses = []
    for t in range(steps):
        Xb, yb = _batch(X, y, batches)
        state, server, velocity = downpour_step(
            state,
            server,
            velocity,
            partial(least_squares_grads, Xb, yb),
            lr=lr,
            communicate=t % tau == 0,
        )
        losses.append(_loss(X, y, server))
    return Simulation(state, server, torch.stack(losses) if losses else X.new_zeros(0))


# ---------------------------------------------------------------------------------------------
# The noiseless quadratic f(x) = h/2 ||x||^2, for the stability analysis.
# ---------------------------------------------------------------------------------------------


def simulate_easgd_quadratic(
    workers: Tensor,
    center: Tensor,
    *,
    lr: float | Tensor,
    alpha: float | Tensor,
    tau: int,
    steps: int,
    h: float = 1.0,
    momentum: float = 0.0,
) -> tuple[Tensor, Tensor]:
    r"""Synchronous EASGD on :math:`f(x) = \tfrac{h}{2}\|x\|^2` (gradient :math:`h x`, no noise).

    ``workers`` (p, ...) and ``center`` (...) are any starting states; the trailing dims are
    independent directions, because f is separable. Starting from the p + 1 basis vectors
    (``workers = I[:p]``, ``center = I[p]``, i.e. d = p + 1 directions) the result stacked as
    ``torch.cat([workers, center[None]])`` is the (p + 1, p + 1) matrix of the linear map of
    ``steps`` steps on ``(x_1, ..., x_p, center)``. ``lr`` and ``alpha`` may be tensors that
    broadcast against the trailing dims (a grid of hyper-parameters at once).
    """
    if tau < 1:
        raise ValueError(f"Invalid tau: {tau} (must be >= 1)")
    if steps < 0:
        raise ValueError(f"Invalid steps: {steps} (must be >= 0)")
    velocity = torch.zeros_like(workers)
    for t in range(steps):
        if momentum == 0.0:
            workers, center = easgd_step(
                workers, center, h * workers, lr=lr, alpha=alpha, communicate=t % tau == 0
            )
        else:
            workers, center, velocity = eamsgd_step(
                workers,
                center,
                velocity,
                lambda w: h * w,
                lr=lr,
                alpha=alpha,
                momentum=momentum,
                communicate=t % tau == 0,
            )
    return workers, center


# ---------------------------------------------------------------------------------------------
# ADMM in the round-robin scheme (seed's comparison with EASGD), one worker at a time.
# ---------------------------------------------------------------------------------------------
# The augmented Lagrangian, with the multipliers rescaled by rho (lambda_i <- lambda_i / rho):
#     max_lambda min_{x, center}  sum_i F(x_i) - rho lambda_i (x_i - center)
#                                        + rho/2 ||x_i - center||^2.
# Worker i's turn is three sub-updates, each using the latest values of the others.


def admm_dual_step(lambdas: Tensor, workers: Tensor, center: Tensor, *, worker: int) -> Tensor:
    r"""Dual ascent for worker i: :math:`\lambda_i \leftarrow \lambda_i - (x_i - \tilde x)`.

    In the seed's Lagrangian the gradient in the multiplier is :math:`-(x_i - \tilde x)`; a
    step of size :math:`\rho` (the usual choice), written for the multiplier divided by
    :math:`\rho`, is this update.
    Returns the new ``lambdas`` (p, ...); the other rows are unchanged.
    """
    lambdas = lambdas.clone()
    lambdas[worker] = lambdas[worker] - (workers[worker] - center)
    return lambdas


def admm_worker_step(
    lambdas: Tensor,
    workers: Tensor,
    center: Tensor,
    grad: Tensor,
    *,
    worker: int,
    lr: float | Tensor,
    rho: float | Tensor,
) -> Tensor:
    r"""Linearised primal step for worker i: returns the new ``workers`` (p, ...).

    F is replaced by its linearisation at :math:`x_i` plus :math:`\tfrac{1}{2\eta}\|x - x_i\|^2`
    and the Lagrangian minimised in x exactly:

    .. math::
        x_i \leftarrow \frac{x_i - \eta \nabla F(x_i) + \eta\rho(\lambda_i + \tilde x)}
                             {1 + \eta\rho}

    ``grad`` is :math:`\nabla F(x_i)` (shape of one worker), ``lambdas`` already updated.
    """
    workers = workers.clone()
    step = lr * rho
    workers[worker] = (workers[worker] - lr * grad + step * (lambdas[worker] + center)) / (1 + step)
    return workers


def admm_center_step(lambdas: Tensor, workers: Tensor) -> Tensor:
    r"""The center minimises the Lagrangian exactly.

    .. math:: \tilde x = \tfrac1p \textstyle\sum_i (x_i - \lambda_i)
    """
    return (workers - lambdas).mean(dim=0)


def simulate_admm_round_robin(
    lambdas: Tensor,
    workers: Tensor,
    center: Tensor,
    *,
    lr: float,
    rho: float,
    rounds: int,
    h: float = 1.0,
) -> tuple[Tensor, Tensor, Tensor]:
    r"""ADMM on :math:`F(x) = \tfrac{h}{2}\|x\|^2` with workers taking turns 0, 1, ..., p-1.

    One round is every worker's dual step, primal step and center update, one worker after the
    other. Returns ``(lambdas, workers, center)`` after ``rounds`` rounds.
    """
    if rounds < 0:
        raise ValueError(f"Invalid rounds: {rounds} (must be >= 0)")
    for _ in range(rounds):
        for i in range(len(workers)):
            lambdas = admm_dual_step(lambdas, workers, center, worker=i)
            workers = admm_worker_step(
                lambdas, workers, center, h * workers[i], worker=i, lr=lr, rho=rho
            )
            center = admm_center_step(lambdas, workers)
    return lambdas, workers, center
