"""Student versions: ``assignments/`` is generated from ``solutions/`` by nbgrader, never edited.

generate(root)               # every assignment, as `coursekit build` does
generate(root, "ps2", dest)  # one, into another folder (the freshness test does this)
"""

from __future__ import annotations

from pathlib import Path

from .course import Course


def assignments(root: Path) -> list[str]:
    """Assignment ids: the folders of the course's source folder that hold a notebook."""
    return Course(root).assignments()


def generate(
    root: Path | Course, assignment: str | None = None, release_dir: Path | None = None
) -> list[str]:
    """``nbgrader generate_assignment`` for one assignment or all (which also records each in
    the gradebook), into the course's release folder or `release_dir`.

    Returns the ids generated; raises RuntimeError with nbgrader's log when it fails.
    """
    course = root if isinstance(root, Course) else Course(root)
    ids = [assignment] if assignment else course.assignments()
    for name in ids:
        course.generate_release(name, release_dir)
    return ids
