"""Grading tasks of the assignments that ask for functions: one module per assignment.

``coursekit.grading.tasks.ps1`` fills `coursekit.grading.functions.TASKS` with the keys
``"ps1.<name>"`` when it is imported; `functions.task` imports it on first use.
"""
