r"""Step-size schedules from the seeds, as factories for `torch.optim.lr_scheduler.LambdaLR`.

`LambdaLR` multiplies each group's initial lr by `factor(k)` at step k (k = 0, 1, ...), so each
function here returns that factor as a function of k::

    scheduler = LambdaLR(optimizer, inverse_sqrt_decay())   # lr_k = lr_0 / sqrt(k + 1)

Robbins-Monro (seed 002): a schedule with :math:`\sum_k \eta_k = \infty` and
:math:`\sum_k \eta_k^2 < \infty` (such as c/k) makes SGD converge; a constant step plateaus at
a noise floor; :math:`c/\sqrt{k}` lies between (seed 001).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from ._base import _check

__all__ = ["inverse_decay", "inverse_sqrt_decay", "linear_scaling_warmup"]


def inverse_sqrt_decay(offset: float = 1.0) -> Callable[[int], float]:
    r"""Factor :math:`1/\sqrt{(k + \text{offset}) / \text{offset}}`, i.e. :math:`\eta_k \propto 1/\sqrt{k}`.

    `offset` > 0 keeps the first factor at 1 and sets how soon the decay starts.
    """
    _check(offset > 0, "offset", offset, "> 0")
    return lambda k: math.sqrt(offset / (k + offset))


def inverse_decay(offset: float = 1.0) -> Callable[[int], float]:
    r"""Factor :math:`\text{offset} / (k + \text{offset})`, i.e. :math:`\eta_k \propto 1/k` (Robbins-Monro)."""
    _check(offset > 0, "offset", offset, "> 0")
    return lambda k: offset / (k + offset)


def linear_scaling_warmup(
    batch_size: int, base_batch_size: int, warmup_steps: int = 0
) -> Callable[[int], float]:
    r"""Goyal et al. (2017), seed 002: scale the lr linearly with the batch, reached after a warm-up.

    The target factor is :math:`b / b_0` (`batch_size / base_batch_size`); during the first
    `warmup_steps` steps it rises linearly from 1 (the base lr) to the target, because the
    large step is unstable while the network is far from a good region.
    """
    _check(batch_size >= 1, "batch_size", batch_size, ">= 1")
    _check(base_batch_size >= 1, "base_batch_size", base_batch_size, ">= 1")
    _check(warmup_steps >= 0, "warmup_steps", warmup_steps, ">= 0")
    target = batch_size / base_batch_size

    def factor(k: int) -> float:
        if k >= warmup_steps:
            return target
        return 1.0 + (target - 1.0) * k / warmup_steps

    return factor
