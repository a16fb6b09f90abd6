"""PDF handouts: each deck printed by the headless browser, one page per slide.

reveal.js lays a deck out for printing when its address carries ``?print-pdf``: every slide
becomes one page of the slide's size plus reveal's margin (1280 x 720 px slides give
1331 x 748 px pages). Two of reveal's settings, passed in the same query, keep it at exactly
one page per slide: ``pdfSeparateFragments=false`` (a slide with fragments is one page, not one
per step) and ``pdfMaxPagesPerSlide=1`` (a slide too tall is cut, not continued on a second
page; the browser tests keep every slide inside its frame). Chromium then prints the page
(``page.pdf``) at the size the deck's ``@page`` rule asks for, backgrounds included.

The deck is printed offline, as it is shown: every request that is not ``file://`` is refused.

    for handout in print_decks([Path("build/slides/01_gradient_descent_linear_unit.slides.html")]):
        print(handout.pdf)  # build/slides/01_gradient_descent_linear_unit.pdf
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from . import browser as chromium
from .render import HEIGHT, WIDTH

PRINT_QUERY = "?print-pdf&pdfSeparateFragments=false&pdfMaxPagesPerSlide=1"
DECK_SUFFIX = ".slides.html"

# Ready to print: reveal has moved every slide onto its page, and MathJax has typeset every
# formula (a hook on MathJax's "End" signal runs at once when the signal is already past).
_READY = """() => new Promise(done => {
    const pages = () => document.querySelector('.reveal .slides .pdf-page') !== null;
    const typeset = () => new Promise(r => MathJax.Hub.Register.StartupHook('End', r))
        .then(() => new Promise(r => MathJax.Hub.Queue(r)));
    const wait = () => pages() ? typeset().then(done) : requestAnimationFrame(wait);
    wait();
})"""


@dataclass
class Handout:
    """One deck's PDF, or why there is none."""

    deck: Path
    pdf: Path | None
    seconds: float
    error: str | None = None


def pdf_path(deck: Path) -> Path:
    """Where the handout of ``deck`` goes: ``a/b.slides.html`` -> ``a/b.pdf``."""
    return deck.with_name(deck.name.removesuffix(DECK_SUFFIX) + ".pdf")


def print_decks(decks: Iterable[Path], *, browser=None, timeout: float = 120) -> Iterator[Handout]:
    """Print each deck to `pdf_path` (overwritten), yielding a `Handout` as each one is done.

    ``browser`` is a Playwright ``Browser`` to print with (a test's); without one, the system's
    Chromium is started for all the decks (`coursekit.slides.browser.launch`). ``timeout``
    (seconds) bounds each deck's loading and layout; a deck that does not load is yielded with
    its ``error`` and the others are still printed. Raises
    `coursekit.slides.browser.BrowserUnavailable`, before printing anything, when there is no
    Playwright or no Chromium that starts.
    """
    if timeout <= 0:
        raise ValueError(f"timeout must be > 0, got {timeout}")
    decks = [Path(d).resolve() for d in decks]
    if browser is not None:
        yield from _print_with(browser, decks, timeout)
        return
    chromium.require()
    from playwright.sync_api import Error, sync_playwright

    with sync_playwright() as playwright:
        try:
            started = chromium.launch(playwright)
        except Error as exc:  # a Chromium that is there but cannot run (libraries, sandbox)
            first_line = str(exc).strip().splitlines()[0]
            raise chromium.BrowserUnavailable(f"Chromium did not start: {first_line}") from None
        try:
            yield from _print_with(started, decks, timeout)
        finally:
            started.close()


def _print_with(browser, decks: list[Path], timeout: float) -> Iterator[Handout]:
    from playwright.sync_api import Error

    page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
    page.set_default_timeout(timeout * 1000)
    page.route("**/*", _offline)
    try:
        for deck in decks:
            start = time.perf_counter()
            out = pdf_path(deck)
            try:
                page.goto(deck.as_uri() + PRINT_QUERY)
                page.evaluate(_READY)
                page.pdf(path=str(out), prefer_css_page_size=True, print_background=True)
            except Error as exc:  # includes Playwright's TimeoutError
                message = str(exc).strip().splitlines()[0]
                yield Handout(
                    deck, None, time.perf_counter() - start, f"printing failed: {message}"
                )
            else:
                yield Handout(deck, out, time.perf_counter() - start)
    finally:
        page.close()


def _offline(route) -> None:
    if route.request.url.startswith("file:"):
        route.continue_()
    else:  # a deck that reaches for the network prints without it, as it would be shown
        route.abort()
