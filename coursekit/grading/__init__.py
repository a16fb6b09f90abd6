"""Grading: assignments checked against coursekit's references, in a sandbox, with nbgrader.

What a test cell in an assignment uses:

* `check_optimizer(cls, "Adam", lr=...)`: a visible test, run by students: compares their
  optimizer with ``coursekit.optim`` and says where the two first differ.
* `record_optimizer("adam", cls)`: a hidden test: records the student's results as plain
  tensors; the grader compares them with the reference in its own process.

This module stays light: it is imported inside the student's kernel, where ``coursekit.optim``
and torch's own optimizers are hidden while grading.
"""

from .optimizers import check_optimizer, record_optimizer

__all__ = ["check_optimizer", "record_optimizer"]
