"""Do `run_curve` and `plot_runs` turn per-rank histories into the curves lecture 8 plots?"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from coursekit.distributed.plots import plot_runs, run_curve  # noqa: E402

NAN = float("nan")


def _history(bytes_sent, bytes_received, errors, times):
    n = len(errors)
    return {"step": list(range(n)), "time": times, "train_loss": [NAN] * n,
            "test_error": errors, "bytes_sent": bytes_sent, "bytes_received": bytes_received}


def test_a_synchronous_curve_is_rank_zeros_record():
    ranks = [_history([10, 20], [10, 20], [0.5, 0.2], [0.1, 0.2]),
             _history([10, 20], [10, 20], [0.5, 0.2], [0.1, 0.3])]
    curve = run_curve(ranks, "easgd")
    assert curve == {"time": [0.1, 0.2], "bytes_per_worker": [10.0, 20.0],
                     "test_error": [0.5, 0.2]}


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


@pytest.mark.parametrize("x,label", [("time", "seconds"), ("bytes", "megabytes")])
def test_plot_runs_draws_one_labelled_line_per_run(x, label):
    curves = {"a": {"time": [0.0, 1.0], "bytes_per_worker": [0.0, 2e6], "test_error": [0.5, 0.1]},
              "b": {"time": [0.0, 2.0], "bytes_per_worker": [0.0, 1e6], "test_error": [0.4, 0.2]}}
    ax = plot_runs(curves, x=x)
    try:
        assert [line.get_label() for line in ax.get_lines()] == ["a", "b"]
        assert label in ax.get_xlabel() and "%" in ax.get_ylabel() and ax.get_title()
        assert ax.get_legend() is not None
        xs, ys = ax.get_lines()[0].get_data()
        assert list(ys) == [50.0, 10.0]  # percent
        assert list(xs) == ([0.0, 2.0] if x == "bytes" else [0.0, 1.0])  # megabytes
    finally:
        plt.close(ax.figure)


def test_plot_runs_rejects_an_unknown_axis():
    with pytest.raises(ValueError, match="Invalid x"):
        plot_runs({"a": {"time": [0.0], "bytes_per_worker": [0.0], "test_error": [0.5]}}, x="steps")
