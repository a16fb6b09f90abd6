r"""Two textbook forms of momentum that torch.optim does not offer, each equal to torch's SGD
after a change of variables (tests/test_optim_textbook.py proves both).

**Momentum as a running average of gradients** (seed 002's "nonstandard" parameterisation):

.. math::
    \bar g_{t+1} = \mu \bar g_t + (1 - \mu) g_t, \qquad \theta_{t+1} = \theta_t - \eta' \bar g_{t+1},
    \qquad \bar g_0 = 0

With torch's buffer :math:`b_t = \bar g_t / (1 - \mu)` this is exactly
`torch.optim.SGD(lr=\eta' (1 - \mu), momentum=\mu)`: the same trajectory when
:math:`\eta' = \text{lr} / (1 - \mu)`. In this form a gradient's total contribution to the
motion is :math:`\eta'`, whatever :math:`\mu` is.

**Nesterov's accelerated gradient in Sutskever's look-ahead form** (Sutskever et al., 2013; seed 003):

.. math::
    v_{t+1} = \mu v_t + \alpha \nabla f(\theta_t - \mu v_t), \qquad \theta_{t+1} = \theta_t - v_{t+1}

The gradient is taken at the look-ahead point :math:`\phi_t = \theta_t - \mu v_t`, so a step needs
a `closure` that evaluates the loss there. Torch's `SGD(nesterov=True)` is the same algorithm
written in the look-ahead variable: its parameter equals :math:`\phi_t` and its buffer
:math:`v_t / \alpha`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ._base import _check, _check_lr, _ReferenceOptimizer

__all__ = ["AveragedMomentumSGD", "SutskeverNesterov"]


class AveragedMomentumSGD(_ReferenceOptimizer):
    r"""SGD with momentum written as a running average of gradients (seed 002).

    Args:
        params: parameters or parameter groups.
        lr: :math:`\eta'`, the step taken along the averaged gradient (default 1e-2).
        momentum: :math:`\mu \in [0, 1)`, the averaging factor; about :math:`1/(1-\mu)`
            gradients are averaged (default 0.9).
    """

    def __init__(self, params, lr: float = 1e-2, momentum: float = 0.9) -> None:
        _check_lr(lr)
        _check(0.0 <= momentum < 1.0, "momentum", momentum, "in [0, 1)")
        super().__init__(params, dict(lr=lr, momentum=momentum))

    def _init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        return {"grad_avg": torch.zeros_like(param, memory_format=torch.preserve_format)}

    def _update(self, group, params, grads, states) -> None:
        for param, grad, state in zip(params, grads, states):
            grad_avg = state["grad_avg"]
            grad_avg.lerp_(grad, 1 - group["momentum"])  # mu g_avg + (1 - mu) g
            param.add_(grad_avg, alpha=-group["lr"])


class SutskeverNesterov(_ReferenceOptimizer):
    r"""Nesterov momentum in the look-ahead form: the gradient is taken at :math:`\theta - \mu v`.

    `step(closure)` requires the closure: it moves the parameters to the look-ahead point,
    evaluates the closure there (which must zero and recompute the gradients, as closures for
    LBFGS do), moves them back and applies the update. The returned loss is the loss at the
    look-ahead point.

    Args:
        params: parameters or parameter groups.
        lr: :math:`\alpha` (default 1e-2).
        momentum: :math:`\mu \in [0, 1)` (default 0.9).
    """

    def __init__(self, params, lr: float = 1e-2, momentum: float = 0.9) -> None:
        _check_lr(lr)
        _check(0.0 <= momentum < 1.0, "momentum", momentum, "in [0, 1)")
        super().__init__(params, dict(lr=lr, momentum=momentum))

    def _init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        return {"velocity": torch.zeros_like(param, memory_format=torch.preserve_format)}

    def _velocities(self, group: dict[str, Any]) -> list[tuple[Tensor, Tensor]]:
        pairs = []
        for p in group["params"]:
            state = self.state[p]
            if len(state) == 0:
                state.update(self._init_state(p, group))
            pairs.append((p, state["velocity"]))
        return pairs

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor:  # type: ignore[override]
        if closure is None:
            raise ValueError("SutskeverNesterov.step needs a closure: the gradient is taken at "
                             "the look-ahead point theta - momentum * velocity")
        for group in self.param_groups:
            for p, v in self._velocities(group):
                p.sub_(v, alpha=group["momentum"])  # to the look-ahead point
        with torch.enable_grad():
            loss = closure()
        for group in self.param_groups:
            for p, v in self._velocities(group):
                p.add_(v, alpha=group["momentum"])  # back to theta
                if p.grad is not None:
                    v.mul_(group["momentum"]).add_(p.grad, alpha=group["lr"])
                    p.sub_(v)
        return loss
