"""The training script runs under torchrun as the README documents it (one node, two processes).

torchrun is run as ``python -m torch.distributed.run`` so that the test uses this interpreter;
the rendezvous is c10d on a free local port, as in the README's multi-node command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from coursekit.distributed import runtime
from coursekit.distributed.runtime import launch
from coursekit.distributed.train import Config, worker

ROOT = Path(__file__).resolve().parents[1]


def _torchrun(tmp_path: Path, *script_args: str) -> list[dict]:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc-per-node",
        "2",
        "--rdzv-backend",
        "c10d",
        "--rdzv-endpoint",
        f"127.0.0.1:{runtime._free_port()}",
        "--local-addr",
        "127.0.0.1",
        "-m",
        "coursekit.distributed.train",
        *script_args,
        "--output",
        str(tmp_path),
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    # The timeout guards against a hang; it is not a measure of speed.
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads((tmp_path / f"history_rank{r}.json").read_text()) for r in range(2)]


def test_allreduce_under_torchrun_keeps_the_ranks_identical_and_learns(tmp_path):
    ranks = _torchrun(
        tmp_path,
        "--algorithm",
        "allreduce",
        "--steps",
        "60",
        "--eval-every",
        "20",
        "--sizes",
        "64",
        "10",
        "--lr",
        "0.1",
    )
    for history in ranks:
        assert history["config"]["algorithm"] == "allreduce"
        assert history["step"] == [0, 20, 40, 60]  # the start, then every 20 steps
    # One model: both ranks evaluate the same parameters, so the same test error.
    assert ranks[0]["test_error"] == ranks[1]["test_error"]
    assert ranks[0]["test_error"][-1] < 0.5  # ten classes: chance is 0.9
    params = 64 * 10 + 10
    assert ranks[0]["bytes_sent"][-1] == 60 * params * 4  # one float32 gradient per step


def test_an_asynchronous_algorithm_under_torchrun(tmp_path):
    server, worker_history = _torchrun(
        tmp_path, "--algorithm", "async_easgd", "--steps", "40", "--tau", "4", "--sizes", "64", "10"
    )
    assert worker_history["step"][-1] == 40
    assert server["step"][-1] == 40  # the server saw all of its one worker's steps
    assert 0.0 <= server["test_error"][-1] < server["test_error"][0]


@pytest.mark.parametrize("algorithm", ["eamsgd", "downpour"])
def test_asynchronous_algorithms_from_python(algorithm):
    """launch(worker, 3, Config(...)): a server and two workers, through the same script."""
    config = Config(
        algorithm=algorithm,
        sizes=(64, 10),
        steps=40,
        tau=4,
        lr=0.05,
        momentum=0.9 if algorithm == "eamsgd" else 0.0,
    )
    server, *workers = launch(worker, 3, config)
    assert [w["step"][-1] for w in workers] == [40, 40]
    assert server["step"][-1] == 80
    assert server["test_error"][-1] < server["test_error"][0]
    params = 64 * 10 + 10
    # Each worker: 10 exchanges of a 24-byte header and its parameters, then a done header.
    assert [w["bytes_sent"][-1] for w in workers] == [10 * (24 + 4 * params) + 24] * 2


def test_asynchronous_runs_do_not_checkpoint():
    with pytest.raises(ValueError, match="Invalid algorithm for checkpoint_dir"):
        worker(Config(algorithm="downpour", checkpoint_dir="/nonexistent"))
