"""The Redis store on a real 3-primary cluster: spread, leases, slot moves, misuse, a lost node.

test_store_redis.py already runs its tests on the session's cluster too;
these cover what only a cluster has: sessions and their leases spread over
the primaries, slots that move (with a lease held), a client that ignores
redirections, and a primary that goes away and comes back.
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
from asess._backends.redis_lock import lock_key
from asess._exceptions import SessionBackendError
from asess._ids import new_session_id
from asess._record import Record
from asess._serialize import dump_record, load_record
from tests.redis_servers import (
    RedisClusterServers,
    RedisServer,
    cluster_client,
    command_counts,
    delta,
    need_redis_server,
)

PIPELINE_MODES = pytest.mark.parametrize(
    "autopipeline", [True, False], ids=["autopipeline", "direct"]
)


NOW = 1_800_000_000.0


def payload(**data: Any) -> bytes:
    now = time.time()
    return dump_record(Record(data=data, created_at=now, issued_at=now))


async def data_of(store: RedisStore, sid: str, ttl: int = 600) -> Any:
    raw = await store.read(sid, ttl, NOW)
    return None if raw is None else load_record(raw).data


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
    sids = [new_session_id() for _ in range(90)]
    for sid in sids:
        await store.create(sid, payload(sid=sid), 60, NOW)
    holders = {owner(redis_cluster, store.key(sid)).port for sid in sids}
    assert holders == {node.port for node in redis_cluster.nodes}
    for sid in sids:
        assert await data_of(store, sid, 60) == {"sid": sid}
    assert await store.clear() == 90
    for node in redis_cluster.nodes:
        with node.client() as conn:
            assert list(conn.scan_iter(match=prefix + "*")) == []
    await client.aclose()


@PIPELINE_MODES
async def test_each_lease_lives_on_its_sessions_node(
    redis_cluster: RedisClusterServers, prefix: str, autopipeline: bool
) -> None:
    """The fenced write is one script over both keys: they must share a node."""
    client = cluster_client(redis_cluster)
    store = RedisStore(client, prefix=prefix, autopipeline=autopipeline)
    sids = [new_session_id() for _ in range(30)]
    leases = []
    for sid in sids:
        await store.create(sid, payload(n=0), 60, NOW)
        lease = await store.acquire(sid, 5.0, NOW)
        assert lease is not None
        leases.append(lease)
    for sid, lease in zip(sids, leases, strict=True):
        node = owner(redis_cluster, store.key(sid))
        with node.client() as conn:
            assert conn.get(lock_key(store.key(sid))) == lease.token.encode()
        assert await store.update(sid, payload(n=1), 60, NOW, lease) is True
        await store.release(lease)
    assert {owner(redis_cluster, store.key(sid)).port for sid in sids} == {
        node.port for node in redis_cluster.nodes
    }
    for node in redis_cluster.nodes:
        with node.client() as conn:
            assert list(conn.scan_iter(match="*:lock")) == []
    await client.aclose()


def move_slot(cluster: RedisClusterServers, keys: list[str]) -> RedisServer:
    """Migrate the slot of ``keys`` (one slot) to another primary, as a reshard does."""
    slot = key_slot(keys[0].encode())
    assert all(key_slot(key.encode()) == slot for key in keys)
    source = owner(cluster, keys[0])
    target = next(node for node in cluster.nodes if node is not source)
    source_id, target_id = node_id(source), node_id(target)
    with source.client() as src, target.client() as dst:
        dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", source_id)
        src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", target_id)
        src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
        for node in cluster.nodes:
            with node.client() as conn:
                conn.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)
    assert owner(cluster, keys[0]) is target
    return target


@PIPELINE_MODES
async def test_a_slot_moved_under_the_client_is_followed(
    redis_cluster: RedisClusterServers, prefix: str, autopipeline: bool
) -> None:
    client = cluster_client(redis_cluster)
    store = RedisStore(client, prefix=prefix, autopipeline=autopipeline)
    sid = new_session_id()
    key = store.key(sid)
    await store.create(sid, payload(n=1), 600, NOW)  # the client now caches the slot's owner
    target = move_slot(redis_cluster, [key])  # behind the client's back

    assert await data_of(store, sid) == {"n": 1}  # MOVED, followed by the cluster client
    assert await store.update(sid, payload(n=2), 600, NOW) is True
    with target.client() as conn:
        assert conn.get(key).startswith(b"600 {")
    # A lease on the new owner, whose script cache has never seen our scripts.
    lease = await store.acquire(sid, 5.0, NOW)
    assert lease is not None
    assert await store.update(sid, payload(n=3), 600, NOW, lease) is True
    await store.release(lease)
    with target.client() as conn:
        assert conn.exists(lock_key(key)) == 0
    assert await data_of(store, sid) == {"n": 3}
    await client.aclose()


@PIPELINE_MODES
async def test_a_lease_held_through_a_reshard_still_fences(
    redis_cluster: RedisClusterServers, prefix: str, autopipeline: bool
) -> None:
    """The lease key moves with its session, so holder and waiters agree on the new node."""
    client = cluster_client(redis_cluster)
    store = RedisStore(client, prefix=prefix, autopipeline=autopipeline)
    sid = new_session_id()
    key = store.key(sid)
    await store.create(sid, payload(n=1), 600, NOW)
    lease = await store.acquire(sid, 30.0, NOW)
    assert lease is not None
    target = move_slot(redis_cluster, [key, lock_key(key)])
    assert await store.acquire(sid, 5.0, NOW) is None  # still held, on the new node
    with target.client() as conn:
        conn.script_flush()  # a node that never ran our scripts, or restarted
    before = await command_counts(client)
    assert await store.update(sid, payload(n=2), 600, NOW, lease) is True
    assert delta(before, await command_counts(client)).get("eval") == 1
    await store.release(lease)
    with target.client() as conn:
        assert conn.exists(lock_key(key)) == 0
    assert await data_of(store, sid) == {"n": 2}
    await client.aclose()


async def test_a_plain_client_on_one_node_gets_backend_errors_not_empty_sessions(
    redis_cluster: RedisClusterServers, prefix: str
) -> None:
    node = redis_cluster.nodes[0]
    # The classic misconfiguration: redis.asyncio.Redis pointed at one cluster node.
    client = aioredis.from_url(node.url, retry=Retry(NoBackoff(), 0))
    store = RedisStore(client, prefix=prefix)
    sid = new_session_id()
    while owner(redis_cluster, prefix + sid) is node:
        sid = new_session_id()
    with pytest.raises(SessionBackendError) as caught:
        await store.read(sid, 60, NOW)
    assert isinstance(caught.value.__cause__, MovedError)
    operations = {
        "create": lambda: store.create(sid, payload(n=1), 60, NOW),
        "update": lambda: store.update(sid, payload(n=1), 60, NOW),
        "acquire": lambda: store.acquire(sid, 5.0, NOW),
        "delete": lambda: store.delete(sid),
    }
    for name, operation in operations.items():
        with pytest.raises(SessionBackendError) as caught:
            await operation()
        assert isinstance(caught.value.__cause__, MovedError), name
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
    sids = [new_session_id() for _ in range(30)]
    for sid in sids:
        await store.create(sid, payload(sid=sid), 600, NOW)
    victim = own_cluster.nodes[1]
    lost = [sid for sid in sids if owner(own_cluster, store.key(sid)) is victim]
    assert lost

    victim.kill()
    for operation in (
        lambda: store.read(lost[0], 600, NOW),
        lambda: store.update(lost[0], payload(n=1), 600, NOW),
        lambda: store.acquire(lost[0], 5.0, NOW),
    ):
        with pytest.raises(SessionBackendError) as caught:
            await operation()
        assert isinstance(caught.value.__cause__, (redis.RedisError, OSError))

    victim.start()  # same port, same nodes.conf and append-only file
    own_cluster.wait_ok()
    for sid in lost:
        assert await data_of(store, sid) == {"sid": sid}  # not replaced by an empty session
    await client.aclose()
