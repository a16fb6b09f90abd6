"""Rebuild a submission on the instructor's notebook, keeping only the student's answers.

nbgrader's own sanitising (`OverwriteCells`) patches the submitted notebook in place: a deleted
test cell stays deleted unless re-added, a test cell turned into markdown or renamed escapes,
and whatever metadata the student's file carries comes along. `Reassemble` starts instead from
the source notebook (the one with the hidden tests) and takes from the submission only:

* the text of each answer cell (nbgrader ``solution`` cells), matched by grade id; a missing
  or retyped answer is graded as the blank one from the release;
* the cells the student added (no nbgrader id the course knows), kept after the course cell
  they followed, so a helper defined in a new cell still runs;

and notes every test or read-only cell that was edited, deleted or retyped (it is restored) in
``nb.metadata.coursekit.problems``, which the report and the feedback show.
"""

from __future__ import annotations

import copy

import nbformat
from nbformat import NotebookNode
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import NbGraderPreprocessor


def _nbgrader(cell: NotebookNode) -> dict:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}


def _key(cell: NotebookNode) -> tuple[str, str] | None:
    """How a cell is matched across versions: its grade id, else its nbformat cell id."""
    grade_id = _nbgrader(cell).get("grade_id")
    if isinstance(grade_id, str) and grade_id:
        return ("grade_id", grade_id)
    cell_id = cell.get("id")
    return ("id", cell_id) if isinstance(cell_id, str) and cell_id else None


def _same(a: NotebookNode, b: NotebookNode) -> bool:
    return a.cell_type == b.cell_type and a.source.strip() == b.source.strip()


def problems(nb: NotebookNode) -> list[str]:
    """The grading problems noted so far in an autograded notebook's metadata."""
    return nb.metadata.setdefault("coursekit", {}).setdefault("problems", [])


def reassemble(
    submitted: NotebookNode, source: NotebookNode, release: NotebookNode
) -> tuple[NotebookNode, list[str]]:
    """The notebook to grade, and what was wrong with the submission's structure."""
    released = {_key(c): c for c in release.cells if _key(c)}
    known = {_key(c) for c in source.cells if _key(c)}
    theirs: dict[tuple[str, str], NotebookNode] = {}
    added: dict[tuple[str, str] | None, list[NotebookNode]] = {}
    previous = None
    for cell in submitted.cells:
        key = _key(cell)
        if key in known and key not in theirs:
            theirs[key] = cell
            previous = key
        elif cell.cell_type in ("code", "markdown"):
            extra = (
                nbformat.v4.new_code_cell
                if cell.cell_type == "code"
                else nbformat.v4.new_markdown_cell
            )
            added.setdefault(previous, []).append(extra(source=cell.source))

    notes = []
    cells = added.get(None, [])
    for original in source.cells:
        key = _key(original)
        mine = copy.deepcopy(released.get(key, original))
        student = theirs.get(key)
        name = f"cell '{key[1]}'" if key and key[0] == "grade_id" else "a cell"
        if _nbgrader(original).get("solution"):
            if student is None:
                notes.append(f"The answer {name} was missing: it was graded as left blank.")
            elif student.cell_type != original.cell_type:
                notes.append(
                    f"The answer {name} was changed to {student.cell_type}: graded as blank."
                )
            else:
                mine.source = student.source
        else:
            mine.source = original.source  # test cells get their hidden tests back here
            visible = released.get(key, original)
            if key and key in released and _nbgrader(original):
                if student is None:
                    notes.append(f"The {name} was deleted; the original was restored.")
                elif not _same(student, visible):
                    what = (
                        "changed to " + student.cell_type
                        if student.cell_type != visible.cell_type
                        else "edited"
                    )
                    notes.append(f"The {name} was {what}; the original was restored.")
        if mine.cell_type == "code":
            mine.outputs, mine.execution_count = [], None
        cells.append(mine)
        cells += added.get(key, [])
    nb = nbformat.v4.new_notebook(cells=cells, metadata=copy.deepcopy(source.metadata))
    nb.metadata.pop("coursekit", None)
    return nb, notes


class Reassemble(NbGraderPreprocessor):
    """nbgrader step: replace the submitted notebook by `reassemble`'s result."""

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        course = CourseDirectory(config=self.config)
        assignment, notebook = (
            resources["nbgrader"]["assignment"],
            resources["nbgrader"]["notebook"],
        )

        def read(folder: str) -> NotebookNode:
            path = course.format_path(folder, ".", assignment)
            return nbformat.read(f"{path}/{notebook}.ipynb", as_version=4)

        graded, notes = reassemble(
            nb, read(course.source_directory), read(course.release_directory)
        )
        problems(graded).extend(notes)
        return graded, resources
