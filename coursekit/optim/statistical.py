r"""McAllester's statistical learning rate: per coordinate, a step size from the gradient's noise.

Seed 002 works in one dimension first. With the true gradient :math:`g`, the minibatch gradient
:math:`\hat g` of batch size :math:`b` within :math:`2\sigma/\sqrt b` of it, and curvature at most
:math:`L`, one step :math:`\theta - \eta \hat g` gains at least

.. math::
    P(b, \eta) = \eta\, g \bigl(g - 2\sigma/\sqrt b\bigr) - \tfrac12 L \eta^2 g^2 .

Progress per gradient computation, :math:`P/b`, is largest at

.. math::
    B^* = \frac{16 \sigma^2}{g^2}, \qquad \eta^* = \frac{1}{2L}, \qquad
    \eta_b = \eta^* \frac{b}{B^*} = \frac{b\, g^2}{32 \sigma^2 L}
    \quad\text{for a batch } b < B^* \text{ (linear scaling).}

The algorithm estimates :math:`g` and :math:`\sigma^2` for every coordinate with running
averages whose time constant is :math:`B^*/b` steps, at step :math:`t = 1, 2, \dots`:

.. math::
    w_t &= 1/t \ \text{ for } t \le k \text{ (warm-up: plain means)}, \quad
        w_t = b / B_{t-1} \ \text{ after} \\
    \bar g_t &= (1 - w_t)\, \bar g_{t-1} + w_t\, \hat g_t, \qquad
    s_t = (1 - w_t)\, s_{t-1} + w_t\, \hat g_t^2, \qquad
    \sigma_t^2 = \max(s_t - \bar g_t^2,\ 0) \\
    B_t &= \max\bigl(b,\ \lambda_b\, \sigma_t^2 / (\bar g_t^2 + \epsilon)\bigr) \\
    \eta_t &= 0 \ \text{ for } t \le k, \quad
        \eta_t = \min\bigl(\lambda_\eta \lambda_b / B_t,\ \eta_{\max}\bigr) \ \text{ after} \\
    \theta_{t+1} &= \theta_t - \eta_t\, \hat g_t

with :math:`\lambda_b = 16` and :math:`\lambda_\eta = b / (32 L)` by default. Where the noise
dominates (:math:`B_t > b`) the step is the seed's :math:`\lambda_\eta (\bar g_t^2 + \epsilon) /
\sigma_t^2`, which goes to 0 as the gradient does; where it does not, :math:`B_t = b` and the
step is :math:`\lambda_\eta \lambda_b / b = 1/(2L)`, the one-dimensional optimum. The seed's
high-dimensional slide writes the first form alone; without the floor at :math:`b` the step
grows without bound wherever :math:`\bar g^2 \gg \sigma^2` (lecture 5 shows it).

Units, for a batch size b > 1: the averages are taken over the minibatch gradients the
optimizer is given, so :math:`\sigma_t^2` estimates their variance :math:`\sigma^2 / b`, not
the per-sample :math:`\sigma^2` of :math:`B^*`; with the defaults :math:`B_t` then estimates
:math:`B^* / b` (these are the equations as specified for this package; the seed writes them for
one sample). For the seed's per-sample reading pass ``lambda_b = 16 * b`` and
``lambda_eta = 1 / (32 * L)``: the product :math:`\lambda_\eta \lambda_b = b / (2L)`, hence the
step at the floor, is unchanged. Lecture 5 measures both.

The floor is absorbing, a property of these equations that the seed does not discuss: once
:math:`B_t = b`, the next weight :math:`b / B_t` is 1, so the averages keep only the newest
gradient, :math:`\sigma^2 = 0`, and :math:`B` stays at :math:`b`; from then on that coordinate
takes constant steps of :math:`1/(2L)` (with the default constants), even if its gradient later
shrinks into the noise. A coordinate whose estimated noise is low at the end of the warm-up
starts there. (`tests/test_optim_statistical.py` shows it; lecture 5 discusses it.)

Two readings of ours, where the seed's text is unreadable or silent: the warm-up value of
:math:`B` (its OCR lost it) is taken as plain means of the first :math:`k` gradients with no
step, and the warm-up length :math:`k` is the `warmup` argument.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ._base import (
    _check,
    _choose,
    _group_by_device_and_dtype,
    _increment,
    _new_step,
    _ReferenceOptimizer,
)
from ._fused import check_flags, fuse

__all__ = ["StatisticalSGD", "statistical_sgd", "statistical_sgd_update"]


def _weight(step: Tensor, warmup: int, batch_size: float, batch_estimate: Tensor) -> Tensor:
    """w_t: 1/t during the warm-up, b / B_{t-1} after (a tensor shaped like the parameter)."""
    mean_weight = (1.0 / step.to(torch.float64)).to(batch_estimate.dtype)
    return torch.where(step <= warmup, mean_weight, batch_size / batch_estimate)


def statistical_sgd_update(
    param: Tensor,
    grad: Tensor,
    grad_avg: Tensor,
    sq_avg: Tensor,
    batch_estimate: Tensor,
    lr_t: Tensor,
    step: Tensor,
    *,
    batch_size: float,
    warmup: int,
    lambda_b: float,
    lambda_eta: float,
    eps: float,
    max_lr: float | None,
) -> None:
    """One step on one tensor; every state tensor is updated in place (see the module docstring)."""
    step += 1
    weight = _weight(step, warmup, batch_size, batch_estimate)
    grad_avg.lerp_(grad, weight)  # (1 - w) g + w g_hat
    sq_avg.lerp_(grad * grad, weight)  # (1 - w) s + w g_hat^2
    variance = (sq_avg - grad_avg * grad_avg).clamp_(min=0)
    noise_batch = lambda_b * variance / (grad_avg * grad_avg + eps)
    batch_estimate.copy_(noise_batch.clamp_(min=batch_size))  # B_t = max(b, ...)
    lr = lambda_eta * lambda_b / batch_estimate
    if max_lr is not None:
        lr = lr.clamp_(max=max_lr)
    lr_t.copy_(torch.where(step <= warmup, torch.zeros_like(lr), lr))
    param.addcmul_(lr_t, grad, value=-1)


# On a CPU this update makes about fifteen passes over each tensor. Over a chunk of tensors that
# fits in the cache they cost little; over all parameters at once every pass goes to memory,
# which made the foreach step 4x slower than the per-tensor loop at 13.4M parameters
# (benchmarks/RESULTS.md). Accelerators take the whole list: there, fewer launches win.
_CPU_CHUNK_NUMEL = 2**18


def _cache_sized_chunks(tensor_lists: tuple[list[Tensor], ...]):
    """Split parallel lists (one device and dtype) into runs of at most `_CPU_CHUNK_NUMEL`
    numbers on a CPU (a larger tensor is a run of its own), or one run elsewhere."""
    params = tensor_lists[0]
    if not params or params[0].device.type != "cpu":
        yield tensor_lists
        return
    start, numel = 0, 0
    for i, p in enumerate(params):
        if numel and numel + p.numel() > _CPU_CHUNK_NUMEL:
            yield tuple(lst[start:i] for lst in tensor_lists)
            start, numel = i, 0
        numel += p.numel()
    yield tuple(lst[start:] for lst in tensor_lists)


def _single_tensor_statistical_sgd(
    params, grads, grad_avgs, sq_avgs, batch_estimates, lr_ts, steps, **hyper
) -> None:
    for i, param in enumerate(params):
        statistical_sgd_update(
            param, grads[i], grad_avgs[i], sq_avgs[i], batch_estimates[i], lr_ts[i], steps[i],
            **hyper,
        )  # fmt: skip


_fused_statistical_sgd = fuse(_single_tensor_statistical_sgd)


def _multi_tensor_statistical_sgd(
    params, grads, grad_avgs, sq_avgs, batch_estimates, lr_ts, steps, *,
    batch_size, warmup, lambda_b, lambda_eta, eps, max_lr,
) -> None:  # fmt: skip
    lists = (params, grads, grad_avgs, sq_avgs, batch_estimates, lr_ts, steps)
    for group in _group_by_device_and_dtype(*lists):
        for p, g, m, s, b_est, lr_t, t in _cache_sized_chunks(group):
            _increment(t)
            weights = [_weight(step, warmup, batch_size, b) for step, b in zip(t, b_est)]
            torch._foreach_lerp_(m, g, weights)
            torch._foreach_lerp_(s, torch._foreach_mul(g, g), weights)
            m_sq = torch._foreach_mul(m, m)
            variance = torch._foreach_sub(s, m_sq)
            torch._foreach_clamp_min_(variance, 0)
            torch._foreach_add_(m_sq, eps)
            noise_batch = torch._foreach_div(torch._foreach_mul(variance, lambda_b), m_sq)
            torch._foreach_clamp_min_(noise_batch, batch_size)
            torch._foreach_copy_(b_est, noise_batch)
            lrs = [lambda_eta * lambda_b / b for b in b_est]  # as the per-tensor update writes it
            if max_lr is not None:
                torch._foreach_clamp_max_(lrs, max_lr)
            for lr, lr_now, step in zip(lrs, lr_t, t):
                lr_now.copy_(torch.where(step <= warmup, torch.zeros_like(lr), lr))
            torch._foreach_addcmul_(p, lr_t, g, value=-1)


def statistical_sgd(
    params: list[Tensor],
    grads: list[Tensor],
    grad_avgs: list[Tensor],
    sq_avgs: list[Tensor],
    batch_estimates: list[Tensor],
    lr_ts: list[Tensor],
    steps: list[Tensor],
    *,
    foreach: bool | None = None,
    fused: bool | None = None,
    batch_size: float,
    warmup: int,
    lambda_b: float,
    lambda_eta: float,
    eps: float,
    max_lr: float | None,
) -> None:
    """Functional StatisticalSGD over lists of tensors, all updated in place."""
    impl = _choose(
        foreach,
        fused,
        _single_tensor_statistical_sgd,
        _multi_tensor_statistical_sgd,
        _fused_statistical_sgd,
    )
    impl(
        params,
        grads,
        grad_avgs,
        sq_avgs,
        batch_estimates,
        lr_ts,
        steps,
        batch_size=batch_size,
        warmup=warmup,
        lambda_b=lambda_b,
        lambda_eta=lambda_eta,
        eps=eps,
        max_lr=max_lr,
    )


class StatisticalSGD(_ReferenceOptimizer):
    r"""SGD with McAllester's per-coordinate statistical learning rate (seed 002).

    No learning rate to tune: each coordinate's step follows from running estimates of its
    gradient's mean and noise (module docstring). What must be given is the minibatch size the
    training loop uses and a bound on the curvature.

    Args:
        params: parameters or parameter groups.
        batch_size: b, the minibatch size of the gradients this optimizer is given.
        smoothness: L, an upper bound on the loss's second derivative along a coordinate; the
            step never exceeds 1/(2L) with the default constants.
        warmup: k, steps of plain averaging with no update (default 10).
        lambda_b: the constant in B* = lambda_b sigma^2 / g^2 (default 16, the seed's).
        lambda_eta: the constant in eta = lambda_eta (g^2 + eps) / sigma^2; default
            b / (32 L), the seed's eta_b.
        eps: keeps B finite where the mean gradient is 0 (default 1e-8).
        max_lr: an optional cap on every coordinate's step.
        foreach: None or True: the multi-tensor path; False: the per-tensor loop.
        fused: True: the per-tensor loop compiled into one kernel (`coursekit.optim._fused`).

    State per parameter (for plots): ``step``, ``grad_avg`` (g bar), ``sq_avg`` (s),
    ``batch_estimate`` (B_t) and ``lr_t`` (eta_t).
    """

    def __init__(
        self,
        params,
        batch_size: float,
        smoothness: float,
        warmup: int = 10,
        lambda_b: float = 16.0,
        lambda_eta: float | None = None,
        eps: float = 1e-8,
        max_lr: float | None = None,
        *,
        foreach: bool | None = None,
        fused: bool | None = None,
    ) -> None:
        check_flags(foreach, fused)
        _check_hyper(batch_size, smoothness, warmup, lambda_b, lambda_eta, eps, max_lr)
        defaults = dict(
            batch_size=batch_size,
            smoothness=smoothness,
            warmup=warmup,
            lambda_b=lambda_b,
            lambda_eta=lambda_eta,
            eps=eps,
            max_lr=max_lr,
            foreach=foreach,
            fused=fused,
        )
        super().__init__(params, defaults)
        for group in self.param_groups:  # a group may override any of them
            _check_hyper(*(group[k] for k in list(defaults)[:7]))

    def _init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        zeros = {"memory_format": torch.preserve_format}
        return {
            "step": _new_step(param, group),
            "grad_avg": torch.zeros_like(param, **zeros),
            "sq_avg": torch.zeros_like(param, **zeros),
            "batch_estimate": torch.full_like(param, float(group["batch_size"]), **zeros),
            "lr_t": torch.zeros_like(param, **zeros),
        }

    def _update(self, group, params, grads, states) -> None:
        lambda_eta = group["lambda_eta"]
        if lambda_eta is None:
            lambda_eta = group["batch_size"] / (32.0 * group["smoothness"])
        statistical_sgd(
            params,
            grads,
            [s["grad_avg"] for s in states],
            [s["sq_avg"] for s in states],
            [s["batch_estimate"] for s in states],
            [s["lr_t"] for s in states],
            [s["step"] for s in states],
            foreach=group["foreach"],
            fused=group["fused"],
            batch_size=float(group["batch_size"]),
            warmup=int(group["warmup"]),
            lambda_b=group["lambda_b"],
            lambda_eta=lambda_eta,
            eps=group["eps"],
            max_lr=group["max_lr"],
        )


def _check_hyper(batch_size, smoothness, warmup, lambda_b, lambda_eta, eps, max_lr) -> None:
    _check(batch_size > 0, "batch_size", batch_size, "> 0")
    _check(smoothness > 0, "smoothness", smoothness, "> 0 (a bound on the curvature)")
    _check(
        isinstance(warmup, int) and not isinstance(warmup, bool) and warmup >= 1,
        "warmup",
        warmup,
        "an int >= 1 (the first estimate needs a gradient)",
    )
    _check(lambda_b > 0, "lambda_b", lambda_b, "> 0")
    _check(lambda_eta is None or lambda_eta > 0, "lambda_eta", lambda_eta, "> 0 or None")
    _check(eps > 0, "eps", eps, "> 0 (it keeps B finite where the mean gradient is 0)")
    _check(max_lr is None or max_lr > 0, "max_lr", max_lr, "> 0 or None")
