"""What every figure module shares: array conversion, new axes, the contour colour map."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from torch import Tensor

_ArrayLike = Tensor | np.ndarray | Sequence[float]

_CONTOUR_CMAP = "Blues_r"  # dark valleys, pale ridges: coloured paths stand out on both


def _to_numpy(values: _ArrayLike) -> np.ndarray:
    if isinstance(values, Tensor):
        return values.detach().to(device="cpu", dtype=torch.float64).numpy()
    return np.asarray(values, dtype=np.float64)


def _new_axes(ax: Axes | None) -> Axes:
    if ax is None:
        _, ax = plt.subplots()
    return ax


def _mark_start(ax: Axes, path: np.ndarray, color) -> None:
    """A hollow circle in the path's colour where it started."""
    ax.plot(
        path[0, 0],
        path[0, 1],
        marker="o",
        markersize=11,
        markerfacecolor="none",
        markeredgewidth=2,
        color=color,
        zorder=7,
    )
