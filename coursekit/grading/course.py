"""The course as nbgrader sees it: folders and settings, read once from ``nbgrader_config.py``.

`Course` is what `coursekit grade` and `coursekit build` hold while they work: the parsed
configuration (with this run's time limits applied), where nbgrader keeps each student's files,
and nbgrader's API on that configuration. Grading workers receive the same parsed configuration
instead of reading the file again.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from nbgrader.apps import NbGraderAPI
from nbgrader.coursedir import CourseDirectory
from traitlets.config import Config
from traitlets.config.loader import PyFileConfigLoader

CONFIG_FILE = "nbgrader_config.py"


@dataclass(frozen=True)
class Timeouts:
    """Time limits of one grading run, in seconds; None keeps the course's setting."""

    cell: float | None = None
    notebook: float | None = None

    def __post_init__(self) -> None:
        for name in ("cell", "notebook"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"Invalid {name} timeout: {value} (must be > 0 seconds)")

    def apply(self, config: Config) -> None:
        """Write the limits that are set into nbgrader's configuration."""
        if self.cell is not None:
            config.Execute.timeout = int(self.cell)
        if self.notebook is not None:
            config.SandboxedExecute.notebook_timeout = int(self.notebook)


def api(config: Config) -> NbGraderAPI:
    """nbgrader's API on a parsed course configuration, in this process."""
    # nbgrader runs `alembic` as a command to set up the gradebook: it must be on PATH.
    bin_dir = os.path.dirname(sys.executable)
    if bin_dir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    return NbGraderAPI(coursedir=CourseDirectory(config=config), config=config, log=_quiet_log())


def _quiet_log() -> logging.Logger:
    """nbgrader's log for API calls: kept in each call's result (``capture_log``), not printed.

    (Without this the API logs to the terminal, e.g. that the exchange folder, which this course
    does not use, is not writable.)
    """
    log = logging.getLogger("coursekit.nbgrader")
    log.propagate = False
    log.setLevel(logging.INFO)
    if not log.handlers:
        log.addHandler(logging.NullHandler())
    return log


def quietly(call, *args, **kwargs) -> dict:
    """Run an nbgrader API call; its warnings (SQLAlchemy's among them) join its log, not stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = call(*args, **kwargs)
    if caught:
        lines = [f"[WARNING] {w.category.__name__}: {w.message}" for w in caught]
        result["log"] = result.get("log", "") + "\n".join(lines) + "\n"
    return result


class Course:
    """A course root with its nbgrader configuration, parsed once.

    Raises ValueError when `root` has no ``nbgrader_config.py``.
    """

    def __init__(self, root: Path, timeouts: Timeouts | None = None) -> None:
        root = Path(root).resolve()
        if not (root / CONFIG_FILE).is_file():
            raise ValueError(f"root: {root} has no {CONFIG_FILE}")
        self.root = root
        self.config = PyFileConfigLoader(CONFIG_FILE, path=str(root)).load_config()
        if timeouts is not None:
            timeouts.apply(self.config)
        self.dirs = CourseDirectory(config=self.config)
        self._api: NbGraderAPI | None = None

    def path(self, folder: str, student: str, assignment: str) -> Path:
        """Where nbgrader keeps `folder` (e.g. ``dirs.submitted_directory``) of one student."""
        return Path(self.dirs.format_path(folder, student, assignment))

    def assignments(self) -> list[str]:
        """Assignment ids: the folders of the source directory that hold a notebook."""
        source = self.root / self.dirs.source_directory
        if not source.is_dir():
            return []
        return sorted(p.name for p in source.iterdir() if p.is_dir() and any(p.glob("*.ipynb")))

    def release_folder(self, assignment: str) -> Path:
        return self.path(self.dirs.release_directory, ".", assignment)

    def release_notebooks(self, assignment: str) -> list[Path]:
        return sorted(self.release_folder(assignment).glob("*.ipynb"))

    def generate_release(self, assignment: str, release_dir: Path | None = None) -> None:
        """``nbgrader generate_assignment``: the student version, and the gradebook's record of
        the assignment (its cells and points), which grading needs.

        `release_dir` writes the student version elsewhere than the course's release folder.
        Raises RuntimeError with nbgrader's log when it fails.
        """
        if self._api is None:
            self._api = api(self.config)
        coursedir = self._api.coursedir
        saved = coursedir.release_directory
        if release_dir is not None:
            coursedir.release_directory = str(Path(release_dir).resolve())
        try:
            result = quietly(self._api.generate_assignment, assignment, force=True)
        finally:
            coursedir.release_directory = saved
        if not result["success"]:
            raise RuntimeError(
                f"nbgrader generate_assignment {assignment} failed:\n"
                f"{result.get('log', '')}{result.get('error', '')}"
            )

    def score(self, assignment: str, student: str) -> tuple[float, float]:
        """(score, max_score) of a student's autograded submission, from the gradebook."""
        from nbgrader.api import Gradebook

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # SQLAlchemy's notes on nbgrader's models
            with Gradebook(self.dirs.db_url) as gradebook:
                submission = gradebook.find_submission(assignment, student)
                return float(submission.score), float(submission.max_score)
