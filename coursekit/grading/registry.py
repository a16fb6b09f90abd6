"""Every graded task of the course, by key: ``"<assignment>.<name>"`` (``"ps2.adam"``).

An assignment's tasks live in one module, ``coursekit.grading.tasks.<assignment>``, which fills
`TASKS` when it is imported; `task` imports it on first use, so a test cell that records
``"ps5.simulate"`` needs no import of its own. A task is a `coursekit.grading.functions.FunctionTask`
(a function compared with a reference on fixed inputs) or a
`coursekit.grading.optimizers.OptimizerTask` (an optimizer compared step for step).
"""

from __future__ import annotations

import importlib
from typing import Any

TASKS: dict[str, Any] = {}  # key -> FunctionTask | OptimizerTask


def _load(assignment: str) -> None:
    try:
        importlib.import_module(f"{__package__}.tasks.{assignment}")
    except ModuleNotFoundError as error:
        if error.name != f"{__package__}.tasks.{assignment}":
            raise  # the tasks module exists but imports something missing: say so


def task(key: str) -> Any:
    """The task `key`, loading its assignment's module; KeyError if there is none."""
    if key not in TASKS:
        _load(key.partition(".")[0])
    if key not in TASKS:
        raise KeyError(f"no grading task {key!r}")
    return TASKS[key]


def tasks_of(assignment: str) -> dict[str, Any]:
    """Every task of `assignment`, by key."""
    _load(assignment)
    return {k: t for k, t in TASKS.items() if k.partition(".")[0] == assignment}
