"""The ``coursekit`` command line.

    coursekit slides-assets     # once, at set-up: fetch reveal.js & co. for offline slides
    coursekit build             # execute notebooks/ and solutions/, render lecture slides
    coursekit sandbox-setup     # once, as root: the user and Python that sandboxed kernels run
    coursekit grade ps2 SUBS    # autograde a folder or zip of submissions, sandboxed

Each subcommand is an ``_add_<name>(subparsers)`` function that declares its arguments and
sets ``run``, a function from the parsed arguments to an exit status; add one to ``COMMANDS``.

The commands are the course's tooling: they need the ``course`` extra
(``pip install 'coursekit[course]'``: papermill, nbconvert, nbgrader, JupyterLab). The library
(``import coursekit.optim`` ...) needs none of it, so this module imports those packages only
inside the commands, and says which extra to install when one is missing.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Top-level packages of the `course` extra (pyproject.toml): a command that cannot import one
# of these says which extra to install instead of showing a traceback.
COURSE_PACKAGES = frozenset(
    {
        "jupyterlab", "jupyter_server", "jupyter_server_mathjax", "jupyter_client", "nbgrader",
        "papermill", "nbconvert", "nbclient", "nbformat", "ipykernel", "IPython", "traitlets",
        "safetensors",
    }
)  # fmt: skip


def _add_build(subparsers: argparse._SubParsersAction) -> None:
    from . import build

    p = subparsers.add_parser(
        "build",
        help="execute the notebooks and render the lectures as offline slides",
        description=build.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--root", type=Path, default=Path("."), help="course root (default: .)")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: ROOT/build)")
    p.add_argument(
        "--only", metavar="GLOB", help="only notebooks whose path under ROOT matches, e.g. '*sgd*'"
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=600,
        metavar="SECONDS",
        help="limit per cell (default: 600)",
    )
    p.add_argument(
        "--jobs",
        "-j",
        type=int,
        default=1,
        metavar="N",
        help="notebooks run at a time (default: 1)",
    )
    p.add_argument(
        "--no-slides", dest="slides", action="store_false", help="execute only, render no slides"
    )
    p.add_argument(
        "--pdf",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="print each deck to slides/*.pdf with the system's Chromium (default: when "
        "Chromium is there; --pdf: required, --no-pdf: never)",
    )
    p.add_argument(
        "--no-grading",
        dest="grading",
        action="store_false",
        help="skip generating assignments/ and grading samples/ (implied by --only)",
    )
    p.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a variable of the notebooks' `parameters` cell (a Python literal or a string)",
    )
    p.set_defaults(run=_run_build)


def _run_build(args: argparse.Namespace) -> int:
    from . import build, slides

    if args.jobs < 1 or args.timeout <= 0:
        print("coursekit build: --jobs must be >= 1 and --timeout > 0", file=sys.stderr)
        return 2
    if not any((args.root / folder).is_dir() for folder in build.SOURCES):
        print(
            f"coursekit build: {args.root} has no notebooks/ or solutions/ folder", file=sys.stderr
        )
        return 2
    out = args.out if args.out is not None else args.root / "build"
    if args.pdf and not args.slides:
        print("coursekit build: --pdf prints the slides: drop --no-slides", file=sys.stderr)
        return 2
    pdf = args.slides and args.pdf is not False
    if args.pdf:  # asked for: say now, before the notebooks run, if it cannot be done
        from .slides import browser

        try:
            browser.require()
        except browser.BrowserUnavailable as exc:
            print(f"coursekit build: --pdf: {exc}", file=sys.stderr)
            return 2
    try:
        parameters = dict(_parse_param(p) for p in args.param)
        results = build.build(
            args.root,
            out,
            only=args.only,
            timeout=args.timeout,
            jobs=args.jobs,
            make_slides=args.slides,
            parameters=parameters,
        )
    except (ValueError, slides.AssetsMissingError) as exc:
        print(f"coursekit build: {exc}", file=sys.stderr)
        return 2
    if not results:
        where = f"matching {args.only!r} " if args.only else ""
        print(
            f"coursekit build: no notebooks {where}under {args.root}/notebooks or /solutions",
            file=sys.stderr,
        )
        return 1 if args.only else 0
    if pdf:
        _print_handouts(results, required=bool(args.pdf))
    report = build.summary(results, out.resolve())
    failed = any(r.error for r in results)
    print(report, file=sys.stderr if failed else sys.stdout)
    if args.grading and args.only is None and (args.root / "nbgrader_config.py").is_file():
        failed |= _grade_samples(args.root, out, args.jobs)
    return 1 if failed else 0


def _print_handouts(results: list, *, required: bool) -> None:
    """The decks as PDFs, one line per deck; without Chromium one line says why there are none.

    A deck that does not print is an error of its notebook's result (the build fails), and so
    is a missing Chromium when ``--pdf`` asked for the handouts.
    """
    from . import build
    from .slides import browser

    start = time.perf_counter()
    try:
        for result in build.print_handouts(results):
            seconds, start = time.perf_counter() - start, time.perf_counter()
            if result.error is None:
                print(f"pdf  {result.pdf.name}  {seconds:.1f} s")
            else:
                print(f"FAIL {result.deck.name}: {result.error}")
    except browser.BrowserUnavailable as exc:
        if required:
            for result in results:
                if result.deck is not None:
                    result.error = f"no PDF handout: {exc}"
        else:
            print(f"coursekit build: no PDF handouts: {exc} (--no-pdf: skip them)", file=sys.stderr)


def _grade_samples(root: Path, out: Path, jobs: int) -> bool:
    """The build's last stage: student versions, then the sample submissions' grades.

    True when something failed. A machine without the sandbox builds everything else and says
    so: it is a missing tool, like a missing GPU, not a broken course.
    """
    from . import build

    try:
        reports = build.release_and_grade_samples(root, out, jobs=jobs)
    except RuntimeError as exc:
        print(f"coursekit build: {exc}", file=sys.stderr)
        return True
    print(f"Student versions generated: {(root / 'assignments').resolve()}")
    failed = any(
        (r.error and not r.skipped) or any(row.status == "failed" for row in r.rows)
        for r in reports
    )
    text = build.grading_summary(reports)
    if text:
        print(text, file=sys.stderr if failed or any(r.skipped for r in reports) else sys.stdout)
    return failed


def _parse_param(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        raise ValueError(f"-p expects NAME=VALUE, got {text!r}")
    try:
        return name, ast.literal_eval(value)  # 0.1 -> float, [1, 2] -> list, True -> bool
    except (ValueError, SyntaxError):
        return name, value  # anything else is a string: -p optimizer=adam


def _add_slides_assets(subparsers: argparse._SubParsersAction) -> None:
    from . import slides

    p = subparsers.add_parser(
        "slides-assets",
        help="fetch the pinned reveal.js, require.js and jQuery (once, with npm) for offline slides",
        description=slides.assets.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--root", type=Path, default=Path("."), help="course root (default: .)")
    p.add_argument("--force", action="store_true", help="fetch again even if cached")
    p.set_defaults(run=_run_slides_assets)


def _run_slides_assets(args: argparse.Namespace) -> int:
    from . import slides

    cache = slides.cache_dir(args.root)
    try:
        fetched = slides.fetch_assets(cache, force=args.force)
        slides.assets.mathjax_dir()  # comes from PyPI, but say now if it is missing
    except (slides.AssetsMissingError, OSError) as exc:
        print(f"coursekit slides-assets: {exc}", file=sys.stderr)
        return 1
    print(f"{'fetched ' + ', '.join(fetched) if fetched else 'already cached'}: {cache}")
    return 0


def _add_grade(subparsers: argparse._SubParsersAction) -> None:
    from .grading import grade

    p = subparsers.add_parser(
        "grade",
        help="autograde a folder or zip of submissions in a sandbox; write grades.csv and feedback",
        description=grade.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("assignment", help="assignment id, e.g. ps2")
    p.add_argument("submissions", type=Path, help="folder of student folders, or a zip of them")
    p.add_argument("--root", type=Path, default=Path("."), help="course root (default: .)")
    p.add_argument("--out", type=Path, default=None, help="default: ROOT/build/grades/ASSIGNMENT")
    p.add_argument("--jobs", "-j", type=int, default=1, metavar="N", help="submissions at a time")
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="limit per cell (default: course config, 120)",
    )
    p.add_argument(
        "--notebook-timeout",
        type=float,
        default=None,
        metavar="SECONDS",
        help="limit per notebook (default: course config, 600)",
    )
    p.set_defaults(run=_run_grade)


def _run_grade(args: argparse.Namespace) -> int:
    from .grading import grade, sandbox
    from .grading.course import Timeouts

    out = args.out if args.out is not None else args.root / "build" / "grades" / args.assignment
    try:
        rows = grade.grade(
            args.root,
            args.assignment,
            args.submissions,
            out,
            jobs=args.jobs,
            timeouts=Timeouts(cell=args.timeout, notebook=args.notebook_timeout),
        )
    except (ValueError, sandbox.SandboxUnavailable, RuntimeError) as exc:
        print(f"coursekit grade: {exc}", file=sys.stderr)
        return 2
    print(grade.summary(rows, out.resolve()))
    return 1 if any(r.status == "failed" for r in rows) else 0


def _add_sandbox_setup(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sandbox-setup",
        help="as root: create the sandbox user and the Python its kernels run (once)",
    )
    p.add_argument("--root", type=Path, default=Path("."), help="course root (default: .)")
    p.add_argument(
        "--torch", default="torch", metavar="SPEC", help="torch requirement for the kernel venv"
    )
    p.set_defaults(run=_run_sandbox_setup)


def _run_sandbox_setup(args: argparse.Namespace) -> int:
    from .grading import sandbox

    try:
        python = sandbox.prepare_kernel_python(args.root.resolve(), args.torch)
    except (sandbox.SandboxUnavailable, OSError, subprocess.CalledProcessError) as exc:
        print(f"coursekit sandbox-setup: {exc}", file=sys.stderr)
        return 1
    print(f"sandboxed kernels run {python}")
    return 0


COMMANDS = (_add_build, _add_slides_assets, _add_grade, _add_sandbox_setup)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``coursekit`` command line; return its exit status."""
    parser = argparse.ArgumentParser(prog="coursekit", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(metavar="COMMAND", required=True)
    try:
        for add in COMMANDS:
            add(subparsers)
        args = parser.parse_args(argv)
        return args.run(args)
    except ModuleNotFoundError as error:
        package = (error.name or "").partition(".")[0]
        if package not in COURSE_PACKAGES:
            raise
        print(
            f"coursekit: the course tools are not installed ({package} is missing): "
            "pip install 'coursekit[course]'",
            file=sys.stderr,
        )
        return 2
