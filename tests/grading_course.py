"""A temporary nbgrader course graded in the sandbox: shared by the assignments' grading tests."""

from __future__ import annotations

import html
import importlib.util
import os
import re
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest

from coursekit.grading import functions, grade, sandbox

ROOT = Path(__file__).resolve().parents[1]


def config(cell_timeout: int, notebook_timeout: int) -> str:
    """nbgrader_config.py of a temporary course, with its own time limits."""
    return f"""\
import os
from coursekit.grading.pipeline import configure
c = get_config()
configure(c, os.path.dirname(os.path.abspath(__file__)), cell_timeout={cell_timeout},
          notebook_timeout={notebook_timeout})
"""


def sample_makers():
    """samples/make_samples.py as a module: what each fictional student hands in and earns."""
    spec = importlib.util.spec_from_file_location("make_samples", ROOT / "samples/make_samples.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_samples"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def feedback_text(path: Path) -> str:
    """The text a student reads in a feedback HTML file: tags removed, entities decoded."""
    return html.unescape(re.sub("<[^>]+>", "", path.read_text()))


def require_sandbox() -> None:
    """Skip without the sandbox, except in CI, which installs it itself (course.sh)."""
    try:
        sandbox.check_available()
        python = sandbox.default_kernel_python(ROOT)
        if not Path(python).exists():
            raise sandbox.SandboxUnavailable(
                f"no kernel Python {python}: run coursekit sandbox-setup"
            )
    except sandbox.SandboxUnavailable as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(error))


def grade_notebooks(
    course: Path,
    assignment: str,
    notebooks: dict[str, nbformat.NotebookNode | bytes],
    *,
    cell_timeout: int = 30,
    notebook_timeout: int = 120,
) -> dict[str, grade.Row]:
    """Grade one notebook per student in a copy of `assignment`, two at a time; rows by id.

    A notebook given as bytes is written as it is (a sample file, possibly no notebook at all).
    """
    require_sandbox()
    for folder in (f"solutions/{assignment}", f"assignments/{assignment}"):
        shutil.copytree(ROOT / folder, course / folder)
    (course / "nbgrader_config.py").write_text(config(cell_timeout, notebook_timeout))
    submissions = course / "submitted_by_lms"
    for student, nb in notebooks.items():
        (submissions / student).mkdir(parents=True)
        data = nb if isinstance(nb, bytes) else nbformat.writes(nb).encode()
        (submissions / student / f"{assignment}.ipynb").write_bytes(data)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COURSEKIT_KERNEL_PYTHON", sandbox.default_kernel_python(ROOT))
        rows = grade.grade(course, assignment, submissions, course / "out", jobs=2, progress=False)
    return {row.student_id: row for row in rows}


def cases_passed(key: str, fn: Callable) -> int:
    """How many cases of task `key` `fn` gets right, judged without a kernel."""
    task = functions.task(key)
    reference = task.reference
    return sum(
        functions._difference(functions._run(fn, args), functions._run(reference, args), task)
        is None
        for args in task.cases()
    )


def sample_answers(assignment: str, student: str) -> dict:
    """The namespace of a sample's setup and answer cells, run here without a kernel."""
    nb = nbformat.read(ROOT / f"samples/{assignment}/{student}/{assignment}.ipynb", as_version=4)
    namespace: dict = {}
    for cell in nb.cells:
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and (meta.get("solution") or meta.get("grade_id") == "setup"):
            exec(cell.source, namespace)
    return namespace


def grade_with_samples(
    course: Path,
    assignment: str,
    submissions: dict[str, tuple[nbformat.NotebookNode, float]],
    *,
    cell_timeout: int,
    notebook_timeout: int,
) -> dict[str, grade.Row]:
    """Grade `submissions` (student -> (notebook, expected score)) together with the files of
    samples/<assignment>/ as they are, in one sandboxed run."""
    notebooks: dict[str, nbformat.NotebookNode | bytes] = {
        student: nb for student, (nb, _) in submissions.items()
    }
    for folder in sorted((ROOT / "samples" / assignment).iterdir()):
        notebooks[folder.name] = (folder / f"{assignment}.ipynb").read_bytes()
    return grade_notebooks(
        course,
        assignment,
        notebooks,
        cell_timeout=cell_timeout,
        notebook_timeout=notebook_timeout,
    )


def check_sample(assignment: str, student: str, row: grade.Row) -> None:
    """The sample earned exactly what samples/make_samples.py builds it to earn, with its notes
    (and no note at all when it is built to have none)."""
    makers = sample_makers()
    sample = makers.SAMPLES[assignment][student]
    assert row.status == "graded", row.error
    assert (row.score, row.max_score) == makers.built_to_earn(assignment, student), row.error
    for note in sample.notes:
        assert note in row.error
    if not sample.notes:
        assert row.error == ""


def check_submission(row: grade.Row, expected: float, total: float) -> None:
    assert row.status == "graded", row.error
    assert (row.score, row.max_score) == (expected, total), row.error


def check_feedback_hides_the_hidden_tests(course: Path, assignment: str, students) -> None:
    """No feedback file shows a hidden test or a record call."""
    for student in students:
        text = (course / "out/feedback" / student / f"{assignment}.html").read_text()
        assert "HIDDEN TESTS" not in text
        assert "record_function(" not in text.replace("&quot;", '"')
        assert "record_optimizer(" not in text.replace("&quot;", '"')
