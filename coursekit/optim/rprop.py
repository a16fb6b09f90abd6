r"""Rprop: a per-weight step size that grows while the gradient's sign holds and shrinks when it flips.

For one parameter tensor :math:`\theta` with gradient :math:`g_t` (Riedmiller & Braun, 1993; seed 003),
elementwise:

.. math::
    \delta_t &= \begin{cases}
        \min(\eta^+ \delta_{t-1}, \delta_{\max}) & g_t g_{t-1} > 0 \\
        \max(\eta^- \delta_{t-1}, \delta_{\min}) & g_t g_{t-1} < 0 \\
        \delta_{t-1} & \text{otherwise}
    \end{cases} \qquad 0 < \eta^- < 1 < \eta^+ \\
    \theta &\leftarrow \theta - \delta_t \operatorname{sign}(g_t)

with :math:`\delta_0 = ` `lr`. After a sign flip the weight does not move and the stored gradient
is set to zero, so the next step neither grows nor shrinks :math:`\delta`. Only the sign of the
gradient is used: this is why Rprop fails with minibatches (nine gradients of +0.1 and one of
-0.9 average to zero, yet this variant moves the weight nine steps per epoch; seed 003's rule,
which also moves after a flip, eight: `coursekit.optim.textbook.RpropMinus`).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ._base import (
    _check,
    _check_lr,
    _choose,
    _group_by_device_and_dtype,
    _increment,
    _new_step,
    _ReferenceOptimizer,
)
from ._fused import check_flags, fuse

__all__ = ["Rprop", "rprop", "rprop_update"]


def rprop_update(
    param: Tensor,
    grad: Tensor,
    prev: Tensor,
    step_size: Tensor,
    step: Tensor,
    *,
    etaminus: float,
    etaplus: float,
    step_size_min: float,
    step_size_max: float,
    maximize: bool,
) -> None:
    """One Rprop step on one tensor; `prev` (last gradient) and `step_size` are updated in place."""
    if maximize:
        grad = -grad
    step += 1
    agreement = (grad * prev).sign()  # +1: same sign as last step, -1: flipped, 0: unknown
    factor = torch.ones_like(step_size)
    factor.masked_fill_(agreement > 0, etaplus).masked_fill_(agreement < 0, etaminus)
    step_size.mul_(factor).clamp_(step_size_min, step_size_max)
    grad = grad.masked_fill(agreement < 0, 0.0)  # after a flip: stand still, forget the sign
    param.addcmul_(grad.sign(), step_size, value=-1)
    prev.copy_(grad)


def _single_tensor_rprop(params, grads, prevs, step_sizes, steps, **hyper) -> None:
    for i, param in enumerate(params):
        rprop_update(param, grads[i], prevs[i], step_sizes[i], steps[i], **hyper)


_fused_rprop = fuse(_single_tensor_rprop)


def _multi_tensor_rprop(
    params,
    grads,
    prevs,
    step_sizes,
    steps,
    *,
    etaminus,
    etaplus,
    step_size_min,
    step_size_max,
    maximize,
) -> None:
    for p, g, prev, delta, s in _group_by_device_and_dtype(params, grads, prevs, step_sizes, steps):
        _increment(s)
        agreement = torch._foreach_mul(g, prev)
        if maximize:
            torch._foreach_neg_(agreement)
        torch._foreach_sign_(agreement)
        # With a in {-1, 0, +1}, the factor eta+ / 1 / eta- is the parabola through those three
        # points, 1 + b a + c a^2, three passes over the data instead of a torch.where per
        # tensor (which makes torch's own foreach Rprop no faster than its for-loop).
        b, c = (etaplus - etaminus) / 2, (etaplus + etaminus) / 2 - 1
        factor = torch._foreach_mul(agreement, b)
        torch._foreach_add_(factor, 1.0)
        torch._foreach_addcmul_(factor, agreement, agreement, c)
        torch._foreach_mul_(delta, factor)
        torch._foreach_clamp_min_(delta, step_size_min)
        torch._foreach_clamp_max_(delta, step_size_max)
        # keep = min(a + 1, 1): 0 after a sign flip, 1 otherwise.
        torch._foreach_add_(agreement, 1.0)
        torch._foreach_clamp_max_(agreement, 1.0)
        torch._foreach_copy_(prev, g)
        if maximize:
            torch._foreach_neg_(prev)
        torch._foreach_mul_(prev, agreement)
        direction = torch._foreach_sign(prev)
        torch._foreach_addcmul_(p, direction, delta, value=-1)


def rprop(
    params: list[Tensor],
    grads: list[Tensor],
    prevs: list[Tensor],
    step_sizes: list[Tensor],
    steps: list[Tensor],
    *,
    foreach: bool | None = None,
    fused: bool | None = None,
    etaminus: float,
    etaplus: float,
    step_size_min: float,
    step_size_max: float,
    maximize: bool,
) -> None:
    """Functional Rprop over lists of tensors, all updated in place."""
    impl = _choose(foreach, fused, _single_tensor_rprop, _multi_tensor_rprop, _fused_rprop)
    impl(
        params,
        grads,
        prevs,
        step_sizes,
        steps,
        etaminus=etaminus,
        etaplus=etaplus,
        step_size_min=step_size_min,
        step_size_max=step_size_max,
        maximize=maximize,
    )


class Rprop(_ReferenceOptimizer):
    """Resilient backpropagation, a drop-in for `torch.optim.Rprop`.

    Args:
        params: parameters or parameter groups.
        lr: the initial step size delta_0 of every weight (default 1e-2).
        etas: (eta-, eta+), the shrink and growth factors, 0 < eta- < 1 < eta+ (default (0.5, 1.2)).
        step_sizes: (delta_min, delta_max), bounds on each step size (default (1e-6, 50)).
        maximize: ascend instead of descend.
        foreach: None or True: the multi-tensor path; False: the per-tensor loop.
        fused: True: the per-tensor loop compiled into one kernel (`coursekit.optim._fused`).
    """

    def __init__(
        self,
        params,
        lr: float = 1e-2,
        etas: tuple[float, float] = (0.5, 1.2),
        step_sizes: tuple[float, float] = (1e-6, 50),
        *,
        foreach: bool | None = None,
        maximize: bool = False,
        fused: bool | None = None,
    ) -> None:
        _check_lr(lr)
        check_flags(foreach, fused)
        _check(0.0 < etas[0] < 1.0 < etas[1], "etas", etas, "(eta-, eta+) with 0 < eta- < 1 < eta+")
        _check(
            0.0 <= step_sizes[0] <= step_sizes[1],
            "step_sizes",
            step_sizes,
            "(min, max) with 0 <= min <= max",
        )
        defaults = dict(
            lr=lr, etas=etas, step_sizes=step_sizes, foreach=foreach, maximize=maximize, fused=fused
        )
        super().__init__(params, defaults)

    def _init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        return {
            "step": _new_step(param, group),
            "prev": torch.zeros_like(param, memory_format=torch.preserve_format),
            "step_size": torch.full_like(param, group["lr"]),
        }

    def _update(self, group, params, grads, states) -> None:
        etaminus, etaplus = group["etas"]
        step_size_min, step_size_max = group["step_sizes"]
        rprop(
            params,
            grads,
            [s["prev"] for s in states],
            [s["step_size"] for s in states],
            [s["step"] for s in states],
            foreach=group["foreach"],
            fused=group["fused"],
            etaminus=etaminus,
            etaplus=etaplus,
            step_size_min=step_size_min,
            step_size_max=step_size_max,
            maximize=group["maximize"],
        )
