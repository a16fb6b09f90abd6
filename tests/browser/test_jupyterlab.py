"""The course in JupyterLab, as a student and an instructor meet it.

One ``jupyter lab`` (this venv's, on 127.0.0.1 with a token) serves a temporary copy of the
course (``nbgrader_config.py``, ``solutions/ps2``, ``assignments/ps2``) for the whole module,
started from its root as an instructor would, so nbgrader's Validate button and formgrader read
the course's configuration. Its own settings, workspaces and runtime files live in the temporary
folder; the course's settings overrides (``course.sh`` installs them into the venv) apply.

A student opens the released ``assignments/ps2/ps2.ipynb``, runs all cells (Run menu) and presses
Validate; then the same with a solved copy. An instructor grades the ps2 samples with
`coursekit.grading.grade.grade` and opens formgrader from Lab's Nbgrader menu. Screenshots go to
``build/screenshots/lab-*.png``.

The tests read JupyterLab's own state through ``window.jupyterapp`` (the server runs with
``expose_app_in_browser``): whether the document model is dirty, and when the kernel's
description has arrived, which is when Lab rewrites the notebook's metadata.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest
from grading_course import require_sandbox

from coursekit import notebook_form
from coursekit.grading import grade, sandbox
from coursekit.grading.submissions import solved

ROOT = Path(__file__).resolve().parents[2]
ASSIGNMENT = "ps2"
RELEASE = f"assignments/{ASSIGNMENT}/{ASSIGNMENT}.ipynb"
SOLVED = f"student/{ASSIGNMENT}.ipynb"  # a student's finished copy, outside the release folder
VIEWPORT = {"width": 1400, "height": 900}
STARTUP_S = 90  # the server's start, on two busy cores
TIMEOUT_MS = 120_000  # running a notebook or validating it (which runs it again)

# --- JupyterLab's state, read in the page ---------------------------------------------------

# The notebook at `path` is the current widget.
OPENED = """path => {
  const panel = window.jupyterapp?.shell.currentWidget;
  return panel?.context?.path === path && !!panel.sessionContext;
}"""

# Once the document is loaded and the kernel's info and spec have arrived, Lab has written the
# kernel's description into the metadata (it does so in callbacks on these same promises, which
# run before ours): then whether the model is dirty tells whether opening changed anything.
SETTLED = """async () => {
  const panel = window.jupyterapp.shell.currentWidget;
  await panel.context.ready;
  await panel.sessionContext.ready;
  const kernel = panel.sessionContext.session.kernel;
  await kernel.info;
  await kernel.spec;
  await new Promise(resolve => setTimeout(resolve, 0));
  const model = panel.context.model;
  return {
    dirty: model.dirty,
    kernelspec: model.getMetadata('kernelspec'),
    language_info: model.getMetadata('language_info'),
  };
}"""

# Run All has finished: the first cell ran, no cell is running or queued (prompt "[*]"), the
# kernel is idle. (After an error the kernel drops the queued cells: they go back to idle unrun.)
RAN = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const cells = Array.from(panel.content.widgets).filter(c => c.model.type === 'code');
  return cells[0].model.executionCount !== null
    && panel.sessionContext.session.kernel.status === 'idle'
    && cells.every(c => c.model.executionState !== 'running');
}"""

CODE_CELLS = """() => Array.from(window.jupyterapp.shell.currentWidget.content.widgets)
  .filter(c => c.model.type === 'code')
  .map(c => ({
    grade_id: c.model.getMetadata('nbgrader')?.grade_id ?? null,
    points: c.model.getMetadata('nbgrader')?.points ?? null,
    execution_count: c.model.executionCount,
    outputs: c.model.outputs.toJSON(),
  }))"""

# Scroll the first test cell (an nbgrader cell with points) into the middle of the view.
SHOW_FIRST_TEST = """async () => {
  const notebook = window.jupyterapp.shell.currentWidget.content;
  const index = notebook.widgets.findIndex(c => c.model.getMetadata('nbgrader')?.points);
  notebook.activeCellIndex = index;
  await notebook.scrollToItem(index, 'center');
}"""


@dataclass(frozen=True)
class Lab:
    """A running ``jupyter lab``: its address and token."""

    base: str  # http://127.0.0.1:PORT
    token: str

    def url(self, path: str, *, reset: bool = False) -> str:
        """The address of `path` (e.g. ``lab/tree/x.ipynb``); `reset` opens Lab's workspace
        empty, so only what the URL names is open."""
        return f"{self.base}/{path}?{'reset&' if reset else ''}token={self.token}"

    def get(self, path: str) -> dict:
        """GET a JSON API of the server."""
        request = urllib.request.Request(
            f"{self.base}/{path}", headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.load(response)


@dataclass
class Walk:
    """What a student meets doing one notebook in Lab: open it, Run All Cells, Validate."""

    file_metadata: dict  # kernelspec and language_info of the file opened
    opened: dict  # the model once the kernel is in: dirty flag, kernelspec, language_info
    tab_dirty: bool  # the tab's unsaved-changes mark (class jp-mod-dirty) at that moment
    cells: list[dict]  # code cells after Run All: grade_id, points, execution_count, outputs
    validation: str  # the text of the Validate dialog
    validation_passed: bool  # its body's class: validation-success, not validation-failed
    toasts: list[str]  # notifications on screen at the end
    requests: list[str]  # every URL the page requested


# --- Fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def course(tmp_path_factory) -> Path:
    """A temporary course: the configuration, the ps2 source and release, and a solved copy.

    nbgrader's configuration finds the course root from its own file's folder, so the copy is a
    course of its own (gradebook and runtime files in its build/).
    """
    root = tmp_path_factory.mktemp("lab-course")
    shutil.copy(ROOT / "nbgrader_config.py", root)
    for folder in (f"solutions/{ASSIGNMENT}", f"assignments/{ASSIGNMENT}"):
        shutil.copytree(ROOT / folder, root / folder)
    # The committed notebooks record the course's Python version, and Lab writes the kernel's:
    # on a machine with another Python the copies get this one's, so opening them tests the
    # rest of the form (on the course's machines this changes nothing).
    for path in (root / "solutions", root / "assignments"):
        for notebook in path.rglob("*.ipynb"):
            notebook_form.normalise(notebook, python_version=platform.python_version())
    source = nbformat.read(root / f"solutions/{ASSIGNMENT}/{ASSIGNMENT}.ipynb", as_version=4)
    release = nbformat.read(root / RELEASE, as_version=4)
    (root / SOLVED).parent.mkdir()
    nbformat.write(solved(source, release), root / SOLVED)
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(course, tmp_path_factory):
    """``jupyter lab`` serving `course`, from its root, until the module ends."""
    home = tmp_path_factory.mktemp("lab-home")
    token = secrets.token_hex(16)
    port = _free_port()
    env = dict(
        os.environ,
        JUPYTER_CONFIG_DIR=str(home / "config"),  # not the user's ~/.jupyter
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
    )
    command = [
        str(Path(sys.executable).with_name("jupyter")),
        "lab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={course}",
        "--LabApp.expose_app_in_browser=True",
    ]
    if os.geteuid() == 0:
        command.append("--allow-root")
    log = home / "lab.log"
    with open(log, "wb") as out:
        server = subprocess.Popen(command, cwd=course, env=env, stdout=out, stderr=out)
    served = Lab(f"http://127.0.0.1:{port}", token)
    try:
        _wait_until_serving(served, server, log)
        yield served
    finally:
        server.terminate()  # the server shuts its kernels down on SIGTERM
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _wait_until_serving(lab: Lab, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"jupyter lab exited ({server.returncode}):\n{log.read_text()}")
        try:
            lab.get("api/status")
            return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)  # the interval of the poll, not a wait for something in particular
    raise RuntimeError(f"jupyter lab not serving after {STARTUP_S} s:\n{log.read_text()}")


def _walk(browser, lab: Lab, course: Path, path: str, screenshots: Path, name: str) -> Walk:
    """Open `path` in Lab, run all its cells from the Run menu, press Validate; screenshots
    ``lab-<name>-opened.png`` (the release only), ``-run.png`` and ``-validate.png``."""
    file_metadata = nbformat.read(course / path, as_version=4).metadata
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(TIMEOUT_MS)
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    try:
        page.goto(lab.url(f"lab/tree/{path}", reset=True))
        page.wait_for_function(OPENED, arg=path)
        opened = page.evaluate(SETTLED)
        tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current")
        tab_dirty = "jp-mod-dirty" in (tab.get_attribute("class") or "")
        if name == "release":
            page.screenshot(path=screenshots / f"lab-{name}-opened.png")

        page.locator(".lm-MenuBar-itemLabel").get_by_text("Run", exact=True).click()
        page.locator(".lm-Menu-itemLabel").get_by_text("Run All Cells", exact=True).click()
        page.wait_for_function(RAN)
        cells = page.evaluate(CODE_CELLS)
        page.evaluate(SHOW_FIRST_TEST)
        page.screenshot(path=screenshots / f"lab-{name}-run.png")

        toolbar = page.locator(".jp-NotebookPanel-toolbar")
        button = toolbar.get_by_text("Validate", exact=True)
        assert button.count() == 1, (
            "no Validate button: is nbgrader's Lab extension installed (jupyter labextension list)?"
        )
        button.click()
        message = page.locator(".jp-Dialog #validation-message")
        message.wait_for()
        validation = message.inner_text()
        passed = "validation-success" in (message.get_attribute("class") or "")
        page.screenshot(path=screenshots / f"lab-{name}-validate.png")
        toasts = page.locator(".jp-toast-message").all_inner_texts()
    finally:
        page.close()
    return Walk(
        file_metadata={k: file_metadata.get(k) for k in ("kernelspec", "language_info")},
        opened=opened,
        tab_dirty=tab_dirty,
        cells=cells,
        validation=validation,
        validation_passed=passed,
        toasts=toasts,
        requests=requests,
    )


@pytest.fixture(scope="module")
def release_walk(browser, lab, course, screenshots) -> Walk:
    return _walk(browser, lab, course, RELEASE, screenshots, "release")


@pytest.fixture(scope="module")
def solved_walk(browser, lab, course, screenshots) -> Walk:
    return _walk(browser, lab, course, SOLVED, screenshots, "solved")


@pytest.fixture(scope="module")
def graded(course) -> list[dict]:
    """The ps2 samples graded in `course` (in the sandbox, two at a time): grades.csv's rows."""
    require_sandbox()
    out = course / "build" / "grades"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COURSEKIT_KERNEL_PYTHON", sandbox.default_kernel_python(ROOT))
        grade.grade(course, ASSIGNMENT, ROOT / "samples" / ASSIGNMENT, out, jobs=2, progress=False)
    with open(out / "grades.csv", newline="") as f:
        return list(csv.DictReader(f))


# --- The student --------------------------------------------------------------------------


def _errors(cell: dict) -> list[str]:
    return [f"{o['ename']}: {o['evalue']}" for o in cell["outputs"] if o["output_type"] == "error"]


def _text(cell: dict) -> str:
    return "".join(
        "".join(o["text"]) if isinstance(o["text"], list) else o["text"]
        for o in cell["outputs"]
        if o["output_type"] == "stream"
    )


@pytest.mark.parametrize("which", ["release", "solved"])
def test_opening_a_notebook_marks_nothing_modified(which, request):
    """Once Lab has the kernel's description, is the notebook still unmodified (no unsaved
    mark on the tab, the model not dirty), the metadata in the file being what Lab writes?"""
    walk: Walk = request.getfixturevalue(f"{which}_walk")
    lab_wrote = {k: walk.opened[k] for k in ("kernelspec", "language_info")}
    assert lab_wrote == walk.file_metadata, "Lab rewrote the metadata on opening"
    assert not walk.opened["dirty"]
    assert not walk.tab_dirty


def test_the_release_fails_its_first_visible_test_with_its_message(release_walk):
    """Run All on the blank release: the setup and answer cells run, and the first test cell
    stops the run with the visible test's message (the kernel skips the cells after it)."""
    cells = release_walk.cells
    first_test = next(i for i, c in enumerate(cells) if c["points"])
    assert all(c["execution_count"] for c in cells[: first_test + 1])
    assert all(not _errors(c) for c in cells[:first_test])
    assert _errors(cells[first_test]) == ["AssertionError: SGD(lr=0.05): not implemented yet"]
    assert all(c["execution_count"] is None for c in cells[first_test + 1 :])


def test_the_solved_copy_passes_every_visible_test(solved_walk):
    """Run All on the solved copy: every cell runs without an error, and every test cell prints
    its check marks."""
    cells = solved_walk.cells
    assert all(c["execution_count"] for c in cells)
    assert {c["grade_id"]: _errors(c) for c in cells if _errors(c)} == {}
    tests = [c for c in cells if c["points"]]
    assert len(tests) == 8
    for cell in tests:
        assert "\u2713" in _text(cell), (cell["grade_id"], _text(cell))


def test_validate_reports_every_failing_test_of_the_release(release_walk):
    """nbgrader's Validate button (its Lab extension) fails the release and lists each of its
    test cells with the visible test's message."""
    assert not release_walk.validation_passed
    tests = sum(1 for c in release_walk.cells if c["points"])
    assert release_walk.validation.count("The following cell failed") == tests
    assert release_walk.validation.count("not implemented yet") >= tests


def test_validate_passes_the_solved_copy(solved_walk):
    assert solved_walk.validation_passed
    assert "Success! Your notebook passes all the tests." in solved_walk.validation


def test_the_course_jupyterlab_asks_no_news_and_fetches_none(lab, release_walk, solved_walk):
    """The course's override (course.sh) turns Jupyter's news and update check off: the
    settings say so, no news prompt appears, and the pages ask the server for no news."""
    plugin = lab.get("lab/api/settings/@jupyterlab/apputils-extension:notification")
    properties = plugin["schema"]["properties"]
    composite = {k: plugin["settings"].get(k, v.get("default")) for k, v in properties.items()}
    assert composite["fetchNews"] == "false", "run ./course.sh (it installs the override)"
    assert composite["checkForUpdates"] is False
    for walk in (release_walk, solved_walk):
        assert not [t for t in walk.toasts if "news" in t.lower()]
        assert not [u for u in walk.requests if "/lab/api/news" in u or "/lab/api/update" in u]
        assert all(u.startswith((lab.base, "data:", "blob:")) for u in walk.requests)


# --- The instructor ---------------------------------------------------------------------------


def test_formgrader_lists_every_graded_submission_with_its_score(browser, lab, graded, screenshots):
    """After `coursekit grade` on the samples, formgrader (Nbgrader > Formgrader in Lab) lists
    each student of grades.csv on ps2's submissions page with the same score."""
    assert graded and all(row["status"] == "graded" for row in graded), graded
    page = browser.new_page(viewport=VIEWPORT)
    page.set_default_timeout(TIMEOUT_MS)
    try:
        page.goto(lab.url("lab", reset=True))
        page.wait_for_function("() => window.jupyterapp?.restored")
        page.locator(".lm-MenuBar-itemLabel").get_by_text("Nbgrader", exact=True).click()
        page.locator(".lm-Menu-itemLabel").get_by_text("Formgrader", exact=True).click()
        formgrader = page.frame_locator(".jp-MainAreaWidget iframe").first
        assignment = formgrader.locator("#main-table tr").filter(
            has=formgrader.locator(f'td.name[data-order="{ASSIGNMENT}"]')
        )
        assignment.locator("td.num-submissions a").click()
        page.wait_for_function(
            """name => document.querySelector('.jp-MainAreaWidget iframe')
                 .contentWindow.location.pathname.endsWith('/manage_submissions/' + name)""",
            arg=ASSIGNMENT,
        )
        rows = formgrader.locator("#main-table tr:has(td.student-id)")
        page.wait_for_function(
            """n => document.querySelector('.jp-MainAreaWidget iframe').contentDocument
                 .querySelectorAll('#main-table td.student-id').length === n""",
            arg=len(graded),
        )
        listed = {
            row.locator("td.student-id").inner_text(): row.locator("td.score").inner_text()
            for row in rows.all()
        }
        page.screenshot(path=screenshots / "lab-formgrader.png")
    finally:
        page.close()
    expected = {row["student_id"]: f"{row['score']} / {row['max_score']}" for row in graded}
    assert {k: _score(v) for k, v in listed.items()} == {k: _score(v) for k, v in expected.items()}


def _score(text: str) -> tuple[float, float]:
    """A score "7 / 18" as (7.0, 18.0): formgrader and grades.csv write numbers differently."""
    score, total = text.split("/")
    return float(score), float(total)
