"""Notebooks committed in the form JupyterLab saves, so that opening one changes nothing.

When JupyterLab opens a notebook and its kernel starts, it writes the kernel's description into
the notebook's metadata: ``kernelspec`` (name, display name, language, from the kernel spec the
server lists) and ``language_info`` (what the kernel reports: ipykernel's name, version,
mimetype, lexers...). Where the file holds anything else, for instance the short
``{"display_name": "Python 3"}`` and ``{"name": "python"}`` that nbformat's helpers write, the
tab shows unsaved changes right after opening, and saving it untouched changes the file.

`lab_form` gives a notebook that metadata (and the cell ids of nbformat 4.5 that Lab adds to
older notebooks); `normalise` rewrites a file in that form, as ``nbformat.write`` (the Jupyter
server's own writer) serialises it. Both are idempotent. Run it on notebooks after editing them
with a script:

    python -m coursekit.notebook_form solutions/*/*.ipynb notebooks/*.ipynb

The one field that depends on the machine is ``language_info.version``, the kernel's Python
version: a notebook keeps the version it records (so the files do not change from one machine to
the next), and one that records none gets the running Python's. Opening a notebook with a
kernel of another Python version marks it modified in that version only.
"""

from __future__ import annotations

import copy
import platform
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # nbformat and ipykernel come with the course extra, imported where used
    from nbformat import NotebookNode


def kernelspec() -> dict:
    """``metadata.kernelspec`` as JupyterLab writes it for ipykernel's ``python3`` kernel."""
    from ipykernel import kernelspec as spec

    found = spec.get_kernel_dict()
    return {
        "display_name": found["display_name"],
        "language": found["language"],
        "name": spec.KERNEL_NAME,
    }


def language_info(python_version: str | None = None) -> dict:
    """``metadata.language_info`` as ipykernel reports it, for `python_version` (default: the
    running Python's, e.g. ``"3.11.7"``)."""
    from ipykernel.ipkernel import IPythonKernel

    info = copy.deepcopy(IPythonKernel.language_info)
    if python_version is not None:
        info["version"] = python_version
        info["codemirror_mode"]["version"] = int(python_version.split(".")[0])
    return info


def lab_form(nb: NotebookNode, *, python_version: str | None = None) -> NotebookNode:
    """A copy of `nb` with the metadata JupyterLab writes on opening it: ``kernelspec`` and
    ``language_info`` of ipykernel, nbformat 4.5 with cell ids.

    `python_version` sets ``language_info.version``; by default the notebook keeps the version it
    records, else it gets the running Python's. Other metadata (``celltoolbar``, nbgrader's) stays.
    """
    import nbformat

    nb = copy.deepcopy(nb)
    if nb.nbformat != 4:
        raise ValueError(f"nb: nbformat {nb.nbformat} notebook (only 4 is supported)")
    if nb.nbformat_minor < 5:  # nbformat's own upgrade adds the cell ids, as Lab does
        nb = nbformat.v4.upgrade(nb, from_version=4, from_minor=nb.nbformat_minor)
    recorded = nb.metadata.get("language_info", {}).get("version")
    version = python_version or recorded or platform.python_version()
    nb.metadata["kernelspec"] = kernelspec()
    nb.metadata["language_info"] = language_info(version)
    return nb


def normalise(path: str | Path, *, python_version: str | None = None) -> bool:
    """Rewrite the notebook at `path` in `lab_form`; True when the file changed."""
    import nbformat

    path = Path(path)
    text = path.read_text(encoding="utf-8")
    nb = nbformat.reads(text, as_version=nbformat.NO_CONVERT)
    form = _serialise(lab_form(nb, python_version=python_version))
    if form == text:
        return False
    path.write_text(form, encoding="utf-8")
    return True


def differences(path: str | Path) -> str | None:
    """Why the file at `path` is not in `lab_form` (None when it is): the first line that
    differs from the form."""
    import nbformat

    path = Path(path)
    text = path.read_text(encoding="utf-8")
    nb = nbformat.reads(text, as_version=nbformat.NO_CONVERT)
    form = _serialise(lab_form(nb))
    if form == text:
        return None
    ours, theirs = text.splitlines(), form.splitlines()
    for number, (line, wanted) in enumerate(zip(ours, theirs), start=1):
        if line != wanted:
            return f"line {number}: {line.strip()!r}, JupyterLab writes {wanted.strip()!r}"
    return f"{len(ours)} lines, JupyterLab writes {len(theirs)}"


def _serialise(nb: NotebookNode) -> str:
    """The file's text as the Jupyter server saves it (``nbformat.write``: sorted keys, indent 1,
    a final newline)."""
    import nbformat

    text = nbformat.writes(nb)
    return text if text.endswith("\n") else text + "\n"


def main(argv: list[str]) -> int:
    """``python -m coursekit.notebook_form FILES...``: normalise each file, name those changed."""
    if not argv:
        print(__doc__.split("\n\n")[0], "\nusage: python -m coursekit.notebook_form FILES...")
        return 2
    for name in argv:
        if normalise(name):
            print(f"normalised {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
