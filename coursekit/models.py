r"""The small networks of the lectures, as `nn.Module`\ s: a linear unit, the 1-1-1 net,
deep linear nets, plain feed-forward nets, a small CNN, and ReLU nets written as sums over paths (seed 000).

Randomness: every model with random weights takes an optional `generator`. With one, the
initial weights depend on that generator alone (`torch.Generator().manual_seed(k)` gives model
``k``) and torch's global generator is left as it was; without one, they come from the global
generator, so the caller seeds them with `torch.manual_seed`. The distributions are torch's defaults for `nn.Linear` either way: weights
and biases uniform in :math:`\pm 1/\sqrt{\text{fan\_in}}`.

    torch.manual_seed(0)
    net = MLP([3, 4, 4, 2], activation="relu", bias=False).double()
    x = torch.randn(5, 3, dtype=torch.float64)
    torch.testing.assert_close(relu_path_sum(net, x), net(x))  # the path expansion is exact
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils import skip_init

__all__ = [
    "ACTIVATIONS",
    "DeepLinear",
    "LinearUnit",
    "MLP",
    "OneOneOneNet",
    "ParameterVector",
    "SmallCNN",
    "relu_path_sum",
]

#: Activation names accepted by `MLP`.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "linear": nn.Identity,
}


def _linear(d_in: int, d_out: int, bias: bool, generator: torch.Generator | None) -> nn.Linear:
    """An nn.Linear drawn from nn.Linear's own distribution, from `generator` if one is given.

    With a generator the layer is created uninitialised (`skip_init`) and drawn from the
    generator alone, so building a seeded model leaves torch's global generator untouched.
    """
    if generator is None:
        return nn.Linear(d_in, d_out, bias=bias)
    layer = skip_init(nn.Linear, d_in, d_out, bias=bias)
    bound = 1.0 / math.sqrt(d_in)
    with torch.no_grad():
        nn.init.uniform_(layer.weight, -bound, bound, generator=generator)
        if layer.bias is not None:
            nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
    return layer


def _check_sizes(name: str, sizes: Sequence[int]) -> list[int]:
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"Invalid {name}: {sizes!r} (must be at least two sizes, each >= 1)")
    return sizes


class LinearUnit(nn.Module):
    r"""A single linear unit, :math:`y = w^\top x + b` (seed 000).

    With the squared loss :math:`E(w) = \frac1P \sum_p (y_p - w^\top x_p)^2` its Hessian is
    :math:`\frac2P \sum_p x_p x_p^\top`, the inputs' second-moment matrix, which is why the
    conditioning of the inputs decides how fast gradient descent converges.

    Args:
        d_in: number of inputs.
        bias: learn the offset :math:`b` (default True).
        generator: draws the initial weights (default: torch's global generator).

    Shapes: ``(N, d_in) -> (N,)``, one number per sample, to match the ±1 targets of
    `coursekit.data.two_blobs`.
    """

    def __init__(
        self, d_in: int, bias: bool = True, *, generator: torch.Generator | None = None
    ) -> None:
        super().__init__()
        if d_in < 1:
            raise ValueError(f"Invalid d_in: {d_in!r} (must be >= 1)")
        self.linear = _linear(d_in, 1, bias, generator)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x).squeeze(-1)  # (N, 1) -> (N,)


class ParameterVector(nn.Module):
    r"""A model that is one trainable vector :math:`\theta`, for losses written in it directly.

    With ``loss_fn = lambda m: 0.5 * m.theta @ A @ m.theta + b @ m.theta`` the Hessian is
    :math:`A` everywhere, which is how assignment 3 tests Hessian-vector products and power
    iteration on a known spectrum with the same ``(model, loss_fn)`` interface as a network.

    Args:
        theta: the starting point, copied.
    """

    def __init__(self, theta: Tensor) -> None:
        super().__init__()
        self.theta = nn.Parameter(theta.detach().clone())


class OneOneOneNet(nn.Module):
    r"""The 1-1-1 network with linear activation, :math:`y = w_2 w_1 x` (seed 000).

    Trained to map 1 to 1 with the squared loss, :math:`L = (1 - w_2 w_1)^2`: every point of
    the hyperbola :math:`w_1 w_2 = 1` is a solution and the origin is a saddle point
    (`coursekit.landscapes.one_one_one_net` is the same loss as a surface).

    Args:
        w1, w2: the two scalar weights; deterministic, so no generator is needed.

    Shapes: any shape in, the same shape out (the net acts on each number).
    """

    def __init__(self, w1: float = 0.5, w2: float = 0.5) -> None:
        super().__init__()
        self.w1 = nn.Parameter(torch.tensor(float(w1)))
        self.w2 = nn.Parameter(torch.tensor(float(w2)))

    def forward(self, x: Tensor) -> Tensor:
        return self.w2 * (self.w1 * x)


class DeepLinear(nn.Module):
    r"""A deep linear network, :math:`y = W_N \cdots W_2 W_1 x` (seed 004).

    Its function is linear, so depth adds nothing to what it can express, but gradient descent
    on the factors :math:`W_j` follows other trajectories than on the product
    :math:`W_{1:N} = W_N \cdots W_1` (`end_to_end`). Arora et al. (2018) show that balanced
    factors, :math:`W_{j+1}^\top W_{j+1} = W_j W_j^\top`, stay balanced under gradient flow;
    `balancedness` measures how far a net is from that.

    Args:
        widths: :math:`(d_0, d_1, \dots, d_N)`: input size, hidden sizes, output size.
        bias: give every layer a bias (default False, the linear nets of the seed).
        init_std: draw every weight from :math:`\mathcal N(0, \sigma^2)` with this
            :math:`\sigma` instead of nn.Linear's default; a small value gives the
            near-zero, approximately balanced start of the seed.
        generator: draws the initial weights (default: torch's global generator).

    Shapes: ``(N, d_0) -> (N, d_N)``.
    """

    def __init__(
        self,
        widths: Sequence[int],
        bias: bool = False,
        *,
        init_std: float | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.widths = _check_sizes("widths", widths)
        if init_std is not None and init_std < 0:
            raise ValueError(f"Invalid init_std: {init_std!r} (must be >= 0)")
        self.layers = nn.ModuleList(
            _linear(a, b, bias, generator) for a, b in zip(self.widths[:-1], self.widths[1:])
        )
        for layer in self.layers:
            if init_std is not None:
                with torch.no_grad():
                    nn.init.normal_(layer.weight, 0.0, init_std, generator=generator)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x

    def end_to_end(self) -> Tensor:
        r"""The product :math:`W_{1:N} = W_N \cdots W_1`, shape ``(d_N, d_0)``.

        With biases the net is affine, not linear, and no single matrix describes it.
        """
        if self.layers[0].bias is not None:
            raise ValueError("Invalid bias: True (end_to_end needs a bias-free DeepLinear)")
        product = self.layers[0].weight
        for layer in self.layers[1:]:
            product = layer.weight @ product  # (d_{j+1}, d_j) @ (d_j, d_0)
        return product

    def balancedness(self) -> Tensor:
        r""":math:`\| W_{j+1}^\top W_{j+1} - W_j W_j^\top \|_F` for :math:`j = 1 \dots N-1`."""
        weights = [layer.weight for layer in self.layers]
        gaps = [
            torch.linalg.matrix_norm(after.T @ after - before @ before.T)
            for before, after in zip(weights[:-1], weights[1:])
        ]
        return torch.stack(gaps) if gaps else weights[0].new_zeros(0)


class MLP(nn.Module):
    """A plain feed-forward net: linear layers with an activation between them, none at the end.

    Args:
        sizes: ``(d_in, hidden..., d_out)``; ``[64, 25, 10]`` has one hidden layer of 25 units.
        activation: one of `ACTIVATIONS`: "relu" (default), "tanh", "sigmoid", "linear".
        bias: give every layer a bias (default True).
        generator: draws the initial weights (default: torch's global generator).

    Shapes: ``(N, d_in) -> (N, d_out)``. The layers are `self.net`, an `nn.Sequential`;
    `self.linears` lists the linear layers alone.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        activation: str = "relu",
        bias: bool = True,
        *,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.sizes = _check_sizes("sizes", sizes)
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"Invalid activation: {activation!r} (must be one of {sorted(ACTIVATIONS)})"
            )
        self.activation = activation
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            if i > 0:
                layers.append(ACTIVATIONS[activation]())
            layers.append(_linear(a, b, bias, generator))
        self.net = nn.Sequential(*layers)

    @property
    def linears(self) -> list[nn.Linear]:
        return [m for m in self.net if isinstance(m, nn.Linear)]

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def _conv(c_in: int, c_out: int, bias: bool, generator: torch.Generator | None) -> nn.Conv2d:
    r"""A 3x3 convolution (padding 1) drawn as nn.Conv2d draws it, from `generator` if given.

    nn.Conv2d's default, Kaiming-uniform with a = sqrt(5), is uniform in
    :math:`\pm 1/\sqrt{\text{fan\_in}}` for weights and biases, as nn.Linear's is.
    """
    if generator is None:
        return nn.Conv2d(c_in, c_out, 3, padding=1, bias=bias)
    conv = skip_init(nn.Conv2d, c_in, c_out, 3, padding=1, bias=bias)
    bound = 1.0 / math.sqrt(c_in * 9)
    with torch.no_grad():
        nn.init.uniform_(conv.weight, -bound, bound, generator=generator)
        if conv.bias is not None:
            nn.init.uniform_(conv.bias, -bound, bound, generator=generator)
    return conv


class SmallCNN(nn.Module):
    """A two-block convolutional net for small square images: digits as 1x8x8.

    Each block is a 3x3 convolution (padding 1), optionally batch normalisation, a ReLU and 2x2
    max pooling; a linear layer maps the pooled features to the classes. An 8x8 image becomes
    4x4, then 2x2. With ``batch_norm`` the convolutions drop their biases, which batch
    normalisation's shift replaces (a bias before it changes nothing and would add flat
    directions to the loss).

    Args:
        channels: the two blocks' output channels (default (8, 16)).
        classes: outputs (default 10).
        batch_norm: add ``nn.BatchNorm2d`` after each convolution (default False).
        image_size: the images' side (default 8; must be divisible by 4).
        in_channels: the images' channels (default 1).
        generator: draws the initial weights (default: torch's global generator).

    Shapes: ``(N, in_channels, s, s)``, or ``(N, in_channels * s * s)`` as the data sets store
    images (reshaped here), to ``(N, classes)``.
    """

    def __init__(
        self,
        channels: Sequence[int] = (8, 16),
        classes: int = 10,
        batch_norm: bool = False,
        *,
        image_size: int = 8,
        in_channels: int = 1,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        channels = [int(c) for c in channels]
        if len(channels) != 2 or min(channels) < 1:
            raise ValueError(f"Invalid channels: {channels!r} (must be two sizes, each >= 1)")
        if classes < 1:
            raise ValueError(f"Invalid classes: {classes} (must be >= 1)")
        if image_size < 4 or image_size % 4:
            raise ValueError(f"Invalid image_size: {image_size} (must be a multiple of 4)")
        if in_channels < 1:
            raise ValueError(f"Invalid in_channels: {in_channels} (must be >= 1)")
        self.image_size, self.in_channels = image_size, in_channels
        layers: list[nn.Module] = []
        for c_in, c_out in zip([in_channels, *channels[:-1]], channels):
            layers.append(_conv(c_in, c_out, not batch_norm, generator))
            if batch_norm:
                layers.append(nn.BatchNorm2d(c_out))
            layers += [nn.ReLU(), nn.MaxPool2d(2)]
        layers += [
            nn.Flatten(),
            _linear(channels[-1] * (image_size // 4) ** 2, classes, True, generator),
        ]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2:
            x = x.view(len(x), self.in_channels, self.image_size, self.image_size)
        return self.net(x)


def _paths(sizes: Sequence[int], device: torch.device) -> Tensor:
    """Every input-to-output path as a row of unit indices, one per layer: ``(P, L + 1)``."""
    return torch.cartesian_prod(*(torch.arange(s, device=device) for s in sizes)).reshape(
        -1, len(sizes)
    )


def relu_path_sum(mlp: MLP, x: Tensor, *, max_paths: int = 1_000_000) -> Tensor:
    r"""A bias-free ReLU net's output computed as a sum over its input-to-output paths (seed 000).

    A path :math:`p = (i_0, i_1, \dots, i_L)` picks one unit per layer; it starts at input
    :math:`x_{i_0}`, ends at output :math:`i_L`, and is *active* on `x` when every hidden
    unit it passes through has a positive pre-activation. Since a ReLU is linear where it is
    on, the net is

    .. math::
        y_k = \sum_{p\,:\,i_L = k} x_{i_0}
              \Big( \prod_{l=1}^{L} W^{(l)}_{i_l i_{l-1}} \Big)
              \, \mathbb 1[p \text{ active on } x]

    a polynomial of degree :math:`L` in the weights whose coefficients are switched on and off
    by the input: piecewise linear in :math:`x`, piecewise polynomial in :math:`W`.

    This computes that sum literally, one term per path (vectorised over paths and samples),
    for nets small enough to enumerate: a 3-4-4-2 net has 96 paths.

    Args:
        mlp: an `MLP` with ``activation="relu"`` and ``bias=False``.
        x: inputs, ``(N, d_in)``.
        max_paths: refuse nets with more paths than this (the work is ``N x paths``).

    Returns:
        ``(N, d_out)``, equal to ``mlp(x)`` up to rounding.
    """
    if not isinstance(mlp, MLP):
        raise TypeError(f"relu_path_sum needs a coursekit.models.MLP, got {type(mlp).__name__}")
    if mlp.activation != "relu" and len(mlp.sizes) > 2:
        raise ValueError(f"Invalid activation: {mlp.activation!r} (must be 'relu')")
    linears = mlp.linears
    if any(layer.bias is not None for layer in linears):
        raise ValueError("Invalid bias: True (the path sum needs a bias-free MLP)")
    n_paths = math.prod(mlp.sizes)
    if n_paths > max_paths:
        raise ValueError(
            f"Invalid mlp: {n_paths} paths through sizes {mlp.sizes} (must be <= max_paths "
            f"= {max_paths})"
        )
    paths = _paths(mlp.sizes, x.device)  # (P, L + 1)

    # Which hidden units are on for each sample: the forward pass's switches.
    on = []
    h = x
    for layer in linears[:-1]:
        h = layer(h)
        on.append(h > 0)  # (N, d_l)
        h = torch.relu(h)

    # Product of the weights along each path: layer l joins unit i_{l-1} to unit i_l.
    weight = torch.ones(len(paths), dtype=x.dtype, device=x.device)
    for l, layer in enumerate(linears, start=1):
        weight = weight * layer.weight[paths[:, l], paths[:, l - 1]]  # (P,)

    # A path is active when each hidden unit on it is on.
    active = torch.ones(len(x), len(paths), dtype=torch.bool, device=x.device)
    for l, mask in enumerate(on, start=1):
        active = active & mask[:, paths[:, l]]  # (N, P)

    terms = x[:, paths[:, 0]] * weight * active  # (N, P): x_{i_0} prod(w) 1[active]
    out = x.new_zeros(len(x), mlp.sizes[-1])
    return out.index_add(1, paths[:, -1], terms)  # sum the terms ending at each output
