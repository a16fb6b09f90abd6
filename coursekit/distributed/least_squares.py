"""The least-squares problem that the distributed lecture and assignment 5 train on.

Kept apart from `coursekit.distributed.simulate` because assignment 5 asks students to write the
simulator: while it is graded that module is hidden from their kernel, and this one is not.
"""

from __future__ import annotations

import torch
from torch import Tensor


def least_squares_grads(X: Tensor, y: Tensor, w: Tensor) -> Tensor:
    r"""Each worker's gradient of its minibatch's mean squared error, all workers at once.

    ``X`` (p, B, d), ``y`` (p, B), ``w`` (p, d) -> (p, d):
    :math:`g_i = \tfrac{2}{B} X_i^\top (X_i w_i - y_i)`, the gradient of
    ``F.mse_loss(X_i @ w_i, y_i)`` for worker i.
    """
    residual = torch.einsum("pbd,pd->pb", X, w) - y  # (p, B)
    return (2.0 / X.shape[1]) * torch.einsum("pbd,pb->pd", X, residual)


def least_squares_problem(
    n: int, d: int, *, seed: int, noise: float = 0.1, dtype: torch.dtype = torch.float64
) -> tuple[Tensor, Tensor, Tensor]:
    """``(X (n, d), y (n,), x0 (d,))``: Gaussian inputs, a noisy linear target, a random start.

    ``y = X w + noise * e`` with ``w`` and ``e`` standard normal; everything drawn in that order
    from one generator seeded with `seed`, so the same call gives the same problem anywhere.
    """
    if n < 1 or d < 1:
        raise ValueError(f"Invalid n, d: {n}, {d} (both must be >= 1)")
    if noise < 0:
        raise ValueError(f"Invalid noise: {noise} (must be >= 0)")
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=gen, dtype=dtype)
    w_true = torch.randn(d, generator=gen, dtype=dtype)
    y = X @ w_true + noise * torch.randn(n, generator=gen, dtype=dtype)
    x0 = torch.randn(d, generator=gen, dtype=dtype)
    return X, y, x0
