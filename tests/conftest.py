"""What every test shares: figures drawn off-screen and closed after each test, and the course
built once per session."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")  # no display in CI; set before any test imports pyplot

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    if "matplotlib.pyplot" in sys.modules:  # tests that draw nothing import no pyplot
        sys.modules["matplotlib.pyplot"].close("all")


@dataclass
class CourseBuild:
    """`coursekit build` of this repository's notebooks (no grading), made once per session."""

    out: Path  # executed notebooks in out/notebooks, out/solutions; decks in out/slides
    results: dict  # "notebooks/01_....ipynb" -> coursekit.build.NotebookResult

    def decks(self) -> list[Path]:
        return sorted(r.deck for r in self.results.values() if r.deck is not None)


@pytest.fixture(scope="session")
def course_build(tmp_path_factory) -> CourseBuild:
    """Every notebook executed (two at a time, check cells included) and every lecture rendered
    as a deck, as `./course.sh build` does: the notebook tests and the browser tests share it."""
    from coursekit import build

    out = tmp_path_factory.mktemp("build")
    results = build.build(ROOT, out, jobs=2)
    return CourseBuild(out, {r.source.as_posix(): r for r in results})
