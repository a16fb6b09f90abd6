"""The library installs and imports alone; the course tooling is the `course` extra.

`pip install coursekit` brings what the library imports (torch, numpy, scipy, matplotlib,
scikit-learn, tqdm); Jupyter, nbgrader and papermill come with ``coursekit[course]``. These
tests run the library in a fresh interpreter where every package of that extra fails to import.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from importlib.metadata import requires
from pathlib import Path

from coursekit.cli import COURSE_PACKAGES

ROOT = Path(__file__).resolve().parents[1]

# The course's own tooling: the command line, the build, slides, grading.
COURSE_MODULES = ("coursekit.cli", "coursekit.__main__", "coursekit.build", "coursekit.slides",
                  "coursekit.grading")  # fmt: skip

_WITHOUT_COURSE_PACKAGES = f"""
import sys
from importlib.abc import MetaPathFinder

BLOCKED = {sorted(COURSE_PACKAGES)!r}

class Blocker(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, Blocker())
"""


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _WITHOUT_COURSE_PACKAGES + code],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_every_library_module_imports_without_the_course_packages():
    result = _run(f"""
import importlib, json, pkgutil
import coursekit
names = []
for info in pkgutil.walk_packages(coursekit.__path__, "coursekit."):
    if info.name.startswith({COURSE_MODULES!r}):
        continue
    importlib.import_module(info.name)
    names.append(info.name)
blocked = sorted(m for m in sys.modules if m.partition(".")[0] in BLOCKED)
print(json.dumps({{"imported": names, "course_modules_loaded": blocked}}))
""")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.splitlines()[-1])
    imported = set(report["imported"])
    for module in ("optim", "optim.adam", "landscapes", "curvature", "ensembles", "distributed",
                   "distributed.simulate", "models", "data", "plotting", "training", "claims",
                   "linear_unit"):  # fmt: skip
        assert f"coursekit.{module}" in imported, module
    assert report["course_modules_loaded"] == []


def test_the_blocker_really_blocks():
    """The check above is only as good as its blocker: nbformat must fail to import under it."""
    result = _run("import nbformat")
    assert result.returncode != 0 and "ModuleNotFoundError" in result.stderr


def test_the_commands_name_the_extra_to_install_without_a_traceback():
    for args in (["build"], ["grade", "ps2", "subs.zip"]):
        result = _run(f"from coursekit.cli import main\nsys.exit(main({args!r}))")
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "pip install 'coursekit[course]'" in lines[0], result.stderr
        assert "Traceback" not in result.stderr


def test_the_library_requires_no_course_package():
    """The installed metadata: course packages appear only under the `course` extra."""
    course = {"jupyterlab", "nbgrader", "papermill", "nbconvert", "nbformat", "ipykernel",
              "jupyter-server-mathjax", "safetensors"}  # fmt: skip
    plain, extra = set(), set()
    for requirement in requires("coursekit") or []:
        name = re.match(r"[A-Za-z0-9_.-]+", requirement).group(0).lower()
        (extra if "extra ==" in requirement else plain).add(name)
    assert plain and not plain & course, plain & course
    assert course <= extra
