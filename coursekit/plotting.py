"""Figures for the lectures: loss surfaces, optimizer paths on them, and loss curves.

One look for every figure of the course, readable on a projected slide. Call `use_style`
once at the top of a notebook; the functions below never change global settings themselves.
Every function draws into an ``Axes`` (a new figure when ``ax`` is None) and returns it, so a
notebook can adjust the result; nothing is shown or closed behind the caller's back.

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

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.animation import FuncAnimation
from matplotlib.axes import Axes
from torch import Tensor

from .landscapes.surfaces import Surface

__all__ = [
    "animate_trajectories",
    "animation_html",
    "plot_curves",
    "plot_slice_1d",
    "plot_slice_2d",
    "plot_surface_contours",
    "plot_trajectories",
    "use_style",
]

_ArrayLike = Tensor | np.ndarray | Sequence[float]

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

_CONTOUR_CMAP = "Blues_r"  # dark valleys, pale ridges: coloured paths stand out on both
_MAX_FRAMES = 60  # enough for smooth motion; each frame is an embedded PNG in the notebook
_ANIMATION_DPI = 72  # animation frames are small images; full resolution bloats notebooks


def use_style() -> None:
    """Set the course's matplotlib style: slide-sized fonts, a light grid, constrained layout.

    Only sets fixed values, so calling it again changes nothing.
    """
    plt.rcParams.update(_STYLE)


def _to_numpy(values: _ArrayLike) -> np.ndarray:
    if isinstance(values, Tensor):
        return values.detach().to(device="cpu", dtype=torch.float64).numpy()
    return np.asarray(values, dtype=np.float64)


def _as_path(name: str, points: _ArrayLike) -> np.ndarray:
    path = _to_numpy(points)
    if path.ndim != 2 or path.shape[1] != 2 or len(path) == 0:
        raise ValueError(f"trajectory {name!r} must have shape (T, 2) with T >= 1, got {path.shape}")
    return path


def _as_paths(trajectories: Mapping[str, _ArrayLike]) -> dict[str, np.ndarray]:
    if len(trajectories) == 0:
        raise ValueError("trajectories must contain at least one trajectory")
    return {name: _as_path(name, points) for name, points in trajectories.items()}


def _new_axes(ax: Axes | None) -> Axes:
    if ax is None:
        _, ax = plt.subplots()
    return ax


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
        ax.plot(mx, my, linestyle="none", marker="*", markersize=16, color="gold",
                markeredgecolor="k", zorder=5)

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
        (line,) = ax.plot(path[:, 0], path[:, 1], marker="o", markersize=3, linewidth=1.6,
                          label=name, zorder=6)
        # A hollow circle in the path's colour marks where it started.
        ax.plot(path[0, 0], path[0, 1], marker="o", markersize=11, markerfacecolor="none",
                markeredgewidth=2, color=line.get_color(), zorder=7)
    ax.set_title(surface.name if title is None else title)
    ax.legend(loc="best")
    return ax


def animate_trajectories(
    surface: Surface,
    trajectories: Mapping[str, _ArrayLike],
    frames: int | None = None,
    interval_ms: int = 50,
    title: str | None = None,
) -> FuncAnimation:
    """An animation of optimizer paths growing over the contours of ``surface``.

    All paths advance together, frame by frame. Long runs are subsampled to ``frames``
    evenly spaced steps (at most 60 by default, never more than the longest path has points),
    which keeps the embedded animation small; the last frame always shows the full paths.
    Render it with `animation_html`: about 0.1 s and 40 kB per frame.

    Args:
        surface: the surface the paths ran on.
        trajectories: name -> points of shape ``(T, 2)``.
        frames: number of frames; ``min(60, longest T)`` when None.
        interval_ms: delay between frames when playing.
        title: the title; the surface's name when None.
    """
    paths = _as_paths(trajectories)
    if frames is not None and frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    if interval_ms <= 0:
        raise ValueError(f"interval_ms must be > 0, got {interval_ms}")
    longest = max(len(path) for path in paths.values())
    n_frames = min(_MAX_FRAMES if frames is None else frames, longest)
    steps = np.unique(np.linspace(0, longest - 1, n_frames).round().astype(int))

    fig, ax = plt.subplots(figsize=(6.0, 5.0), dpi=_ANIMATION_DPI, layout="constrained")
    # Every frame is a full redraw and a PNG: filled contours alone keep both cheap.
    _draw_contours(surface, ax, levels=30, log_scale=True, resolution=200, lines=False)
    lines = []
    for name, path in paths.items():
        (line,) = ax.plot([], [], marker="o", markersize=3, linewidth=1.6, label=name, zorder=6)
        ax.plot(path[0, 0], path[0, 1], marker="o", markersize=11, markerfacecolor="none",
                markeredgewidth=2, color=line.get_color(), zorder=7)
        lines.append((line, path))
    heading = surface.name if title is None else title
    ax.legend(loc="best")
    # Lay the figure out once, with the longest title it will show, then drop the layout
    # engine: with one attached, every saved frame costs an extra full draw.
    ax.set_title(f"{heading} — step {steps[-1]}")
    fig.canvas.draw()
    with plt.rc_context({"figure.autolayout": False, "figure.constrained_layout.use": False}):
        fig.set_layout_engine(None)

    def draw(step: int) -> list:
        for line, path in lines:
            shown = path[: min(step, len(path) - 1) + 1]  # shorter paths stop at their end
            line.set_data(shown[:, 0], shown[:, 1])
        ax.set_title(f"{heading} — step {step}")
        return [line for line, _ in lines]

    return FuncAnimation(fig, draw, frames=steps.tolist(), interval=interval_ms, blit=False)


# Matplotlib's player draws its buttons with Font Awesome icons fetched from a CDN. Slides and
# notebooks must play offline, so the stylesheet is dropped and each icon replaced by a glyph.
_FONT_AWESOME_LINK = re.compile(r"<link[^>]*font-awesome[^>]*>", re.IGNORECASE)
_ICON = re.compile(r'<i class="fa ([^"]*)"></i>')
_GLYPHS = {
    "fa-minus": "−",
    "fa-plus": "+",
    "fa-fast-backward": "⏮",
    "fa-step-backward": "⏪",
    "fa-play fa-flip-horizontal": "◀",
    "fa-pause": "⏸",
    "fa-play": "▶",
    "fa-step-forward": "⏩",
    "fa-fast-forward": "⏭",
}


def animation_html(anim: FuncAnimation, close: bool = False) -> str:
    """Self-contained HTML and JavaScript that plays ``anim``, for a notebook or reveal.js.

    The frames are embedded as base64 PNG images (``anim.to_jshtml()``), so nothing is
    fetched when the slide is shown and no video encoder is needed to build it.

    Args:
        anim: the animation, e.g. from `animate_trajectories`.
        close: close the animation's figure after rendering, so a notebook does not also
            show it as a static image. Off unless asked for.
    """
    html = anim.to_jshtml()
    if close:
        plt.close(anim._fig)  # FuncAnimation keeps its figure only in this attribute
    html = _FONT_AWESOME_LINK.sub("", html)
    return _ICON.sub(lambda m: _GLYPHS.get(m.group(1), ""), html)


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
