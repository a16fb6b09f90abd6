"""What every test shares: figures drawn off-screen and closed after each test."""

from __future__ import annotations

import sys

import matplotlib
import pytest

matplotlib.use("Agg")  # no display in CI; set before any test imports pyplot


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    if "matplotlib.pyplot" in sys.modules:  # tests that draw nothing import no pyplot
        sys.modules["matplotlib.pyplot"].close("all")
