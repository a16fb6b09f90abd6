"""A minimal training loop that records what the lectures plot: loss, gradient norm, step size.

history = train(model, optimizer, nn.functional.cross_entropy, x, y, epochs=5, batch_size=64)
history.loss[-1], history.grad_norm[-1], history.lr[-1]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

__all__ = ["History", "train"]


@dataclass
class History:
    """Per-step records of a run (one entry per optimizer step)."""

    loss: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)


def train(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    x: Tensor,
    y: Tensor,
    *,
    epochs: int = 1,
    batch_size: int | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    seed: int = 0,
    progress: bool = False,
) -> History:
    """Train `model` on `(x, y)` with minibatches drawn without replacement each epoch.

    `batch_size=None` is full-batch gradient descent. The data are moved to the model's
    device, so the same call runs on CPU and GPU. The loss recorded at a step is the minibatch
    loss before that step's update; the gradient norm is the 2-norm over all parameters.
    """
    if epochs < 1:
        raise ValueError(f"Invalid epochs: {epochs!r} (must be >= 1)")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"Invalid batch_size: {batch_size!r} (must be >= 1)")
    device = next(model.parameters()).device
    x, y = x.to(device), y.to(device)
    n = len(x)
    batch_size = batch_size or n
    generator = torch.Generator().manual_seed(seed)
    history = History()
    steps_per_epoch = -(-n // batch_size)
    bar = tqdm(total=epochs * steps_per_epoch, disable=not progress, desc="train")
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator).to(device)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            grads = [p.grad for p in model.parameters() if p.grad is not None]
            history.grad_norm.append(
                torch.linalg.vector_norm(
                    torch.stack([torch.linalg.vector_norm(g) for g in grads])
                ).item()
            )
            history.loss.append(loss.item())
            history.lr.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            bar.update()
    bar.close()
    return history
