"""The documentation site: built with ``mkdocs build --strict``, then browsed in Chromium.

The site is built into a temporary directory and served over loopback; headless
Chromium starts at the home page, follows every link of the navigation and of
each page, and checks that every internal link leads to a page that loads (and
every ``#fragment`` to an element that exists), that images load, and that
every page of ``mkdocs.yml``'s navigation was reached. Skips when MkDocs is not
installed; when Chromium is missing it skips too, unless ASESS_REQUIRE_CHROMIUM=1.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlsplit

import pytest

from .test_browser import CHROMIUM_ARGS

pytestmark = pytest.mark.timeout(300)

ROOT = Path(__file__).resolve().parent.parent


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


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium")
    reason = None
    if path is None:
        reason = "no `chromium` on PATH (apt-get install chromium)"
    elif importlib.util.find_spec("playwright") is None:
        reason = "the playwright package is not installed"
    if reason:
        if os.environ.get("ASESS_REQUIRE_CHROMIUM") == "1":
            pytest.fail(f"{reason}, but ASESS_REQUIRE_CHROMIUM=1")
        pytest.skip(reason)
    assert path is not None
    return path


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


async def test_every_internal_link_works_in_a_browser(
    served: str, chromium: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml
    from playwright.async_api import Route, async_playwright

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    expected = {_url_of(p) for p in _nav_pages(config["nav"])}
    host = urlsplit(served).netloc
    seen: set[str] = set()
    queue = ["/"]
    broken: list[str] = []
    fragments: list[tuple[str, str, str]] = []  # (from page, target path, fragment)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_ARGS
        )
        try:
            page = await browser.new_page()
            outside: list[str] = []

            async def local_only(route: Route) -> None:
                # Nothing leaves the machine: a request elsewhere is recorded and refused.
                if urlsplit(route.request.url).netloc in (host, ""):
                    await route.continue_()
                else:
                    outside.append(route.request.url)
                    await route.abort()

            await page.route("**/*", local_only)
            while queue:
                path = queue.pop(0)
                if path in seen:
                    continue
                seen.add(path)
                response = await page.goto(served + path)
                if response is None or response.status != 200:
                    broken.append(f"{path}: {response and response.status}")
                    continue
                # Images must load (the benchmark chart among them).
                bad_images = await page.eval_on_selector_all(
                    "img", "els => els.filter(e => !e.naturalWidth).map(e => e.src)"
                )
                broken.extend(f"{path}: image {src}" for src in bad_images)
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
                    if target not in seen and target.endswith("/"):
                        queue.append(target)
                    elif not target.endswith("/"):
                        # A file (image, sitemap...): it must exist.
                        status = (await page.request.get(served + target)).status
                        if status != 200:
                            broken.append(f"{path}: {href} -> {status}")
            for target in sorted({t for _, t, _ in fragments}):
                await page.goto(served + target)
                ids = set(await page.eval_on_selector_all("[id]", "els => els.map(e => e.id)"))
                broken.extend(
                    f"{source}: #{fragment} not found on {target}"
                    for source, t, fragment in fragments
                    if t == target and fragment not in ids
                )
        finally:
            await browser.close()
    with capsys.disabled():
        print(f"\ndocs: {len(seen)} pages browsed, {len(fragments)} fragment links checked")
    assert broken == []
    assert expected <= seen, sorted(expected - seen)
    assert outside == [], "the site fetched something from elsewhere"
