"""Numbers a slide states, checked against the values the notebook computed.

A lecture's prose is plain markdown: "normalising cuts kappa from 128 to 2.7". The number is
true only as long as the computation says so. Right after the computation, a *check cell*
(a code cell tagged ``check``, executed by papermill in CI, removed from the slides) says

    stated(kappa_raw, "128")
    stated(kappa_std, "2.7")

`stated` passes when the value, written with the precision of the text ("128": no decimals,
"2.7": one, "7.41e+03": three significant digits, "1,443,000": thousands separators), reads as
the text does. When it knows which notebook is running, it also checks that the text still
occurs in that notebook's markdown, so that a number edited in the prose and not in the check
fails too. The notebook is found from ``COURSEKIT_NOTEBOOK`` (set by ``coursekit build`` and the
test suite for every notebook they execute) or ``JPY_SESSION_NAME`` (set by Jupyter for a
notebook open in JupyterLab); with neither, only the value is checked.

Qualitative claims ("the spread shrinks with width") are plain ``assert`` statements in the
same check cells. Check cells describe the default run: ``coursekit build -p NAME=VALUE``
leaves them out. CONTRIBUTING.md describes the convention.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path

__all__ = ["ClaimError", "notebook_markdown", "reads_as", "running", "stated"]

CHECK_TAG = "check"  # the cell tag of check cells: removed from slides, run everywhere else
NOTEBOOK_VARIABLES = ("COURSEKIT_NOTEBOOK", "JPY_SESSION_NAME")
# A number as prose writes it: optional sign (ASCII or Unicode minus), digits with optional
# thousands separators, optional decimals, optional exponent.
_NUMBER = re.compile(r"^[-\u2212+]?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?([eE][-+\u2212]?\d+)?$")


class ClaimError(AssertionError):
    """A stated number that the computation, or the prose, no longer supports."""


def _normalise(text: str) -> str:
    return text.strip().replace("\u2212", "-").replace(",", "")


def reads_as(value: float, text: str) -> bool:
    """Whether ``value`` written with the precision of ``text`` is ``text``.

    ``reads_as(127.78, "128")`` and ``reads_as(0.0168, "1.68e-02")`` are true;
    ``reads_as(127.78, "127.7")`` is false. Rounding is Python's formatting (half to even on
    the binary value), the same as an f-string that printed the number would use.
    """
    if not _NUMBER.match(text.strip()):
        raise ValueError(f"Invalid text: {text!r} is not a plain number")
    plain = _normalise(text)
    if not math.isfinite(value):
        return False
    mantissa, _, exponent = plain.lower().partition("e")
    decimals = len(mantissa.partition(".")[2])
    if exponent:
        return float(f"{value:.{decimals}e}") == float(plain)
    written = f"{value:.{decimals}f}"
    if float(written) == 0.0:  # "-0.0" reads as "0.0"
        written = written.lstrip("-")
    return written == plain.lstrip("+")


@contextlib.contextmanager
def running(notebook: str | os.PathLike) -> Iterator[None]:
    """Tell kernels started inside this block that ``notebook`` is the one they run.

    Kernels inherit the environment of the process that starts them; papermill starts one per
    notebook, so a runner (``coursekit build``, the tests) wraps each execution in this.
    """
    variable = NOTEBOOK_VARIABLES[0]
    before = os.environ.get(variable)
    os.environ[variable] = str(Path(notebook).resolve())
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(variable, None)
        else:
            os.environ[variable] = before


def _notebook_path() -> Path | None:
    for variable in NOTEBOOK_VARIABLES:
        name = os.environ.get(variable)
        if name and Path(name).is_file():
            return Path(name)
    return None


@functools.lru_cache(maxsize=8)
def _markdown(path: str, mtime_ns: int) -> str:
    cells = json.loads(Path(path).read_text(encoding="utf-8")).get("cells", [])
    return "\n".join(
        "".join(c["source"]) if isinstance(c.get("source"), list) else c.get("source", "")
        for c in cells
        if c.get("cell_type") == "markdown"
    )


def notebook_markdown() -> str | None:
    """The markdown of the running notebook, or None when no one said which it is."""
    path = _notebook_path()
    if path is None:
        return None
    return _markdown(str(path), path.stat().st_mtime_ns)


def _in_prose(text: str, markdown: str) -> bool:
    # The text as a whole number: not the "28" of "128", nor the "2.7" of "2.75".
    sign, digits = re.match(r"([-\u2212+]?)(.*)", text.strip()).groups()
    escaped = ("[-\u2212]" if sign in ("-", "\u2212") else re.escape(sign)) + re.escape(digits)
    return re.search(rf"(?<![\d.,]){escaped}(?![\d]|[.,]\d)", markdown) is not None


def stated(value: float, text: str, *, what: str | None = None) -> None:
    """Assert that a number the slides state as ``text`` is what was computed (``value``).

    Args:
        value: the computed number, in the units the text uses (a share as a percentage if the
            prose says "30.5 %").
        text: the number exactly as the prose writes it ("128", "2.7", "7.41e+03", "1,443,000").
        what: a few words for the error message (default: the text).

    Raises:
        ClaimError: the value does not read as the text, or the running notebook's markdown no
            longer contains the text.
    """
    value = float(value)
    label = what or repr(text)
    if not reads_as(value, text):
        raise ClaimError(
            f"the slides state {label} = {text}, but the computation gives {value!r}: "
            "correct the prose (and this check), or the computation. (The prose describes the "
            "default parameters: `coursekit build -p NAME=VALUE` runs other values without the "
            "check cells.)"
        )
    markdown = notebook_markdown()
    if markdown is not None and not _in_prose(text, markdown):
        raise ClaimError(
            f"this check confirms {text} ({label}, computed {value:.6g}), but the notebook's "
            "markdown no longer states it: the prose was edited without its check"
        )
