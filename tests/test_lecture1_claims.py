"""Lecture 1's claims ("Gradient descent on a linear unit"), each tested against a computation
that the library function behind it did not do.

The first half checks the `coursekit.linear_unit` functions the lecture calls against closed
forms (the eigenvalues of a symmetric 2x2 matrix, the excess loss after k steps from an
eigendecomposition, kappa = (1 + |r|)/(1 - |r|)), independent implementations (numpy loops,
scipy's line search, autograd, Lanczos) and relations the theory guarantees, on the lecture's
data at several seeds or on small cases. No number printed by a run of the notebook is pinned
here: the notebook's check cells tie its prose to its own run. The unit tests of
`coursekit.linear_unit` are in the second half of the file.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize_scalar

from coursekit import curvature
from coursekit import linear_unit as lu
from coursekit.data import two_blobs
from coursekit.landscapes import Quadratic
from coursekit.models import LinearUnit

F64 = torch.float64
N, TOL = 200, 1e-6  # the notebook's data-set size and tolerance
SEEDS = (0, 1, 2, 3)  # the notebook's seed and three others


def _blobs(seed):
    """The lecture's kind of data: two blobs, inputs with a large mean and unequal scales."""
    data = two_blobs(N, seed=seed, mean_offset=(0.5, 6.0), scale=(0.5, 3.0), dtype=F64)
    return data.x_train, data.y_train


@pytest.fixture(scope="module")
def blobs():
    return _blobs(0)


@pytest.fixture(scope="module")
def loss(blobs):
    x, y = blobs
    return lu.loss(x, y, bias=False)


def _half_mse(x, y):
    return lambda model: 0.5 * (model(x) - y).square().mean()


# --- Independent computations, in numpy -----------------------------------------------------


def _moments(x):
    """The inputs' mean and population covariance, by numpy."""
    a = x.numpy()
    return a.mean(axis=0), np.cov(a.T, bias=True)


def _eig2(m):
    """The eigenvalues of a symmetric 2x2 matrix [[a, b], [b, c]] in closed form, ascending."""
    a, b, c = m[0, 0], m[0, 1], m[1, 1]
    middle, half_gap = (a + c) / 2, math.hypot((a - c) / 2, b)
    return middle - half_gap, middle + half_gap


def _bowl(x, y, bias=False):
    """H = X'X / P and c = X'y / P by numpy, the design matrix built here."""
    a, t = x.numpy(), y.numpy()
    if bias:
        a = np.hstack([a, np.ones((len(a), 1))])
    return a.T @ a / len(a), a.T @ t / len(a)


def _excess_after(h, c, lr, k, start=None):
    """E(w_k) - E* of gradient descent from `start` (default 0) with step `lr`, for every k in
    the array `k`, from the eigendecomposition H = sum_i lambda_i q_i q_i':
    sum_i lambda_i / 2 (1 - lr lambda_i)^(2k) (q_i'(w_0 - w*))^2."""
    lam, q = np.linalg.eigh(h)
    w0 = np.zeros(len(h)) if start is None else np.asarray(start)
    parts = (q.T @ (w0 - np.linalg.solve(h, c))) ** 2
    k = np.asarray(k)[:, None]
    return 0.5 * (lam * (1 - lr * lam) ** (2 * k) * parts).sum(axis=1)


def _steps_to_tol(h, c, tol, limit=200_000):
    """The first k at which the best fixed step 2/(lambda_min + lambda_max) brings E - E*
    below tol times its start, from the eigendecomposition's excess (no iteration)."""
    lam = np.linalg.eigvalsh(h)
    excess = _excess_after(h, c, 2 / (lam[0] + lam[-1]), np.arange(limit))
    return int(np.argmax(excess <= tol * excess[0]))


# --- The Hessian is the inputs' second-moment matrix ----------------------------------------


@pytest.mark.parametrize("bias", [False, True])
def test_hessian_equals_autograd_and_the_input_moments(blobs, bias):
    """Compared with autograd's Hessian of the half MSE (at random weights) and with the
    moments Sigma + mu mu' (and the row (mu, 1) of the bias) that numpy computes."""
    x, y = blobs
    torch.manual_seed(0)
    unit = LinearUnit(2, bias=bias).to(F64)
    by_autograd = curvature.hessian(unit, _half_mse(x, y))
    h = lu.hessian(x, bias=bias)
    torch.testing.assert_close(h, by_autograd, rtol=1e-12, atol=1e-12)
    mean, covariance = _moments(x)
    np.testing.assert_allclose(h[:2, :2].numpy(), covariance + np.outer(mean, mean), rtol=1e-12)
    if bias:  # the constant input adds a row and column (mean, 1)
        np.testing.assert_allclose(h[2].numpy(), [*mean, 1.0], rtol=1e-12)


def test_hessian_is_the_covariance_only_for_centred_inputs(blobs):
    """Compared with numpy's population covariance: equal once centred, not before (seed 000
    says "covariance" without the condition)."""
    x, _ = blobs
    _, covariance = _moments(x)
    np.testing.assert_allclose(lu.hessian(x - x.mean(0), bias=False).numpy(), covariance)
    assert np.abs(lu.hessian(x, bias=False).numpy() - covariance).max() > 1


@pytest.mark.parametrize("seed", SEEDS)
def test_spectrum_helpers_match_the_2x2_closed_form(seed):
    """Compared with the closed-form eigenvalues (a + c)/2 -+ sqrt(((a - c)/2)^2 + b^2) of
    Sigma + mu mu', built from the inputs' mean and covariance."""
    x, _ = _blobs(seed)
    mean, covariance = _moments(x)
    low, high = _eig2(covariance + np.outer(mean, mean))
    h = lu.hessian(x, bias=False)
    np.testing.assert_allclose(torch.linalg.eigvalsh(h).numpy(), [low, high], rtol=1e-10)
    assert math.isclose(lu.condition_number(h), high / low, rel_tol=1e-10)
    assert math.isclose(lu.max_stable_lr(h), 2 / high, rel_tol=1e-10)
    assert math.isclose(lu.best_lr(h), 2 / (low + high), rel_tol=1e-10)


def test_top_eigenvalue_from_hessian_vector_products(blobs, loss):
    """Lanczos on autograd's Hessian-vector products, compared with the dense eigvalsh."""
    x, y = blobs
    unit = LinearUnit(2, bias=False).to(F64)
    top, _ = curvature.top_eigenvalues(unit, _half_mse(x, y), k=1)
    assert math.isclose(top.item(), torch.linalg.eigvalsh(loss.h)[-1].item(), rel_tol=1e-8)


# --- Stability: lr < 2 / lambda_max ---------------------------------------------------------


@pytest.mark.parametrize("factor", [0.95, 1.05])
def test_excess_loss_after_k_steps_is_the_eigen_closed_form(blobs, loss, factor):
    """gradient_descent's E - E* over 60 steps at 5% under and over 2/lambda_max, compared with
    sum_i lambda_i/2 (1 - eta lambda_i)^(2k) (q_i'(w0 - w*))^2 from numpy's eigh."""
    x, y = blobs
    h, c = _bowl(x, y)
    lr = factor * lu.max_stable_lr(loss.h)
    excess = loss.excess(lu.gradient_descent(loss, lr, 60)).numpy()
    np.testing.assert_allclose(excess, _excess_after(h, c, lr, np.arange(61)), rtol=1e-8)
    if factor < 1:  # converges: every factor |1 - eta lambda_i| is below 1
        assert excess[-1] < excess[0]
    else:  # diverges: the top factor is 1.1, and 1.1^120 > 10^4
        assert excess[-1] > 1e3 * excess[0]


@pytest.mark.parametrize("factor", [0.999, 1.001])
def test_the_limit_is_sharp(loss, factor):
    """Relation: just below 2/lambda_max the top component shrinks, just above it grows
    (|1 - eta lambda_max| = 0.998 or 1.002 per step, 20,000 steps)."""
    path = lu.gradient_descent(loss, factor * lu.max_stable_lr(loss.h), 20_000)
    excess = loss.excess(path)
    if factor < 1:
        assert excess[-1] < 1e-6 * excess[0]
    else:
        assert excess[-1] > 1e6 * excess[0]


# --- Iterations grow with kappa -------------------------------------------------------------


def test_stretch_sweep_against_the_closed_forms():
    """For each stretch, kappa compared with the 2x2 closed form of the stretched blobs'
    moments, steps with the first k where the eigendecomposition's excess drops below tol;
    for large kappa the steps approach (kappa/4) ln(1/tol)."""
    stretches = [1.0, 3.0, 10.0, 30.0]
    sweep = lu.stretch_sweep(stretches, TOL, n=N, seed=0)
    assert len(sweep) == len(stretches)
    for s, point in zip(stretches, sweep):
        data = two_blobs(N, seed=0, scale=(1.0, s), dtype=F64)
        mean, covariance = _moments(data.x_train)
        low, high = _eig2(covariance + np.outer(mean, mean))
        assert math.isclose(point.kappa, high / low, rel_tol=1e-10)
        h, c = _bowl(data.x_train, data.y_train)
        assert point.steps == _steps_to_tol(h, c, TOL)
        assert point.steps == point.predicted  # two dimensions: the bound is attained
        if point.kappa > 50:
            assert math.isclose(point.steps, point.kappa / 4 * math.log(1 / TOL), rel_tol=0.01)
    assert all(a.kappa < b.kappa and a.steps < b.steps for a, b in zip(sweep, sweep[1:]))


def test_conditioning_in_three_dimensions_is_bounded_by_the_prediction():
    """Steps compared with the eigendecomposition's count on random 3-input data with a bias
    (4 dimensions); the two-dimensional prediction is only an upper bound there."""
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(50, 3, generator=gen, dtype=F64) * torch.tensor([1.0, 4.0, 0.3]) + 1.0
    y = torch.randn(50, generator=gen, dtype=F64)
    result = lu.conditioning(x, y, 1e-8, bias=True)
    h, c = _bowl(x, y, bias=True)
    lam = np.linalg.eigvalsh(h)
    assert math.isclose(result.kappa, lam[-1] / lam[0], rel_tol=1e-9)
    assert result.steps == _steps_to_tol(h, c, 1e-8)
    assert result.steps <= result.predicted


# --- Normalising the inputs -----------------------------------------------------------------


def _kappa_bounds(kappa, tol):
    """Steps k = ceil(ln(1/tol) / (4 artanh(1/kappa))) lie in [L (kappa - 1/kappa)/4,
    L kappa/4 + 1), L = ln(1/tol), since x <= artanh(x) <= x / (1 - x^2)."""
    ell = math.log(1 / tol)
    return ell * (kappa - 1 / kappa) / 4, ell * kappa / 4 + 1


@pytest.mark.parametrize("seed", SEEDS)
def test_normalisation_table_against_moments_and_the_correlation(seed):
    """kappa compared with the moments' closed forms (2x2 raw, numpy eigvalsh of the bordered
    3x3 matrix with a bias) and with (1 + |r|)/(1 - |r|), r from numpy's corrcoef, standardised
    with or without a bias; steps with the eigendecomposition's count; the steps' ratio with
    the bound the kappa ratio gives."""
    x, y = _blobs(seed)
    table = lu.normalisation_table(x, y, TOL)
    assert set(table) == {(n, b) for n in ("raw", "standardised") for b in (False, True)}
    mean, covariance = _moments(x)
    moments = covariance + np.outer(mean, mean)
    low, high = _eig2(moments)
    assert math.isclose(table["raw", False].kappa, high / low, rel_tol=1e-10)
    bordered = np.block([[moments, mean[:, None]], [mean[None, :], np.ones((1, 1))]])
    lam = np.linalg.eigvalsh(bordered)
    assert math.isclose(table["raw", True].kappa, lam[-1] / lam[0], rel_tol=1e-9)
    assert table["raw", True].kappa >= table["raw", False].kappa  # interlacing
    r = abs(np.corrcoef(x.numpy().T)[0, 1])
    for bias in (False, True):
        assert math.isclose(table["standardised", bias].kappa, (1 + r) / (1 - r), rel_tol=1e-10)
    standardised = (x - x.mean(0)) / x.std(0, correction=0)
    for (name, bias), row in table.items():
        inputs = x if name == "raw" else standardised
        assert row.steps == _steps_to_tol(*_bowl(inputs, y, bias), TOL), (name, bias)
        assert row.steps <= row.predicted
    raw, std = table["raw", False], table["standardised", False]
    raw_low, raw_high = _kappa_bounds(high / low, TOL)
    std_low, std_high = _kappa_bounds((1 + r) / (1 - r), TOL)
    assert raw_low / std_high <= raw.steps / std.steps <= raw_high / std_low


# --- The optimal step and the zig-zag -------------------------------------------------------


def test_optimal_step_is_the_exact_line_minimiser(loss):
    """alpha* = |g|^2 / g'Hg compared with scipy's line search (Brent) and the Rayleigh
    bounds [1/lambda_max, 1/lambda_min]; the loss along the line with the exact parabola."""
    w0 = torch.zeros(2, dtype=F64)
    g = loss.grad(w0)
    alpha = lu.optimal_step(loss.h, g)
    line = minimize_scalar(lambda a: loss.value(w0 - a * g).item(), bracket=(0.0, alpha))
    assert math.isclose(line.x, alpha, rel_tol=1e-7)
    values = torch.linalg.eigvalsh(loss.h)
    assert 1 / values[-1] <= alpha <= 1 / values[0]
    for a in (0.0, 0.3 * alpha, alpha, 2.0 * alpha):
        parabola = loss.value(w0) - a * (g @ g) + 0.5 * a**2 * (g @ loss.h @ g)
        assert math.isclose(loss.value(w0 - a * g).item(), parabola.item(), rel_tol=1e-12)


def test_optimal_step_on_random_quadratics_beats_every_other_step():
    """Compared with scipy's line search and with 31 other step lengths, in 2, 5, 10 dims."""
    gen = torch.Generator().manual_seed(1)
    for d in (2, 5, 10):
        a = torch.randn(d, d, generator=gen, dtype=F64)
        bowl = Quadratic(a @ a.T + 0.1 * torch.eye(d, dtype=F64), torch.randn(d, dtype=F64))
        w = torch.randn(d, generator=gen, dtype=F64)
        g = bowl.grad(w)
        alpha = lu.optimal_step(bowl.h, g)
        along = lambda s, bowl=bowl, w=w, g=g: bowl.value(w - s * g).item()  # noqa: E731
        line = minimize_scalar(along, bracket=(0.0, alpha))
        assert math.isclose(line.x, alpha, rel_tol=1e-6)
        for other in torch.linspace(0, 3 * alpha, 31).tolist():
            assert bowl.value(w - alpha * g) <= bowl.value(w - other * g) + 1e-15


@pytest.mark.parametrize("seed", SEEDS)
def test_steepest_descent_against_the_best_fixed_step(seed):
    """Successive gradients orthogonal (cosine 0); steepest descent's E - E* below the
    Kantorovich bound rho^(2k) (E0 - E*) at every k, where the best fixed step's equals
    rho^(2k) (E0 - E*) exactly in two dimensions, rho = (kappa - 1)/(kappa + 1) from the 2x2
    closed form; from w = 0 it is ahead of the fixed step by over 20 times after 10 steps."""
    x, y = _blobs(seed)
    loss = lu.loss(x, y, bias=False)
    mean, covariance = _moments(x)
    low, high = _eig2(covariance + np.outer(mean, mean))
    rho = (high / low - 1) / (high / low + 1)
    path = lu.steepest_descent(loss, 40)
    g = loss.grad(path[:21])
    assert torch.nn.functional.cosine_similarity(g[1:], g[:-1], dim=1).abs().max() < 1e-9
    zigzag = loss.excess(path).numpy()
    fixed = loss.excess(lu.gradient_descent(loss, lu.best_lr(loss.h), 40)).numpy()
    power = rho ** (2 * np.arange(41))
    np.testing.assert_allclose(fixed, power * fixed[0], rtol=1e-8)
    assert np.all(zigzag <= power * zigzag[0] * (1 + 1e-9))
    assert zigzag[10] < 0.05 * fixed[10]


def test_steepest_descent_worst_case_rate_is_rho_squared(loss):
    """Exercise 3: from w* + q_min/l_min + q_max/l_max every step shrinks E - E* by exactly
    rho^2, rho from the 2x2 closed form of H's eigenvalues."""
    values, vectors = torch.linalg.eigh(loss.h)
    start = loss.minimizer() + vectors[:, 0] / values[0] + vectors[:, 1] / values[1]
    excess = loss.excess(lu.steepest_descent(loss, 10, start=start))
    low, high = _eig2(loss.h.numpy())
    rho = (high - low) / (high + low)
    torch.testing.assert_close(excess[1:] / excess[:-1], torch.full((10,), rho**2, dtype=F64))


# --- Batch vs stochastic gradient descent ---------------------------------------------------


def test_batch_vs_stochastic_is_the_two_loops_written_out():
    """Compared, on a small case, with numpy loops: batch GD with 2/(lambda_min + lambda_max)
    from numpy's eigvalsh, SGD over torch.randperm orders from a generator seeded with `seed`
    (the order `stochastic_gradient_descent` documents), E - E* from lstsq's minimiser, relative to the start."""
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(7, 2, generator=gen, dtype=F64) + torch.tensor([0.5, -1.0], dtype=F64)
    y = torch.randn(7, generator=gen, dtype=F64)
    copies, lr, epochs, seed = 3, 0.05, 2, 4
    run = lu.batch_vs_stochastic(x, y, copies=copies, lr=lr, epochs=epochs, seed=seed)
    a, t = np.tile(x.numpy(), (copies, 1)), np.tile(y.numpy(), copies)
    star = np.linalg.lstsq(a, t, rcond=None)[0]

    def excess(w):
        return 0.5 * np.mean((a @ w - t) ** 2) - 0.5 * np.mean((a @ star - t) ** 2)

    lam = np.linalg.eigvalsh(a.T @ a / len(a))
    w, batch = np.zeros(2), [excess(np.zeros(2))]
    for _ in range(epochs):
        w = w - 2 / (lam[0] + lam[-1]) * a.T @ (a @ w - t) / len(a)
        batch.append(excess(w))
    order = torch.Generator().manual_seed(seed)
    w, stochastic = np.zeros(2), [excess(np.zeros(2))]
    for _ in range(epochs):
        for p in torch.randperm(len(a), generator=order).tolist():
            w = w + lr * (t[p] - a[p] @ w) * a[p]
            stochastic.append(excess(w))
    assert run.samples_per_pass == 21
    np.testing.assert_allclose(run.batch.numpy(), np.array(batch) / batch[0], rtol=1e-9)
    np.testing.assert_allclose(run.stochastic.numpy(), np.array(stochastic) / batch[0], rtol=1e-8)
    for k, first in [(1, 1), (2, 22), (-1, 22)]:  # passes of 21 samples after the start
        expected = np.array(stochastic[first : first + 21]) / batch[0]
        np.testing.assert_allclose(run.sgd_pass(k).numpy(), expected, rtol=1e-8)
    level = float(np.median(stochastic)) / batch[0]
    first = next(i for i, e in enumerate(stochastic) if e / batch[0] <= level)
    assert run.samples_to(level)[0] == first
    assert run.samples_to(1e-30) == (None, None)


def test_repeating_the_data_changes_neither_the_loss_nor_batch_gd(blobs):
    """H and c of the set repeated 10 times compared with those of the set once."""
    x, y = blobs
    once = lu.loss(lu.standardize(x), y, bias=False)
    many = lu.loss(lu.standardize(x).repeat(10, 1), y.repeat(10), bias=False)
    torch.testing.assert_close(once.h, many.h)
    torch.testing.assert_close(once.c, many.c)


@pytest.mark.parametrize("seed", SEEDS)
def test_sgd_on_redundant_data_is_fast_early_and_never_settles(seed):
    """The lecture's relations at four seeds, and batch GD against its closed form: on
    standardised inputs rho = |r| (r from numpy's corrcoef), so E - E* shrinks by r^2 per
    pass. SGD reaches 1% in under a fifth of a pass; over its last pass its mean level is
    no lower than half its second pass's, its spread at least half its level, batch GD's end
    at most a fifth of that level; halving or doubling the step moves that level by 1.5x."""
    x, y = _blobs(seed)
    x_std = lu.standardize(x)
    run = lu.batch_vs_stochastic(x_std, y, copies=10, lr=0.01, epochs=10, seed=seed)
    r = abs(np.corrcoef(x.numpy().T)[0, 1])
    np.testing.assert_allclose(run.batch.numpy(), r ** (2 * np.arange(11)), rtol=1e-8)
    sgd_samples, batch_samples = run.samples_to(0.01)
    assert sgd_samples < run.samples_per_pass / 5 and batch_samples >= run.samples_per_pass
    last = run.sgd_pass(-1)
    assert last.mean() > 0.5 * run.sgd_pass(2).mean()
    assert last.std() > 0.5 * last.mean()
    assert run.batch[-1] < 0.2 * last.mean()
    for factor in (0.5, 2.0):
        other = lu.batch_vs_stochastic(x_std, y, copies=10, lr=factor * 0.01, epochs=10, seed=seed)
        ratio = (other.sgd_pass(-1).mean() / last.mean()).item()
        assert ratio > 1.5 if factor > 1 else ratio < 1 / 1.5


# === Unit tests of coursekit.linear_unit =====================================================


def _data(p=40, d=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(p, d, generator=gen, dtype=F64) * torch.tensor([1.0, 3.0, 0.2])[:d] + 2.0
    y = torch.randn(p, generator=gen, dtype=F64)
    return x, y


def test_design_matrix_and_hessian_closed_forms():
    """Compared with the design matrix and (1/P) sum x x' written out by hand for P = 2."""
    x = torch.tensor([[1.0, 2.0], [3.0, -1.0]], dtype=F64)
    torch.testing.assert_close(
        lu.design_matrix(x), torch.tensor([[1.0, 2.0, 1.0], [3.0, -1.0, 1.0]], dtype=F64)
    )
    # (1/2) * ([1,2,1]'[1,2,1] + [3,-1,1]'[3,-1,1])
    expected = torch.tensor([[5.0, -0.5, 2.0], [-0.5, 2.5, 0.5], [2.0, 0.5, 1.0]], dtype=F64)
    torch.testing.assert_close(lu.hessian(x), expected)
    torch.testing.assert_close(lu.hessian(x, bias=False), expected[:2, :2])


@pytest.mark.parametrize("bias", [False, True])
def test_loss_is_the_half_mean_squared_error(bias):
    """Compared with the half MSE computed directly, autograd's gradient and lstsq's
    minimiser."""
    x, y = _data()
    bowl = lu.loss(x, y, bias=bias)
    design = lu.design_matrix(x, bias)
    gen = torch.Generator().manual_seed(5)
    thetas = torch.randn(7, design.shape[1], generator=gen, dtype=F64)
    direct = 0.5 * ((thetas @ design.T - y) ** 2).mean(dim=1)
    torch.testing.assert_close(bowl.value(thetas), direct)
    theta = thetas[0].clone().requires_grad_()
    (0.5 * ((design @ theta - y) ** 2).mean()).backward()
    torch.testing.assert_close(bowl.grad(thetas[0]), theta.grad)
    star = torch.linalg.lstsq(design, y[:, None]).solution[:, 0]
    torch.testing.assert_close(bowl.minimizer(), star)
    assert math.isclose(bowl.min_value(), bowl.value(star).item(), rel_tol=1e-12)
    torch.testing.assert_close(bowl.excess(thetas), bowl.value(thetas) - bowl.min_value())
    assert bowl.value(torch.zeros(2, 5, design.shape[1], dtype=F64)).shape == (2, 5)  # a grid


def test_spectrum_helpers_closed_forms():
    """Compared with the closed forms on diag(1, 4): kappa 4, 2/lambda_max = 1/2, best step
    2/5, rho 3/5, and step counts worked out by hand."""
    h = torch.diag(torch.tensor([1.0, 4.0], dtype=F64))
    assert lu.condition_number(h) == 4.0
    assert lu.max_stable_lr(h) == 0.5
    assert lu.best_lr(h) == 2 / 5
    assert lu.convergence_rate(4.0) == 3 / 5
    assert lu.predicted_iterations(1.0, 1e-6) == 1
    assert lu.predicted_iterations(3.0, 1e-6) == 10  # rho = 1/2: ceil(ln 1e6 / (2 ln 2))
    assert lu.predicted_iterations(3.0, 0.25) == 1  # exactly one step: rho^2 = 1/4
    assert lu.condition_number(torch.diag(torch.tensor([0.0, 1.0], dtype=F64))) == math.inf
    assert lu.optimal_step(h, torch.tensor([1.0, 0.0], dtype=F64)) == 1.0  # 1 / lambda
    assert lu.optimal_step(h, torch.tensor([1.0, 1.0], dtype=F64)) == 2 / 5


@pytest.mark.parametrize("kappa", [1.0, 2.0, 10.0, 100.0, 1000.0])
def test_iterations_in_two_dimensions_equal_the_prediction(kappa):
    """Compared with ceil(ln tol / 2 ln rho) on diag(1, kappa), where both error components
    start equal and shrink by exactly rho."""
    bowl = Quadratic(
        torch.diag(torch.tensor([1.0, kappa], dtype=F64)), torch.tensor([1.0, kappa], dtype=F64)
    )  # minimum at (1, 1); from 0 both components start at 1
    steps = lu.iterations_to_tolerance(bowl, lu.best_lr(bowl.h), 1e-8)
    assert steps == lu.predicted_iterations(kappa, 1e-8)
    assert lu.iterations_to_tolerance(bowl, 1.01 * lu.max_stable_lr(bowl.h), 1e-8) is None
    assert lu.iterations_to_tolerance(bowl, 0.1, 1e-8, start=bowl.minimizer()) == 0


def test_gradient_descent_steps_and_stability_boundary():
    """Compared with the powers (1 - lr lambda_i)^k on diag(1, 4), and with the sign flip
    (-1)^k at lr = 2/lambda_max exactly."""
    bowl = Quadratic(torch.diag(torch.tensor([1.0, 4.0], dtype=F64)), torch.zeros(2, dtype=F64))
    path = lu.gradient_descent(bowl, 0.1, 3, start=torch.tensor([1.0, 1.0], dtype=F64))
    expected = torch.tensor([[0.9**k, 0.6**k] for k in range(4)], dtype=F64)  # 1 - lr * lambda
    torch.testing.assert_close(path, expected)
    at_limit = lu.gradient_descent(bowl, 0.5, 4, start=torch.tensor([0.0, 1.0], dtype=F64))
    torch.testing.assert_close(at_limit[:, 1], torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0]).double())


def test_gradient_descent_on_data_is_the_loop_written_out():
    """Assignment 1's reference, compared with theta after k steps from 0 written out
    (by hand for one step, as a loop for 25); bias last."""
    x, y = torch.tensor([[1.0], [3.0]], dtype=F64), torch.tensor([1.0, 1.0], dtype=F64)
    torch.testing.assert_close(
        lu.gradient_descent_on_data(x, y, 0.1, 1), torch.tensor([0.2, 0.1], dtype=F64)
    )
    x, y = _data()
    design = lu.design_matrix(x)
    theta = torch.zeros(4, dtype=F64)
    for _ in range(25):
        theta = theta - 0.01 * design.T @ (design @ theta - y) / len(x)
    torch.testing.assert_close(lu.gradient_descent_on_data(x, y, 0.01, 25), theta)
    assert lu.gradient_descent_on_data(x, y, 0.01, 3, bias=False).shape == (3,)


def test_standardize_gives_zero_mean_unit_population_variance():
    """Compared with zero mean, unit population variance and torch's corrcoef as the
    standardised Hessian; a constant column stays 0."""
    x, _ = _data()
    x = torch.cat([x, torch.full((len(x), 1), 7.0, dtype=F64)], dim=1)  # a constant column
    z = lu.standardize(x)
    torch.testing.assert_close(z.mean(0), torch.zeros(4, dtype=F64))
    torch.testing.assert_close(z[:, :3].var(0, correction=0), torch.ones(3, dtype=F64))
    assert torch.all(z[:, 3] == 0)
    torch.testing.assert_close(lu.hessian(z[:, :3], bias=False), torch.corrcoef(x[:, :3].T))


def test_stochastic_gradient_descent_is_the_per_sample_update_in_a_seeded_order():
    """Compared with the per-sample loop over torch.randperm orders seeded with `seed`, and
    with one batch step of P times a tiny step."""
    x, y = _data(p=6, d=2)
    path = lu.stochastic_gradient_descent(x, y, 0.05, 2, seed=3)
    assert path.shape == (13, 3)
    design = lu.design_matrix(x)
    gen = torch.Generator().manual_seed(3)
    theta = torch.zeros(3, dtype=F64)
    for _ in range(2):
        for p in torch.randperm(6, generator=gen).tolist():
            theta = theta - 0.05 * (design[p] @ theta - y[p]) * design[p]
    torch.testing.assert_close(path[-1], theta)
    # one pass with a tiny step, summed, is one batch step of P times that step
    tiny = lu.stochastic_gradient_descent(x, y, 1e-8, 1, seed=0)[-1]
    batch = lu.gradient_descent(lu.loss(x, y), 6e-8, 1)[-1]
    torch.testing.assert_close(tiny, batch, rtol=1e-6, atol=1e-14)


def test_surface_and_first_below():
    """Compared with the loss's own value and minimiser, and first_below with indices
    read off by hand."""
    x, y = _data(d=2)
    bowl = lu.loss(x, y, bias=False)
    surface = bowl.surface()
    point = torch.tensor([0.3, -0.2], dtype=F64)
    assert surface.value(point) == bowl.value(point)
    torch.testing.assert_close(torch.tensor(surface.minima[0], dtype=F64), bowl.minimizer())
    with pytest.raises(ValueError, match="Invalid dim"):
        lu.loss(x, y).surface()
    assert lu.first_below(torch.tensor([3.0, 2.0, 1.0, 0.5]), 1.0) == 2
    assert lu.first_below(torch.tensor([3.0, 2.0]), 1.0) is None


def _redundant_run():
    x, y = _data(p=5, d=2)
    return lu.batch_vs_stochastic(x, y, copies=2, lr=0.01, epochs=2)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: lu.hessian(torch.ones(3, dtype=F64)), "x"),
        (lambda: lu.hessian(torch.ones(3, 2, dtype=torch.long)), "x"),
        (lambda: lu.loss(torch.ones(3, 2), torch.ones(4)), "y"),
        (lambda: lu.condition_number(torch.ones(2, 3)), "h"),
        (lambda: lu.condition_number(torch.tensor([[1.0, 2.0], [0.0, 1.0]])), "h"),
        (lambda: lu.max_stable_lr(-torch.eye(2)), "h"),
        (lambda: lu.optimal_step(torch.eye(2), torch.ones(3)), "g"),
        (lambda: lu.optimal_step(torch.eye(2), torch.zeros(2)), "g"),
        (lambda: lu.convergence_rate(0.5), "kappa"),
        (lambda: lu.predicted_iterations(2.0, 1.5), "tol"),
        (lambda: lu.gradient_descent(Quadratic(torch.eye(2), torch.ones(2)), -1.0, 3), "lr"),
        (lambda: lu.gradient_descent(Quadratic(torch.eye(2), torch.ones(2)), 0.1, -1), "steps"),
        (
            lambda: lu.gradient_descent(
                Quadratic(torch.eye(2), torch.ones(2)), 0.1, 1, start=torch.ones(3)
            ),
            "start",
        ),
        (lambda: Quadratic(torch.eye(2), torch.ones(3)), "c"),
        (
            lambda: lu.stochastic_gradient_descent(torch.ones(3, 2), torch.ones(3), 0.1, -2),
            "epochs",
        ),
        (lambda: lu.first_below(torch.ones(2, 2), 0.0), "values"),
        (lambda: lu.stretch_sweep([1.0, -2.0], 1e-3), "stretches"),
        (
            lambda: lu.batch_vs_stochastic(
                torch.ones(3, 2), torch.ones(3), copies=0, lr=0.1, epochs=1
            ),
            "copies",
        ),
        (
            lambda: lu.batch_vs_stochastic(
                torch.ones(3, 2), torch.ones(2), copies=1, lr=0.1, epochs=1
            ),
            "y",
        ),
        (lambda: _redundant_run().samples_to(0.0), "fraction"),
        (lambda: _redundant_run().sgd_pass(0), "k"),
        (lambda: _redundant_run().sgd_pass(3), "k"),
    ],
)
def test_bad_arguments_raise_value_errors_that_name_them(call, name):
    """Compared with the parameter's name in the ValueError's message."""
    with pytest.raises(ValueError, match=f"Invalid {name}:"):
        call()
