"""The spec's counter as a plain ASGI app, for ``make run`` and end-to-end tests.

Routes: ``/counter`` (the spec's example), ``/big?size=N`` (stores N bytes, to
show chunked cookies), ``/whoami`` (the session's data as JSON), ``/logout``.
"""

from __future__ import annotations

import os
from urllib.parse import parse_qs

import orjson

from ._context import session
from ._manager import SessionManager
from ._types import Receive, Scope, Send
from .middleware import SessionMiddleware

BACKENDS = ("cookies", "files", "redis", "memory")


async def counter_app(scope: Scope, receive: Receive, send: Send) -> None:
    """A tiny router: no framework, so the demo shows asess alone."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    status, ctype = 200, b"text/plain; charset=utf-8"
    if path == "/counter":
        session.counter = (session.counter or 0) + 1
        body = b"This is your %d visit" % session.counter
    elif path == "/big":
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        size = min(int(query.get("size", ["6000"])[0]), 100_000)
        if "size" in query:
            session.blob = os.urandom(size // 2).hex()
        body = b"%d" % len(session.blob or "")
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


def build_manager(
    backend: str, *, path: str = "sessions", redis_url: str | None = None, locking: bool = False
) -> SessionManager:
    """The demo's manager for ``backend``; cookie keys come from ASESS_DEMO_KEY."""
    if backend == "cookies":
        key = os.environ.get("ASESS_DEMO_KEY") or os.urandom(32).hex()
        return SessionManager.cookies(key)
    if backend == "files":
        return SessionManager.files(path=path, locking=locking)
    if backend == "redis":
        url = redis_url or os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
        return SessionManager.redis(url, locking=locking)
    if backend == "memory":
        return SessionManager.memory(locking=locking)
    raise ValueError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")


def build_app(backend: str = "files", **options: str | bool | None) -> SessionMiddleware:
    return SessionMiddleware(counter_app, build_manager(backend, **options))  # type: ignore[arg-type]


def app_from_env() -> SessionMiddleware:
    """Factory for ``uvicorn --factory asess.demo:app_from_env`` (ASESS_DEMO_* variables)."""
    return build_app(
        os.environ.get("ASESS_DEMO_BACKEND", "files"),
        path=os.environ.get("ASESS_DEMO_PATH", "sessions"),
        redis_url=os.environ.get("REDIS_URL"),
        locking=os.environ.get("ASESS_DEMO_LOCKING", "") not in ("", "0"),
    )
