"""Tests for coursekit.curvature against references built another way.

The references: ``torch.autograd.functional.hessian`` of a hand-written forward pass of the
MLP as a function of the flat parameter vector (no functional_call, no torch.func), closed
forms (least squares: H = X^T X / N; a quadratic with a chosen spectrum: H = A; the 1-1-1 net
at its saddle and on its hyperbola of minima), and ``torch.linalg.eigvalsh`` of those.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from coursekit import curvature

F64 = torch.float64


@pytest.fixture(autouse=True)
def _one_thread():
    """Run on one intra-op thread: these models have at most a few hundred parameters.

    Splitting such small operations over threads only adds synchronisation, and on a loaded
    two-core machine one product took 100x longer with two threads than with one.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- Models with an independent reference Hessian --------------------------------------------


def _mlp(sizes: tuple[int, ...] = (4, 6, 3), samples: int = 40, seed: int = 0):
    """A tanh MLP in float64 with cross-entropy, and the same loss written by hand.

    Returns ``(model, loss_fn, flat_loss)``; ``flat_loss(theta)`` unpacks the flat vector in
    the order of ``model.parameters()`` (weight then bias, layer by layer) and runs the forward
    pass with plain tensor operations.
    """
    torch.manual_seed(seed)
    layers = []
    for i, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(d_in, d_out))
        if i < len(sizes) - 2:
            layers.append(nn.Tanh())
    model = nn.Sequential(*layers).to(F64)
    x = torch.randn(samples, sizes[0], generator=_gen(seed + 1), dtype=F64)
    y = torch.randint(0, sizes[-1], (samples,), generator=_gen(seed + 2))

    def loss_fn(m: nn.Module) -> torch.Tensor:
        return nn.functional.cross_entropy(m(x), y)

    def flat_loss(theta: torch.Tensor) -> torch.Tensor:
        h, offset = x, 0
        for i, (d_in, d_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            w = theta[offset : offset + d_out * d_in].reshape(d_out, d_in)
            offset += d_out * d_in
            b = theta[offset : offset + d_out]
            offset += d_out
            h = h @ w.T + b
            if i < len(sizes) - 2:
                h = torch.tanh(h)
        return nn.functional.cross_entropy(h, y)

    return model, loss_fn, flat_loss


def _reference_hessian(model: nn.Module, flat_loss) -> torch.Tensor:
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    return torch.autograd.functional.hessian(flat_loss, theta)


def _least_squares(d: int = 5, samples: int = 30):
    """``L = 1/(2N) ||X w - y||^2`` with ``H = X^T X / N`` exactly."""
    x = torch.randn(samples, d, generator=_gen(3), dtype=F64)
    y = torch.randn(samples, generator=_gen(4), dtype=F64)
    model = nn.Linear(d, 1, bias=False).to(F64)

    def loss_fn(m: nn.Module) -> torch.Tensor:
        return 0.5 * ((m(x).squeeze(1) - y) ** 2).mean()

    return model, loss_fn, x.T @ x / samples


class _Quadratic(nn.Module):
    """``L = 1/2 w^T A w + b^T w`` with ``A = Q diag(spectrum) Q^T``: the Hessian is A."""

    def __init__(self, spectrum: list[float], seed: int = 0, rotate: bool = True) -> None:
        super().__init__()
        n = len(spectrum)
        q = torch.linalg.qr(torch.randn(n, n, generator=_gen(seed), dtype=F64))[0]
        q = q if rotate else torch.eye(n, dtype=F64)
        self.register_buffer("a", q @ torch.diag(torch.tensor(spectrum, dtype=F64)) @ q.T)
        self.register_buffer("b", torch.randn(n, generator=_gen(seed + 1), dtype=F64))
        self.w = nn.Parameter(torch.randn(n, generator=_gen(seed + 2), dtype=F64))

    def forward(self) -> torch.Tensor:
        return 0.5 * self.w @ self.a @ self.w + self.b @ self.w


def _quadratic_loss(m: nn.Module) -> torch.Tensor:
    return m()


class _OneOneOne(nn.Module):
    """The 1-1-1 linear network ``y_hat = w2 * w1 * x``."""

    def __init__(self, w1: float, w2: float) -> None:
        super().__init__()
        self.w1 = nn.Parameter(torch.tensor(w1, dtype=F64))
        self.w2 = nn.Parameter(torch.tensor(w2, dtype=F64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2 * self.w1 * x


def _one_one_one_loss(m: nn.Module) -> torch.Tensor:
    # The course's data set: x = 1, y = 1 (several copies), so L(w1, w2) = (1 - w1 w2)^2.
    x = torch.ones(8, dtype=F64)
    return ((x - m(x)) ** 2).mean()


# --- hvp and hessian -------------------------------------------------------------------------


def test_hessian_matches_autograd_functional_on_mlp() -> None:
    """Does torch.func's dense Hessian equal autograd.functional's of a hand-written forward?"""
    model, loss_fn, flat_loss = _mlp()
    expected = _reference_hessian(model, flat_loss)
    actual = curvature.hessian(model, loss_fn)
    assert actual.shape == (51, 51)
    torch.testing.assert_close(actual, expected, rtol=1e-10, atol=1e-12)


def test_hessian_of_least_squares_is_the_input_covariance() -> None:
    """Is the Hessian of 1/(2N)||Xw - y||^2 exactly X^T X / N (seed 000)?"""
    model, loss_fn, expected = _least_squares()
    torch.testing.assert_close(curvature.hessian(model, loss_fn), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("kind", ["mlp", "least_squares"])
def test_hvp_equals_dense_hessian_times_v(kind: str) -> None:
    """Is hvp(v) the reference Hessian times v, for several random v?"""
    if kind == "mlp":
        model, loss_fn, flat_loss = _mlp()
        dense = _reference_hessian(model, flat_loss)
    else:
        model, loss_fn, dense = _least_squares()
    for seed in range(3):
        v = torch.randn(dense.shape[0], generator=_gen(seed), dtype=F64)
        torch.testing.assert_close(
            curvature.hvp(model, loss_fn, v), dense @ v, rtol=1e-10, atol=1e-12
        )


def test_hvp_follows_the_model_dtype() -> None:
    """Does a float32 model get a float32 product, close to the float64 one?"""
    model, loss_fn, flat_loss = _mlp()
    v = torch.randn(51, generator=_gen(), dtype=F64)
    expected = _reference_hessian(model, flat_loss) @ v
    x = torch.randn(40, 4, generator=_gen(1), dtype=F64).float()
    y = torch.randint(0, 3, (40,), generator=_gen(2))
    model32 = model.float()
    out = curvature.hvp(model32, lambda m: nn.functional.cross_entropy(m(x), y), v)
    assert out.dtype == torch.float32 and out.device == next(model32.parameters()).device
    torch.testing.assert_close(out.double(), expected, rtol=1e-4, atol=1e-5)


def test_frozen_parameters_are_left_out_of_the_flat_vector() -> None:
    """With the first weight frozen, is the Hessian the reference's block for the others?"""
    model, loss_fn, flat_loss = _mlp()
    full = _reference_hessian(model, flat_loss)
    model[0].weight.requires_grad_(False)
    keep = torch.arange(24, 51)  # the first weight holds entries 0..23 of the flat vector
    actual = curvature.hessian(model, loss_fn)
    torch.testing.assert_close(actual, full[keep][:, keep], rtol=1e-10, atol=1e-12)
    v = torch.randn(27, generator=_gen(), dtype=F64)
    torch.testing.assert_close(
        curvature.hvp(model, loss_fn, v), full[keep][:, keep] @ v, rtol=1e-10, atol=1e-12
    )


def test_parameters_and_their_grads_are_untouched() -> None:
    """Do the read-only functions leave the parameters and their .grad as they were?"""
    model, loss_fn, _ = _mlp()
    before = [p.detach().clone() for p in model.parameters()]
    curvature.hvp(model, loss_fn, torch.ones(51, dtype=F64))
    curvature.top_eigenvalues(model, loss_fn, k=2, method="power", generator=_gen())
    curvature.hutchinson_trace(model, loss_fn, samples=4, generator=_gen())
    curvature.spectral_density(model, loss_fn, probes=2, steps=5, generator=_gen())
    curvature.index(model, loss_fn)
    for p, b in zip(model.parameters(), before):
        assert p.grad is None
        assert torch.equal(p.detach(), b)


# --- Top eigenvalues -------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["lanczos", "power"])
def test_top_eigenvalues_match_eigvalsh(method: str) -> None:
    """Are the k largest eigenpairs those of the dense reference, to 1e-4 relative?"""
    model, loss_fn, flat_loss = _mlp()
    dense = _reference_hessian(model, flat_loss)
    expected = torch.linalg.eigvalsh(dense).flip(0)[:3]
    values, vectors = curvature.top_eigenvalues(
        model, loss_fn, k=3, method=method, generator=_gen()
    )
    assert values.shape == (3,) and vectors.shape == (51, 3)
    torch.testing.assert_close(values, expected, rtol=1e-4, atol=0.0)
    torch.testing.assert_close(vectors.T @ vectors, torch.eye(3, dtype=F64), rtol=0, atol=1e-6)
    residual = (dense @ vectors - vectors * values).norm(dim=0)
    assert (residual <= 1e-4 * expected.abs()).all(), residual


def test_power_and_lanczos_agree_on_a_larger_mlp() -> None:
    """Do the two methods give the same top five on a 270-parameter net?"""
    model, loss_fn, _ = _mlp(sizes=(8, 16, 6, 4), samples=60, seed=5)
    lanczos, _ = curvature.top_eigenvalues(model, loss_fn, k=5, generator=_gen())
    power, _ = curvature.top_eigenvalues(model, loss_fn, k=5, method="power", generator=_gen())
    torch.testing.assert_close(power, lanczos, rtol=1e-4, atol=0.0)


@pytest.mark.parametrize("method", ["lanczos", "power"])
def test_largest_algebraic_not_largest_magnitude(method: str) -> None:
    """With -10 the largest in magnitude, are the top two still 3 and 2?"""
    model = _Quadratic([-10.0, 3.0, 2.0, 1.0, 0.5, -1.0, -4.0])
    values, _ = curvature.top_eigenvalues(
        model, _quadratic_loss, k=2, method=method, generator=_gen()
    )
    torch.testing.assert_close(values, torch.tensor([3.0, 2.0], dtype=F64), rtol=1e-6, atol=0)


def test_power_with_k_equal_n_gives_the_whole_spectrum() -> None:
    """Does deflation carry power iteration through every eigenvalue, the negative ones too?"""
    spectrum = [-10.0, 3.0, 2.0, 1.0, 0.5, -1.0, -4.0]
    values, vectors = curvature.top_eigenvalues(
        _Quadratic(spectrum), _quadratic_loss, k=7, method="power", generator=_gen()
    )
    expected = torch.tensor(sorted(spectrum, reverse=True), dtype=F64)
    torch.testing.assert_close(values, expected, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(vectors.T @ vectors, torch.eye(7, dtype=F64), rtol=0, atol=1e-6)


def test_power_iteration_reports_non_convergence() -> None:
    """Does too small a max_iter raise instead of returning an unconverged value?"""
    model, loss_fn, _ = _mlp()
    with pytest.raises(RuntimeError, match="max_iter"):
        curvature.top_eigenvalues(model, loss_fn, k=3, method="power", max_iter=3, generator=_gen())


# --- The 1-1-1 network -----------------------------------------------------------------------


def test_one_one_one_saddle_at_the_origin() -> None:
    """At w = 0, is the Hessian [[0, -2], [-2, 0]] with eigenvalues exactly -2, +2, index 1?"""
    model = _OneOneOne(0.0, 0.0)
    h = curvature.hessian(model, _one_one_one_loss)
    assert torch.equal(h, torch.tensor([[0.0, -2.0], [-2.0, 0.0]], dtype=F64))
    assert torch.equal(torch.linalg.eigvalsh(h), torch.tensor([-2.0, 2.0], dtype=F64))
    assert curvature.index(model, _one_one_one_loss) == 1
    # A +-2 tie in magnitude: plain power iteration would never settle; the shifted one does.
    values, vectors = curvature.top_eigenvalues(
        model, _one_one_one_loss, k=2, method="power", generator=_gen()
    )
    torch.testing.assert_close(values, torch.tensor([2.0, -2.0], dtype=F64), rtol=0, atol=1e-6)
    # The ascent direction w1 = -w2 for +2, descent along w1 = w2 for -2.
    assert abs(vectors[0, 0] + vectors[1, 0]) < 1e-6 and abs(vectors[0, 1] - vectors[1, 1]) < 1e-6


@pytest.mark.parametrize("start", [(0.1, -0.05), (-0.08, -0.12), (0.15, 0.1)])
def test_find_critical_point_finds_the_saddle_from_near_the_origin(start) -> None:
    """Does descent on ||grad L||^2 converge to the saddle (0, 0), index 1, loss 1?"""
    model = _OneOneOne(*start)
    point = curvature.find_critical_point(model, _one_one_one_loss, steps=2000, lr=0.05)
    assert point.converged and point.grad_norm <= 1e-8
    assert point.index == 1
    assert abs(model.w1.item()) < 1e-8 and abs(model.w2.item()) < 1e-8
    assert point.loss == pytest.approx(1.0, abs=1e-12)
    torch.testing.assert_close(
        point.eigenvalues, torch.tensor([-2.0, 2.0], dtype=F64), rtol=0, atol=1e-7
    )


@pytest.mark.parametrize("start", [(1.1, 0.8), (-0.6, -1.9), (2.2, 0.4)])
def test_find_critical_point_finds_a_minimum_near_the_hyperbola(start) -> None:
    """From near w1 w2 = 1, does it reach the hyperbola, index 0, with the closed-form spectrum?"""
    model = _OneOneOne(*start)
    point = curvature.find_critical_point(model, _one_one_one_loss, steps=2000, lr=0.01)
    w1, w2 = model.w1.item(), model.w2.item()
    assert point.converged and point.index == 0
    assert w1 * w2 == pytest.approx(1.0, abs=1e-8)
    assert point.loss < 1e-15
    # On the hyperbola H = 2 u u^T with u = (w2, w1): eigenvalues 0 and 2 (w1^2 + w2^2).
    expected = torch.tensor([0.0, 2.0 * (w1**2 + w2**2)], dtype=F64)
    torch.testing.assert_close(point.eigenvalues, expected, rtol=0, atol=1e-7)


def test_find_critical_point_accepts_another_optimizer() -> None:
    """Does the optimizer argument take effect (SGD with momentum, fewer steps than plain SGD)?"""
    plain = curvature.find_critical_point(
        _OneOneOne(0.1, -0.05), _one_one_one_loss, steps=2000, lr=0.01
    )

    def momentum(params, lr):
        return torch.optim.SGD(params, lr=lr, momentum=0.8)

    fast = curvature.find_critical_point(
        _OneOneOne(0.1, -0.05), _one_one_one_loss, steps=2000, lr=0.01, optimizer=momentum
    )
    assert plain.converged and fast.converged and fast.index == plain.index == 1
    assert fast.steps < plain.steps


@pytest.mark.parametrize("start", [(0.3, -0.2), (-0.25, -0.4), (0.2, 0.35)])
def test_newton_critical_point_finds_the_saddle_from_near_the_origin(start) -> None:
    """Against the closed form: from near w = 0, do Newton steps reach (0, 0), loss 1, with
    eigenvalues -2 and +2, in a handful of steps (quadratic convergence)?"""
    model = _OneOneOne(*start)
    point = curvature.newton_critical_point(model, _one_one_one_loss)
    assert point.converged and point.grad_norm <= 1e-10 and point.steps <= 10
    assert abs(model.w1.item()) < 1e-10 and abs(model.w2.item()) < 1e-10
    assert point.index == 1 and point.loss == pytest.approx(1.0, abs=1e-12)
    torch.testing.assert_close(
        point.eigenvalues, torch.tensor([-2.0, 2.0], dtype=F64), rtol=0, atol=1e-9
    )


@pytest.mark.parametrize("start", [(1.1, 0.8), (-0.6, -1.9), (2.2, 0.4)])
def test_newton_critical_point_lands_on_the_hyperbola_near_it(start) -> None:
    """Against the closed form: from near w1 w2 = 1, a minimum on the hyperbola whose spectrum
    is 0 and 2 (w1^2 + w2^2); the flat direction does not stop the pseudo-inverse step."""
    model = _OneOneOne(*start)
    point = curvature.newton_critical_point(model, _one_one_one_loss)
    w1, w2 = model.w1.item(), model.w2.item()
    assert point.converged and point.index == 0 and point.steps <= 10
    assert w1 * w2 == pytest.approx(1.0, abs=1e-10)
    expected = torch.tensor([0.0, 2.0 * (w1**2 + w2**2)], dtype=F64)
    torch.testing.assert_close(point.eigenvalues, expected, rtol=0, atol=1e-8)


def test_newton_critical_point_solves_least_squares() -> None:
    """Against torch.linalg.lstsq: on a quadratic loss the undamped step is exact, so the
    search ends at the least-squares solution within a few steps."""
    model, loss_fn, _ = _least_squares()
    x = torch.randn(30, 5, generator=_gen(3), dtype=F64)  # the same draws as _least_squares
    y = torch.randn(30, generator=_gen(4), dtype=F64)
    point = curvature.newton_critical_point(model, loss_fn, grad_tol=1e-12)
    assert point.converged and point.index == 0 and point.steps <= 5
    expected = torch.linalg.lstsq(x, y[:, None]).solution.squeeze(1)
    torch.testing.assert_close(model.weight.detach().squeeze(0), expected, rtol=0, atol=1e-10)


def test_newton_critical_point_finds_saddles_of_a_quadratic() -> None:
    """Against the closed form: the only critical point of 1/2 w^T A w + b^T w is -A^-1 b,
    a saddle of index 2 for a spectrum with two negative eigenvalues; Newton goes there."""
    model = _Quadratic([3.0, 1.0, -0.5, -2.0, 0.7])
    point = curvature.newton_critical_point(model, _quadratic_loss)
    expected = -torch.linalg.solve(model.a, model.b)
    torch.testing.assert_close(model.w.detach(), expected, rtol=0, atol=1e-10)
    assert point.converged and point.index == 2


def test_smallest_eigenvalues_match_eigvalsh() -> None:
    """Are the k smallest eigenvalues those of the dense reference, ascending, to 1e-6?"""
    model, loss_fn, flat_loss = _mlp()
    dense = _reference_hessian(model, flat_loss)
    expected = torch.linalg.eigvalsh(dense)[:3]
    values, vectors = curvature.smallest_eigenvalues(model, loss_fn, k=3, generator=_gen())
    torch.testing.assert_close(values, expected, rtol=1e-6, atol=1e-10)
    residual = (dense @ vectors - vectors * values).norm(dim=0)
    assert (residual <= 1e-5 * dense.norm()).all(), residual


# --- Trace -----------------------------------------------------------------------------------


def test_hutchinson_within_three_standard_errors_and_shrinking() -> None:
    """Is the estimate within 3 stderr of the dense trace, with stderr ~ 1/sqrt(samples)?"""
    model, loss_fn, flat_loss = _mlp()
    trace = torch.trace(_reference_hessian(model, flat_loss)).item()
    few, few_se = curvature.hutchinson_trace(model, loss_fn, samples=25, generator=_gen(1))
    many, many_se = curvature.hutchinson_trace(model, loss_fn, samples=400, generator=_gen(2))
    assert abs(few - trace) <= 3 * few_se
    assert abs(many - trace) <= 3 * many_se
    # 16x the samples: 4x smaller in expectation; 2.5x leaves room for the noise in the std.
    assert 0 < many_se < few_se / 2.5


def test_hutchinson_is_exact_for_a_diagonal_hessian() -> None:
    """With Rademacher probes z^T D z = tr D for every z: zero error, zero stderr."""
    spectrum = [3.0, -1.0, 0.5, 2.0, 7.0]
    model = _Quadratic(spectrum, rotate=False)
    estimate, stderr = curvature.hutchinson_trace(
        model, _quadratic_loss, samples=10, generator=_gen()
    )
    assert estimate == pytest.approx(sum(spectrum), abs=1e-12) and stderr == pytest.approx(0)


def test_hutchinson_is_reproducible_with_a_seed() -> None:
    """Does the same generator seed give the same numbers?"""
    model, loss_fn, _ = _mlp()
    first = curvature.hutchinson_trace(model, loss_fn, samples=8, generator=_gen(7))
    second = curvature.hutchinson_trace(model, loss_fn, samples=8, generator=_gen(7))
    assert first == second


# --- Spectral density ------------------------------------------------------------------------


def test_spectral_density_integrates_to_one() -> None:
    """Does the default grid carry all the mass, and a grid over half the range less?"""
    model, loss_fn, _ = _mlp()
    grid, density = curvature.spectral_density(model, loss_fn, probes=4, steps=20, generator=_gen())
    assert grid.shape == density.shape == (1000,) and (density >= 0).all()
    assert torch.trapezoid(density, grid).item() == pytest.approx(1.0, abs=1e-4)
    half = torch.linspace(grid[0].item(), grid[-1].item(), 1000, dtype=F64)[:500]
    _, part = curvature.spectral_density(
        model, loss_fn, probes=4, steps=20, grid=half, generator=_gen()
    )
    assert torch.trapezoid(part, half).item() < 0.999


def _normal_cdf(t: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(t / math.sqrt(2.0)))


def test_spectral_density_matches_the_dense_spectrum() -> None:
    """Is the SLQ distribution function within 3 worst-case standard errors of the exact one?

    The reference is the dense spectrum broadened by the same Gaussian, whose distribution
    function is mean_i Phi((t - lambda_i) / sigma). For one probe v = z / sqrt(n), the SLQ value
    at t estimates tr F(H) / n with F between 0 and 1, and for Rademacher z
    Var(z^T F z) <= 2 ||F||_F^2 <= 2 n, so its standard deviation over P probes is at most
    sqrt(2 / (n P)) = 0.015 here. Allow 3 of those. A spectrum stretched by 1.3 must fail the
    same test, so that it can fail.
    """
    model, loss_fn, flat_loss = _mlp(sizes=(6, 16, 6), samples=64, seed=1)
    eigenvalues = torch.linalg.eigvalsh(_reference_hessian(model, flat_loss))
    n, probes = eigenvalues.numel(), 40
    sigma = 0.02 * (eigenvalues.max() - eigenvalues.min()).item()
    grid = torch.linspace(
        eigenvalues.min().item() - 6 * sigma, eigenvalues.max().item() + 6 * sigma, 2000, dtype=F64
    )
    _, density = curvature.spectral_density(
        model, loss_fn, probes=probes, steps=30, grid=grid, sigma=sigma, generator=_gen()
    )
    cdf = torch.cat([torch.zeros(1, dtype=F64), torch.cumulative_trapezoid(density, grid)])

    def exact_cdf(spectrum: torch.Tensor) -> torch.Tensor:
        return _normal_cdf((grid[:, None] - spectrum[None, :]) / sigma).mean(dim=1)

    tolerance = 3 * math.sqrt(2 / (n * probes))
    assert (cdf - exact_cdf(eigenvalues)).abs().max().item() < tolerance
    assert (cdf - exact_cdf(1.3 * eigenvalues)).abs().max().item() > tolerance


# --- Index -----------------------------------------------------------------------------------


def test_index_dense_and_sparse_paths_count_the_negative_eigenvalues() -> None:
    """Do both paths give eigvalsh's count of eigenvalues below -tol at a non-critical point?"""
    model, loss_fn, flat_loss = _mlp(seed=3)
    eigenvalues = torch.linalg.eigvalsh(_reference_hessian(model, flat_loss))
    expected = int((eigenvalues < -1e-6).sum())
    assert 0 < expected < 51
    assert curvature.index(model, loss_fn, tol=1e-6) == expected
    assert curvature.index(model, loss_fn, tol=1e-6, max_params=10) == expected  # eigsh "SA"


@pytest.mark.parametrize("negatives", [0, 3, 20, 30])
def test_index_sparse_path_doubles_until_it_sees_a_non_negative(negatives: int) -> None:
    """Does the eigsh path count 0, a few, many and all of 30 negative eigenvalues?"""
    spectrum = [-(1.0 + i) for i in range(negatives)] + [0.5 + i for i in range(30 - negatives)]
    model = _Quadratic(spectrum, seed=4)
    assert curvature.index(model, _quadratic_loss, max_params=10) == negatives
    assert curvature.index(model, _quadratic_loss) == negatives


# --- Validation ------------------------------------------------------------------------------


def _call(name: str, **kwargs):
    model, loss_fn, _ = _mlp()
    return getattr(curvature, name)(model, loss_fn, **kwargs)


@pytest.mark.parametrize(
    ("name", "kwargs", "parameter"),
    [
        ("hvp", dict(v=torch.ones(50, dtype=F64)), "v"),
        ("hvp", dict(v=torch.ones(51, 1, dtype=F64)), "v"),
        ("hessian", dict(max_params=50), "max_params"),
        ("hessian", dict(max_params=0), "max_params"),
        ("top_eigenvalues", dict(k=0), "k"),
        ("top_eigenvalues", dict(k=51), "k"),
        ("top_eigenvalues", dict(k=52, method="power"), "k"),
        ("top_eigenvalues", dict(k=2.0), "k"),
        ("top_eigenvalues", dict(method="arnoldi"), "method"),
        ("top_eigenvalues", dict(tol=0.0), "tol"),
        ("top_eigenvalues", dict(tol=float("nan")), "tol"),
        ("top_eigenvalues", dict(max_iter=0), "max_iter"),
        ("hutchinson_trace", dict(samples=1), "samples"),
        ("spectral_density", dict(probes=0), "probes"),
        ("spectral_density", dict(steps=0), "steps"),
        ("spectral_density", dict(sigma=-1.0), "sigma"),
        ("spectral_density", dict(grid=1), "grid"),
        ("spectral_density", dict(grid=torch.zeros(3, 3)), "grid"),
        ("index", dict(tol=-1.0), "tol"),
        ("index", dict(max_params=0), "max_params"),
        ("find_critical_point", dict(steps=0), "steps"),
        ("find_critical_point", dict(lr=0.0), "lr"),
        ("find_critical_point", dict(grad_tol=-1e-3), "grad_tol"),
        ("find_critical_point", dict(tol=-1.0), "tol"),
        ("find_critical_point", dict(optimizer="sgd"), "optimizer"),
        ("newton_critical_point", dict(steps=0), "steps"),
        ("newton_critical_point", dict(grad_tol=0.0), "grad_tol"),
        ("newton_critical_point", dict(tol=-1.0), "tol"),
        ("newton_critical_point", dict(max_params=50), "max_params"),
        ("smallest_eigenvalues", dict(k=0), "k"),
        ("smallest_eigenvalues", dict(tol=0.0), "tol"),
    ],
)
def test_wrong_hyper_parameters_raise_value_error_naming_them(name, kwargs, parameter) -> None:
    """Is every bad argument rejected with a ValueError that names it?"""
    with pytest.raises(ValueError, match=parameter):
        _call(name, **kwargs)


def test_bad_models_and_losses_raise_value_error() -> None:
    """No trainable parameters, a non-scalar loss, a loss without a graph: ValueError each."""
    model, loss_fn, _ = _mlp()
    with pytest.raises(ValueError, match="scalar"):
        curvature.hvp(model, lambda m: m(torch.ones(2, 4, dtype=F64)), torch.ones(51, dtype=F64))
    with torch.no_grad():
        detached = loss_fn(model)
    with pytest.raises(ValueError, match="depend"):
        curvature.hvp(model, lambda m: detached, torch.ones(51, dtype=F64))
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="require grad"):
        curvature.hvp(model, loss_fn, torch.ones(51, dtype=F64))
