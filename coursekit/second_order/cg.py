r"""The conjugate gradient method, on torch tensors.

Lecture 6 (seeds 001, 003). Newton's step solves :math:`H d = -g`; for a network :math:`H` is
never formed, only products :math:`Hv` (`coursekit.curvature.hvp`), and the linear system is
solved by the conjugate gradient method, which needs nothing else.

`conjugate_gradient` is written out here rather than taken from `scipy.sparse.linalg.cg`
(which the tests compare it with) for two reasons: it must run on torch tensors on whatever
device the model lives (an HVP on a GPU should not round-trip through numpy), and Hessian-free
optimisation needs what scipy does not report: every residual, and the first direction of
non-positive curvature, where CG on an indefinite Hessian must stop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

__all__ = ["CGResult", "conjugate_gradient"]


@dataclass
class CGResult:
    r"""What `conjugate_gradient` found.

    Attributes:
        x: the last iterate.
        residual_norms: :math:`\|b - A x_k\|` for k = 0, 1, ..., one per iterate.
        residual: the last residual vector :math:`r = b - A x` (CG's recurrence for it, so
            :math:`A x = b - r` comes without another product).
        iterations: matrix-vector products taken (one per iteration).
        converged: the residual fell to the tolerance.
        negative_curvature: stopped at a direction p with :math:`p^\top A p \le 0` (A is not
            positive definite); `x` is the iterate before it.
    """

    x: Tensor
    residual_norms: list[float] = field(default_factory=list)
    residual: Tensor | None = None
    iterations: int = 0
    converged: bool = False
    negative_curvature: bool = False


def conjugate_gradient(
    matvec: Callable[[Tensor], Tensor],
    b: Tensor,
    x0: Tensor | None = None,
    *,
    tol: float = 1e-10,
    max_iter: int | None = None,
) -> CGResult:
    r"""Solve :math:`A x = b` for a symmetric positive definite A given as ``matvec(v) = A v``.

    Hestenes and Stiefel (1952): with :math:`r_0 = b - A x_0`, :math:`p_0 = r_0`,

    .. math::
        \alpha_k = \frac{r_k^\top r_k}{p_k^\top A p_k}, \quad
        x_{k+1} = x_k + \alpha_k p_k, \quad r_{k+1} = r_k - \alpha_k A p_k, \quad
        p_{k+1} = r_{k+1} + \frac{r_{k+1}^\top r_{k+1}}{r_k^\top r_k}\, p_k .

    The directions are A-conjugate, so in exact arithmetic the solution is reached in at most d
    steps, and in k when A has k distinct eigenvalues. Stops when :math:`\|r_k\| \le`
    ``tol`` :math:`\cdot \|b\|`, after `max_iter` steps (default: the dimension), or at a
    direction of non-positive curvature.
    """
    if b.dim() != 1:
        raise ValueError(f"Invalid b: shape {tuple(b.shape)} (must be a vector)")
    if not tol >= 0:
        raise ValueError(f"Invalid tol: {tol} (must be >= 0)")
    if max_iter is not None and max_iter < 0:
        raise ValueError(f"Invalid max_iter: {max_iter} (must be >= 0)")
    limit = b.numel() if max_iter is None else max_iter
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    r = b - matvec(x) if x0 is not None else b.clone()
    p = r.clone()
    rr = r @ r
    target = tol * b.norm().item()
    result = CGResult(x, [rr.sqrt().item()], r)
    while result.residual_norms[-1] > target and result.iterations < limit:
        ap = matvec(p)
        curvature = p @ ap
        result.iterations += 1
        if curvature <= 0:
            result.negative_curvature = True
            break
        alpha = rr / curvature
        x = x + alpha * p
        r = r - alpha * ap
        rr_next = r @ r
        p = r + (rr_next / rr) * p
        rr = rr_next
        result.x, result.residual = x, r
        result.residual_norms.append(rr.sqrt().item())
    result.converged = result.residual_norms[-1] <= target
    return result
