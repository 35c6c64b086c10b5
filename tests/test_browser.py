"""The counter demo in a real browser: headless Chromium driven by Playwright.

The browser is the session's one Chromium (tests/browser_fixtures.py); every
test gets a fresh browser context, so no cookie or storage carries over. Each
demo configuration runs once for the module and is shared by the tests that
use it: cookie sessions live in the browser, so a fresh context is a fresh
session, and server-side sessions are reached only through their cookie.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

from .servers import Server, backend_missing, demo_server

if TYPE_CHECKING:
    from playwright.async_api import Browser, BrowserContext, Page

pytestmark = [pytest.mark.timeout(120), pytest.mark.asyncio(loop_scope="session")]

COOKIE = "asess_session"


# Every demo configuration the tests below use.
BACKENDS = ("cookies-legacy", "cookies-modern", "files")


@pytest.fixture(scope="module")
def demo_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], Server]]:
    """The demo for each backend, kept for the module; a test waits only for its own.

    Each demo is a fresh interpreter that takes a while to come up, so they all
    start side by side instead of one after another.
    """
    available = [backend for backend in BACKENDS if backend_missing(backend) is None]
    workdirs = {backend: tmp_path_factory.mktemp(f"demo-{backend}") for backend in available}

    def start(backend: str) -> tuple[AbstractContextManager[Server], Server]:
        running = demo_server(workdirs[backend], backend=backend)
        return running, running.__enter__()

    with ExitStack() as stack, ThreadPoolExecutor(max(len(available), 1)) as pool:
        starting = {backend: pool.submit(start, backend) for backend in available}
        # Registered at once, so a demo that came up is stopped whatever the others do.
        for future in starting.values():
            stack.callback(_stop, future)

        def get(backend: str) -> Server:
            reason = backend_missing(backend)
            if reason:
                pytest.skip(reason)
            return starting[backend].result()[1]

        yield get


def _stop(future: Future[tuple[AbstractContextManager[Server], Server]]) -> None:
    if future.exception() is None:
        future.result()[0].__exit__(None, None, None)


@pytest.fixture(scope="module", params=["cookies-legacy", "cookies-modern"])
def demo(request: pytest.FixtureRequest, demo_servers: Callable[[str], Server]) -> Server:
    """The demo with cookie sessions in both formats, where chunking matters."""
    return demo_servers(request.param)


@pytest_asyncio.fixture(loop_scope="session")
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    """A fresh browser context (its own cookies and storage), closed after the test."""
    ctx = await browser.new_context()
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


# -- the demo page ----------------------------------------------------------------

SCREENSHOTS = Path(__file__).resolve().parent.parent / "build" / "screenshots"


@pytest.fixture(scope="module", params=["cookies-modern", "files"])
def page_demo(request: pytest.FixtureRequest, demo_servers: Callable[[str], Server]) -> Server:
    """The demo on a chunking backend and on a server-side one."""
    return demo_servers(request.param)


async def field(page: Page, name: str) -> str:
    text: str = await page.locator(f"#{name}").inner_text()
    return text.strip()


async def click(page: Page, button: str, status: int = 200) -> None:
    async with page.expect_navigation() as navigation:
        await page.click(f"#{button}")
    response = await navigation.value
    assert response is not None and response.status == status, (button, response)


async def test_the_demo_page_shows_and_changes_the_session(
    context: BrowserContext, page_demo: Server, capsys: pytest.CaptureFixture[str]
) -> None:
    chunks = page_demo.backend.startswith("cookies")
    page = await context.new_page()
    response = await page.goto(f"{page_demo.url}/")
    assert response is not None and response.status == 200
    backend = await field(page, "backend")
    assert backend == "cookies (modern format)" if chunks else backend.startswith("files in ")
    assert await field(page, "state") == "new: nothing stored yet"
    assert await field(page, "cookie-size") == "no session cookie yet"

    await click(page, "count")
    await click(page, "count")
    assert await field(page, "state") == "stored"
    assert '"counter": 2' in await field(page, "data")
    handle = await field(page, "handle")
    assert ("sealed in the cookie" in handle) if chunks else handle.startswith("id digest ")
    assert "1h after" in await field(page, "expiry")

    await click(page, "grow")
    data = await field(page, "data")
    assert "(3,000 characters)" in data  # shortened for display, never a wall of hex
    assert len(data) < 200
    size = await field(page, "cookie-size")
    if chunks:
        # Past 4 kB the token is split: the page lists the chunks the browser sent.
        assert "2 cookie(s)" in size and f"{COOKIE}.1" in size, size
    else:
        assert "1 cookie(s)" in size, size  # the cookie holds only the id
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shot = SCREENSHOTS / f"demo-{page_demo.backend}.png"
    await page.screenshot(path=str(shot), full_page=True)
    with capsys.disabled():
        print(f"\nscreenshot of the demo page ({page_demo.backend}): {shot}")

    if chunks:
        # Grow until the cookies cannot hold it: a 413 that says why, session unchanged.
        await click(page, "grow")
        await page.goto(f"{page_demo.url}/")
        await click(page, "grow", status=413)
        explanation = await field(page, "explanation")
        assert "3 cookies hold" in explanation and "left as it was" in explanation
        response = await page.goto(f"{page_demo.url}/")
        assert response is not None and response.status == 200
        assert '"counter": 2' in await field(page, "data")

    before = await field(page, "handle")
    await click(page, "regenerate")
    after = await field(page, "handle")
    assert after != before and '"counter": 2' in await field(page, "data")

    assert await page_text(page, f"{page_demo.url}/counter") == "This is your 3 visit"
    wrong = await page.goto(f"{page_demo.url}/count")  # a link, not the button: nothing counted
    assert wrong is not None and wrong.status == 405 and wrong.headers["allow"] == "POST"
    await page.goto(f"{page_demo.url}/")
    await click(page, "logout")
    assert await field(page, "state") == "new: nothing stored yet"
    names = {c["name"] for c in await context.cookies(page_demo.url)}
    assert not {n for n in names if n == COOKIE or n.startswith(COOKIE + ".")}
