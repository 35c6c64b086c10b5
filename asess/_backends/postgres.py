"""The PostgreSQL store: one table, one statement per store call, leases in the row.

Sessions are rows of one table (see :mod:`.postgres_sql` for the schema and
the statements), reached through ``asyncpg``: a read is an ``UPDATE ...
RETURNING data`` that also slides the expiry, so an unchanged request costs
one round trip; a change is one conditional ``UPDATE`` that writes nothing
once a logout has deleted the row, fenced by the lease columns under
``locking=True``. Concurrent requests' reads share one statement, as do
their writes (:mod:`.postgres_batch`). The table is created on first use unless the application
runs the DDL itself. Any database or network failure (server down or
restarting, a reset connection, a statement timeout) is raised as
:class:`~asess.SessionBackendError` with the cause chained, never reported as
a missing session; asyncpg's pool drops broken connections and dials again,
so service resumes with the server. ``asyncpg`` is an optional dependency,
imported when a store is built.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Sequence
from typing import Any

from .._exceptions import ConfigurationError, SessionBackendError
from .base import GcResult, Lease, RecordTimes, ServerStore
from .postgres_batch import Args, Coalescer
from .postgres_sql import GC_BATCH, Statements, statements

#: For a pool built from a DSN: a hung server fails a request after this long
#: instead of holding it (and its lease) forever.
DEFAULT_COMMAND_TIMEOUT = 10.0


class PostgresStore(ServerStore):
    """Sessions in a PostgreSQL table.

    Args:
        pool: an ``asyncpg.Pool`` (yours to close) or a ``postgresql://`` DSN
            (the store builds its pool on first use and closes it in
            :meth:`aclose`).
        table: the table's name, optionally schema-qualified.
        create_table: run ``CREATE TABLE IF NOT EXISTS`` (and the indexes) on
            first use; pass False when migrations own the schema.
        batching: send the reads (and the writes) of concurrent requests as
            one statement each (:mod:`.postgres_batch`).
    """

    def __init__(
        self,
        pool: Any,
        *,
        table: str = "asess_sessions",
        create_table: bool = True,
        batching: bool = True,
    ) -> None:
        try:
            import asyncpg
        except ImportError as exc:
            raise ConfigurationError(
                "the PostgreSQL store needs the asyncpg package: pip install 'asess[postgres]'"
            ) from exc
        self._dsn: str | None = None
        self._pool: Any = None
        if isinstance(pool, str):
            if not pool.startswith(("postgresql://", "postgres://")):
                raise ConfigurationError(
                    f"got the string {_redact(pool)!r}; pass a DSN such as "
                    "'postgresql://user@host:5432/db' or an asyncpg.Pool"
                )
            self._dsn = pool
        elif isinstance(pool, asyncpg.Pool):
            self._pool = pool
        else:
            raise ConfigurationError(
                f"got {type(pool).__name__}; pass an asyncpg.Pool or a postgresql:// DSN"
            )
        for name, flag in (("create_table", create_table), ("batching", batching)):
            if not isinstance(flag, bool):
                raise ConfigurationError(f"{name}={flag!r}: pass True or False")
        self._sql: Statements = statements(table)
        self._table = table
        self._create_table = create_table
        self._ready = False
        self._setup = asyncio.Lock()
        self._reads: Coalescer[bytes | None] | None = None
        self._writes: Coalescer[bool] | None = None
        if batching:
            self._reads = Coalescer(self._read_one, self._read_many, None)
            self._writes = Coalescer(self._update_one, self._update_many, False)
        self._missing_table: type[BaseException] = asyncpg.UndefinedTableError
        # asyncio.TimeoutError is its own class before Python 3.11.
        self._errors: tuple[type[BaseException], ...] = (
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            # What asyncpg raises when a reset connection's goodbye crosses a
            # statement being sent (seen with pg_terminate_backend).
            asyncpg.exceptions.InternalClientError,
            OSError,
            asyncio.TimeoutError,
        )

    @property
    def table(self) -> str:
        return self._table

    @property
    def statements(self) -> Statements:
        """The SQL this store runs (for EXPLAIN checks and migrations)."""
        return self._sql

    async def pool(self) -> Any:
        """The ``asyncpg.Pool``, built on first use from a DSN; the table made if asked."""
        if self._ready:
            return self._pool
        async with self._setup:
            if not self._ready:
                try:
                    await self._prepare()
                except self._errors as exc:
                    raise _backend_error("connecting", exc, self._table) from exc
        return self._pool

    async def _prepare(self) -> None:
        import asyncpg

        if self._pool is None:
            self._pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=10,
                command_timeout=DEFAULT_COMMAND_TIMEOUT,
                reset=keep_session_state,
            )
        if self._create_table:
            async with self._pool.acquire() as conn, conn.transaction():
                # Workers starting together would race on the catalog otherwise.
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", self._table)
                for statement in self._sql.ddl:
                    await conn.execute(statement)
        self._ready = True

    async def _call(self, doing: str, method: str, sql: str, *args: Any) -> Any:
        pool = self._pool if self._ready else await self.pool()
        try:
            return await getattr(pool, method)(sql, *args)
        except self._errors as exc:
            raise _backend_error(doing, exc, self._table, self._missing_table) from exc

    async def read(self, sid: str, ttl: int, now: float) -> bytes | None:
        if self._reads is not None:
            return await self._reads.submit(sid, (sid, now))
        return await self._read_one((sid, now))

    async def _read_one(self, args: Args) -> bytes | None:
        data: bytes | None = await self._call(
            "reading a session", "fetchval", self._sql.read, *args
        )
        return data

    async def _read_many(self, calls: Sequence[Args]) -> dict[str, bytes | None]:
        ids, nows = zip(*calls, strict=True)
        sql = self._sql.read_many
        rows = await self._call("reading sessions", "fetch", sql, list(ids), list(nows))
        return {row[0]: row[1] for row in rows}

    async def create(self, sid: str, payload: bytes, ttl: int, now: float) -> None:
        await self._call("writing a session", "execute", self._sql.create, sid, payload, ttl, now)

    async def update(
        self, sid: str, payload: bytes, ttl: int, now: float, lease: Lease | None = None
    ) -> bool:
        args = (sid, payload, ttl, now, None if lease is None else lease.token)
        if self._writes is not None:
            return await self._writes.submit(sid, args)
        return await self._update_one(args)

    async def _update_one(self, args: Args) -> bool:
        *common, token = args
        sql, params = self._sql.update, tuple(common)
        if token is not None:
            sql, params = self._sql.fenced_update, (*common, token)
        return await self._call("writing a session", "fetchval", sql, *params) is not None

    async def _update_many(self, calls: Sequence[Args]) -> dict[str, bool]:
        columns = [list(column) for column in zip(*calls, strict=True)]
        rows = await self._call("writing sessions", "fetch", self._sql.update_many, *columns)
        return {row[0]: True for row in rows}

    async def delete(self, sid: str) -> bool:
        ended = await self._call("deleting a session", "fetchval", self._sql.delete, sid)
        return ended is True

    async def peek(self, sid: str, now: float) -> RecordTimes | None:
        row = await self._call("reading a session's expiry", "fetchrow", self._sql.peek, sid, now)
        return None if row is None else RecordTimes(row[0], row[1])

    async def acquire(self, sid: str, seconds: float, now: float) -> Lease | None:
        token = secrets.token_hex(16)
        sql = self._sql.acquire
        try:
            taken = await self._call(
                "taking a session lease", "fetchval", sql, sid, token, now, seconds
            )
        except asyncio.CancelledError:
            # The INSERT may have committed though its reply is lost: give the
            # lease back (compare-and-clear on our token) rather than block the session.
            with contextlib.suppress(SessionBackendError):
                await asyncio.shield(self.release(Lease(sid, token, now + seconds)))
            raise
        return Lease(sid, token, now + seconds) if taken else None

    async def release(self, lease: Lease) -> None:
        sql = self._sql.release
        await self._call("releasing a session lease", "execute", sql, lease.sid, lease.token)

    async def clear(self) -> int:
        """Delete every row of this store's table (nothing else); return how many sessions."""
        removed: int = await self._call("clearing sessions", "fetchval", self._sql.clear)
        return removed

    async def gc(self, now: float) -> GcResult:
        """Delete expired rows in batches of :data:`GC_BATCH`, oldest first.

        Each batch is its own statement, so requests keep running between
        batches and no transaction holds thousands of row locks.
        """
        expired = leases = 0
        while True:
            row = await self._call(
                "collecting sessions", "fetchrow", self._sql.gc_batch, now, GC_BATCH
            )
            expired += row[0]
            leases += row[1]
            if row[0] + row[1] < GC_BATCH:
                break
        kept: int = await self._call("counting sessions", "fetchval", self._sql.count_live, now)
        return GcResult(expired=expired, locks=leases, kept=kept)

    async def count_garbage(self, now: float) -> GcResult:
        """What :meth:`gc` would remove at ``now``, removing nothing (``asess gc --dry-run``)."""
        row = await self._call("counting sessions", "fetchrow", self._sql.count_garbage, now)
        kept: int = await self._call("counting sessions", "fetchval", self._sql.count_live, now)
        return GcResult(expired=row[0], locks=row[1], kept=kept)

    async def aclose(self) -> None:
        for batches in (self._reads, self._writes):
            if batches is not None:
                await batches.wait_idle()
        if self._dsn is not None and self._pool is not None:
            pool, self._pool, self._ready = self._pool, None, False
            await pool.close()


async def keep_session_state(conn: Any) -> None:
    """A pool ``reset`` that sends nothing (asyncpg still rolls back an open transaction).

    asyncpg's default reset runs one more statement each time a connection
    goes back to the pool, which would double the round trips of every store
    call; the store sets no session state (no SET, LISTEN, cursors or
    session-level advisory locks), so there is nothing to reset.
    """


def _redact(dsn: str) -> str:
    """``dsn`` without a password, for error messages."""
    head, at, tail = dsn.rpartition("@")
    if not at or ":" not in head.partition("://")[2]:
        return dsn
    scheme, _, credentials = head.partition("://")
    return f"{scheme}://{credentials.partition(':')[0]}:***@{tail}"


def _backend_error(
    doing: str,
    exc: BaseException,
    table: str,
    missing_table: type[BaseException] | None = None,
) -> SessionBackendError:
    if missing_table is not None and isinstance(exc, missing_table):
        hint = (
            f"the table {table!r} does not exist: run the DDL from the README, "
            "or build the store with create_table=True"
        )
    else:
        hint = "check that the server is reachable and accepts writes, and the pool's timeouts"
    return SessionBackendError(
        f"PostgreSQL failed while {doing} ({type(exc).__name__}: {exc}); {hint}"
    )
