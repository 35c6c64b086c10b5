"""Small ASGI apps and clients shared by the tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from asess import Session, SessionManager, SessionMiddleware, session

Handler = Callable[[Session, dict[str, Any]], Awaitable[Any]]


def plain_app(handler: Handler) -> Any:
    """A bare ASGI app that runs ``handler(session, scope)`` and answers its result as text."""

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        result = await handler(scope["session"], scope)
        body = str(result).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    return app


async def counter(s: Session, scope: dict[str, Any]) -> int:
    session.counter = (session.counter or 0) + 1
    return int(session.counter)


def client(manager: SessionManager, handler: Handler = counter, **kw: Any) -> httpx.AsyncClient:
    app = SessionMiddleware(plain_app(handler), manager, **kw)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver")


def set_cookies(response: httpx.Response) -> list[str]:
    return response.headers.get_list("set-cookie")


def cookie_value(response: httpx.Response, name: str) -> str | None:
    for line in set_cookies(response):
        key, _, rest = line.partition("=")
        if key == name:
            return rest.partition(";")[0]
    return None
