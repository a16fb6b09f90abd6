"""The claims lecture 4 ("Momentum and adaptive methods") makes, each asserted with numbers.

The parameterisation and Nesterov equivalences are in test_optim_textbook.py; the equality of
every method with torch.optim is in test_optim_reference.py.
"""

from __future__ import annotations

import math

import torch
from torch import nn

import coursekit.optim as ck
from coursekit.optim.adadelta import adadelta_update
from coursekit.optim.rmsprop import rmsprop_update

NINE_UP_ONE_DOWN = [0.1] * 9 + [-0.9]  # seed 003: the minibatch gradients of one weight


def feed(opt_cls, gradients, epochs, **kwargs) -> float:
    """Apply a fixed sequence of gradients to one weight; return how far it moved."""
    w = nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = opt_cls([w], **kwargs)
    for _ in range(epochs):
        for g in gradients:
            w.grad = torch.tensor([g], dtype=torch.float64)
            opt.step()
    return w.item()


def test_rprop_drifts_where_sgd_stands_still():
    """The ten gradients average to zero, so SGD returns to its start after every epoch; Rprop
    looks only at signs, so it steps against the nine small gradients and drifts."""
    epochs, delta = 20, 1e-3
    assert abs(feed(ck.SGD, NINE_UP_ONE_DOWN, epochs, lr=0.1)) < 1e-12
    # With the step size pinned to delta, each epoch makes nine steps of -delta; the flip costs
    # no move at all (Rprop skips the step after a sign change).
    moved = feed(ck.Rprop, NINE_UP_ONE_DOWN, epochs, lr=delta, step_sizes=(delta, delta))
    assert math.isclose(moved, -9 * delta * epochs, rel_tol=1e-12)
    # With growing step sizes (the defaults) the drift is larger still.
    assert feed(ck.Rprop, NINE_UP_ONE_DOWN, epochs, lr=delta) < -9 * delta * epochs


def test_adagrad_step_decays_like_one_over_sqrt_t():
    """With a constant gradient g, r_t = t g^2, so the t-th step is lr / sqrt(t)."""
    lr, g = 0.1, 3.0
    w = nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = ck.Adagrad([w], lr=lr, eps=0.0)
    previous = 0.0
    for t in range(1, 101):
        w.grad = torch.tensor([g], dtype=torch.float64)
        opt.step()
        step = previous - w.item()
        previous = w.item()
        assert math.isclose(step, lr / math.sqrt(t), rel_tol=1e-12)


def _one_step_update(update, scale: float, **hyper) -> float:
    """The first update of a weight measured in units scaled by `scale`, after a warmed-up history.

    A weight psi = c * theta sees gradients g / c; a history of squared gradients r / c^2 and
    (for AdaDelta) squared updates c^2 u.
    """
    theta, g, r, u = 2.0, 0.5, 0.3, 0.04  # r, u far above eps: the averages dominate
    dtype = torch.float64
    param = torch.tensor([scale * theta], dtype=dtype)
    grad = torch.tensor([g / scale], dtype=dtype)
    square_avg = torch.tensor([r / scale**2], dtype=dtype)
    step = torch.zeros((), dtype=dtype)
    if update is adadelta_update:
        acc_delta = torch.tensor([u * scale**2], dtype=dtype)
        update(param, grad, square_avg, acc_delta, step, **hyper)
    else:
        update(param, grad, square_avg, None, None, step, **hyper)
    return (scale * theta - param.item()) / scale  # the update, converted back to theta's units


def test_adadelta_update_has_the_units_of_the_parameter():
    """Measure the weight in other units (psi = 100 theta): AdaDelta's update, converted back,
    is unchanged; RMSprop's unitless update is not."""
    adadelta = dict(lr=1.0, rho=0.9, eps=1e-12, weight_decay=0.0, maximize=False)
    base = _one_step_update(adadelta_update, 1.0, **adadelta)
    assert math.isclose(_one_step_update(adadelta_update, 100.0, **adadelta), base, rel_tol=1e-6)

    rmsprop = dict(
        lr=0.01,
        alpha=0.9,
        eps=1e-12,
        weight_decay=0.0,
        momentum=0.0,
        centered=False,
        maximize=False,
    )
    base = _one_step_update(rmsprop_update, 1.0, **rmsprop)
    rescaled = _one_step_update(rmsprop_update, 100.0, **rmsprop)
    assert math.isclose(rescaled, base / 100.0, rel_tol=1e-6)  # off by the factor c


def test_adam_bias_correction_makes_early_steps_full_size():
    """For a constant gradient the corrected averages equal g and g^2 exactly, so every step,
    the first included, is lr * g / (|g| + eps); uncorrected, the first step would be
    lr (1 - beta1) / sqrt(1 - beta2), about 3.16 lr."""
    lr, g, eps = 1e-3, -0.25, 1e-8
    w = nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = ck.Adam([w], lr=lr, eps=eps)
    previous = 0.0
    for _ in range(50):
        w.grad = torch.tensor([g], dtype=torch.float64)
        opt.step()
        step = w.item() - previous
        previous = w.item()
        assert math.isclose(step, -lr * g / (abs(g) + eps), rel_tol=1e-9)
    beta1, beta2 = 0.9, 0.999
    uncorrected_first_step = lr * (1 - beta1) * abs(g) / (math.sqrt(1 - beta2) * abs(g))
    assert uncorrected_first_step > 3 * lr
