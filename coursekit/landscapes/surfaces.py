r"""Two-dimensional test functions for watching optimizers move, and the general quadratic.

Each `Surface` bundles a function :math:`f : \mathbb{R}^2 \to \mathbb{R}`, its gradient
written out by hand (so autograd can be checked against it, and not the other way round),
the known global minimisers, a plotting window and a standard starting point.

`Quadratic` is the one quadratic of the library, in any dimension: the `quadratic` bowl is a
two-dimensional one, and so is lecture 1's linear unit on two inputs
(`coursekit.linear_unit.loss`); `Quadratic.surface` turns any two-dimensional one into a
`Surface`.

Points are tensors whose last dimension holds the two coordinates, so one call evaluates a
single point of shape ``(2,)``, a trajectory of shape ``(T, 2)`` or a whole meshgrid of shape
``(H, W, 2)``. Constants are Python floats, or tensors moved to the input (a `Quadratic`'s),
so they take the dtype and device of the input, and the same code runs in float32 or float64,
on the CPU or an accelerator.

Example::

    import torch
    from coursekit.landscapes import rosenbrock, trajectory

    surface = rosenbrock()
    path = trajectory(surface, lambda p: torch.optim.Adam(p, lr=0.05), steps=300)
    losses = surface.value(path)  # (301,): the loss curve of the run, in one call
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

__all__ = [
    "Quadratic",
    "Surface",
    "all_surfaces",
    "beale",
    "one_one_one_net",
    "quadratic",
    "rosenbrock",
    "saddle",
    "trajectory",
]

_Point = tuple[float, float]


@dataclass(frozen=True, eq=False)
class Surface:
    """A differentiable function of two variables with what is known about it.

    Attributes:
        name: human-readable name, used as the title of plots.
        value: ``xy (..., 2) -> (...)``; built from torch operations, so autograd works.
        grad: ``xy (..., 2) -> (..., 2)``; the gradient by a hand-derived formula.
        minima: known global minimisers (empty when the function is unbounded below).
        min_value: the value at the minimisers (``-inf`` when unbounded below).
        bounds: ``((x_lo, x_hi), (y_lo, y_hi))``, a window that shows the interesting part.
        start: a standard starting point for optimizer demonstrations.
        labels: names of the two coordinates, for axis labels.
    """

    name: str
    value: Callable[[Tensor], Tensor]
    grad: Callable[[Tensor], Tensor]
    minima: tuple[_Point, ...]
    min_value: float
    bounds: tuple[_Point, _Point]
    start: _Point
    labels: tuple[str, str] = ("x", "y")

    def __call__(self, xy: Tensor) -> Tensor:
        return self.value(xy)


def _xy(xy: Tensor) -> tuple[Tensor, Tensor]:
    if xy.shape[-1:] != (2,):
        raise ValueError(f"xy must have a last dimension of size 2, got shape {tuple(xy.shape)}")
    return xy[..., 0], xy[..., 1]


def _check_finite(name: str, value: float) -> None:
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")


def _check_matrix(h: Tensor) -> None:
    if not isinstance(h, Tensor) or h.dim() != 2 or h.shape[0] != h.shape[1] or len(h) == 0:
        shape = tuple(h.shape) if isinstance(h, Tensor) else type(h).__name__
        raise ValueError(f"Invalid h: {shape} (must be a square matrix (d, d))")
    if not torch.allclose(h, h.T, rtol=1e-6, atol=1e-9 * float(h.abs().max())):
        raise ValueError("Invalid h: not symmetric (a Hessian is)")


@dataclass(frozen=True)
class Quadratic:
    r"""The quadratic :math:`E(\theta) = \tfrac12 \theta^\top H \theta - c^\top \theta + e` on
    :math:`\mathbb{R}^d`, with :math:`H` symmetric.

    .. math::
        \nabla E(\theta) = H\theta - c, \qquad \nabla^2 E = H, \qquad
        \theta^\star = H^{-1} c, \qquad
        E(\theta) - E^\star = \tfrac12 (\theta - \theta^\star)^\top H (\theta - \theta^\star)

    The minimiser and the excess need :math:`H` positive definite. The Hessian is the same
    everywhere, so how gradient descent moves on a quadratic is decided by :math:`H`'s
    eigenvalues alone (lecture 1, `coursekit.linear_unit`).

    Methods take points of shape ``(..., d)``, so one call evaluates a single point, a path
    ``(T, d)`` or a grid ``(H, W, d)``, in the points' dtype and on their device.

    Attributes:
        h: :math:`H`, ``(d, d)``.
        c: :math:`c`, ``(d,)``.
        e: the constant :math:`e`.
    """

    h: Tensor
    c: Tensor
    e: float = 0.0

    def __post_init__(self) -> None:
        _check_matrix(self.h)
        if not isinstance(self.c, Tensor) or self.c.shape != (len(self.h),):
            shape = tuple(self.c.shape) if isinstance(self.c, Tensor) else type(self.c).__name__
            raise ValueError(f"Invalid c: {shape} (must be a vector of shape ({len(self.h)},))")

    @property
    def dim(self) -> int:
        return len(self.h)

    def value(self, theta: Tensor) -> Tensor:
        r""":math:`E(\theta)`, shape ``(...)`` for points ``(..., d)``."""
        h, c = self.h.to(theta), self.c.to(theta)
        return 0.5 * ((theta @ h) * theta).sum(-1) - theta @ c + self.e

    def grad(self, theta: Tensor) -> Tensor:
        r""":math:`\nabla E(\theta) = H\theta - c`, shape ``(..., d)``."""
        return theta @ self.h.to(theta) - self.c.to(theta)  # H is symmetric: theta H = H theta

    def minimizer(self) -> Tensor:
        r""":math:`\theta^\star = H^{-1} c`, where the gradient vanishes."""
        return torch.linalg.solve(self.h, self.c)

    def min_value(self) -> float:
        r""":math:`E^\star = e - \frac12 c^\top \theta^\star`."""
        return self.e - 0.5 * (self.c @ self.minimizer()).item()

    def excess(self, theta: Tensor) -> Tensor:
        r""":math:`E(\theta) - E^\star = \frac12 (\theta - \theta^\star)^\top H
        (\theta - \theta^\star)`, computed from the error so that it stays accurate near 0."""
        error = theta - self.minimizer().to(theta)
        return 0.5 * ((error @ self.h.to(theta)) * error).sum(-1)

    def surface(
        self,
        bounds: tuple[_Point, _Point] | None = None,
        name: str = "quadratic",
        start: _Point = (0.0, 0.0),
        labels: tuple[str, str] = ("x", "y"),
    ) -> Surface:
        """A two-dimensional quadratic as a `Surface`, for `coursekit.plotting`.

        `bounds` default to a square window around the minimum that holds `start`.
        """
        if self.dim != 2:
            raise ValueError(f"Invalid dim: {self.dim} (a surface needs exactly 2 parameters)")
        star = self.minimizer()
        if bounds is None:
            corner = torch.tensor(start, dtype=star.dtype)
            reach = 1.25 * (corner - star).abs().max().clamp(min=1e-3).item()
            bounds = tuple((s - reach, s + reach) for s in star.tolist())
        return Surface(
            name=name,
            value=self.value,
            grad=self.grad,
            minima=(tuple(star.tolist()),),
            min_value=self.min_value(),
            bounds=bounds,
            start=start,
            labels=labels,
        )


def quadratic(condition_number: float = 10.0, angle: float = 0.0, scale: float = 1.0) -> Surface:
    r"""The quadratic bowl :math:`f(x) = \tfrac12 x^\top A x` with a chosen curvature.

    .. math::
        A = R(\theta) \,\mathrm{diag}(s,\ s\kappa)\, R(\theta)^\top, \qquad
        R(\theta) = \begin{pmatrix} \cos\theta & -\sin\theta \\ \sin\theta & \cos\theta \end{pmatrix},
        \qquad \nabla f(x) = A x

    The Hessian is :math:`A` everywhere: its eigenvalues are :math:`s` (eigenvector
    :math:`(\cos\theta, \sin\theta)`) and :math:`s\kappa` (eigenvector
    :math:`(-\sin\theta, \cos\theta)`), so :math:`\kappa` is the condition number that governs
    how slowly gradient descent converges. The minimum is 0 at the origin. It is the
    `Quadratic` with :math:`H = A`, :math:`c = 0`, :math:`e = 0`, as a `Surface`.

    Args:
        condition_number: :math:`\kappa \ge 1`, ratio of the largest to the smallest curvature.
        angle: :math:`\theta` in radians, rotation of the eigenvectors from the axes.
        scale: :math:`s > 0`, the smallest curvature.
    """
    _check_finite("condition_number", condition_number)
    _check_finite("angle", angle)
    _check_finite("scale", scale)
    if condition_number < 1.0:
        raise ValueError(f"condition_number must be >= 1, got {condition_number}")
    if scale <= 0.0:
        raise ValueError(f"scale must be > 0, got {scale}")

    low, high = scale, scale * condition_number
    c, s = math.cos(angle), math.sin(angle)
    # Entries of A = low * u u^T + high * v v^T with u = (c, s), v = (-s, c).
    a11 = low * c * c + high * s * s
    a12 = (low - high) * c * s
    a22 = low * s * s + high * c * c
    a = torch.tensor([[a11, a12], [a12, a22]], dtype=torch.float64)
    bowl = Quadratic(a, torch.zeros(2, dtype=torch.float64))
    return bowl.surface(
        bounds=((-2.0, 2.0), (-2.0, 2.0)),
        name=f"quadratic (κ = {condition_number:g}, θ = {angle:.2f})",
        # Off both eigenvectors for every angle near 0, so both directions are excited.
        start=(-1.5, 1.0),
    )


def rosenbrock(a: float = 1.0, b: float = 100.0) -> Surface:
    r"""Rosenbrock's banana valley, a classic test of ill-conditioning along a curve.

    .. math::
        f(x, y) = (a - x)^2 + b\,(y - x^2)^2, \qquad
        \nabla f = \begin{pmatrix} -2(a - x) - 4 b x (y - x^2) \\ 2 b (y - x^2) \end{pmatrix}

    The valley floor :math:`y = x^2` is easy to find; following it to the single minimum
    :math:`(a, a^2)`, where :math:`f = 0`, is slow.

    Args:
        a: position of the minimum along x.
        b: :math:`b > 0`, steepness of the valley walls.
    """
    _check_finite("a", a)
    _check_finite("b", b)
    if b <= 0.0:
        raise ValueError(f"b must be > 0, got {b}")

    def value(xy: Tensor) -> Tensor:
        x, y = _xy(xy)
        return (a - x) ** 2 + b * (y - x * x) ** 2

    def grad(xy: Tensor) -> Tensor:
        x, y = _xy(xy)
        wall = y - x * x
        return torch.stack((-2.0 * (a - x) - 4.0 * b * x * wall, 2.0 * b * wall), dim=-1)

    return Surface(
        name=f"Rosenbrock (a = {a:g}, b = {b:g})",
        value=value,
        grad=grad,
        minima=((a, a * a),),
        min_value=0.0,
        bounds=((a - 3.0, a + 1.0), (a * a - 2.0, a * a + 2.0)),
        # The usual (-1.2, 1) for a = 1: across the valley from the minimum.
        start=(a - 2.2, a * a),
    )


# Beale's function is a sum of three squares (c_i - x + x y^i)^2 for i = 1, 2, 3.
_BEALE_C = (1.5, 2.25, 2.625)


def beale() -> Surface:
    r"""Beale's function: flat plateaus and steep ridges around a narrow valley.

    .. math::
        f(x, y) = \sum_{i=1}^{3} r_i^2, \quad r_i = c_i - x + x y^i, \quad c = (1.5, 2.25, 2.625),
        \qquad \nabla f = \sum_{i=1}^{3} 2 r_i \begin{pmatrix} y^i - 1 \\ i\, x\, y^{i-1}
        \end{pmatrix}

    The global minimum is 0 at :math:`(3, 0.5)`, where every :math:`r_i` vanishes.
    """

    def value(xy: Tensor) -> Tensor:
        x, y = _xy(xy)
        return sum((c - x + x * y**i) ** 2 for i, c in enumerate(_BEALE_C, start=1))

    def grad(xy: Tensor) -> Tensor:
        x, y = _xy(xy)
        gx = torch.zeros_like(x)
        gy = torch.zeros_like(y)
        for i, c in enumerate(_BEALE_C, start=1):
            r = c - x + x * y**i
            gx = gx + 2.0 * r * (y**i - 1.0)
            gy = gy + 2.0 * r * (i * x * y ** (i - 1))
        return torch.stack((gx, gy), dim=-1)

    return Surface(
        name="Beale",
        value=value,
        grad=grad,
        minima=((3.0, 0.5),),
        min_value=0.0,
        bounds=((-4.5, 4.5), (-4.5, 4.5)),
        start=(1.0, 1.5),
    )


def saddle() -> Surface:
    r"""The saddle :math:`f(x, y) = x^2 - y^2`, with :math:`\nabla f = (2x, -2y)`.

    The origin is a critical point with Hessian eigenvalues :math:`+2` and :math:`-2`. The
    function is unbounded below, so there is no minimum: ``minima`` is empty and
    ``min_value`` is ``-inf``. Gradient descent started on the x-axis converges to the saddle;
    any offset in y grows geometrically, which is how the standard start escapes it.
    """

    def value(xy: Tensor) -> Tensor:
        x, y = _xy(xy)
        return x * x - y * y

    def grad(xy: Tensor) -> Tensor:
        x, y = _xy(xy)
        return torch.stack((2.0 * x, -2.0 * y), dim=-1)

    return Surface(
        name="saddle x² − y²",
        value=value,
        grad=grad,
        minima=(),
        min_value=-math.inf,
        bounds=((-2.0, 2.0), (-2.0, 2.0)),
        # Almost on the attracting x-axis: the run first heads for the saddle, then leaves it.
        start=(-1.5, 0.01),
    )


def one_one_one_net() -> Surface:
    r"""The loss of the 1-1-1 linear network :math:`\hat y = w_2 w_1 x` on the sample (1, 1).

    .. math::
        f(w_1, w_2) = (1 - w_1 w_2)^2, \qquad
        \nabla f = -2 (1 - w_1 w_2) \begin{pmatrix} w_2 \\ w_1 \end{pmatrix}

    Every point of the hyperbola :math:`w_1 w_2 = 1` is a global minimum with loss 0;
    ``minima`` lists six of them: the balanced points :math:`\pm(1, 1)` and two unbalanced
    points on each branch.
    The origin is a saddle: its Hessian :math:`\begin{pmatrix} 0 & -2 \\ -2 & 0\end{pmatrix}`
    has eigenvalues :math:`\pm 2`, the descent direction being :math:`w_1 = w_2`.
    """

    def value(xy: Tensor) -> Tensor:
        w1, w2 = _xy(xy)
        return (1.0 - w1 * w2) ** 2

    def grad(xy: Tensor) -> Tensor:
        w1, w2 = _xy(xy)
        residual = 1.0 - w1 * w2
        return torch.stack((-2.0 * residual * w2, -2.0 * residual * w1), dim=-1)

    return Surface(
        name="1-1-1 network (1 − w₁w₂)²",
        value=value,
        grad=grad,
        minima=((1.0, 1.0), (2.0, 0.5), (0.5, 2.0), (-1.0, -1.0), (-2.0, -0.5), (-0.5, -2.0)),
        min_value=0.0,
        bounds=((-2.5, 2.5), (-2.5, 2.5)),
        # Close to the anti-diagonal, which the flow follows into the saddle before escaping.
        start=(1.5, -1.4),
        labels=("$w_1$", "$w_2$"),
    )


def all_surfaces() -> dict[str, Surface]:
    """Every surface with its default parameters, keyed by the name of its constructor."""
    return {
        "quadratic": quadratic(),
        "rosenbrock": rosenbrock(),
        "beale": beale(),
        "saddle": saddle(),
        "one_one_one_net": one_one_one_net(),
    }


def trajectory(
    surface: Surface,
    optimizer_factory: Callable[[list[nn.Parameter]], torch.optim.Optimizer],
    steps: int,
    start: Sequence[float] | None = None,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str | None = None,
) -> Tensor:
    """Run an optimizer on a surface and return the visited points, shape ``(steps + 1, 2)``.

    Row 0 is the start, row k the point after k calls of ``optimizer.step``. Each step passes a
    closure (zero_grad, value, backward), so optimizers that re-evaluate the loss, such as
    ``torch.optim.LBFGS``, work as well as ``torch.optim.SGD``.

    A run that diverges is recorded as it is: once the point overflows, the rows are ``inf``
    or ``nan`` to the end. Lectures show divergence this way, and plots skip such points.

    Args:
        surface: the function to minimise.
        optimizer_factory: builds the optimizer from the one-element parameter list, e.g.
            ``lambda params: torch.optim.SGD(params, lr=1e-3)``.
        steps: number of optimizer steps, ``>= 0``.
        start: starting point; ``surface.start`` when None.
        dtype: floating dtype of the parameter and of the result.
        device: device of the parameter and of the result.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative int, got {steps!r}")
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point dtype, got {dtype}")
    start = surface.start if start is None else start
    if len(start) != 2:
        raise ValueError(f"start must hold two coordinates, got {start!r}")

    param = nn.Parameter(torch.tensor([float(v) for v in start], dtype=dtype, device=device))
    optimizer = optimizer_factory([param])

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = surface.value(param)
        loss.backward()
        return loss

    points = torch.empty(steps + 1, 2, dtype=dtype, device=param.device)
    with torch.no_grad():
        points[0] = param
    for k in range(1, steps + 1):
        optimizer.step(closure)
        with torch.no_grad():
            points[k] = param
    return points
