"""Assignment 1 graded for real: `coursekit grade` on a temporary course holding only ps1.

The solved notebook passing its visible checks is covered by test_notebooks.py (it executes every
notebook in solutions/). Here the sandboxed grader grades the three sample submissions of
samples/ps1 (ada: everything right; ben: partly right; cleo: a kernel that stops halfway) and
one that calls the reference: each must earn exactly the points worked out
from the parts (hessian 3, condition_number 2, max_stable_lr 2, optimal_step 2, standardize 2,
gradient_descent 3: 14) and their cases (a part's points are split evenly over its inputs).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from grading_course import (
    cases_passed,
    check_feedback_hides_the_hidden_tests,
    check_sample,
    check_submission,
    feedback_text,
    grade_with_samples,
    sample_makers,
)

from coursekit.grading.submissions import solved, with_answer

ROOT = Path(__file__).resolve().parents[1]
SOURCE = nbformat.read(ROOT / "solutions/ps1/ps1.ipynb", as_version=4)
RELEASE = nbformat.read(ROOT / "assignments/ps1/ps1.ipynb", as_version=4)
GOOD = solved(SOURCE, RELEASE)
TOTAL = 14
CELL_TIMEOUT, NOTEBOOK_TIMEOUT = 30, 120


SAMPLES = sample_makers()
STUDENTS = SAMPLES.SAMPLES["ps1"]  # ada, ben, cleo

# Calls the reference instead of computing: while grading, coursekit.linear_unit is hidden.
IMPORTS_REFERENCE = "from coursekit.linear_unit import hessian\n"

# student id -> (notebook, expected score)
SUBMISSIONS = {
    "imports_reference": (with_answer(GOOD, "hessian_solution", IMPORTS_REFERENCE), TOTAL - 3),
}


def test_the_samples_earn_what_the_points_say():
    """Full marks for ada; for ben the points of the cases he passes; for cleo the parts before
    her kernel stopped (hessian 3, condition_number 2, max_stable_lr 2)."""
    assert SAMPLES.built_to_earn("ps1", "ada") == (TOTAL, TOTAL)
    assert SAMPLES.built_to_earn("ps1", "ben") == (TOTAL - 3 - 0.5, TOTAL)  # 0 of 4, 3 of 4
    assert SAMPLES.built_to_earn("ps1", "cleo") == (3 + 2 + 2, TOTAL)


def test_partial_answers_fail_exactly_the_cases_the_expected_score_assumes():
    """The sample ben's wrong answers against the reference, case by case, without a kernel."""
    namespace = {}
    exec(SAMPLES.PS1_HESSIAN_WITHOUT_BIAS + SAMPLES.PS1_STANDARDIZE_UNGUARDED, namespace)
    passes = STUDENTS["ben"].passes
    assert passes == {"test_hessian": 0, "test_standardize": 3}
    assert cases_passed("ps1.hessian", namespace["hessian"]) == passes["test_hessian"]
    assert cases_passed("ps1.standardize", namespace["standardize"]) == passes["test_standardize"]


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = tmp_path_factory.mktemp("course")
    rows = grade_with_samples(
        course, "ps1", SUBMISSIONS, cell_timeout=CELL_TIMEOUT, notebook_timeout=NOTEBOOK_TIMEOUT
    )
    return course, rows


@pytest.mark.parametrize("student", list(SUBMISSIONS))
def test_each_submission_earns_exactly_what_it_should(graded, student):
    check_submission(graded[1][student], SUBMISSIONS[student][1], TOTAL)


@pytest.mark.parametrize("student", list(STUDENTS))
def test_each_sample_earns_what_it_is_built_to(graded, student):
    check_sample("ps1", student, graded[1][student])


def test_feedback_explains_the_lost_points_and_hides_the_hidden_tests(graded):
    course, _ = graded
    text = feedback_text(course / "out/feedback/ben/ps1.html")
    assert "0 of 3 points" in text and "has shape (2, 2), expected (3, 3)" in text
    assert "1.5 of 2 points" in text and "a constant column: differs from the reference" in text
    check_feedback_hides_the_hidden_tests(course, "ps1", [*SUBMISSIONS, *STUDENTS])
