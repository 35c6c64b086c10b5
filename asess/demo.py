"""The demo: Emmett's counter example and a session page, as a plain ASGI app.

Routes: ``/`` (one page showing the backend, the session's data, id digest,
expiry and cookie size, with buttons), ``POST /count``, ``/grow``,
``/regenerate`` and ``/logout`` (each changes the session and redirects back),
``/counter`` (Emmett's example, text/plain), ``/big?size=N`` (stores N bytes;
without ``size`` it reports the stored length), ``/whoami`` (the data as JSON)
and ``GET /logout``. A session too large for its cookies answers 413 with the
reason instead of failing at response start. No framework is involved, so the
demo shows asess alone; the lifespan protocol closes the store on shutdown.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from typing import cast
from urllib.parse import parse_qs

import orjson

from ._context import current_session, session
from ._cookies import join_chunks, parse_cookie_header
from ._demo_page import PageView, render_page, render_problem
from ._exceptions import SessionTooLarge
from ._inspect import human
from ._manager import SessionManager
from ._types import EncryptionMode, Receive, Scope, Send
from .middleware import SessionMiddleware, cookie_header

BACKENDS = ("cookies", "files", "redis", "memory")
MODES = ("legacy", "modern")
# Far above what three 4 kB cookies hold, so /big can also show the 413.
MAX_BIG = 100_000
GROW_BYTES = 1500  # random bytes per "grow": 3,000 hex characters
MAX_BODY = 64 * 1024  # the forms post nothing; a larger body is not read

_TEXT = b"text/plain; charset=utf-8"
_HTML = b"text/html; charset=utf-8"
_ACTIONS = ("/count", "/grow", "/regenerate", "/logout")
_POST = ((b"allow", b"POST"),)


@dataclass(frozen=True)
class DemoInfo:
    """What the page says about the running backend."""

    label: str  # e.g. "cookies (legacy format)"
    chunks: bool  # data lives in the cookie, split past 4 kB


class Response:
    """A status, a content type, a body, and extra headers (a redirect's Location)."""

    __slots__ = ("body", "ctype", "extra", "status")

    def __init__(
        self,
        status: int,
        body: bytes,
        ctype: bytes = _TEXT,
        extra: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        self.status, self.body, self.ctype, self.extra = status, body, ctype, extra


class Router:
    """The demo's routes; ``asess.session`` is bound by the middleware around it."""

    def __init__(self, manager: SessionManager | None = None, info: DemoInfo | None = None) -> None:
        self.manager = manager
        self.info = info or DemoInfo("asess sessions", chunks=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] == "POST":
            await _drain(receive)
        response = await self._route(scope)
        headers = [
            (b"content-type", response.ctype),
            (b"content-length", b"%d" % len(response.body)),
        ]
        headers.extend(response.extra)
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})

    async def _route(self, scope: Scope) -> Response:
        path, method = scope["path"], scope["method"]
        if path in _ACTIONS and method == "POST":
            problem = await self._act(path)
            return problem or Response(303, b"see /", extra=((b"location", b"/"),))
        if path in _ACTIONS and path != "/logout":
            return Response(405, b"use the buttons on / (this route takes POST)", extra=_POST)
        if path == "/":
            return Response(200, self._page(scope), _HTML)
        if path == "/counter":
            session.counter = (session.counter or 0) + 1
            return Response(200, b"This is your %d visit" % session.counter)
        if path == "/big":
            return await self._big(scope)
        if path == "/whoami":
            return Response(200, orjson.dumps(dict(session.items())), b"application/json")
        if path == "/logout":
            session.invalidate()
            return Response(200, b"bye")
        return Response(404, b"not found: try / or /counter")

    async def _act(self, path: str) -> Response | None:
        if path == "/count":
            session.counter = (session.counter or 0) + 1
        elif path == "/grow":
            blob = (session.blob or "") + os.urandom(GROW_BYTES).hex()
            return await self._store_blob(blob, page=True)
        elif path == "/regenerate":
            session.regenerate()
        else:
            session.invalidate()
        return None

    async def _big(self, scope: Scope) -> Response:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if "size" in query:
            raw = query["size"][0]
            if not raw.isdigit() or int(raw) > MAX_BIG:
                return Response(400, b"size must be an integer from 0 to %d" % MAX_BIG)
            # Random hex does not compress, so the cookie really grows with size.
            problem = await self._store_blob(os.urandom(int(raw) // 2).hex(), page=False)
            if problem is not None:
                return problem
        return Response(200, b"%d" % len(session.blob or ""))

    async def _store_blob(self, blob: str, *, page: bool) -> Response | None:
        """Set ``session.blob``; a 413 (and the session as it was) when it cannot be kept."""
        before = session.blob
        if len(blob) > MAX_BIG:
            reason = (
                f"The demo keeps at most {MAX_BIG:,} characters in a session; this would be "
                f"{len(blob):,}. Log out to start again."
            )
            return _too_large(reason, page)
        session.blob = blob
        if not self.info.chunks:
            return None
        try:
            # Encode now, not at response start, so an oversized cookie becomes a 413 here.
            await session.save()
        except SessionTooLarge as exc:
            if before is None:
                del session.blob
            else:
                session.blob = before
            return _too_large(f"{exc}. The session was left as it was.", page)
        return None

    def _page(self, scope: Scope) -> bytes:
        s = current_session()
        found: dict[str, str] = {}
        if self.manager is not None:
            settings = self.manager.cookie_settings
            found = parse_cookie_header(cookie_header(scope), settings.chunk_names())
        order = self.manager.cookie_settings.chunk_names() if self.manager else []
        cookies = [(n, len(n) + 1 + len(found[n])) for n in order if n in found]
        return render_page(
            PageView(
                backend=self.info.label,
                chunks=self.info.chunks,
                data=dict(s.items()),
                is_new=s.is_new,
                handle=self._handle(s.id, found),
                expiry=self._expiry(s.is_new, s.lifetime),
                cookies=cookies,
            )
        )

    def _handle(self, sid: str | None, found: dict[str, str]) -> str:
        if sid is not None:
            # The id is a bearer credential: show a digest, never the id itself.
            return f"id digest {hashlib.sha256(sid.encode()).hexdigest()[:16]} (SHA-256)"
        if self.info.chunks and self.manager is not None:
            token = join_chunks(found, self.manager.cookie_settings)
            if token:
                digest = hashlib.sha256(token.encode()).hexdigest()[:16]
                return (
                    f"no server-side id: the data is sealed in the cookie (token digest {digest})"
                )
            return "no server-side id: the data will be sealed in the cookie"
        return "no id yet: one is drawn when something is stored"

    def _expiry(self, is_new: bool, lifetime: int | None) -> str:
        if is_new or self.manager is None:
            return "nothing stored, nothing to expire"
        if lifetime == 0:
            return "when the browser closes (a session cookie without Max-Age)"
        ttl = lifetime or self.manager.expire
        at = time.strftime("%H:%M:%S UTC", time.gmtime(time.time() + ttl))
        if self.info.chunks:
            return (
                f"{human(ttl)} after the token was issued; it is re-issued once less than "
                "half is left, so a visit every so often keeps it alive"
            )
        return f"{human(ttl)} after the last request: at {at} unless you come back"


def _too_large(reason: str, page: bool) -> Response:
    if page:
        return Response(413, render_problem("Session too large (413)", reason), _HTML)
    return Response(413, f"413 session too large: {reason}".encode())


async def _drain(receive: Receive) -> None:
    """Read (and drop) a request body, up to MAX_BODY bytes."""
    seen = 0
    while seen <= MAX_BODY:
        message = await receive()
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


#: The routes with no backend details, for wrapping in any SessionMiddleware.
counter_app = Router()


class DemoApp:
    """The demo routes behind :class:`SessionMiddleware`, plus lifespan handling."""

    def __init__(self, manager: SessionManager, info: DemoInfo | None = None) -> None:
        self.manager = manager
        self.http = SessionMiddleware(Router(manager, info), manager)

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
    return DemoApp(manager, describe(backend, mode=mode, path=path, locking=locking))


def describe(backend: str, *, mode: str, path: str, locking: bool) -> DemoInfo:
    """The page's one-line description of ``backend``."""
    if backend == "cookies":
        return DemoInfo(f"cookies ({mode} format)", chunks=True)
    lock = ", locking" if locking else ""
    if backend == "files":
        return DemoInfo(f"files in {os.path.abspath(path)}{lock}", chunks=False)
    if backend == "redis":
        return DemoInfo(f"redis{lock}", chunks=False)
    return DemoInfo(f"memory (one process){lock}", chunks=False)


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
