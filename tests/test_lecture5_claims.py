"""Lecture 5's claims, checked in `coursekit.statistical_lr` against quantities it did not compute.

The references: a brute-force grid over (b, eta) and seed 002's bound written out here; a plain
scalar loop of the algorithm's equations; the exact mean and variance of an alternating stream;
the noisy quadratic's closed forms (mean, variance, expected loss, SGD's stationary variance);
`coursekit.training.train` for the digits loop; the dense Hessian for the curvature bound.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from coursekit import statistical_lr as sl
from coursekit.curvature import hessian
from coursekit.data import digits
from coursekit.optim import SGD, StatisticalSGD
from coursekit.training import train

F64 = torch.float64


def _seed_bound(b, lr, g, sigma, smoothness):
    """Seed 002's guarantee, written out independently of the library."""
    return lr * g * g - 2 * lr * g * sigma / b**0.5 - smoothness * lr * lr * g * g / 2


@pytest.mark.parametrize("g,sigma,smoothness", [(0.5, 2.0, 1.0), (1.0, 0.3, 4.0), (2.0, 5.0, 0.5)])
def test_the_optimum_per_gradient_is_where_a_grid_search_finds_it(g, sigma, smoothness):
    """A fine grid over (b, eta) of the bound written out here, per gradient computation: its
    maximum sits at `optimal_batch_and_lr`'s (B*, eta*) to 1 %, with the value g^4/(128 L sigma^2);
    `progress_bound` equals the written-out bound everywhere on the grid."""
    b_star, eta_star = sl.optimal_batch_and_lr(g, sigma, smoothness)
    batches = torch.logspace(math.log10(b_star / 8), math.log10(b_star * 8), 1601, dtype=F64)
    lrs = torch.linspace(0, 3 * eta_star, 1601, dtype=F64)
    written = _seed_bound(batches[:, None], lrs[None, :], g, sigma, smoothness)
    library = sl.progress_bound(batches[:, None], lrs[None, :], g, sigma, smoothness)
    torch.testing.assert_close(library, written, rtol=1e-9, atol=1e-13)
    per_gradient = written / batches[:, None]
    i, j = divmod(int(per_gradient.argmax()), len(lrs))
    assert abs(batches[i].item() / b_star - 1) < 0.01
    assert abs(lrs[j].item() / eta_star - 1) < 0.01
    peak = g**4 / (128 * smoothness * sigma**2)
    assert per_gradient.max().item() == pytest.approx(peak, rel=1e-4)


def test_best_lr_for_batch_is_the_grid_argmax_at_each_batch():
    """For each b, the eta that maximises the written-out bound on a fine grid (0 where no eta
    gains anything, b <= 4 sigma^2 / g^2)."""
    g, sigma, smoothness = 0.5, 2.0, 2.0
    lrs = torch.linspace(0, 1 / smoothness, 20001, dtype=F64)
    for b in (10.0, 64.0, 100.0, 256.0, 5000.0):
        gains = _seed_bound(b, lrs, g, sigma, smoothness)
        expected = lrs[gains.argmax()].item() if gains.max() > 0 else 0.0
        assert sl.best_lr_for_batch(b, g, sigma, smoothness) == pytest.approx(
            expected, abs=lrs[1].item()
        )
    batches = torch.tensor([10.0, 256.0], dtype=F64)  # tensors too, clamped at 0
    got = sl.best_lr_for_batch(batches, g, sigma, smoothness)
    assert got[0] == 0 and got[1] == pytest.approx(1 / (2 * smoothness))


def test_scaled_lr_is_linear_in_b_and_reaches_eta_star_at_b_star():
    """eta_b = b g^2 / (32 sigma^2 L): proportional to b, equal to 1/(2L) at b = B*."""
    g, sigma, smoothness = 0.7, 1.3, 3.0
    b_star, eta_star = sl.optimal_batch_and_lr(g, sigma, smoothness)
    assert sl.scaled_lr(b_star, g, sigma, smoothness) == pytest.approx(eta_star)
    for b in (1, 8, 32):
        expected = b * g**2 / (32 * sigma**2 * smoothness)
        assert sl.scaled_lr(b, g, sigma, smoothness) == pytest.approx(expected, rel=1e-12)


def _plain_loop(stream, b, smoothness, warmup, lambda_b=16.0, lambda_eta=None, eps=1e-8):
    """The algorithm's equations for one coordinate, in Python floats."""
    lambda_eta = b / (32 * smoothness) if lambda_eta is None else lambda_eta
    g_bar = s = 0.0
    big_b = float(b)
    rows = []
    for t, g_hat in enumerate(stream, start=1):
        w = 1 / t if t <= warmup else b / big_b
        g_bar = (1 - w) * g_bar + w * g_hat
        s = (1 - w) * s + w * g_hat * g_hat
        variance = max(s - g_bar * g_bar, 0.0)
        big_b = max(b, lambda_b * variance / (g_bar * g_bar + eps))
        lr = 0.0 if t <= warmup else lambda_eta * lambda_b / big_b
        rows.append((g_bar, s, big_b, lr))
    return torch.tensor(rows, dtype=F64)  # (T, 4)


def test_state_traces_follow_a_plain_loop_of_the_equations():
    """Every state the traces record, at every step, against the equations in Python floats;
    noise from dominant to negligible, so both regimes (B above b, B at b) occur."""
    gen = torch.Generator().manual_seed(0)
    noise = torch.tensor([0.05, 0.5, 2.0, 8.0], dtype=F64)
    stream = 1.0 + noise * torch.randn(150, 4, generator=gen, dtype=F64)
    for hyper in (dict(b=2, warmup=5), dict(b=1, warmup=10, lambda_b=32.0, lambda_eta=0.01)):
        b = hyper.pop("b")
        traces = sl.state_traces(stream, batch_size=b, smoothness=1.5, **hyper)
        for c in range(4):
            expected = _plain_loop(stream[:, c].tolist(), b, 1.5, **hyper)
            got = torch.stack([traces[k][:, c] for k in sl.STATE_KEYS], dim=1)
            torch.testing.assert_close(got, expected, rtol=1e-8, atol=1e-12)
        final = traces["batch_estimate"][-1]
        assert (final == b).any() and (final > b).any()


def test_uncapped_lr_agrees_where_the_noise_dominates_and_exceeds_the_floor_elsewhere():
    """The seed's lambda_eta (g^2 + eps) / sigma^2 is the optimizer's eta where B > b; where
    B = b it is above 1/(2L) (the optimizer's step there), by the factor b / B_noise."""
    gen = torch.Generator().manual_seed(1)
    noise = torch.logspace(-2, 1, 32, dtype=F64)
    traces = sl.state_traces(1.0 + noise * torch.randn(10, 32, generator=gen, dtype=F64),
                             batch_size=1, smoothness=2.0)  # fmt: skip
    state = {k: v[-1] for k, v in traces.items()}  # the warm-up's plain means
    seed_step = sl.uncapped_lr(state["grad_avg"], state["sq_avg"], batch_size=1, smoothness=2.0)
    step = 1 / 32 / 2.0 * 16 / state["batch_estimate"]  # lambda_eta lambda_b / B
    noisy = state["batch_estimate"] > 1
    assert noisy.any() and (~noisy).any()
    torch.testing.assert_close(seed_step[noisy], step[noisy], rtol=1e-10, atol=0)
    assert (seed_step[~noisy] > 1 / (2 * 2.0)).all() and (step[~noisy] == 1 / (2 * 2.0)).all()
    assert seed_step.max() > 100 / 4  # sigma = 0.01: about 1 / (32 L sigma^2) = 156


def test_default_estimate_is_per_batch_and_lambda_b_16b_per_sample():
    """Minibatch gradients alternating g +- sigma / sqrt(b) have mean g and variance sigma^2 / b
    exactly: after the warm-up the default B is 16 sigma^2 / (b g^2) = B*/b, and lambda_b = 16 b
    gives B* = 16 sigma^2 / g^2."""
    g, sigma, b = 0.5, 2.0, 4
    signs = torch.tensor([1.0, -1.0], dtype=F64).repeat(5)[:, None]
    stream = g + sigma / math.sqrt(b) * signs
    b_star = 16 * sigma**2 / g**2
    default = sl.state_traces(stream, batch_size=b, smoothness=1.0)["batch_estimate"][-1]
    per_sample = sl.state_traces(stream, batch_size=b, smoothness=1.0, lambda_b=16.0 * b)
    assert default.item() == pytest.approx(b_star / b, rel=1e-6)
    assert per_sample["batch_estimate"][-1].item() == pytest.approx(b_star, rel=1e-6)


def test_once_at_the_floor_a_coordinate_stays_there():
    """At B = b the weight b / B is 1, so the variance estimate is 0 and B stays b: on a stream
    whose mean falls to 0 (B* infinite), no coordinate that reached the floor ever leaves it."""
    gen = torch.Generator().manual_seed(2)
    mean = torch.cat([torch.ones(50, 1), torch.zeros(250, 1)]).to(F64)
    stream = mean + torch.logspace(-2, 0, 16, dtype=F64) * torch.randn(300, 16, generator=gen)
    big_b = sl.state_traces(stream, batch_size=1, smoothness=1.0)["batch_estimate"]
    at_floor = big_b[9:] == 1  # from the last warm-up step (t = 10) on: then w_t = b / B_{t-1}
    reached = at_floor.int().cummax(dim=0).values.bool()  # at the floor at this step or before
    assert at_floor[-1].any() and not at_floor[-1].all()
    assert torch.equal(at_floor, reached)  # none ever left


def test_bowl_gradients_and_loss_match_their_closed_forms():
    """Many minibatch gradients: mean h theta and variance h^2 s^2 / b; the excess loss is the
    Monte-Carlo mean per-sample loss minus its minimum, 1/2 sum h s^2."""
    bowl = sl.NoisyBowl(
        torch.tensor([0.1, 1.0, 3.0], dtype=F64),
        torch.tensor([2.0, 0.5, 1.0], dtype=F64),
        torch.zeros(3, dtype=F64),
    )
    theta, b = torch.tensor([1.0, -2.0, 0.5], dtype=F64), 4
    gen = torch.Generator().manual_seed(3)
    draws = torch.stack([bowl.minibatch_gradient(theta, b, gen) for _ in range(20000)])
    h, s = bowl.curvatures, bowl.noise
    se = h * s / math.sqrt(b) / math.sqrt(len(draws))
    assert ((draws.mean(0) - h * theta).abs() < 4 * se).all()
    torch.testing.assert_close(draws.var(0), h**2 * s**2 / b, rtol=0.05, atol=0)
    y = s * torch.randn(200000, 3, generator=gen, dtype=F64)
    per_sample = 0.5 * (h * (theta - y) ** 2).sum(1)
    expected = per_sample.mean() - 0.5 * (h * s**2).sum()
    assert bowl.excess_loss(theta).item() == pytest.approx(expected.item(), rel=0.02)
    assert bowl.smoothness == 3.0


def test_sgd_on_the_bowl_settles_at_the_stationary_variance():
    """Constant-step SGD on h (theta - y_bar): each coordinate settles at variance
    eta h s^2 / (b (2 - eta h)), so the mean excess loss is 1/2 sum h times that."""
    bowl = sl.NoisyBowl.log_spaced(dim=3, condition=2.0, noise=1.5)
    lr, b = 0.5, 2
    run = sl.run_on_bowl(bowl, lambda p: SGD(p, lr=lr), batch_size=b, steps=30000, seed=4)
    h, s = bowl.curvatures, bowl.noise
    variance = lr * h * s**2 / (b * (2 - lr * h))
    expected = (0.5 * h * variance).sum().item()
    assert run.loss[1000:].mean().item() == pytest.approx(expected, rel=0.05)
    assert run.samples[-1].item() == 30000 * b
    assert run.validation == pytest.approx(run.loss[-3000:].mean().item())


def test_run_on_digits_is_the_training_loop_of_coursekit_training():
    """SGD through `run_on_digits` and through `coursekit.training.train` (same seed, so the same
    minibatch order and initial weights) ends at the same weights; the recorded loss, validation
    score and test accuracy are those of the returned model, computed directly."""
    task = sl.DigitsTask.from_split(digits(seed=0, dtype=F64), hidden=8)
    run = sl.run_on_digits(task, lambda p: SGD(p, lr=0.1), batch_size=64, epochs=2, seed=5)
    twin = task.model(seed=5)
    train(twin, SGD(twin.parameters(), lr=0.1), F.cross_entropy, task.x_train, task.y_train,
          epochs=2, batch_size=64, seed=5)  # fmt: skip
    for a, b in zip(run.model.parameters(), twin.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        assert run.loss[-1].item() == pytest.approx(
            F.cross_entropy(twin(task.x_train), task.y_train).item(), rel=1e-10
        )
        assert run.validation == pytest.approx(
            F.cross_entropy(twin(task.x_val), task.y_val).item(), rel=1e-10
        )
        accuracy = (twin(task.x_test).argmax(1) == task.y_test).double().mean().item()
    assert run.test_accuracy == accuracy
    assert run.samples[-1].item() == 2 * len(task.x_train)
    assert len(task.x_val) == round(0.2 * (len(task.x_val) + len(task.x_train)))


def test_run_on_digits_records_the_statistical_sgd_state():
    """With `record_state`, row t is the optimizer's B_t and eta_t over all weights, flattened
    in parameter order: the last row is the final state itself."""
    task = sl.DigitsTask.from_split(digits(seed=1, dtype=F64), hidden=4)
    optimizers = []

    def make(params):
        optimizers.append(StatisticalSGD(params, batch_size=64, smoothness=1.0, warmup=3))
        return optimizers[-1]

    run = sl.run_on_digits(task, make, batch_size=64, epochs=1, record_state=True)
    (optimizer,) = optimizers
    params = list(run.model.parameters())
    for key in ("batch_estimate", "lr_t"):
        final = torch.cat([optimizer.state[p][key].flatten() for p in params]).float()
        assert torch.equal(run.states[key][-1], final)
        assert run.states[key].shape == (len(run.loss) - 1, sum(p.numel() for p in params))


def test_largest_curvature_is_the_dense_hessian_s_top_eigenvalue():
    """Lanczos on Hessian-vector products against eigvalsh of the dense Hessian (small MLP)."""
    task = sl.DigitsTask.from_split(digits(seed=2, dtype=F64), hidden=3)
    model = task.model(seed=0)
    dense = hessian(model, task.train_loss)
    expected = torch.linalg.eigvalsh(dense).max().item()
    assert task.largest_curvature(model) == pytest.approx(expected, rel=1e-5)


def test_chosen_picks_the_lowest_finite_validation_score():
    """`sweep` runs once per learning rate; `chosen` is the argmin, skipping diverged runs."""
    seen = []

    def run(make):
        optimizer = make([torch.nn.Parameter(torch.zeros(1))])
        lr = optimizer.param_groups[0]["lr"]
        seen.append(lr)
        score = {0.1: 3.0, 0.3: 1.0, 1.0: float("nan"), 3.0: 2.0}[lr]
        return sl.Run(torch.zeros(1), torch.zeros(1), score)

    runs = sl.sweep(run, lambda p, lr: SGD(p, lr=lr), [0.1, 0.3, 1.0, 3.0])
    assert seen == [0.1, 0.3, 1.0, 3.0] and sl.chosen(runs) == 0.3


@pytest.mark.parametrize(
    "call,name",
    [
        (lambda: sl.optimal_batch_and_lr(1.0, 0.0, 1.0), "sigma"),
        (lambda: sl.optimal_batch_and_lr(1.0, 1.0, -1.0), "smoothness"),
        (lambda: sl.optimal_batch_and_lr(0.0, 1.0, 1.0), "g"),
        (lambda: sl.scaled_lr(0, 1.0, 1.0, 1.0), "batch"),
        (lambda: sl.NoisyBowl.log_spaced(0, 10.0), "dim"),
        (lambda: sl.state_traces(torch.zeros(3), batch_size=1, smoothness=1.0), "gradients"),
        (lambda: sl.DigitsTask.from_split(digits(), validation=1.0), "validation"),
        (lambda: sl.sweep(lambda make: None, lambda p, lr: None, []), "lrs"),
    ],
)
def test_invalid_arguments_raise_value_error_naming_them(call, name):
    with pytest.raises(ValueError, match=f"Invalid {name}"):
        call()
