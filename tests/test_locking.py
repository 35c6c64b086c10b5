"""locking=True through the lifecycle: concurrent requests of one session lose no update."""

from __future__ import annotations

import asyncio

import pytest

from .backends import manager_factory
from .helpers import client

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(params=["memory", "files", "redis", "redis-cluster", "postgres"])
async def locked(request):
    clients: list = []
    build = manager_factory(request.param, request, clients)
    manager = build(locking=True, **({} if request.param == "memory" else {"lock_timeout": 30.0}))
    yield manager
    await manager.aclose()
    for redis_client in clients:
        await redis_client.aclose()


async def slow_counter(s, scope):
    value = s.get("counter") or 0
    await asyncio.sleep(0)  # let other requests interleave between read and write
    s["counter"] = value + 1
    return s["counter"]


async def test_200_concurrent_requests_on_one_session_count_to_200(locked):
    async with client(locked, slow_counter) as c:
        assert (await c.get("/")).text == "1"
        results = await asyncio.gather(*(c.get("/") for _ in range(199)))
        assert all(r.status_code == 200 for r in results)
        assert (await c.get("/")).text == "201"


async def test_without_locking_updates_are_lost_so_the_test_above_means_something(tmp_path):
    from asess import SessionManager

    manager = SessionManager.memory()

    async def slower(s, scope):
        value = s.get("counter") or 0
        await asyncio.sleep(0.01)
        s["counter"] = value + 1
        return s["counter"]

    async with client(manager, slower) as c:
        await c.get("/")
        await asyncio.gather(*(c.get("/") for _ in range(20)))
        assert int((await c.get("/")).text) < 22


async def test_a_waiter_takes_over_a_lease_that_outlived_lock_timeout(tmp_path):
    """A request held past lock_timeout loses its lease: the waiter goes ahead, and wins."""
    from asess import SessionManager
    from asess.testing import ManualClock

    clock = ManualClock()
    manager = SessionManager.files(path=tmp_path, locking=True, lock_timeout=5.0, clock=clock)
    release = asyncio.Event()

    async def hold(s, scope):
        if scope["path"] == "/hold":
            await release.wait()
            s["n"] = "late"
        else:
            s["n"] = "waiter"
        return s["n"]

    async with client(manager, hold) as c:
        await c.get("/")
        holder = asyncio.create_task(c.get("/hold"))
        await asyncio.sleep(0.05)
        r = await c.get("/")  # waits (in ManualClock time) until the holder's lease expired
        assert r.status_code == 200 and r.text == "waiter"
        assert clock.now() >= 1_800_000_005.0
        release.set()
        assert (await holder).status_code == 200
        # The holder's save was fenced off: the waiter's value stands.
        assert (await c.get("/")).text == "waiter"


async def test_lock_timeout_answers_503(tmp_path):
    """A lease that cannot be had within lock_timeout (the store keeps refusing) is a 503."""
    from asess import SessionManager
    from asess._backends.memory import MemoryStore
    from asess.testing import ManualClock

    class Stuck(MemoryStore):
        async def acquire(self, sid, seconds, now):
            return None  # another holder keeps winning the lease

    clock = ManualClock()
    manager = SessionManager(Stuck(), locking=True, lock_timeout=2.0, clock=clock)
    async with client(manager) as c:
        await c.get("/")
        r = await c.get("/")
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert 1_800_000_002.0 <= clock.now() < 1_800_000_003.0  # waited lock_timeout, not more
