"""Student versions: ``assignments/`` is generated from ``solutions/`` by nbgrader, never edited.

generate(root)               # every assignment, as `coursekit build` does
generate(root, "ps2", dest)  # one, into another folder (the freshness test does this)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def assignments(root: Path) -> list[str]:
    """Assignment ids: the folders of ``solutions/`` that hold a notebook."""
    source = root / "solutions"
    if not source.is_dir():
        return []
    return sorted(p.name for p in source.iterdir() if p.is_dir() and any(p.glob("*.ipynb")))


def generate(
    root: Path, assignment: str | None = None, release_dir: Path | None = None
) -> list[str]:
    """Run ``nbgrader generate_assignment`` (which also records the assignment in the gradebook).

    Returns the ids generated; raises RuntimeError with nbgrader's output when it fails.
    """
    ids = [assignment] if assignment else assignments(root)
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")  # alembic
    for name in ids:
        command = [sys.executable, "-m", "nbgrader", "generate_assignment", name, "--force"]
        if release_dir is not None:
            command.append(f"--CourseDirectory.release_directory={Path(release_dir).resolve()}")
        result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(
                f"nbgrader generate_assignment {name} failed:\n{result.stdout}{result.stderr}"
            )
    return ids
