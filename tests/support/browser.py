"""Headless Chromium for page tests: Debian's ``chromium``, driven by Playwright.

Example::

    def test_page(browser):  # the fixture (tests/conftest.py lists this plugin)
        page = browser.new_page(viewport={"width": 400, "height": 800})

Playwright's own browser download is never used (this machine reaches no
such host): ``executable_path`` points at the distribution's build. A missing
browser or Playwright goes through ``support.needs.missing``.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.needs import missing

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        missing("Debian's chromium", "Install it: apt-get install -y chromium (./dev test does).")
    return path


@pytest.fixture
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("playwright (python)", "Install the test extra: pip install -e '.[test]'.")
    executable = chromium_path()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
