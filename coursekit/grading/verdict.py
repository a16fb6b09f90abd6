"""What a checker concludes about one recorded task: the same shape for every kind of task."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Verdict:
    """How many checks of a test cell passed, and what the student should read about it."""

    passed: int
    total: int
    lines: list[str]
