r"""Slices of a real network's loss: along random directions and through trained solutions.

A network has millions of parameters, so its loss cannot be drawn; a line or a plane through
parameter space can. With the parameters :math:`\theta` of a model and directions
:math:`d_1, d_2` of the same shapes, the slices are

.. math::
    \ell(\alpha) = L(\theta + \alpha d_1), \qquad
    \ell(\alpha, \beta) = L(\theta + \alpha d_1 + \beta d_2),

where :math:`L` is the loss over the whole data set. Li et al. (2018), "Visualizing the loss
landscape of neural nets", draw :math:`d` at random and rescale each *filter* of it (a row of a
Linear weight, an output channel of a Conv weight) to the norm of the same filter of
:math:`\theta`: networks whose weights differ only by a scale that ReLU and batch norm ignore
then give comparable pictures. `interpolate` and `plane_through` slice along the line and the
plane through trained solutions instead (Goodfellow et al. 2015; Garipov et al. 2018).

A direction is a ``dict`` from parameter name (as in ``model.named_parameters()``) to a tensor
of that parameter's shape: readable, and what ``torch.func.functional_call`` takes.

Two ways to evaluate a grid of points give the same numbers (a test holds them to it); a
`SliceOptions` chooses between them and tunes them, a `SliceInfo` reports what was done:

* ``"loop"``: write each point's parameters into the model in place and call it. The default
  on a CPU, where both paths are bound by arithmetic and by touching memory, so vmap buys
  nothing.
* ``"batched"``: ``torch.vmap`` over a chunk of points of ``torch.func.functional_call``. The
  default on an accelerator, where the loop is bound by kernel launches.

Timing both on the first batch and keeping the faster was tried and dropped: on a CPU the
loop won at every size the course uses, and the timing cost more than it saved
(``benchmarks/RESULTS.md``).

Both paths exploit one more fact when the model is an ``nn.Sequential`` that starts with a
Linear or Conv layer. Such a layer is linear in its weights, so on the data :math:`X`

.. math::
    f(X; W + \alpha D + \beta E) = f(X; W) + \alpha f(X; D) + \beta f(X; E)

(a bias counts as part of the weights). The three outputs on the right are computed once per
batch, and each grid point pays a weighted sum instead of the layer
(``SliceOptions.reuse_first_layer``, on by default). For the digits MLP the first layer is a
large share of the work; what remains is mostly the last layer and the cross-entropy itself
(``benchmarks/landscape_slice.py``).

The model is evaluated in eval mode (no dropout; batch norm with its running statistics) and
under ``torch.inference_mode``; its parameters, buffers and train/eval flags are restored
exactly afterwards.

Example::

    import torch
    from torch import nn
    from coursekit import plotting
    from coursekit.data import digits
    from coursekit.landscapes import random_direction, slice_2d

    split = digits()
    model = nn.Sequential(nn.Linear(64, 100), nn.ReLU(), nn.Linear(100, 10))  # trained
    gen = torch.Generator().manual_seed(0)
    d1, d2 = random_direction(model, generator=gen), random_direction(model, generator=gen)
    grid = torch.linspace(-1, 1, 41)
    losses = slice_2d(model, nn.functional.cross_entropy, (split.x_train, split.y_train),
                      (d1, d2), grid, grid)  # (41, 41)
    plotting.plot_slice_2d(grid, grid, losses, points={"trained": (0.0, 0.0)})
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.utils import parametrize

__all__ = [
    "SliceInfo",
    "SliceOptions",
    "interpolate",
    "plane_through",
    "random_direction",
    "slice_1d",
    "slice_2d",
]

Direction = dict[str, Tensor]
Criterion = Callable[[Tensor, Tensor], Tensor]
Data = tuple[Tensor, Tensor] | Iterable[tuple[Tensor, Tensor]]
_Grid = Tensor | Sequence[float]

_NORMALIZATIONS = ("filter", "layer", None)
# Layers whose output is linear in (weight, bias) jointly, for a fixed input.
_LINEAR_IN_WEIGHTS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
# Default memory for one chunk of the batched path: small on a CPU, where fresh memory is
# slow to touch and caches are small (for the digits MLP, chunks of 8 to 30 points ran alike and
# 128 slower: benchmarks/RESULTS.md); large on an accelerator, where fewer launches win.
_CPU_BUDGET = 16 * 2**20
_ACCELERATOR_BUDGET = 2**30


@dataclass(frozen=True)
class SliceOptions:
    """How to evaluate the grid points; every choice gives the same losses up to rounding.

    Attributes:
        method: ``"loop"``, ``"batched"``, or None (default) for the loop on a CPU and the
            batched path on an accelerator (see the module docstring).
        chunk_size: grid points per vmap call of the batched path; None chooses it from
            ``memory_budget``.
        memory_budget: bytes one chunk may take, where a point is counted as its parameters
            plus twice the outputs of all leaf modules in one forward pass on the first batch
            (twice, for intermediate results no module returns); None means 16 MiB on a CPU
            (larger chunks only touch more fresh memory) and 1 GiB on an accelerator.
        reuse_first_layer: compute the first layer once per batch and direction and combine
            its outputs (see the module docstring); ignored where it does not apply.

    Raises:
        ValueError: naming the attribute, when a value is out of range.
    """

    method: str | None = None
    chunk_size: int | None = None
    memory_budget: int | None = None
    reuse_first_layer: bool = True

    def __post_init__(self) -> None:
        if self.method not in ("loop", "batched", None):
            raise ValueError(f"method must be 'loop', 'batched' or None, got {self.method!r}")
        chunk, budget = self.chunk_size, self.memory_budget
        if chunk is not None and (
            isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1
        ):
            raise ValueError(f"chunk_size must be a positive int or None, got {chunk!r}")
        if budget is not None and (isinstance(budget, bool) or budget < 1):
            raise ValueError(f"memory_budget must be a positive number of bytes, got {budget!r}")


@dataclass
class SliceInfo:
    """How a slice was evaluated, for benchmarks and for the curious.

    Attributes:
        method: ``"loop"`` or ``"batched"``, the path that computed the losses.
        chunk_size: grid points per vmap call of the batched path (1 for the loop).
        reuse_first_layer: whether the first layer's outputs were combined, not recomputed.
        points: number of grid points.
    """

    method: str
    chunk_size: int
    reuse_first_layer: bool
    points: int


# ---------------------------------------------------------------------------------------------
# Directions


def random_direction(
    model: nn.Module,
    *,
    generator: torch.Generator | None = None,
    normalize: str | None = "filter",
    ignore_biases_and_norms: bool = True,
) -> Direction:
    r"""A Gaussian direction in parameter space, normalised as in Li et al. (2018).

    Every entry is drawn from :math:`\mathcal N(0, 1)`, then

    * ``normalize="filter"``: each filter :math:`d_i` (the slice ``[i]`` along the first
      dimension: a row of a Linear weight, an output channel of a Conv weight) is rescaled to
      :math:`d_i \|\theta_i\| / \|d_i\|`, the norm of the same filter of the model;
    * ``normalize="layer"``: each tensor is rescaled to the norm of the model's tensor;
    * ``normalize=None``: left as drawn.

    With ``ignore_biases_and_norms`` every parameter with fewer than two dimensions (biases,
    batch-norm scales and shifts) gets a zero direction, as in Li et al.; otherwise it is
    normalised as one filter (Li et al. would copy the parameter itself).

    Args:
        model: the model whose parameters give names, shapes, dtype, device and norms.
        generator: source of the random numbers; the numbers are drawn on its device (the CPU
            for None or a CPU generator) and moved to the model's, so a seed gives the same
            direction on every device.
        normalize: ``"filter"``, ``"layer"`` or None.
        ignore_biases_and_norms: zero the direction of parameters with ``ndim < 2``.

    Returns:
        name -> tensor with the shape, dtype and device of each parameter.
    """
    if normalize not in _NORMALIZATIONS:
        raise ValueError(f"normalize must be 'filter', 'layer' or None, got {normalize!r}")
    draw_on = generator.device if generator is not None else torch.device("cpu")
    direction = {}
    for name, param in model.named_parameters():
        theta = param.detach()
        d = torch.randn(theta.shape, generator=generator, dtype=theta.dtype, device=draw_on)
        d = d.to(theta.device)
        if theta.ndim < 2 and ignore_biases_and_norms:
            d.zero_()
        elif normalize == "layer" or (normalize == "filter" and theta.ndim < 2):
            d.mul_(theta.norm() / d.norm().clamp_min(torch.finfo(d.dtype).tiny))
        elif normalize == "filter":
            filters, model_filters = d.flatten(1), theta.flatten(1)  # (out, rest)
            scale = model_filters.norm(dim=1) / filters.norm(dim=1).clamp_min(
                torch.finfo(d.dtype).tiny
            )
            filters.mul_(scale[:, None])  # a view: scales d in place
        direction[name] = d
    return direction


# ---------------------------------------------------------------------------------------------
# Slices


def slice_1d(
    model: nn.Module,
    criterion: Criterion,
    data: Data,
    direction: Direction,
    alphas: _Grid,
    *,
    options: SliceOptions | None = None,
    return_info: bool = False,
) -> Tensor | tuple[Tensor, SliceInfo]:
    r"""The losses :math:`L(\theta + \alpha d)` for each :math:`\alpha` in ``alphas``.

    Args:
        model: the network; left exactly as it was.
        criterion: ``criterion(outputs, targets) -> scalar``, a mean over the samples (e.g.
            ``nn.functional.cross_entropy``); it must work under ``torch.vmap`` for the batched
            path (torch's losses do).
        data: ``(x, y)`` tensors, or an iterable of ``(x, y)`` batches (read once). The loss of
            a point is the mean of the batch losses weighted by batch size, which is the loss
            over all samples when ``criterion`` takes a mean.
        direction: name -> tensor for every parameter, e.g. from `random_direction`.
        alphas: the step sizes, a non-empty 1-D sequence or tensor.
        options: how to evaluate the points, a `SliceOptions`; None takes its defaults.
        return_info: also return a `SliceInfo`.

    Returns:
        losses of shape ``(len(alphas),)``, with the model's dtype and device (and the
        `SliceInfo` when asked for).
    """
    origin = _state(model, "model")
    _check_direction("direction", direction, origin)
    coords = _grid("alphas", alphas)[:, None]  # (P, 1)
    losses, info = _evaluate(model, criterion, data, origin, [direction], coords, options)
    return (losses, info) if return_info else losses


def slice_2d(
    model: nn.Module,
    criterion: Criterion,
    data: Data,
    directions: tuple[Direction, Direction],
    alphas: _Grid,
    betas: _Grid,
    *,
    options: SliceOptions | None = None,
    return_info: bool = False,
) -> Tensor | tuple[Tensor, SliceInfo]:
    r"""The losses :math:`L(\theta + \alpha d_1 + \beta d_2)` on the grid ``alphas x betas``.

    Entry ``[i, j]`` is the loss at ``(alphas[i], betas[j])``, the layout
    `coursekit.plotting.plot_slice_2d` takes. The other arguments are those of `slice_1d`.

    Returns:
        losses of shape ``(len(alphas), len(betas))`` (and the `SliceInfo` when asked for).
    """
    origin = _state(model, "model")
    if len(directions) != 2:
        raise ValueError(f"directions must hold two directions, got {len(directions)}")
    _check_direction("directions[0] (d1)", directions[0], origin)
    _check_direction("directions[1] (d2)", directions[1], origin)
    a, b = _grid("alphas", alphas), _grid("betas", betas)
    coords = torch.cartesian_prod(a, b).reshape(-1, 2)  # (A * B, 2), alpha-major
    losses, info = _evaluate(model, criterion, data, origin, list(directions), coords, options)
    losses = losses.reshape(len(a), len(b))
    return (losses, info) if return_info else losses


def interpolate(
    model_a: nn.Module,
    model_b: nn.Module,
    criterion: Criterion,
    data: Data,
    ts: _Grid,
    *,
    options: SliceOptions | None = None,
    return_info: bool = False,
) -> Tensor | tuple[Tensor, SliceInfo]:
    r"""The losses on the line through two solutions, :math:`(1 - t)\theta_a + t\theta_b`.

    :math:`t = 0` is ``model_a`` and :math:`t = 1` is ``model_b``; values outside
    :math:`[0, 1]` extrapolate. The interpolated state holds every parameter and every
    floating-point buffer (batch-norm running statistics), so both ends reproduce the two
    models' losses exactly. The models must share an architecture; ``model_a`` is the one
    evaluated (and restored). The other arguments are those of `slice_1d`.

    Returns:
        losses of shape ``(len(ts),)`` (and the `SliceInfo` when asked for).
    """
    theta_a = _state(model_a, "model_a", buffers=True)
    theta_b = _state(model_b, "model_b", buffers=True)
    _check_direction("model_b", theta_b, theta_a)
    direction = {n: theta_b[n] - theta_a[n] for n in theta_a}
    coords = _grid("ts", ts)[:, None]
    losses, info = _evaluate(model_a, criterion, data, theta_a, [direction], coords, options)
    return (losses, info) if return_info else losses


def plane_through(
    model_0: nn.Module,
    model_a: nn.Module,
    model_b: nn.Module,
    criterion: Criterion,
    data: Data,
    alphas: _Grid,
    betas: _Grid,
    *,
    options: SliceOptions | None = None,
    return_info: bool = False,
) -> tuple[Tensor, dict[str, tuple[float, float]]] | tuple[Tensor, dict, SliceInfo]:
    r"""The losses on the plane through three solutions, and where the solutions lie on it.

    With :math:`u = \theta_a - \theta_0` and :math:`v = \theta_b - \theta_0`, Gram-Schmidt gives
    the orthonormal axes :math:`e_1 = u / \|u\|` and :math:`e_2 = w / \|w\|`, where
    :math:`w = v - (v \cdot e_1) e_1`. The grid point :math:`(\alpha, \beta)` is

    .. math::
        \theta(\alpha, \beta) = \theta_0 + \|u\| (\alpha e_1 + \beta e_2),

    so the coordinates are Euclidean distances in units of :math:`\|u\|`, alike on both axes:
    ``model_0`` lies at :math:`(0, 0)`, ``model_a`` at :math:`(1, 0)` and ``model_b`` at
    :math:`(v \cdot e_1, \|w\|) / \|u\|`. The state holds the parameters and floating-point
    buffers, as in `interpolate`; ``model_0`` is the one evaluated (and restored). The other
    arguments are those of `slice_1d`.

    Returns:
        ``(losses, points)``: losses of shape ``(len(alphas), len(betas))``, entry ``[i, j]``
        at ``(alphas[i], betas[j])``; points maps ``"model_0"``, ``"model_a"`` and
        ``"model_b"`` to their ``(alpha, beta)``, ready for `coursekit.plotting.plot_slice_2d`.
        A `SliceInfo` follows when asked for.
    """
    theta_0 = _state(model_0, "model_0", buffers=True)
    theta_a = _state(model_a, "model_a", buffers=True)
    theta_b = _state(model_b, "model_b", buffers=True)
    _check_direction("model_a", theta_a, theta_0)
    _check_direction("model_b", theta_b, theta_0)

    # Gram-Schmidt in float64 whatever the model's dtype: the coordinates are read by people.
    u = {n: (theta_a[n] - theta_0[n]).double() for n in theta_0}
    v = {n: (theta_b[n] - theta_0[n]).double() for n in theta_0}
    norm_u = _dot(u, u).sqrt()
    if norm_u == 0:
        raise ValueError("model_a must differ from model_0 to span a plane")
    along = _dot(v, u) / norm_u  # v . e1
    w = {n: v[n] - (along / norm_u) * u[n] for n in v}
    norm_w = _dot(w, w).sqrt()
    if norm_w <= 1e-9 * _dot(v, v).sqrt():
        raise ValueError("model_b must not lie on the line through model_0 and model_a")
    d1 = {n: u[n].to(theta_0[n].dtype) for n in u}  # ||u|| e1 = u
    d2 = {n: (w[n] * (norm_u / norm_w)).to(theta_0[n].dtype) for n in w}  # ||u|| e2
    points = {
        "model_0": (0.0, 0.0),
        "model_a": (1.0, 0.0),
        "model_b": (float(along / norm_u), float(norm_w / norm_u)),
    }

    a, b = _grid("alphas", alphas), _grid("betas", betas)
    coords = torch.cartesian_prod(a, b).reshape(-1, 2)
    losses, info = _evaluate(model_0, criterion, data, theta_0, [d1, d2], coords, options)
    losses = losses.reshape(len(a), len(b))
    return (losses, points, info) if return_info else (losses, points)


# ---------------------------------------------------------------------------------------------
# Checks and small helpers


def _state(model: nn.Module, what: str, buffers: bool = False) -> dict[str, Tensor]:
    """Copies of the parameters (and floating-point buffers): the point θ of the model."""
    state = {n: p.detach().clone() for n, p in model.named_parameters()}
    if buffers:
        state |= {n: b.detach().clone() for n, b in model.named_buffers() if b.is_floating_point()}
    if not state:
        raise ValueError(f"{what} has no parameters to slice along")
    return state


def _check_direction(what: str, direction: dict[str, Tensor], reference: dict[str, Tensor]):
    for name, ref in reference.items():
        if name not in direction:
            raise ValueError(f"{what} has no entry for parameter {name!r}")
        if direction[name].shape != ref.shape:
            raise ValueError(
                f"{what}[{name!r}] has shape {tuple(direction[name].shape)}, "
                f"but parameter {name!r} has shape {tuple(ref.shape)}"
            )
    for name in direction:
        if name not in reference:
            raise ValueError(f"{what} has an entry {name!r}, which is not a parameter")


def _grid(name: str, values: _Grid) -> Tensor:
    grid = torch.as_tensor(values, dtype=torch.float64).detach().cpu()
    if grid.ndim != 1 or grid.numel() == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence, got shape {tuple(grid.shape)}")
    if not torch.isfinite(grid).all():
        raise ValueError(f"{name} must be finite")
    return grid


def _dot(a: dict[str, Tensor], b: dict[str, Tensor]) -> Tensor:
    return sum((a[n] * b[n]).sum() for n in a)


def _batches(data: Data, device, dtype) -> Iterator[tuple[Tensor, Tensor]]:
    """``(x, y)`` on the model's device; floating-point tensors in the model's dtype."""
    single = isinstance(data, (tuple, list)) and len(data) == 2
    for batch in [data] if single and all(isinstance(t, Tensor) for t in data) else data:
        if len(batch) != 2:
            raise ValueError(f"data must hold (x, y) pairs, got a batch of {len(batch)} items")
        yield tuple(t.to(device, dtype) if t.is_floating_point() else t.to(device) for t in batch)


def _can_reuse_first_layer(model: nn.Module) -> bool:
    """Is the model ``Sequential(Linear or Conv, ...)`` with a plain first layer?"""
    if not isinstance(model, nn.Sequential) or len(model) < 2 or next(iter(model._modules)) != "0":
        return False
    first = model[0]
    return (
        type(first) in _LINEAR_IN_WEIGHTS  # exactly: a subclass may change forward
        and not parametrize.is_parametrized(first)
        and not first._forward_hooks
        and not first._forward_pre_hooks
    )


# ---------------------------------------------------------------------------------------------
# Evaluation: the losses at the points θ + Σ_k c_k d_k of a grid, batch by batch


def _evaluate(
    model, criterion, data, origin, directions, coords, options: SliceOptions | None
) -> tuple[Tensor, SliceInfo]:
    """Losses at θ + Σ_k coords[:, k] d_k, shape ``(P,)``, over all batches of ``data``."""
    options = SliceOptions() if options is None else options
    if not isinstance(options, SliceOptions):
        raise ValueError(f"options must be a SliceOptions or None, got {options!r}")
    theta = next(iter(origin.values()))
    device, dtype = theta.device, theta.dtype
    coords = coords.to(device, dtype)  # (P, K)
    stacked = {n: torch.stack([d[n].to(t) for d in directions]) for n, t in origin.items()}
    reuse = options.reuse_first_layer and _can_reuse_first_layer(model)
    on_cpu = device.type == "cpu"
    method = options.method or ("loop" if on_cpu else "batched")
    budget = options.memory_budget or (_CPU_BUDGET if on_cpu else _ACCELERATOR_BUDGET)

    own = dict(model.named_parameters()) | dict(model.named_buffers())
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    total, count, info = 0.0, 0, None
    try:
        with torch.inference_mode():
            for x, y in _batches(data, device, dtype):
                batch = _Batch(model, criterion, origin, stacked, x, y, reuse)
                if info is None:  # the first batch settles the chunk size of every batch
                    chunk = 1
                    if method == "batched":
                        chunk = options.chunk_size or batch.chunk_from_budget(budget)
                    info = SliceInfo(method, min(chunk, len(coords)), reuse, len(coords))
                if method == "loop":
                    losses = batch.loop(coords)
                else:
                    losses = batch.batched(coords, info.chunk_size)
                total = total + losses * len(x)
                count += len(x)
    finally:
        with torch.no_grad():  # the loop wrote into the model: put θ back, bit for bit
            for name, value in origin.items():
                own[name].copy_(value)
        for module, training in modes:
            module.training = training
    if info is None:
        raise ValueError("data must hold at least one batch")
    return total / count, info


class _Batch:
    """One batch of data, and the two ways to evaluate grid points on it.

    With ``reuse``, ``module`` is ``model[1:]`` and ``inputs`` is ``(K + 1, N, *out)``: the
    first layer's output at θ, then along each direction (the first layer's entries of the
    directions, bias included). Each point's input to ``module`` is then
    ``inputs[0] + Σ_k c_k inputs[k + 1]``. Without, ``module`` is the model and ``inputs``
    is ``x``.
    """

    def __init__(self, model, criterion, origin, stacked, x, y, reuse):
        self.criterion, self.origin, self.stacked = criterion, origin, stacked
        self.y, self.reuse = y, reuse
        self.dtype = next(iter(origin.values())).dtype  # of the losses: the model's
        if reuse:
            first, self.module = model[0], model[1:]
            names = [name for name, _ in first.named_parameters()]  # weight (and bias)
            at = {k: origin[f"0.{k}"] for k in names}
            along = [
                {k: stacked[f"0.{k}"][i] for k in names} for i in range(len(stacked["0.weight"]))
            ]
            self.inputs = torch.stack([functional_call(first, p, (x,)) for p in [at, *along]])
        else:
            self.module, self.inputs = model, x
        self.names = [n for n in origin if not (reuse and n.startswith("0."))]

    def loop(self, coords: Tensor) -> Tensor:
        """One point at a time: write θ + Σ c_k d_k into the module's tensors, call it."""
        own = dict(self.module.named_parameters()) | dict(self.module.named_buffers())
        tensors = [own[n] for n in self.names]
        thetas = [self.origin[n] for n in self.names]
        dirs = [[self.stacked[n][k] for n in self.names] for k in range(coords.shape[1])]
        losses = torch.empty(len(coords), dtype=self.dtype, device=self.y.device)
        inputs = self.inputs
        if self.reuse:
            inputs = torch.empty_like(self.inputs[0])  # rewritten for every point
        for i, c in enumerate(coords.tolist()):
            if tensors:  # one call per direction rather than one per tensor
                torch._foreach_copy_(tensors, thetas)
                for k, ck in enumerate(c):
                    torch._foreach_add_(tensors, dirs[k], alpha=ck)
            if self.reuse:
                torch.add(self.inputs[0], self.inputs[1], alpha=c[0], out=inputs)
                for k in range(1, len(c)):
                    inputs.add_(self.inputs[k + 1], alpha=c[k])
            losses[i] = self.criterion(self.module(inputs), self.y)
        return losses

    def batched(self, coords: Tensor, chunk_size: int) -> Tensor:
        """``chunk_size`` points per call: vmap of functional_call over stacked parameters."""
        flat = {n: self.stacked[n].flatten(1) for n in self.names}  # (K, numel)

        def loss(params, inputs):
            return self.criterion(functional_call(self.module, params, (inputs,)), self.y)

        vloss = torch.vmap(loss, in_dims=(0, 0 if self.reuse else None))
        inputs = self.inputs
        if self.reuse:
            at = self.inputs[0].reshape(1, -1)  # (1, N * out): the first layer at θ
            along = self.inputs[1:].flatten(1)  # (K, N * out): ... along each d_k
            # Rewritten by every chunk: on a CPU, fresh memory is slow to touch.
            hidden = at.new_empty(min(chunk_size, len(coords)), at.shape[1])
        losses = [coords[:0, 0]]  # so that no points give no losses
        for start in range(0, len(coords), chunk_size):
            c = coords[start : start + chunk_size]  # (m, K)
            params = {  # (m, *shape): θ + c @ d, each row one point
                n: torch.addmm(self.origin[n].reshape(1, -1), c, flat[n]).view(
                    len(c), *self.origin[n].shape
                )
                for n in self.names
            }
            if self.reuse:
                h = torch.addmm(at, c, along, out=hidden[: len(c)])  # (m, N * out)
                inputs = h.view(len(c), *self.inputs.shape[1:])
            losses.append(vloss(params, inputs))
        return torch.cat(losses)

    def chunk_from_budget(self, budget: int) -> int:
        """Points per chunk such that a chunk's parameters and activations fit in ``budget``."""
        sizes = []

        def record(module, args, output):
            if isinstance(output, Tensor):
                sizes.append(output.numel())

        leaves = [m for m in self.module.modules() if not list(m.children())]
        handles = [m.register_forward_hook(record) for m in leaves]
        try:
            self.module(self.inputs[0] if self.reuse else self.inputs)  # only sizes matter
        finally:
            for handle in handles:
                handle.remove()
        numel = 2 * sum(sizes) + sum(self.origin[n].numel() for n in self.names)
        if self.reuse:
            numel += self.inputs[0].numel()
        return max(1, budget // (numel * torch.finfo(self.dtype).bits // 8))
