"""A 2-D `coursekit.landscapes.Surface` as filled contours, and optimizer paths drawn on it."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from matplotlib.axes import Axes

from ..landscapes.surfaces import Surface
from ._base import _CONTOUR_CMAP, _ArrayLike, _mark_start, _new_axes, _to_numpy

__all__ = ["plot_surface_contours", "plot_trajectories"]


def _as_path(name: str, points: _ArrayLike) -> np.ndarray:
    path = _to_numpy(points)
    if path.ndim != 2 or path.shape[1] != 2 or len(path) == 0:
        raise ValueError(
            f"trajectory {name!r} must have shape (T, 2) with T >= 1, got {path.shape}"
        )
    return path


def _as_paths(trajectories: Mapping[str, _ArrayLike]) -> dict[str, np.ndarray]:
    if len(trajectories) == 0:
        raise ValueError("trajectories must contain at least one trajectory")
    return {name: _as_path(name, points) for name, points in trajectories.items()}


def plot_surface_contours(
    surface: Surface,
    ax: Axes | None = None,
    levels: int = 30,
    log_scale: bool = True,
    resolution: int = 200,
) -> Axes:
    r"""Filled contours of ``surface`` over its bounds, with the known minima starred.

    With ``log_scale`` the colours show :math:`\log_{10}(f - f^\star)`, which resolves the
    floor of narrow valleys that linear levels lump into one colour. A surface unbounded below
    (``min_value = -inf``) has no :math:`f^\star`, and is drawn with linear levels.

    Args:
        surface: the surface to draw; evaluated once, on a ``resolution x resolution`` grid.
        ax: axes to draw into; a new figure when None.
        levels: number of contour levels.
        log_scale: colour by the logarithm of the gap to the minimum value.
        resolution: grid points per axis.
    """
    if levels < 2:
        raise ValueError(f"levels must be >= 2, got {levels}")
    if resolution < 2:
        raise ValueError(f"resolution must be >= 2, got {resolution}")
    ax = _new_axes(ax)
    _draw_contours(surface, ax, levels, log_scale, resolution, lines=True)
    return ax


def _draw_contours(
    surface: Surface, ax: Axes, levels: int, log_scale: bool, resolution: int, lines: bool
) -> None:
    (x_lo, x_hi), (y_lo, y_hi) = surface.bounds
    xs = torch.linspace(x_lo, x_hi, resolution, dtype=torch.float64)
    ys = torch.linspace(y_lo, y_hi, resolution, dtype=torch.float64)
    grid_x, grid_y = torch.meshgrid(xs, ys, indexing="xy")  # (R, R) each, rows follow y
    z = _to_numpy(surface.value(torch.stack((grid_x, grid_y), dim=-1)))  # (R, R)

    if log_scale and np.isfinite(surface.min_value):
        gap = z - surface.min_value
        # Grid points can hit the minimum exactly; a floor far below the range keeps log finite.
        floor = max(gap.max(), 1e-300) * 1e-12
        z = np.log10(np.maximum(gap, floor))
        # Start the levels at the lowest value reached above the floor, so the colours are
        # spent on the visible landscape rather than on one grid point that hit the minimum.
        reached = z[gap > floor]
        low = reached.min() if reached.size else z.min()
    else:
        low = z.min()
    contour_levels = np.linspace(low, z.max(), levels)

    gx, gy = grid_x.numpy(), grid_y.numpy()
    ax.contourf(gx, gy, z, levels=contour_levels, cmap=_CONTOUR_CMAP, extend="min")
    if lines:
        ax.contour(gx, gy, z, levels=contour_levels, colors="k", linewidths=0.4, alpha=0.35)
    inside = [(x, y) for x, y in surface.minima if x_lo <= x <= x_hi and y_lo <= y <= y_hi]
    if inside:
        mx, my = zip(*inside, strict=True)
        ax.plot(
            mx,
            my,
            linestyle="none",
            marker="*",
            markersize=16,
            color="gold",
            markeredgecolor="k",
            zorder=5,
        )

    ax.set_xlim(x_lo, x_hi)
    ax.set_ylim(y_lo, y_hi)
    ax.set_aspect("equal", adjustable="box")  # so rotations and angles look as they are
    ax.set_xlabel(surface.labels[0])
    ax.set_ylabel(surface.labels[1])
    ax.set_title(surface.name)
    ax.grid(False)  # the contours already give the eye its reference lines


def plot_trajectories(
    surface: Surface,
    trajectories: Mapping[str, _ArrayLike],
    ax: Axes | None = None,
    title: str | None = None,
) -> Axes:
    """Optimizer paths drawn over the contours of ``surface``, one legend entry per path.

    Args:
        surface: the surface the paths ran on.
        trajectories: name -> points of shape ``(T, 2)``, e.g. from
            `coursekit.landscapes.trajectory`. Non-finite points (a diverged run) are skipped.
        ax: axes to draw into; a new figure when None.
        title: the title; the surface's name when None.
    """
    paths = _as_paths(trajectories)
    ax = plot_surface_contours(surface, ax=ax)
    for name, path in paths.items():
        (line,) = ax.plot(
            path[:, 0], path[:, 1], marker="o", markersize=3, linewidth=1.6, label=name, zorder=6
        )
        _mark_start(ax, path, line.get_color())
    ax.set_title(surface.name if title is None else title)
    ax.legend(loc="best")
    return ax
