"""`coursekit grade`: a folder (or zip) of submissions in, grades and feedback out.

    coursekit grade ps2 submissions/ --jobs 4 --out build/grades/ps2

The trail from the command line to ``grades.csv``, in one pass:

1. `grade` reads the course once (`course.Course`: ``nbgrader_config.py`` parsed, this run's
   `course.Timeouts` applied) and records the assignment in the gradebook
   (`Course.generate_release` into a scratch folder, unless the caller just generated it);
2. `collect.collect` turns SUBMISSIONS into one notebook per expected name and student, with
   notes on what was wrong (a renamed copy, a file that is no notebook);
3. `_place` writes each notebook where nbgrader expects a submission;
4. `_run_workers` grades N students at a time, each worker a process that runs
   `_grade_in_worker`: ``nbgrader autograde`` then ``generate_feedback`` through nbgrader's API
   on the same parsed configuration. The configuration's steps (`coursekit.grading.pipeline`)
   reassemble the notebook on the instructor's source, execute it in a sandbox and score the
   records outside it; the collection notes go in as a setting of the scoring step, so the
   feedback shows them, and the grader's own notes come back with the result;
5. `_row` reads the score from the gradebook and keeps the notes; `write_csv` writes the rows.

It writes ``OUT/grades.csv`` (student_id, score, max_score, status, error) sorted by student,
``OUT/feedback/<student_id>/*.html`` and ``OUT/logs/<student_id>.log``. A submission whose
grading failed is exported with status ``failed`` and an empty score, never as 0.
"""

from __future__ import annotations

import csv
import html
import io
import os
import shutil
import tempfile
import textwrap
from collections.abc import Iterator
from concurrent.futures import as_completed
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from tqdm.auto import tqdm

from . import sandbox
from .collect import Submission, collect
from .course import Course, Timeouts

COLUMNS = ("student_id", "score", "max_score", "status", "error")
SKIPPED = "skipped.txt"  # entries of the submissions that belong to no student


@dataclass
class Row:
    """One line of ``grades.csv``; `error` holds every note on the submission, on one line."""

    student_id: str
    score: float | None
    max_score: float | None
    status: str  # "graded" or "failed"
    error: str


@dataclass
class _Outcome:
    """What a worker reports for one student."""

    ok: bool
    log: str
    notes: list[str]  # the grader's own notes (cells restored, kernel died, ...)


# --- In each worker process ------------------------------------------------------------------

_API = None


def _start_worker(config) -> None:
    """Once per worker: nbgrader's API on the course configuration parsed by the main process."""
    global _API
    from .course import api

    os.chdir(config.CourseDirectory.root)  # nbgrader gives paths relative to the course root
    _API = api(config)


def _grade_in_worker(assignment: str, student: str, notes: list[str]) -> _Outcome:
    """nbgrader autograde, then generate_feedback, for one student.

    `notes` (how the submission was collected) are handed to the scoring step as a setting, so
    the student reads them in the feedback beside the grader's own notes.
    """
    import nbformat

    from .assemble import problems
    from .course import quietly

    _API.config.ScoreFromRecords.collection_notes = list(notes)
    result = quietly(_API.autograde, assignment, student, force=True, create=True)
    log = result.get("log", "") + result.get("error", "")
    if not result["success"]:
        return _Outcome(False, log, [])
    coursedir = _API.coursedir
    folder = Path(coursedir.format_path(coursedir.autograded_directory, student, assignment))
    grader_notes = [
        note for path in sorted(folder.glob("*.ipynb")) for note in problems(nbformat.read(path, 4))
    ]
    result = quietly(_API.generate_feedback, assignment, student, force=True)
    log += result.get("log", "") + result.get("error", "")
    return _Outcome(bool(result["success"]), log, grader_notes)


# --- In the main process ---------------------------------------------------------------------


def _run_workers(
    course: Course, assignment: str, students: list[Submission], jobs: int
) -> Iterator[tuple[Submission, _Outcome]]:
    """Yield (submission, outcome) as workers finish, `jobs` at a time.

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
            jobs, mp_context=context, initializer=_start_worker, initargs=(course.config,)
        ) as pool:
            futures = {
                pool.submit(_grade_in_worker, assignment, s.student_id, s.notes): s for s in pending
            }
            for future in as_completed(futures):
                submission = futures[future]
                try:
                    outcome = future.result()
                except BrokenProcessPool:
                    tries[submission.student_id] += 1
                    if tries[submission.student_id] < 3:
                        retry.append(submission)
                        continue
                    outcome = _Outcome(False, "the grading process died three times", [])
                except Exception as error:  # a bug in grading, not the student's fault
                    outcome = _Outcome(False, f"{type(error).__name__}: {error}", [])
                yield submission, outcome
        pending = sorted(retry, key=lambda s: s.student_id)


def _place(course: Course, assignment: str, submission: Submission) -> None:
    """Write the submission's notebooks where nbgrader looks for them (blank: the release)."""
    sid = submission.student_id
    for kind in (
        course.dirs.submitted_directory,
        course.dirs.autograded_directory,
        course.dirs.feedback_directory,
    ):
        shutil.rmtree(course.path(kind, sid, assignment), ignore_errors=True)
    target = course.path(course.dirs.submitted_directory, sid, assignment)
    target.mkdir(parents=True)
    release = course.release_folder(assignment)
    for name, data in submission.notebooks.items():
        (target / name).write_bytes(data if data is not None else (release / name).read_bytes())
    # nbgrader's record of when the work came in (formgrader shows it): when it was collected.
    (target / "timestamp.txt").write_text(datetime.now(timezone.utc).isoformat(" ", "seconds"))


def _row(course: Course, assignment: str, out: Path, submission: Submission, outcome: _Outcome):
    sid = submission.student_id
    (out / "logs" / f"{sid}.log").write_text(outcome.log)
    notes = list(dict.fromkeys([*submission.notes, *outcome.notes]))
    if not outcome.ok:
        message = f"grading failed (see logs/{sid}.log); the submission must be graded again"
        _failed_feedback(out / "feedback" / sid, sid, assignment, message)
        return Row(sid, None, None, "failed", _one_line([*submission.notes, message]))
    feedback = course.path(course.dirs.feedback_directory, sid, assignment)
    shutil.copytree(feedback, out / "feedback" / sid, dirs_exist_ok=True)
    score, max_score = course.score(assignment, sid)
    return Row(sid, score, max_score, "graded", _one_line(notes))


def _failed_feedback(folder: Path, student: str, assignment: str, message: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{assignment}.html").write_text(
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(assignment)}</title>"
        f"<h1>{html.escape(assignment)}: {html.escape(student)}</h1><p>{html.escape(message)}</p>\n"
    )


def grade(
    root: Path | Course,
    assignment: str,
    submissions: Path,
    out: Path,
    *,
    jobs: int = 1,
    timeouts: Timeouts | None = None,
    recorded: bool = False,
    progress: bool = True,
) -> list[Row]:
    """Grade every submission; write OUT/grades.csv and OUT/feedback; return the rows.

    `root` is the course root or a `Course` already read (then `timeouts` must be left unset:
    they were applied when it was read). `recorded` says the caller has just generated the
    assignment's student version (which records it in the gradebook), so it is not done again.
    """
    if jobs < 1:
        raise ValueError(f"Invalid jobs: {jobs} (must be >= 1)")
    sandbox.check_available()
    if isinstance(root, Course):
        if timeouts is not None:
            raise ValueError("timeouts: give them when the Course is read, not here")
        course = root
    else:
        course = Course(root, timeouts)
    if sandbox.is_root() and not Path(sandbox.default_kernel_python(course.root)).exists():
        raise sandbox.SandboxUnavailable(
            "no kernel venv for the sandbox: run `coursekit sandbox-setup`"
        )
    if assignment not in course.assignments():
        raise ValueError(
            f"assignment: {assignment!r} is not an assignment of this course "
            f"(it has {', '.join(course.assignments()) or 'none'})"
        )
    expected = [p.name for p in course.release_notebooks(assignment)]
    if not expected:
        raise ValueError(
            f"assignment: no student version of {assignment!r}: run `coursekit build` first"
        )
    out.mkdir(parents=True, exist_ok=True)
    for sub in ("feedback", "logs"):
        shutil.rmtree(out / sub, ignore_errors=True)
        (out / sub).mkdir()
    if not recorded:  # the gradebook must know the assignment's cells before grading
        with tempfile.TemporaryDirectory() as scratch:
            course.generate_release(assignment, Path(scratch))

    collection = collect(submissions, expected)
    skipped = out / SKIPPED
    if collection.skipped:
        skipped.write_text("".join(f"{note}\n" for note in collection.skipped))
    else:
        skipped.unlink(missing_ok=True)
    students, rows = [], {}
    for submission in collection.submissions:
        if not submission.valid_id:
            rows[submission.student_id] = Row(
                submission.student_id,
                None,
                None,
                "failed",
                "not a valid student id (letters, digits, . _ @ + -)",
            )
            continue
        _place(course, assignment, submission)
        students.append(submission)

    bar = tqdm(  # on a terminal only: a log file gets the summary, not a bar redrawn
        total=len(students),
        desc=f"grading {assignment}",
        unit="submission",
        disable=None if progress else True,
    )
    for submission, outcome in _run_workers(course, assignment, students, jobs):
        row = _row(course, assignment, out, submission, outcome)
        rows[row.student_id] = row
        bar.set_postfix_str(row.student_id)
        bar.update()
    bar.close()
    ordered = [rows[k] for k in sorted(rows)]
    write_csv(out / "grades.csv", ordered)
    return ordered


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


def write_csv(path: Path, rows: list[Row]) -> None:
    """Write ``grades.csv`` whole or not at all: never a half-written grade file."""
    partial = path.with_suffix(".csv.tmp")
    partial.write_text(format_csv(rows))
    partial.replace(path)


def summary(rows: list[Row], out: Path) -> str:
    """A short table for the terminal, and the entries that belonged to no student."""
    graded = [r for r in rows if r.status == "graded"]
    lines = [f"{'student':<20} {'score':>12}  notes"]
    for r in rows:
        score = f"{r.score:g}/{r.max_score:g}" if r.score is not None else r.status
        note = textwrap.shorten(r.error, 100, placeholder=" ...") if r.error else ""
        lines.append(f"{r.student_id:<20} {score:>12}  {note}")
    skipped = out / SKIPPED
    if skipped.is_file():
        notes = skipped.read_text().splitlines()
        lines.append(f"{len(notes)} entries belonged to no student ({skipped}):")
        lines += [f"  {textwrap.shorten(n, 110, placeholder=' ...')}" for n in notes[:5]]
        lines += [f"  ... and {len(notes) - 5} more"] if len(notes) > 5 else []
    lines.append(
        f"{len(graded)} of {len(rows)} graded; grades: {out / 'grades.csv'}; feedback: {out / 'feedback'}"
    )
    return "\n".join(lines)
