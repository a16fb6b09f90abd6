r"""SGD as a stochastic process: what a minibatch gradient estimates, and where its noise takes
the weights.

Lecture 3 ("SGD theory"; McAllester's notes, seed 002, and seed 001's step-size schedules). The
minibatch gradient :math:`\hat g = \frac1B \sum_{i \in \text{batch}} \nabla \ell_i(\theta)` of
``B`` samples drawn independently estimates the full gradient :math:`g = \nabla L(\theta)`
without bias, with a covariance that falls as :math:`1/B`:

.. math::
    \mathbb E[\hat g] = g, \qquad
    \mathbb E \|\hat g - g\|^2 = \frac{\operatorname{tr}\Sigma}{B}, \qquad
    \Sigma = \operatorname{Cov}_i[\nabla \ell_i(\theta)].

Two things limit what SGD can do with it (seed 002): the *estimation* error of :math:`\hat g`,
and the *drift* of :math:`g` itself as :math:`\theta` moves. The functions here measure both and
follow the process SGD defines:

- on a network: `per_sample_gradients`, `minibatch_gradient_noise` (unbiased, variance
  :math:`\propto 1/B`), `sign_agreement` and `sign_batch_size` (how large a batch gets the
  gradient's sign right), `linear_scaling_runs` (Goyal et al.'s learning rate proportional to
  ``B``, after a warm-up);
- on seed 002's one-dimensional example, `NoisyQuadratic`, a per-sample loss
  :math:`\frac h2 (\theta - y)^2` with :math:`y` drawn afresh for every sample (the seed's
  unlimited training set): `sgd_chains` runs thousands of SGD chains as one
  tensor; `stationary_variance` is the closed form of their spread under a constant rate,
  :math:`\eta\sigma^2 / (Bh(2 - \eta h))`; `measured_stationary_variance`,
  `window_average_errors` (estimation against drift), `schedule_errors` and
  `expected_square_error` (Robbins-Monro schedules) measure the chains;
- `DoubleWell` and `wide_basin_share`: with a narrow and a wide basin, the rate acts as a
  temperature :math:`T = \eta\sigma^2/(2B)`;
- `gradient_flow`, `gradient_descent_path` and `flow_gap`: the small-rate limit,
  :math:`\dot\theta = -\nabla L(\theta)`, solved with the matrix exponential on a quadratic.

Example::

    from coursekit import sgd_theory as st

    problem = st.NoisyQuadratic(curvature=1.0, noise=1.0)
    st.stationary_variance(0.5, 4, problem)                        # 0.5 / (4 * 1.5) = 0.0833
    st.measured_stationary_variance(problem, [0.5], [4], chains=2000, steps=1000)  # about that

The simulations draw their noise from `torch.Generator`\ s seeded with `seed`: the same call
gives the same numbers. They run in float64 on one CPU thread (`_one_thread`: their tensors are
small).
"""

from __future__ import annotations

import contextlib
import math
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap
from torch.optim.lr_scheduler import LambdaLR

from coursekit._checks import count as _check_count
from coursekit._checks import positive as _check_positive

from .ensembles import Ensemble, evaluate, minibatches
from .landscapes import Quadratic, trajectory
from .models import MLP
from .optim import SGD, linear_scaling_warmup

__all__ = [
    "DoubleWell",
    "GradientNoise",
    "NoisyQuadratic",
    "ScalingRun",
    "expected_square_error",
    "flow_gap",
    "gradient_descent_path",
    "gradient_flow",
    "linear_scaling_runs",
    "measured_stationary_variance",
    "minibatch_gradient_noise",
    "per_sample_gradients",
    "schedule_errors",
    "sgd_chains",
    "sign_agreement",
    "sign_batch_size",
    "stationary_variance",
    "temperature",
    "wide_basin_share",
    "window_average_errors",
]

F64 = torch.float64
LossFn = Callable[[Tensor, Tensor], Tensor]


# --- Validation -----------------------------------------------------------------------------


def _check_counts(name: str, values: Sequence[int]) -> list[int]:
    values = list(values)
    if not values:
        raise ValueError(f"Invalid {name}: [] (must hold at least one value)")
    for value in values:
        _check_count(name, value)
    return values


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run the block (or the decorated function) on one CPU thread, then restore the setting.

    The simulations here work on small tensors, thousands of numbers: more threads only add
    synchronisation, and on a busy machine each waits for a free core, which makes a step many
    times slower than on one thread.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# --- Minibatch gradients of a network -------------------------------------------------------


def per_sample_gradients(model: nn.Module, loss_fn: LossFn, x: Tensor, y: Tensor) -> Tensor:
    r"""Every sample's own gradient :math:`\nabla_\theta \ell(f_\theta(x_i), y_i)`, all
    parameters flattened and concatenated in ``model.named_parameters()`` order: ``(N, P)``.

    `torch.func.vmap` over `torch.func.grad` of the model called on one sample, so the ``N``
    backward passes run as one batched call. Their mean is the full-batch gradient of the mean
    loss. `loss_fn` takes a batch of one (``(1, ...)`` outputs and targets), as torch's
    functional losses do.
    """
    params = {name: p.detach() for name, p in model.named_parameters()}

    def one(p: dict[str, Tensor], xi: Tensor, yi: Tensor) -> Tensor:
        return loss_fn(functional_call(model, p, (xi.unsqueeze(0),)), yi.unsqueeze(0))

    per = vmap(grad(one), in_dims=(None, 0, 0))(params, x, y)  # name -> (N, *shape)
    return torch.cat([g.flatten(1) for g in per.values()], dim=1)  # (N, P)


@dataclass(frozen=True)
class GradientNoise:
    r"""Minibatch gradients drawn at one point, per batch size (`minibatch_gradient_noise`).

    Attributes:
        batch_sizes: the ``B`` values.
        variance: ``(len(B),)``, :math:`\frac1D \sum_d \|\hat g_d - g\|^2` over the ``D`` draws.
        bias: ``(len(B),)``, :math:`\|\bar{\hat g} - g\|^2`, the squared distance of the draws'
            mean from the full gradient. For an unbiased estimate it is about ``variance / D``.
        draws: ``D``.
        trace: :math:`\operatorname{tr}\Sigma = \frac1N \sum_i \|g_i - g\|^2`, so that the
            variance of a batch of ``B`` independent samples is ``trace / B`` exactly.
        grad_norm_sq: :math:`\|g\|^2`.
        kept: ``(len(B), D, len(keep))``, the draws :math:`\hat g` of the coordinates asked
            for with ``keep`` (to plot their distribution).
    """

    batch_sizes: list[int]
    variance: Tensor
    bias: Tensor
    draws: int
    trace: float
    grad_norm_sq: float
    kept: Tensor


def minibatch_gradient_noise(
    per_sample: Tensor,
    batch_sizes: Sequence[int],
    *,
    draws: int = 500,
    keep: Sequence[int] = (),
    seed: int = 0,
) -> GradientNoise:
    r"""Draw `draws` minibatch gradients for every batch size and measure their error.

    A minibatch holds ``B`` indices drawn uniformly *with* replacement, so its samples are
    independent, as from seed 002's unlimited training set, and
    :math:`\mathbb E\|\hat g - g\|^2 = \operatorname{tr}\Sigma / B` holds exactly. (Drawn without
    replacement from ``N`` samples the variance is smaller by :math:`(N - B)/(N - 1)`.)

    Args:
        per_sample: ``(N, P)`` per-sample gradients (`per_sample_gradients`); ``g`` is their mean.
        batch_sizes: the ``B`` values.
        draws: minibatches per batch size.
        keep: coordinates whose draws are returned (`GradientNoise.kept`).
        seed: seeds the draws.

    A minibatch mean is computed as ``counts @ per_sample / B``, with ``counts`` ``(D, N)`` how
    often each sample was drawn: the cost does not grow with ``B``.
    """
    sizes = _check_counts("batch_sizes", batch_sizes)
    _check_count("draws", draws, 2)
    n = len(per_sample)
    generator = torch.Generator().manual_seed(seed)
    full = per_sample.mean(0)
    centred = (per_sample - full).to(F64)
    keep = torch.as_tensor(list(keep), dtype=torch.long)
    variance, bias, kept = [], [], []
    for b in sizes:
        idx = torch.randint(n, (draws, b), generator=generator)
        counts = torch.zeros(draws, n, dtype=per_sample.dtype)
        counts.scatter_add_(1, idx, torch.ones(draws, b, dtype=per_sample.dtype))
        errors = counts.to(per_sample.device, F64) @ centred / b  # (D, P): g_hat - g
        variance.append(errors.square().sum(1).mean())
        bias.append(errors.mean(0).square().sum())
        kept.append(errors[:, keep.to(errors.device)] + full[keep.to(full.device)].to(F64))
    return GradientNoise(
        batch_sizes=sizes,
        variance=torch.stack(variance).cpu(),
        bias=torch.stack(bias).cpu(),
        draws=draws,
        trace=centred.square().sum(1).mean().item(),
        grad_norm_sq=full.to(F64).square().sum().item(),
        kept=torch.stack(kept).cpu(),
    )


def sign_batch_size(grad_mean: float, grad_std: float, z: float = 2.0) -> int:
    r"""The smallest batch ``n`` for which the interval :math:`g \pm z\sigma/\sqrt n` around the
    true gradient excludes zero (seed 002's argument, corrected): :math:`z\sigma/\sqrt n \le |g|`,
    that is

    .. math::
        n \ge \frac{z^2 \sigma^2}{g^2} \quad (= 4\sigma^2/g^2 \text{ for } z = 2).

    Then a minibatch mean that lies within :math:`z` standard errors of ``g`` (95 % of them for
    ``z = 2``, by the central limit theorem) has the sign of ``g``: the sign is right with
    probability at least :math:`\Phi(z)` = 97.7 %. Seed 002 writes :math:`2\sigma^2/g^2`,
    which is the rule for :math:`z = \sqrt 2` (92 %).
    """
    _check_positive("grad_std", grad_std)
    _check_positive("z", z)
    if not (isinstance(grad_mean, int | float) and math.isfinite(grad_mean) and grad_mean != 0):
        raise ValueError(f"Invalid grad_mean: {grad_mean!r} (must be finite and non-zero)")
    exact = (z * grad_std / grad_mean) ** 2
    return max(1, math.ceil(exact * (1 - 1e-12)))  # 16.000000000000004 is 16, not 17


@_one_thread()
def sign_agreement(
    per_sample: Tensor, batch_sizes: Sequence[int], *, draws: int = 2000, seed: int = 0
) -> Tensor:
    r"""How often a minibatch mean of one coordinate's gradients has the sign of the full mean.

    Args:
        per_sample: ``(N, C)``: column ``c`` holds the per-sample gradients of coordinate ``c``.
        batch_sizes: ``C`` batch sizes, ``n_c`` for column ``c``.
        draws: minibatches per column, each of ``n_c`` samples drawn with replacement.
        seed: seeds the draws.

    Returns:
        ``(C,)``, the share of the draws whose mean has the sign of column ``c``'s full mean.
    """
    sizes = _check_counts("batch_sizes", batch_sizes)
    _check_count("draws", draws, 1)
    if per_sample.dim() != 2 or per_sample.shape[1] != len(sizes):
        raise ValueError(
            f"Invalid per_sample: shape {tuple(per_sample.shape)} (must be (N, {len(sizes)}), "
            "one column per batch size)"
        )
    generator = torch.Generator().manual_seed(seed)
    column_major = per_sample.T.to("cpu", F64)  # (C, N)
    right = []
    for column, n in zip(column_major, sizes):
        idx = torch.randint(len(column), (draws, n), generator=generator)
        means = column[idx].mean(1)  # (draws,)
        right.append((means.sign() == column.mean().sign()).to(F64).mean())
    return torch.stack(right)


# --- Seed 002's one-dimensional example, as thousands of chains -----------------------------


@dataclass(frozen=True)
class NoisyQuadratic:
    r"""Seed 002's one-dimensional example: per-sample loss :math:`\frac h2 (\theta - y)^2`.

    With :math:`y \sim \mathcal N(\theta^\star, \sigma^2/h^2)` drawn afresh for every sample, one
    sample's gradient is :math:`h(\theta - y)`: mean :math:`g(\theta) = h(\theta - \theta^\star)`
    (the gradient of :math:`L(\theta) = \frac h2 (\theta - \theta^\star)^2` up to a constant),
    variance :math:`\sigma^2`. A minibatch of ``B`` has

    .. math::
        \hat g = h(\theta - \theta^\star) + \xi, \qquad \xi \sim \mathcal N(0, \sigma^2 / B),

    exactly, since a mean of ``B`` Gaussians is Gaussian: `sgd_chains` draws :math:`\xi`
    directly, one number per chain and step.

    Attributes:
        curvature: :math:`h > 0`.
        noise: :math:`\sigma \ge 0`, the standard deviation of one sample's gradient.
        minimum: :math:`\theta^\star`.
    """

    curvature: float = 1.0
    noise: float = 1.0
    minimum: float = 0.0

    def __post_init__(self) -> None:
        _check_positive("curvature", self.curvature)
        if not (isinstance(self.noise, int | float) and 0 <= self.noise < math.inf):
            raise ValueError(f"Invalid noise: {self.noise!r} (must be a finite number >= 0)")

    def gradient(self, theta: Tensor) -> Tensor:
        r""":math:`g(\theta) = h(\theta - \theta^\star)`."""
        return self.curvature * (theta - self.minimum)


def stationary_variance(lr: float, batch_size: int, problem: NoisyQuadratic) -> float:
    r"""The spread that SGD with a constant rate settles at on a `NoisyQuadratic`.

    With :math:`e_t = \theta_t - \theta^\star`, one step is
    :math:`e_{t+1} = (1 - \eta h)\, e_t - \eta\, \xi_t`, with :math:`\xi_t` independent of
    :math:`e_t`. So :math:`v_{t+1} = (1 - \eta h)^2 v_t + \eta^2 \sigma^2 / B`, whose fixed point
    is

    .. math::
        v_\infty = \frac{\eta^2 \sigma^2 / B}{1 - (1 - \eta h)^2}
                 = \frac{\eta\, \sigma^2}{B\, h\, (2 - \eta h)}
                 \;\approx\; \frac{\eta\, \sigma^2}{2 B h} \quad (\eta h \ll 1),

    reached from any start when :math:`0 < \eta h < 2` (seed 002 reads SGD as a Markov chain
    Monte Carlo sampler; Mandt, Hoffman & Blei 2017 give the continuous-time form).
    """
    _check_positive("lr", lr)
    _check_count("batch_size", batch_size)
    h = problem.curvature
    if not lr * h < 2:
        raise ValueError(f"Invalid lr: {lr!r} (lr * curvature must be < 2 for a stationary law)")
    return lr * problem.noise**2 / (batch_size * h * (2 - lr * h))


def sgd_chains(
    gradient: Callable[[Tensor], Tensor],
    lrs: Tensor,
    *,
    noise: float,
    batch_size: float | Tensor,
    start: Tensor,
    seed: int = 0,
) -> Iterator[tuple[Tensor, Tensor]]:
    r"""Run many one-dimensional SGD chains as one tensor; yield ``(theta_t, g_hat_t)`` per step.

    .. math::
        \hat g_t = g(\theta_t) + \frac{\sigma}{\sqrt B}\, \varepsilon_t, \qquad
        \theta_{t+1} = \theta_t - \eta_t\, \hat g_t, \qquad \varepsilon_t \sim \mathcal N(0, 1)

    independently for every chain and step.

    Args:
        gradient: :math:`g(\theta)`, applied element-wise to the chains' tensor.
        lrs: ``(steps, ...)``: row ``t`` is :math:`\eta_t`, broadcast against the chains.
        noise: :math:`\sigma`, the standard deviation of one sample's gradient.
        batch_size: ``B``, a number or a tensor broadcast against the chains.
        start: :math:`\theta_0`; its shape is the chains' shape, e.g. ``(configs, chains)``.
        seed: seeds :math:`\varepsilon`.

    Yields ``steps`` pairs: the point :math:`\theta_t` and the minibatch gradient taken there.
    Nothing is stored, so long runs of many chains stay small; the caller keeps what it needs.
    """
    generator = torch.Generator().manual_seed(seed)
    theta = start.to(F64).clone()
    scale = noise / torch.as_tensor(batch_size, dtype=F64).sqrt()
    for lr in lrs.to(F64):
        g_hat = gradient(theta) + scale * torch.randn(theta.shape, generator=generator, dtype=F64)
        yield theta, g_hat
        theta = theta - lr * g_hat


def _settling_steps(factors: Tensor, tol: float = 1e-6) -> int:
    """Steps after which every chain started at the minimum has its variance within `tol` of the
    stationary one: the gap shrinks by ``(1 - lr h)^2`` per step."""
    worst = factors.abs().max().item()
    if worst == 0:
        return 1
    return math.ceil(math.log(tol) / (2 * math.log(worst)))


@_one_thread()
def measured_stationary_variance(
    problem: NoisyQuadratic,
    lrs: Sequence[float],
    batch_sizes: Sequence[int],
    *,
    chains: int = 2000,
    steps: int = 1000,
    seed: int = 0,
) -> Tensor:
    r"""The variance of :math:`\theta_t - \theta^\star` over `chains` SGD chains and `steps`
    steps, for every pair ``(lrs[k], batch_sizes[k])``: ``(K,)``.

    All ``K x chains`` chains run as one tensor. They start at :math:`\theta^\star` and are first
    run until the variance is within :math:`10^{-6}` of its stationary value (the gap shrinks by
    :math:`(1 - \eta h)^2` per step); the `steps` after that are measured. Compare with
    `stationary_variance`.
    """
    if len(lrs) != len(batch_sizes) or not lrs:
        raise ValueError(f"Invalid lrs: {len(lrs)} values for {len(batch_sizes)} batch_sizes")
    for lr in lrs:
        _check_positive("lr", lr)
    sizes = _check_counts("batch_sizes", batch_sizes)
    _check_count("chains", chains)
    _check_count("steps", steps)
    lr = torch.tensor(lrs, dtype=F64).unsqueeze(1)  # (K, 1)
    factors = 1 - lr * problem.curvature
    if factors.abs().max() >= 1:
        raise ValueError(f"Invalid lrs: {lrs!r} (lr * curvature must lie in (0, 2))")
    burn_in = _settling_steps(factors)
    start = torch.full((len(lrs), chains), float(problem.minimum), dtype=F64)
    run = sgd_chains(
        problem.gradient,
        lr.expand(burn_in + steps, -1, -1),
        noise=problem.noise,
        batch_size=torch.tensor(sizes, dtype=F64).unsqueeze(1),
        start=start,
        seed=seed,
    )
    total = torch.zeros(len(lrs), dtype=F64)
    for t, (theta, _) in enumerate(run):
        if t >= burn_in:
            total += (theta - problem.minimum).square().mean(1)
    return total / steps


@_one_thread()
def window_average_errors(
    problem: NoisyQuadratic,
    lr: float,
    batch_size: int,
    windows: Sequence[int],
    *,
    start: float,
    at_step: int,
    chains: int = 2000,
    seed: int = 0,
) -> Tensor:
    r"""Estimation against drift: the mean squared error of the average of the last ``n``
    minibatch gradients as an estimate of the gradient *now*, for each ``n`` in `windows`.

    The chains start at `start` and take `at_step` steps with a constant rate; at step
    :math:`T` = `at_step`,

    .. math::
        \bar g_n = \frac1n \sum_{k=0}^{n-1} \hat g_{T-k}, \qquad
        \text{error}(n) = \mathbb E\bigl[(\bar g_n - g(\theta_T))^2\bigr],

    where :math:`\hat g_{T-k}` was taken at :math:`\theta_{T-k}`. Averaging more gradients
    shrinks the estimation noise (about :math:`\sigma^2/(Bn)`), but the older ones were taken
    where the gradient was different: while :math:`\theta` still moves, the error grows again
    with ``n``. Returns ``(len(windows),)``, averaged over the chains.
    """
    _check_positive("lr", lr)
    _check_count("batch_size", batch_size)
    windows = _check_counts("windows", windows)
    _check_count("at_step", at_step, max(windows) - 1)
    _check_count("chains", chains)
    longest = max(windows)
    run = sgd_chains(
        problem.gradient,
        torch.full((at_step + 1,), float(lr), dtype=F64),
        noise=problem.noise,
        batch_size=batch_size,
        start=torch.full((chains,), float(start), dtype=F64),
        seed=seed,
    )
    recent: deque[Tensor] = deque(maxlen=longest)  # the last minibatch gradients, newest last
    for theta, g_hat in run:
        recent.append(g_hat)
        now = theta  # after the loop: theta_T, where the newest gradient was taken
    newest_first = torch.stack(list(recent)[::-1])  # (longest, chains): g_hat_T, g_hat_{T-1}, ...
    running = newest_first.cumsum(0) / torch.arange(1, longest + 1, dtype=F64).unsqueeze(1)
    truth = problem.gradient(now)  # g(theta_T)
    errors = (running - truth).square().mean(1)  # (longest,)
    return errors[torch.tensor(windows) - 1]


def expected_square_error(
    problem: NoisyQuadratic, lrs: Tensor, batch_size: int, *, start: float
) -> Tensor:
    r""":math:`m_t = \mathbb E[(\theta_t - \theta^\star)^2]` of SGD with the rates `lrs`
    (``(steps,)``) from `start`, exactly: ``(steps + 1,)``.

    .. math::
        m_{t+1} = (1 - \eta_t h)^2\, m_t + \eta_t^2\, \sigma^2 / B, \qquad
        m_0 = (\theta_0 - \theta^\star)^2 .

    A constant rate settles at `stationary_variance`; :math:`\eta_t = c/t` with
    :math:`2ch > 1` falls like :math:`c^2\sigma^2 / (B(2ch - 1)\, t)`; :math:`c/\sqrt t` like
    :math:`\eta_t \sigma^2/(2Bh)`.
    """
    _check_count("batch_size", batch_size)
    h, noise_sq = problem.curvature, problem.noise**2 / batch_size
    m = [(float(start) - problem.minimum) ** 2]
    for lr in lrs.to(F64).tolist():
        m.append((1 - lr * h) ** 2 * m[-1] + lr * lr * noise_sq)
    return torch.tensor(m, dtype=F64)


@_one_thread()
def schedule_errors(
    problem: NoisyQuadratic,
    schedules: dict[str, Tensor],
    batch_size: int,
    *,
    start: float,
    chains: int = 1000,
    seed: int = 0,
) -> dict[str, Tensor]:
    r"""The measured :math:`\frac1K \sum_k (\theta_t^{(k)} - \theta^\star)^2` over `chains`
    chains for each step-size schedule: name -> ``(steps + 1,)``.

    Every schedule is a ``(steps,)`` tensor of rates :math:`\eta_t` (all the same length); all
    run as one ``(schedules, chains)`` tensor from `start`. `expected_square_error` is what
    these averages estimate.
    """
    _check_count("batch_size", batch_size)
    _check_count("chains", chains)
    rates = torch.stack([s.to(F64) for s in schedules.values()], dim=1)  # (steps, S)
    rates = torch.cat([rates, torch.zeros_like(rates[:1])])  # a last row of 0: see the last point
    run = sgd_chains(
        problem.gradient,
        rates.unsqueeze(-1),  # (steps + 1, S, 1) against the (S, chains) chains
        noise=problem.noise,
        batch_size=batch_size,
        start=torch.full((len(schedules), chains), float(start), dtype=F64),
        seed=seed,
    )
    table = torch.stack([(theta - problem.minimum).square().mean(1) for theta, _ in run])
    return {name: table[:, k] for k, name in enumerate(schedules)}


# --- Learning rate as a temperature: a narrow and a wide basin ------------------------------


def temperature(lr: float, batch_size: float, noise: float) -> float:
    r""":math:`T = \eta\sigma^2 / (2B)`: for small :math:`\eta`, SGD with constant rate samples
    about :math:`p(\theta) \propto \exp(-L(\theta)/T)` (on a quadratic this is the small-rate
    form of `stationary_variance`: :math:`T/h`). Only the ratio :math:`\eta/B` enters."""
    _check_positive("lr", lr)
    _check_positive("batch_size", batch_size)
    return lr * noise**2 / (2 * batch_size)


@dataclass(frozen=True)
class DoubleWell:
    r"""A one-dimensional loss with a narrow, deeper basin and a wide, shallower one:

    .. math::
        L(\theta) = \min\Bigl(\tfrac{h_n}2 (\theta - \mu_n)^2,\;
                              \tfrac{h_w}2 (\theta - \mu_w)^2 + \Delta\Bigr),
        \qquad h_n > h_w .

    Where the first parabola is lower, :math:`\theta` is in the narrow basin (an interval
    :math:`[c_1, c_2]` around :math:`\mu_n`, `narrow_interval`); everywhere else in the wide one.
    Gradient descent stays in whichever basin it starts in; noise lets SGD cross the ridge at
    :math:`c_2`. The Gibbs density :math:`\exp(-L/T)` gives the wide basin the share
    (`gibbs_wide_share`)

    .. math::
        \frac{Z_w}{Z_n + Z_w}, \qquad Z_n \approx \sqrt{2\pi T/h_n}, \quad
        Z_w \approx e^{-\Delta/T} \sqrt{2\pi T/h_w},

    which grows with :math:`T` from 0 towards :math:`1/(1 + \sqrt{h_w/h_n})`: at a low
    temperature the depth wins, at a high one the width.
    """

    narrow_curvature: float = 1.0
    narrow_center: float = 0.0
    wide_curvature: float = 1.0 / 64
    wide_center: float = 6.0
    wide_height: float = 0.5

    def __post_init__(self) -> None:
        _check_positive("narrow_curvature", self.narrow_curvature)
        _check_positive("wide_curvature", self.wide_curvature)
        if not self.wide_curvature < self.narrow_curvature:
            raise ValueError(
                f"Invalid wide_curvature: {self.wide_curvature!r} (must be < narrow_curvature)"
            )
        _check_positive("wide_height", self.wide_height)

    def _parabolas(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        narrow = 0.5 * self.narrow_curvature * (theta - self.narrow_center) ** 2
        wide = 0.5 * self.wide_curvature * (theta - self.wide_center) ** 2 + self.wide_height
        return narrow, wide

    def value(self, theta: Tensor) -> Tensor:
        return torch.minimum(*self._parabolas(theta))

    def in_wide(self, theta: Tensor) -> Tensor:
        """True where the wide parabola is the lower one."""
        narrow, wide = self._parabolas(theta)
        return wide < narrow

    def gradient(self, theta: Tensor) -> Tensor:
        """The gradient of the lower parabola (at the ridge itself, the narrow one's)."""
        return torch.where(
            self.in_wide(theta),
            self.wide_curvature * (theta - self.wide_center),
            self.narrow_curvature * (theta - self.narrow_center),
        )

    def narrow_interval(self) -> tuple[float, float]:
        """:math:`(c_1, c_2)`, where the two parabolas cross: the narrow basin between them."""
        hn, hw = self.narrow_curvature, self.wide_curvature
        mn, mw = self.narrow_center, self.wide_center
        # hn (x - mn)^2 / 2 - hw (x - mw)^2 / 2 - Delta = a x^2 + b x + c = 0
        a = (hn - hw) / 2
        b = -(hn * mn - hw * mw)
        c = (hn * mn * mn - hw * mw * mw) / 2 - self.wide_height
        root = math.sqrt(b * b - 4 * a * c)  # a > 0 and the sum is -Delta < 0 at mn: two roots
        return (-b - root) / (2 * a), (-b + root) / (2 * a)

    def gibbs_wide_share(self, temperature: float) -> float:
        r"""The wide basin's share of :math:`\exp(-L(\theta)/T)`, in closed form (normal CDFs
        over each basin's part of the line)."""
        _check_positive("temperature", temperature)
        c1, c2 = self.narrow_interval()

        def phi(z: float) -> float:
            return 0.5 * math.erfc(-z / math.sqrt(2))

        s_n = math.sqrt(temperature / self.narrow_curvature)
        s_w = math.sqrt(temperature / self.wide_curvature)
        inside = phi((c2 - self.narrow_center) / s_n) - phi((c1 - self.narrow_center) / s_n)
        outside = phi((c1 - self.wide_center) / s_w) + phi(-(c2 - self.wide_center) / s_w)
        z_narrow = math.sqrt(2 * math.pi) * s_n * inside
        z_wide = math.exp(-self.wide_height / temperature) * math.sqrt(2 * math.pi) * s_w * outside
        return z_wide / (z_narrow + z_wide)


@_one_thread()
def wide_basin_share(
    well: DoubleWell,
    lrs: Sequence[float],
    batch_sizes: Sequence[int],
    *,
    noise: float,
    duration: float,
    chains: int = 2000,
    seed: int = 0,
) -> Tensor:
    r"""The share of its steps that SGD spends in the wide basin, for each pair
    ``(lrs[k], batch_sizes[k])``: ``(K,)``.

    `chains` chains start at the narrow minimum, where gradient descent would stay, and run for
    the same *time* :math:`\sum_t \eta = ` `duration` (:math:`\lceil \text{duration}/\eta\rceil`
    steps), so that runs with different rates are compared over the same stretch of the
    gradient flow. The noise of one sample's gradient is Gaussian with standard deviation
    `noise`. Pairs with the same :math:`\eta/B` (the same `temperature`) give about the same
    share while :math:`\eta h_n \ll 1`.
    """
    if len(lrs) != len(batch_sizes) or not lrs:
        raise ValueError(f"Invalid lrs: {len(lrs)} values for {len(batch_sizes)} batch_sizes")
    sizes = _check_counts("batch_sizes", batch_sizes)
    _check_positive("duration", duration)
    _check_count("chains", chains)
    shares = []
    for k, (lr, b) in enumerate(zip(lrs, sizes)):
        _check_positive("lr", lr)
        steps = math.ceil(duration / lr)
        run = sgd_chains(
            well.gradient,
            torch.full((steps,), float(lr), dtype=F64),
            noise=noise,
            batch_size=b,
            start=torch.full((chains,), float(well.narrow_center), dtype=F64),
            seed=seed + k,
        )
        wide = torch.zeros(chains, dtype=F64)
        for theta, _ in run:
            wide += well.in_wide(theta)
        shares.append(wide.mean() / steps)
    return torch.stack(shares)


# --- Linear learning-rate scaling on the digits ----------------------------------------------


@dataclass(frozen=True)
class ScalingRun:
    """One batch size of `linear_scaling_runs`.

    Attributes:
        batch_size: ``B``.
        lr: the rate after the warm-up, ``base_lr * B / base_batch_size``.
        losses: ``(epochs + 1, replicas)``, every replica's mean cross-entropy over the whole
            training set at the start and after each epoch (``inf`` or ``nan`` once it diverged).
    """

    batch_size: int
    lr: float
    losses: Tensor


def linear_scaling_runs(
    x: Tensor,
    y: Tensor,
    batch_sizes: Sequence[int],
    *,
    base_batch_size: int,
    base_lr: float,
    hidden: int = 32,
    epochs: int = 20,
    warmup_epochs: float = 2.0,
    replicas: int = 4,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> list[ScalingRun]:
    r"""Goyal et al. (2017), seed 002: train an MLP ``d-hidden-classes`` with SGD at every batch
    size, the rate scaled linearly with the batch after a warm-up.

    For batch size ``B`` the rate rises linearly from `base_lr` to
    :math:`\eta_B = \eta_{b} \cdot B / b` (:math:`b` = `base_batch_size`) over the first
    `warmup_epochs` epochs (`coursekit.optim.linear_scaling_warmup`), then stays. Why: ``k``
    steps of batch ``b`` at rate :math:`\eta_b` move the weights by about
    :math:`\eta_b \sum_{j<k} \hat g_j`, one step of batch ``kb`` at rate :math:`k\eta_b` by the
    same sum, as long as the gradient hardly drifts during those ``k`` steps.

    `replicas` models per batch size (initial weights from seeds ``seed * 1000 + r``) train at
    once as a `coursekit.ensembles.Ensemble`, each with its own order of minibatches (drawn
    without replacement, epoch by epoch); a run for every batch size sees ``epochs`` passes over
    the data. The loss is measured on the whole training set after every epoch. On a CPU the runs
    use one thread (restored afterwards): for nets this small, more threads only wait on each other.
    """
    sizes = _check_counts("batch_sizes", batch_sizes)
    _check_count("base_batch_size", base_batch_size)
    _check_positive("base_lr", base_lr)
    _check_count("hidden", hidden)
    _check_count("epochs", epochs)
    if not (isinstance(warmup_epochs, int | float) and warmup_epochs >= 0):
        raise ValueError(f"Invalid warmup_epochs: {warmup_epochs!r} (must be >= 0)")
    _check_count("replicas", replicas)
    n, classes = len(x), int(y.max()) + 1
    runs = []
    on_cpu = torch.device(device or "cpu").type == "cpu"
    with _one_thread() if on_cpu else contextlib.nullcontext():
        for b in sizes:
            models = [
                MLP([x.shape[1], hidden, classes], generator=torch.Generator().manual_seed(k))
                for k in range(1000 * seed, 1000 * seed + replicas)
            ]
            ensemble = Ensemble(models).to(device)
            on = next(ensemble.parameters()).device
            x_on, y_on = x.to(on), y.to(on)
            optimizer = SGD(ensemble.parameters(), lr=base_lr)
            per_epoch = -(-n // b)  # the last minibatch of an epoch may be smaller
            warmup = round(warmup_epochs * per_epoch)
            scheduler = LambdaLR(optimizer, linear_scaling_warmup(b, base_batch_size, warmup))
            losses = [evaluate(ensemble, x_on, y_on).loss]
            batches = minibatches(n, b, epochs * per_epoch, seed=seed, k=replicas)
            for step, idx in enumerate(batches, start=1):
                idx = idx.to(on)  # (replicas, B)
                optimizer.zero_grad(set_to_none=True)
                per_model = ensemble.losses(F.cross_entropy, x_on[idx], y_on[idx], per_model=True)
                per_model.sum().backward()  # the sum: each replica gets its own gradient
                optimizer.step()
                scheduler.step()
                if step % per_epoch == 0:
                    losses.append(evaluate(ensemble, x_on, y_on).loss)
            runs.append(ScalingRun(b, base_lr * b / base_batch_size, torch.stack(losses)))
    return runs


# --- Gradient flow: the small-rate limit ------------------------------------------------------


def gradient_flow(loss: Quadratic, times: Tensor, start: Tensor) -> Tensor:
    r"""The solution of :math:`\dot\theta = -\nabla L(\theta) = -(H\theta - c)` on a quadratic,
    at every time in `times`: ``(len(times), d)``.

    .. math::
        \theta(t) = \theta^\star + e^{-Ht}\, (\theta(0) - \theta^\star),

    with the matrix exponential `torch.linalg.matrix_exp` (seed 002: gradient flow is the limit
    of :math:`n t` steps of size :math:`\eta/n` as :math:`n \to \infty`). Along it
    :math:`\frac{d}{dt} L(\theta(t)) = -\|\nabla L(\theta(t))\|^2 \le 0`.
    """
    h = loss.h.to(F64)
    star = loss.minimizer().to(F64)
    times = torch.as_tensor(times, dtype=F64)
    propagators = torch.linalg.matrix_exp(-times[:, None, None] * h)  # (T, d, d)
    return star + propagators @ (start.to(F64) - star)


def gradient_descent_path(loss: Quadratic, lr: float, duration: float, start: Tensor) -> Tensor:
    r"""Gradient descent with step `lr` on a two-dimensional quadratic up to time `duration`:
    the points :math:`\theta_0, \dots, \theta_K`, :math:`K = \text{duration}/\eta`, ``(K + 1, 2)``.

    Point ``k`` belongs to the time :math:`k\eta` of `gradient_flow`. The steps are taken by
    `coursekit.optim.SGD` (full gradient, no momentum) on the quadratic's `Surface`
    (`coursekit.landscapes.trajectory`).
    """
    _check_positive("lr", lr)
    _check_positive("duration", duration)
    steps = round(duration / lr)
    if steps < 1 or not math.isclose(steps * lr, duration, rel_tol=1e-9):
        raise ValueError(f"Invalid lr: {lr!r} (duration / lr must be a whole number of steps)")
    surface = loss.surface(start=tuple(start.tolist()))
    return trajectory(surface, lambda p: SGD(p, lr=lr), steps, start.tolist(), dtype=F64)


def flow_gap(loss: Quadratic, lr: float, duration: float, start: Tensor) -> float:
    r"""How far gradient descent with step `lr` strays from gradient flow up to time `duration`:
    :math:`\max_{k \le \text{duration}/\eta} \|\theta_k - \theta(k\eta)\|`.

    Gradient descent is Euler's method for the flow, so the gap is of order :math:`\eta`: it
    halves when :math:`\eta` halves.
    """
    path = gradient_descent_path(loss, lr, duration, start)
    flow = gradient_flow(loss, lr * torch.arange(len(path), dtype=F64), start)
    return (path - flow).norm(dim=1).max().item()
