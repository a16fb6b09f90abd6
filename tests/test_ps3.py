"""Assignment 3 graded for real: `coursekit grade` on a temporary course holding only ps3.

The solved notebook passing its visible checks is covered by test_notebooks.py (it executes every
notebook in solutions/). Here the sandboxed grader grades the three sample submissions of
samples/ps3 (ada: everything right; ben: partly right; cleo: a syntax error that breaks three
parts), the blank release and one that calls the hidden references: each must earn exactly the
points worked out from the parts (hvp 3, power_iteration 4, hutchinson 3, classify 3, spread 3:
16) and their cases (a part's points are split evenly over its inputs).
"""

from __future__ import annotations

import math
from pathlib import Path

import nbformat
import pytest
import torch
import torch.nn.functional as F
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
from coursekit.models import MLP

ROOT = Path(__file__).resolve().parents[1]
SOURCE = nbformat.read(ROOT / "solutions/ps3/ps3.ipynb", as_version=4)
RELEASE = nbformat.read(ROOT / "assignments/ps3/ps3.ipynb", as_version=4)
GOOD = solved(SOURCE, RELEASE)
TOTAL = 16
KEYS = ("ps3.hvp", "ps3.power_iteration", "ps3.hutchinson", "ps3.classify", "ps3.spread")
CELL_TIMEOUT, NOTEBOOK_TIMEOUT = 60, 180


SAMPLES = sample_makers()
STUDENTS = SAMPLES.SAMPLES["ps3"]  # ada, ben, cleo

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
# Trains the nets with the library that computes the reference: hidden while grading too.
SPREAD_WITH_ENSEMBLES = """\
from coursekit.ensembles import Ensemble, evaluate, train_ensemble


def spread(data, width, runs, steps):
    nets = [MLP([64, width, 10], generator=torch.Generator().manual_seed(k)).double()
            for k in range(runs)]
    ensemble = Ensemble(nets)
    optimizer = torch.optim.SGD(ensemble.parameters(), lr=0.2, momentum=0.9)
    train_ensemble(ensemble, optimizer, F.cross_entropy, data.x_train, data.y_train, steps=steps)
    losses = evaluate(ensemble, data.x_test, data.y_test).loss
    return {"losses": losses, "std": losses.std(), "gap": losses.max() - losses.min()}
"""

# student id -> (notebook, expected score)
SUBMISSIONS = {
    "blank": (RELEASE, 0),
    "imports_reference": (
        with_answer(
            with_answer(GOOD, "classify_solution", IMPORTS_REFERENCE),
            "spread_solution",
            SPREAD_WITH_ENSEMBLES,
        ),
        TOTAL - 3 - 3,
    ),
}


def _solution(grade_id: str) -> str:
    return next(
        c.source for c in SOURCE.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id
    )


def test_every_part_hides_the_curvature_tools_and_spread_the_ensembles():
    """Calling coursekit.curvature (or, for spread, coursekit.ensembles) would answer a part."""
    assert all("coursekit.curvature" in functions.task(k).hidden for k in KEYS)
    assert "coursekit.ensembles" in functions.task("ps3.spread").hidden


def test_eigenvector_signs_are_unambiguous():
    """Is the sign convention (largest entry positive) well defined on every case: no two
    entries of largest magnitude with opposite signs?"""
    task = functions.task("ps3.power_iteration")
    reference = task.reference
    for args in task.cases():
        _, v = reference(*args)
        order = v.abs().argsort(descending=True)
        first, second = v[order[0]], v[order[1]]
        assert first > 0
        assert first - second.abs() > 1e-3 or second > 0, v


def _passes(key: str, fn) -> int:
    """How many cases of `key` `fn` gets right; the reference's results computed once."""
    task = functions.task(key)
    return sum(
        functions._difference(functions._run(fn, args), functions._expected(key, i), task) is None
        for i, args in enumerate(task.cases())
    )


def _spread_variant(old: str = "", new: str = ""):
    """The solution's `spread`, with `old` replaced by `new` in its source."""
    source = _solution("spread_solution")
    assert old in source
    namespace = {"torch": torch, "F": F, "MLP": MLP}
    exec(source.replace(old, new), namespace)
    return namespace["spread"]


def test_spread_is_graded_tightly_enough_to_reject_every_slip_but_a_loop_passes():
    """The reference trains all nets at once (`coursekit.ensembles`), the solution one by one in
    a loop: rounding apart they agree, within the task's rtol = 1e-9, on every case. One step
    less, no momentum, other seeds, the training loss instead of the test loss, or untrained nets
    (a guess that ignores `steps`) each fail every case."""
    assert _passes("ps3.spread", _spread_variant()) == 3
    solution = _spread_variant()
    for slip in [
        lambda data, width, runs, steps: solution(data, width, runs, steps - 1),
        lambda data, width, runs, steps: solution(data, width, runs, 0),
        _spread_variant("momentum=0.9", "momentum=0.0"),
        _spread_variant("manual_seed(k)", "manual_seed(k + 1)"),
        _spread_variant("net(data.x_test), data.y_test", "net(data.x_train), data.y_train"),
    ]:
        assert _passes("ps3.spread", slip) == 0


def test_spread_reference_agrees_with_a_loop_to_rounding():
    """The margin behind rtol = 1e-9: the ensemble's losses and the loop's, in float64, differ
    by less than 1e-13 relative on every case (measured 5e-16)."""
    loop = _spread_variant()
    for i, args in enumerate(functions.task("ps3.spread").cases()):
        expected = functions._expected("ps3.spread", i)["losses"]
        got = loop(*args)["losses"]
        assert ((got - expected).abs() / expected.abs()).max() < 1e-13, i


def test_the_samples_earn_what_the_points_say():
    """ada everything; ben 3 of 4 power cases (4 points), 1 of 4 Hutchinson cases (3 points),
    no spread case; cleo only classify and spread, which do not call hvp."""
    assert SAMPLES.built_to_earn("ps3", "ada") == (TOTAL, TOTAL)
    assert SAMPLES.built_to_earn("ps3", "ben") == (TOTAL - 1 - 2.25 - 3, TOTAL)
    assert SAMPLES.built_to_earn("ps3", "cleo") == (3 + 3, TOTAL)


def test_partial_answers_fail_exactly_the_cases_the_expected_score_assumes():
    """The sample ben's wrong answers against the reference, case by case, without a kernel
    (with the solution's hvp underneath)."""
    namespace = {"torch": torch, "math": math, "F": F, "MLP": MLP}
    exec(_solution("hvp_solution"), namespace)
    exec(
        SAMPLES.PS3_POWER_UNSIGNED + SAMPLES.PS3_HUTCHINSON_BIASED + SAMPLES.PS3_SPREAD_POPULATION,
        namespace,
    )
    passes = STUDENTS["ben"].passes
    assert (
        cases_passed("ps3.power_iteration", namespace["power_iteration"])
        == passes["test_power_iteration"]
    )
    assert cases_passed("ps3.hutchinson", namespace["hutchinson"]) == passes["test_hutchinson"]
    assert _passes("ps3.spread", namespace["spread"]) == passes["test_spread"]
    # cleo's hvp does not compile, so nothing is defined: every case of the parts calling it fails.
    broken = next(
        c.source
        for c in nbformat.read(ROOT / "samples/ps3/cleo/ps3.ipynb", as_version=4).cells
        if c.metadata.get("nbgrader", {}).get("grade_id") == "hvp_solution"
    )
    with pytest.raises(SyntaxError):
        compile(broken, "hvp_solution", "exec")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = tmp_path_factory.mktemp("course")
    rows = grade_with_samples(
        course, "ps3", SUBMISSIONS, cell_timeout=CELL_TIMEOUT, notebook_timeout=NOTEBOOK_TIMEOUT
    )
    return course, rows


@pytest.mark.parametrize("student", list(SUBMISSIONS))
def test_each_submission_earns_exactly_what_it_should(graded, student):
    check_submission(graded[1][student], SUBMISSIONS[student][1], TOTAL)


@pytest.mark.parametrize("student", list(STUDENTS))
def test_each_sample_earns_what_it_is_built_to(graded, student):
    check_sample("ps3", student, graded[1][student])


def test_feedback_explains_the_lost_points_and_hides_the_hidden_tests(graded):
    course, _ = graded
    text = feedback_text(course / "out/feedback/ben/ps3.html")
    assert "3 of 4 points" in text and "differs from the reference in part '1'" in text
    assert "0.75 of 3 points" in text
    assert "0 of 3 points" in text and "differs from the reference in part 'std'" in text
    text = feedback_text(course / "out/feedback/cleo/ps3.html")
    assert "NameError" in text and "did the cell that defines it run without an error?" in text
    text = feedback_text(course / "out/feedback/imports_reference/ps3.html")
    assert "coursekit.ensembles is not available while this assignment is graded" in text
    check_feedback_hides_the_hidden_tests(course, "ps3", [*SUBMISSIONS, *STUDENTS])
