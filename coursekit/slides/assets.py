"""The JavaScript a slide deck needs, provisioned once so decks never touch a CDN.

nbconvert's reveal template loads reveal.js, require.js, jQuery and MathJax 2 from CDNs.
We fetch pinned copies from the package registries at set-up time (``coursekit slides-assets``)
into a git-ignored cache, and every build copies them next to the decks::

    build/slides/
        lecture.slides.html     # refers to assets/... by relative paths
        assets/reveal.js/       # dist/ and plugin/notes/ (speaker notes, the `s` key)
        assets/requirejs/require.js
        assets/jquery/dist/jquery.min.js
        assets/mathjax/         # MathJax 2.7, from the PyPI package jupyter-server-mathjax

so the folder can be zipped and opened anywhere, without a network.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

CACHE_ENV = "COURSEKIT_SLIDE_ASSETS"
"""Environment variable that overrides where the fetched assets are cached."""


@dataclass(frozen=True)
class NpmAsset:
    """One pinned package from the npm registry and the files of it a deck needs."""

    name: str
    version: str
    integrity: str  # npm's "sha512-<base64>"; checked so a pin can't silently change content
    files: tuple[str, ...]  # relative to the package root; folders are copied whole

    @property
    def cache_name(self) -> str:
        # The version is in the folder name, so bumping a pin makes the old cache "missing".
        return f"{self.name}-{self.version}"


# The pins, in one place. nbconvert's reveal template expects reveal.js 4.x's layout
# (dist/reveal.js, dist/theme/<name>.css, plugin/notes/notes.js) and calls MathJax.Hub (MathJax 2).
NPM_ASSETS: tuple[NpmAsset, ...] = (
    NpmAsset(
        "reveal.js",
        "4.6.0",
        "sha512-QC80rYsZldAe95bW9VImucIPTjfsKhI0jRQrIOXU4P92ZyXb/dfw9L3EE96bN6i7UmeUl1qBieH4UNTr25erYw==",
        ("LICENSE", "dist", "plugin/notes"),
    ),
    NpmAsset(
        "requirejs",
        "2.3.8",
        "sha512-7/cTSLOdYkNBNJcDMWf+luFvMriVm7eYxp4BcFCsAX0wF421Vyce5SXP17c+Jd5otXKGNehIonFlyQXSowL6Mw==",
        ("require.js",),  # carries its MIT licence header
    ),
    NpmAsset(
        "jquery",
        "3.7.1",
        "sha512-m4avr8yL8kmFN8psrbFFFmB/If14iN5o9nw/NgnnM+kybDJpRsAynV2BsfpTYrTRysYUdADVD7CkUUizgkpLfg==",
        ("LICENSE.txt", "dist/jquery.min.js"),
    ),
)

# Paths inside the deck's assets folder, as the slide exporter is told about them.
REVEAL = "reveal.js"
REQUIRE_JS = "requirejs/require.js"
JQUERY = "jquery/dist/jquery.min.js"
# jupyter-server-mathjax ships this combined configuration (not nbconvert's default TeX-AMS_CHTML).
MATHJAX = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"


class AssetsMissingError(RuntimeError):
    """The slide assets have not been fetched yet (or are for older pins)."""


def cache_dir(root: Path | str = ".") -> Path:
    """Where fetched assets live: ``$COURSEKIT_SLIDE_ASSETS`` or ``ROOT/.cache/slide-assets``."""
    return Path(os.environ.get(CACHE_ENV) or Path(root) / ".cache" / "slide-assets")


def mathjax_dir() -> Path:
    """The MathJax 2 tree inside the installed ``jupyter_server_mathjax`` package."""
    # find_spec locates the package without importing it (its import pulls in jupyter_server).
    spec = importlib.util.find_spec("jupyter_server_mathjax")
    if spec is None or not spec.submodule_search_locations:
        raise AssetsMissingError(
            "MathJax 2 not found: install the PyPI package jupyter-server-mathjax."
        )
    return Path(spec.submodule_search_locations[0]) / "static"


def missing_assets(cache: Path) -> list[str]:
    """The pinned packages (``name@version``) that are not in ``cache``."""
    return [
        f"{a.name}@{a.version}"
        for a in NPM_ASSETS
        if not all((cache / a.cache_name / f).exists() for f in a.files)
    ]


def fetch_assets(cache: Path, *, force: bool = False) -> list[str]:
    """Download the pinned packages with the ``npm`` client into ``cache``; return what was fetched.

    Only ``npm pack`` is used (no ``node_modules``, no install scripts run); each tarball's
    sha512 is checked against the pin before it is unpacked.
    """
    missing = missing_assets(cache)
    wanted = [a for a in NPM_ASSETS if force or f"{a.name}@{a.version}" in missing]
    if not wanted:
        return []
    npm = shutil.which("npm")
    if npm is None:
        raise AssetsMissingError(
            "The npm client is needed once to fetch slide assets: install Node.js/npm."
        )
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        specs = [f"{a.name}@{a.version}" for a in wanted]
        done = subprocess.run(
            [npm, "pack", *specs, "--json", "--pack-destination", tmp],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            raise AssetsMissingError(f"`npm pack {' '.join(specs)}` failed:\n{done.stderr}")
        tarballs = {p["name"]: Path(tmp) / p["filename"] for p in json.loads(done.stdout)}
        for asset in wanted:
            tarball = tarballs[asset.name]
            _check_integrity(tarball, asset)
            unpacked = Path(tmp) / asset.cache_name
            with tarfile.open(tarball) as tar:
                tar.extractall(unpacked, filter="data")  # refuses absolute paths and "..".
            target = cache / asset.cache_name
            shutil.rmtree(target, ignore_errors=True)
            shutil.move(unpacked / "package", target)  # npm tarballs keep everything in package/
    return specs


def _check_integrity(tarball: Path, asset: NpmAsset) -> None:
    algorithm, _, expected = asset.integrity.partition("-")
    actual = base64.b64encode(hashlib.new(algorithm, tarball.read_bytes()).digest()).decode()
    if actual != expected:
        raise AssetsMissingError(
            f"{tarball.name}: {algorithm} does not match the pin in {__name__}."
        )


def install_assets(cache: Path, dest: Path) -> Path:
    """Copy the assets a deck needs from ``cache`` (and MathJax from its package) into ``dest``."""
    missing = missing_assets(cache)
    if missing:
        raise AssetsMissingError(
            f"Slide assets missing from {cache}: {', '.join(missing)}.\n"
            "Fetch them once with `coursekit slides-assets` (uses the npm client), "
            f"point ${CACHE_ENV} at a folder that has them, or build with --no-slides."
        )
    for asset in NPM_ASSETS:
        for name in asset.files:
            src, dst = cache / asset.cache_name / name, dest / asset.name / name
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dst, dirs_exist_ok=True)
            else:
                shutil.copy2(src, dst)
    shutil.copytree(mathjax_dir(), dest / "mathjax", dirs_exist_ok=True)
    return dest
