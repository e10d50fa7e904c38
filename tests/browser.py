"""A real headless browser for tests: Debian's ``chromium`` driven by Playwright.

Never ``playwright install``: the browser is the distribution's (``make test`` installs it with
apt when ``/usr/bin/chromium`` is missing). Use it from a test module with
a ``page`` argument:
tests/conftest.py imports the fixtures once (an import in each test module would make one
session fixture per module, and a second Playwright in the process fails).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One Chromium for the session (a fixture failure, not a skip, when it is missing)."""
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run 'make test' (or apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser) -> Iterator[Any]:
    """A fresh page in its own context (no cookies or storage shared between tests)."""
    context = browser.new_context(viewport={"width": 1000, "height": 760})
    try:
        yield context.new_page()
    finally:
        context.close()
