"""PDF handouts: every deck printed by the headless browser, one page per slide.

The decks are those of the session's `course_build`; the slides are counted from each deck's
HTML as reveal.js counts them (every ``<section>`` without a ``<section>`` inside), the pages
with pypdf. `coursekit build` itself prints them by default: a small course shows it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from pypdf import PdfReader

from coursekit import slides
from coursekit.slides.pdf import pdf_path, print_decks

ROOT = Path(__file__).resolve().parents[2]


class _Slides(HTMLParser):
    """Counts the slides of a reveal.js deck: the sections that hold no other section."""

    def __init__(self):
        super().__init__()
        self.open: list[bool] = []  # per open <section>: has a <section> inside
        self.count = 0

    def handle_starttag(self, tag, attrs):
        if tag == "section":
            if self.open:
                self.open[-1] = True
            self.open.append(False)

    def handle_endtag(self, tag):
        if tag == "section" and not self.open.pop():
            self.count += 1


def count_slides(deck: Path) -> int:
    parser = _Slides()
    parser.feed(deck.read_text(encoding="utf-8"))
    return parser.count


def test_every_deck_prints_one_page_per_slide(browser, course_build):
    decks = course_build.decks()
    handouts = list(print_decks(decks, browser=browser))
    assert [h.deck for h in handouts] == [d.resolve() for d in decks]
    for handout in handouts:
        assert handout.error is None, f"{handout.deck.name}: {handout.error}"
        assert handout.pdf == pdf_path(handout.deck) and handout.pdf.is_file()
    pages = {h.deck.name: len(PdfReader(h.pdf).pages) for h in handouts}
    assert pages == {d.name: count_slides(d) for d in decks}
    for handout in handouts:  # the page is the slide's shape, 16:9
        box = PdfReader(handout.pdf).pages[0].mediabox
        assert abs(box.width / box.height - 16 / 9) < 0.01, (handout.deck.name, box)


def test_the_build_prints_the_handouts_by_default(browser, tmp_path):
    """`coursekit build` (a separate process, its own Chromium) writes slides/<deck>.pdf."""
    cache = slides.cache_dir(ROOT)
    if slides.missing_assets(cache) and not os.environ.get("CI"):
        pytest.skip(f"slide assets not in {cache}: run `coursekit slides-assets` once")
    nb = new_notebook(
        cells=[
            new_markdown_cell(
                "# A lecture\n\n$x^2$", metadata={"slideshow": {"slide_type": "slide"}}
            ),
            new_code_cell("print(6 * 7)", metadata={"slideshow": {"slide_type": "subslide"}}),
            new_markdown_cell("The end.", metadata={"slideshow": {"slide_type": "slide"}}),
        ]
    )
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    (tmp_path / "notebooks").mkdir()
    nbformat.write(nb, tmp_path / "notebooks" / "lecture.ipynb")
    done = subprocess.run(
        [sys.executable, "-m", "coursekit", "build", "--root", str(tmp_path)],
        env={**os.environ, slides.assets.CACHE_ENV: str(cache)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    handout = tmp_path / "build" / "slides" / "lecture.pdf"
    assert len(PdfReader(handout).pages) == 3
    assert "pdf  lecture.pdf" in done.stdout and "PDF handouts" in done.stdout, done.stdout
