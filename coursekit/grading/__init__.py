"""Grading: assignments checked against coursekit's references, in a sandbox, with nbgrader.

What a test cell in an assignment uses:

* `check_optimizer(cls, "Adam", lr=...)`: a visible test, run by students: compares their
  optimizer with ``coursekit.optim`` and says where the two first differ.
* `record_optimizer("adam", cls)`: a hidden test: records the student's results as plain
  tensors; the grader compares them with the reference in its own process.
* `check_function("ps1.hessian", fn)` and `record_function("ps1.hessian", fn)`: the same for a
  function, on the inputs of a task in `coursekit.grading.functions.TASKS`.

This module stays light: it is imported inside the student's kernel, where ``coursekit.optim``
and torch's own optimizers are hidden while grading.
"""

from .functions import check_function, record_function
from .optimizers import check_optimizer, record_optimizer

__all__ = ["check_function", "check_optimizer", "record_function", "record_optimizer"]
