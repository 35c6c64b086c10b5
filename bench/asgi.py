"""A minimal in-process ASGI client with a cookie jar, for the full-cycle scenario.

Requests go straight to the app's ``__call__`` (no sockets, no HTTP parser), so
the figures are the session layer plus the framework, and every subject pays
the same client cost. The jar behaves as a browser does for what the bench
needs: it stores each ``Set-Cookie`` value verbatim (quotes included), drops
cookies that are expired, and sends them all back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]


class CookieJar:
    """The cookies one simulated browser holds."""

    __slots__ = ("cookies",)

    def __init__(self) -> None:
        self.cookies: dict[str, str] = {}

    def header(self) -> bytes | None:
        if not self.cookies:
            return None
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items()).encode("latin-1")

    def absorb(self, set_cookie: bytes) -> None:
        text = set_cookie.decode("latin-1")
        pair, *attrs = text.split(";")
        name, _, value = pair.strip().partition("=")
        expired = False
        for attr in attrs:
            key, _, val = attr.strip().partition("=")
            key = key.lower()
            # Deletion is spelled Max-Age=0 (or less) or an Expires date in the past.
            if key == "max-age" and val.strip().lstrip("-").isdigit():
                expired = int(val) <= 0
            elif key == "expires" and "1970" in val:
                expired = True
        if expired:
            self.cookies.pop(name, None)
        else:
            self.cookies[name] = value


async def _receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def get(app: ASGIApp, path: str, jar: CookieJar) -> tuple[int, bytes]:
    """``GET path`` from ``app`` with the jar's cookies; update the jar; return status, body."""
    headers = [(b"host", b"bench.local"), (b"user-agent", b"asess-bench")]
    cookie = jar.header()
    if cookie is not None:
        headers.append((b"cookie", cookie))
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("ascii"),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("bench.local", 80),
        "state": {},
    }
    status = 0
    body = bytearray()

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            for key, value in message.get("headers", ()):
                if key.lower() == b"set-cookie":
                    jar.absorb(value)
        elif message["type"] == "http.response.body":
            body.extend(message.get("body", b""))

    await app(scope, _receive, send)
    return status, bytes(body)
