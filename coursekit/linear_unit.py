r"""Gradient descent on a single linear unit: a quadratic loss whose Hessian is fixed by the inputs.

Lecture 1 and assignment 1 (seeds 000 and 001). A linear unit :math:`y = w^\top x + b` fitted
to targets :math:`y_p` with the halved mean squared error

.. math::
    E(\theta) = \frac{1}{2P} \sum_{p=1}^{P} \bigl(y_p - \theta^\top \tilde x_p\bigr)^2,
    \qquad \tilde x_p = (x_p, 1),\quad \theta = (w, b)

(drop the 1 and :math:`b` for a unit without bias) is a quadratic in :math:`\theta`:

.. math::
    E(\theta) = \tfrac12\, \theta^\top H \theta - c^\top \theta + e, \qquad
    H = \frac1P \sum_p \tilde x_p \tilde x_p^\top, \quad
    c = \frac1P \sum_p y_p\, \tilde x_p, \quad e = \frac{1}{2P} \sum_p y_p^2 .

The Hessian :math:`H` does not depend on :math:`\theta` or on the targets: it is the inputs'
second-moment matrix, their covariance once they have zero mean. (With the unhalved mean
squared error, ``torch.nn.functional.mse_loss``, every curvature doubles.) Its eigenvalues
:math:`\lambda_{\min} \le \dots \le \lambda_{\max}` decide how gradient descent behaves:

* a fixed step :math:`\eta` converges from every start iff :math:`0 < \eta < 2/\lambda_{\max}`;
* the best fixed step, :math:`\eta = 2/(\lambda_{\min} + \lambda_{\max})`, shrinks the distance
  to the minimum by :math:`\rho = (\kappa - 1)/(\kappa + 1)` per step, with
  :math:`\kappa = \lambda_{\max}/\lambda_{\min}` the condition number, so the number of steps
  to a tolerance grows in proportion to :math:`\kappa`;
* the step that minimises :math:`E` along the gradient :math:`g` is
  :math:`\alpha^\star = \|g\|^2 / g^\top H g` (seed 001), and taking it at every step
  (steepest descent) zig-zags, each gradient orthogonal to the previous one.

`loss` builds :math:`E` as a `coursekit.landscapes.Quadratic` (value, gradient, minimiser,
excess loss, and a `Surface` to plot in two dimensions). Normalising the inputs (`standardize`:
zero mean, unit variance per input) removes the spread of :math:`H`'s eigenvalues that comes
from means and units. Stochastic gradient descent (`stochastic_gradient_descent`) steps after
every sample instead of after every pass over the data.

Lecture 1's experiments live here, once, for the notebook and its claim tests: `stretch_sweep`
(steps against :math:`\kappa`), `normalisation_table` (raw against standardised inputs) and
`batch_vs_stochastic` (both methods on a redundant data set).

Example::

    import torch
    from coursekit import linear_unit as lu
    from coursekit.data import two_blobs

    blobs = two_blobs(200, mean_offset=(4, 4), scale=(1, 5), dtype=torch.float64)
    loss = lu.loss(blobs.x_train, blobs.y_train)           # a Quadratic: H, c, e
    lu.condition_number(loss.h)                            # about 700
    lr = lu.best_lr(loss.h)
    path = lu.gradient_descent(loss, lr, steps=100)        # (101, 3)
    lu.iterations_to_tolerance(loss, lr, tol=1e-6)         # thousands of steps
    lu.condition_number(lu.hessian(lu.standardize(blobs.x_train)))  # below 3

Everything works in float64 when given float64 and returns tensors on the inputs' device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from coursekit._checks import count as _check_count
from coursekit._checks import positive as _check_positive

from .data import two_blobs
from .landscapes.surfaces import Quadratic, _check_matrix

__all__ = [
    "BatchVsStochastic",
    "Conditioning",
    "batch_vs_stochastic",
    "best_lr",
    "condition_number",
    "conditioning",
    "convergence_rate",
    "design_matrix",
    "first_below",
    "gradient_descent",
    "gradient_descent_on_data",
    "hessian",
    "iterations_to_tolerance",
    "loss",
    "max_stable_lr",
    "normalisation_table",
    "optimal_step",
    "predicted_iterations",
    "standardize",
    "steepest_descent",
    "stochastic_gradient_descent",
    "stretch_sweep",
]


# --- Validation -----------------------------------------------------------------------------


def _check_inputs(x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.dim() != 2 or len(x) == 0 or not x.is_floating_point():
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"Invalid x: {shape} (must be a float tensor of shape (P, d), P >= 1)")


def _check_targets(x: Tensor, y: Tensor) -> None:
    if not isinstance(y, Tensor) or y.shape != (len(x),):
        shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        raise ValueError(f"Invalid y: {shape} (must be a tensor of shape ({len(x)},))")


# --- The Hessian and its spectrum -----------------------------------------------------------


def design_matrix(x: Tensor, bias: bool = True) -> Tensor:
    r"""The inputs as rows :math:`\tilde x_p = (x_p, 1)`: shape ``(P, d + 1)``, or `x` itself
    (``(P, d)``) without a bias. The bias is a weight on an input that is always 1."""
    _check_inputs(x)
    if not bias:
        return x
    return torch.cat([x, x.new_ones(len(x), 1)], dim=1)


def hessian(x: Tensor, bias: bool = True) -> Tensor:
    r"""The Hessian of the halved mean squared error of a linear unit on inputs `x` (seed 000).

    .. math::
        H = \frac1P \sum_p \tilde x_p \tilde x_p^\top = \frac1P \tilde X^\top \tilde X

    with :math:`\tilde X` the `design_matrix`: ``(d + 1, d + 1)`` with a bias, the last row and
    column being the inputs' mean and 1; ``(d, d)`` without. It does not depend on the weights
    or the targets.
    """
    design = design_matrix(x, bias)
    return design.T @ design / len(design)


def _extreme_eigenvalues(h: Tensor) -> tuple[float, float]:
    _check_matrix(h)
    values = torch.linalg.eigvalsh(h.to(torch.float64))
    return values[0].item(), values[-1].item()


def condition_number(h: Tensor) -> float:
    r""":math:`\kappa = \lambda_{\max} / \lambda_{\min}` of a symmetric matrix; ``inf`` when
    :math:`\lambda_{\min} \le 0` (a singular or indefinite Hessian: no unique minimum)."""
    low, high = _extreme_eigenvalues(h)
    return high / low if low > 0 else math.inf


def max_stable_lr(h: Tensor) -> float:
    r"""The largest fixed step size that still converges, :math:`2 / \lambda_{\max}` (seed 001).

    Along the eigenvector of :math:`\lambda_i` the error is multiplied by
    :math:`1 - \eta \lambda_i` at every step; all these factors lie in :math:`(-1, 1)` iff
    :math:`0 < \eta < 2 / \lambda_{\max}`. At exactly :math:`2/\lambda_{\max}` the top component
    flips sign forever without shrinking; above it, it grows geometrically.
    """
    _, high = _extreme_eigenvalues(h)
    if high <= 0:
        raise ValueError(f"Invalid h: largest eigenvalue {high:.3g} (must be > 0)")
    return 2.0 / high


def best_lr(h: Tensor) -> float:
    r"""The fixed step :math:`2 / (\lambda_{\min} + \lambda_{\max})`, which makes the slowest and
    the fastest direction contract at the same rate :math:`\rho` (`convergence_rate`): the
    best any fixed step can do."""
    low, high = _extreme_eigenvalues(h)
    if low <= 0:
        raise ValueError(f"Invalid h: smallest eigenvalue {low:.3g} (must be > 0)")
    return 2.0 / (low + high)


def convergence_rate(kappa: float) -> float:
    r""":math:`\rho = (\kappa - 1) / (\kappa + 1)`: the factor by which gradient descent with
    `best_lr` shrinks the distance to the minimum, per step, in the worst direction."""
    if not (isinstance(kappa, int | float) and kappa >= 1):
        raise ValueError(f"Invalid kappa: {kappa!r} (must be a number >= 1)")
    return (kappa - 1.0) / (kappa + 1.0)


def predicted_iterations(kappa: float, tol: float) -> int:
    r"""Steps of gradient descent with `best_lr` that guarantee
    :math:`E(\theta_k) - E^\star \le \mathrm{tol}\,(E(\theta_0) - E^\star)`.

    Every eigen-component of the error shrinks by at least :math:`\rho` per step, so the excess
    loss (quadratic in the error) by at least :math:`\rho^2`:

    .. math::
        k = \Bigl\lceil \frac{\ln \mathrm{tol}}{2 \ln \rho} \Bigr\rceil
        \approx \frac{\kappa}{4} \ln \frac{1}{\mathrm{tol}} \quad (\kappa \gg 1).

    The bound is attained when the start excites only the two extreme eigen-directions (always
    so in two dimensions), since both then shrink by exactly :math:`\rho`.
    """
    if not (isinstance(tol, int | float) and 0 < tol < 1):
        raise ValueError(f"Invalid tol: {tol!r} (must be in (0, 1))")
    rho = convergence_rate(kappa)
    if rho == 0:  # kappa = 1: one step lands on the minimum
        return 1
    return math.ceil(math.log(tol) / (2.0 * math.log(rho)) - 1e-9)


def optimal_step(h: Tensor, g: Tensor) -> float:
    r"""The step that minimises a quadratic along the negative gradient (seed 001).

    On a quadratic the second-order Taylor expansion is exact:

    .. math::
        E(\theta - \alpha g) = E(\theta) - \alpha\, \|g\|^2 + \tfrac12 \alpha^2\, g^\top H g,

    a parabola in :math:`\alpha` with its minimum at :math:`\alpha^\star = \|g\|^2 / g^\top H g`.
    Since :math:`g^\top H g / \|g\|^2` lies between :math:`\lambda_{\min}` and
    :math:`\lambda_{\max}`, :math:`\alpha^\star` lies between :math:`1/\lambda_{\max}` and
    :math:`1/\lambda_{\min}`.
    """
    _check_matrix(h)
    if not isinstance(g, Tensor) or g.shape != (len(h),):
        shape = tuple(g.shape) if isinstance(g, Tensor) else type(g).__name__
        raise ValueError(f"Invalid g: {shape} (must be a vector of shape ({len(h)},))")
    curvature = (g @ h @ g).item()
    if curvature <= 0:
        raise ValueError(
            f"Invalid g: curvature g'Hg = {curvature:.3g} along it (must be > 0 for a minimum)"
        )
    return (g @ g).item() / curvature


def standardize(x: Tensor) -> Tensor:
    r"""Every input variable shifted to zero mean and scaled to unit variance (seed 000).

    .. math::
        x_{pi} \leftarrow \frac{x_{pi} - \mu_i}{\sigma_i}, \qquad
        \mu_i = \frac1P \sum_p x_{pi}, \quad \sigma_i^2 = \frac1P \sum_p (x_{pi} - \mu_i)^2

    The variance divides by :math:`P` (``unbiased=False``), so the standardised inputs' Hessian
    without bias is exactly their correlation matrix, with ones on its diagonal.
    (`coursekit.data.standardize` divides by :math:`P - 1`, torch's default, and applies the
    training set's statistics to a test set.) A constant variable is only shifted.
    """
    _check_inputs(x)
    mean = x.mean(dim=0)
    std = x.std(dim=0, correction=0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return (x - mean) / std


# --- The loss as a quadratic ----------------------------------------------------------------


def loss(x: Tensor, y: Tensor, bias: bool = True) -> Quadratic:
    r"""The halved mean squared error of a linear unit on inputs ``x (P, d)`` and targets
    ``y (P,)``, as the quadratic :math:`E(\theta) = \frac12 \theta^\top H \theta - c^\top
    \theta + e` (module docstring):

    .. math::
        H = \tilde X^\top \tilde X / P, \qquad c = \tilde X^\top y / P, \qquad
        e = y^\top y / 2P,

    with :math:`\tilde X` the `design_matrix`; :math:`\theta = (w, b)`, the bias last (``(d,)``
    without a bias).
    """
    design = design_matrix(x, bias)
    _check_targets(x, y)
    y = y.to(design.dtype)
    p = len(design)
    return Quadratic(design.T @ design / p, design.T @ y / p, (y @ y).item() / (2 * p))


# --- Gradient descent -----------------------------------------------------------------------


def _start(like: Tensor, start: Tensor | None) -> Tensor:
    """`start` as a fresh vector with the dtype and device of `like`; zeros when None."""
    if start is None:
        return torch.zeros_like(like)
    start = torch.as_tensor(start, dtype=like.dtype, device=like.device)
    if start.shape != like.shape:
        raise ValueError(f"Invalid start: {tuple(start.shape)} (must be {tuple(like.shape)})")
    return start.clone()


def gradient_descent(loss: Quadratic, lr: float, steps: int, start: Tensor | None = None) -> Tensor:
    r"""Batch gradient descent with a fixed step, :math:`\theta_{k+1} = \theta_k - \eta
    \nabla E(\theta_k)`, from `start` (default 0).

    Returns the points visited, ``(steps + 1, d)``; row 0 is the start. A diverging run is
    recorded as it goes (large values, then ``inf`` and ``nan``).
    """
    _check_positive("lr", lr)
    _check_count("steps", steps, 0)
    theta = _start(loss.c, start)
    path = [theta]
    for _ in range(steps):
        theta = theta - lr * loss.grad(theta)
        path.append(theta)
    return torch.stack(path)


def steepest_descent(loss: Quadratic, steps: int, start: Tensor | None = None) -> Tensor:
    r"""Gradient descent with the exact line minimiser at every step (`optimal_step`):
    :math:`\theta_{k+1} = \theta_k - \alpha_k g_k`, :math:`\alpha_k = \|g_k\|^2 / g_k^\top H g_k`.

    Each new gradient is orthogonal to the previous one (:math:`g_{k+1}^\top g_k = 0`, since
    :math:`\alpha_k` makes the directional derivative vanish), which makes the path zig-zag
    in a narrow valley. Returns ``(steps + 1, d)``; a zero gradient stops the path where it is.
    """
    _check_count("steps", steps, 0)
    theta = _start(loss.c, start)
    path = [theta]
    for _ in range(steps):
        g = loss.grad(theta)
        if torch.count_nonzero(g) > 0:
            theta = theta - optimal_step(loss.h, g) * g
        path.append(theta)
    return torch.stack(path)


def iterations_to_tolerance(
    loss: Quadratic,
    lr: float,
    tol: float,
    start: Tensor | None = None,
    max_steps: int = 100_000,
) -> int | None:
    r"""The first :math:`k` at which gradient descent with step `lr` reaches
    :math:`E(\theta_k) - E^\star \le \mathrm{tol}\,(E(\theta_0) - E^\star)`.

    Returns 0 when the start is the minimum, and None when `max_steps` steps are not enough
    or the run diverges. Compare with `predicted_iterations`. With a stable step every
    eigen-component of the error shrinks, so the excess loss never rises: once it is above its
    starting value the step is unstable and the count stops there.
    """
    _check_positive("lr", lr)
    if not (isinstance(tol, int | float) and 0 < tol < 1):
        raise ValueError(f"Invalid tol: {tol!r} (must be in (0, 1))")
    _check_count("max_steps", max_steps, 0)
    theta = _start(loss.c, start)
    initial = loss.excess(theta).item()
    if initial == 0:
        return 0
    for k in range(1, max_steps + 1):
        theta = theta - lr * loss.grad(theta)
        gap = loss.excess(theta).item()
        if gap <= tol * initial:
            return k
        if not gap <= initial:  # rising (or nan): lr >= 2 / lambda_max
            return None
    return None


def gradient_descent_on_data(
    x: Tensor, y: Tensor, lr: float, steps: int, bias: bool = True
) -> Tensor:
    r"""The parameters :math:`\theta = (w, b)` after `steps` steps of batch gradient descent
    from :math:`\theta_0 = 0` on inputs ``x (P, d)`` and targets ``y (P,)``:

    .. math::
        \theta_{k+1} = \theta_k - \eta\, \frac1P \tilde X^\top (\tilde X \theta_k - y).

    Shape ``(d + 1,)``, the bias last (``(d,)`` without a bias). Assignment 1's reference.
    """
    return gradient_descent(loss(x, y, bias), lr, steps)[-1]


# --- Stochastic gradient descent ------------------------------------------------------------


def stochastic_gradient_descent(
    x: Tensor,
    y: Tensor,
    lr: float,
    epochs: int,
    *,
    bias: bool = True,
    start: Tensor | None = None,
    seed: int = 0,
) -> Tensor:
    r"""Stochastic gradient descent on a linear unit, one sample per step (seed 000).

    Each epoch visits the samples in a new random order (``torch.randperm`` with one
    ``torch.Generator`` seeded with `seed`, a permutation per epoch) and, for each,
    steps along the gradient of that sample's loss alone:

    .. math::
        \theta \leftarrow \theta + \eta\, \bigl(y_p - \theta^\top \tilde x_p\bigr)\, \tilde x_p .

    On average this is the batch gradient, so SGD moves after every sample instead of after
    every pass; with a fixed :math:`\eta` it never settles, but fluctuates around the minimum.

    Returns the parameters after every sample, ``(epochs * P + 1, d)`` (``d + 1`` with a
    bias); row 0 is the start (default 0). ``loss(x, y, bias).value(path)`` gives the loss
    over the whole set along the way. (`coursekit.optim.SGD` is the optimizer for any model.)
    """
    design = design_matrix(x, bias)
    _check_targets(x, y)
    _check_positive("lr", lr)
    _check_count("epochs", epochs, 0)
    y = y.to(design.dtype)
    theta = _start(design[0], start)
    generator = torch.Generator().manual_seed(seed)
    path = [theta]
    for _ in range(epochs):
        for p in torch.randperm(len(design), generator=generator).tolist():
            residual = y[p] - design[p] @ theta
            theta = theta + lr * residual * design[p]
            path.append(theta)
    return torch.stack(path)


def first_below(values: Tensor, level: float) -> int | None:
    """The index of the first entry of a 1-D sequence that is ``<= level``; None if none is."""
    values = torch.as_tensor(values)
    if values.dim() != 1:
        raise ValueError(f"Invalid values: {tuple(values.shape)} (must be 1-D)")
    hits = torch.nonzero(values <= level)
    return int(hits[0]) if len(hits) else None


# --- Lecture 1's experiments ----------------------------------------------------------------


@dataclass(frozen=True)
class Conditioning:
    r"""How hard a linear unit's loss is for gradient descent with the best fixed step.

    Attributes:
        kappa: the condition number :math:`\kappa = \lambda_{\max} / \lambda_{\min}` of
            :math:`H`.
        steps: the steps gradient descent with `best_lr` takes from 0 until
            :math:`E - E^\star \le \mathrm{tol}\,(E(0) - E^\star)` (`iterations_to_tolerance`);
            None when 100,000 steps are not enough.
        predicted: `predicted_iterations` (kappa, tol), an upper bound on `steps`, equal to it
            in two dimensions.
    """

    kappa: float
    steps: int | None
    predicted: int


def conditioning(x: Tensor, y: Tensor, tol: float, *, bias: bool = False) -> Conditioning:
    r"""The condition number of a linear unit's loss on ``x (P, d)``, ``y (P,)`` and the steps
    gradient descent with the best fixed step :math:`\eta = 2 / (\lambda_{\min} +
    \lambda_{\max})` takes from :math:`\theta = 0` to shrink :math:`E - E^\star` by `tol`.

    Along eigenvector :math:`q_i` the error is multiplied by :math:`1 - \eta\lambda_i` per
    step, so (seed 001)

    .. math::
        E(\theta_k) - E^\star = \sum_i \frac{\lambda_i}{2}\, (1 - \eta\lambda_i)^{2k}
        \bigl(q_i^\top (\theta_0 - \theta^\star)\bigr)^2
        \le \rho^{2k}\, \bigl(E(\theta_0) - E^\star\bigr), \qquad
        \rho = \frac{\kappa - 1}{\kappa + 1}.
    """
    bowl = loss(x, y, bias)
    kappa = condition_number(bowl.h)
    return Conditioning(
        kappa=kappa,
        steps=iterations_to_tolerance(bowl, best_lr(bowl.h), tol),
        predicted=predicted_iterations(kappa, tol),
    )


def stretch_sweep(
    stretches: Sequence[float],
    tol: float,
    *,
    n: int = 200,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> list[Conditioning]:
    r"""Condition number and steps to `tol` as one input is stretched (seed 000: convergence is
    slow when the Hessian's eigenvalues differ).

    For each stretch :math:`s`, the training set of centred two blobs
    (``coursekit.data.two_blobs(n, seed=seed, scale=(1, s))``: the same draws every time, the
    second input multiplied by :math:`s`, so :math:`H_{22}` by :math:`s^2`) and its
    `conditioning` without a bias. For large :math:`\kappa` the steps grow linearly,

    .. math::
        k = \Bigl\lceil \frac{\ln \mathrm{tol}}{2 \ln \rho} \Bigr\rceil \approx
        \frac{\kappa}{4} \ln \frac{1}{\mathrm{tol}} .
    """
    results = []
    for s in stretches:
        _check_positive("stretches", s)
        data = two_blobs(n, seed=seed, scale=(1.0, s), dtype=dtype)
        results.append(conditioning(data.x_train, data.y_train, tol))
    return results


def normalisation_table(x: Tensor, y: Tensor, tol: float) -> dict[tuple[str, bool], Conditioning]:
    r"""`conditioning` of the inputs as they are (``"raw"``) and standardised by `standardize`
    (``"standardised"``), without and with a bias: keys ``(name, bias)``.

    LeCun's prescription (seed 000; LeCun, Bottou, Orr and Müller, "Efficient BackProp",
    1998): zero mean and unit variance. Standardised, the Hessian without a bias is the
    inputs' correlation matrix; in two dimensions

    .. math::
        H_{\text{std}} = \begin{pmatrix} 1 & r \\ r & 1 \end{pmatrix}, \quad
        \lambda = 1 \pm r, \quad \kappa_{\text{std}} = \frac{1 + |r|}{1 - |r|},

    and a bias only adds the decoupled eigenvalue 1 (the mean is zero), so
    :math:`\kappa_{\text{std}}` is the same with a bias. On raw inputs the bias adds the row
    and column :math:`(\mu, 1)`, which by eigenvalue interlacing can only raise :math:`\kappa`.
    """
    inputs = {"raw": x, "standardised": standardize(x)}
    return {
        (name, bias): conditioning(inputs[name], y, tol, bias=bias)
        for bias in (False, True)
        for name in ("raw", "standardised")
    }


@dataclass(frozen=True)
class BatchVsStochastic:
    r"""Batch gradient descent and SGD on one data set, both from :math:`\theta = 0`, their
    excess loss :math:`(E - E^\star) / (E(0) - E^\star)` over the whole set.

    Attributes:
        samples_per_pass: :math:`P`, the samples one batch step (one pass) costs.
        batch: after each of ``epochs`` batch steps, ``(epochs + 1,)``; row 0 is the start, 1.
        stochastic: after each SGD step (one sample), ``(epochs * P + 1,)``.
    """

    samples_per_pass: int
    batch: Tensor
    stochastic: Tensor

    def samples_to(self, fraction: float) -> tuple[int | None, int | None]:
        """Samples seen by (SGD, batch GD) when their excess first reaches `fraction` of its
        start; None for one that does not within the run."""
        _check_positive("fraction", fraction)
        sgd_samples = first_below(self.stochastic, fraction)
        batch_steps = first_below(self.batch, fraction)
        return sgd_samples, None if batch_steps is None else batch_steps * self.samples_per_pass

    def sgd_pass(self, k: int) -> Tensor:
        """SGD's excess over its `k`-th pass (1-based; -1 for the last), ``(P,)``."""
        passes = (len(self.stochastic) - 1) // self.samples_per_pass
        if isinstance(k, bool) or not isinstance(k, int) or not (1 <= k <= passes or k == -1):
            raise ValueError(f"Invalid k: {k!r} (must be in 1..{passes}, or -1)")
        first = 1 + ((passes if k == -1 else k) - 1) * self.samples_per_pass
        return self.stochastic[first : first + self.samples_per_pass]


def batch_vs_stochastic(
    x: Tensor,
    y: Tensor,
    *,
    copies: int,
    lr: float,
    epochs: int,
    seed: int = 0,
    bias: bool = False,
) -> BatchVsStochastic:
    r"""Batch GD against SGD on a redundant data set: ``(x, y)`` repeated `copies` times (seed
    000: "stochastic gradient: much faster, but fluctuates near the minimum").

    Repeating the data changes neither :math:`E` nor :math:`H`, so batch GD with the best fixed
    step :math:`\eta = 2 / (\lambda_{\min} + \lambda_{\max})` takes the same steps as on
    one copy, :math:`\theta_{k+1} = \theta_k - \eta \nabla E(\theta_k)`, `epochs` of them,
    each costing :math:`P = ` ``copies * len(x)`` samples. `stochastic_gradient_descent` with
    step `lr` makes ``epochs * P`` steps :math:`\theta \leftarrow \theta + \mathrm{lr}\,(y_p -
    \theta^\top \tilde x_p)\, \tilde x_p`, in the order it draws from `seed`.
    """
    if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
        raise ValueError(f"Invalid copies: {copies!r} (must be an int >= 1)")
    _check_inputs(x)
    _check_targets(x, y)
    big_x, big_y = x.repeat(copies, 1), y.repeat(copies)  # (copies * len(x), d)
    bowl = loss(big_x, big_y, bias)
    start = bowl.excess(torch.zeros_like(bowl.c))
    batch = bowl.excess(gradient_descent(bowl, best_lr(bowl.h), epochs))
    path = stochastic_gradient_descent(big_x, big_y, lr, epochs, bias=bias, seed=seed)
    stochastic = bowl.excess(path)
    return BatchVsStochastic(len(big_x), batch / start, stochastic / start)
