"""The in-process simulator of p workers, EASGD's stability map and round-robin ADMM.

References are independent of the code under test: a per-worker Python loop with
nn.Linear + F.mse_loss + autograd applying the course's conventions one worker at a time,
hand-derived closed forms, and eigenvalues of full matrices.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from coursekit.distributed.simulate import (
    simulate_admm_round_robin,
    simulate_downpour,
    simulate_easgd,
    simulate_easgd_quadratic,
    simulate_local_sgd,
)
from coursekit.distributed.stability import (
    _admm_sub_maps_simulated,
    admm_round_robin_map,
    admm_spectral_radius,
    admm_sub_maps,
    easgd_mode_maps,
    easgd_period_map,
    easgd_round_robin_map,
    easgd_round_robin_radius,
    easgd_turn_map,
    round_robin_boundary,
    schedule_growth,
    spectral_radius,
    stability_map,
    stable_fraction,
)
from coursekit.ensembles import minibatches

f64 = torch.float64


def _data(n=50, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g, dtype=f64)
    y = X @ torch.randn(d, generator=g, dtype=f64) + 0.3 * torch.randn(n, generator=g, dtype=f64)
    x0 = torch.randn(d, generator=g, dtype=f64)
    return X, y, x0


def _grad(X, y, w, index):
    """Gradient of F.mse_loss of nn.Linear(d, 1, bias=False) at weight w, by autograd."""
    model = nn.Linear(X.shape[1], 1, bias=False).to(f64)
    with torch.no_grad():
        model.weight.copy_(w[None])
    F.mse_loss(model(X[index]), y[index][:, None]).backward()
    return model.weight.grad[0]


def _reference(X, y, x0, *, algo, p, lr, tau, steps, batch_size, seed, alpha=0.0, momentum=0.0):
    """The conventions' equations, one worker at a time (no batching over workers)."""
    batches = [iter(minibatches(len(X), batch_size, steps, seed=seed + r)) for r in range(p)]
    xs = [x0.clone() for _ in range(p)]
    vs = [torch.zeros_like(x0) for _ in range(p)]
    center = x0.clone()
    losses = []
    for t in range(steps):
        index = [next(b) for b in batches]
        if algo == "easgd" and momentum == 0.0:
            grads = [_grad(X, y, xs[r], index[r]) for r in range(p)]
            ds = [alpha * (xs[r] - center) if t % tau == 0 else 0.0 * xs[r] for r in range(p)]
            xs = [xs[r] - lr * grads[r] - ds[r] for r in range(p)]
            center = center + sum(ds)
        elif algo == "easgd":  # EAMSGD: elastic step first, then Nesterov
            if t % tau == 0:
                ds = [alpha * (xs[r] - center) for r in range(p)]
                xs = [xs[r] - ds[r] for r in range(p)]
                center = center + sum(ds)
            for r in range(p):
                vs[r] = momentum * vs[r] - lr * _grad(X, y, xs[r] + momentum * vs[r], index[r])
                xs[r] = xs[r] + vs[r]
        elif algo == "local":
            xs = [xs[r] - lr * _grad(X, y, xs[r], index[r]) for r in range(p)]
            if (t + 1) % tau == 0:
                xs = [sum(xs) / p for _ in range(p)]
            center = sum(xs) / p
        elif algo == "downpour":
            if t % tau == 0:
                center = center + sum(vs)
                xs = [center.clone() for _ in range(p)]
                vs = [torch.zeros_like(x0) for _ in range(p)]
            for r in range(p):
                g = _grad(X, y, xs[r], index[r])
                xs[r], vs[r] = xs[r] - lr * g, vs[r] - lr * g
        losses.append(F.mse_loss(X @ center, y))
    return torch.stack(xs), center, torch.stack(losses)


@pytest.mark.parametrize(
    "p, tau, momentum, batch_size",
    [(4, 1, 0.0, 16), (4, 3, 0.0, 16), (3, 4, 0.9, 7), (1, 2, 0.0, 50)],
)
def test_easgd_equals_per_worker_loop(p, tau, momentum, batch_size):
    """Does the batched simulator equal the per-worker conventions to 1e-12 (short batches too)?"""
    X, y, x0 = _data()
    kw = dict(lr=0.05, tau=tau, steps=30, batch_size=batch_size, seed=3)
    got = simulate_easgd(X, y, x0, workers=p, alpha=0.1, momentum=momentum, **kw)
    want = _reference(X, y, x0, algo="easgd", p=p, alpha=0.1, momentum=momentum, **kw)
    for a, b in zip((got.workers, got.center, got.center_loss), want):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    assert got.workers.shape == (p, 5) and got.center_loss.shape == (30,)


def test_easgd_on_digits_equals_loop():
    """The same on the course's data (float64 digits, y = label), as a real run would use."""
    from coursekit.data import digits

    split = digits(dtype=f64)
    X, y = split.x_train[:300], split.y_train[:300].to(f64)
    x0 = torch.zeros(X.shape[1], dtype=f64)
    kw = dict(lr=0.01, tau=2, steps=20, batch_size=32, seed=0)
    got = simulate_easgd(X, y[:, None], x0[None], workers=4, alpha=0.05, **kw)
    want = _reference(X, y, x0, algo="easgd", p=4, alpha=0.05, **kw)
    torch.testing.assert_close(got.workers, want[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(got.center, want[1], rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    "algo, simulate", [("local", simulate_local_sgd), ("downpour", simulate_downpour)]
)
def test_other_variants_equal_per_worker_loop(algo, simulate):
    X, y, x0 = _data()
    kw = dict(lr=0.05, tau=3, steps=20, batch_size=16, seed=1)
    got = simulate(X, y, x0, workers=3, **kw)
    want = _reference(X, y, x0, algo=algo, p=3, **kw)
    for a, b in zip((got.workers, got.center, got.center_loss), want):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_invalid_hyper_parameters_raise():
    X, y, x0 = _data()
    kw = dict(workers=2, lr=0.1, alpha=0.1, tau=1, steps=3, batch_size=4, seed=0)
    with pytest.raises(ValueError, match="tau"):
        simulate_easgd(X, y, x0, **{**kw, "tau": 0})
    with pytest.raises(ValueError, match="alpha"):
        simulate_easgd(X, y, x0, **{**kw, "alpha": -1.0})
    with pytest.raises(ValueError, match="workers"):
        simulate_easgd(X, y, x0, **{**kw, "workers": 0})
    with pytest.raises(ValueError, match="p"):
        stability_map(torch.zeros(2), torch.zeros(2), tau=1, p=0)


# ---------------------------------------------------------------------------------------------
# EASGD stability
# ---------------------------------------------------------------------------------------------


def test_period_map_one_worker_one_step_closed_form():
    """p = 1, tau = 1: the map on (x, center) is [[1 - eta - alpha, alpha], [alpha, 1 - alpha]]."""
    eta, alpha = 0.3, 0.2
    want = torch.tensor([[1 - eta - alpha, alpha], [alpha, 1 - alpha]], dtype=f64)
    torch.testing.assert_close(easgd_period_map(eta, alpha, tau=1, p=1), want, rtol=0, atol=1e-15)


def test_period_map_tau_one_closed_form():
    """tau = 1, any p: x_i row (1 - eta - alpha) e_i + alpha e_c; center row alpha ..., 1 - beta."""
    eta, alpha, p = 0.7, 0.05, 4
    want = torch.zeros(p + 1, p + 1, dtype=f64)
    want[:p, :p] = (1 - eta - alpha) * torch.eye(p, dtype=f64)
    want[:p, p] = alpha
    want[p, :p] = alpha
    want[p, p] = 1 - p * alpha
    torch.testing.assert_close(easgd_period_map(eta, alpha, tau=1, p=p), want, rtol=0, atol=1e-15)
    mean, difference = easgd_mode_maps(eta, p * alpha, tau=1, p=p)
    beta = p * alpha
    torch.testing.assert_close(
        mean, torch.tensor([[1 - eta - alpha, alpha], [beta, 1 - beta]], dtype=f64)
    )
    assert math.isclose(difference.item(), 1 - eta - alpha)


@pytest.mark.parametrize("p", [1, 2, 4, 10])
def test_reduced_radius_equals_full_map_eigenvalues(p):
    """Do the mean-mode 2x2 and the difference scalar give the full map's spectral radius?"""
    g = torch.Generator().manual_seed(p)
    etas = 2 * torch.rand(20, generator=g, dtype=f64)
    betas = 2 * torch.rand(20, generator=g, dtype=f64)
    taus = torch.randint(1, 30, (20,), generator=g)
    for eta, beta, tau in zip(etas, betas, taus.tolist()):
        full = spectral_radius(easgd_period_map(eta, beta / p, tau=tau, p=p))
        reduced = stability_map(eta[None], beta[None], tau=tau, p=p)[0, 0]
        assert abs(full - reduced) < 1e-10, (eta, beta, tau)


def test_batched_period_map_equals_one_at_a_time():
    etas = torch.tensor([0.1, 0.9, 1.7], dtype=f64)
    alphas = torch.tensor([0.3, 0.1, 0.2], dtype=f64)
    batched = easgd_period_map(etas, alphas, tau=3, p=3)
    for k in range(3):
        torch.testing.assert_close(batched[k], easgd_period_map(etas[k], alphas[k], tau=3, p=3))


@pytest.mark.parametrize("tau", [1, 5])
def test_no_elasticity_stable_iff_gradient_descent_is(tau):
    """beta = 0: workers are gradient descent (eigenvalue (1-eta)^tau, p times) and the center is
    frozen (eigenvalue 1), so the workers converge iff |1 - eta| < 1 and the radius is 1."""
    p = 3
    etas = torch.linspace(-0.5, 2.5, 31, dtype=f64)
    for eta in etas:
        eig = torch.linalg.eigvals(easgd_period_map(eta, 0.0, tau=tau, p=p)).real.sort().values
        want = torch.tensor(sorted([(1 - eta.item()) ** tau] * p + [1.0]), dtype=f64)
        torch.testing.assert_close(eig, want, rtol=0, atol=1e-12)
        workers_block = easgd_period_map(eta, 0.0, tau=tau, p=p)[:p, :p]
        assert (spectral_radius(workers_block) < 1) == (abs(1 - eta.item()) < 1)
    radius = stability_map(etas, torch.zeros(1, dtype=f64), tau=tau, p=p)[0]
    torch.testing.assert_close(radius, torch.clamp((1 - etas).abs() ** tau, min=1.0))


@pytest.mark.parametrize("eta, beta", [(0.5, 1.9), (1.2, 0.6), (1.9, 1.95)])
def test_simulation_grows_or_decays_at_predicted_rate(eta, beta):
    """From a random start, does ||state|| change by the spectral radius per period?"""
    p, tau, periods = 4, 2, 300
    radius = stability_map(
        torch.tensor([eta], dtype=f64), torch.tensor([beta], dtype=f64), tau=tau, p=p
    ).item()
    g = torch.Generator().manual_seed(0)
    workers = torch.randn(p, 3, generator=g, dtype=f64)
    center = torch.randn(3, generator=g, dtype=f64)
    start = torch.cat([workers, center[None]]).norm()
    workers, center = simulate_easgd_quadratic(
        workers, center, lr=eta, alpha=beta / p, tau=tau, steps=tau * periods
    )
    rate = (torch.cat([workers, center[None]]).norm() / start).item() ** (1 / periods)
    assert rate == pytest.approx(radius, rel=0.02)


def test_full_stability_grid_computes():
    """The seed's grid (tau in 1, 10, 100; p in 1, 10, 100, 1000) at 101 x 101 points."""
    axis = torch.linspace(0, 2, 101, dtype=f64)
    grid = torch.stack(
        [
            torch.stack([stability_map(axis, axis, tau=t, p=p) for p in (1, 10, 100, 1000)])
            for t in (1, 10, 100)
        ]
    )
    assert grid.shape == (3, 4, 101, 101)
    assert torch.isfinite(grid).all() and (grid >= 0).all()
    # p = 1, tau = 1 at (eta, beta) = (1, 1.5) diverges (alpha above (4 - 2 eta)/(4 - eta) = 2/3)
    assert grid[0, 0, 75, 50] > 1
    # the stable region grows with p (at tau = 1) and with tau (at p = 1); at tau = 100 it is
    # almost the whole square for every p
    stable = (grid < 1).sum(dim=(-1, -2))  # (tau, p)
    assert (stable[0, 1:] > stable[0, :-1]).all() and (stable[1:, 0] > stable[:-1, 0]).all()
    assert (stable[2] > 0.95 * 101**2).all()


# ---------------------------------------------------------------------------------------------
# ADMM, round robin
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("p", [3, 8])
def test_admm_sub_maps_equal_simulated_sub_updates(p):
    """Is each matrix F^i_k the simulator's sub-update applied to the 2p+1 basis vectors?"""
    for worker in range(p):
        for matrix, simulated in zip(
            admm_sub_maps(0.003, 1.7, p, worker), _admm_sub_maps_simulated(0.003, 1.7, p, worker)
        ):
            torch.testing.assert_close(matrix, simulated, rtol=0, atol=1e-15)


def test_admm_round_equals_simulated_round():
    p, eta, rho = 3, 0.002, 4.0
    basis = torch.eye(2 * p + 1, dtype=f64)
    lambdas, workers, center = simulate_admm_round_robin(
        basis[0 : 2 * p : 2], basis[1 : 2 * p : 2], basis[2 * p], lr=eta, rho=rho, rounds=1
    )
    simulated = torch.cat([torch.stack([lambdas, workers], 1).reshape(2 * p, -1), center[None]])
    torch.testing.assert_close(admm_round_robin_map(eta, rho, p), simulated, rtol=0, atol=1e-14)


@pytest.mark.parametrize("p, radius", [(3, 1.00097), (8, 1.00226)])
def test_admm_unstable_at_seed_parameters(p, radius):
    """eta = 0.001, rho = 2.5: every worker's own map has radius <= 1, their composition > 1."""
    composed = spectral_radius(admm_round_robin_map(0.001, 2.5, p)).item()
    assert composed == pytest.approx(radius, abs=1e-5) and composed > 1
    for i in range(p):
        f1, f2, f3 = admm_sub_maps(0.001, 2.5, p, i)
        assert spectral_radius(f3 @ f2 @ f1) <= 1 + 1e-12


def test_admm_diverges_from_seed_start():
    """The caption's start (lambda = 0, x = center = 1000), p = 3: once the unstable mode
    dominates, the state grows by the spectral radius per round."""
    p = 3
    radius = spectral_radius(admm_round_robin_map(0.001, 2.5, p)).item()

    def run(state, rounds):
        state = simulate_admm_round_robin(*state, lr=0.001, rho=2.5, rounds=rounds)
        return state, torch.cat([state[0], state[1], state[2][None]]).norm().item()

    start = (
        torch.zeros(p, dtype=f64),
        torch.full((p,), 1000.0, dtype=f64),
        torch.tensor(1000.0, dtype=f64),
    )
    state, early = run(start, 6000)  # the stable modes die out first (the norm dips below 2000)
    _, late = run(state, 2000)
    assert late > 2000.0  # larger than where it started: diverging
    assert (late / early) ** (1 / 2000) == pytest.approx(radius, abs=1e-6)


def test_admm_sweep():
    etas = torch.linspace(1e-4, 1e-2, 30, dtype=f64)
    rhos = torch.linspace(0.1, 10, 40, dtype=f64)
    radius = admm_spectral_radius(etas, rhos, p=3)
    assert radius.shape == (30, 40)
    assert (radius > 1).any() and (radius < 1).any()  # both regions appear, as in the seed
    torch.testing.assert_close(
        radius[5, 7], spectral_radius(admm_round_robin_map(etas[5], rhos[7], 3))
    )


# ---------------------------------------------------------------------------------------------
# EASGD, round robin; stable_fraction
# ---------------------------------------------------------------------------------------------


def test_a_turn_is_the_one_worker_one_step_map_on_its_pair():
    """Is worker i's turn the simulator's p = 1, tau = 1 period map on (x_i, center), and the
    identity on the other workers?"""
    eta, alpha, p = 0.7, 0.35, 4
    pair = easgd_period_map(eta, alpha, tau=1, p=1)  # built by simulate_easgd_quadratic
    for i in range(p):
        turn = easgd_turn_map(eta, alpha, p, i)
        index = torch.tensor([i, p])
        torch.testing.assert_close(turn[index][:, index], pair, rtol=0, atol=1e-15)
        others = [j for j in range(p) if j != i]
        torch.testing.assert_close(turn[others], torch.eye(p + 1, dtype=f64)[others])


def test_batched_turn_and_round_maps_equal_one_at_a_time():
    etas = torch.tensor([0.1, 0.9, 1.7], dtype=f64)
    alphas = torch.tensor([0.3, 0.1, 0.2], dtype=f64)
    batched = easgd_round_robin_map(etas, alphas, 3, order=[2, 0, 1], h=[1.0, 0.5, 2.0])
    assert batched.shape == (3, 4, 4)
    for k in range(3):
        one = easgd_round_robin_map(etas[k], alphas[k], 3, order=[2, 0, 1], h=[1.0, 0.5, 2.0])
        torch.testing.assert_close(batched[k], one)
    radius = easgd_round_robin_radius(etas, alphas, p=3)
    assert radius.shape == (3, 3)  # rows alpha, columns eta
    torch.testing.assert_close(radius[1, 2], spectral_radius(easgd_round_robin_map(1.7, 0.1, 3)))


def test_round_robin_arguments_are_checked():
    with pytest.raises(ValueError, match="worker"):
        easgd_turn_map(0.1, 0.1, 3, 3)
    with pytest.raises(ValueError, match="order"):
        easgd_round_robin_map(0.1, 0.1, 3, order=[0, 0, 1])
    with pytest.raises(ValueError, match="h"):
        easgd_round_robin_map(0.1, 0.1, 3, h=[1.0, 2.0])
    with pytest.raises(ValueError, match="orders"):
        schedule_growth([easgd_turn_map(0.1, 0.1, 1, 0)], [])
    with pytest.raises(ValueError, match="points"):
        stable_fraction(tau=1, p=1, points=2)


def test_round_robin_boundary_is_nan_where_every_alpha_contracts():
    """Below the curve every round contracts: a grid of alphas under it finds no boundary."""
    etas = torch.tensor([0.5, 1.0], dtype=f64)
    boundary = round_robin_boundary(etas, p=2, alphas=torch.linspace(0, 0.5, 51, dtype=f64))
    assert torch.isnan(boundary).all()


def test_schedule_growth_of_one_turn_repeated_is_its_radius():
    """p = 1: every round is the symmetric 2 x 2 map M. From a unit start with component c on
    M's top eigenvector (radius r, both from numpy's eigh), |M^n v| lies in [|c| r^n, r^n],
    so the mean growth per round lies in [|c|^(1/n) r, r]."""
    eta, alpha, rounds = 0.4, 0.3, 400
    turn = easgd_turn_map(eta, alpha, 1, 0)
    values, vectors = np.linalg.eigh(turn.numpy())
    top = np.abs(values).argmax()
    start = torch.tensor([1.0, 0.0], dtype=f64)
    c, r = abs(vectors[0, top]), abs(values[top])
    growth = schedule_growth([turn], [[0]] * rounds, start=start)
    assert c ** (1 / rounds) * r * (1 - 1e-12) <= growth <= r * (1 + 1e-12)


def test_stable_fraction_counts_the_inner_points_of_the_stability_map():
    axis = torch.linspace(0, 2, 21, dtype=f64)
    radius = stability_map(axis, axis, tau=3, p=10)[1:-1, 1:-1]
    assert stable_fraction(tau=3, p=10, points=21) == (radius < 1).double().mean().item()
