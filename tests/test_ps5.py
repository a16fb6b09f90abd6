"""Assignment 5 graded for real: `coursekit grade` on a temporary course holding only ps5.

The solved notebook passing its visible checks is covered by test_notebooks.py (it executes every
notebook in solutions/). Here the sandboxed grader grades the three sample submissions of
samples/ps5 (ada: everything right; ben: partly right; cleo: two answers turned into markdown),
the blank release and one that calls the hidden library: each must earn exactly the points
worked out from the parts (easgd_step 3, downpour_step 3, mode_maps 3, largest_stable_beta 2,
simulate 3, real_run 2: 16) and their cases (a part's points are split evenly over its inputs).

The real run starts two processes inside the sandbox, which talk over its own loopback
(127.0.0.1): ada's full marks show that it works there.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
import torch
from grading_course import (
    cases_passed,
    check_feedback_hides_the_hidden_tests,
    check_sample,
    check_submission,
    feedback_text,
    grade_with_samples,
    sample_makers,
)

from coursekit.grading import functions
from coursekit.grading.submissions import solved, with_answer

ROOT = Path(__file__).resolve().parents[1]
SOURCE = nbformat.read(ROOT / "solutions/ps5/ps5.ipynb", as_version=4)
RELEASE = nbformat.read(ROOT / "assignments/ps5/ps5.ipynb", as_version=4)
GOOD = solved(SOURCE, RELEASE)
TOTAL = 16
KEYS = (
    "ps5.easgd_step",
    "ps5.downpour_step",
    "ps5.mode_maps",
    "ps5.largest_stable_beta",
    "ps5.simulate",
    "ps5.real_run",
)
HIDDEN = (
    "coursekit.distributed.simulate",
    "coursekit.distributed.stability",
    "coursekit.distributed.sync",
    "coursekit.distributed.asynchronous",
)
F64 = torch.float64
CELL_TIMEOUT, NOTEBOOK_TIMEOUT = 90, 240


SAMPLES = sample_makers()
STUDENTS = SAMPLES.SAMPLES["ps5"]  # ada, ben, cleo

# Calls the library instead of computing: while grading, coursekit.distributed.simulate is hidden.
IMPORTS_REFERENCE = """\
from coursekit.distributed import simulate as library


def downpour_step(workers, server, velocity, grad_fn, lr, communicate):
    return library.downpour_step(workers, server, velocity, grad_fn, lr=lr,
                                 communicate=communicate)
"""

# student id -> (notebook, expected score)
SUBMISSIONS = {
    "blank": (RELEASE, 0),
    "imports_reference": (
        with_answer(GOOD, "downpour_step_solution", IMPORTS_REFERENCE),
        TOTAL - 3,
    ),
}

# Each rank simulates both workers and never talks: the right numbers, no bytes sent.
NO_COMMUNICATION = """\
def easgd_worker(X, y, x0, lr, alpha, tau, steps, batch_size, seed):
    p = dist.get_world_size()
    streams = [minibatches(len(X), batch_size, steps, seed=seed + r) for r in range(p)]
    workers, center = x0.expand(p, -1).clone(), x0.clone()
    for t in range(steps):
        index = torch.stack([next(stream) for stream in streams])
        Xb, yb = X[index], y[index]
        grads = (2.0 / index.shape[1]) * (Xb.transpose(1, 2) @ (Xb @ workers.unsqueeze(-1)
                                                               - yb.unsqueeze(-1))).squeeze(-1)
        if t % tau == 0:
            elastic = alpha * (workers - center)
            workers, center = workers - lr * grads - elastic, center + elastic.sum(0)
        else:
            workers = workers - lr * grads
    return workers[dist.get_rank()], center
"""


def _solution(grade_id: str) -> str:
    return next(
        c.source for c in SOURCE.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id
    )


def test_every_part_hides_the_library_implementations():
    """The simulator, the stability analysis and the real runs would answer the parts."""
    assert all(set(HIDDEN) <= set(functions.task(k).hidden) for k in KEYS)


# --- Part 3: the largest stable beta ----------------------------------------------------------


def _radius(eta: float, betas: torch.Tensor, tau: int, p: int) -> torch.Tensor:
    from coursekit.distributed.stability import stability_map

    return stability_map(torch.tensor([eta], dtype=F64), betas, tau=tau, p=p)[:, 0]


def test_the_stable_betas_form_one_interval_ending_at_the_reference():
    """Brute force, independent of the bisection: on a grid of 400,000 betas in (0, 4] every beta
    below the reference's beta* (by more than 1e-6) is stable and every one above is not; so the
    question has one answer, and a bisection on [0, 2] finds it."""
    from coursekit.grading.tasks.ps5 import BETA_CASES, BETA_MAX

    reference = functions.task("ps5.largest_stable_beta").reference
    betas = torch.linspace(0.0, 4.0, 400_001, dtype=F64)[1:]
    answers = []
    for eta, tau, p in BETA_CASES:
        beta_star = reference(eta, tau, p)
        stable = _radius(eta, betas, tau, p) < 1.0
        assert stable[betas < beta_star - 1e-6].all() and not stable[betas > beta_star + 1e-6].any()
        assert 0.0 < beta_star < BETA_MAX
        answers.append(beta_star)
    # Far apart: one constant can pass at most one case.
    assert min(abs(a - b) for i, a in enumerate(answers) for b in answers[i + 1 :]) > 0.05


def test_the_largest_stable_beta_matches_the_closed_form_and_the_modes():
    """p = tau = 1: stable exactly for beta < (4 - 2 eta) / (4 - eta) (lecture 8's closed form).
    In the last case the difference mode |a^(tau-1) (a - beta/p)| reaches 1 at beta* while the
    mean mode is still below 1: the case that catches a radius without the difference mode."""
    from coursekit.distributed.stability import easgd_mode_maps, spectral_radius
    from coursekit.grading.tasks.ps5 import BETA_CASES

    reference = functions.task("ps5.largest_stable_beta").reference
    for eta in (0.5, 1.0, 1.5):
        assert abs(reference(eta, 1, 1) - (4 - 2 * eta) / (4 - eta)) < 1e-9
    eta, tau, p = BETA_CASES[-1]
    beta_star = reference(eta, tau, p)
    mean, difference = easgd_mode_maps(eta, beta_star, tau=tau, p=p)
    assert abs(abs(difference.item()) - 1.0) < 1e-9 and spectral_radius(mean).item() < 0.9
    a = 1 - eta
    assert abs(beta_star - p * (1 / abs(a) ** (tau - 1) - abs(a))) < 1e-9  # |c| = 1, a < 0


def _passes(key: str, fn) -> int:
    """How many cases of `key` `fn` gets right; the reference's results computed once."""
    task = functions.task(key)
    return sum(
        functions._difference(functions._run(fn, args), functions._expected(key, i), task) is None
        for i, args in enumerate(task.cases())
    )


def test_a_guess_cannot_pass_the_largest_stable_beta():
    """No constant passes more than one case; the closed form of p = tau = 1 passes only its own
    case; the best value read off the notebook's map (grid spacing 0.025) passes none."""
    key = "ps5.largest_stable_beta"
    for guess in torch.arange(0.0, 2.0005, 0.001).tolist():
        assert _passes(key, lambda eta, tau, p, guess=guess: guess) <= 1, guess
    assert _passes(key, lambda eta, tau, p: (4 - 2 * eta) / (4 - eta)) == 1
    grid = torch.linspace(0.0, 2.0, 81, dtype=F64)

    def read_off_the_map(eta, tau, p):
        return grid[_radius(eta, grid, tau, p) < 1.0].max().item()

    assert _passes(key, read_off_the_map) == 0


# --- Part 4: the real run ---------------------------------------------------------------------


def test_a_worker_that_never_communicates_fails_on_its_bytes():
    """Two real processes, each simulating both workers without a message: the numbers equal
    the simulation's, but no bytes went through all_reduce, and the case fails on that."""
    from coursekit.distributed.notebook import run_source

    task = functions.task("ps5.real_run")
    (args,) = task.cases()
    result = functions._run(run_source(NO_COMMUNICATION, "easgd_worker"), args)
    problem = functions._difference(result, functions._expected("ps5.real_run", 0), task)
    assert problem is not None and "part 'bytes_sent'" in problem
    assert result["bytes_sent"].tolist() == [0.0, 0.0]
    for part in ("workers", "centers"):
        expected = functions._expected("ps5.real_run", 0)[part]
        torch.testing.assert_close(result[part], expected, rtol=1e-12, atol=1e-12)


# --- The samples ------------------------------------------------------------------------------


def test_the_samples_earn_what_the_points_say():
    """ada everything; ben 1 of 4 simulate cases (3 points), 3 of 4 beta cases (2 points), no
    real run; cleo only downpour_step and the real run, which need neither of her lost cells."""
    assert SAMPLES.built_to_earn("ps5", "ada") == (TOTAL, TOTAL)
    assert SAMPLES.built_to_earn("ps5", "ben") == (TOTAL - 2.25 - 0.5 - 2, TOTAL)
    assert SAMPLES.built_to_earn("ps5", "cleo") == (3 + 2, TOTAL)


def test_partial_answers_fail_exactly_the_cases_the_expected_score_assumes():
    """The sample ben's wrong answers against the reference, case by case, without a kernel
    (with the solution's easgd_step and mode_maps underneath)."""
    from coursekit.distributed.least_squares import least_squares_grads
    from coursekit.ensembles import minibatches

    namespace = {
        "torch": torch,
        "F64": F64,
        "minibatches": minibatches,
        "least_squares_grads": least_squares_grads,
    }
    exec(_solution("easgd_step_solution") + "\n" + _solution("mode_maps_solution"), namespace)
    exec(SAMPLES.PS5_SIMULATE_ONE_SEED + SAMPLES.PS5_BETA_MEAN_MODE, namespace)
    passes = STUDENTS["ben"].passes
    assert cases_passed("ps5.simulate", namespace["simulate"]) == passes["test_simulate"]
    beta = namespace["largest_stable_beta"]
    assert _passes("ps5.largest_stable_beta", beta) == passes["test_largest_stable_beta"]


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = tmp_path_factory.mktemp("course")
    rows = grade_with_samples(
        course, "ps5", SUBMISSIONS, cell_timeout=CELL_TIMEOUT, notebook_timeout=NOTEBOOK_TIMEOUT
    )
    return course, rows


@pytest.mark.parametrize("student", list(SUBMISSIONS))
def test_each_submission_earns_exactly_what_it_should(graded, student):
    check_submission(graded[1][student], SUBMISSIONS[student][1], TOTAL)


@pytest.mark.parametrize("student", list(STUDENTS))
def test_each_sample_earns_what_it_is_built_to(graded, student):
    check_sample("ps5", student, graded[1][student])


def test_feedback_explains_the_lost_points_and_hides_the_hidden_tests(graded):
    course, _ = graded
    text = feedback_text(course / "out/feedback/ada/ps5.html")
    assert "\u2713 two processes, tau = 3" in text  # the real run ran in the sandbox
    text = feedback_text(course / "out/feedback/ben/ps5.html")
    assert "0.75 of 3 points" in text and "1.5 of 2 points" in text
    assert "\u2717 eta = 1.9, tau = 2, p = 2: differs from the reference" in text
    assert "0 of 2 points" in text and "differs from the reference in part 'centers'" in text
    text = feedback_text(course / "out/feedback/imports_reference/ps5.html")
    assert "not available while this assignment is graded" in text
    check_feedback_hides_the_hidden_tests(course, "ps5", [*SUBMISSIONS, *STUDENTS])
