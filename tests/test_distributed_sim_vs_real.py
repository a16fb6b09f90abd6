"""Does the in-process simulator of p workers equal real processes on the same data and seeds?

Four gloo processes run synchronous EASGD and local SGD on a least-squares problem in float64
(`coursekit.distributed.sync`); `coursekit.distributed.simulate` runs the same p = 4 workers as
one [4, d] tensor. Each worker and the center must agree to 1e-12 after every communication
pattern the run contains (tau = 3 over 20 steps: rounds at 0, 3, ..., 18 and local steps
between). This is what lets the stability maps, computed by simulation only, speak for runs.
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from coursekit.distributed import runtime, sync
from coursekit.distributed.runtime import launch
from coursekit.distributed.simulate import simulate_easgd, simulate_local_sgd
from coursekit.ensembles import minibatches

P, N, D, BATCH, STEPS, TAU, LR, BETA, SEED = 4, 60, 5, 8, 20, 3, 0.05, 0.9, 7
F64 = torch.float64


def _problem() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(SEED)
    X = torch.randn(N, D, generator=g, dtype=F64)
    y = X @ torch.randn(D, generator=g, dtype=F64) + 0.1 * torch.randn(N, generator=g, dtype=F64)
    x0 = torch.randn(D, generator=g, dtype=F64)
    return X, y, x0


def _train(algorithm_name: str) -> dict[str, torch.Tensor]:
    rank, world_size, _ = runtime.init()
    X, y, x0 = _problem()
    model = nn.Linear(D, 1, bias=False).to(F64)
    with torch.no_grad():
        model.weight.copy_(x0)
    if algorithm_name == "easgd":
        algorithm = sync.EASGD(model, alpha=BETA / world_size, tau=TAU)
    else:
        algorithm = sync.LocalSGD(model, tau=TAU)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR)
    batches = ((X[i], y[i]) for i in minibatches(N, BATCH, STEPS, seed=SEED + rank))
    sync.run(
        algorithm,
        optimizer,
        lambda out, target: F.mse_loss(out.squeeze(-1), target),
        batches,
        steps=STEPS,
    )
    return {
        "worker": model.weight.detach().reshape(D).clone(),
        "center": algorithm.consensus().detach().reshape(D).clone(),
    }


def _both() -> dict[str, dict[str, torch.Tensor]]:
    easgd = _train("easgd")
    dist.barrier()  # the two runs share the process group: keep their messages apart
    return {"easgd": easgd, "local_sgd": _train("local_sgd")}


@pytest.fixture(scope="module")
def real():
    return launch(_both, P)


def test_four_processes_of_easgd_equal_the_simulator(real):
    X, y, x0 = _problem()
    sim = simulate_easgd(
        X,
        y,
        x0,
        workers=P,
        lr=LR,
        alpha=BETA / P,
        tau=TAU,
        steps=STEPS,
        batch_size=BATCH,
        seed=SEED,
    )
    workers = torch.stack([r["easgd"]["worker"] for r in real])
    torch.testing.assert_close(workers, sim.workers, rtol=0, atol=1e-12)
    for r in real:  # every rank holds the same copy of the center
        torch.testing.assert_close(r["easgd"]["center"], sim.center, rtol=0, atol=1e-12)
    # Not a vacuous match: the workers moved and still differ from each other and the center.
    assert (workers - x0).norm() > 0.1 and (workers - workers.mean(0)).norm() > 1e-3


def test_four_processes_of_local_sgd_equal_the_simulator(real):
    X, y, x0 = _problem()
    sim = simulate_local_sgd(
        X, y, x0, workers=P, lr=LR, tau=TAU, steps=STEPS, batch_size=BATCH, seed=SEED
    )
    workers = torch.stack([r["local_sgd"]["worker"] for r in real])
    torch.testing.assert_close(workers, sim.workers, rtol=0, atol=1e-12)
    torch.testing.assert_close(real[0]["local_sgd"]["center"], sim.center, rtol=0, atol=1e-12)
