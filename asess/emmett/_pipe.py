"""``SessionPipe``: the Emmett pipe that drives asess's one lifecycle.

Emmett runs a pipe's ``open_request`` before the handler and ``close_request``
after it; this pipe creates the request's :class:`~asess.Lifecycle` in the
first, binds its session to ``current.session`` (so ``from emmett import
session`` is the asess session), and in the second commits it and hands the
Set-Cookie lines to Emmett's response. Websockets get the session the same
way. A handler that streams its response sends headers before
``close_request``, and Emmett tells pipes synchronously (``on_stream``), too
late for asynchronous work; so the pipe wraps the request's
``response.stream`` to commit the session, asynchronously, just before the
stream starts.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from emmett.ctx import current  # type: ignore[import-untyped]
from emmett_core.http.response import HTTPBytesResponse
from emmett_core.pipeline.pipe import Pipe

from .._http import (
    UNAVAILABLE_BODY,
    UNAVAILABLE_ERRORS,
    UNAVAILABLE_HEADERS,
    UNAVAILABLE_STATUS,
    log_unavailable,
    merge_vary,
)
from .._lifecycle import Lifecycle
from .._manager import SessionManager as CoreManager
from ._attributes import EmmettPipeAttributes
from ._clear import Clearing, start_clear
from ._response import add_set_cookies
from ._session_data import EmmettSession

logger = logging.getLogger("asess.emmett")

# Where a request's lifecycle waits, on Emmett's per-request context object,
# between open_request and close_request (Emmett runs them in separate tasks,
# so a context variable set in one would not be seen by the other).
_LIFECYCLE = "_asess_lifecycle"


class SessionPipe(EmmettPipeAttributes, Pipe):
    """Sessions for an Emmett app, from an asess :class:`~asess.SessionManager`.

    Build it with :class:`asess.emmett.SessionManager`'s factories, or directly
    around any manager: ``app.pipeline = [SessionPipe(manager)]``.

    The session is loaded in ``open_request`` when the request carries a
    session cookie. With ``locking=True`` it is loaded (and locked) in the
    pipe step instead, after every pipe's ``open_request`` has succeeded:
    Emmett skips ``close_request`` when an ``open_request`` fails, and a lock
    taken before that could not be released.
    """

    def __init__(
        self,
        manager: CoreManager,
        *,
        owned: Callable[[], Awaitable[None]] | None = None,
        emmett_args: Mapping[str, Any] | None = None,
    ):
        self.manager = manager
        self._emmett_args = emmett_args or {}
        self._owned_close = owned
        self._late_load = manager.locking

    def __repr__(self) -> str:
        return f"<SessionPipe {self.manager!r}>"

    # -- HTTP ----------------------------------------------------------------

    async def open_request(self) -> None:
        ctx = current.ctx
        lifecycle = self._start(ctx, self._cookie_header(ctx.request))
        _hook_stream(self, ctx.response, lifecycle)
        if not self._late_load:
            await self._load(ctx, lifecycle, websocket=False)

    async def pipe_request(self, next_pipe: Any, **kwargs: Any) -> Any:
        if self._late_load:
            ctx = current.ctx
            lifecycle = getattr(ctx, _LIFECYCLE, None)
            if lifecycle is not None:
                await self._load(ctx, lifecycle, websocket=False)
        return await next_pipe(**kwargs)

    async def close_request(self) -> None:
        ctx = current.ctx
        lifecycle: Lifecycle | None = ctx.__dict__.pop(_LIFECYCLE, None)
        response = ctx.response
        _unhook_stream(response)
        if lifecycle is None:
            return
        try:
            if not lifecycle.cookie_sent:
                await self._send_cookies(lifecycle, response)
        finally:
            # Saves what changed after a stream took the cookies; frees the lease.
            _flatten(lifecycle)
            await lifecycle.finish()

    def on_stream(self) -> None:
        lifecycle: Lifecycle | None = getattr(current.ctx, _LIFECYCLE, None)
        if lifecycle is not None and not lifecycle.cookie_sent:
            # Only reached when a stream starts without response.stream():
            # the session is still saved in close_request, but no new cookie
            # can reach the client any more.
            logger.warning(
                "a response stream started before its session was committed: the session "
                "cookie is not sent with it (start streams with response.stream())"
            )

    async def _send_cookies(self, lifecycle: Lifecycle, response: Any) -> None:
        self._before_commit(lifecycle.session)
        _flatten(lifecycle)
        lines = await lifecycle.commit()
        add_set_cookies(response.cookies, lines)
        if lifecycle.session.accessed:
            response.headers["vary"] = merge_vary(response.headers.get("vary"))

    # -- websockets ------------------------------------------------------------

    async def open_ws(self) -> None:
        ctx = current.ctx
        lifecycle = self._start(ctx, self._cookie_header(ctx.websocket))
        # Emmett's websocket handshake carries no Set-Cookie: from the start, a
        # save that needs a new cookie must fail loudly rather than be lost.
        lifecycle.cookie_sent = True
        if not self._late_load:
            await self._load(ctx, lifecycle, websocket=True)

    async def pipe_ws(self, next_pipe: Any, **kwargs: Any) -> Any:
        if self._late_load:
            ctx = current.ctx
            lifecycle = getattr(ctx, _LIFECYCLE, None)
            if lifecycle is not None:
                await self._load(ctx, lifecycle, websocket=True)
        return await next_pipe(**kwargs)

    async def close_ws(self) -> None:
        ctx = current.ctx
        lifecycle: Lifecycle | None = ctx.__dict__.pop(_LIFECYCLE, None)
        if lifecycle is None:
            return
        session = lifecycle.session
        if session.loaded and session.modified and (session.is_new or not self.manager.server_side):
            # No cookie can reach the client: a new session, or new cookie
            # data, would be stored where nobody can find it again.
            logger.warning(
                "session changes made in a websocket are dropped: only an existing "
                "server-side session (files, redis) can be saved there"
            )
            await lifecycle.abandon()
            return
        # Persists changes to the existing record (the lifecycle refuses what
        # would need a new cookie, such as regenerate()), then frees the lease.
        _flatten(lifecycle)
        await lifecycle.finish()

    # -- shared ---------------------------------------------------------------

    def _start(self, ctx: Any, cookie_header: str | None) -> Lifecycle:
        lifecycle = self.manager.lifecycle(
            cookie_header, autoload=True, session_factory=EmmettSession
        )
        setattr(ctx, _LIFECYCLE, lifecycle)
        self._bind(lifecycle.session)
        # Bound before any await, so pipes opening alongside find it.
        ctx.session = lifecycle.session
        return lifecycle

    async def _load(self, ctx: Any, lifecycle: Lifecycle, *, websocket: bool) -> None:
        try:
            await lifecycle.start()
        except BaseException as exc:
            ctx.__dict__.pop(_LIFECYCLE, None)
            await lifecycle.abandon()
            if websocket or not isinstance(exc, UNAVAILABLE_ERRORS):
                raise
            log_unavailable(self.manager.outages, exc)
            headers = {k: v for k, v in UNAVAILABLE_HEADERS if k != "content-length"}
            raise HTTPBytesResponse(UNAVAILABLE_STATUS, UNAVAILABLE_BODY, headers=headers) from exc

    def clear(self) -> Clearing:
        """Remove every session this pipe's store holds; see :class:`Clearing`.

        Raises:
            NotImplementedError: cookie sessions live in the clients' cookies and
                cannot be cleared server-side (as in Emmett): change the key.
        """
        if not self.manager.server_side:
            raise NotImplementedError(
                "cookie sessions cannot be cleared server-side: change the 'key' parameter "
                "to invalidate existing ones (or rotate it: SessionManager.cookies([new, old]))"
            )
        return start_clear(self.manager.clear())

    async def aclose(self) -> None:
        """Release the store's connections (and a Redis client this pipe created)."""
        await self.manager.aclose()
        if self._owned_close is not None:
            await self._owned_close()


def _flatten(lifecycle: Lifecycle) -> None:
    session = lifecycle.session
    if isinstance(session, EmmettSession):
        session._flatten_rows()


def _hook_stream(pipe: SessionPipe, response: Any, lifecycle: Lifecycle) -> None:
    stream = response.stream

    async def stream_with_session(target: Any, item_wrapper: Any = None) -> Any:
        if not lifecycle.cookie_sent:
            await pipe._send_cookies(lifecycle, response)
        return await stream(target, item_wrapper=item_wrapper)

    try:
        response.stream = stream_with_session
    except AttributeError:
        logger.debug("this Emmett response cannot be hooked; on_stream will warn instead")


def _unhook_stream(response: Any) -> None:
    # Drops the per-request wrapper (and the reference cycle it makes).
    attributes = getattr(response, "__dict__", None)
    if attributes is not None:
        attributes.pop("stream", None)
