"""Optimizer paths that grow over a surface's contours, played offline in a notebook or slide."""

from __future__ import annotations

import re
from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.animation import FuncAnimation

from ..landscapes.surfaces import Surface
from ._base import _ArrayLike, _mark_start
from .surfaces import _as_paths, _draw_contours

__all__ = ["animate_trajectories", "animation_html"]

_MAX_FRAMES = 60  # enough for smooth motion; each frame is an embedded PNG in the notebook
_ANIMATION_DPI = 72  # animation frames are small images; full resolution bloats notebooks


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
    Render it with `animation_html`, whose time and page size grow with every frame.

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
        _mark_start(ax, path, line.get_color())
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
# notebooks must play offline, and a text glyph is no substitute: the usual ones for these
# buttons (U+23E9-U+23F8) are missing from common fonts such as DejaVu, which draw them as empty
# boxes. So the stylesheet is dropped and each icon becomes an inline SVG (16 x 16 paths).
_FONT_AWESOME_LINK = re.compile(r"<link[^>]*font-awesome[^>]*>", re.IGNORECASE)
_ICON = re.compile(r'<i class="fa ([^"]*)"></i>')
_ICON_PATHS = {
    "fa-minus": "M2 7h12v2H2z",
    "fa-plus": "M7 2h2v5h5v2H9v5H7V9H2V7h5z",
    "fa-fast-backward": "M1 2h2v12H1zM9 2v12L3 8zM15 2v12L9 8z",
    "fa-step-backward": "M2 2h3v12H2zM14 2v12L5 8z",
    "fa-play fa-flip-horizontal": "M12 2v12L3 8z",
    "fa-pause": "M3 2h4v12H3zM9 2h4v12H9z",
    "fa-play": "M4 2v12l9-6z",
    "fa-step-forward": "M2 2v12l9-6zM11 2h3v12h-3z",
    "fa-fast-forward": "M1 2v12l6-6zM7 2v12l6-6zM13 2h2v12h-2z",
}


def _svg_icon(match: re.Match) -> str:
    path = _ICON_PATHS.get(match.group(1))
    if path is None:  # an icon a later matplotlib adds: better no icon than one from the network
        return ""
    return (
        '<svg class="anim-icon" viewBox="0 0 16 16" width="1em" height="1em" fill="currentColor"'
        f' aria-hidden="true"><path d="{path}"/></svg>'
    )


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
    return _ICON.sub(_svg_icon, html)
