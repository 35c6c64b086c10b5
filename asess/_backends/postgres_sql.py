"""The SQL of the PostgreSQL store: the table, its indexes, and one statement per operation.

Every request-path statement finds its row through the primary key, and
every one is a single statement (asyncpg prepares and caches each on the
connection), so a request costs one round trip per store call. Times are
the lifecycle's clock in epoch seconds, passed as parameters rather than
read from the server's ``now()``, so expiry agrees with the other stores
and with an injected clock. A row whose ``data`` is NULL holds only a lease
(taken on an id that had no record); it is never a session.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .._exceptions import ConfigurationError

# Index names append up to 15 characters; PostgreSQL cuts identifiers at 63.
_MAX_NAME = 48
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

#: Rows one garbage-collection statement deletes: small enough to hold row
#: locks briefly, large enough that a million expired rows take few round trips.
GC_BATCH = 1000


def quote_table(table: str) -> tuple[str, str]:
    """``(quoted, bare)`` for ``table`` or ``schema.table``; refuse anything else."""
    if not isinstance(table, str):
        raise ConfigurationError(f"table={table!r}: pass a name such as 'asess_sessions'")
    parts = table.split(".")
    if len(parts) > 2 or not all(_NAME.fullmatch(p) and len(p) <= _MAX_NAME for p in parts):
        raise ConfigurationError(
            f"table={table!r}: use letters, digits and underscores (not first), at most "
            f"{_MAX_NAME} characters, optionally schema-qualified ('app.asess_sessions')"
        )
    return ".".join(f'"{p}"' for p in parts), parts[-1]


@dataclass(frozen=True)
class Statements:
    """The statements for one table; parameters are documented on each."""

    ddl: tuple[str, ...]
    read: str  # $1 id, $2 now
    read_many: str  # $1 ids (sorted), $2 nows
    create: str  # $1 id, $2 data, $3 ttl, $4 now
    update: str  # $1 id, $2 data, $3 ttl, $4 now
    fenced_update: str  # ... $5 lease token
    update_many: str  # $1 ids (sorted), $2 data, $3 ttls, $4 nows, $5 tokens (NULL: no lease)
    delete: str  # $1 id
    peek: str  # $1 id, $2 now
    acquire: str  # $1 id, $2 token, $3 now, $4 lease seconds
    release: str  # $1 id, $2 token
    clear: str
    gc_batch: str  # $1 now, $2 batch size
    count_live: str  # $1 now
    count_garbage: str  # $1 now

    @property
    def request_path(self) -> dict[str, str]:
        """What a request may run; none of these may scan the table."""
        return {
            "read": self.read,
            "read_many": self.read_many,
            "create": self.create,
            "update": self.update,
            "fenced_update": self.fenced_update,
            "update_many": self.update_many,
            "delete": self.delete,
            "peek": self.peek,
            "acquire": self.acquire,
            "release": self.release,
        }


def statements(table: str) -> Statements:
    t, bare = quote_table(table)
    ddl = (
        f"""CREATE TABLE IF NOT EXISTS {t} (
    id            text PRIMARY KEY,
    data          bytea,
    ttl           integer NOT NULL,
    created_at    double precision NOT NULL,
    expires_at    double precision NOT NULL,
    user_id       text,
    lease_token   text,
    lease_expires double precision
)""",
        f'CREATE INDEX IF NOT EXISTS "{bare}_expires_at" ON {t} (expires_at)',
        f'CREATE INDEX IF NOT EXISTS "{bare}_user_id" ON {t} (user_id) WHERE user_id IS NOT NULL',
    )
    write = "data = $2, ttl = $3::integer, expires_at = $4::float8 + $3::integer"
    live = "id = $1 AND expires_at > $4::float8"
    return Statements(
        ddl=ddl,
        # Sliding from the record's own ttl ("remember me" keeps its lifetime).
        read=(
            f"UPDATE {t} SET expires_at = $2::float8 + ttl "
            "WHERE id = $1 AND expires_at > $2::float8 RETURNING data"
        ),
        # A fresh id; the conflict branch only meets a lease-only row.
        create=(
            f"INSERT INTO {t} (id, data, ttl, created_at, expires_at) "
            "VALUES ($1, $2, $3::integer, $4::float8, $4::float8 + $3::integer) "
            "ON CONFLICT (id) DO UPDATE SET data = EXCLUDED.data, ttl = EXCLUDED.ttl, "
            "created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at"
        ),
        # The batched forms lock their rows in id order first (FOR UPDATE,
        # which rechecks the conditions on the row version it locks), so two
        # batches sharing rows cannot deadlock; `id = ANY` keeps the primary
        # key in use whatever the planner thinks of unnest's row count.
        read_many=(
            "WITH v AS (SELECT * FROM unnest($1::text[], $2::float8[]) AS v(id, now)), "
            f"l AS (SELECT t.id FROM {t} t JOIN v ON v.id = t.id "
            "WHERE t.id = ANY($1::text[]) AND t.expires_at > v.now "
            "ORDER BY t.id FOR UPDATE OF t) "
            f"UPDATE {t} t SET expires_at = v.now + t.ttl FROM l JOIN v ON v.id = l.id "
            "WHERE t.id = l.id AND t.id = ANY($1::text[]) RETURNING t.id, t.data"
        ),
        update=f"UPDATE {t} SET {write} WHERE {live} RETURNING true",
        update_many=(
            "WITH v AS (SELECT * FROM unnest($1::text[], $2::bytea[], $3::integer[], "
            "$4::float8[], $5::text[]) AS v(id, data, ttl, now, token)), "
            f"l AS (SELECT t.id FROM {t} t JOIN v ON v.id = t.id "
            "WHERE t.id = ANY($1::text[]) AND t.expires_at > v.now AND (v.token IS NULL "
            "OR (t.lease_token = v.token AND t.lease_expires > v.now)) "
            "ORDER BY t.id FOR UPDATE OF t) "
            f"UPDATE {t} t SET data = v.data, ttl = v.ttl, expires_at = v.now + v.ttl "
            "FROM l JOIN v ON v.id = l.id "
            "WHERE t.id = l.id AND t.id = ANY($1::text[]) RETURNING t.id"
        ),
        # The lease check sits in the WHERE of the write itself: PostgreSQL
        # rechecks it on the row version it locks, so a takeover that commits
        # first fences this write off.
        fenced_update=(
            f"UPDATE {t} SET {write} WHERE {live} "
            "AND lease_token = $5 AND lease_expires > $4::float8 RETURNING true"
        ),
        # True when a session row went (a lease-only row is no session).
        delete=f"DELETE FROM {t} WHERE id = $1 RETURNING data IS NOT NULL",
        # Times only, no slide: for the per-user index's listing and pruning.
        peek=(
            f"SELECT expires_at, ttl FROM {t} "
            "WHERE id = $1 AND expires_at > $2::float8 AND data IS NOT NULL"
        ),
        # Waiters poll this, so it must not queue on the row lock while the
        # lease is held: an UPDATE whose WHERE fails takes no lock (an INSERT
        # ... ON CONFLICT DO UPDATE would). Only an id without a row inserts
        # a lease-only row.
        acquire=(
            f"WITH taken AS (UPDATE {t} SET lease_token = $2, "
            "lease_expires = $3::float8 + $4::float8 WHERE id = $1 "
            "AND (lease_token IS NULL OR lease_expires <= $3::float8) RETURNING true), "
            f"added AS (INSERT INTO {t} (id, data, ttl, created_at, expires_at, "
            "lease_token, lease_expires) "
            "SELECT $1, NULL, 0, $3::float8, 0, $2, $3::float8 + $4::float8 "
            f"WHERE NOT EXISTS (SELECT 1 FROM {t} WHERE id = $1) "
            "ON CONFLICT (id) DO NOTHING RETURNING true) "
            "SELECT EXISTS (SELECT 1 FROM taken) OR EXISTS (SELECT 1 FROM added)"
        ),
        # Compare-and-clear; a lease-only row goes with its lease.
        release=(
            f"WITH gone AS (DELETE FROM {t} WHERE id = $1 AND lease_token = $2 "
            "AND data IS NULL RETURNING id) "
            f"UPDATE {t} SET lease_token = NULL, lease_expires = NULL "
            "WHERE id = $1 AND lease_token = $2 AND data IS NOT NULL"
        ),
        # Rows locked in id order first, as batches lock them, so a clear under
        # load cannot deadlock with the requests' batches.
        clear=(
            f"WITH doomed AS (SELECT id FROM {t} ORDER BY id FOR UPDATE), "
            f"gone AS (DELETE FROM {t} s USING doomed WHERE s.id = doomed.id "
            "RETURNING s.data IS NOT NULL AS session) "
            "SELECT count(*) FILTER (WHERE session) FROM gone"
        ),
        # Oldest first through the expires_at index; rows a request holds
        # locked are left for the next run instead of waited for. A held lease
        # keeps its row until it runs out.
        gc_batch=(
            f"WITH doomed AS (SELECT id FROM {t} WHERE expires_at <= $1::float8 "
            "AND coalesce(lease_expires, 0) <= $1::float8 "
            "ORDER BY expires_at LIMIT $2 FOR UPDATE SKIP LOCKED), "
            f"gone AS (DELETE FROM {t} s USING doomed WHERE s.id = doomed.id "
            "RETURNING s.data IS NOT NULL AS session) "
            "SELECT count(*) FILTER (WHERE session), count(*) FILTER (WHERE NOT session) "
            "FROM gone"
        ),
        count_live=f"SELECT count(*) FROM {t} WHERE expires_at > $1::float8",
        count_garbage=(
            f"SELECT count(*) FILTER (WHERE data IS NOT NULL), "
            "count(*) FILTER (WHERE data IS NULL) "
            f"FROM {t} WHERE expires_at <= $1::float8 AND coalesce(lease_expires, 0) <= $1::float8"
        ),
    )
