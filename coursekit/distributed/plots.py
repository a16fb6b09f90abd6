"""Compare real distributed runs: test error against wall-clock time or bytes communicated.

    histories = launch(worker, 4, Config(algorithm="easgd"))   # one history per rank
    curves = {"EASGD": run_curve(histories, "easgd")}
    plot_runs(curves, x="bytes")

`run_curve` turns the per-rank histories of `coursekit.distributed.train.worker` into one
curve: the consensus test error (the synchronous runs' averaged model or center, the server's
center for the asynchronous ones), seconds since the start, and the payload bytes **one worker
has sent** so far. For a synchronous run that is any rank's count (all ranks send the same);
for an asynchronous run it is what the server has received divided by the number of workers,
the workers' average (the server hears from them in arrival order).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
from matplotlib.axes import Axes

from .asynchronous import ALGORITHMS as ASYNCHRONOUS

__all__ = ["plot_runs", "run_curve"]

_X = {
    "time": ("time", "wall-clock seconds since the start"),
    "bytes": ("bytes_per_worker", "payload bytes sent per worker"),
}


def run_curve(histories: Sequence[Mapping[str, list]], algorithm: str) -> dict[str, list]:
    """One curve from `launch`'s list of per-rank histories of `algorithm`.

    Returns lists ``time``, ``bytes_per_worker`` and ``test_error`` of equal length, one entry
    per record of rank 0 (a worker of a synchronous run, the server of an asynchronous one).
    """
    if not histories:
        raise ValueError("Invalid histories: empty (need one history per rank)")
    first = histories[0]
    if algorithm in ASYNCHRONOUS:
        workers = len(histories) - 1
        if workers < 1:
            raise ValueError(f"Invalid histories for {algorithm!r}: a server and no worker")
        sent = [b / workers for b in first["bytes_received"]]
    else:
        sent = [float(b) for b in first["bytes_sent"]]
    return {"time": list(first["time"]), "bytes_per_worker": sent,
            "test_error": list(first["test_error"])}


def plot_runs(curves: Mapping[str, Mapping[str, list]], x: str = "time",
              ax: Axes | None = None, title: str | None = None) -> Axes:
    """Test error (y, in percent) of each named curve against ``x = "time"`` or ``"bytes"``.

    `curves` maps a legend label to a `run_curve` result. Draws into `ax` (a new figure if
    None) and returns it; bytes are shown in megabytes (10^6 bytes).
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
