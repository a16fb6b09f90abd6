"""Are coursekit.second_order's Newton and HessianFree the methods they claim to be?

The references: the dense solve of (H + lambda I) d = -g with the Hessian from torch.func
(`curvature.hessian`, a route separate from the optimizers' double backward), closed-form
minimisers and critical points, the change-of-variables law of Newton's step, torch.optim.LBFGS
on a strictly convex problem, and a count of Hessian-vector products taken from outside.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from coursekit import curvature
from coursekit.models import MLP, ParameterVector
from coursekit.second_order import HessianFree, Newton
from coursekit.second_order import newton as newton_module

F64 = torch.float64


def _spd(d: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=F64))
    return q @ torch.diag(torch.logspace(0, 2, d, dtype=F64)) @ q.T


def _quadratic(d: int = 6, seed: int = 0):
    """L(theta) = theta' A theta / 2 - b' theta, minimised at A^-1 b."""
    a = _spd(d, seed)
    b = torch.randn(d, generator=torch.Generator().manual_seed(seed + 1), dtype=F64)
    model = ParameterVector(torch.randn(d, generator=torch.Generator().manual_seed(seed + 2)))
    model = model.double()
    (theta,) = model.parameters()
    return model, theta, a, b, lambda: 0.5 * theta @ a @ theta - b @ theta


def _classification(seed: int = 0, n: int = 40):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=g, dtype=F64)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long() + (x[:, 2] > 1).long()
    model = MLP([4, 5, 3], activation="tanh", generator=g).double()
    return model, x, y


def test_newton_solves_a_quadratic_in_one_step():
    """The full Newton step from any start lands on A^-1 b (dense solve)."""
    _, theta, a, b, loss = _quadratic()
    Newton([theta]).step(loss)
    torch.testing.assert_close(theta.detach(), torch.linalg.solve(a, b), rtol=1e-10, atol=1e-12)


def test_damped_newton_step_is_the_dense_damped_solve_on_an_mlp():
    """theta_1 - theta_0 = -lr (H + lambda I)^-1 g, with H from torch.func's Hessian."""
    model, x, y = _classification()

    def loss_fn(m):
        return F.cross_entropy(m(x), y)

    h = curvature.hessian(model, loss_fn)
    g = torch.cat([t.reshape(-1) for t in torch.autograd.grad(loss_fn(model), model.parameters())])
    before = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    Newton(model.parameters(), lr=0.5, damping=0.3).step(lambda: loss_fn(model))
    after = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    expected = -0.5 * torch.linalg.solve(h + 0.3 * torch.eye(len(g), dtype=F64), g)
    torch.testing.assert_close(after - before, expected, rtol=1e-9, atol=1e-12)


def test_newton_goes_to_the_saddle_of_x2_minus_y2():
    """Undamped Newton from anywhere reaches the critical point (0, 0) of x^2 - y^2 at once."""
    model = ParameterVector(torch.tensor([0.7, -0.4], dtype=F64))
    (p,) = model.parameters()
    Newton([p]).step(lambda: p[0] ** 2 - p[1] ** 2)
    assert p.detach().abs().max().item() < 1e-14


def test_newton_step_has_the_units_of_the_parameter():
    """Change variables theta = D phi (D diagonal): Newton's step in phi is D^-1 times its step
    in theta, on the non-quadratic Rosenbrock function, while a gradient step is D times it."""
    d = torch.tensor([3.0, 0.1], dtype=F64)
    theta0 = torch.tensor([-1.2, 1.0], dtype=F64)

    def rosenbrock(t):
        return (1 - t[0]) ** 2 + 100 * (t[1] - t[0] ** 2) ** 2

    theta = torch.nn.Parameter(theta0.clone())
    phi = torch.nn.Parameter(theta0 / d)
    Newton([theta], damping=0.0).step(lambda: rosenbrock(theta))
    Newton([phi], damping=0.0).step(lambda: rosenbrock(d * phi))
    torch.testing.assert_close(d * phi.detach(), theta.detach(), rtol=1e-12, atol=1e-12)


def _counting(monkeypatch) -> list[int]:
    """Count the Hessian-vector products the optimizer really takes, from outside it."""
    calls = [0]
    real = newton_module.loss_hvp

    def counted(loss, params):
        g, apply = real(loss, params)

        def apply_counted(v):
            calls[0] += 1
            return apply(v)

        return g, apply_counted

    monkeypatch.setattr(newton_module, "loss_hvp", counted)
    return calls


def test_hessian_free_with_a_full_cg_budget_is_the_damped_newton_step(monkeypatch):
    """CG run to its tolerance on (A + lambda I) d = -g is the dense damped solve; the counters
    agree with the products counted from outside and with the closure's own call count."""
    calls = _counting(monkeypatch)
    _, theta, a, b, loss = _quadratic(d=8, seed=3)
    evaluations = [0]

    def closure():
        evaluations[0] += 1
        return loss()

    start = theta.detach().clone()
    opt = HessianFree([theta], damping=0.2, cg_max_iter=100, cg_tol=1e-12, adapt_damping=False)
    opt.step(closure)
    g = a @ start - b
    expected = start - torch.linalg.solve(a + 0.2 * torch.eye(8, dtype=F64), g)
    torch.testing.assert_close(theta.detach(), expected, rtol=1e-9, atol=1e-10)
    assert opt.last_cg.converged
    assert opt.hvp_evaluations == calls[0]
    assert opt.loss_evaluations == evaluations[0] == 2
    assert opt.gradient_evaluations == 1


def test_hessian_free_respects_its_cg_budget(monkeypatch):
    calls = _counting(monkeypatch)
    _, theta, _, _, loss = _quadratic(d=30, seed=4)
    opt = HessianFree([theta], damping=1e-3, cg_max_iter=3, cg_tol=0.0)
    for _ in range(4):
        opt.step(loss)
        assert opt.last_cg.iterations <= 3
        # On a quadratic the model is exact whatever CG's direction: rho = 1 even though CG was
        # cut short, so the H d taken from CG's residual is the true one.
        assert opt.last_reduction_ratio == pytest.approx(1.0, abs=1e-8)
    assert opt.hvp_evaluations == calls[0] <= 4 * (3 + 1)  # CG and its warm start's residual


def test_damping_falls_by_two_thirds_when_the_model_is_exact():
    """On a quadratic the undamped model predicts the change exactly: rho = 1 every step."""
    _, theta, _, _, loss = _quadratic(d=5, seed=5)
    opt = HessianFree([theta], damping=1.0, cg_max_iter=50, cg_tol=1e-10)
    for _ in range(3):
        opt.step(loss)
        assert opt.last_reduction_ratio == pytest.approx(1.0, abs=1e-8)
    assert opt.param_groups[0]["damping"] == pytest.approx((2 / 3) ** 3)


def test_a_step_that_raises_the_loss_is_undone_and_damping_rises():
    """sqrt(1 + x^2) at x = 2: the Newton step (to about -8) overshoots; the loss would rise."""
    x = torch.nn.Parameter(torch.tensor([2.0], dtype=F64))
    opt = HessianFree([x], damping=1e-6, cg_tol=0.0)
    opt.step(lambda: torch.sqrt(1 + x[0] ** 2))
    assert x.item() == 2.0
    assert opt.last_reduction_ratio < 0
    assert opt.param_groups[0]["damping"] == pytest.approx(1.5e-6)


def test_hessian_free_reaches_lbfgs_minimiser_of_regularised_logistic_regression():
    """Strictly convex: HF's limit equals torch.optim.LBFGS's (strong Wolfe) to 1e-6, and the
    loss never rises from step to step."""
    g = torch.Generator().manual_seed(6)
    x = torch.randn(80, 5, generator=g, dtype=F64)
    y = x @ torch.randn(5, generator=g, dtype=F64) + 0.5 * torch.randn(80, generator=g) > 0

    def loss_of(w):
        return F.binary_cross_entropy_with_logits(x @ w, y.to(F64)) + 0.01 * (w @ w)

    w_hf = torch.nn.Parameter(torch.zeros(5, dtype=F64))
    opt = HessianFree([w_hf], damping=1.0, cg_max_iter=10)
    losses = [opt.step(lambda: loss_of(w_hf)).item() for _ in range(30)]
    assert all(b <= a for a, b in zip(losses, losses[1:]))

    w_lbfgs = torch.nn.Parameter(torch.zeros(5, dtype=F64))
    lbfgs = torch.optim.LBFGS(
        [w_lbfgs],
        max_iter=200,
        tolerance_grad=1e-12,
        tolerance_change=0,
        line_search_fn="strong_wolfe",
    )

    def closure():
        lbfgs.zero_grad()
        loss = loss_of(w_lbfgs)
        loss.backward()
        return loss

    lbfgs.step(closure)
    torch.testing.assert_close(w_hf.detach(), w_lbfgs.detach(), rtol=1e-6, atol=1e-7)


def test_hessian_free_trains_an_mlp_and_keeps_its_counters_in_the_state_dict():
    model, x, y = _classification(seed=7, n=60)
    opt = HessianFree(model.parameters(), damping=1.0, cg_max_iter=20)
    first = F.cross_entropy(model(x), y).item()
    for _ in range(15):
        opt.step(lambda: F.cross_entropy(model(x), y))
    assert F.cross_entropy(model(x), y).item() < 0.5 * first
    again = HessianFree(model.parameters())
    again.load_state_dict(opt.state_dict())
    assert again.hvp_evaluations == opt.hvp_evaluations > 15
    assert again.param_groups[0]["damping"] == opt.param_groups[0]["damping"]


@pytest.mark.parametrize(
    "cls,kwargs,name",
    [
        (Newton, dict(lr=0.0), "lr"),
        (Newton, dict(damping=-1.0), "damping"),
        (Newton, dict(max_params=3), "max_params"),
        (HessianFree, dict(lr=-1.0), "lr"),
        (HessianFree, dict(damping=0.0), "damping"),
        (HessianFree, dict(cg_max_iter=0), "cg_max_iter"),
        (HessianFree, dict(cg_tol=-1.0), "cg_tol"),
        (HessianFree, dict(warm_start=1.5), "warm_start"),
    ],
)
def test_invalid_hyper_parameters_raise_value_error_naming_them(cls, kwargs, name):
    with pytest.raises(ValueError, match=f"Invalid {name}"):
        cls([torch.nn.Parameter(torch.zeros(6))], **kwargs)


@pytest.mark.parametrize("cls", [Newton, HessianFree])
def test_a_closure_that_backpropagates_or_is_missing_gets_a_clear_error(cls):
    p = torch.nn.Parameter(torch.ones(2))
    opt = cls([p])
    with pytest.raises(ValueError, match="closure"):
        opt.step()
    with pytest.raises(ValueError, match="backward"):
        opt.step(lambda: (p @ p).detach())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_hessian_free_steps_on_cuda_as_on_cpu():
    results = []
    for device in ("cpu", "cuda"):
        model, x, y = _classification(seed=8)
        model, x, y = model.to(device), x.to(device), y.to(device)
        opt = HessianFree(model.parameters(), cg_max_iter=10)
        for _ in range(3):
            opt.step(lambda model=model, x=x, y=y: F.cross_entropy(model(x), y))
        results.append(torch.cat([p.detach().cpu().reshape(-1) for p in model.parameters()]))
    torch.testing.assert_close(results[0], results[1], rtol=1e-8, atol=1e-10)
    assert math.isfinite(results[0].sum().item())
