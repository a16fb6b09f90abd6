r"""AdaGrad: divide each coordinate's step by the root of the sum of all its squared gradients.

For one parameter tensor :math:`\theta` at step :math:`t` with gradient :math:`g_t`
(Duchi, Hazan & Singer, 2011; seeds 001, 003):

.. math::
    r_t &= r_{t-1} + g_t^2 \\
    \alpha_t &= \alpha / (1 + (t - 1)\,\text{lr\_decay}) \\
    \theta &\leftarrow \theta - \alpha_t\, g_t / (\sqrt{r_t} + \epsilon)

Because :math:`r_t` only grows, the effective step :math:`\alpha/\sqrt{r_t}` only shrinks: with
a constant gradient it decays like :math:`1/\sqrt{t}` (lecture 4 shows it).
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
    _step_count,
)
from ._fused import check_flags, fuse

__all__ = ["Adagrad", "adagrad", "adagrad_update"]


def adagrad_update(
    param: Tensor,
    grad: Tensor,
    state_sum: Tensor,
    step: Tensor,
    *,
    lr: float | Tensor,
    lr_decay: float,
    weight_decay: float,
    eps: float,
    maximize: bool,
) -> None:
    """One AdaGrad step on one tensor; `state_sum` and `step` are updated in place."""
    if maximize:
        grad = -grad
    step += 1
    if weight_decay != 0:
        grad = grad.add(param, alpha=weight_decay)
    decayed_lr = lr / (1 + (_step_count(step) - 1) * lr_decay)
    state_sum.addcmul_(grad, grad, value=1)
    std = state_sum.sqrt().add_(eps)
    param.sub_(decayed_lr * grad / std)


def _single_tensor_adagrad(params, grads, state_sums, steps, **hyper) -> None:
    for i, param in enumerate(params):
        adagrad_update(param, grads[i], state_sums[i], steps[i], **hyper)


_fused_adagrad = fuse(_single_tensor_adagrad)


def _multi_tensor_adagrad(
    params, grads, state_sums, steps, *, lr, lr_decay, weight_decay, eps, maximize
) -> None:
    for p, g, r, s in _group_by_device_and_dtype(params, grads, state_sums, steps):
        if maximize:
            g = torch._foreach_neg(g)
        _increment(s)
        if weight_decay != 0:
            g = torch._foreach_add(g, p, alpha=weight_decay)
        neg_lrs = [-lr / (1 + (step.item() - 1) * lr_decay) for step in s]
        torch._foreach_addcmul_(r, g, g, 1)
        std = torch._foreach_sqrt(r)
        torch._foreach_add_(std, eps)
        torch._foreach_addcdiv_(p, g, std, neg_lrs)


def adagrad(
    params: list[Tensor],
    grads: list[Tensor],
    state_sums: list[Tensor],
    steps: list[Tensor],
    *,
    foreach: bool | None = None,
    fused: bool | None = None,
    lr: float,
    lr_decay: float,
    weight_decay: float,
    eps: float,
    maximize: bool,
) -> None:
    """Functional AdaGrad over lists of tensors, all updated in place."""
    impl = _choose(foreach, fused, _single_tensor_adagrad, _multi_tensor_adagrad, _fused_adagrad)
    impl(
        params,
        grads,
        state_sums,
        steps,
        lr=lr,
        lr_decay=lr_decay,
        weight_decay=weight_decay,
        eps=eps,
        maximize=maximize,
    )


class Adagrad(_ReferenceOptimizer):
    """AdaGrad, a drop-in for `torch.optim.Adagrad`.

    Args:
        params: parameters or parameter groups.
        lr: step size alpha (default 1e-2).
        lr_decay: the step size at step t is alpha / (1 + (t - 1) lr_decay) (default 0).
        weight_decay: L2 penalty lambda added to the gradient (default 0).
        initial_accumulator_value: starting value of the sum of squares r_0 (default 0).
        eps: added to the denominator for stability (default 1e-10).
        foreach: None or True: the multi-tensor path; False: the per-tensor loop.
        fused: True: the per-tensor loop compiled into one kernel (`coursekit.optim._fused`).
        maximize: ascend instead of descend.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-2,
        lr_decay: float = 0.0,
        weight_decay: float = 0.0,
        initial_accumulator_value: float = 0.0,
        eps: float = 1e-10,
        foreach: bool | None = None,
        *,
        maximize: bool = False,
        fused: bool | None = None,
    ) -> None:
        _check_lr(lr)
        check_flags(foreach, fused)
        _check(lr_decay >= 0.0, "lr_decay", lr_decay, ">= 0")
        _check_weight_decay(weight_decay)
        _check(
            initial_accumulator_value >= 0.0,
            "initial_accumulator_value",
            initial_accumulator_value,
            ">= 0",
        )
        _check_eps(eps)
        defaults = dict(
            lr=lr,
            lr_decay=lr_decay,
            weight_decay=weight_decay,
            initial_accumulator_value=initial_accumulator_value,
            eps=eps,
            foreach=foreach,
            maximize=maximize,
            fused=fused,
        )
        super().__init__(params, defaults)

    def _init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        return {
            "step": _new_step(param, group),
            "sum": torch.full_like(
                param, group["initial_accumulator_value"], memory_format=torch.preserve_format
            ),
        }

    def _update(self, group, params, grads, states) -> None:
        adagrad(
            params,
            grads,
            [s["sum"] for s in states],
            [s["step"] for s in states],
            foreach=group["foreach"],
            fused=group["fused"],
            lr=group["lr"],
            lr_decay=group["lr_decay"],
            weight_decay=group["weight_decay"],
            eps=group["eps"],
            maximize=group["maximize"],
        )
