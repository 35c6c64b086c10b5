"""The counter demo in a real browser: headless Chromium driven by Playwright.

Uses the system's ``chromium`` (Playwright cannot download browsers here), with
a fresh profile per test. Skips when Chromium or Playwright is missing, unless
ASESS_REQUIRE_CHROMIUM=1 (set by .ci/run), where a missing browser fails.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from .servers import Server, backend_missing, demo_server

if TYPE_CHECKING:
    from playwright.async_api import BrowserContext, Page

pytestmark = pytest.mark.timeout(120)

COOKIE = "asess_session"
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


@pytest.fixture(scope="module")
def chromium() -> str:
    reason = _missing_browser()
    if reason:
        if os.environ.get("ASESS_REQUIRE_CHROMIUM") == "1":
            pytest.fail(f"{reason}, but ASESS_REQUIRE_CHROMIUM=1")
        pytest.skip(reason)
    path = shutil.which("chromium")
    assert path is not None
    return path


@pytest.fixture(scope="module", params=["cookies-legacy", "cookies-modern"])
def demo(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The demo with cookie sessions in both formats, where chunking matters."""
    reason = backend_missing(request.param)
    if reason:
        pytest.skip(reason)
    with demo_server(tmp_path_factory.mktemp("browser"), backend=request.param) as srv:
        yield srv


@pytest.fixture
async def context(chromium: str, tmp_path: Path) -> AsyncIterator[BrowserContext]:
    """A browser context on a fresh profile directory, closed after the test."""
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        ctx = await pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_ARGS,
        )
        try:
            yield ctx
        finally:
            await ctx.close()


async def page_text(page: Page, url: str) -> str:
    response = await page.goto(url)
    assert response is not None and response.status == 200
    text: str = await page.locator("body").inner_text()
    return text.strip()


async def test_counter_reads_1_2_3(context: BrowserContext, demo: Server) -> None:
    page = await context.new_page()
    seen = [await page_text(page, f"{demo.url}/counter") for _ in range(3)]
    assert seen == ["This is your 1 visit", "This is your 2 visit", "This is your 3 visit"]


async def test_a_chunked_session_survives_a_reload(context: BrowserContext, demo: Server) -> None:
    page = await context.new_page()
    assert await page_text(page, f"{demo.url}/counter") == "This is your 1 visit"
    assert await page_text(page, f"{demo.url}/big?size=6000") == "6000"
    # The browser now holds the session in several cookies, each under 4 kB.
    cookies = {c["name"]: c for c in await context.cookies(demo.url)}
    chunks = [name for name in cookies if name == COOKIE or name.startswith(COOKIE + ".")]
    assert {COOKIE, f"{COOKIE}.1"} <= set(chunks)
    assert sum(len(cookies[name]["value"]) for name in chunks) > 4096
    # /big without size only reads; reloading it must find the same session.
    assert await page_text(page, f"{demo.url}/big") == "6000"
    response = await page.reload()
    assert response is not None and response.status == 200
    assert (await page.locator("body").inner_text()).strip() == "6000"
    assert await page_text(page, f"{demo.url}/counter") == "This is your 2 visit"


async def test_httponly_keeps_the_session_out_of_document_cookie(
    context: BrowserContext, demo: Server
) -> None:
    page = await context.new_page()
    assert await page_text(page, f"{demo.url}/counter") == "This is your 1 visit"
    response = await page.goto(f"{demo.url}/")
    assert response is not None and "text/html" in response.headers["content-type"]
    # A script-set cookie shows document.cookie works on this page at all.
    seen: str = await page.evaluate(
        "() => { document.cookie = 'probe=1; path=/'; return document.cookie; }"
    )
    assert "probe=1" in seen
    assert COOKIE not in seen
    cookies = {c["name"]: c for c in await context.cookies(demo.url)}
    assert cookies[COOKIE]["httpOnly"] is True
    assert cookies["probe"]["httpOnly"] is False
    # The browser still sends the HttpOnly cookie to the server.
    assert await page_text(page, f"{demo.url}/counter") == "This is your 2 visit"
