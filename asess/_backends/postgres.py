"""The PostgreSQL store: one table, one statement per store call, leases in the row.

Sessions are rows of one table (see :mod:`.postgres_sql` for the schema and
the statements), reached through ``asyncpg``: a read is an ``UPDATE ...
RETURNING data`` that also slides the expiry, so an unchanged request costs
one round trip; a change is one conditional ``UPDATE`` that writes nothing
once a logout has deleted the row, fenced by the lease columns under
``locking=True``. The table is created on first use unless the application
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
from typing import Any

from .._exceptions import ConfigurationError, SessionBackendError
from .base import GcResult, Lease, ServerStore
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
    """

    def __init__(
        self,
        pool: Any,
        *,
        table: str = "asess_sessions",
        create_table: bool = True,
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
        if not isinstance(create_table, bool):
            raise ConfigurationError(f"create_table={create_table!r}: pass True or False")
        self._sql: Statements = statements(table)
        self._table = table
        self._create_table = create_table
        self._ready = False
        self._setup = asyncio.Lock()
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
        data: bytes | None = await self._call(
            "reading a session", "fetchval", self._sql.read, sid, now
        )
        return data

    async def create(self, sid: str, payload: bytes, ttl: int, now: float) -> None:
        await self._call("writing a session", "execute", self._sql.create, sid, payload, ttl, now)

    async def update(
        self, sid: str, payload: bytes, ttl: int, now: float, lease: Lease | None = None
    ) -> bool:
        args: tuple[Any, ...] = (sid, payload, ttl, now)
        sql = self._sql.update
        if lease is not None:
            sql, args = self._sql.fenced_update, (*args, lease.token)
        return await self._call("writing a session", "fetchval", sql, *args) is not None

    async def delete(self, sid: str) -> None:
        await self._call("deleting a session", "execute", self._sql.delete, sid)

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
