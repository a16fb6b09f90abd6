"""One module per assignment: what each of its graded answers is compared with.

``coursekit.grading.tasks.ps1`` registers ``"ps1.hessian"`` and the assignment's other tasks in
`coursekit.grading.registry.TASKS` when it is imported; `registry.task` imports it on first
use. A tasks module is grader code: it runs in the student's kernel (to build the inputs) and in
the grader (to compute the reference), and nothing in an assignment's notebook imports from it.
CONTRIBUTING.md, "Adding an assignment", says what a new one holds.
"""
