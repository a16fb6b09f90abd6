"""The course's matplotlib style: one look for every figure, readable on a projected slide."""

from __future__ import annotations

import matplotlib.pyplot as plt

__all__ = ["use_style"]

# Sizes chosen for a 1280x720 slide: labels must stay legible from the back of a room.
_STYLE = {
    "figure.figsize": (7.0, 5.5),
    "figure.dpi": 100,
    "figure.constrained_layout.use": True,
    "font.size": 14,
    "axes.titlesize": 16,
    "axes.labelsize": 15,
    "xtick.labelsize": 12,
    "ytick.labelsize": 12,
    "legend.fontsize": 12,
    "legend.framealpha": 0.85,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linestyle": "--",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 2.0,
    "lines.markersize": 4.0,
}


def use_style() -> None:
    """Set the course's matplotlib style: slide-sized fonts, a light grid, constrained layout.

    Only sets fixed values, so calling it again changes nothing.
    """
    plt.rcParams.update(_STYLE)
