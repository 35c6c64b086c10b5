"""Pytest fixtures for the browser tests: one headless Chromium for the whole session.

Starting Chromium costs seconds, so every browser test (the demo in
``test_browser.py``, the documentation walk in ``test_docs.py``) shares one
browser process and isolates itself with a fresh browser context, which has
its own cookie jar and storage, like a fresh profile. The browser lives on the
session's event loop, so the tests and fixtures using it run there too
(``pytest.mark.asyncio(loop_scope="session")``). Under pytest-xdist each worker
starts its own browser. Uses the system's ``chromium`` (Playwright cannot
download browsers here); skips when Chromium or Playwright is missing, unless
ASESS_REQUIRE_CHROMIUM=1 (set by .ci/run), where a missing browser fails.
``tests/conftest.py`` registers this file as a plugin.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

if TYPE_CHECKING:
    from playwright.async_api import Browser

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _missing_browser() -> str | None:
    if shutil.which("chromium") is None:
        return "no `chromium` on PATH (apt-get install chromium)"
    if importlib.util.find_spec("playwright") is None:
        return "the playwright package is not installed"
    return None


@pytest.fixture(scope="session")
def chromium() -> str:
    """The path of the system's Chromium (or a skip, or a failure under REQUIRE)."""
    reason = _missing_browser()
    if reason:
        if os.environ.get("ASESS_REQUIRE_CHROMIUM") == "1":
            pytest.fail(f"{reason}, but ASESS_REQUIRE_CHROMIUM=1")
        pytest.skip(reason)
    path = shutil.which("chromium")
    assert path is not None
    return path


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser(chromium: str) -> AsyncIterator[Browser]:
    """Headless Chromium, launched once; tests open their own contexts in it."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        launched = await pw.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()
