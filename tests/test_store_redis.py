"""The Redis store's contract, on a real server and on a real 3-primary cluster.

Every test taking ``store`` or ``redis_client`` runs four (or two) times: on a
single server and on the cluster, with and without auto-pipelining. Command
counts are read from the servers' own ``INFO commandstats``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import multiprocessing
import sys
import time
from typing import Any
from unittest import mock

import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.sentinel import Sentinel

from asess._backends.redis import RedisStore
from asess._backends.redis_lock import lock_key
from asess._exceptions import ConfigurationError, SessionLockTimeout
from asess._ids import new_session_id
from asess._record import Record
from asess._serialize import load_record
from tests.redis_servers import (
    RedisClusterServers,
    RedisSentinel,
    RedisServer,
    cluster_client,
    command_counts,
    delta,
    is_fake,
    need_redis_server,
)


def record(**data: Any) -> Record:
    now = time.time()
    return Record(data=data, created_at=now, issued_at=now)


def test_runs_against_real_redis(redis_url: str | None) -> None:
    """Shows up as a skip, with the reason, when the suite fell back to fakeredis."""
    if redis_url is None:
        pytest.skip(
            "no REDIS_URL and no redis-server on PATH: single-server Redis tests ran "
            "on fakeredis; cluster, outage and locking tests were skipped"
        )
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.ping()
    finally:
        client.close()


# -- contract --------------------------------------------------------------------------


async def test_unknown_id_loads_as_none(store: RedisStore) -> None:
    assert await store.load(new_session_id(), 60) is None


async def test_save_then_load_round_trips(store: RedisStore) -> None:
    ref = new_session_id()
    when = dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.timezone.utc)
    saved = record(user=42, cart=[1, 2], seen=when, tags={"a"})
    assert await store.save(ref, saved, 60) == ref
    before = time.time()
    loaded = await store.load(ref, 60)
    assert loaded is not None
    assert loaded.data == {"user": 42, "cart": [1, 2], "seen": when, "tags": {"a"}}
    assert loaded.created_at == saved.created_at
    assert loaded.issued_at == saved.issued_at
    assert loaded.expires_at is not None
    assert before + 59 <= loaded.expires_at <= time.time() + 60


async def test_value_is_an_orjson_record_under_prefix_plus_id(
    store: RedisStore, redis_client: Any, prefix: str
) -> None:
    ref = new_session_id()
    await store.save(ref, record(n=1), 60)
    assert store.key(ref) == prefix + ref
    raw = await redis_client.get(prefix + ref)
    assert raw.startswith(b"{")
    assert load_record(raw).data == {"n": 1}


async def test_save_overwrites(store: RedisStore) -> None:
    ref = new_session_id()
    await store.save(ref, record(n=1), 60)
    await store.save(ref, record(n=2), 60)
    loaded = await store.load(ref, 60)
    assert loaded is not None and loaded.data == {"n": 2}


async def test_delete_removes_and_tolerates_missing(store: RedisStore) -> None:
    ref = new_session_id()
    await store.save(ref, record(n=1), 60)
    await store.delete(ref)
    assert await store.load(ref, 60) is None
    await store.delete(ref)
    await store.delete(new_session_id())


async def test_undecodable_value_loads_as_none(
    store: RedisStore, redis_client: Any, prefix: str
) -> None:
    ref = new_session_id()
    await redis_client.set(prefix + ref, b"\x80\x04pickle?", ex=60)
    assert await store.load(ref, 60) is None
    await redis_client.set(prefix + ref, b'{"v": 99}', ex=60)
    assert await store.load(ref, 60) is None


@pytest.mark.parametrize("bad", ["", "short", "../../etc/passwd", "x" * 42 + "*", "{a}" * 15])
async def test_malformed_ids_never_reach_redis(
    store: RedisStore, redis_client: Any, bad: str
) -> None:
    if is_fake(redis_client):
        pytest.skip("fakeredis keeps no command statistics")
    await store.load(new_session_id(), 60)  # connect first: connecting runs commands too
    before = await command_counts(redis_client)
    assert await store.load(bad, 60) is None
    await store.touch(bad, 60)
    await store.delete(bad)
    with pytest.raises(ValueError, match="session id"):
        await store.save(bad, record(n=1), 60)
    async with store.lock(bad):
        pass
    assert delta(before, await command_counts(redis_client)) == {}


# -- round trips and expiry ------------------------------------------------------------


async def test_load_is_exactly_one_getex_and_save_one_set(
    store: RedisStore, redis_client: Any
) -> None:
    if is_fake(redis_client):
        pytest.skip("fakeredis keeps no command statistics")
    ref = new_session_id()
    await store.save(ref, record(n=1), 60)
    before = await command_counts(redis_client)
    loaded = await store.load(ref, 60)
    after_load = await command_counts(redis_client)
    assert delta(before, after_load) == {"getex": 1}
    assert loaded is not None
    await store.save(ref, loaded, 60)
    assert delta(after_load, await command_counts(redis_client)) == {"set": 1}


async def test_load_slides_the_ttl(store: RedisStore, redis_client: Any, prefix: str) -> None:
    ref = new_session_id()
    await store.save(ref, record(n=1), 300)
    await redis_client.expire(prefix + ref, 5)
    assert await redis_client.ttl(prefix + ref) <= 5
    assert await store.load(ref, 300) is not None
    assert 290 <= await redis_client.ttl(prefix + ref) <= 300


async def test_save_sets_the_ttl(store: RedisStore, redis_client: Any, prefix: str) -> None:
    ref = new_session_id()
    await store.save(ref, record(n=1), 50)
    assert 40 <= await redis_client.ttl(prefix + ref) <= 50
    await store.save(ref, record(n=2), 500)
    assert 490 <= await redis_client.ttl(prefix + ref) <= 500


async def test_own_lifetime_wins_on_save_and_load(
    store: RedisStore, redis_client: Any, prefix: str
) -> None:
    ref = new_session_id()
    saved = record(n=1)
    saved.lifetime = 7200
    await store.save(ref, saved, 60)
    assert 7100 <= await redis_client.ttl(prefix + ref) <= 7200
    await redis_client.expire(prefix + ref, 5)
    loaded = await store.load(ref, 60)
    assert loaded is not None and loaded.lifetime == 7200
    assert 7100 <= await redis_client.ttl(prefix + ref) <= 7200
    assert loaded.expires_at is not None and loaded.expires_at > time.time() + 7000


async def test_touch_extends_and_never_creates(
    store: RedisStore, redis_client: Any, prefix: str
) -> None:
    ref = new_session_id()
    await store.save(ref, record(n=1), 60)
    await redis_client.expire(prefix + ref, 5)
    await store.touch(ref, 600)
    assert 590 <= await redis_client.ttl(prefix + ref) <= 600
    missing = new_session_id()
    await store.touch(missing, 600)
    assert await redis_client.exists(prefix + missing) == 0


async def test_ttl_below_one_uses_default_ttl(redis_client: Any, prefix: str) -> None:
    store = RedisStore(redis_client, prefix=prefix, default_ttl=900)
    ref = new_session_id()
    await store.save(ref, record(n=1), 0)
    assert 890 <= await redis_client.ttl(prefix + ref) <= 900


# -- clear -----------------------------------------------------------------------------


async def test_clear_removes_only_this_stores_sessions(
    store: RedisStore, redis_client: Any, prefix: str
) -> None:
    refs = [new_session_id() for _ in range(40)]
    for ref in refs:
        await store.save(ref, record(n=1), 60)
    others = {
        prefix + "not-a-session": b"x",  # under the prefix, but not an id
        prefix[:-1] + "X:" + new_session_id(): b"x",  # a neighbouring prefix
        "other:" + new_session_id(): b"x",
    }
    for key, value in others.items():
        await redis_client.set(key, value, ex=60)
    assert await store.clear() == 40
    for ref in refs:
        assert await store.load(ref, 60) is None
    for key in others:
        assert await redis_client.get(key) == b"x"
    await redis_client.unlink(*others)
    assert await store.clear() == 0


async def test_clear_takes_a_glob_prefix_literally(redis_client: Any, prefix: str) -> None:
    globby = prefix + "s[e]ss*?:"
    store = RedisStore(redis_client, prefix=globby)
    mine = [new_session_id() for _ in range(5)]
    for ref in mine:
        await store.save(ref, record(n=1), 60)
    # Each of these matches the unescaped pattern "<prefix>s[e]ss*?:*".
    lookalikes = [prefix + "sess1:" + new_session_id(), prefix + "sessXY:" + new_session_id()]
    for key in lookalikes:
        await redis_client.set(key, b"x", ex=60)
    assert await store.clear() == 5
    for key in lookalikes:
        assert await redis_client.get(key) == b"x"
    await redis_client.unlink(*lookalikes)


async def test_clear_reaches_every_primary(redis_client: Any, prefix: str) -> None:
    store = RedisStore(redis_client, prefix=prefix)
    refs = [new_session_id() for _ in range(600)]  # more than one SCAN page
    await asyncio.gather(*(store.save(ref, record(n=1), 60) for ref in refs))
    assert await store.clear() == 600
    assert [key async for key in redis_client.scan_iter(match=prefix + "*")] == []


# -- construction ----------------------------------------------------------------------


def test_sync_client_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"redis\.asyncio"):
        RedisStore(redis.Redis())  # type: ignore[arg-type]
    cluster = mock.Mock(spec=redis.RedisCluster)  # a real one would connect on creation
    with pytest.raises(ConfigurationError, match=r"redis\.asyncio"):
        RedisStore(cluster)


def test_other_objects_are_configuration_errors() -> None:
    with pytest.raises(ConfigurationError, match="redis://"):
        RedisStore(object())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="prefix"):
        RedisStore(aioredis.Redis(), prefix="")
    with pytest.raises(ConfigurationError, match="lock_timeout"):
        RedisStore(aioredis.Redis(), lock_timeout=0)
    for prefix_ in ("sess}:", "x{}y:"):
        with pytest.raises(ConfigurationError, match="hash tag"):
            RedisStore(aioredis.Redis(), prefix=prefix_, locking=True)
        RedisStore(aioredis.Redis(), prefix=prefix_)  # fine without locks


def test_missing_redis_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(sys.modules):
        if name == "redis" or name.startswith("redis."):
            monkeypatch.setitem(sys.modules, name, None)  # makes `import redis` fail
    with pytest.raises(ConfigurationError, match=r"pip install asess\[redis\]"):
        RedisStore("redis://127.0.0.1:1/0")


async def test_url_string_builds_and_owns_a_client(redis_url: str | None, prefix: str) -> None:
    if redis_url is None:
        pytest.skip("needs a real server to connect to by URL")
    store = RedisStore(redis_url, prefix=prefix)
    assert isinstance(store.client, aioredis.Redis)
    ref = new_session_id()
    await store.save(ref, record(n=1), 60)
    loaded = await store.load(ref, 60)
    assert loaded is not None and loaded.data == {"n": 1}
    assert await store.clear() == 1
    await store.aclose()


@pytest.mark.parametrize("autopipeline", [True, False], ids=["autopipeline", "direct"])
async def test_a_sentinel_master_client_works(prefix: str, autopipeline: bool) -> None:
    need_redis_server()
    master = RedisServer().start()
    sentinel = RedisSentinel(master.port).start()
    try:
        sentinels = Sentinel([("127.0.0.1", sentinel.port)])  # type: ignore[no-untyped-call]
        client = sentinels.master_for(sentinel.service)
        store = RedisStore(client, prefix=prefix, autopipeline=autopipeline, locking=True)
        ref = new_session_id()
        async with store.lock(ref):
            await store.save(ref, record(n=1), 60)
        loaded = await store.load(ref, 60)
        assert loaded is not None and loaded.data == {"n": 1}
        assert await store.clear() == 1
        await client.aclose()
        for connection in sentinels.sentinels:
            await connection.aclose()
    finally:
        sentinel.stop()
        master.stop()


async def test_decoded_responses_client_works(redis_url: str | None, prefix: str) -> None:
    if redis_url is None:
        pytest.skip("needs a real server")
    client = aioredis.from_url(redis_url, decode_responses=True)
    store = RedisStore(client, prefix=prefix)
    ref = new_session_id()
    await store.save(ref, record(name="Zoë"), 60)
    loaded = await store.load(ref, 60)
    assert loaded is not None and loaded.data == {"name": "Zoë"}
    assert await store.clear() == 1
    await client.aclose()


# -- locking ---------------------------------------------------------------------------


@pytest.mark.parametrize("prefix_", ["emtsess:", "{app}:sess:", "a{b:", "}{a}:"])
def test_lock_key_shares_the_data_keys_slot(prefix_: str) -> None:
    from redis.crc import key_slot

    data_key = prefix_ + new_session_id()
    assert lock_key(data_key) != data_key
    assert key_slot(lock_key(data_key).encode()) == key_slot(data_key.encode())


async def test_lock_and_data_key_slots_agree_on_the_server(
    redis_cluster: RedisClusterServers,
) -> None:
    client = cluster_client(redis_cluster)
    for prefix_ in ("emtsess:", "{app}:sess:", "a{b:"):
        data_key = prefix_ + new_session_id()
        assert await client.cluster_keyslot(data_key) == await client.cluster_keyslot(
            lock_key(data_key)
        )
    await client.aclose()


def _locking_store(client: Any, prefix: str, timeout: float = 5.0) -> RedisStore:
    if is_fake(client):
        pytest.skip("locking runs Lua scripts; fakeredis fallback skips it")
    return RedisStore(client, prefix=prefix, locking=True, lock_timeout=timeout)


async def test_lock_excludes_a_second_holder(redis_client: Any, prefix: str) -> None:
    store = _locking_store(redis_client, prefix)
    ref = new_session_id()
    order: list[str] = []
    first_in = asyncio.Event()
    release_first = asyncio.Event()

    async def first() -> None:
        async with store.lock(ref):
            order.append("first in")
            first_in.set()
            await release_first.wait()
            order.append("first out")

    async def second() -> None:
        await first_in.wait()
        async with store.lock(ref):
            order.append("second in")

    tasks = [asyncio.create_task(first()), asyncio.create_task(second())]
    await first_in.wait()
    for _ in range(20):  # let the second waiter retry a few times
        await asyncio.sleep(0.005)
    assert order == ["first in"]
    release_first.set()
    await asyncio.gather(*tasks)
    assert order == ["first in", "first out", "second in"]
    assert await redis_client.exists(lock_key(store.key(ref))) == 0


async def test_cancelled_waiters_and_holders_leave_no_lock_behind(
    redis_client: Any, prefix: str
) -> None:
    store = _locking_store(redis_client, prefix)
    ref = new_session_id()
    key = lock_key(store.key(ref))
    held = asyncio.Event()
    entered: list[int] = []

    async def hold_forever() -> None:
        async with store.lock(ref):
            held.set()
            await asyncio.Event().wait()

    async def enter(i: int) -> None:
        async with store.lock(ref):
            entered.append(i)

    holder = asyncio.create_task(hold_forever())
    await held.wait()
    waiters = [asyncio.create_task(enter(i)) for i in range(20)]
    for _ in range(10):  # let the waiters poll a few times
        await asyncio.sleep(0.005)
    for waiter in waiters[::2]:
        waiter.cancel()
    holder.cancel()  # cancelled inside the block: the lock is still released
    results = await asyncio.gather(holder, *waiters, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results[:1] + results[1::2])
    assert sorted(entered) == list(range(1, 20, 2))
    assert await redis_client.exists(key) == 0


async def test_lock_times_out(redis_client: Any, prefix: str) -> None:
    holder = _locking_store(redis_client, prefix)
    waiter = _locking_store(redis_client, prefix, timeout=0.2)
    ref = new_session_id()
    async with holder.lock(ref):
        with pytest.raises(SessionLockTimeout, match="lock_timeout"):
            async with waiter.lock(ref):
                pytest.fail("the lock was taken twice")


async def test_a_crashed_holders_lock_expires(redis_client: Any, prefix: str) -> None:
    store = _locking_store(redis_client, prefix, timeout=5.0)
    ref = new_session_id()
    key = lock_key(store.key(ref))
    await redis_client.set(key, "crashed-holder", px=150)  # nobody will release this
    async with store.lock(ref):
        assert await redis_client.get(key) != b"crashed-holder"


async def test_release_never_deletes_another_holders_lock(redis_client: Any, prefix: str) -> None:
    store = _locking_store(redis_client, prefix)
    ref = new_session_id()
    key = lock_key(store.key(ref))
    async with store.lock(ref):
        # Our lock "expired" and someone else took it.
        await redis_client.set(key, "someone-else", px=5000)
    assert await redis_client.get(key) == b"someone-else"
    await redis_client.unlink(key)


async def test_release_reloads_a_flushed_script(redis_client: Any, prefix: str) -> None:
    store = _locking_store(redis_client, prefix)
    ref = new_session_id()
    key = lock_key(store.key(ref))
    async with store.lock(ref):
        # As after a server restart or a failover: the script cache is empty.
        if isinstance(redis_client, aioredis.RedisCluster):
            await redis_client.execute_command(
                "SCRIPT FLUSH", target_nodes=aioredis.RedisCluster.PRIMARIES
            )
        else:
            await redis_client.script_flush()
        before = await command_counts(redis_client)
    assert delta(before, await command_counts(redis_client)).get("eval") == 1
    assert await redis_client.exists(key) == 0


def _client_for(spec: tuple[str, Any]) -> Any:
    kind, where = spec
    if kind == "cluster":
        return aioredis.RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in where])
    return aioredis.from_url(where)


async def _count_up(spec: tuple[str, Any], prefix: str, ref: str, tasks: int) -> None:
    client = _client_for(spec)
    store = RedisStore(client, prefix=prefix, locking=True, lock_timeout=30.0)

    async def once() -> None:
        async with store.lock(ref):
            current = await store.load(ref, 60)
            count = current.data["count"] if current is not None else 0
            await asyncio.sleep(0)  # invite interleaving: only the lock prevents it
            await store.save(ref, record(count=count + 1), 60)

    await asyncio.gather(*(once() for _ in range(tasks)))
    await client.aclose()


def count_up_in_process(spec: tuple[str, Any], prefix: str, ref: str, tasks: int) -> None:
    """Entry point of a spawned process: ``tasks`` concurrent locked increments."""
    asyncio.run(_count_up(spec, prefix, ref, tasks))


async def test_locked_counter_across_two_processes(
    request: pytest.FixtureRequest, redis_client: Any, redis_url: str | None, prefix: str
) -> None:
    _locking_store(redis_client, prefix)  # skips on fakeredis
    if isinstance(redis_client, aioredis.RedisCluster):
        spec: tuple[str, Any] = ("cluster", request.getfixturevalue("redis_cluster").startup_nodes)
    else:
        spec = ("single", redis_url)
    ref = new_session_id()
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=count_up_in_process, args=(spec, prefix, ref, 100)) for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        await asyncio.to_thread(worker.join, 120)
    assert [worker.exitcode for worker in workers] == [0, 0]
    final = await RedisStore(redis_client, prefix=prefix).load(ref, 60)
    assert final is not None
    assert final.data == {"count": 200}
