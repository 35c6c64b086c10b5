"""Redis failures surface as SessionBackendError, and service resumes when Redis does.

Each test starts its own redis-server (with an fsync-always append-only file,
so a killed server comes back with its data) and kills, pauses or restarts it
on the same port. Clients use a short retry back-off so outages fail fast.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from asess import SessionManager
from asess._backends.base import Lease
from asess._backends.redis import RedisStore
from asess._backends.redis_lock import lock_key
from asess._exceptions import SessionBackendError
from asess._ids import new_session_id
from asess._record import Record
from asess._serialize import dump_record, load_record
from tests.redis_servers import RedisServer, free_port, need_redis_server

PIPELINE_MODES = pytest.mark.parametrize(
    "autopipeline", [True, False], ids=["autopipeline", "direct"]
)


@pytest.fixture
def server() -> Iterator[RedisServer]:
    need_redis_server()
    own = RedisServer(persist=True).start()
    try:
        yield own
    finally:
        own.stop()


def quick_retry(retries: int = 2) -> Retry:
    return Retry(ExponentialBackoff(cap=0.02, base=0.002), retries)


NOW = 1_800_000_000.0


def payload(**data: Any) -> bytes:
    now = time.time()
    return dump_record(Record(data=data, created_at=now, issued_at=now))


async def data_of(store: RedisStore, sid: str) -> Any:
    raw = await store.read(sid, 600, NOW)
    return None if raw is None else load_record(raw).data


async def assert_every_operation_fails(store: RedisStore, sid: str, cause: type) -> None:
    """Each store operation raises SessionBackendError chained to ``cause``; none returns."""
    lease = Lease(sid, "0" * 32, NOW + 5)
    operations = {
        "read": lambda: store.read(sid, 60, NOW),
        "create": lambda: store.create(sid, payload(n=0), 60, NOW),
        "update": lambda: store.update(sid, payload(n=0), 60, NOW),
        "fenced update": lambda: store.update(sid, payload(n=0), 60, NOW, lease),
        "delete": lambda: store.delete(sid),
        "acquire": lambda: store.acquire(sid, 5.0, NOW),
        "release": lambda: store.release(lease),
        "clear": store.clear,
    }
    for name, operation in operations.items():
        with pytest.raises(SessionBackendError) as caught:
            await operation()
        assert isinstance(caught.value.__cause__, cause), name
        assert "Redis failed" in str(caught.value)


@PIPELINE_MODES
async def test_connection_refused(autopipeline: bool) -> None:
    client = aioredis.Redis(port=free_port(), retry=Retry(NoBackoff(), 0))
    store = RedisStore(client, autopipeline=autopipeline)
    await assert_every_operation_fails(store, new_session_id(), RedisConnectionError)
    await client.aclose()


@PIPELINE_MODES
async def test_a_request_during_an_outage_fails_and_leaves_the_session_alone(
    server: RedisServer, autopipeline: bool
) -> None:
    """Through the lifecycle: an error, never an empty session that replaces the real one."""
    client = aioredis.from_url(server.url, retry=quick_retry())
    manager = SessionManager.redis(client, autopipeline=autopipeline, locking=True)
    async with manager.lifecycle(None) as session:
        session["user"] = "ada"
    header = f"{manager.cookie_name}={session.id}"
    server.kill()
    with pytest.raises(SessionBackendError):
        async with manager.lifecycle(header) as session:
            pytest.fail("the request ran without its session")
    server.start()
    async with manager.lifecycle(header) as session:
        assert dict(session) == {"user": "ada"}
        session["cart"] = [1]
    async with manager.lifecycle(header) as session:
        assert dict(session) == {"user": "ada", "cart": [1]}
    assert await client.keys("*:lock") == []
    await client.aclose()


@PIPELINE_MODES
async def test_killed_then_restarted_server(server: RedisServer, autopipeline: bool) -> None:
    client = aioredis.from_url(server.url, retry=quick_retry())
    store = RedisStore(client, autopipeline=autopipeline)
    sid = new_session_id()
    await store.create(sid, payload(user="ada", cart=[1, 2]), 600, NOW)
    lease = await store.acquire(sid, 30.0, NOW)
    assert lease is not None

    server.kill()
    await assert_every_operation_fails(store, sid, RedisConnectionError)

    server.start()  # same port, same append-only file: the lease survived too
    assert await data_of(store, sid) == {"user": "ada", "cart": [1, 2]}  # the very next call
    assert await store.acquire(sid, 5.0, NOW) is None
    # The restarted server's script cache is empty: the fenced write reloads it.
    assert await store.update(sid, payload(user="ada", cart=[1, 2, 3]), 600, NOW, lease)
    await store.release(lease)
    assert await client.exists(lock_key(store.key(sid))) == 0
    assert await data_of(store, sid) == {"user": "ada", "cart": [1, 2, 3]}
    await client.aclose()


@PIPELINE_MODES
async def test_restart_between_requests_is_invisible(
    server: RedisServer, autopipeline: bool
) -> None:
    client = aioredis.from_url(server.url, retry=quick_retry())
    store = RedisStore(client, autopipeline=autopipeline)
    sid = new_session_id()
    await store.create(sid, payload(n=1), 600, NOW)
    server.kill()
    server.start()
    # The pooled connection is dead; the client's retry reconnects transparently.
    assert await data_of(store, sid) == {"n": 1}
    assert await store.update(sid, payload(n=2), 600, NOW)
    assert await data_of(store, sid) == {"n": 2}
    await client.aclose()


@PIPELINE_MODES
async def test_timeout_while_server_is_frozen(server: RedisServer, autopipeline: bool) -> None:
    client = aioredis.from_url(server.url, socket_timeout=0.2, retry=Retry(NoBackoff(), 0))
    store = RedisStore(client, autopipeline=autopipeline)
    sid = new_session_id()
    await store.create(sid, payload(n=1), 600, NOW)
    server.pause()
    try:
        for operation in (
            lambda: store.read(sid, 600, NOW),
            lambda: store.acquire(sid, 5.0, NOW),
        ):
            with pytest.raises(SessionBackendError) as caught:
                await operation()
            assert isinstance(caught.value.__cause__, RedisTimeoutError)
    finally:
        server.resume()
    assert await data_of(store, sid) == {"n": 1}
    await client.aclose()


@PIPELINE_MODES
async def test_readonly_replica(autopipeline: bool) -> None:
    need_redis_server()
    # A replica of a primary that is not there: it refuses every write, and
    # GETEX (a read that slides the expiry) is a write.
    replica = RedisServer(extra=("--replicaof", "127.0.0.1", str(free_port()))).start()
    try:
        client = aioredis.from_url(replica.url, retry=Retry(NoBackoff(), 0))
        store = RedisStore(client, autopipeline=autopipeline)
        sid = new_session_id()
        for operation in (
            lambda: store.create(sid, payload(n=1), 60, NOW),
            lambda: store.update(sid, payload(n=1), 60, NOW),
            lambda: store.read(sid, 60, NOW),
            lambda: store.acquire(sid, 5.0, NOW),
        ):
            with pytest.raises(SessionBackendError) as caught:
                await operation()
            assert isinstance(caught.value.__cause__, ReadOnlyError)
        await client.aclose()
    finally:
        replica.stop()
