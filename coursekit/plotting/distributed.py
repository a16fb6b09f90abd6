r"""Lecture 8's figures: real runs' test error against time or bytes, and the stability of
EASGD and round-robin ADMM on the quadratic :math:`f(x) = x^2/2`.

Each draws what `coursekit.distributed` computed::

    from coursekit.distributed import admm_spectral_radius, run_curve, stability_map
    from coursekit.distributed.stability import round_robin_boundary

    plot_runs({"EASGD": run_curve(histories, "easgd")}, x="bytes")
    radii = {(p, tau): stability_map(etas, betas, tau=tau, p=p) for p in ps for tau in taus}
    fig = plot_stability_map(etas, betas, radii)                # the seed's grid
    fig = plot_admm_stability(etas, rhos, {p: admm_spectral_radius(etas, rhos, p=p)
                                           for p in (3, 8)})    # the seed's figure 1
    fig = plot_round_robin_boundary(etas, {p: round_robin_boundary(etas, p=p) for p in (1, 2)})
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
from matplotlib.axes import Axes
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure
from torch import Tensor

__all__ = [
    "plot_admm_stability",
    "plot_round_robin_boundary",
    "plot_runs",
    "plot_stability_map",
]

_X = {
    "time": ("time", "wall-clock seconds since the start"),
    "bytes": ("bytes_per_worker", "payload bytes sent per worker"),
}


def plot_runs(
    curves: Mapping[str, Mapping[str, list]],
    x: str = "time",
    ax: Axes | None = None,
    title: str | None = None,
) -> Axes:
    """Test error (y, in percent) of each named curve against ``x = "time"`` or ``"bytes"``.

    `curves` maps a legend label to a `coursekit.distributed.run_curve` result. Draws into
    `ax` (a new figure if None) and returns it; bytes are shown in megabytes (10^6 bytes).
    """
    if x not in _X:
        raise ValueError(f"Invalid x: {x!r} (must be one of {sorted(_X)})")
    if not curves:
        raise ValueError("Invalid curves: empty")
    key, label = _X[x]
    scale = 1e-6 if x == "bytes" else 1.0
    if ax is None:
        _, ax = plt.subplots()
    for name, curve in curves.items():
        xs = [v * scale for v in curve[key]]
        ax.plot(xs, [100 * e for e in curve["test_error"]], marker="o", label=name)
    ax.set_xlabel(label.replace("bytes", "megabytes") if x == "bytes" else label)
    ax.set_ylabel("test error (%)")
    ax.set_title(title or f"Test error against {'bytes sent' if x == 'bytes' else 'time'}")
    ax.legend()
    return ax


def plot_stability_map(
    etas: Tensor, betas: Tensor, radii: Mapping[tuple[int, int], Tensor], *, rows: str = "p"
) -> Figure:
    r"""The seed's grid of EASGD stability maps: one panel per (p, tau), rows p, columns tau.

    ``radii[p, tau]`` is `coursekit.distributed.stability_map` ``(etas, betas, tau=tau, p=p)``
    (h = 1), shape ``(len(betas), len(etas))``; the keys must cover every pair of the ps and
    taus they name, which the panels take in the order they first appear.
    ``rows="tau"`` transposes the grid (rows tau, columns p), which fits a wide slide better.

    Each panel colours the spectral radius of one period over :math:`\eta \in [0, 2]` (x) and
    :math:`\beta = p\alpha \in [0, 2]` (y) on :math:`f = x^2/2`, blue where it converges (< 1)
    and red where it diverges, with the contour radius = 1 in black. What it shows:

    * on the edges nothing converges: at :math:`\beta = 0` the center never moves (radius
      exactly 1); at :math:`\eta = 0` nothing pulls the sum of all variables to 0 (radius at
      least 1), and the workers' distance to the center grows by
      :math:`|1 - \beta(1 + 1/p)|` per exchange, above 1 once :math:`\beta(1 + 1/p) > 2`;
    * p = 1, :math:`\tau = 1`: the map is symmetric, and stable iff
      :math:`0 < \eta < 2` and :math:`\alpha < (4 - 2\eta)/(4 - \eta)` (the black curve from
      (0, 1) to (2, 0)); the upper part of the square diverges;
    * more workers enlarge the stable region: with :math:`\alpha = \beta/p \to 0` the mean
      mode tends to :math:`\begin{pmatrix} a & 0 \\ \beta & 1 - \beta\end{pmatrix}`, stable on
      the whole open square :math:`0 < \eta, \beta < 2`; at p = 1000 only a thin band along
      :math:`\beta = 2` and :math:`\eta = 2` remains unstable;
    * a longer period :math:`\tau` enlarges it too, and shrinks the radius inside: between two
      communications the workers contract by :math:`(1 - \eta)^{\tau - 1}`, which damps the
      elastic exchange; only small :math:`\eta` (where that factor is near 1) keeps an
      unstable corner at large :math:`\beta` (visible at p = 1 and 10, :math:`\tau = 10`).
    """
    if rows not in ("p", "tau"):
        raise ValueError(f"Invalid rows: {rows!r} (must be 'p' or 'tau')")
    ps = list(dict.fromkeys(p for p, _ in radii))
    taus = list(dict.fromkeys(tau for _, tau in radii))
    missing = [(p, tau) for p in ps for tau in taus if (p, tau) not in radii]
    if not radii or missing:
        raise ValueError(f"Invalid radii: missing (p, tau) = {missing} (must be a full grid)")
    n_rows, n_cols = (len(ps), len(taus)) if rows == "p" else (len(taus), len(ps))
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(3.2 * n_cols, 2.6 * n_rows),
        sharex=True,
        sharey=True,
        squeeze=False,
        layout="constrained",
    )
    norm = TwoSlopeNorm(vmin=0.0, vcenter=1.0, vmax=2.0)
    x, y = etas.cpu().numpy(), betas.cpu().numpy()
    for i, p in enumerate(ps):
        for j, tau in enumerate(taus):
            row, col = (i, j) if rows == "p" else (j, i)
            ax = axes[row, col]
            radius = radii[p, tau].clamp(max=2.0).cpu().numpy()
            image = ax.pcolormesh(x, y, radius, cmap="RdBu_r", norm=norm, shading="auto")
            # Inside only: on the grid's edges (eta or beta = 0) the radius is exactly 1, and
            # rounding would scatter bits of the contour along them.
            inside = radius[1:-1, 1:-1]
            ax.contour(x[1:-1], y[1:-1], inside, levels=[1.0], colors="black", linewidths=1.0)
            ax.set_title(rf"$\tau={tau}$, $p={p}$")
            if row == n_rows - 1:
                ax.set_xlabel(r"step size $\eta$")
            if col == 0:
                ax.set_ylabel(r"$\beta = p\alpha$")
    fig.colorbar(image, ax=axes, label="spectral radius of one period (clipped at 2)", extend="max")
    fig.suptitle(r"Synchronous EASGD on $f(x) = x^2/2$: stable where the radius is below 1")
    return fig


def plot_admm_stability(etas: Tensor, rhos: Tensor, radii: Mapping[int, Tensor]) -> Figure:
    r"""The seed's figure 1: spectral radius of round-robin ADMM over :math:`(\rho, \eta)`.

    ``radii[p]`` is `coursekit.distributed.admm_spectral_radius` ``(etas, rhos, p=p)``, shape
    ``(len(etas), len(rhos))``; one panel per p, :math:`\rho` on x, :math:`\eta` on y (the seed
    shows :math:`\rho \in (0, 10]`, :math:`\eta \in (0, 10^{-2}]`), the radius = 1 contour in
    black: red regions diverge (e.g. :math:`\eta = 0.001, \rho = 2.5`, marked with a cross)
    although each worker's own update is stable there.
    """
    if not radii:
        raise ValueError("Invalid radii: empty")
    fig, axes = plt.subplots(
        1, len(radii), figsize=(4.5 * len(radii), 3.8), squeeze=False, layout="constrained"
    )
    x, y = rhos.cpu().numpy(), etas.cpu().numpy()
    for ax, (p, values) in zip(axes[0], radii.items(), strict=True):
        radius = values.cpu().numpy()
        low, high = radius.min().item(), radius.max().item()
        norm = TwoSlopeNorm(vmin=min(low, 1 - 1e-9), vcenter=1.0, vmax=max(high, 1 + 1e-9))
        image = ax.pcolormesh(x, y, radius, cmap="RdBu_r", norm=norm, shading="auto")
        if low < 1.0 < high:
            ax.contour(x, y, radius, levels=[1.0], colors="black", linewidths=1.0)
        ax.plot([2.5], [1e-3], marker="x", color="black")  # the seed's chaotic example
        ax.set_title(f"round-robin ADMM, p = {p}")
        ax.set_xlabel(r"$\rho$")
        ax.set_ylabel(r"step size $\eta$")
        fig.colorbar(image, ax=ax, label="largest |eigenvalue| of one round")
    return fig


def plot_round_robin_boundary(etas: Tensor, boundaries: Mapping[int, Tensor]) -> Figure:
    r"""Round-robin EASGD: how far above the curve :math:`(4 - 2\eta)/(4 - \eta)` a round contracts.

    ``boundaries[p]`` is `coursekit.distributed.stability.round_robin_boundary`
    ``(etas, p=p)``; the figure shows it minus the curve against :math:`\eta`: zero for odd p
    (markers), where the curve is exact; positive for even p (lines), where a fixed-order round
    still contracts although each turn alone does not.
    """
    curve = (4 - 2 * etas) / (4 - etas)
    x = etas.cpu().numpy()
    fig, ax = plt.subplots(figsize=(10, 5), layout="constrained")
    markers = iter("ox+^v<>")  # hollow circles first, so that the next markers show inside
    for p, boundary in boundaries.items():
        excess = (boundary - curve).cpu().numpy()
        if p % 2:
            ax.plot(
                x,
                excess,
                linestyle="none",
                marker=next(markers),
                markersize=7,
                markerfacecolor="none",
                label=f"p = {p}",
            )
        else:
            ax.plot(x, excess, label=f"p = {p}")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel(r"step size $\eta$")
    ax.set_ylabel(r"first unstable $\alpha$ minus $(4 - 2\eta)/(4 - \eta)$")
    ax.set_title("Round-robin EASGD on $f(x) = x^2/2$: where a fixed-order round stops contracting")
    ax.legend(title="workers")
    return fig
