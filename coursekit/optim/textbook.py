r"""Textbook forms that torch.optim does not offer, and the tools lecture 4 feeds them with.

Two forms of momentum, each equal to torch's SGD after a change of variables
(tests/test_optim_textbook.py proves both):

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

One form of Rprop that differs from torch's, **Rprop as seed 003 writes it**
(`RpropMinus`): the weight moves by :math:`-\delta_t \operatorname{sign}(g_t)` at every step,
also right after the gradient's sign flipped, where torch's Rprop stands still for one step.

Two tools: `feed_gradients` hands an optimizer a chosen gradient sequence (no loss needed), and
`adamax_step_bound` is the largest step torch's AdaMax can take.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from ._base import _check, _check_lr, _new_step, _ReferenceOptimizer

__all__ = [
    "AveragedMomentumSGD",
    "RpropMinus",
    "SutskeverNesterov",
    "adamax_step_bound",
    "feed_gradients",
    "rprop_minus_update",
]


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
            raise ValueError(
                "SutskeverNesterov.step needs a closure: the gradient is taken at "
                "the look-ahead point theta - momentum * velocity"
            )
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


def rprop_minus_update(
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
) -> None:
    """One step of seed 003's Rprop on one tensor; `prev`, `step_size`, `step` change in place."""
    step += 1
    agreement = (grad * prev).sign()  # +1: the sign held, -1: it flipped, 0: no previous sign
    factor = torch.ones_like(step_size)
    factor.masked_fill_(agreement > 0, etaplus).masked_fill_(agreement < 0, etaminus)
    step_size.mul_(factor).clamp_(step_size_min, step_size_max)
    param.addcmul_(grad.sign(), step_size, value=-1)  # a move at every step, after a flip too
    prev.copy_(grad)  # kept even after a flip (torch's Rprop stores 0 there)


class RpropMinus(_ReferenceOptimizer):
    r"""Rprop as seed 003 writes it (corrected): the weight moves at every step.

    Elementwise, for a weight with gradient :math:`g_t` (Riedmiller & Braun, 1993; seed 003,
    whose "else" branch keeps the previous step size and whose move uses the gradient's sign):

    .. math::
        \delta_t = \begin{cases}
            \min(\eta^+ \delta_{t-1}, \delta_{\max}) & g_t g_{t-1} > 0 \\
            \max(\eta^- \delta_{t-1}, \delta_{\min}) & g_t g_{t-1} < 0 \\
            \delta_{t-1} & \text{otherwise}
        \end{cases} \qquad
        \theta \leftarrow \theta - \delta_t \operatorname{sign}(g_t), \qquad \delta_0 = \text{lr}

    Igel & Hüsken (2000, "Improving the Rprop learning algorithm") call this Rprop- (Rprop
    without weight-backtracking). `torch.optim.Rprop` (and `coursekit.optim.Rprop`) is their
    iRprop-: after a flip it shrinks :math:`\delta` as here but does not move the weight, and
    stores 0 as the previous gradient, so the next step neither grows nor shrinks
    :math:`\delta`. Without sign flips the two rules are the same. On seed 003's minibatch
    example (nine gradients +0.1, one -0.9 per epoch, :math:`\delta` held fixed) this rule moves
    nine steps down and one up, :math:`8\delta` per epoch; torch's skips the step up,
    :math:`9\delta`.

    The state keys are torch's: ``step``, ``prev`` (the gradient the next sign is compared with),
    ``step_size`` (:math:`\delta`).

    Args:
        params: parameters or parameter groups.
        lr: the initial step size :math:`\delta_0` of every weight (default 1e-2).
        etas: :math:`(\eta^-, \eta^+)`, the shrink and growth factors,
            :math:`0 < \eta^- < 1 < \eta^+` (default (0.5, 1.2), torch's).
        step_sizes: :math:`(\delta_{\min}, \delta_{\max})`, bounds on each step size
            (default (1e-6, 50), torch's). Equal bounds hold :math:`\delta` fixed.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-2,
        etas: tuple[float, float] = (0.5, 1.2),
        step_sizes: tuple[float, float] = (1e-6, 50),
    ) -> None:
        _check_lr(lr)
        _check(
            len(etas) == 2 and 0.0 < etas[0] < 1.0 < etas[1],
            "etas",
            etas,
            "(eta-, eta+) with 0 < eta- < 1 < eta+",
        )
        _check(
            len(step_sizes) == 2 and 0.0 <= step_sizes[0] <= step_sizes[1],
            "step_sizes",
            step_sizes,
            "(min, max) with 0 <= min <= max",
        )
        super().__init__(params, dict(lr=lr, etas=tuple(etas), step_sizes=tuple(step_sizes)))

    def _init_state(self, param: Tensor, group: dict[str, Any]) -> dict[str, Any]:
        return {
            "step": _new_step(),
            "prev": torch.zeros_like(param, memory_format=torch.preserve_format),
            "step_size": torch.full_like(param, group["lr"]),
        }

    def _update(self, group, params, grads, states) -> None:
        etaminus, etaplus = group["etas"]
        step_size_min, step_size_max = group["step_sizes"]
        for param, grad, state in zip(params, grads, states):
            rprop_minus_update(
                param,
                grad,
                state["prev"],
                state["step_size"],
                state["step"],
                etaminus=etaminus,
                etaplus=etaplus,
                step_size_min=step_size_min,
                step_size_max=step_size_max,
            )


def feed_gradients(
    make_optimizer: Callable[[list[nn.Parameter]], Optimizer],
    gradients: Iterable[float] | Tensor,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Tensor:
    """The path of one weight, started at 0, whose gradient at step t is ``gradients[t]``.

    An optimizer in `coursekit.optim` (as in `torch.optim`) reads only ``weight.grad``, so
    setting it by hand isolates the update rule from any loss: what does the rule make of nine
    gradients +0.1 and one -0.9, or of one spike among small gradients?

    Args:
        make_optimizer: builds the optimizer from a list holding the one weight.
        gradients: the gradient at each step (floats or a 1-d tensor).
        dtype, device: of the weight (default float64 on the CPU).

    Returns:
        A float64 CPU tensor of shape ``(len(gradients) + 1,)``: the weight before the first
        step (0) and after each step.
    """
    values = gradients.tolist() if isinstance(gradients, Tensor) else [float(g) for g in gradients]
    weight = nn.Parameter(torch.zeros(1, dtype=dtype, device=device))
    optimizer = make_optimizer([weight])
    path = [0.0]
    for g in values:
        weight.grad = torch.full_like(weight, g)
        optimizer.step()
        path.append(weight.item())
    return torch.tensor(path, dtype=torch.float64)


def adamax_step_bound(
    lr: float, betas: tuple[float, float] = (0.9, 0.999), step: int | None = None
) -> float:
    r"""The largest move torch's AdaMax can make at step ``step``, over all gradient sequences.

    With :math:`m_t = (1-\beta_1)\sum_{k \le t} \beta_1^{t-k} g_k` and
    :math:`u_t \ge \beta_2^{t-k} |g_k|` for every :math:`k \le t` (the decaying maximum),

    .. math::
        |\Delta\theta_t| = \frac{\text{lr}}{1-\beta_1^t}\,\frac{|m_t|}{u_t}
        \le \text{lr}\,\frac{1-\beta_1}{1-\beta_1^t}\sum_{j=0}^{t-1}
            \Big(\frac{\beta_1}{\beta_2}\Big)^j ,

    with equality (up to :math:`\epsilon`) for gradients of one sign that shrink by
    :math:`\beta_2` per step, :math:`|g_k| \propto \beta_2^k`: every past gradient, decayed, is
    then the current maximum, while the average :math:`m_t` still holds the old, larger ones.
    For :math:`\beta_1 < \beta_2` the bound rises with :math:`t` to
    :math:`\text{lr}\,\beta_2 (1-\beta_1)/(\beta_2-\beta_1)`, about 1.009 lr at the defaults.
    Kingma & Ba (2015, section 7.1) state :math:`|\Delta\theta_t| \le \text{lr}`, which
    holds at :math:`t = 1`, for :math:`\beta_1 = 0`, or in the limit :math:`\beta_2 \to 1`;
    for :math:`\beta_1 \ge \beta_2` no bound independent of :math:`t` exists.

    Args:
        lr: AdaMax's learning rate.
        betas: :math:`(\beta_1, \beta_2)`, each in [0, 1).
        step: :math:`t \ge 1`; None for the bound over all steps (``math.inf`` when
            :math:`0 < \beta_1` and :math:`\beta_1 \ge \beta_2`).
    """
    _check_lr(lr)
    beta1, beta2 = betas
    _check(0.0 <= beta1 < 1.0, "betas[0]", beta1, "in [0, 1)")
    _check(0.0 <= beta2 < 1.0, "betas[1]", beta2, "in [0, 1)")
    _check(
        step is None or (isinstance(step, int) and step >= 1),
        "step",
        step,
        "an integer >= 1 or None",
    )
    if beta1 == 0.0 or step == 1:
        return lr  # m_t / (1 - beta1^t) is then g_t, and u_t >= |g_t|
    if beta2 == 0.0 or (step is None and beta1 >= beta2):
        return math.inf
    ratio = beta1 / beta2
    if step is None:
        return lr * (1.0 - beta1) / (1.0 - ratio)
    total = step if ratio == 1.0 else (1.0 - ratio**step) / (1.0 - ratio)  # sum of ratio^j
    return lr * (1.0 - beta1) / (1.0 - beta1**step) * total
