"""Lecture 4's claims ("Momentum and adaptive methods"), each tested against a quantity the
library did not compute: a closed form, a count, torch.optim's own implementation, a recurrence.

The notebook's check cells tie its prose to its run; these tests check that the library behind
each claim is right. The parameterisation and Nesterov equivalences, and RpropMinus against its
equations, are in test_optim_textbook.py; every method against torch.optim in
test_optim_reference.py.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import coursekit.optim as ck
from coursekit.optim.adadelta import adadelta_update
from coursekit.optim.rmsprop import rmsprop_update

NINE_UP_ONE_DOWN = [0.1] * 9 + [-0.9]  # seed 003: the minibatch gradients of one weight


def per_epoch(path: torch.Tensor, length: int = len(NINE_UP_ONE_DOWN)) -> torch.Tensor:
    """The weight's move over each epoch of `length` steps."""
    return path[::length].diff()


def test_rprop_rules_drift_eight_and_nine_steps_per_epoch_where_sgd_stands_still():
    """Counted from the signs: the ten gradients sum to zero, so SGD's epoch moves by
    -lr * 0 = 0; with delta held, seed 003's rule makes nine moves down and one up (8 delta),
    torch's Rprop (torch.optim.Rprop itself) nine down and none after the flip (9 delta)."""
    epochs, delta = 5, 1e-3
    gradients = NINE_UP_ONE_DOWN * epochs
    held = dict(lr=delta, step_sizes=(delta, delta))
    sgd = per_epoch(ck.feed_gradients(lambda p: ck.SGD(p, lr=0.1), gradients))
    assert sgd.abs().max() < 1e-12
    seed_rule = per_epoch(ck.feed_gradients(lambda p: ck.RpropMinus(p, **held), gradients))
    expected = torch.full((epochs,), -delta, dtype=torch.float64)
    torch.testing.assert_close(seed_rule, (9 - 1) * expected)
    for rprop in (torch.optim.Rprop, ck.Rprop):
        torch_rule = per_epoch(
            ck.feed_gradients(lambda p, rprop=rprop: rprop(p, **held), gradients)
        )
        torch.testing.assert_close(torch_rule, 9 * expected)


def test_growing_rprop_drift_speeds_up_by_the_counted_factors():
    """Counted per epoch: eight growths (x1.2) and two flips (x0.5 each) for seed 003's rule,
    eight growths and one flip for torch's (it forgets the gradient after a flip), so each
    epoch's drift is the previous one times 1.2^8 / 4 and 1.2^8 / 2."""
    gradients = NINE_UP_ONE_DOWN * 6
    for make, halvings in [(ck.RpropMinus, 2), (torch.optim.Rprop, 1)]:
        drift = per_epoch(ck.feed_gradients(lambda p, make=make: make(p, lr=1e-3), gradients))
        torch.testing.assert_close(
            drift[1:] / drift[:-1], torch.full((5,), 1.2**8 * 0.5**halvings, dtype=torch.float64)
        )


def test_rmsprop_moves_of_an_epoch_cancel_where_rprops_do_not():
    """A relation with SGD's exact cancellation: RMSprop divides every gradient of an epoch by
    (nearly) the same running scale, so its moves nearly cancel like SGD's (0 net move); Rprop's
    do not (net move 8 or 9 of 10 or 9 steps)."""
    gradients = NINE_UP_ONE_DOWN * 30

    def uncancelled(make) -> float:
        moves = ck.feed_gradients(make, gradients).diff().view(30, 10)[20:]
        return (moves.sum(dim=1).abs() / moves.abs().sum(dim=1)).max().item()

    assert uncancelled(lambda p: ck.RMSprop(p, lr=1e-3)) < 0.05
    held = dict(lr=1e-3, step_sizes=(1e-3, 1e-3))
    assert uncancelled(lambda p: ck.RpropMinus(p, **held)) == pytest.approx(0.8)
    assert uncancelled(lambda p: ck.Rprop(p, **held)) == pytest.approx(1.0)


def test_adagrad_step_decays_like_one_over_sqrt_t():
    """Closed form: with a constant gradient g and eps = 0, r_t = t g^2, so step t is
    lr / sqrt(t)."""
    lr, g, steps = 0.1, 3.0, 100
    moves = ck.feed_gradients(lambda p: ck.Adagrad(p, lr=lr, eps=0.0), [g] * steps).diff()
    t = torch.arange(1, steps + 1, dtype=torch.float64)
    torch.testing.assert_close(moves, -lr / t.sqrt(), rtol=1e-12, atol=0.0)


def test_adagrad_keeps_sqrt_k_larger_steps_for_a_weight_updated_every_kth_step():
    """Closed form: a weight with gradient g at every k-th step only has r = n g^2 after its
    n-th update, against r = n k g^2 for a weight updated at every step: at that step its move
    is sqrt(k) times larger."""
    lr, g, k, updates = 0.1, -2.0, 10, 30
    eps = 1e-200  # no effect but 0 / eps = 0 for the steps without a gradient (0 / 0 with 0)
    dense = ck.feed_gradients(lambda p: ck.Adagrad(p, lr=lr, eps=eps), [g] * (k * updates))
    sparse_gradients = ([0.0] * (k - 1) + [g]) * updates
    sparse = ck.feed_gradients(lambda p: ck.Adagrad(p, lr=lr, eps=eps), sparse_gradients)
    at_updates = torch.arange(k, k * updates + 1, k)  # steps k, 2k, ...: path indices
    ratio = sparse.diff()[at_updates - 1] / dense.diff()[at_updates - 1]
    torch.testing.assert_close(ratio, torch.full_like(ratio, math.sqrt(k)), rtol=1e-12, atol=0.0)
    assert (sparse.diff()[torch.arange(len(sparse_gradients)) % k != k - 1] == 0).all()


def test_rmsprop_settles_at_lr_over_root_mean_square_gradient():
    """Closed form: for gradients +-g (random signs), r_t = (1 - alpha^t) g^2 exactly, so the
    step per unit gradient is lr / (sqrt(1 - alpha^t) |g|), settling at lr / sqrt(E[g^2])."""
    lr, alpha, g, steps = 0.01, 0.99, 0.3, 1000
    signs = torch.randint(0, 2, (steps,), generator=torch.Generator().manual_seed(0)) * 2 - 1
    gradients = (g * signs).double()
    moves = ck.feed_gradients(lambda p: ck.RMSprop(p, lr=lr, alpha=alpha, eps=0.0), gradients)
    t = torch.arange(1, steps + 1, dtype=torch.float64)
    expected = lr / ((1 - alpha**t).sqrt() * g)
    torch.testing.assert_close(moves.diff().abs() / g, expected, rtol=1e-9, atol=0.0)
    assert expected[-1] == pytest.approx(lr / g, rel=1e-4)  # settled: alpha^1000 = 4e-5


def test_rmsprop_forgets_an_old_gradient_scale_by_alpha_per_step():
    """Closed form: after the gradient changes from g1 to g2, square_avg - g2^2 shrinks by
    alpha per step, so the old scale's weight falls to 1/e after about 1 / (1 - alpha) steps."""
    alpha, g1, g2 = 0.99, 2.0, 0.5
    w = nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = ck.RMSprop([w], lr=1e-3, alpha=alpha)
    for _ in range(50):
        w.grad = torch.full_like(w, g1)
        opt.step()
    start = opt.state[w]["square_avg"].item()
    for k in range(1, 201):
        w.grad = torch.full_like(w, g2)
        opt.step()
        expected = g2**2 + (start - g2**2) * alpha**k
        assert opt.state[w]["square_avg"].item() == pytest.approx(expected, rel=1e-12)
    assert alpha ** (1 / (1 - alpha)) == pytest.approx(math.exp(-1), rel=0.01)


def _one_step_update(update, scale: float, **hyper) -> float:
    """The first update of a weight measured in units scaled by `scale`, after a warmed-up history.

    A weight psi = c * theta sees gradients g / c; a history of squared gradients r / c^2 and
    (for AdaDelta) squared updates c^2 u.
    """
    theta, g, r, u = 2.0, 0.5, 0.3, 0.04  # r, u far above eps: the averages dominate
    dtype = torch.float64
    param = torch.tensor([scale * theta], dtype=dtype)
    grad = torch.tensor([g / scale], dtype=dtype)
    square_avg = torch.tensor([r / scale**2], dtype=dtype)
    step = torch.zeros((), dtype=dtype)
    if update is adadelta_update:
        acc_delta = torch.tensor([u * scale**2], dtype=dtype)
        update(param, grad, square_avg, acc_delta, step, **hyper)
    else:
        update(param, grad, square_avg, None, None, step, **hyper)
    return (scale * theta - param.item()) / scale  # the update, converted back to theta's units


def test_adadelta_update_has_the_units_of_the_parameter():
    """A relation from dimensional analysis: measured as psi = 100 theta and converted back,
    AdaDelta's update equals the one measured in theta; RMSprop's, unitless, is off by 1/100."""
    adadelta = dict(lr=1.0, rho=0.9, eps=1e-12, weight_decay=0.0, maximize=False)
    base = _one_step_update(adadelta_update, 1.0, **adadelta)
    assert math.isclose(_one_step_update(adadelta_update, 100.0, **adadelta), base, rel_tol=1e-6)

    rmsprop = dict(
        lr=0.01,
        alpha=0.9,
        eps=1e-12,
        weight_decay=0.0,
        momentum=0.0,
        centered=False,
        maximize=False,
    )
    base = _one_step_update(rmsprop_update, 1.0, **rmsprop)
    rescaled = _one_step_update(rmsprop_update, 100.0, **rmsprop)
    assert math.isclose(rescaled, base / 100.0, rel_tol=1e-6)  # off by the factor c


def test_adam_bias_correction_divides_the_averages_by_one_minus_beta_to_the_t():
    """Closed form: for a constant gradient g, Adam's stored averages are (1 - beta1^t) g and
    (1 - beta2^t) g^2 (0.63 g^2 after 1000 steps at beta2 = 0.999); the step taken is
    lr g / (|g| + eps), and the uncorrected one, lr m_t / sqrt(v_t), exceeds it by
    (1 - beta1^t) / sqrt(1 - beta2^t): 3.16 at t = 1."""
    lr, g, eps, (beta1, beta2) = 1e-3, -0.25, 1e-8, (0.9, 0.999)
    w = nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = ck.Adam([w], lr=lr, betas=(beta1, beta2), eps=eps)
    for t in range(1, 1001):
        before = w.item()
        w.grad = torch.full_like(w, g)
        opt.step()
        m, v = opt.state[w]["exp_avg"].item(), opt.state[w]["exp_avg_sq"].item()
        assert m == pytest.approx((1 - beta1**t) * g, rel=1e-9)
        assert v == pytest.approx((1 - beta2**t) * g * g, rel=1e-9)
        assert w.item() - before == pytest.approx(-lr * g / (abs(g) + eps), rel=1e-9)
        uncorrected = -lr * m / math.sqrt(v)
        assert uncorrected / (w.item() - before) == pytest.approx(
            (1 - beta1**t) / math.sqrt(1 - beta2**t), rel=1e-6
        )
        if t == 1:
            assert uncorrected / (w.item() - before) == pytest.approx(0.1 / math.sqrt(1e-3))


def _momentum_path(lam: float, lr: float, mu: float, nesterov: bool, steps: int = 300):
    """ck.SGD on f(x) = lam x^2 / 2 from x = 1: the points x_0, x_1, ..., x_steps."""
    w = nn.Parameter(torch.ones(1, dtype=torch.float64))
    opt = ck.SGD([w], lr=lr, momentum=mu, nesterov=nesterov)
    path = [w.item()]
    for _ in range(steps):
        w.grad = lam * w.detach().clone()
        opt.step()
        path.append(w.item())
    return torch.tensor(path, dtype=torch.float64)


@pytest.mark.parametrize("mu", [0.9, 0.99])
@pytest.mark.parametrize("lr_lam", [0.01, 0.05, 0.2, 0.5, 0.9])
def test_nesterov_overshoots_less_than_classical_momentum(mu, lr_lam):
    """Closed forms: on f = lam x^2 / 2, classical momentum follows
    x_{t+1} = (1 + mu - eta lam) x_t - mu x_{t-1} and Nesterov
    x_{t+1} = (1 - eta lam)(1 + mu) x_t - (1 - eta lam) mu x_{t-1}; their roots have products mu
    and mu (1 - eta lam). Relation: for 0 < eta lam < 1, Nesterov's furthest excursion past the
    minimum is the smaller."""
    lam = 2.0
    lr = lr_lam / lam
    paths = {}
    for nesterov, a, b in [
        (False, 1 + mu - lr_lam, mu),
        (True, (1 - lr_lam) * (1 + mu), (1 - lr_lam) * mu),
    ]:
        x = _momentum_path(lam, lr, mu, nesterov)
        torch.testing.assert_close(x[2:], a * x[1:-1] - b * x[:-2], rtol=0.0, atol=1e-12)
        paths[nesterov] = x
    classical, nesterov = (-paths[False]).max(), (-paths[True]).max()
    assert classical > 0  # it overshoots at all
    assert nesterov < 0.95 * classical, (nesterov, classical)


def test_adam_step_at_a_gradient_spike_tends_to_its_closed_form_limit():
    """Closed forms, as the spike G grows: after s gradients of 1, Adam's step at G tends to
    lr (1 - beta1) sqrt(1 - beta2^t) / ((1 - beta1^t) sqrt(1 - beta2)) (3.1 lr at t = 3000),
    AdaMax's to lr (1 - beta1) / (1 - beta1^t) (0.1 lr): one spike pushes Adam past lr,
    AdaMax not."""
    lr, (beta1, beta2), s = 1e-3, (0.9, 0.999), 2999
    t, spike = s + 1, 1e7
    gradients = [1.0] * s + [spike]
    adam = ck.feed_gradients(lambda p: torch.optim.Adam(p, lr=lr), gradients).diff()[-1]
    adamax = ck.feed_gradients(lambda p: torch.optim.Adamax(p, lr=lr), gradients).diff()[-1]
    adam_limit = lr * (1 - beta1) / (1 - beta1**t) * math.sqrt((1 - beta2**t) / (1 - beta2))
    assert -adam.item() == pytest.approx(adam_limit, rel=1e-3)
    assert -adamax.item() == pytest.approx(lr * (1 - beta1) / (1 - beta1**t), rel=1e-3)
    assert -adam.item() > 3 * lr > lr > -adamax.item()


@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.5, 0.9), (0.9, 0.95)])
def test_adamax_step_bound_holds_for_torch_adamax_on_arbitrary_gradients(betas):
    """torch.optim.Adamax itself, on 20 random gradient sequences (random signs, sizes over six
    orders of magnitude, spikes): no step exceeds adamax_step_bound(lr, betas, t)."""
    lr, steps = 0.01, 300
    gen = torch.Generator().manual_seed(0)
    bounds = torch.tensor(
        [ck.adamax_step_bound(lr, betas, t) for t in range(1, steps + 1)], dtype=torch.float64
    )
    worst = 0.0
    for _ in range(20):
        sizes = 10 ** (6 * torch.rand(steps, generator=gen, dtype=torch.float64) - 3)
        signs = torch.where(torch.rand(steps, generator=gen) < 0.3, -1.0, 1.0).double()
        moves = (
            ck.feed_gradients(lambda p: torch.optim.Adamax(p, lr=lr, betas=betas), sizes * signs)
            .diff()
            .abs()
        )
        worst = max(worst, (moves / bounds).max().item())
    assert worst <= 1 + 1e-12


@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.5, 0.9), (0.0, 0.99)])
def test_adamax_step_bound_is_reached_by_gradients_shrinking_by_beta2(betas):
    """torch.optim.Adamax (eps = 0) on |g_t| = beta2^t: every past gradient, decayed, is the
    current maximum, so each step equals the bound; above lr from t = 2 when beta1 > 0
    (Kingma & Ba's |step| <= lr is exceeded), and tending to lr beta2 (1 - beta1) / (beta2 - beta1)."""
    lr, steps = 0.01, 2000
    beta1, beta2 = betas
    gradients = [beta2**t for t in range(1, steps + 1)]
    moves = (
        ck.feed_gradients(lambda p: torch.optim.Adamax(p, lr=lr, betas=betas, eps=0.0), gradients)
        .diff()
        .abs()
    )
    bounds = torch.tensor(
        [ck.adamax_step_bound(lr, betas, t) for t in range(1, steps + 1)], dtype=torch.float64
    )
    torch.testing.assert_close(moves, bounds, rtol=1e-9, atol=0.0)
    limit = lr * beta2 * (1 - beta1) / (beta2 - beta1)
    assert ck.adamax_step_bound(lr, betas) == pytest.approx(limit, rel=1e-12)
    assert moves[-1].item() == pytest.approx(limit, rel=1e-6)
    if beta1 > 0:
        assert (moves[1:] > lr).all()
