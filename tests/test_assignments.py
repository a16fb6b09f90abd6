"""Every assignment has the same shape; one parametrised test per rule, for all of them.

An assignment is a source notebook in solutions/<id>/, its generated student version in
assignments/<id>/, one grading module coursekit/grading/tasks/<id>.py and samples in
samples/<id>/ (CONTRIBUTING.md, "Adding an assignment"). A new assignment is covered here from
its first commit; its own test file holds only what is particular to it.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from pathlib import Path

import nbformat
import pytest
from grading_course import sample_makers

from coursekit.grading import functions, optimizers, registry, release
from coursekit.grading.score import CHECKERS, expected_records, is_test

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENTS = release.assignments(ROOT)
KINDS = {"function": functions.FunctionTask, "optimizer": optimizers.OptimizerTask}


def _source(assignment: str) -> nbformat.NotebookNode:
    (path,) = (ROOT / "solutions" / assignment).glob("*.ipynb")
    return nbformat.read(path, as_version=4)


def _points(cell) -> float:
    return float(cell.metadata.nbgrader["points"])


def _tests(nb) -> list:
    return [c for c in nb.cells if is_test(c)]


def _grade_id(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def test_the_course_has_assignments():
    assert len(ASSIGNMENTS) >= 4 and {"ps1", "ps2"} <= set(ASSIGNMENTS)


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_the_points_add_up_to_what_the_notebook_promises(assignment):
    """The total under "How it is graded", the table's points per test cell and each part
    heading's "(k points)" all agree with the points nbgrader will give."""
    nb = _source(assignment)
    points = {_grade_id(c): _points(c) for c in _tests(nb)}
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    (total,) = re.findall(r"\*\*How it is graded\*\* \((\d+) points\)", text)
    assert float(total) == sum(points.values())
    table = dict(re.findall(r"^\|.*\| `(test_\w+)` \| (\d+(?:\.\d+)?) \|$", text, re.M))
    assert {k: float(v) for k, v in table.items()} == points

    part, stated, found = None, {}, {}
    for cell in nb.cells:  # a "## Part" heading owns the test cells up to the next one
        if cell.cell_type == "markdown":
            heading = re.search(r"^## (Part \w+).*\((\d+) points?\)", cell.source, re.M)
            if heading:
                part = heading.group(1)
                stated[part] = float(heading.group(2))
        elif is_test(cell):
            assert part is not None, f"{_grade_id(cell)} comes before any part"
            found[part] = found.get(part, 0.0) + _points(cell)
    assert stated == found


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_test_cell_records_one_task_of_its_assignment_and_every_task_is_used(assignment):
    """Hidden tests first; one ``record_<kind>("<assignment>.<name>", ...)`` per test cell, of a
    task registered by coursekit/grading/tasks/<assignment>.py with the matching kind."""
    recorded = []
    for cell in _tests(_source(assignment)):
        assert cell.source.startswith("### BEGIN HIDDEN TESTS"), _grade_id(cell)
        records = expected_records(cell.source)
        assert len(records) == 1, (_grade_id(cell), records)
        ((kind, key),) = records
        assert kind in CHECKERS and key.startswith(f"{assignment}.")
        assert isinstance(registry.task(key), KINDS[kind]), key
        recorded.append(key)
    assert len(recorded) == len(set(recorded))
    assert sorted(recorded) == sorted(registry.tasks_of(assignment))


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_task_has_cases_and_hides_modules_that_exist(assignment):
    """A misspelt hidden module would leave the reference importable while grading."""
    for key, task in registry.tasks_of(assignment).items():
        cases = task.cases() if isinstance(task, functions.FunctionTask) else task.cases
        assert len(cases) >= 1, key
        if isinstance(task, functions.FunctionTask) and task.describe:
            assert len(task.describe) == len(cases), key
        assert task.hidden, f"{key} hides nothing"
        for module in task.hidden:
            name = module.removesuffix(".*")
            assert importlib.util.find_spec(name) is not None, (key, module)


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_students_import_nothing_from_the_grading_tasks(assignment):
    """What a notebook needs lives in the library; tasks modules are the grader's."""
    for cell in _source(assignment).cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:  # IPython magics: checked as text below
            tree = None
        modules = [
            n.module if isinstance(n, ast.ImportFrom) else a.name
            for n in (ast.walk(tree) if tree else [])
            if isinstance(n, ast.Import | ast.ImportFrom)
            for a in (n.names if isinstance(n, ast.Import) else [n])
        ]
        assert not any(m and m.startswith("coursekit.grading.tasks") for m in modules)
        assert "grading.tasks" not in cell.source, _grade_id(cell)


def _files(folder: Path) -> list[Path]:
    """Files under `folder`, without the checkpoints JupyterLab leaves next to a notebook."""
    return sorted(
        p.relative_to(folder)
        for p in folder.rglob("*")
        if p.is_file() and ".ipynb_checkpoints" not in p.parts
    )


def _cells(nb):
    return [(c.cell_type, c.source, c.metadata.get("nbgrader")) for c in nb.cells]


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_the_student_version_is_what_nbgrader_makes_from_the_source(assignment, tmp_path):
    release.generate(ROOT, assignment, tmp_path)
    made, committed = tmp_path / assignment, ROOT / "assignments" / assignment
    hint = "run `coursekit build` (or nbgrader generate_assignment) and commit assignments/"
    assert _files(made) == _files(committed), hint
    for name in _files(made):
        if name.suffix == ".ipynb":
            ours = nbformat.read(committed / name, as_version=4)
            assert _cells(ours) == _cells(nbformat.read(made / name, as_version=4)), hint
        else:
            assert (committed / name).read_bytes() == (made / name).read_bytes(), hint


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_the_student_version_hides_solutions_and_hidden_tests(assignment):
    for path in (ROOT / "assignments" / assignment).glob("*.ipynb"):
        nb = nbformat.read(path, as_version=4)
        text = json.dumps(nb)
        assert "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
        assert not any(expected_records(c.source) for c in nb.cells if c.cell_type == "code")
        answers = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")]
        assert answers and all("raise NotImplementedError()" in c.source for c in answers)


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_the_samples_are_what_make_samples_writes(assignment, tmp_path):
    """samples/ must be regenerated (python samples/make_samples.py) when an assignment changes."""
    makers = sample_makers()
    makers.WRITERS[assignment](tmp_path)
    committed = ROOT / "samples" / assignment
    assert _files(tmp_path) == _files(committed) and _files(committed)
    for name in _files(committed):
        assert (tmp_path / name).read_bytes() == (committed / name).read_bytes(), name
