"""Do lecture 8's figures draw what `coursekit.distributed` computed, one labelled panel per case?"""

from __future__ import annotations

import pytest
import torch

from coursekit import plotting
from coursekit.distributed.stability import (
    admm_spectral_radius,
    round_robin_boundary,
    stability_map,
)

f64 = torch.float64


def _radii(axis, ps, taus):
    return {(p, tau): stability_map(axis, axis, tau=tau, p=p) for p in ps for tau in taus}


@pytest.mark.parametrize("x,label", [("time", "seconds"), ("bytes", "megabytes")])
def test_plot_runs_draws_one_labelled_line_per_run(x, label):
    curves = {
        "a": {"time": [0.0, 1.0], "bytes_per_worker": [0.0, 2e6], "test_error": [0.5, 0.1]},
        "b": {"time": [0.0, 2.0], "bytes_per_worker": [0.0, 1e6], "test_error": [0.4, 0.2]},
    }
    ax = plotting.plot_runs(curves, x=x)
    assert [line.get_label() for line in ax.get_lines()] == ["a", "b"]
    assert label in ax.get_xlabel() and "%" in ax.get_ylabel() and ax.get_title()
    assert ax.get_legend() is not None
    xs, ys = ax.get_lines()[0].get_data()
    assert list(ys) == [50.0, 10.0]  # percent
    assert list(xs) == ([0.0, 2.0] if x == "bytes" else [0.0, 1.0])  # megabytes


def test_plot_runs_rejects_an_unknown_axis():
    with pytest.raises(ValueError, match="Invalid x"):
        plotting.plot_runs(
            {"a": {"time": [0.0], "bytes_per_worker": [0.0], "test_error": [0.5]}}, x="steps"
        )


def test_plot_stability_map_draws_the_grid():
    axis = torch.linspace(0, 2, 21, dtype=f64)
    fig = plotting.plot_stability_map(axis, axis, _radii(axis, (1, 10, 100, 1000), (1, 10, 100)))
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == 12 and panels[0].get_title() == r"$\tau=1$, $p=1$"


def test_plot_stability_map_rows_tau_and_the_round_robin_figure_draw():
    axis = torch.linspace(0, 2, 11, dtype=f64)
    radii = _radii(axis, (1, 10, 100), (1, 10))
    fig = plotting.plot_stability_map(axis, axis, radii, rows="tau")
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == 6 and panels[1].get_title() == r"$\tau=1$, $p=10$"
    etas = torch.linspace(0.1, 1.9, 5, dtype=f64)
    boundaries = {p: round_robin_boundary(etas, p=p) for p in (1, 2)}
    fig = plotting.plot_round_robin_boundary(etas, boundaries)
    assert len(fig.axes[0].get_lines()) == 3  # two p and the zero line


def test_plot_stability_map_draws_the_radii_it_is_given():
    """Is each panel's image the given radius, clipped at 2, in the panel of its (p, tau)?"""
    axis = torch.linspace(0, 2, 11, dtype=f64)
    radii = _radii(axis, (1, 10), (1, 100))
    fig = plotting.plot_stability_map(axis, axis, radii)
    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
    for (p, tau), radius in radii.items():
        image = panels[rf"$\tau={tau}$, $p={p}$"].collections[0]
        shown = torch.as_tensor(image.get_array()).reshape(radius.shape)
        torch.testing.assert_close(shown, radius.clamp(max=2.0))


def test_plot_stability_map_arguments_are_checked():
    axis = torch.zeros(3, dtype=f64)
    with pytest.raises(ValueError, match="rows"):
        plotting.plot_stability_map(axis, axis, {}, rows="eta")
    with pytest.raises(ValueError, match="radii"):  # (10, 2) is missing: not a full grid
        radii = {(1, 1): axis, (1, 2): axis, (10, 1): axis}
        plotting.plot_stability_map(axis, axis, radii)
    with pytest.raises(ValueError, match="radii"):
        plotting.plot_stability_map(axis, axis, {})


def test_admm_figure_has_one_panel_per_p():
    etas = torch.linspace(1e-4, 1e-2, 30, dtype=f64)
    rhos = torch.linspace(0.1, 10, 40, dtype=f64)
    radii = {p: admm_spectral_radius(etas, rhos, p=p) for p in (3, 8)}
    fig = plotting.plot_admm_stability(etas, rhos, radii)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["round-robin ADMM, p = 3", "round-robin ADMM, p = 8"]
    with pytest.raises(ValueError, match="radii"):
        plotting.plot_admm_stability(etas, rhos, {})
