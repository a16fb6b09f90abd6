"""Several curves against their index, such as loss per step for a few optimizers."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.axes import Axes

from ._base import _ArrayLike, _new_axes, _to_numpy

__all__ = ["plot_curves"]


def plot_curves(
    curves: Mapping[str, _ArrayLike],
    xlabel: str,
    ylabel: str,
    title: str,
    log_y: bool = False,
    ax: Axes | None = None,
) -> Axes:
    """Several curves against their index, such as loss per step for a few optimizers.

    Args:
        curves: name -> values (a sequence, array or 1-D tensor); x is 0, 1, 2, ...
        xlabel, ylabel, title: the labels; figures always carry them.
        log_y: logarithmic y-axis, the natural scale for losses that converge geometrically.
        ax: axes to draw into; a new figure when None.
    """
    if len(curves) == 0:
        raise ValueError("curves must contain at least one curve")
    ax = _new_axes(ax)
    for name, values in curves.items():
        y = _to_numpy(values).reshape(-1)
        ax.plot(np.arange(len(y)), y, label=name)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc="best")
    return ax
