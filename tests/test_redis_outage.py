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

from asess._backends.redis import RedisStore
from asess._exceptions import SessionBackendError
from asess._ids import new_session_id
from asess._record import Record
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


def record(**data: Any) -> Record:
    now = time.time()
    return Record(data=data, created_at=now, issued_at=now)


async def assert_every_operation_fails(store: RedisStore, ref: str, cause: type) -> None:
    """Each store operation raises SessionBackendError chained to ``cause``; none returns."""
    operations = {
        "load": lambda: store.load(ref, 60),
        "save": lambda: store.save(ref, record(n=0), 60),
        "touch": lambda: store.touch(ref, 60),
        "delete": lambda: store.delete(ref),
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
    store = RedisStore(client, autopipeline=autopipeline, locking=True, lock_timeout=1)
    ref = new_session_id()
    await assert_every_operation_fails(store, ref, RedisConnectionError)
    with pytest.raises(SessionBackendError) as caught:
        async with store.lock(ref):
            pytest.fail("a lock was granted without Redis")
    assert isinstance(caught.value.__cause__, RedisConnectionError)
    await client.aclose()


@PIPELINE_MODES
async def test_killed_then_restarted_server(server: RedisServer, autopipeline: bool) -> None:
    client = aioredis.from_url(server.url, retry=quick_retry())
    store = RedisStore(client, autopipeline=autopipeline)
    ref = new_session_id()
    await store.save(ref, record(user="ada", cart=[1, 2]), 600)

    server.kill()
    await assert_every_operation_fails(store, ref, RedisConnectionError)

    server.start()  # same port, same append-only file
    loaded = await store.load(ref, 600)  # the very next call works
    assert loaded is not None
    assert loaded.data == {"user": "ada", "cart": [1, 2]}  # not replaced by an empty session
    await client.aclose()


@PIPELINE_MODES
async def test_restart_between_requests_is_invisible(
    server: RedisServer, autopipeline: bool
) -> None:
    client = aioredis.from_url(server.url, retry=quick_retry())
    store = RedisStore(client, autopipeline=autopipeline)
    ref = new_session_id()
    await store.save(ref, record(n=1), 600)
    server.kill()
    server.start()
    # The pooled connection is dead; the client's retry reconnects transparently.
    loaded = await store.load(ref, 600)
    assert loaded is not None and loaded.data == {"n": 1}
    await store.save(ref, record(n=2), 600)
    again = await store.load(ref, 600)
    assert again is not None and again.data == {"n": 2}
    await client.aclose()


@PIPELINE_MODES
async def test_timeout_while_server_is_frozen(server: RedisServer, autopipeline: bool) -> None:
    client = aioredis.from_url(server.url, socket_timeout=0.2, retry=Retry(NoBackoff(), 0))
    store = RedisStore(client, autopipeline=autopipeline)
    ref = new_session_id()
    await store.save(ref, record(n=1), 600)
    server.pause()
    try:
        with pytest.raises(SessionBackendError) as caught:
            await store.load(ref, 600)
        assert isinstance(caught.value.__cause__, RedisTimeoutError)
    finally:
        server.resume()
    loaded = await store.load(ref, 600)
    assert loaded is not None and loaded.data == {"n": 1}
    await client.aclose()


@PIPELINE_MODES
async def test_readonly_replica(autopipeline: bool) -> None:
    need_redis_server()
    # A replica of a primary that is not there: it refuses every write.
    replica = RedisServer(extra=("--replicaof", "127.0.0.1", str(free_port()))).start()
    try:
        client = aioredis.from_url(replica.url, retry=Retry(NoBackoff(), 0))
        store = RedisStore(client, autopipeline=autopipeline)
        ref = new_session_id()
        for operation in (lambda: store.save(ref, record(n=1), 60), lambda: store.load(ref, 60)):
            with pytest.raises(SessionBackendError) as caught:
                await operation()
            assert isinstance(caught.value.__cause__, ReadOnlyError)
        await client.aclose()
    finally:
        replica.stop()
