r"""Second-order methods (lecture 6; seeds 001, 003), each in its own file.

- `conjugate_gradient` (cg.py): solves :math:`A x = b` from products :math:`Av` alone.
- `Newton`, `HessianFree` (newton.py): :math:`(H + \lambda I) d = -g`, solved densely or by
  truncated CG on Hessian-vector products (Martens 2010), as optimizers taking a closure.
- `fisher_matrix`, `NaturalGradient` (natural_gradient.py): the Fisher metric of a classifier,
  exact or empirical, and steepest descent in it (Amari 1998).
- `WhitenedLinear`, `WhitenedMLP`, `reestimate_whitening` (prong.py): PRONG's whitened layers
  with their function-preserving reparameterisation (Desjardins et al. 2015).
"""

from coursekit.second_order.cg import CGResult, conjugate_gradient
from coursekit.second_order.natural_gradient import (
    NaturalGradient,
    fisher_matrix,
    negative_log_likelihood,
)
from coursekit.second_order.newton import HessianFree, Newton
from coursekit.second_order.prong import WhitenedLinear, WhitenedMLP, reestimate_whitening

__all__ = [
    "CGResult",
    "HessianFree",
    "NaturalGradient",
    "Newton",
    "WhitenedLinear",
    "WhitenedMLP",
    "conjugate_gradient",
    "fisher_matrix",
    "negative_log_likelihood",
    "reestimate_whitening",
]
