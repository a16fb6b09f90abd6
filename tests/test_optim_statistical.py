"""Is StatisticalSGD the algorithm of seed 002, and does it train without a tuned learning rate?

The references: a brute-force grid search over (B, eta) of the seed's progress bound, the
exponentially weighted means written out as sums, the per-tensor update (for the foreach path)
and the optimizer's own continuation (for a state_dict resume).
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from coursekit.data import digits
from coursekit.optim import StatisticalSGD
from coursekit.optim.statistical import statistical_sgd_update

F64 = torch.float64


def _progress_per_gradient(batch, lr, g, sigma, smoothness):
    """Seed 002's bound on one step's progress, divided by the gradients it cost."""
    gain = lr * g * (g - 2 * sigma / batch.sqrt()) - 0.5 * smoothness * lr**2 * g**2
    return gain / batch


@pytest.mark.parametrize("g,sigma,smoothness", [(1.0, 3.0, 1.0), (0.2, 1.0, 4.0), (2.0, 5.0, 0.5)])
def test_b_star_and_eta_star_maximise_progress_per_gradient(g, sigma, smoothness):
    """A fine grid over (B, eta) finds the optimum at B* = 16 sigma^2/g^2, eta* = 1/(2L), to 1 %."""
    b_star, eta_star = 16 * sigma**2 / g**2, 1 / (2 * smoothness)
    batches = torch.logspace(math.log10(b_star / 4), math.log10(b_star * 4), 2001, dtype=F64)
    lrs = torch.linspace(eta_star / 4, eta_star * 4, 2001, dtype=F64)
    progress = _progress_per_gradient(batches[:, None], lrs[None, :], g, sigma, smoothness)
    i, j = divmod(int(progress.argmax()), len(lrs))
    assert abs(batches[i].item() / b_star - 1) < 0.01
    assert abs(lrs[j].item() / eta_star - 1) < 0.01


def _run_stream(gradients: torch.Tensor, **hyper) -> tuple[torch.Tensor, dict]:
    """Feed a (T, d) stream of gradients to a StatisticalSGD on a zero parameter."""
    param = torch.nn.Parameter(torch.zeros(gradients.shape[1], dtype=gradients.dtype))
    optimizer = StatisticalSGD([param], **hyper)
    lrs = []
    for grad in gradients:
        param.grad = grad.clone()
        optimizer.step()
        lrs.append(optimizer.state[param]["lr_t"].clone())
    return torch.stack(lrs), optimizer.state[param]


def test_after_the_warm_up_b_is_b_star_of_the_plain_means():
    """Ten gradients alternating between g + sigma and g - sigma have mean g and variance
    sigma^2 exactly: the warm-up's plain means give B = 16 sigma^2 / g^2, and no step yet."""
    for g, sigma in ((0.5, 2.0), (1.0, 1.0), (0.1, 0.3)):
        signs = torch.tensor([1.0, -1.0], dtype=F64).repeat(5)[:, None]
        lrs, state = _run_stream((g + sigma * signs).expand(-1, 3), batch_size=2, smoothness=2.0)
        b_star = torch.full((3,), 16 * sigma**2 / g**2, dtype=F64)
        torch.testing.assert_close(state["batch_estimate"], b_star, rtol=1e-6, atol=0)
        assert torch.all(lrs == 0)


def test_the_state_obeys_the_seed_s_relations_at_every_step():
    """B_t = max(b, lambda_b sigma_t^2 / (g_t^2 + eps)) from the stored averages, and
    eta_t = min(lambda_eta lambda_b / B_t, max_lr) after the warm-up, on a noisy stream."""
    b, smoothness, warmup, max_lr = 4.0, 2.0, 5, 0.2
    lambda_b, lambda_eta = 16.0, b / (32 * smoothness)
    param = torch.nn.Parameter(torch.zeros(50, dtype=F64))
    optimizer = StatisticalSGD(
        [param], batch_size=b, smoothness=smoothness, warmup=warmup, max_lr=max_lr
    )
    gen = torch.Generator().manual_seed(3)
    scale = torch.logspace(-2, 1, 50, dtype=F64)  # from noise-dominated to signal-dominated
    for t in range(1, 200):
        param.grad = scale + torch.randn(50, generator=gen, dtype=F64)
        optimizer.step()
        st = optimizer.state[param]
        variance = (st["sq_avg"] - st["grad_avg"] ** 2).clamp(min=0)
        expected_b = (lambda_b * variance / (st["grad_avg"] ** 2 + 1e-8)).clamp(min=b)
        torch.testing.assert_close(st["batch_estimate"], expected_b, rtol=1e-12, atol=0)
        expected_lr = (
            (lambda_eta * lambda_b / expected_b).clamp(max=max_lr) if t > warmup else 0 * expected_b
        )
        torch.testing.assert_close(st["lr_t"], expected_lr, rtol=1e-12, atol=0)
    assert st["lr_t"].max() == max_lr and st["lr_t"].min() < max_lr / 10  # both regimes seen


def test_the_step_vanishes_as_the_gradient_does_with_the_noise_fixed():
    gen = torch.Generator().manual_seed(1)
    noise = torch.randn(4000, 32, generator=gen, dtype=F64)
    final = []
    for g in (1.0, 0.3, 0.1, 0.03):
        lrs, _ = _run_stream(g + noise, batch_size=1, smoothness=1.0)
        final.append(lrs[-1000:].mean().item())
    assert all(a > 3 * b for a, b in zip(final, final[1:])), final  # about g^2: 11x per step
    assert final[-1] < 1e-3


def test_without_noise_the_step_is_one_over_2l_not_unbounded():
    """sigma = 0: the seed's lambda_eta g^2 / sigma^2 would be infinite; the floor B >= b gives
    lambda_eta lambda_b / b = 1/(2L) with the default constants."""
    stream = torch.full((30, 3), 0.7, dtype=F64)
    lrs, state = _run_stream(stream, batch_size=8, smoothness=4.0)
    assert torch.all(lrs[:10] == 0)  # the warm-up only averages
    torch.testing.assert_close(lrs[10:], torch.full((20, 3), 1 / 8.0, dtype=F64))
    assert torch.all(state["batch_estimate"] == 8)


def test_max_lr_caps_the_step():
    stream = torch.full((30, 3), 0.7, dtype=F64)
    lrs, _ = _run_stream(stream, batch_size=8, smoothness=4.0, max_lr=0.05)
    assert lrs.max().item() == pytest.approx(0.05)


def test_with_b_held_constant_the_averages_are_the_exponentially_weighted_means():
    """Plain means over the warm-up, then (1 - w)^(t-s) weights with w = b / B, summed directly."""
    b, big_b, warmup, steps = 2.0, 10.0, 5, 40
    gen = torch.Generator().manual_seed(2)
    grads = torch.randn(steps, 6, generator=gen, dtype=F64)
    param, grad_avg, sq_avg = (torch.zeros(6, dtype=F64) for _ in range(3))
    lr_t, step = torch.zeros(6, dtype=F64), torch.zeros((), dtype=F64)
    batch_estimate = torch.full((6,), big_b, dtype=F64)
    for grad in grads:
        batch_estimate.fill_(big_b)  # B_{t-1} held at big_b
        statistical_sgd_update(
            param, grad, grad_avg, sq_avg, batch_estimate, lr_t, step,
            batch_size=b, warmup=warmup, lambda_b=16.0, lambda_eta=0.1, eps=1e-8, max_lr=None,
        )  # fmt: skip
    w = b / big_b
    after = steps - warmup
    weights = torch.tensor(
        [w * (1 - w) ** (steps - 1 - s) for s in range(warmup, steps)], dtype=F64
    )
    for values, average in ((grads, grad_avg), (grads**2, sq_avg)):
        expected = (1 - w) ** after * values[:warmup].mean(0) + weights @ values[warmup:]
        torch.testing.assert_close(average, expected, rtol=1e-12, atol=1e-14)


def _model_and_batches(dtype=F64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    model = model.to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=dtype))
    x = torch.randn(30, 8, 5, generator=gen, dtype=dtype)
    y = torch.randn(30, 8, 2, generator=gen, dtype=dtype)
    return model, list(zip(x, y))


def _train(model, optimizer, batches):
    for x, y in batches:
        optimizer.zero_grad()
        F.mse_loss(model(x), y).backward()
        optimizer.step()


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_foreach_equals_the_per_tensor_update(dtype):
    runs = []
    for foreach in (False, True):
        model, batches = _model_and_batches(dtype)
        groups = [
            {"params": model[0].parameters()},
            {"params": model[2].parameters(), "batch_size": 16, "max_lr": 0.05},
        ]
        _train(
            model,
            StatisticalSGD(groups, batch_size=8, smoothness=2.0, warmup=3, foreach=foreach),
            batches,
        )
        runs.append([p.detach() for p in model.parameters()])
    for a, b in zip(*runs):
        assert torch.equal(a, b)


def test_state_dict_resume_continues_bit_identically():
    model, batches = _model_and_batches()
    twin = copy.deepcopy(model)
    optimizer = StatisticalSGD(model.parameters(), batch_size=8, smoothness=2.0, warmup=3)
    _train(model, optimizer, batches)
    first = StatisticalSGD(twin.parameters(), batch_size=8, smoothness=2.0, warmup=3)
    _train(twin, first, batches[:12])
    resumed = StatisticalSGD(twin.parameters(), batch_size=8, smoothness=2.0, warmup=3)
    resumed.load_state_dict(copy.deepcopy(first.state_dict()))
    _train(twin, resumed, batches[12:])
    for a, b in zip(model.parameters(), twin.parameters()):
        assert torch.equal(a, b)
    assert set(resumed.state[next(twin.parameters())]) == {
        "step", "grad_avg", "sq_avg", "batch_estimate", "lr_t"
    }  # fmt: skip


def test_trains_digits_logistic_regression_with_no_tuned_learning_rate():
    """Only the batch size and a curvature bound are given: for softmax regression a weight's
    second derivative is at most E[x_j^2] / 4 (p (1 - p) <= 1/4), so L = max_j E[x_j^2] / 4."""
    data = digits(dtype=F64)
    torch.manual_seed(0)
    model = torch.nn.Linear(64, 10).to(F64)
    smoothness = 0.25 * data.x_train.pow(2).mean(0).max().item()
    optimizer = StatisticalSGD(model.parameters(), batch_size=32, smoothness=smoothness)
    gen = torch.Generator().manual_seed(0)
    for _ in range(10):
        order = torch.randperm(len(data.x_train), generator=gen)
        for idx in order.split(32):
            optimizer.zero_grad()
            F.cross_entropy(model(data.x_train[idx]), data.y_train[idx]).backward()
            optimizer.step()
    accuracy = (model(data.x_test).argmax(1) == data.y_test).double().mean().item()
    assert accuracy > 0.93, accuracy


@pytest.mark.parametrize(
    "kwargs,name",
    [
        (dict(batch_size=0, smoothness=1.0), "batch_size"),
        (dict(batch_size=8, smoothness=0.0), "smoothness"),
        (dict(batch_size=8, smoothness=1.0, warmup=0), "warmup"),
        (dict(batch_size=8, smoothness=1.0, warmup=2.5), "warmup"),
        (dict(batch_size=8, smoothness=1.0, lambda_b=-1.0), "lambda_b"),
        (dict(batch_size=8, smoothness=1.0, lambda_eta=0.0), "lambda_eta"),
        (dict(batch_size=8, smoothness=1.0, eps=0.0), "eps"),
        (dict(batch_size=8, smoothness=1.0, max_lr=-0.1), "max_lr"),
    ],
)
def test_invalid_meta_parameters_raise_value_error_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=f"Invalid {name}"):
        StatisticalSGD([torch.nn.Parameter(torch.zeros(2))], **kwargs)
    with pytest.raises(ValueError, match=f"Invalid {name}"):  # also in a param group
        good = dict(batch_size=8, smoothness=1.0)
        StatisticalSGD([{"params": [torch.nn.Parameter(torch.zeros(2))], **kwargs}], **good)


def test_fused_equals_the_per_tensor_update():
    """The compiled step (`fused=True`) is the per-tensor update: same numbers to rounding."""
    from coursekit.optim._fused import compiler_available

    if compiler_available(torch.device("cpu")):
        pytest.skip(compiler_available(torch.device("cpu")))
    runs = []
    for fused in (None, True):
        model, batches = _model_and_batches(torch.float32)
        optimizer = StatisticalSGD(
            model.parameters(), batch_size=8, smoothness=2.0, warmup=3, max_lr=0.1,
            foreach=False if fused is None else None, fused=fused,
        )  # fmt: skip
        _train(model, optimizer, batches)
        runs.append([p.detach() for p in model.parameters()])
    for a, b in zip(*runs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_the_floor_is_absorbing():
    """At B = b the weight b / B is 1: the averages hold the newest gradient alone, the variance
    estimate is exactly 0 and B stays b, so the coordinate keeps the step 1/(2L) even when its
    gradient later vanishes into the noise (the property the module docstring states)."""
    signal = torch.full((20, 2), 3.0, dtype=F64)  # noise-free: B = b from the warm-up on
    gen = torch.Generator().manual_seed(4)
    noise_only = torch.randn(200, 2, generator=gen, dtype=F64)  # then mean 0, sd 1
    lrs, state = _run_stream(torch.cat([signal, noise_only]), batch_size=4, smoothness=1.0)
    assert torch.all(state["batch_estimate"] == 4)
    assert torch.all(lrs[10:] == 0.5)  # 1/(2L) at every step after the warm-up
