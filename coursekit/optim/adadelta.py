r"""AdaDelta: a step with the units of the parameter, RMS(past updates) / RMS(gradients) times g.

For one parameter tensor :math:`\theta` with gradient :math:`g` (Zeiler, 2012; seed 003):

.. math::
    r &\leftarrow \rho r + (1 - \rho) g^2                          && \text{(mean square gradient)} \\
    \Delta &= \frac{\sqrt{u + \epsilon}}{\sqrt{r + \epsilon}}\, g  && \text{(update)} \\
    u &\leftarrow \rho u + (1 - \rho) \Delta^2                      && \text{(mean square update)} \\
    \theta &\leftarrow \theta - \alpha \Delta

SGD's step has the units of 1/theta and RMSprop's none; AdaDelta's ratio has the units of theta,
like Newton's :math:`H^{-1} g`. So rescaling a parameter, :math:`\theta' = c\,\theta`, rescales
its AdaDelta updates by :math:`c` once the running averages dominate :math:`\epsilon` (lecture 4).
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

__all__ = ["Adadelta", "adadelta", "adadelta_update"]


def adadelta_update(
    param: Tensor,
    grad: Tensor,
    square_avg: Tensor,
    acc_delta: Tensor,
    step: Tensor,
    *,
    lr: float | Tensor,
    rho: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    """One AdaDelta step on one tensor; `square_avg`, `acc_delta`, `step` are updated in place."""
    if maximize:
        grad = -grad
    step += 1
    if weight_decay != 0:
        grad = grad.add(param, alpha=weight_decay)
    square_avg.mul_(rho).addcmul_(grad, grad, value=1 - rho)
    rms_grad = square_avg.add(eps).sqrt_()
    delta = acc_delta.add(eps).sqrt_().div_(rms_grad).mul_(grad)
    acc_delta.mul_(rho).addcmul_(delta, delta, value=1 - rho)
    param.sub_(lr * delta)


def _single_tensor_adadelta(params, grads, square_avgs, acc_deltas, steps, **hyper) -> None:
    for i, param in enumerate(params):
        adadelta_update(param, grads[i], square_avgs[i], acc_deltas[i], steps[i], **hyper)


_fused_adadelta = fuse(_single_tensor_adadelta)


def _multi_tensor_adadelta(
    params, grads, square_avgs, acc_deltas, steps, *, lr, rho, eps, weight_decay, maximize
) -> None:
    for p, g, r, u, s in _group_by_device_and_dtype(params, grads, square_avgs, acc_deltas, steps):
        if maximize:
            g = torch._foreach_neg(g)
        _increment(s)
        if weight_decay != 0:
            g = torch._foreach_add(g, p, alpha=weight_decay)
        torch._foreach_mul_(r, rho)
        torch._foreach_addcmul_(r, g, g, 1 - rho)
        rms_grad = torch._foreach_add(r, eps)
        torch._foreach_sqrt_(rms_grad)
        delta = torch._foreach_add(u, eps)
        torch._foreach_sqrt_(delta)
        torch._foreach_div_(delta, rms_grad)
        torch._foreach_mul_(delta, g)
        torch._foreach_mul_(u, rho)
        torch._foreach_addcmul_(u, delta, delta, 1 - rho)
        torch._foreach_add_(p, delta, alpha=-lr)


def adadelta(
    params: list[Tensor],
    grads: list[Tensor],
    square_avgs: list[Tensor],
    acc_deltas: list[Tensor],
    steps: list[Tensor],
    *,
    foreach: bool | None = None,
    fused: bool | None = None,
    lr: float,
    rho: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    """Functional AdaDelta over lists of tensors, all updated in place."""
    impl = _choose(foreach, fused, _single_tensor_adadelta, _multi_tensor_adadelta, _fused_adadelta)
    impl(
        params,
        grads,
        square_avgs,
        acc_deltas,
        steps,
        lr=lr,
        rho=rho,
        eps=eps,
        weight_decay=weight_decay,
        maximize=maximize,
    )


class Adadelta(_ReferenceOptimizer):
    """AdaDelta, a drop-in for `torch.optim.Adadelta`.

    Args:
        params: parameters or parameter groups.
        lr: a factor alpha on the update (default 1.0; the method itself needs none).
        rho: decay rate of both running averages (default 0.9).
        eps: keeps both square roots away from zero; it also sets the size of the first
            steps, sqrt(eps) / sqrt(r + eps) g (default 1e-6).
        weight_decay: L2 penalty lambda added to the gradient (default 0).
        foreach: None or True: the multi-tensor path; False: the per-tensor loop.
        fused: True: the per-tensor loop compiled into one kernel (`coursekit.optim._fused`).
        maximize: ascend instead of descend.
    """

    def __init__(
        self,
        params,
        lr: float = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        fused: bool | None = None,
    ) -> None:
        _check_lr(lr)
        check_flags(foreach, fused)
        _check(0.0 <= rho <= 1.0, "rho", rho, "in [0, 1]")
        _check_eps(eps)
        _check_weight_decay(weight_decay)
        defaults = dict(
            lr=lr,
            rho=rho,
            eps=eps,
            weight_decay=weight_decay,
            foreach=foreach,
            maximize=maximize,
            fused=fused,
        )
        super().__init__(params, defaults)

    def _init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        return {
            "step": _new_step(param, group),
            "square_avg": torch.zeros_like(param, memory_format=torch.preserve_format),
            "acc_delta": torch.zeros_like(param, memory_format=torch.preserve_format),
        }

    def _update(self, group, params, grads, states) -> None:
        adadelta(
            params,
            grads,
            [s["square_avg"] for s in states],
            [s["acc_delta"] for s in states],
            [s["step"] for s in states],
            foreach=group["foreach"],
            fused=group["fused"],
            lr=group["lr"],
            rho=group["rho"],
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            maximize=group["maximize"],
        )
