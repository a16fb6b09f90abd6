r"""Many initialisations per width, each trained to a plateau: how alike are the minima?

Choromanska et al. (2015; seed 000) trained 2-layer nets of several widths on a scaled-down
MNIST from many random initialisations and looked at the distribution of the final test
losses: the wider the net, the narrower the distribution, which they read as the minima of
large nets lying in a narrow band of nearly equal quality. `minima_by_width` repeats the
experiment on a data `Split` (the course uses `coursekit.data.digits`), with every
initialisation of one width trained at once as a `coursekit.ensembles.Ensemble`, full batch,
until its training objective reaches a plateau (`coursekit.ensembles.train_to_plateau`).

    runs = minima_by_width(digits(), widths=[4, 16, 64], inits=12)
    spread = {h: run.test_loss.std() for h, run in runs.items()}
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from coursekit.data import Split
from coursekit.ensembles import Ensemble, evaluate, train_to_plateau
from coursekit.models import MLP

__all__ = ["WidthRun", "minima_by_width"]


@dataclass
class WidthRun:
    """The nets of one width, where each reached its plateau.

    Attributes:
        width: hidden units ``h`` of the ``d-h-c`` nets.
        test_loss: ``(K,)`` mean cross-entropy of each net on the test set.
        test_accuracy: ``(K,)``.
        objective: ``(K,)`` training objective (cross-entropy plus the L2 penalty) at the stop.
        stopped: ``(K,)`` full-batch updates until each net met the plateau criterion.
        converged: ``(K,)`` bool, whether it did within ``max_steps``.
        models: the K trained nets (`MLP`), each as it was at its stop.
    """

    width: int
    test_loss: Tensor
    test_accuracy: Tensor
    objective: Tensor
    stopped: Tensor
    converged: Tensor
    models: list[nn.Module]


def minima_by_width(
    data: Split,
    widths: Sequence[int],
    inits: int,
    *,
    weight_decay: float = 3e-3,
    optimizer: Callable[..., torch.optim.Optimizer] = torch.optim.Rprop,
    lr: float = 0.03,
    rel_tol: float = 1e-3,
    window: int = 20,
    max_steps: int = 500,
    seed: int = 0,
) -> dict[int, WidthRun]:
    r"""Train ``inits`` ReLU nets ``d-h-c`` per width ``h`` to a plateau; score them on the test set.

    Net ``k`` of width ``h`` starts from `MLP`'s default initialisation drawn from
    ``torch.Generator().manual_seed(seed + 1000 * h + k)``. All nets of one width train
    together, full batch, with ``optimizer(params, lr=lr)`` (default Rprop, the full-batch
    method of lecture 4) on cross-entropy plus :math:`\tfrac{\lambda}{2}\|\theta\|^2`,
    :math:`\lambda` = ``weight_decay``, until the objective improves by less than
    ``rel_tol`` (relative) over ``window`` updates, or ``max_steps``
    (see `coursekit.ensembles.train_to_plateau`). The same data for all, so the spread of
    the results within a width comes from the initialisation alone.

    Returns:
        One `WidthRun` per width, keyed by the width.
    """
    widths = [int(h) for h in widths]
    if not widths or min(widths) < 1:
        raise ValueError(f"Invalid widths: {widths!r} (must be at least one width >= 1)")
    if isinstance(inits, bool) or not isinstance(inits, int) or inits < 2:
        raise ValueError(f"Invalid inits: {inits!r} (must be an int >= 2, for a spread)")
    if not lr > 0:
        raise ValueError(f"Invalid lr: {lr!r} (must be > 0)")
    d_in, classes = data.x_train.shape[1], int(data.y_train.max()) + 1
    runs = {}
    for h in widths:
        nets = [
            MLP([d_in, h, classes], generator=torch.Generator().manual_seed(seed + 1000 * h + k))
            for k in range(inits)
        ]
        ensemble = Ensemble(nets)
        plateau = train_to_plateau(
            ensemble,
            optimizer(ensemble.parameters(), lr=lr),
            F.cross_entropy,
            data.x_train,
            data.y_train,
            rel_tol=rel_tol,
            window=window,
            max_steps=max_steps,
            weight_decay=weight_decay,
        )
        scores = evaluate(ensemble, data.x_test, data.y_test)
        steps = torch.arange(inits)
        runs[h] = WidthRun(
            width=h,
            test_loss=scores.loss,
            test_accuracy=scores.accuracy,
            objective=plateau.losses[plateau.stopped, steps].double(),
            stopped=plateau.stopped,
            converged=plateau.converged,
            models=ensemble.unstack(),
        )
    return runs
