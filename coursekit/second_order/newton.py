r"""Newton's method and Hessian-free (truncated Newton) optimisation, as torch optimizers.

Lecture 6 (seeds 001, 003). Both minimise the local quadratic model of the loss,

.. math::
    q(d) = L(\theta) + g^\top d + \tfrac12 d^\top H d, \qquad
    (H + \lambda I)\, d = -g, \qquad \theta \leftarrow \theta + \eta\, d,

with the gradient :math:`g`, Hessian :math:`H` and damping :math:`\lambda` at :math:`\theta`.
`Newton` forms :math:`H` (small models only) and solves exactly. `HessianFree` never forms it:
it runs the conjugate gradient method on Hessian-vector products (Martens 2010, "Deep learning
via Hessian-free optimization"), stops early (a CG budget, a tolerance, or a direction of
negative curvature) and adapts :math:`\lambda` by how well the model predicted the change of
the loss (Levenberg-Marquardt).

The step is scale-free: rescale one parameter by :math:`c` and its Newton step rescales by
:math:`c` too, where a gradient step rescales by :math:`1/c` (lecture 4's units argument).

Both take a closure that *returns the loss with its graph* and does not call ``backward()``:
the optimizer differentiates it twice itself. The parameters of all groups form one flat
vector, as in ``torch.optim.LBFGS``; there is one parameter group.

Martens uses the Gauss-Newton matrix, which is positive semi-definite; here the curvature is
the Hessian itself, which the course's curvature tools use throughout and which the closure
alone determines (the Gauss-Newton matrix also needs the model's outputs and the loss as a
function of them). Damping and the stop at negative curvature keep the steps descent steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import Tensor
from torch.optim import Optimizer

from coursekit.curvature import loss_hvp
from coursekit.second_order.cg import CGResult, conjugate_gradient

__all__ = ["HessianFree", "Newton"]

Closure = Callable[[], Tensor]


def _check(name: str, value: float, *, positive: bool = False) -> None:
    if not (value > 0 if positive else value >= 0):
        raise ValueError(f"Invalid {name}: {value} (must be {'> 0' if positive else '>= 0'})")


def _flat_params(optimizer: Optimizer) -> list[Tensor]:
    if len(optimizer.param_groups) != 1:
        raise ValueError(f"{type(optimizer).__name__} takes one parameter group")
    return [p for p in optimizer.param_groups[0]["params"] if p.requires_grad]


def _loss_of(closure: Closure | None, name: str) -> Tensor:
    if closure is None:
        raise ValueError(f"{name}.step needs a closure that returns the loss")
    with torch.enable_grad():
        loss = closure()
    if not isinstance(loss, Tensor) or loss.numel() != 1 or not loss.requires_grad:
        raise ValueError(
            f"{name}'s closure must return a scalar loss with its graph, computed from the "
            "parameters and not backpropagated (no backward() in the closure)"
        )
    return loss


@torch.no_grad()
def _add_flat(params: list[Tensor], step: Tensor) -> None:
    offset = 0
    for p in params:
        n = p.numel()
        p.add_(step[offset : offset + n].view_as(p))
        offset += n


class Newton(Optimizer):
    r"""Damped Newton: :math:`\theta \leftarrow \theta - \eta\,(H + \lambda I)^{-1} g`.

    The Hessian is formed column by column from Hessian-vector products (``n`` of them for
    ``n`` parameters), so this is for small models. Without damping, Newton's method goes to the
    nearest critical point of the quadratic model whatever its kind: it is attracted to saddles
    as readily as to minima (lecture 6).

    Args:
        params: the parameters (one group).
        lr: :math:`\eta` (default 1, the full Newton step).
        damping: :math:`\lambda \ge 0` (default 0).
        max_params: refuse more parameters than this (default 5000).
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1.0,
        damping: float = 0.0,
        *,
        max_params: int = 5000,
    ) -> None:
        _check("lr", lr, positive=True)
        _check("damping", damping)
        _check("max_params", max_params, positive=True)
        super().__init__(params, dict(lr=lr, damping=damping))
        self.max_params = max_params
        n = sum(p.numel() for p in _flat_params(self))
        if n > max_params:
            raise ValueError(
                f"Invalid max_params: {max_params} (the parameters have {n} entries; "
                "use HessianFree for larger models)"
            )

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> Tensor:  # type: ignore[override]
        """One Newton step; returns the loss before it."""
        group = self.param_groups[0]
        params = _flat_params(self)
        loss = _loss_of(closure, "Newton")
        g, hvp = loss_hvp(loss, params)
        eye = torch.eye(len(g), dtype=g.dtype, device=g.device)
        h = torch.stack([hvp(e) for e in eye], dim=1)
        h = (h + h.T) / 2  # symmetric to rounding, so solve sees the matrix Newton means
        d = torch.linalg.solve(h + group["damping"] * eye, -g)
        _add_flat(params, group["lr"] * d)
        return loss.detach()


class HessianFree(Optimizer):
    r"""Truncated Newton on Hessian-vector products with adaptive damping (Martens 2010).

    Each step solves :math:`(H + \lambda I) d = -g` by `conjugate_gradient`, warm-started at
    ``warm_start`` times the previous step's direction, stopped after ``cg_max_iter``
    products, at relative residual ``cg_tol``, or at a direction of non-positive curvature
    (an indefinite Hessian), and moves to :math:`\theta + \eta d`. Then it compares the actual
    change of the loss with the one the undamped model predicted,

    .. math::
        \rho = \frac{L(\theta + \eta d) - L(\theta)}{g^\top (\eta d) + \tfrac12\, \eta^2 d^\top H d},

    and, with ``adapt_damping``, raises :math:`\lambda` by 3/2 when :math:`\rho < 1/4` (the
    model was too optimistic: trust it less) and lowers it by 2/3 when :math:`\rho > 3/4`. A
    step that does not lower the loss (:math:`\rho \le 0`, or a non-finite loss) is undone.

    Counters, cumulative over steps (also in ``state_dict()``): `gradient_evaluations`,
    `hvp_evaluations` (each Hessian-vector product costs about two gradients; a step takes
    its CG iterations, plus one for a warm start's first residual),
    `loss_evaluations` (closure calls: two per step). `last_cg` is the last step's
    `CGResult`, `last_reduction_ratio` its :math:`\rho`; the current :math:`\lambda` is
    ``param_groups[0]["damping"]``.

    Args:
        params: the parameters (one group).
        lr: :math:`\eta` (default 1).
        damping: initial :math:`\lambda > 0` (default 1).
        cg_max_iter: CG's budget of products per step (default 50).
        cg_tol: CG stops at :math:`\|r\| \le` ``cg_tol`` :math:`\|g\|` (default 1e-2).
        adapt_damping: Levenberg-Marquardt adaptation of :math:`\lambda` (default True).
        warm_start: factor on the previous direction as CG's start (default 0.95, Martens').
    """

    def __init__(
        self,
        params: Iterable[Tensor],
        lr: float = 1.0,
        damping: float = 1.0,
        cg_max_iter: int = 50,
        cg_tol: float = 1e-2,
        adapt_damping: bool = True,
        warm_start: float = 0.95,
    ) -> None:
        _check("lr", lr, positive=True)
        _check("damping", damping, positive=True)
        _check("cg_max_iter", cg_max_iter, positive=True)
        _check("cg_tol", cg_tol)
        if not 0.0 <= warm_start <= 1.0:
            raise ValueError(f"Invalid warm_start: {warm_start} (must be in [0, 1])")
        defaults = dict(
            lr=lr,
            damping=damping,
            cg_max_iter=int(cg_max_iter),
            cg_tol=cg_tol,
            adapt_damping=adapt_damping,
            warm_start=warm_start,
        )
        super().__init__(params, defaults)
        _flat_params(self)
        self.last_cg: CGResult | None = None
        self.last_reduction_ratio: float | None = None

    def _counters(self) -> dict:
        # Kept in the state of the first parameter, as torch's LBFGS keeps its own, so that
        # state_dict() carries the counters and the warm start.
        state = self.state[self.param_groups[0]["params"][0]]
        for key in ("gradient_evaluations", "hvp_evaluations", "loss_evaluations"):
            state.setdefault(key, 0)
        return state

    @property
    def gradient_evaluations(self) -> int:
        return self._counters()["gradient_evaluations"]

    @property
    def hvp_evaluations(self) -> int:
        return self._counters()["hvp_evaluations"]

    @property
    def loss_evaluations(self) -> int:
        return self._counters()["loss_evaluations"]

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> Tensor:  # type: ignore[override]
        """One Hessian-free step; returns the loss before it."""
        group = self.param_groups[0]
        params = _flat_params(self)
        state = self._counters()
        loss = _loss_of(closure, "HessianFree")
        g, hvp = loss_hvp(loss, params)
        state["loss_evaluations"] += 1
        state["gradient_evaluations"] += 1
        damping = group["damping"]

        def damped(v: Tensor) -> Tensor:
            state["hvp_evaluations"] += 1
            return hvp(v) + damping * v

        previous = state.get("direction")
        x0 = (
            None if previous is None or group["warm_start"] == 0 else group["warm_start"] * previous
        )
        cg = conjugate_gradient(damped, -g, x0, tol=group["cg_tol"], max_iter=group["cg_max_iter"])
        d = cg.x
        if bool(d.any()):
            # CG's residual r = -g - (H + lambda I) d gives H d without another product.
            hd = -g - cg.residual - damping * d
        else:  # negative curvature at CG's first direction: a gradient step
            d = -g / damping
            state["hvp_evaluations"] += 1
            hd = hvp(d)
        self.last_cg = cg

        lr = group["lr"]
        step = lr * d
        predicted = (g @ step + 0.5 * lr**2 * (d @ hd)).item()
        _add_flat(params, step)
        new_loss = closure().item()
        state["loss_evaluations"] += 1
        change = new_loss - loss.item()
        rho = change / predicted if predicted < 0 and math.isfinite(new_loss) else -math.inf
        self.last_reduction_ratio = rho
        if not (math.isfinite(new_loss) and change < 0):
            _add_flat(params, -step)  # undo: the step did not lower the loss
            state["direction"] = None
        else:
            state["direction"] = d
        if group["adapt_damping"]:
            if rho < 0.25:
                group["damping"] = damping * 1.5
            elif rho > 0.75:
                group["damping"] = damping * 2.0 / 3.0
        return loss.detach()
