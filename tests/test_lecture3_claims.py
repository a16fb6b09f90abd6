"""Lecture 3's claims ("SGD theory"), each tested against a quantity that the library function
behind it did not compute.

`coursekit.sgd_theory` holds the lecture's experiments. Here they are checked on small cases
against closed forms (the stationary variance as the fixed point of its own recursion, the
normal law of a Gaussian chain), exact enumeration (every minibatch of a three-point data set),
dense linear algebra (the window-average error of a linear Gaussian chain, written as a sum over
its noise terms), numerical integration (scipy's quad for the Gibbs share, solve_ivp for gradient
flow), autograd one sample at a time, and torch.optim's SGD with a warm-up computed by hand. No
number printed by a run of the notebook is pinned: the notebook's check cells tie its prose to
its own run. Simulations use fixed seeds and tolerances of several standard errors.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.integrate import quad, solve_ivp
from scipy.stats import norm

from coursekit import sgd_theory as st
from coursekit.landscapes import Quadratic
from coursekit.models import MLP

F64 = torch.float64


# --- Minibatch gradients of a network -------------------------------------------------------


def test_per_sample_gradients_equal_autograd_one_sample_at_a_time():
    """Compared with loss.backward() on each sample alone, and their mean with the full-batch
    gradient of the mean loss."""
    gen = torch.Generator().manual_seed(0)
    model = MLP([5, 4, 3], generator=gen).double()
    x = torch.randn(7, 5, generator=gen, dtype=F64)
    y = torch.randint(3, (7,), generator=gen)
    per_sample = st.per_sample_gradients(model, F.cross_entropy, x, y)
    assert per_sample.shape == (7, sum(p.numel() for p in model.parameters()))
    for i in range(7):
        model.zero_grad()
        F.cross_entropy(model(x[i : i + 1]), y[i : i + 1]).backward()
        by_autograd = torch.cat([p.grad.flatten() for p in model.parameters()])
        torch.testing.assert_close(per_sample[i], by_autograd, rtol=1e-12, atol=1e-12)
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    full = torch.cat([p.grad.flatten() for p in model.parameters()])
    torch.testing.assert_close(per_sample.mean(0), full, rtol=1e-12, atol=1e-12)


def test_minibatch_gradient_noise_is_unbiased_with_variance_trace_over_b():
    """Compared with the closed form tr(Sigma) / B of a mean of B independent draws, Sigma the
    per-sample covariance computed by numpy; the draws' mean is within noise of g."""
    gen = torch.Generator().manual_seed(1)
    per_sample = torch.randn(60, 4, generator=gen, dtype=F64) * torch.tensor([3.0, 1.0, 0.5, 2.0])
    draws = 20_000
    noise = st.minibatch_gradient_noise(per_sample, [1, 3, 10], draws=draws, keep=[0, 2], seed=2)
    covariance = np.cov(per_sample.numpy().T, bias=True)
    assert math.isclose(noise.trace, np.trace(covariance), rel_tol=1e-12)
    expected = np.trace(covariance) / np.array([1, 3, 10])
    # relative standard error of a variance over 20,000 draws: about 1 %
    np.testing.assert_allclose(noise.variance.numpy(), expected, rtol=0.05)
    assert (noise.bias < 10 * noise.variance / draws).all()  # E[bias] = variance / draws
    # the kept draws of coordinates 0 and 2: mean g_c, variance Sigma_cc / B
    assert noise.kept.shape == (3, draws, 2)
    mean = per_sample.mean(0)[[0, 2]].numpy()
    for k, b in enumerate([1, 3, 10]):
        kept = noise.kept[k].numpy()
        np.testing.assert_allclose(kept.var(0), covariance[[0, 2], [0, 2]] / b, rtol=0.05)
        assert (
            np.abs(kept.mean(0) - mean) < 4 * np.sqrt(covariance[[0, 2], [0, 2]] / b / draws)
        ).all()


def test_sign_batch_size_is_the_smallest_batch_whose_interval_excludes_zero():
    """Compared with a brute-force search for the smallest n with z sigma / sqrt(n) <= |g|, and
    with the normal law: at that n the sign is right with probability at least Phi(z)."""
    for g, sigma in [(0.3, 1.0), (-2.0, 3.0), (1.0, 4.0), (0.05, 0.2)]:
        for z in (2.0, math.sqrt(2.0), 3.0):
            n = st.sign_batch_size(g, sigma, z)
            brute = next(
                k for k in itertools.count(1) if z * sigma / math.sqrt(k) <= abs(g) * (1 + 1e-12)
            )
            assert n == brute, (g, sigma, z)
            assert norm.cdf(abs(g) * math.sqrt(n) / sigma) >= norm.cdf(z) - 1e-12
    assert st.sign_batch_size(1.0, 4.0) == 64  # 4 sigma^2 / g^2, not seed 002's 2 sigma^2 / g^2
    with pytest.raises(ValueError, match="grad_mean"):
        st.sign_batch_size(0.0, 1.0)


def test_sign_agreement_matches_exact_enumeration_of_every_minibatch():
    """Compared with the exact probability that the mean of n draws (with replacement) from
    {-1, 0.5, 2} is positive, counted over all 3^n equally likely minibatches."""
    values = [-1.0, 0.5, 2.0]  # mean 0.5 > 0
    sizes = [1, 2, 3, 4]
    exact = [
        sum(sum(batch) > 0 for batch in itertools.product(values, repeat=n)) / 3**n for n in sizes
    ]
    per_sample = torch.tensor(values, dtype=F64).unsqueeze(1).expand(3, len(sizes))
    draws = 40_000
    measured = st.sign_agreement(per_sample, sizes, draws=draws, seed=3)
    for p, q in zip(measured.tolist(), exact):
        assert abs(p - q) < 4 * math.sqrt(q * (1 - q) / draws) + 1e-12, (p, q)


# --- Seed 002's one-dimensional example -------------------------------------------------------


@pytest.mark.parametrize(("lr", "batch_size"), [(0.1, 1), (1.0, 4), (1.8, 16), (0.02, 2)])
def test_stationary_variance_is_the_fixed_point_of_the_variance_recursion(lr, batch_size):
    """Compared with v iterated to convergence: v <- (1 - lr h)^2 v + lr^2 sigma^2 / B."""
    problem = st.NoisyQuadratic(curvature=2.0 if lr < 1 else 1.0, noise=1.5)
    h, q = problem.curvature, problem.noise**2 / batch_size
    v = 0.0
    for _ in range(20_000):
        v = (1 - lr * h) ** 2 * v + lr * lr * q
    assert math.isclose(st.stationary_variance(lr, batch_size, problem), v, rel_tol=1e-10)


def test_stationary_variance_refuses_rates_without_a_stationary_law():
    with pytest.raises(ValueError, match="lr"):
        st.stationary_variance(2.0, 1, st.NoisyQuadratic(curvature=1.0))
    with pytest.raises(ValueError, match="batch_size"):
        st.stationary_variance(0.1, 0, st.NoisyQuadratic())
    with pytest.raises(ValueError, match="curvature"):
        st.NoisyQuadratic(curvature=-1.0)


def test_measured_stationary_variance_agrees_with_the_closed_form():
    """Compared with eta sigma^2 / (B h (2 - eta h)), which the simulation does not use."""
    problem = st.NoisyQuadratic(curvature=2.0, noise=0.7, minimum=1.5)
    lrs, sizes = [0.05, 0.5, 0.9], [1, 8, 3]
    measured = st.measured_stationary_variance(problem, lrs, sizes, chains=2000, steps=800)
    closed = [st.stationary_variance(lr, b, problem) for lr, b in zip(lrs, sizes)]
    np.testing.assert_allclose(measured.numpy(), closed, rtol=0.03)


def test_sgd_chains_follow_the_normal_law_of_a_linear_gaussian_chain():
    """Compared with the exact law after t steps: mean (1 - eta h)^t e_0, variance from the
    recursion of expected_square_error minus the squared mean."""
    problem = st.NoisyQuadratic(curvature=1.0, noise=2.0)
    lr, b, e0, steps, chains = 0.3, 2, 3.0, 6, 40_000
    rates = torch.full((steps,), lr, dtype=F64)
    points = [
        theta
        for theta, _ in st.sgd_chains(
            problem.gradient,
            rates,
            noise=problem.noise,
            batch_size=b,
            start=torch.full((chains,), e0),
        )
    ]
    last = points[-1]  # theta_{steps - 1}
    t = steps - 1
    mean = (1 - lr) ** t * e0
    second = st.expected_square_error(problem, rates[:t], b, start=e0)[-1].item()
    variance = second - mean**2
    assert abs(last.mean().item() - mean) < 4 * math.sqrt(variance / chains)
    assert abs(last.var().item() / variance - 1) < 4 * math.sqrt(2 / chains)


def test_expected_square_error_reaches_the_closed_forms_of_each_schedule():
    """Compared with the closed forms: a constant rate's stationary variance, and c^2 sigma^2 /
    (B (2 c h - 1) t) for eta_t = c / t at large t."""
    problem = st.NoisyQuadratic(curvature=1.0, noise=1.0)
    steps = 100_000
    constant = st.expected_square_error(problem, torch.full((2000,), 0.4, dtype=F64), 2, start=5.0)
    assert math.isclose(constant[-1].item(), st.stationary_variance(0.4, 2, problem), rel_tol=1e-9)
    c = 1.5
    t = torch.arange(1, steps + 1, dtype=F64)
    decaying = st.expected_square_error(problem, c / (t + 1), 1, start=5.0)
    assert math.isclose(decaying[-1].item() * steps, c * c / (2 * c - 1), rel_tol=0.01)


def test_schedule_errors_estimate_expected_square_error():
    """The chains' mean square error against the exact recursion, for three schedules."""
    problem = st.NoisyQuadratic(curvature=1.0, noise=1.0)
    steps, chains = 300, 4000
    t = torch.arange(steps, dtype=F64)
    schedules = {
        "constant": torch.full((steps,), 0.5, dtype=F64),
        "1/t": 1 / (t + 2),
        "1/sqrt t": 0.5 / (t + 1).sqrt(),
    }
    measured = st.schedule_errors(problem, schedules, 1, start=4.0, chains=chains, seed=4)
    for name, rates in schedules.items():
        exact = st.expected_square_error(problem, rates, 1, start=4.0)
        assert measured[name].shape == exact.shape == (steps + 1,)
        # a mean of chains squared Gaussians: relative standard error sqrt(2 / chains), about 2 %
        ratio = measured[name][-50:] / exact[-50:]
        assert (ratio - 1).abs().max() < 0.1, (name, ratio)


def _window_errors_exact(problem, lr, b, windows, start, at_step):
    """E[(mean of the last n minibatch gradients - g(theta_T))^2], with theta_t written as a
    deterministic part plus a linear combination of the noise terms xi_0 ... xi_T (numpy)."""
    h, q, a, big_t = problem.curvature, problem.noise**2 / b, 1 - lr * problem.curvature, at_step
    det = np.array([a**t * (start - problem.minimum) for t in range(big_t + 1)])  # mean of e_t
    coef = np.zeros((big_t + 1, big_t + 1))  # e_t = det_t + sum_s coef[t, s] xi_s
    for t in range(1, big_t + 1):
        coef[t, :t] = -lr * a ** (t - 1 - np.arange(t))
    g_det, g_coef = h * det, h * coef + np.eye(big_t + 1)  # g_hat_t = h e_t + xi_t
    out = []
    for n in windows:
        rows = slice(big_t - n + 1, big_t + 1)
        bias = g_det[rows].mean() - h * det[big_t]
        spread = g_coef[rows].mean(0) - h * coef[big_t]
        out.append(bias**2 + q * np.square(spread).sum())
    return np.array(out)


def test_window_average_errors_match_the_linear_gaussian_computation():
    """Compared with the exact mean squared error from the chain's linear form (numpy)."""
    problem = st.NoisyQuadratic(curvature=1.0, noise=1.0, minimum=0.5)
    windows = [1, 4, 15, 40, 80]
    args = dict(start=5.0, at_step=120)
    measured = st.window_average_errors(problem, 0.02, 2, windows, chains=20_000, seed=5, **args)
    exact = _window_errors_exact(problem, 0.02, 2, windows, **args)
    np.testing.assert_allclose(measured.numpy(), exact, rtol=0.05)
    assert exact.argmin() not in (0, len(windows) - 1)  # this case has an interior best window


# --- The double well ------------------------------------------------------------------------


def test_double_well_basins_gradient_and_gibbs_share():
    """The narrow interval's ends against the two parabolas' equality, the gradient against
    autograd, and the closed-form Gibbs share against scipy's quad of exp(-L/T)."""
    well = st.DoubleWell()
    c1, c2 = well.narrow_interval()
    for c in (c1, c2):
        narrow = 0.5 * well.narrow_curvature * (c - well.narrow_center) ** 2
        wide = 0.5 * well.wide_curvature * (c - well.wide_center) ** 2 + well.wide_height
        assert math.isclose(narrow, wide, rel_tol=1e-12)
    theta = torch.tensor([-3.0, -0.5, 0.7, 2.0, 9.0], dtype=F64, requires_grad=True)
    well.value(theta).sum().backward()
    torch.testing.assert_close(well.gradient(theta.detach()), theta.grad)
    for temperature in (0.1, 0.5, 2.0):

        def density(x, temperature=temperature):
            return math.exp(-well.value(torch.tensor(x, dtype=F64)).item() / temperature)

        narrow = quad(density, c1, c2, epsabs=0, epsrel=1e-10)[0]
        wide = (
            quad(density, -np.inf, c1, epsrel=1e-10)[0] + quad(density, c2, np.inf, epsrel=1e-10)[0]
        )
        assert math.isclose(
            well.gibbs_wide_share(temperature), wide / (wide + narrow), rel_tol=1e-6
        )


def test_wide_basin_share_approaches_gibbs_at_small_rate_and_zero_without_noise():
    """Compared with the Gibbs share exp(-L/T) (closed form, checked above) in the small-rate
    limit after a long run, and with gradient descent, which never leaves the narrow basin."""
    well = st.DoubleWell()
    lr, b, temperature = 0.05, 1, 1.0
    noise = math.sqrt(2 * temperature * b / lr)
    share = st.wide_basin_share(well, [lr], [b], noise=noise, duration=400.0, chains=400, seed=6)
    assert abs(share.item() - well.gibbs_wide_share(temperature)) < 0.05, share
    still = st.wide_basin_share(well, [0.3], [1], noise=0.0, duration=30.0, chains=3)
    assert still.item() == 0.0


# --- Linear scaling on a small problem --------------------------------------------------------


def test_linear_scaling_runs_equal_torch_sgd_with_the_warmup_by_hand():
    """Full batches (B = N, so the order of samples does not matter): every replica's loss
    after each epoch equals torch.optim.SGD's on a model built from the documented seed, with
    the rate factor 1 + (B/b - 1) k / warm-up computed here."""
    gen = torch.Generator().manual_seed(7)
    x, y = torch.randn(40, 5, generator=gen), torch.randint(3, (40,), generator=gen)
    base_lr, epochs, seed = 0.2, 4, 3
    threads = torch.get_num_threads()
    runs = st.linear_scaling_runs(
        x,
        y,
        [40],
        base_batch_size=20,
        base_lr=base_lr,
        hidden=6,
        epochs=epochs,
        warmup_epochs=2,
        replicas=2,
        seed=seed,
    )
    (run,) = runs
    assert torch.get_num_threads() == threads  # the one-thread block restores the setting
    assert run.batch_size == 40 and math.isclose(run.lr, 2 * base_lr)
    factors = [1.0, 1.5, 2.0, 2.0]  # from 1 to B / b = 2 over two steps, then 2
    for r in range(2):
        model = MLP([5, 6, 3], generator=torch.Generator().manual_seed(1000 * seed + r))
        optimizer = torch.optim.SGD(model.parameters(), lr=base_lr)
        losses = [F.cross_entropy(model(x), y).item()]
        for factor in factors:
            for group in optimizer.param_groups:
                group["lr"] = base_lr * factor
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()
            optimizer.step()
            with torch.no_grad():
                losses.append(F.cross_entropy(model(x), y).item())
        np.testing.assert_allclose(run.losses[:, r].numpy(), losses, rtol=1e-5)


# --- Gradient flow --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bowl():
    return Quadratic(
        torch.tensor([[3.0, 1.0], [1.0, 1.0]], dtype=F64), torch.tensor([1.0, -0.5], dtype=F64)
    )


def test_gradient_flow_equals_an_ode_integrator(bowl):
    """Compared with scipy's solve_ivp (RK45, rtol 1e-10) on d theta / dt = -(H theta - c)."""
    start = torch.tensor([2.0, 1.0], dtype=F64)
    times = torch.linspace(0, 3, 7, dtype=F64)
    h, c = bowl.h.numpy(), bowl.c.numpy()
    solved = solve_ivp(
        lambda t, th: -(h @ th - c),
        (0, 3),
        start.numpy(),
        t_eval=times.numpy(),
        rtol=1e-10,
        atol=1e-12,
    )
    np.testing.assert_allclose(st.gradient_flow(bowl, times, start).numpy(), solved.y.T, atol=1e-8)


def test_loss_falls_along_gradient_flow_at_the_rate_minus_grad_norm_squared(bowl):
    """Compared with central differences of the loss along the flow: dL/dt = -|grad L|^2."""
    start, dt = torch.tensor([2.0, 1.0], dtype=F64), 1e-5
    for t in (0.1, 0.7, 2.0):
        before, at, after = st.gradient_flow(
            bowl, torch.tensor([t - dt, t, t + dt], dtype=F64), start
        )
        rate = (bowl.value(after) - bowl.value(before)).item() / (2 * dt)
        assert math.isclose(rate, -bowl.grad(at).square().sum().item(), rel_tol=1e-6)


def test_flow_gap_equals_numpy_and_halves_with_the_rate(bowl):
    """The gap against GD and the flow computed by numpy and scipy's expm; the ratio of gaps at
    lr and lr/2 against 2, Euler's first order (the gap is lr times a constant plus O(lr^2))."""
    from scipy.linalg import expm

    start = torch.tensor([2.0, 1.0], dtype=F64)
    h, c = bowl.h.numpy(), bowl.c.numpy()
    star = np.linalg.solve(h, c)
    gaps = []
    for lr in (0.04, 0.02, 0.01):
        theta, worst = start.numpy().copy(), 0.0
        for k in range(round(1.0 / lr) + 1):
            flow = star + expm(-h * k * lr) @ (start.numpy() - star)
            worst = max(worst, np.linalg.norm(theta - flow))
            theta = theta - lr * (h @ theta - c)
        assert math.isclose(st.flow_gap(bowl, lr, 1.0, start), worst, rel_tol=1e-9)
        gaps.append(worst)
    assert abs(gaps[1] / gaps[2] - 2) < 0.05 and abs(gaps[0] / gaps[1] - 2) < 0.1
    with pytest.raises(ValueError, match="lr"):
        st.flow_gap(bowl, 0.3, 1.0, start)
