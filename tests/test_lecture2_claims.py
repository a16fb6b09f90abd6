"""The coursekit functions behind lecture 2's claims, checked against what they did not compute.

Lecture 2 ("Non-convex landscapes", notebooks/02_nonconvex_landscapes.ipynb) states its numbers
in check cells next to the computations; here the library functions it calls are checked on
small cases against closed forms (the 1-1-1 net; Baldi & Hornik's critical points of a linear
net), dense Hessians built by ``torch.autograd.functional.hessian`` from forward passes written
out by hand, direct evaluations of the loss, and relations the lecture claims. No number here
comes from a run of the notebook.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from coursekit import curvature
from coursekit.data import digits
from coursekit.landscapes import (
    deep_linear_critical_points,
    interpolate,
    linear_map_task,
    minima_by_width,
    random_direction,
    search_critical_points,
    slice_2d,
)
from coursekit.models import MLP, OneOneOneNet, relu_path_sum

F64 = torch.float64


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: the tensors are small, and two threads on a loaded 2-core machine
    made lecture 2's ensembles three times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# --- The 1-1-1 net --------------------------------------------------------------------------


def _fit_one_to_one(net):
    return (1.0 - net(torch.tensor(1.0, dtype=F64))) ** 2


def test_the_origin_is_a_saddle_with_eigenvalues_plus_and_minus_two():
    """Against the closed form: at w = 0 the Hessian of (1 - w1 w2)^2 is [[0, -2], [-2, 0]]."""
    saddle = OneOneOneNet(0.0, 0.0).to(F64)
    hessian = curvature.hessian(saddle, _fit_one_to_one)
    torch.testing.assert_close(hessian, torch.tensor([[0.0, -2.0], [-2.0, 0.0]], dtype=F64))
    assert curvature.index(saddle, _fit_one_to_one) == 1


@pytest.mark.parametrize("w1", [2.0, 1.0, 0.5, -1.0, -4.0])
def test_every_point_of_the_hyperbola_is_a_minimum_with_one_flat_direction(w1):
    """Against the closed form: on w1 w2 = 1, H = 2 u u^T with u = (w2, w1), so the loss is 0
    and the eigenvalues are 0 and 2 (w1^2 + w2^2)."""
    net = OneOneOneNet(w1, 1.0 / w1).to(F64)
    assert _fit_one_to_one(net).item() == pytest.approx(0.0, abs=1e-15)
    eigenvalues = torch.linalg.eigvalsh(curvature.hessian(net, _fit_one_to_one))
    expected = torch.tensor([0.0, 2 * (w1**2 + w1**-2)], dtype=F64)
    torch.testing.assert_close(eigenvalues, expected, atol=1e-12, rtol=1e-12)
    assert curvature.index(net, _fit_one_to_one) == 0


# --- Sum over active paths -------------------------------------------------------------------


@pytest.mark.parametrize("sizes", [[3, 4, 4, 2], [5, 3, 2]])
def test_the_relu_net_equals_its_sum_over_active_paths(sizes):
    """Against torch's forward pass of the same bias-free ReLU net, to rounding."""
    net = MLP(sizes, activation="relu", bias=False, generator=torch.Generator().manual_seed(0))
    net = net.to(F64)
    inputs = torch.randn(6, sizes[0], generator=torch.Generator().manual_seed(1), dtype=F64)
    torch.testing.assert_close(relu_path_sum(net, inputs), net(inputs), rtol=0, atol=1e-13)


# --- Critical points of a linear net: the closed form --------------------------------------


def _linear_net(first: torch.Tensor, second: torch.Tensor) -> MLP:
    d = first.shape[0]
    net = MLP([d, d, d], activation="linear", bias=False).to(F64)
    with torch.no_grad():
        net.linears[0].weight.copy_(first)
        net.linears[1].weight.copy_(second)
    return net


def _dense_hessian_of_linear_net(task, theta: torch.Tensor) -> torch.Tensor:
    """torch.autograd.functional.hessian of the loss written out by hand (no curvature code)."""
    d = task.x.shape[1]

    def flat_loss(t: torch.Tensor) -> torch.Tensor:
        w1, w2 = t[: d * d].reshape(d, d), t[d * d :].reshape(d, d)
        return 0.5 * (task.x @ w1.T @ w2.T - task.y).square().sum(1).mean()

    return torch.autograd.functional.hessian(flat_loss, theta)


def _negative(eigenvalues: torch.Tensor) -> int:
    return int((eigenvalues < -1e-8 * eigenvalues.abs().max()).sum())


@pytest.mark.parametrize("values", [(3.0, 2.0, 1.0), (4.0, 2.5, 1.5, 0.5), (1.0, 0.3)])
def test_each_closed_form_critical_point_is_critical_with_its_loss_and_index(values):
    """Against autograd and the data: the gradient vanishes, the loss evaluated on the whitened
    inputs equals 1/2 sum of the dropped s_j^2, the product is U_J diag(s_J) V_J^T, and the
    index equals the count of negative eigenvalues of a dense Hessian built by
    torch.autograd.functional.hessian, at the listed point and at a random point of its
    family (W1, W2) -> (G W1, W2 G^-1)."""
    task = linear_map_task(values, seed=3)
    known = deep_linear_critical_points(task)
    assert len(known) == 2 ** len(values)
    assert len({p.kept for p in known}) == len(known)
    s, u, v = task.singular_values, task.left, task.right
    gen = torch.Generator().manual_seed(4)
    for point in known:
        net = _linear_net(point.first, point.second)
        loss = task.loss(net)
        grads = torch.autograd.grad(loss, list(net.parameters()))
        assert max(g.abs().max().item() for g in grads) < 1e-12
        dropped = [j for j in range(len(values)) if j not in point.kept]
        assert loss.item() == pytest.approx(0.5 * sum(s[j].item() ** 2 for j in dropped), abs=1e-12)
        assert point.loss == pytest.approx(loss.item(), abs=1e-12)
        kept = list(point.kept)
        product = u[:, kept] @ torch.diag(s[kept]) @ v[:, kept].T
        torch.testing.assert_close(point.second @ point.first, product, rtol=0, atol=1e-12)
        g = torch.eye(len(values), dtype=F64) + 0.5 * torch.randn(
            len(values), len(values), generator=gen, dtype=F64
        )
        for first, second in (
            (point.first, point.second),
            (g @ point.first, point.second @ g.inverse()),
        ):
            theta = torch.cat([first.reshape(-1), second.reshape(-1)])
            eigenvalues = torch.linalg.eigvalsh(_dense_hessian_of_linear_net(task, theta))
            assert _negative(eigenvalues) == point.index, (point.kept, eigenvalues)
    minima = [p for p in known if p.index == 0]
    assert len(minima) == 1 and minima[0].kept == tuple(range(len(values)))


def test_across_all_critical_points_loss_rises_with_index():
    """A relation over the complete closed-form list for the lecture's 3-3-3 net (s = 3, 2, 1):
    the only minimum is the global one, and index and loss are rank-correlated (Spearman above
    0.9) though not in strict order."""
    known = deep_linear_critical_points(linear_map_task([3.0, 2.0, 1.0]))
    index = np.array([p.index for p in known])
    loss = np.array([p.loss for p in known])
    assert loss[index == 0].tolist() == [0.0]
    assert spearmanr(index, loss).statistic > 0.9
    assert loss[index == index.max()].min() == loss.max()  # the origin: all dropped


# --- Critical points of a linear net: the search ---------------------------------------------


@pytest.fixture(scope="module")
def linear_search():
    task = linear_map_task([2.0, 1.0], seed=5)

    def make(generator):
        return MLP([2, 2, 2], activation="linear", bias=False, generator=generator).to(F64)

    found = search_critical_points(make, task.loss, starts=4, random_starts=3, seed=5)
    return task, found


def test_the_search_finds_only_critical_points_of_the_closed_form_list(linear_search):
    """Against Baldi & Hornik's list: every converged search ends at a point whose loss, index
    (from torch.autograd.functional.hessian of the hand-written loss) and product W2 W1 are
    those of one subset J of kept singular directions."""
    task, found = linear_search
    known = deep_linear_critical_points(task)
    converged = [f for f in found if f.converged]
    assert len(converged) >= 0.8 * len(found)
    u, s, v = task.left, task.singular_values, task.right
    for f in converged:
        net = MLP([2, 2, 2], activation="linear", bias=False).to(F64)
        torch.nn.utils.vector_to_parameters(f.theta, net.parameters())
        match = [p for p in known if abs(p.loss - task.loss(net).item()) < 1e-9]
        assert len(match) == 1, f.point
        dense = torch.linalg.eigvalsh(_dense_hessian_of_linear_net(task, f.theta))
        assert f.point.index == _negative(dense) == match[0].index
        kept = list(match[0].kept)
        product = net.linears[1].weight @ net.linears[0].weight
        torch.testing.assert_close(
            product, u[:, kept] @ torch.diag(s[kept]) @ v[:, kept].T, rtol=0, atol=1e-8
        )


def test_training_finds_minima_and_newton_between_them_finds_saddles(linear_search):
    """Relations the lecture states: trained starts end at the global minimum (loss 0, index 0);
    starts on paths between minima and random starts find saddles (index > 0) as well."""
    _, found = linear_search
    trained = [f for f in found if f.start == "trained"]
    assert len(trained) == 4 and all(f.converged for f in trained)
    assert all(f.point.index == 0 and f.point.loss < 1e-18 for f in trained)
    assert len([f for f in found if f.start == "path"]) == 3 * 6
    saddles = [f for f in found if f.converged and f.start != "trained" and f.point.index > 0]
    assert len(saddles) >= 3
    assert all(f.point.loss > 0.4 for f in saddles)  # the lowest saddle drops s = 1: loss 0.5


# --- Choromanska: many initialisations per width, trained to a plateau ----------------------


@pytest.fixture(scope="module")
def by_width():
    data = digits(seed=0)
    return data, minima_by_width(data, [4, 32], inits=8, weight_decay=3e-3, max_steps=400)


def _objective(net, x, y, weight_decay):
    return F.cross_entropy(net(x), y) + 0.5 * weight_decay * sum(
        p.square().sum() for p in net.parameters()
    )


def test_the_reported_losses_are_those_of_the_returned_nets(by_width):
    """Against a direct evaluation: each returned net's test cross-entropy and training
    objective (cross-entropy + L2 penalty), computed here with plain torch calls."""
    data, runs = by_width
    for run in runs.values():
        for k, net in enumerate(run.models):
            with torch.no_grad():
                test = F.cross_entropy(net(data.x_test), data.y_test).item()
                train = _objective(net, data.x_train, data.y_train, 3e-3).item()
            assert run.test_loss[k].item() == pytest.approx(test, rel=1e-5)
            assert run.objective[k].item() == pytest.approx(train, rel=1e-5)


def test_the_spread_of_test_losses_at_the_plateau_shrinks_with_width(by_width):
    """A relation (the lecture's claim, on a smaller case): over 8 initialisations, the standard
    deviation of the test losses of 64-32-10 nets is under half that of 64-4-10 nets, and so
    is the spread of the training objectives they stopped at."""
    _, runs = by_width
    assert all(bool(run.converged.all()) for run in runs.values())
    assert runs[32].test_loss.std() < 0.5 * runs[4].test_loss.std()
    assert runs[32].objective.std() < 0.5 * runs[4].objective.std()
    assert runs[32].test_loss.mean() < runs[4].test_loss.mean()


# --- The Hessian at the plateau --------------------------------------------------------------


def _dense_hessian_of_mlp(net, x, y, weight_decay):
    """torch.autograd.functional.hessian of the 64-h-10 objective written out by hand."""
    shapes = [p.shape for p in net.parameters()]
    sizes = [p.numel() for p in net.parameters()]

    def flat_objective(theta):
        w1, b1, w2, b2 = (t.reshape(s) for t, s in zip(theta.split(sizes), shapes))
        logits = torch.relu(x @ w1.T + b1) @ w2.T + b2
        return F.cross_entropy(logits, y) + 0.5 * weight_decay * theta.square().sum()

    theta = torch.cat([p.detach().reshape(-1) for p in net.parameters()])
    return torch.autograd.functional.hessian(flat_objective, theta)


def test_at_the_plateau_lanczos_and_slq_match_the_dense_spectrum_a_bulk_near_zero(by_width):
    """Against the dense spectrum (torch.autograd.functional.hessian of the objective written
    out by hand, eigvalsh) of a 64-4-10 net at its plateau: Lanczos's five largest and the
    smallest eigenvalue match it, the SLQ median |lambda| is within a factor 2 of the dense
    one; and the lecture's relations hold there: lambda_1 is over 10 times the median
    |lambda| (a bulk near zero), and the smallest eigenvalue, of either sign, lies within
    5 % of lambda_1 from zero (near a minimum; the lecture's 64-32-10 net has small negative
    ones, this one need not)."""
    data, runs = by_width
    net = runs[4].models[0].to(F64)
    x, y = data.x_train.to(F64), data.y_train

    def objective(model):
        return _objective(model, x, y, 3e-3)

    dense = torch.linalg.eigvalsh(_dense_hessian_of_mlp(net, x, y, 3e-3))
    gen = torch.Generator().manual_seed(0)
    top, _ = curvature.top_eigenvalues(net, objective, k=5, generator=gen)
    torch.testing.assert_close(top, dense.flip(0)[:5], rtol=1e-6, atol=1e-9)
    low, _ = curvature.smallest_eigenvalues(net, objective, k=1, generator=gen)
    assert low.item() == pytest.approx(dense[0].item(), rel=1e-5, abs=1e-9)
    grid, density = curvature.spectral_density(net, objective, probes=4, steps=60, generator=gen)
    # The median of |lambda| under the density: the smallest a with half the mass in [-a, a].
    radii = torch.linspace(0, grid.abs().max().item(), 2000, dtype=F64)
    inside = torch.stack([density[grid.abs() <= a].sum() for a in radii])
    slq_median = radii[int((inside >= 0.5 * density.sum()).nonzero()[0])].item()
    dense_median = dense.abs().median().item()
    assert 0.5 * dense_median < slq_median < 2 * dense_median
    assert dense[-1] > 10 * dense_median
    assert -0.05 * dense[-1] < dense[0] < 0.05 * dense[-1]


# --- Slices ----------------------------------------------------------------------------------


def test_the_plane_is_lowest_at_the_net_and_a_barrier_separates_two_nets(by_width):
    """Against direct evaluation: the centre of the plane is the net's own training loss; and
    the relations the lecture states: the plane's lowest point is the net, and the straight
    line to a net from another initialisation rises over 3 times above both ends."""
    data, runs = by_width
    model, other = runs[32].models[0].to(F64), runs[32].models[1].to(F64)
    x, y = data.x_train.to(F64), data.y_train
    gen = torch.Generator().manual_seed(0)
    d1, d2 = random_direction(model.net, generator=gen), random_direction(model.net, generator=gen)
    alphas = torch.linspace(-1, 1, 9)
    plane = slice_2d(model.net, F.cross_entropy, (x, y), (d1, d2), alphas, alphas)
    with torch.no_grad():
        own = F.cross_entropy(model(x), y).item()
    assert plane[4, 4].item() == pytest.approx(own, rel=1e-9)
    assert plane.argmin().item() == 4 * 9 + 4
    ts = torch.linspace(0, 1, 11)
    line = interpolate(model.net, other.net, F.cross_entropy, (x, y), ts)
    assert line.max().item() > 3 * max(line[0].item(), line[-1].item())
