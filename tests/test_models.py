"""Do the lecture models compute what their equations say?"""

import math

import pytest
import torch
from torch import nn
from torch.autograd.functional import hessian
from torch.func import functional_call

from coursekit.data import digits
from coursekit.landscapes import one_one_one_net
from coursekit.models import MLP, DeepLinear, LinearUnit, OneOneOneNet, SmallCNN, relu_path_sum

F64 = torch.float64


@pytest.mark.parametrize("sizes", [[3, 4, 4, 2], [2, 5, 1], [4, 3], [3, 2, 3, 2, 3]])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_relu_path_sum_equals_the_forward_pass(sizes, seed):
    """Is a bias-free ReLU net the sum over active paths of input times path weights?"""
    gen = torch.Generator().manual_seed(seed)
    net = MLP(sizes, "relu", bias=False, generator=gen).to(F64)
    x = torch.randn(16, sizes[0], generator=gen, dtype=F64)
    torch.testing.assert_close(relu_path_sum(net, x), net(x), rtol=1e-12, atol=1e-12)


def test_relu_path_sum_matches_a_loop_over_paths_written_out():
    """Does the vectorised sum equal the formula evaluated one path at a time?"""
    gen = torch.Generator().manual_seed(3)
    net = MLP([2, 3, 2], "relu", bias=False, generator=gen).to(F64)
    w1, w2 = (layer.weight for layer in net.linears)
    x = torch.randn(4, 2, generator=gen, dtype=F64)
    expected = torch.zeros(4, 2, dtype=F64)
    for n in range(4):
        on = (w1 @ x[n]) > 0
        for i0 in range(2):
            for i1 in range(3):
                for i2 in range(2):
                    expected[n, i2] += x[n, i0] * w1[i1, i0] * w2[i2, i1] * on[i1]
    torch.testing.assert_close(relu_path_sum(net, x), expected)


def test_relu_path_sum_refuses_biases_other_activations_and_too_many_paths():
    """Are nets the path sum does not describe rejected, naming what is wrong?"""
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match="bias"):
        relu_path_sum(MLP([3, 4, 2], "relu", bias=True), x)
    with pytest.raises(ValueError, match="activation"):
        relu_path_sum(MLP([3, 4, 2], "tanh", bias=False), x)
    with pytest.raises(ValueError, match="max_paths"):
        relu_path_sum(MLP([3, 4, 4, 2], bias=False), x, max_paths=95)
    assert relu_path_sum(MLP([3, 4, 4, 2], bias=False), x, max_paths=96).shape == (2, 2)


def test_deep_linear_end_to_end_matrix_is_the_forward_pass():
    """Is a deep linear net the single matrix W_N ... W_1?"""
    net = DeepLinear([3, 5, 4, 2], generator=torch.Generator().manual_seed(0)).to(F64)
    x = torch.randn(7, 3, dtype=F64)
    product = net.end_to_end()
    assert product.shape == (2, 3)
    torch.testing.assert_close(x @ product.T, net(x))
    with pytest.raises(ValueError, match="bias"):
        DeepLinear([3, 2], bias=True).end_to_end()


def test_deep_linear_balancedness_is_zero_for_orthogonal_factors():
    """Are factors with W_{j+1}^T W_{j+1} = W_j W_j^T measured as balanced, others not?"""
    net = DeepLinear([4, 4, 4], init_std=0.5, generator=torch.Generator().manual_seed(0)).to(F64)
    assert (net.balancedness() > 0.1).all()
    with torch.no_grad():
        for layer in net.layers:
            layer.weight.copy_(torch.linalg.qr(torch.randn(4, 4, dtype=F64))[0])
    torch.testing.assert_close(net.balancedness(), torch.zeros(1, dtype=F64))


def test_init_std_scales_the_weights_and_generators_make_models_reproducible():
    """Does a generator fix the weights, and does init_std set their spread?"""

    def make(seed, **kw):
        return DeepLinear([50, 60, 40], generator=torch.Generator().manual_seed(seed), **kw)

    assert torch.equal(make(0).end_to_end(), make(0).end_to_end())
    assert not torch.equal(make(0).end_to_end(), make(1).end_to_end())
    small = make(0, init_std=1e-3)
    assert small.layers[0].weight.std().item() == pytest.approx(1e-3, rel=0.1)
    state = torch.get_rng_state()
    MLP([4, 3, 2], generator=torch.Generator().manual_seed(0))
    assert torch.equal(torch.get_rng_state(), state)  # a seeded model leaves the global one be
    torch.manual_seed(5)
    a = MLP([4, 3, 2])
    torch.manual_seed(5)
    b = MLP([4, 3, 2])
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_mlp_layers_activations_and_nn_linear_initial_range():
    """Is the MLP linear-activation-linear with torch's default initial weight range?"""
    net = MLP([64, 25, 10], "tanh", generator=torch.Generator().manual_seed(0))
    kinds = [type(m) for m in net.net]
    assert kinds == [nn.Linear, nn.Tanh, nn.Linear]
    assert net(torch.randn(5, 64)).shape == (5, 10)
    for layer in net.linears:
        bound = 1 / math.sqrt(layer.in_features)
        assert layer.weight.abs().max() <= bound and layer.bias.abs().max() <= bound
    with pytest.raises(ValueError, match="activation"):
        MLP([2, 2], "softplus")
    with pytest.raises(ValueError, match="sizes"):
        MLP([3])
    with pytest.raises(ValueError, match="widths"):
        DeepLinear([3, 0, 2])
    with pytest.raises(ValueError, match="init_std"):
        DeepLinear([3, 2], init_std=-1.0)
    with pytest.raises(ValueError, match="d_in"):
        LinearUnit(0)


def test_linear_unit_hessian_of_the_squared_loss_is_the_input_second_moment():
    """Is the Hessian of E(w) = mean (y - w^T x)^2 equal to 2/P sum x x^T (seed 000)?"""
    unit = LinearUnit(3, bias=False).to(F64)
    x, y = torch.randn(20, 3, dtype=F64), torch.randn(20, dtype=F64)
    assert unit(x).shape == (20,)
    torch.testing.assert_close(unit(x), x @ unit.linear.weight.squeeze(0))

    def loss(weight):
        return ((y - functional_call(unit, {"linear.weight": weight}, (x,))) ** 2).mean()

    h = hessian(loss, unit.linear.weight.detach()).reshape(3, 3)
    torch.testing.assert_close(h, 2 * x.T @ x / 20)


def test_one_one_one_net_loss_is_the_landscape_surface_with_a_saddle_at_zero():
    """Is (1 - w2 w1 * 1)^2 the 1-1-1 landscape, flat at the origin?"""
    net = OneOneOneNet(w1=0.3, w2=-1.7)
    x = torch.tensor([1.0])
    loss = ((1 - net(x)) ** 2).sum()
    expected = one_one_one_net().value(torch.tensor([0.3, -1.7]))
    torch.testing.assert_close(loss, expected)
    origin = OneOneOneNet(0.0, 0.0)
    ((1 - origin(x)) ** 2).sum().backward()
    assert origin.w1.grad.item() == 0.0 and origin.w2.grad.item() == 0.0


def test_small_cnn_is_two_conv_blocks_written_out():
    """SmallCNN's output equals conv-relu-pool twice and a linear layer, applied by hand with
    torch.nn.functional to its own weights; flat (N, 64) inputs are 1x8x8 images."""
    net = SmallCNN(generator=torch.Generator().manual_seed(0)).double()
    x = torch.randn(6, 64, dtype=F64)
    conv1, conv2, linear = (m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
    h = x.view(6, 1, 8, 8)
    for conv in (conv1, conv2):
        h = nn.functional.max_pool2d(
            torch.relu(nn.functional.conv2d(h, conv.weight, conv.bias, padding=1)), 2
        )
    expected = nn.functional.linear(h.flatten(1), linear.weight, linear.bias)
    torch.testing.assert_close(net(x), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(net(x.view(6, 1, 8, 8)), expected, rtol=1e-12, atol=1e-12)
    for conv in (conv1, conv2):  # nn.Conv2d's default range, +-1/sqrt(fan_in)
        bound = 1 / math.sqrt(conv.in_channels * 9)
        assert conv.weight.abs().max() <= bound < 1.2 * conv.weight.abs().max()


def test_small_cnn_generators_batch_norm_and_bad_arguments():
    state = torch.get_rng_state()
    a, b = (SmallCNN(generator=torch.Generator().manual_seed(3)) for _ in range(2))
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    bn = SmallCNN(channels=(4, 6), classes=3, batch_norm=True, image_size=12)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in bn.modules()) == 2
    assert all(m.bias is None for m in bn.modules() if isinstance(m, nn.Conv2d))
    assert bn(torch.randn(5, 144)).shape == (5, 3)
    for kwargs, name in [
        (dict(channels=(4,)), "channels"),
        (dict(classes=0), "classes"),
        (dict(image_size=10), "image_size"),
        (dict(in_channels=0), "in_channels"),
    ]:
        with pytest.raises(ValueError, match=f"Invalid {name}"):
            SmallCNN(**kwargs)


@pytest.mark.parametrize("batch_norm", [False, True])
def test_small_cnn_learns_digits(batch_norm):
    """Trained with Adam for 150 full-batch steps, it classifies held-out digits (> 85 %)."""
    torch.manual_seed(0)
    data = digits()
    net = SmallCNN(batch_norm=batch_norm)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(150):
        opt.zero_grad()
        nn.functional.cross_entropy(net(data.x_train), data.y_train).backward()
        opt.step()
    net.eval()
    accuracy = (net(data.x_test).argmax(1) == data.y_test).float().mean().item()
    assert accuracy > 0.85
