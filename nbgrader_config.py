"""nbgrader's configuration for this course (read by every `nbgrader` command run here).

Sources with solutions and hidden tests: solutions/<assignment>/. Student versions:
assignments/<assignment>/ (generated: `nbgrader generate_assignment` or `coursekit build`).
Everything nbgrader writes while grading lives in build/nbgrader/. Autograding runs each
submission in a sandbox and decides points outside the student's kernel: see
coursekit/grading/pipeline.py.
"""

import os

from coursekit.grading.pipeline import configure

c = get_config()  # noqa: F821 (provided by traitlets when it runs this file)
c.CourseDirectory.course_id = "optdl"
configure(c, os.path.dirname(os.path.abspath(__file__)))
