r"""Weight initialisations and the scale of signals through a deep net (lecture 7).

Seed 001 ("Parameter initialization strategies") lists four schemes for the weights
:math:`W_j \in \mathbb R^{d_j \times d_{j-1}}` of layer :math:`z_j = W_j h_{j-1}`,
:math:`h_j = \phi(z_j)`. `init_weight_` draws each one, through ``torch.nn.init`` where torch
has the scheme:

- ``"uniform"``: :math:`U(-1/\sqrt{d_{j-1}}, 1/\sqrt{d_{j-1}})`, variance :math:`1/(3 d_{j-1})`
  (torch's default for ``nn.Linear``);
- ``"xavier"``: :math:`U(-b, b)` with :math:`b = \sqrt{6 / (d_{j-1} + d_j)}`, variance
  :math:`2/(d_{j-1} + d_j)` (Glorot and Bengio 2010). Seed 001 prints the bound as
  :math:`6/\sqrt{d_j d_{j-1}}` and dates it 2015: both are wrong (`xavier_bound`);
- ``"he"``: :math:`\mathcal N(0, 2/d_{j-1})`, which keeps a ReLU net's pre-activation variance
  (He et al. 2015);
- ``"orthogonal"``: a random orthogonal matrix (Saxe et al. 2014), which preserves every
  vector's norm, so a deep linear net's signals exactly;
- ``"sparse"``: Martens (2010), each unit has a fixed number (15) of nonzero incoming
  weights, standard normal, the rest zero (`sparse_init_`).

`propagate` sends a batch through a deep bias-free MLP (`coursekit.models.MLP`, built by
`init_mlp`) initialised with one scheme and returns (`layer_scales`) the second moment of every
layer's pre-activations (forward) and of the loss gradient with respect to them (backward): how
the scale of signals and gradients changes with depth.

Example::

    from coursekit import initialisation as init

    run = init.propagate("uniform", "tanh", depth=30, width=128, batch=256)
    run.forward[1:] / run.forward[:-1]      # about 1/3 per layer once the signal is small
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .models import MLP

__all__ = [
    "SCHEMES",
    "Propagation",
    "init_mlp",
    "init_weight_",
    "layer_scales",
    "log_slope",
    "propagate",
    "sparse_init_",
    "xavier_bound",
]

#: The scheme names `init_weight_` and `propagate` accept.
SCHEMES = ("uniform", "xavier", "he", "orthogonal", "sparse")


def xavier_bound(fan_in: int, fan_out: int) -> float:
    r"""Glorot and Bengio's (2010) bound :math:`\sqrt{6 / (\mathrm{fan\_in} + \mathrm{fan\_out})}`:
    :math:`U(-b, b)` has variance :math:`b^2/3 = 2/(\mathrm{fan\_in} + \mathrm{fan\_out})`, the
    compromise between keeping the forward variance (:math:`1/\mathrm{fan\_in}`) and the
    backward one (:math:`1/\mathrm{fan\_out}`) of a linear layer."""
    if fan_in < 1 or fan_out < 1:
        raise ValueError(f"Invalid fan_in, fan_out: {fan_in!r}, {fan_out!r} (must be >= 1)")
    return math.sqrt(6.0 / (fan_in + fan_out))


def sparse_init_(
    weight: Tensor,
    nonzero: int = 15,
    std: float = 1.0,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Martens' (2010) sparse initialisation, in place: every unit (row of `weight`,
    ``(fan_out, fan_in)``) gets exactly `nonzero` incoming weights drawn from
    :math:`\mathcal N(0, \mathrm{std}^2)`, at input positions chosen uniformly without
    replacement; all other weights are zero.

    Written here because ``torch.nn.init.sparse_`` is another scheme: it zeroes a *fraction*
    of each *column* and draws the rest from :math:`\mathcal N(0, 0.01^2)`, so a unit's number
    of inputs grows with the layer's width. Martens fixes the count, so a unit's input scale
    does not depend on the width, and the weights are large (unit variance) without
    saturating every unit.
    """
    if weight.dim() != 2:
        raise ValueError(f"Invalid weight: {weight.dim()} dimensions (must be 2)")
    fan_out, fan_in = weight.shape
    if not 1 <= nonzero <= fan_in:
        raise ValueError(f"Invalid nonzero: {nonzero!r} (must be in [1, fan_in = {fan_in}])")
    if not std > 0:
        raise ValueError(f"Invalid std: {std!r} (must be > 0)")
    with torch.no_grad():
        keys = torch.rand(fan_out, fan_in, generator=generator)
        chosen = keys.argsort(dim=1)[:, :nonzero]  # (fan_out, nonzero): a random subset per row
        values = torch.randn(fan_out, nonzero, generator=generator, dtype=weight.dtype) * std
        weight.zero_()
        weight.scatter_(1, chosen.to(weight.device), values.to(weight.device))
    return weight


def init_weight_(
    weight: Tensor, scheme: str, *, generator: torch.Generator | None = None
) -> Tensor:
    """Draw `weight` (``(fan_out, fan_in)``) in place with one of `SCHEMES` (module docstring)."""
    fan_out, fan_in = weight.shape
    if scheme == "uniform":
        bound = 1.0 / math.sqrt(fan_in)
        return nn.init.uniform_(weight, -bound, bound, generator=generator)
    if scheme == "xavier":
        return nn.init.xavier_uniform_(weight, gain=1.0, generator=generator)
    if scheme == "he":
        return nn.init.kaiming_normal_(weight, nonlinearity="relu", generator=generator)
    if scheme == "orthogonal":
        return nn.init.orthogonal_(weight, gain=1.0, generator=generator)
    if scheme == "sparse":
        return sparse_init_(weight, generator=generator)
    raise ValueError(f"Invalid scheme: {scheme!r} (must be one of {SCHEMES})")


@dataclass(frozen=True)
class Propagation:
    r"""Second moments through a deep net, one entry per layer :math:`j = 1 \dots` depth.

    Attributes:
        forward: :math:`\overline{z_j^2}`, the mean square of layer :math:`j`'s pre-activations
            over the batch and the units (their variance about zero: symmetric weights make
            :math:`z_j` zero-mean), ``(depth,)``.
        backward: :math:`\overline{(\partial L / \partial z_j)^2}`, the same for the gradient of
            the loss with respect to them, ``(depth,)``.
        input: :math:`\overline{x^2}` of the batch fed in.
    """

    forward: Tensor
    backward: Tensor
    input: float


def init_mlp(
    scheme: str,
    activation: str,
    *,
    depth: int,
    width: int,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> MLP:
    r"""A bias-free ``MLP([width] * (depth + 1), activation)`` (`coursekit.models`) with every
    weight drawn by `init_weight_`: :math:`z_j = W_j h_{j-1}`, :math:`h_j = \phi(z_j)`,
    :math:`h_0 = x`, output :math:`z_{\mathrm{depth}}` (no activation after the last layer)."""
    for name, value in (("depth", depth), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"Invalid {name}: {value!r} (must be an int >= 1)")
    if scheme not in SCHEMES:
        raise ValueError(f"Invalid scheme: {scheme!r} (must be one of {SCHEMES})")
    net = MLP([width] * (depth + 1), activation=activation, bias=False, generator=generator)
    net = net.to(dtype)
    for layer in net.linears:
        init_weight_(layer.weight.data, scheme, generator=generator)
    return net


def layer_scales(net: MLP, x: Tensor, top_grad: Tensor) -> Propagation:
    r"""Second moments of every linear layer's output :math:`z_j` (forward) and of
    :math:`\partial L / \partial z_j` (backward) for :math:`L = \sum` `top_grad` :math:`\odot`
    ``net(x)``, by one forward and one backward pass (hooks keep each :math:`z_j`)."""
    pre_activations: list[Tensor] = []

    def keep(_module: nn.Module, _inputs: tuple[Tensor, ...], output: Tensor) -> None:
        output.retain_grad()
        pre_activations.append(output)

    hooks = [layer.register_forward_hook(keep) for layer in net.linears]
    try:
        out = net(x)
        (top_grad * out).sum().backward()
    finally:
        for hook in hooks:
            hook.remove()
    forward = torch.stack([z.detach().pow(2).mean() for z in pre_activations])
    backward = torch.stack([z.grad.pow(2).mean() for z in pre_activations])
    return Propagation(forward, backward, x.pow(2).mean().item())


def propagate(
    scheme: str,
    activation: str,
    *,
    depth: int,
    width: int,
    batch: int,
    input_scale: float = 1.0,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> Propagation:
    r"""Send a batch forward and a gradient back through a deep net; the scales at every layer.

    The net is `init_mlp`'s; the inputs are :math:`\mathcal N(0, \mathrm{input\_scale}^2)`;
    the loss is :math:`L = \sum r \odot z_{\mathrm{depth}}` with :math:`r` standard normal, so
    the gradient entering the top layer has unit second moment and backprop carries it down,
    :math:`\partial L/\partial z_j = \phi'(z_j) \odot W_{j+1}^\top \partial L/\partial
    z_{j+1}` (`layer_scales`). Everything random (weights, inputs, :math:`r`) comes from
    `generator`.
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"Invalid batch: {batch!r} (must be an int >= 1)")
    net = init_mlp(scheme, activation, depth=depth, width=width, generator=generator, dtype=dtype)
    x = input_scale * torch.randn(batch, width, generator=generator, dtype=dtype)
    top_grad = torch.randn(batch, width, generator=generator, dtype=dtype)
    return layer_scales(net, x, top_grad)


def log_slope(values: Tensor, start: int = 0) -> float:
    r"""The least-squares slope of :math:`\ln(\text{values}_j)` against :math:`j`, from entry
    `start` on: the mean change of the log per layer. :math:`e^{\text{slope}}` is the average
    factor per layer (1/3 for a signal that shrinks threefold per layer)."""
    logs = values[start:].double().log()
    if len(logs) < 2:
        raise ValueError(f"Invalid start: {start!r} (needs at least two values after it)")
    j = torch.arange(len(logs), dtype=torch.float64)
    j = j - j.mean()
    return float((j * (logs - logs.mean())).sum() / (j * j).sum())
