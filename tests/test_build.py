"""`coursekit build`: executed notebooks, offline slide decks, failures that name the cell.

The deck tests need the slide assets (`coursekit slides-assets`, run once by the set-up script);
without them they are skipped with that instruction. Everything else runs without a network.
"""

from __future__ import annotations

import base64
import io
import os
import re
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from coursekit import slides
from coursekit.cli import main

REPO = Path(__file__).resolve().parents[1]
ASSET_CACHE = slides.cache_dir(REPO)  # honours $COURSEKIT_SLIDE_ASSETS
# Outside CI a developer without the assets gets a skip; in CI (where `course.sh test` fetched
# them) missing assets must fail, not skip.
ASSETS_MISSING = bool(slides.missing_assets(ASSET_CACHE)) and not os.environ.get("CI")
needs_assets = pytest.mark.skipif(
    ASSETS_MISSING,
    reason=f"slide assets not in {ASSET_CACHE}: run `coursekit slides-assets` once",
)
# A 1x1 PNG, for a markdown image that must end up embedded in the deck.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def slide(cell, slide_type="slide"):
    cell.metadata["slideshow"] = {"slide_type": slide_type}
    return cell


def write(path: Path, *cells) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nb = new_notebook(cells=list(cells))
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)


def hidden_code():
    cell = new_code_cell("secret_source_marker = 1\nprint('visible' + '_output_marker')")
    cell.metadata["tags"] = ["remove-input"]
    return cell


def check_cell(source: str):
    cell = new_code_cell("from coursekit.claims import stated\n" + source)
    cell.metadata["tags"] = ["check"]
    return cell


def make_course(root: Path) -> Path:
    """A lecture (slides, math, parameters, a figure, notes, an image) and one solution."""
    params = new_code_cell("n_points = 5")
    params.metadata["tags"] = ["parameters"]
    write(
        root / "notebooks" / "week1" / "lecture.ipynb",
        slide(
            new_markdown_cell("# Gradient descent\n\nWe minimise $x^2$.\n\n![dot](figures/dot.png)")
        ),
        slide(params, "skip"),
        slide(
            new_code_cell(
                "%matplotlib inline\nimport matplotlib.pyplot as plt\n"
                "plt.plot(range(n_points))\nplt.show()\nprint('points:', n_points)"
            ),
            "subslide",
        ),
        slide(hidden_code(), "subslide"),
        slide(new_markdown_cell("Say why the step size matters."), "notes"),
        slide(new_markdown_cell("$$\\nabla f(x) = 2x$$"), "fragment"),
        slide(new_markdown_cell("The figure shows 5 points."), "subslide"),
        slide(check_cell('stated(n_points, "5")  # check_cell_marker'), "skip"),
    )
    (root / "notebooks" / "week1" / "figures").mkdir()
    (root / "notebooks" / "week1" / "figures" / "dot.png").write_bytes(PNG)
    write(root / "solutions" / "hw1.ipynb", new_code_cell("answer = 6 * 7\nprint(answer)"))
    return root


def outputs(path: Path) -> list[dict]:
    return [
        o
        for c in nbformat.read(path, as_version=4).cells
        if c.cell_type == "code"
        for o in c.outputs
    ]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The tiny course built once, with slides, two notebooks at a time."""
    if ASSETS_MISSING:
        pytest.skip(f"slide assets not in {ASSET_CACHE}: run `coursekit slides-assets` once")
    root = make_course(tmp_path_factory.mktemp("course"))
    output = io.StringIO()
    with pytest.MonkeyPatch.context() as patch, redirect_stdout(output), redirect_stderr(output):
        patch.setenv(slides.assets.CACHE_ENV, str(ASSET_CACHE))  # the course root has no cache
        # A machine without Chromium: the PDF handouts are left out with a note, and the build
        # passes (tests/browser prints them where Chromium is).
        patch.setenv("COURSEKIT_CHROMIUM", str(root / "no-chromium"))
        status = main(["build", "--root", str(root), "--out", str(root / "out"), "--jobs", "2"])
    return root, root / "out", status, output.getvalue()


class Links(HTMLParser):
    """Every src=/href= of the page, and the text of its inline scripts."""

    def __init__(self):
        super().__init__()
        self.urls: list[tuple[str, str]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.urls += [(tag, v) for k, v in attrs if k in ("src", "href") and v is not None]
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts.append(data)


def local_file(base: Path, url: str) -> Path:
    """The file a relative URL names; fails on anything that would leave the machine."""
    assert not re.match(r"^[a-z][a-z0-9+.-]*:|^//", url, re.I), f"not a relative path: {url}"
    return (base / url.split("?")[0].split("#")[0]).resolve()


@needs_assets
def test_build_succeeds_and_says_where_outputs_are(built):
    root, out, status, stdout = built
    assert status == 0, stdout
    assert str(out / "slides") in stdout and str(out / "notebooks") in stdout
    assert "notebooks/week1/lecture.ipynb" in stdout  # a progress line per notebook


@needs_assets
def test_without_chromium_the_build_notes_the_missing_handouts_in_one_line(built):
    root, out, status, output = built
    assert status == 0, output
    notes = [line for line in output.splitlines() if "no PDF handouts" in line]
    assert len(notes) == 1 and "COURSEKIT_CHROMIUM" in notes[0], output
    assert not list((out / "slides").rglob("*.pdf"))


def test_pdf_asked_for_without_chromium_fails_before_running_anything(tmp_path, monkeypatch):
    make_course(tmp_path)
    monkeypatch.setenv("COURSEKIT_CHROMIUM", str(tmp_path / "no-chromium"))
    err = io.StringIO()
    with redirect_stderr(err):
        assert main(["build", "--root", str(tmp_path), "--pdf"]) == 2
    assert "--pdf" in err.getvalue() and "COURSEKIT_CHROMIUM" in err.getvalue(), err.getvalue()
    assert not (tmp_path / "build" / "notebooks").exists(), "nothing runs before the check"


@needs_assets
def test_executed_copies_have_outputs(built):
    root, out, *_ = built
    lecture = outputs(out / "notebooks" / "week1" / "lecture.ipynb")
    assert any("image/png" in o.get("data", {}) for o in lecture), "the figure is missing"
    assert any("points: 5" in o.get("text", "") for o in lecture)
    assert any("42" in o.get("text", "") for o in outputs(out / "solutions" / "hw1.ipynb"))
    assert not (out / "slides" / "hw1.slides.html").exists(), "solutions are not lectures"


@needs_assets
def test_deck_has_slides_math_and_speaker_notes(built):
    deck = (built[1] / "slides" / "week1" / "lecture.slides.html").read_text()
    assert deck.count("<section") >= 2
    assert "$x^2$" in deck and 'class="fragment"' in deck
    assert '<aside class="notes">' in deck and "plugin/notes/notes.js" in deck
    assert "data:image/png;base64" in deck  # the figure and the markdown image are embedded


@needs_assets
def test_remove_input_tag_hides_the_code_but_keeps_its_output(built):
    deck = (built[1] / "slides" / "week1" / "lecture.slides.html").read_text()
    assert "visible_output_marker" in deck
    assert "secret_source_marker" not in deck


@needs_assets
def test_check_cells_run_against_the_prose_and_never_reach_the_slides(built):
    """The build passed, so the check cell's stated() found "5" computed and in the prose."""
    root, out, status, stdout = built
    assert status == 0, stdout
    executed = nbformat.read(out / "notebooks" / "week1" / "lecture.ipynb", as_version=4)
    ran = [c for c in executed.cells if "check" in c.metadata.get("tags", [])]
    assert ran and ran[0].execution_count is not None  # executed like any other cell
    deck = (out / "slides" / "week1" / "lecture.slides.html").read_text()
    assert "check_cell_marker" not in deck and "The figure shows 5 points" in deck


@needs_assets
def test_deck_loads_nothing_from_the_network(built):
    """Does every src/href, require() path and MathJax config resolve to a file next to the deck?"""
    deck_path = built[1] / "slides" / "week1" / "lecture.slides.html"
    deck = deck_path.read_text()
    page = Links()
    page.feed(deck)
    urls = [u for _, u in page.urls if not u.startswith(("data:", "#"))]
    script = "\n".join(page.scripts)
    required = re.findall(r"""["']([^"'\s]+\.js)["']""", script.split("require(", 1)[1])
    # reveal.js and its notes plugin (reveal.js once more, to give the console window.Reveal)
    assert len(set(required)) == 2, required
    assert {t for t, _ in page.urls} >= {"script", "link"}
    for url in urls + required:
        assert local_file(deck_path.parent, url).is_file(), url

    mathjax = next(u for u in urls if "MathJax.js" in u)
    for config in mathjax.split("config=")[1].split(","):  # the configs MathJax will load
        assert (local_file(deck_path.parent, mathjax).parent / "config" / f"{config}.js").is_file()
    # No quoted or url() address anywhere (widget renderer, CDN defaults), no ES-module import
    # (mermaid); the only http(s) text left in a deck is in comments.
    assert not re.search(r"""(["']|url\()\s*(https?:)?//|import\s*\(?\s*["']""", deck)


@needs_assets
def test_deck_stylesheets_import_nothing_remote(built):
    """Do the deck's CSS files (the reveal theme imports web fonts) stay local, transitively?"""
    slides_dir = built[1] / "slides" / "week1"
    page = Links()
    page.feed((slides_dir / "lecture.slides.html").read_text())
    todo = [local_file(slides_dir, u) for t, u in page.urls if t == "link" and u.endswith(".css")]
    seen = set()
    while todo:
        css = todo.pop()
        seen.add(css)
        for url in re.findall(r"""url\(\s*["']?([^"')]+)""", css.read_text()):
            if not url.startswith("data:"):
                target = local_file(css.parent, url)
                assert target.is_file(), f"{css.name} refers to missing {url}"
                if target.suffix == ".css" and target not in seen:
                    todo.append(target)
    assert any(p.parent.name == "theme" for p in seen) and any("fonts" in p.parts for p in seen)


def test_failing_notebook_names_the_cell_and_the_rest_still_builds(tmp_path):
    """Run as `python -m coursekit`: exit 1, naming notebook, cell index, source and error."""
    write(tmp_path / "notebooks" / "good.ipynb", new_code_cell("print('fine')"))
    write(
        tmp_path / "notebooks" / "bad.ipynb",
        new_markdown_cell("# Broken"),
        new_code_cell("x = 1"),
        new_code_cell("raise ValueError('step size too large')\nprint('never')"),
        new_code_cell("print('after')"),
    )
    done = subprocess.run(
        [sys.executable, "-m", "coursekit", "build", "--root", str(tmp_path), "--no-slides"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    report = done.stderr.split("notebooks failed:")[1]
    assert "notebooks/bad.ipynb: cell 2" in report
    assert "ValueError: step size too large" in report
    assert "raise ValueError('step size too large')" in report
    assert "good.ipynb" not in report
    assert any(
        "fine" in o.get("text", "")
        for o in outputs(tmp_path / "build" / "notebooks" / "good.ipynb")
    )


def test_parameters_override_and_only(tmp_path, capsys):
    """Does -p replace the `parameters` cell, and --only leave other notebooks alone? The check
    cell, which confirms the prose's "5 points" of the default run, is left out."""
    make_course(tmp_path)
    status = main(
        [
            "build",
            "--root",
            str(tmp_path),
            "--no-slides",
            "--only",
            "notebooks/*",
            "-p",
            "n_points=7",
        ]
    )
    assert status == 0, capsys.readouterr()
    executed = tmp_path / "build" / "notebooks" / "week1" / "lecture.ipynb"
    assert any("points: 7" in o.get("text", "") for o in outputs(executed))
    cells = nbformat.read(executed, as_version=4).cells
    assert not [c for c in cells if "check" in c.metadata.get("tags", [])]
    assert [p.name for p in executed.parent.iterdir()] == ["lecture.ipynb"]  # no copy left
    assert not (tmp_path / "build" / "solutions").exists()


def test_missing_assets_is_an_instruction_not_a_traceback(tmp_path, monkeypatch, capsys):
    make_course(tmp_path)
    monkeypatch.setenv(slides.assets.CACHE_ENV, str(tmp_path / "empty"))
    assert main(["build", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "coursekit slides-assets" in err and "--no-slides" in err and "Traceback" not in err
    assert not (tmp_path / "build" / "notebooks").exists(), "nothing runs before the check"
