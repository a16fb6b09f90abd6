"""Assignment 5 graded for real: `coursekit grade` on a temporary course holding only ps5.

The solved notebook passing its visible checks is covered by test_notebooks.py (it executes every
notebook in solutions/). Here the sandboxed grader must give the solved submission full marks,
the blank release nothing, and partly right ones exactly the points worked out by hand from the
parts (easgd_step 3, downpour_step 3, mode_maps 3, which_stable 1, simulate 3: 13) and their
cases (a part's points are split evenly over its inputs).

The real two-process run of part 4 is not graded (inside the sandbox `runtime.launch` cannot
start its processes); its worker is checked here, outside the sandbox, against the reference.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest
import torch
from grading_course import cases_passed, feedback_text, grade_notebooks

from coursekit.grading import functions, release
from coursekit.grading.submissions import solved, with_answer

ROOT = Path(__file__).resolve().parents[1]
SOURCE = nbformat.read(ROOT / "solutions/ps5/ps5.ipynb", as_version=4)
RELEASE = nbformat.read(ROOT / "assignments/ps5/ps5.ipynb", as_version=4)
GOOD = solved(SOURCE, RELEASE)
TOTAL = 13
KEYS = ("ps5.easgd_step", "ps5.downpour_step", "ps5.mode_maps", "ps5.which_stable", "ps5.simulate")
HIDDEN = (
    "coursekit.distributed.simulate",
    "coursekit.distributed.stability",
    "coursekit.distributed.sync",
    "coursekit.distributed.asynchronous",
)
CELL_TIMEOUT, NOTEBOOK_TIMEOUT = 60, 180


# The period in the wrong order (the local steps first, then the communication): right only
# where tau = 1, 2 of 4 cases: 1.5 of 3 points.
MODES_SWAPPED = """\
def mode_maps(eta, beta, tau, p):
    a, alpha = 1.0 - eta, beta / p
    decay = a ** (tau - 1)
    top = torch.stack([(a - alpha) * decay, alpha * torch.ones_like(eta)], dim=-1)
    bottom = torch.stack([beta * decay, 1.0 - beta], dim=-1)
    return torch.stack([top, bottom], dim=-2), decay * (a - alpha)
"""
# Every worker draws the same minibatches (seed instead of seed + r): right only for one
# worker, 1 of 4 cases: 0.75 of 3 points.
SIMULATE_ONE_SEED = """\
def simulate(X, y, x0, p, lr, alpha, tau, steps, batch_size, seed):
    streams = [minibatches(len(X), batch_size, steps, seed=seed) for r in range(p)]
    workers, center = x0.expand(p, -1).clone(), x0.clone()
    for t in range(steps):
        index = torch.stack([next(stream) for stream in streams])
        grads = least_squares_grads(X[index], y[index], workers)
        workers, center = easgd_step(workers, center, grads, lr, alpha, t % tau == 0)
    return workers, center
"""
# A guess: both settings stable. 0 of 1 point.
GUESSED = "STABLE_A, STABLE_B = True, True\n"
# Calls the library instead of computing: while grading, coursekit.distributed.simulate is hidden.
IMPORTS_REFERENCE = """\
from coursekit.distributed import simulate as library


def downpour_step(workers, server, velocity, grad_fn, lr, communicate):
    return library.downpour_step(workers, server, velocity, grad_fn, lr=lr,
                                 communicate=communicate)
"""

PARTIAL = with_answer(
    with_answer(
        with_answer(GOOD, "mode_maps_solution", MODES_SWAPPED),
        "simulate_solution",
        SIMULATE_ONE_SEED,
    ),
    "which_stable_solution",
    GUESSED,
)
# student id -> (notebook, expected score)
SUBMISSIONS = {
    "full": (GOOD, TOTAL),
    "blank": (RELEASE, 0),
    "partial": (PARTIAL, TOTAL - 1.5 - 2.25 - 1),
    "imports_reference": (
        with_answer(GOOD, "downpour_step_solution", IMPORTS_REFERENCE),
        TOTAL - 3,
    ),
}


def _solution(grade_id: str) -> str:
    return next(
        c.source for c in SOURCE.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id
    )


def test_the_points_add_up_and_every_test_cell_records_its_task():
    """Does the notebook give 13 points, one task per test cell, each task registered and
    hiding the library's implementations?"""
    points, keys = 0, []
    for cell in SOURCE.cells:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("grade"):
            points += meta["points"]
            assert cell.source.startswith("### BEGIN HIDDEN TESTS"), meta["grade_id"]
            first = cell.source.splitlines()[1]  # right under "### BEGIN HIDDEN TESTS"
            (key,) = re.findall(r'^record_function\("(ps5\.\w+)", .+\)$', first)
            keys.append(key)
    assert points == TOTAL
    assert tuple(keys) == KEYS and all(functions.task(k).cases() for k in keys)
    assert all(set(HIDDEN) <= set(functions.task(k).hidden) for k in keys)


def test_release_has_no_solutions_or_hidden_tests():
    text = json.dumps(RELEASE)
    assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
    assert 'record_function(\\"' not in text
    assert "elastic.sum" not in text and "STABLE_A = bool" not in text


def test_assignments_folder_is_the_generated_release(tmp_path):
    release.generate(ROOT, "ps5", tmp_path)
    fresh = nbformat.read(tmp_path / "ps5/ps5.ipynb", as_version=4)

    def cells(nb):
        return [(c.cell_type, c.source, c.metadata.get("nbgrader")) for c in nb.cells]

    assert cells(RELEASE) == cells(fresh), "run `coursekit build` and commit assignments/ps5"
    assert sorted(p.name for p in (tmp_path / "ps5").iterdir()) == ["ps5.ipynb"]


def test_the_question_of_part_3_has_a_clear_answer():
    """Setting A diverges and B converges, both far from the boundary radius = 1."""
    from coursekit.distributed.stability import stability_map
    from coursekit.grading.tasks.ps5 import SETTINGS

    def radius(eta, beta, tau, p):
        grid = [torch.tensor([v], dtype=torch.float64) for v in (eta, beta)]
        return stability_map(*grid, tau=tau, p=p).item()

    assert radius(*SETTINGS["A"]) > 1.2 and radius(*SETTINGS["B"]) < 0.1
    assert functions._reference(functions.task("ps5.which_stable"))() == (False, True)


def test_partial_answers_fail_exactly_the_cases_the_expected_score_assumes():
    """The hand-worked partial score, checked without a kernel: each wrong answer against the
    reference, case by case (with the solution's easgd_step underneath)."""
    from coursekit.ensembles import minibatches
    from coursekit.grading.tasks.ps5 import least_squares_grads

    namespace = {
        "torch": torch,
        "minibatches": minibatches,
        "least_squares_grads": least_squares_grads,
    }
    exec(_solution("easgd_step_solution") + "\n" + MODES_SWAPPED + SIMULATE_ONE_SEED, namespace)
    assert cases_passed("ps5.mode_maps", namespace["mode_maps"]) == 2
    assert cases_passed("ps5.simulate", namespace["simulate"]) == 1
    assert cases_passed("ps5.which_stable", lambda: (True, True)) == 0


def test_the_real_run_worker_equals_the_reference_simulation():
    """Two real processes running `easgd_rank` end where `simulate_easgd` with p = 2 does."""
    from coursekit.distributed.runtime import launch
    from coursekit.distributed.simulate import simulate_easgd
    from coursekit.grading.tasks.ps5 import easgd_rank, problem

    X, y, x0 = problem(96, 4, 7)
    settings = dict(lr=0.05, alpha=0.2, tau=3, steps=30, batch_size=16, seed=2)
    ranks = launch(easgd_rank, 2, X, y, x0, **settings)
    reference = simulate_easgd(X, y, x0, workers=2, **settings)
    torch.testing.assert_close(
        torch.stack([x for x, _ in ranks]), reference.workers, rtol=1e-12, atol=1e-12
    )
    for _, center in ranks:
        torch.testing.assert_close(center, reference.center, rtol=1e-12, atol=1e-12)


def test_the_real_run_cell_is_skipped_in_the_sandbox():
    """The ungraded real run must not start processes while graded (the sandbox cannot)."""
    cell = next(c for c in SOURCE.cells if "launch(easgd_rank" in c.source)
    assert 'if os.environ.get("COURSEKIT_SANDBOX"):' in cell.source
    assert not cell.metadata.get("nbgrader", {}).get("grade")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = tmp_path_factory.mktemp("course")
    notebooks = {student: nb for student, (nb, _) in SUBMISSIONS.items()}
    return course, grade_notebooks(
        course, "ps5", notebooks, cell_timeout=CELL_TIMEOUT, notebook_timeout=NOTEBOOK_TIMEOUT
    )


@pytest.mark.parametrize("student", list(SUBMISSIONS))
def test_each_submission_earns_exactly_what_it_should(graded, student):
    _, rows = graded
    row = rows[student]
    assert row.status == "graded", row.error
    assert (row.score, row.max_score) == (SUBMISSIONS[student][1], TOTAL), row.error


def test_feedback_explains_the_lost_points_and_hides_the_hidden_tests(graded):
    course, _ = graded
    text = feedback_text(course / "out/feedback/partial/ps5.html")
    assert "1.5 of 3 points" in text and "0.75 of 3 points" in text
    text = feedback_text(course / "out/feedback/imports_reference/ps5.html")
    assert "not available while this assignment is graded" in text
    for student in SUBMISSIONS:
        html = (course / "out/feedback" / student / "ps5.html").read_text()
        assert "HIDDEN TESTS" not in html and "record_function(" not in html.replace("&quot;", '"')
