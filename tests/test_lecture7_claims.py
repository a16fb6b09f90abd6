"""Lecture 7's claims, checked in `coursekit.regularisation` and `coursekit.initialisation`
against quantities those modules did not compute.

The references: dense linear solves; scipy's scalar minimiser and scikit-learn's Lasso; plain
gradient-descent loops and the inequalities between the early-stopping and ridge filters; the
exact expectation over every dropout mask of a tiny problem; closed-form Gaussian expectations
of a linear and a sine model; autograd's derivative of |w|; Adam's scale invariance; torch.nn.init's
own schemes and the moments of the distributions; dense Jacobians of a tiny net.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar

from coursekit import initialisation as ini
from coursekit import regularisation as reg

F64 = torch.float64


def _random_spd(d: int, seed: int, low: float = 1e-3, high: float = 1e2):
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=F64))
    eigenvalues = torch.logspace(math.log10(low), math.log10(high), d, dtype=F64)
    return q @ torch.diag(eigenvalues) @ q.T, q, eigenvalues, gen


# --- Weight decay ---------------------------------------------------------------------------


@pytest.mark.parametrize("alpha", [1e-3, 0.1, 1.0, 30.0])
def test_ridge_minimiser_solves_the_normal_equations(alpha):
    """numpy's dense solve of (H + alpha I) w = H w*, to 1e-10; and the component along each
    eigenvector of H is lambda_i / (lambda_i + alpha) times w*'s."""
    h, q, eigenvalues, gen = _random_spd(12, seed=1)
    w_star = torch.randn(12, generator=gen, dtype=F64)
    got = reg.ridge_minimiser(h, w_star, alpha)
    expected = np.linalg.solve(h.numpy() + alpha * np.eye(12), h.numpy() @ w_star.numpy())
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-10)
    ratios = (q.T @ got) / (q.T @ w_star)
    np.testing.assert_allclose(
        ratios.numpy(), (eigenvalues / (eigenvalues + alpha)).numpy(), rtol=1e-8
    )
    assert torch.allclose(reg.ridge_shrinkage(eigenvalues, alpha), ratios, rtol=1e-8)


# --- L1 --------------------------------------------------------------------------------------


def test_l1_closed_form_is_the_minimum_found_by_scipy_per_coordinate():
    """scipy.optimize.minimize_scalar on each one-dimensional problem
    0.5 H_ii (w - w*_i)^2 + alpha |w|, to 1e-6; weights move by alpha/H_ii or stop at zero."""
    gen = torch.Generator().manual_seed(2)
    w_star = 2 * torch.randn(20, generator=gen, dtype=F64)
    h_diag = torch.logspace(-1, 1, 20, dtype=F64)
    alpha = 0.7
    got = reg.l1_minimiser_diagonal(w_star, h_diag, alpha)
    for i in range(20):
        hi, wi = h_diag[i].item(), w_star[i].item()
        res = minimize_scalar(
            lambda v, hi=hi, wi=wi: 0.5 * hi * (v - wi) ** 2 + alpha * abs(v),
            bounds=(-10, 10),
            method="bounded",
            options={"xatol": 1e-10},
        )
        assert got[i].item() == pytest.approx(res.x, abs=1e-6)
    moved = got != 0
    assert moved.any() and (~moved).any()
    shift = (w_star - got).abs()[moved]
    torch.testing.assert_close(shift, (alpha / h_diag)[moved])  # not "no change"


def test_soft_threshold_is_the_proximal_operator_by_grid_search():
    """A brute-force grid minimum of 0.5 (v - w)^2 + tau |v| for each w, to the grid step."""
    grid = torch.linspace(-3, 3, 60001, dtype=F64)
    tau = 0.8
    for w in (-2.5, -0.8, -0.3, 0.0, 0.5, 0.81, 2.0):
        objective = 0.5 * (grid - w) ** 2 + tau * grid.abs()
        best = grid[objective.argmin()].item()
        got = reg.soft_threshold(torch.tensor(w, dtype=F64), tau).item()
        assert got == pytest.approx(best, abs=2e-4)


def test_ista_reaches_the_closed_form_with_exact_zeros():
    """With a diagonal Hessian, ISTA's limit is the soft-thresholding closed form and it sets
    exactly as many weights to 0.0 as the closed form has zeros."""
    gen = torch.Generator().manual_seed(3)
    w_star = torch.randn(30, generator=gen, dtype=F64)
    h_diag = torch.logspace(-0.5, 0.5, 30, dtype=F64)
    alpha = 0.6
    closed = reg.l1_minimiser_diagonal(w_star, h_diag, alpha)
    lr = 1 / h_diag.max().item()
    path = reg.ista(torch.diag(h_diag), w_star, alpha, lr=lr, steps=300, w0=w_star)  # from w*
    assert (path[0] != 0).all()
    assert ((path[-1] == 0) == (closed == 0)).all()
    assert (closed == 0).sum() >= 5
    torch.testing.assert_close(path[-1], closed, rtol=0, atol=1e-12)


def test_ista_on_least_squares_matches_scikit_learns_lasso():
    """scikit-learn's coordinate-descent Lasso (min 1/(2n)||y - Xw||^2 + alpha||w||_1), the same
    minimiser as ISTA on H = X^T X / n around the least-squares w*: values and zero pattern."""
    from sklearn.linear_model import Lasso

    gen = torch.Generator().manual_seed(4)
    x = torch.randn(80, 12, generator=gen, dtype=F64)
    w_true = torch.zeros(12, dtype=F64)
    w_true[:4] = torch.tensor([2.0, -1.5, 1.0, 0.5], dtype=F64)
    y = x @ w_true + 0.5 * torch.randn(80, generator=gen, dtype=F64)
    h = x.T @ x / 80
    w_star = torch.linalg.solve(h, x.T @ y / 80)
    alpha = 0.1
    path = reg.ista(h, w_star, alpha, lr=1 / torch.linalg.eigvalsh(h).max().item(), steps=3000)
    lasso = Lasso(alpha=alpha, fit_intercept=False, tol=1e-14, max_iter=100_000).fit(x, y)
    np.testing.assert_allclose(path[-1].numpy(), lasso.coef_, atol=1e-7)
    assert ((path[-1] == 0).numpy() == (lasso.coef_ == 0)).all() and (lasso.coef_ == 0).any()


def test_subgradient_step_is_autograds_and_never_lands_on_zero():
    """Each step is -lr times autograd's gradient of `l1_objective` written with torch.abs;
    the weights whose optimum is zero change sign again and again and never equal 0.0."""
    gen = torch.Generator().manual_seed(5)
    w_star = torch.randn(10, generator=gen, dtype=F64)
    h_diag = torch.logspace(-0.5, 0.5, 10, dtype=F64)
    h, alpha, lr = torch.diag(h_diag), 0.6, 0.1
    path = reg.subgradient_descent(h, w_star, alpha, lr=lr, steps=2000)
    w = path[100].clone().requires_grad_(True)
    (0.5 * (w - w_star) @ h @ (w - w_star) + alpha * w.abs().sum()).backward()
    torch.testing.assert_close(path[101], path[100] - lr * w.grad)
    zero_at_optimum = reg.l1_minimiser_diagonal(w_star, h_diag, alpha) == 0
    tail = path[-500:, zero_at_optimum]
    assert zero_at_optimum.sum() >= 3
    assert (tail != 0).all()
    flips = (tail[1:].sign() != tail[:-1].sign()).sum(0)
    assert (flips >= 50).all(), flips
    # |H_ii w*_i| <= alpha where the optimum is 0, so each step moves by at most 2 lr alpha
    assert tail.abs().max() <= 2 * lr * alpha * (1 + 1e-9)


# --- Early stopping -------------------------------------------------------------------------


def test_early_stopping_filter_is_what_gradient_descent_steps_do():
    """A plain numpy loop of t gradient steps from zero, projected on H's eigenvectors: the
    ratio to w*'s components is 1 - (1 - lr lambda_i)^t; `gradient_descent_path` is that loop."""
    h, q, eigenvalues, gen = _random_spd(8, seed=6, low=0.01, high=1.0)
    w_star = torch.randn(8, generator=gen, dtype=F64)
    lr, steps = 0.9, 37
    w = np.zeros(8)
    for _ in range(steps):
        w = w - lr * (h.numpy() @ (w - w_star.numpy()))
    ratios = (q.T.numpy() @ w) / (q.T @ w_star).numpy()
    np.testing.assert_allclose(
        reg.early_stopping_filter(eigenvalues, lr, steps).numpy(), ratios, rtol=1e-9
    )
    path = reg.gradient_descent_path(h, w_star, lr=lr, steps=steps)
    np.testing.assert_allclose(path[-1].numpy(), w, rtol=1e-12, atol=1e-14)


def test_early_stopping_filter_lies_between_ridge_and_twice_ridge():
    """For 0 <= lr lambda <= 1, ridge's factor at alpha = 1/(t lr) <= early stopping's <= twice
    ridge's (and <= min(1, t lr lambda)), on random lambda, lr and t."""
    gen = torch.Generator().manual_seed(7)
    for _ in range(20):
        lr = 10 ** (-3 * torch.rand(1, generator=gen).item())
        steps = int(torch.randint(1, 5000, (1,), generator=gen))
        eigenvalues = torch.rand(500, generator=gen, dtype=F64) / lr  # lr lambda in [0, 1)
        es = reg.early_stopping_filter(eigenvalues, lr, steps)
        ridge = reg.ridge_shrinkage(eigenvalues, 1 / (steps * lr))
        x = steps * lr * eigenvalues
        assert (es >= ridge * (1 - 1e-12)).all()
        assert (es <= 2 * ridge + 1e-12).all()
        assert (es <= torch.minimum(torch.ones_like(x), x) + 1e-12).all()


def test_noisy_regression_has_the_stated_spread_and_noise():
    """Feature standard deviations decay**j and residual noise `noise`, by sample moments."""
    s = reg.noisy_regression(
        5, 20000, 10, 10, noise=0.5, decay=0.5, generator=torch.Generator().manual_seed(8)
    )
    stds = s.x_train.std(0)
    np.testing.assert_allclose(stds.numpy(), 0.5 ** np.arange(5), rtol=0.03)
    residual = s.y_train - s.x_train @ s.w_true
    assert residual.std().item() == pytest.approx(0.5, rel=0.03)


# --- Dropout ---------------------------------------------------------------------------------


def _exact_dropout_loss(x, y, w, p, inverted):
    """The expectation over every mask of every sample: independent samples, so per sample."""
    keep = 1 - p
    total = 0.0
    for n in range(len(x)):
        for mask in itertools.product([0, 1], repeat=x.shape[1]):
            m = torch.tensor(mask, dtype=F64)
            prob = math.prod(keep if b else p for b in mask)
            xn = m * x[n] / keep if inverted else m * x[n]
            total += prob * float((y[n] - xn @ w) ** 2)
    return total / len(x)


@pytest.mark.parametrize("inverted", [True, False])
@pytest.mark.parametrize("p", [0.2, 0.5])
def test_dropout_loss_is_the_expectation_over_every_mask(p, inverted):
    """The exact expectation, enumerating all 2^d masks of each sample, to 1e-12; the penalty
    is the part that `w`'s squares carry, weighted by each feature's second moment."""
    gen = torch.Generator().manual_seed(9)
    x = torch.randn(4, 5, generator=gen, dtype=F64) * torch.tensor([0.2, 1, 2, 0.5, 3])
    y, w = torch.randn(4, generator=gen, dtype=F64), torch.randn(5, generator=gen, dtype=F64)
    got = reg.dropout_loss(x, y, w, p, inverted=inverted).item()
    assert got == pytest.approx(_exact_dropout_loss(x, y, w, p, inverted), rel=1e-12)
    mean = x @ w if inverted else (1 - p) * (x @ w)
    penalty = got - ((y - mean) ** 2).mean().item()
    assert reg.dropout_penalty(x, w, p, inverted=inverted).item() == pytest.approx(penalty)


def test_dropout_monte_carlo_agrees_within_four_standard_errors():
    """Independent masks drawn here average to the closed form within 4 standard errors (a
    Gaussian exceeds 4 sigma with probability 6e-5); the standard error shrinks as 1/sqrt(S)."""
    gen = torch.Generator().manual_seed(10)
    x = torch.randn(30, 6, generator=gen, dtype=F64)
    y, w = torch.randn(30, generator=gen, dtype=F64), torch.randn(6, generator=gen, dtype=F64)
    for p in (0.1, 0.5, 0.8):
        closed = reg.dropout_loss(x, y, w, p).item()
        mean, se = reg.dropout_loss_monte_carlo(x, y, w, p, samples=2000, generator=gen)
        assert abs(mean - closed) < 4 * se
        _, se_small = reg.dropout_loss_monte_carlo(x, y, w, p, samples=500, generator=gen)
        assert 1.5 < se_small / se < 2.7  # sqrt(4) = 2


def test_dropout_minimiser_zeroes_autograds_gradient_of_the_expected_loss():
    """autograd's gradient of `dropout_loss` vanishes at `dropout_minimiser`; at p = 0 it is
    numpy's least-squares solution."""
    gen = torch.Generator().manual_seed(11)
    x = torch.randn(40, 5, generator=gen, dtype=F64) * torch.tensor([0.1, 1, 3, 1, 0.5])
    y = torch.randn(40, generator=gen, dtype=F64)
    w = reg.dropout_minimiser(x, y, 0.4).requires_grad_(True)
    reg.dropout_loss(x, y, w, 0.4).backward()
    assert w.grad.abs().max() < 1e-12
    lstsq = np.linalg.lstsq(x.numpy(), y.numpy(), rcond=None)[0]
    np.testing.assert_allclose(reg.dropout_minimiser(x, y, 0.0).numpy(), lstsq, rtol=1e-10)


# --- Input noise -----------------------------------------------------------------------------


def test_input_noise_on_a_linear_model_is_exactly_ridge():
    """E(y - w.(x + eps))^2 = (y - w.x)^2 + sigma^2 ||w||^2, in closed form; the Tikhonov term
    is ||w||^2 and the curvature term 0."""
    gen = torch.Generator().manual_seed(12)
    x, w = torch.randn(10, 3, generator=gen, dtype=F64), torch.randn(3, generator=gen, dtype=F64)
    y = torch.randn(10, generator=gen, dtype=F64)

    def f(z):
        return z @ w

    base = ((y - x @ w) ** 2).mean().item()
    for sigma in (0.1, 0.7):
        got = reg.input_noise_loss(f, x, y, sigma, nodes=8).item()
        assert got == pytest.approx(base + sigma**2 * (w @ w).item(), rel=1e-12)
    tikhonov, curvature = reg.noise_regulariser(f, x, y)
    assert tikhonov.item() == pytest.approx((w @ w).item(), rel=1e-12)
    assert abs(curvature.item()) < 1e-14


def _sine_noisy_loss(a, x, y, sigma):
    """Closed form for f(x) = sin(a x), x in R: E sin(a(x+e)) = sin(ax) exp(-a^2 s^2/2),
    E sin^2(a(x+e)) = (1 - cos(2ax) exp(-2 a^2 s^2)) / 2."""
    mean = torch.sin(a * x) * math.exp(-((a * sigma) ** 2) / 2)
    square = (1 - torch.cos(2 * a * x) * math.exp(-2 * (a * sigma) ** 2)) / 2
    return (y**2 - 2 * y * mean + square).mean().item()


def test_input_noise_loss_and_its_remainder_on_a_sine_model():
    """Gauss-Hermite quadrature against the closed form of a sine model to 1e-12; the
    regulariser's two terms against the analytic derivative a cos(ax) and Laplacian
    -a^2 sin(ax); what they leave is O(sigma^4): halving sigma divides it by about 16."""
    a = 1.7
    gen = torch.Generator().manual_seed(13)
    x = torch.randn(20, 1, generator=gen, dtype=F64)
    y = torch.randn(20, generator=gen, dtype=F64)

    def f(z):
        return torch.sin(a * z[:, 0])

    for sigma in (0.05, 0.3):
        got = reg.input_noise_loss(f, x, y, sigma, nodes=40).item()
        assert got == pytest.approx(_sine_noisy_loss(a, x[:, 0], y, sigma), rel=1e-12)
    tikhonov, curvature = reg.noise_regulariser(f, x, y)
    s, c = torch.sin(a * x[:, 0]), torch.cos(a * x[:, 0])
    assert tikhonov.item() == pytest.approx(((a * c) ** 2).mean().item(), rel=1e-12)
    assert curvature.item() == pytest.approx((-(y - s) * (-(a**2) * s)).mean().item(), rel=1e-12)
    base = ((y - s) ** 2).mean().item()

    def remainder(sigma):
        exact = _sine_noisy_loss(a, x[:, 0], y, sigma)
        return exact - base - sigma**2 * (tikhonov + curvature).item()

    for sigma in (0.02, 0.05):
        assert 12 < remainder(2 * sigma) / remainder(sigma) < 20


# --- AdamW against Adam + L2 ----------------------------------------------------------------


def test_adamw_without_noise_decays_by_exactly_one_minus_lr_wd_per_step():
    """With no loss gradient, AdamW's weights are (1 - lr wd)^t; Adam + L2 instead takes sign
    steps of size lr (its first step is exactly lr: Adam's first update is lr g / |g|)."""
    scales = torch.zeros(3, dtype=F64)
    lr, wd = 0.01, 0.1
    adamw = reg.adam_weight_decay_run(scales, lr=lr, weight_decay=wd, steps=50, decoupled=True)
    expected = (1 - lr * wd) ** torch.arange(51, dtype=F64)
    torch.testing.assert_close(adamw[:, 0], expected, rtol=1e-12, atol=0)
    adam = reg.adam_weight_decay_run(scales, lr=lr, weight_decay=wd, steps=50, decoupled=False)
    assert adam[1, 0].item() == pytest.approx(1 - lr, rel=1e-6)
    assert adam[-1, 0] < 1 - 40 * lr * 0.9


def test_adam_l2_depends_on_wd_over_gradient_scale_and_adamw_on_neither_scale():
    """Adam is invariant to scaling its gradient: multiplying the gradient noise and wd by c
    leaves Adam + L2's path unchanged (its decay acts through wd / scale). AdamW's path does not
    change when only the gradient scale is multiplied (its decay ignores the denominator)."""
    scales = torch.logspace(-1, 1, 5, dtype=F64)
    kwargs = dict(lr=0.01, steps=200, eps=0.0)

    def run(s, wd, decoupled):
        gen = torch.Generator().manual_seed(14)
        return reg.adam_weight_decay_run(
            s, weight_decay=wd, decoupled=decoupled, generator=gen, **kwargs
        )

    torch.testing.assert_close(run(scales, 0.1, False), run(10 * scales, 1.0, False))
    torch.testing.assert_close(run(scales, 0.1, True), run(10 * scales, 0.1, True))
    assert not torch.allclose(run(scales, 0.1, False), run(10 * scales, 0.1, False))


# --- Initialisation --------------------------------------------------------------------------


def test_sparse_init_gives_each_unit_exactly_fifteen_unit_gaussian_inputs():
    """Count of nonzeros per row (Martens 2010: 15), the nonzeros' sample variance near 1
    (chi-square bound), every input position used; torch.nn.init.sparse_ is another scheme
    (a fixed count per column, not per row)."""
    w = torch.empty(400, 200, dtype=F64)
    ini.sparse_init_(w, generator=torch.Generator().manual_seed(15))
    assert ((w != 0).sum(1) == 15).all()
    values = w[w != 0]
    assert abs(values.var().item() - 1) < 5 * math.sqrt(2 / len(values))
    assert abs(values.mean().item()) < 5 / math.sqrt(len(values))
    assert ((w != 0).sum(0) > 0).all()
    theirs = torch.empty(400, 200, dtype=F64)
    torch.nn.init.sparse_(theirs, sparsity=0.5, generator=torch.Generator().manual_seed(15))
    assert ((theirs == 0).sum(0) == 200).all() and not ((theirs != 0).sum(1) == 15).all()
    with pytest.raises(ValueError, match="nonzero"):
        ini.sparse_init_(torch.empty(4, 10), nonzero=11)


@pytest.mark.parametrize("fan_in,fan_out", [(300, 100), (128, 128), (50, 400)])
def test_schemes_have_the_stated_bounds_and_variances(fan_in, fan_out):
    """Xavier: every |w| <= sqrt(6/(fan_in+fan_out)), the largest within 1 % of it, and
    torch.nn.init.xavier_uniform_ draws the same matrix; uniform: |w| <= 1/sqrt(fan_in) and
    variance 1/(3 fan_in); He: variance 2/fan_in; orthogonal: W W^T = I (the smaller side)."""
    gen = torch.Generator().manual_seed(16)
    bound = ini.xavier_bound(fan_in, fan_out)
    assert bound == pytest.approx(math.sqrt(6 / (fan_in + fan_out)))
    w = ini.init_weight_(torch.empty(fan_out, fan_in, dtype=F64), "xavier", generator=gen)
    assert w.abs().max() <= bound and w.abs().max() >= 0.99 * bound
    theirs = torch.nn.init.xavier_uniform_(
        torch.empty(fan_out, fan_in, dtype=F64), generator=torch.Generator().manual_seed(16)
    )
    torch.testing.assert_close(w, theirs)
    tolerance = 5 * math.sqrt(2 / (fan_in * fan_out))  # relative sd of a sample variance
    for scheme, variance in (("uniform", 1 / (3 * fan_in)), ("he", 2 / fan_in)):
        w = ini.init_weight_(torch.empty(fan_out, fan_in, dtype=F64), scheme, generator=gen)
        assert abs(w.pow(2).mean().item() / variance - 1) < 2 * tolerance
    assert ini.init_weight_(torch.empty(3, 3), "uniform").abs().max() <= 1 / math.sqrt(3)
    w = ini.init_weight_(torch.empty(fan_out, fan_in, dtype=F64), "orthogonal", generator=gen)
    small = w @ w.T if fan_out <= fan_in else w.T @ w
    torch.testing.assert_close(small, torch.eye(len(small), dtype=F64), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="scheme"):
        ini.init_weight_(torch.empty(2, 2), "glorot")


def test_layer_scales_match_dense_jacobians_of_a_tiny_net():
    """Forward: the net's layers applied by hand. Backward: dL/dz_j = r^T J_j with J_j the dense
    Jacobian (torch.autograd.functional.jacobian) of the rest of the net at z_j."""
    gen = torch.Generator().manual_seed(17)
    net = ini.init_mlp("xavier", "tanh", depth=4, width=5, generator=gen)
    x = torch.randn(3, 5, generator=gen, dtype=F64)
    r = torch.randn(3, 5, generator=gen, dtype=F64)
    got = ini.layer_scales(net, x, r)
    weights = [layer.weight.detach() for layer in net.linears]
    zs, h = [], x
    for w in weights:
        zs.append(h @ w.T)
        h = torch.tanh(zs[-1])
    torch.testing.assert_close(got.forward, torch.stack([z.pow(2).mean() for z in zs]))

    def rest(z, j):
        for w in weights[j + 1 :]:
            z = torch.tanh(z) @ w.T
        return z

    grads = []
    for j, z in enumerate(zs):
        per_sample = []
        for n in range(3):
            jac = torch.autograd.functional.jacobian(lambda v, j=j: rest(v, j), z[n])  # (5, 5)
            per_sample.append(r[n] @ jac)
        grads.append(torch.stack(per_sample).pow(2).mean())
    torch.testing.assert_close(got.backward, torch.stack(grads))
    assert got.input == pytest.approx(x.pow(2).mean().item())


def test_orthogonal_deep_linear_net_preserves_norms_exactly():
    """In a 40-layer linear net with orthogonal weights every layer's mean square equals the
    input's (forward) and the top gradient's (backward): 1e-12 in float64, 1e-5 in float32."""
    for dtype, tol in ((F64, 1e-12), (torch.float32, 1e-5)):
        gen = torch.Generator().manual_seed(18)
        run = ini.propagate(
            "orthogonal", "linear", depth=40, width=32, batch=16, generator=gen, dtype=dtype
        )
        torch.testing.assert_close(
            run.forward / run.input, torch.ones(40, dtype=dtype), rtol=tol, atol=0
        )
        torch.testing.assert_close(
            run.backward / run.backward[-1], torch.ones(40, dtype=dtype), rtol=tol, atol=0
        )


def test_uniform_tanh_shrinks_threefold_per_layer_and_he_relu_holds():
    """Weight variance 1/(3d): for small signals tanh is the identity, so each layer multiplies
    the mean square by about 1/3 (forward) and the gradient's by about 3 going down; He's
    variance 2/d times ReLU's halving keeps the mean square on average (ratio near 1)."""
    gen = torch.Generator().manual_seed(19)
    run = ini.propagate(
        "uniform", "tanh", depth=20, width=256, batch=64, input_scale=0.1, generator=gen
    )
    forward_ratio = run.forward[1:] / run.forward[:-1]
    assert (forward_ratio > 0.28).all() and (forward_ratio < 0.39).all(), forward_ratio
    backward_ratio = run.backward[1:] / run.backward[:-1]
    assert (backward_ratio > 2.6).all() and (backward_ratio < 3.6).all(), backward_ratio
    assert math.exp(ini.log_slope(run.forward, start=3)) == pytest.approx(1 / 3, rel=0.05)
    ratios = []
    for seed in range(4):
        he = ini.propagate(
            "he",
            "relu",
            depth=10,
            width=256,
            batch=64,
            generator=torch.Generator().manual_seed(seed),
        )
        ratios.append((he.forward[1:] / he.forward[:-1]).mean().item())
    assert 0.9 < sum(ratios) / 4 < 1.1, ratios


def test_log_slope_is_numpys_least_squares_fit():
    """numpy.polyfit of log values against the layer index, degree 1."""
    values = torch.tensor([3.0, 1.1, 0.5, 0.2, 0.05, 0.03], dtype=F64)
    for start in (0, 2):
        expected = np.polyfit(np.arange(6 - start), np.log(values[start:].numpy()), 1)[0]
        assert ini.log_slope(values, start=start) == pytest.approx(expected, rel=1e-12)
