"""nbgrader's Execute step, in a sandbox, with a time limit per notebook and bounded output.

nbgrader's `Execute` runs a submission in an ordinary kernel, with one timeout per cell and no
limit on the whole notebook or on how much a cell prints, and a kernel that dies aborts the
grading of that submission. `SandboxedExecute` keeps nbgrader's settings and:

* starts the kernel with `SandboxedKernelManager` (see `coursekit.grading.sandbox`), hiding the
  modules the notebook's hidden tests forbid (`score.hidden_modules`);
* gives every cell at most `timeout` seconds and the whole notebook `notebook_timeout`;
* keeps at most `max_output_bytes` of output per cell;
* when the kernel dies (killed at the memory limit, or by the submission itself) stops there and
  keeps the outputs so far: the submission is graded for what it recorded, with a note.
"""

from __future__ import annotations

import json
import os
import time

from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError
from nbformat import NotebookNode
from nbgrader.preprocessors import Execute
from traitlets import Integer

from .assemble import problems
from .sandbox import SandboxedKernelManager
from .score import hidden_modules


class SandboxedExecute(Execute):
    notebook_timeout = Integer(600, help="seconds for the whole notebook").tag(config=True)
    max_output_bytes = Integer(2**24, help="bytes of output kept per cell").tag(config=True)

    def __init__(self, **kwargs):
        kwargs["kernel_manager_class"] = SandboxedKernelManager
        kwargs.setdefault("shutdown_kernel", "immediate")  # its sandbox is torn down anyway
        super().__init__(**kwargs)

    def create_kernel_manager(self) -> SandboxedKernelManager:
        folder = os.path.abspath(self.resources.get("metadata", {}).get("path") or ".")
        files = [
            os.path.join(folder, name)
            for name in sorted(os.listdir(folder))
            if not name.endswith(".ipynb") and not name.startswith(".")
            and os.path.isfile(os.path.join(folder, name))
            and not os.path.islink(os.path.join(folder, name))
        ]  # fmt: skip
        self.km = SandboxedKernelManager(
            kernel_name="python3",
            config=self.config,
            blocked=hidden_modules(self.nb),
            files=files,
        )
        # nbclient drops self.km when the kernel dies, before preprocess's except clause runs;
        # the sandbox (its cgroups, its OOM count) must outlive that.
        self._sandbox = self.km
        return self.km

    def preprocess(self, nb: NotebookNode, resources: dict, km=None) -> tuple[NotebookNode, dict]:
        # The body of nbconvert's ExecutePreprocessor.preprocess, with the limits added.
        NotebookClient.__init__(self, nb, km)  # per-run state, as nbconvert does
        self.nb, self.resources = nb, resources
        self.reset_execution_trackers()
        self._check_assign_resources(resources)
        noted = problems(nb)
        deadline = time.monotonic() + self.notebook_timeout
        self.timeout_func = lambda cell: max(1, min(self.timeout, deadline - time.monotonic()))
        self._timed_out, self._output_bytes, self._truncated = set(), {}, set()
        index = -1
        self._sandbox = None
        try:
            with self.setup_kernel():
                info = self.wait_for_reply(self.kc.kernel_info())
                nb.metadata["language_info"] = info["content"]["language_info"]
                for index, cell in enumerate(nb.cells):
                    if cell.cell_type == "code" and time.monotonic() >= deadline:
                        noted.append(
                            f"The notebook ran out of its {self.notebook_timeout} s: "
                            f"cells from number {index + 1} on were not run."
                        )
                        break
                    self._index = index
                    self.preprocess_cell(cell, resources, index)
        except DeadKernelError:
            noted.append(self._death_note(index))
        except Exception as error:  # the kernel did not start or stopped answering
            # Only the first line: nbclient's messages go on with a preview of the cell, which
            # may be a test cell and must not reach the student.
            where = f"in cell number {index + 1}" if index >= 0 else "while starting"
            first_line = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
            noted.append(
                f"The notebook could not be run to the end: the kernel stopped answering {where} "
                f"({type(error).__name__}: {first_line}). Later cells were not run."
            )
        finally:
            if self._sandbox is not None:
                self._sandbox.cleanup_sandbox()
        for index in sorted(self._timed_out):
            noted.append(
                f"Cell number {index + 1} ran out of its {self.timeout} s and was interrupted."
            )
        for index in sorted(self._truncated):
            noted.append(
                f"Cell number {index + 1} printed more than {self.max_output_bytes} bytes; the rest was dropped."
            )
        return nb, resources

    def _death_note(self, index: int) -> str:
        where = f"in cell number {index + 1}" if index >= 0 else "while starting"
        if self._sandbox is not None:
            self._sandbox.cleanup_sandbox()
            if self._sandbox.oom_killed:
                limit = self._sandbox.memory_limit / 2**30
                return f"The kernel was stopped {where}: it used more than its {limit:g} GiB of memory. Later cells were not run."
        return f"The kernel died {where} (it exited or was killed). Later cells were not run."

    async def _async_handle_timeout(self, timeout, cell=None):
        self._timed_out.add(self._index)
        return await super()._async_handle_timeout(timeout, cell)

    def output(self, outs, msg, display_id, cell_index):
        size = len(json.dumps(msg.get("content", {})))
        total = self._output_bytes.get(cell_index, 0) + size
        self._output_bytes[cell_index] = total
        if total > self.max_output_bytes:
            self._truncated.add(cell_index)
            return None
        return super().output(outs, msg, display_id, cell_index)
