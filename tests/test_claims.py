"""coursekit.claims: a number the prose states, checked against the value computed.

The last test is the convention's proof: lecture 1, executed with one of its stated numbers
changed in the prose, fails in the check cell that confirms that number.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import papermill
import pytest
from nbformat.v4 import new_markdown_cell, new_notebook

from coursekit import claims
from coursekit.claims import ClaimError, reads_as, stated

ROOT = Path(__file__).resolve().parents[1]
LECTURE_1 = ROOT / "notebooks" / "01_gradient_descent_linear_unit.ipynb"


@pytest.mark.parametrize(
    "value, text",
    [
        (127.78, "128"),
        (127.78, "127.8"),
        (2.651, "2.65"),
        (0.0185031237, "0.0185031237"),
        (7410.3, "7.41e+03"),
        (7410.3, "7.41e3"),
        (0.00392, "3.9e-03"),
        (1443000, "1,443,000"),
        (-0.9, "\u22120.9"),  # the minus sign prose uses
        (-0.9, "-0.9"),
        (-0.0004, "0.0"),  # rounds to zero: no sign
        (99.75, "99.8"),
        (163, "163"),
    ],
)
def test_a_value_reads_as_the_text_at_the_texts_precision(value, text):
    """Compared with the text the value gives when formatted with the text's precision."""
    assert reads_as(value, text)


@pytest.mark.parametrize(
    "value, text",
    [
        (127.78, "127.7"),
        (127.78, "127"),
        (7460.0, "7.41e+03"),
        (0.9, "-0.9"),
        (float("nan"), "1"),
        (float("inf"), "1"),
        (1443001.0, "1,443,000"),
    ],
)
def test_a_value_that_reads_otherwise_is_refused(value, text):
    assert not reads_as(value, text)


@pytest.mark.parametrize("text", ["about 30", "30 %", "1/2", "", "1,44"])
def test_text_that_is_not_a_plain_number_is_a_value_error(text):
    with pytest.raises(ValueError, match="Invalid text"):
        reads_as(1.0, text)


def _notebook(path: Path, *markdown: str) -> Path:
    nbformat.write(new_notebook(cells=[new_markdown_cell(m) for m in markdown]), path)
    return path


def test_stated_checks_the_value_and_the_prose_of_the_running_notebook(tmp_path):
    """The prose is read from the notebook named by COURSEKIT_NOTEBOOK."""
    notebook = _notebook(tmp_path / "n.ipynb", "## kappa\n\nfrom 128 to 2.7, and \u22120.9.")
    with claims.running(notebook):
        stated(127.78, "128")
        stated(2.7, "2.7")
        stated(-0.9, "-0.9")  # an ASCII minus in the check matches the prose's Unicode one
        with pytest.raises(ClaimError, match="computation gives 129.6"):
            stated(129.6, "128")
        with pytest.raises(ClaimError, match="no longer states it"):
            stated(28.0, "28")  # the "28" of "128" is not a stated 28
        with pytest.raises(ClaimError, match="no longer states it"):
            stated(0.7, "0.7")  # nor the ".7" of "2.7"
    assert claims.notebook_markdown() is None  # the variable is restored on leaving


def test_without_a_notebook_only_the_value_is_checked(monkeypatch):
    for variable in claims.NOTEBOOK_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    stated(2.7, "2.7")
    with pytest.raises(ClaimError):
        stated(2.8, "2.7")


def test_jupyterlab_session_variable_names_the_notebook(tmp_path, monkeypatch):
    monkeypatch.delenv("COURSEKIT_NOTEBOOK", raising=False)
    monkeypatch.setenv("JPY_SESSION_NAME", str(_notebook(tmp_path / "n.ipynb", "it is 3.5")))
    stated(3.5, "3.5")
    with pytest.raises(ClaimError, match="no longer states"):
        stated(4.5, "4.5")


def test_an_edited_notebook_is_read_again(tmp_path):
    notebook = _notebook(tmp_path / "n.ipynb", "it is 3.5")
    with claims.running(notebook):
        stated(3.5, "3.5")
        _notebook(notebook, "it is 4.5")
        with pytest.raises(ClaimError):
            stated(3.5, "3.5")


def _stated_texts(source: str) -> list[str]:
    """The text arguments of the stated(...) calls in a cell, by parsing it."""
    texts = []
    for node in ast.walk(ast.parse(source)):
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", None)) == "stated"
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
        ):
            texts.append(node.args[1].value)
    return texts


def test_lecture_1_fails_in_its_check_cell_when_a_stated_number_is_changed(tmp_path):
    """Change, in the prose, the first number a check cell confirms that the prose states once;
    run the lecture up to that check cell: it fails there, naming the number."""
    nb = nbformat.read(LECTURE_1, as_version=4)
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    target = None
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or "check" not in cell.metadata.get("tags", []):
            continue
        for text in _stated_texts(cell.source):
            if len(re.findall(rf"(?<![\d.,]){re.escape(text)}(?![\d]|[.,]\d)", markdown)) == 1:
                target = index, text
                break
        if target:
            break
    assert target, "lecture 1 has no check cell confirming a number its prose states once"
    index, text = target
    changed = text[:-1] + ("1" if text[-1] != "1" else "2")  # same precision, other value
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = re.sub(
                rf"(?<![\d.,]){re.escape(text)}(?![\d]|[.,]\d)", changed, cell.source
            )
    nb.cells = nb.cells[: index + 1]  # nothing after the failing cell needs to run
    edited = tmp_path / LECTURE_1.name
    nbformat.write(nb, edited)
    with claims.running(edited), pytest.raises(papermill.PapermillExecutionError) as failure:
        papermill.execute_notebook(
            str(edited),
            str(tmp_path / "out.ipynb"),
            kernel_name="python3",
            cwd=str(LECTURE_1.parent),
            progress_bar=False,
        )
    assert failure.value.ename == "ClaimError" and text in failure.value.evalue
    executed = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    failed = [
        c
        for c in executed.cells
        if c.cell_type == "code" and c.metadata.get("papermill", {}).get("exception")
    ]
    assert failed and "check" in failed[0].metadata.get("tags", [])
    # and the unchanged lecture passes that same cell: tests/test_notebooks.py runs it whole
