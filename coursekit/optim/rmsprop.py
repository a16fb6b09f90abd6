r"""RMSprop: divide each coordinate's step by the root of a running average of squared gradients.

For one parameter tensor :math:`\theta` with gradient :math:`g` (Tieleman & Hinton, 2012;
seeds 001, 002, 003):

.. math::
    r &\leftarrow \gamma r + (1 - \gamma) g^2
        && \text{(running mean square; } \gamma = \text{alpha)} \\
    \bar g &\leftarrow \gamma \bar g + (1 - \gamma) g,\quad
        s = \sqrt{r - \bar g^2} + \epsilon  && \text{(centered)} \\
    s &= \sqrt{r} + \epsilon                && \text{(otherwise)} \\
    b &\leftarrow \mu b + g / s,\quad \theta \leftarrow \theta - \alpha b
        && \text{(with momentum } \mu > 0) \\
    \theta &\leftarrow \theta - \alpha\, g / s  && \text{(without)}

Unlike AdaGrad's sum, the running average forgets old gradients, so the step does not decay to
zero; unlike Rprop it uses the gradient's size, so minibatches average out (seed 003).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ._base import (
    _check,
    _check_eps,
    _check_lr,
    _check_weight_decay,
    _choose,
    _group_by_device_and_dtype,
    _increment,
    _new_step,
    _ReferenceOptimizer,
)
from ._fused import check_flags, fuse

__all__ = ["RMSprop", "rmsprop", "rmsprop_update"]


def rmsprop_update(
    param: Tensor,
    grad: Tensor,
    square_avg: Tensor,
    grad_avg: Tensor | None,
    momentum_buffer: Tensor | None,
    step: Tensor,
    *,
    lr: float | Tensor,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    centered: bool,
    maximize: bool,
) -> None:
    """One RMSprop step on one tensor; the state tensors are updated in place."""
    if maximize:
        grad = -grad
    step += 1
    if weight_decay != 0:
        grad = grad.add(param, alpha=weight_decay)
    square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
    if centered:
        grad_avg.lerp_(grad, 1 - alpha)
        scale = square_avg.addcmul(grad_avg, grad_avg, value=-1).sqrt_()
    else:
        scale = square_avg.sqrt()
    scale = scale.add_(eps)
    if momentum > 0:
        momentum_buffer.mul_(momentum).addcdiv_(grad, scale)
        param.sub_(lr * momentum_buffer)
    else:
        param.sub_(lr * grad / scale)


def _single_tensor_rmsprop(
    params, grads, square_avgs, grad_avgs, momentum_buffers, steps, **hyper
) -> None:
    for i, param in enumerate(params):
        rmsprop_update(
            param, grads[i], square_avgs[i], grad_avgs[i], momentum_buffers[i], steps[i], **hyper
        )


_fused_rmsprop = fuse(_single_tensor_rmsprop)


def _multi_tensor_rmsprop(
    params,
    grads,
    square_avgs,
    grad_avgs,
    momentum_buffers,
    steps,
    *,
    lr,
    alpha,
    eps,
    weight_decay,
    momentum,
    centered,
    maximize,
) -> None:
    for p, g, r, gbar, buf, s in _group_by_device_and_dtype(
        params, grads, square_avgs, grad_avgs, momentum_buffers, steps
    ):
        if maximize:
            g = torch._foreach_neg(g)
        _increment(s)
        if weight_decay != 0:
            g = torch._foreach_add(g, p, alpha=weight_decay)
        torch._foreach_mul_(r, alpha)
        torch._foreach_addcmul_(r, g, g, 1 - alpha)
        if centered:
            torch._foreach_lerp_(gbar, g, 1 - alpha)
            scale = torch._foreach_addcmul(r, gbar, gbar, -1)
            torch._foreach_sqrt_(scale)
        else:
            scale = torch._foreach_sqrt(r)
        torch._foreach_add_(scale, eps)
        if momentum > 0:
            torch._foreach_mul_(buf, momentum)
            torch._foreach_addcdiv_(buf, g, scale)
            torch._foreach_add_(p, buf, alpha=-lr)
        else:
            torch._foreach_addcdiv_(p, g, scale, -lr)


def rmsprop(
    params: list[Tensor],
    grads: list[Tensor],
    square_avgs: list[Tensor],
    grad_avgs: list[Tensor | None],
    momentum_buffers: list[Tensor | None],
    steps: list[Tensor],
    *,
    foreach: bool | None = None,
    fused: bool | None = None,
    lr: float,
    alpha: float,
    eps: float,
    weight_decay: float,
    momentum: float,
    centered: bool,
    maximize: bool,
) -> None:
    """Functional RMSprop over lists of tensors, all updated in place."""
    impl = _choose(foreach, fused, _single_tensor_rmsprop, _multi_tensor_rmsprop, _fused_rmsprop)
    impl(
        params,
        grads,
        square_avgs,
        grad_avgs,
        momentum_buffers,
        steps,
        lr=lr,
        alpha=alpha,
        eps=eps,
        weight_decay=weight_decay,
        momentum=momentum,
        centered=centered,
        maximize=maximize,
    )


class RMSprop(_ReferenceOptimizer):
    """RMSprop, a drop-in for `torch.optim.RMSprop`.

    Args:
        params: parameters or parameter groups.
        lr: step size alpha (default 1e-2).
        alpha: decay rate gamma of the running mean square (default 0.99).
        eps: added to the denominator for stability (default 1e-8).
        weight_decay: L2 penalty lambda added to the gradient (default 0).
        momentum: momentum factor mu applied to the scaled gradient (default 0).
        centered: divide by an estimate of the gradient's standard deviation instead of its
            root mean square (Graves, 2013).
        foreach: None or True: the multi-tensor path; False: the per-tensor loop.
        fused: True: the per-tensor loop compiled into one kernel (`coursekit.optim._fused`).
        maximize: ascend instead of descend.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        momentum: float = 0.0,
        centered: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        fused: bool | None = None,
    ) -> None:
        _check_lr(lr)
        check_flags(foreach, fused)
        _check(0.0 <= alpha, "alpha", alpha, ">= 0")
        _check_eps(eps)
        _check_weight_decay(weight_decay)
        _check(momentum >= 0.0, "momentum", momentum, ">= 0")
        defaults = dict(
            lr=lr,
            alpha=alpha,
            eps=eps,
            weight_decay=weight_decay,
            momentum=momentum,
            centered=centered,
            foreach=foreach,
            maximize=maximize,
            fused=fused,
        )
        super().__init__(params, defaults)

    def _init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        def zeros() -> Tensor:
            return torch.zeros_like(param, memory_format=torch.preserve_format)

        state = {"step": _new_step(param, group), "square_avg": zeros()}
        if group["momentum"] > 0:
            state["momentum_buffer"] = zeros()
        if group["centered"]:
            state["grad_avg"] = zeros()
        return state

    def _update(self, group, params, grads, states) -> None:
        rmsprop(
            params,
            grads,
            [s["square_avg"] for s in states],
            [s.get("grad_avg") for s in states],
            [s.get("momentum_buffer") for s in states],
            [s["step"] for s in states],
            foreach=group["foreach"],
            fused=group["fused"],
            lr=group["lr"],
            alpha=group["alpha"],
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            momentum=group["momentum"],
            centered=group["centered"],
            maximize=group["maximize"],
        )
