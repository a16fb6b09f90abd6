"""coursekit.notebook_form: notebooks committed in the form JupyterLab saves.

The oracle for "what Lab writes" is a running ``python3`` kernel (its ``kernel_info`` reply is
where Lab takes ``language_info`` from) and the kernel spec the Jupyter server lists (where it
takes ``kernelspec`` from). tests/browser/test_jupyterlab.py opens notebooks in Lab itself.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import start_new_kernel

from coursekit import notebook_form

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = sorted(
    p.relative_to(ROOT).as_posix()
    for pattern in ("notebooks/*.ipynb", "solutions/*/*.ipynb", "assignments/*/*.ipynb")
    for p in ROOT.glob(pattern)
)


def _notebook(minor: int = 5) -> nbformat.NotebookNode:
    """A notebook as nbformat's helpers make it: short kernel metadata, course metadata."""
    nb = nbformat.v4.new_notebook()
    nb.nbformat_minor = minor
    nb.metadata = {
        "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
        "language_info": {"name": "python"},
        "celltoolbar": "Slideshow",
    }
    cell = nbformat.v4.new_code_cell("x = 1", metadata={"nbgrader": {"grade_id": "answer"}})
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"), cell]
    if minor < 5:
        for c in nb.cells:
            del c["id"]
    return nb


def test_lab_form_holds_what_the_kernel_reports_and_the_server_lists():
    """kernelspec as the server's kernel spec manager lists python3, language_info as a
    running python3 kernel reports it in its kernel_info reply."""
    manager, client = start_new_kernel(kernel_name="python3")
    try:
        reply = client.kernel_info(reply=True, timeout=60)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    spec = KernelSpecManager().get_kernel_spec("python3")
    form = notebook_form.lab_form(_notebook(), python_version=None)
    form_from_nothing = notebook_form.lab_form(nbformat.v4.new_notebook())

    assert form.metadata.kernelspec == {
        "display_name": spec.display_name,
        "language": spec.language,
        "name": "python3",
    }
    assert form_from_nothing.metadata.language_info == reply["content"]["language_info"]
    assert form.metadata.language_info == reply["content"]["language_info"]


def test_lab_form_keeps_the_rest_and_gives_cell_ids_to_older_notebooks():
    nb = _notebook(minor=4)
    form = notebook_form.lab_form(nb)
    assert (form.nbformat, form.nbformat_minor) == (4, 5)
    assert all(cell.get("id") for cell in form.cells)
    assert form.metadata.celltoolbar == "Slideshow"
    assert form.cells[1].metadata == {"nbgrader": {"grade_id": "answer"}}
    assert [c.source for c in form.cells] == [c.source for c in nb.cells]
    assert "id" not in nb.cells[0]  # the argument is left as it was
    nbformat.validate(form)


def test_a_recorded_python_version_is_kept_unless_one_is_given():
    nb = notebook_form.lab_form(_notebook(), python_version="3.12.1")
    assert notebook_form.lab_form(nb).metadata.language_info.version == "3.12.1"
    again = notebook_form.lab_form(nb, python_version="3.13.0")
    assert again.metadata.language_info.version == "3.13.0"


def test_normalise_rewrites_a_file_once(tmp_path):
    """The first call rewrites the file as the Jupyter server would save it; the second finds
    nothing to do and leaves the bytes alone."""
    path = tmp_path / "nb.ipynb"
    nbformat.write(_notebook(minor=4), path)
    assert notebook_form.differences(path) is not None

    assert notebook_form.normalise(path) is True
    text = path.read_text()
    assert notebook_form.normalise(path) is False
    assert path.read_text() == text
    assert notebook_form.differences(path) is None
    assert text == nbformat.writes(nbformat.read(path, as_version=4)) + "\n"


def test_differences_names_the_first_line_lab_would_change(tmp_path):
    path = tmp_path / "nb.ipynb"
    nbformat.write(_notebook(), path)
    assert '\'"display_name": "Python 3",\'' in notebook_form.differences(path)
    assert 'JupyterLab writes \'"display_name": "Python 3 (ipykernel)",\'' in (
        notebook_form.differences(path)
    )


def test_the_command_line_normalises_the_files_it_is_given(tmp_path, capsys):
    path = tmp_path / "nb.ipynb"
    nbformat.write(_notebook(), path)
    assert notebook_form.main([str(path)]) == 0
    assert capsys.readouterr().out == f"normalised {path}\n"
    assert notebook_form.main([str(path)]) == 0
    assert capsys.readouterr().out == ""
    assert notebook_form.main([]) == 2


@pytest.mark.parametrize("path", COMMITTED)
def test_every_committed_notebook_is_in_the_form_jupyterlab_saves(path):
    """Opening it in JupyterLab marks nothing modified, and saving it unedited changes nothing.
    Fix: python -m coursekit.notebook_form <path> (assignments/: regenerate from solutions/)."""
    problem = notebook_form.differences(ROOT / path)
    assert problem is None, f"{path}: {problem}; run: python -m coursekit.notebook_form {path}"
