"""Assignment 1 graded for real: `coursekit grade` on a temporary course holding only ps1.

The solved notebook passing its visible checks is covered by test_notebooks.py (it executes every
notebook in solutions/). Here the sandboxed grader must give the solved submission full marks,
the blank release nothing, and a partly right one exactly the points worked out by hand from
the parts (hessian 3, condition_number 2, max_stable_lr 2, optimal_step 2, standardize 2,
gradient_descent 3: 14) and their cases (a part's points are split evenly over its inputs).
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from grading_course import cases_passed, feedback_text, grade_notebooks

from coursekit.grading import functions
from coursekit.grading.submissions import solved, with_answer

ROOT = Path(__file__).resolve().parents[1]
SOURCE = nbformat.read(ROOT / "solutions/ps1/ps1.ipynb", as_version=4)
RELEASE = nbformat.read(ROOT / "assignments/ps1/ps1.ipynb", as_version=4)
GOOD = solved(SOURCE, RELEASE)
TOTAL = 14
CELL_TIMEOUT, NOTEBOOK_TIMEOUT = 30, 120


# Forgets the bias: a (d, d) matrix where (d + 1, d + 1) is expected, on every case: 0 of 3.
HESSIAN_WITHOUT_BIAS = """\
def hessian(x):
    return x.T @ x / len(x)
"""
# Divides a constant column by its zero standard deviation (nan): 3 of 4 cases, 1.5 of 2.
STANDARDIZE_UNGUARDED = """\
def standardize(x):
    return (x - x.mean(dim=0)) / x.std(dim=0, correction=0)
"""
# Calls the reference instead of computing: while grading, coursekit.linear_unit is hidden.
IMPORTS_REFERENCE = "from coursekit.linear_unit import hessian\n"

# student id -> (notebook, expected score)
SUBMISSIONS = {
    "full": (GOOD, TOTAL),
    "blank": (RELEASE, 0),
    "partial": (
        with_answer(
            with_answer(GOOD, "hessian_solution", HESSIAN_WITHOUT_BIAS),
            "standardize_solution",
            STANDARDIZE_UNGUARDED,
        ),
        TOTAL - 3 - 0.5,
    ),
    "imports_reference": (with_answer(GOOD, "hessian_solution", IMPORTS_REFERENCE), TOTAL - 3),
}


def test_the_points_add_up_and_every_test_cell_records_its_task():
    """Does the notebook give 14 points, one task per test cell, each task registered?"""
    points, keys = 0, []
    for cell in SOURCE.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade"):
            points += meta["points"]
            first = cell.source.splitlines()[1]  # right under "### BEGIN HIDDEN TESTS"
            assert cell.source.startswith("### BEGIN HIDDEN TESTS"), meta["grade_id"]
            (key,) = re.findall(r'^record_function\("(ps1\.\w+)", \w+\)$', first)
            keys.append(key)
    assert points == TOTAL
    assert len(keys) == 6 and all(functions.task(k).cases() for k in keys)


def test_partial_answers_fail_exactly_the_cases_the_expected_score_assumes():
    """The hand-worked partial score, checked without a kernel: each wrong answer against the
    reference, case by case."""
    namespace = {}
    exec(HESSIAN_WITHOUT_BIAS + STANDARDIZE_UNGUARDED, namespace)
    for key, fn, passing in [
        ("ps1.hessian", namespace["hessian"], 0),
        ("ps1.standardize", namespace["standardize"], 3),
    ]:
        assert cases_passed(key, fn) == passing, key


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = tmp_path_factory.mktemp("course")
    notebooks = {student: nb for student, (nb, _) in SUBMISSIONS.items()}
    return course, grade_notebooks(
        course, "ps1", notebooks, cell_timeout=CELL_TIMEOUT, notebook_timeout=NOTEBOOK_TIMEOUT
    )


@pytest.mark.parametrize(
    "student",
    [
        "full",
        "blank",
        "partial",
        "imports_reference",
    ],
)
def test_each_submission_earns_exactly_what_it_should(graded, student):
    _, rows = graded
    row = rows[student]
    assert row.status == "graded", row.error
    assert (row.score, row.max_score) == (SUBMISSIONS[student][1], TOTAL), row.error


def test_feedback_explains_the_lost_points_and_hides_the_hidden_tests(graded):
    course, _ = graded
    text = feedback_text(course / "out/feedback/partial/ps1.html")
    assert "0 of 3 points" in text and "has shape (2, 2), expected (3, 3)" in text
    assert "1.5 of 2 points" in text and "a constant column: differs from the reference" in text
    for student in SUBMISSIONS:
        html = (course / "out/feedback" / student / "ps1.html").read_text()
        assert "HIDDEN TESTS" not in html and "record_function(" not in html.replace("&quot;", '"')
