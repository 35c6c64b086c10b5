"""The documentation site: built with ``mkdocs build --strict``, then browsed in Chromium.

The site is built into a temporary directory and served over loopback; headless
Chromium starts at the home page, follows every link of the navigation and of
each page, and checks that every internal link leads to a page that loads (and
every ``#fragment`` to an element that exists), that images load, and that
every page of ``mkdocs.yml``'s navigation was reached. Skips when MkDocs is not
installed; when Chromium is missing it skips too, unless ASESS_REQUIRE_CHROMIUM=1.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.util
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urldefrag, urljoin, urlsplit

import pytest

if TYPE_CHECKING:
    from playwright.async_api import Browser

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parent.parent
# Pages the walk loads at once: rendering is CPU-bound, and CI machines have two cores.
TABS = 2


def _nav_pages(nav: list[object]) -> list[str]:
    pages: list[str] = []
    for item in nav:
        if isinstance(item, str):
            pages.append(item)
        elif isinstance(item, dict):
            for value in item.values():
                pages.extend(_nav_pages(value) if isinstance(value, list) else [str(value)])
    return pages


def _url_of(page: str) -> str:
    """The site path MkDocs gives a page with directory URLs: a/b.md -> a/b/."""
    stem = page[: -len(".md")]
    if stem == "index":
        return "/"
    return "/" + (stem[: -len("/index")] if stem.endswith("/index") else stem) + "/"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (pip install -r requirements/dev.txt)")
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out


@pytest.fixture(scope="module")
def served(site: Path) -> Iterator[str]:
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_the_site_builds_strictly_with_every_page(site: Path) -> None:
    import yaml

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    pages = _nav_pages(config["nav"])
    assert len(pages) >= 15
    for page in pages:
        assert (ROOT / "docs" / page).is_file(), page
        built = site / _url_of(page).strip("/") / "index.html"
        assert built.is_file(), built
    # The API reference is generated from the docstrings, not written by hand.
    reference = (site / "reference" / "index.html").read_text()
    for name in ("asess.SessionManager", "asess.Session", "asess.get_session", "asess.Store"):
        assert f'id="{name}"' in reference, name
    assert ":class:" not in reference and ":meth:" not in reference  # roles rendered as code
    assert (site / "img" / "benchmarks.png").stat().st_size > 10_000


# On the session's loop, where the shared browser lives.
@pytest.mark.asyncio(loop_scope="session")
async def test_every_internal_link_works_in_a_browser(
    served: str, browser: Browser, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml
    from playwright.async_api import Page, Route

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    expected = {_url_of(p) for p in _nav_pages(config["nav"])}
    host = urlsplit(served).netloc
    seen = {"/"}  # every page path ever queued: each is browsed exactly once
    queue: asyncio.Queue[str] = asyncio.Queue()
    queue.put_nowait("/")
    broken: list[str] = []
    fragments: list[tuple[str, str, str]] = []  # (from page, target path, fragment)
    ids_on: dict[str, set[str]] = {}  # the element ids of every page that loaded
    file_status: dict[str, asyncio.Task[int]] = {}  # one request per linked file
    outside: list[str] = []
    failures: list[Exception] = []
    context = await browser.new_context()
    try:

        async def local_only(route: Route) -> None:
            # Nothing leaves the machine: a request elsewhere is recorded and refused.
            if urlsplit(route.request.url).netloc in (host, ""):
                await route.continue_()
            else:
                outside.append(route.request.url)
                await route.abort()

        await context.route("**/*", local_only)

        async def status_of(target: str) -> int:
            return (await context.request.get(served + target)).status

        async def ids_of(page: Page) -> set[str]:
            return set(await page.eval_on_selector_all("[id]", "els => els.map(e => e.id)"))

        async def browse(page: Page, path: str) -> None:
            response = await page.goto(served + path)
            if response is None or response.status != 200:
                broken.append(f"{path}: {response and response.status}")
                return
            # Images must load (the benchmark chart among them).
            bad_images = await page.eval_on_selector_all(
                "img", "els => els.filter(e => !e.naturalWidth).map(e => e.src)"
            )
            broken.extend(f"{path}: image {src}" for src in bad_images)
            # Kept for the #fragment check, so no page has to be loaded twice.
            ids_on[path] = await ids_of(page)
            hrefs = await page.eval_on_selector_all(
                "a[href]", "els => els.map(e => e.getAttribute('href'))"
            )
            for href in hrefs:
                absolute, fragment = urldefrag(urljoin(served + path, href))
                parts = urlsplit(absolute)
                if parts.scheme not in ("http", "https") or parts.netloc != host:
                    continue
                target = parts.path or "/"
                if target.endswith(".html"):
                    target = target[: -len("index.html")]
                if fragment:
                    fragments.append((path, target, fragment))
                if target.endswith("/"):
                    if target not in seen:
                        seen.add(target)
                        queue.put_nowait(target)
                else:
                    # A file (image, sitemap...): it must exist.
                    if target not in file_status:
                        file_status[target] = asyncio.ensure_future(status_of(target))
                    status = await file_status[target]
                    if status != 200:
                        broken.append(f"{path}: {href} -> {status}")

        async def browser_tab(page: Page) -> None:
            while True:
                path = await queue.get()
                try:
                    await browse(page, path)
                except Exception as exc:  # reported after the walk, not lost in a task
                    failures.append(exc)
                finally:
                    queue.task_done()

        # Independent pages load side by side in a few tabs of the same context.
        pages = [await context.new_page() for _ in range(TABS)]
        tabs = [asyncio.ensure_future(browser_tab(page)) for page in pages]
        try:
            await queue.join()
        finally:
            for tab in tabs:
                tab.cancel()
            await asyncio.gather(*tabs, return_exceptions=True)
        if failures:
            raise failures[0]

        page = pages[0]
        for target in sorted({t for _, t, _ in fragments}):
            if target not in ids_on:  # not a page the walk loaded: load it now
                await page.goto(served + target)
                ids_on[target] = await ids_of(page)
            ids = ids_on[target]
            broken.extend(
                f"{source}: #{fragment} not found on {target}"
                for source, t, fragment in fragments
                if t == target and fragment not in ids
            )
    finally:
        await context.close()
    with capsys.disabled():
        print(f"\ndocs: {len(seen)} pages browsed, {len(fragments)} fragment links checked")
    assert broken == []
    assert expected <= seen, sorted(expected - seen)
    assert outside == [], "the site fetched something from elsewhere"
