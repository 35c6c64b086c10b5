"""Emmett's counter example as a plain ASGI app, for ``make run`` and end-to-end tests.

Routes: ``/`` (a small HTML page linking the others), ``/counter`` (Emmett's
example, text/plain), ``/big?size=N`` (stores N bytes, to show chunked
cookies; without ``size`` it reports the stored length), ``/whoami`` (the
session's data as JSON), ``/logout``. No framework is involved, so the demo
shows asess alone; the lifespan protocol closes the store on shutdown.
"""

from __future__ import annotations

import os
from typing import cast
from urllib.parse import parse_qs

import orjson

from ._context import session
from ._manager import SessionManager
from ._types import EncryptionMode, Receive, Scope, Send
from .middleware import SessionMiddleware

BACKENDS = ("cookies", "files", "redis", "memory")
MODES = ("legacy", "modern")
# Far above what three 4 kB cookies hold, so /big can also show SessionTooLarge.
MAX_BIG = 100_000

INDEX = b"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>asess demo</title></head>
<body>
<h1>asess demo</h1>
<ul>
<li><a href="/counter">/counter</a>: Emmett's counter example</li>
<li><a href="/big?size=6000">/big?size=6000</a>: store 6000 bytes (chunked cookies)</li>
<li><a href="/big">/big</a>: how many bytes the session holds</li>
<li><a href="/whoami">/whoami</a>: the session as JSON</li>
<li><a href="/logout">/logout</a>: end the session</li>
</ul>
</body>
</html>
"""

_TEXT = b"text/plain; charset=utf-8"


async def counter_app(scope: Scope, receive: Receive, send: Send) -> None:
    """A tiny router for HTTP requests; ``asess.session`` is bound by the middleware."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    status, ctype = 200, _TEXT
    if path == "/":
        body, ctype = INDEX, b"text/html; charset=utf-8"
    elif path == "/counter":
        session.counter = (session.counter or 0) + 1
        body = b"This is your %d visit" % session.counter
    elif path == "/big":
        status, body = _big(scope)
    elif path == "/whoami":
        body, ctype = orjson.dumps(dict(session.items())), b"application/json"
    elif path == "/logout":
        session.invalidate()
        body = b"bye"
    else:
        status, body = 404, b"not found: try /counter"
    headers = [(b"content-type", ctype), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _big(scope: Scope) -> tuple[int, bytes]:
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if "size" in query:
        raw = query["size"][0]
        if not raw.isdigit() or int(raw) > MAX_BIG:
            return 400, b"size must be an integer from 0 to %d" % MAX_BIG
        # Random hex does not compress, so the cookie really grows with size.
        session.blob = os.urandom(int(raw) // 2).hex()
    return 200, b"%d" % len(session.blob or "")


class DemoApp:
    """The counter routes behind :class:`SessionMiddleware`, plus lifespan handling."""

    def __init__(self, manager: SessionManager) -> None:
        self.manager = manager
        self.http = SessionMiddleware(counter_app, manager)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        await self.http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                # Close pooled connections (Redis) before the server exits.
                await self.manager.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


def build_manager(
    backend: str,
    *,
    mode: str = "legacy",
    path: str = "sessions",
    redis_url: str | None = None,
    locking: bool = False,
) -> SessionManager:
    """The demo's manager for ``backend``; cookie keys come from ASESS_DEMO_KEY.

    Without ASESS_DEMO_KEY each process draws its own key, so ``asess demo``
    sets one before starting several workers.
    """
    if backend == "cookies":
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}: choose one of {', '.join(MODES)}")
        key = os.environ.get("ASESS_DEMO_KEY") or os.urandom(32).hex()
        return SessionManager.cookies(key, encryption_mode=cast(EncryptionMode, mode))
    if backend == "files":
        return SessionManager.files(path=path, locking=locking)
    if backend == "redis":
        url = redis_url or os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
        return SessionManager.redis(url, locking=locking)
    if backend == "memory":
        return SessionManager.memory(locking=locking)
    raise ValueError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")


def build_app(
    backend: str = "files",
    *,
    mode: str = "legacy",
    path: str = "sessions",
    redis_url: str | None = None,
    locking: bool = False,
) -> DemoApp:
    """The demo app for ``backend`` (``mode`` picks the cookie codec)."""
    manager = build_manager(backend, mode=mode, path=path, redis_url=redis_url, locking=locking)
    return DemoApp(manager)


def app_from_env() -> DemoApp:
    """Factory for ``uvicorn --factory asess.demo:app_from_env``.

    Reads ASESS_DEMO_BACKEND (default files), ASESS_DEMO_MODE (legacy or
    modern, for cookies), ASESS_DEMO_PATH (files directory), ASESS_DEMO_KEY
    (cookie key), ASESS_DEMO_LOCKING (1 serializes requests per session) and
    REDIS_URL.
    """
    return build_app(
        os.environ.get("ASESS_DEMO_BACKEND", "files"),
        mode=os.environ.get("ASESS_DEMO_MODE", "legacy"),
        path=os.environ.get("ASESS_DEMO_PATH", "sessions"),
        redis_url=os.environ.get("REDIS_URL"),
        locking=os.environ.get("ASESS_DEMO_LOCKING", "") not in ("", "0"),
    )
