"""The Redis store on a real 3-primary cluster: spread, slot moves, misuse and a lost node.

The contract suite in test_store_redis.py already runs on the session's
cluster; these tests cover what only a cluster has.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import MovedError

from asess._backends.redis import RedisStore
from asess._exceptions import SessionBackendError
from asess._ids import new_session_id
from asess._record import Record
from tests.redis_servers import RedisClusterServers, RedisServer, cluster_client, need_redis_server

PIPELINE_MODES = pytest.mark.parametrize(
    "autopipeline", [True, False], ids=["autopipeline", "direct"]
)


def record(**data: Any) -> Record:
    now = time.time()
    return Record(data=data, created_at=now, issued_at=now)


def owner(cluster: RedisClusterServers, key: str) -> RedisServer:
    """The node serving ``key``'s slot, asked of the cluster itself."""
    slot = key_slot(key.encode())
    with cluster.nodes[0].client() as conn:
        for start, end, primary, *_ in conn.execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                port = int(primary[1])
                return next(node for node in cluster.nodes if node.port == port)
    raise AssertionError(f"slot {slot} is not served")


def node_id(node: RedisServer) -> str:
    with node.client() as conn:
        return str(conn.execute_command("CLUSTER", "MYID").decode())


@PIPELINE_MODES
async def test_sessions_spread_over_every_primary_and_clear_empties_each(
    redis_cluster: RedisClusterServers, prefix: str, autopipeline: bool
) -> None:
    client = cluster_client(redis_cluster)
    store = RedisStore(client, prefix=prefix, autopipeline=autopipeline)
    refs = [new_session_id() for _ in range(90)]
    for ref in refs:
        await store.save(ref, record(ref=ref), 60)
    holders = {owner(redis_cluster, store.key(ref)).port for ref in refs}
    assert holders == {node.port for node in redis_cluster.nodes}
    for ref in refs:
        loaded = await store.load(ref, 60)
        assert loaded is not None and loaded.data == {"ref": ref}
    assert await store.clear() == 90
    for node in redis_cluster.nodes:
        with node.client() as conn:
            assert list(conn.scan_iter(match=prefix + "*")) == []
    await client.aclose()


@PIPELINE_MODES
async def test_a_slot_moved_under_the_client_is_followed(
    redis_cluster: RedisClusterServers, prefix: str, autopipeline: bool
) -> None:
    client = cluster_client(redis_cluster)
    store = RedisStore(client, prefix=prefix, autopipeline=autopipeline)
    ref = new_session_id()
    key = store.key(ref)
    await store.save(ref, record(n=1), 600)  # the client now caches the slot's owner

    # Move the slot to another primary behind the client's back.
    slot = key_slot(key.encode())
    source = owner(redis_cluster, key)
    target = next(node for node in redis_cluster.nodes if node is not source)
    source_id, target_id = node_id(source), node_id(target)
    with source.client() as src, target.client() as dst:
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", key)
        for node in redis_cluster.nodes:
            with node.client() as conn:
                conn.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
    assert owner(redis_cluster, key) is target

    loaded = await store.load(ref, 600)  # MOVED, followed by the cluster client
    assert loaded is not None and loaded.data == {"n": 1}
    await store.save(ref, record(n=2), 600)
    with target.client() as conn:
        assert conn.exists(key) == 1
    await client.aclose()


async def test_a_plain_client_on_one_node_gets_backend_errors_not_empty_sessions(
    redis_cluster: RedisClusterServers, prefix: str
) -> None:
    node = redis_cluster.nodes[0]
    # The classic misconfiguration: redis.asyncio.Redis pointed at one cluster node.
    client = aioredis.from_url(node.url, retry=Retry(NoBackoff(), 0))
    store = RedisStore(client, prefix=prefix)
    ref = new_session_id()
    while owner(redis_cluster, prefix + ref) is node:
        ref = new_session_id()
    with pytest.raises(SessionBackendError) as caught:
        await store.load(ref, 60)
    assert isinstance(caught.value.__cause__, MovedError)
    with pytest.raises(SessionBackendError):
        await store.save(ref, record(n=1), 60)
    await client.aclose()


@pytest.fixture
def own_cluster() -> Iterator[RedisClusterServers]:
    """A cluster of its own, for a test that kills one of its nodes."""
    need_redis_server()
    cluster = RedisClusterServers(persist=True)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


async def test_a_lost_primary_fails_its_sessions_until_it_returns(
    own_cluster: RedisClusterServers, prefix: str
) -> None:
    client = cluster_client(own_cluster, retry=Retry(NoBackoff(), 0), socket_connect_timeout=1)
    store = RedisStore(client, prefix=prefix)
    refs = [new_session_id() for _ in range(30)]
    for ref in refs:
        await store.save(ref, record(ref=ref), 600)
    victim = own_cluster.nodes[1]
    lost = [ref for ref in refs if owner(own_cluster, store.key(ref)) is victim]
    assert lost

    victim.kill()
    with pytest.raises(SessionBackendError) as caught:
        await store.load(lost[0], 600)
    assert isinstance(caught.value.__cause__, (redis.RedisError, OSError))

    victim.start()  # same port, same nodes.conf and append-only file
    own_cluster.wait_ok()
    for ref in lost:
        loaded = await store.load(ref, 600)
        assert loaded is not None and loaded.data == {"ref": ref}
    await client.aclose()
