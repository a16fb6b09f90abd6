r"""Lecture 6's experiments: preconditioning, Newton's units and speed, the natural gradient's
invariance, whitening and batch normalisation, measured.

Lecture 6 ("Geometry and second order"; seeds 001 and 003). The optimizers themselves live in
`coursekit.second_order` (`Newton`, `HessianFree`, `NaturalGradient`, PRONG's whitened layers)
and the curvature tools in `coursekit.curvature`; this module holds what the lecture computes
around them.

**Preconditioning** (seed 001, "Preconditioning"; Nocedal and Wright 2006, section 5.1).
Gradient descent with a symmetric positive definite preconditioner :math:`P` on the quadratic
:math:`E(\theta) = \tfrac12 \theta^\top H \theta - c^\top \theta`,

.. math::
    \theta_{k+1} = \theta_k - \eta\, P\, \nabla E(\theta_k), \qquad
    \theta_{k+1} - \theta^\star = (I - \eta P H)(\theta_k - \theta^\star)
    \qquad\text{(`preconditioned_gd`)},

is plain gradient descent in the coordinates :math:`\phi = P^{-1/2}\theta`, whose Hessian is
:math:`P^{1/2} H P^{1/2}`: its condition number (`preconditioned_condition_number`) decides the
speed. :math:`P = H^{-1}` makes it 1 and :math:`\eta = 1` lands on :math:`\theta^\star` in one
step; the diagonal (Jacobi) preconditioner :math:`P = \mathrm{diag}(H)^{-1}` (`jacobi`) fixes
curvature along the axes only.

**Newton** (Nocedal and Wright, sections 3.3 and 3.5). `rescaled_step_ratio` measures a step
in coordinates with one parameter rescaled (lecture 4's units argument); `error_ratios`
gives :math:`e_{k+1} / e_k^p` for the quadratic convergence
:math:`\|\theta_{k+1} - \theta^\star\| \le M \|\theta_k - \theta^\star\|^2`; `paths_from`
runs an optimizer on a surface from many starts (Newton into the saddle, gradient descent out).

**Conjugate gradient**: `spd_matrix` builds test matrices with a chosen spectrum.
**Hessian-free against first-order methods** on the digits, by cost: `run_hessian_free`,
`run_first_order` (`CostRun`).

**Natural gradient** (Amari 1998): `reparameterised_logistic_paths` trains a logistic
regression in its own parameters and in :math:`\theta = A v` and maps the second run back.

**Whitening and batch normalisation** (Desjardins et al. 2015; Ioffe and Szegedy 2015):
`condition_number`, `drop_constant_features`, and `largest_stable_lr` (bisection over short
training runs).

Example::

    import torch
    from coursekit import geometry
    from coursekit.landscapes import Quadratic

    h = torch.tensor([[100.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    geometry.preconditioned_condition_number(h, geometry.jacobi(h))      # 1.0
    bowl = Quadratic(h, torch.zeros(2, dtype=torch.float64))
    path = geometry.preconditioned_gd(bowl, torch.linalg.inv(h), 1.0, 1, torch.ones(2))
    path[-1]                                                             # the minimiser, 0
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim import Optimizer

from coursekit._checks import count as _check_count
from coursekit._checks import positive as _check_positive

from .data import Split
from .ensembles import minibatches
from .landscapes import Quadratic, Surface
from .second_order import HessianFree, NaturalGradient, negative_log_likelihood

__all__ = [
    "CostRun",
    "condition_number",
    "drop_constant_features",
    "error_ratios",
    "jacobi",
    "largest_stable_lr",
    "paths_from",
    "preconditioned_condition_number",
    "preconditioned_gd",
    "reparameterised_logistic_paths",
    "rescaled_step_ratio",
    "run_first_order",
    "run_hessian_free",
    "spd_matrix",
]

MakeOptimizer = Callable[[Iterable[nn.Parameter]], Optimizer]


def _check_square(name: str, matrix: Tensor) -> None:
    if not isinstance(matrix, Tensor) or matrix.dim() != 2 or matrix.shape[0] != matrix.shape[1]:
        shape = tuple(matrix.shape) if isinstance(matrix, Tensor) else type(matrix).__name__
        raise ValueError(f"Invalid {name}: {shape} (must be a square matrix)")


# --- Preconditioning -------------------------------------------------------------------------


def condition_number(matrix: Tensor) -> float:
    r""":math:`\kappa = \lambda_{\max} / \lambda_{\min}` of a symmetric positive definite matrix.

    Infinite when the smallest eigenvalue is not positive (a singular or indefinite matrix has
    no finite condition number in this sense).
    """
    _check_square("matrix", matrix)
    values = torch.linalg.eigvalsh(matrix)
    return values[-1].item() / values[0].item() if values[0] > 0 else math.inf


def jacobi(h: Tensor) -> Tensor:
    r"""The diagonal (Jacobi) preconditioner :math:`P = \mathrm{diag}(H_{11}, \dots,
    H_{dd})^{-1}`: each coordinate's step divided by its own curvature."""
    _check_square("h", h)
    diagonal = h.diagonal()
    if not (diagonal > 0).all():
        raise ValueError("Invalid h: a diagonal entry is not positive (no Jacobi preconditioner)")
    return torch.diag(1.0 / diagonal)


def _sqrt_spd(matrix: Tensor) -> Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    if not (values > 0).all():
        raise ValueError("Invalid p: not positive definite")
    return (vectors * values.sqrt()) @ vectors.T


def preconditioned_condition_number(h: Tensor, p: Tensor) -> float:
    r""":math:`\kappa(P^{1/2} H P^{1/2})`: the condition number gradient descent sees when it is
    preconditioned by :math:`P` (the Hessian in the coordinates :math:`\phi = P^{-1/2}\theta`).

    :math:`P^{1/2} H P^{1/2}` is similar to :math:`PH`, so it has :math:`PH`'s eigenvalues, but it
    is symmetric and its eigenvalues are computed as such.
    """
    _check_square("h", h)
    _check_square("p", p)
    root = _sqrt_spd(p)
    return condition_number(root @ h @ root)


def preconditioned_gd(
    quadratic: Quadratic, preconditioner: Tensor, lr: float, steps: int, start: Tensor
) -> Tensor:
    r"""The iterates :math:`\theta_{k+1} = \theta_k - \eta P \nabla E(\theta_k)` on a quadratic,
    shape ``(steps + 1, d)``, row 0 the start (float64)."""
    _check_positive("lr", lr)
    _check_count("steps", steps, 0)
    _check_square("preconditioner", preconditioner)
    p = preconditioner.to(torch.float64)
    theta = start.to(torch.float64).clone()
    path = [theta]
    for _ in range(steps):
        theta = theta - lr * (p @ quadratic.grad(theta))
        path.append(theta)
    return torch.stack(path)


# --- Newton ----------------------------------------------------------------------------------


def rescaled_step_ratio(
    value: Callable[[Tensor], Tensor],
    point: Sequence[float],
    scale: Sequence[float],
    make_optimizer: MakeOptimizer,
) -> Tensor:
    r"""One optimizer step in rescaled coordinates, divided by the same step in the original ones.

    With :math:`\psi = \mathrm{diag}(s)\,\theta` the loss is :math:`f(\psi / s)`. A method whose
    step has the units of the parameter moves :math:`\psi` by :math:`s` times what it moves
    :math:`\theta` (ratio :math:`s`: Newton); gradient descent moves it by :math:`1/s` times
    (its gradient is divided by :math:`s`). Lecture 4 (units) and Zeiler (2012).

    Args:
        value: :math:`f`, ``(2,) -> ()`` (e.g. a `Surface`'s ``value``).
        point: the starting :math:`\theta`.
        scale: :math:`s`, one positive factor per coordinate.
        make_optimizer: builds the optimizer from the one-element parameter list (torch's,
            or `coursekit.second_order.Newton`: the closure serves both).

    Returns:
        :math:`\Delta\psi_i / \Delta\theta_i` per coordinate, float64.
    """
    s = torch.tensor([float(v) for v in scale], dtype=torch.float64)
    if not (s > 0).all():
        raise ValueError(f"Invalid scale: {list(scale)} (every factor must be > 0)")
    theta = torch.tensor([float(v) for v in point], dtype=torch.float64)

    def step(start: Tensor, f: Callable[[Tensor], Tensor]) -> Tensor:
        param = nn.Parameter(start.clone())
        optimizer = make_optimizer([param])
        optimizer.step(_closure(optimizer, lambda: f(param)))
        return param.detach() - start

    in_theta = step(theta, value)
    in_psi = step(s * theta, lambda psi: value(psi / s))
    return in_psi / in_theta


def error_ratios(errors: Tensor, power: float = 2.0, floor: float = 1e-12) -> Tensor:
    r""":math:`e_{k+1} / e_k^{p}` for consecutive errors, as long as :math:`e_{k+1} >` `floor`.

    Quadratic convergence (:math:`p = 2`) means these stay bounded as :math:`e_k \to 0`
    (Nocedal and Wright, theorem 3.5); linear convergence means they blow up while
    :math:`e_{k+1}/e_k` (:math:`p = 1`) stays near a constant below 1. Pairs whose new error is
    at or below `floor` (rounding, in float64) are left out, as are those after them.
    """
    _check_positive("power", power)
    if errors.dim() != 1:
        raise ValueError(f"Invalid errors: shape {tuple(errors.shape)} (must be a vector)")
    below = (errors[1:] <= floor).nonzero()
    end = int(below[0]) if len(below) else len(errors) - 1
    return errors[1 : end + 1] / errors[:end] ** power


def _closure(optimizer: Optimizer, f: Callable[[], Tensor]) -> Callable[[], Tensor]:
    """A closure for first- and second-order optimizers alike: it fills ``.grad`` (what
    torch's optimizers read) and returns the loss with its graph kept (what
    `coursekit.second_order.Newton` differentiates twice itself)."""

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = f()
        loss.backward(retain_graph=True)
        return loss

    return closure


def paths_from(
    surface: Surface, make_optimizer: MakeOptimizer, starts: Tensor, steps: int
) -> Tensor:
    """An optimizer's iterates on a surface from each of the starts ``(S, 2)``, float64:
    ``(S, steps + 1, 2)``, row 0 the start. Works for `coursekit.second_order.Newton` as for
    torch's optimizers (see `_closure`); a run that overflows shows ``inf``/``nan`` from there.
    """
    _check_count("steps", steps, 0)
    if starts.dim() != 2 or starts.shape[1] != 2:
        raise ValueError(f"Invalid starts: shape {tuple(starts.shape)} (must be (S, 2))")
    paths = []
    for start in starts.to(torch.float64):
        param = nn.Parameter(start.clone())
        optimizer = make_optimizer([param])
        closure = _closure(optimizer, partial(surface.value, param))
        path = [start.clone()]
        for _ in range(steps):
            optimizer.step(closure)
            path.append(param.detach().clone())
        paths.append(torch.stack(path))
    return torch.stack(paths)


# --- Conjugate gradient and Hessian-free -----------------------------------------------------


def spd_matrix(eigenvalues: Tensor, generator: torch.Generator | None = None) -> Tensor:
    r""":math:`A = Q\, \mathrm{diag}(\lambda)\, Q^\top` with :math:`Q` a random orthogonal matrix
    (QR of a Gaussian one, signs fixed): a symmetric matrix with exactly these eigenvalues."""
    if eigenvalues.dim() != 1 or len(eigenvalues) == 0:
        raise ValueError(f"Invalid eigenvalues: shape {tuple(eigenvalues.shape)} (a vector)")
    d = len(eigenvalues)
    gaussian = torch.randn(d, d, generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(gaussian)
    q = q * torch.sign(torch.diagonal(r))  # the Haar-distributed orthogonal matrix
    values = eigenvalues.to(torch.float64)
    a = (q * values) @ q.T
    return (a + a.T) / 2


@dataclass
class CostRun:
    """A training run recorded by what it cost, one entry per record (the start included).

    Attributes:
        epochs: passes of *gradients* over the training set so far.
        evaluations: gradients plus Hessian-vector products so far, each counted in passes over
            the training set (a product costs about as much as a gradient, Pearlmutter 1994).
        loss: the full training loss at that point.
    """

    epochs: list[float] = field(default_factory=list)
    evaluations: list[float] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)


@torch.no_grad()
def _full_loss(model: nn.Module, x: Tensor, y: Tensor) -> float:
    return F.cross_entropy(model(x), y).item()


def run_hessian_free(
    model: nn.Module, x: Tensor, y: Tensor, steps: int, **hessian_free: float
) -> CostRun:
    """Full-batch `coursekit.second_order.HessianFree` on the cross-entropy of ``model(x)``.

    Every gradient, product and loss is over the whole set, so the optimizer's own counters
    (`gradient_evaluations`, `hvp_evaluations`) are passes over the data.
    """
    _check_count("steps", steps, 0)
    optimizer = HessianFree(model.parameters(), **hessian_free)

    def closure() -> Tensor:
        return F.cross_entropy(model(x), y)

    run = CostRun([0.0], [0.0], [_full_loss(model, x, y)])
    for _ in range(steps):
        optimizer.step(closure)
        run.epochs.append(float(optimizer.gradient_evaluations))
        run.evaluations.append(float(optimizer.gradient_evaluations + optimizer.hvp_evaluations))
        run.loss.append(_full_loss(model, x, y))
    return run


def run_first_order(
    model: nn.Module,
    optimizer: Optimizer,
    x: Tensor,
    y: Tensor,
    epochs: int,
    batch_size: int,
    *,
    seed: int = 0,
) -> CostRun:
    """Minibatch training on the cross-entropy, the full loss recorded after every epoch.

    Minibatches as `coursekit.ensembles.minibatches` draws them (the order of
    `coursekit.training.train`); an epoch of minibatch gradients costs one pass.
    """
    _check_count("epochs", epochs, 0)
    _check_count("batch_size", batch_size)
    per_epoch = -(-len(x) // batch_size)
    run = CostRun([0.0], [0.0], [_full_loss(model, x, y)])
    batches = minibatches(len(x), batch_size, epochs * per_epoch, seed=seed)
    for epoch in range(1, epochs + 1):
        for _ in range(per_epoch):
            index = next(batches)
            optimizer.zero_grad()
            F.cross_entropy(model(x[index]), y[index]).backward()
            optimizer.step()
        run.epochs.append(float(epoch))
        run.evaluations.append(float(epoch))
        run.loss.append(_full_loss(model, x, y))
    return run


# --- The natural gradient --------------------------------------------------------------------


def reparameterised_logistic_paths(
    x: Tensor,
    y: Tensor,
    a: Tensor,
    start: Tensor,
    steps: int,
    *,
    method: Literal["natural", "gradient"],
    lr: float,
    fisher: Literal["exact", "empirical"] = "exact",
) -> tuple[Tensor, Tensor]:
    r"""Logistic regression trained in its own parameters and in :math:`\theta = A v`.

    The model is :math:`p(y = 1 \mid x) = \sigma(\tilde x^\top \theta)` with
    :math:`\tilde x = (x, 1)` and :math:`\theta = (w, b)`. The second run trains :math:`v`,
    starting from :math:`A^{-1}\theta_0`, on the inputs :math:`A^\top \tilde x` (the same
    predictions for :math:`\theta = A v`), and its path is mapped back by :math:`A`.

    Natural gradient descent without damping (Amari 1998) takes the same steps in both (the
    Fisher transforms as :math:`A^\top F A`, the gradient as :math:`A^\top g`); gradient
    descent in :math:`v` is gradient descent in :math:`\theta` preconditioned by
    :math:`A A^\top`.

    Args:
        x: inputs ``(n, d)``; y: labels ``(n,)`` in {0, 1}.
        a: :math:`A`, invertible ``(d + 1, d + 1)``.
        start: :math:`\theta_0 = (w_0, b_0)`, ``(d + 1,)``.
        method: "natural" (`coursekit.second_order.NaturalGradient`, damping 0) or
            "gradient" (full-batch gradient descent).
        lr: the step size of both runs.
        fisher: the natural gradient's Fisher, "exact" or "empirical".

    Returns:
        ``(direct, mapped_back)``, each ``(steps + 1, d + 1)`` in :math:`\theta` coordinates,
        float64.
    """
    _check_count("steps", steps, 0)
    _check_positive("lr", lr)
    if method not in ("natural", "gradient"):
        raise ValueError(f"Invalid method: {method!r} (must be 'natural' or 'gradient')")
    x = x.to(torch.float64)
    d = x.shape[1] + 1
    _check_square("a", a)
    if a.shape[0] != d or start.shape != (d,):
        raise ValueError(f"Invalid a or start: need ({d}, {d}) and ({d},) for {d - 1} inputs")
    a = a.to(torch.float64)
    tilde = torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], dim=1)  # (n, d)
    y = y.to(torch.float64)
    v0 = torch.linalg.solve(a, start.to(torch.float64))

    def run(inputs: Tensor, theta0: Tensor) -> Tensor:
        model = nn.Linear(d, 1, bias=False).double()
        with torch.no_grad():
            model.weight.copy_(theta0[None])
        if method == "natural":
            optimizer = NaturalGradient(model, lr=lr, damping=0.0, fisher=fisher)

            def step() -> None:
                optimizer.step(inputs, y)
        else:
            optimizer = torch.optim.SGD(model.parameters(), lr=lr)

            def step() -> None:
                optimizer.zero_grad()
                negative_log_likelihood(model(inputs), y).backward()
                optimizer.step()

        path = [model.weight.detach()[0].clone()]
        for _ in range(steps):
            step()
            path.append(model.weight.detach()[0].clone())
        return torch.stack(path)

    direct = run(tilde, start.to(torch.float64))
    mapped_back = run(tilde @ a, v0) @ a.T  # theta = A v, row by row
    return direct, mapped_back


# --- Whitening and batch normalisation -------------------------------------------------------


def drop_constant_features(split: Split) -> Split:
    """The split without the input features that are constant on the training set.

    On the digits, 4 border pixels are always 0 in the training set: weights on them get no
    gradient, so every Hessian or Fisher has zero rows there, and no finite condition number.
    """
    keep = split.x_train.std(0) > 0
    return Split(split.x_train[:, keep], split.y_train, split.x_test[:, keep], split.y_test)


def largest_stable_lr(
    make_model: Callable[[], nn.Module],
    loss_fn: Callable[[nn.Module], Tensor],
    *,
    steps: int,
    low: float,
    high: float,
    iterations: int = 20,
    make_optimizer: Callable[[Iterable[nn.Parameter], float], Optimizer] | None = None,
) -> float:
    r"""The largest learning rate whose run never climbs above its start, by bisection.

    A learning rate is *stable* when, over `steps` optimizer steps from ``make_model()`` (a
    fresh, identical model each time), the loss stays finite and never exceeds the starting
    loss. On a quadratic with gradient descent started along the top eigenvector the loss
    after k steps is :math:`(1 - \eta\lambda_{\max})^{2k}` times the start, so this is
    exactly :math:`\eta \le 2/\lambda_{\max}` (seed 001; lecture 1). Asking for every step,
    not only the last, matters for classifiers: after a blow-up a net can end at a constant
    prediction whose loss is below its random start's.

    Bisection assumes the stable rates form an interval from `low`: it keeps ``low`` stable
    and ``high`` unstable, halves :math:`\log(\text{high}/\text{low})` `iterations` times
    and returns ``low``, within a factor :math:`(\text{high}/\text{low})^{2^{-\text{iterations}}}`
    below the boundary.

    Args:
        make_model: builds the model, the same one every call (seed it inside).
        loss_fn: ``loss_fn(model)``, the (full-batch) training loss.
        steps: optimizer steps per trial.
        low, high: a stable and an unstable learning rate (checked).
        iterations: bisection steps.
        make_optimizer: ``(params, lr) -> optimizer`` (default plain SGD).
    """
    _check_count("steps", steps)
    _check_count("iterations", iterations, 0)
    _check_positive("low", low)
    _check_positive("high", high)
    if not low < high:
        raise ValueError(f"Invalid low: {low} (must be below high = {high})")
    if make_optimizer is None:

        def make_optimizer(params: Iterable[nn.Parameter], lr: float) -> Optimizer:
            return torch.optim.SGD(params, lr=lr)

    def stable(lr: float) -> bool:
        model = make_model()
        optimizer = make_optimizer(model.parameters(), lr)
        first = None
        for _ in range(steps):
            optimizer.zero_grad()
            loss = loss_fn(model)
            first = loss.item() if first is None else first
            if not (math.isfinite(loss.item()) and loss.item() <= first):
                return False
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            last = loss_fn(model).item()
        return math.isfinite(last) and last <= first

    if not stable(low):
        raise ValueError(f"Invalid low: {low} (the run diverges there already)")
    if stable(high):
        raise ValueError(f"Invalid high: {high} (the run is stable there)")
    for _ in range(iterations):
        middle = math.sqrt(low * high)
        if stable(middle):
            low = middle
        else:
            high = middle
    return low
