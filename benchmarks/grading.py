"""Seconds per submission: plain `nbgrader autograde` against `coursekit grade`, same 20 notebooks.

Both graders get the same 20 honest submissions of assignment 2 (some complete, most with one or
two parts left blank), each in a temporary course of its own:

- plain nbgrader: a default course (``source/``, ``release/``, ``submitted/``), timed as
  ``nbgrader autograde ps2`` alone and with ``generate_feedback`` and ``export`` added, which is
  what an instructor needs to hand back grades and feedback;
- coursekit: ``coursekit grade ps2 SUBMISSIONS`` with ``--jobs 2`` and ``--jobs 1``: collection,
  sandboxed autograding, scoring in the grader's process, feedback and ``grades.csv`` in one
  command.

Each command runs as a subprocess of this one, in turn, for ``--rounds`` rounds; the table gives
the fastest round. The scores both graders give are compared as a sanity check (they agree on
honest submissions; they differ on hostile ones, which is the point of the sandbox).

    python benchmarks/grading.py              # 20 submissions, 1 round (about 4 minutes)
    python benchmarks/grading.py --students 4 # a quick smoke run
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import nbformat

from coursekit.grading import sandbox
from coursekit.grading.submissions import solved, without

from _common import machine, timed

ROOT = Path(__file__).resolve().parents[1]
PARTS = ["sgd", "sgd_momentum", "rprop", "adagrad", "rmsprop", "adadelta", "adam", "adamax"]


def submissions(n: int) -> dict[str, nbformat.NotebookNode]:
    """`n` honest submissions: every fourth complete, the others missing one or two parts."""
    source = nbformat.read(ROOT / "solutions/ps2/ps2.ipynb", as_version=4)
    release = nbformat.read(ROOT / "assignments/ps2/ps2.ipynb", as_version=4)
    good = solved(source, release)
    answers = {c.metadata["nbgrader"]["grade_id"] for c in good.cells if _is_answer(c)}
    out = {}
    for i in range(n):
        missing = [] if i % 4 == 0 else [PARTS[i % 8], PARTS[(3 * i) % 8]]
        blank = [a for a in answers if a.removesuffix("_solution") in missing]
        out[f"student{i:02d}"] = without(good, *blank) if blank else good
    return out


def _is_answer(cell) -> bool:
    return bool(cell.get("metadata", {}).get("nbgrader", {}).get("solution"))


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env["COURSEKIT_KERNEL_PYTHON"] = sandbox.default_kernel_python(ROOT)
    return env


def _run(command: list[str], cwd: Path) -> float:
    seconds, result = timed(
        lambda: subprocess.run(command, cwd=cwd, env=_env(), capture_output=True, text=True)
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout}\n{result.stderr}")
    return seconds


def plain_course(folder: Path, subs: dict) -> Path:
    """A default nbgrader course holding the submissions, the assignment already released."""
    folder.mkdir(parents=True)
    (folder / "nbgrader_config.py").write_text(
        "c = get_config()\n"
        f"c.CourseDirectory.root = {str(folder)!r}\n"
        f"c.CourseDirectory.db_url = 'sqlite:///{folder}/gradebook.db'\n"
    )
    shutil.copytree(ROOT / "solutions/ps2", folder / "source/ps2")
    _run([sys.executable, "-m", "nbgrader", "generate_assignment", "ps2", "--force"], folder)
    for student, nb in subs.items():
        (folder / "submitted" / student / "ps2").mkdir(parents=True)
        nbformat.write(nb, folder / "submitted" / student / "ps2" / "ps2.ipynb")
    return folder


def coursekit_course(folder: Path, subs: dict) -> tuple[Path, Path]:
    """A copy of this course's grading set-up, and a folder of submissions as an LMS gives it."""
    for part in ("solutions/ps2", "assignments/ps2"):
        shutil.copytree(ROOT / part, folder / part)
    shutil.copy(ROOT / "nbgrader_config.py", folder)
    for student, nb in subs.items():
        (folder / "incoming" / student).mkdir(parents=True)
        nbformat.write(nb, folder / "incoming" / student / "ps2.ipynb")
    return folder, folder / "incoming"


def plain_scores(course: Path) -> dict[str, float]:
    rows = csv.DictReader((course / "grades.csv").read_text().splitlines())
    return {r["student_id"]: float(r["raw_score"] or 0) for r in rows}


def coursekit_scores(out: Path) -> dict[str, float]:
    rows = csv.DictReader((out / "grades.csv").read_text().splitlines())
    return {r["student_id"]: float(r["score"]) for r in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    if args.students < 1 or args.rounds < 1:
        raise ValueError("--students and --rounds must be >= 1")
    sandbox.check_available()
    subs = submissions(args.students)
    nbgrader = [sys.executable, "-m", "nbgrader"]
    coursekit = [sys.executable, "-m", "coursekit", "grade", "ps2"]
    best: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for r in range(args.rounds):
            plain = plain_course(Path(scratch) / f"plain{r}", subs)
            ours, incoming = coursekit_course(Path(scratch) / f"ours{r}", subs)
            times = {}
            times["nbgrader autograde"] = _run([*nbgrader, "autograde", "ps2", "--force"], plain)
            times["nbgrader autograde + feedback + export"] = times["nbgrader autograde"] + sum(
                _run([*nbgrader, *step], plain)
                for step in (["generate_feedback", "ps2", "--force"], ["export"])
            )
            for jobs in (2, 1):
                out = ours / f"out{jobs}"
                times[f"coursekit grade --jobs {jobs}"] = _run(
                    [*coursekit, str(incoming), "--root", str(ours), "--out", str(out),
                     "--jobs", str(jobs)],
                    ours,
                )  # fmt: skip
            for name, seconds in times.items():
                best[name] = min(best.get(name, float("inf")), seconds)
            same = plain_scores(plain) == coursekit_scores(ours / "out2")
            same_jobs = coursekit_scores(ours / "out1") == coursekit_scores(ours / "out2")

    n = args.students
    print(
        f"machine: {machine()}, Python {platform.python_version()}; "
        f"{n} submissions of ps2, best of {args.rounds} round(s)\n"
    )
    reference = best["nbgrader autograde"]
    print("| command | total s | s per submission | vs plain autograde |")
    print("|---|---|---|---|")
    for name, seconds in best.items():
        print(f"| {name} | {seconds:.1f} | {seconds / n:.2f} | {reference / seconds:.2f}x |")
    print(f"\nsame scores as plain nbgrader: {same}; --jobs 2 same as --jobs 1: {same_jobs}")


if __name__ == "__main__":
    main()
