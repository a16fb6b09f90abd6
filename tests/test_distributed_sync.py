"""Synchronous distributed SGD against a single-process float64 computation of the same updates.

Each launch runs every algorithm of the table on real processes (gloo); the references loop
over the p workers by hand with the closed-form gradient of the mean squared error.
"""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from coursekit.distributed import runtime, sync
from coursekit.distributed.runtime import launch
from coursekit.ensembles import minibatches

N, D, BATCH, STEPS, SEED, LR = 48, 5, 8, 9, 3, 0.05  # 6 batches per epoch: 9 steps cross one

#: name -> (algorithm, momentum, tau, beta); alpha = beta / p.
CASES = {
    "allreduce": ("allreduce", 0.0, 1, 0.0),
    "ddp": ("ddp", 0.0, 1, 0.0),
    "allreduce_momentum": ("allreduce", 0.9, 1, 0.0),
    "local_sgd": ("local_sgd", 0.5, 3, 0.0),
    "local_sgd_tau1": ("local_sgd", 0.0, 1, 0.0),  # averaging models each step: all-reduce
    "easgd": ("easgd", 0.5, 2, 0.6),
    "easgd_tau1": ("easgd", 0.0, 1, 0.9),
    "easgd_independent": ("easgd", 0.0, 1, 0.0),  # alpha = 0: p independent SGD runs
}


def _problem() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, D, generator=g, dtype=torch.float64)
    y = x @ torch.randn(D, generator=g, dtype=torch.float64) + 0.1 * torch.randn(
        N, generator=g, dtype=torch.float64
    )
    w0 = torch.randn(D, generator=g, dtype=torch.float64)
    return x, y, w0


def _mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(out.squeeze(-1), y)


def _build(kind: str, model: nn.Module, *, tau: int, alpha: float) -> sync.Algorithm:
    if kind == "allreduce":
        return sync.AllReduceSGD(model)
    if kind == "ddp":
        return sync.DDP(model)
    if kind == "local_sgd":
        return sync.LocalSGD(model, tau=tau)
    return sync.EASGD(model, alpha=alpha, tau=tau)


def _all_cases() -> dict:
    """On every rank: run each case from the same x0 with this rank's minibatches."""
    rank, p = torch.distributed.get_rank(), torch.distributed.get_world_size()
    x, y, w0 = _problem()
    results = {}
    for name, (kind, momentum, tau, beta) in CASES.items():
        model = nn.Linear(D, 1, bias=False, dtype=torch.float64)
        with torch.no_grad():
            model.weight.copy_(w0)
        algorithm = _build(kind, model, tau=tau, alpha=beta / p)
        optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=momentum)
        batches = ((x[i], y[i]) for i in minibatches(N, BATCH, STEPS, seed=SEED + rank))
        runtime.stats.reset()
        history = sync.run(algorithm, optimizer, _mse, batches, steps=STEPS)
        results[name] = {
            "w": model.weight.detach().reshape(-1).clone(),
            "center": algorithm.consensus().clone(),
            "history": history,
            "stats": runtime.stats.state_dict(),
        }
    return results


def _reference(name: str, p: int) -> tuple[list[torch.Tensor], torch.Tensor, list[list[float]]]:
    """The same updates in one process: workers' parameters, center, per-step losses."""
    kind, momentum, tau, beta = CASES[name]
    alpha = beta / p
    x, y, w0 = _problem()
    batches = [list(minibatches(N, BATCH, STEPS, seed=SEED + i)) for i in range(p)]
    ws, vs, center = [w0.clone() for _ in range(p)], [torch.zeros(D, dtype=torch.float64)] * p, w0
    losses: list[list[float]] = [[] for _ in range(p)]
    for t in range(STEPS):
        gs = []
        for i in range(p):
            xb, yb = x[batches[i][t]], y[batches[i][t]]
            residual = xb @ ws[i] - yb
            losses[i].append(residual.pow(2).mean().item())
            gs.append(2 * xb.T @ residual / len(yb))  # gradient of the mean squared error
        if kind in ("allreduce", "ddp"):
            gs = [sum(gs) / p] * p
        mean = sum(ws) / p
        elastic = kind == "easgd" and t % tau == 0
        for i in range(p):
            vs[i] = momentum * vs[i] + gs[i]
            ws[i] = ws[i] - LR * vs[i] - (alpha * (ws[i] - center) if elastic else 0.0)
        if elastic:  # the seed's form: x~ <- (1 - beta) x~ + beta mean_i x_i (old values)
            center = (1 - beta) * center + beta * mean
        if kind == "local_sgd" and (t + 1) % tau == 0:
            ws = [sum(ws) / p] * p
    return ws, center, losses


@pytest.fixture(scope="module", params=[1, 2, 4], ids=lambda p: f"p={p}")
def runs(request):
    return request.param, launch(_all_cases, request.param)


@pytest.mark.parametrize("name", CASES)
def test_each_rank_matches_the_hand_computed_updates(runs, name):
    """Does every rank end where the single-process loop over workers ends, loss by loss?"""
    p, results = runs
    ws, center, losses = _reference(name, p)
    for rank in range(p):
        got = results[rank][name]
        torch.testing.assert_close(got["w"], ws[rank], rtol=0, atol=1e-12)
        torch.testing.assert_close(
            torch.tensor(got["history"]["train_loss"], dtype=torch.float64),
            torch.tensor(losses[rank], dtype=torch.float64),
            rtol=1e-12,
            atol=0,
        )
        if CASES[name][0] == "easgd":
            torch.testing.assert_close(got["center"], center, rtol=0, atol=1e-12)


def test_easgd_without_elastic_force_is_independent_sgd(runs):
    """With tau = 1 and alpha = 0, is each worker plain SGD alone, and the center still x0?"""
    p, results = runs
    x, y, w0 = _problem()
    for rank in range(p):
        w = w0.clone()
        for idx in minibatches(N, BATCH, STEPS, seed=SEED + rank):
            w = w - LR * 2 * x[idx].T @ (x[idx] @ w - y[idx]) / len(idx)
        torch.testing.assert_close(results[rank]["easgd_independent"]["w"], w, rtol=0, atol=1e-12)
        assert torch.equal(results[rank]["easgd_independent"]["center"], w0)


def test_allreduce_and_ddp_are_big_batch_sgd(runs):
    """Are all-reduce SGD, DDP and local SGD with tau = 1 single-process SGD on the p
    minibatches concatenated?"""
    p, results = runs
    x, y, w0 = _problem()
    model = nn.Linear(D, 1, bias=False, dtype=torch.float64)
    with torch.no_grad():
        model.weight.copy_(w0)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    orders = [minibatches(N, BATCH, STEPS, seed=SEED + i) for i in range(p)]
    for idx in zip(*orders):
        idx = torch.cat(idx)  # (p * BATCH,)
        optimizer.zero_grad()
        _mse(model(x[idx]), y[idx]).backward()
        optimizer.step()
    big_batch = model.weight.detach().reshape(-1)
    for rank in range(p):
        for name in ("allreduce", "ddp", "local_sgd_tau1"):
            torch.testing.assert_close(results[rank][name]["w"], big_batch, rtol=0, atol=1e-10)


@pytest.mark.parametrize(
    "name, rounds",
    [
        ("allreduce", STEPS),
        ("ddp", STEPS),
        ("local_sgd", STEPS // 3),
        ("easgd", math.ceil(STEPS / 2)),
    ],
)
def test_bytes_are_one_parameter_vector_per_round(runs, name, rounds):
    """Does each rank send and receive n_params float64 numbers per communication round?"""
    p, results = runs
    for rank in range(p):
        got = results[rank][name]
        assert got["stats"] == {
            "bytes_sent": rounds * D * 8,
            "bytes_received": rounds * D * 8,
            "calls": rounds,
        }
        assert got["history"]["bytes_sent"][-1] == rounds * D * 8


def test_invalid_hyper_parameters_are_named():
    model = nn.Linear(2, 1)
    with pytest.raises(ValueError, match="Invalid tau: 0"):
        sync.LocalSGD(model, tau=0)
    with pytest.raises(ValueError, match="Invalid alpha: -0.1"):
        sync.EASGD(model, alpha=-0.1)
