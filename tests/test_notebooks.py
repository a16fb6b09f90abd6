"""Does every notebook run top to bottom, and is every notebook committed as clean source?

One test per notebook found under notebooks/ and solutions/: a notebook added later is picked up
with no edit here. Execution is `coursekit build`'s (papermill), once per session (tests/conftest.py).
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from coursekit.build import find_notebooks

ROOT = Path(__file__).resolve().parents[1]
EXECUTED = [ROOT / p for p in find_notebooks(ROOT)]  # what `coursekit build` executes
SOURCES = EXECUTED + sorted((ROOT / "assignments").rglob("*.ipynb"))
LECTURES = sorted((ROOT / "notebooks").rglob("*.ipynb"))


def ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in paths]


def test_the_course_has_notebooks():
    # Guards against the parametrised tests below silently collecting nothing.
    assert LECTURES, "no lecture notebooks found under notebooks/"


@pytest.mark.parametrize("path", EXECUTED, ids=ids(EXECUTED))
def test_notebook_runs_top_to_bottom(path: Path, course_build):
    """Every cell runs, check cells included: each number the prose states is recomputed.

    The notebooks run once per session, two at a time, in the `course_build` fixture (the
    build's own executor); this test reads the outcome for its notebook.
    """
    result = course_build.results[str(path.relative_to(ROOT))]
    assert result.error is None, result.error
    executed = nbformat.read(result.executed, as_version=4)
    assert any(c.get("outputs") for c in executed.cells if c.cell_type == "code")
    if path.parts[len(ROOT.parts)] == "notebooks":
        assert result.deck is not None and result.deck.is_file()


@pytest.mark.parametrize("path", SOURCES, ids=ids(SOURCES))
def test_notebook_is_committed_without_outputs(path: Path):
    nb = nbformat.read(path, as_version=4)
    dirty = [
        i
        for i, cell in enumerate(nb.cells)
        if cell.cell_type == "code"
        and (cell.get("outputs") or cell.get("execution_count") is not None)
    ]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; clear them before committing"


@pytest.mark.parametrize("path", LECTURES, ids=ids(LECTURES))
def test_lecture_has_slide_metadata_on_every_cell_and_a_parameters_cell(path: Path):
    nb = nbformat.read(path, as_version=4)
    missing = [
        i
        for i, cell in enumerate(nb.cells)
        if "slide_type" not in cell.metadata.get("slideshow", {})
    ]
    assert not missing, f"{path.name}: cells {missing} have no slideshow.slide_type"
    assert any("parameters" in cell.metadata.get("tags", []) for cell in nb.cells), (
        f"{path.name}: no cell tagged 'parameters' for papermill"
    )
