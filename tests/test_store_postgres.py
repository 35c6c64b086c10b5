"""The PostgreSQL store on a real server: configuration, statements, plans, gc, timeouts.

The contract itself (conditional updates, fencing, leases, expiry) runs in
tests/test_store_contract.py and through the middleware in tests/test_contract.py;
this file checks what is particular to PostgreSQL: the factory's errors, the
pool's ownership, the README's DDL, one statement per store call, index-only
access on every request path (EXPLAIN on a table with enough rows that a
sequential scan would be chosen if it were possible), batched gc, and a
statement timeout answering 503.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from asess import ConfigurationError, SessionBackendError, SessionManager
from asess._backends.base import Lease
from asess._backends.postgres import PostgresStore, keep_session_state
from asess._ids import new_session_id
from asess.testing import ManualClock

from .cli_inprocess import run_main
from .helpers import client
from .postgres_servers import REQUIRE_POSTGRES
from .servers import subprocess_env

pytestmark = pytest.mark.timeout(60)

if not REQUIRE_POSTGRES:  # under the CI flag a missing driver fails at collection
    pytest.importorskip(
        "asyncpg", reason="asyncpg is not installed (pip install 'asess[postgres]')"
    )
import asyncpg  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NOW = 1_800_000_000.0
ROWS = 20_000


@pytest.fixture
def table(pg_tables: Callable[[], str]) -> str:
    return pg_tables()


@pytest.fixture
async def pool(postgres_dsn: str) -> Any:
    created = await asyncpg.create_pool(postgres_dsn, min_size=1, max_size=4)
    yield created
    await created.close()


# -- configuration --------------------------------------------------------------


def test_a_missing_asyncpg_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "asyncpg", None)
    with pytest.raises(ConfigurationError, match=r"pip install 'asess\[postgres\]'"):
        SessionManager.postgres("postgresql://postgres@127.0.0.1/test")


@pytest.mark.parametrize(
    ("pool_or_dsn", "message"),
    [
        ("redis://127.0.0.1:6379/0", "pass a DSN such as"),
        (object(), "pass an asyncpg.Pool or a postgresql:// DSN"),
        (None, "pass an asyncpg.Pool or a postgresql:// DSN"),
    ],
)
def test_what_is_not_a_pool_or_dsn_is_refused(pool_or_dsn: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        SessionManager.postgres(pool_or_dsn)


def test_a_password_is_not_repeated_in_the_error() -> None:
    with pytest.raises(ConfigurationError) as caught:
        SessionManager.postgres("mysql://app:hunter2@db/app")
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    "table", ["", "sessions; DROP TABLE users", 'a"b', "a.b.c", "1abc", "x" * 49, "app..t"]
)
def test_table_names_that_are_not_plain_identifiers_are_refused(table: str) -> None:
    with pytest.raises(ConfigurationError, match="letters, digits and underscores"):
        SessionManager.postgres("postgresql://postgres@127.0.0.1/test", table=table)


def test_the_factory_keeps_emmett_style_positions() -> None:
    manager = SessionManager.postgres(
        "postgresql://postgres@127.0.0.1/test", "my_sessions", 600, True, "Strict"
    )
    assert manager.expire == 600
    assert manager.cookie_settings.secure is True
    assert isinstance(manager.store, PostgresStore) and manager.store.table == "my_sessions"


async def test_a_dsn_pool_is_the_stores_to_close(postgres_dsn: str, table: str) -> None:
    manager = SessionManager.postgres(postgres_dsn, table=table)
    store = manager.store
    assert isinstance(store, PostgresStore)
    built = await store.pool()
    await manager.aclose()
    assert built.is_closing()


async def test_a_given_pool_stays_open(pool: Any, table: str) -> None:
    manager = SessionManager.postgres(pool, table=table)
    async with client(manager) as c:
        assert (await c.get("/")).text == "1"
    await manager.aclose()
    assert not pool.is_closing()
    assert await pool.fetchval("SELECT 1") == 1


# -- schema ---------------------------------------------------------------------


def _readme_ddl(table: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## PostgreSQL sessions") :]
    block = re.search(r"```sql\n(.*?)```", section, re.S)
    assert block is not None, "the README's PostgreSQL section has no sql block"
    ddl = block.group(1).replace("asess_sessions", table)
    return [s.strip() for s in ddl.split(";") if s.strip()]


async def test_without_create_table_a_missing_table_says_what_to_run(pool: Any, table: str) -> None:
    store = PostgresStore(pool, table=table, create_table=False)
    with pytest.raises(SessionBackendError, match="does not exist: run the DDL"):
        await store.read(new_session_id(), 60, NOW)
    for statement in _readme_ddl(table):
        await pool.execute(statement)
    # The README's DDL is the schema the store expects.
    sid = new_session_id()
    await store.create(sid, b"made by migrations", 60, NOW)
    assert await store.read(sid, 60, NOW) == b"made by migrations"
    ours = PostgresStore(pool, table=table + "_own")
    try:
        await ours.pool()
        assert await _columns(pool, table) == await _columns(pool, table + "_own")
        assert await _indexes(pool, table) == await _indexes(pool, table + "_own")
    finally:
        await pool.execute(f"DROP TABLE IF EXISTS {table}_own")


async def _columns(pool: Any, table: str) -> list[tuple[str, str, str]]:
    rows = await pool.fetch(
        "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
        "WHERE table_name = $1 ORDER BY ordinal_position",
        table,
    )
    return [tuple(r) for r in rows]


async def _indexes(pool: Any, table: str) -> list[str]:
    rows = await pool.fetch("SELECT indexdef FROM pg_indexes WHERE tablename = $1", table)
    return sorted(r[0].replace(table, "T") for r in rows)


async def test_two_workers_creating_the_table_at_once_both_succeed(
    postgres_dsn: str, table: str
) -> None:
    stores = [PostgresStore(postgres_dsn, table=table) for _ in range(4)]
    try:
        await asyncio.gather(*(s.pool() for s in stores))
    finally:
        for s in stores:
            await s.aclose()


# -- one statement per store call ----------------------------------------------


async def test_unchanged_request_costs_one_statement_and_a_change_two(
    postgres_dsn: str, table: str
) -> None:
    sent: list[str] = []

    async def log_queries(conn: Any) -> None:
        # What the driver sends on each connection of the pool, as it sends it.
        conn.add_query_logger(lambda record: sent.append(record.query.split()[0]))

    logged = await asyncpg.create_pool(
        postgres_dsn, min_size=1, max_size=2, init=log_queries, reset=keep_session_state
    )
    manager = SessionManager.postgres(logged, table=table)

    async def reader(s: Any, scope: Any) -> str:
        return str(s.get("counter"))

    try:
        assert isinstance(manager.store, PostgresStore)
        await manager.store.pool()  # the DDL, once
        sent.clear()
        async with client(manager) as c:
            first = await c.get("/")
            assert sent == ["INSERT"]  # a new session: one create
            sid = first.cookies["asess_session"]
            sent.clear()
            await c.get("/", headers={"cookie": f"asess_session={sid}"})
            assert sent == ["UPDATE", "UPDATE"]  # the sliding read, then the conditional write
        sent.clear()
        async with client(manager, reader) as c:
            assert (await c.get("/", headers={"cookie": f"asess_session={sid}"})).text == "2"
        assert sent == ["UPDATE"]  # unchanged: the read alone
    finally:
        await manager.aclose()
        await logged.close()


async def test_the_pool_built_from_a_dsn_sends_no_reset_between_calls(
    postgres_dsn: str, table: str
) -> None:
    store = PostgresStore(postgres_dsn, table=table)
    try:
        pool = await store.pool()
        sent: list[str] = []
        async with pool.acquire() as conn:  # min_size=1: the pool's only connection
            conn.add_query_logger(lambda record: sent.append(record.query))
        sid = new_session_id()
        for _ in range(3):
            await store.read(sid, 60, NOW)
        assert sent == [store.statements.read] * 3, sent
    finally:
        await store.aclose()


# -- plans ----------------------------------------------------------------------


def _nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    found = [plan]
    for child in plan.get("Plans", []):
        found += _nodes(child)
    return found


async def _plan(pool: Any, sql: str, *args: Any) -> list[dict[str, Any]]:
    raw = await pool.fetchval("EXPLAIN (FORMAT JSON) " + sql, *args)
    return _nodes(json.loads(raw)[0]["Plan"])


async def test_no_request_path_statement_scans_the_table(pool: Any, table: str) -> None:
    store = PostgresStore(pool, table=table)
    await store.pool()
    # Enough rows that a scan of the table would cost far more than the index.
    await pool.execute(
        f"INSERT INTO {table} (id, data, ttl, created_at, expires_at) "
        "SELECT md5(i::text), 'x', 60, $1::float8, $1::float8 + (i % 1000) "
        "FROM generate_series(1, $2::integer) AS i",
        NOW,
        ROWS,
    )
    await pool.execute(f"ANALYZE {table}")
    sid, other = sorted([new_session_id(), new_session_id()])
    args = {
        "read": (sid, NOW),
        "read_many": ([sid, other], [NOW, NOW]),
        "update_many": ([sid, other], [b"x", b"y"], [60, 60], [NOW, NOW], [None, "t" * 32]),
        "create": (sid, b"x", 60, NOW),
        "update": (sid, b"x", 60, NOW),
        "fenced_update": (sid, b"x", 60, NOW, "t" * 32),
        "delete": (sid,),
        "peek": (sid, NOW),
        "acquire": (sid, "t" * 32, NOW, 10.0),
        "release": (sid, "t" * 32),
    }
    statements = store.statements.request_path
    assert set(statements) == set(args)
    for name, sql in statements.items():
        nodes = await _plan(pool, sql, *args[name])
        scans = [n for n in nodes if n.get("Relation Name") == table]
        assert scans, f"{name}: the plan never reads the table? {nodes}"
        for node in scans:
            if node["Node Type"] in ("ModifyTable", "Insert"):
                continue  # the write itself; the rows it touches come from the nodes below
            if node["Node Type"] == "Bitmap Heap Scan":  # the heap pages the index named
                (bitmap,) = node["Plans"]
                node = bitmap
                assert node["Node Type"] == "Bitmap Index Scan", (name, node)
            else:
                assert node["Node Type"] in ("Index Scan", "Index Only Scan"), (name, node)
            assert node["Index Name"] == f"{table}_pkey", (name, node)
    # gc reaches the expired rows through the expires_at index, oldest first.
    gc_nodes = await _plan(pool, store.statements.gc_batch, NOW + 5, 1000)
    gc_scans = [n for n in gc_nodes if n.get("Index Name") == f"{table}_expires_at"]
    assert gc_scans, gc_nodes
    assert not [n for n in gc_nodes if n["Node Type"] == "Seq Scan"], gc_nodes


# -- gc and clear -----------------------------------------------------------------


async def test_gc_removes_expired_rows_in_batches_and_keeps_the_rest(pool: Any, table: str) -> None:
    manager = SessionManager.postgres(pool, table=table, clock=ManualClock(NOW))
    store = manager.store
    assert isinstance(store, PostgresStore)
    await store.pool()
    expired = 2_500  # more than two batches
    await pool.execute(
        f"INSERT INTO {table} (id, data, ttl, created_at, expires_at) "
        "SELECT 'old' || i, 'x', 60, $1::float8 - 120, $1::float8 - 60 + i * 0.001 "
        "FROM generate_series(1, $2::integer) AS i",
        NOW,
        expired,
    )
    live = new_session_id()
    await store.create(live, b"live", 60, NOW)
    held = await store.acquire(new_session_id(), 30, NOW)  # a lease on an id without a record
    stale = await store.acquire(new_session_id(), 30, NOW - 100)  # ran out long ago
    assert held is not None and stale is not None
    result = await manager.gc()
    assert (result.expired, result.locks, result.kept) == (expired, 1, 1)
    assert await store.read(live, 60, NOW) == b"live"
    assert await store.acquire(held.sid, 30, NOW) is None, "gc freed a live lease"
    assert (await manager.gc()).expired == 0


def _asess(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "asess", *args],
        capture_output=True,
        text=True,
        env=subprocess_env(),
        timeout=60,
    )


async def test_asess_gc_collects_a_postgres_table(postgres_dsn: str, pool: Any, table: str) -> None:
    store = PostgresStore(pool, table=table)
    now = time.time()
    for _ in range(3):
        await store.create(new_session_id(), b"old", 60, now - 600)
    live = new_session_id()
    await store.create(live, b"live", 600, now)
    where = ["--postgres", postgres_dsn, "--table", table]
    # The collecting run is a real `python -m asess`; the others call its main() in process.
    dry = await asyncio.to_thread(run_main, "gc", *where, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "expired sessions that would be removed: 3" in dry.stdout.splitlines()
    assert await pool.fetchval(f"SELECT count(*) FROM {table}") == 4
    real = await asyncio.to_thread(_asess, "gc", *where)
    assert real.returncode == 0, real.stderr
    assert "expired sessions removed: 3" in real.stdout.splitlines()
    assert "live sessions kept: 1" in real.stdout.splitlines()
    assert await store.read(live, 600, time.time()) == b"live"
    missing = await asyncio.to_thread(
        run_main, "gc", "--postgres", postgres_dsn, "--table", "nope_x"
    )
    assert missing.returncode == 1
    assert "does not exist" in missing.stderr and "Traceback" not in missing.stderr
    mixed = await asyncio.to_thread(run_main, "gc", *where, "--expire", "60")
    assert mixed.returncode == 2 and "--path only" in mixed.stderr


async def test_expired_rows_are_invisible_before_gc(pool: Any, table: str) -> None:
    clock = ManualClock(NOW)
    manager = SessionManager.postgres(pool, table=table, expire=60, clock=clock)
    async with client(manager) as c:
        sid = (await c.get("/")).cookies["asess_session"]
        clock.advance(61)
        again = await c.get("/", headers={"cookie": f"asess_session={sid}"})
        assert again.text == "1"
        assert again.cookies["asess_session"] != sid
    assert await pool.fetchval(f"SELECT count(*) FROM {table} WHERE id = $1", sid) == 1


async def test_clear_removes_only_this_tables_rows(pool: Any, table: str) -> None:
    mine = PostgresStore(pool, table=table)
    other = PostgresStore(pool, table=table + "_other")
    try:
        for store in (mine, other):
            for _ in range(3):
                await store.create(new_session_id(), b"x", 60, NOW)
        await mine.acquire(new_session_id(), 30, NOW)  # lease-only rows are not sessions
        assert await mine.clear() == 3
        assert await pool.fetchval(f"SELECT count(*) FROM {table}") == 0
        assert await pool.fetchval(f"SELECT count(*) FROM {table}_other") == 3
    finally:
        await pool.execute(f"DROP TABLE IF EXISTS {table}_other")


# -- timeouts ---------------------------------------------------------------------


async def test_a_statement_timeout_answers_503_and_keeps_the_session(
    postgres_dsn: str, table: str
) -> None:
    impatient = await asyncpg.create_pool(
        postgres_dsn, min_size=1, max_size=2, server_settings={"statement_timeout": "200"}
    )
    manager = SessionManager.postgres(impatient, table=table)
    try:
        async with client(manager) as c:
            sid = (await c.get("/")).cookies["asess_session"]
            blocker = await asyncpg.connect(postgres_dsn)
            try:
                tx = blocker.transaction()
                await tx.start()
                await blocker.execute(f"SELECT 1 FROM {table} WHERE id = $1 FOR UPDATE", sid)
                stuck = await c.get("/", headers={"cookie": f"asess_session={sid}"})
                assert stuck.status_code == 503
                assert "asess_session" not in stuck.cookies
                await tx.rollback()
            finally:
                await blocker.close()
            after = await c.get("/", headers={"cookie": f"asess_session={sid}"})
            assert after.text == "2", "the session was lost or reset by the timeout"
    finally:
        await manager.aclose()
        await impatient.close()


# -- batching -------------------------------------------------------------------------


async def test_concurrent_reads_share_a_statement_and_each_gets_its_own_row(
    pool: Any, table: str
) -> None:
    store = PostgresStore(pool, table=table)
    sids = sorted(new_session_id() for _ in range(30))
    for i, sid in enumerate(sids[:20]):
        await store.create(sid, b"row %d" % i, 60 if i % 2 else 5, NOW)
    reads = store._reads
    assert reads is not None
    before = reads.statements_sent
    later = NOW + 10  # the even rows (ttl 5) have expired by then; the last 10 never existed
    got = await asyncio.gather(*(store.read(sid, 60, later) for sid in sids))
    assert reads.statements_sent - before == 1, "the reads were not batched"
    expected = [(b"row %d" % i if i < 20 and i % 2 else None) for i in range(30)]
    assert got == expected
    # The batch slid each live row from its own now, by its own ttl.
    rows = await pool.fetch(f"SELECT id, expires_at FROM {table} WHERE expires_at > $1", later)
    assert {r["id"]: r["expires_at"] for r in rows} == {
        sids[i]: later + 60 for i in range(1, 20, 2)
    }


async def test_concurrent_writes_share_a_statement_and_keep_every_condition(
    pool: Any, table: str
) -> None:
    store = PostgresStore(pool, table=table)
    sids = sorted(new_session_id() for _ in range(8))
    for sid in sids:
        await store.create(sid, b"v0", 60, NOW)
    await store.delete(sids[0])  # logged out: must stay gone
    held = await store.acquire(sids[1], 30, NOW)  # our lease
    stale = await store.acquire(sids[2], 5, NOW - 10)  # ran out
    taken = await store.acquire(sids[3], 30, NOW)
    assert held and stale and taken
    not_ours = Lease(sids[3], "f" * 32, taken.expires_at)
    writes = store._writes
    assert writes is not None
    before = writes.statements_sent
    leases: list[Lease | None] = [None, held, stale, not_ours, None, None, None, None]
    fillers = [new_session_id() for _ in range(4)]
    for sid in fillers:
        await store.create(sid, b"v0", 60, NOW)
    # Calls that need no lease share the statement with those that do.
    results = await asyncio.gather(
        *(store.update(sid, b"f", 60, NOW) for sid in fillers),
        *(store.update(sid, b"v1", 60, NOW, lease) for sid, lease in zip(sids, leases)),
    )
    assert writes.statements_sent - before == 1
    assert results == [True] * 4 + [False, True, False, False, True, True, True, True]
    data = {r["id"]: r["data"] for r in await pool.fetch(f"SELECT id, data FROM {table}")}
    assert sids[0] not in data, "a batched write revived a deleted session"
    assert [data[sid] for sid in sids[1:]] == [b"v1", b"v0", b"v0", b"v1", b"v1", b"v1", b"v1"]
    assert [data[sid] for sid in fillers] == [b"f"] * 4


async def test_calls_for_one_id_in_one_turn_go_in_separate_statements(
    pool: Any, table: str
) -> None:
    store = PostgresStore(pool, table=table)
    sid = new_session_id()
    await store.create(sid, b"v0", 60, NOW)
    results = await asyncio.gather(*(store.update(sid, b"v%d" % i, 60, NOW) for i in range(5)))
    assert results == [True] * 5
    assert await store.read(sid, 60, NOW) in {b"v%d" % i for i in range(5)}


async def test_a_failed_batch_fails_each_caller_and_a_cancelled_one_is_dropped(
    pool: Any, table: str
) -> None:
    store = PostgresStore(pool, table=table)
    sids = [new_session_id() for _ in range(8)]
    for sid in sids:
        await store.create(sid, b"x", 60, NOW)
    calls = [asyncio.ensure_future(store.read(sid, 60, NOW)) for sid in sids]
    await asyncio.sleep(0)  # all eight queued or sent
    calls[-1].cancel()  # queued, not yet sent: dropped from its batch
    got = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(got[-1], asyncio.CancelledError)
    assert got[:-1] == [b"x"] * 7
    await pool.execute(f"DROP TABLE {table}")
    outcomes = await asyncio.gather(
        *(store.read(sid, 60, NOW) for sid in sids), return_exceptions=True
    )
    assert all(isinstance(o, SessionBackendError) for o in outcomes), outcomes


async def test_batches_from_two_processes_over_the_same_rows_never_deadlock(
    postgres_dsn: str, table: str
) -> None:
    one, two = (PostgresStore(postgres_dsn, table=table) for _ in range(2))
    try:
        sids = [new_session_id() for _ in range(40)]
        for sid in sids:
            await one.create(sid, b"x", 600, NOW)

        async def hammer(store: PostgresStore, order: list[str]) -> None:
            for _ in range(15):
                await asyncio.gather(*(store.update(sid, b"y", 600, NOW) for sid in order))
                await asyncio.gather(*(store.read(sid, 600, NOW) for sid in order))

        # Opposite orders of submission: each batch locks its rows in id order.
        await asyncio.gather(hammer(one, sids), hammer(two, sids[::-1]))
    finally:
        await one.aclose()
        await two.aclose()


def test_batching_must_be_a_bool() -> None:
    with pytest.raises(ConfigurationError, match="batching="):
        PostgresStore("postgresql://postgres@127.0.0.1/test", batching="yes")  # type: ignore[arg-type]


async def test_a_clear_under_batched_load_ends_every_session_without_errors(
    postgres_dsn: str, table: str
) -> None:
    app, admin = (PostgresStore(postgres_dsn, table=table) for _ in range(2))
    try:
        sids = [new_session_id() for _ in range(60)]
        for sid in sids:
            await app.create(sid, b"x", 600, NOW)

        async def load() -> None:
            for _ in range(10):
                await asyncio.gather(*(app.update(sid, b"y", 600, NOW) for sid in sids[::-1]))

        running = asyncio.create_task(load())
        await asyncio.sleep(0.01)
        assert await admin.clear() >= 1
        await running  # no deadlock error reached a request
        assert await app.update(sids[0], b"z", 600, NOW) is False
        assert [await app.read(sid, 600, NOW) for sid in sids] == [None] * len(sids)
    finally:
        await app.aclose()
        await admin.aclose()


async def test_the_startup_check_names_an_unreachable_server() -> None:
    manager = SessionManager.postgres("postgresql://postgres@127.0.0.1:1/test")
    with pytest.raises(SessionBackendError, match="PostgreSQL failed while connecting"):
        await manager.check()
    await manager.aclose()


async def test_asess_sessions_lists_and_revokes_a_users_postgres_sessions(
    postgres_dsn: str, table: str
) -> None:
    manager = SessionManager.postgres(postgres_dsn, table=table, user_key="user")

    async def login(s: Any, scope: Any) -> str:
        s.regenerate()
        s["user"] = "alice"
        return "ok"

    try:
        sids = []
        for _ in range(3):
            async with client(manager, login) as c:
                sids.append((await c.get("/")).cookies["asess_session"])
        where = ["--postgres", postgres_dsn, "--table", table, "--user", "alice"]
        # Listing calls main() in process; the revocation is a real `python -m asess`.
        listed = await asyncio.to_thread(run_main, "sessions", "list", *where)
        assert listed.returncode == 0, listed.stderr
        rows = [json.loads(line) for line in listed.stdout.splitlines()]
        assert len(rows) == 3
        revoked = await asyncio.to_thread(_asess, "sessions", "revoke", *where)
        assert revoked.returncode == 0, revoked.stderr
        assert "revoked 3 session(s)" in revoked.stdout
        assert [await manager.store.read(sid, 60, time.time()) for sid in sids] == [None] * 3  # type: ignore[union-attr]
    finally:
        await manager.aclose()
