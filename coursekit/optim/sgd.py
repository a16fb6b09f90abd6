r"""Stochastic gradient descent with momentum, dampening, Nesterov and weight decay.

The update for one parameter tensor :math:`\theta` with gradient :math:`g` (seeds 001, 003):

.. math::
    g &\leftarrow g + \lambda \theta                      && \text{(weight decay)} \\
    b &\leftarrow \mu b + (1 - \tau) g                    && \text{(momentum buffer; } b_1 = g) \\
    d &= g + \mu b \ \text{(Nesterov)} \quad\text{or}\quad d = b \\
    \theta &\leftarrow \theta - \alpha d

With :math:`\mu = 0` this is plain SGD, :math:`\theta \leftarrow \theta - \alpha g`.
This is torch's parameterisation; `coursekit.optim.AveragedMomentumSGD` and
`coursekit.optim.SutskeverNesterov` are the textbook forms, equal to it after a change of
variables.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ._base import (
    _check,
    _check_lr,
    _check_weight_decay,
    _choose,
    _group_by_device_and_dtype,
    _ReferenceOptimizer,
)
from ._fused import check_flags, fuse

__all__ = ["SGD", "sgd", "sgd_update"]


def sgd_update(
    param: Tensor,
    grad: Tensor,
    momentum_buffer: Tensor | None,
    *,
    lr: float | Tensor,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    maximize: bool,
) -> Tensor | None:
    """One SGD step on one tensor, in place. Returns the momentum buffer (None without momentum)."""
    if maximize:
        grad = -grad
    if weight_decay != 0:
        grad = grad.add(param, alpha=weight_decay)
    if momentum != 0:
        if momentum_buffer is None:
            # The first buffer is the gradient itself, undamped (torch's convention).
            momentum_buffer = grad.detach().clone()
        else:
            momentum_buffer.mul_(momentum).add_(grad, alpha=1 - dampening)
        grad = grad.add(momentum_buffer, alpha=momentum) if nesterov else momentum_buffer
    param.sub_(lr * grad)
    return momentum_buffer


def _single_tensor_sgd(params, grads, momentum_buffers, **hyper) -> None:
    for i, (param, grad) in enumerate(zip(params, grads)):
        momentum_buffers[i] = sgd_update(param, grad, momentum_buffers[i], **hyper)


_fused_sgd = fuse(_single_tensor_sgd)


def _multi_tensor_sgd(
    params, grads, momentum_buffers, *, lr, momentum, dampening, weight_decay, nesterov, maximize
) -> None:
    indices = list(range(len(params)))
    for p, g, idx in _group_by_device_and_dtype(params, grads, indices):
        if maximize:
            g = torch._foreach_neg(g)
        if weight_decay != 0:
            g = torch._foreach_add(g, p, alpha=weight_decay)
        if momentum != 0:
            bufs = [momentum_buffers[i] for i in idx]
            if any(b is None for b in bufs):
                # First step: buffers start as copies of the gradient.
                for k, i in enumerate(idx):
                    if bufs[k] is None:
                        bufs[k] = g[k].detach().clone()
                    else:
                        bufs[k].mul_(momentum).add_(g[k], alpha=1 - dampening)
                    momentum_buffers[i] = bufs[k]
            else:
                torch._foreach_mul_(bufs, momentum)
                torch._foreach_add_(bufs, g, alpha=1 - dampening)
            g = torch._foreach_add(g, bufs, alpha=momentum) if nesterov else bufs
        torch._foreach_add_(p, g, alpha=-lr)


def sgd(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    *,
    foreach: bool | None = None,
    fused: bool | None = None,
    lr: float,
    momentum: float,
    dampening: float,
    weight_decay: float,
    nesterov: bool,
    maximize: bool,
) -> None:
    """Functional SGD over lists of tensors; `momentum_buffers` is updated in place."""
    if fused and momentum != 0 and any(b is None for b in momentum_buffers):
        fused = False  # the first step only copies gradients into new buffers: not worth a compile
    impl = _choose(foreach, fused, _single_tensor_sgd, _multi_tensor_sgd, _fused_sgd)
    impl(
        params,
        grads,
        momentum_buffers,
        lr=lr,
        momentum=momentum,
        dampening=dampening,
        weight_decay=weight_decay,
        nesterov=nesterov,
        maximize=maximize,
    )


class SGD(_ReferenceOptimizer):
    """Stochastic gradient descent, a drop-in for `torch.optim.SGD` (same arguments, defaults, state).

    Args:
        params: parameters or parameter groups.
        lr: step size alpha (default 1e-3).
        momentum: momentum factor mu (default 0).
        dampening: tau, scales the gradient's entry into the buffer by 1 - tau (default 0).
        weight_decay: L2 penalty lambda added to the gradient (default 0).
        nesterov: use Nesterov momentum (needs momentum > 0 and dampening = 0).
        maximize: ascend instead of descend.
        foreach: None or True: the multi-tensor path; False: the per-tensor loop.
        fused: True: the per-tensor loop compiled into one kernel (`coursekit.optim._fused`).
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        _check_lr(lr)
        check_flags(foreach, fused)
        _check(momentum >= 0.0, "momentum", momentum, ">= 0")
        _check_weight_decay(weight_decay)
        if nesterov:
            _check(
                momentum > 0 and dampening == 0,
                "nesterov",
                nesterov,
                "used with momentum > 0 and dampening = 0",
            )
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
            foreach=foreach,
            fused=fused,
        )
        super().__init__(params, defaults)

    def _init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        # The buffer is created by the first update (it starts as the gradient).
        return {"momentum_buffer": None}

    def _update(self, group, params, grads, states) -> None:
        buffers = [s.get("momentum_buffer") for s in states]
        sgd(
            params,
            grads,
            buffers,
            foreach=group["foreach"],
            fused=group["fused"],
            lr=group["lr"],
            momentum=group["momentum"],
            dampening=group["dampening"],
            weight_decay=group["weight_decay"],
            nesterov=group["nesterov"],
            maximize=group["maximize"],
        )
        for state, buf in zip(states, buffers):
            state["momentum_buffer"] = buf
