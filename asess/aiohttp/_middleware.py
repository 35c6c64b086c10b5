"""aiohttp-session's entry points over asess's lifecycle.

``session_middleware(manager)`` opens one lifecycle per request (nothing is
read until a handler awaits :func:`get_session`) and, before the response
goes out, commits it: Set-Cookie and ``Vary: Cookie`` are added to the
response, or to the ``HTTPException`` a handler raised (a redirect after a
login is a response too). :func:`setup` also hooks ``on_response_prepare``,
so streamed responses and websockets get their cookie when their headers
are sent, as :class:`asess.SessionMiddleware` does for ASGI. A store failure
answers the shared 503 (:mod:`asess._http`); expiry, saving and locking stay
in the lifecycle.
"""

from __future__ import annotations

from typing import Any

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware
from cryptography.fernet import Fernet
from multidict import CIMultiDict

from .._context import bind, unbind
from .._cookies import parse_cookie_header
from .._exceptions import ConfigurationError, SessionError
from .._http import (
    UNAVAILABLE_BODY,
    UNAVAILABLE_ERRORS,
    UNAVAILABLE_HEADERS,
    UNAVAILABLE_STATUS,
    log_unavailable,
    merge_vary,
)
from .._lifecycle import Lifecycle
from .._manager import SessionManager
from ._fernet import FernetCookieReader
from ._session import AiohttpSession

LIFECYCLE_KEY: web.RequestKey[Lifecycle] = web.RequestKey("asess_lifecycle", Lifecycle)
_PREPARE_FAILED: web.RequestKey[bool] = web.RequestKey("asess_prepare_failed", bool)
_FERNET_KEY: web.RequestKey[FernetCookieReader] = web.RequestKey("asess_fernet", FernetCookieReader)


def session_middleware(
    manager: SessionManager,
    *,
    fernet_key: str | bytes | Fernet | None = None,
    fernet_max_age: int | None = None,
) -> Middleware:
    """The middleware: ``web.Application(middlewares=[session_middleware(manager)])``.

    Args:
        manager: the asess :class:`~asess.SessionManager` (cookies, files, Redis...).
        fernet_key: the key aiohttp-session's ``EncryptedCookieStorage`` used; its
            cookies (under the manager's ``cookie_name``) are then read and
            re-issued in asess's format. Off by default.
        fernet_max_age: that storage's ``max_age``: older cookies are refused.
    """
    if not isinstance(manager, SessionManager):
        raise ConfigurationError(
            f"got {type(manager).__name__}; pass an asess.SessionManager "
            "(e.g. SessionManager.cookies(key, encryption_mode='modern')) instead of a storage"
        )
    reader = None if fernet_key is None else FernetCookieReader(fernet_key, fernet_max_age)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        lifecycle = manager.lifecycle(
            request.headers.get(hdrs.COOKIE), autoload=False, session_factory=AiohttpSession
        )
        request[LIFECYCLE_KEY] = lifecycle
        if reader is not None:
            request[_FERNET_KEY] = reader
        token = bind(lifecycle.session)
        try:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                await _commit(lifecycle, exc.headers)  # redirects carry the cookie
                raise
            if not response.prepared:
                await _commit(lifecycle, response.headers)
        except web.HTTPException:
            await lifecycle.finish()
            raise
        except UNAVAILABLE_ERRORS as exc:
            await lifecycle.abandon()
            if lifecycle.cookie_sent:
                raise  # the response has started: too late for a 503
            log_unavailable(manager.outages, exc)
            unavailable = web.Response(
                status=UNAVAILABLE_STATUS,
                body=UNAVAILABLE_BODY,
                headers={k: v for k, v in UNAVAILABLE_HEADERS if k != "content-length"},
            )
            if request.get(_PREPARE_FAILED):
                # The failed prepare() already switched the connection's writer to
                # chunked framing; frame the 503 the same way.
                unavailable.enable_chunked_encoding()
            return unavailable
        except BaseException:
            await lifecycle.abandon()  # a failed handler's changes are not saved
            raise
        else:
            await lifecycle.finish()
            return response
        finally:
            unbind(token)

    return middleware


async def _on_response_prepare(request: web.Request, response: web.StreamResponse) -> None:
    """Streamed responses and websockets: commit as their headers go out."""
    lifecycle = request.get(LIFECYCLE_KEY)
    if lifecycle is None:
        return
    try:
        await _commit(lifecycle, response.headers)
    except UNAVAILABLE_ERRORS:
        request[_PREPARE_FAILED] = True  # the middleware answers 503
        raise


async def _commit(lifecycle: Lifecycle, headers: CIMultiDict[str]) -> None:
    if lifecycle.cookie_sent:
        return
    for line in await lifecycle.commit():
        headers.add(hdrs.SET_COOKIE, line)
    if lifecycle.session.accessed:
        headers[hdrs.VARY] = merge_vary(headers.get(hdrs.VARY))


def setup(
    app: web.Application,
    manager: SessionManager,
    *,
    fernet_key: str | bytes | Fernet | None = None,
    fernet_max_age: int | None = None,
) -> None:
    """Install sessions on ``app``: the middleware plus the response-prepare hook."""
    app.middlewares.append(
        session_middleware(manager, fernet_key=fernet_key, fernet_max_age=fernet_max_age)
    )
    app.on_response_prepare.append(_on_response_prepare)


def _lifecycle(request: web.Request) -> Lifecycle:
    if LIFECYCLE_KEY not in request:
        raise SessionError(
            "no asess session on this request: call asess.aiohttp.setup(app, manager) "
            "(or add session_middleware(manager) to the application's middlewares)"
        )
    return request[LIFECYCLE_KEY]


async def get_session(request: web.Request) -> AiohttpSession:
    """The request's session, loaded (the store is read once, on the first call).

    Raises:
        SessionError: the application has no asess session middleware.
        SessionBackendError: the store failed; the middleware answers 503.
    """
    lifecycle = _lifecycle(request)
    session = lifecycle.session
    assert isinstance(session, AiohttpSession)
    if not session.loaded:
        await session.load()
        reader = request.get(_FERNET_KEY)
        if reader is not None and session.is_new and lifecycle.has_cookie:
            _adopt(session, request, reader, lifecycle)
    session.mark_accessed()
    return session


def _adopt(
    session: AiohttpSession,
    request: web.Request,
    reader: FernetCookieReader,
    lifecycle: Lifecycle,
) -> None:
    name = lifecycle.policy.cookies.name
    value = parse_cookie_header(request.headers.get(hdrs.COOKIE), [name]).get(name)
    data: dict[str, Any] | None = None
    if value is not None:
        data = reader.read(value, lifecycle.policy.clock.now())
    if data:
        dict.update(session, data)
        session.mark_modified()  # re-issued in asess's format at commit


async def new_session(request: web.Request) -> AiohttpSession:
    """Start over: the old session is ended and what the handler stores gets a new id.

    Call it at login, as with aiohttp-session (it also prevents session fixation).
    """
    session = await get_session(request)
    session.invalidate()
    return session
