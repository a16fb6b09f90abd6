"""`coursekit grade`: a folder (or zip) of submissions in, grades and feedback out.

    coursekit grade ps2 submissions/ --jobs 4 --out build/grades/ps2

SUBMISSIONS holds one folder per student id with that student's notebook(s), or is a zip of
such folders (as learning-management systems export them, optionally inside one top folder).
For each student this command

1. collects the notebook: exact name, else a renamed copy (``ps2-Copy1.ipynb``), checked to be
   a notebook (an unreadable file is graded as the blank release, with a note);
2. runs ``nbgrader autograde`` and ``nbgrader generate_feedback`` for that student alone, in a
   process of its own, N students at a time (the course's ``nbgrader_config.py`` makes nbgrader
   execute in a sandbox and score outside it: see `coursekit.grading.pipeline`);
3. reads the score from the gradebook and the notes from the autograded notebook.

It writes ``OUT/grades.csv`` (student_id, score, max_score, status, error) sorted by student,
``OUT/feedback/<student_id>/*.html`` and ``OUT/logs/<student_id>.log``. A submission whose
grading failed is exported with status ``failed`` and an empty score, never as 0.
"""

from __future__ import annotations

import csv
import html
import io
import os
import re
import shutil
import stat
import sys
import tempfile
import zipfile
from concurrent.futures import as_completed
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import nbformat
from tqdm.auto import tqdm

from . import release as release_module
from . import sandbox
from .score import set_notes

STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}$")
MAX_NOTEBOOK_BYTES = 20 * 2**20
COLUMNS = ("student_id", "score", "max_score", "status", "error")


@dataclass
class Submission:
    """One student's files for an assignment, and what was wrong with them."""

    student_id: str
    files: dict[str, bytes] = field(default_factory=dict)  # path inside their folder -> bytes
    notes: list[str] = field(default_factory=list)


@dataclass
class Row:
    student_id: str
    score: float | None
    max_score: float | None
    status: str
    error: str


def _read_folder(folder: Path) -> list[Submission]:
    found = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or not entry.is_dir() or entry.is_symlink():
            continue
        submission = Submission(entry.name)
        for path in sorted(entry.rglob("*.ipynb")):
            relative = path.relative_to(entry).as_posix()
            if ".ipynb_checkpoints" in relative:
                continue
            info = path.lstat()
            if not stat.S_ISREG(info.st_mode):
                submission.notes.append(f"{relative} is not a regular file and was ignored.")
            elif info.st_size > MAX_NOTEBOOK_BYTES:
                submission.notes.append(
                    f"{relative} is larger than {MAX_NOTEBOOK_BYTES >> 20} MiB and was ignored."
                )
            else:
                submission.files[relative] = path.read_bytes()
        found.append(submission)
    return found


def _read_zip(path: Path) -> list[Submission]:
    with zipfile.ZipFile(path) as archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        parts = [PurePosixPath(m.filename).parts for m in members]
        # One wrapping folder around all the student folders is dropped.
        if parts and all(len(p) > 2 for p in parts) and len({p[0] for p in parts}) == 1:
            parts = [p[1:] for p in parts]
        students: dict[str, Submission] = {}
        for member, part in zip(members, parts):
            if len(part) < 2 or part[0].startswith(".") or "__MACOSX" in part:
                continue
            submission = students.setdefault(part[0], Submission(part[0]))
            relative = "/".join(part[1:])
            if not relative.endswith(".ipynb") or ".ipynb_checkpoints" in relative:
                continue
            is_link = stat.S_ISLNK(member.external_attr >> 16)
            if ".." in part or is_link:
                submission.notes.append(f"{relative} is not a plain file and was ignored.")
                continue
            with archive.open(member) as f:
                data = f.read(MAX_NOTEBOOK_BYTES + 1)  # never trust the declared size
            if len(data) > MAX_NOTEBOOK_BYTES:
                submission.notes.append(
                    f"{relative} is larger than {MAX_NOTEBOOK_BYTES >> 20} MiB and was ignored."
                )
            else:
                submission.files[relative] = data
    return [students[k] for k in sorted(students)]


def collect(submissions: Path) -> list[Submission]:
    """Every student's files from a folder of student folders or a zip of them."""
    if submissions.is_dir():
        return _read_folder(submissions)
    if zipfile.is_zipfile(submissions):
        return _read_zip(submissions)
    raise ValueError(f"submissions: {submissions} is neither a folder nor a zip file")


def choose_notebooks(submission: Submission, expected: list[str]) -> dict[str, bytes | None]:
    """The file graded as each expected notebook (None: none usable), with notes added."""
    chosen: dict[str, bytes | None] = {}
    by_name = {
        PurePosixPath(p).name: p for p in sorted(submission.files, key=lambda p: (p.count("/"), p))
    }
    unused = [p for p in sorted(submission.files) if PurePosixPath(p).name not in expected]
    for name in expected:
        path = by_name.get(name)
        if path is None:
            stem = name.removesuffix(".ipynb")
            similar = [p for p in unused if PurePosixPath(p).name.startswith(stem)]
            candidates = similar or (unused if len(expected) == 1 else [])
            if candidates:
                path = candidates[0]
                unused.remove(path)
                submission.notes.append(f"No {name} was submitted; {path} was graded in its place.")
            else:
                submission.notes.append(f"No {name} was submitted: it was graded as left blank.")
                chosen[name] = None
                continue
        data = submission.files[path]
        try:
            nbformat.validate(nbformat.reads(data.decode("utf-8"), as_version=4))
        except Exception as error:
            reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
            submission.notes.append(
                f"{path} is not a valid notebook ({reason}): it was graded as left blank."
            )
            chosen[name] = None
        else:
            chosen[name] = data
    return chosen


class _Course:
    """The course's folders as its nbgrader_config.py sets them."""

    def __init__(self, root: Path):
        from nbgrader.coursedir import CourseDirectory
        from traitlets.config.loader import PyFileConfigLoader

        config = PyFileConfigLoader("nbgrader_config.py", path=str(root)).load_config()
        self.root = root
        self.dirs = CourseDirectory(config=config)

    def path(self, folder: str, student: str, assignment: str) -> Path:
        return Path(self.dirs.format_path(folder, student, assignment))

    def release_notebooks(self, assignment: str) -> list[Path]:
        return sorted(self.path(self.dirs.release_directory, ".", assignment).glob("*.ipynb"))


_API = None


def _start_worker(root: str, limits: dict) -> None:
    """In each worker process, once: nbgrader's API on the course's configuration."""
    global _API
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config.loader import PyFileConfigLoader

    os.chdir(root)
    os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    config = PyFileConfigLoader("nbgrader_config.py", path=root).load_config()
    if limits.get("cell_timeout"):
        config.Execute.timeout = int(limits["cell_timeout"])
    if limits.get("notebook_timeout"):
        config.SandboxedExecute.notebook_timeout = int(limits["notebook_timeout"])
    _API = NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)


def _grade_in_worker(assignment: str, student: str, notes: list[str]) -> tuple[bool, str]:
    """nbgrader autograde, then generate_feedback, for one student; (success, log).

    `notes` (about how the submission was collected) join the grader's notes in the
    autograded notebook before its feedback is made, so the student reads them too.
    """
    result = _API.autograde(assignment, student, force=True, create=True)
    log = result.get("log", "") + result.get("error", "")
    if not result["success"]:
        return False, log
    if notes:
        folder = Path(
            _API.coursedir.format_path(_API.coursedir.autograded_directory, student, assignment)
        )
        for path in sorted(folder.glob("*.ipynb")):
            nb = nbformat.read(path, as_version=4)
            set_notes(nb, notes + nb.metadata.get("coursekit", {}).get("problems", []))
            path.chmod(0o644)
            nbformat.write(nb, path)
            path.chmod(0o444)
    result = _API.generate_feedback(assignment, student, force=True)
    return bool(result["success"]), log + result.get("log", "") + result.get("error", "")


def _run_workers(root: Path, assignment: str, students: list[Submission], jobs: int, limits: dict):
    """Yield (submission, success, log) as workers finish, `jobs` at a time.

    Workers are processes that stay up (importing nbgrader costs seconds) and never run
    student code: kernels run in their own sandboxes. Should a worker die anyway, the
    submissions it held are retried in a fresh pool, and reported failed after three tries.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    tries = {s.student_id: 0 for s in students}
    pending = list(students)
    while pending:
        context = multiprocessing.get_context("spawn")
        retry = []
        with ProcessPoolExecutor(
            jobs, mp_context=context, initializer=_start_worker, initargs=(str(root), limits)
        ) as pool:
            futures = {
                pool.submit(_grade_in_worker, assignment, s.student_id, s.notes): s for s in pending
            }
            for future in as_completed(futures):
                submission = futures[future]
                try:
                    ok, log = future.result()
                except BrokenProcessPool:
                    tries[submission.student_id] += 1
                    if tries[submission.student_id] < 3:
                        retry.append(submission)
                        continue
                    ok, log = False, "the grading process died three times"
                except Exception as error:  # a bug in grading, not the student's fault
                    ok, log = False, f"{type(error).__name__}: {error}"
                yield submission, ok, log
        pending = sorted(retry, key=lambda s: s.student_id)


def _notes_of(autograded: Path) -> list[str]:
    notes = []
    for path in sorted(autograded.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        notes += nb.metadata.get("coursekit", {}).get("problems", [])
    return list(dict.fromkeys(notes))  # collection notes are in every notebook


def _failed_feedback(folder: Path, student: str, assignment: str, message: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{assignment}.html").write_text(
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(assignment)}</title>"
        f"<h1>{html.escape(assignment)}: {html.escape(student)}</h1><p>{html.escape(message)}</p>\n"
    )


def grade(
    root: Path,
    assignment: str,
    submissions: Path,
    out: Path,
    *,
    jobs: int = 1,
    cell_timeout: float | None = None,
    notebook_timeout: float | None = None,
    progress: bool = True,
) -> list[Row]:
    """Grade every submission; write OUT/grades.csv and OUT/feedback; return the rows.

    `cell_timeout` and `notebook_timeout` (seconds) override the course's nbgrader_config.py.
    """
    if jobs < 1:
        raise ValueError(f"jobs must be >= 1, got {jobs}")
    root = root.resolve()
    sandbox.check_available()
    if sandbox.is_root() and not Path(sandbox.default_kernel_python(root)).exists():
        raise sandbox.SandboxUnavailable(
            "no kernel venv for the sandbox: run `coursekit sandbox-setup`"
        )
    course = _course_or_error(root)
    expected = [p.name for p in course.release_notebooks(assignment)]
    if not expected:
        raise ValueError(
            f"assignment: no release notebooks for {assignment!r}: run `coursekit build` first"
        )
    out.mkdir(parents=True, exist_ok=True)
    for sub in ("feedback", "logs"):
        shutil.rmtree(out / sub, ignore_errors=True)
        (out / sub).mkdir()

    # Record the assignment in the gradebook once, before the parallel runs.
    with tempfile.TemporaryDirectory() as scratch:
        release_module.generate(root, assignment, Path(scratch))

    release = course.path(course.dirs.release_directory, ".", assignment)
    students, rows = [], {}
    for submission in collect(submissions):
        sid = submission.student_id
        if not STUDENT_ID.match(sid):
            rows[sid] = Row(
                sid, None, None, "failed", "not a valid student id (letters, digits, . _ @ + -)"
            )
            continue
        for kind in (
            course.dirs.submitted_directory,
            course.dirs.autograded_directory,
            course.dirs.feedback_directory,
        ):
            shutil.rmtree(course.path(kind, sid, assignment), ignore_errors=True)
        target = course.path(course.dirs.submitted_directory, sid, assignment)
        target.mkdir(parents=True)
        for name, data in choose_notebooks(submission, expected).items():
            (target / name).write_bytes(data if data is not None else (release / name).read_bytes())
        students.append(submission)

    def finish(submission: Submission, ok: bool, log: str) -> Row:
        sid = submission.student_id
        (out / "logs" / f"{sid}.log").write_text(log)
        autograded = course.path(course.dirs.autograded_directory, sid, assignment)
        if not ok or not autograded.is_dir():
            message = f"grading failed (see logs/{sid}.log); the submission must be graded again"
            _failed_feedback(out / "feedback" / sid, sid, assignment, message)
            return Row(sid, None, None, "failed", _one_line([*submission.notes, message]))
        notes = _notes_of(autograded)  # the collection notes are in there too
        feedback = course.path(course.dirs.feedback_directory, sid, assignment)
        shutil.copytree(feedback, out / "feedback" / sid, dirs_exist_ok=True)
        score, max_score = _score(course, assignment, sid)
        return Row(sid, score, max_score, "graded", _one_line(notes))

    bar = tqdm(
        total=len(students), desc=f"grading {assignment}", unit="submission", disable=not progress
    )
    for submission, ok, log in _run_workers(
        root,
        assignment,
        students,
        jobs,
        {"cell_timeout": cell_timeout, "notebook_timeout": notebook_timeout},
    ):
        row = finish(submission, ok, log)
        rows[row.student_id] = row
        bar.set_postfix_str(row.student_id)
        bar.update()
    bar.close()
    ordered = [rows[k] for k in sorted(rows)]
    _write_csv(out / "grades.csv", ordered)
    return ordered


def _course_or_error(root: Path) -> _Course:
    if not (root / "nbgrader_config.py").is_file():
        raise ValueError(f"root: {root} has no nbgrader_config.py")
    return _Course(root)


def _score(course: _Course, assignment: str, student: str) -> tuple[float, float]:
    from nbgrader.api import Gradebook

    with Gradebook(course.dirs.db_url) as gradebook:
        submission = gradebook.find_submission(assignment, student)
        return float(submission.score), float(submission.max_score)


def _one_line(notes: list[str]) -> str:
    """The notes as one line: a spreadsheet row per student, whatever the messages hold."""
    return " ".join(" ".join(note.split()) for note in notes)


def format_csv(rows: list[Row]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in rows:
        score, max_score = ("" if x is None else f"{x:g}" for x in (r.score, r.max_score))
        writer.writerow([r.student_id, score, max_score, r.status, r.error])
    return buffer.getvalue()


def _write_csv(path: Path, rows: list[Row]) -> None:
    partial = path.with_suffix(".csv.tmp")
    partial.write_text(format_csv(rows))
    partial.replace(path)  # never a half-written grade file


def summary(rows: list[Row], out: Path) -> str:
    """A short table for the terminal."""
    graded = [r for r in rows if r.status == "graded"]
    lines = [f"{'student':<20} {'score':>12}  notes"]
    for r in rows:
        score = f"{r.score:g}/{r.max_score:g}" if r.score is not None else r.status
        lines.append(f"{r.student_id:<20} {score:>12}  {r.error[:100]}")
    lines.append(
        f"{len(graded)} of {len(rows)} graded; grades: {out / 'grades.csv'}; feedback: {out / 'feedback'}"
    )
    return "\n".join(lines)
