"""Synchronous distributed SGD: every rank is a worker and all ranks step together.

    rank, p, device = init()
    algorithm = EASGD(model, alpha=0.9 / p, tau=10)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    history = run(algorithm, optimizer, F.cross_entropy, batches, steps=1000)

An algorithm is the communication added to a local optimizer. The loop (`train_step`) is

    loss = loss_fn(algorithm.module(x), y); loss.backward()
    algorithm.after_backward(t)       # gradients are at the OLD parameters here
    optimizer.step()
    algorithm.after_step(t)

so any `nn.Module`, loss and torch optimizer work. Each rank draws its own minibatches.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from coursekit.distributed import runtime

__all__ = [
    "DDP",
    "EASGD",
    "AllReduceSGD",
    "Algorithm",
    "LocalSGD",
    "new_history",
    "run",
    "train_step",
]

LossFn = Callable[[Tensor, Tensor], Tensor]


def _flat(model: nn.Module) -> Tensor:
    """A copy of the parameters as one vector: ``(n_params,)``."""
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


@torch.no_grad()
def _assign(model: nn.Module, flat: Tensor) -> None:
    """Copy a flat vector into the parameters, in place (optimizers and DDP keep their tensors)."""
    params = list(model.parameters())
    for p, chunk in zip(params, flat.split([p.numel() for p in params])):
        p.copy_(chunk.view_as(p))


class Algorithm:
    """No communication at all: p independent runs. The base of the others.

    Attributes:
        model: the worker's parameters x_i.
        module: what the loop calls for the forward pass (`model` itself, or a wrapper).
        period: steps per communication round (checkpoints are taken between rounds).
    """

    period = 1

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.module: nn.Module = model
        self.world_size = dist.get_world_size()

    def after_backward(self, step: int) -> None:
        """Called with the gradients g_i(x_i) in place, before ``optimizer.step()``."""

    def after_step(self, step: int) -> None:
        """Called after ``optimizer.step()``."""

    def consensus(self) -> Tensor:
        """The flat parameters the run stands for (what is evaluated); may communicate."""
        return _flat(self.model)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class AllReduceSGD(Algorithm):
    r"""Synchronous SGD: average the gradients over the p workers at every step.

    .. math::
        g = \frac{1}{p} \sum_{i=1}^{p} g_i(x), \qquad x \leftarrow \mathrm{step}(x, g)

    the same as one worker on the concatenated minibatch (equal minibatch sizes, mean loss).
    The gradients are flattened into one buffer so that a step is one all-reduce of
    ``n_params`` numbers.
    """

    def after_backward(self, step: int) -> None:
        params = list(self.model.parameters())
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])  # (n_params,)
        runtime.all_reduce(flat).div_(self.world_size)
        for p, chunk in zip(params, flat.split([g.numel() for g in grads])):
            p.grad = chunk.view_as(p)


def _counting_allreduce_hook(state, bucket):  # no annotations: DDP checks them as objects
    """DDP's default communication (average the bucket), counted like `runtime.all_reduce`."""
    from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

    nbytes = bucket.buffer().numel() * bucket.buffer().element_size()
    runtime.stats.bytes_sent += nbytes
    runtime.stats.bytes_received += nbytes
    runtime.stats.calls += 1
    return allreduce_hook(state, bucket)


class DDP(AllReduceSGD):
    """`AllReduceSGD` by ``torch.nn.parallel.DistributedDataParallel``, the production way.

    DDP all-reduces the gradients in buckets during the backward pass, overlapping
    communication with computation. Its bytes are counted by a communication hook; the
    broadcast of rank 0's parameters when DDP is built is not counted (they are equal already).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        device = next(model.parameters()).device
        device_ids = [device] if device.type == "cuda" else None
        self.module = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
        self.module.register_comm_hook(None, _counting_allreduce_hook)

    def after_backward(self, step: int) -> None:
        pass  # DDP has averaged the gradients already


def _check_tau(tau: int) -> int:
    if not isinstance(tau, int) or tau < 1:
        raise ValueError(f"Invalid tau: {tau!r} (must be an integer >= 1)")
    return tau


class LocalSGD(Algorithm):
    r"""Local SGD: each worker steps alone; every `tau` steps the models are averaged.

    .. math::
        x_i \leftarrow \mathrm{step}(x_i, g_i(x_i)); \qquad
        \text{if } (t + 1) \bmod \tau = 0:\ x_i \leftarrow \frac{1}{p} \sum_j x_j

    One all-reduce of ``n_params`` numbers per `tau` steps. With ``tau = 1`` and plain SGD
    from a common start this is `AllReduceSGD`; optimizer states (momentum) stay local.
    """

    def __init__(self, model: nn.Module, *, tau: int) -> None:
        tau = _check_tau(tau)
        super().__init__(model)
        self.period = tau

    def after_step(self, step: int) -> None:
        if (step + 1) % self.period == 0:
            flat = _flat(self.model)
            runtime.all_reduce(flat).div_(self.world_size)
            _assign(self.model, flat)

    def consensus(self) -> Tensor:
        # Evaluation only, not the algorithm's traffic: not counted.
        flat = _flat(self.model)
        dist.all_reduce(flat)
        return flat.div_(self.world_size)


class EASGD(Algorithm):
    r"""Synchronous elastic averaging SGD (Zhang, Choromanska and LeCun 2015, arXiv:1412.6651).

    Every worker holds x_i and a copy of the center variable x̃; at step t, with
    communication period tau and moving rate alpha,

    .. math::
        d_i &= \alpha (x_i - \tilde x) \text{ if } t \bmod \tau = 0 \text{ else } 0
              \quad \text{(the OLD } x_i, \tilde x) \\
        x_i &\leftarrow x_i - \eta g_i(x_i) - d_i \\
        \tilde x &\leftarrow \tilde x + \sum_{i=1}^{p} d_i \quad \text{(one all-reduce of } d_i)

    where ``- eta g_i`` is the local optimizer's step. The elastic force pulls each worker
    toward the center and the center toward the workers' mean, with
    ``beta = p alpha``: ``x̃ <- (1 - beta) x̃ + beta mean_i(x_i)``. With ``tau = 1`` this is the
    seed's synchronous pair; with ``alpha = 0`` the workers are independent runs.
    """

    def __init__(self, model: nn.Module, *, alpha: float, tau: int = 1) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"Invalid alpha: {alpha!r} (must be in [0, 1])")
        tau = _check_tau(tau)
        super().__init__(model)
        self.alpha, self.period = alpha, tau
        self.center = _flat(model)  # x0
        self._d: Tensor | None = None

    def after_backward(self, step: int) -> None:
        self._d = None
        if step % self.period == 0:
            x = _flat(self.model)
            self._d = self.alpha * (x - self.center)  # (n_params,), from the OLD x_i and x̃
            total = runtime.all_reduce(self._d.clone())
            self.center += total

    def after_step(self, step: int) -> None:
        if self._d is not None:
            _assign(self.model, _flat(self.model) - self._d)

    def consensus(self) -> Tensor:
        return self.center

    def state_dict(self) -> dict[str, Any]:
        return {"center": self.center.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.center.copy_(state["center"])


def train_step(
    algorithm: Algorithm,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    x: Tensor,
    y: Tensor,
    step: int,
) -> float:
    """One step `step` of `algorithm` on this rank's minibatch; returns its loss (before it)."""
    device = next(algorithm.model.parameters()).device
    x, y = x.to(device), y.to(device)
    optimizer.zero_grad(set_to_none=True)
    loss = loss_fn(algorithm.module(x), y)
    loss.backward()
    algorithm.after_backward(step)
    optimizer.step()
    algorithm.after_step(step)
    return loss.item()


def new_history() -> dict[str, list]:
    """An empty history: one entry per record."""
    keys = ("step", "time", "train_loss", "test_error", "bytes_sent", "bytes_received")
    return {key: [] for key in keys}


def run(
    algorithm: Algorithm,
    optimizer: torch.optim.Optimizer,
    loss_fn: LossFn,
    batches: Iterator[tuple[Tensor, Tensor]],
    *,
    steps: int,
    start: int = 0,
    record_every: int = 1,
    evaluate: Callable[[Tensor], float] | None = None,
    history: dict[str, list] | None = None,
    window: list[float] | None = None,
    before_step: Callable[[int], None] | None = None,
) -> dict[str, list]:
    """Run steps ``start, ..., steps - 1`` on this rank (every rank calls it); returns the history.

    `batches` yields this rank's ``(x, y)`` minibatches from step `start` on. Every
    `record_every` steps and after the last, a record is appended: the number of steps done,
    seconds since the start, the mean minibatch loss since the previous record, the test
    error ``evaluate(algorithm.consensus())`` (NaN without `evaluate`) and the bytes this rank
    has sent and received so far (`runtime.stats`). `before_step(t)` runs before step t
    (checkpoints). To continue a run pass its `history`, ``start`` and `window`, the list of
    losses since the last record (run fills and empties it; a checkpoint saves a copy).
    """
    if steps < start:
        raise ValueError(f"Invalid steps: {steps!r} (must be >= start = {start})")
    if record_every < 1:
        raise ValueError(f"Invalid record_every: {record_every!r} (must be >= 1)")
    history = new_history() if history is None else history
    offset = history["time"][-1] if history["time"] else 0.0
    began = time.perf_counter()
    losses = [] if window is None else window
    for t in range(start, steps):
        if before_step is not None:
            before_step(t)
        x, y = next(batches)
        losses.append(train_step(algorithm, optimizer, loss_fn, x, y, t))
        if (t + 1) % record_every == 0 or t + 1 == steps:
            error = evaluate(algorithm.consensus()) if evaluate is not None else math.nan
            history["step"].append(t + 1)
            history["time"].append(offset + time.perf_counter() - began)
            history["train_loss"].append(sum(losses) / len(losses))
            history["test_error"].append(error)
            history["bytes_sent"].append(runtime.stats.bytes_sent)
            history["bytes_received"].append(runtime.stats.bytes_received)
            losses.clear()
    return history
