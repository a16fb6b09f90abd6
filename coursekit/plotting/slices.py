"""Slices of a network's loss: a curve along one direction, filled contours on a plane.

The slices themselves are computed by `coursekit.landscapes.slices`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes

from ._base import _CONTOUR_CMAP, _ArrayLike, _new_axes, _to_numpy

__all__ = ["plot_slice_1d", "plot_slice_2d"]


def plot_slice_1d(
    alphas: _ArrayLike,
    losses: _ArrayLike,
    ax: Axes | None = None,
    label: str | None = None,
    title: str = "Loss along a direction",
    xlabel: str = r"$\alpha$",
    ylabel: str = "loss",
    log_y: bool = False,
) -> Axes:
    r"""A 1-D slice of a loss, :math:`L(\theta + \alpha d)` against :math:`\alpha`.

    Call it again with the same ``ax`` and another ``label`` to compare directions or models;
    the origin (the model itself, :math:`\alpha = 0`) is marked by a dotted vertical line.

    Args:
        alphas: the step sizes, shape ``(A,)``.
        losses: the losses, shape ``(A,)``, e.g. from `coursekit.landscapes.slice_1d` or
            `coursekit.landscapes.interpolate`.
        ax: axes to draw into; a new figure when None.
        label: legend entry for this curve; no legend when None.
        title, xlabel, ylabel: the labels; figures always carry them.
        log_y: logarithmic y-axis.
    """
    x, y = _to_numpy(alphas).reshape(-1), _to_numpy(losses).reshape(-1)
    if len(x) == 0 or x.shape != y.shape:
        raise ValueError(
            f"alphas and losses must be non-empty and of one length, got {x.shape} and {y.shape}"
        )
    ax = _new_axes(ax)
    ax.plot(x, y, label=label)
    if x.min() <= 0.0 <= x.max():
        ax.axvline(0.0, color="0.5", linestyle=":", linewidth=1.2)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if label is not None:
        ax.legend(loc="best")
    return ax


def plot_slice_2d(
    alphas: _ArrayLike,
    betas: _ArrayLike,
    losses: _ArrayLike,
    ax: Axes | None = None,
    levels: int | Sequence[float] = 30,
    log_scale: bool = False,
    points: Mapping[str, tuple[float, float]] | None = None,
    title: str = "Loss on a plane",
    xlabel: str = r"$\alpha$",
    ylabel: str = r"$\beta$",
    equal_aspect: bool = True,
) -> Axes:
    r"""Filled contours of a 2-D slice of a loss, with a colour bar and marked solutions.

    Args:
        alphas: the x-coordinates, shape ``(A,)``.
        betas: the y-coordinates, shape ``(B,)``.
        losses: shape ``(A, B)``, entry ``[i, j]`` at ``(alphas[i], betas[j])``: the layout of
            `coursekit.landscapes.slice_2d` and `coursekit.landscapes.plane_through`.
        ax: axes to draw into; a new figure when None.
        levels: number of contour levels, or the levels themselves (in the colour scale's
            units, so in :math:`\log_{10}` of the loss with ``log_scale``).
        log_scale: colour by :math:`\log_{10}` of the loss, which resolves the floor of a
            valley that linear levels lump into one colour; the losses must be positive.
        points: name -> ``(alpha, beta)`` of points to mark and name in the legend, such as the
            ``points`` returned by `coursekit.landscapes.plane_through`, or
            ``{"trained": (0, 0)}`` for a slice around one model.
        title, xlabel, ylabel: the labels; figures always carry them.
        equal_aspect: one unit is as long on both axes (distances in the plane look as they
            are: right for `plane_through` and for filter-normalised directions).
    """
    a, b = _to_numpy(alphas).reshape(-1), _to_numpy(betas).reshape(-1)
    z = _to_numpy(losses)
    if len(a) < 2 or len(b) < 2 or z.shape != (len(a), len(b)):
        raise ValueError(
            f"losses must have shape (len(alphas), len(betas)) with both lengths >= 2, got "
            f"losses {z.shape}, alphas {a.shape}, betas {b.shape}"
        )
    if isinstance(levels, int) and levels < 2:
        raise ValueError(f"levels must be >= 2, got {levels}")
    if log_scale:
        if not (z > 0).all():
            raise ValueError("log_scale needs positive losses")
        z = np.log10(z)
    ax = _new_axes(ax)
    grid_a, grid_b = np.meshgrid(a, b, indexing="ij")  # (A, B) each, like losses
    filled = ax.contourf(grid_a, grid_b, z, levels=levels, cmap=_CONTOUR_CMAP)
    ax.contour(grid_a, grid_b, z, levels=filled.levels, colors="k", linewidths=0.4, alpha=0.35)
    colorbar = ax.figure.colorbar(filled, ax=ax)
    colorbar.set_label(r"$\log_{10}$ loss" if log_scale else "loss")
    for name, (pa, pb) in (points or {}).items():
        ax.plot(
            pa, pb, linestyle="none", marker="*", markersize=16, markeredgecolor="k", label=name
        )
    if points:
        ax.legend(loc="best")
    if equal_aspect:
        ax.set_aspect("equal", adjustable="box")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(False)  # the contours already give the eye its reference lines
    return ax
