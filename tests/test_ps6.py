"""Assignment 6 graded for real: `coursekit grade` on a temporary course holding only ps6.

The solved notebook passing its visible checks is covered by test_notebooks.py (it executes every
notebook in solutions/). Here the references are checked against computations of their own (the
product against torch.linalg.multi_dot, balancedness against numpy, the preconditioner against
the Jacobian of the product map at balanced factors, the loss curves and the race between depths
against gradient descent written out in numpy with the gradient in closed form), the sample
ben's wrong answers fail exactly the checks his score assumes, and the sandboxed grader grades
the three samples of samples/ps6 and the blank release: each must earn exactly the points worked
out from the parts (end_to_end 1, balancedness 2, preconditioner 3, end_to_end_step 3,
l4_losses 2, steps_by_depth 3: 14), split evenly over a function's cases.
"""

from __future__ import annotations

import math
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from grading_course import (
    cases_passed,
    check_feedback_hides_the_hidden_tests,
    check_sample,
    check_submission,
    feedback_text,
    grade_with_samples,
    sample_answers,
    sample_makers,
)

from coursekit.grading import functions, registry

ROOT = Path(__file__).resolve().parents[1]
RELEASE = nbformat.read(ROOT / "assignments/ps6/ps6.ipynb", as_version=4)
TOTAL = 14
F64 = torch.float64
CELL_TIMEOUT, NOTEBOOK_TIMEOUT = 60, 180

SAMPLES = sample_makers()
STUDENTS = SAMPLES.SAMPLES["ps6"]  # ada, ben, cleo
SUBMISSIONS = {"blank": (RELEASE, 0)}


def _task(key: str):
    return functions.task(key)


def test_every_task_hides_the_library_that_answers_it():
    """trajectories answers every part, DeepLinear (models) the first two."""
    for key, task in registry.tasks_of("ps6").items():
        assert {"coursekit.trajectories", "coursekit.models"} <= set(task.hidden), key


# --- The references against computations of their own ----------------------------------------


def test_the_product_and_balancedness_are_multi_dot_and_numpys_norms():
    product, balance = _task("ps6.end_to_end"), _task("ps6.balancedness")
    for (weights,) in product.cases():
        expected = torch.linalg.multi_dot(weights[::-1]) if len(weights) > 1 else weights[0]
        torch.testing.assert_close(product.reference(weights), expected, rtol=1e-12, atol=1e-14)
        w = [t.numpy() for t in weights]
        gaps = [np.linalg.norm(b.T @ b - a @ a.T, "fro") for a, b in zip(w[:-1], w[1:])]
        np.testing.assert_allclose(balance.reference(weights).numpy(), gaps, rtol=1e-12, atol=1e-14)
    # The fourth case is built balanced, the others are not: both kinds are graded.
    gaps = [balance.reference(w).max().item() for (w,) in balance.cases()]
    assert gaps[3] < 1e-12 and min(gaps[:3]) > 0.1, gaps


def _balanced_factors(w_e: torch.Tensor, depth: int, seed: int) -> list[torch.Tensor]:
    """W_N ... W_1 = w_e, balanced (singular values split evenly, random rotations between)."""
    u, s, vt = torch.linalg.svd(w_e)
    root = torch.diag(s ** (1 / depth))
    g = torch.Generator().manual_seed(seed)
    qs = [
        torch.linalg.qr(torch.randn(len(s), len(s), generator=g, dtype=F64))[0]
        for _ in range(depth - 1)
    ]
    lefts, rights = [*qs, u], [vt, *(q.T for q in qs)]
    return [a @ root @ b for a, b in zip(lefts, rights)]


def test_the_preconditioner_is_j_j_transpose_of_the_product_map_at_balanced_factors():
    """Gradient flow on the layers moves vec(W_e) by -J J^T vec(grad), J the Jacobian of
    (W_1, ..., W_N) -> vec(W_N ... W_1); at balanced factors J J^T is P(W_e) (Arora et al.
    2018, Theorem 1). J from torch.autograd.functional.jacobian, row-major vec."""
    task = _task("ps6.preconditioner")
    for i, (w_e, depth) in enumerate(task.cases()):
        factors = _balanced_factors(w_e, depth, seed=i)

        def product(*ws):
            out = ws[0]
            for w in ws[1:]:
                out = w @ out
            return out.reshape(-1)

        torch.testing.assert_close(product(*factors), w_e.reshape(-1))
        gaps = [(b.T @ b - a @ a.T).abs().max().item() for a, b in zip(factors[:-1], factors[1:])]
        assert max(gaps, default=0.0) < 1e-12

        jac = torch.autograd.functional.jacobian(product, tuple(factors))
        j = torch.cat([block.reshape(w_e.numel(), -1) for block in jac], dim=1)
        torch.testing.assert_close(task.reference(w_e, depth), j @ j.T, rtol=1e-9, atol=1e-10)


def test_the_end_to_end_step_is_minus_lr_p_times_the_gradient():
    """The step, flattened row-major, is -lr P vec(G) with the P checked above."""
    step, precondition = _task("ps6.end_to_end_step"), _task("ps6.preconditioner")
    for w_e, grad, lr, depth in step.cases():
        moved = (w_e - step.reference(w_e, grad, lr, depth)) / lr
        expected = precondition.reference(w_e, depth) @ grad.reshape(-1)
        torch.testing.assert_close(moved.reshape(-1), expected, rtol=1e-9, atol=1e-12)


def _chain(layers, n):
    """The product of `layers` applied in order to an n-vector (the identity when none)."""
    out = np.eye(n)
    for w in layers:
        out = w @ out
    return out


def _numpy_losses(weights, x, y, lr, steps):
    """Gradient descent on the layers with the l4 gradient in closed form:
    dl/dW_e = (1/m) (r^3)^T x with r = x W_e^T - y, and dl/dW_j = A^T (dl/dW_e) B^T for
    W_e = A W_j B (A the layers above j, B those below)."""
    ws = [w.numpy().copy() for w in weights]
    x, y = x.numpy(), y.numpy()
    losses = []
    for step in range(steps + 1):
        w_e = ws[0]
        for w in ws[1:]:
            w_e = w @ w_e
        r = x @ w_e.T - y
        losses.append((r**4).sum() / (4 * len(x)))
        if step == steps:
            break
        g_e = (r**3).T @ x / len(x)
        grads = []
        for j in range(len(ws)):
            above = _chain(ws[j + 1 :], ws[j].shape[0])  # W_N ... W_{j+1}
            below = _chain(ws[:j], ws[0].shape[1])  # W_{j-1} ... W_1
            grads.append(above.T @ g_e @ below.T)
        ws = [w - lr * g for w, g in zip(ws, grads)]
    return np.array(losses)


def test_the_loss_curves_are_gradient_descent_written_out_in_numpy():
    task = _task("ps6.l4_losses")
    for weights, x, y, lr, steps in task.cases():
        expected = _numpy_losses(weights, x, y, lr, steps)
        np.testing.assert_allclose(
            task.reference(weights, x, y, lr, steps).numpy(), expected, rtol=1e-10
        )
        assert expected[-1] < 0.9 * expected[0]  # the rates of the cases descend


def test_the_race_is_won_by_the_fastest_rate_and_depth_helps_in_the_graded_cases():
    """Brute force over the grid with the numpy loop; in both graded cases depth 3 needs fewer
    steps than depth 1 at their best rates (the acceleration the notebook asks about)."""
    task = _task("ps6.steps_by_depth")
    for inits, x, y, lrs, threshold, max_steps in task.cases():
        best = []
        for weights in inits:
            with np.errstate(over="ignore", invalid="ignore"):
                curves = [_numpy_losses(weights, x, y, lr, max_steps) for lr in lrs]
            hits = [np.flatnonzero(c <= threshold) for c in curves]
            best.append(min((int(h[0]) for h in hits if len(h)), default=math.inf))
        got = task.reference(inits, x, y, lrs, threshold, max_steps).tolist()
        assert got == best, (got, best)
        assert best[2] < best[0] < math.inf, best


# --- The samples ------------------------------------------------------------------------------


def test_the_samples_earn_what_the_points_say():
    """ada everything; ben 1 of 4 balancedness and preconditioner cases and no race; cleo
    nothing for the two parts she handed to the library."""
    assert SAMPLES.built_to_earn("ps6", "ada") == (TOTAL, TOTAL)
    assert SAMPLES.built_to_earn("ps6", "ben") == (1 + 0.5 + 0.75 + 3 + 2, TOTAL)
    assert SAMPLES.built_to_earn("ps6", "cleo") == (1 + 2 + 2 + 3, TOTAL)


def test_partial_answers_fail_exactly_the_checks_the_expected_score_assumes():
    ben, passes = sample_answers("ps6", "ben"), STUDENTS["ben"].passes
    for name in ("balancedness", "preconditioner", "steps_by_depth"):
        assert cases_passed(f"ps6.{name}", ben[name]) == passes[f"test_{name}"], name
    for name in ("end_to_end", "end_to_end_step", "l4_losses"):
        key = f"ps6.{name}"
        assert cases_passed(key, ben[name]) == len(_task(key).cases()), name


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = tmp_path_factory.mktemp("course")
    rows = grade_with_samples(
        course, "ps6", SUBMISSIONS, cell_timeout=CELL_TIMEOUT, notebook_timeout=NOTEBOOK_TIMEOUT
    )
    return course, rows


@pytest.mark.parametrize("student", list(SUBMISSIONS))
def test_each_submission_earns_exactly_what_it_should(graded, student):
    check_submission(graded[1][student], SUBMISSIONS[student][1], TOTAL)


@pytest.mark.parametrize("student", list(STUDENTS))
def test_each_sample_earns_what_it_is_built_to(graded, student):
    check_sample("ps6", student, graded[1][student])


def test_feedback_explains_the_lost_points_and_hides_the_hidden_tests(graded):
    course, _ = graded
    text = feedback_text(course / "out/feedback/ben/ps6.html")
    assert "0.5 of 2 points" in text and "0.75 of 3 points" in text and "0 of 3 points" in text
    text = feedback_text(course / "out/feedback/cleo/ps6.html")
    assert "coursekit.trajectories is not available while this assignment is graded" in text
    check_feedback_hides_the_hidden_tests(course, "ps6", [*SUBMISSIONS, *STUDENTS])
