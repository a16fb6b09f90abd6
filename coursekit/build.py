"""Build the course: execute every notebook, render the lectures as slides, grade the samples.

    coursekit build                          # everything -> build/
    coursekit build --only '*sgd*' --jobs 2  # a subset of the notebooks only, two at a time
    coursekit build --no-pdf                 # no PDF handouts of the slides

``ROOT/notebooks/a/b.ipynb`` is executed (papermill) into ``OUT/notebooks/a/b.ipynb`` and, being
a lecture, rendered from that executed copy into ``OUT/slides/a/b.slides.html``;
``ROOT/solutions/...`` is executed only. A failing notebook is reported with its cell and the
build goes on with the rest. Each deck is then printed, one page per slide, to
``OUT/slides/a/b.pdf`` by the system's headless Chromium (`coursekit.slides.pdf`); without
Chromium the build says so in one line and goes on (``--pdf`` makes the handouts required,
``--no-pdf`` skips them). Then, in a course with an ``nbgrader_config.py``, the student
versions in ``ROOT/assignments/`` are generated from ``ROOT/solutions/`` and the sample
submissions ``ROOT/samples/<assignment>/`` are graded into ``OUT/grades/<assignment>/``
(``grades.csv`` and per-student feedback), exactly as ``coursekit grade`` does.
"""

from __future__ import annotations

import fnmatch
import multiprocessing
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import papermill
from nbclient.exceptions import CellTimeoutError
from tqdm import tqdm

from . import claims, slides

SOURCES = ("notebooks", "solutions")  # folders under ROOT that are executed
LECTURES = "notebooks"  # ... and the one whose notebooks also become slides
KERNEL = "python3"  # named explicitly so that a missing kernelspec fails loudly
SAMPLES = "samples"  # ROOT/samples/<assignment>/<student id>/<notebook>: graded by the build


@dataclass
class NotebookResult:
    """What happened to one notebook; paths are relative to ROOT (source) or absolute."""

    source: Path  # e.g. notebooks/01-gradient-descent.ipynb
    executed: Path
    seconds: float
    error: str | None = None  # which cell failed and why, or what else went wrong
    deck: Path | None = None
    pdf: Path | None = None  # the deck printed, one page per slide (print_handouts)


def find_notebooks(root: Path, only: str | None = None) -> list[Path]:
    """Notebooks under ``ROOT/notebooks`` and ``ROOT/solutions``, relative to ROOT, sorted.

    ``only`` is a glob matched against that relative path (``*`` also matches ``/``).
    """
    found = [
        path.relative_to(root)
        for folder in SOURCES
        for path in (root / folder).rglob("*.ipynb")
        if ".ipynb_checkpoints" not in path.parts
    ]
    return sorted(p for p in found if only is None or fnmatch.fnmatch(p.as_posix(), only))


def execute_notebook(
    source: Path, executed: Path, *, timeout: float, parameters: dict[str, Any] | None = None
) -> NotebookResult:
    """Run ``source`` with papermill into ``executed``, in the notebook's own folder.

    With ``parameters`` the notebook's check cells (tag ``check``) are left out: they confirm
    the numbers the prose states, which hold for the default parameters only.

    Never raises for a broken notebook: the failure is described in ``NotebookResult.error``
    (papermill still writes the executed copy, traceback included).
    """
    executed.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    error = None
    run = source
    if parameters:  # check cells confirm what the prose states of the default run: drop them
        run = executed.with_name(f".{executed.stem}.unchecked.ipynb")
        nb = nbformat.read(source, as_version=4)
        nb.cells = [c for c in nb.cells if claims.CHECK_TAG not in c.metadata.get("tags", [])]
        nbformat.write(nb, run)
    try:
        with claims.running(source):  # check cells read this notebook's prose
            papermill.execute_notebook(
                run,
                executed,
                parameters=parameters or {},
                kernel_name=KERNEL,
                language="python",  # papermill refuses notebooks without kernelspec metadata
                cwd=source.parent,  # relative paths in a notebook mean what they mean in Jupyter
                execution_timeout=timeout,  # per cell; papermill has none unless told
                progress_bar=False,  # the build shows one bar over all notebooks instead
                # The kernel's own log reaches the build's terminal: keep only its errors (not
                # ipykernel's notice that a local kernel talks over unencrypted TCP).
                extra_arguments=["--IPKernelApp.log_level=ERROR"],
            )
    except papermill.PapermillExecutionError as exc:
        error = _describe_failure(executed, f"raised {exc.ename}: {exc.evalue}".rstrip(": "))
    except CellTimeoutError:
        error = _describe_failure(executed, f"timed out after {timeout:g} s (see --timeout)")
    except Exception as exc:  # no kernel, invalid JSON, kernel died: report it, build the rest
        error = f"{type(exc).__name__}: {exc}"
    finally:
        if run != source:
            run.unlink(missing_ok=True)
    return NotebookResult(source, executed, time.perf_counter() - start, error)


def _describe_failure(executed: Path, what: str) -> str:
    """'cell 2 (In [3]) raised ValueError: boom' and the first line of that cell's source."""
    # Count cells as the author sees them: skip those papermill adds (injected parameters,
    # error banners), so the index is the one in the source notebook, not papermill's cell_index.
    added = {"injected-parameters", "papermill-error-cell-tag"}
    cells = [
        c
        for c in nbformat.read(executed, as_version=4).cells
        if not added & set(c.metadata.get("tags", []))
    ]
    # An error marks its cell; a timeout marks nothing, but its cell is the last one started.
    started = [i for i, c in enumerate(cells) if c.metadata.get("papermill", {}).get("start_time")]
    failed = [i for i, c in enumerate(cells) if c.metadata.get("papermill", {}).get("exception")]
    if not (failed or started):
        return what
    index = (failed or started)[0 if failed else -1]
    lines = cells[index].source.strip().splitlines() or [""]
    return f"cell {index} (In [{cells[index].execution_count}]) {what}\n    {lines[0]}"


def _execute_all(
    jobs: list[tuple[Path, Path]], workers: int, **options: Any
) -> Iterator[NotebookResult]:
    """Yield results as notebooks finish, ``workers`` at a time."""
    if workers == 1:
        for source, executed in jobs:
            yield execute_notebook(source, executed, **options)
        return
    # Processes, not threads: papermill's cwd= changes the working directory of the whole
    # process. "spawn" because forking a process that runs threads (tqdm, zmq) is unsafe.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        futures = [pool.submit(execute_notebook, s, e, **options) for s, e in jobs]
        for future in as_completed(futures):
            yield future.result()


def build(
    root: Path,
    out: Path,
    *,
    only: str | None = None,
    timeout: float = 600,
    jobs: int = 1,
    make_slides: bool = True,
    parameters: dict[str, Any] | None = None,
) -> list[NotebookResult]:
    """Execute the course's notebooks into ``out`` and render lectures as offline slides.

    Returns one result per notebook, sorted by source path whatever ``jobs`` is. Raises
    :class:`coursekit.slides.AssetsMissingError` before running anything if slides are wanted
    and the assets have not been fetched.
    """
    root, out = Path(root).resolve(), Path(out).resolve()
    sources = find_notebooks(root, only)
    asset_dir = out / "slides" / "assets"
    if make_slides and any(s.parts[0] == LECTURES for s in sources):
        slides.install_assets(slides.cache_dir(root), asset_dir)  # fails fast if not fetched

    work = [(root / s, out / s) for s in sources]
    results = []
    bar = tqdm(total=len(work), unit="notebook", disable=None)  # no bar when not on a terminal
    for result in _execute_all(work, jobs, timeout=timeout, parameters=parameters):
        result.source = result.source.relative_to(root)
        if make_slides and result.error is None and result.source.parts[0] == LECTURES:
            _render(result, out, asset_dir, root)
        status = "ok  " if result.error is None else "FAIL"
        bar.write(f"{status} {result.source.as_posix()}  {result.seconds:.1f} s")
        bar.update()
        results.append(result)
    bar.close()
    return sorted(results, key=lambda r: r.source)


def print_handouts(results: Iterable[NotebookResult]) -> Iterator[NotebookResult]:
    """Print every rendered deck of ``results`` to a PDF beside it; yield each result when done.

    Sets ``result.pdf``, or ``result.error`` for a deck that did not print. Raises
    :class:`coursekit.slides.browser.BrowserUnavailable`, before printing anything, where there
    is no Chromium or no Playwright.
    """
    from .slides import pdf

    with_decks = {r.deck.resolve(): r for r in results if r.deck is not None}
    for handout in pdf.print_decks(with_decks):
        result = with_decks[handout.deck]
        result.pdf, result.error = handout.pdf, handout.error
        yield result


@dataclass
class SampleGrades:
    """The bundled sample submissions of one assignment, graded (or why they were not)."""

    assignment: str
    out: Path  # grades.csv and feedback/ are in here
    rows: list = field(default_factory=list)  # coursekit.grading.grade.Row, one per student
    error: str | None = None  # grading could not run at all
    skipped: bool = False  # no sandbox on this machine: nothing can be graded safely


def release_and_grade_samples(
    root: Path, out: Path, *, jobs: int = 1, progress: bool = True
) -> list[SampleGrades]:
    """Generate ``assignments/`` from ``solutions/``, then grade ``samples/<assignment>``.

    Each student version is generated once (which also records the assignment in the gradebook)
    and the samples are graded against it. Raises RuntimeError when nbgrader cannot generate a
    student version. Grading needs the sandbox (bubblewrap); where it is missing every
    assignment is returned as skipped.
    """
    # Imported here: nbgrader costs seconds to import and a plain notebook build needs none of it.
    from .grading import grade, sandbox
    from .grading.course import Course

    root, out = Path(root).resolve(), Path(out).resolve()
    course = Course(root)
    reports = []
    for assignment in course.assignments():
        course.generate_release(assignment)
        samples = root / SAMPLES / assignment
        if not samples.is_dir():
            continue
        report = SampleGrades(assignment, out / "grades" / assignment)
        try:
            report.rows = grade.grade(
                course, assignment, samples, report.out, jobs=jobs, recorded=True,
                progress=progress,
            )  # fmt: skip
        except sandbox.SandboxUnavailable as exc:
            report.error, report.skipped = str(exc), True
        except (ValueError, RuntimeError) as exc:
            report.error = str(exc)
        reports.append(report)
    return reports


def grading_summary(reports: Iterable[SampleGrades]) -> str:
    """Per assignment: the grade table, or why there is none."""
    from .grading import grade

    parts = []
    for r in reports:
        if r.skipped:
            parts.append(f"{r.assignment}: sample submissions not graded: {r.error}")
        elif r.error:
            parts.append(f"{r.assignment}: grading the sample submissions failed: {r.error}")
        else:
            parts.append(f"{r.assignment}, sample submissions:\n{grade.summary(r.rows, r.out)}")
    return "\n\n".join(parts)


def _render(result: NotebookResult, out: Path, asset_dir: Path, root: Path) -> None:
    # notebooks/a/b.ipynb -> slides/a/b.slides.html
    deck = out / "slides" / result.source.relative_to(LECTURES).with_suffix(".slides.html")
    try:
        result.deck = slides.render_deck(
            result.executed, deck, asset_dir, source_dir=(root / result.source).parent
        )
    except Exception as exc:  # a template error in one deck should not hide the others
        result.error = f"rendering slides failed: {type(exc).__name__}: {exc}"


def summary(results: Iterable[NotebookResult], out: Path) -> str:
    """A report for the terminal: failures with their cells, or where the outputs are."""
    results = list(results)
    failed = [r for r in results if r.error]
    if failed:
        lines = [f"{len(failed)} of {len(results)} notebooks failed:"]
        for r in failed:
            lines += [f"  {r.source.as_posix()}: {r.error}", f"    (executed copy: {r.executed})"]
        return "\n".join(lines)
    seconds = sum(r.seconds for r in results)
    lines = [f"Built {len(results)} notebooks ({seconds:.1f} s of execution)."]
    lines += [
        f"  executed notebooks: {out / folder}" for folder in SOURCES if (out / folder).is_dir()
    ]
    if any(r.deck for r in results):
        lines.append(f"  slides (open offline, or zip the folder): {out / 'slides'}")
    if any(r.pdf for r in results):
        lines.append(f"  PDF handouts, one page per slide: {out / 'slides'}/*.pdf")
    return "\n".join(lines)
