"""Does `run_curve` turn per-rank histories into the curves lecture 8 plots?"""

from __future__ import annotations

import pytest

from coursekit.distributed import run_curve

NAN = float("nan")


def _history(bytes_sent, bytes_received, errors, times):
    n = len(errors)
    return {
        "step": list(range(n)),
        "time": times,
        "train_loss": [NAN] * n,
        "test_error": errors,
        "bytes_sent": bytes_sent,
        "bytes_received": bytes_received,
    }


def test_a_synchronous_curve_is_rank_zeros_record():
    ranks = [
        _history([10, 20], [10, 20], [0.5, 0.2], [0.1, 0.2]),
        _history([10, 20], [10, 20], [0.5, 0.2], [0.1, 0.3]),
    ]
    curve = run_curve(ranks, "easgd")
    assert curve == {"time": [0.1, 0.2], "bytes_per_worker": [10.0, 20.0], "test_error": [0.5, 0.2]}


def test_an_asynchronous_curve_averages_what_the_server_received_over_the_workers():
    server = _history([0, 300], [0, 600], [0.9, 0.1], [0.0, 1.0])
    workers = [_history([100], [100], [NAN], [1.0]) for _ in range(3)]
    curve = run_curve([server, *workers], "downpour")
    assert curve["bytes_per_worker"] == [0.0, 200.0]
    assert curve["test_error"] == [0.9, 0.1]


def test_a_server_without_workers_is_rejected():
    with pytest.raises(ValueError, match="no worker"):
        run_curve([_history([0], [0], [0.5], [0.0])], "eamsgd")
    with pytest.raises(ValueError, match="empty"):
        run_curve([], "allreduce")


def test_the_distributed_package_imports_no_matplotlib():
    """Is `coursekit.distributed` free of matplotlib, its figures being in coursekit.plotting?"""
    import subprocess
    import sys

    code = "import sys, coursekit.distributed; print('matplotlib' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
