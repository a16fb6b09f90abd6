"""Real distributed runs as curves: test error against wall-clock time or bytes communicated.

    histories = launch(worker, 4, Config(algorithm="easgd"))   # one history per rank
    curves = {"EASGD": run_curve(histories, "easgd")}
    coursekit.plotting.plot_runs(curves, x="bytes")

`run_curve` turns the per-rank histories of `coursekit.distributed.train.worker` into one
curve: the consensus test error (the synchronous runs' averaged model or center, the server's
center for the asynchronous ones), seconds since the start, and the payload bytes **one worker
has sent** so far. For a synchronous run that is any rank's count (all ranks send the same);
for an asynchronous run it is what the server has received divided by the number of workers,
the workers' average (the server hears from them in arrival order).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .asynchronous import ALGORITHMS as ASYNCHRONOUS

__all__ = ["run_curve"]


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
    return {
        "time": list(first["time"]),
        "bytes_per_worker": sent,
        "test_error": list(first["test_error"]),
    }
