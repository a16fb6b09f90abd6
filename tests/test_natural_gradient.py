"""Is coursekit.second_order's Fisher matrix the Fisher matrix, and its natural gradient Amari's?

The references: the Hessian of the mean negative log-likelihood from torch.func
(`curvature.hessian`; for logistic regression, a GLM with its canonical link, the Fisher and the
Hessian are the same matrix), the expectation over labels written out with one autograd call
per sample and label, per-sample gradients taken one at a time, and the transformation law of
the natural gradient under an invertible linear change of parameters.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from coursekit import curvature
from coursekit.models import MLP
from coursekit.second_order import NaturalGradient, fisher_matrix, negative_log_likelihood

F64 = torch.float64


def _data(n=30, d=4, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=F64)
    y = torch.randint(max(classes, 2), (n,), generator=g)
    return x, y


def _flat_grad(loss, model):
    grads = torch.autograd.grad(loss, list(model.parameters()), retain_graph=True)
    return torch.cat([t.reshape(-1) for t in grads])


@pytest.mark.parametrize("classes", [1, 3])
def test_fisher_of_logistic_regression_is_its_hessian(classes):
    """Binary (one logit) and softmax: F equals the Hessian of the mean NLL (torch.func)."""
    torch.manual_seed(1)
    x, y = _data(classes=classes)
    model = nn.Linear(4, classes).double()
    hessian = curvature.hessian(model, lambda m: negative_log_likelihood(m(x), y))
    torch.testing.assert_close(fisher_matrix(model, x), hessian, rtol=1e-10, atol=1e-12)


def test_fisher_of_an_mlp_is_the_expectation_over_the_models_labels():
    """F = 1/N sum_n sum_c p(c | x_n) grad log p(c | x_n) grad log p(c | x_n)', one autograd
    call per sample and label."""
    x, _ = _data(n=12, seed=2)
    model = MLP([4, 5, 3], activation="tanh", generator=torch.Generator().manual_seed(2)).double()
    expected = 0
    for xn in x:
        log_p = torch.log_softmax(model(xn[None])[0], dim=0)
        for c in range(3):
            g = _flat_grad(log_p[c], model)
            expected = expected + log_p[c].exp().detach() * torch.outer(g, g)
    torch.testing.assert_close(fisher_matrix(model, x), expected / len(x), rtol=1e-10, atol=1e-12)


def test_empirical_fisher_is_the_mean_outer_product_of_per_sample_gradients():
    x, y = _data(n=10, seed=3)
    model = MLP([4, 6, 3], generator=torch.Generator().manual_seed(3)).double()
    grads = [_flat_grad(F.cross_entropy(model(xn[None]), yn[None]), model) for xn, yn in zip(x, y)]
    expected = sum(torch.outer(g, g) for g in grads) / len(x)
    result = fisher_matrix(model, x, kind="empirical", targets=y)
    torch.testing.assert_close(result, expected, rtol=1e-10, atol=1e-12)
    # Not the Fisher: the observed labels are not the model's own.
    exact = fisher_matrix(model, x)
    assert (result - exact).norm() > 0.1 * exact.norm()


def test_natural_gradient_step_on_logistic_regression_is_the_newton_step():
    """With F = H, the undamped natural gradient step is -lr H^-1 g (dense solve)."""
    torch.manual_seed(4)
    x, y = _data(seed=4)
    model = nn.Linear(4, 1).double()
    loss_fn = lambda m: negative_log_likelihood(m(x), y)  # noqa: E731
    h = curvature.hessian(model, loss_fn)
    g = _flat_grad(loss_fn(model), model)
    before = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    NaturalGradient(model, lr=0.7, damping=0.0).step(x, y)
    after = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    torch.testing.assert_close(after - before, -0.7 * torch.linalg.solve(h, g), rtol=1e-9, atol=0)


def _logistic_runs(optimizer, steps=5):
    """Logistic regression on x and on x A (weights w = A w'): the second run mapped back."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(50, 3, generator=g, dtype=F64)
    y = (x[:, 0] - x[:, 1] + 0.3 * torch.randn(50, generator=g, dtype=F64) > 0).long()
    a = torch.tensor([[2.0, 0.5, 0.0], [0.0, 0.3, 1.0], [1.0, 0.0, 4.0]], dtype=F64)
    w0 = torch.tensor([0.1, -0.2, 0.3], dtype=F64)
    paths = []
    for inputs, start, back in (
        (x, w0, torch.eye(3, dtype=F64)),
        (x @ a, torch.linalg.solve(a, w0), a),
    ):
        model = nn.Linear(3, 1, bias=False).double()
        with torch.no_grad():
            model.weight.copy_(start[None])
        step = optimizer(model)
        path = []
        for _ in range(steps):
            step(inputs, y)
            path.append(back @ model.weight.detach()[0])
        paths.append(torch.stack(path))
    return paths


def test_natural_gradient_is_invariant_to_an_invertible_linear_reparameterisation():
    """Mapped back through A, the natural gradient path on x A is the path on x (to 1e-10);
    plain gradient descent's is not (its step transforms with A A' instead)."""

    def natural(model):
        opt = NaturalGradient(model, lr=1.0, damping=0.0)
        return opt.step

    def gradient_descent(model):
        opt = torch.optim.SGD(model.parameters(), lr=0.5)

        def step(x, y):
            opt.zero_grad()
            negative_log_likelihood(model(x), y).backward()
            opt.step()

        return step

    original, mapped = _logistic_runs(natural)
    torch.testing.assert_close(mapped, original, rtol=1e-10, atol=1e-12)
    original, mapped = _logistic_runs(gradient_descent)
    assert (mapped - original).abs().max() > 1e-2


def test_batch_norm_in_training_mode_is_refused_and_eval_mode_is_accepted():
    model = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.Linear(3, 2)).double()
    x, _ = _data()
    with pytest.raises(ValueError, match="eval"):
        fisher_matrix(model, x)
    model.eval()
    fisher = fisher_matrix(model, x)
    assert fisher.shape == (29, 29)
    torch.testing.assert_close(fisher, fisher.T)


@pytest.mark.parametrize(
    "kwargs,name",
    [(dict(lr=0.0), "lr"), (dict(damping=-1.0), "damping"), (dict(fisher="diagonal"), "fisher")],
)
def test_invalid_arguments_raise_value_error_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=f"Invalid {name}"):
        NaturalGradient(nn.Linear(2, 2), **kwargs)
    x, _ = _data(d=2)
    with pytest.raises(ValueError, match="Invalid kind"):
        fisher_matrix(nn.Linear(2, 2).double(), x, kind="diagonal")
    with pytest.raises(ValueError, match="Invalid targets"):
        fisher_matrix(nn.Linear(2, 2).double(), x, kind="empirical")


def test_empirical_fisher_of_binary_logistic_regression_at_zero_is_the_fisher():
    """At theta = 0 every p = 1/2 and (p - y)^2 = 1/4 = p (1 - p) whatever the labels, so both
    are X^T X / (4 N) (closed form); one step away they differ."""
    x, y = _data(n=25, d=3, classes=1, seed=6)
    model = nn.Linear(3, 1, bias=False).double()
    with torch.no_grad():
        model.weight.zero_()
    closed_form = x.T @ x / (4 * len(x))
    torch.testing.assert_close(fisher_matrix(model, x), closed_form, rtol=1e-12, atol=1e-14)
    empirical = fisher_matrix(model, x, kind="empirical", targets=y)
    torch.testing.assert_close(empirical, closed_form, rtol=1e-12, atol=1e-14)
    NaturalGradient(model, lr=1.0, damping=0.0).step(x, y)
    exact = fisher_matrix(model, x)
    assert (
        fisher_matrix(model, x, kind="empirical", targets=y) - exact
    ).norm() > 0.01 * exact.norm()
