"""The browser tests: the system's Chromium driven by Playwright (`coursekit.slides.browser`).

Run them alone with ``pytest tests/browser``. Without Chromium or Playwright they are skipped
with the reason, except in CI (``CI`` set), which installs both itself (course.sh).
Screenshots for reviewers go to ``build/screenshots/`` (ignored by git).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "build" / "screenshots"


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium for the session (Playwright's sync ``Browser``)."""
    from coursekit.slides import browser as chromium

    try:
        chromium.require()
    except chromium.BrowserUnavailable as error:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(error))
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = chromium.launch(playwright)
        yield instance
        instance.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
