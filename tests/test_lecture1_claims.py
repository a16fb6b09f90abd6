"""The claims lecture 1 ("Gradient descent on a linear unit") makes, each asserted with numbers.

Every experiment is rebuilt here as the notebook builds it, at its default parameters, with the
same coursekit calls; the numbers the slides state are checked to the digits they print.
The unit tests of `coursekit.linear_unit` itself are in the second half of the file.
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy.optimize import minimize_scalar

from coursekit import curvature
from coursekit import linear_unit as lu
from coursekit.data import two_blobs
from coursekit.models import LinearUnit

F64 = torch.float64
SEED, N, TOL, STEPS = 0, 200, 1e-6, 60  # the notebook's parameters
COPIES, SGD_LR, EPOCHS = 10, 0.01, 10


@pytest.fixture(scope="module")
def blobs():
    """The lecture's data: two blobs, inputs with a large mean and unequal scales."""
    data = two_blobs(N, seed=SEED, mean_offset=(0.5, 6.0), scale=(0.5, 3.0), dtype=F64)
    return data.x_train, data.y_train


@pytest.fixture(scope="module")
def loss(blobs):
    x, y = blobs
    return lu.Quadratic.from_data(x, y, bias=False)


def _half_mse(x, y):
    return lambda model: 0.5 * (model(x) - y).square().mean()


# --- The Hessian is the inputs' second-moment matrix ----------------------------------------


@pytest.mark.parametrize("bias", [False, True])
def test_hessian_equals_autograd_and_the_input_moments(blobs, bias):
    """Is autograd's Hessian of the loss (at random weights) the matrix (1/P) sum x x'?"""
    x, y = blobs
    torch.manual_seed(SEED)
    unit = LinearUnit(2, bias=bias).to(F64)
    by_autograd = curvature.hessian(unit, _half_mse(x, y))
    torch.testing.assert_close(lu.hessian(x, bias=bias), by_autograd, rtol=1e-12, atol=1e-12)
    mean = x.mean(0)
    covariance = torch.cov(x.T, correction=0)
    h = lu.hessian(x, bias=bias)
    torch.testing.assert_close(h[:2, :2], covariance + torch.outer(mean, mean))
    if bias:  # the constant input adds a row and column (mean, 1)
        torch.testing.assert_close(h[2], torch.cat([mean, torch.ones(1, dtype=F64)]))


def test_hessian_is_the_covariance_for_centred_inputs(blobs):
    x, _ = blobs
    centred = x - x.mean(0)
    torch.testing.assert_close(lu.hessian(centred, bias=False), torch.cov(x.T, correction=0))


def test_eigenvalues_and_condition_number_as_stated(loss):
    """Slide: eigenvalues 0.4271 and 54.58, kappa = 127.8 (128); Lanczos finds lambda_max."""
    values = torch.linalg.eigvalsh(loss.h)
    assert round(values[0].item(), 4) == 0.4271 and round(values[1].item(), 2) == 54.58
    assert round(lu.condition_number(loss.h), 1) == 127.8


def test_top_eigenvalue_from_hessian_vector_products(blobs, loss):
    x, y = blobs
    unit = LinearUnit(2, bias=False).to(F64)
    top, _ = curvature.top_eigenvalues(unit, _half_mse(x, y), k=1)
    assert math.isclose(top.item(), torch.linalg.eigvalsh(loss.h)[-1].item(), rel_tol=1e-8)


# --- Stability: lr < 2 / lambda_max ---------------------------------------------------------


def test_five_percent_under_the_limit_converges_and_over_it_diverges(loss):
    """Slide: E - E* goes from 0.181 to 0.0168 (under) and to 7.41e3 (over) in 60 steps."""
    limit = lu.max_stable_lr(loss.h)
    assert math.isclose(limit, 2 / torch.linalg.eigvalsh(loss.h)[-1].item())
    under = loss.excess(lu.gradient_descent(loss, 0.95 * limit, STEPS))
    over = loss.excess(lu.gradient_descent(loss, 1.05 * limit, STEPS))
    assert f"{under[0]:.3g}" == "0.181" and f"{under[-1]:.3g}" == "0.0168"
    assert f"{over[-1]:.3g}" == "7.41e+03"
    long_run = loss.excess(lu.gradient_descent(loss, 0.95 * limit, 3000))
    assert long_run[-1] < 1e-12 * long_run[0]  # it does converge, slowly


@pytest.mark.parametrize("factor", [0.999, 1.001])
def test_the_limit_is_sharp(loss, factor):
    """Just below 2/lambda_max the top component shrinks, just above it grows, for ever."""
    path = lu.gradient_descent(loss, factor * lu.max_stable_lr(loss.h), 20_000)
    excess = loss.excess(path)
    if factor < 1:
        assert excess[-1] < 1e-6 * excess[0]
    else:
        assert excess[-1] > 1e6 * excess[0]


# --- Iterations grow with kappa -------------------------------------------------------------


def test_iterations_grow_with_kappa_exactly_as_predicted():
    """Slide's sweep: stretch x2 by s; measured steps equal ceil(ln tol / 2 ln rho), rising."""
    kappas, measured = [], []
    for s in torch.logspace(0, 1.5, 10).tolist():
        data = two_blobs(N, seed=SEED, scale=(1.0, s), dtype=F64)
        bowl = lu.Quadratic.from_data(data.x_train, data.y_train, bias=False)
        kappas.append(lu.condition_number(bowl.h))
        measured.append(lu.iterations_to_tolerance(bowl, lu.best_lr(bowl.h), TOL))
    assert measured == [lu.predicted_iterations(k, TOL) for k in kappas]
    assert all(a < b for a, b in zip(kappas, kappas[1:]))
    assert all(a < b for a, b in zip(measured, measured[1:]))
    assert (measured[0], measured[-1]) == (9, 4054)
    for k, m in zip(kappas, measured):  # the large-kappa approximation (kappa/4) ln(1/tol)
        if k > 50:
            assert math.isclose(m, k / 4 * math.log(1 / TOL), rel_tol=0.01)


# --- Normalising the inputs -----------------------------------------------------------------


@pytest.mark.parametrize(
    "bias, kappa_raw, steps_raw, kappa_factor, steps_factor",
    [(False, 127.78, 442, 48, 49), (True, 167.61, 568, 63, 63)],
)
def test_normalising_cuts_kappa_and_steps_by_the_stated_factors(
    blobs, bias, kappa_raw, steps_raw, kappa_factor, steps_factor
):
    """Slide's table: kappa 127.78 -> 2.65, steps 442 -> 9 (48-fold and 49-fold); with a bias
    167.61 -> 2.65 and 568 -> 9 (63-fold both)."""
    x, y = blobs
    rows = {}
    for name, inputs in [("raw", x), ("std", lu.standardize(x))]:
        bowl = lu.Quadratic.from_data(inputs, y, bias=bias)
        rows[name] = (
            lu.condition_number(bowl.h),
            lu.iterations_to_tolerance(bowl, lu.best_lr(bowl.h), TOL),
        )
    (k_raw, m_raw), (k_std, m_std) = rows["raw"], rows["std"]
    assert (round(k_raw, 2), m_raw) == (kappa_raw, steps_raw)
    assert (round(k_std, 2), m_std) == (2.65, 9)
    assert (round(k_raw / k_std), round(m_raw / m_std)) == (kappa_factor, steps_factor)


def test_standardised_kappa_comes_from_the_correlation_alone(blobs):
    """H_std = [[1, r], [r, 1]]: eigenvalues 1 -+ r, kappa = (1 + r)/(1 - r) = 2.651."""
    x, _ = blobs
    r = torch.corrcoef(x.T)[0, 1].item()
    h = lu.hessian(lu.standardize(x), bias=False)
    torch.testing.assert_close(h, torch.tensor([[1.0, r], [r, 1.0]], dtype=F64))
    assert math.isclose(lu.condition_number(h), (1 + r) / (1 - r), rel_tol=1e-12)
    assert f"{(1 + r) / (1 - r):.3f}" == "2.651" and f"{r:.3f}" == "0.452"


# --- The optimal step and the zig-zag -------------------------------------------------------


def test_optimal_step_is_the_exact_line_minimiser(loss):
    """Slide: alpha* = 0.0185031237, and a 1-D search (Brent) finds the same to 1e-7."""
    w0 = torch.zeros(2, dtype=F64)
    g = loss.grad(w0)
    alpha = lu.optimal_step(loss.h, g)
    line = minimize_scalar(lambda a: loss.value(w0 - a * g).item(), bracket=(0.0, alpha))
    assert math.isclose(line.x, alpha, rel_tol=1e-7)
    assert f"{alpha:.10f}" == "0.0185031237"
    values = torch.linalg.eigvalsh(loss.h)
    assert 1 / values[-1] <= alpha <= 1 / values[0]
    # the loss along the line is the parabola E - a |g|^2 + a^2 g'Hg / 2, exactly
    for a in (0.0, 0.3 * alpha, alpha, 2.0 * alpha):
        parabola = loss.value(w0) - a * (g @ g) + 0.5 * a**2 * (g @ loss.h @ g)
        assert math.isclose(loss.value(w0 - a * g).item(), parabola.item(), rel_tol=1e-12)


def test_optimal_step_on_random_quadratics_beats_every_other_step():
    gen = torch.Generator().manual_seed(1)
    for d in (2, 5, 10):
        a = torch.randn(d, d, generator=gen, dtype=F64)
        bowl = lu.Quadratic(a @ a.T + 0.1 * torch.eye(d, dtype=F64), torch.randn(d, dtype=F64))
        w = torch.randn(d, generator=gen, dtype=F64)
        g = bowl.grad(w)
        alpha = lu.optimal_step(bowl.h, g)
        along = lambda s, bowl=bowl, w=w, g=g: bowl.value(w - s * g).item()  # noqa: E731
        line = minimize_scalar(along, bracket=(0.0, alpha))
        assert math.isclose(line.x, alpha, rel_tol=1e-6)
        for other in torch.linspace(0, 3 * alpha, 31).tolist():
            assert bowl.value(w - alpha * g) <= bowl.value(w - other * g) + 1e-15


def test_steepest_descent_turns_at_right_angles(loss):
    """Slide: |cos(g_k+1, g_k)| < 1e-12 over 20 steps; after 10 steps E - E* is 4.66e-4,
    against 0.133 for the best fixed step."""
    path = lu.steepest_descent(loss, STEPS)
    g = loss.grad(path[:21])
    cosines = torch.nn.functional.cosine_similarity(g[1:], g[:-1], dim=1)
    assert cosines.abs().max() < 1e-12
    fixed = lu.gradient_descent(loss, lu.best_lr(loss.h), STEPS)
    assert f"{loss.excess(path[10]):.2e}" == "4.66e-04"
    assert f"{loss.excess(fixed[10]):.2e}" == "1.33e-01"


def test_steepest_descent_worst_case_rate_is_rho_squared(loss):
    """Exercise 3: from w* + q_min/l_min + q_max/l_max every step shrinks E - E* by rho^2."""
    values, vectors = torch.linalg.eigh(loss.h)
    start = loss.minimizer() + vectors[:, 0] / values[0] + vectors[:, 1] / values[1]
    excess = loss.excess(lu.steepest_descent(loss, 10, start=start))
    rho = lu.convergence_rate(lu.condition_number(loss.h))
    torch.testing.assert_close(excess[1:] / excess[:-1], torch.full((10,), rho**2, dtype=F64))


# --- Batch vs stochastic gradient descent ---------------------------------------------------


@pytest.fixture(scope="module")
def redundant(blobs):
    x, y = blobs
    big_x, big_y = lu.standardize(x).repeat(COPIES, 1), y.repeat(COPIES)
    big = lu.Quadratic.from_data(big_x, big_y, bias=False)
    batch = big.excess(lu.gradient_descent(big, lu.best_lr(big.h), EPOCHS))
    stochastic = big.excess(lu.sgd(big_x, big_y, SGD_LR, EPOCHS, bias=False, seed=SEED))
    return len(big_x), batch, stochastic


def test_repeating_the_data_changes_neither_the_loss_nor_batch_gd(blobs):
    x, y = blobs
    once = lu.Quadratic.from_data(lu.standardize(x), y, bias=False)
    big_x = lu.standardize(x).repeat(COPIES, 1)
    many = lu.Quadratic.from_data(big_x, y.repeat(COPIES), bias=False)
    torch.testing.assert_close(once.h, many.h)
    torch.testing.assert_close(once.c, many.c)


def test_sgd_needs_far_fewer_samples_on_redundant_data(redundant):
    """Slide: to reach 1% of the starting excess, SGD needs 163 samples, batch GD 4500."""
    per_pass, batch, stochastic = redundant
    level = 0.01 * batch[0].item()
    sgd_samples = lu.first_below(stochastic, level)
    batch_samples = lu.first_below(batch, level) * per_pass
    assert (per_pass, sgd_samples, batch_samples) == (1500, 163, 4500)
    assert sgd_samples < per_pass  # before batch GD has taken a single step


def test_sgd_fluctuates_near_the_minimum_while_batch_gd_converges(redundant):
    """Slide: over its last pass SGD's excess is (3.9e-3 +- 3.5e-3) x start; batch GD's after
    10 passes is 1.3e-7 x start, below every point of SGD's last pass."""
    per_pass, batch, stochastic = redundant
    last = stochastic[-per_pass:] / batch[0]
    assert f"{last.mean():.1e}" == "3.9e-03" and f"{last.std():.1e}" == "3.5e-03"
    assert f"{batch[-1] / batch[0]:.1e}" == "1.3e-07"
    assert (batch[-1] / batch[0]) < last.min()
    assert last.std() > 0.5 * last.mean()  # not settling: the spread is as large as the level


# === Unit tests of coursekit.linear_unit =====================================================


def _data(p=40, d=3, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(p, d, generator=gen, dtype=F64) * torch.tensor([1.0, 3.0, 0.2])[:d] + 2.0
    y = torch.randn(p, generator=gen, dtype=F64)
    return x, y


def test_design_matrix_and_hessian_closed_forms():
    x = torch.tensor([[1.0, 2.0], [3.0, -1.0]], dtype=F64)
    torch.testing.assert_close(
        lu.design_matrix(x), torch.tensor([[1.0, 2.0, 1.0], [3.0, -1.0, 1.0]], dtype=F64)
    )
    # (1/2) * ([1,2,1]'[1,2,1] + [3,-1,1]'[3,-1,1])
    expected = torch.tensor([[5.0, -0.5, 2.0], [-0.5, 2.5, 0.5], [2.0, 0.5, 1.0]], dtype=F64)
    torch.testing.assert_close(lu.hessian(x), expected)
    torch.testing.assert_close(lu.hessian(x, bias=False), expected[:2, :2])


@pytest.mark.parametrize("bias", [False, True])
def test_quadratic_from_data_is_the_half_mean_squared_error(bias):
    x, y = _data()
    bowl = lu.Quadratic.from_data(x, y, bias=bias)
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
    bowl = lu.Quadratic(
        torch.diag(torch.tensor([1.0, kappa], dtype=F64)), torch.tensor([1.0, kappa], dtype=F64)
    )  # minimum at (1, 1); from 0 both components start at 1
    steps = lu.iterations_to_tolerance(bowl, lu.best_lr(bowl.h), 1e-8)
    assert steps == lu.predicted_iterations(kappa, 1e-8)
    assert lu.iterations_to_tolerance(bowl, 1.01 * lu.max_stable_lr(bowl.h), 1e-8) is None
    assert lu.iterations_to_tolerance(bowl, 0.1, 1e-8, start=bowl.minimizer()) == 0


def test_gradient_descent_steps_and_stability_boundary():
    bowl = lu.Quadratic(torch.diag(torch.tensor([1.0, 4.0], dtype=F64)), torch.zeros(2, dtype=F64))
    path = lu.gradient_descent(bowl, 0.1, 3, start=torch.tensor([1.0, 1.0], dtype=F64))
    expected = torch.tensor([[0.9**k, 0.6**k] for k in range(4)], dtype=F64)  # 1 - lr * lambda
    torch.testing.assert_close(path, expected)
    at_limit = lu.gradient_descent(bowl, 0.5, 4, start=torch.tensor([0.0, 1.0], dtype=F64))
    torch.testing.assert_close(at_limit[:, 1], torch.tensor([1.0, -1.0, 1.0, -1.0, 1.0]).double())


def test_gradient_descent_on_data_is_the_loop_written_out():
    """Assignment 1's reference: theta after k steps from 0, bias last."""
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
    x, _ = _data()
    x = torch.cat([x, torch.full((len(x), 1), 7.0, dtype=F64)], dim=1)  # a constant column
    z = lu.standardize(x)
    torch.testing.assert_close(z.mean(0), torch.zeros(4, dtype=F64))
    torch.testing.assert_close(z[:, :3].var(0, correction=0), torch.ones(3, dtype=F64))
    assert torch.all(z[:, 3] == 0)
    torch.testing.assert_close(lu.hessian(z[:, :3], bias=False), torch.corrcoef(x[:, :3].T))


def test_sgd_is_the_per_sample_update_in_a_seeded_order():
    x, y = _data(p=6, d=2)
    path = lu.sgd(x, y, 0.05, 2, seed=3)
    assert path.shape == (13, 3)
    design = lu.design_matrix(x)
    gen = torch.Generator().manual_seed(3)
    theta = torch.zeros(3, dtype=F64)
    for _ in range(2):
        for p in torch.randperm(6, generator=gen).tolist():
            theta = theta - 0.05 * (design[p] @ theta - y[p]) * design[p]
    torch.testing.assert_close(path[-1], theta)
    # one pass with a tiny step, summed, is one batch step of P times that step
    tiny = lu.sgd(x, y, 1e-8, 1, seed=0)[-1]
    batch = lu.gradient_descent(lu.Quadratic.from_data(x, y), 6e-8, 1)[-1]
    torch.testing.assert_close(tiny, batch, rtol=1e-6, atol=1e-14)


def test_surface_and_first_below():
    x, y = _data(d=2)
    bowl = lu.Quadratic.from_data(x, y, bias=False)
    surface = bowl.surface()
    point = torch.tensor([0.3, -0.2], dtype=F64)
    assert surface.value(point) == bowl.value(point)
    torch.testing.assert_close(torch.tensor(surface.minima[0], dtype=F64), bowl.minimizer())
    with pytest.raises(ValueError, match="Invalid dim"):
        lu.Quadratic.from_data(x, y).surface()
    assert lu.first_below(torch.tensor([3.0, 2.0, 1.0, 0.5]), 1.0) == 2
    assert lu.first_below(torch.tensor([3.0, 2.0]), 1.0) is None


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: lu.hessian(torch.ones(3, dtype=F64)), "x"),
        (lambda: lu.hessian(torch.ones(3, 2, dtype=torch.long)), "x"),
        (lambda: lu.Quadratic.from_data(torch.ones(3, 2), torch.ones(4)), "y"),
        (lambda: lu.condition_number(torch.ones(2, 3)), "h"),
        (lambda: lu.condition_number(torch.tensor([[1.0, 2.0], [0.0, 1.0]])), "h"),
        (lambda: lu.max_stable_lr(-torch.eye(2)), "h"),
        (lambda: lu.optimal_step(torch.eye(2), torch.ones(3)), "g"),
        (lambda: lu.optimal_step(torch.eye(2), torch.zeros(2)), "g"),
        (lambda: lu.convergence_rate(0.5), "kappa"),
        (lambda: lu.predicted_iterations(2.0, 1.5), "tol"),
        (lambda: lu.gradient_descent(lu.Quadratic(torch.eye(2), torch.ones(2)), -1.0, 3), "lr"),
        (lambda: lu.gradient_descent(lu.Quadratic(torch.eye(2), torch.ones(2)), 0.1, -1), "steps"),
        (
            lambda: lu.gradient_descent(
                lu.Quadratic(torch.eye(2), torch.ones(2)), 0.1, 1, start=torch.ones(3)
            ),
            "start",
        ),
        (lambda: lu.Quadratic(torch.eye(2), torch.ones(3)), "c"),
        (lambda: lu.sgd(torch.ones(3, 2), torch.ones(3), 0.1, -2), "epochs"),
        (lambda: lu.first_below(torch.ones(2, 2), 0.0), "values"),
    ],
)
def test_bad_arguments_raise_value_errors_that_name_them(call, name):
    with pytest.raises(ValueError, match=f"Invalid {name}:"):
        call()
