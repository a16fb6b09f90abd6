r"""Adam (with AMSGrad) and AdamW: running averages of the gradient and its square, bias-corrected.

For one parameter tensor :math:`\theta` at step :math:`t` with gradient :math:`g` (seeds 002, 003):

.. math::
    m_t &= \beta_1 m_{t-1} + (1 - \beta_1) g                && \text{(first moment)} \\
    v_t &= \beta_2 v_{t-1} + (1 - \beta_2) g^2              && \text{(second moment)} \\
    \hat m_t &= m_t / (1 - \beta_1^t), \quad
    \hat v_t = v_t / (1 - \beta_2^t)                         && \text{(bias correction)} \\
    \theta &\leftarrow \theta - \alpha\, \hat m_t / (\sqrt{\hat v_t} + \epsilon)

Both averages start at zero, so without the correction the first steps would be far too
small for :math:`\beta_2 = 0.999` (seed 002). AMSGrad divides by the running maximum of
:math:`v_t` instead. Weight decay is either added to the gradient (Adam, L2 penalty) or applied
to the parameter directly, :math:`\theta \leftarrow \theta (1 - \alpha\lambda)` (AdamW, decoupled).
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

__all__ = ["Adam", "AdamW", "adam", "adam_update"]


def adam_update(
    param: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    max_exp_avg_sq: Tensor | None,
    step: Tensor,
    *,
    lr: float | Tensor,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    amsgrad: bool,
    maximize: bool,
    decoupled_weight_decay: bool,
) -> None:
    """One Adam step on one tensor; every argument tensor is updated in place."""
    if maximize:
        grad = -grad
    step += 1
    if weight_decay != 0:
        if decoupled_weight_decay:
            param.mul_(1 - lr * weight_decay)
        else:
            grad = grad.add(param, alpha=weight_decay)
    exp_avg.lerp_(grad, 1 - beta1)  # m = beta1 m + (1 - beta1) g
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    bias_correction1 = 1 - _power(beta1, step)
    bias_correction2 = 1 - _power(beta2, step)
    second_moment = exp_avg_sq
    if amsgrad:
        torch.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq)
        second_moment = max_exp_avg_sq
    # theta -= lr m_hat / (sqrt(v_hat) + eps), with the corrections applied as scalar factors
    denom = (second_moment * (1 / bias_correction2)).sqrt_().add_(eps)
    param.sub_(exp_avg.div(denom).mul_(lr / bias_correction1))


def _single_tensor_adam(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps, **hyper):
    for i, param in enumerate(params):
        adam_update(
            param, grads[i], exp_avgs[i], exp_avg_sqs[i], max_exp_avg_sqs[i], steps[i], **hyper
        )


_fused_adam = fuse(_single_tensor_adam)


def _multi_tensor_adam(
    params,
    grads,
    exp_avgs,
    exp_avg_sqs,
    max_exp_avg_sqs,
    steps,
    *,
    lr,
    beta1,
    beta2,
    eps,
    weight_decay,
    amsgrad,
    maximize,
    decoupled_weight_decay,
) -> None:
    for p, g, m, v, vmax, s in _group_by_device_and_dtype(
        params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, steps
    ):
        if maximize:
            g = torch._foreach_neg(g)
        _increment(s)
        if weight_decay != 0:
            if decoupled_weight_decay:
                torch._foreach_mul_(p, 1 - lr * weight_decay)
            else:
                g = torch._foreach_add(g, p, alpha=weight_decay)
        torch._foreach_lerp_(m, g, 1 - beta1)
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, g, g, 1 - beta2)
        ts = [step.item() for step in s]
        step_sizes = [-lr / (1 - beta1**t) for t in ts]
        bias_correction2_sqrt = [(1 - beta2**t) ** 0.5 for t in ts]
        if amsgrad:
            torch._foreach_maximum_(vmax, v)
            denom = torch._foreach_sqrt(vmax)
        else:
            denom = torch._foreach_sqrt(v)
        torch._foreach_div_(denom, bias_correction2_sqrt)
        torch._foreach_add_(denom, eps)
        torch._foreach_addcdiv_(p, m, denom, step_sizes)


def adam(
    params: list[Tensor],
    grads: list[Tensor],
    exp_avgs: list[Tensor],
    exp_avg_sqs: list[Tensor],
    max_exp_avg_sqs: list[Tensor | None],
    steps: list[Tensor],
    *,
    foreach: bool | None = None,
    fused: bool | None = None,
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    amsgrad: bool,
    maximize: bool,
    decoupled_weight_decay: bool,
) -> None:
    """Functional Adam / AdamW over lists of tensors, all updated in place."""
    impl = _choose(foreach, fused, _single_tensor_adam, _multi_tensor_adam, _fused_adam)
    impl(
        params,
        grads,
        exp_avgs,
        exp_avg_sqs,
        max_exp_avg_sqs,
        steps,
        lr=lr,
        beta1=beta1,
        beta2=beta2,
        eps=eps,
        weight_decay=weight_decay,
        amsgrad=amsgrad,
        maximize=maximize,
        decoupled_weight_decay=decoupled_weight_decay,
    )


class Adam(_ReferenceOptimizer):
    """Adam (Kingma & Ba, 2015), a drop-in for `torch.optim.Adam`.

    Args:
        params: parameters or parameter groups.
        lr: step size alpha (default 1e-3).
        betas: (beta1, beta2), decay rates of the two running averages (default (0.9, 0.999)).
        eps: added to the denominator for stability (default 1e-8).
        weight_decay: lambda (default 0); an L2 term in the gradient unless decoupled.
        amsgrad: divide by the running maximum of the second moment (Reddi et al., 2018).
        maximize: ascend instead of descend.
        foreach: None or True: the multi-tensor path; False: the per-tensor loop.
        fused: True: the per-tensor loop compiled into one kernel (`coursekit.optim._fused`).
        decoupled_weight_decay: shrink the parameter directly, as AdamW does.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
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
            amsgrad=amsgrad,
            foreach=foreach,
            maximize=maximize,
            decoupled_weight_decay=decoupled_weight_decay,
            fused=fused,
        )
        super().__init__(params, defaults)

    def _init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        state = {
            "step": _new_step(param, group),
            "exp_avg": torch.zeros_like(param, memory_format=torch.preserve_format),
            "exp_avg_sq": torch.zeros_like(param, memory_format=torch.preserve_format),
        }
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = torch.zeros_like(param, memory_format=torch.preserve_format)
        return state

    def _update(self, group, params, grads, states) -> None:
        beta1, beta2 = group["betas"]
        adam(
            params,
            grads,
            [s["exp_avg"] for s in states],
            [s["exp_avg_sq"] for s in states],
            [s.get("max_exp_avg_sq") for s in states],
            [s["step"] for s in states],
            foreach=group["foreach"],
            fused=group["fused"],
            lr=group["lr"],
            beta1=beta1,
            beta2=beta2,
            eps=group["eps"],
            weight_decay=group["weight_decay"],
            amsgrad=group["amsgrad"],
            maximize=group["maximize"],
            decoupled_weight_decay=group["decoupled_weight_decay"],
        )


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019), a drop-in for `torch.optim.AdamW`."""

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        super().__init__(
            params,
            lr,
            betas,
            eps,
            weight_decay,
            amsgrad,
            foreach=foreach,
            maximize=maximize,
            decoupled_weight_decay=True,
            fused=fused,
        )

    def __setstate__(self, state: dict[str, Any]) -> None:
        # A state_dict saved by Adam must not turn AdamW back into Adam.
        super().__setstate__(state)
        for group in self.param_groups:
            group["decoupled_weight_decay"] = True
