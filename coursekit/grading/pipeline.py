"""The nbgrader configuration that makes `nbgrader autograde` grade through coursekit.

``nbgrader_config.py`` at the course root calls `configure(c, root)`: every nbgrader command
run there, `coursekit grade` included, then sanitises with `Reassemble`, executes with
`SandboxedExecute` and scores with `ScoreFromRecords` before nbgrader's own `SaveAutoGrades`
writes the gradebook.
"""

from __future__ import annotations

from pathlib import Path

from nbgrader.preprocessors import (
    AssignLatePenalties,
    CheckCellMetadata,
    ClearOutput,
    LimitOutput,
    SaveAutoGrades,
)

from .assemble import Reassemble
from .execute import SandboxedExecute
from .sandbox import default_kernel_python
from .score import ScoreFromRecords

SANITIZE = [ClearOutput, Reassemble, CheckCellMetadata]
AUTOGRADE = [
    SandboxedExecute,
    ScoreFromRecords,
    LimitOutput,
    SaveAutoGrades,
    AssignLatePenalties,
    CheckCellMetadata,
]


def configure(c, root: str | Path, *, cell_timeout: int = 120, notebook_timeout: int = 600) -> None:
    """Set nbgrader's config object `c` for a course whose folders live under `root`.

    `solutions/` is the source folder, `assignments/` the release folder; submissions,
    autograded notebooks, feedback and the gradebook go to ``build/nbgrader/`` (ignored by git).
    """
    root = Path(root).resolve()
    c.CourseDirectory.root = str(root)
    c.CourseDirectory.source_directory = "solutions"
    c.CourseDirectory.release_directory = "assignments"
    runtime = "build/nbgrader"
    (root / runtime).mkdir(parents=True, exist_ok=True)  # sqlite does not create folders
    c.CourseDirectory.submitted_directory = f"{runtime}/submitted"
    c.CourseDirectory.autograded_directory = f"{runtime}/autograded"
    c.CourseDirectory.feedback_directory = f"{runtime}/feedback"
    # This course hands assignments out and in through its LMS, not nbgrader's exchange; an
    # exchange folder of its own keeps formgrader from warning about a missing system one.
    (root / runtime / "exchange").mkdir(exist_ok=True)
    c.Exchange.root = str(root / runtime / "exchange")
    # A busy timeout, because `coursekit grade --jobs N` runs N nbgrader processes at once.
    c.CourseDirectory.db_url = f"sqlite:///{root / runtime / 'gradebook.db'}?timeout=60"
    c.Autograde.sanitize_preprocessors = SANITIZE
    c.Autograde.autograde_preprocessors = AUTOGRADE
    c.Execute.timeout = cell_timeout
    c.SandboxedExecute.notebook_timeout = notebook_timeout
    c.SandboxedKernelManager.kernel_python = default_kernel_python(root)
