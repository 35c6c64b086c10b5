"""asess.aiohttp: aiohttp-session's surface on asess's lifecycle, over real TCP.

Every test runs an aiohttp server on loopback (aiohttp's ``TestServer``, or an
``AppRunner`` with a ``TCPSite``) and talks to it with a real client, for
cookie, file and Redis sessions: the counter, aiohttp-session's attributes,
a login through ``new_session`` and a redirect, logout, websockets and
streamed responses (cookie sent with the headers), failures (500 saves
nothing, a dead store answers 503).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import aiohttp_session
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from asess import ConfigurationError, SessionBackendError, SessionError, SessionManager
from asess._backends.memory import MemoryStore
from asess._ids import new_session_id
from asess.aiohttp import get_session, new_session, session_middleware, setup

KEY = "a-long-random-secret-for-the-aiohttp-tests"
NAME = "asess_session"


@pytest.fixture(params=["cookies", "files", "redis"])
async def manager(
    request: pytest.FixtureRequest, tmp_path: Path, prefix: str
) -> AsyncIterator[SessionManager]:
    if request.param == "cookies":
        yield SessionManager.cookies(KEY, encryption_mode="modern")
        return
    if request.param == "files":
        yield SessionManager.files(path=tmp_path, fsync=False)
        return
    url = request.getfixturevalue("redis_url")
    if url is None:
        pytest.skip("no Redis server")
    client = aioredis.from_url(url)
    manager = SessionManager.redis(client, prefix=prefix)
    try:
        yield manager
    finally:
        keys = [k async for k in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def counter(request: web.Request) -> web.Response:
    session = await get_session(request)
    session["n"] = session.get("n", 0) + 1
    return web.json_response({"n": session["n"], "new": session.new, "identity": session.identity})


async def view(request: web.Request) -> web.Response:
    session = await get_session(request)
    return web.json_response(
        {
            "data": dict(session),
            "new": session.new,
            "created": session.created,
            "max_age": session.max_age,
            "empty": session.empty,
        }
    )


async def login(request: web.Request) -> web.Response:
    session = await new_session(request)
    session["user"] = "ada"
    raise web.HTTPFound("/view")


async def logout(request: web.Request) -> web.Response:
    (await get_session(request)).invalidate()
    return web.Response(text="bye")


async def touch(request: web.Request) -> web.Response:
    (await get_session(request)).changed()
    return web.Response(text="touched")


async def short(request: web.Request) -> web.Response:
    session = await get_session(request)
    session["short"] = True
    session.max_age = int(request.query["max_age"]) if "max_age" in request.query else None
    return web.Response(text="short")


async def idle(request: web.Request) -> web.Response:
    return web.Response(text="idle")


async def boom(request: web.Request) -> web.Response:
    (await get_session(request))["broken"] = True
    raise RuntimeError("handler failed")


async def stream(request: web.Request) -> web.StreamResponse:
    session = await get_session(request)
    session["streamed"] = True
    response = web.StreamResponse()
    await response.prepare(request)
    await response.write(b"chunk")
    await response.write_eof()
    return response


async def ws(request: web.Request) -> web.WebSocketResponse:
    session = await get_session(request)
    session["ws"] = session.get("ws", 0) + 1  # before the handshake: goes out with it
    socket = web.WebSocketResponse()
    await socket.prepare(request)
    message = await socket.receive_str()
    if session.identity is not None:
        session["said"] = message  # a server-side session with an id saves after accept
        await session.save()
    await socket.send_json(dict(session))
    await socket.close()
    return socket


def make_app(manager: SessionManager, **options: Any) -> web.Application:
    app = web.Application()
    setup(app, manager, **options)
    app.router.add_get("/", counter)
    app.router.add_get("/view", view)
    app.router.add_post("/login", login)
    app.router.add_post("/logout", logout)
    app.router.add_post("/touch", touch)
    app.router.add_post("/short", short)
    app.router.add_get("/idle", idle)
    app.router.add_get("/boom", boom)
    app.router.add_get("/stream", stream)
    app.router.add_get("/ws", ws)
    return app


async def serve(app: web.Application) -> TestClient[web.Request, web.Application]:
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client


def send_only(client: TestClient[Any, Any], value: str) -> None:
    """From now on the client sends this session cookie (and no other)."""
    client.session.cookie_jar.clear()
    client.session.cookie_jar.update_cookies({NAME: value})


def cookie(client: TestClient[Any, Any]) -> str | None:
    for morsel in client.session.cookie_jar:
        if morsel.key == NAME:
            return morsel.value
    return None


async def test_counter_attributes_and_vary(manager: SessionManager) -> None:
    client = await serve(make_app(manager))
    try:
        first = await client.get("/")
        assert await first.json() == {"n": 1, "new": True, "identity": None}
        assert first.headers["Vary"] == "Cookie"
        second = await (await client.get("/")).json()
        assert second["n"] == 2 and second["new"] is False
        # identity is the server-side id (aiohttp-session's key); None for cookies.
        assert (second["identity"] is None) == (not manager.server_side)
        if manager.server_side:
            assert second["identity"] == cookie(client)
        seen = await (await client.get("/view")).json()
        assert seen["data"] == {"n": 2} and seen["max_age"] == manager.expire
        assert abs(seen["created"] - (await (await client.get("/view")).json())["created"]) <= 0
    finally:
        await client.close()


async def test_a_handler_that_ignores_the_session_gets_no_cookie_and_no_vary(
    manager: SessionManager,
) -> None:
    client = await serve(make_app(manager))
    try:
        await client.get("/")
        response = await client.get("/idle")
        assert "Set-Cookie" not in response.headers and "Vary" not in response.headers
    finally:
        await client.close()


async def test_login_with_new_session_and_a_redirect(manager: SessionManager) -> None:
    client = await serve(make_app(manager))
    try:
        await client.get("/")
        before = cookie(client)
        response = await client.post("/login", allow_redirects=False)
        assert response.status == 302 and "Set-Cookie" in response.headers
        after = cookie(client)
        assert after is not None and after != before
        seen = await (await client.get("/view")).json()
        assert seen["data"] == {"user": "ada"}  # the old data is gone with the old session
        if manager.server_side:
            assert before is not None
            send_only(client, before)
            assert (await (await client.get("/view")).json())["data"] == {}
    finally:
        await client.close()


async def test_invalidate_ends_the_session(manager: SessionManager) -> None:
    client = await serve(make_app(manager))
    try:
        await client.get("/")
        old = cookie(client)
        response = await client.post("/logout")
        assert response.headers["Set-Cookie"].startswith(f"{NAME}=;")
        assert cookie(client) is None
        if manager.server_side:
            send_only(client, old or "")
        assert (await (await client.get("/view")).json())["new"] is True
    finally:
        await client.close()


async def test_changed_saves_unchanged_data(manager: SessionManager) -> None:
    client = await serve(make_app(manager))
    try:
        await client.get("/")
        # Server-side stores slide the id cookie on every request; a cookie
        # session is re-sealed only when it changed, or when changed() says so.
        if not manager.server_side:
            assert "Set-Cookie" not in (await client.get("/view")).headers
            token = cookie(client)
            assert "Set-Cookie" in (await client.post("/touch")).headers
            assert cookie(client) != token
        else:
            assert (await client.post("/touch")).status == 200
        assert (await (await client.get("/view")).json())["data"] == {"n": 1}
    finally:
        await client.close()


async def test_max_age_setter(manager: SessionManager) -> None:
    client = await serve(make_app(manager))
    try:
        line = (await client.post("/short?max_age=60")).headers["Set-Cookie"]
        assert "Max-Age=60" in line
        assert (await (await client.get("/view")).json())["max_age"] == 60
        line = (await client.post("/short")).headers["Set-Cookie"]
        assert "Max-Age" not in line  # None: a browser-session cookie, as in aiohttp-session
        assert (await (await client.get("/view")).json())["max_age"] is None
    finally:
        await client.close()


async def test_a_failed_handler_saves_nothing(manager: SessionManager) -> None:
    client = await serve(make_app(manager))
    try:
        await client.get("/")
        response = await client.get("/boom")
        assert response.status == 500 and "Set-Cookie" not in response.headers
        assert (await (await client.get("/view")).json())["data"] == {"n": 1}
    finally:
        await client.close()


async def test_a_streamed_response_carries_the_cookie(manager: SessionManager) -> None:
    client = await serve(make_app(manager))
    try:
        response = await client.get("/stream")
        assert await response.read() == b"chunk"
        assert "Set-Cookie" in response.headers
        assert (await (await client.get("/view")).json())["data"] == {"streamed": True}
    finally:
        await client.close()


async def test_websockets(manager: SessionManager) -> None:
    client = await serve(make_app(manager))
    try:
        # A fresh session gets its cookie on the handshake response.
        socket = await client.ws_connect("/ws")
        await socket.send_str("hello")
        # Server-side: the handshake saved the session, so it has an id to update later.
        first = {"ws": 1, "said": "hello"} if manager.server_side else {"ws": 1}
        assert await socket.receive_json() == first
        await socket.close()
        assert cookie(client) is not None
        # A second connection: changed before and (server-side) after the accept.
        socket = await client.ws_connect("/ws")
        await socket.send_str("again")
        expected: dict[str, Any] = {"ws": 2}
        if manager.server_side:
            expected["said"] = "again"
        assert await socket.receive_json() == expected
        await socket.close()
        assert (await (await client.get("/view")).json())["data"] == expected
    finally:
        await client.close()


async def test_a_real_server_and_client_over_tcp(manager: SessionManager) -> None:
    runner = web.AppRunner(make_app(manager))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        jar = aiohttp.CookieJar(unsafe=True)  # cookies from an IP address
        async with aiohttp.ClientSession(f"http://127.0.0.1:{port}", cookie_jar=jar) as http:
            for n in (1, 2, 3):
                async with http.get("/") as response:
                    assert (await response.json())["n"] == n
    finally:
        await runner.cleanup()


async def test_a_store_outage_answers_503() -> None:
    dead = SessionManager.redis("redis://127.0.0.1:1/0")
    client = await serve(make_app(dead))
    try:
        send_only(client, new_session_id())
        response = await client.get("/view")
        assert response.status == 503 and response.headers["Retry-After"] == "1"
        assert await response.read() == b"Session store unavailable"
        assert (await client.get("/idle")).status == 200  # no session read: no outage
    finally:
        await client.close()
        await dead.aclose()


async def test_misuse_is_named() -> None:
    with pytest.raises(ConfigurationError, match="SessionManager"):
        session_middleware(aiohttp_session.SimpleCookieStorage())  # type: ignore[arg-type]
    app = web.Application()
    app.router.add_get("/", view)
    client = await serve(app)
    try:
        assert (await client.get("/")).status == 500
    finally:
        await client.close()
    request = aiohttp.test_utils.make_mocked_request("GET", "/")
    with pytest.raises(SessionError, match="setup"):
        await get_session(request)


async def test_session_middleware_alone_as_aiohttp_session_users_write_it(
    manager: SessionManager,
) -> None:
    app = web.Application(middlewares=[session_middleware(manager)])
    app.router.add_get("/", counter)
    app.router.add_post("/login", login)
    client = await serve(app)
    try:
        assert (await (await client.get("/")).json())["n"] == 1
        assert (await (await client.get("/")).json())["n"] == 2
        response = await client.post("/login", allow_redirects=False)
        assert response.status == 302 and "Set-Cookie" in response.headers
    finally:
        await client.close()


class FullDisk(MemoryStore):
    """A store that reads but cannot write: the failure comes at commit, not at load."""

    async def create(self, sid: str, payload: bytes, ttl: int, now: float) -> None:
        raise SessionBackendError("disk full while writing the session")


@pytest.mark.parametrize("path", ["/", "/stream"])
async def test_a_store_failing_at_commit_answers_503(path: str) -> None:
    # A plain response commits in the middleware; a streamed one as its headers go out.
    client = await serve(make_app(SessionManager(FullDisk())))
    try:
        response = await client.get(path)
        assert response.status == 503 and "Set-Cookie" not in response.headers
        assert await response.read() == b"Session store unavailable"
    finally:
        await client.close()


async def test_a_websocket_whose_store_fails_at_the_handshake_gets_503() -> None:
    client = await serve(make_app(SessionManager(FullDisk())))
    try:
        with pytest.raises(aiohttp.WSServerHandshakeError) as failed:
            await client.ws_connect("/ws")
        assert failed.value.status == 503
        assert (await client.get("/idle")).status == 200  # the server is fine
    finally:
        await client.close()
