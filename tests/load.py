"""A small async load generator for the demo app, over TCP with aiohttp.

A :class:`Visitor` is one browser: it keeps its own session cookie and takes
every Set-Cookie the server sends, as a browser would, so a session silently
replaced by a fresh one shows up as a counter that starts again. The
scenarios count what the issue measures: requests, seconds, errors, 5xx
answers, corrupt answers and lost updates (counter increments that a
successful response promised but the stored session does not hold).
"""

from __future__ import annotations

import asyncio
import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import httpx
import orjson

from .servers import HOST, Server, free_port, running, subprocess_env

COOKIE_NAME = "asess_session"
VISIT = re.compile(rb"This is your (\d+) visit")


@contextmanager
def uvicorn_demo(workdir: Path, *, workers: int = 2, **env: str) -> Iterator[Server]:
    """``python -m uvicorn --factory asess.demo:app_from_env --workers N``, set up by ``env``.

    The log (``workdir/uvicorn.log``) keeps warnings and errors only: no access log.
    """
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "--factory", "asess.demo:app_from_env"]
    argv += ["--host", HOST, "--port", str(port), "--workers", str(workers)]
    argv += ["--no-access-log", "--log-level", "warning", "--backlog", "4096"]
    log = workdir / "uvicorn.log"
    with running(argv, log, port=port, env=subprocess_env(**env), cwd=workdir) as server:
        yield server


@dataclass
class Figures:
    """What one run measured."""

    label: str
    requests: int = 0
    seconds: float = 0.0
    errors: int = 0  # transport failures and unexpected answers
    server_errors: int = 0  # 5xx answers
    corrupt: int = 0  # a 200 whose body or stored record does not parse
    lost_updates: int = 0
    statuses: Counter[int] = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def line(self) -> str:
        return (
            f"{self.label}: {self.requests} requests in {self.seconds:.2f}s "
            f"({self.rate:.0f} req/s), {self.errors} errors, {self.server_errors} 5xx, "
            f"{self.corrupt} corrupt, {self.lost_updates} lost updates"
        )


@dataclass
class Visitor:
    """One browser with its own session cookie."""

    cookie: str | None = None
    counted: int = 0  # /counter answers that said "visit N"
    last: int = 0  # the last N it was told
    history: list[int] = field(default_factory=list)

    def headers(self) -> dict[str, str]:
        return {"cookie": f"{COOKIE_NAME}={self.cookie}"} if self.cookie else {}

    def take_cookies(self, response: httpx.Response) -> None:
        for line in response.headers.get_list("set-cookie"):
            name, _, rest = line.partition("=")
            if name.strip() != COOKIE_NAME:
                continue
            value = rest.partition(";")[0]
            expired = "max-age=0" in rest.lower().replace(" ", "")
            self.cookie = None if expired or not value else value


class Clients:
    """``concurrency`` requests in flight over one aiohttp session, answers as httpx.Response.

    The generator shares two cores with the server it loads: httpx (with
    httpcore's pool) spends several milliseconds of CPU per request here,
    aiohttp a tenth of that, so the server is what the figures measure. Every
    Visitor keeps its own cookie, so the session's cookie jar keeps none.
    """

    # The server closes keep-alive connections idle for 5 s (uvicorn's default);
    # a client that reused one at that moment would fail a request the server
    # never saw, so the client lets idle connections go first.
    KEEPALIVE = 4.0

    def __init__(self, base_url: str, concurrency: int) -> None:
        connector = aiohttp.TCPConnector(
            limit=concurrency, limit_per_host=0, keepalive_timeout=self.KEEPALIVE
        )
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=60.0, sock_read=60.0)
        self._session = aiohttp.ClientSession(
            base_url,
            connector=connector,
            timeout=timeout,
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        # aiohttp silently retries an idempotent request once when its
        # connection breaks; a worker dying mid-request must count as an error.
        # The switch is private: should aiohttp drop it, fail here rather than
        # let the retries come back unnoticed.
        assert "_retry_connection" in aiohttp.ClientSession.ATTRS, aiohttp.__version__
        self._session._retry_connection = False
        self._gate = asyncio.Semaphore(concurrency)

    async def get(self, path: str, headers: dict[str, str]) -> httpx.Response:
        async with self._gate, self._session.get(path, headers=headers) as answer:
            body = await answer.read()
            return httpx.Response(answer.status, headers=answer.raw_headers, content=body)

    async def __aenter__(self) -> Clients:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._session.close()


async def visit(
    client: Clients, visitor: Visitor, figures: Figures, path: str = "/counter"
) -> httpx.Response | None:
    """One request as ``visitor``; counts it in ``figures``. None on a transport failure."""
    figures.requests += 1
    try:
        response = await client.get(path, visitor.headers())
    except aiohttp.ClientError:
        figures.errors += 1
        return None
    figures.statuses[response.status_code] += 1
    # Like a browser, take Set-Cookie from any answer: an error that handed out
    # a fresh session would show up as a counter starting again.
    visitor.take_cookies(response)
    if response.status_code >= 500:
        figures.server_errors += 1
        figures.errors += 1
        return response
    if response.status_code != 200:
        figures.errors += 1
        return response
    if path == "/counter":
        match = VISIT.fullmatch(response.content)
        if match is None:
            figures.corrupt += 1
            return response
        visitor.counted += 1
        visitor.last = int(match.group(1))
        visitor.history.append(visitor.last)
    return response


async def stored_counter(client: Clients, visitor: Visitor, figures: Figures) -> int:
    """The counter the server holds for ``visitor`` (0: none); a bad record counts as corrupt."""
    response = await client.get("/whoami", visitor.headers())
    if response.status_code != 200:
        figures.errors += 1
        return 0
    try:
        data = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        figures.corrupt += 1
        return 0
    counter = data.get("counter", 0) if isinstance(data, dict) else None
    if not isinstance(counter, int) or isinstance(counter, bool) or counter < 0:
        figures.corrupt += 1
        return 0
    return counter


async def hot_session(base_url: str, requests: int, concurrency: int) -> tuple[Figures, int]:
    """``requests`` on ONE session: one creates it, the rest go out all at once.

    Returns the figures and the counter the server holds at the end.
    """
    figures = Figures(f"{requests} concurrent requests on one session")
    async with Clients(base_url, concurrency) as client:
        owner = Visitor()
        started = time.perf_counter()
        await visit(client, owner, figures)
        if owner.cookie is None:
            raise AssertionError(f"the first request set no session cookie: {figures.statuses}")
        # Every request carries the same cookie; none may change it (no regenerate here).
        clones = [Visitor(cookie=owner.cookie) for _ in range(requests - 1)]
        await asyncio.gather(*(visit(client, v, figures) for v in clones))
        figures.seconds = time.perf_counter() - started
        final = await stored_counter(client, owner, figures)
        successes = owner.counted + sum(v.counted for v in clones)
        figures.lost_updates = successes - final
        # A clone told a new cookie means its session was replaced by a fresh one.
        figures.corrupt += sum(1 for v in clones if v.cookie != owner.cookie)
    return figures, final


async def many_sessions(
    base_url: str, requests: int, sessions: int, concurrency: int
) -> tuple[Figures, list[Visitor]]:
    """``requests`` spread over ``sessions`` visitors, each sending its own in order."""
    figures = Figures(f"{requests} requests over {sessions} sessions")
    per_session = [requests // sessions + (i < requests % sessions) for i in range(sessions)]
    visitors = [Visitor() for _ in range(sessions)]

    async def browse(visitor: Visitor, count: int) -> None:
        for _ in range(count):
            await visit(client, visitor, figures)

    async with Clients(base_url, concurrency) as client:
        started = time.perf_counter()
        await asyncio.gather(*(browse(v, n) for v, n in zip(visitors, per_session)))
        figures.seconds = time.perf_counter() - started
        stored_counters = await asyncio.gather(
            *(stored_counter(client, v, figures) for v in visitors)
        )
        for visitor, stored in zip(visitors, stored_counters):
            figures.lost_updates += max(visitor.counted - stored, 0)
            if stored > visitor.counted:
                figures.corrupt += 1  # more increments than answers: not ours
    return figures, visitors
