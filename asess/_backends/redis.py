"""The Redis store: one command per read, one more per write, on a server or a cluster.

Sessions live under ``prefix + id`` as :func:`~asess._serialize.dump_record`
bytes. Reading is ``GETEX key EX ttl``, which also slides the expiry, so a
request that does not change its session costs one round trip; a write is
``SET key value EX ttl``; removal is ``UNLINK``. Commands from concurrent
requests are batched by :class:`~asess._backends.redis_pipeline.AutoPipeline`.
Any Redis or network failure is raised as :class:`~asess.SessionBackendError`
with the cause chained, never reported as a missing session. ``redis`` is an
optional dependency, imported when a store is built.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import AbstractAsyncContextManager, nullcontext
from typing import TYPE_CHECKING, Any, cast

from .._exceptions import ConfigurationError, SessionBackendError
from .._ids import is_session_id
from .._record import Record
from .._serialize import dump_record, load_record
from .base import Store
from .redis_lock import RedisLock, check_lockable_prefix, lock_key
from .redis_pipeline import AutoPipeline, ClusterBatches, ConnectionBatches

if TYPE_CHECKING:
    from redis.asyncio import Redis, RedisCluster

logger = logging.getLogger("asess.redis")

_SCAN_COUNT = 500
_GLOB_SPECIAL = frozenset("\\*?[]")


def _glob_escape(text: str) -> str:
    """Escape ``text`` so ``SCAN MATCH`` takes it literally."""
    return "".join("\\" + ch if ch in _GLOB_SPECIAL else ch for ch in text)


class RedisStore(Store):
    """Sessions in Redis, a Redis Cluster, or a Sentinel-managed master.

    Args:
        client: a ``redis.asyncio.Redis`` (a Sentinel ``master_for`` client
            included), a ``redis.asyncio.RedisCluster``, or a ``redis://`` URL.
            A client you pass stays yours to close; one built from a URL is
            closed by :meth:`aclose`.
        prefix: prepended to every session id to form its key.
        locking: hold a per-session lock in Redis from load to save.
        lock_timeout: seconds to wait for a lock, and the lock's expiry.
        autopipeline: batch the commands of concurrent requests.
        default_ttl: the expiry used when a caller passes a ``ttl`` below 1,
            since every key this store writes must expire.
    """

    def __init__(
        self,
        client: Redis | RedisCluster | str,
        *,
        prefix: str = "emtsess:",
        locking: bool = False,
        lock_timeout: float = 10.0,
        autopipeline: bool = True,
        default_ttl: int = 3600,
    ) -> None:
        try:
            import redis
            import redis.asyncio as aioredis
            from redis.exceptions import (
                NoScriptError,
                RedisClusterException,
                RedisError,
                ResponseError,
            )
        except ImportError as exc:
            raise ConfigurationError(
                "the Redis store needs the redis package: pip install 'asess[redis]'"
            ) from exc
        if isinstance(client, (redis.Redis, redis.RedisCluster)):
            raise ConfigurationError(
                f"got a synchronous {type(client).__name__}; the Redis store needs "
                "redis.asyncio.Redis or redis.asyncio.RedisCluster (same arguments)"
            )
        if isinstance(client, str):
            client = aioredis.from_url(client)
            self._owns_client = True
        elif isinstance(client, (aioredis.Redis, aioredis.RedisCluster)):
            self._owns_client = False
        else:
            raise ConfigurationError(
                f"got {type(client).__name__}; pass a redis.asyncio.Redis, a "
                "redis.asyncio.RedisCluster or a redis:// URL"
            )
        if not prefix:
            raise ConfigurationError(
                "prefix must not be empty: clear() scans for it, and other data may share the db"
            )
        if locking:
            check_lockable_prefix(prefix)
        if lock_timeout <= 0:
            raise ConfigurationError("lock_timeout must be a positive number of seconds")
        if default_ttl < 1:
            raise ConfigurationError("default_ttl must be at least 1 second")
        self._client: Redis | RedisCluster = client
        self._cluster = isinstance(client, aioredis.RedisCluster)
        self._prefix = prefix
        self.locking = locking
        self._lock_timeout = lock_timeout
        self._default_ttl = default_ttl
        self._pipeline: AutoPipeline | None = None
        if autopipeline:
            if self._cluster:
                self._pipeline = AutoPipeline(ClusterBatches(client))
            else:
                self._pipeline = AutoPipeline(ConnectionBatches(client, ResponseError))
        self._no_script: type[BaseException] = NoScriptError
        # asyncio.TimeoutError is its own class before Python 3.11.
        self._errors: tuple[type[BaseException], ...] = (
            RedisError,
            RedisClusterException,
            OSError,
            asyncio.TimeoutError,
        )

    @property
    def client(self) -> Redis | RedisCluster:
        """The ``redis.asyncio`` client this store talks through."""
        return self._client

    def key(self, ref: str) -> str:
        """The Redis key holding session ``ref``."""
        return self._prefix + ref

    async def load(self, ref: str, ttl: int) -> Record | None:
        if not is_session_id(ref):
            return None
        key, ttl = self._prefix + ref, self._ttl(ttl)
        try:
            raw = await self._run("GETEX", key, "EX", ttl)
        except self._errors as exc:
            raise _backend_error("reading a session", exc) from exc
        if raw is None:
            return None
        try:
            record = load_record(raw)
        except ValueError as exc:
            logger.debug("ignoring undecodable session %s: %s", key, exc)
            return None
        if record.lifetime and record.lifetime != ttl:
            # The session set its own lifetime: rare, so the common read stays
            # a single command.
            ttl = record.lifetime
            try:
                await self._run("EXPIRE", key, ttl)
            except self._errors as exc:
                raise _backend_error("reading a session", exc) from exc
        record.expires_at = time.time() + ttl
        return record

    async def save(self, ref: str, record: Record, ttl: int) -> str:
        if not is_session_id(ref):
            raise ValueError("not a session id; server-side stores only save generated ids")
        value, ttl = dump_record(record), record.lifetime or self._ttl(ttl)
        try:
            await self._run("SET", self._prefix + ref, value, "EX", ttl)
        except self._errors as exc:
            raise _backend_error("writing a session", exc) from exc
        return ref

    async def touch(self, ref: str, ttl: int) -> None:
        if is_session_id(ref):
            try:
                await self._run("EXPIRE", self._prefix + ref, self._ttl(ttl))
            except self._errors as exc:
                raise _backend_error("refreshing a session", exc) from exc

    async def delete(self, ref: str) -> None:
        if is_session_id(ref):
            try:
                await self._run("UNLINK", self._prefix + ref)
            except self._errors as exc:
                raise _backend_error("deleting a session", exc) from exc

    async def clear(self) -> int:
        """Unlink every session under this prefix, on every primary; return how many.

        Only keys of the form ``prefix + <session id>`` go: other keys sharing
        the prefix, and held locks (they expire on their own), are left alone.
        """
        pattern = _glob_escape(self._prefix) + "*"
        prefix = self._prefix.encode()
        removed = 0
        try:
            for node in await self._primaries():
                cursor = 0
                while True:
                    cursor, keys = await self._scan(node, cursor, pattern)
                    mine = [k for k in map(_as_bytes, keys) if _is_session_key(k, prefix)]
                    if mine:
                        # A cluster client splits a multi-key UNLINK by slot.
                        removed += int(await self._client.unlink(*mine))
                    if cursor == 0:
                        break
        except self._errors as exc:
            raise _backend_error("clearing sessions", exc) from exc
        return removed

    def lock(self, ref: str) -> AbstractAsyncContextManager[object]:
        if not self.locking or not is_session_id(ref):
            return nullcontext()
        return RedisLock(
            self._run, lock_key(self.key(ref)), self._lock_timeout, self._errors, self._no_script
        )

    async def aclose(self) -> None:
        if self._pipeline is not None:
            await self._pipeline.wait_idle()
        if self._owns_client:
            await self._client.aclose()

    def _ttl(self, ttl: int) -> int:
        return ttl if ttl >= 1 else self._default_ttl

    async def _run(self, *args: Any) -> Any:
        if self._pipeline is not None:
            return await self._pipeline.execute(*args)
        return await self._client.execute_command(*args)

    async def _primaries(self) -> list[Any]:
        """The cluster's primary nodes, or ``[None]`` for a single server."""
        if not self._cluster:
            return [None]
        cluster = cast("RedisCluster", self._client)
        await cluster.initialize()  # a no-op once the client knows the cluster
        return list(cluster.get_primaries())

    async def _scan(self, node: Any, cursor: int, pattern: str) -> tuple[int, list[Any]]:
        options = {} if node is None else {"target_nodes": node}
        reply = await self._client.execute_command(
            "SCAN", cursor, "MATCH", pattern, "COUNT", _SCAN_COUNT, **options
        )
        next_cursor, keys = reply
        if isinstance(next_cursor, dict):  # a cluster client keys cursors by node name
            (next_cursor,) = next_cursor.values()
        return int(next_cursor), list(keys)


def _backend_error(doing: str, exc: BaseException) -> SessionBackendError:
    return SessionBackendError(
        f"Redis failed while {doing} ({type(exc).__name__}: {exc}); check that the "
        "server is reachable and accepts writes, and the client's timeouts"
    )


def _as_bytes(key: bytes | str) -> bytes:
    return key.encode() if isinstance(key, str) else key


def _is_session_key(key: bytes, prefix: bytes) -> bool:
    return key.startswith(prefix) and is_session_id(key[len(prefix) :].decode("latin-1"))
