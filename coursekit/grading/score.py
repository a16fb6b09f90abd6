"""Points are decided here, in the grader's process, from the records a test cell produced.

Plain nbgrader gives a test cell full points unless its output holds an error or anything on
stderr, and that output comes from the student's kernel: a patched ``showtraceback``, a rigged
``__eq__`` or a hook that rewrites the test wins points, and a harmless warning loses them.
`ScoreFromRecords` runs after the sandboxed execution and, for every test cell:

1. reads from the cell's *trusted* source (restored from the course's notebook by
   `Reassemble`) which records it must produce: each call ``record_<kind>("key", ...)``;
2. decodes those records from the cell's outputs (`records.read`: plain tensors only);
3. scores them with the checker of their kind, which recomputes the reference here;
4. replaces the cell's outputs by the verdict alone, written so that nbgrader's `SaveAutoGrades`
   stores exactly that score (an ``execute_result`` holding the points for partial credit);
5. removes the hidden tests from the cell, so the feedback never shows them.

A test cell that records nothing is an ordinary nbgrader test (an error means 0); such cells
are not tamper-proof, and this step only drops their stderr so that a warning costs nothing.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable

import nbformat
from nbformat import NotebookNode
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import List, Unicode

from . import functions, optimizers, records, registry
from .assemble import problems
from .verdict import Verdict

# record kind (``record_<kind>(...)`` in a test cell) -> the grader-side comparison
CHECKERS: dict[str, Callable[[str, dict, dict], Verdict]] = {
    "optimizer": optimizers.grade_optimizer,
    "function": functions.grade_function,
}
_HIDDEN = re.compile(
    r"^[ \t]*### BEGIN HIDDEN TESTS.*?^[ \t]*### END HIDDEN TESTS[ \t]*\n?", re.M | re.S
)


def is_test(cell: NotebookNode) -> bool:
    """An autograded test cell: graded, not an answer, code."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return cell.cell_type == "code" and bool(meta.get("grade")) and not meta.get("solution")


def expected_records(source: str) -> list[tuple[str, str]]:
    """(kind, key) of every ``record_<kind>("key", ...)`` call in a test cell's source."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        name = getattr(node.func, "id", None) or getattr(node.func, "attr", "")
        key = node.args[0]
        if (
            name.startswith("record_")
            and isinstance(key, ast.Constant)
            and isinstance(key.value, str)
        ):
            kind = name.removeprefix("record_")
            if kind in CHECKERS:
                found.append((kind, key.value))
    return found


def hidden_modules(nb: NotebookNode) -> list[str]:
    """Modules the kernel must not import while this notebook's hidden tests run."""
    hidden = set()
    for cell in nb.cells:
        if is_test(cell):
            for _, key in expected_records(cell.source):
                try:
                    hidden.update(registry.task(key).hidden)
                except KeyError:  # an unknown task is reported when it is scored
                    pass
    return sorted(hidden)


def score_cell(cell: NotebookNode) -> tuple[float, list[str]] | None:
    """(points earned, verdict lines) for a test cell with records, else None."""
    expected = expected_records(cell.source)
    if not expected:
        return None
    produced = {}
    for output in cell.get("outputs", []):
        record = records.read(output)
        if record is not None:
            produced[(record.kind, record.key)] = record
    stopped = next((o for o in cell.get("outputs", []) if o.get("output_type") == "error"), None)
    passed = total = 0
    lines = []
    for kind, key in expected:
        record = produced.get((kind, key))
        verdict = CHECKERS[kind](
            key, record.tensors if record else {}, record.errors if record else {}
        )
        if record is None:
            why = f": {stopped['ename']}: {str(stopped.get('evalue', ''))[:300]}" if stopped else ""
            if stopped and stopped.get("ename") == "NameError":
                why += " (did the cell that defines it run without an error?)"
            lines.append(f"\u2717 no results were recorded for {key!r}; the test stopped{why}")
        else:
            lines += verdict.lines
        passed += verdict.passed
        total += verdict.total
    points = float(cell.metadata.nbgrader.get("points", 0))
    return round(points * passed / total, 2) if total else 0.0, lines


def _verdict_outputs(earned: float, points: float, lines: list[str]) -> list[NotebookNode]:
    summary = f"{earned:g} of {points:g} points"
    outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="\n".join([summary, *lines]) + "\n")
    ]
    if earned < points:  # nbgrader reads a number in an execute_result as partial credit
        outputs.append(
            nbformat.v4.new_output(
                "execute_result", data={"text/plain": repr(earned)}, execution_count=None
            )
        )
    return outputs


class ScoreFromRecords(NbGraderPreprocessor):
    """nbgrader step, after execution and before SaveAutoGrades."""

    collection_notes = List(
        Unicode(),
        help="notes on how the submission was collected (set per student by `coursekit grade`),"
        " shown to the student before the grader's own",
    ).tag(config=True)

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            if is_test(cell):
                scored = score_cell(cell)
                if scored is not None:
                    points = float(cell.metadata.nbgrader.get("points", 0))
                    cell.outputs = _verdict_outputs(*scored[:1], points, scored[1])
                else:
                    cell.outputs = [o for o in cell.outputs if o.get("name") != "stderr"]
                cell.source = _HIDDEN.sub("", cell.source)
            else:  # records elsewhere are noise in the feedback
                cell.outputs = [o for o in cell.outputs if records.MIME not in o.get("data", {})]
        set_notes(nb, problems(nb), shown_first=self.collection_notes)
        return nb, resources


def set_notes(nb: NotebookNode, notes: list[str], shown_first: list[str] = ()) -> None:
    """Keep the grader's `notes` in metadata; show `shown_first` and them in a markdown cell at
    the top (replacing an earlier one)."""
    notes = [_HIDDEN.sub("[hidden]", n) for n in notes]  # no message may quote a hidden test
    nb.metadata.setdefault("coursekit", {})["problems"] = notes
    nb.cells = [c for c in nb.cells if c.get("metadata", {}).get("coursekit") != "notes"]
    notes = list(dict.fromkeys([*shown_first, *notes]))
    if notes:
        text = "**Grading notes.**\n\n" + "\n".join(f"- {n}" for n in notes)
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(text, metadata={"coursekit": "notes"}))
