"""Real Emmett apps for the adapter tests, one per backend, and ways to talk to them.

Apps are built the Emmett way: the ``App`` first (its name and root give the
default cookie name and files path), then the pipe from
:class:`asess.emmett.SessionManager`, then the routes. Requests go through
Emmett's own test client (its RSGI handler), except websockets: Emmett's test
client has none and Emmett 2.8's ``App.__call__`` routes only ``http`` scopes,
so :func:`asgi` hands websocket scopes to Emmett's own ASGI websocket handler
for Starlette's test client.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from emmett import App

from asess.emmett import SessionManager, SessionPipe

KEY = "emmett-adapter-key-" + secrets.token_hex(8)
BACKENDS = ["memory", "cookies-legacy", "cookies-modern", "files", "redis"]
SERVER_SIDE = {"memory", "files", "redis"}


def new_app(root: Path, name: str | None = None) -> App:
    """An Emmett App rooted in ``root`` (Emmett creates its folders there)."""
    name = name or f"app_{uuid.uuid4().hex[:8]}"
    root.mkdir(parents=True, exist_ok=True)
    return App(name, root_path=str(root))


def redis_address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 6379


def pipe_factory(backend: str, request: pytest.FixtureRequest) -> Callable[..., SessionPipe]:
    """Build pipes of ``backend`` (call it after creating the App) with extra options."""
    if backend == "memory":
        return lambda **kw: SessionManager.memory(**kw)
    if backend.startswith("cookies-"):
        mode = backend.partition("-")[2]
        return lambda **kw: SessionManager.cookies(KEY, encryption_mode=mode, **kw)
    if backend == "files":
        return lambda **kw: SessionManager.files(**kw)
    if backend == "redis":
        url = request.getfixturevalue("redis_url")
        if url is None:
            pytest.skip("no redis-server: the Emmett adapter is tested on a real server only")
        prefix = f"emt-test:{uuid.uuid4().hex[:12]}:"
        return lambda **kw: SessionManager.redis(url, prefix=prefix, **kw)
    raise ValueError(backend)


def set_cookie_lines(response: Any) -> list[str]:
    """The Set-Cookie values of an Emmett test client response."""
    return [value for key, value in response.headers if key == "set-cookie"]


def cookie_line(response: Any, name: str) -> str | None:
    for line in set_cookie_lines(response):
        if line.partition("=")[0] == name:
            return line
    return None


def asgi(app: App) -> Any:
    """An ASGI 3 callable for ``app`` that also serves its websocket routes.

    It answers lifespan events itself (Emmett 2.8 has no handler for them), so
    Starlette's test client can keep one event loop for a whole test.
    """

    async def call(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                event = await receive()
                kind = event["type"].rpartition(".")[2]
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        elif scope["type"] == "websocket":
            await app._asgi_handlers["ws"](scope, receive, send)
        else:
            await app(scope, receive, send)

    return call
