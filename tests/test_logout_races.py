"""A logout or login holds whatever other request of the session is in flight.

Each test holds one request of a logged-in session open at a chosen point (a
plain request, a streamed response, a websocket), ends the session from
another request meanwhile, then lets the first one change its data and
finish. The ended session must stay ended: no record under the old id, no
live cookie for it in the late response, and a fresh session for whoever
replays the old cookie. Run on every server-side store, with locking off and
on (under locking the second request takes over the first one's lease once it
expires: time comes from a ManualClock, or real time for Redis).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest

from asess import SessionManager
from asess.testing import ManualClock

from .backends import manager_factory
from .race_app import Gates, race_app

pytestmark = pytest.mark.timeout(60)

COOKIE = "sid"
SERVER_SIDE = ["memory", "files", "redis", "redis-cluster", "postgres"]


@pytest.fixture(params=SERVER_SIDE)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=[False, True], ids=["unlocked", "locked"])
async def manager(backend: str, request: pytest.FixtureRequest) -> Any:
    clients: list[Any] = []
    build = manager_factory(backend, request, clients)
    options: dict[str, Any] = {"cookie_name": COOKIE}
    if request.param:
        # The held request's lease must run out before the ending request can
        # take it over, so that wait is the bulk of each locked test. Redis
        # expires leases itself, in real time: keep them brief. Elsewhere the
        # clock is manual and the lifetime only sets how many back-off polls
        # the waiter makes before the takeover (about lifetime / 50 ms).
        real_time = backend.startswith("redis")
        options.update(locking=True, lock_timeout=0.1 if real_time else 0.5)
        if not real_time:
            options["clock"] = ManualClock()
    elif backend != "redis-cluster":
        options["clock"] = ManualClock()
    built = build(**options)
    yield built
    await built.aclose()
    for client in clients:
        await client.aclose()


def _client(manager: SessionManager, gates: Gates) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=race_app(manager, gates))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


def _cookie(sid: str) -> dict[str, str]:
    return {"cookie": f"{COOKIE}={sid}"}


def _revives(response: httpx.Response, sid: str) -> bool:
    return any(
        line.startswith(f"{COOKIE}={sid};") and "Max-Age=0" not in line
        for line in response.headers.get_list("set-cookie")
    )


async def _login(c: httpx.AsyncClient, user: str = "alice") -> str:
    r = await c.get("/login", params={"user": user})
    sid = r.cookies.get(COOKIE)
    assert sid, r.headers
    return sid


async def _assert_dead(manager: SessionManager, c: httpx.AsyncClient, sid: str) -> None:
    assert await manager.store.read(sid, 60, manager.policy.clock.now()) is None  # type: ignore[union-attr]
    replay = await c.get("/whoami", headers=_cookie(sid))
    assert replay.text == "user=None cart=None"
    assert replay.cookies.get(COOKIE) in (None, "")


@pytest.mark.parametrize("ending", ["/logout", "/login"])
@pytest.mark.parametrize("held", ["/slow", "/stream"])
async def test_an_in_flight_request_cannot_undo_a_logout_or_login(
    manager: SessionManager, ending: str, held: str, caplog: pytest.LogCaptureFixture
) -> None:
    gates = Gates()
    async with _client(manager, gates) as c:
        sid = await _login(c)
        slow = asyncio.create_task(c.get(held, headers=_cookie(sid)))
        await asyncio.wait_for(gates.loaded.wait(), 10)
        ended = await c.get(ending, params={"user": "bob"}, headers=_cookie(sid))
        assert ended.status_code == 200
        new_sid = ended.cookies.get(COOKIE) if ending == "/login" else None
        with caplog.at_level(logging.WARNING, logger="asess"):
            gates.go.set()
            late = await slow
        assert late.status_code == 200
        if held == "/slow":  # a stream's headers (and cookie) left before the logout
            assert not _revives(late, sid), late.headers.get_list("set-cookie")
        assert "not saved" in caplog.text or "were lost" in caplog.text
        await _assert_dead(manager, c, sid)
        if new_sid:
            after = await c.get("/whoami", headers=_cookie(new_sid))
            assert after.text == "user=bob cart=None"


async def test_a_websocket_save_after_a_logout_raises_and_writes_nothing(
    manager: SessionManager,
) -> None:
    gates = Gates()
    app = race_app(manager, gates)
    async with _client(manager, gates) as c:
        sid = await _login(c)
        sent: list[dict[str, Any]] = []
        incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        incoming.put_nowait({"type": "websocket.connect"})

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "websocket",
            "path": "/ws",
            "headers": [(b"cookie", f"{COOKIE}={sid}".encode())],
            "query_string": b"",
        }
        socket = asyncio.create_task(app(scope, incoming.get, send))
        await asyncio.wait_for(gates.loaded.wait(), 10)
        await c.get("/logout", headers=_cookie(sid))
        gates.go.set()
        await socket
        assert {"type": "websocket.send", "text": "interrupted"} in sent
        await _assert_dead(manager, c, sid)


async def test_a_new_session_saved_after_websocket_accept_writes_nothing(
    manager: SessionManager,
) -> None:
    gates = Gates()
    gates.go.set()
    app = race_app(manager, gates)
    sent: list[dict[str, Any]] = []
    incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    incoming.put_nowait({"type": "websocket.connect"})

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/ws", "headers": [], "query_string": b""}
    before = await manager.clear()
    assert before == 0
    with pytest.raises(Exception, match="needs a new cookie"):
        await app(scope, incoming.get, send)
    assert await manager.clear() == 0  # nothing was written for a cookie no client got
