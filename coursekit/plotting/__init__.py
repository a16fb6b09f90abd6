"""Figures for the lectures: loss surfaces, optimizer paths on them, loss curves, loss slices,
and lecture 8's distributed runs and stability maps.

One look for every figure of the course, readable on a projected slide. Call `use_style`
once at the top of a notebook; the functions below never change global settings themselves.
A one-panel function draws into an ``Axes`` (a new figure when ``ax`` is None) and returns
it; a many-panel one returns its ``Figure``; either way a notebook can adjust the result, and
nothing is shown or closed behind the caller's back. Every function draws what a compute
module computed (a `Surface`, paths, curves, grids of values): the compute modules import no
matplotlib, and this package is where every figure of the course is drawn.

- `style`: `use_style`.
- `surfaces`: `plot_surface_contours`, `plot_trajectories` (optimizer paths on a 2-D surface).
- `animation`: `animate_trajectories`, `animation_html` (the paths growing, played offline).
- `curves`: `plot_curves` (values against their index, such as loss per step).
- `slices`: `plot_slice_1d`, `plot_slice_2d` (`coursekit.landscapes.slices`' results).
- `distributed`: `plot_runs`, `plot_stability_map`, `plot_admm_stability`,
  `plot_round_robin_boundary` (lecture 8, `coursekit.distributed`'s results).

Example::

    import torch
    from coursekit import plotting
    from coursekit.landscapes import rosenbrock, trajectory

    plotting.use_style()
    surface = rosenbrock()
    runs = {
        "SGD": trajectory(surface, lambda p: torch.optim.SGD(p, lr=1e-3), steps=500),
        "Adam": trajectory(surface, lambda p: torch.optim.Adam(p, lr=0.05), steps=500),
    }
    plotting.plot_trajectories(surface, runs)
    plotting.plot_curves({k: surface.value(v) for k, v in runs.items()},
                         "step", "loss", "Rosenbrock", log_y=True)
"""

from .animation import animate_trajectories, animation_html
from .curves import plot_curves
from .distributed import (
    plot_admm_stability,
    plot_round_robin_boundary,
    plot_runs,
    plot_stability_map,
)
from .slices import plot_slice_1d, plot_slice_2d
from .style import use_style
from .surfaces import plot_surface_contours, plot_trajectories

__all__ = [
    "animate_trajectories",
    "animation_html",
    "plot_admm_stability",
    "plot_curves",
    "plot_round_robin_boundary",
    "plot_runs",
    "plot_slice_1d",
    "plot_slice_2d",
    "plot_stability_map",
    "plot_surface_contours",
    "plot_trajectories",
    "use_style",
]
