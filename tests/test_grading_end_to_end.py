"""`coursekit grade` on a temporary course: right, wrong, broken and hostile submissions.

One batch of submissions is graded with ``--jobs 2`` (the module fixture); each test then
reads what one student got. Every expected score is worked out by hand from the points of
assignment 2 (sgd 2, sgd_momentum 3, rprop 2, adagrad 2, rmsprop 2, adadelta 2, adam 3,
adamax 2: 18) and the checks of `coursekit.grading.optimizers`.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import sqlite3
import tempfile
from pathlib import Path

import nbformat
import pytest
from grading_course import require_sandbox

from coursekit.grading import grade, sandbox
from coursekit.grading.submissions import solved, with_answer, with_cell, without

ROOT = Path(__file__).resolve().parents[1]
SOURCE = nbformat.read(ROOT / "solutions/ps2/ps2.ipynb", as_version=4)
RELEASE = nbformat.read(ROOT / "assignments/ps2/ps2.ipynb", as_version=4)
GOOD = solved(SOURCE, RELEASE)
CELL_TIMEOUT, NOTEBOOK_TIMEOUT = 20, 60

CONFIG = f"""\
import os
from coursekit.grading.pipeline import configure
c = get_config()
configure(c, os.path.dirname(os.path.abspath(__file__)), cell_timeout={CELL_TIMEOUT},
          notebook_timeout={NOTEBOOK_TIMEOUT})
"""


def _answer(grade_id: str) -> str:
    return next(
        c.source for c in GOOD.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id
    )


def _in_step(grade_id: str, code: str) -> str:
    """The solved answer `grade_id` with `code` run first in its step()."""
    lines = code.strip().splitlines()
    body = "".join(f"        {line}\n" for line in lines)
    source = _answer(grade_id)
    marker = "    def step(self, closure=None):\n"
    assert marker in source
    return source.replace(marker, marker + body, 1)


def _blank_except(*grade_ids: str) -> nbformat.NotebookNode:
    nb = RELEASE
    for grade_id in grade_ids:
        nb = with_answer(nb, grade_id, _answer(grade_id))
    return nb


SGD_WITHOUT_NESTEROV = """class SGD(Optimizer):
    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad.add(p, alpha=group["weight_decay"])
                if group["momentum"] != 0:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = d.clone()
                    else:
                        state["momentum_buffer"].mul_(group["momentum"]).add_(
                            d, alpha=1 - group["dampening"])
                    d = state["momentum_buffer"]  # nesterov forgotten
                p.add_(d, alpha=-group["lr"])
"""

PATCH_COMPARISONS = """\
import numpy
torch.allclose = lambda *a, **k: True
torch.isclose = lambda a, b, **k: torch.ones_like(a, dtype=torch.bool)
torch.equal = lambda *a, **k: True
numpy.allclose = lambda *a, **k: True
torch.Tensor.__eq__ = lambda self, other: True
"""

RIGGED_OBJECTS = """\
class Always:
    def __eq__(self, other):
        return True
    def __bool__(self):
        return True
import coursekit.grading
import coursekit.grading.optimizers as _optimizers
check_optimizer = record_optimizer = lambda *args, **kwargs: Always()
coursekit.grading.record_optimizer = _optimizers.record_optimizer = record_optimizer
coursekit.grading.check_optimizer = _optimizers.check_optimizer = check_optimizer
"""

INPUT_TRANSFORMER = """\
def _neuter(lines):
    return ["pass\\n"] if any("optimizer(" in line for line in lines) else lines
get_ipython().input_transformers_post.append(_neuter)
"""

PRE_RUN_FORGERY = """\
import coursekit.grading.records as _records
_real_emit = _records.emit
def _fake_emit(kind, key, tensors, errors):
    zeros = {f"{i}/{v}": torch.zeros(20, 17, dtype=torch.float64)
             for i in range(3) for v in ("float64", "float32", "groups", "resume")}
    _real_emit(kind, key, zeros, {})
def _hook(*args):
    _records.emit = _fake_emit
get_ipython().events.register("pre_run_cell", _hook)
"""

SILENCED_TRACEBACKS = """\
get_ipython().showtraceback = lambda *a, **k: None
get_ipython()._showtraceback = lambda *a, **k: None
"""

# Correct SGD, then records forged from it for every other test cell, emitted while that
# cell runs (a post_run_cell hook's output belongs to the cell).
POST_RUN_FORGERY = """\
from coursekit.grading import optimizers as _o, records as _r, registry as _g
def _forge(result):
    for key, task in _g.tasks_of("ps2").items():
        if not key.startswith("ps2.sgd"):
            fake = {f"{i}/{v}": _o.trajectory(SGD, {"lr": 0.05}, v)
                    for i in range(len(task.cases)) for v in _o.variants()}
            _r.emit("optimizer", key, fake, {})
get_ipython().events.register("post_run_cell", _forge)
"""

LOOP = """\
class Adagrad(Optimizer):
    def __init__(self, params, lr=1e-2, eps=1e-10):
        super().__init__(params, dict(lr=lr, eps=eps))

    def step(self, closure=None):
        while True:
            pass
"""

HOG = """\
hog = []
while True:
    hog.append(torch.ones(2**27))
"""


def _snoop(course: Path, port: int) -> str:
    targets = [
        course / "solutions/ps2/ps2.ipynb",
        course / "build/nbgrader/gradebook.db",
        course / "build/nbgrader/submitted",
        ROOT / "solutions",
        Path("/etc/shadow"),
        Path("/root"),
    ]
    victim = course / "build/nbgrader/submitted/full/ps2/ps2.ipynb"
    return f"""\
import os, socket
for path in {[str(t) for t in targets]!r}:
    try:
        os.listdir(path) if os.path.isdir(path) else open(path, "rb").read(10)
        print("LEAK", path)
    except OSError as error:
        print("blocked", path, type(error).__name__)
try:
    open({str(victim)!r}, "w").write("overwritten")
    print("LEAK write")
except OSError:
    print("blocked write")
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=3)
    print("LEAK network")
except OSError as error:
    print("blocked network", error)
"""


def _deleted_and_edited() -> nbformat.NotebookNode:
    nb = without(GOOD, "test_adam")
    for cell in nb.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id == "test_sgd":
            cell.source = "pass"
        elif grade_id == "test_rprop":
            cell.cell_type = "markdown"
            cell.pop("outputs", None)
            cell.pop("execution_count", None)
        elif grade_id == "test_adagrad":
            cell.metadata.nbgrader["points"] = 100
    return nb


# student id -> (notebook or raw bytes, file name, expected score, words expected in `error`)
def _submissions(course: Path, port: int) -> dict:
    noisy = _in_step(
        "rprop_solution",
        "import sys, warnings\nfrom tqdm.auto import tqdm\n"
        "warnings.warn('a harmless warning')\nprint('to stderr', file=sys.stderr)\n"
        "for _ in tqdm(range(3)):\n    pass",
    )
    return {
        "full": (GOOD, "ps2.ipynb", 18, None),
        "blank": (RELEASE, "ps2.ipynb", 0, None),
        "partial": (
            with_answer(
                with_answer(
                    GOOD,
                    "rprop_solution",
                    _answer("rprop_solution").split("class")[0] + "raise NotImplementedError",
                ),
                "adadelta_solution",
                "pass",
            ),
            "ps2.ipynb",
            14,
            None,
        ),
        "no_nesterov": (
            with_answer(GOOD, "sgd_solution", SGD_WITHOUT_NESTEROV),
            "ps2.ipynb",
            17,
            None,
        ),
        "subclasses_torch": (
            with_answer(GOOD, "adam_solution", "class Adam(torch.optim.Adam):\n    pass\n"),
            "ps2.ipynb",
            15,
            None,
        ),
        "imports_coursekit": (
            with_answer(GOOD, "adamax_solution", "from coursekit.optim import Adamax\n"),
            "ps2.ipynb",
            16,
            None,
        ),
        "calls_functional": (
            with_answer(
                GOOD,
                "adam_solution",
                _in_step("adam_solution", "torch.optim._functional.adam([], [], [], [], [], [])"),
            ),
            "ps2.ipynb",
            15,
            None,
        ),
        "patches_comparisons": (
            with_cell(RELEASE, PATCH_COMPARISONS, after="setup"),
            "ps2.ipynb",
            0,
            None,
        ),
        "rigged_objects": (with_cell(RELEASE, RIGGED_OBJECTS, after="setup"), "ps2.ipynb", 0, None),
        "input_transformer": (
            with_cell(RELEASE, INPUT_TRANSFORMER, after="setup"),
            "ps2.ipynb",
            0,
            None,
        ),
        "pre_run_forgery": (with_cell(GOOD, PRE_RUN_FORGERY, after="setup"), "ps2.ipynb", 0, None),
        "silenced_tracebacks": (
            with_cell(RELEASE, SILENCED_TRACEBACKS, after="setup"),
            "ps2.ipynb",
            0,
            None,
        ),
        "post_run_forgery": (
            with_cell(_blank_except("sgd_solution"), POST_RUN_FORGERY, after="sgd_solution"),
            "ps2.ipynb",
            5,
            None,
        ),
        "loops_forever": (
            with_answer(GOOD, "adagrad_solution", LOOP),
            "ps2.ipynb",
            16,
            "ran out of its",
        ),
        "ignores_interrupt": (
            with_answer(
                GOOD,
                "adamax_solution",
                _in_step(
                    "adamax_solution",
                    "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass",
                ),
            ),
            "ps2.ipynb",
            16,
            "ran out of its",
        ),
        "exits_kernel": (
            with_answer(
                GOOD, "rmsprop_solution", _in_step("rmsprop_solution", "import os\nos._exit(3)")
            ),
            "ps2.ipynb",
            9,
            "kernel died",
        ),
        "memory_hog": (with_cell(GOOD, HOG), "ps2.ipynb", 18, None),
        "deletes_and_edits_tests": (_deleted_and_edited(), "ps2.ipynb", 18, "was deleted"),
        "renamed": (GOOD, "ps2-Copy1.ipynb", 18, "ps2-Copy1.ipynb was graded in its place"),
        "not_a_notebook": (b"\x89PNG not a notebook", "ps2.ipynb", 0, "not a valid notebook"),
        "noisy_stderr": (with_answer(GOOD, "rprop_solution", noisy), "ps2.ipynb", 18, None),
        "snoops": (with_cell(RELEASE, _snoop(course, port), after="setup"), "ps2.ipynb", 0, None),
    }


SAMPLES = {
    "ada": (18, None),
    "ben": (7, None),
    "cleo": (18, "ps2-Copy1"),
    "dan": (0, "not a valid notebook"),
    "eve": (13, None),
}
SLOW = {"loops_forever", "ignores_interrupt", "memory_hog"}  # left out of the --jobs 1 rerun


_require_sandbox = require_sandbox


def _sandbox_folders() -> set[str]:
    """Every kernel's socket folder, stub folder and cgroups that exist right now."""
    patterns = ["/dev/shm/ck-*", f"{tempfile.gettempdir()}/ck-*", "/sys/fs/cgroup/*/coursekit/ck-*"]
    return {path for pattern in patterns for path in glob.glob(pattern)}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    _require_sandbox()
    course = tmp_path_factory.mktemp("course")
    for folder in ("solutions/ps2", "assignments/ps2"):
        shutil.copytree(ROOT / folder, course / folder)
    (course / "nbgrader_config.py").write_text(CONFIG)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.setblocking(False)
    port = listener.getsockname()[1]

    submissions = course / "submitted_by_lms"
    expected = {}
    for student, (nb, name, score, note) in _submissions(course, port).items():
        (submissions / student).mkdir(parents=True)
        data = nb if isinstance(nb, bytes) else nbformat.writes(nb).encode()
        (submissions / student / name).write_bytes(data)
        expected[student] = (score, note)
    for student, (score, note) in SAMPLES.items():
        shutil.copytree(ROOT / "samples/ps2" / student, submissions / student)
        expected[student] = (score, note)

    previous = os.environ.get("COURSEKIT_KERNEL_PYTHON")
    os.environ["COURSEKIT_KERNEL_PYTHON"] = sandbox.default_kernel_python(ROOT)
    before = _sandbox_folders()
    try:
        rows = grade.grade(course, "ps2", submissions, course / "out", jobs=2, progress=False)
        leftovers = _sandbox_folders() - before
        try:
            connection, _ = listener.accept()
            connection.close()
            reached = True
        except BlockingIOError:
            reached = False
        yield {
            "course": course,
            "rows": {r.student_id: r for r in rows},
            "expected": expected,
            "submissions": submissions,
            "network_reached": reached,
            "leftovers": leftovers,
        }
    finally:
        listener.close()
        if previous is None:
            os.environ.pop("COURSEKIT_KERNEL_PYTHON", None)
        else:
            os.environ["COURSEKIT_KERNEL_PYTHON"] = previous


def _autograded(course: Path, student: str) -> nbformat.NotebookNode:
    return nbformat.read(
        course / f"build/nbgrader/autograded/{student}/ps2/ps2.ipynb", as_version=4
    )


STUDENTS = sorted(list(_submissions(Path("/x"), 1)) + list(SAMPLES))


@pytest.mark.parametrize("student", STUDENTS)
def test_each_submission_earns_exactly_what_it_should(graded, student):
    """Is every score, including the partial ones, exactly the hand-worked one?"""
    row = graded["rows"][student]
    score, note = graded["expected"][student]
    assert row.status == "graded", row.error
    assert (row.score, row.max_score) == (score, 18), row.error
    if note:
        assert note in row.error
    feedback = (graded["course"] / "out/feedback" / student / "ps2.html").read_text()
    if note:  # the same words reach the student
        assert note in re.sub("<[^>]+>", "", feedback).replace("&#39;", "'")


def test_every_student_is_graded_and_the_gradebook_is_intact(graded):
    """Did any submission cost another student their grade, or damage the gradebook?"""
    assert sorted(graded["rows"]) == STUDENTS
    db = graded["course"] / "build/nbgrader/gradebook.db"
    with sqlite3.connect(db) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{db}") as gradebook:
        for student in STUDENTS:
            submission = gradebook.find_submission("ps2", student)
            assert submission.score == graded["rows"][student].score
    csv = (graded["course"] / "out/grades.csv").read_text().splitlines()
    assert csv[0] == "student_id,score,max_score,status,error" and len(csv) == len(STUDENTS) + 1


def test_feedback_never_shows_the_hidden_tests(graded):
    for student in STUDENTS:
        html = (graded["course"] / "out/feedback" / student / "ps2.html").read_text()
        text = re.sub("<[^>]+>", "", html)
        assert "HIDDEN TESTS" not in text and "record_optimizer(" not in text.replace("&quot;", '"')
        sources = [c.source for c in _autograded(graded["course"], student).cells]
        assert not any("record_optimizer(" in s for s in sources)


def test_the_sandbox_hides_files_and_network(graded):
    """Could a submission read the solutions or the gradebook, write another's file, or connect?"""
    outputs = "".join(
        o.get("text", "")
        for c in _autograded(graded["course"], "snoops").cells
        for o in c.get("outputs", [])
    )
    assert "blocked" in outputs and "LEAK" not in outputs
    assert not graded["network_reached"]
    victim = graded["course"] / "build/nbgrader/submitted/full/ps2/ps2.ipynb"
    assert "overwritten" not in victim.read_text()


def test_memory_hog_is_stopped_with_a_note(graded):
    """A cell that allocates without end meets the data limit: the allocation fails inside the
    kernel (no slow thrash until the cell timeout), and the submission is graded as usual."""
    row = graded["rows"]["memory_hog"]
    assert row.status == "graded" and row.score == 18.0
    assert "ran out of its" not in row.error  # not stopped by the clock
    errors = [
        str(o.get("evalue", ""))
        for c in _autograded(graded["course"], "memory_hog").cells
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert any("alloc" in e.lower() or "memory" in e.lower() for e in errors), errors


def test_one_job_and_two_jobs_give_the_same_grades(graded, tmp_path):
    """Is `--jobs 2` only faster? 20 of the submissions graded again one at a time."""
    students = sorted(s for s in STUDENTS if s not in SLOW)[:20]
    assert len(students) == 20
    subset = tmp_path / "subset"
    for student in students:
        shutil.copytree(graded["submissions"] / student, subset / student)
    os.environ["COURSEKIT_KERNEL_PYTHON"] = sandbox.default_kernel_python(ROOT)
    try:
        rows = grade.grade(
            graded["course"], "ps2", subset, tmp_path / "out", jobs=1, progress=False
        )
    finally:
        os.environ.pop("COURSEKIT_KERNEL_PYTHON", None)
    two_jobs = [graded["rows"][s] for s in students]
    assert grade.format_csv(rows) == grade.format_csv(two_jobs)


def test_every_kernel_leaves_nothing_behind(graded):
    """Killed, timed-out and OOM-killed kernels alike: no cgroup, socket or stub folder stays."""
    assert graded["leftovers"] == set()


def test_build_generates_the_student_versions_and_grades_the_samples(tmp_path, monkeypatch):
    """The README's main command, on a course holding only solutions/ and samples/."""
    from coursekit.cli import main

    _require_sandbox()
    course = tmp_path / "course"
    for folder in ("solutions/ps2", "samples/ps2"):
        shutil.copytree(ROOT / folder, course / folder)
    shutil.copy(ROOT / "nbgrader_config.py", course)
    monkeypatch.setenv("COURSEKIT_KERNEL_PYTHON", sandbox.default_kernel_python(ROOT))
    assert main(["build", "--root", str(course), "--no-slides", "--jobs", "2"]) == 0

    release = nbformat.read(course / "assignments/ps2/ps2.ipynb", as_version=4)
    assert [c.source for c in release.cells] == [c.source for c in RELEASE.cells]
    assert (course / "build/solutions/ps2/ps2.ipynb").is_file()  # executed, too
    grades = course / "build/grades/ps2"
    rows = {line.split(",")[0]: line for line in (grades / "grades.csv").read_text().splitlines()}
    for student, (score, note) in SAMPLES.items():
        assert rows[student].startswith(f"{student},{score},18,graded,"), rows[student]
        assert note is None or note in rows[student]
        assert (grades / "feedback" / student / "ps2.html").is_file()
