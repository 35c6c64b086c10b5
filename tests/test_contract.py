"""The backend contract: one suite, run against every backend through the middleware."""

from __future__ import annotations

import asyncio
import time

import pytest

from asess import SessionManager
from asess.testing import ManualClock

from .backends import BACKENDS, SERVER_SIDE, manager_factory
from .helpers import client, cookie_value, set_cookies

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
async def make(backend, request):
    managers: list[SessionManager] = []
    clients: list = []
    build = manager_factory(backend, request, clients)

    def factory(**kw):
        # Time is the manager's: tests move it instead of sleeping (Redis
        # alone still expires keys in real time).
        kw.setdefault("clock", ManualClock(time.time()))
        m = build(**kw)
        managers.append(m)
        return m

    yield factory
    for m in managers:
        await m.aclose()
    for redis_client in clients:
        await redis_client.aclose()


async def _whoami(s, scope):
    path = scope["path"]
    if path == "/set":
        s["user"] = "bob"
        s["cart"] = [1, 2]
    elif path == "/append":
        s["cart"].append(3)
    elif path == "/login":
        s.regenerate()
        s["user"] = "alice"
    elif path == "/logout":
        s.invalidate()
    elif path == "/empty":
        s.clear()
    elif path == "/remember":
        s["user"] = "carol"
        s.expire_after(7200)
    return repr(sorted(s.items()))


async def test_counter_survives_requests(make):
    async with client(make()) as c:
        assert [(await c.get("/counter")).text for _ in range(3)] == ["1", "2", "3"]
    async with client(make()) as fresh:
        assert (await fresh.get("/counter")).text == "1"


async def test_untouched_new_session_sets_no_cookie(make):
    async with client(make(), lambda s, scope: _noop()) as c:
        r = await c.get("/")
        assert not set_cookies(r) and "vary" not in r.headers


async def _noop():
    return "ok"


async def test_mark_modified_saves_a_new_empty_session(make):
    """What a framework asks for when every response must carry a cookie (Emmett's cookies)."""
    manager = make()

    async def forced(s, scope):
        s.mark_modified()
        return repr(dict(s))

    async with client(manager, forced) as c:
        first = cookie_value(await c.get("/"), manager.cookie_name)
        assert first
        assert (await c.get("/")).text == "{}"  # the empty session read back


async def test_nested_change_is_saved(make):
    manager = make()
    async with client(manager, _whoami) as c:
        await c.get("/set")
        await c.get("/append")
        assert "[1, 2, 3]" in (await c.get("/")).text


async def test_forged_or_garbage_cookie_gives_a_fresh_session(make):
    manager = make()
    name = manager.cookie_name
    for forged in ["A" * 43, "../../etc/passwd", "x" * 5000, "\u00e9t\u00e9", "a:b:c", ""]:
        async with client(manager) as c:
            r = await c.get("/counter", headers={"cookie": f"{name}={forged}".encode()})
            assert r.text == "1"
            assert cookie_value(r, name) not in (None, forged)


async def test_regenerate_kills_the_old_reference(make, backend):
    manager = make()
    name = manager.cookie_name
    async with client(manager, _whoami) as c:
        await c.get("/set")
        old = c.cookies[name]
        r = await c.get("/login")
        new = cookie_value(r, name)
        assert new and new != old
        assert "alice" in (await c.get("/")).text
    if backend in SERVER_SIDE:
        async with client(manager, _whoami) as c:
            c.cookies.set(name, old)
            assert (await c.get("/")).text == "[]"


async def test_invalidate_expires_cookie_and_record(make, backend):
    manager = make()
    name = manager.cookie_name
    async with client(manager, _whoami) as c:
        await c.get("/set")
        old = c.cookies[name]
        r = await c.get("/logout")
        assert any(line.startswith(f"{name}=;") and "Max-Age=0" in line for line in set_cookies(r))
    if backend in SERVER_SIDE:
        async with client(manager, _whoami) as c:
            c.cookies.set(name, old)
            assert (await c.get("/")).text == "[]"


async def test_emptied_session_is_deleted(make):
    manager = make()
    async with client(manager, _whoami) as c:
        await c.get("/set")
        r = await c.get("/empty")
        assert "Max-Age=0" in set_cookies(r)[0]
        assert (await c.get("/")).text == "[]"


async def test_expire_after_changes_the_lifetime(make):
    manager = make(expire=60)
    async with client(manager, _whoami) as c:
        r = await c.get("/remember")
        assert "Max-Age=7200" in set_cookies(r)[0]
        assert "carol" in (await c.get("/")).text


async def test_expired_session_is_refused(make, backend):
    manager = make(expire=1)
    async with client(manager, _whoami) as c:
        await c.get("/set")
        token = c.cookies[manager.cookie_name]
        manager.policy.clock.advance(2.2)
        if backend.startswith("redis"):
            # The key's TTL runs on the server's clock: give it up to 1.3 s of real
            # time, going on as soon as the server no longer has the key.
            key = manager.store.key(token)
            deadline = time.monotonic() + 1.3
            while await manager.store.client.exists(key) and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
    async with client(manager, _whoami) as c:
        c.cookies.set(manager.cookie_name, token)
        assert (await c.get("/")).text == "[]"


async def test_max_age_caps_an_active_session(make):
    manager = make(max_age=1)
    async with client(manager, _whoami) as c:
        await c.get("/set")
        manager.policy.clock.advance(1.2)
        assert (await c.get("/")).text == "[]"


async def test_datetimes_and_unicode_round_trip(make):
    import datetime as dt

    when = dt.datetime(2026, 11, 27, 12, 0, tzinfo=dt.timezone.utc)

    async def handler(s, scope):
        if scope["path"] == "/set":
            s["when"] = when
            s["name"] = "Zo\u00eb \U0001f600"
        return repr((s.get("when"), s.get("name")))

    async with client(make(), handler) as c:
        await c.get("/set")
        assert (await c.get("/")).text == repr((when, "Zo\u00eb \U0001f600"))


async def test_clear_removes_stored_sessions(make, backend):
    manager = make()
    async with client(manager, _whoami) as c:
        await c.get("/set")
        cookie = c.cookies[manager.cookie_name]
    removed = await manager.clear()
    if backend in SERVER_SIDE:
        assert removed >= 1
        async with client(manager, _whoami) as c:
            c.cookies.set(manager.cookie_name, cookie)
            assert (await c.get("/")).text == "[]"
    else:
        assert removed == 0


async def test_explicit_save_then_more_changes(make):
    manager = make()

    async def handler(s, scope):
        if scope["path"] == "/write":
            s["n"] = 41
            await s.save()
            s["n"] = 42  # changed after the explicit save: saved again at response start
        return repr(s.get("n"))

    async with client(manager, handler) as c:
        await c.get("/write")
        assert (await c.get("/read")).text == "42"
