"""SessionMiddleware with Starlette, FastAPI, bare ASGI, websockets and lifespan."""

import logging

import httpx
import pytest
from fastapi import FastAPI, Request
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient

from asess import (
    SessionBackendError,
    SessionError,
    SessionManager,
    SessionMiddleware,
    SessionNotLoaded,
    session,
)

from .helpers import client, cookie_value, set_cookies


def starlette_app(manager, **kw):
    async def counter(request: Request):
        request.session["n"] = request.session.get("n", 0) + 1
        return JSONResponse(request.session)

    async def idle(request: Request):
        return PlainTextResponse("idle")

    async def ws(websocket):
        await websocket.accept()
        websocket.session["ws"] = await websocket.receive_text()
        await websocket.session.save()
        await websocket.send_text(str(websocket.session.get("n")))
        await websocket.close()

    app = Starlette(routes=[Route("/", counter), Route("/idle", idle), WebSocketRoute("/ws", ws)])
    return SessionMiddleware(app, manager, **kw)


async def test_starlette_request_session_round_trips():
    app = starlette_app(SessionManager.memory())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        assert (await c.get("/")).json() == {"n": 1}
        r = await c.get("/")
        assert r.json() == {"n": 2}
        assert r.headers["vary"] == "Cookie"


async def test_request_that_ignores_the_session_sends_no_cookie_and_no_vary():
    app = starlette_app(SessionManager.memory(), autoload=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        c.cookies.set("asess_session", "x" * 43)
        r = await c.get("/idle")
        assert "set-cookie" not in r.headers and "vary" not in r.headers


async def test_fastapi_and_the_proxy():
    api = FastAPI()

    @api.get("/counter")
    async def count():
        session.counter = (session.counter or 0) + 1
        return {"visits": session.counter}

    app = SessionMiddleware(api, SessionManager.memory())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        assert [(await c.get("/counter")).json()["visits"] for _ in range(3)] == [1, 2, 3]


def test_proxy_outside_a_request_explains_itself():
    with pytest.raises(SessionError, match="only inside a request"):
        session.counter


async def test_autoload_false_needs_an_explicit_load():
    manager = SessionManager.memory()

    async def handler(s, scope):
        if scope["path"] == "/lazy":
            if not s.loaded:  # a cookie came in: nothing read before load()
                with pytest.raises(SessionNotLoaded):
                    s.get("n")
            await s.load()
            await s.load()  # idempotent
            s["n"] = (s.get("n") or 0) + 1
            return s["n"]
        return "untouched"

    async with client(manager, handler, autoload=False) as c:
        assert (await c.get("/lazy")).text == "1"
        assert (await c.get("/lazy")).text == "2"
        r = await c.get("/other")
        assert r.text == "untouched" and not set_cookies(r)


def test_websocket_gets_the_session_and_saves_it():
    manager = SessionManager.memory()
    with TestClient(starlette_app(manager)) as tc:
        assert tc.get("/").json() == {"n": 1}
        with tc.websocket_connect("/ws") as ws:
            ws.send_text("hello")
            assert ws.receive_text() == "1"
        assert tc.get("/").json() == {"n": 2, "ws": "hello"}


def test_lifespan_passes_through():
    events = []

    async def app(scope, receive, send):
        assert "session" not in scope
        events.append(scope["type"])
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})

    with TestClient(SessionMiddleware(app, SessionManager.memory())):
        pass
    assert events == ["lifespan"]


async def test_backend_failure_at_load_is_a_clear_503(caplog):
    manager = SessionManager.memory()

    async def broken(sid, ttl, now):
        raise SessionBackendError("redis at 127.0.0.1:1 refused the connection")

    manager.store.read = broken
    async with client(manager) as c:
        c.cookies.set("asess_session", "A" * 43)
        with caplog.at_level(logging.ERROR, logger="asess"):
            r = await c.get("/")
    assert r.status_code == 503
    assert "refused the connection" in caplog.text


async def test_existing_vary_header_is_extended():
    async def app(scope, receive, send):
        scope["session"]["x"] = 1
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"vary", b"Accept")]}
        )
        await send({"type": "http.response.body", "body": b""})

    mw = SessionMiddleware(app, SessionManager.memory())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=mw), base_url="http://t") as c:
        assert (await c.get("/")).headers["vary"] == "Accept, Cookie"


async def test_regenerate_issues_a_new_id_and_kills_the_old():
    manager = SessionManager.memory()

    async def handler(s, scope):
        if scope["path"] == "/login":
            s.regenerate()
            s["user"] = "bob"
        return s.get("user")

    async with client(manager, handler) as c:
        await c.get("/login")
        first = c.cookies["asess_session"]
        r = await c.get("/login")
        second = cookie_value(r, "asess_session")
        assert second and second != first
    async with client(manager, handler) as c:
        c.cookies.set("asess_session", first)
        assert (await c.get("/")).text == "None"


async def test_invalidate_expires_the_cookie_and_the_record():
    manager = SessionManager.memory()

    async def handler(s, scope):
        if scope["path"] == "/logout":
            s.invalidate()
            return "bye"
        s["user"] = "bob"
        return "hi"

    async with client(manager, handler) as c:
        await c.get("/")
        sid = c.cookies["asess_session"]
        r = await c.get("/logout")
        assert "Max-Age=0" in set_cookies(r)[0]
    assert len(manager.store) == 0
    async with client(manager, lambda s, scope: _get(s)) as c:
        c.cookies.set("asess_session", sid)
        assert (await c.get("/")).text == "None"


async def _get(s):
    return s.get("user")


async def test_expire_after_sets_the_cookie_lifetime():
    manager = SessionManager.memory()

    async def handler(s, scope):
        s["x"] = 1
        s.expire_after(0 if scope["path"] == "/browser" else 86400)
        return "ok"

    async with client(manager, handler) as c:
        assert "Max-Age" not in set_cookies(await c.get("/browser"))[0]
    async with client(manager, handler) as c:
        assert "Max-Age=86400" in set_cookies(await c.get("/remember"))[0]


async def test_bare_asgi_app_sees_scope_session():
    async def handler(s, scope):
        assert scope["session"] is s
        s["k"] = "v"
        return "ok"

    async with client(SessionManager.memory(), handler) as c:
        assert (await c.get("/")).text == "ok"


async def test_backend_failure_at_save_is_a_clear_503_too(caplog):
    manager = SessionManager.memory()

    async def broken(sid, payload, ttl, now):
        raise SessionBackendError("disk full while writing /sessions/x")

    manager.store.create = broken
    async with client(manager) as c:
        with caplog.at_level(logging.ERROR, logger="asess"):
            r = await c.get("/")
    assert r.status_code == 503 and r.text == "Session store unavailable"
    assert "disk full" in caplog.text
