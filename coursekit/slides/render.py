"""Render an executed notebook as a reveal.js deck that loads nothing from the network."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
from nbconvert import SlidesExporter
from traitlets.config import Config

from .. import claims
from . import assets

TEMPLATES = Path(__file__).parent / "templates"
TEMPLATE = "coursekit_reveal"  # extends nbconvert's `reveal`; see templates/coursekit_reveal/
THEME = "white"  # reveal.js themes such as "simple" (nbconvert's default) @import web fonts
# The slide's size in CSS pixels: 16:9, the projectors' shape, and the size the course's figures
# are drawn for (coursekit.plotting.style). reveal.js scales it to the window; nbconvert's
# default is 960x700.
WIDTH, HEIGHT = 1280, 720
# Cell tags a lecture uses to keep code off its slides while keeping the figure it draws.
# "check" marks a check cell: it asserts the numbers the prose states (coursekit.claims) and
# runs wherever the notebook runs, but the audience never sees it.
HIDE_TAGS = Config(
    {
        "TagRemovePreprocessor": {
            "enabled": True,
            "remove_input_tags": ["remove-input"],
            "remove_cell_tags": ["remove-cell", claims.CHECK_TAG],
            "remove_all_outputs_tags": ["remove-output"],
        }
    }
)


def render_deck(executed: Path, deck: Path, asset_dir: Path, *, source_dir: Path) -> Path:
    """Write the slides of the notebook ``executed`` to ``deck``.

    ``asset_dir`` is where :func:`coursekit.slides.install_assets` put the JavaScript; the deck
    refers to it by a path relative to ``deck``. ``source_dir`` is the original notebook's
    folder, against which markdown images (``![](figures/x.png)``) are resolved and embedded.
    """
    prefix = Path(os.path.relpath(asset_dir, deck.parent)).as_posix()
    exporter = SlidesExporter(
        config=HIDE_TAGS,
        extra_template_basedirs=[str(TEMPLATES)],
        template_name=TEMPLATE,
        reveal_theme=THEME,
        reveal_width=str(WIDTH),
        reveal_height=str(HEIGHT),
        reveal_url_prefix=f"{prefix}/{assets.REVEAL}",
        require_js_url=f"{prefix}/{assets.REQUIRE_JS}",
        jquery_url=f"{prefix}/{assets.JQUERY}",
        mathjax_url=f"{prefix}/{assets.MATHJAX}",
        font_awesome_url="",  # nbconvert 7.17's reveal template no longer uses it
        embed_images=True,  # markdown images become data: URIs, so the deck is one file + assets
    )
    nb = nbformat.read(executed, as_version=4)
    resources = {
        "metadata": {"name": deck.name.removesuffix(".slides.html"), "path": str(source_dir)}
    }
    html, _ = exporter.from_notebook_node(nb, resources=resources)
    deck.parent.mkdir(parents=True, exist_ok=True)
    deck.write_text(html, encoding="utf-8")
    return deck
