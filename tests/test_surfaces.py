"""Tests for coursekit.landscapes.surfaces: formulas against autograd and dense linear algebra,
minima, trajectories."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from coursekit.landscapes import (
    Quadratic,
    Surface,
    all_surfaces,
    beale,
    one_one_one_net,
    quadratic,
    rosenbrock,
    saddle,
    trajectory,
)

# Defaults plus variants whose extra parameters the formulas must also get right.
SURFACES = {
    **all_surfaces(),
    "quadratic_rotated": quadratic(condition_number=50.0, angle=0.7, scale=2.0),
    "rosenbrock_shifted": rosenbrock(a=-0.5, b=10.0),
}
TOLERANCES = {torch.float32: 1e-5, torch.float64: 1e-10}


def _random_points(surface: Surface, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    (x_lo, x_hi), (y_lo, y_hi) = surface.bounds
    u = torch.rand(shape, generator=generator, dtype=torch.float64)
    lo = torch.tensor([x_lo, y_lo], dtype=torch.float64)
    hi = torch.tensor([x_hi, y_hi], dtype=torch.float64)
    return (lo + (hi - lo) * u).to(dtype)


def _autograd(surface: Surface, xy: torch.Tensor) -> torch.Tensor:
    xy = xy.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(surface.value(xy).sum(), xy)
    return grad


@pytest.mark.parametrize("shape", [(5, 7, 2), (2,)], ids=["batch", "point"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("key", SURFACES)
def test_analytic_gradient_matches_autograd(key: str, dtype: torch.dtype, shape: tuple) -> None:
    """Does the hand-written gradient agree with autograd on the value, point by point?"""
    surface = SURFACES[key]
    xy = _random_points(surface, shape, dtype)
    expected = _autograd(surface, xy)
    actual = surface.grad(xy)
    assert actual.shape == xy.shape and actual.dtype == dtype
    tol = TOLERANCES[dtype]
    # Relative to the largest component: rounding in float32 is relative to the magnitudes
    # that were summed, not to a component that happens to cancel to almost zero.
    magnitude = expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=tol, atol=tol * magnitude)


@pytest.mark.parametrize("key", SURFACES)
def test_value_shape_dtype_and_call(key: str) -> None:
    """Is value (..., 2) -> (...) in the input's dtype, and is calling the surface the same?"""
    surface = SURFACES[key]
    grid = _random_points(surface, (4, 3, 2), torch.float32)
    values = surface.value(grid)
    assert values.shape == (4, 3) and values.dtype == torch.float32
    assert torch.equal(surface(grid), values)
    # Evaluating the grid in one call gives the same numbers as point by point.
    for i in range(4):
        for j in range(3):
            assert surface.value(grid[i, j]).item() == values[i, j].item()


@pytest.mark.parametrize("key", SURFACES)
def test_device_follows_input(key: str) -> None:
    """Do value and grad run on whatever device the input is on (meta: no data at all)?"""
    surface = SURFACES[key]
    xy = torch.empty(3, 2, device="meta", dtype=torch.float64)
    assert surface.value(xy).device.type == "meta"
    assert surface.grad(xy).device.type == "meta"
    assert surface.grad(xy).shape == (3, 2)


def test_last_dimension_must_be_two() -> None:
    """Is a point with the wrong number of coordinates rejected?"""
    with pytest.raises(ValueError, match="last dimension"):
        rosenbrock().value(torch.zeros(3))


@pytest.mark.parametrize("key", [k for k, s in SURFACES.items() if s.minima])
def test_listed_minima_are_critical_with_min_value(key: str) -> None:
    """At every listed minimum, is the gradient zero and the value min_value?"""
    surface = SURFACES[key]
    for point in surface.minima:
        xy = torch.tensor(point, dtype=torch.float64)
        assert surface.value(xy).item() == pytest.approx(surface.min_value, abs=1e-12)
        torch.testing.assert_close(
            surface.grad(xy), torch.zeros(2, dtype=torch.float64), rtol=0, atol=1e-12
        )
        # Nearby points are no lower: a minimum, not just a critical point.
        offsets = 1e-3 * torch.randn(
            20, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1)
        )
        assert (surface.value(xy + offsets) >= surface.min_value).all()


def test_saddle_has_no_minimum() -> None:
    """Is the saddle declared unbounded below, and is it?"""
    surface = saddle()
    assert surface.minima == () and surface.min_value == -math.inf
    assert surface.value(torch.tensor([0.0, 1e6], dtype=torch.float64)).item() == -1e12


def test_one_one_one_net_hyperbola_is_all_minima() -> None:
    """Does every point with w1 * w2 = 1 have loss 0 and zero gradient?"""
    surface = one_one_one_net()
    generator = torch.Generator().manual_seed(2)
    w1 = torch.empty(50, dtype=torch.float64).uniform_(0.2, 5.0, generator=generator)
    w1 = w1 * torch.where(torch.rand(50, generator=generator) < 0.5, -1.0, 1.0).double()
    points = torch.stack((w1, 1.0 / w1), dim=-1)  # (50, 2), both branches
    torch.testing.assert_close(
        surface.value(points), torch.zeros(50, dtype=torch.float64), rtol=0, atol=1e-12
    )
    torch.testing.assert_close(
        surface.grad(points), torch.zeros(50, 2, dtype=torch.float64), rtol=0, atol=1e-12
    )
    for point in surface.minima:
        assert point[0] * point[1] == 1.0


@pytest.mark.parametrize("surface", [one_one_one_net(), saddle()], ids=["net", "saddle"])
def test_origin_is_a_saddle_with_eigenvalues_plus_minus_two(surface: Surface) -> None:
    """Is the origin critical, with Hessian eigenvalues exactly -2 and +2?"""
    origin = torch.zeros(2, dtype=torch.float64)
    assert torch.equal(surface.grad(origin), torch.zeros(2, dtype=torch.float64))
    hessian = torch.autograd.functional.hessian(surface.value, origin)
    eigenvalues = torch.linalg.eigvalsh(hessian)
    assert eigenvalues.tolist() == [-2.0, 2.0]


def test_one_one_one_net_escape_direction_is_the_diagonal() -> None:
    """Is the negative-curvature direction at the origin w1 = w2?"""
    hessian = torch.autograd.functional.hessian(
        one_one_one_net().value, torch.zeros(2, dtype=torch.float64)
    )
    _, vectors = torch.linalg.eigh(hessian)
    descent = vectors[:, 0]
    assert abs(descent[0].item()) == pytest.approx(abs(descent[1].item()), abs=1e-12)
    assert descent[0].item() * descent[1].item() > 0


@pytest.mark.parametrize(
    ("kappa", "angle", "scale"),
    [(1.0, 0.0, 1.0), (10.0, 0.0, 1.0), (10.0, 0.3, 0.5), (100.0, -1.2, 3.0), (4.0, 2.5, 1.0)],
)
def test_quadratic_hessian_spectrum_and_angle(kappa: float, angle: float, scale: float) -> None:
    """Are the quadratic's Hessian eigenvalues {s, s kappa}, with eigenvectors at `angle`?"""
    surface = quadratic(condition_number=kappa, angle=angle, scale=scale)
    point = torch.tensor([0.3, -0.8], dtype=torch.float64)  # constant Hessian: any point
    hessian = torch.autograd.functional.hessian(surface.value, point)
    torch.testing.assert_close(hessian, hessian.T, rtol=0, atol=0)
    eigenvalues, vectors = torch.linalg.eigh(hessian)
    torch.testing.assert_close(
        eigenvalues, torch.tensor([scale, scale * kappa], dtype=torch.float64), rtol=1e-12, atol=0
    )
    if kappa > 1.0:  # with equal eigenvalues every direction is an eigenvector
        flat = vectors[:, 0]  # eigenvector of the smallest curvature
        expected = torch.tensor([math.cos(angle), math.sin(angle)], dtype=torch.float64)
        assert abs(torch.dot(flat, expected).item()) == pytest.approx(1.0, abs=1e-12)


def _quadratic_matrix(kappa: float, angle: float, scale: float) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    rotation = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    return (
        rotation
        @ torch.diag(torch.tensor([scale, scale * kappa], dtype=torch.float64))
        @ rotation.T
    )


def _random_quadratic(d: int, seed: int) -> Quadratic:
    """A positive definite H = A A' + I/10, c and e drawn from a seeded generator."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(d, d, generator=gen, dtype=torch.float64)
    h = a @ a.T + 0.1 * torch.eye(d, dtype=torch.float64)
    c = torch.randn(d, generator=gen, dtype=torch.float64)
    return Quadratic(h, c, e=torch.randn(1, generator=gen).item())


@pytest.mark.parametrize("d", [1, 2, 5])
def test_quadratic_class_against_dense_linear_algebra(d: int) -> None:
    """Compared with numpy: the value 0.5 t'Ht - c't + e point by point, the minimiser that
    numpy.linalg.solve gives for H t = c, E* its value there; the gradient with autograd's."""
    bowl = _random_quadratic(d, seed=d)
    h, c = bowl.h.numpy(), bowl.c.numpy()
    points = torch.randn(4, 3, d, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    values = bowl.value(points)
    assert values.shape == (4, 3) and bowl.dim == d
    for t, value in zip(points.reshape(-1, d).numpy(), values.reshape(-1).tolist()):
        assert value == pytest.approx(0.5 * t @ h @ t - c @ t + bowl.e, rel=1e-12, abs=1e-12)
    star = np.linalg.solve(h, c)
    np.testing.assert_allclose(bowl.minimizer().numpy(), star, rtol=1e-10)
    assert bowl.min_value() == pytest.approx(0.5 * star @ h @ star - c @ star + bowl.e, rel=1e-10)
    torch.testing.assert_close(bowl.excess(points), values - bowl.min_value())
    torch.testing.assert_close(
        bowl.grad(bowl.minimizer()), torch.zeros(d, dtype=torch.float64), rtol=0, atol=1e-10
    )
    leaf = points.clone().requires_grad_(True)
    (autograd,) = torch.autograd.grad(bowl.value(leaf).sum(), leaf)
    torch.testing.assert_close(bowl.grad(points), autograd)
    hessian = torch.autograd.functional.hessian(bowl.value, points[0, 0])
    torch.testing.assert_close(hessian, bowl.h)
    low = bowl.value(points.float())  # the points' dtype, not H's
    assert low.dtype == torch.float32 and bowl.grad(points.float()).dtype == torch.float32


def test_quadratic_surface_is_the_same_function_in_two_dimensions() -> None:
    """Compared with the Quadratic itself: the surface's value, gradient, minimum and E*; the
    default window centred on the minimum holds the start; other dimensions are refused."""
    bowl = _random_quadratic(2, seed=3)
    surface = bowl.surface(start=(1.0, -2.0), labels=("a", "b"), name="bowl")
    points = torch.randn(5, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    assert torch.equal(surface.value(points), bowl.value(points))
    assert torch.equal(surface.grad(points), bowl.grad(points))
    torch.testing.assert_close(
        torch.tensor(surface.minima[0], dtype=torch.float64), bowl.minimizer()
    )
    assert surface.min_value == bowl.min_value()
    assert (surface.name, surface.labels, surface.start) == ("bowl", ("a", "b"), (1.0, -2.0))
    star = bowl.minimizer().tolist()
    for (lo, hi), centre, start in zip(surface.bounds, star, surface.start):
        assert lo <= start <= hi and (lo + hi) / 2 == pytest.approx(centre, abs=1e-12)
    with pytest.raises(ValueError, match="Invalid dim"):
        _random_quadratic(3, seed=0).surface()


@pytest.mark.parametrize(("kappa", "angle", "scale"), [(1.0, 0.0, 1.0), (20.0, 0.4, 0.5)])
def test_the_quadratic_bowl_is_the_quadratic_of_its_matrix(
    kappa: float, angle: float, scale: float
) -> None:
    """Compared with 0.5 x'Ax for A = R diag(s, s kappa) R' built by matrix products."""
    surface = quadratic(condition_number=kappa, angle=angle, scale=scale)
    a = _quadratic_matrix(kappa, angle, scale)
    points = torch.randn(6, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    expected = 0.5 * torch.einsum("ni,ij,nj->n", points, a, points)
    torch.testing.assert_close(surface.value(points), expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(surface.grad(points), points @ a, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("build", "name"),
    [
        (lambda: Quadratic(torch.eye(2), torch.ones(3)), "c"),
        (lambda: Quadratic(torch.ones(2, 3), torch.ones(2)), "h"),
        (lambda: Quadratic(torch.tensor([[1.0, 2.0], [0.0, 1.0]]), torch.ones(2)), "h"),
    ],
)
def test_invalid_quadratics_name_the_field(build, name: str) -> None:
    """Does a bad H or c raise a ValueError naming it?"""
    with pytest.raises(ValueError, match=f"Invalid {name}:"):
        build()


def test_trajectory_sgd_on_quadratic_matches_closed_form() -> None:
    """Does SGD through `trajectory` follow x_k = (I - lr A)^k x_0 exactly?"""
    kappa, angle, scale, lr, steps = 20.0, 0.4, 0.5, 0.15, 60
    surface = quadratic(condition_number=kappa, angle=angle, scale=scale)
    path = trajectory(surface, lambda p: torch.optim.SGD(p, lr=lr), steps)
    assert path.shape == (steps + 1, 2) and path.dtype == torch.float64

    a = _quadratic_matrix(kappa, angle, scale)
    step = torch.eye(2, dtype=torch.float64) - lr * a
    x0 = torch.tensor(surface.start, dtype=torch.float64)
    expected = torch.stack([torch.linalg.matrix_power(step, k) @ x0 for k in range(steps + 1)])
    torch.testing.assert_close(path, expected, rtol=1e-10, atol=1e-12)


def test_trajectory_gradient_descent_decreases_rosenbrock() -> None:
    """With a small learning rate, does every gradient step lower the Rosenbrock value?"""
    surface = rosenbrock()
    path = trajectory(surface, lambda p: torch.optim.SGD(p, lr=1e-4), 500)
    values = surface.value(path)
    assert torch.all(values[1:] <= values[:-1])
    assert values[-1] < 0.5 * values[0]


def test_trajectory_passes_a_closure() -> None:
    """Does an optimizer that needs a closure (L-BFGS) run and reach the minimum?"""
    surface = rosenbrock()
    path = trajectory(surface, lambda p: torch.optim.LBFGS(p, max_iter=50), 10)
    torch.testing.assert_close(
        path[-1], torch.tensor([1.0, 1.0], dtype=torch.float64), rtol=0, atol=1e-4
    )


def test_trajectory_start_dtype_and_zero_steps() -> None:
    """Are start, dtype and steps = 0 honoured?"""
    surface = beale()
    path = trajectory(
        surface, lambda p: torch.optim.SGD(p, lr=1e-3), 0, start=(0.5, -0.25), dtype=torch.float32
    )
    assert path.shape == (1, 2) and path.dtype == torch.float32
    assert path[0].tolist() == [0.5, -0.25]
    default = trajectory(surface, lambda p: torch.optim.SGD(p, lr=1e-3), 3)
    assert tuple(default[0].tolist()) == surface.start


def test_trajectory_records_divergence() -> None:
    """Is a diverging run recorded to the end rather than stopped or raised?"""
    surface = quadratic(condition_number=10.0)
    path = trajectory(surface, lambda p: torch.optim.SGD(p, lr=1.0), 400)
    assert path.shape == (401, 2)
    assert torch.isfinite(path[:5]).all()
    assert not torch.isfinite(path[-1]).all()


@pytest.mark.parametrize(
    ("build", "name"),
    [
        (lambda: quadratic(condition_number=0.5), "condition_number"),
        (lambda: quadratic(condition_number=math.nan), "condition_number"),
        (lambda: quadratic(scale=0.0), "scale"),
        (lambda: quadratic(scale=-1.0), "scale"),
        (lambda: quadratic(angle=math.inf), "angle"),
        (lambda: rosenbrock(b=0.0), "b"),
        (lambda: rosenbrock(a=math.nan), "a"),
        (lambda: trajectory(rosenbrock(), lambda p: torch.optim.SGD(p, lr=1e-3), -1), "steps"),
        (lambda: trajectory(rosenbrock(), lambda p: torch.optim.SGD(p, lr=1e-3), 2.5), "steps"),
        (
            lambda: trajectory(
                rosenbrock(), lambda p: torch.optim.SGD(p, lr=1e-3), 3, start=(1.0, 2.0, 3.0)
            ),
            "start",
        ),
        (
            lambda: trajectory(
                rosenbrock(), lambda p: torch.optim.SGD(p, lr=1e-3), 3, dtype=torch.int64
            ),
            "dtype",
        ),
    ],
)
def test_invalid_arguments_name_the_parameter(build, name: str) -> None:
    """Does a bad argument raise ValueError that names the parameter?"""
    with pytest.raises(ValueError, match=rf"^{name} "):
        build()


def test_all_surfaces_lists_every_constructor() -> None:
    """Does all_surfaces hold one of each kind, with sane bounds and starts?"""
    surfaces = all_surfaces()
    assert set(surfaces) == {"quadratic", "rosenbrock", "beale", "saddle", "one_one_one_net"}
    for surface in surfaces.values():
        (x_lo, x_hi), (y_lo, y_hi) = surface.bounds
        assert x_lo < x_hi and y_lo < y_hi
        assert x_lo <= surface.start[0] <= x_hi and y_lo <= surface.start[1] <= y_hi
        assert surface.start not in surface.minima
