"""PostgreSQL outages answer 503, never empty or overwrite a session, and service resumes.

Sessions are counters driven through the middleware by a bounded load while
the server goes away: a private server (never the shared one) is stopped as
in a crash and started again on the same port, or the pool's connections are
reset under it. Every answer must be a 503 or the session's next count: a
count that starts over would be an outage read as "no session", and the
stored counters at the end must be the last ones a client saw. The same
manager serves on after the server returns, without a restart.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from asess import SessionBackendError, SessionManager
from asess._backends.base import Lease
from asess._backends.postgres import PostgresStore
from asess._ids import new_session_id

from .helpers import client
from .postgres_servers import REQUIRE_POSTGRES, PrivatePostgres

pytestmark = pytest.mark.timeout(90)

if not REQUIRE_POSTGRES:  # under the CI flag a missing driver fails at collection
    pytest.importorskip(
        "asyncpg", reason="asyncpg is not installed (pip install 'asess[postgres]')"
    )
import asyncpg  # noqa: E402

COOKIE = "asess_session"
SESSIONS = 12


@pytest.fixture(scope="module")
def private_server() -> Iterator[PrivatePostgres]:
    own = PrivatePostgres().start()
    try:
        yield own
    finally:
        own.destroy()


@pytest.fixture
def server(private_server: PrivatePostgres) -> PrivatePostgres:
    """The module's private server, running (a failed test may have left it stopped)."""
    if not private_server.running:
        private_server.start()
    return private_server


class Load:
    """One sequential request loop per session; remembers what each client saw."""

    def __init__(self, c: httpx.AsyncClient, sids: list[str]) -> None:
        self.c = c
        self.seen = dict.fromkeys(sids, 1)
        self.failures = 0
        self.successes = 0
        self.stop = asyncio.Event()

    async def _one(self, sid: str) -> None:
        r = await self.c.get("/", headers={"cookie": f"{COOKIE}={sid}"})
        if r.status_code == 503:
            assert COOKIE not in r.cookies, "a failed request sent a cookie"
            self.failures += 1
            await asyncio.sleep(0.01)
            return
        assert r.status_code == 200, r.text
        count = int(r.text)
        # One more than last seen; two if a write committed as the server died
        # and its reply was lost. Never a fresh count: that would be data loss.
        assert count in (self.seen[sid] + 1, self.seen[sid] + 2), (sid, self.seen[sid], count)
        assert r.cookies.get(COOKIE, sid) == sid, "a new session replaced a stored one"
        self.seen[sid] = count
        self.successes += 1

    async def run(self, sid: str, deadline: float) -> None:
        while not self.stop.is_set() and time.monotonic() < deadline:
            await self._one(sid)

    async def until(self, successes: int) -> None:
        """Wait until ``successes`` more requests have been answered 200."""
        target = self.successes + successes
        for _ in range(1000):
            if self.successes >= target:
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"service did not resume: {self.successes} of {target}")


async def _logged_in(c: httpx.AsyncClient, n: int) -> list[str]:
    sids = []
    for _ in range(n):
        r = await c.get("/")
        assert r.text == "1"
        sids.append(r.cookies[COOKIE])
        c.cookies.clear()
    return sids


async def _stored(dsn: str, table: str) -> dict[str, int]:
    from asess._serialize import load_record

    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(f"SELECT id, data FROM {table} WHERE data IS NOT NULL")
    finally:
        await conn.close()
    return {r["id"]: int(load_record(r["data"]).data["counter"]) for r in rows}


@pytest.mark.parametrize("locking", [False, True], ids=["unlocked", "locked"])
async def test_a_server_crash_and_restart_under_load(
    server: PrivatePostgres, locking: bool
) -> None:
    table = "outage_" + secrets.token_hex(4)
    manager = SessionManager.postgres(server.dsn, table=table, locking=locking, lock_timeout=1.0)
    try:
        async with client(manager) as c:
            load = Load(c, await _logged_in(c, SESSIONS))
            deadline = time.monotonic() + 30
            loops = [asyncio.create_task(load.run(sid, deadline)) for sid in load.seen]
            await load.until(50)
            await asyncio.to_thread(server.stop)  # a crash: no shutdown checkpoint
            failures = load.failures
            await asyncio.sleep(0.5)
            assert load.failures > failures, "requests did not fail while the server was down"
            await asyncio.to_thread(server.start)
            await load.until(100)
            load.stop.set()
            await asyncio.gather(*loops)
        assert await _stored(server.dsn, table) == load.seen
    finally:
        await manager.aclose()


async def test_every_operation_fails_as_a_backend_error_while_down(
    server: PrivatePostgres,
) -> None:
    store = PostgresStore(server.dsn, table="down_" + secrets.token_hex(4))
    sid = new_session_id()
    try:
        await store.create(sid, b"kept", 60, time.time())
        await asyncio.to_thread(server.stop)
        now = time.time()
        lease = Lease(sid, "0" * 32, now + 5)
        operations = {
            "read": lambda: store.read(sid, 60, now),
            "create": lambda: store.create(new_session_id(), b"x", 60, now),
            "update": lambda: store.update(sid, b"x", 60, now),
            "fenced update": lambda: store.update(sid, b"x", 60, now, lease),
            "release": lambda: store.release(lease),
            "acquire": lambda: store.acquire(sid, 5.0, now),
            "delete": lambda: store.delete(sid),
            "clear": store.clear,
            "gc": lambda: store.gc(now),
        }
        for name, operation in operations.items():
            with pytest.raises(SessionBackendError, match="PostgreSQL failed") as caught:
                await operation()
            assert caught.value.__cause__ is not None, name
        await asyncio.to_thread(server.start)
        for _ in range(5):  # the pool's dead connections go, one per failed call
            try:
                assert await store.read(sid, 60, time.time()) == b"kept"
                break
            except SessionBackendError:
                await asyncio.sleep(0.05)
        else:
            raise AssertionError("the store did not recover after the restart")
    finally:
        await store.aclose()


async def test_a_store_built_while_the_server_is_down_starts_serving_when_it_comes_up(
    server: PrivatePostgres,
) -> None:
    await asyncio.to_thread(server.stop)
    manager = SessionManager.postgres(server.dsn, table="late_" + secrets.token_hex(4))
    try:
        async with client(manager) as c:
            assert (await c.get("/")).status_code == 503
            await asyncio.to_thread(server.start)
            assert (await c.get("/")).text == "1"
            assert (await c.get("/")).text == "2"
    finally:
        await manager.aclose()


async def _terminate(dsn: str, app_name: str, waiting: bool = False) -> int:
    admin = await asyncpg.connect(dsn)
    try:
        where = "application_name = $1"
        if waiting:  # only a backend blocked in a statement
            where += " AND wait_event_type = 'Lock'"
            for _ in range(200):
                if await admin.fetchval(
                    f"SELECT count(*) FROM pg_stat_activity WHERE {where}", app_name
                ):
                    break
                await asyncio.sleep(0.01)
        return int(
            await admin.fetchval(
                f"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE {where}",
                app_name,
            )
        )
    finally:
        await admin.close()


async def test_reset_connections_never_lose_a_session_and_service_resumes(
    postgres_dsn: str, pg_tables: Any
) -> None:
    app_name = "asess_reset_" + secrets.token_hex(4)
    table = pg_tables()
    dsn = f"{postgres_dsn}?application_name={app_name}"
    manager = SessionManager.postgres(dsn, table=table)
    try:
        async with client(manager) as c:
            load = Load(c, await _logged_in(c, 4))
            # Idle connections reset under the pool: asyncpg usually notices
            # the server's goodbye and dials again; a request that meets one
            # first answers 503.
            assert await _terminate(postgres_dsn, app_name) >= 1
            for _ in range(3):
                for sid in load.seen:
                    await load._one(sid)
            # A connection reset in the middle of a statement (it waits on a
            # row lock another transaction holds).
            sid = next(iter(load.seen))
            blocker = await asyncpg.connect(postgres_dsn)
            try:
                tx = blocker.transaction()
                await tx.start()
                await blocker.execute(f"SELECT 1 FROM {table} WHERE id = $1 FOR UPDATE", sid)
                stuck = asyncio.create_task(c.get("/", headers={"cookie": f"{COOKIE}={sid}"}))
                assert await _terminate(postgres_dsn, app_name, waiting=True) == 1
                assert (await stuck).status_code == 503
                await tx.rollback()
            finally:
                await blocker.close()
            successes = load.successes
            for sid in load.seen:
                await load._one(sid)
            assert load.successes == successes + len(load.seen), "service did not resume"
        assert await _stored(postgres_dsn, table) == load.seen
    finally:
        await manager.aclose()
