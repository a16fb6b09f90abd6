"""Grading: assignments checked against coursekit's references, in a sandbox, with nbgrader.

What a test cell in an assignment uses:

* `check_optimizer(cls, "Adam", lr=...)`: a visible test, run by students: compares their
  optimizer with ``coursekit.optim`` and says where the two first differ.
* `record_optimizer("ps2.adam", cls)`: a hidden test: records the student's results as plain
  tensors; the grader compares them with the reference in its own process.
* `check_function("ps1.hessian", fn)` and `record_function("ps1.hessian", fn)`: the same for a
  function, on the inputs of the task.

The tasks (``"ps2.adam"``, ``"ps1.hessian"``) are defined in one module per assignment,
``coursekit.grading.tasks.<assignment>``, and found through `coursekit.grading.registry`.
Students import nothing from there: what an assignment's notebook needs lives in the library.

The grader's side, in the order `coursekit grade` runs it: `course` (the nbgrader configuration,
read once), `collect` (submissions to notebooks and notes), `grade` (workers, rows, grades.csv),
and the nbgrader steps of `pipeline`: `assemble`, `execute` (in the `sandbox`), `score` (reads
the `records` and asks `functions` or `optimizers` for a `verdict`).

This module stays light: it is imported inside the student's kernel, where ``coursekit.optim``
and torch's own optimizers are hidden while grading.
"""

from .functions import check_function, record_function
from .optimizers import check_optimizer, record_optimizer

__all__ = ["check_function", "check_optimizer", "record_function", "record_optimizer"]
