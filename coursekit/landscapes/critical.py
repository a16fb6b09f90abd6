r"""Critical points of small networks: where a search finds them, and where theory puts them.

A critical point (:math:`\nabla L = 0`) is a minimum or a saddle; its *index*, the number of
negative Hessian eigenvalues, says which. What a search finds depends on the search: gradient
descent on :math:`L` is pushed away from saddles and ends in minima, while Newton's method, or
descent on :math:`\tfrac12 \|\nabla L\|^2`, is drawn to whatever critical point is near
(Dauphin et al. 2014). So the share of saddles among the points found says more about the
method than about the landscape. `search_critical_points` therefore starts the same Newton
solver from three kinds of points, and labels every result with where it started:

- ``"trained"``: nets trained to convergence by gradient descent (minima);
- ``"path"``: points on the straight lines between two trained nets (saddles between minima);
- ``"random"``: fresh random initialisations.

For one landscape the whole answer is known. A linear net :math:`x \mapsto W_2 W_1 x` fitting
a linear map :math:`M = U \mathrm{diag}(s) V^\top` from whitened inputs has one family of
critical points per subset of the target's singular directions that it keeps (Baldi & Hornik
1989; seed 004 studies the same nets' trajectories). `deep_linear_critical_points` lists them
with their loss and index, and `linear_map_task` builds the data, so a search can be checked
against the list.

    task = linear_map_task([3.0, 2.0, 1.0])
    found = search_critical_points(
        lambda g: MLP([3, 3, 3], activation="linear", bias=False, generator=g).double(),
        task.loss,
    )
    known = {(round(p.loss, 9), p.index) for p in deep_linear_critical_points(task)}
    assert all((round(f.point.loss, 9), f.point.index) in known for f in found if f.converged)
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from coursekit import curvature

__all__ = [
    "FoundPoint",
    "KnownCriticalPoint",
    "LinearMapTask",
    "deep_linear_critical_points",
    "linear_map_task",
    "search_critical_points",
]

LossFn = Callable[[nn.Module], Tensor]


# --- The deep linear net: data and closed form ----------------------------------------------


@dataclass(frozen=True)
class LinearMapTask:
    r"""Whitened inputs and the targets of a linear map, for a linear net to fit.

    Attributes:
        x: inputs ``(n, d)`` with :math:`x^\top x / n = I` exactly.
        y: targets ``(n, d)``, :math:`y_i = M x_i`.
        target: :math:`M = U \mathrm{diag}(s) V^\top`, ``(d, d)``.
        left, right: the orthogonal :math:`U` and :math:`V`, ``(d, d)``.
        singular_values: :math:`s`, ``(d,)``, in decreasing order.
    """

    x: Tensor
    y: Tensor
    target: Tensor
    left: Tensor
    right: Tensor
    singular_values: Tensor

    def loss(self, model: nn.Module) -> Tensor:
        r"""Half the mean squared distance of the outputs to the targets.

        .. math::
            L = \frac{1}{2n} \sum_{i=1}^n \|f(x_i) - y_i\|^2
              = \tfrac12 \|W - M\|_F^2 \quad \text{for a linear } f(x) = Wx,

        the second form because the inputs are whitened.
        """
        return 0.5 * (model(self.x) - self.y).square().sum(dim=1).mean()


def _orthogonal(d: int, generator: torch.Generator, dtype: torch.dtype) -> Tensor:
    q, r = torch.linalg.qr(torch.randn(d, d, generator=generator, dtype=dtype))
    return q * torch.sign(torch.diagonal(r))  # Haar-distributed, not just orthogonal


def linear_map_task(
    singular_values: Sequence[float],
    *,
    samples: int | None = None,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
) -> LinearMapTask:
    r"""A random linear map with the given singular values, and whitened inputs to fit it from.

    :math:`U` and :math:`V` are random orthogonal matrices; the inputs are :math:`\sqrt n`
    times an orthonormal basis of the span of ``n`` Gaussian samples, so their second-moment
    matrix is exactly the identity and the loss of a linear net is
    :math:`\tfrac12 \|W_2 W_1 - M\|_F^2`, whose critical points `deep_linear_critical_points`
    lists.

    Args:
        singular_values: :math:`s_1 > s_2 > \dots > s_d > 0` (sorted if given in another order).
        samples: number of inputs ``n >= d`` (default ``4 d``).
        seed: draws :math:`U`, :math:`V` and the inputs.
        dtype: of every tensor (default float64: the searches converge to ``1e-10``).
    """
    s = torch.as_tensor(list(singular_values), dtype=dtype).sort(descending=True).values
    d = s.numel()
    if d < 1 or not bool((s > 0).all()):
        raise ValueError(f"Invalid singular_values: {list(singular_values)!r} (must be > 0)")
    n = 4 * d if samples is None else samples
    if isinstance(n, bool) or not isinstance(n, int) or n < d:
        raise ValueError(f"Invalid samples: {samples!r} (must be an int >= {d})")
    generator = torch.Generator().manual_seed(seed)
    left = _orthogonal(d, generator, dtype)
    right = _orthogonal(d, generator, dtype)
    basis, _ = torch.linalg.qr(torch.randn(n, d, generator=generator, dtype=dtype))  # (n, d)
    x = math.sqrt(n) * basis  # x^T x / n = basis^T basis = I
    target = left @ torch.diag(s) @ right.T
    return LinearMapTask(x, x @ target.T, target, left, right, s)


@dataclass(frozen=True)
class KnownCriticalPoint:
    r"""One critical point of the d-d-d linear net, in closed form.

    Attributes:
        kept: which singular directions the net keeps (indices into the decreasing
            ``singular_values``).
        loss: :math:`\tfrac12 \sum_{j \notin J} s_j^2`.
        index: the number of negative Hessian eigenvalues (the same at every point of the
            family).
        first, second: one representative, :math:`W_1` and :math:`W_2`, ``(d, d)`` each.
    """

    kept: tuple[int, ...]
    loss: float
    index: int
    first: Tensor
    second: Tensor


def deep_linear_critical_points(task: LinearMapTask) -> list[KnownCriticalPoint]:
    r"""Every family of critical points of the d-d-d linear net on `task`, with loss and index.

    With whitened inputs, :math:`L(W_1, W_2) = \tfrac12 \|W_2 W_1 - M\|_F^2`. Baldi & Hornik
    (1989) show that at a critical point the product keeps a subset :math:`J` of the singular
    directions of :math:`M` and drops the rest,

    .. math::
        W_2 W_1 = U_J \mathrm{diag}(s_J) V_J^\top, \qquad
        L = \tfrac12 \sum_{j \notin J} s_j^2,

    and that only :math:`J = \{1, \dots, d\}` gives minima (all global): every other subset
    gives saddles. One representative is :math:`W_1 = D V^\top`, :math:`W_2 = U D` with
    :math:`D = \mathrm{diag}(\sqrt{s_j}\, [j \in J])`; the others follow from it by
    :math:`(W_1, W_2) \to (G W_1, W_2 G^{-1})`, which leaves the loss unchanged.

    The index, counted here for this representative: in the singular bases the Hessian splits
    into small blocks. A dropped direction :math:`j` on its own is the 1-1-1 net's saddle,
    eigenvalues :math:`\pm s_j`; each pair of dropped directions adds two more negative
    eigenvalues (:math:`-s_a`, :math:`-s_b`); a kept :math:`a` with a dropped :math:`b`
    gives :math:`s_a - s_b`, negative when the larger one was dropped. With :math:`m` dropped,

    .. math::
        \mathrm{index}(J) = m^2 + \#\{(a, b) : a \in J,\ b \notin J,\ s_b > s_a\}.

    The map :math:`(W_1, W_2) \to (G W_1, W_2 G^{-1})` turns the Hessian at one point of a
    family into a congruent one at another, so by Sylvester's law of inertia the index is
    the same at every point of the family. tests/test_lecture2_claims.py checks the count
    against dense Hessians.

    Returns:
        One `KnownCriticalPoint` per subset, :math:`2^d` of them, by increasing loss.
    """
    s = task.singular_values
    d = s.numel()
    if bool((s[:-1] <= s[1:]).any()):
        raise ValueError(
            f"Invalid task: singular values {s.tolist()} must be distinct (the count of the "
            "index assumes no ties)"
        )
    points = []
    for size in range(d + 1):
        for kept in itertools.combinations(range(d), size):
            dropped = [j for j in range(d) if j not in kept]
            m = len(dropped)
            inversions = sum(1 for a in kept for b in dropped if s[b] > s[a])
            root = torch.zeros_like(s)
            root[list(kept)] = s[list(kept)].sqrt()
            points.append(
                KnownCriticalPoint(
                    kept=kept,
                    loss=0.5 * float(s[dropped].square().sum()),
                    index=m * m + inversions,
                    first=torch.diag(root) @ task.right.T,
                    second=task.left @ torch.diag(root),
                )
            )
    return sorted(points, key=lambda p: (p.loss, p.kept))


# --- The search ------------------------------------------------------------------------------


@dataclass(frozen=True)
class FoundPoint:
    """Where one Newton search of `search_critical_points` stopped.

    Attributes:
        start: ``"trained"``, ``"path"`` or ``"random"``: what the search started from.
        point: loss, gradient norm, index, eigenvalues, Newton steps and convergence.
        theta: the flat parameter vector there, in the order of ``model.parameters()``.
    """

    start: str
    point: curvature.CriticalPoint
    theta: Tensor

    @property
    def converged(self) -> bool:
        return self.point.converged


def _grad_norm(model: nn.Module, loss_fn: LossFn) -> float:
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(loss_fn(model), params)
    return math.sqrt(sum(float(g.square().sum()) for g in grads))


def _descend(
    model: nn.Module, loss_fn: LossFn, *, steps: int, lr: float, momentum: float, tol: float
) -> bool:
    """Gradient descent with momentum on `loss_fn` until the gradient norm is at most `tol`."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum)
    reached = False
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model).backward()
        reached = math.sqrt(sum(float(p.grad.square().sum()) for p in params)) <= tol
        if reached:
            break
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return reached or _grad_norm(model, loss_fn) <= tol


def _describe(model: nn.Module, loss_fn: LossFn, grad_tol: float) -> curvature.CriticalPoint:
    """Loss, gradient norm and spectrum where a training run stopped short of `grad_tol`."""
    eigenvalues = torch.linalg.eigvalsh(curvature.hessian(model, loss_fn))
    grad_norm = _grad_norm(model, loss_fn)
    with torch.no_grad():
        loss = float(loss_fn(model))
    return curvature.CriticalPoint(
        loss=loss,
        grad_norm=grad_norm,
        index=curvature.index(model, loss_fn),
        eigenvalues=eigenvalues,
        steps=0,
        converged=grad_norm <= grad_tol,
    )


def _check(name: str, value: object, *, minimum: float, integer: bool = False) -> None:
    bad = isinstance(value, bool) or not isinstance(value, int if integer else (int, float))
    if bad or not math.isfinite(value) or value < minimum:
        kind = "an int" if integer else "a number"
        raise ValueError(f"Invalid {name}: {value!r} (must be {kind} >= {minimum})")


def search_critical_points(
    make_model: Callable[[torch.Generator], nn.Module],
    loss_fn: LossFn,
    *,
    starts: int = 6,
    random_starts: int | None = None,
    path_points: Sequence[float] = (0.25, 0.5, 0.75),
    train_steps: int = 3000,
    lr: float = 0.1,
    momentum: float = 0.9,
    train_tol: float = 1e-6,
    grad_tol: float = 1e-10,
    newton_steps: int = 100,
    seed: int = 0,
) -> list[FoundPoint]:
    r"""Find minima and saddles of a small model's loss, each labelled with where it started.

    1. **Minima by training**: ``starts`` models from ``make_model``, each trained by
       full-batch gradient descent with momentum until :math:`\|\nabla L\| \le`
       ``train_tol``, then polished by `coursekit.curvature.newton_critical_point` to
       ``grad_tol``. A run that does not reach ``train_tol`` in ``train_steps`` is reported
       where it stopped, not converged (it may be stuck near a saddle).
    2. **Saddles between minima**: for every pair :math:`(\theta_a, \theta_b)` of converged
       trained points and every :math:`t` in ``path_points``, Newton's method from
       :math:`(1 - t)\theta_a + t\theta_b`. Two minima are separated by higher ground, and
       Newton's method converges to the critical point near its start, of any index.
    3. **Random starts**: ``random_starts`` (default ``starts``) fresh models, Newton's
       method directly.

    Every point found is a critical point to ``grad_tol`` when ``converged``; its index
    comes from the dense Hessian. How many points of each kind turn up is set by the starts,
    not by the landscape: training only ends in minima, Newton from random starts mostly in
    saddles. Dense Hessians at every step: for models of up to a few hundred parameters.

    Args:
        make_model: ``make_model(generator)`` builds a model with random weights drawn from
            ``generator`` (float64 recommended). One generator seeded with ``seed`` is passed
            to every call, trained starts first.
        loss_fn: ``loss_fn(model)``, the full-batch loss.
        path_points: the :math:`t` of the points on each path, each in :math:`(0, 1)`.
        lr, momentum: of the training (``torch.optim.SGD``).
        newton_steps: at most this many Newton steps per search.

    Returns:
        The trained points, then the path points (pairs in order, then :math:`t`), then the
        random starts.
    """
    _check("starts", starts, minimum=1, integer=True)
    if random_starts is not None:
        _check("random_starts", random_starts, minimum=0, integer=True)
    if not all(isinstance(t, (int, float)) and 0 < t < 1 for t in path_points):
        raise ValueError(f"Invalid path_points: {list(path_points)!r} (each must be in (0, 1))")
    _check("train_steps", train_steps, minimum=1, integer=True)
    _check("newton_steps", newton_steps, minimum=1, integer=True)
    for name, value in (("lr", lr), ("train_tol", train_tol), ("grad_tol", grad_tol)):
        _check(name, value, minimum=0.0)
        if value == 0:
            raise ValueError(f"Invalid {name}: {value!r} (must be > 0)")
    _check("momentum", momentum, minimum=0.0)

    generator = torch.Generator().manual_seed(seed)
    found: list[FoundPoint] = []

    def newton(start: str, model: nn.Module) -> None:
        point = curvature.newton_critical_point(
            model, loss_fn, steps=newton_steps, grad_tol=grad_tol
        )
        found.append(FoundPoint(start, point, parameters_to_vector(model.parameters()).detach()))

    for _ in range(starts):
        model = make_model(generator)
        if _descend(model, loss_fn, steps=train_steps, lr=lr, momentum=momentum, tol=train_tol):
            newton("trained", model)
        else:
            theta = parameters_to_vector(model.parameters()).detach()
            found.append(FoundPoint("trained", _describe(model, loss_fn, grad_tol), theta))

    minima = [f.theta for f in found if f.converged]
    model = make_model(generator)  # a container for the path points
    for a, b in itertools.combinations(range(len(minima)), 2):
        for t in path_points:
            with torch.no_grad():
                vector_to_parameters((1 - t) * minima[a] + t * minima[b], model.parameters())
            newton("path", model)

    for _ in range(starts if random_starts is None else random_starts):
        newton("random", make_model(generator))
    return found
