"""Tests for coursekit.plotting's general figures (style, surfaces, animation, curves): labelled
figures, one grid evaluation, offline animations. Lecture 8's are in test_plotting_distributed.py."""

from __future__ import annotations

import dataclasses
import gc
import re

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from matplotlib.animation import FuncAnimation
from matplotlib.axes import Axes

from coursekit import plotting
from coursekit.landscapes import Surface, all_surfaces, rosenbrock, trajectory


def _runs(surface: Surface, steps: int = 30) -> dict[str, torch.Tensor]:
    return {
        "SGD": trajectory(surface, lambda p: torch.optim.SGD(p, lr=1e-3), steps),
        "Adam": trajectory(surface, lambda p: torch.optim.Adam(p, lr=0.05), steps),
    }


def _assert_labelled(ax: Axes) -> None:
    assert isinstance(ax, Axes)
    assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()


def _legend_names(ax: Axes) -> list[str]:
    legend = ax.get_legend()
    assert legend is not None
    return [text.get_text() for text in legend.get_texts()]


def test_use_style_is_idempotent() -> None:
    """Does a second call to use_style leave the settings exactly as the first left them?"""
    with matplotlib.rc_context():
        plotting.use_style()
        first = dict(plt.rcParams)
        plotting.use_style()
        assert dict(plt.rcParams) == first
        assert plt.rcParams["figure.constrained_layout.use"] is True
        assert plt.rcParams["axes.grid"] is True


@pytest.mark.parametrize("key", list(all_surfaces()))
def test_contours_are_labelled_and_evaluated_in_one_call(key: str) -> None:
    """Is the grid evaluated in a single call, and the figure titled and labelled?"""
    surface = all_surfaces()[key]
    calls = []

    def counting_value(xy: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(xy.shape))
        return surface.value(xy)

    counted = dataclasses.replace(surface, value=counting_value)
    ax = plotting.plot_surface_contours(counted, resolution=50)
    assert calls == [(50, 50, 2)]
    _assert_labelled(ax)
    assert ax.get_title() == surface.name
    assert ax.get_xlim() == surface.bounds[0] and ax.get_ylim() == surface.bounds[1]


def test_contours_draw_into_the_given_axes_with_linear_levels() -> None:
    """Is a given Axes used and returned, also without the log scale?"""
    _, given = plt.subplots()
    ax = plotting.plot_surface_contours(rosenbrock(), ax=given, log_scale=False, levels=10)
    assert ax is given
    _assert_labelled(ax)


def test_trajectories_have_one_legend_entry_each() -> None:
    """Does each trajectory get one legend entry, named as given, and the figure a title?"""
    surface = rosenbrock()
    runs = _runs(surface)
    runs["numpy"] = runs["SGD"].numpy()  # arrays are accepted as well as tensors
    ax = plotting.plot_trajectories(surface, runs, title="three runs")
    _assert_labelled(ax)
    assert ax.get_title() == "three runs"
    assert _legend_names(ax) == ["SGD", "Adam", "numpy"]
    # Each path is drawn through all of its points.
    sgd_line = next(line for line in ax.get_lines() if line.get_label() == "SGD")
    np.testing.assert_allclose(sgd_line.get_xydata(), runs["SGD"].numpy())


def test_diverged_trajectory_keeps_the_view_on_the_surface() -> None:
    """Does a run that overflowed to inf leave the axes limits at the surface bounds?"""
    surface = all_surfaces()["quadratic"]
    diverged = trajectory(surface, lambda p: torch.optim.SGD(p, lr=1.0), 400)
    assert not torch.isfinite(diverged).all()
    ax = plotting.plot_trajectories(surface, {"lr = 1": diverged})
    assert ax.get_xlim() == surface.bounds[0] and ax.get_ylim() == surface.bounds[1]
    assert _legend_names(ax) == ["lr = 1"]


@pytest.mark.parametrize(
    ("trajectories", "match"),
    [
        ({}, "at least one"),
        ({"bad": torch.zeros(5, 3)}, "'bad'"),
        ({"bad": torch.zeros(0, 2)}, "'bad'"),
    ],
)
def test_bad_trajectories_are_rejected(trajectories, match: str) -> None:
    """Are empty mappings and paths that are not (T, 2) rejected with a clear message?"""
    with pytest.raises(ValueError, match=match):
        plotting.plot_trajectories(rosenbrock(), trajectories)


@pytest.mark.filterwarnings("ignore:Animation was deleted without rendering")
def test_animation_frames_are_bounded_and_end_on_the_full_path() -> None:
    """Is a long run subsampled to at most 60 frames, the last showing the whole path?"""
    surface = rosenbrock()
    runs = _runs(surface, steps=500)
    anim = plotting.animate_trajectories(surface, runs)
    assert isinstance(anim, FuncAnimation)
    frames = list(anim.new_saved_frame_seq())
    assert 2 <= len(frames) <= 60
    assert frames[0] == 0 and frames[-1] == 500
    assert frames == sorted(set(frames))

    short = plotting.animate_trajectories(surface, _runs(surface, steps=9), frames=100)
    assert len(list(short.new_saved_frame_seq())) == 10  # never more frames than points
    # Never rendered on purpose: collect them here, where their warning is expected.
    del anim, short
    gc.collect()


def test_animation_html_is_self_contained() -> None:
    """Is the HTML a script player with embedded frames and no address on the network?"""
    surface = rosenbrock()
    anim = plotting.animate_trajectories(surface, _runs(surface, steps=40), frames=4, title="race")
    ax = anim._fig.axes[0]
    assert _legend_names(ax) == ["SGD", "Adam"]
    html = plotting.animation_html(anim)
    assert "<script" in html
    assert html.count("data:image/png;base64,") == 4
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*https?://""", html, re.IGNORECASE)
    assert "http://" not in html and "https://" not in html
    assert 'class="fa' not in html  # no icon that needs the remote font
    # ... and none that needs a local one: each button draws an SVG (tests/browser renders them)
    assert html.count("<button") == html.count('<svg class="anim-icon"') == 9
    assert "race" in ax.get_title()


def test_animation_html_close_is_explicit() -> None:
    """Does the figure stay open unless closing is asked for?"""
    surface = rosenbrock()
    anim = plotting.animate_trajectories(surface, _runs(surface, steps=2))
    plotting.animation_html(anim)
    assert plt.fignum_exists(anim._fig.number)
    plotting.animation_html(anim, close=True)
    assert not plt.fignum_exists(anim._fig.number)


def test_curves_are_labelled_with_a_legend_and_log_axis() -> None:
    """Are curves from lists and tensors drawn with legend, labels, title and a log y-axis?"""
    surface = rosenbrock()
    runs = _runs(surface)
    curves = {name: surface.value(path) for name, path in runs.items()}
    curves["list"] = [4.0, 2.0, 1.0]
    ax = plotting.plot_curves(curves, "step", "loss", "Rosenbrock", log_y=True)
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("step", "loss", "Rosenbrock")
    assert ax.get_yscale() == "log"
    assert _legend_names(ax) == ["SGD", "Adam", "list"]
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), curves["SGD"].numpy())
    np.testing.assert_array_equal(ax.get_lines()[2].get_xdata(), [0, 1, 2])


def test_curves_reject_an_empty_mapping() -> None:
    """Is an empty mapping of curves an error rather than an empty figure?"""
    with pytest.raises(ValueError, match="curves"):
        plotting.plot_curves({}, "step", "loss", "nothing")
