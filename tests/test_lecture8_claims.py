"""The claims lecture 8 ("Distributed SGD") makes, each asserted with numbers.

Every experiment is rebuilt here as notebooks/08_distributed_sgd.ipynb builds it, at its
default parameters, with the same coursekit calls. The real runs are the notebook's five
configurations on the same number of processes, run one after the other inside one launch
(`train.run_sequence`), as the notebook runs them.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from coursekit.distributed import launch, simulate_admm_round_robin
from coursekit.distributed.plots import run_curve
from coursekit.distributed.simulate import local_sgd_step
from coursekit.distributed.stability import (
    admm_round_robin_map,
    admm_spectral_radius,
    easgd_period_map,
    spectral_radius,
    stability_map,
)
from coursekit.distributed.train import Config, run_sequence
from coursekit.models import MLP

F64 = torch.float64
# The notebook's parameters.
SEED, WORLD_SIZE, STEPS, BATCH_SIZE, LR, TAU, BETA, MOMENTUM, EVAL_EVERY = (
    0, 3, 300, 32, 0.05, 4, 0.9, 0.9, 25)
ALGORITHMS = ["allreduce", "local_sgd", "easgd", "eamsgd", "downpour"]
GRID_POINTS, ADMM_ROUNDS = 101, 20000
TAUS, PS = (1, 10, 100), (1, 10, 100, 1000)


# --- Why distribute: the size of one message ---------------------------------------------------


def test_one_message_of_the_mlp_is_19240_bytes():
    """Slide: MLP (64, 64, 10), P = 4,810 parameters, one float32 message = 19,240 bytes."""
    model = MLP(Config().sizes)
    n_params = sum(p.numel() for p in model.parameters())
    assert Config().sizes == (64, 64, 10)
    assert n_params == 64 * 64 + 64 + 64 * 10 + 10 == 4810  # weights and biases, by hand
    assert 4 * n_params == 19240


# --- All-reduce SGD is large-batch SGD; local SGD with tau = 1 is all-reduce SGD ----------------


def test_the_mean_of_p_minibatch_gradients_is_the_gradient_of_the_big_batch():
    """Slide: averaging p minibatch-mean gradients (equal sizes) is SGD with batch p b."""
    gen = torch.Generator().manual_seed(SEED)
    model = MLP([64, 16, 10], generator=gen).to(F64)
    p, b = 4, 8
    x = torch.randn(p * b, 64, generator=gen, dtype=F64)
    y = torch.randint(0, 10, (p * b,), generator=gen)

    def grad(xs, ys):
        model.zero_grad()
        F.cross_entropy(model(xs), ys).backward()
        return torch.cat([q.grad.reshape(-1) for q in model.parameters()])

    averaged = torch.stack([grad(x[i * b:(i + 1) * b], y[i * b:(i + 1) * b])
                            for i in range(p)]).mean(0)
    torch.testing.assert_close(averaged, grad(x, y), rtol=1e-12, atol=1e-14)


def test_local_sgd_with_tau_one_from_a_common_start_is_all_reduce_sgd():
    """Slide: averaging the models after one plain SGD step = one step of the mean gradient."""
    gen = torch.Generator().manual_seed(SEED)
    x = torch.randn(1, 50, dtype=F64, generator=gen).expand(5, 50)  # p = 5 copies of one x
    grads = torch.randn(5, 50, dtype=F64, generator=gen)
    local = local_sgd_step(x, grads, lr=LR, average=True)
    torch.testing.assert_close(local, (x[0] - LR * grads.mean(0)).expand(5, 50))


# --- The stability map of EASGD ---------------------------------------------------------------


@pytest.fixture(scope="module")
def grid():
    etas = torch.linspace(0, 2, GRID_POINTS, dtype=F64)
    return etas, etas.clone()


@pytest.fixture(scope="module")
def maps(grid):
    etas, betas = grid
    return {(t, n): stability_map(etas, betas, tau=t, p=n) for t in TAUS for n in PS}


def _stable_share(radius):
    return (radius[1:-1, 1:-1] < 1).double().mean().item()


def test_the_stable_shares_printed_on_the_slide(maps):
    """Slide/notes: at tau = 1 the stable share is 30.5, 76.6, 96.1, 99.8 % for p = 1..1000."""
    shares = [100 * _stable_share(maps[1, n]) for n in PS]
    assert shares == pytest.approx([30.5, 76.6, 96.1, 99.8], abs=0.05)


def test_more_workers_and_a_longer_period_enlarge_the_stable_region(maps):
    """Slide: the share grows with p at every tau and with tau at every p (or stays at 100 %)."""
    for t in TAUS:
        shares = [_stable_share(maps[t, n]) for n in PS]
        for a, b in zip(shares, shares[1:]):
            assert b > a or a == b == 1.0, (t, shares)
    for n in PS:
        shares = [_stable_share(maps[t, n]) for t in TAUS]
        for a, b in zip(shares, shares[1:]):
            assert b > a or a == b == 1.0, (n, shares)


def test_at_long_periods_only_a_corner_of_small_eta_and_large_beta_is_unstable(grid, maps):
    """Slide: at tau >= 10 unstable points have eta < 0.5 and beta > 1; none for p >= 100."""
    etas, betas = grid
    for t in (10, 100):
        for n in PS:
            unstable = (maps[t, n][1:-1, 1:-1] >= 1).nonzero()
            eta, beta = etas[1:-1][unstable[:, 1]], betas[1:-1][unstable[:, 0]]
            assert (eta < 0.5).all() and (beta > 1).all(), (t, n)
            if n >= 100:
                assert len(unstable) == 0, (t, n)
            if n == 1:
                assert len(unstable) > 0, (t, n)  # the corner is there to see


def test_nothing_converges_on_the_edges(maps):
    """Slide: at eta = 0 and at beta = 0 the radius is at least 1 (exactly 1 at beta = 0)."""
    for radius in maps.values():
        assert (radius[:, 0] >= 1 - 1e-12).all()  # eta = 0
        torch.testing.assert_close(radius[0, :], torch.ones_like(radius[0, :]))  # beta = 0


def test_one_worker_every_step_is_stable_exactly_below_the_closed_form_curve(grid, maps):
    """Slide: p = 1, tau = 1 is stable iff 0 < eta < 2 and alpha < (4 - 2 eta) / (4 - eta)."""
    etas, betas = grid
    eta, alpha = etas[None, :], betas[:, None]  # p = 1: alpha = beta
    bound = (4 - 2 * eta) / (4 - eta)
    clear = (alpha - bound).abs() > 1e-6  # leave out grid points on the curve itself
    inside = (eta > 0) & (eta < 2) & (alpha > 0)
    predicted = inside & (alpha < bound)
    assert torch.equal(((maps[1, 1] < 1) & inside)[clear & inside], predicted[clear & inside])


@pytest.mark.parametrize("t,n,eta,beta", [(1, 1, 0.5, 0.5), (1, 10, 1.5, 1.9), (10, 1, 0.2, 1.8),
                                          (10, 10, 1.2, 0.7), (100, 1, 0.03, 1.9)])
def test_the_mode_closed_forms_equal_the_simulated_period_map(t, n, eta, beta):
    """The map's radii (closed forms) against the full (p + 1) x (p + 1) map by simulation."""
    full = spectral_radius(easgd_period_map(eta, beta / n, tau=t, p=n)).item()
    closed = stability_map(torch.tensor([eta], dtype=F64), torch.tensor([beta], dtype=F64),
                           tau=t, p=n).item()
    assert full == pytest.approx(closed, rel=1e-9)


def test_with_very_many_workers_the_open_square_is_stable(grid):
    """Notes: as alpha = beta / p -> 0 the eigenvalues tend to a^tau and 1 - beta."""
    etas, betas = grid
    for t in TAUS:
        assert (stability_map(etas, betas, tau=t, p=10**6)[1:-1, 1:-1] < 1).all()


# --- ADMM in round robin ------------------------------------------------------------------------


def test_round_robin_admm_has_spectral_radius_above_one_at_the_seeds_parameters():
    """Slide: 1.00097 at p = 3 and 1.00226 at p = 8, at eta = 0.001, rho = 2.5."""
    one = lambda v: torch.tensor([v], dtype=F64)  # noqa: E731
    r3 = admm_spectral_radius(one(1e-3), one(2.5), p=3).item()
    r8 = admm_spectral_radius(one(1e-3), one(2.5), p=8).item()
    assert r3 == pytest.approx(1.00097, abs=5e-6) and r3 > 1
    assert r8 == pytest.approx(1.00226, abs=5e-6) and r8 > 1
    # Independently: numpy's eigenvalues of the same composed map.
    numpy_radius = np.abs(np.linalg.eigvals(admm_round_robin_map(1e-3, 2.5, 3).numpy())).max()
    assert numpy_radius == pytest.approx(r3, rel=1e-12)


def test_the_simulated_admm_state_first_shrinks_then_grows_by_the_radius_per_round():
    """Notes: from norm 2000 the state shrinks, then passes 1e9 after 20,000 rounds, growing
    by 1.00097 per round over the second 10,000."""
    radius = admm_spectral_radius(torch.tensor([1e-3], dtype=F64),
                                  torch.tensor([2.5], dtype=F64), p=3).item()
    state = (torch.zeros(3, 1, dtype=F64), torch.full((3, 1), 1000.0, dtype=F64),
             torch.full((1,), 1000.0, dtype=F64))

    def norm(s):
        return torch.cat([v.flatten() for v in s]).norm().item()

    assert norm(state) == pytest.approx(2000.0)
    quarter = simulate_admm_round_robin(*state, lr=1e-3, rho=2.5, rounds=ADMM_ROUNDS // 4)
    half = simulate_admm_round_robin(*state, lr=1e-3, rho=2.5, rounds=ADMM_ROUNDS // 2)
    end = simulate_admm_round_robin(*half, lr=1e-3, rho=2.5, rounds=ADMM_ROUNDS // 2)
    assert norm(quarter) < 2000.0
    assert norm(end) > 1e9
    growth = math.exp(math.log(norm(end) / norm(half)) / (ADMM_ROUNDS // 2))
    assert growth == pytest.approx(1.00097, abs=5e-6)
    assert math.log(growth) == pytest.approx(math.log(radius), rel=0.01)


# --- Real runs ----------------------------------------------------------------------------------


def _configs() -> list[Config]:
    return [Config(algorithm=a, lr=LR, tau=TAU, beta=BETA, steps=STEPS, batch_size=BATCH_SIZE,
                   seed=SEED, eval_every=EVAL_EVERY,
                   momentum=MOMENTUM if a == "eamsgd" else 0.0) for a in ALGORITHMS]


@pytest.fixture(scope="module")
def curves():
    per_rank = launch(run_sequence, WORLD_SIZE, _configs())
    return {a: run_curve([rank[i] for rank in per_rank], a) for i, a in enumerate(ALGORITHMS)}


def test_bytes_sent_per_worker_equal_the_closed_forms(curves):
    """Slide/notes: 5,772,000 (all-reduce), 1,443,000 (local SGD, EASGD), 1,444,824 (async)."""
    message = 4 * 4810
    exchanges = math.ceil(STEPS / TAU)
    expected = {"allreduce": STEPS * message, "local_sgd": (STEPS // TAU) * message,
                "easgd": exchanges * message, "eamsgd": exchanges * (message + 24) + 24,
                "downpour": exchanges * (message + 24) + 24}
    assert expected["allreduce"] == 5_772_000
    assert expected["local_sgd"] == expected["easgd"] == 1_443_000 == expected["allreduce"] / 4
    assert expected["eamsgd"] == 1_444_824
    for algorithm, curve in curves.items():
        assert curve["bytes_per_worker"][-1] == expected[algorithm], algorithm
        # and the byte count only ever grows
        assert all(a <= b for a, b in zip(curve["bytes_per_worker"],
                                          curve["bytes_per_worker"][1:]))


def test_every_run_ends_below_ten_percent_test_error(curves):
    """Notes: all five runs end below 10 % test error (a 10-class problem: chance is 90 %)."""
    for algorithm, curve in curves.items():
        assert curve["test_error"][-1] < 0.10, (algorithm, curve["test_error"][-1])
        assert curve["test_error"][-1] < curve["test_error"][0], algorithm


def test_local_sgd_ends_within_one_point_of_all_reduce_with_a_quarter_of_the_bytes(curves):
    """Notes: local SGD (tau = 4) within one percentage point of all-reduce SGD."""
    gap = abs(curves["local_sgd"]["test_error"][-1] - curves["allreduce"]["test_error"][-1])
    assert gap <= 0.01
    assert 4 * curves["local_sgd"]["bytes_per_worker"][-1] == \
        curves["allreduce"]["bytes_per_worker"][-1]
