r"""Backprop as constrained optimisation: a layered net whose layer outputs are variables
(lecture 10).

Seed 000 ends with LeCun's reading of backprop (LeCun 1988, "A theoretical framework for
back-propagation"): call the layer outputs :math:`Z_1, \dots, Z_N` variables of their own, with
:math:`Z_0 = X`, and train by

.. math::
    \min_{W, Z}\ C(Z_N, Y) \quad\text{subject to}\quad Z_i = G_i(Z_{i-1}, W_i),\ i = 1..N .

Here :math:`G_i(Z, W_i) = f_i(Z A_i^\top + b_i)` with :math:`W_i = (A_i, b_i)` and an
activation :math:`f_i`. The module computes the three things the lecture builds on it:

- **the Lagrangian** (`lagrangian`) with the sign convention
  :math:`\mathcal L = C(Z_N) + \sum_i \langle B_i,\ G_i(Z_{i-1}, W_i) - Z_i\rangle`. Its
  stationarity conditions in :math:`B` are the forward pass; in :math:`Z` they are the backward
  pass, :math:`B_N = \partial C/\partial Z_N`,
  :math:`B_{i-1} = (\partial G_i/\partial Z_{i-1})^\top B_i` (`multipliers`, which solves them
  with explicit Jacobians, no autograd); in :math:`W` they give the weight gradients
  (`weight_gradients`). With the seed's sign, :math:`\langle B_i, Z_i - G_i\rangle`, every
  multiplier is minus the gradient.
- **the quadratic-penalty relaxation** (`penalty_objective`)
  :math:`C(Z_N) + \tfrac\rho2\sum_i \|Z_i - G_i(Z_{i-1}, W_i)\|^2` (seed 000, "relax the
  constraint": :math:`Z_i` becomes a *virtual target* for layer :math:`i`), minimised in
  alternation over :math:`Z` (`z_step`) and over each layer's weights on its own (`w_step`): the
  method of auxiliary coordinates (Carreira-Perpiñán and Wang 2014), `penalty_training`.
- **difference target propagation** (Lee, Zhang, Fischer and Bengio 2015): targets sent down
  through learned approximate inverses with the difference correction (`dtp_targets`,
  `train_dtp`), against backprop with the same net, initialisation and minibatches
  (`train_backprop`).

Shapes: a batch of :math:`n` inputs; :math:`Z_i` and :math:`B_i` are ``(n, d_i)``.

Example::

    import torch
    from coursekit import constrained as con
    from coursekit.models import MLP

    net = MLP([4, 5, 3], activation="tanh").double()
    layers = con.layers_from_mlp(net)
    x, y = torch.randn(8, 4, dtype=torch.float64), torch.randint(0, 3, (8,))
    zs = con.forward(layers, x)
    bs = con.multipliers(layers, zs, y)          # = autograd's dC/dZ_i, i = 1..N
    grads = con.weight_gradients(layers, zs, bs)  # = autograd's dC/dA_i, dC/db_i
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from coursekit._checks import count as _check_count
from coursekit._checks import positive as _check_positive
from coursekit.models import MLP

__all__ = [
    "LOSSES",
    "History",
    "Layer",
    "apply_layer",
    "dtp_targets",
    "forward",
    "lagrangian",
    "layers_from_mlp",
    "loss_gradient",
    "loss_value",
    "multipliers",
    "penalty_multipliers",
    "penalty_objective",
    "penalty_training",
    "train_backprop",
    "train_dtp",
    "w_step",
    "weight_gradients",
    "z_step",
]

#: The costs :math:`C(Z_N, Y)` understood here (both averaged over the batch).
LOSSES = ("cross_entropy", "mse")

_ACTIVATIONS = ("linear", "tanh", "sigmoid", "relu", "softplus")


def _check_loss(loss: str) -> None:
    if loss not in LOSSES:
        raise ValueError(f"Invalid loss: {loss!r} (must be one of {LOSSES})")


# --- The layered net ------------------------------------------------------------------------


@dataclass(frozen=True)
class Layer:
    r"""One layer :math:`G(Z) = f(Z A^\top + b)`: `weight` :math:`A` ``(d_out, d_in)``, `bias`
    :math:`b` ``(d_out,)``, `activation` :math:`f` ("linear", "tanh", "sigmoid", "relu",
    "softplus")."""

    weight: Tensor
    bias: Tensor
    activation: str = "linear"

    def __post_init__(self) -> None:
        if self.activation not in _ACTIVATIONS:
            raise ValueError(
                f"Invalid activation: {self.activation!r} (must be one of {_ACTIVATIONS})"
            )


def layers_from_mlp(net: MLP) -> list[Layer]:
    """`net`'s linear layers as `Layer` s (copies): its activation after every layer but the
    last, which is linear, as in `coursekit.models.MLP`."""
    linears = net.linears
    layers = []
    for i, lin in enumerate(linears):
        bias = lin.bias if lin.bias is not None else torch.zeros_like(lin.weight[:, 0])
        activation = net.activation if i < len(linears) - 1 else "linear"
        layers.append(Layer(lin.weight.detach().clone(), bias.detach().clone(), activation))
    return layers


def _activate(activation: str, a: Tensor) -> Tensor:
    if activation == "linear":
        return a
    if activation == "tanh":
        return torch.tanh(a)
    if activation == "sigmoid":
        return torch.sigmoid(a)
    if activation == "relu":
        return torch.relu(a)
    return torch.nn.functional.softplus(a)


def _derivative(activation: str, a: Tensor) -> Tensor:
    """:math:`f'(a)`, written out (no autograd)."""
    if activation == "linear":
        return torch.ones_like(a)
    if activation == "tanh":
        return 1 - torch.tanh(a) ** 2
    if activation == "sigmoid":
        s = torch.sigmoid(a)
        return s * (1 - s)
    if activation == "relu":
        return (a > 0).to(a.dtype)
    return torch.sigmoid(a)  # softplus


def _pre(layer: Layer, z: Tensor) -> Tensor:
    return z @ layer.weight.T + layer.bias  # (n, d_out)


def apply_layer(layer: Layer, z: Tensor) -> Tensor:
    r""":math:`G(Z) = f(Z A^\top + b)` for a batch `z` ``(n, d_in)``."""
    return _activate(layer.activation, _pre(layer, z))


def forward(layers: Sequence[Layer], x: Tensor) -> list[Tensor]:
    r"""The feasible point: :math:`[Z_0 = X, Z_1, \dots, Z_N]` with :math:`Z_i = G_i(Z_{i-1})`."""
    zs = [x]
    for layer in layers:
        zs.append(apply_layer(layer, zs[-1]))
    return zs


# --- The cost --------------------------------------------------------------------------------


def loss_value(z_out: Tensor, y: Tensor, loss: str = "cross_entropy") -> Tensor:
    r""":math:`C(Z_N, Y)`: the mean cross-entropy of the logits `z_out` ``(n, k)`` against
    class labels `y` ``(n,)``, or the mean of :math:`\tfrac12\|z - y\|^2` against targets `y`
    ``(n, k)``."""
    _check_loss(loss)
    if loss == "cross_entropy":
        return torch.nn.functional.cross_entropy(z_out, y)
    return 0.5 * ((z_out - y) ** 2).sum() / len(z_out)


def loss_gradient(z_out: Tensor, y: Tensor, loss: str = "cross_entropy") -> Tensor:
    r""":math:`\partial C/\partial Z_N`, written out: :math:`(\mathrm{softmax}(Z_N) -
    \mathrm{onehot}(Y))/n` for the cross-entropy, :math:`(Z_N - Y)/n` for the squared error."""
    _check_loss(loss)
    n = len(z_out)
    if loss == "cross_entropy":
        onehot = torch.nn.functional.one_hot(y, z_out.shape[1]).to(z_out.dtype)
        return (torch.softmax(z_out, dim=1) - onehot) / n
    return (z_out - y) / n


# --- The Lagrangian and its stationarity conditions ------------------------------------------


def lagrangian(
    layers: Sequence[Layer],
    zs: Sequence[Tensor],
    bs: Sequence[Tensor],
    y: Tensor,
    loss: str = "cross_entropy",
) -> Tensor:
    r""":math:`\mathcal L(W, Z, B) = C(Z_N, Y) + \sum_{i=1}^N \langle B_i,\ G_i(Z_{i-1}, W_i) -
    Z_i\rangle` (LeCun 1988; seed 000, "Lagrangian formulation of backprop", whose sign is the
    opposite). `zs` is :math:`[Z_0, \dots, Z_N]`, `bs` is :math:`[B_1, \dots, B_N]`. Written with
    torch operations, so autograd can differentiate it with respect to every argument."""
    if not len(zs) == len(bs) + 1 == len(layers) + 1:
        raise ValueError(
            f"Invalid zs, bs: {len(zs)} and {len(bs)} for {len(layers)} layers "
            "(must be N + 1 and N)"
        )
    value = loss_value(zs[-1], y, loss)
    for layer, z_in, z_out, b in zip(layers, zs[:-1], zs[1:], bs):
        value = value + (b * (apply_layer(layer, z_in) - z_out)).sum()
    return value


def multipliers(
    layers: Sequence[Layer], zs: Sequence[Tensor], y: Tensor, loss: str = "cross_entropy"
) -> list[Tensor]:
    r"""The multipliers :math:`[B_1, \dots, B_N]` that make the Lagrangian stationary in
    :math:`Z` at the point `zs` (the forward pass, normally).

    :math:`\partial\mathcal L/\partial Z_N = \partial C/\partial Z_N - B_N = 0` and, for
    :math:`i = N..2`, :math:`\partial\mathcal L/\partial Z_{i-1} = (\partial G_i/\partial
    Z_{i-1})^\top B_i - B_{i-1} = 0`. The system is triangular: solved from the top,

    .. math::
        B_N = \frac{\partial C}{\partial Z_N}, \qquad
        B_{i-1} = \bigl(B_i \odot f_i'(Z_{i-1} A_i^\top + b_i)\bigr) A_i ,

    with the derivative of each activation written out (`loss_gradient`, no autograd). These
    are the backward pass's :math:`\partial C/\partial Z_i`: backprop solves the stationarity
    conditions of the Lagrangian.
    """
    bs = [loss_gradient(zs[-1], y, loss)]
    for i in range(len(layers) - 1, 0, -1):
        layer = layers[i]
        delta = bs[0] * _derivative(layer.activation, _pre(layer, zs[i]))  # (n, d_i+1)
        bs.insert(0, delta @ layer.weight)  # (n, d_i)
    return bs


def weight_gradients(
    layers: Sequence[Layer], zs: Sequence[Tensor], bs: Sequence[Tensor]
) -> list[tuple[Tensor, Tensor]]:
    r""":math:`\partial\mathcal L/\partial W_i = (\partial G_i/\partial W_i)^\top B_i`, per layer
    :math:`(\partial/\partial A_i, \partial/\partial b_i)`:

    .. math::
        \Delta_i = B_i \odot f_i'(Z_{i-1} A_i^\top + b_i),\qquad
        \frac{\partial\mathcal L}{\partial A_i} = \Delta_i^\top Z_{i-1},\qquad
        \frac{\partial\mathcal L}{\partial b_i} = \textstyle\sum_n \Delta_i .

    At the forward pass with `multipliers`' :math:`B` this is :math:`dC/dW_i`: the gradient
    that backprop hands to the optimiser.
    """
    grads = []
    for layer, z_in, b in zip(layers, zs[:-1], bs):
        delta = b * _derivative(layer.activation, _pre(layer, z_in))
        grads.append((delta.T @ z_in, delta.sum(0)))
    return grads


# --- The quadratic penalty: virtual targets ----------------------------------------------------


def penalty_objective(
    layers: Sequence[Layer],
    zs: Sequence[Tensor],
    y: Tensor,
    rho: float,
    loss: str = "cross_entropy",
) -> Tensor:
    r""":math:`P_\rho(W, Z) = C(Z_N, Y) + \tfrac\rho2 \sum_{i=1}^N \|Z_i - G_i(Z_{i-1},
    W_i)\|^2/n`, with :math:`Z_0 = X` fixed (seed 000, "relax the constraint", with one weight
    :math:`\rho` for every layer; the division by the batch size :math:`n` keeps
    :math:`\rho` independent of it, as :math:`C` is a mean)."""
    _check_positive("rho", rho)
    n = len(zs[0])
    value = loss_value(zs[-1], y, loss)
    for layer, z_in, z_out in zip(layers, zs[:-1], zs[1:]):
        value = value + 0.5 * rho * ((z_out - apply_layer(layer, z_in)) ** 2).sum() / n
    return value


def _lbfgs(params: list[Tensor], objective, max_iter: int, tol: float) -> int:
    """Minimise `objective()` over `params` (leaf tensors) with torch's L-BFGS and a strong-Wolfe
    line search; the number of objective evaluations it took."""
    optimizer = torch.optim.LBFGS(
        params,
        lr=1,
        max_iter=max_iter,
        max_eval=2 * max_iter,
        tolerance_grad=tol,
        tolerance_change=0.0,
        history_size=20,
        line_search_fn="strong_wolfe",
    )
    count = 0

    def closure():
        nonlocal count
        count += 1
        optimizer.zero_grad()
        value = objective()
        value.backward()
        return value

    optimizer.step(closure)
    return count


def z_step(
    layers: Sequence[Layer],
    zs: Sequence[Tensor],
    y: Tensor,
    rho: float,
    loss: str = "cross_entropy",
    *,
    max_iter: int = 100,
    tol: float = 1e-9,
) -> list[Tensor]:
    r"""The virtual targets: :math:`\arg\min_{Z_1..Z_N} P_\rho(W, Z)` with the weights fixed,
    by L-BFGS from `zs` (:math:`Z_0` is kept). Returns :math:`[Z_0, \dots, Z_N]`, detached.

    Only this step couples the layers: :math:`Z_i` sits in layer :math:`i`'s penalty and, through
    :math:`G_{i+1}`, in layer :math:`i+1`'s. At its minimum, with
    :math:`\Lambda_i = \tfrac\rho n (G_i - Z_i)`, :math:`\Lambda_N = \partial C/\partial Z_N`
    and :math:`\Lambda_{i-1} = (\partial G_i/\partial Z_{i-1})^\top \Lambda_i`: the backward
    recursion again, with the scaled constraint violations in place of the multipliers (and the
    Jacobians taken at :math:`Z` instead of the forward pass). As :math:`\rho \to \infty`,
    :math:`Z \to` the forward pass and :math:`\Lambda_i \to B_i`.
    """
    _check_positive("rho", rho)
    _check_count("max_iter", max_iter, 1)
    free = [z.detach().clone().requires_grad_(True) for z in zs[1:]]
    x = zs[0].detach()
    frozen = [Layer(ly.weight.detach(), ly.bias.detach(), ly.activation) for ly in layers]
    _lbfgs(free, lambda: penalty_objective(frozen, [x, *free], y, rho, loss), max_iter, tol)
    return [x, *(z.detach() for z in free)]


def penalty_multipliers(layers: Sequence[Layer], zs: Sequence[Tensor], rho: float) -> list[Tensor]:
    r"""The multiplier estimates of the penalty method, :math:`\Lambda_i = \tfrac\rho n
    (G_i(Z_{i-1}, W_i) - Z_i)`, :math:`i = 1..N`: at a minimiser of `penalty_objective` over
    :math:`Z` they satisfy the backward recursion (see `z_step`), and they tend to the
    Lagrange multipliers :math:`B_i` as :math:`\rho \to \infty` (the classical estimate of
    the quadratic-penalty method; Nocedal and Wright 2006, section 17.1)."""
    _check_positive("rho", rho)
    n = len(zs[0])
    return [rho / n * (apply_layer(ly, a) - b) for ly, a, b in zip(layers, zs[:-1], zs[1:])]


def w_step(
    layer: Layer, z_in: Tensor, z_out: Tensor, *, max_iter: int = 50, tol: float = 1e-9
) -> Layer:
    r"""Layer :math:`i`'s weights fitted to its own input and virtual target alone:
    :math:`\arg\min_{A, b} \|Z_i - f(Z_{i-1} A^\top + b)\|^2`.

    Every layer's problem involves only :math:`Z_{i-1}` and :math:`Z_i`: the layers are
    decoupled and could be fitted in parallel. A linear layer is least squares, solved exactly
    (`torch.linalg.lstsq` on :math:`[Z_{i-1}, 1]`); a nonlinear one takes `max_iter` L-BFGS
    iterations from the current weights.
    """
    _check_count("max_iter", max_iter, 1)
    z_in, z_out = z_in.detach(), z_out.detach()
    if layer.activation == "linear":
        design = torch.cat([z_in, torch.ones_like(z_in[:, :1])], dim=1)  # (n, d_in + 1)
        solution = torch.linalg.lstsq(design, z_out).solution  # (d_in + 1, d_out)
        return replace(layer, weight=solution[:-1].T.contiguous(), bias=solution[-1].clone())
    weight = layer.weight.detach().clone().requires_grad_(True)
    bias = layer.bias.detach().clone().requires_grad_(True)

    def objective():
        fitted = _activate(layer.activation, z_in @ weight.T + bias)
        return 0.5 * ((z_out - fitted) ** 2).sum() / len(z_in)

    _lbfgs([weight, bias], objective, max_iter, tol)
    return replace(layer, weight=weight.detach(), bias=bias.detach())


@dataclass
class History:
    """What a training run records at each evaluation: the step (or outer iteration) it was
    taken at, the training loss and accuracy of the network's forward pass, the test accuracy,
    and the seconds spent training so far (evaluations excluded)."""

    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    test_accuracy: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    extra: dict[str, list[float]] = field(default_factory=dict)

    def record(self, step, layers, x, y, x_test, y_test, seconds, **extra) -> None:
        with torch.no_grad():
            logits = forward(layers, x)[-1]
            self.step.append(step)
            self.loss.append(loss_value(logits, y).item())
            self.train_accuracy.append(_accuracy(logits, y))
            self.test_accuracy.append(_accuracy(forward(layers, x_test)[-1], y_test))
            self.seconds.append(seconds)
        for key, value in extra.items():
            self.extra.setdefault(key, []).append(float(value))


def _accuracy(logits: Tensor, y: Tensor) -> float:
    return (logits.argmax(1) == y).to(torch.float64).mean().item()


def penalty_training(
    layers: Sequence[Layer],
    x: Tensor,
    y: Tensor,
    x_test: Tensor,
    y_test: Tensor,
    *,
    rho: float = 1.0,
    rho_growth: float = 1.0,
    outer_steps: int = 30,
    z_iter: int = 20,
    w_iter: int = 20,
) -> tuple[list[Layer], History]:
    r"""Alternating minimisation of the penalty objective (method of auxiliary coordinates,
    Carreira-Perpiñán and Wang 2014), full batch, for classification with the cross-entropy:

    .. math::
        Z \leftarrow \arg\min_Z P_\rho(W, Z)\ \text{(`z_step`)},\qquad
        W_i \leftarrow \arg\min_{W_i} \|Z_i - G_i(Z_{i-1}, W_i)\|^2\ \text{for each } i
        \ \text{(`w_step`)},\qquad \rho \leftarrow \rho \cdot \text{rho\_growth}.

    :math:`Z` starts at the forward pass. The history records the forward pass of the net
    (its real loss and accuracies) after every outer step, and in ``extra["violation"]`` the
    constraint violation :math:`\sum_i\|Z_i - G_i\|^2/n` of the virtual targets.
    """
    _check_positive("rho", rho)
    _check_positive("rho_growth", rho_growth)
    _check_count("outer_steps", outer_steps, 0)
    layers = list(layers)
    history = History()
    zs = forward(layers, x)
    elapsed = 0.0
    history.record(0, layers, x, y, x_test, y_test, elapsed, violation=0.0, rho=rho)
    for step in range(1, outer_steps + 1):
        start = time.perf_counter()
        zs = z_step(layers, zs, y, rho, max_iter=z_iter)
        layers = [w_step(ly, a, b, max_iter=w_iter) for ly, a, b in zip(layers, zs[:-1], zs[1:])]
        elapsed += time.perf_counter() - start
        with torch.no_grad():
            violation = sum(
                ((b - apply_layer(ly, a)) ** 2).sum().item()
                for ly, a, b in zip(layers, zs[:-1], zs[1:])
            ) / len(x)
        history.record(step, layers, x, y, x_test, y_test, elapsed, violation=violation, rho=rho)
        rho *= rho_growth
    return layers, history


# --- Difference target propagation ---------------------------------------------------------


def dtp_targets(
    hs: Sequence[Tensor], top_target: Tensor, inverses: Sequence[Layer]
) -> list[Tensor]:
    r"""Targets for the activations `hs` :math:`= [h_j, \dots, h_k]` (bottom first), sent down
    from `top_target`, the target of :math:`h_k` (Lee et al. 2015, equation 15):

    .. math::
        \hat h_{i-1} = h_{i-1} + g_i(\hat h_i) - g_i(h_i),

    where ``inverses[m]`` approximately inverts the layer from ``hs[m]`` to ``hs[m + 1]`` (it
    maps ``hs[m + 1]`` back to ``hs[m]``). Returns the targets in the order of `hs`, ending with
    `top_target`. The difference correction :math:`h_{i-1} - g_i(h_i)` makes the target exact,
    :math:`f_i(\hat h_{i-1}) = \hat h_i`, when :math:`g_i` is the exact inverse of
    :math:`f_i`, and keeps :math:`\hat h_{i-1} = h_{i-1}` when :math:`\hat h_i = h_i`, even
    for an inexact :math:`g_i`. Vanilla target propagation, :math:`\hat h_{i-1} =
    g_i(\hat h_i)`, has only the first property.
    """
    if len(inverses) != len(hs) - 1:
        raise ValueError(
            f"Invalid inverses: {len(inverses)} for {len(hs)} activations (must be one fewer)"
        )
    targets = [top_target]
    for m in range(len(inverses) - 1, -1, -1):
        g = inverses[m]
        targets.insert(0, hs[m] + apply_layer(g, targets[0]) - apply_layer(g, hs[m + 1]))
    return targets


def _init_inverses(layers: Sequence[Layer], generator: torch.Generator) -> list[Layer]:
    r"""One inverse :math:`g_i(h) = f(h V^\top + c)` for each hidden layer above the first
    (mapping layer i's output back to layer i-1's), nn.Linear's uniform initialisation."""
    inverses = []
    for i in range(1, len(layers) - 1):
        d_out, d_in = layers[i].weight.shape
        bound = 1 / math.sqrt(d_out)
        weight = (2 * torch.rand(d_in, d_out, generator=generator) - 1) * bound
        bias = (2 * torch.rand(d_in, generator=generator) - 1) * bound
        dtype = layers[i].weight.dtype
        inverses.append(Layer(weight.to(dtype), bias.to(dtype), layers[i - 1].activation))
    return inverses


def _sgd_layer(layer: Layer, local_loss, lr: float) -> Layer:
    """One gradient step on `layer`'s weights for `local_loss(layer)`."""
    weight = layer.weight.detach().requires_grad_(True)
    bias = layer.bias.detach().requires_grad_(True)
    value = local_loss(replace(layer, weight=weight, bias=bias))
    g_weight, g_bias = torch.autograd.grad(value, [weight, bias])
    return replace(layer, weight=weight.detach() - lr * g_weight, bias=bias.detach() - lr * g_bias)


def _batches(n: int, batch_size: int, steps: int, seed: int):
    """`steps` minibatch index sets: epochs of a seeded random permutation."""
    generator = torch.Generator().manual_seed(seed)
    done = 0
    while done < steps:
        order = torch.randperm(n, generator=generator)
        for start in range(0, n - batch_size + 1, batch_size):
            if done == steps:
                return
            yield order[start : start + batch_size]
            done += 1


def _check_training(steps: int, batch_size: int, n: int, every: int) -> None:
    _check_count("steps", steps, 0)
    _check_count("every", every, 1)
    if not 1 <= batch_size <= n:
        raise ValueError(f"Invalid batch_size: {batch_size!r} (must be in [1, {n}])")


def train_backprop(
    layers: Sequence[Layer],
    x: Tensor,
    y: Tensor,
    x_test: Tensor,
    y_test: Tensor,
    *,
    lr: float,
    steps: int,
    batch_size: int = 32,
    every: int = 20,
    seed: int = 0,
) -> tuple[list[Layer], History]:
    r"""Minibatch SGD with backprop's gradients (`multipliers`, `weight_gradients`) on the
    cross-entropy: the baseline. Minibatches are epochs of a permutation drawn with `seed`, the
    same as `train_dtp`'s; the history is recorded every `every` steps."""
    _check_positive("lr", lr)
    _check_training(steps, batch_size, len(x), every)
    layers = list(layers)
    history = History()
    elapsed = 0.0
    history.record(0, layers, x, y, x_test, y_test, elapsed)
    for step, idx in enumerate(_batches(len(x), batch_size, steps, seed), start=1):
        start = time.perf_counter()
        zs = forward(layers, x[idx])
        grads = weight_gradients(layers, zs, multipliers(layers, zs, y[idx]))
        layers = [
            replace(ly, weight=ly.weight - lr * gw, bias=ly.bias - lr * gb)
            for ly, (gw, gb) in zip(layers, grads)
        ]
        elapsed += time.perf_counter() - start
        if step % every == 0 or step == steps:
            history.record(step, layers, x, y, x_test, y_test, elapsed)
    return layers, history


def train_dtp(
    layers: Sequence[Layer],
    x: Tensor,
    y: Tensor,
    x_test: Tensor,
    y_test: Tensor,
    *,
    lr: float,
    steps: int,
    target_lr: float = 0.5,
    inverse_lr: float = 0.01,
    noise: float = 0.3,
    batch_size: int = 32,
    every: int = 20,
    seed: int = 0,
) -> tuple[list[Layer], list[Layer], History]:
    r"""Difference target propagation (Lee et al. 2015, algorithm 1) for an MLP classifier with
    hidden layers :math:`h_1, \dots, h_{N-1}` and linear output :math:`h_N` (logits).

    Per minibatch:

    1. **inverses**: each :math:`g_i` (:math:`i = 2..N-1`) takes a step on
       :math:`\|g_i(f_i(h_{i-1} + \epsilon)) - (h_{i-1} + \epsilon)\|^2`,
       :math:`\epsilon \sim \mathcal N(0, \text{noise}^2)`;
    2. **targets**: the top hidden layer's target is a gradient step on the loss,
       :math:`\hat h_{N-1} = h_{N-1} - \hat\eta\, \partial C/\partial h_{N-1}` (with
       :math:`\hat\eta` = `target_lr` and :math:`C` the batch's summed cross-entropy; the
       paper does the same, as the softmax layer is not inverted), the others come down with
       `dtp_targets`;
    3. **layers**: each layer takes an SGD step (`lr`) on its own loss
       :math:`\|f_i(h_{i-1}) - \hat h_i\|^2/n` with :math:`h_{i-1}` held fixed; the output layer
       on the cross-entropy itself (its gradient is local).

    Returns the trained layers, the learned inverses (``inverses[m]`` maps :math:`h_{m+2}` back
    to :math:`h_{m+1}`, as `dtp_targets` takes them) and the history.

    No gradient crosses a layer except the one from the logits to :math:`h_{N-1}`. Inverses are
    drawn from ``torch.Generator().manual_seed(seed)``, as are the minibatches (the same as
    `train_backprop`'s) and the noise.
    """
    _check_positive("lr", lr)
    _check_positive("target_lr", target_lr)
    _check_positive("inverse_lr", inverse_lr)
    if not noise >= 0:
        raise ValueError(f"Invalid noise: {noise!r} (must be >= 0)")
    _check_training(steps, batch_size, len(x), every)
    if len(layers) < 2:
        raise ValueError(f"Invalid layers: {len(layers)} (need at least one hidden layer)")
    generator = torch.Generator().manual_seed(seed + 1)
    layers = list(layers)
    inverses = _init_inverses(layers, generator)
    history = History()
    elapsed = 0.0
    history.record(0, layers, x, y, x_test, y_test, elapsed)
    for step, idx in enumerate(_batches(len(x), batch_size, steps, seed), start=1):
        start = time.perf_counter()
        xb, yb = x[idx], y[idx]
        with torch.no_grad():
            hs = forward(layers, xb)  # [h_0 = x, h_1, ..., h_N]
        # 1. inverses: reconstruct a noisy h_{i-1} from f_i of it.
        for k, inverse in enumerate(inverses):
            i = k + 1  # 0-based index of the layer g inverts
            h_noisy = hs[i] + noise * torch.randn(hs[i].shape, generator=generator).to(hs[i])
            with torch.no_grad():
                up = apply_layer(layers[i], h_noisy)

            def reconstruction(g, up=up, h_noisy=h_noisy):
                return ((apply_layer(g, up) - h_noisy) ** 2).sum() / len(up)

            inverses[k] = _sgd_layer(inverse, reconstruction, inverse_lr)
        # 2. targets: a gradient step at the top hidden layer, differences below it.
        with torch.no_grad():
            top = len(layers) - 1  # hs[top] = h_{N-1}
            # dC/dh_{N-1} through the linear output layer, for the summed loss
            grad_top = loss_gradient(hs[-1], yb) @ layers[-1].weight * len(xb)
            targets = dtp_targets(hs[1 : top + 1], hs[top] - target_lr * grad_top, inverses)
        # 3. layers: local losses only.
        new_layers = []
        for i, layer in enumerate(layers):
            h_in = hs[i]
            if i == len(layers) - 1:

                def local(ly, h_in=h_in, yb=yb):
                    return loss_value(apply_layer(ly, h_in), yb)
            else:

                def local(ly, h_in=h_in, target=targets[i]):
                    return ((apply_layer(ly, h_in) - target) ** 2).sum() / len(h_in)

            new_layers.append(_sgd_layer(layer, local, lr))
        layers = new_layers
        elapsed += time.perf_counter() - start
        if step % every == 0 or step == steps:
            history.record(step, layers, x, y, x_test, y_test, elapsed)
    return layers, inverses, history
