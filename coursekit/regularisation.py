r"""Regularisation seen through the Hessian: what each penalty does to a minimum (lecture 7).

Seed 001 ("Regularization: parameter norm penalty") studies a penalty near the unregularised
minimum :math:`w^*` of a loss, where the loss is the quadratic
:math:`f(w) = f(w^*) + \tfrac12 (w - w^*)^\top H (w - w^*)`. This module computes each of its
statements exactly, and the ones the seed leaves as words (Goodfellow et al. 2016, chapter 7):

- **weight decay** (`ridge_shrinkage`, `ridge_minimiser`): along the Hessian's eigenvector
  :math:`q_i` the minimum is scaled by :math:`\lambda_i / (\lambda_i + \alpha)`;
- **L1** (`soft_threshold`, `l1_minimiser_diagonal`, `ista`, `subgradient_descent`): with a
  diagonal Hessian every weight moves by :math:`\alpha / H_{ii}` towards zero and stops there
  (soft-thresholding; the seed writes "no change" for the large weights, which is wrong);
- **early stopping** (`early_stopping_filter`, `gradient_descent_path`): :math:`t` steps of
  gradient descent from zero scale eigen-direction :math:`i` by :math:`1 - (1 - \eta\lambda_i)^t`,
  close to ridge's factor with :math:`\alpha = 1/(t\eta)`;
- **dropout** (`dropout_loss`, `dropout_penalty`, `dropout_loss_monte_carlo`,
  `dropout_minimiser`): for linear regression the expected loss under dropout is the loss plus a
  quadratic penalty weighted by each feature's second moment (Srivastava et al. 2014, section
  9.1; Wager et al. 2013);
- **input noise** (`input_noise_loss`, `noise_regulariser`): Gaussian noise on the inputs adds,
  to first order in the noise variance, a penalty on the gradient of the model with respect to
  its input (Bishop 1995): Tikhonov regularisation;
- **AdamW against Adam with an L2 term** (`adam_weight_decay_run`, Loshchilov and Hutter 2019).

Everything is small and exact: float64 tensors, dense eigendecompositions.

Example::

    import torch
    from coursekit import regularisation as reg

    h = torch.diag(torch.tensor([10.0, 1.0, 0.1], dtype=torch.float64))
    w_star = torch.ones(3, dtype=torch.float64)
    reg.ridge_minimiser(h, w_star, alpha=1.0)          # (10/11, 1/2, 1/11)
    reg.l1_minimiser_diagonal(w_star, torch.diagonal(h), alpha=0.5)   # (0.95, 0.5, 0)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from coursekit._checks import count as _check_count
from coursekit._checks import nonnegative as _check_nonnegative
from coursekit._checks import positive as _check_positive

__all__ = [
    "RegressionSplits",
    "adam_weight_decay_run",
    "dropout_loss",
    "dropout_loss_monte_carlo",
    "dropout_minimiser",
    "dropout_penalty",
    "early_stopping_filter",
    "gradient_descent_path",
    "input_noise_loss",
    "ista",
    "l1_minimiser_diagonal",
    "l1_objective",
    "noise_regulariser",
    "noisy_regression",
    "ridge_minimiser",
    "ridge_shrinkage",
    "soft_threshold",
    "subgradient_descent",
]

F64 = torch.float64


def _check_probability(p: float) -> None:
    if not 0 <= p < 1:
        raise ValueError(f"Invalid p: {p!r} (must be in [0, 1))")


# --- Weight decay ----------------------------------------------------------------------------


def ridge_shrinkage(eigenvalues: Tensor, alpha: float) -> Tensor:
    r"""The factor :math:`\lambda_i / (\lambda_i + \alpha)` by which L2 weight decay scales the
    minimum's component along each Hessian eigenvector (seed 001, "weight decay").

    Near 1 where :math:`\lambda_i \gg \alpha` (the loss is sensitive to that direction), near
    0 where :math:`\lambda_i \ll \alpha`.
    """
    _check_nonnegative("alpha", alpha)
    return eigenvalues / (eigenvalues + alpha)


def ridge_minimiser(hessian: Tensor, w_star: Tensor, alpha: float) -> Tensor:
    r"""The minimiser of :math:`\tfrac12 (w - w^*)^\top H (w - w^*) + \tfrac\alpha2 \|w\|^2`.

    Setting the gradient :math:`H(w - w^*) + \alpha w` to zero gives
    :math:`(H + \alpha I)\,\tilde w = H w^*`; in the eigenbasis :math:`H = Q \Lambda Q^\top`,

    .. math::
        \tilde w = Q \,\mathrm{diag}\Bigl(\frac{\lambda_i}{\lambda_i + \alpha}\Bigr) Q^\top w^* ,

    which is how it is computed here (`ridge_shrinkage`), not by a linear solve.

    Args:
        hessian: symmetric positive semi-definite :math:`H`, ``(d, d)``.
        w_star: the unregularised minimum, ``(d,)``.
        alpha: the penalty's strength, :math:`\alpha \ge 0` (:math:`\alpha > 0` if :math:`H`
            is singular).
    """
    eigenvalues, q = torch.linalg.eigh(hessian)
    return q @ (ridge_shrinkage(eigenvalues, alpha) * (q.T @ w_star))


# --- L1 --------------------------------------------------------------------------------------


def soft_threshold(w: Tensor, threshold) -> Tensor:
    r"""The soft-thresholding operator :math:`\mathrm{sign}(w)\max(|w| - \tau, 0)`, elementwise.

    It is the proximal operator of :math:`\tau\|w\|_1`: the minimiser over :math:`v` of
    :math:`\tfrac12 (v - w)^2 + \tau |v|`. `threshold` may be a tensor (one :math:`\tau` per
    entry) or a number.
    """
    if isinstance(threshold, Tensor):
        if (threshold < 0).any():
            raise ValueError("Invalid threshold: negative entries (must be >= 0)")
    else:
        _check_nonnegative("threshold", threshold)
    return torch.sign(w) * torch.clamp(w.abs() - threshold, min=0)


def l1_minimiser_diagonal(w_star: Tensor, h_diag: Tensor, alpha: float) -> Tensor:
    r"""The minimiser of :math:`\tfrac12 \sum_i H_{ii} (w_i - w_i^*)^2 + \alpha \|w\|_1`.

    With a diagonal Hessian the problem splits into one-dimensional ones, each solved by
    soft-thresholding (Goodfellow et al. 2016, section 7.1.2):

    .. math::
        \tilde w_i = \mathrm{sign}(w_i^*) \max\bigl(|w_i^*| - \alpha / H_{ii},\ 0\bigr).

    Every weight moves by :math:`\alpha / H_{ii}` towards zero and stops at zero. Seed 001
    writes "no change" for :math:`|w_i^*| > \alpha / H_{ii}`: the shift is missing there.
    """
    _check_nonnegative("alpha", alpha)
    if (h_diag <= 0).any():
        raise ValueError("Invalid h_diag: non-positive entries (must be > 0)")
    return soft_threshold(w_star, alpha / h_diag)


def l1_objective(w: Tensor, hessian: Tensor, w_star: Tensor, alpha: float) -> Tensor:
    r""":math:`\tfrac12 (w - w^*)^\top H (w - w^*) + \alpha\|w\|_1`; `w` may be a batch
    ``(..., d)``."""
    diff = w - w_star
    return 0.5 * ((diff @ hessian) * diff).sum(-1) + alpha * w.abs().sum(-1)


def _start(w_star: Tensor, lr: float, steps: int, w0: Tensor | None) -> Tensor:
    """Check the step arguments; the starting point (a copy of `w0`, or zero)."""
    _check_positive("lr", lr)
    _check_count("steps", steps, 0)
    return torch.zeros_like(w_star) if w0 is None else w0.clone()


def ista(
    hessian: Tensor,
    w_star: Tensor,
    alpha: float,
    *,
    lr: float,
    steps: int,
    w0: Tensor | None = None,
) -> Tensor:
    r"""Proximal gradient descent (ISTA) on `l1_objective`; the iterates, ``(steps + 1, d)``.

    .. math::
        w_{t+1} = \mathrm{soft\_threshold}\bigl(w_t - \eta H (w_t - w^*),\ \eta\alpha\bigr)

    (Daubechies, Defrise and De Mol 2004; Beck and Teboulle 2009). The gradient step handles
    the smooth part; the thresholding sets small entries to exactly zero, so the iterates are
    sparse. It converges for :math:`\eta \le 1/\lambda_{\max}(H)`. `w0` defaults to zero.
    """
    _check_nonnegative("alpha", alpha)
    w = _start(w_star, lr, steps, w0)
    path = [w]
    for _ in range(steps):
        w = soft_threshold(w - lr * (hessian @ (w - w_star)), lr * alpha)
        path.append(w)
    return torch.stack(path)


def subgradient_descent(
    hessian: Tensor,
    w_star: Tensor,
    alpha: float,
    *,
    lr: float,
    steps: int,
    w0: Tensor | None = None,
) -> Tensor:
    r"""Subgradient descent with a constant step on `l1_objective`; the iterates,
    ``(steps + 1, d)``.

    .. math::
        w_{t+1} = w_t - \eta\bigl(H (w_t - w^*) + \alpha\,\mathrm{sign}(w_t)\bigr)

    (what autograd computes for ``alpha * w.abs().sum()``: torch's derivative of :math:`|w|` at
    0 is 0). A weight whose optimum is zero is pushed across zero by :math:`\eta\alpha` at every
    step and oscillates around it; it lands on exactly 0.0 only by accident of rounding.
    """
    _check_nonnegative("alpha", alpha)
    w = _start(w_star, lr, steps, w0)
    path = [w]
    for _ in range(steps):
        w = w - lr * (hessian @ (w - w_star) + alpha * torch.sign(w))
        path.append(w)
    return torch.stack(path)


# --- Early stopping --------------------------------------------------------------------------


def early_stopping_filter(eigenvalues: Tensor, lr: float, steps: int) -> Tensor:
    r"""The factor :math:`1 - (1 - \eta\lambda_i)^t` by which :math:`t` steps of gradient
    descent from :math:`w_0 = 0` scale the minimum's component along eigenvector :math:`i`.

    On :math:`\tfrac12 (w - w^*)^\top H (w - w^*)`, :math:`w_t - w^* = (I - \eta H)^t (w_0 -
    w^*)`, so from zero :math:`w_t = Q\,\mathrm{diag}(1 - (1 - \eta\lambda_i)^t)\,Q^\top w^*`
    (Goodfellow et al. 2016, section 7.8). Compare with `ridge_shrinkage` at
    :math:`\alpha = 1/(t\eta)`: for :math:`0 \le \eta\lambda_i \le 1`, with
    :math:`x = t\eta\lambda_i`,

    .. math::
        \frac{x}{1 + x} \;\le\; 1 - (1 - \eta\lambda_i)^t \;\le\; \min(1, x),

    (the left from :math:`(1-\eta\lambda)^t \le e^{-x} \le 1/(1+x)`), so early stopping's factor
    is between ridge's and twice ridge's, for every eigenvalue.
    """
    _check_positive("lr", lr)
    _check_count("steps", steps, 0)
    return 1 - (1 - lr * eigenvalues) ** steps


def gradient_descent_path(
    hessian: Tensor, w_star: Tensor, *, lr: float, steps: int, w0: Tensor | None = None
) -> Tensor:
    r"""Plain gradient descent on :math:`\tfrac12 (w - w^*)^\top H (w - w^*)`, from `w0`
    (default zero); the iterates, ``(steps + 1, d)``.

    For least squares :math:`\tfrac1{2N}\|Xw - y\|^2` with :math:`H = X^\top X / N` and
    :math:`w^*` its solution, the gradient :math:`H(w - w^*) = X^\top (Xw - y)/N` is the same.
    """
    w = _start(w_star, lr, steps, w0)
    path = [w]
    for _ in range(steps):
        w = w - lr * (hessian @ (w - w_star))
        path.append(w)
    return torch.stack(path)


@dataclass(frozen=True)
class RegressionSplits:
    """A linear regression task split three ways: fit on train, choose on val, report on test."""

    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor
    w_true: Tensor


def noisy_regression(
    dim: int,
    n_train: int,
    n_val: int,
    n_test: int,
    *,
    noise: float,
    decay: float = 0.9,
    generator: torch.Generator | None = None,
) -> RegressionSplits:
    r"""A linear regression task on which fitting every direction overfits.

    Feature :math:`j` has standard deviation :math:`\mathrm{decay}^j` (a spread of Hessian
    eigenvalues), the true weights are standard normal, and :math:`y = x^\top w + \epsilon` with
    :math:`\epsilon \sim \mathcal N(0, \mathrm{noise}^2)`. All float64.
    """
    for name, value in (("dim", dim), ("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"Invalid {name}: {value!r} (must be an int >= 1)")
    _check_nonnegative("noise", noise)
    _check_positive("decay", decay)
    scales = decay ** torch.arange(dim, dtype=F64)
    w_true = torch.randn(dim, dtype=F64, generator=generator)
    parts = []
    for n in (n_train, n_val, n_test):
        x = torch.randn(n, dim, dtype=F64, generator=generator) * scales
        y = x @ w_true + noise * torch.randn(n, dtype=F64, generator=generator)
        parts += [x, y]
    return RegressionSplits(*parts, w_true=w_true)


# --- Dropout ---------------------------------------------------------------------------------


def dropout_penalty(x: Tensor, w: Tensor, p: float, *, inverted: bool = True) -> Tensor:
    r"""The data-dependent quadratic penalty that dropout on the inputs adds to linear
    regression's mean squared error (Srivastava et al. 2014, section 9.1; Wager et al. 2013).

    Each input is kept with probability :math:`1 - p` (`p` is the drop probability, as in
    ``torch.nn.Dropout(p)``). With **inverted** dropout (torch's convention: kept inputs are
    divided by :math:`1 - p`, so the expected input is unchanged) the penalty is

    .. math::
        \frac{p}{1 - p} \sum_j w_j^2 \,\overline{x_j^2},
        \qquad \overline{x_j^2} = \frac1N \sum_n x_{nj}^2 ;

    without the rescaling it is :math:`p(1 - p) \sum_j w_j^2 \overline{x_j^2}`. Either way it is
    an L2 penalty whose weight for feature :math:`j` is that feature's second moment: an
    *adaptive* ridge, the diagonal of :math:`X^\top X` in place of the identity.
    """
    _check_probability(p)
    scale = p / (1 - p) if inverted else p * (1 - p)
    return scale * (w**2 * (x**2).mean(0)).sum()


def dropout_loss(x: Tensor, y: Tensor, w: Tensor, p: float, *, inverted: bool = True) -> Tensor:
    r"""The expected mean squared error of :math:`y \approx x^\top w` under dropout on the
    inputs, in closed form: with :math:`m_{nj} \sim \mathrm{Bernoulli}(1 - p)` independent,

    .. math::
        \mathbb E_m \frac1N \sum_n \Bigl(y_n - \sum_j \frac{m_{nj}}{1 - p} x_{nj} w_j\Bigr)^2
        = \frac1N \|y - Xw\|^2 + \frac{p}{1 - p} \sum_j w_j^2 \overline{x_j^2}

    (inverted dropout: the prediction's mean is :math:`x^\top w`, its variance the penalty).
    Without the rescaling the prediction's mean is :math:`(1 - p) x^\top w`:
    :math:`\frac1N\|y - (1 - p)Xw\|^2 + p(1 - p)\sum_j w_j^2 \overline{x_j^2}`.
    """
    mean_prediction = x @ w if inverted else (1 - p) * (x @ w)
    return ((y - mean_prediction) ** 2).mean() + dropout_penalty(x, w, p, inverted=inverted)


def dropout_loss_monte_carlo(
    x: Tensor,
    y: Tensor,
    w: Tensor,
    p: float,
    *,
    samples: int,
    inverted: bool = True,
    generator: torch.Generator | None = None,
) -> tuple[float, float]:
    r"""`dropout_loss` estimated by sampling: the mean over `samples` independent draws of
    the whole mask matrix, and its standard error (sample standard deviation / sqrt(samples))."""
    _check_probability(p)
    if samples < 2:
        raise ValueError(f"Invalid samples: {samples!r} (must be >= 2)")
    keep = 1 - p
    masks = torch.rand((samples, *x.shape), generator=generator, dtype=x.dtype) < keep
    dropped = masks * x / keep if inverted else masks * x  # (samples, N, d)
    losses = ((y - dropped @ w) ** 2).mean(-1)  # (samples,)
    return losses.mean().item(), (losses.std() / math.sqrt(samples)).item()


def dropout_minimiser(x: Tensor, y: Tensor, p: float) -> Tensor:
    r"""The minimiser of the expected inverted-dropout loss (`dropout_loss`):

    .. math::
        \Bigl(X^\top X + \frac{p}{1 - p}\,\mathrm{diag}(X^\top X)\Bigr)\,w = X^\top y ,

    ridge regression whose penalty on feature :math:`j` grows with :math:`\sum_n x_{nj}^2`.
    """
    _check_probability(p)
    gram = x.T @ x
    return torch.linalg.solve(gram + p / (1 - p) * torch.diag(torch.diagonal(gram)), x.T @ y)


# --- Input noise -----------------------------------------------------------------------------

Model = Callable[[Tensor], Tensor]  # (N, d) -> (N,)


def input_noise_loss(f: Model, x: Tensor, y: Tensor, sigma: float, *, nodes: int = 24) -> Tensor:
    r"""The mean squared error with Gaussian noise on the inputs, integrated exactly:
    :math:`\frac1N \sum_n \mathbb E_{\epsilon \sim \mathcal N(0, \sigma^2 I)} (y_n - f(x_n +
    \epsilon))^2`, by a Gauss-Hermite rule with `nodes` points per input dimension (a tensor
    grid: keep the input dimension small, 1 to 3). For a smooth `f` and small `sigma` the rule
    is exact to rounding; it replaces a Monte Carlo average, whose error would hide the
    :math:`O(\sigma^4)` remainder that `noise_regulariser` leaves.
    """
    _check_nonnegative("sigma", sigma)
    n, dim = x.shape
    points, weights = np.polynomial.hermite_e.hermegauss(nodes)  # weight exp(-z^2 / 2)
    points = torch.as_tensor(points, dtype=x.dtype)
    weights = torch.as_tensor(weights / math.sqrt(2 * math.pi), dtype=x.dtype)
    grid = torch.cartesian_prod(*[points] * dim).reshape(-1, dim)  # (G, d)
    grid_w = torch.cartesian_prod(*[weights] * dim).reshape(-1, dim).prod(-1)  # (G,)
    noisy = (x[:, None, :] + sigma * grid[None]).reshape(-1, dim)  # (N G, d)
    errors = (y[:, None] - f(noisy).reshape(n, -1)) ** 2  # (N, G)
    return (errors @ grid_w).mean()


def noise_regulariser(f: Model, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    r"""The coefficient of :math:`\sigma^2` in `input_noise_loss`, in two parts (Bishop 1995).

    A second-order Taylor expansion of :math:`(y - f(x + \epsilon))^2` in :math:`\epsilon`,
    averaged over :math:`\epsilon \sim \mathcal N(0, \sigma^2 I)` (odd moments vanish):

    .. math::
        \mathbb E (y - f(x + \epsilon))^2 = (y - f)^2
            + \sigma^2 \bigl(\|\nabla_x f\|^2 - (y - f)\,\Delta_x f\bigr) + O(\sigma^4).

    Returns the means over the samples of the **Tikhonov** term :math:`\|\nabla_x f\|^2` and of
    the **curvature** term :math:`-(y - f)\Delta_x f`. Bishop shows that the curvature term
    vanishes to this order at the minimum of the noisy loss, so training with input noise of
    variance :math:`\sigma^2` is, to first order, training with the penalty
    :math:`\sigma^2 \overline{\|\nabla_x f\|^2}`; for a linear model it is exactly ridge,
    :math:`\sigma^2 \|w\|^2`. Derivatives by autograd (`f` must act on each row alone).
    """
    x = x.detach().requires_grad_(True)
    out = f(x)
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)  # (N, d)
    laplacian = torch.zeros_like(out)
    for j in range(x.shape[1] if grad.requires_grad else 0):  # a linear f has no second derivative
        (row,) = torch.autograd.grad(grad[:, j].sum(), x, retain_graph=True, allow_unused=True)
        if row is not None:
            laplacian = laplacian + row[:, j]
    tikhonov = (grad**2).sum(-1).mean()
    curvature = (-(y - out) * laplacian).mean()
    return tikhonov.detach(), curvature.detach()


# --- AdamW against Adam with L2 --------------------------------------------------------------


def adam_weight_decay_run(
    grad_scales: Tensor,
    *,
    lr: float,
    weight_decay: float,
    steps: int,
    decoupled: bool,
    generator: torch.Generator | None = None,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> Tensor:
    r"""Weights that start at 1 and feel only noise and weight decay, under Adam; the iterates,
    ``(steps + 1, d)``.

    Coordinate :math:`i`'s loss gradient at step :math:`t` is :math:`s_i \xi_{t,i}`, with
    :math:`s_i` = ``grad_scales[i]`` and :math:`\xi` standard normal from `generator` (the same
    :math:`\xi` for both variants at the same seed): the loss does not care about the weight,
    so whatever pulls it to zero is the decay.

    - ``decoupled=False``: ``torch.optim.Adam(weight_decay=wd)``, the L2 term added to the
      gradient, :math:`g = s\xi + \mathrm{wd}\, w`. It then passes through Adam's division by
      :math:`\sqrt{\hat v} \approx \sqrt{s^2 + \dots}`: a coordinate with a large gradient
      scale is barely decayed, one with a small scale is pulled to zero at about
      :math:`\eta` per step.
    - ``decoupled=True``: ``torch.optim.AdamW``: :math:`w \leftarrow w(1 - \eta\,\mathrm{wd})`
      then the Adam step on :math:`s\xi`: every weight decays by the same factor, whatever its
      gradient scale (Loshchilov and Hutter 2019). As Adam's step is symmetric in :math:`\xi`,
      the mean over coordinates of one scale is :math:`(1 - \eta\,\mathrm{wd})^t` in
      expectation.
    """
    _check_positive("lr", lr)
    _check_nonnegative("weight_decay", weight_decay)
    _check_count("steps", steps, 0)
    w = torch.nn.Parameter(torch.ones_like(grad_scales, dtype=F64))
    scales = grad_scales.to(F64)
    kind = torch.optim.AdamW if decoupled else torch.optim.Adam
    opt = kind([w], lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, foreach=False)
    path = [w.detach().clone()]
    for _ in range(steps):
        w.grad = scales * torch.randn(scales.shape, dtype=F64, generator=generator)
        opt.step()
        path.append(w.detach().clone())
    return torch.stack(path)
