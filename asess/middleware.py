"""``SessionMiddleware``: pure ASGI 3 middleware driving the lifecycle.

It reads the Cookie header, runs the lifecycle around the app, puts the Session
at ``scope["session"]`` (so Starlette/FastAPI ``request.session`` works) and
binds ``asess.session``. Set-Cookie goes out with ``http.response.start`` or
``websocket.accept``; ``Vary: Cookie`` only when the app used the session.
A store failure at load or at commit answers 503 (:mod:`asess._http`). Other
scope types pass straight through.
"""

from __future__ import annotations

from ._context import bind, unbind
from ._exceptions import SessionError
from ._http import (
    UNAVAILABLE_BODY,
    UNAVAILABLE_ERRORS,
    UNAVAILABLE_HEADERS,
    UNAVAILABLE_STATUS,
    add_vary_cookie,
    log_unavailable,
)
from ._manager import SessionManager
from ._types import ASGIApp, Message, Receive, Scope, Send
from ._user_index import Device

_START_MESSAGES = ("http.response.start", "websocket.accept")


def cookie_header(scope: Scope) -> str | None:
    """The request's Cookie header(s) as one string, or None."""
    found = None
    for key, value in scope.get("headers", ()):
        if key == b"cookie":
            # HTTP/2 may split the header into several; they join with "; ".
            found = value if found is None else found + b"; " + value
    return None if found is None else found.decode("latin-1")


class SessionMiddleware:
    """Sessions for any ASGI app: ``SessionMiddleware(app, manager, autoload=True)``.

    With ``autoload=True`` the session is loaded before the app runs (storage
    is touched only when the request carries a session cookie). With
    ``autoload=False`` nothing touches storage until the app awaits
    ``session.load()``, and using the session before that raises
    :class:`~asess.SessionNotLoaded`.
    """

    def __init__(
        self,
        app: ASGIApp,
        manager: SessionManager,
        *,
        autoload: bool = True,
        check_on_startup: bool = False,
    ) -> None:
        self.app = app
        self.manager = manager
        self.autoload = autoload
        self.check_on_startup = check_on_startup

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" and self.check_on_startup:
            await _checked_lifespan(self.app, self.manager, scope, receive, send)
            return
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        lifecycle = self.manager.lifecycle(
            cookie_header(scope), autoload=self.autoload, device=_device(self.manager, scope)
        )
        try:
            session = await lifecycle.start()
        except UNAVAILABLE_ERRORS as exc:
            await lifecycle.abandon()
            await _unavailable(self.manager, scope, send, exc)
            return
        except BaseException:
            await lifecycle.abandon()
            raise

        failed = False

        async def send_with_cookie(message: Message) -> None:
            nonlocal failed
            if failed:
                return  # the client already has the 503; drop the app's response
            if message["type"] in _START_MESSAGES:
                try:
                    lines = await lifecycle.commit()
                except UNAVAILABLE_ERRORS as exc:
                    # The save failed before anything was sent: answer as a load failure does.
                    failed = True
                    await _unavailable(self.manager, scope, send, exc)
                    return
                headers = list(message.get("headers", ()))
                headers.extend((b"set-cookie", line.encode("latin-1")) for line in lines)
                if lifecycle.session.accessed:
                    add_vary_cookie(headers)
                message["headers"] = headers
            await send(message)

        scope["session"] = session
        token = bind(session)
        try:
            await self.app(scope, receive, send_with_cookie)
        except BaseException:
            # The app failed (or was cancelled): its half-done changes are not saved.
            await lifecycle.abandon()
            raise
        else:
            await lifecycle.finish()
        finally:
            unbind(token)


async def _checked_lifespan(
    app: ASGIApp, manager: SessionManager, scope: Scope, receive: Receive, send: Send
) -> None:
    """Run the app's lifespan, failing its startup when ``manager.check()`` fails."""
    failure: list[BaseException] = []

    async def receive_checked() -> Message:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                await manager.check()
            except SessionError as exc:
                failure.append(exc)
        return message

    async def send_checked(message: Message) -> None:
        if message["type"] == "lifespan.startup.complete" and failure:
            reason = f"session store check failed: {failure[0]}"
            message = {"type": "lifespan.startup.failed", "message": reason}
        await send(message)

    await app(scope, receive_checked, send_checked)


def _device(manager: SessionManager, scope: Scope) -> Device | None:
    """The client's User-Agent and address, read only when the manager records devices."""
    if not manager.policy.record_devices:
        return None
    agent = next((v for k, v in scope.get("headers", ()) if k == b"user-agent"), None)
    client = scope.get("client")
    return Device(
        user_agent=agent.decode("latin-1")[:512] if agent is not None else None,
        address=str(client[0]) if client else None,
    )


async def _unavailable(
    manager: SessionManager, scope: Scope, send: Send, exc: BaseException
) -> None:
    log_unavailable(manager.outages, exc)
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1011})
        return
    await send(
        {
            "type": "http.response.start",
            "status": UNAVAILABLE_STATUS,
            "headers": [(k.encode(), v.encode()) for k, v in UNAVAILABLE_HEADERS],
        }
    )
    await send({"type": "http.response.body", "body": UNAVAILABLE_BODY})
