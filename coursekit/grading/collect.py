"""Collecting submissions: a folder or zip from a learning-management system in, one notebook
per expected name and student out, with notes on everything that was not as asked.

SUBMISSIONS holds one folder per student id with that student's notebook(s), or is a zip of
such folders (as learning-management systems export them, optionally inside one top folder).
Each expected notebook is found by its exact name, else as a renamed copy
(``ps2-Copy1.ipynb``), and checked to be a notebook; an unreadable or missing one is graded as
the blank release, with a note. Nothing from a submission is trusted: zip members that are links
or climb out of their folder, oversized files and invalid student ids are refused with a note.
"""

from __future__ import annotations

import re
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import nbformat

STUDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}$")
MAX_NOTEBOOK_BYTES = 20 * 2**20


@dataclass
class Submission:
    """One student's files for an assignment, and what was wrong with them.

    `notes` are for the student and the gradebook alike (a renamed copy graded, a file that is no
    notebook); they travel with the submission to the grades, never through a file.
    """

    student_id: str
    files: dict[str, bytes] = field(default_factory=dict)  # path inside their folder -> bytes
    notes: list[str] = field(default_factory=list)
    notebooks: dict[str, bytes | None] = field(default_factory=dict)  # graded name -> its bytes

    @property
    def valid_id(self) -> bool:
        """Whether the folder's name can be a student id (it becomes a path and a CSV cell)."""
        return bool(STUDENT_ID.match(self.student_id))


def _read_folder(folder: Path, skipped: list[str]) -> list[Submission]:
    found = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir() or entry.is_symlink():
            skipped.append(f"{entry.name!r} is in no student's folder: skipped")
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


def _read_zip(path: Path, skipped: list[str]) -> list[Submission]:
    with zipfile.ZipFile(path) as archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        parts = [PurePosixPath(m.filename).parts for m in members]
        # One wrapping folder around all the student folders is dropped.
        if parts and all(len(p) > 2 for p in parts) and len({p[0] for p in parts}) == 1:
            parts = [p[1:] for p in parts]
        students: dict[str, Submission] = {}
        for member, part in zip(members, parts):
            name = member.filename
            if "__MACOSX" in part or (part and part[0].startswith(".") and part[0] != ".."):
                continue  # the archiver's own files (resource forks, .DS_Store)
            if not part or part[0] in ("/", ".."):
                where = "an absolute path" if part[:1] == ("/",) else "outside the zip's folders"
                skipped.append(f"{name!r} is {where}: skipped")
                continue
            if len(part) < 2:
                skipped.append(f"{name!r} is in no student's folder: skipped")
                continue
            submission = students.setdefault(part[0], Submission(part[0]))
            relative = "/".join(part[1:])
            if not relative.endswith(".ipynb") or ".ipynb_checkpoints" in relative:
                continue
            if ".." in part:
                submission.notes.append(f"{relative} leaves the submission folder and was ignored.")
                continue
            if stat.S_ISLNK(member.external_attr >> 16):
                submission.notes.append(f"{relative} is a link, not a file, and was ignored.")
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


@dataclass
class Collection:
    """What a folder or zip of submissions held: one `Submission` per student folder, and notes
    for the instructor on entries that belong to no student (a file at the top, an absolute
    path, a path that climbs out of the zip)."""

    submissions: list[Submission]
    skipped: list[str] = field(default_factory=list)


def read(submissions: Path) -> Collection:
    """Every student's files from a folder of student folders or a zip of them."""
    skipped: list[str] = []
    if submissions.is_dir():
        found = _read_folder(submissions, skipped)
    elif zipfile.is_zipfile(submissions):
        found = _read_zip(submissions, skipped)
    else:
        raise ValueError(f"submissions: {submissions} is neither a folder nor a zip file")
    return Collection(found, skipped)


def collect(submissions: Path, expected: list[str]) -> Collection:
    """One submission per student folder, sorted, each with the notebook graded as each of
    `expected` chosen (`choose_notebooks`) and the notes on what was wrong."""
    collection = read(submissions)
    for submission in collection.submissions:
        if submission.valid_id:
            submission.notebooks = choose_notebooks(submission, expected)
    return collection


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
