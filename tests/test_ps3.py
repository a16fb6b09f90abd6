"""Assignment 3 graded for real: `coursekit grade` on a temporary course holding only ps3.

The solved notebook passing its visible checks is covered by test_notebooks.py (it executes every
notebook in solutions/). Here the sandboxed grader must give the solved submission full marks,
the blank release nothing, and a partly right one exactly the points worked out by hand from
the parts (hvp 3, power_iteration 4, hutchinson 3, classify 3: 13) and their cases (a part's
points are split evenly over its inputs).
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
import torch
from grading_course import cases_passed, feedback_text, grade_notebooks

from coursekit.grading import functions
from coursekit.grading.submissions import solved, with_answer

ROOT = Path(__file__).resolve().parents[1]
SOURCE = nbformat.read(ROOT / "solutions/ps3/ps3.ipynb", as_version=4)
RELEASE = nbformat.read(ROOT / "assignments/ps3/ps3.ipynb", as_version=4)
GOOD = solved(SOURCE, RELEASE)
TOTAL = 13
KEYS = ("ps3.hvp", "ps3.power_iteration", "ps3.hutchinson", "ps3.classify")
CELL_TIMEOUT, NOTEBOOK_TIMEOUT = 60, 180


# Never fixes the sign: only the case whose last iterate has its largest entry negative fails,
# 1 of 4 cases: 3 of 4 points.
POWER_UNSIGNED = """\
def power_iteration(model, loss_fn, v0, steps):
    v = v0 / v0.norm()
    for _ in range(steps):
        hv = hvp(model, loss_fn, v)
        v = hv / hv.norm()
    return (v @ hvp(model, loss_fn, v)).item(), v
"""
# The population standard deviation (divides by S): right only where every probe gives the same
# number (a diagonal Hessian), 1 of 4 cases: 0.75 of 3 points.
HUTCHINSON_BIASED = """\
def hutchinson(model, loss_fn, probes):
    forms = torch.stack([z @ hvp(model, loss_fn, z) for z in probes])
    return forms.mean().item(), (forms.std(correction=0) / math.sqrt(len(forms))).item()
"""
# Calls the library instead of computing: while grading, coursekit.curvature is hidden.
IMPORTS_REFERENCE = """\
from coursekit import curvature


def classify(w):
    model, loss_fn = one_one_one(float(w[0]), float(w[1]))
    eigenvalues = torch.linalg.eigvalsh(curvature.hessian(model, loss_fn))
    grad = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss_fn(model), [model.w1, model.w2])])
    return {"grad_norm": grad.norm().item(), "eigenvalues": eigenvalues,
            "index": int((eigenvalues < -1e-6).sum())}
"""

# student id -> (notebook, expected score)
SUBMISSIONS = {
    "full": (GOOD, TOTAL),
    "blank": (RELEASE, 0),
    "partial": (
        with_answer(
            with_answer(GOOD, "power_iteration_solution", POWER_UNSIGNED),
            "hutchinson_solution",
            HUTCHINSON_BIASED,
        ),
        TOTAL - 1 - 2.25,
    ),
    "imports_reference": (with_answer(GOOD, "classify_solution", IMPORTS_REFERENCE), TOTAL - 3),
}


def test_the_points_add_up_and_every_test_cell_records_its_task():
    """Does the notebook give 13 points, one task per test cell, each task registered?"""
    points, keys = 0, []
    for cell in SOURCE.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade"):
            points += meta["points"]
            first = cell.source.splitlines()[1]  # right under "### BEGIN HIDDEN TESTS"
            assert cell.source.startswith("### BEGIN HIDDEN TESTS"), meta["grade_id"]
            (key,) = re.findall(r'^record_function\("(ps3\.\w+)", \w+\)$', first)
            keys.append(key)
    assert points == TOTAL
    assert tuple(keys) == KEYS and all(functions.task(k).cases() for k in keys)
    assert all("coursekit.curvature" in functions.task(k).hidden for k in keys)


def test_eigenvector_signs_are_unambiguous():
    """Is the sign convention (largest entry positive) well defined on every case: no two
    entries of largest magnitude with opposite signs?"""
    task = functions.task("ps3.power_iteration")
    reference = functions._reference(task)
    for args in task.cases():
        _, v = reference(*args)
        order = v.abs().argsort(descending=True)
        first, second = v[order[0]], v[order[1]]
        assert first > 0
        assert first - second.abs() > 1e-3 or second > 0, v


def test_partial_answers_fail_exactly_the_cases_the_expected_score_assumes():
    """The hand-worked partial score, checked without a kernel: each wrong answer against the
    reference, case by case (with the solution's hvp underneath)."""
    solution = next(
        c.source
        for c in SOURCE.cells
        if c.metadata.get("nbgrader", {}).get("grade_id") == "hvp_solution"
    )
    namespace = {"torch": torch, "math": __import__("math")}
    exec(solution + "\n" + POWER_UNSIGNED + HUTCHINSON_BIASED, namespace)
    for key, fn, passing in [
        ("ps3.power_iteration", namespace["power_iteration"], 3),
        ("ps3.hutchinson", namespace["hutchinson"], 1),
    ]:
        assert cases_passed(key, fn) == passing, key


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = tmp_path_factory.mktemp("course")
    notebooks = {student: nb for student, (nb, _) in SUBMISSIONS.items()}
    return course, grade_notebooks(
        course, "ps3", notebooks, cell_timeout=CELL_TIMEOUT, notebook_timeout=NOTEBOOK_TIMEOUT
    )


@pytest.mark.parametrize("student", ["full", "blank", "partial", "imports_reference"])
def test_each_submission_earns_exactly_what_it_should(graded, student):
    _, rows = graded
    row = rows[student]
    assert row.status == "graded", row.error
    assert (row.score, row.max_score) == (SUBMISSIONS[student][1], TOTAL), row.error


def test_feedback_explains_the_lost_points_and_hides_the_hidden_tests(graded):
    course, _ = graded
    text = feedback_text(course / "out/feedback/partial/ps3.html")
    assert "3 of 4 points" in text and "differs from the reference in part '1'" in text
    assert "0.75 of 3 points" in text
    for student in SUBMISSIONS:
        html = (course / "out/feedback" / student / "ps3.html").read_text()
        assert "HIDDEN TESTS" not in html and "record_function(" not in html.replace("&quot;", '"')
