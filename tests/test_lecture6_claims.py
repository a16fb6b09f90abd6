"""Lecture 6's claims, checked in `coursekit.geometry` against quantities it did not compute.

The references: numpy's eigenvalues of :math:`PH` (not the symmetric form the library uses);
the closed forms :math:`(I - \\eta P H)^k e_0` of preconditioned gradient descent and
:math:`-H^{-1} g` of Newton's step; logistic regression's gradient and Hessian written out here
(its Fisher equals its Hessian, so the natural gradient is Newton's method); torch.optim.SGD;
`coursekit.landscapes.trajectory` and `coursekit.training.train` for the loops; the boundary
:math:`2/\\lambda_{\\max}` of gradient descent on a quadratic.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from coursekit import geometry as geo
from coursekit.data import Split, two_blobs
from coursekit.landscapes import Quadratic, one_one_one_net, rosenbrock, saddle, trajectory
from coursekit.models import MLP, ParameterVector
from coursekit.second_order import Newton
from coursekit.training import train

F64 = torch.float64


def _bowl(condition: float, angle: float) -> Quadratic:
    """Eigenvalues 1 along (cos, sin) and `condition` across it, written out here."""
    c, s = math.cos(angle), math.sin(angle)
    u, v = np.array([c, s]), np.array([-s, c])
    hess = np.outer(u, u) + condition * np.outer(v, v)
    return Quadratic(torch.tensor(hess), torch.zeros(2, dtype=F64))


@pytest.mark.parametrize("angle", [0.0, 0.3, math.pi / 4])
def test_preconditioned_condition_number_is_numpys_of_p_h(angle):
    """kappa(P^1/2 H P^1/2) against numpy's (non-symmetric) eigenvalues of P H, for the identity,
    Jacobi and a random SPD preconditioner."""
    h = _bowl(100.0, angle).h
    rng = np.random.default_rng(0)
    b = rng.normal(size=(2, 2))
    for p in (torch.eye(2, dtype=F64), geo.jacobi(h), torch.tensor(b @ b.T + np.eye(2))):
        values = np.linalg.eigvals(p.numpy() @ h.numpy()).real
        expected = values.max() / values.min()
        assert geo.preconditioned_condition_number(h, p) == pytest.approx(expected, rel=1e-10)


def test_jacobi_fixes_the_axis_aligned_bowl_but_not_the_rotated_one():
    """Closed forms: diag(H)^-1 H = I when H is diagonal (kappa 1); at 45 degrees H's diagonal is
    constant, (1 + kappa)/2, so Jacobi is a multiple of I and kappa stays kappa."""
    for kappa in (10.0, 100.0, 1e4):
        axis, rotated = _bowl(kappa, 0.0).h, _bowl(kappa, math.pi / 4).h
        assert geo.preconditioned_condition_number(axis, geo.jacobi(axis)) == pytest.approx(1.0)
        assert geo.preconditioned_condition_number(rotated, geo.jacobi(rotated)) == pytest.approx(
            kappa, rel=1e-9
        )
        torch.testing.assert_close(geo.jacobi(rotated), torch.eye(2, dtype=F64) * 2 / (1 + kappa))


def test_preconditioned_gd_is_the_closed_form_and_h_inverse_takes_one_step():
    """theta_k - theta* = (I - lr P H)^k (theta_0 - theta*) for every k; with P = H^-1 and lr 1
    the first step lands on torch.linalg.solve(H, c)."""
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(4, 4, generator=gen, dtype=F64)
    h = a @ a.T + 0.5 * torch.eye(4, dtype=F64)
    bowl = Quadratic(h, torch.randn(4, generator=gen, dtype=F64))
    start = torch.randn(4, generator=gen, dtype=F64)
    star = torch.linalg.solve(h, bowl.c)
    p = geo.jacobi(h)
    lr = 1.0 / torch.linalg.eigvals(p @ h).real.max().item()
    path = geo.preconditioned_gd(bowl, p, lr, 6, start)
    m = torch.eye(4, dtype=F64) - lr * p @ h
    for k in range(7):
        expected = torch.linalg.matrix_power(m, k) @ (start - star) + star
        torch.testing.assert_close(path[k], expected, rtol=1e-10, atol=1e-12)
    one = geo.preconditioned_gd(bowl, torch.linalg.inv(h), 1.0, 1, start)
    torch.testing.assert_close(one[1], star, rtol=0, atol=1e-12)


@pytest.mark.parametrize("scale", [(10.0, 1.0), (0.1, 3.0)])
def test_newton_steps_carry_the_units_of_the_parameter_and_gradient_steps_the_inverse(scale):
    """Newton's step in psi = s theta is s times its step in theta (and the step itself is
    -H^-1 g by numpy); gradient descent's is 1/s times (torch.optim.SGD)."""
    surface = rosenbrock()
    point = (-1.2, 1.0)
    s = torch.tensor(scale, dtype=F64)
    newton = geo.rescaled_step_ratio(surface.value, point, scale, lambda p: Newton(p))
    sgd = geo.rescaled_step_ratio(
        surface.value, point, scale, lambda p: torch.optim.SGD(p, lr=1e-3)
    )
    torch.testing.assert_close(newton, s, rtol=1e-9, atol=0)
    torch.testing.assert_close(sgd, 1 / s, rtol=1e-9, atol=0)
    # the step it measures is Newton's: x = -1.2, y = 1 written out
    x, y = point
    g = np.array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])
    hess = np.array([[2 - 400 * (y - 3 * x * x), -400 * x], [-400 * x, 200]])
    param = torch.nn.Parameter(torch.tensor(point, dtype=F64))
    Newton([param]).step(lambda: surface.value(param))
    np.testing.assert_allclose(param.detach().numpy() - point, -np.linalg.solve(hess, g))


def test_error_ratios_recover_a_known_quadratic_rate_and_stop_at_the_floor():
    """e_{k+1} = M e_k^2 built by hand gives ratios M (p = 2) and M e_k (p = 1); pairs whose
    new error is below the floor, and all after, are dropped."""
    m, errors = 3.0, [0.1]
    for _ in range(4):
        errors.append(m * errors[-1] ** 2)
    errors += [0.0, 0.0]
    e = torch.tensor(errors, dtype=F64)
    ratios = geo.error_ratios(e, floor=1e-12)
    torch.testing.assert_close(ratios, torch.full((4,), m, dtype=F64))
    torch.testing.assert_close(geo.error_ratios(e, 1.0), m * e[:4])
    assert len(geo.error_ratios(e, floor=1e-5)) == 3  # 1.4e-9 is below: it and all after go
    with pytest.raises(ValueError, match="power"):
        geo.error_ratios(e, power=0.0)


def test_paths_from_follows_trajectory_for_sgd_and_newton_jumps_to_the_saddle():
    """With SGD the iterates equal `landscapes.trajectory`'s (another loop); Newton on the
    quadratic saddle x^2 - y^2 reaches its critical point (0, 0) in one step from anywhere (the
    closed form -H^-1 g = -theta), and on the 1-1-1 loss near the origin it converges to it."""
    starts = torch.tensor([[-1.5, 0.01], [0.7, -0.4]], dtype=F64)
    sgd = geo.paths_from(saddle(), lambda p: torch.optim.SGD(p, lr=0.05), starts, 20)
    for path, start in zip(sgd, starts):
        expected = trajectory(saddle(), lambda p: torch.optim.SGD(p, lr=0.05), 20, start.tolist())
        torch.testing.assert_close(path, expected)
    newton = geo.paths_from(saddle(), lambda p: Newton(p), starts, 2)
    torch.testing.assert_close(newton[:, 1], torch.zeros(2, 2, dtype=F64), rtol=0, atol=1e-15)
    net = geo.paths_from(one_one_one_net(), lambda p: Newton(p), starts * 0.2, 30)
    assert net[:, -1].abs().max() < 1e-12


def test_spd_matrix_has_exactly_the_given_eigenvalues():
    """numpy.linalg.eigvalsh of the matrix against the eigenvalues asked for; symmetric."""
    values = torch.tensor([1.0, 1.0, 2.0, 5.0, 1e3], dtype=F64)
    a = geo.spd_matrix(values, torch.Generator().manual_seed(0))
    np.testing.assert_allclose(np.linalg.eigvalsh(a.numpy()), values.numpy(), rtol=1e-12)
    torch.testing.assert_close(a, a.T, rtol=0, atol=0)


def _logistic_newton(x, y, start, steps):
    """Newton's method on the mean logistic loss, gradient and Hessian written out here."""
    xt = np.hstack([x, np.ones((len(x), 1))])
    theta, path = start.copy(), [start.copy()]
    for _ in range(steps):
        s = 1 / (1 + np.exp(-xt @ theta))
        g = xt.T @ (s - y) / len(x)
        h = (xt * (s * (1 - s))[:, None]).T @ xt / len(x)
        theta = theta - np.linalg.solve(h, g)
        path.append(theta.copy())
    return np.array(path)


def test_natural_gradient_is_invariant_and_is_newton_for_logistic_regression():
    """Both runs of the natural gradient equal Newton's method written out in numpy (the
    Fisher of logistic regression is its Hessian); gradient descent in v = A^-1 theta, mapped
    back, is gradient descent in theta preconditioned by A A^T, written out here."""
    split = two_blobs(80, seed=3, separation=2.0, mean_offset=(2.0, 0.5), dtype=F64)
    x, y = split.x_train, (split.y_train > 0).double()
    gen = torch.Generator().manual_seed(2)
    a = torch.eye(3, dtype=F64) + 0.5 * torch.randn(3, 3, generator=gen, dtype=F64)
    start = torch.tensor([0.3, -0.2, 0.1], dtype=F64)
    direct, back = geo.reparameterised_logistic_paths(x, y, a, start, 6, method="natural", lr=1.0)
    newton = _logistic_newton(x.numpy(), y.numpy(), start.numpy(), 6)
    np.testing.assert_allclose(direct.numpy(), newton, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(back.numpy(), newton, rtol=1e-9, atol=1e-10)

    lr = 0.2
    direct, back = geo.reparameterised_logistic_paths(x, y, a, start, 5, method="gradient", lr=lr)
    xt = np.hstack([x.numpy(), np.ones((len(x), 1))])
    theta, plain, preconditioned = start.numpy(), [start.numpy()], [start.numpy()]
    theta_p = theta.copy()
    aat = a.numpy() @ a.numpy().T
    for _ in range(5):
        grad = lambda t: xt.T @ (1 / (1 + np.exp(-xt @ t)) - y.numpy()) / len(x)  # noqa: E731
        theta = theta - lr * grad(theta)
        theta_p = theta_p - lr * aat @ grad(theta_p)
        plain.append(theta)
        preconditioned.append(theta_p)
    np.testing.assert_allclose(direct.numpy(), np.array(plain), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(back.numpy(), np.array(preconditioned), rtol=1e-10, atol=1e-12)


def test_drop_constant_features_drops_exactly_the_zero_variance_columns():
    """numpy's variance of each training column decides which go."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(20, 5, generator=gen)
    x[:, 1] = 0.0
    x[:, 3] = 2.5
    split = Split(x, torch.zeros(20), x[:4] + 1, torch.zeros(4))
    kept = geo.drop_constant_features(split)
    columns = np.flatnonzero(x.numpy().var(0) > 0)
    np.testing.assert_array_equal(kept.x_train.numpy(), x.numpy()[:, columns])
    np.testing.assert_array_equal(kept.x_test.numpy(), x.numpy()[:4, columns] + 1)


@pytest.mark.parametrize("top", [4.0, 50.0])
def test_largest_stable_lr_is_two_over_the_top_eigenvalue_on_a_quadratic(top):
    """Gradient descent on 1/2 theta^T H theta started along the top eigenvector is stable
    exactly for lr <= 2 / lambda_max; bisection lands within its resolution below it."""
    h = torch.diag(torch.tensor([top, 1.0, 0.1], dtype=F64))

    def make():
        return ParameterVector(torch.tensor([1.0, 0.0, 0.0], dtype=F64))

    def loss_fn(m):
        return 0.5 * m.theta @ h @ m.theta

    lr = geo.largest_stable_lr(make, loss_fn, steps=5, low=1e-3, high=10.0, iterations=30)
    resolution = (10.0 / 1e-3) ** (2.0**-30)
    assert 2 / top / resolution <= lr <= 2 / top
    with pytest.raises(ValueError, match="high"):
        geo.largest_stable_lr(make, loss_fn, steps=5, low=1e-3, high=1e-2)


def test_run_first_order_is_coursekits_train_loop():
    """Same minibatch order and steps as `coursekit.training.train` at the same seed: the same
    parameters at the end, and the loss it records is the full cross-entropy recomputed."""
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(50, 6, generator=gen), torch.randint(0, 3, (50,), generator=gen)
    nets = [MLP([6, 5, 3], generator=torch.Generator().manual_seed(1)) for _ in range(2)]
    run = geo.run_first_order(
        nets[0], torch.optim.SGD(nets[0].parameters(), lr=0.1), x, y, 3, 8, seed=4
    )
    train(
        nets[1],
        torch.optim.SGD(nets[1].parameters(), lr=0.1),
        F.cross_entropy,
        x,
        y,
        epochs=3,
        batch_size=8,
        seed=4,
    )
    for a, b in zip(nets[0].parameters(), nets[1].parameters()):
        torch.testing.assert_close(a, b)
    assert run.epochs == [0.0, 1.0, 2.0, 3.0] == run.evaluations
    assert run.loss[-1] == pytest.approx(F.cross_entropy(nets[1](x), y).item(), rel=1e-6)


def test_run_hessian_free_counts_passes_and_lowers_the_loss():
    """Gradient passes equal the steps taken; gradients + products equal the optimizer's own
    counters; the recorded losses are the full cross-entropy, recomputed at the end."""
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(60, 4, generator=gen), torch.randint(0, 3, (60,), generator=gen)
    net = MLP([4, 6, 3], activation="tanh", generator=torch.Generator().manual_seed(1))
    run = geo.run_hessian_free(net, x, y, 4, damping=1.0, cg_max_iter=10)
    assert run.epochs == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert all(b > a + 1 for a, b in zip(run.evaluations, run.evaluations[1:]))
    assert run.loss[-1] == pytest.approx(F.cross_entropy(net(x), y).item(), rel=1e-6)
    assert run.loss[-1] < run.loss[0]
