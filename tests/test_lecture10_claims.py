"""Lecture 10's claims, checked in `coursekit.constrained` against quantities it did not compute.

The references: autograd through torch's own layers (`coursekit.models.MLP`, `torch.nn.functional`)
for the gradients with respect to layer outputs and weights; autograd of the Lagrangian for its
stationarity conditions; numpy's dense least squares for the penalty method's Z-step on a linear
net and for a linear layer's W-step; the vanishing gradient of the subproblem where no closed
form exists; `torch.optim.SGD` for the backprop baseline; the inverse matrix of an invertible
linear layer for difference target propagation.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from coursekit import constrained as con
from coursekit.models import MLP

F64 = torch.float64
ACTIVATIONS = ["tanh", "sigmoid", "relu", "softplus", "linear"]
TORCH_ACTIVATIONS = {
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "relu": torch.relu,
    "softplus": F.softplus,
    "linear": lambda a: a,
}


def _random_net(activation: str, sizes=(5, 7, 6, 4), seed: int = 0) -> list[con.Layer]:
    """A float64 net with `activation` after every layer but the last."""
    gen = torch.Generator().manual_seed(seed)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        act = activation if i < len(sizes) - 2 else "linear"
        weight = torch.randn(b, a, generator=gen, dtype=F64) / a**0.5
        layers.append(con.Layer(weight, 0.3 * torch.randn(b, generator=gen, dtype=F64), act))
    return layers


def _data(loss: str, n: int = 9, d_in: int = 5, d_out: int = 4, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=gen, dtype=F64)
    if loss == "cross_entropy":
        return x, torch.randint(0, d_out, (n,), generator=gen)
    return x, torch.randn(n, d_out, generator=gen, dtype=F64)


def _autograd_output_gradients(layers, x, y, loss):
    """dC/dZ_i for every layer output, by autograd through torch.nn.functional (independent of
    `con.apply_layer` and `con.loss_value`)."""
    outputs, z = [], x.clone().requires_grad_(True)
    for layer in layers:
        z = TORCH_ACTIVATIONS[layer.activation](F.linear(z, layer.weight, layer.bias))
        z.retain_grad()
        outputs.append(z)
    if loss == "cross_entropy":
        cost = F.cross_entropy(z, y)
    else:
        cost = 0.5 * F.mse_loss(z, y, reduction="sum") / len(z)
    cost.backward()
    return [o.grad for o in outputs]


# --- The Lagrangian --------------------------------------------------------------------------


@pytest.mark.parametrize("loss", con.LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_multipliers_are_autograds_gradients_wrt_layer_outputs(activation, loss):
    """Autograd's dC/dZ_i through torch.nn.functional, to 1e-10 in float64: solving the
    stationarity conditions is the backward pass."""
    layers = _random_net(activation)
    x, y = _data(loss)
    bs = con.multipliers(layers, con.forward(layers, x), y, loss)
    expected = _autograd_output_gradients(layers, x, y, loss)
    assert len(bs) == len(expected) == len(layers)
    for b, e in zip(bs, expected):
        assert b.shape == e.shape
        assert (b - e).abs().max().item() < 1e-10
    assert all(b.abs().max() > 1e-4 for b in bs)  # not trivially zero


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_lagrangian_is_stationary_at_the_forward_pass_and_its_multipliers(activation):
    """Autograd's gradient of the Lagrangian: zero with respect to every Z_i (1e-12) and every
    B_i (the constraints hold at the forward pass); with respect to the weights, the weight
    gradients. At other multipliers the Z-gradient is not zero."""
    layers = _random_net(activation)
    x, y = _data("cross_entropy")
    zs = con.forward(layers, x)
    bs = con.multipliers(layers, zs, y)
    free_z = [z.clone().requires_grad_(True) for z in zs[1:]]
    free_b = [b.clone().requires_grad_(True) for b in bs]
    weights = [ly.weight.clone().requires_grad_(True) for ly in layers]
    net = [con.Layer(w, ly.bias, ly.activation) for w, ly in zip(weights, layers)]
    value = con.lagrangian(net, [x, *free_z], free_b, y)
    grads = torch.autograd.grad(value, free_z + free_b + weights)
    n = len(layers)
    for g in grads[: 2 * n]:
        assert g.abs().max().item() < 1e-12
    for g, (gw, _) in zip(grads[2 * n :], con.weight_gradients(layers, zs, bs)):
        assert (g - gw).abs().max().item() < 1e-12
    shifted = [b + 0.1 for b in bs]  # any other multipliers: not stationary
    free_z = [z.clone().requires_grad_(True) for z in zs[1:]]
    grads = torch.autograd.grad(con.lagrangian(layers, [x, *free_z], shifted, y), free_z)
    assert max(g.abs().max().item() for g in grads) > 1e-2


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "linear"])
def test_weight_gradients_from_the_multipliers_are_dC_dW(activation):
    """The .grad of an nn.Module (`coursekit.models.MLP`) after loss.backward(), to 1e-10."""
    net = MLP([6, 8, 5, 3], activation=activation, generator=torch.Generator().manual_seed(2))
    net = net.double()
    x, y = _data("cross_entropy", n=11, d_in=6, d_out=3, seed=3)
    F.cross_entropy(net(x), y).backward()
    layers = con.layers_from_mlp(net)
    zs = con.forward(layers, x)
    grads = con.weight_gradients(layers, zs, con.multipliers(layers, zs, y))
    for (gw, gb), linear in zip(grads, net.linears):
        assert (gw - linear.weight.grad).abs().max().item() < 1e-10
        assert (gb - linear.bias.grad).abs().max().item() < 1e-10


# --- The penalty method ----------------------------------------------------------------------


def test_z_step_of_a_linear_net_is_the_least_squares_solution():
    """With linear layers and the squared error the Z-subproblem is least squares, one problem
    per sample in the stacked unknowns (z_1, ..., z_N): numpy's dense lstsq, to 1e-7."""
    layers = _random_net("linear", sizes=(3, 4, 4, 2))
    x, y = _data("mse", n=5, d_in=3, d_out=2)
    rho = 3.0
    zs = con.z_step(layers, con.forward(layers, x), y, rho, "mse", max_iter=500, tol=1e-12)
    n, dims = len(x), [ly.weight.shape[0] for ly in layers]
    offsets = np.cumsum([0, *dims])
    for s in range(n):
        rows, rhs = [], []
        for i, ly in enumerate(layers):  # sqrt(rho/n) (z_i - A_i z_{i-1} - b_i)
            block = np.zeros((dims[i], offsets[-1]))
            block[:, offsets[i] : offsets[i + 1]] = np.eye(dims[i])
            a, b = ly.weight.numpy(), ly.bias.numpy()
            if i == 0:
                target = a @ x[s].numpy() + b
            else:
                block[:, offsets[i - 1] : offsets[i]] = -a
                target = b
            rows.append(np.sqrt(rho / n) * block)
            rhs.append(np.sqrt(rho / n) * target)
        block = np.zeros((dims[-1], offsets[-1]))  # sqrt(1/n) (z_N - y)
        block[:, offsets[-2] :] = np.eye(dims[-1])
        rows.append(block / np.sqrt(n))
        rhs.append(y[s].numpy() / np.sqrt(n))
        solution = np.linalg.lstsq(np.vstack(rows), np.concatenate(rhs), rcond=None)[0]
        got = np.concatenate([z[s].numpy() for z in zs[1:]])
        np.testing.assert_allclose(got, solution, rtol=0, atol=1e-7)


def test_z_step_of_a_tanh_net_is_stationary_and_lowers_the_objective():
    """Autograd's gradient of the penalty objective at the returned Z (below 1e-7), and the
    objective's value at the forward pass (which the step must improve on)."""
    layers = _random_net("tanh")
    x, y = _data("cross_entropy")
    start = con.forward(layers, x)
    zs = con.z_step(layers, start, y, 2.0, max_iter=500, tol=1e-12)
    free = [z.clone().requires_grad_(True) for z in zs[1:]]
    grads = torch.autograd.grad(con.penalty_objective(layers, [x, *free], y, 2.0), free)
    assert max(g.abs().max().item() for g in grads) < 1e-7
    before = con.penalty_objective(layers, start, y, 2.0).item()
    assert con.penalty_objective(layers, zs, y, 2.0).item() < before - 1e-3


def test_penalty_solution_approaches_the_constrained_one_as_rho_grows():
    """The forward pass (the only feasible Z for fixed weights) and autograd's dC/dZ_i: the
    Z-step's distance to the first and the penalty multipliers' distance to the second both
    shrink like 1/rho (by 5x to 20x per decade of rho)."""
    layers = _random_net("tanh")
    x, y = _data("cross_entropy")
    feasible = con.forward(layers, x)
    gradients = _autograd_output_gradients(layers, x, y, "cross_entropy")
    gaps, errors = [], []
    for rho in (1e1, 1e2, 1e3, 1e4):
        zs = con.z_step(layers, feasible, y, rho, max_iter=1000, tol=1e-14)
        gaps.append(max((z - f).abs().max().item() for z, f in zip(zs[1:], feasible[1:])))
        lam = con.penalty_multipliers(layers, zs, rho)
        errors.append(max((a - g).abs().max().item() for a, g in zip(lam, gradients)))
    for seq in (gaps, errors):
        ratios = np.array(seq[:-1]) / np.array(seq[1:])
        assert ((ratios > 5) & (ratios < 20)).all(), seq
    assert errors[-1] < 1e-3 * max(g.abs().max().item() for g in gradients), errors


def test_w_step_of_a_linear_layer_is_least_squares_and_of_a_tanh_layer_is_stationary():
    """numpy's lstsq on [Z_in, 1] for a linear layer (1e-10); for tanh, autograd's gradient of
    the layer's own squared error at the returned weights (below 1e-6)."""
    gen = torch.Generator().manual_seed(4)
    z_in = torch.randn(30, 4, generator=gen, dtype=F64)
    z_out = torch.randn(30, 3, generator=gen, dtype=F64)
    start = con.Layer(torch.zeros(3, 4, dtype=F64), torch.zeros(3, dtype=F64), "linear")
    fitted = con.w_step(start, z_in, z_out)
    design = np.hstack([z_in.numpy(), np.ones((30, 1))])
    solution = np.linalg.lstsq(design, z_out.numpy(), rcond=None)[0]
    np.testing.assert_allclose(fitted.weight.numpy(), solution[:-1].T, atol=1e-10)
    np.testing.assert_allclose(fitted.bias.numpy(), solution[-1], atol=1e-10)
    target = 0.8 * torch.tanh(z_in @ torch.randn(4, 3, generator=gen, dtype=F64))
    fitted = con.w_step(replace_activation(start, "tanh"), z_in, target, max_iter=500, tol=1e-12)
    weight = fitted.weight.clone().requires_grad_(True)
    bias = fitted.bias.clone().requires_grad_(True)
    value = 0.5 * ((target - torch.tanh(z_in @ weight.T + bias)) ** 2).sum() / 30
    assert max(g.abs().max().item() for g in torch.autograd.grad(value, [weight, bias])) < 1e-6


def replace_activation(layer: con.Layer, activation: str) -> con.Layer:
    return con.Layer(layer.weight, layer.bias, activation)


# --- Backprop baseline and target propagation ----------------------------------------------


def _digits_like(n=40, d=6, k=3, seed=5):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=F64)
    return x, torch.randint(0, k, (n,), generator=gen)


def test_backprop_baseline_is_torch_sgd_full_batch():
    """torch.optim.SGD on `coursekit.models.MLP` with loss.backward(), full batch, 5 steps:
    the same weights to 1e-12."""
    net = MLP([6, 5, 3], activation="tanh", generator=torch.Generator().manual_seed(6)).double()
    x, y = _digits_like()
    layers = con.layers_from_mlp(net)
    trained, history = con.train_backprop(layers, x, y, x, y, lr=0.3, steps=5, batch_size=40)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.3)
    for _ in range(5):
        optimizer.zero_grad()
        F.cross_entropy(net(x), y).backward()
        optimizer.step()
    for layer, linear in zip(trained, net.linears):
        assert (layer.weight - linear.weight).abs().max().item() < 1e-12
        assert (layer.bias - linear.bias).abs().max().item() < 1e-12
    assert history.loss[-1] == pytest.approx(F.cross_entropy(net(x), y).item(), abs=1e-12)


def test_dtp_with_one_hidden_layer_and_target_step_one_half_is_backprop():
    """The relation d/dW ||f(h) - (h - eta n dC/dh)||^2 / n = 2 eta dC/dW: with one hidden layer
    there are no inverses and, at target_lr = 1/2, DTP's local updates are backprop's
    (`train_backprop`, itself checked against torch.optim.SGD above), to 1e-12."""
    net = MLP([6, 5, 3], activation="tanh", generator=torch.Generator().manual_seed(7)).double()
    x, y = _digits_like()
    layers = con.layers_from_mlp(net)
    common = dict(lr=0.2, steps=4, batch_size=40)
    bp, _ = con.train_backprop(layers, x, y, x, y, **common)
    dtp, _, _ = con.train_dtp(layers, x, y, x, y, target_lr=0.5, **common)
    for a, b in zip(bp, dtp):
        assert (a.weight - b.weight).abs().max().item() < 1e-12
    dtp_other, _, _ = con.train_dtp(layers, x, y, x, y, target_lr=0.1, **common)
    assert (dtp_other[0].weight - bp[0].weight).abs().max().item() > 1e-4


def _invertible_linear(d: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=F64))
    weight = q @ torch.diag(torch.linspace(0.5, 2.0, d, dtype=F64))  # condition number 4
    bias = torch.randn(d, generator=gen, dtype=F64)
    inverse_weight = torch.linalg.inv(weight)
    layer = con.Layer(weight, bias, "linear")
    inverse = con.Layer(inverse_weight, -inverse_weight @ bias, "linear")
    return layer, inverse, gen


def test_difference_target_is_exact_when_the_inverse_is_exact():
    """Closed form on invertible linear layers (inverse by torch.linalg.inv): f(h_hat_below) ==
    h_hat to 1e-10 at every level of a three-layer chain, for an arbitrary top target."""
    d = 5
    chain = [_invertible_linear(d, seed) for seed in (8, 9, 10)]
    gen = chain[0][2]
    hs = [torch.randn(7, d, generator=gen, dtype=F64)]
    for layer, _, _ in chain:
        hs.append(con.apply_layer(layer, hs[-1]))
    top = hs[-1] + torch.randn(7, d, generator=gen, dtype=F64)
    targets = con.dtp_targets(hs, top, [inverse for _, inverse, _ in chain])
    assert targets[-1] is top
    for (layer, _, _), below, above in zip(chain, targets[:-1], targets[1:]):
        assert (con.apply_layer(layer, below) - above).abs().max().item() < 1e-10


def test_difference_correction_with_an_inexact_inverse():
    """Closed form for a linear inverse perturbed by E: the DTP target misses by exactly
    A E (h_hat - h) (zero when the layer above is at its target), while vanilla target
    propagation misses by A E h_hat + A e_b even there."""
    layer, inverse, gen = _invertible_linear(4, seed=11)
    e_w = 0.05 * torch.randn(4, 4, generator=gen, dtype=F64)
    e_b = 0.05 * torch.randn(4, generator=gen, dtype=F64)
    wrong = con.Layer(inverse.weight + e_w, inverse.bias + e_b, "linear")
    h_below = torch.randn(6, 4, generator=gen, dtype=F64)
    h = con.apply_layer(layer, h_below)
    same = con.dtp_targets([h_below, h], h, [wrong])[0]
    assert (same - h_below).abs().max().item() < 1e-12
    vanilla = con.apply_layer(wrong, h)
    assert (vanilla - h_below).abs().max().item() > 1e-3
    h_hat = h + 0.3 * torch.randn(6, 4, generator=gen, dtype=F64)
    target = con.dtp_targets([h_below, h], h_hat, [wrong])[0]
    miss = con.apply_layer(layer, target) - h_hat
    expected = (h_hat - h) @ e_w.T @ layer.weight.T
    assert (miss - expected).abs().max().item() < 1e-12


def test_invalid_arguments_raise_value_errors_naming_them():
    layers = _random_net("tanh")
    x, y = _data("cross_entropy")
    zs = con.forward(layers, x)
    with pytest.raises(ValueError, match="rho"):
        con.penalty_objective(layers, zs, y, 0.0)
    with pytest.raises(ValueError, match="loss"):
        con.loss_value(zs[-1], y, "hinge")
    with pytest.raises(ValueError, match="activation"):
        con.Layer(layers[0].weight, layers[0].bias, "gelu")
    with pytest.raises(ValueError, match="lr"):
        con.train_backprop(layers, x, y, x, y, lr=-1.0, steps=1)
    with pytest.raises(ValueError, match="batch_size"):
        con.train_dtp(layers, x, y, x, y, lr=0.1, steps=1, batch_size=100)
    with pytest.raises(ValueError, match="zs, bs"):
        con.lagrangian(layers, zs, zs[1:-1], y)
