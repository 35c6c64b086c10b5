"""Cookie sessions end to end: both modes, rotation, tampering, chunking, size, refresh."""

from __future__ import annotations

import json
import logging
import time

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient

from asess import KeyRing, SessionError, SessionManager, SessionMiddleware, SessionTooLarge
from asess._codecs.legacy import LegacyCodec
from asess._codecs.modern import ModernCodec
from asess._exceptions import InvalidToken
from asess._record import Record

from .helpers import client, cookie_value, set_cookies

MODES = ["legacy", "modern"]


def codec(mode, key, name="asess_session"):
    return LegacyCodec(KeyRing(key)) if mode == "legacy" else ModernCodec(KeyRing(key), name)


@pytest.mark.parametrize("mode", MODES)
async def test_round_trip_and_unchanged_session_sends_nothing(mode):
    manager = SessionManager.cookies("k1", encryption_mode=mode)

    async def handler(s, scope):
        if scope["path"] == "/set":
            s["user"] = {"name": "bob", "roles": ["a"]}
        return json.dumps(s.get("user"))

    async with client(manager, handler) as c:
        r = await c.get("/set")
        assert set_cookies(r)
        r = await c.get("/")
        assert json.loads(r.text) == {"name": "bob", "roles": ["a"]}
        assert not set_cookies(r)  # unchanged and fresh: no re-encryption, no cookie


@pytest.mark.parametrize("mode", MODES)
async def test_rotation_reissues_under_the_first_key(mode):
    old = SessionManager.cookies("old-key", encryption_mode=mode)
    rotated = SessionManager.cookies(["new-key", "old-key"], encryption_mode=mode)
    only_new = SessionManager.cookies("new-key", encryption_mode=mode)

    async def handler(s, scope):
        if scope["path"] == "/set":
            s["n"] = 7
        return str(s.get("n"))

    async with client(old, handler) as c:
        await c.get("/set")
        old_token = c.cookies["asess_session"]
    async with client(rotated, handler) as c:
        c.cookies.set("asess_session", old_token)
        r = await c.get("/")
        assert r.text == "7"
        new_token = cookie_value(r, "asess_session")
        assert new_token and new_token != old_token
    async with client(only_new, handler) as c:
        c.cookies.set("asess_session", new_token)
        assert (await c.get("/")).text == "7"
        c.cookies.set("asess_session", old_token)
        assert (await c.get("/")).text == "None"


@pytest.mark.parametrize("mode", MODES)
async def test_tampered_token_gives_a_fresh_session_and_a_debug_line(mode, caplog):
    manager = SessionManager.cookies("k1", encryption_mode=mode)
    async with client(manager) as c:
        await c.get("/")
        token = c.cookies["asess_session"]
    flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
    async with client(manager) as c:
        c.cookies.set("asess_session", flipped)
        with caplog.at_level(logging.DEBUG, logger="asess"):
            assert (await c.get("/")).text == "1"
    assert "session cookie refused" in caplog.text


@pytest.mark.parametrize("mode", MODES)
async def test_quoted_cookie_values_are_accepted(mode):
    manager = SessionManager.cookies("k1", encryption_mode=mode)
    async with client(manager) as c:
        await c.get("/")
        token = c.cookies["asess_session"]
    async with client(manager) as c:
        r = await c.get("/", headers={"cookie": f'asess_session="{token}"'})
        assert r.text == "2"


async def test_emmett_written_token_is_accepted_and_reissued_with_an_expiry():
    import pickle

    from emmett_core.cryptography import symmetric  # the real Emmett package

    raw = symmetric.encrypt_b64(pickle.dumps({"counter": 4}), "k1")
    manager = SessionManager.cookies("k1")
    async with client(manager) as c:
        r = await c.get("/", headers={"cookie": f'asess_session="{raw}"'})
        assert r.text == "5"
        reissued = cookie_value(r, "asess_session")
    record = codec("legacy", "k1").decode(reissued, time.time())
    assert record.expires_at is not None and record.data == {"counter": 5}


@pytest.mark.parametrize("mode", MODES)
async def test_large_sessions_travel_in_chunks_through_starlette(mode):
    async def big(request):
        if request.query_params.get("size"):
            request.session["blob"] = "x" * int(request.query_params["size"])
        return JSONResponse({"len": len(request.session.get("blob", ""))})

    app = SessionMiddleware(
        Starlette(routes=[Route("/", big)]), SessionManager.cookies("k", encryption_mode=mode)
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.get("/", params={"size": 6000})
        lines = set_cookies(r)
        assert len(lines) >= 2 and all(len(line) <= 4096 for line in lines)
        assert (await c.get("/")).json() == {"len": 6000}
        r = await c.get("/", params={"size": 10})
        assert any(
            line.startswith("asess_session.1=;") and "Max-Age=0" in line for line in set_cookies(r)
        )
        assert (await c.get("/")).json() == {"len": 10}


async def test_oversized_session_raises_before_the_response_starts():
    manager = SessionManager.cookies("k", max_cookie_chunks=1)

    async def handler(s, scope):
        s["blob"] = "y" * 5000
        return "never sent"

    async with client(manager, handler) as c:
        with pytest.raises(SessionTooLarge, match="1 cookies"):
            await c.get("/")


@pytest.mark.parametrize("mode", MODES)
async def test_token_is_refreshed_when_half_its_life_is_gone(mode, monkeypatch):
    manager = SessionManager.cookies("k", expire=100, encryption_mode=mode)
    async with client(manager) as c:
        await c.get("/")
        token = c.cookies["asess_session"]

    async def read(s, scope):
        return s.get("counter")

    async with client(manager, read) as c:
        c.cookies.set("asess_session", token)
        assert not set_cookies(await c.get("/"))
        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() + 60)
        r = await c.get("/")
        assert r.text == "1" and cookie_value(r, "asess_session") not in (None, token)


async def test_request_that_never_loads_does_no_crypto(monkeypatch):
    manager = SessionManager.cookies("k")
    async with client(manager) as c:
        await c.get("/")
        token = c.cookies["asess_session"]
    calls = []
    monkeypatch.setattr(manager.store.codec, "decode", lambda *a: calls.append(a))
    monkeypatch.setattr(manager.store.codec, "encode", lambda *a: calls.append(a))

    async def ignore(s, scope):
        return "ok"

    async with client(manager, ignore, autoload=False) as c:
        c.cookies.set("asess_session", token)
        r = await c.get("/")
    assert r.text == "ok" and not set_cookies(r) and calls == []


def test_cookie_session_cannot_change_after_websocket_accept():
    async def ws(websocket):
        await websocket.accept()
        websocket.session["late"] = True
        try:
            await websocket.session.save()
        except SessionError as exc:
            await websocket.send_text(str(exc))
        await websocket.close()

    app = SessionMiddleware(
        Starlette(routes=[WebSocketRoute("/ws", ws)]), SessionManager.cookies("k")
    )
    with TestClient(app) as tc, tc.websocket_connect("/ws") as conn:
        assert "response has already started" in conn.receive_text()


def test_modern_token_expiry_is_inside_the_token():
    c = codec("modern", "k")
    now = time.time()
    token = c.encode(Record({"a": 1}, now, now, now + 1, None))
    assert c.decode(token, now).data == {"a": 1}
    with pytest.raises(InvalidToken, match="expired"):
        c.decode(token, now + 2)


async def test_change_after_the_response_started_is_logged_not_raised(caplog):
    manager = SessionManager.cookies("k")

    async def app(scope, receive, send):
        scope["session"]["before"] = 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        scope["session"]["after"] = 2  # e.g. in a stream: the cookie is already out
        await send({"type": "http.response.body", "body": b"ok"})

    mw = SessionMiddleware(app, manager)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=mw), base_url="http://t") as c:
        with caplog.at_level(logging.WARNING, logger="asess"):
            r = await c.get("/")
    assert r.status_code == 200 and "were not saved" in caplog.text
