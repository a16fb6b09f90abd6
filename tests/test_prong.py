"""Do PRONG's whitened layers whiten, and does re-estimating them leave the network's function
alone?

The references: the network's outputs before the update (the function must not change), the
input covariance's eigendecomposition by numpy (the whitened covariance must be
diag(lambda / (lambda + epsilon))), and nn.functional.linear with the folded weight W U and bias
b - W U c.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from coursekit.second_order import WhitenedLinear, WhitenedMLP, reestimate_whitening

F64 = torch.float64


def _inputs(n=200, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    mixing = torch.randn(d, d, generator=g, dtype=F64) * torch.logspace(-1, 1, d, dtype=F64)
    return torch.randn(n, d, generator=g, dtype=F64) @ mixing + 3.0


def test_reestimating_the_whitening_leaves_the_function_unchanged():
    """Outputs on inputs the estimate never saw are the same before and after, twice over."""
    net = WhitenedMLP([5, 7, 6, 3], generator=torch.Generator().manual_seed(1)).double()
    probe = _inputs(seed=2)
    before = net(probe)
    assert reestimate_whitening(net, _inputs(seed=3)) == 3
    torch.testing.assert_close(net(probe), before, rtol=1e-12, atol=1e-12)
    reestimate_whitening(net, 0.1 * _inputs(seed=4) - 2.0)
    torch.testing.assert_close(net(probe), before, rtol=1e-11, atol=1e-11)
    # The whitening did change: the first layer's U is no longer the identity.
    assert (net.linears[0].whitening - torch.eye(5, dtype=F64)).abs().max() > 0.1


def test_the_layer_inputs_come_out_centred_and_whitened():
    x = _inputs(seed=5)
    layer = WhitenedLinear(5, 2, epsilon=1e-3).double()
    layer.update_whitening(x)
    z = (x - layer.centre) @ layer.whitening.T
    values = np.linalg.eigvalsh(np.cov(x.numpy(), rowvar=False, bias=True))
    torch.testing.assert_close(z.mean(0), torch.zeros(5, dtype=F64), atol=1e-12, rtol=0)
    expected = torch.diag(torch.as_tensor(values / (values + 1e-3)))
    torch.testing.assert_close(z.T @ z / len(z), expected, rtol=1e-9, atol=1e-12)


def test_the_layer_is_a_linear_map_with_folded_weight_and_bias():
    layer = WhitenedLinear(5, 4).double()
    layer.update_whitening(_inputs(seed=6))
    x = _inputs(n=7, seed=7)
    folded = layer.weight @ layer.whitening
    expected = F.linear(x, folded, layer.bias - folded @ layer.centre)
    torch.testing.assert_close(layer(x), expected, rtol=1e-12, atol=1e-12)


def test_without_a_bias_only_the_rotation_is_reestimated():
    layer = WhitenedLinear(5, 3, bias=False).double()
    x = _inputs(seed=8)
    before = layer(x)
    layer.update_whitening(x)
    assert torch.equal(layer.centre, torch.zeros(5, dtype=F64))
    torch.testing.assert_close(layer(x), before, rtol=1e-12, atol=1e-12)


def test_an_optimizer_keeps_its_parameters_through_an_update():
    """The reparameterisation writes into the same Parameter objects the optimizer holds."""
    net = WhitenedMLP([5, 4, 2]).double()
    ids = [id(p) for p in net.parameters()]
    reestimate_whitening(net, _inputs(seed=9))
    assert [id(p) for p in net.parameters()] == ids


@pytest.mark.parametrize(
    "build,name",
    [
        (lambda: WhitenedLinear(3, 2, epsilon=0.0), "epsilon"),
        (lambda: WhitenedMLP([3, 2], activation="swish"), "activation"),
        (lambda: WhitenedMLP([3]), "sizes"),
    ],
)
def test_invalid_arguments_raise_value_error_naming_them(build, name):
    with pytest.raises(ValueError, match=f"Invalid {name}"):
        build()
