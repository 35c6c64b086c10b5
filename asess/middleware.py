"""``SessionMiddleware``: pure ASGI 3 middleware driving the lifecycle.

It reads the Cookie header, runs the lifecycle around the app, puts the Session
at ``scope["session"]`` (so Starlette/FastAPI ``request.session`` works) and
binds ``asess.session``. Set-Cookie goes out with ``http.response.start`` or
``websocket.accept``; ``Vary: Cookie`` only when the app used the session.
Other scope types pass straight through.
"""

from __future__ import annotations

import logging

from ._context import bind, unbind
from ._exceptions import SessionBackendError, SessionLockTimeout
from ._manager import SessionManager
from ._types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("asess")

_START_MESSAGES = ("http.response.start", "websocket.accept")


def cookie_header(scope: Scope) -> str | None:
    """The request's Cookie header(s) as one string, or None."""
    values = [v for k, v in scope.get("headers", ()) if k == b"cookie"]
    if not values:
        return None
    return "; ".join(v.decode("latin-1") for v in values)


class SessionMiddleware:
    """Sessions for any ASGI app: ``SessionMiddleware(app, manager, autoload=True)``.

    With ``autoload=True`` the session is loaded before the app runs (only when
    the request carries a session cookie). With ``autoload=False`` nothing
    touches storage until the app awaits ``session.load()``.
    """

    def __init__(self, app: ASGIApp, manager: SessionManager, *, autoload: bool = True) -> None:
        self.app = app
        self.manager = manager
        self.autoload = autoload

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        lifecycle = self.manager.lifecycle(cookie_header(scope), autoload=False)
        if self.autoload:
            try:
                await lifecycle.load_if_cookie()
            except (SessionBackendError, SessionLockTimeout) as exc:
                await self._unavailable(scope, send, exc)
                await lifecycle.abandon()
                return

        failed = False

        async def send_with_cookie(message: Message) -> None:
            nonlocal failed
            if failed:
                return  # the client already has the 503; drop the app's response
            if message["type"] in _START_MESSAGES:
                try:
                    lines = await lifecycle.commit()
                except (SessionBackendError, SessionLockTimeout) as exc:
                    # The save failed before anything was sent: answer as a load failure does.
                    failed = True
                    await self._unavailable(scope, send, exc)
                    return
                headers = list(message.get("headers", ()))
                headers.extend((b"set-cookie", line.encode("latin-1")) for line in lines)
                if lifecycle.session.accessed:
                    _add_vary_cookie(headers)
                message["headers"] = headers
            await send(message)

        async with lifecycle as session:
            scope["session"] = session
            token = bind(session)
            try:
                await self.app(scope, receive, send_with_cookie)
            finally:
                unbind(token)

    async def _unavailable(self, scope: Scope, send: Send, exc: Exception) -> None:
        logger.error("session store unavailable, answering 503: %s", exc, exc_info=exc)
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1011})
            return
        body = b"Session store unavailable"
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"text/plain; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", b"1"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _add_vary_cookie(headers: list[tuple[bytes, bytes]]) -> None:
    for i, (key, value) in enumerate(headers):
        if key.lower() == b"vary":
            tokens = {t.strip().lower() for t in value.split(b",")}
            if b"cookie" not in tokens and b"*" not in tokens:
                headers[i] = (key, value + b", Cookie")
            return
    headers.append((b"vary", b"Cookie"))
