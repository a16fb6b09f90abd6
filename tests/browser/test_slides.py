"""Every lecture deck in a real browser, offline, as the audience sees it.

Each deck of the session's `course_build` (tests/conftest.py: every lecture executed and
rendered) is opened once in headless Chromium, with every request that is not ``file://``
refused and recorded. reveal.js's API then walks every slide, horizontal and vertical, and
measures it; the tests below read what was found:

- the deck opens with nothing from the network, no failed request, no console error;
- MathJax (2.7, served from the deck's assets) typesets without an error and without a missing
  font file;
- every image has loaded (``naturalWidth > 0``);
- every slide fits the 16:9 slide (1280 x 720 CSS px): no text, image or formula outside it,
  none cut off or scrolled inside a box (a code cell, an output);
- the animation players' buttons draw their icons with no icon font.

The first slide of every deck goes to ``build/screenshots/<deck>-slide1.png`` for reviewers, the
animation players to ``<deck>-animation.png``. A slide is named by its reveal.js indices
``h.v``, as in the deck's address (``#/5/1`` is slide 5.1).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from coursekit.build import LECTURES, find_notebooks
from coursekit.slides.render import HEIGHT, WIDTH

ROOT = Path(__file__).resolve().parents[2]
DECKS = [p.stem for p in find_notebooks(ROOT) if p.parts[0] == LECTURES]
MATH_TIMEOUT_MS = 15_000

# Before the page's own scripts: MathJax reports its errors here (window.mathErrors). In the
# test, TeX mistakes are made loud: noErrors would show the source of a broken formula and
# noUndefined would colour an unknown macro red, both without any signal.
MATHJAX_HOOKS = """
window.MathJax = {AuthorInit: function () {
    window.mathErrors = [];
    MathJax.Hub.Config({TeX: {noErrors: {disabled: true}, noUndefined: {disabled: true}}});
    var hook = MathJax.Hub.Register.MessageHook, errors = window.mathErrors;
    hook("Math Processing Error", function (m) {
        errors.push("Math Processing Error: " + String(m[2] && m[2].message || m[2]));
    });
    hook("TeX Jax - parse error", function (m) {
        errors.push("TeX error: " + m[1] + " in " + m[2]);
    });
    hook("file load error", function (m) { errors.push("MathJax could not load " + m[1]); });
}};
"""

# Resolves once the current slide has settled: MathJax has typeset every formula on it (the deck
# re-renders a slide's math each time it is shown) and its height no longer changes.
SETTLE = """(timeout) => new Promise((done, fail) => {
    const slide = Reveal.getCurrentSlide();
    const typeset = () => [...slide.querySelectorAll('script[type^="math/tex"]')]
        .filter(s => !s.closest('aside.notes'))
        .every(s => {
            const frame = document.getElementById(s.id + '-Frame');
            return frame && frame.getBoundingClientRect().width > 0;
        });
    const where = () => `slide ${Reveal.getIndices().h}.${Reveal.getIndices().v}`;
    setTimeout(() => fail(new Error(`${where()}: math not typeset`)), timeout);
    let height = -1;
    const check = () => {
        const now = slide.scrollHeight;
        if (typeset() && now === height) return done();
        height = now;
        requestAnimationFrame(check);
    };
    // After MathJax's start-up and the typesetting pass the deck queues (nbconvert's
    // init_mathjax): a slide re-rendered while that pass runs can be left without its math.
    // (The hook must not return the queued callback: MathJax would wait for it at start-up.)
    MathJax.Hub.Register.StartupHook('End', () => { MathJax.Hub.Queue(check); });
})"""

# Every slide, shown in turn at scale 1 (no margin, so CSS pixels are screen pixels): each piece
# of text, image, SVG and canvas must lie inside the slide and inside every box that clips it.
WALK = """async (timeout) => {
    const settle = __SETTLE__;
    Reveal.configure({transition: 'none', backgroundTransition: 'none', margin: 0});
    const SKIP = 'aside.notes, .MJX_Assistive_MathML, .MathJax_Preview, script, style';
    const name = (el) => {
        const cell = el.closest('.jp-Cell');
        if (!cell) return el.tagName.toLowerCase();
        const prompt = cell.querySelector('.jp-InputPrompt');
        const which = prompt && prompt.innerText.trim()
            ? 'cell ' + prompt.innerText.trim().replace(/:$/, '')
            : cell.classList.contains('jp-MarkdownCell')
                ? `markdown "${cell.innerText.trim().replace(/\\s+/g, ' ').slice(0, 40)}"`
                : 'a code cell';
        const part = el.closest('.jp-OutputArea-output')
            ? (el.tagName === 'IMG' ? 'the figure of ' : 'the output of ')
            : el.closest('.jp-InputArea') ? 'the code of ' : '';
        return part + which;
    };
    const pieces = (slide) => {
        const found = [];
        const walker = document.createTreeWalker(slide, NodeFilter.SHOW_TEXT | NodeFilter.SHOW_ELEMENT, {
            acceptNode: (n) => n.nodeType === 1 && n.matches(SKIP)
                ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT});
        for (let n = walker.nextNode(); n; n = walker.nextNode()) {
            if (n.nodeType === 3) {
                if (!n.data.trim()) continue;
                const range = document.createRange();
                range.selectNodeContents(n);
                for (const r of range.getClientRects()) found.push([n.parentElement, r]);
            } else if (['IMG', 'svg', 'CANVAS', 'VIDEO', 'IFRAME'].includes(n.tagName)) {
                found.push([n, n.getBoundingClientRect()]);
            }
        }
        return found.filter(([, r]) => r.width > 0 && r.height > 0);
    };
    const report = [];
    for (const slide of Reveal.getSlides()) {
        const {h, v} = Reveal.getIndices(slide);
        Reveal.slide(h, v);
        const problems = [];
        try { await settle(timeout); } catch (e) { problems.push(e.message); }
        if (Reveal.getScale() !== 1) problems.push(`laid out at scale ${Reveal.getScale()}`);
        const area = Reveal.getSlidesElement().getBoundingClientRect();
        const worst = new Map();
        const note = (el, how, px) => {
            if (px <= 1) return;
            const key = `${name(el)} ${how}`;
            worst.set(key, Math.max(worst.get(key) || 0, Math.round(px)));
        };
        for (const [el, r] of pieces(slide)) {
            note(el, 'runs off the slide at the left', area.left - r.left);
            note(el, 'runs off the slide at the right', r.right - area.right);
            note(el, 'runs off the slide at the top', area.top - r.top);
            note(el, 'runs off the slide at the bottom', r.bottom - area.bottom);
            for (let box = el.parentElement; box && box !== slide; box = box.parentElement) {
                const style = getComputedStyle(box);
                const b = box.getBoundingClientRect();
                const left = b.left + box.clientLeft, top = b.top + box.clientTop;
                if (style.overflowX !== 'visible') {
                    note(el, 'is cut off or scrolled at the right', r.right - (left + box.clientWidth));
                    note(el, 'is cut off or scrolled at the left', left - r.left);
                }
                if (style.overflowY !== 'visible') {
                    note(el, 'is cut off or scrolled at the bottom', r.bottom - (top + box.clientHeight));
                    note(el, 'is cut off or scrolled at the top', top - r.top);
                }
            }
        }
        for (const [what, px] of worst) problems.push(`${what} by ${px} px`);
        report.push({index: `${h}.${v}`, problems});
    }
    return report;
}""".replace("__SETTLE__", SETTLE)

BROKEN_IMAGES = """() => [...document.images]
    .filter(img => !img.complete || img.naturalWidth === 0)
    .map(img => `${img.alt || img.id || 'an image'} (${(img.getAttribute('src') || '').slice(0, 40)})`)"""

# The animation players (matplotlib's to_jshtml, coursekit.plotting.animation_html): the slide
# of each, and what each button of one of them holds once its slide is shown.
PLAYERS = """() => [...document.querySelectorAll('.animation')].map(player => {
    const slide = Reveal.getIndices(player.closest('section'));
    return [slide.h, slide.v];
})"""
BUTTONS = """(number) => [...document.querySelectorAll('.animation')[number]
    .querySelectorAll('.anim-buttons button')].map(b => {
        const icon = b.querySelector('svg path');
        const box = icon ? icon.getBoundingClientRect() : {width: 0, height: 0};
        return {title: b.title, text: b.innerText.trim(), icon: box.width > 0 && box.height > 0};
    })"""


@dataclass
class DeckReport:
    """What one deck did in the browser."""

    name: str
    error: str | None = None  # the deck could not be inspected at all
    left_file: list[str] = field(default_factory=list)  # requests refused: not file://
    failed: list[str] = field(default_factory=list)  # requests that failed, and why
    console: list[str] = field(default_factory=list)  # console errors and uncaught exceptions
    math_errors: list[str] = field(default_factory=list)
    size: tuple[int, int] = (0, 0)  # reveal's slide size
    broken_images: list[str] = field(default_factory=list)
    slides: list[dict] = field(default_factory=list)  # {"index": "5.1", "problems": [...]}
    players: list[dict] = field(default_factory=list)  # each player's buttons, drawn
    ink: list[tuple[str, int]] = field(default_factory=list)  # (button, dark pixels)


def _ink(png: bytes) -> int:
    """How many pixels of a screenshot differ clearly from its top-left (background) pixel."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("L")
    background = image.getpixel((0, 0))
    return sum(n for value, n in enumerate(image.histogram()) if abs(value - background) > 64)


def _inspect(browser, deck: Path, screenshots: Path) -> DeckReport:
    name = deck.name.removesuffix(".slides.html")
    report = DeckReport(name)
    page = browser.new_page(viewport={"width": WIDTH, "height": HEIGHT})
    page.set_default_timeout(60_000)

    def route(route):
        if route.request.url.startswith("file:"):
            route.continue_()
        else:
            report.left_file.append(route.request.url)
            route.abort()

    page.route("**/*", route)
    page.on("requestfailed", lambda r: report.failed.append(f"{r.url} ({r.failure})"))
    page.on("console", lambda m: m.type == "error" and report.console.append(m.text))
    page.on("pageerror", lambda e: report.console.append(f"uncaught: {e}"))
    page.add_init_script(MATHJAX_HOOKS)
    try:
        page.goto(deck.as_uri())
        page.wait_for_function("window.Reveal !== undefined && Reveal.isReady()")
        page.evaluate(SETTLE, MATH_TIMEOUT_MS)
        page.screenshot(path=screenshots / f"{name}-slide1.png")  # as shown, margin included
        report.size = tuple(page.evaluate("[Reveal.getConfig().width, Reveal.getConfig().height]"))
        report.slides = page.evaluate(WALK, MATH_TIMEOUT_MS)
        report.broken_images = page.evaluate(BROKEN_IMAGES)
        report.math_errors = page.evaluate("window.mathErrors || ['MathJax never started']")
        if page.evaluate("document.body.innerText.includes('Math Processing Error')"):
            report.math_errors.append("[Math Processing Error] on a slide")
        for number, slide in enumerate(page.evaluate(PLAYERS)):
            page.evaluate("([h, v]) => Reveal.slide(h, v)", slide)
            page.evaluate(SETTLE, MATH_TIMEOUT_MS)
            buttons = page.evaluate(BUTTONS, number)
            report.players.append({"slide": ".".join(map(str, slide)), "buttons": buttons})
            controls = page.locator(".animation").nth(number).locator(".anim-buttons")
            if number == 0:
                controls.screenshot(path=screenshots / f"{name}-animation.png")
            for button in controls.locator("button").all():
                report.ink.append((button.get_attribute("title"), _ink(button.screenshot())))
    except Exception as exc:  # a deck that does not open: every test of it reports this
        report.error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"
    finally:
        page.close()
    return report


@pytest.fixture(scope="module")
def inspected(browser, course_build, screenshots) -> dict[str, DeckReport]:
    """Each deck of the course build, opened once and walked slide by slide."""
    reports = [_inspect(browser, deck, screenshots) for deck in course_build.decks()]
    return {r.name: r for r in reports}


def _deck(inspected: dict[str, DeckReport], name: str) -> DeckReport:
    assert name in inspected, f"{LECTURES}/{name}.ipynb was not rendered to a deck"
    report = inspected[name]
    assert report.error is None, f"{name}: could not be inspected: {report.error}"
    return report


def test_every_lecture_has_a_deck(inspected):
    assert sorted(inspected) == sorted(DECKS)


@pytest.mark.parametrize("name", DECKS)
def test_deck_works_offline(inspected, name):
    """No request leaves file://, none fails, and the console shows no error."""
    report = _deck(inspected, name)
    assert not report.left_file, f"{name} asks the network for {report.left_file}"
    assert not report.failed, f"{name}: requests failed: {report.failed}"
    assert not report.console, f"{name}: console errors: {report.console}"


@pytest.mark.parametrize("name", DECKS)
def test_math_typesets_without_errors_or_missing_fonts(inspected, name):
    report = _deck(inspected, name)
    assert not report.math_errors, f"{name}: {report.math_errors}"
    fonts = [f for f in report.failed if f.split(" (")[0].endswith((".otf", ".woff", ".ttf"))]
    assert not fonts, f"{name}: MathJax asked for fonts that are not shipped: {fonts}"
    typeset = [p for s in report.slides for p in s["problems"] if "math not typeset" in p]
    assert not typeset, f"{name}: {typeset}"


@pytest.mark.parametrize("name", DECKS)
def test_every_image_loads(inspected, name):
    report = _deck(inspected, name)
    assert not report.broken_images, f"{name}: images that did not load: {report.broken_images}"


@pytest.mark.parametrize("name", DECKS)
def test_every_slide_fits_the_16_9_frame(inspected, name):
    """Nothing on any slide lies outside the 1280 x 720 slide or is cut off inside a box."""
    report = _deck(inspected, name)
    assert report.size == (WIDTH, HEIGHT) and WIDTH * 9 == HEIGHT * 16, report.size
    assert report.slides, f"{name}: no slides found"
    problems = [f"slide {s['index']}: {p}" for s in report.slides for p in s["problems"]]
    assert not problems, (
        f"{name}: content outside the {WIDTH}x{HEIGHT} slide (slide h.v = address #/h/v):\n  "
        + "\n  ".join(problems)
        + "\nHide code the slide does not teach (cell tag remove-input), make the figure "
        "smaller (figsize) or shorten the cell."
    )


def test_animation_buttons_draw_their_icons(inspected):
    """Every play/pause/step button of every player shows an icon drawn without any font.

    matplotlib's player uses Font Awesome from a CDN; the text glyphs one might put instead
    (U+23E9-U+23F8) are empty boxes with only DejaVu fonts. Each button must hold an SVG icon
    of non-zero size, no text, and put dark pixels on the screen.
    """
    reports = [_deck(inspected, name) for name in DECKS]
    players = [(r.name, p) for r in reports for p in r.players]
    if not players:
        pytest.skip("no deck has an animation")
    for deck, player in players:
        assert len(player["buttons"]) >= 9, (deck, player)
        empty = [b["title"] for b in player["buttons"] if not b["icon"] or b["text"]]
        assert not empty, f"{deck}, slide {player['slide']}: buttons without an icon: {empty}"
    faint = [(r.name, title, ink) for r in reports for title, ink in r.ink if ink < 20]
    assert not faint, f"buttons that draw (almost) nothing: {faint}"
