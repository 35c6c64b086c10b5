"""The pipe and session objects Emmett code reaches, next to Emmett's own for the same arguments.

Each factory of :class:`asess.emmett.SessionManager` is built beside
``emmett.sessions.SessionManager``'s with the same arguments, and every
attribute Emmett's pipe has is compared. Then a pipe is driven by hand the way
emmett-core's own session tests drive one: a request context, ``open_request``,
``close_request``, and the response's cookies put into ``request.cookies``.
"""

from __future__ import annotations

import asyncio
import os
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from emmett.ctx import RequestContext, current
from emmett.rsgi.wrappers import Response
from emmett.sessions import SessionManager as EmmettManager
from emmett_core.datastructures import sdict
from emmett_core.protocols.rsgi.test_client.scope import ScopeBuilder
from emmett_core.protocols.rsgi.wrappers import Request

from asess._backends.files_format import TEMP_SUFFIX
from asess.emmett import SessionManager
from tests.emmett_helpers import KEY, cookie_line, new_app, pipe_factory

COMMON = ["current", "expire", "secure", "samesite", "domain", "cookie_name", "cookie_data"]
OWN = {
    "cookies": ["key", "compression_level"],
    "files": ["_filename_template", "_path", "_fs_mode"],
    "redis": ["redis", "prefix"],
}
EVERY_OWN = sorted({name for names in OWN.values() for name in names} | {"_fs_transaction_suffix"})
OPTIONS = {
    "expire": 120,
    "secure": True,
    "samesite": "Strict",
    "domain": "example.com",
    "cookie_name": "shop_session",
    "cookie_data": {"path": "/shop"},
}


@pytest.fixture
def app(tmp_path: Path) -> Any:
    return new_app(tmp_path)


def pipes(kind: str, **kw: Any) -> tuple[Any, Any]:
    """Emmett's pipe and asess's, built with the same arguments."""
    if kind == "cookies":
        return EmmettManager.cookies(KEY, **kw), SessionManager.cookies(KEY, **kw)
    if kind == "files":
        return EmmettManager.files(**kw), SessionManager.files(**kw)
    client = redis.Redis(host="127.0.0.1", port=6379)
    return EmmettManager.redis(client, **kw), SessionManager.redis(client, **kw)


@pytest.mark.parametrize("kind", ["cookies", "files", "redis"])
@pytest.mark.parametrize("options", [{}, OPTIONS], ids=["defaults", "given"])
async def test_attributes_have_emmetts_values(app: Any, kind: str, options: Any) -> None:
    extra = {"compression_level": 6} if kind == "cookies" and options else {}
    if kind == "files" and options:
        extra = {"filename_template": "s_%s.data"}
    if kind == "redis" and options:
        extra = {"prefix": "shop:"}
    emmett_pipe, asess_pipe = pipes(kind, **options, **extra)
    try:
        for name in COMMON + OWN[kind]:
            assert getattr(asess_pipe, name) == getattr(emmett_pipe, name), name
        for name in EVERY_OWN:
            # An attribute only another kind of Emmett pipe has is missing here too.
            assert hasattr(asess_pipe, name) is hasattr(emmett_pipe, name), name
    finally:
        await asess_pipe.aclose()


async def test_files_pipe_names_its_own_temporary_suffix(app: Any, tmp_path: Path) -> None:
    emmett_pipe, asess_pipe = pipes("files")
    # Temporary files are asess's, so the attribute gives asess's suffix.
    assert asess_pipe._fs_transaction_suffix == TEMP_SUFFIX
    assert emmett_pipe._fs_transaction_suffix != TEMP_SUFFIX
    other = SessionManager.files(path=tmp_path / "elsewhere")
    assert other._path == os.fspath(tmp_path / "elsewhere")


async def test_redis_pipe_keeps_the_client_it_was_given(app: Any) -> None:
    client = redis.Redis(host="127.0.0.1", port=6379)
    pipe = SessionManager.redis(client)
    try:
        assert pipe.redis is client
    finally:
        await pipe.aclose()


def test_attributes_are_not_settable(app: Any) -> None:
    pipe = SessionManager.cookies(KEY)
    with pytest.raises(AttributeError):
        pipe.expire = 10
    with pytest.raises(AttributeError, match="cookies"):
        SessionManager.files().key


# -- driving the pipe by hand -------------------------------------------------


@pytest.fixture
def http_ctx(app: Any) -> Iterator[Any]:
    """A request context as emmett-core's tests build one, bound to ``current``."""
    scope = ScopeBuilder(path="/").get_data()[0]
    token = current._init_(RequestContext(app, Request(scope, scope.path, None), Response(None)))
    yield current
    current._close_(token)


def next_request(ctx: Any) -> None:
    """The browser sends back what the response set, in ``request.cookies``."""
    ctx.request.cookies = ctx.response.cookies
    ctx.response = Response(None)
    ctx.session = None


BACKENDS = ["cookies-legacy", "cookies-modern", "files", "redis"]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_driven_by_hand_through_request_cookies(
    http_ctx: Any, backend: str, request: pytest.FixtureRequest
) -> None:
    pipe = pipe_factory(backend, request)(cookie_name="foo_session", domain="localhost")
    try:
        await pipe.open_request()
        expected = 3600 if backend.startswith("cookies") else None
        assert http_ctx.session._expiration == expected  # as Emmett gives it
        http_ctx.session.user = "ann"
        await pipe.close_request()
        cookie = str(http_ctx.response.cookies)
        assert "foo_session=" in cookie and "Domain=localhost;" in cookie

        next_request(http_ctx)
        await pipe.open_request()
        assert http_ctx.session.user == "ann"
        assert http_ctx.session._expiration == expected
        assert http_ctx.session._modified is False
    finally:
        await pipe.aclose()


async def test_always_send_cookie_answers_an_empty_session_with_a_cookie(http_ctx: Any) -> None:
    """What emmett-core's own cookie test expects: a cookie even for an untouched session."""
    plain = SessionManager.cookies(KEY, secure=True, cookie_name="foo_session")
    await plain.open_request()
    await plain.close_request()
    assert "foo_session" not in str(http_ctx.response.cookies)  # asess's default

    next_request(http_ctx)
    pipe = SessionManager.cookies(
        KEY, secure=True, cookie_name="foo_session", always_send_cookie=True
    )
    await pipe.open_request()
    assert http_ctx.session._expiration == 3600
    await pipe.close_request()
    cookie = str(http_ctx.response.cookies)
    assert "foo_session=" in cookie and "secure" in cookie.lower()
    next_request(http_ctx)
    await pipe.open_request()
    assert http_ctx.session._expiration == 3600 and dict(http_ctx.session) == {}


@pytest.fixture
def client_loop() -> Iterator[None]:
    """The event loop Emmett's test client runs on, closed afterwards.

    The client takes the thread's loop, or makes one and leaves it open; the
    asynchronous tests around this module's synchronous ones replace the
    thread's loop, and a forgotten one would be reported when collected.
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield
    asyncio.set_event_loop(None)
    loop.close()


@pytest.mark.usefixtures("client_loop")
def test_always_send_cookie_renews_the_token_on_every_response(app: Any) -> None:
    app.pipeline = [SessionManager.cookies(KEY, always_send_cookie=True)]

    @app.route("/")
    async def index() -> str:
        return "ok"

    browser = app.test_client()
    name = f"emt_session_data_{app.name}"
    tokens = [cookie_line(browser.get("/"), name) for _ in range(3)]
    assert all(tokens) and len(set(tokens)) == 3


async def test_session_attributes_have_emmetts_values(http_ctx: Any) -> None:
    cookie_pipe = SessionManager.cookies(KEY, expire=120)
    await cookie_pipe.open_request()
    session = http_ctx.session
    assert (session._expiration, session._sid, session._modified) == (120, None, False)
    session.cart = sdict(apples=2)
    assert session._modified is True
    assert pickle.loads(session._dump) == {"cart": {"apples": 2}}
    assert type(pickle.loads(session._dump)) is sdict
    session._expires_after(500)
    assert session._expiration == 500
    session._expires_after(None)  # falsy: back to the pipe's expire, as in Emmett
    assert session._expiration == 120
    await cookie_pipe.close_request()

    next_request(http_ctx)
    files_pipe = SessionManager.files()
    await files_pipe.open_request()
    session = http_ctx.session
    assert (session._expiration, session._sid) == (None, None)
    session.user = "ann"
    await session.save()
    assert session._sid is not None and session._sid == session.id
    await files_pipe.close_request()
