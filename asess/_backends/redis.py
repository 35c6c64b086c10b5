"""The Redis store: one command per read, one more per write, on a server or a cluster.

Sessions live under ``prefix + id``. Reading is ``GETEX key EX ttl``, which
also slides the expiry, so a request that does not change its session costs
one round trip; a new session is ``SET key value EX ttl``; a change to an
existing one is ``SET ... XX`` (or a fenced script under a lease,
:mod:`.redis_lock`), which writes nothing once a logout has ``UNLINK``-ed the
key, so a dead session stays dead. Commands from concurrent
requests are batched by :class:`~asess._backends.redis_pipeline.AutoPipeline`.
Any Redis or network failure is raised as :class:`~asess.SessionBackendError`
with the cause chained, never reported as a missing session. ``redis`` is an
optional dependency, imported when a store is built.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import sys
from typing import TYPE_CHECKING, Any, cast

import orjson

from .._exceptions import ConfigurationError, SessionBackendError
from .._ids import is_session_id
from .base import Lease, RecordTimes, ServerStore
from .redis_lock import FENCED_UPDATE, RELEASE, check_lockable_prefix, lock_key, run_script
from .redis_pipeline import AutoPipeline, ClusterBatches, ConnectionBatches

if TYPE_CHECKING:
    from redis.asyncio import Redis, RedisCluster

logger = logging.getLogger("asess.redis")

_SCAN_COUNT = 500
_GLOB_SPECIAL = frozenset("\\*?[]")


def _glob_escape(text: str) -> str:
    """Escape ``text`` so ``SCAN MATCH`` takes it literally."""
    return "".join("\\" + ch if ch in _GLOB_SPECIAL else ch for ch in text)


class RedisStore(ServerStore):
    """Sessions in Redis, a Redis Cluster, or a Sentinel-managed master.

    Args:
        client: a ``redis.asyncio.Redis`` (a Sentinel ``master_for`` client
            included), a ``redis.asyncio.RedisCluster``, or a ``redis://`` URL.
            A client you pass stays yours to close; one built from a URL is
            closed by :meth:`aclose`.
        prefix: prepended to every session id to form its key.
        autopipeline: batch the commands of concurrent requests.
    """

    expires_by_itself = True

    def __init__(
        self,
        client: Redis | RedisCluster | str,
        *,
        prefix: str = "emtsess:",
        autopipeline: bool = True,
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
        if prefix == "":
            raise ConfigurationError(
                "prefix must not be empty: clear() scans for it, and other data may share the db"
            )
        if not isinstance(prefix, str):
            raise ConfigurationError(f"prefix={prefix!r}: pass a str such as 'emtsess:'")
        check_lockable_prefix(prefix)
        self._client: Redis | RedisCluster = client
        self._cluster = isinstance(client, aioredis.RedisCluster)
        self._prefix = prefix
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

    def key(self, sid: str) -> str:
        """The Redis key holding session ``sid``."""
        return self._prefix + sid

    async def read(self, sid: str, ttl: int, now: float) -> bytes | None:
        key = self._prefix + sid
        try:
            value: bytes | str | None = await self._run("GETEX", key, "EX", ttl)
            if value is None:
                return None
            if isinstance(value, str):  # a client built with decode_responses=True
                encoder = self._client.get_encoder()
                value = value.encode(encoder.encoding, encoder.encoding_errors)
            own_ttl, payload = split_value(value)
            if own_ttl and own_ttl != ttl:
                # A session with its own lifetime ("remember me"): rare, so the
                # common read stays a single command.
                await self._run("EXPIRE", key, own_ttl)
        except self._errors as exc:
            raise _backend_error("reading a session", exc) from exc
        return payload

    async def create(self, sid: str, payload: bytes, ttl: int, now: float) -> None:
        try:
            await self._run("SET", self._prefix + sid, _frame(ttl, payload), "EX", ttl)
        except self._errors as exc:
            raise _backend_error("writing a session", exc) from exc

    async def update(
        self, sid: str, payload: bytes, ttl: int, now: float, lease: Lease | None = None
    ) -> bool:
        key = self._prefix + sid
        try:
            value = _frame(ttl, payload)
            if lease is None:
                reply = await self._run("SET", key, value, "XX", "EX", ttl)
            else:
                keys = [key, lock_key(key)]
                reply = await run_script(
                    self._run, self._no_script, FENCED_UPDATE, keys, lease.token, value, ttl
                )
        except self._errors as exc:
            raise _backend_error("writing a session", exc) from exc
        return reply is not None

    async def delete(self, sid: str) -> bool:
        try:
            return bool(await self._run("UNLINK", self._prefix + sid))
        except self._errors as exc:
            raise _backend_error("deleting a session", exc) from exc

    async def peek(self, sid: str, now: float) -> RecordTimes | None:
        key = self._prefix + sid
        try:
            # The frame ("<ttl> ") is in the first 11 bytes; PTTL reads the expiry.
            head, pttl = await asyncio.gather(
                self._run("GETRANGE", key, 0, 10), self._run("PTTL", key)
            )
        except self._errors as exc:
            raise _backend_error("reading a session's expiry", exc) from exc
        if not head or pttl is None or int(pttl) < 0:
            return None
        if isinstance(head, str):
            head = head.encode()
        number, sep, _ = head.partition(b" ")
        ttl = int(number) if sep and number.isdigit() else None
        return RecordTimes(now + int(pttl) / 1000, ttl)

    async def acquire(self, sid: str, seconds: float, now: float) -> Lease | None:
        token = secrets.token_hex(16)
        key = lock_key(self._prefix + sid)
        ms = max(1, int(seconds * 1000))
        try:
            taken = await self._run("SET", key, token, "NX", "PX", ms)
        except self._errors as exc:
            raise _backend_error("taking a session lease", exc) from exc
        except asyncio.CancelledError:
            # The SET may have been applied though its reply is lost: free it
            # (compare-and-delete on our token) rather than block the session.
            with contextlib.suppress(*self._errors):
                await asyncio.shield(self._release(key, token))
            raise
        return Lease(sid, token, now + seconds) if taken else None

    async def release(self, lease: Lease) -> None:
        key = lock_key(self._prefix + lease.sid)
        try:
            await self._release(key, lease.token)
        except self._errors as exc:
            raise _backend_error("releasing a session lease", exc) from exc

    async def _release(self, key: str, token: str) -> Any:
        return await run_script(self._run, self._no_script, RELEASE, [key], token)

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

    async def aclose(self) -> None:
        if self._pipeline is not None:
            await self._pipeline.wait_idle()
        if self._owns_client:
            await self._client.aclose()

    async def _run(self, *args: Any) -> Any:
        if self._pipeline is not None:
            return await self._pipeline.execute(*args)
        if sys.version_info < (3, 11):
            return await self._client.execute_command(*args)
        task = asyncio.current_task()
        pending = task.cancelling() if task is not None else 0
        reply = await self._client.execute_command(*args)
        if task is not None and task.cancelling() > pending:
            # redis-py writes through asyncio.wait_for, which before Python 3.12
            # drops a cancellation landing as the write completes; deliver it,
            # or a cancelled request would run on (and acquire() could not
            # give back a lease its caller never sees).
            raise asyncio.CancelledError
        return reply

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


def _frame(ttl: int, payload: bytes) -> bytes:
    # The ttl travels with the value so a read can restore a record's own
    # lifetime; "<ttl> " never starts a record written by asess 0.1 ("{...").
    return b"%d %s" % (ttl, payload)


def split_value(raw: bytes) -> tuple[int | None, bytes]:
    """``(ttl, payload)`` of a stored value; for a value from before framing, its lifetime."""
    head, sep, payload = raw.partition(b" ")
    if sep and head.isdigit() and len(head) <= 10:
        return int(head), payload
    return _legacy_lifetime(raw), raw


def _legacy_lifetime(raw: bytes) -> int | None:
    """The own lifetime of a record written by asess 0.1, which kept it only inside.

    0.1 set such a key's expiry to that lifetime; without this a read would cut
    it to the manager's ``expire``. Only unframed values pay for the parse, and
    a value that is no record is left for the lifecycle to refuse.
    """
    try:
        lifetime = orjson.loads(raw).get("l")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return lifetime if type(lifetime) is int and lifetime > 0 else None


def _backend_error(doing: str, exc: BaseException) -> SessionBackendError:
    return SessionBackendError(
        f"Redis failed while {doing} ({type(exc).__name__}: {exc}); check that the "
        "server is reachable and accepts writes, and the client's timeouts"
    )


def _as_bytes(key: bytes | str) -> bytes:
    return key.encode() if isinstance(key, str) else key


def _is_session_key(key: bytes, prefix: bytes) -> bool:
    return key.startswith(prefix) and is_session_id(key[len(prefix) :].decode("latin-1"))
