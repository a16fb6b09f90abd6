"""Asynchronous EASGD, EAMSGD and Downpour on real processes (gloo, a server and 1-3 workers).

Each `launch` runs the three algorithms one after the other in the same process group, so
that a world of processes is started once per question. With one worker the order of messages is
fixed, and the parameters must equal a single-process float64 computation of the seed's
equations; with three the order is up to the scheduler, and the tests check what holds for
every order.
"""

from __future__ import annotations

import os
import socket
import tempfile
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from coursekit.distributed.asynchronous import ALGORITHMS, run_async
from coursekit.distributed.runtime import launch
from coursekit.ensembles import minibatches

N, D, BATCH, SEED = 64, 5, 8, 10
HEADER_BYTES = 3 * 8  # [rank, kind, t] in int64
SETTINGS = {  # lr, alpha, momentum
    "async_easgd": dict(lr=0.05, alpha=0.3),
    "eamsgd": dict(lr=0.02, alpha=0.3, momentum=0.7),
    "downpour": dict(lr=0.05),
}


# --- a launcher that lets a rank die -----------------------------------------------------------
# runtime.launch stops every rank at the first death; a test that kills a rank on purpose, to
# see what its peers do, starts the processes itself (spawn, gloo, results through files).


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, world_size: int, port: int, out_dir: str, fn, args) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size, timeout=timedelta(seconds=30))
    try:
        outcome = {"result": fn(*args)}
    except Exception as error:  # reported to the test, which decides whether it was expected
        outcome = {"error": f"{type(error).__name__}: {error}"}
    torch.save(outcome, os.path.join(out_dir, f"{rank}.pt"))
    dist.destroy_process_group()


def _launch(fn, world_size: int, *args, join_timeout: float = 50.0) -> list[dict]:
    """Run fn(*args) on `world_size` ranks; per rank {"result"}, {"error"} or {"exitcode"}."""
    with tempfile.TemporaryDirectory() as out_dir:
        context = mp.start_processes(
            _entry,
            args=(world_size, _free_port(), out_dir, fn, args),
            nprocs=world_size,
            start_method="spawn",
            join=False,
        )
        hung = []
        for rank, process in enumerate(context.processes):
            process.join(join_timeout)  # the hang guard: a deadlock fails the test, not CI
            if process.is_alive():
                hung.append(rank)
                process.kill()
                process.join()
        assert not hung, f"ranks {hung} hung"
        outcomes = []
        for rank, process in enumerate(context.processes):
            path = os.path.join(out_dir, f"{rank}.pt")
            if os.path.exists(path):
                outcomes.append(torch.load(path))
            else:
                outcomes.append({"exitcode": process.exitcode})
        return outcomes


# --- the least-squares problem and what each rank runs ----------------------------------------


def _problem():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, D, generator=g, dtype=torch.float64)
    y = x @ torch.randn(D, 1, generator=g, dtype=torch.float64) + 0.1 * torch.randn(
        N, 1, generator=g, dtype=torch.float64
    )
    w0 = torch.randn(1, D, generator=g, dtype=torch.float64)
    return x, y, w0


def _full_loss(model: nn.Module) -> float:
    x, y, _ = _problem()
    with torch.no_grad():
        return F.mse_loss(model(x), y).item()


def _batches(worker: int, steps: int, die_after: int | None = None):
    x, y, _ = _problem()
    for t, idx in enumerate(minibatches(N, BATCH, steps, seed=SEED + worker)):
        if t == die_after:
            os._exit(1)  # a worker crashes without a word to anyone
        yield x[idx], y[idx]


def _one_run(
    algorithm: str,
    steps: int,
    tau: int,
    timeout: float = 20.0,
    die_after: int | None = None,
    server_dies_after: int | None = None,
) -> dict:
    rank = dist.get_rank()
    _, _, w0 = _problem()
    model = nn.Linear(D, 1, bias=False).double()
    with torch.no_grad():
        model.weight.copy_(w0)
    evaluations = []

    def eval_fn(m: nn.Module) -> float:
        evaluations.append(None)
        if len(evaluations) == server_dies_after:
            os._exit(1)
        return _full_loss(m)

    batches = None if rank == 0 else _batches(rank - 1, steps, die_after if rank == 2 else None)
    history = run_async(
        algorithm,
        model,
        F.mse_loss,
        batches,
        steps=steps,
        tau=tau,
        eval_fn=eval_fn,
        eval_every=1,
        timeout=timeout,
        **SETTINGS[algorithm],
    )
    return {"history": history, "weight": model.weight.detach().clone()}


def _all_algorithms(steps: int, tau: int) -> dict[str, dict]:
    out = {}
    for algorithm in ALGORITHMS:
        out[algorithm] = _one_run(algorithm, steps, tau)
        dist.barrier()  # ranks leave a run at different times; the next must not mix with it
    return out


def _reference(algorithm: str, steps: int, tau: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One worker and the center, the seed's equations by hand; gradients in closed form."""
    x, y, w0 = _problem()
    lr, alpha, delta = (SETTINGS[algorithm].get(k, 0.0) for k in ("lr", "alpha", "momentum"))
    w, center, v = w0.clone().T, w0.clone().T, torch.zeros(D, 1, dtype=torch.float64)  # (D, 1)

    def grad(w, idx):  # d/dw mean((x w - y)^2)
        return 2.0 / len(idx) * x[idx].T @ (x[idx] @ w - y[idx])

    for t, idx in enumerate(minibatches(N, BATCH, steps, seed=SEED + 0)):
        if t % tau == 0:
            if algorithm == "downpour":
                center = center + v
                w, v = center.clone(), torch.zeros_like(v)
            else:
                w, center = w - alpha * (w - center), center + alpha * (w - center)
        if algorithm == "eamsgd":
            v = delta * v - lr * grad(w + delta * v, idx)
            w = w + v
        else:
            g = grad(w, idx)
            w = w - lr * g
            v = v - lr * g
    return w.T, center.T


# --- tests ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def one_worker():
    return launch(_all_algorithms, 2, 23, 3)


@pytest.fixture(scope="module")
def three_workers():
    return launch(_all_algorithms, 4, 40, 4)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_one_worker_equals_the_equations(one_worker, algorithm):
    """With one worker, are the worker and the center exactly the seed's Algorithm 1, 2 or 3?"""
    worker, center = _reference(algorithm, steps=23, tau=3)
    torch.testing.assert_close(one_worker[1][algorithm]["weight"], worker, rtol=0, atol=1e-12)
    torch.testing.assert_close(one_worker[0][algorithm]["weight"], center, rtol=0, atol=1e-12)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_three_workers_finish_count_bytes_and_learn(three_workers, algorithm):
    """With three workers in any order: all steps done, bytes as counted, the center learns."""
    steps, tau, p = 40, 4, 3
    exchanges = -(-steps // tau)  # t = 0, tau, 2 tau, ... < steps
    param_bytes = D * 8
    server = three_workers[0][algorithm]["history"]
    for rank in range(1, p + 1):
        h = three_workers[rank][algorithm]["history"]
        assert h["step"] == list(range(1, steps + 1))
        # each exchange: header + parameters up, parameters down; then a final "done" header
        assert h["bytes_sent"][-1] == exchanges * (HEADER_BYTES + param_bytes) + HEADER_BYTES
        assert h["bytes_received"][-1] == exchanges * param_bytes
    assert server["bytes_sent"][-1] == p * exchanges * param_bytes
    assert server["bytes_received"][-1] == p * (
        exchanges * (HEADER_BYTES + param_bytes) + HEADER_BYTES
    )
    assert server["step"][0] == 0 and server["step"][-1] == p * steps
    assert len(server["step"]) == 2 + p * exchanges  # the start, each exchange, the end
    _, _, w0 = _problem()
    assert not torch.allclose(three_workers[0][algorithm]["weight"], w0)
    assert server["test_error"][-1] < 0.1 * server["test_error"][0]


def test_server_names_a_dead_worker():
    """A worker that crashes mid-run makes the server raise, naming it, instead of hanging."""
    ranks = _launch(_one_run, 3, "async_easgd", 30, 2, 3.0, 7, None)
    assert ranks[2] == {"exitcode": 1}
    assert "result" in ranks[1]  # the other worker is not held up
    error = ranks[0]["error"]
    assert "RuntimeError" in error and "[2]" in error and "timeout=3" in error


def test_worker_notices_a_dead_server():
    """A server that crashes mid-run makes its worker raise instead of hanging."""
    ranks = _launch(_one_run, 2, "downpour", 30, 2, 3.0, None, 4)
    assert ranks[0] == {"exitcode": 1}
    error = ranks[1]["error"]
    assert "RuntimeError" in error and "rank 0" in error and "within 3 s" in error


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(algorithm="sgd"), "Invalid algorithm"),
        (dict(tau=0), "Invalid tau: 0"),
        (dict(steps=0), "Invalid steps: 0"),
        (dict(lr=0.0), "Invalid lr: 0.0"),
        (dict(alpha=None), "Invalid alpha: None"),
        (dict(alpha=1.5), "Invalid alpha: 1.5"),
        (dict(momentum=0.5), "Invalid momentum: 0.5"),
        (dict(algorithm="downpour"), "Invalid alpha: 0.5"),
        (dict(algorithm="eamsgd", momentum=1.0), "Invalid momentum: 1.0"),
        (dict(eval_every=0), "Invalid eval_every: 0"),
        (dict(timeout=0.0), "Invalid timeout: 0.0"),
    ],
)
def test_bad_hyper_parameters_are_named(change, message):
    """Wrong arguments raise ValueError naming the parameter, before any communication."""
    kwargs = (
        dict(
            algorithm="async_easgd",
            steps=5,
            lr=0.1,
            tau=1,
            alpha=0.5,
            momentum=0.0,
            eval_every=1,
            timeout=1.0,
        )
        | change
    )
    algorithm = kwargs.pop("algorithm")
    with pytest.raises(ValueError, match=message):
        run_async(algorithm, nn.Linear(2, 1), F.mse_loss, [], **kwargs)
