"""The spec's counter page, written once per framework, and the client that drives it.

``starlette_counter`` serves ``/counter`` from a Starlette app with whatever
session middleware it is given, reading and writing ``request.session``: the
same app code for asess, Starlette's own middleware and starsessions.
``emmett_counter`` is the spec's example verbatim on an Emmett app with one of
Emmett's own session pipes. ``CounterSubject`` sends each simulated browser's
requests through the app in process and checks the count it gets back.
"""

from __future__ import annotations

import importlib
import os
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .asgi import ASGIApp, CookieJar, get
from .runner import Step
from .subjects import BenchError, ServiceSubject

PATH = "/counter"


def starlette_counter(middleware: Sequence[Any]) -> ASGIApp:
    """A Starlette app serving the counter behind ``middleware`` (``Middleware`` entries)."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def counter(request: Request) -> PlainTextResponse:
        request.session["counter"] = request.session.get("counter", 0) + 1
        return PlainTextResponse(f"This is your {request.session['counter']} visit")

    app: ASGIApp = Starlette(routes=[Route(PATH, counter)], middleware=list(middleware))
    return app


def emmett_counter(pipe_factory: Callable[[], Any], name: str) -> tuple[ASGIApp, str]:
    """An Emmett app with the spec's counter behind ``pipe_factory()``; returns it and its root."""
    emmett: Any = importlib.import_module("emmett")
    session = emmett.session
    root = tempfile.mkdtemp(prefix="asess-bench-emmett-")
    os.makedirs(os.path.join(root, "sessions"), exist_ok=True)
    app = emmett.App(name, root_path=root)
    app.pipeline = [pipe_factory()]

    async def count() -> str:
        session.counter = (session.counter or 0) + 1
        return f"This is your {session.counter} visit"

    app.route(PATH)(count)
    asgi_app: ASGIApp = app
    return asgi_app, root


class CounterSubject(ServiceSubject):
    """Simulated browsers requesting ``/counter`` from an in-process ASGI app."""

    def __init__(
        self,
        name: str,
        family: str,
        build: Callable[[], Awaitable[ASGIApp]],
        cleanup: Callable[[], Awaitable[None]] | None = None,
        note: str = "",
    ) -> None:
        self.name = name
        self.family = family
        self.note = note
        self._build = build
        self._cleanup = cleanup
        self._app: ASGIApp | None = None

    async def open(self) -> None:
        self._app = await self._build()

    async def client(self, index: int) -> Step:
        app = self._app
        assert app is not None, "open() first"
        jar = CookieJar()
        count = 0

        async def step() -> None:
            nonlocal count
            status, body = await get(app, PATH, jar)
            count += 1
            if status != 200 or body != f"This is your {count} visit".encode():
                raise BenchError(f"{self.name}: expected visit {count}, got {status} {body[:80]!r}")

        return step

    async def close(self) -> None:
        if self._cleanup is not None:
            await self._cleanup()


class BareSubject(CounterSubject):
    """The same counter app with no session layer: each browser's data is a plain dict.

    The baseline the cycle's *session overhead* is measured above: the same
    Starlette app, routes and handler (``request.session`` reads and writes a
    dict the client owns, put in the scope by a one-line wrapper), so what a
    subject costs beyond this row is its session layer and nothing else.
    """

    def __init__(self) -> None:
        async def build() -> ASGIApp:
            return starlette_counter([])

        super().__init__(
            "bare app (no session layer)", "plain", build, note="plain dict per client"
        )

    async def client(self, index: int) -> Step:
        app = self._app
        assert app is not None, "open() first"
        data: dict[str, Any] = {}

        async def with_dict(scope: Any, receive: Any, send: Any) -> None:
            scope["session"] = data
            await app(scope, receive, send)

        self._app, inner = with_dict, app
        try:
            return await super().client(index)
        finally:
            self._app = inner
