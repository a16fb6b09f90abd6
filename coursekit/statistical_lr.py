r"""McAllester's statistical learning rate, taken apart: the derivation, the estimates, the runs.

Lecture 5 ("A statistical learning rate"; seed 002, "optimizing b and eta" and "the high
dimensional case"). The optimizer itself is `coursekit.optim.StatisticalSGD`; this module holds
what the lecture computes around it.

**The one-dimensional derivation.** A loss whose second derivative is at most :math:`L`, a
true gradient :math:`g > 0`, per-sample gradients of standard deviation :math:`\sigma`, and a
minibatch of :math:`b` samples whose gradient :math:`\hat g` is at least
:math:`g - 2\sigma/\sqrt b` (two standard errors). With the seed's simplification
:math:`\hat g^2 \approx g^2` in the curvature term, one step :math:`\theta - \eta \hat g` lowers
the loss by at least

.. math::
    P(b, \eta) = \eta\, g \bigl(g - 2\sigma/\sqrt b\bigr) - \tfrac12 L \eta^2 g^2
    \qquad\text{(`progress_bound`)}.

For a fixed :math:`b` it is largest at :math:`\eta^*(b) = (1 - 2\sigma / (g\sqrt b)) / L`
(`best_lr_for_batch`), where it is :math:`\tfrac L2 \eta^*(b)^2 g^2`. Per gradient computation,
:math:`\eta^*(b)^2 / b` is largest at :math:`\sqrt b = 4\sigma/g`:

.. math::
    B^* = \frac{16\sigma^2}{g^2}, \qquad \eta^* = \frac{1}{2L}, \qquad
    \frac{P(B^*, \eta^*)}{B^*} = \frac{g^4}{128\, L \sigma^2}
    \qquad\text{(`optimal_batch_and_lr`)},

and a smaller batch :math:`b` takes the step scaled linearly (Goyal et al. 2017),
:math:`\eta_b = \eta^* b / B^* = b g^2 / (32 \sigma^2 L)` (`scaled_lr`).

**The estimates.** `state_traces` feeds a stream of gradients to a `StatisticalSGD` and
returns its state after every step, for plots of :math:`B_t` and :math:`\eta_t`;
`uncapped_lr` is the seed's high-dimensional step :math:`\lambda_\eta (\bar g^2 + \epsilon) /
\sigma^2` without the floor :math:`B \ge b`, from the same state.

**The comparisons**, by loss against gradient computations (samples processed): `NoisyBowl`
and `run_on_bowl` (a diagonal quadratic whose per-sample gradients are noisy), `DigitsTask` and
`run_on_digits` (an MLP on scikit-learn's digits, with a validation split), `sweep` and
`chosen` (a learning-rate grid and its best point by validation score).

Example::

    from coursekit import statistical_lr as sl
    from coursekit.optim import SGD, StatisticalSGD

    sl.optimal_batch_and_lr(g=0.5, sigma=2.0, smoothness=1.0)     # (256.0, 0.5)
    bowl = sl.NoisyBowl.log_spaced(dim=8, condition=100.0, noise=1.0)
    run = sl.run_on_bowl(bowl, lambda p: StatisticalSGD(p, batch_size=4, smoothness=1.0),
                         batch_size=4, steps=500)
    run.samples[-1], run.loss[-1]                                 # 2000 gradients, the loss
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.optim import Optimizer

from coursekit._checks import count as _check_count
from coursekit._checks import positive as _check_positive

from .curvature import top_eigenvalues
from .data import Split
from .ensembles import minibatches
from .models import MLP
from .optim import StatisticalSGD

__all__ = [
    "STATE_KEYS",
    "DigitsTask",
    "NoisyBowl",
    "Run",
    "best_lr_for_batch",
    "chosen",
    "optimal_batch_and_lr",
    "progress_bound",
    "run_on_bowl",
    "run_on_digits",
    "scaled_lr",
    "state_traces",
    "sweep",
    "uncapped_lr",
]

F64 = torch.float64
MakeOptimizer = Callable[[Iterable[nn.Parameter]], Optimizer]


# --- The one-dimensional derivation (seed 002) ---------------------------------------------


def progress_bound(batch, lr, g: float, sigma: float, smoothness: float):
    r"""Seed 002's guaranteed loss decrease of one step, :math:`P(b, \eta) = \eta g (g -
    2\sigma/\sqrt b) - \tfrac12 L \eta^2 g^2`; `batch` and `lr` may be broadcasting tensors.

    The derivation takes :math:`g > 0` (for a negative gradient, mirror the coordinate). Divide
    by `batch` for the progress per gradient computation.
    """
    root_b = batch.sqrt() if isinstance(batch, Tensor) else math.sqrt(batch)
    return lr * g * (g - 2 * sigma / root_b) - 0.5 * smoothness * lr**2 * g**2


def best_lr_for_batch(batch, g: float, sigma: float, smoothness: float):
    r"""The step that maximises `progress_bound` at a fixed batch size,
    :math:`\eta^*(b) = (1 - 2\sigma/(g\sqrt b)) / L`: zero where the bound allows no progress
    (:math:`b \le 4\sigma^2/g^2`, where even the best step gains nothing guaranteed)."""
    _check_positive("g", g)
    root_b = batch.sqrt() if isinstance(batch, Tensor) else math.sqrt(batch)
    lr = (1 - 2 * sigma / (g * root_b)) / smoothness
    return lr.clamp(min=0) if isinstance(lr, Tensor) else max(lr, 0.0)


def optimal_batch_and_lr(g: float, sigma: float, smoothness: float) -> tuple[float, float]:
    r"""The maximiser of progress per gradient computation, :math:`P(b, \eta)/b`:
    :math:`B^* = 16\sigma^2/g^2` and :math:`\eta^* = 1/(2L)` (seed 002's appendix)."""
    _check_positive("sigma", sigma)
    _check_positive("smoothness", smoothness)
    if g == 0:
        raise ValueError("Invalid g: 0 (no batch size makes progress on a zero gradient)")
    return 16 * sigma**2 / g**2, 1 / (2 * smoothness)


def scaled_lr(batch: float, g: float, sigma: float, smoothness: float) -> float:
    r"""The step for a batch :math:`b < B^*` by linear scaling: :math:`\eta_b = \eta^* b / B^*
    = b g^2 / (32 \sigma^2 L)`, the seed's formula that `StatisticalSGD` applies per coordinate."""
    _check_positive("batch", batch)
    big_b, lr = optimal_batch_and_lr(g, sigma, smoothness)
    return lr * batch / big_b


# --- The per-coordinate estimates -----------------------------------------------------------

#: The `StatisticalSGD` state that `state_traces` records, in this order.
STATE_KEYS = ("grad_avg", "sq_avg", "batch_estimate", "lr_t")


def state_traces(gradients: Tensor, **hyper) -> dict[str, Tensor]:
    """Feed a ``(T, d)`` stream of gradients to a `StatisticalSGD` on one ``d``-vector.

    The optimizer reads only ``.grad``, so the stream sets it by hand: the estimates can then
    be compared with the mean and variance the stream was drawn with. `hyper` are
    `StatisticalSGD`'s arguments (``batch_size``, ``smoothness``, ...).

    Returns:
        ``grad_avg``, ``sq_avg``, ``batch_estimate`` (:math:`B_t`) and ``lr_t``
        (:math:`\\eta_t`), each ``(T, d)``: row ``t`` is the state after step ``t + 1``.
    """
    if gradients.dim() != 2:
        raise ValueError(f"Invalid gradients: shape {tuple(gradients.shape)} (must be (T, d))")
    param = nn.Parameter(torch.zeros(gradients.shape[1], dtype=gradients.dtype))
    optimizer = StatisticalSGD([param], **hyper)
    traces = {key: torch.empty_like(gradients) for key in STATE_KEYS}
    for t, grad in enumerate(gradients):
        param.grad = grad.clone()
        optimizer.step()
        state = optimizer.state[param]
        for key in STATE_KEYS:
            traces[key][t] = state[key]
    return traces


def uncapped_lr(
    grad_avg: Tensor,
    sq_avg: Tensor,
    *,
    batch_size: float,
    smoothness: float,
    eps: float = 1e-8,
) -> Tensor:
    r"""The seed's high-dimensional step without the floor :math:`B \ge b`:
    :math:`\lambda_\eta (\bar g^2 + \epsilon) / \sigma^2` with :math:`\lambda_\eta = b/(32L)`
    and :math:`\sigma^2 = s - \bar g^2` (infinite where the variance estimate is 0).

    With the optimizer's default constants, where the noise dominates (:math:`B_t > b`) it is
    `StatisticalSGD`'s ``lr_t``; where it does not, it is :math:`1/(2L)` (the optimizer's step
    there) times :math:`b\, \bar g^2 / (16 \sigma^2) > 1`, without bound as :math:`\sigma \to 0`.
    """
    _check_positive("batch_size", batch_size)
    _check_positive("smoothness", smoothness)
    variance = (sq_avg - grad_avg * grad_avg).clamp(min=0)
    return batch_size / (32 * smoothness) * (grad_avg * grad_avg + eps) / variance


# --- Runs: the objective against gradient computations ---------------------------------------


@dataclass
class Run:
    """One training run, recorded against the number of per-sample gradients computed.

    Attributes:
        samples: ``(R,)``, gradients computed (steps times batch size) at each record.
        loss: ``(R,)``, the objective at each record (first: before any step).
        validation: the score a learning-rate grid is chosen by (lower is better).
        test_accuracy: on held-out data, where the task has any.
        states: for a `StatisticalSGD`, its ``batch_estimate`` and ``lr_t`` of every
            coordinate after every step, ``(steps, n_parameters)`` (float32), when recorded.
        model: the trained model, where the run trains one.
    """

    samples: Tensor
    loss: Tensor
    validation: float
    test_accuracy: float | None = None
    states: dict[str, Tensor] = field(default_factory=dict)
    model: nn.Module | None = None


def _state_rows(optimizer: Optimizer, record: bool) -> dict[str, list[Tensor]]:
    """Empty lists for the states a run records: only a `StatisticalSGD`'s, when asked."""
    wanted = record and isinstance(optimizer, StatisticalSGD)
    return {k: [] for k in ("batch_estimate", "lr_t")} if wanted else {}


def _flat_state(optimizer: Optimizer, params: Sequence[nn.Parameter], key: str) -> Tensor:
    return torch.cat([optimizer.state[p][key].detach().flatten() for p in params]).float()


@dataclass(frozen=True)
class NoisyBowl:
    r"""A diagonal quadratic whose per-sample loss is :math:`\tfrac12 \sum_i h_i (\theta_i -
    y_i)^2`, with :math:`y_i \sim \mathcal N(0, s_i^2)` drawn afresh for every sample (an
    endless training set, as in seed 002's one-dimensional example).

    The minibatch gradient of :math:`b` samples is :math:`h(\theta - \bar y)`: mean
    :math:`g = h\theta`, per-sample standard deviation :math:`\sigma = h s`, so a coordinate's
    :math:`B^* = 16 s^2/\theta^2` grows without bound as it approaches its minimum. The
    expected loss is :math:`\tfrac12 \sum h\theta^2` above its minimum (`excess_loss`), exact,
    with no sampling; the largest :math:`h_i` is the curvature bound :math:`L`.

    Attributes:
        curvatures: ``(d,)``, the :math:`h_i`.
        noise: ``(d,)``, the :math:`s_i`.
        start: ``(d,)``, the starting point.
    """

    curvatures: Tensor
    noise: Tensor
    start: Tensor

    @classmethod
    def log_spaced(
        cls, dim: int, condition: float, noise: float = 1.0, start: float = 1.0
    ) -> NoisyBowl:
        """Curvatures from ``1/condition`` to 1, log-spaced; the same noise and start for all."""
        _check_count("dim", dim)
        _check_positive("condition", condition)
        _check_positive("noise", noise)
        curvatures = torch.logspace(-math.log10(condition), 0, dim, dtype=F64)
        return cls(curvatures, torch.full((dim,), float(noise), dtype=F64), torch.full_like(
            curvatures, float(start)
        ))  # fmt: skip

    @property
    def smoothness(self) -> float:
        return self.curvatures.max().item()

    def excess_loss(self, theta: Tensor) -> Tensor:
        """Expected loss above its minimum, :math:`\\tfrac12 \\sum_i h_i \\theta_i^2` (``(...,)``)."""
        return 0.5 * (self.curvatures * theta * theta).sum(-1)

    def minibatch_gradient(
        self, theta: Tensor, batch_size: int, generator: torch.Generator
    ) -> Tensor:
        """The gradient of the mean loss over `batch_size` fresh samples at `theta`."""
        y = self.noise * torch.randn(batch_size, len(theta), generator=generator, dtype=F64)
        return self.curvatures * (theta - y.mean(0))  # (d,)


def run_on_bowl(
    bowl: NoisyBowl,
    make_optimizer: MakeOptimizer,
    *,
    batch_size: int,
    steps: int,
    seed: int = 0,
    record_state: bool = False,
) -> Run:
    """Optimise the bowl with minibatches of `batch_size`; the loss is its exact excess loss.

    The noise comes from a generator seeded with `seed` alone, so every optimizer run with the
    same seed sees the same samples. The validation score is the mean excess loss over the
    last tenth of the steps (the bowl cannot overfit: its loss is the expected loss).
    """
    _check_count("batch_size", batch_size)
    _check_count("steps", steps)
    generator = torch.Generator().manual_seed(seed)
    theta = nn.Parameter(bowl.start.clone())
    optimizer = make_optimizer([theta])
    path = torch.empty(steps + 1, len(theta), dtype=F64)
    path[0] = theta.detach()
    states = _state_rows(optimizer, record_state)
    for t in range(1, steps + 1):
        theta.grad = bowl.minibatch_gradient(theta.detach(), batch_size, generator)
        optimizer.step()
        path[t] = theta.detach()
        for key, rows in states.items():
            rows.append(_flat_state(optimizer, [theta], key))
    loss = bowl.excess_loss(path)
    return Run(
        samples=torch.arange(steps + 1) * batch_size,
        loss=loss,
        validation=loss[-max(1, steps // 10) :].mean().item(),
        states={k: torch.stack(v) for k, v in states.items()},
    )


@dataclass(frozen=True)
class DigitsTask:
    """Scikit-learn's digits for a tuning comparison: training, validation and test parts.

    `from_split` carves the validation part off the front of a `coursekit.data.Split`'s
    training set (the split is already shuffled), so the test set is never looked at while a
    learning rate is chosen. The model is an `MLP` ``[64, hidden, 10]`` with ReLU.
    """

    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor
    hidden: int = 32

    @classmethod
    def from_split(cls, split: Split, validation: float = 0.2, hidden: int = 32) -> DigitsTask:
        if not 0.0 < validation < 1.0:
            raise ValueError(f"Invalid validation: {validation!r} (must be in (0, 1))")
        _check_count("hidden", hidden)
        n_val = int(round(validation * len(split.x_train)))
        return cls(
            split.x_train[n_val:], split.y_train[n_val:], split.x_train[:n_val],
            split.y_train[:n_val], split.x_test, split.y_test, hidden,
        )  # fmt: skip

    def model(self, seed: int = 0) -> MLP:
        """The MLP with the initial weights of `seed` (the same for every optimizer)."""
        sizes = [self.x_train.shape[1], self.hidden, 10]
        return MLP(sizes, generator=torch.Generator().manual_seed(seed)).to(self.x_train.dtype)

    def train_loss(self, model: nn.Module) -> Tensor:
        """The mean cross-entropy over the whole training part: the objective."""
        return F.cross_entropy(model(self.x_train), self.y_train)

    def largest_curvature(self, model: nn.Module, seed: int = 0) -> float:
        """The largest eigenvalue of the training loss's Hessian at `model`'s weights (Lanczos,
        `coursekit.curvature.top_eigenvalues`): it bounds every coordinate's curvature there."""
        values, _ = top_eigenvalues(
            model, self.train_loss, k=1, generator=torch.Generator().manual_seed(seed)
        )
        return values[0].item()


def run_on_digits(
    task: DigitsTask,
    make_optimizer: MakeOptimizer,
    *,
    batch_size: int = 32,
    epochs: int = 10,
    seed: int = 0,
    record_state: bool = False,
) -> Run:
    """Train `task`'s MLP with minibatches (`coursekit.ensembles.minibatches`, seeded).

    The loss recorded after every step is the training part's full mean cross-entropy; the
    validation score is the validation part's after the last step; the test accuracy is
    measured once, at the end. The model starts from the weights of `seed`.
    """
    _check_count("batch_size", batch_size)
    _check_count("epochs", epochs)
    model = task.model(seed)
    params = list(model.parameters())
    optimizer = make_optimizer(params)
    steps = epochs * -(-len(task.x_train) // batch_size)
    loss, samples = torch.empty(steps + 1, dtype=F64), torch.zeros(steps + 1, dtype=torch.long)
    states = _state_rows(optimizer, record_state)
    with torch.no_grad():
        loss[0] = task.train_loss(model)
    batches = minibatches(len(task.x_train), batch_size, steps, seed=seed)
    for t, idx in enumerate(batches, start=1):
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(task.x_train[idx]), task.y_train[idx]).backward()
        optimizer.step()
        samples[t] = samples[t - 1] + len(idx)
        with torch.no_grad():
            loss[t] = task.train_loss(model)
        for key, rows in states.items():
            rows.append(_flat_state(optimizer, params, key))
    with torch.no_grad():
        validation = F.cross_entropy(model(task.x_val), task.y_val).item()
        guess = model(task.x_test).argmax(dim=1)
    return Run(
        samples=samples,
        loss=loss,
        validation=validation,
        test_accuracy=(guess == task.y_test).double().mean().item(),
        states={k: torch.stack(v) for k, v in states.items()},
        model=model,
    )


def sweep(
    run: Callable[[MakeOptimizer], Run],
    make: Callable[[Iterable[nn.Parameter], float], Optimizer],
    lrs: Sequence[float],
) -> dict[float, Run]:
    """`run` once per learning rate: ``{lr: run(lambda params: make(params, lr))}``."""
    if not lrs:
        raise ValueError("Invalid lrs: [] (a sweep needs at least one learning rate)")
    return {lr: run(lambda params, lr=lr: make(params, lr)) for lr in lrs}


def chosen(runs: dict[float, Run]) -> float:
    """The learning rate whose run has the lowest validation score (a diverged run, with a
    non-finite score, is never chosen unless all diverged)."""
    finite = {lr: r.validation for lr, r in runs.items() if math.isfinite(r.validation)}
    scores = finite or {lr: 0.0 for lr in runs}
    return min(scores, key=scores.__getitem__)
