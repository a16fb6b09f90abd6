"""The headless browser the course uses: the system's Chromium, driven by Playwright.

Playwright normally downloads its own browsers; the course uses the machine's Chromium instead
(Debian's ``chromium``, which ``course.sh`` installs as root), so nothing is downloaded at run
time. ``COURSEKIT_CHROMIUM`` names another executable.

    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = launch(p)
"""

from __future__ import annotations

import os
import shutil

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class BrowserUnavailable(RuntimeError):
    """No Chromium or no Playwright on this machine; the message says what to install."""


def chromium_path() -> str:
    """The Chromium executable: ``COURSEKIT_CHROMIUM``, else the first of `CANDIDATES` on PATH."""
    chosen = os.environ.get("COURSEKIT_CHROMIUM")
    if chosen:
        if not shutil.which(chosen):
            raise BrowserUnavailable(f"COURSEKIT_CHROMIUM={chosen} is not an executable")
        return shutil.which(chosen)
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    raise BrowserUnavailable(
        "no Chromium found: install it (Debian: apt-get install chromium; ./course.sh does as "
        "root) or set COURSEKIT_CHROMIUM"
    )


def launch(playwright, **options):
    """A headless Chromium browser (Playwright's ``Browser``) from the system's executable."""
    args = list(options.pop("args", []))
    if os.geteuid() == 0:  # Chromium refuses to run its own sandbox as root
        args.append("--no-sandbox")
    return playwright.chromium.launch(executable_path=chromium_path(), args=args, **options)


def require() -> None:
    """Raise BrowserUnavailable unless Playwright and a Chromium are both there."""
    try:
        import playwright  # noqa: F401
    except ModuleNotFoundError:
        raise BrowserUnavailable(
            "playwright is not installed: pip install 'coursekit[course]'"
        ) from None
    chromium_path()
