"""Assignment 4 graded for real: `coursekit grade` on a temporary course holding only ps4.

The solved notebook passing its visible checks is covered by test_notebooks.py (it executes every
notebook in solutions/). Here the references are checked against computations of their own (the
stationary variance against the variance recurrence and a brute-force simulation, the chains
against the draw order the notebook prescribes, the schedule against rates worked out by hand),
the sample ben's wrong answers fail exactly the checks his score assumes, and the sandboxed
grader grades the three samples of samples/ps4 (ada: everything right; ben: partly right; cleo:
two parts handed to the hidden library) and the blank release: each must earn exactly the points
worked out from the parts (stationary_variance 2, simulate_sgd 3, linear_scaling_schedule 2,
StatisticalSGD 6: 13), split evenly over a function's cases and over an optimizer's cases times
variants.
"""

from __future__ import annotations

import math
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
    sample_answers,
    sample_makers,
)

from coursekit.grading import functions, optimizers, registry

ROOT = Path(__file__).resolve().parents[1]
RELEASE = nbformat.read(ROOT / "assignments/ps4/ps4.ipynb", as_version=4)
TOTAL = 13
F64 = torch.float64
LIBRARY = {"coursekit.sgd_theory", "coursekit.statistical_lr", "coursekit.optim"}
CELL_TIMEOUT, NOTEBOOK_TIMEOUT = 60, 120
VARIANTS = len(optimizers.variants())  # 4, or 5 where there is a GPU
BEN_OPTIMIZER = round(6 * (VARIANTS - 1) / VARIANTS, 2)  # all but "two param groups": 4.5 of 6

SAMPLES = sample_makers()
STUDENTS = SAMPLES.SAMPLES["ps4"]  # ada, ben, cleo

# student id -> (notebook, expected score)
SUBMISSIONS = {"blank": (RELEASE, 0)}


def _task_cases(key: str) -> list[tuple]:
    return functions.task(key).cases()


def test_every_task_hides_the_library_that_answers_it():
    """sgd_theory has the closed form and the chains, optim the schedule and the optimizer,
    statistical_lr the optimizer's derivation; torch.optim's optimizers stay hidden too."""
    for key, task in registry.tasks_of("ps4").items():
        assert LIBRARY <= set(task.hidden), key
    assert "torch.optim.*" in optimizers.task("ps4.statistical_sgd").hidden


# --- The references against computations of their own ----------------------------------------


def test_the_stationary_variance_is_the_fixed_point_of_the_variance_recurrence():
    """v -> (1 - eta h)^2 v + eta^2 sigma^2 / B iterated from 0 until it stops moving (it
    contracts for 0 < eta h < 2) lands on the reference's closed form, in every case."""
    reference = functions.task("ps4.stationary_variance").reference
    for lr, batch, h, sigma in _task_cases("ps4.stationary_variance"):
        v = 0.0
        for _ in range(20_000):
            v = (1 - lr * h) ** 2 * v + lr**2 * sigma**2 / batch
        assert math.isclose(reference(lr, batch, h, sigma), v, rel_tol=1e-10), (lr, batch, h)


def test_the_stationary_variance_is_what_many_chains_settle_at():
    """Brute force: 20,000 chains of the noisy quadratic, simulated here with plain torch from
    the minimum until the variance's gap (1 - eta h)^(2t) v_inf is below 1e-3 v_inf, have the
    closed form's variance in every case within 5 % (the sample variance's relative standard
    error is sqrt(2 / 20,000) = 1 %)."""
    reference = functions.task("ps4.stationary_variance").reference
    gen = torch.Generator().manual_seed(4)
    chains = 20_000
    for lr, batch, h, sigma in _task_cases("ps4.stationary_variance"):
        steps = math.ceil(math.log(1e-3) / (2 * math.log(abs(1 - lr * h))))
        theta = torch.zeros(chains, dtype=F64)
        for _ in range(steps):
            noise = sigma / math.sqrt(batch) * torch.randn(chains, generator=gen, dtype=F64)
            theta = theta - lr * (h * theta + noise)
        measured = theta.var().item()
        assert abs(measured / reference(lr, batch, h, sigma) - 1) < 0.05, (lr, batch, measured)


def test_the_chains_are_drawn_in_the_order_the_notebook_prescribes():
    """The reference (`sgd_chains`) equals, number for number, the loop Part 1b asks for: one
    generator seeded with `seed`, one ``randn(chains)`` per step scaled by sigma / sqrt(B). Its
    chains started at the minimum also spread as the closed form says (to 10 % with 1,000)."""
    reference = functions.task("ps4.simulate_sgd").reference
    for lr, batch, h, sigma, start, chains, steps, seed in _task_cases("ps4.simulate_sgd"):
        gen = torch.Generator().manual_seed(seed)
        theta = torch.full((chains,), float(start), dtype=F64)
        for _ in range(steps):
            eps = torch.randn(chains, generator=gen, dtype=F64)
            theta = theta - lr * (h * theta + sigma / math.sqrt(batch) * eps)
        got = reference(lr, batch, h, sigma, start, chains, steps, seed)
        torch.testing.assert_close(got, theta, rtol=1e-14, atol=1e-14)
    assert torch.equal(reference(0.1, 4, 1.0, 1.0, 2.5, 3, 0, 0), torch.full((3,), 2.5, dtype=F64))
    settled = reference(0.5, 4, 1.0, 1.0, 0.0, 1000, 200, 0)
    assert abs(settled.var().item() / (0.5 / (4 * 1.5)) - 1) < 0.1


def test_the_schedule_is_the_one_worked_out_by_hand():
    """eta_t = eta_0 (1 + (k - 1) t / W) before step W, k eta_0 from it, for every case."""
    by_hand = {
        (0.1, 256, 32, 5, 10): [0.1, 0.24, 0.38, 0.52, 0.66] + [0.8] * 5,  # k = 8
        (0.05, 64, 64, 3, 6): [0.05] * 6,  # k = 1: nothing to scale
        (0.1, 512, 128, 0, 4): [0.4] * 4,  # no warm-up
        (0.2, 16, 64, 4, 8): [0.2, 0.1625, 0.125, 0.0875] + [0.05] * 4,  # k = 1/4: down
    }
    reference = functions.task("ps4.linear_scaling_schedule").reference
    assert sorted(_task_cases("ps4.linear_scaling_schedule")) == sorted(by_hand)
    for args, rates in by_hand.items():
        torch.testing.assert_close(reference(*args), torch.tensor(rates, dtype=F64))


def test_the_optimizer_cases_reach_every_branch_of_the_update():
    """Over the 20 steps of the grading problem, in every case both parameters that get
    gradients (one per group in the two-group variant) have coordinates with B_t > b, where the
    noise dominates and b sets the weights, and some coordinate sits at the floor B_t = b; the
    capped case steps at max_lr. A class that gets one branch wrong, or reads b from anywhere
    but its group, cannot pass a case on the others alone."""
    from coursekit.optim import StatisticalSGD

    for _, hyper in optimizers.task("ps4.statistical_sgd").cases:
        params, noise = optimizers._problem(F64, "cpu")
        params = [torch.nn.Parameter(p) for p in params]
        optimizer = StatisticalSGD(params, **hyper)
        above, at_floor, capped = [False, False], False, False
        for t in range(optimizers.STEPS):
            for p, g in zip(params, optimizers._gradients(params, noise[t]) + [None]):
                p.grad = g
            optimizer.step()
            for i, p in enumerate(params[:2]):
                state = optimizer.state[p]
                above[i] |= bool((state["batch_estimate"] > hyper["batch_size"]).any())
                at_floor |= bool((state["batch_estimate"] == hyper["batch_size"]).any())
                capped |= bool((state["lr_t"] == hyper.get("max_lr", -1)).any())
        assert all(above) and at_floor, hyper
        assert capped == ("max_lr" in hyper), hyper


# --- The samples ------------------------------------------------------------------------------


def _optimizer_checks_passed(key: str, optimizer_class) -> int:
    """How many (case, variant) checks of optimizer task `key` the class passes, as the grader
    counts them from what `record_optimizer` records."""
    task = optimizers.task(key)
    tensors = {}
    for i, (_, hyper) in enumerate(task.cases):
        second = task.second_group(hyper) if task.second_group else None
        for variant in optimizers.variants():
            tensors[f"{i}/{variant}"] = optimizers.trajectory(
                optimizer_class, hyper, variant, second_group=second
            )
    return optimizers.grade_optimizer(key, tensors, {}).passed


def test_the_samples_earn_what_the_points_say():
    """ada everything; ben 1 of 4 chain cases (3 points), 2 of 4 schedules (2 points) and every
    optimizer check but the two-group ones (6 points); cleo only the two parts she wrote."""
    assert SAMPLES.built_to_earn("ps4", "ada") == (TOTAL, TOTAL)
    assert SAMPLES.built_to_earn("ps4", "ben") == (2 + 0.75 + 1 + BEN_OPTIMIZER, TOTAL)
    assert SAMPLES.built_to_earn("ps4", "cleo") == (3 + 2, TOTAL)


def test_partial_answers_fail_exactly_the_checks_the_expected_score_assumes():
    """The sample ben's answers against the references, check by check, without a kernel."""
    ben, passes = sample_answers("ps4", "ben"), STUDENTS["ben"].passes
    assert cases_passed("ps4.stationary_variance", ben["stationary_variance"]) == 4
    assert cases_passed("ps4.simulate_sgd", ben["simulate_sgd"]) == passes["test_simulate_sgd"]
    schedule = ben["linear_scaling_schedule"]
    assert (
        cases_passed("ps4.linear_scaling_schedule", schedule)
        == passes["test_linear_scaling_schedule"]
    )
    got = _optimizer_checks_passed("ps4.statistical_sgd", ben["StatisticalSGD"])
    assert got == passes["test_statistical_sgd"]
    ada = sample_answers("ps4", "ada")["StatisticalSGD"]
    assert _optimizer_checks_passed("ps4.statistical_sgd", ada) == 3 * VARIANTS


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = tmp_path_factory.mktemp("course")
    rows = grade_with_samples(
        course, "ps4", SUBMISSIONS, cell_timeout=CELL_TIMEOUT, notebook_timeout=NOTEBOOK_TIMEOUT
    )
    return course, rows


@pytest.mark.parametrize("student", list(SUBMISSIONS))
def test_each_submission_earns_exactly_what_it_should(graded, student):
    check_submission(graded[1][student], SUBMISSIONS[student][1], TOTAL)


@pytest.mark.parametrize("student", list(STUDENTS))
def test_each_sample_earns_what_it_is_built_to(graded, student):
    check_sample("ps4", student, graded[1][student])


def test_feedback_explains_the_lost_points_and_hides_the_hidden_tests(graded):
    course, _ = graded
    text = feedback_text(course / "out/feedback/ben/ps4.html")
    assert "0.75 of 3 points" in text and "1 of 2 points" in text
    assert f"{BEN_OPTIMIZER:g} of 6 points" in text
    assert "two param groups: differs from the reference after step" in text
    text = feedback_text(course / "out/feedback/cleo/ps4.html")
    assert "coursekit.sgd_theory is not available while this assignment is graded" in text
    assert "coursekit.optim is not available while this assignment is graded" in text
    check_feedback_hides_the_hidden_tests(course, "ps4", [*SUBMISSIONS, *STUDENTS])
