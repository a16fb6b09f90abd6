"""Lecture 9's claims, checked in `coursekit.trajectories` against quantities it did not compute.

The references: closed forms (P for depth 1 and for scalar networks, the spectrum of P from the
SVD, the logistic solution of a scalar network's gradient flow, the exact O(lr^2) change of the
balancedness matrices under one gradient step, the Hessian of a scalar net at the origin);
dense constructions (P entry by entry, scipy's fractional matrix power); torch's own SGD on
`coursekit.models.DeepLinear`; Weyl's inequality against a sampled search over near-singular
matrices; explicit loops for the l_p loss.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.linalg import fractional_matrix_power

from coursekit import trajectories as tr
from coursekit.models import DeepLinear

F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _unbalanced(widths, seed):
    gen = _gen(seed)
    return [
        torch.randn(b, a, generator=gen, dtype=F64) / math.sqrt(a)
        for a, b in zip(widths[:-1], widths[1:])
    ]


def _gaps(weights):
    """The balancedness matrices W_{j+1}^T W_{j+1} - W_j W_j^T themselves."""
    return [a.T @ a - b @ b.T for b, a in zip(weights[:-1], weights[1:])]


# --- the network as a product ---------------------------------------------------------------


def test_end_to_end_and_balancedness_agree_with_deep_linear():
    """DeepLinear.end_to_end, DeepLinear's forward pass (x @ W_e^T) and DeepLinear.balancedness
    on the same (unbalanced) net."""
    torch.manual_seed(0)
    net = DeepLinear([4, 6, 5, 3]).double()
    weights = [layer.weight for layer in net.layers]
    x = torch.randn(7, 4, dtype=F64)
    torch.testing.assert_close(tr.end_to_end(weights), net.end_to_end())
    torch.testing.assert_close(x @ tr.end_to_end(weights).T, net(x))
    torch.testing.assert_close(tr.balancedness(weights), net.balancedness())
    assert tr.balancedness(weights).shape == (2,)
    assert tr.balancedness(weights[:1]).shape == (0,)


# --- balanced initialisation ----------------------------------------------------------------


@pytest.mark.parametrize("widths", [[3, 5, 4, 2], [4, 1], [2, 2, 2, 2, 2], [5, 3, 7, 1]])
def test_balanced_factors_multiply_back_and_are_balanced(widths):
    """The product equals the given matrix (dense matmul) and W_{j+1}^T W_{j+1} = W_j W_j^T
    to rounding, with and without the hidden rotations."""
    w_e = torch.randn(widths[-1], widths[0], generator=_gen(1), dtype=F64)
    for rotate in (False, True):
        weights = tr.balanced_factors(w_e, widths, rotate=rotate, generator=_gen(2))
        assert [tuple(w.shape) for w in weights] == list(zip(widths[1:], widths[:-1]))
        torch.testing.assert_close(tr.end_to_end(weights), w_e, rtol=0, atol=1e-12)
        assert float(tr.balancedness(weights).sum()) < 1e-12


def test_balanced_init_delta_and_scale():
    """delta = 0: balanced to rounding; delta > 0: the largest balancedness lies in
    [0.99 delta, delta]; the end-to-end matrix's mean square entry is scale^2 / d_0 (sample
    average over 200 draws, within 10 %)."""
    widths = [6, 8, 8, 3]
    exact = tr.balanced_init(widths, scale=2.0, generator=_gen(3))
    assert float(tr.balancedness(exact).max()) < 1e-12
    for delta in (1e-3, 0.1):
        weights = tr.balanced_init(widths, scale=2.0, delta=delta, generator=_gen(4))
        gap = float(tr.balancedness(weights).max())
        assert 0.99 * delta <= gap <= delta, (delta, gap)
    gen = _gen(5)
    squares = [
        float(tr.end_to_end(tr.balanced_init(widths, scale=2.0, generator=gen)).pow(2).mean())
        for _ in range(200)
    ]
    assert abs(np.mean(squares) / (4.0 / 6) - 1) < 0.1


def test_invalid_parameters_are_named():
    """ValueError messages name the offending parameter."""
    with pytest.raises(ValueError, match="scale"):
        tr.balanced_init([2, 2], scale=0.0)
    with pytest.raises(ValueError, match="delta"):
        tr.balanced_init([2, 2], scale=1.0, delta=-1.0)
    with pytest.raises(ValueError, match="widths"):
        tr.balanced_init([3, 1, 3], scale=1.0)
    with pytest.raises(ValueError, match="depth"):
        tr.preconditioner(torch.eye(2, dtype=F64), 0)
    with pytest.raises(ValueError, match="lr"):
        tr.end_to_end_step(torch.eye(2, dtype=F64), torch.eye(2, dtype=F64), -1.0, 2)
    with pytest.raises(ValueError, match="grad"):
        tr.end_to_end_step(torch.eye(2, dtype=F64), torch.eye(3, dtype=F64), 0.1, 2)
    with pytest.raises(ValueError, match="weights"):
        tr.end_to_end([torch.eye(2), torch.eye(3)])
    with pytest.raises(ValueError, match="t"):
        tr.gradient_flow([torch.eye(2, dtype=F64)], lambda w: w.sum(), -1.0)


# --- the preconditioner -----------------------------------------------------------------------


@pytest.mark.parametrize("shape,depth", [((3, 4), 2), ((4, 3), 3), ((3, 3), 5), ((2, 5), 4)])
def test_preconditioner_symmetric_psd_with_the_svd_spectrum(shape, depth):
    """P is symmetric, and for W = U diag(s) V^T its eigenvalues are
    sum_j s_a^{2(j-1)/N} s_b^{2(N-j)/N} over pairs (a, b) of W W^T's and W^T W's eigenvalues
    (s padded with zeros; 0^0 = 1): the SVD, not eigh; so P is PSD."""
    w = torch.randn(*shape, generator=_gen(6), dtype=F64)
    p = tr.preconditioner(w, depth)
    assert p.shape == (w.numel(), w.numel())
    torch.testing.assert_close(p, p.T, rtol=0, atol=1e-12)
    s = np.linalg.svd(w.numpy(), compute_uv=False)
    left = np.zeros(shape[0])
    right = np.zeros(shape[1])
    left[: len(s)] = s**2
    right[: len(s)] = s**2

    def power(x, q):
        return np.where(q == 0, 1.0, np.abs(x) ** q)

    expected = sorted(
        sum(power(a, (j - 1) / depth) * power(b, (depth - j) / depth) for j in range(1, depth + 1))
        for a in left
        for b in right
    )
    eigenvalues = torch.linalg.eigvalsh(p).numpy()
    np.testing.assert_allclose(np.sort(eigenvalues), expected, atol=1e-10)
    assert eigenvalues.min() > -1e-10


def test_preconditioner_closed_forms_depth_one_and_scalar():
    """Depth 1: P = I (gradient descent). A 1x1 network of depth N: P = N |w|^{2 - 2/N}."""
    w = torch.randn(3, 4, generator=_gen(7), dtype=F64)
    torch.testing.assert_close(tr.preconditioner(w, 1), torch.eye(12, dtype=F64))
    for depth in (1, 2, 3, 6):
        for value in (0.3, -1.7, 2.0):
            got = tr.preconditioner(torch.tensor([[value]], dtype=F64), depth)
            expected = depth * abs(value) ** (2 - 2 / depth)
            assert abs(float(got) - expected) < 1e-12 * max(1.0, expected)


def test_preconditioner_equals_a_dense_kronecker_construction():
    """P[(a, b), (c, d)] = sum_j A_j[a, c] B_j[b, d], built entry by entry with loops, and with
    A_j = (W W^T)^{(j-1)/N}, B_j = (W^T W)^{(N-j)/N} from scipy.linalg.fractional_matrix_power."""
    w = torch.randn(3, 3, generator=_gen(8), dtype=F64)  # invertible: scipy's domain
    depth = 3
    left, right = (w @ w.T).numpy(), (w.T @ w).numpy()
    dense = np.zeros((9, 9))
    for j in range(1, depth + 1):
        a = np.real(fractional_matrix_power(left, (j - 1) / depth))
        b = np.real(fractional_matrix_power(right, (depth - j) / depth))
        for r, c in np.ndindex(9, 9):
            dense[r, c] += a[r // 3, c // 3] * b[r % 3, c % 3]
    np.testing.assert_allclose(tr.preconditioner(w, depth).numpy(), dense, atol=1e-10)


def test_matrix_power_psd_against_scipy():
    """scipy.linalg.fractional_matrix_power on an SPD matrix; power 0 gives I even if singular."""
    m = torch.randn(4, 4, generator=_gen(9), dtype=F64)
    spd = m @ m.T + 0.1 * torch.eye(4, dtype=F64)
    for q in (1 / 3, 0.5, 2 / 3, 1.0, 1.5):
        expected = np.real(fractional_matrix_power(spd.numpy(), q))
        np.testing.assert_allclose(tr.matrix_power_psd(spd, q).numpy(), expected, atol=1e-10)
    singular = torch.zeros(3, 3, dtype=F64)
    torch.testing.assert_close(tr.matrix_power_psd(singular, 0.0), torch.eye(3, dtype=F64))


def test_preconditioner_times_vec_grad_is_the_end_to_end_step():
    """P(W) vec(G) (row-major vec) equals vec of (W - end_to_end_step(W, G, lr, N)) / lr, the
    sum of matrix products."""
    w = torch.randn(3, 5, generator=_gen(10), dtype=F64)
    g = torch.randn(3, 5, generator=_gen(11), dtype=F64)
    for depth in (1, 2, 4):
        direction = (w - tr.end_to_end_step(w, g, 0.5, depth)) / 0.5
        torch.testing.assert_close(
            tr.preconditioner(w, depth) @ g.reshape(-1), direction.reshape(-1)
        )


# --- end-to-end dynamics against the real product ---------------------------------------------


def test_end_to_end_step_matches_one_gradient_step_up_to_lr_squared():
    """The product after one gradient-descent step on balanced weights (autograd gradients,
    not P) minus end_to_end_step: halving lr quarters the gap (ratio within 10 % of 4)."""
    weights = tr.balanced_init([3, 5, 4, 2], scale=1.0, generator=_gen(12))
    target = torch.randn(2, 3, generator=_gen(13), dtype=F64)
    loss = tr.whitened_l2_loss(target)
    w_e = tr.end_to_end(weights)
    grad = w_e - target  # the gradient of 0.5 ||W - Phi||^2, by hand

    def gap(lr):
        after = tr.end_to_end(tr.gradient_descent(weights, loss, lr, 1)[1])
        return float(torch.linalg.matrix_norm(after - tr.end_to_end_step(w_e, grad, lr, 3)))

    gaps = [gap(lr) for lr in (4e-2, 2e-2, 1e-2, 5e-3)]
    for big, small in zip(gaps[:-1], gaps[1:]):
        assert 3.6 < big / small < 4.4, gaps
    # the first-order term itself is matched: the gap is a small part of the step
    step = w_e - tr.end_to_end_step(w_e, grad, 5e-3, 3)
    assert gaps[-1] < 0.05 * float(torch.linalg.matrix_norm(step))


def test_gradient_descent_is_torch_sgd_on_deep_linear():
    """torch.optim.SGD on a DeepLinear with the l_4 loss of its outputs, 5 steps."""
    torch.manual_seed(1)
    net = DeepLinear([4, 3, 2]).double()
    x = torch.randn(10, 4, dtype=F64)
    y = torch.randn(10, 2, dtype=F64)
    loss_fn = tr.lp_loss(x, y, 4)
    path = tr.gradient_descent([layer.weight for layer in net.layers], loss_fn, 0.1, 5)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    for _ in range(5):
        opt.zero_grad()
        ((net(x) - y).abs().pow(4).sum() / (4 * 10)).backward()
        opt.step()
    for mine, layer in zip(path[-1], net.layers):
        torch.testing.assert_close(mine, layer.weight.detach())


# --- balancedness along the flow and along descent ------------------------------------------------


def test_flow_conserves_the_balancedness_matrices():
    """Along the integrated flow from an unbalanced start, W_{j+1}^T W_{j+1} - W_j W_j^T (the
    matrices, not their norms) stays what it was to 1e-7, while the weights move by O(1)."""
    weights = _unbalanced([3, 4, 4, 2], seed=14)
    target = torch.randn(2, 3, generator=_gen(15), dtype=F64)
    later = tr.gradient_flow(weights, tr.whitened_l2_loss(target), 2.0)
    moved = max(float(torch.linalg.matrix_norm(a - b)) for a, b in zip(later, weights))
    assert moved > 0.1
    for before, after in zip(_gaps(weights), _gaps(later)):
        torch.testing.assert_close(after, before, rtol=0, atol=1e-7)


def test_flow_of_a_scalar_depth_two_net_is_logistic():
    """Balanced scalar net w1 = w2 = sqrt(u0), loss 0.5 (w2 w1 - phi)^2: the product follows
    u' = -2u(u - phi) (P = 2|u|), whose solution is u(t) = phi / (1 + (phi/u0 - 1) e^{-2 phi t})."""
    u0, phi = 0.05, 1.5
    start = [torch.tensor([[math.sqrt(u0)]], dtype=F64)] * 2
    loss = tr.whitened_l2_loss(torch.tensor([[phi]], dtype=F64))
    times = [0.0, 0.5, 1.0, 2.0, 4.0]
    path = tr.flow_trajectory(start, loss, times)
    for t, weights in zip(times, path):
        expected = phi / (1 + (phi / u0 - 1) * math.exp(-2 * phi * t))
        assert abs(float(tr.end_to_end(weights)) - expected) < 1e-8


def test_descent_changes_balancedness_by_exactly_lr_squared_terms():
    """One gradient step changes W_{j+1}^T W_{j+1} - W_j W_j^T by
    lr^2 (G_{j+1}^T G_{j+1} - G_j G_j^T) exactly (the first-order terms cancel, by the chain
    rule), G_j the autograd gradients; so halving lr quarters the drift."""
    weights = tr.balanced_init([3, 4, 4, 2], scale=1.0, generator=_gen(16))
    net_x = torch.randn(20, 3, generator=_gen(17), dtype=F64)
    net_y = torch.randn(20, 2, generator=_gen(18), dtype=F64)
    loss = tr.lp_loss(net_x, net_y, 4)
    leaves = [w.clone().requires_grad_(True) for w in weights]
    grads = torch.autograd.grad(loss(tr.end_to_end(leaves)), leaves)
    drifts = []
    for lr in (0.02, 0.01):
        after = tr.gradient_descent(weights, loss, lr, 1)[1]
        for before_gap, after_gap, g_low, g_high in zip(
            _gaps(weights), _gaps(after), grads[:-1], grads[1:]
        ):
            expected = lr**2 * (g_high.T @ g_high - g_low @ g_low.T)
            torch.testing.assert_close(after_gap - before_gap, expected, rtol=0, atol=1e-13)
        drifts.append(float(tr.balancedness(after).max()))
    assert 3.6 < drifts[0] / drifts[1] < 4.4


def test_saddle_at_the_origin_is_non_strict_from_depth_three():
    """Hessian of 0.5 (w_N ... w_1 - 1)^2 at 0 (autograd): depth 2 has the closed form
    [[0, -1], [-1, 0]] (a strict saddle, eigenvalue -1); depth 3 is exactly 0."""
    loss = tr.whitened_l2_loss(torch.ones(1, 1, dtype=F64))

    def as_function(depth):
        return lambda w: loss(tr.end_to_end([wi.reshape(1, 1) for wi in w]))

    h2 = torch.autograd.functional.hessian(as_function(2), torch.zeros(2, dtype=F64))
    torch.testing.assert_close(h2, torch.tensor([[0.0, -1.0], [-1.0, 0.0]], dtype=F64))
    h3 = torch.autograd.functional.hessian(as_function(3), torch.zeros(3, dtype=F64))
    assert float(h3.abs().max()) == 0.0


# --- the deficiency margin ---------------------------------------------------------------------


def test_deficiency_margin_against_a_sampled_search():
    """Weyl's inequality says loss(W_e) <= loss(W) whenever sigma_min(W) <= c; a search over
    4000 random near-singular W (sigma_min clipped to at most c) finds none with a lower loss;
    and the bound is tight: Phi with its smallest singular value set just above c beats W_e."""
    gen = _gen(19)
    u, _ = torch.linalg.qr(torch.randn(3, 3, generator=gen, dtype=F64))
    v, _ = torch.linalg.qr(torch.randn(4, 4, generator=gen, dtype=F64))
    phi = u @ torch.diag(torch.tensor([3.0, 2.0, 1.5], dtype=F64)) @ v[:3]
    w_e = phi + 0.4 * torch.randn(3, 4, generator=gen, dtype=F64) / math.sqrt(12)
    c = tr.deficiency_margin(w_e, phi)
    assert abs(c - (1.5 - float(torch.linalg.matrix_norm(w_e - phi)))) < 1e-12
    assert c > 0
    loss = tr.whitened_l2_loss(phi)
    best = math.inf
    for _ in range(4000):
        noise = torch.randn(3, 4, generator=gen, dtype=F64)
        w = phi + float(torch.rand(1, generator=gen)) * 2 * noise / noise.norm()
        uu, s, vh = torch.linalg.svd(w, full_matrices=False)
        s[-1] = min(float(s[-1]), c * float(torch.rand(1, generator=gen)))
        best = min(best, float(loss(uu @ torch.diag(s) @ vh)))
    assert best >= float(loss(w_e))
    uu, s, vh = torch.linalg.svd(phi, full_matrices=False)
    s[-1] = c + 1e-6
    assert float(loss(uu @ torch.diag(s) @ vh)) < float(loss(w_e))
    s[-1] = c
    assert abs(float(loss(uu @ torch.diag(s) @ vh)) - float(loss(w_e))) < 1e-10


# --- l_p loss and the acceleration experiment -------------------------------------------------


def test_lp_loss_and_gradient_against_loops():
    """(1/(p m)) sum_i sum_k |(W x_i - y_i)_k|^p by a Python loop, and its gradient
    (1/m) sum_i sign(r_i) |r_i|^{p-1} x_i^T in closed form."""
    x = torch.randn(6, 3, generator=_gen(20), dtype=F64)
    y = torch.randn(6, 2, generator=_gen(21), dtype=F64)
    w = torch.randn(2, 3, generator=_gen(22), dtype=F64, requires_grad=True)
    for p in (2.0, 3.0, 4.0):
        plain = w.detach()
        loop = sum(abs(float(plain[k] @ x[i] - y[i, k])) ** p for i in range(6) for k in range(2))
        loop /= p * 6
        value = tr.lp_loss(x, y, p)(w)
        assert abs(float(value.detach()) - loop) < 1e-12
        (grad,) = torch.autograd.grad(value, w)
        r = (x @ w.T - y).detach()
        expected = (torch.sign(r) * r.abs() ** (p - 1)).T @ x / 6
        torch.testing.assert_close(grad, expected)


def test_depth_runs_depth_one_and_small_lr_agreement():
    """Depth 1: the end-to-end dynamics is gradient descent (P = I), so both curves coincide;
    depth 3 from balanced weights: over a fixed time the end-to-end loss curve differs from the
    network's by O(lr) (halving lr halves the gap); steps_to_threshold is the first index at or below the threshold."""
    x = torch.randn(30, 4, generator=_gen(23), dtype=F64)
    y = x @ torch.randn(4, 1, generator=_gen(24), dtype=F64)
    loss = tr.lp_loss(x, y, 4)
    w1 = [torch.randn(1, 4, generator=_gen(25), dtype=F64)]
    torch.testing.assert_close(
        tr.depth_run(w1, loss, 0.01, 20), tr.depth_run(w1, loss, 0.01, 20, dynamics="end_to_end")
    )
    w3 = tr.balanced_init([4, 4, 4, 1], scale=1.0, generator=_gen(26))
    gaps = []
    for lr, steps in ((4e-4, 50), (2e-4, 100)):  # the same time, lr * steps = 0.02
        net = tr.depth_run(w3, loss, lr, steps)
        e2e = tr.depth_run(w3, loss, lr, steps, dynamics="end_to_end")
        gaps.append(float((net - e2e).abs().max()))
    assert 1.7 < gaps[0] / gaps[1] < 2.3, gaps  # a global error of order lr
    assert gaps[1] < 5e-3 * float(net[0] - net[-1])
    assert tr.steps_to_threshold(torch.tensor([3.0, 2.0, 1.0, 0.5]), 1.0) == 2
    assert tr.steps_to_threshold([3.0, 2.0], 1.0) is None


def test_acceleration_by_depth_picks_each_depths_fastest_lr():
    """On a tiny problem: each depth's best_lr/steps are the minimum of its own steps_by_lr,
    which equal steps_to_threshold of depth_run from the same balanced start (recomputed)."""
    x = torch.randn(40, 3, generator=_gen(27), dtype=F64)
    y = x @ torch.randn(3, 1, generator=_gen(28), dtype=F64)
    runs = tr.acceleration_by_depth(
        x, y, depths=(1, 2), lrs=[0.03, 0.1, 0.3], steps=150, threshold=1e-2, init_scale=0.3
    )
    assert [r.depth for r in runs] == [1, 2]
    for run in runs:
        reached = [s for s in run.steps_by_lr if s is not None]
        assert reached, run.steps_by_lr
        assert run.steps == min(reached)
        assert run.steps_by_lr[run.lrs.index(run.best_lr)] == run.steps
        assert float(run.losses[run.steps]) <= 1e-2 < float(run.losses[run.steps - 1])
    # depth 1 from the same start: gradient descent on the matrix itself
    start = torch.randn(1, 3, generator=_gen(0), dtype=F64) * (0.3 / math.sqrt(3))
    curve = tr.depth_run([start], tr.lp_loss(x, y, 4), runs[0].best_lr, 150)
    assert tr.steps_to_threshold(curve, 1e-2) == runs[0].steps


def test_batched_end_to_end_runs_match_single_steps():
    """acceleration_by_depth advances all learning rates as one batch; its end-to-end curves
    equal end_to_end_step applied one matrix at a time (from A, drawn as documented), which
    does not depend on how A is split into layers."""
    x = torch.randn(25, 4, generator=_gen(29), dtype=F64)
    y = x @ torch.randn(4, 1, generator=_gen(30), dtype=F64)
    lrs = [0.01, 0.03, 0.1]
    runs = tr.acceleration_by_depth(
        x,
        y,
        depths=(3,),
        lrs=lrs,
        steps=30,
        threshold=1e-12,
        init_scale=0.5,
        dynamics="end_to_end",
        seed=4,
    )
    loss = tr.lp_loss(x, y, 4)
    a = torch.randn(1, 4, generator=_gen(4), dtype=F64) * (0.5 / 2)
    for lr, curve in zip(lrs, runs[0].curves):
        assert bool(torch.isfinite(curve).all()), lr
        path = tr.end_to_end_descent(a, loss, lr, 30, depth=3)
        expected = torch.stack([loss(w) for w in path])
        torch.testing.assert_close(curve, expected, rtol=1e-9, atol=1e-14)


def test_gradient_descent_stops_at_divergence():
    """A scalar depth-2 net with a learning rate far past 2 / curvature blows up: the path ends
    at the last step whose loss is finite (checked by evaluating the loss)."""
    start = [torch.tensor([[3.0]], dtype=F64), torch.tensor([[3.0]], dtype=F64)]
    loss = tr.whitened_l2_loss(torch.ones(1, 1, dtype=F64))
    path = tr.gradient_descent(start, loss, 1.0, 50)
    assert 1 < len(path) < 51
    assert all(math.isfinite(float(loss(tr.end_to_end(w)))) for w in path)
    assert float(loss(tr.end_to_end(path[-1]))) > 1e10
