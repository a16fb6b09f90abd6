"""Lecture notebooks as reveal.js slide decks that work offline.

``coursekit slides-assets`` fetches the pinned JavaScript once; ``coursekit build`` then copies
it next to the decks, renders each executed lecture with :func:`render_deck` and prints each
deck to a PDF handout with the system's headless Chromium (:mod:`coursekit.slides.pdf`, driven
through :mod:`coursekit.slides.browser`).
"""

from .assets import (
    NPM_ASSETS,
    AssetsMissingError,
    cache_dir,
    fetch_assets,
    install_assets,
    missing_assets,
)
from .render import render_deck

__all__ = [
    "NPM_ASSETS",
    "AssetsMissingError",
    "cache_dir",
    "fetch_assets",
    "install_assets",
    "missing_assets",
    "render_deck",
]
