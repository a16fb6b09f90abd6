r"""AdaMax: Adam with the root mean square replaced by a decaying maximum (an infinity norm).

For one parameter tensor :math:`\theta` at step :math:`t` with gradient :math:`g` (Kingma & Ba,
2015; seed 003):

.. math::
    m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g           && \text{(first moment)} \\
    u_t &= \max(\beta_2 u_{t-1}, |g| + \epsilon)       && \text{(decaying infinity norm)} \\
    \theta &\leftarrow \theta - \frac{\alpha}{1 - \beta_1^t}\, \frac{m_t}{u_t}

The maximum needs no bias correction: it is not an average that starts at zero.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ._base import (
    _check_beta,
    _check_eps,
    _check_lr,
    _check_weight_decay,
    _choose,
    _group_by_device_and_dtype,
    _increment,
    _new_step,
    _power,
    _ReferenceOptimizer,
)
from ._fused import check_flags, fuse

__all__ = ["Adamax", "adamax", "adamax_update"]


def adamax_update(
    param: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    exp_inf: Tensor,
    step: Tensor,
    *,
    lr: float | Tensor,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    """One AdaMax step on one tensor; `exp_avg`, `exp_inf`, `step` are updated in place."""
    if maximize:
        grad = -grad
    step += 1
    if weight_decay != 0:
        grad = grad.add(param, alpha=weight_decay)
    exp_avg.lerp_(grad, 1 - beta1)
    torch.maximum(exp_inf.mul_(beta2), grad.abs().add_(eps), out=exp_inf)
    bias_correction = 1 - _power(beta1, step)
    param.sub_(exp_avg.div(exp_inf).mul_(lr / bias_correction))


def _single_tensor_adamax(params, grads, exp_avgs, exp_infs, steps, **hyper) -> None:
    for i, param in enumerate(params):
        adamax_update(param, grads[i], exp_avgs[i], exp_infs[i], steps[i], **hyper)


_fused_adamax = fuse(_single_tensor_adamax)


def _multi_tensor_adamax(
    params, grads, exp_avgs, exp_infs, steps, *, lr, beta1, beta2, eps, weight_decay, maximize
) -> None:
    for p, g, m, u, s in _group_by_device_and_dtype(params, grads, exp_avgs, exp_infs, steps):
        if maximize:
            g = torch._foreach_neg(g)
        _increment(s)
        if weight_decay != 0:
            g = torch._foreach_add(g, p, alpha=weight_decay)
        torch._foreach_lerp_(m, g, 1 - beta1)
        torch._foreach_mul_(u, beta2)
        abs_g = torch._foreach_abs(g)
        torch._foreach_add_(abs_g, eps)
        torch._foreach_maximum_(u, abs_g)
        step_sizes = [-lr / (1 - beta1 ** step.item()) for step in s]
        torch._foreach_addcdiv_(p, m, u, step_sizes)


def adamax(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_infs: list[Tensor],
    steps: list[Tensor],
    *,
    foreach: bool | None = None,
    fused: bool | None = None,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    maximize: bool,
) -> None:
    """Functional AdaMax over lists of tensors, all updated in place."""
    impl = _choose(foreach, fused, _single_tensor_adamax, _multi_tensor_adamax, _fused_adamax)
    impl(
        params,
        grads,
        exp_avgs,
        exp_infs,
        steps,
        lr=lr,
        beta1=beta1,
        beta2=beta2,
        eps=eps,
        weight_decay=weight_decay,
        maximize=maximize,
    )


class Adamax(_ReferenceOptimizer):
    """AdaMax, a drop-in for `torch.optim.Adamax`.

    Args:
        params: parameters or parameter groups.
        lr: step size alpha (default 2e-3).
        betas: (beta1, beta2), decay of the first moment and of the infinity norm
            (default (0.9, 0.999)).
        eps: added to |g| for stability (default 1e-8).
        weight_decay: L2 penalty lambda added to the gradient (default 0).
        foreach: None or True: the multi-tensor path; False: the per-tensor loop.
        fused: True: the per-tensor loop compiled into one kernel (`coursekit.optim._fused`).
        maximize: ascend instead of descend.
    """

    def __init__(
        self,
        params,
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        fused: bool | None = None,
    ) -> None:
        _check_lr(lr)
        check_flags(foreach, fused)
        _check_eps(eps)
        _check_beta("betas[0]", betas[0])
        _check_beta("betas[1]", betas[1])
        _check_weight_decay(weight_decay)
        defaults = dict(
            lr=lr,
            betas=betas,
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
            "exp_avg": torch.zeros_like(param, memory_format=torch.preserve_format),
            "exp_inf": torch.zeros_like(param, memory_format=torch.preserve_format),
        }

    def _update(self, group, params, grads, states) -> None:
        beta1, beta2 = group["betas"]
        adamax(
            params,
            grads,
            [s["exp_avg"] for s in states],
            [s["exp_inf"] for s in states],
            [s["step"] for s in states],
            foreach=group["foreach"],
            fused=group["fused"],
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            maximize=group["maximize"],
        )
