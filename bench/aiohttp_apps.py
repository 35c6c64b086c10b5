"""The counter page on an aiohttp app: aiohttp-session beside asess.aiohttp, same app.

aiohttp has no in-process entry point comparable to ASGI's ``__call__``, so
these subjects serve the page from a real aiohttp server on a loopback port
and drive it with one ``aiohttp.ClientSession`` (a shared pool of 100
connections); every simulated browser keeps its own cookies in the bench's
jar. Both sides pay the same HTTP and TCP cost, so the rows compare with each
other, not with the in-process ASGI rows. The handler is the same function
for both; only the ``get_session`` it calls and the ``setup`` line differ, as
for a user switching.
"""

from __future__ import annotations

import warnings
from collections.abc import Awaitable, Callable
from typing import Any

from .asgi import CookieJar
from .peers import EXPIRE, SECRET
from .redis_server import KEY_PREFIX
from .runner import Step, Unavailable
from .subjects import BenchError, ServiceSubject

PATH = "/counter"
FERNET_KEY = b"bench-fernet-key-0123456789abcde"  # 32 bytes, as EncryptedCookieStorage takes


def _counter(get_session: Callable[[Any], Awaitable[Any]]) -> Any:
    from aiohttp import web

    async def counter(request: web.Request) -> web.Response:
        session = await get_session(request)
        session["counter"] = session.get("counter", 0) + 1
        return web.Response(text=f"This is your {session['counter']} visit")

    return counter


class AiohttpCounter(ServiceSubject):
    """Simulated browsers requesting ``/counter`` from an aiohttp app over loopback TCP."""

    def __init__(
        self,
        name: str,
        family: str,
        install: Callable[[Any], Awaitable[Callable[[Any], Awaitable[Any]]]],
        note: str = "aiohttp app, loopback TCP",
    ) -> None:
        self.name = name
        self.family = family
        self.note = note
        self._install = install
        self._runner: Any = None
        self._http: Any = None
        self._url = ""
        self._closers: list[Callable[[], Awaitable[None]]] = []

    async def open(self) -> None:
        try:
            import aiohttp
            from aiohttp import web
        except ImportError as exc:
            raise Unavailable(f"aiohttp is not installed ({exc})") from None
        app = web.Application()
        get_session = await self._install(app)
        app.router.add_get(PATH, _counter(get_session))
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self._url = f"http://127.0.0.1:{port}{PATH}"
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=100), cookie_jar=aiohttp.DummyCookieJar()
        )

    async def client(self, index: int) -> Step:
        http, url, name = self._http, self._url, self.name
        jar = CookieJar()
        count = 0

        async def step() -> None:
            nonlocal count
            cookie = jar.header()
            headers = {"Cookie": cookie.decode("latin-1")} if cookie else {}
            async with http.get(url, headers=headers) as response:
                body = await response.read()
                for line in response.headers.getall("Set-Cookie", ()):
                    jar.absorb(line.encode("latin-1"))
                status = response.status
            count += 1
            if status != 200 or body != f"This is your {count} visit".encode():
                raise BenchError(f"{name}: expected visit {count}, got {status} {body[:80]!r}")

        return step

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
        if self._runner is not None:
            await self._runner.cleanup()
        for closer in self._closers:
            await closer()


def aiohttp_session_app(redis_url: str | None) -> AiohttpCounter:
    """aiohttp-session: ``EncryptedCookieStorage`` (Fernet), or ``RedisStorage``."""
    subject: AiohttpCounter

    async def install(app: Any) -> Callable[[Any], Awaitable[Any]]:
        import aiohttp_session

        # aiohttp-session keys the request by str, which aiohttp now warns about once.
        warnings.filterwarnings("ignore", message="It is recommended to use web.RequestKey")
        storage: Any
        if redis_url is None:
            from aiohttp_session.cookie_storage import EncryptedCookieStorage

            storage = EncryptedCookieStorage(FERNET_KEY, max_age=EXPIRE)
        else:
            import redis.asyncio as aioredis
            from aiohttp_session.redis_storage import RedisStorage

            client = aioredis.from_url(redis_url)
            subject._closers.append(client.aclose)
            storage = RedisStorage(
                client, max_age=EXPIRE, key_factory=lambda: KEY_PREFIX + _token()
            )
        aiohttp_session.setup(app, storage)
        get_session: Callable[[Any], Awaitable[Any]] = aiohttp_session.get_session
        return get_session

    kind = "Fernet cookie" if redis_url is None else "redis"
    subject = AiohttpCounter(f"aiohttp-session {kind} (aiohttp app)", "aiohttp-session", install)
    return subject


def asess_aiohttp_app(redis_url: str | None) -> AiohttpCounter:
    """asess.aiohttp: modern cookies, or Redis, on the same app."""
    subject: AiohttpCounter

    async def install(app: Any) -> Callable[[Any], Awaitable[Any]]:
        try:
            import asess
            import asess.aiohttp as adapter
        except ImportError as exc:
            raise Unavailable(f"asess.aiohttp is not importable ({exc})") from None
        if redis_url is None:
            manager = asess.SessionManager.cookies(SECRET, expire=EXPIRE, encryption_mode="modern")
        else:
            manager = asess.SessionManager.redis(
                redis_url, prefix=KEY_PREFIX + "asess-aiohttp:", expire=EXPIRE
            )
            subject._closers.append(manager.aclose)
        adapter.setup(app, manager)
        get_session: Callable[[Any], Awaitable[Any]] = adapter.get_session
        return get_session

    kind = "cookies modern" if redis_url is None else "redis"
    subject = AiohttpCounter(f"asess.aiohttp {kind} (aiohttp app)", "asess", install)
    return subject


def _token() -> str:
    import os

    return os.urandom(16).hex()
