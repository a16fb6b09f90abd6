"""Make submissions from an assignment's source: to try the grader before students do.

    solved(source, release)                    # what a perfect student hands in
    with_answer(nb, "adam_solution", code)     # the same, with one answer replaced
    with_cell(nb, code, after="setup")         # ... with a cell of their own added

The bundled sample submissions (``samples/``) and the grading tests are built with these.
"""

from __future__ import annotations

import copy

import nbformat
from nbformat import NotebookNode

_MARKERS = ("### BEGIN SOLUTION", "### END SOLUTION")


def _grade_id(cell: NotebookNode) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def solved(source: NotebookNode, release: NotebookNode) -> NotebookNode:
    """The release notebook with every answer cell filled in from the source's solution."""
    answers = {
        _grade_id(c): "\n".join(
            line for line in c.source.splitlines() if not line.strip().startswith(_MARKERS)
        )
        for c in source.cells
        if c.get("metadata", {}).get("nbgrader", {}).get("solution")
    }
    nb = copy.deepcopy(release)
    for cell in nb.cells:
        if _grade_id(cell) in answers:
            cell.source = answers[_grade_id(cell)]
    return nb


def with_answer(nb: NotebookNode, grade_id: str, code: str) -> NotebookNode:
    """A copy of `nb` whose cell `grade_id` holds `code` instead."""
    nb = copy.deepcopy(nb)
    cells = [c for c in nb.cells if _grade_id(c) == grade_id]
    if not cells:
        raise KeyError(f"grade_id: no cell {grade_id!r}")
    cells[0].source = code
    return nb


def with_cell(nb: NotebookNode, code: str, after: str | None = None) -> NotebookNode:
    """A copy of `nb` with a code cell of the student's own after cell `after` (default: last)."""
    nb = copy.deepcopy(nb)
    index = len(nb.cells)
    if after is not None:
        index = next(i for i, c in enumerate(nb.cells) if _grade_id(c) == after) + 1
    nb.cells.insert(index, nbformat.v4.new_code_cell(code))
    return nb


def without(nb: NotebookNode, *grade_ids: str) -> NotebookNode:
    """A copy of `nb` with the cells `grade_ids` deleted."""
    nb = copy.deepcopy(nb)
    nb.cells = [c for c in nb.cells if _grade_id(c) not in grade_ids]
    return nb
