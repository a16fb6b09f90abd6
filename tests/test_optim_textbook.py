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
