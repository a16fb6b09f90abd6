"""The claims lecture 8 ("Distributed SGD") makes, each checked against an independent quantity.

The notebook's check cells tie its prose to its own run; these tests check the coursekit
functions behind the claims against what those functions did not compute: closed forms
(the area under the p = 1 stability curve, bytes per message), the Schur-Cohn (Jury)
criterion instead of eigenvalues, numpy's eigenvalues and characteristic polynomials of maps
composed here by step-by-step simulation, and relations (monotone trends, limits, the order of
the workers). The real runs are one short launch (bytes against closed forms, local SGD with
tau = 1 against all-reduce SGD); the test-error claims at the notebook's defaults are asserted
in its check cells, which CI executes.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from coursekit.distributed import launch, run_curve, simulate_admm_round_robin
from coursekit.distributed.simulate import local_sgd_step
from coursekit.distributed.stability import (
    admm_round_robin_map,
    admm_spectral_radius,
    admm_sub_maps,
    easgd_mode_maps,
    easgd_period_map,
    easgd_round_robin_map,
    easgd_turn_map,
    order_radii,
    round_robin_boundary,
    schedule_growth,
    stability_map,
    stable_fraction,
)
from coursekit.distributed.train import Config, run_sequence
from coursekit.models import MLP

F64 = torch.float64
TAUS, PS = (1, 2, 10, 100), (1, 10, 100, 1000)  # the notebook's table (its figure omits 2)
ADMM_ETA, ADMM_RHO, ADMM_ROUNDS = 1e-3, 2.5, 20000  # the seed's example, the notebook's run


def _curve(eta):
    """The p = 1, tau = 1 stability curve alpha = (4 - 2 eta) / (4 - eta)."""
    return (4 - 2 * eta) / (4 - eta)


# --- Why distribute: the size of one message ---------------------------------------------------


def test_one_message_of_the_mlp_is_four_bytes_per_parameter():
    """Slide: P parameters of the 64-64-10 MLP, counted by hand (weights and biases), 4P bytes."""
    sizes = Config().sizes
    n_params = sum(p.numel() for p in MLP(sizes).parameters())
    by_hand = sum(a * b + b for a, b in zip(sizes, sizes[1:]))
    assert n_params == by_hand


# --- All-reduce SGD is large-batch SGD; local SGD with tau = 1 is all-reduce SGD ----------------


def test_the_mean_of_p_minibatch_gradients_is_the_gradient_of_the_big_batch():
    """Slide: averaging p minibatch-mean gradients (equal sizes) = autograd on the batch of p b."""
    gen = torch.Generator().manual_seed(0)
    model = MLP([64, 16, 10], generator=gen).to(F64)
    p, b = 4, 8
    x = torch.randn(p * b, 64, generator=gen, dtype=F64)
    y = torch.randint(0, 10, (p * b,), generator=gen)

    def grad(xs, ys):
        model.zero_grad()
        F.cross_entropy(model(xs), ys).backward()
        return torch.cat([q.grad.reshape(-1) for q in model.parameters()])

    averaged = torch.stack(
        [grad(x[i * b : (i + 1) * b], y[i * b : (i + 1) * b]) for i in range(p)]
    ).mean(0)
    torch.testing.assert_close(averaged, grad(x, y), rtol=1e-12, atol=1e-14)


def test_local_sgd_with_tau_one_from_a_common_start_is_all_reduce_sgd():
    """Slide: averaging the models after one SGD step = one step along the mean gradient."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 50, dtype=F64, generator=gen).expand(5, 50)  # p = 5 copies of one x
    grads = torch.randn(5, 50, dtype=F64, generator=gen)
    local = local_sgd_step(x, grads, lr=0.05, average=True)
    torch.testing.assert_close(local, (x[0] - 0.05 * grads.mean(0)).expand(5, 50))


# --- The stability map of synchronous EASGD ----------------------------------------------------


def _grid(points=101):
    return torch.linspace(0, 2, points, dtype=F64)


@pytest.fixture(scope="module")
def maps():
    axis = _grid()
    return {(t, n): stability_map(axis, axis, tau=t, p=n) for t in TAUS for n in PS}


@pytest.mark.parametrize("points", [101, 401])
def test_one_worker_every_step_stable_share_is_one_minus_ln_two_up_to_the_grid(points):
    """Slide: p = 1, tau = 1 is stable below alpha = (4 - 2 eta)/(4 - eta), whose area is
    4 - 4 ln 2: a share 1 - ln 2 of the square. On the n x n inner grid (spacing h = 2/n,
    n = points - 1) each column counts the curve's height / h minus at most one point, and the
    column sum of a decreasing curve is within h of its integral, so the count lies in
    [n^2 (1 - ln 2) - n/2 - (n - 1), n^2 (1 - ln 2)] out of (n - 1)^2."""
    n, exact = points - 1, 1 - math.log(2)
    share = stable_fraction(tau=1, p=1, points=points)
    low = (n**2 * exact - n / 2 - (n - 1)) / (n - 1) ** 2
    high = n**2 * exact / (n - 1) ** 2
    assert low <= share <= high, (low, share, high)


def test_one_worker_every_step_is_stable_exactly_below_the_closed_form_curve(maps):
    """Slide: p = 1, tau = 1 is stable iff 0 < eta < 2 and alpha < (4 - 2 eta)/(4 - eta),
    point by point on the grid (points within 1e-6 of the curve left out)."""
    axis = _grid()
    eta, alpha = axis[None, :], axis[:, None]  # p = 1: alpha = beta
    inside = (eta > 0) & (eta < 2) & (alpha > 0)
    clear = inside & ((alpha - _curve(eta)).abs() > 1e-6)
    predicted = alpha < _curve(eta)
    assert torch.equal((maps[1, 1] < 1)[clear], predicted[clear])


def test_every_panel_is_stable_exactly_where_the_jury_criterion_says(maps):
    """The radius < 1 sets of all (tau, p) panels against the Schur-Cohn (Jury) criterion on
    trace and determinant of the mean mode, |D| < 1 and |T| < 1 + D, and |factor| < 1 for the
    difference modes: no eigenvalue is computed. Points within 1e-9 of a boundary left out."""
    axis = _grid()
    eta, beta = axis[None, :], axis[:, None]
    for (tau, p), radius in maps.items():
        a, alpha = 1 - eta, beta / p
        decay = a ** (tau - 1)
        trace = decay * (a - alpha) + 1 - beta
        det = decay * ((a - alpha) * (1 - beta) - alpha * beta)
        difference = (decay * (a - alpha)).abs()
        margins = [1 - det.abs(), 1 + det - trace.abs()] + ([1 - difference] if p > 1 else [])
        predicted = torch.stack([m > 0 for m in margins]).all(0)
        clear = torch.stack([m.abs() > 1e-9 for m in margins]).all(0)
        assert torch.equal((radius < 1)[clear], predicted[clear]), (tau, p)
        assert clear.double().mean() > 0.95, (tau, p)  # the comparison covers the panel


def test_more_workers_and_a_longer_period_enlarge_the_stable_region(maps):
    """Slide: the share grows with p at every tau and with tau at every p (or stays at 100 %)."""
    share = {k: (v[1:-1, 1:-1] < 1).double().mean().item() for k, v in maps.items()}
    for t in TAUS:
        row = [share[t, n] for n in PS]
        assert all(b > a or a == b == 1.0 for a, b in zip(row, row[1:])), (t, row)
    for n in PS:
        col = [share[t, n] for t in TAUS]
        assert all(b > a or a == b == 1.0 for a, b in zip(col, col[1:])), (n, col)
    assert share[1, 1] == stable_fraction(tau=1, p=1)  # the library's share is this count


def test_with_very_many_workers_the_open_square_is_stable():
    """Notes: as alpha = beta / p -> 0 the mean mode tends to [[a, 0], [beta, 1 - beta]], with
    eigenvalues a and 1 - beta inside (-1, 1) on the open square: share -> 1."""
    for t in (1, 2, 10):
        assert stable_fraction(tau=t, p=10**6) == 1.0
        mean, _ = easgd_mode_maps(0.7, 1.3, tau=t, p=10**9)
        want = torch.tensor([[0.3**t, 0.0], [1.3, -0.3]], dtype=F64)
        torch.testing.assert_close(mean, want, rtol=0, atol=1e-8)


def test_at_long_periods_only_a_corner_of_small_eta_and_large_beta_is_unstable(maps):
    """Slide: at tau >= 10 unstable inner points have eta < 0.5 and beta > 1; none for p >= 100."""
    axis = _grid()[1:-1]
    for t in (10, 100):
        for n in PS:
            unstable = (maps[t, n][1:-1, 1:-1] >= 1).nonzero()
            eta, beta = axis[unstable[:, 1]], axis[unstable[:, 0]]
            assert (eta < 0.5).all() and (beta > 1).all(), (t, n)
            assert (len(unstable) == 0) == (n >= 100), (t, n)


def test_nothing_converges_on_the_edges(maps):
    """Slide: at eta = 0 the radius is at least 1 (no gradient), at beta = 0 exactly 1."""
    for radius in maps.values():
        assert (radius[:, 0] >= 1 - 1e-12).all()
        torch.testing.assert_close(radius[0, :], torch.ones_like(radius[0, :]))


@pytest.mark.parametrize(
    "t,n,eta,beta",
    [
        (1, 1, 0.5, 0.5),
        (1, 10, 1.5, 1.9),
        (2, 1, 1.3, 0.6),
        (10, 10, 1.2, 0.7),
        (100, 1, 0.03, 1.9),
    ],
)
def test_the_mode_closed_forms_equal_the_simulated_period_map(t, n, eta, beta):
    """The map's radius (closed forms) against numpy's eigenvalues of the full map built by
    running the simulator on the basis vectors."""
    full = easgd_period_map(eta, beta / n, tau=t, p=n).numpy()
    closed = stability_map(
        torch.tensor([eta], dtype=F64), torch.tensor([beta], dtype=F64), tau=t, p=n
    ).item()
    assert np.abs(np.linalg.eigvals(full)).max() == pytest.approx(closed, rel=1e-9)


# --- Round-robin EASGD: the order of the workers ------------------------------------------------


def _turns_simulated(eta, alpha, hs):
    """Each worker's turn as a matrix, by applying the update to the basis vectors one scalar at
    a time: x_i <- x_i - eta h_i x_i - alpha (x_i - c), c <- c + alpha (x_i - c) (old values)."""
    p = len(hs)
    turns = []
    for i in range(p):
        columns = []
        for k in range(p + 1):
            state = [1.0 if j == k else 0.0 for j in range(p + 1)]
            x, c = state[i], state[p]
            state[i] = x - eta * hs[i] * x - alpha * (x - c)
            state[p] = c + alpha * (x - c)
            columns.append(state)
        turns.append(np.array(columns).T)
    return turns


def _round_numpy(turns, order):
    m = np.eye(len(turns[0]))
    for i in order:
        m = turns[i] @ m
    return m


def _charpoly(eta, alpha, hs):
    """lambda prod(lambda - a_i) - prod((1 - alpha)(lambda - a_i) + alpha^2), a_i = 1 - eta h_i
    - alpha: eliminating x_i turn by turn (module docstring of coursekit.distributed.stability)."""
    left, right = np.poly1d([1.0, 0.0]), np.poly1d([1.0])
    for h in hs:
        a = 1 - eta * h - alpha
        left = left * np.poly1d([1.0, -a])
        right = right * np.poly1d([1 - alpha, -(1 - alpha) * a + alpha**2])
    return (left - right).coeffs


SETTINGS = [(0.5, 0.3), (1.5, 0.3), (0.3, 0.9), (1.0, 0.7), (1.9, 0.8), (1.2, 1.2)]


@pytest.mark.parametrize("hs", [(1.0, 1.0), (1.0, 1.0, 1.0), (1.0,) * 4, (0.5, 1.0, 1.5, 2.0)])
def test_the_radius_of_a_round_is_the_same_for_every_order_of_the_workers(hs):
    """Slide: order_radii (all p! orders) against numpy's eigenvalues of every order's round
    composed from the scalar step-by-step turns, and both against the order-free closed-form
    characteristic polynomial; also with different curvatures h_i."""
    p = len(hs)
    for eta, alpha in SETTINGS:
        turns = [easgd_turn_map(eta, alpha, p, i, h=hs[i]) for i in range(p)]
        radii = order_radii(turns).numpy()
        simulated = _turns_simulated(eta, alpha, hs)
        for k, order in enumerate(itertools.permutations(range(p))):
            m = _round_numpy(simulated, order)
            torch.testing.assert_close(
                easgd_round_robin_map(eta, alpha, p, order=order, h=hs),
                torch.from_numpy(m),
                rtol=0,
                atol=1e-14,
            )
            assert np.abs(np.linalg.eigvals(m)).max() == pytest.approx(radii[k], rel=1e-10)
            np.testing.assert_allclose(np.poly(m), _charpoly(eta, alpha, hs), atol=1e-10)
        assert radii.max() - radii.min() < 1e-12, (eta, alpha, radii)


def test_round_robin_admm_radius_does_not_depend_on_the_order_either():
    """Notes: the order is not what separates ADMM from EASGD; ADMM's round radius at the seed's
    example is the same for all 6 orders of p = 3 (relabelling the workers), each above 1."""
    turns = [
        f3 @ f2 @ f1 for f1, f2, f3 in (admm_sub_maps(ADMM_ETA, ADMM_RHO, 3, i) for i in range(3))
    ]
    radii = order_radii(turns)
    assert radii.max() - radii.min() < 1e-12 and (radii > 1).all()


def test_below_the_curve_every_schedule_of_turns_is_non_expansive_and_converges():
    """Slide: below alpha = (4 - 2 eta)/(4 - eta) each turn is a symmetric contraction of its
    pair (numpy's singular values) and the identity elsewhere, so any sequence of turns never
    increases the norm: step-by-step simulation with random orders (and repeats) per round."""
    rng = np.random.default_rng(0)
    for p in (2, 3, 5):
        for eta, alpha in [(0.5, 0.8), (1.0, 0.6), (1.8, 0.1), (0.1, 0.95)]:
            assert alpha < _curve(eta)
            turns = _turns_simulated(eta, alpha, [1.0] * p)
            for i, turn in enumerate(turns):
                assert np.linalg.norm(turn, 2) <= 1 + 1e-12
                assert np.linalg.norm(turn[np.ix_([i, p], [i, p])], 2) < 1
            state = rng.standard_normal(p + 1)
            start = np.linalg.norm(state)
            norms = []
            for _ in range(300):
                for i in rng.integers(0, p, size=2 * p):  # any order, repeats allowed
                    before = np.linalg.norm(state)
                    state = turns[i] @ state
                    assert np.linalg.norm(state) <= before * (1 + 1e-12)
                norms.append(np.linalg.norm(state))
            assert norms[-1] < 1e-3 * start, (p, eta, alpha, norms[-1])


@pytest.mark.parametrize("p", [1, 3, 5])
def test_for_odd_p_a_round_stops_contracting_exactly_at_the_curve(p):
    """Slide: the first unstable alpha of a round (grid search and bisection) equals the curve
    for odd p: there the closed-form characteristic polynomial vanishes at lambda = -1."""
    etas = torch.linspace(0.05, 1.95, 12, dtype=F64)
    boundary = round_robin_boundary(etas, p=p)
    torch.testing.assert_close(boundary, _curve(etas), rtol=0, atol=1e-6)
    for eta in etas.tolist():
        assert np.polyval(_charpoly(eta, _curve(eta), [1.0] * p), -1.0) == pytest.approx(
            0.0, abs=1e-12
        )


@pytest.mark.parametrize("p", [2, 4])
def test_for_even_p_a_fixed_order_round_still_contracts_a_little_above_the_curve(p):
    """Slide: for even p, a band above the curve where the round contracts; there the
    characteristic polynomial at -1 is -2 u^p with u = eta + alpha - 2, not 0 (closed form).
    The boundary is checked against numpy's radii on a fine alpha grid: stable exactly below."""
    etas = torch.linspace(0.05, 1.95, 12, dtype=F64)
    boundary = round_robin_boundary(etas, p=p)
    excess = boundary - _curve(etas)
    assert (excess > 0).all() and excess.max() > 1e-3, excess
    simulated_alphas = np.linspace(0.001, 1.2, 300)
    for eta, edge in zip(etas.tolist(), boundary.tolist()):
        alpha = _curve(eta)
        u = eta + alpha - 2
        assert np.polyval(_charpoly(eta, alpha, [1.0] * p), -1.0) == pytest.approx(-2 * u**p)
        for a in simulated_alphas[np.abs(simulated_alphas - edge) > 1e-6]:
            m = _round_numpy(_turns_simulated(eta, a, [1.0] * p), range(p))
            assert (np.abs(np.linalg.eigvals(m)).max() < 1) == (a < edge), (eta, a, edge)


def test_above_the_curve_the_schedule_matters():
    """Slide: p = 2, eta = 0.88, alpha = 0.76 (above the curve): the fixed-order round contracts
    (numpy radius < 1) but random orders per round grow; schedule_growth against the growth of
    a step-by-step simulation with the same orders, and the fixed order against the radius."""
    p, eta, alpha, rounds = 2, 0.88, 0.76, 3000
    assert alpha > _curve(eta)
    turns = [easgd_turn_map(eta, alpha, p, i) for i in range(p)]
    simulated = _turns_simulated(eta, alpha, [1.0] * p)
    radius = np.abs(np.linalg.eigvals(_round_numpy(simulated, range(p)))).max()
    rng = np.random.default_rng(1)
    orders = [list(rng.permutation(p)) for _ in range(rounds)]
    start = torch.tensor([0.3, -1.2, 0.5], dtype=F64)
    state, log_growth = start.numpy() / start.norm().item(), 0.0
    for order in orders:
        for i in order:
            state = simulated[i] @ state
        log_growth += math.log(np.linalg.norm(state))
        state = state / np.linalg.norm(state)
    growth = schedule_growth(turns, orders, start=start)
    assert growth == pytest.approx(math.exp(log_growth / rounds), rel=1e-10)
    assert radius < 1 < growth
    fixed = schedule_growth(turns, [list(range(p))] * rounds, start=start)
    assert fixed == pytest.approx(radius, abs=1e-3)


# --- ADMM in round robin ------------------------------------------------------------------------


def _admm_round_by_simulation(p):
    """One round of the simulator applied to the 2p + 1 basis vectors: the map, column by column."""
    basis = torch.eye(2 * p + 1, dtype=F64)
    lambdas, workers, center = simulate_admm_round_robin(
        basis[0 : 2 * p : 2],
        basis[1 : 2 * p : 2],
        basis[2 * p],
        lr=ADMM_ETA,
        rho=ADMM_RHO,
        rounds=1,
    )
    return torch.cat([torch.stack([lambdas, workers], 1).reshape(2 * p, -1), center[None]]).numpy()


@pytest.mark.parametrize("p", [3, 8])
def test_round_robin_admm_radius_is_above_one_at_the_seeds_parameters(p):
    """Slide/notes: admm_spectral_radius against numpy's eigenvalues of the round built by the
    simulator (not by admm_sub_maps): equal, and above 1, at eta = 0.001, rho = 2.5."""
    one = lambda v: torch.tensor([v], dtype=F64)  # noqa: E731
    radius = admm_spectral_radius(one(ADMM_ETA), one(ADMM_RHO), p=p).item()
    numpy_radius = np.abs(np.linalg.eigvals(_admm_round_by_simulation(p))).max()
    assert radius == pytest.approx(numpy_radius, rel=1e-12)
    assert radius > 1
    torch.testing.assert_close(
        admm_round_robin_map(ADMM_ETA, ADMM_RHO, p),
        torch.from_numpy(_admm_round_by_simulation(p)),
        rtol=0,
        atol=1e-14,
    )


def test_the_admm_state_first_shrinks_then_grows_by_the_radius_per_round():
    """Notes: from the seed's start (norm 2000) the state first shrinks, passes 1e9 after
    20,000 rounds and grows by the radius per round over the second 10,000: numpy's matrix
    powers of the simulated round, checked against 2,000 rounds of the simulator itself."""
    p = 3
    m = _admm_round_by_simulation(p)
    start = np.array([0.0, 1000.0] * p + [1000.0])
    assert np.linalg.norm(start) == pytest.approx(2000.0)
    state = (
        torch.zeros(p, dtype=F64),
        torch.full((p,), 1000.0, dtype=F64),
        torch.tensor(1000.0, dtype=F64),
    )
    lambdas, workers, center = simulate_admm_round_robin(
        *state, lr=ADMM_ETA, rho=ADMM_RHO, rounds=2000
    )
    simulated = torch.cat([torch.stack([lambdas, workers], 1).reshape(-1), center[None]])
    np.testing.assert_allclose(
        simulated.numpy(), np.linalg.matrix_power(m, 2000) @ start, rtol=1e-9
    )
    norms = {
        n: np.linalg.norm(np.linalg.matrix_power(m, n) @ start)
        for n in (1000, 2000, 5000, ADMM_ROUNDS // 2, ADMM_ROUNDS)
    }
    assert min(norms.values()) < 2000.0 < 1e9 < norms[ADMM_ROUNDS]
    growth = (norms[ADMM_ROUNDS] / norms[ADMM_ROUNDS // 2]) ** (1 / (ADMM_ROUNDS // 2))
    radius = np.abs(np.linalg.eigvals(m)).max()
    assert math.log(growth) == pytest.approx(math.log(radius), rel=1e-3)


# --- Real runs ----------------------------------------------------------------------------------

STEPS, TAU, EVAL_EVERY = 42, 4, 21  # 42 is not a multiple of tau: floor and ceil differ
ALGORITHMS = ["allreduce", "local_sgd", "easgd", "eamsgd", "downpour"]


@pytest.fixture(scope="module")
def runs():
    """One launch of 3 processes: the five algorithms at the notebook's settings but STEPS
    steps, then all-reduce and local SGD with tau = 1 in float64."""

    def config(algorithm, tau=TAU, dtype="float32"):
        return Config(
            algorithm=algorithm,
            lr=0.05,
            tau=tau,
            beta=0.9,
            steps=STEPS,
            batch_size=32,
            seed=0,
            eval_every=EVAL_EVERY,
            dtype=dtype,
            momentum=0.9 if algorithm == "eamsgd" else 0.0,
        )

    configs = [config(a) for a in ALGORITHMS]
    configs += [config("allreduce", dtype="float64"), config("local_sgd", tau=1, dtype="float64")]
    per_rank = launch(run_sequence, 3, configs)
    return [[rank[i] for rank in per_rank] for i in range(len(configs))]


def test_bytes_sent_per_worker_equal_the_closed_forms(runs):
    """Slide: bytes per worker against closed forms in P = parameters of the MLP (4P per
    message): one message per step (all-reduce), floor(steps / tau) (local SGD averages after
    steps tau, 2 tau, ...), ceil(steps / tau) (EASGD exchanges at t = 0, tau, ...), and
    ceil(steps / tau) exchanges of 4P + 24 bytes plus a 24-byte "done" (asynchronous)."""
    message = 4 * sum(p.numel() for p in MLP(Config().sizes).parameters())
    exchanges = math.ceil(STEPS / TAU)
    expected = {
        "allreduce": STEPS * message,
        "local_sgd": (STEPS // TAU) * message,
        "easgd": exchanges * message,
        "eamsgd": exchanges * (message + 24) + 24,
        "downpour": exchanges * (message + 24) + 24,
    }
    for algorithm, histories in zip(ALGORITHMS, runs):
        sent = run_curve(histories, algorithm)["bytes_per_worker"]
        assert sent[-1] == expected[algorithm], algorithm
        assert all(a <= b for a, b in zip(sent, sent[1:])), algorithm


def test_real_local_sgd_with_tau_one_follows_all_reduce_sgd(runs):
    """Slide: with tau = 1 and plain SGD from a common start, local SGD (averaging models) and
    all-reduce SGD (averaging gradients) are one algorithm: the same test errors and train
    losses on every rank (float64; they differ only by rounding)."""
    allreduce, local = runs[-2], runs[-1]
    for a, b in zip(allreduce, local):
        assert a["test_error"] == b["test_error"]
        np.testing.assert_allclose(a["train_loss"], b["train_loss"], rtol=1e-9)
    assert allreduce[0]["test_error"][-1] < allreduce[0]["test_error"][0]  # it did learn
