"""Is coursekit.second_order's conjugate gradient the method of Hestenes and Stiefel?

The references: the dense solution (torch.linalg.solve), scipy.sparse.linalg.cg on the same
system, and CG's theory (exact in d steps; in k steps for k distinct eigenvalues).
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse.linalg as sla
import torch

from coursekit.second_order import conjugate_gradient

F64 = torch.float64


def _spd(eigenvalues, seed=0) -> torch.Tensor:
    """Q diag(eigenvalues) Q' with a random rotation Q."""
    n = len(eigenvalues)
    q, _ = torch.linalg.qr(
        torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=F64)
    )
    return q @ torch.diag(torch.as_tensor(eigenvalues, dtype=F64)) @ q.T


def _b(n, seed=1) -> torch.Tensor:
    return torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=F64)


def test_exact_in_d_steps_on_a_d_dimensional_quadratic():
    """Condition number 10. (At 100 with eigenvalues spread geometrically, rounding costs the
    directions their conjugacy and d steps leave a residual near 1e-7, scipy's cg alike.)"""
    d = 12
    a = _spd(torch.linspace(1, 10, d), seed=2)
    b = _b(d)
    result = conjugate_gradient(lambda v: a @ v, b, tol=0.0, max_iter=d)
    assert result.iterations == d
    assert (b - a @ result.x).norm().item() < 1e-10
    torch.testing.assert_close(result.x, torch.linalg.solve(a, b), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_k_distinct_eigenvalues_take_k_steps(k):
    """Twenty dimensions, k distinct eigenvalues: the k-th iterate solves the system."""
    values = torch.tensor([1.0, 3.0, 10.0, 40.0][:k], dtype=F64).repeat_interleave(20 // k)
    a, b = _spd(values, seed=3), _b(len(values))
    result = conjugate_gradient(lambda v: a @ v, b, tol=1e-10)
    assert result.converged and result.iterations == k
    assert (b - a @ result.x).norm().item() < 1e-10 * b.norm().item()
    assert len(result.residual_norms) == k + 1


@pytest.mark.parametrize("steps", [1, 3, 7])
def test_every_iterate_equals_scipy_cg(steps):
    """scipy's cg stopped after the same number of steps from x0 = 0 gives the same iterate."""
    d = 15
    a, b = _spd(torch.logspace(0, 3, d), seed=4), _b(d, seed=5)
    ours = conjugate_gradient(lambda v: a @ v, b, tol=0.0, max_iter=steps)
    theirs, _ = sla.cg(a.numpy(), b.numpy(), x0=np.zeros(d), rtol=0.0, atol=0.0, maxiter=steps)
    np.testing.assert_allclose(ours.x.numpy(), theirs, rtol=1e-9, atol=1e-12)


def test_residual_history_is_the_true_residual():
    d = 10
    a, b = _spd(torch.logspace(0, 1, d), seed=6), _b(d, seed=7)
    history = conjugate_gradient(lambda v: a @ v, b, tol=0.0).residual_norms
    for k in range(1, 6):
        xk = conjugate_gradient(lambda v: a @ v, b, tol=0.0, max_iter=k).x
        assert history[k] == pytest.approx((b - a @ xk).norm().item(), rel=1e-8, abs=1e-14)


def test_stops_at_negative_curvature():
    a = torch.diag(torch.tensor([2.0, -1.0], dtype=F64))
    result = conjugate_gradient(lambda v: a @ v, torch.tensor([0.0, 1.0], dtype=F64))
    assert result.negative_curvature and not result.converged
    assert torch.equal(result.x, torch.zeros(2, dtype=F64))  # the iterate before that direction


def test_a_start_point_is_used():
    d = 6
    a, b = _spd(torch.arange(1.0, d + 1), seed=8), _b(d, seed=9)
    x_star = torch.linalg.solve(a, b)
    result = conjugate_gradient(lambda v: a @ v, b, x0=x_star)
    assert result.iterations == 0 and result.converged


@pytest.mark.parametrize("kwargs,name", [(dict(tol=-1.0), "tol"), (dict(max_iter=-1), "max_iter")])
def test_invalid_arguments_raise_value_error_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=f"Invalid {name}"):
        conjugate_gradient(lambda v: v, torch.ones(3), **kwargs)
    with pytest.raises(ValueError, match="Invalid b"):
        conjugate_gradient(lambda v: v, torch.ones(3, 1))


@pytest.mark.parametrize("max_iter", [0, 2, 5, None])
def test_the_residual_vector_is_b_minus_a_x(max_iter):
    """The recurrence's last residual is b - A x computed densely, cut short or not, from a
    start point too."""
    d = 8
    a, b = _spd(torch.logspace(0, 2, d), seed=10), _b(d, seed=11)
    result = conjugate_gradient(lambda v: a @ v, b, x0=0.1 * b, tol=0.0, max_iter=max_iter)
    torch.testing.assert_close(result.residual, b - a @ result.x, rtol=1e-8, atol=1e-10)
