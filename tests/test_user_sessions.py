"""'Your devices': the per-user session index, on every server-side store, through the middleware.

Logins, logouts, regenerations and changes of user keep each user's list
right; revoke and revoke_user end sessions at once (requests in flight
cannot bring them back); expired sessions leave the list and the index stays
the size of the live sessions; a request that does not change who is logged
in does no index work. Time comes from a ManualClock where the store keeps
time by ``now`` (memory, files, PostgreSQL); Redis expires keys in real time.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from asess import ConfigurationError, SessionManager, SessionMiddleware
from asess._user_index import UserIndex, _decode
from asess.testing import ManualClock

from .backends import manager_factory

pytestmark = pytest.mark.timeout(60)

COOKIE = "sid"


@pytest.fixture(params=["memory", "files", "redis", "redis-cluster", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make(backend: str, request: pytest.FixtureRequest) -> Any:
    clients: list[Any] = []
    managers: list[SessionManager] = []
    build = manager_factory(backend, request, clients)

    def factory(**kw: Any) -> SessionManager:
        if not backend.startswith("redis"):
            kw.setdefault("clock", ManualClock())
        if backend == "postgres":
            # Waiters for the index lease advance the ManualClock by their
            # back-off while the holder's real round trips run: eight logins
            # at once move it 8 to 13 s, past the default 10 s lease.
            kw.setdefault("lock_timeout", 60.0)
        manager = build(cookie_name=COOKIE, user_key="user", **kw)
        managers.append(manager)
        return manager

    yield factory
    for manager in managers:
        await manager.aclose()
    for client in clients:
        await client.aclose()


class Gate:
    def __init__(self) -> None:
        self.loaded = asyncio.Event()
        self.go = asyncio.Event()


def app(manager: SessionManager, gate: Gate | None = None) -> Any:
    async def handler(scope: dict[str, Any], receive: Any, send: Any) -> None:
        s = scope["session"]
        query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
        path = scope["path"]
        if path == "/login":
            s.regenerate()
            s["user"] = query["user"]
        elif path == "/logout":
            s.invalidate()
        elif path == "/switch":
            s["user"] = query["user"]
        elif path == "/touch":
            s["visits"] = (s.get("visits") or 0) + 1
        elif path == "/slow":
            s.get("user")
            assert gate is not None
            gate.loaded.set()
            await gate.go.wait()
            s["cart"] = ["after revocation"]
        body = f"user={s.get('user')} handle={s.handle}".encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    return SessionMiddleware(handler, manager)


def client(manager: SessionManager, gate: Gate | None = None) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app(manager, gate))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def get(c: httpx.AsyncClient, path: str, sid: str | None = None, **params: str) -> Any:
    headers = {"cookie": f"{COOKIE}={sid}"} if sid else {}
    c.cookies.clear()
    r = await c.get(path, params=params, headers=headers)
    new = r.cookies.get(COOKIE)
    return r, new or sid


def handle_in(r: httpx.Response) -> str:
    return r.text.rpartition("handle=")[2]


async def login(c: httpx.AsyncClient, user: str) -> tuple[str, str]:
    r, sid = await get(c, "/login", user=user)
    assert sid and r.text == f"user={user} handle=None"  # the id exists once it is saved
    r, _ = await get(c, "/whoami", sid)
    return sid, handle_in(r)


async def handles(manager: SessionManager, user: str) -> list[str]:
    return [info.handle for info in await manager.sessions_of(user)]


def advance(manager: SessionManager, seconds: float) -> None:
    clock = manager.policy.clock
    assert isinstance(clock, ManualClock)
    clock.advance(seconds)


async def test_logins_are_listed_per_user_most_recent_first(make: Any, backend: str) -> None:
    manager = make()
    async with client(manager) as c:
        a1, h1 = await login(c, "alice")
        a2, h2 = await login(c, "alice")
        a3, h3 = await login(c, "alice")
        _, hb = await login(c, "bob")
        if not backend.startswith("redis"):
            advance(manager, 5)
            await get(c, "/whoami", a1)  # a1 was seen last
        listed = await handles(manager, "alice")
        assert sorted(listed) == sorted([h1, h2, h3])
        if not backend.startswith("redis"):
            assert listed[0] == h1
        assert await handles(manager, "bob") == [hb]
        info = (await manager.sessions_of("bob"))[0]
        assert info.created_at <= info.last_seen < info.expires_at
        assert info.user_agent is None and info.address is None
        assert hb not in (a1, a2, a3) and len(hb) == 22


async def test_the_handle_is_stable_public_and_not_the_id(make: Any) -> None:
    manager = make()
    async with client(manager) as c:
        r, _ = await get(c, "/whoami")
        assert handle_in(r) == "None"  # nothing saved, no handle
        sid, handle = await login(c, "alice")
        for _ in range(3):
            r, _ = await get(c, "/touch", sid)
            assert handle_in(r) == handle
        assert handle != sid and sid not in handle
        r, new_sid = await get(c, "/login", sid, user="alice")
        r, _ = await get(c, "/whoami", new_sid)
        assert new_sid != sid and handle_in(r) != handle  # regenerate: a new id, a new handle


async def test_revoke_user_keeps_only_the_kept_device(make: Any) -> None:
    manager = make()
    async with client(manager) as c:
        a1, keep = await login(c, "alice")
        a2, _ = await login(c, "alice")
        a3, _ = await login(c, "alice")
        b1, hb = await login(c, "bob")
        assert await manager.revoke_user("alice", keep=keep) == 2
        assert await handles(manager, "alice") == [keep]
        assert await handles(manager, "bob") == [hb]
        for sid in (a2, a3):
            r, _ = await get(c, "/whoami", sid)
            assert r.text == "user=None handle=None"  # dead at once: a fresh session
        r, _ = await get(c, "/whoami", a1)
        assert r.text.startswith("user=alice ")
        r, _ = await get(c, "/whoami", b1)
        assert r.text.startswith("user=bob ")
        assert await manager.revoke_user("alice") == 1
        assert await handles(manager, "alice") == []


async def test_revoke_ends_one_session_and_refuses_what_is_not_theirs(make: Any) -> None:
    manager = make()
    async with client(manager) as c:
        a1, h1 = await login(c, "alice")
        _, h2 = await login(c, "alice")
        _, hb = await login(c, "bob")
        assert await manager.revoke("bob", h1) is False  # not bob's
        assert await manager.revoke("alice", "not-a-handle") is False
        assert await manager.revoke("alice", 12345) is False
        assert await manager.revoke("alice", a1) is False  # a session id is not a handle
        assert await manager.revoke("alice", h1) is True
        assert await manager.revoke("alice", h1) is False  # not live any more
        assert await handles(manager, "alice") == [h2]
        r, _ = await get(c, "/whoami", a1)
        assert r.text == "user=None handle=None"
        assert await handles(manager, "bob") == [hb]


async def test_logout_regenerate_and_change_of_user_keep_the_index_right(make: Any) -> None:
    manager = make()
    async with client(manager) as c:
        sid, h1 = await login(c, "alice")
        r, sid2 = await get(c, "/login", sid, user="alice")  # regenerate: moved to the new id
        r, _ = await get(c, "/whoami", sid2)
        assert await handles(manager, "alice") == [handle_in(r)] != [h1]
        r, sid2 = await get(c, "/switch", sid2, user="carol")  # same id, other user
        assert await handles(manager, "alice") == []
        assert await handles(manager, "carol") == [handle_in(r)]
        await get(c, "/logout", sid2)
        assert await handles(manager, "carol") == []


async def test_two_logins_of_one_user_at_once_are_both_listed(make: Any) -> None:
    manager = make()
    async with client(manager) as c:
        results = await asyncio.gather(*(login(c, "alice") for _ in range(8)))
        assert sorted(await handles(manager, "alice")) == sorted(h for _, h in results)


async def test_a_request_in_flight_cannot_bring_a_revoked_session_back(make: Any) -> None:
    manager = make()
    gate = Gate()
    async with client(manager, gate) as c:
        sid, handle = await login(c, "alice")
        slow = asyncio.create_task(get(c, "/slow", sid))
        await asyncio.wait_for(gate.loaded.wait(), 10)
        assert await manager.revoke("alice", handle) is True
        gate.go.set()
        r, _ = await slow
        assert not [line for line in r.headers.get_list("set-cookie") if sid in line]
        r, _ = await get(c, "/whoami", sid)
        assert r.text == "user=None handle=None"
        assert await handles(manager, "alice") == []


async def test_expired_sessions_leave_the_list_and_the_index(make: Any, backend: str) -> None:
    if backend.startswith("redis"):
        pytest.skip("Redis expires keys in real time; covered by the clock-driven stores")
    manager = make(expire=60)
    store: Any = manager.store
    async with client(manager) as c:
        for _ in range(50):  # a year of logins, each soon abandoned
            await login(c, "alice")
            advance(manager, 120)
        assert await handles(manager, "alice") == []
        live = [await login(c, "alice") for _ in range(3)]
        raw = await store.read(UserIndex.index_id("alice"), 60, manager.policy.clock.now())
        assert sorted(_decode(raw)) == sorted(h for _, h in live)  # pruned to the live ones


async def test_record_devices_keeps_user_agent_and_address() -> None:
    manager = SessionManager.memory(user_key="user", record_devices=True, cookie_name=COOKIE)
    async with client(manager) as c:
        await c.get("/login", params={"user": "alice"}, headers={"user-agent": "Firefox/200"})
    (info,) = await manager.sessions_of("alice")
    assert info.user_agent == "Firefox/200" and info.address == "127.0.0.1"


async def test_requests_that_keep_the_user_do_no_index_work(redis_url: str | None) -> None:
    url = redis_url
    if url is None:
        pytest.skip("no redis-server (CI requires one)")
    import redis.asyncio as aioredis

    manager = SessionManager.redis(url, prefix="ux:", user_key="user", cookie_name=COOKIE)
    counter = aioredis.from_url(url)
    try:
        async with client(manager) as c:
            sid, _ = await login(c, "alice")
            await counter.config_resetstat()
            for _ in range(5):
                await get(c, "/touch", sid)
                await get(c, "/whoami", sid)
            stats = await counter.info("commandstats")
        calls = {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()}
        calls.pop("config|resetstat", None)
        calls.pop("config", None)
        calls.pop("info", None)
        assert calls == {"getex": 10, "set": 5}, calls  # one read each, one write per change
    finally:
        await counter.aclose()
        await manager.aclose()


def test_cluster_index_and_sessions_live_in_different_slots() -> None:
    from redis.crc import key_slot

    index_key = ("ct:" + UserIndex.index_id("alice")).encode()
    assert key_slot(index_key) != key_slot(b"ct:" + b"A" * 43)


def test_cookie_sessions_refuse_user_key() -> None:
    with pytest.raises(ConfigurationError, match="cannot be listed or revoked"):
        SessionManager.cookies("k" * 32, user_key="user")


async def test_a_manager_without_user_key_says_how_to_get_the_index() -> None:
    with pytest.raises(ConfigurationError, match="user_key="):
        await SessionManager.memory().sessions_of("alice")


def test_a_bad_user_key_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="user_key"):
        SessionManager.memory(user_key=42)  # type: ignore[arg-type]


async def test_an_index_id_presented_as_a_cookie_is_no_session(make: Any) -> None:
    manager = make()
    async with client(manager) as c:
        await login(c, "alice")
        forged = UserIndex.index_id("alice")
        r, _ = await get(c, "/whoami", forged)
        assert r.text == "user=None handle=None"
        r, _ = await get(c, "/touch", forged)
        assert r.cookies.get(COOKIE) not in (None, forged)  # a fresh id, never the index's
        assert len(await handles(manager, "alice")) == 1
