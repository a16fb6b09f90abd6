"""Do the seeds' textbook forms trace torch's trajectories under the stated change of variables?"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import coursekit.optim as ck


def quadratic_loss(w: torch.Tensor) -> torch.Tensor:
    # An ill-conditioned quadratic plus a quartic term, so the gradient is not linear.
    scales = torch.tensor([1.0, 10.0, 0.1], dtype=w.dtype)
    return 0.5 * (scales * (w - 1.0) ** 2).sum() + 0.01 * (w**4).sum()


def run(opt_cls, steps: int, closure_needed: bool = False, **kwargs) -> tuple[list, object]:
    w = nn.Parameter(torch.tensor([2.0, -1.0, 3.0], dtype=torch.float64))
    opt = opt_cls([w], **kwargs)
    trajectory = []

    def closure():
        opt.zero_grad()
        loss = quadratic_loss(w)
        loss.backward()
        return loss

    for _ in range(steps):
        if closure_needed:
            opt.step(closure)
        else:
            closure()
            opt.step()
        trajectory.append(w.detach().clone())
    return trajectory, (w, opt)


@pytest.mark.parametrize("mu", [0.0, 0.5, 0.9, 0.99])
def test_running_average_momentum_equals_torch_sgd_with_lr_over_one_minus_mu(mu):
    lr = 0.01
    ours, _ = run(ck.AveragedMomentumSGD, 60, lr=lr / (1 - mu), momentum=mu)
    torch_traj, _ = run(torch.optim.SGD, 60, lr=lr, momentum=mu)
    for a, b in zip(ours, torch_traj):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_running_average_momentum_differs_without_the_rescaling():
    """The equivalence needs lr' = lr / (1 - mu): the same lr gives another trajectory."""
    ours, _ = run(ck.AveragedMomentumSGD, 20, lr=0.01, momentum=0.9)
    torch_traj, _ = run(torch.optim.SGD, 20, lr=0.01, momentum=0.9)
    assert not torch.allclose(ours[-1], torch_traj[-1], atol=1e-3)


@pytest.mark.parametrize("mu", [0.5, 0.9])
def test_sutskever_nesterov_is_torch_nesterov_in_the_look_ahead_variable(mu):
    lr = 0.02
    w = nn.Parameter(torch.tensor([2.0, -1.0, 3.0], dtype=torch.float64))
    opt = ck.SutskeverNesterov([w], lr=lr, momentum=mu)

    def closure():
        opt.zero_grad()
        loss = quadratic_loss(w)
        loss.backward()
        return loss

    torch_traj, _ = run(torch.optim.SGD, 50, lr=lr, momentum=mu, nesterov=True)
    for phi in torch_traj:
        opt.step(closure)
        velocity = opt.state[w]["velocity"]
        # torch's parameter is Sutskever's look-ahead point theta - mu v.
        torch.testing.assert_close(w.detach() - mu * velocity, phi, rtol=1e-12, atol=1e-12)


def test_sutskever_nesterov_needs_a_closure():
    opt = ck.SutskeverNesterov([nn.Parameter(torch.zeros(2))])
    with pytest.raises(ValueError, match="closure"):
        opt.step()


def test_schedules_follow_their_formulas_and_drive_lambda_lr():
    inv_sqrt, inv = ck.inverse_sqrt_decay(), ck.inverse_decay(offset=10.0)
    for k in [0, 1, 3, 99]:
        assert inv_sqrt(k) == pytest.approx(1 / math.sqrt(k + 1))
        assert inv(k) == pytest.approx(10.0 / (k + 10.0))
    warm = ck.linear_scaling_warmup(batch_size=1024, base_batch_size=256, warmup_steps=4)
    assert [warm(k) for k in range(6)] == pytest.approx([1.0, 1.75, 2.5, 3.25, 4.0, 4.0])
    assert ck.linear_scaling_warmup(512, 256)(0) == 2.0  # no warm-up: the scaled lr at once

    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, inv_sqrt)
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([0.1 / math.sqrt(k + 1) for k in range(4)])


@pytest.mark.parametrize(
    "factory,kwargs,param",
    [
        (ck.inverse_sqrt_decay, dict(offset=0.0), "offset"),
        (ck.inverse_decay, dict(offset=-1.0), "offset"),
        (ck.linear_scaling_warmup, dict(batch_size=0, base_batch_size=1), "batch_size"),
        (
            ck.linear_scaling_warmup,
            dict(batch_size=8, base_batch_size=1, warmup_steps=-1),
            "warmup_steps",
        ),
    ],
)
def test_schedule_arguments_are_checked(factory, kwargs, param):
    with pytest.raises(ValueError, match=param):
        factory(**kwargs)


def _rprop_by_hand(gradients, lr, etas, step_sizes):
    """Seed 003's Rprop for one weight in plain Python floats, written from its equations."""
    etaminus, etaplus = etas
    theta, delta, prev, path = 0.0, lr, 0.0, []
    for g in gradients:
        if g * prev > 0:
            delta = min(delta * etaplus, step_sizes[1])
        elif g * prev < 0:
            delta = max(delta * etaminus, step_sizes[0])
        theta -= delta * ((g > 0) - (g < 0))
        prev = g
        path.append(theta)
    return path


@pytest.mark.parametrize(
    "hyper",
    [
        dict(lr=0.01, etas=(0.5, 1.2), step_sizes=(1e-6, 50)),
        dict(lr=0.1, etas=(0.3, 1.5), step_sizes=(0.02, 0.4)),
    ],
)
def test_rprop_minus_follows_its_equations_weight_by_weight(hyper):
    """Against a plain Python loop over each weight's gradients, written from the equations
    (grow, shrink or keep delta; always move by -delta sign(g)); the gradients flip sign, repeat
    it, and are sometimes exactly zero."""
    gen = torch.Generator().manual_seed(0)
    steps, n = 80, 4
    grads = torch.randn(steps, n, generator=gen, dtype=torch.float64)
    grads[:, 0] = grads[:, 0].abs()  # one weight never flips: delta runs into its upper bound
    grads[torch.rand(steps, n, generator=gen) < 0.1] = 0.0
    w = nn.Parameter(torch.zeros(n, dtype=torch.float64))
    opt = ck.RpropMinus([w], **hyper)
    path = []
    for g in grads:
        w.grad = g.clone()
        opt.step()
        path.append(w.detach().clone())
    path = torch.stack(path)
    for i in range(n):
        expected = torch.tensor(_rprop_by_hand(grads[:, i].tolist(), **hyper), dtype=torch.float64)
        torch.testing.assert_close(path[:, i], expected, rtol=1e-12, atol=1e-15)
    assert opt.state[w]["step"].item() == steps


def test_rprop_minus_equals_torch_rprop_when_no_sign_flips():
    """torch.optim.Rprop itself: without a sign flip the two rules are the same, trajectory and
    state (the keys are torch's: step, prev, step_size); 60 steps reach delta_max = 50."""
    gen = torch.Generator().manual_seed(1)
    signs = torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64)
    grads = signs * torch.rand(60, 3, generator=gen, dtype=torch.float64)  # signs held per weight
    ours_w = nn.Parameter(torch.zeros(3, dtype=torch.float64))
    torch_w = nn.Parameter(torch.zeros(3, dtype=torch.float64))
    ours, theirs = ck.RpropMinus([ours_w], lr=0.01), torch.optim.Rprop([torch_w], lr=0.01)
    for g in grads:
        ours_w.grad, torch_w.grad = g.clone(), g.clone()
        ours.step()
        theirs.step()
        torch.testing.assert_close(ours_w, torch_w, rtol=1e-14, atol=0.0)
    assert set(ours.state[ours_w]) == set(theirs.state[torch_w]) == {"step", "prev", "step_size"}
    for key in ("step", "prev", "step_size"):
        torch.testing.assert_close(ours.state[ours_w][key], theirs.state[torch_w][key])
    assert ours.state[ours_w]["step_size"].max().item() == 50


def test_rprop_minus_moves_after_a_flip_where_torch_stands_still():
    """By hand: gradients +1 then -1 with delta_0 = 0.1, eta- = 0.5: seed 003's rule moves to
    -0.1 then back by 0.05 to -0.05; torch.optim.Rprop stays at -0.1 after the flip."""
    ours = ck.feed_gradients(lambda p: ck.RpropMinus(p, lr=0.1), [1.0, -1.0])
    theirs = ck.feed_gradients(lambda p: torch.optim.Rprop(p, lr=0.1), [1.0, -1.0])
    torch.testing.assert_close(ours, torch.tensor([0.0, -0.1, -0.05], dtype=torch.float64))
    torch.testing.assert_close(theirs, torch.tensor([0.0, -0.1, -0.1], dtype=torch.float64))


@pytest.mark.parametrize(
    "kwargs,param",
    [
        (dict(lr=-0.1), "lr"),
        (dict(etas=(1.5, 1.2)), "etas"),
        (dict(etas=(0.5, 0.9)), "etas"),
        (dict(etas=(0.0, 1.2)), "etas"),
        (dict(step_sizes=(1.0, 0.1)), "step_sizes"),
        (dict(step_sizes=(-1.0, 0.1)), "step_sizes"),
    ],
)
def test_rprop_minus_arguments_are_checked(kwargs, param):
    with pytest.raises(ValueError, match=f"Invalid {param}"):
        ck.RpropMinus([nn.Parameter(torch.zeros(2))], **kwargs)


def test_feed_gradients_gives_sgds_path_the_running_sum():
    """Closed form: SGD from 0 is at -lr (g_1 + ... + g_t) after t steps; the path starts at 0,
    has one point per gradient more, and accepts a list or a tensor."""
    gradients = [0.5, -2.0, 1.25, 3.0]
    path = ck.feed_gradients(lambda p: ck.SGD(p, lr=0.1), gradients)
    expected = torch.tensor(
        [0.0, *(-0.1 * torch.tensor(gradients).cumsum(0)).tolist()], dtype=torch.float64
    )
    torch.testing.assert_close(path, expected)
    as_tensor = ck.feed_gradients(
        lambda p: ck.SGD(p, lr=0.1), torch.tensor(gradients), dtype=torch.float32
    )
    assert as_tensor.dtype == torch.float64 and as_tensor.shape == (len(gradients) + 1,)
    torch.testing.assert_close(as_tensor, expected, rtol=1e-6, atol=1e-6)


def test_adamax_step_bound_special_cases():
    """Closed forms: lr at the first step and for beta1 = 0 (m_t = g_t, u_t >= |g_t|);
    lr beta2 (1 - beta1) / (beta2 - beta1) over all steps; infinite when beta1 >= beta2;
    rising with t."""
    assert ck.adamax_step_bound(0.5, (0.9, 0.999), 1) == 0.5
    assert ck.adamax_step_bound(0.5, (0.0, 0.999)) == 0.5
    assert ck.adamax_step_bound(2.0) == pytest.approx(2.0 * 0.999 * 0.1 / 0.099)
    assert ck.adamax_step_bound(1.0, (0.9, 0.9)) == math.inf
    assert ck.adamax_step_bound(1.0, (0.9, 0.9), 5) == pytest.approx(0.1 * 5 / (1 - 0.9**5))
    assert ck.adamax_step_bound(1.0, (0.5, 0.0), 2) == math.inf
    rising = [ck.adamax_step_bound(1.0, (0.9, 0.999), t) for t in range(1, 200)]
    assert all(a < b for a, b in zip(rising, rising[1:]))


@pytest.mark.parametrize(
    "kwargs,param",
    [
        (dict(lr=-1.0), "lr"),
        (dict(lr=1.0, betas=(1.0, 0.999)), "betas\\[0\\]"),
        (dict(lr=1.0, betas=(0.9, -0.1)), "betas\\[1\\]"),
        (dict(lr=1.0, step=0), "step"),
        (dict(lr=1.0, step=2.5), "step"),
    ],
)
def test_adamax_step_bound_arguments_are_checked(kwargs, param):
    with pytest.raises(ValueError, match=f"Invalid {param}"):
        ck.adamax_step_bound(**kwargs)
