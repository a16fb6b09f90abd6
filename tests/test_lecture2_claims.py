"""The claims lecture 2 ("Non-convex landscapes") makes, each asserted with numbers.

Every experiment is rebuilt here as notebooks/02_nonconvex_landscapes.ipynb builds it, at its
default parameters, with the same coursekit calls.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from coursekit import curvature
from coursekit.data import digits
from coursekit.ensembles import Ensemble, evaluate, train_ensemble
from coursekit.landscapes import interpolate, random_direction, slice_2d
from coursekit.models import MLP, OneOneOneNet, relu_path_sum

F64 = torch.float64
SEED, WIDTHS, INITS, STEPS, BATCH_SIZE, LR = 0, [25, 50, 100, 250, 500], 50, 200, 32, 0.1
STARTS, SEARCH_STEPS, PROBES, GRID_POINTS = 20, 500, 4, 25  # the notebook's parameters


# --- The 1-1-1 net --------------------------------------------------------------------------


def _fit_one_to_one(net):
    return (1.0 - net(torch.tensor(1.0, dtype=F64))) ** 2


def test_the_origin_is_a_saddle_with_eigenvalues_plus_and_minus_two():
    saddle = OneOneOneNet(0.0, 0.0).to(F64)
    eigenvalues = torch.linalg.eigvalsh(curvature.hessian(saddle, _fit_one_to_one))
    torch.testing.assert_close(eigenvalues, torch.tensor([-2.0, 2.0], dtype=F64))
    assert curvature.index(saddle, _fit_one_to_one) == 1


@pytest.mark.parametrize("w1", [2.0, 1.0, 0.5, -1.0, -4.0])
def test_every_point_of_the_hyperbola_is_a_minimum_with_one_flat_direction(w1):
    """Slide: on w1 w2 = 1 the loss is 0, the index 0; eigenvalues 0 and 2 (w1² + w2²)."""
    net = OneOneOneNet(w1, 1.0 / w1).to(F64)
    assert _fit_one_to_one(net).item() == pytest.approx(0.0, abs=1e-15)
    eigenvalues = torch.linalg.eigvalsh(curvature.hessian(net, _fit_one_to_one))
    expected = torch.tensor([0.0, 2 * (w1**2 + w1**-2)], dtype=F64)
    torch.testing.assert_close(eigenvalues, expected, atol=1e-12, rtol=1e-12)
    assert curvature.index(net, _fit_one_to_one) == 0


# --- Sum over active paths -------------------------------------------------------------------


def test_the_relu_net_equals_its_sum_over_active_paths():
    """Slide: 96 paths; the largest gap to the forward pass is at rounding level (2.8e-17)."""
    net = MLP(
        [3, 4, 4, 2], activation="relu", bias=False, generator=torch.Generator().manual_seed(SEED)
    ).to(F64)
    inputs = torch.randn(6, 3, generator=torch.Generator().manual_seed(SEED), dtype=F64)
    gap = (relu_path_sum(net, inputs) - net(inputs)).abs().max().item()
    assert gap < 1e-14


# --- Critical points and their index ---------------------------------------------------------


@pytest.fixture(scope="module")
def critical_points():
    gen = torch.Generator().manual_seed(SEED)
    x = torch.randn(40, 3, generator=gen, dtype=F64)
    rotation, _ = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=F64))
    y = x @ (rotation @ torch.diag(torch.tensor([3.0, 2.0, 1.0], dtype=F64))).T

    def fit_linear_map(net):
        return 0.5 * (net(x) - y).square().mean()

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the notebook: tiny tensors, one thread is faster
    points = []
    for k in range(STARTS):
        net = MLP(
            [3, 3, 3],
            activation="linear",
            bias=False,
            generator=torch.Generator().manual_seed(SEED + k),
        ).to(F64)
        with torch.no_grad():
            for p in net.parameters():
                p.mul_(1.5)
        point = curvature.find_critical_point(
            net,
            fit_linear_map,
            steps=SEARCH_STEPS,
            lr=0.02,
            optimizer=torch.optim.Adam,
            grad_tol=1e-6,
        )
        if point.converged:
            points.append(point)
    torch.set_num_threads(threads)
    return points


def test_saddles_outnumber_minima(critical_points):
    """Slide: 12 of 20 searches converged, all 12 at saddles."""
    indices = [p.index for p in critical_points]
    assert len(critical_points) >= 10
    assert sum(i > 0 for i in indices) > sum(i == 0 for i in indices)


def test_loss_rises_with_index(critical_points):
    """Slide: Spearman correlation of index and loss 0.88; mean loss increases with index."""
    indices = np.array([p.index for p in critical_points])
    losses = np.array([p.loss for p in critical_points])
    assert len(np.unique(indices)) >= 3
    assert spearmanr(indices, losses).statistic > 0.7
    means = [losses[indices == i].mean() for i in np.unique(indices)]
    assert all(a < b for a, b in zip(means, means[1:]))


# --- Choromanska: spread of final test losses against width ----------------------------------


@pytest.fixture(scope="module")
def choromanska():
    data = digits(seed=SEED)
    test_losses, trained = {}, None
    for h in WIDTHS:
        nets = [
            MLP([64, h, 10], generator=torch.Generator().manual_seed(SEED + 1000 * h + k))
            for k in range(INITS)
        ]
        ensemble = Ensemble(nets)
        sgd = torch.optim.SGD(ensemble.parameters(), lr=LR)
        train_ensemble(
            ensemble,
            sgd,
            F.cross_entropy,
            data.x_train,
            data.y_train,
            steps=STEPS,
            batch_size=BATCH_SIZE,
            seed=SEED,
        )
        test_losses[h] = evaluate(ensemble, data.x_test, data.y_test).loss.numpy()
        if h == WIDTHS[1]:
            trained = ensemble.unstack()
    return data, test_losses, trained


def test_the_spread_of_final_test_losses_shrinks_with_width(choromanska):
    """Slide: std over 50 inits 0.0115 at h = 25, down to 0.0062 at h = 500."""
    _, test_losses, _ = choromanska
    assert all(len(test_losses[h]) >= 50 for h in WIDTHS)
    spread = {h: test_losses[h].std(ddof=1) for h in WIDTHS}
    assert spread[WIDTHS[-1]] < 0.7 * spread[WIDTHS[0]]
    q75, q25 = np.percentile(test_losses[WIDTHS[-1]], [75, 25])
    q75_small, q25_small = np.percentile(test_losses[WIDTHS[0]], [75, 25])
    assert q75 - q25 < q75_small - q25_small
    assert f"{spread[25]:.4f}" == "0.0115" and f"{spread[500]:.4f}" == "0.0062"
    means = [test_losses[h].mean() for h in WIDTHS]
    assert all(a > b for a, b in zip(means, means[1:]))  # wider nets are also better here


# --- The Hessian of a trained net ------------------------------------------------------------


def _median_abs_eigenvalue(grid, density):
    order = grid.abs().argsort()
    mass = density[order].cumsum(0)
    return grid.abs()[order][torch.searchsorted(mass, 0.5 * mass[-1])].item()


def test_the_hessian_is_a_bulk_near_zero_plus_outliers(choromanska):
    """Slide: lambda_1 = 0.99, median |lambda| = 0.008, a ratio of about 120."""
    data, _, trained = choromanska
    model = trained[0].to(F64)
    x = data.x_train.to(F64)

    def train_loss(net):
        return F.cross_entropy(net(x), data.y_train)

    top, _ = curvature.top_eigenvalues(
        model, train_loss, k=10, generator=torch.Generator().manual_seed(SEED)
    )
    grid, density = curvature.spectral_density(
        model, train_loss, probes=PROBES, steps=60, generator=torch.Generator().manual_seed(SEED)
    )
    median_abs = _median_abs_eigenvalue(grid, density)
    assert top[0].item() > 10 * median_abs
    step = (grid[1] - grid[0]).item()
    near_zero = density[grid.abs() < 0.05 * top[0]].sum().item() * step
    assert near_zero > 0.9  # most of the eigenvalue mass within 5% of lambda_1 from zero
    # The estimate agrees with Lanczos: the density reaches as far as lambda_1 and no farther.
    assert grid[-1].item() == pytest.approx(top[0].item(), rel=0.1)


# --- Slices ----------------------------------------------------------------------------------


def test_the_trained_net_sits_low_on_the_plane_and_a_barrier_separates_two_nets(choromanska):
    """Slide: loss 0.141 at the net, 1.36 at the plane's highest; barrier 0.703 on the line."""
    data, _, trained = choromanska
    model, other = trained[0].to(F64), trained[1].to(F64)
    x = data.x_train.to(F64)
    gen = torch.Generator().manual_seed(SEED)
    d1, d2 = random_direction(model.net, generator=gen), random_direction(model.net, generator=gen)
    alphas = torch.linspace(-1, 1, GRID_POINTS)
    plane = slice_2d(model.net, F.cross_entropy, (x, data.y_train), (d1, d2), alphas, alphas)
    centre = plane[GRID_POINTS // 2, GRID_POINTS // 2].item()
    assert centre == pytest.approx(F.cross_entropy(model(x), data.y_train).item(), rel=1e-6)
    assert plane.max().item() > 5 * centre
    ts = torch.linspace(-0.25, 1.25, 31)
    line = interpolate(model.net, other.net, F.cross_entropy, (x, data.y_train), ts)
    barrier = line[(ts >= 0) & (ts <= 1)].max().item()
    assert barrier > 3 * max(line[5].item(), line[25].item())  # t = 0 and t = 1
