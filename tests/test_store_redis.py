"""The Redis store on a real server and on a real 3-primary cluster: format, cost, leases.

Every test taking ``store`` or ``redis_client`` runs four (or two) times: on a
single server and on the cluster, with and without auto-pipelining. Command
counts are read from the servers' own ``INFO commandstats``; Redis counts the
commands a script runs as well, so a fenced write shows its ``GET`` and ``SET``.
The generic store contract is checked by ``asess.testing``; this file keeps
what only the Redis store has.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import multiprocessing
import os
import sys
import time
from typing import Any
from unittest import mock

import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel

from asess import SessionManager
from asess._backends.redis import RedisStore
from asess._backends.redis_lock import lock_key
from asess._exceptions import ConfigurationError, SessionLockTimeout
from asess._ids import new_session_id
from asess._record import Record
from asess._serialize import dump_record, load_record
from tests.redis_servers import (
    RedisClusterServers,
    RedisSentinel,
    RedisServer,
    cluster_client,
    command_counts,
    delta,
    is_fake,
    need_redis_server,
    primaries,
)
from tests.redis_workers import count_up_in_process

NOW = 1_800_000_000.0  # the lifecycle's clock reading; Redis keeps its own time for expiry


def payload(*, lifetime: int | None = None, **data: Any) -> bytes:
    now = time.time()
    return dump_record(Record(data=data, created_at=now, issued_at=now, lifetime=lifetime))


def needs_stats(client: Any) -> None:
    if is_fake(client):
        pytest.skip("fakeredis keeps no command statistics")


def needs_scripts(client: Any) -> None:
    if is_fake(client):
        pytest.skip("leases run Lua scripts; the fakeredis fallback skips them")


def cookie(manager: SessionManager, sid: str) -> str:
    return f"{manager.cookie_name}={sid}"


async def new_session(manager: SessionManager, **data: Any) -> str:
    """Create a session through the lifecycle, as a login would; return its id."""
    async with manager.lifecycle(None) as session:
        session.update(data)
    assert session.id is not None
    return session.id


async def lease_keys(client: Any, prefix: str) -> list[bytes]:
    """Every ``*:lock`` key on every primary that belongs to this test's prefix."""
    found: list[bytes] = []
    for node in await primaries(client):
        options = {} if node is None else {"target_nodes": node}
        cursor: Any = 0
        while True:
            cursor, keys = await client.execute_command(
                "SCAN", cursor, "MATCH", "*:lock", "COUNT", 1000, **options
            )
            if isinstance(cursor, dict):  # a cluster client keys the cursor by node
                (cursor,) = cursor.values()
            found += [key for key in keys if prefix.encode() in key]
            if int(cursor) == 0:
                break
    return found


@pytest.fixture(params=[True, False], ids=["autopipeline", "direct"])
def autopipeline(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def test_runs_against_real_redis(redis_url: str | None) -> None:
    """Shows up as a skip, with the reason, when the suite fell back to fakeredis."""
    if redis_url is None:
        pytest.skip(
            "no REDIS_URL and no redis-server on PATH: single-server Redis tests ran "
            "on fakeredis; cluster, outage and lease tests were skipped"
        )
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.ping()
    finally:
        client.close()


# -- format and round trips ------------------------------------------------------------


async def test_unknown_id_reads_as_none(store: RedisStore) -> None:
    assert await store.read(new_session_id(), 60, NOW) is None


async def test_create_then_read_round_trips_the_payload(store: RedisStore) -> None:
    sid = new_session_id()
    when = dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.timezone.utc)
    written = payload(user=42, cart=[1, 2], seen=when, tags={"a"})
    await store.create(sid, written, 60, NOW)
    read = await store.read(sid, 60, NOW)
    assert read == written
    assert load_record(read).data == {"user": 42, "cart": [1, 2], "seen": when, "tags": {"a"}}


async def test_value_is_the_ttl_then_the_record_under_prefix_plus_id(
    store: RedisStore, redis_client: Any, prefix: str
) -> None:
    sid = new_session_id()
    written = payload(n=1)
    await store.create(sid, written, 60, NOW)
    assert store.key(sid) == prefix + sid
    assert await redis_client.get(prefix + sid) == b"60 " + written
    assert await store.update(sid, written, 900, NOW)
    assert await redis_client.get(prefix + sid) == b"900 " + written


async def test_update_replaces_an_existing_record(store: RedisStore) -> None:
    sid = new_session_id()
    await store.create(sid, payload(n=1), 60, NOW)
    assert await store.update(sid, payload(n=2), 60, NOW) is True
    read = await store.read(sid, 60, NOW)
    assert read is not None and load_record(read).data == {"n": 2}


async def test_update_of_a_missing_record_writes_nothing(
    store: RedisStore, redis_client: Any, prefix: str
) -> None:
    sid = new_session_id()
    assert await store.update(sid, payload(n=1), 60, NOW) is False
    assert await redis_client.exists(prefix + sid) == 0


async def test_update_after_delete_writes_nothing(
    store: RedisStore, redis_client: Any, prefix: str
) -> None:
    """A request that loaded the session before a logout cannot write it back."""
    sid = new_session_id()
    await store.create(sid, payload(user="ada"), 60, NOW)
    await store.delete(sid)
    assert await store.update(sid, payload(user="ada", cart=[1]), 60, NOW) is False
    assert await redis_client.exists(prefix + sid) == 0


async def test_fenced_update_after_delete_writes_nothing(
    store: RedisStore, redis_client: Any, prefix: str
) -> None:
    needs_scripts(redis_client)
    sid = new_session_id()
    await store.create(sid, payload(user="ada"), 60, NOW)
    lease = await store.acquire(sid, 5.0, NOW)
    assert lease is not None
    await store.delete(sid)  # a logout that did not wait for the lease
    assert await store.update(sid, payload(user="ada", cart=[1]), 60, NOW, lease) is False
    assert await redis_client.exists(prefix + sid) == 0
    await store.release(lease)


async def test_delete_removes_and_tolerates_missing(store: RedisStore) -> None:
    sid = new_session_id()
    await store.create(sid, payload(n=1), 60, NOW)
    await store.delete(sid)
    assert await store.read(sid, 60, NOW) is None
    await store.delete(sid)
    await store.delete(new_session_id())


@pytest.mark.parametrize(
    ("value", "payload_"),
    [
        (b"\x80\x04pickle?", b"\x80\x04pickle?"),
        (b'{"v": 99}', b'{"v": 99}'),
        (b'["l", 5]', b'["l", 5]'),
        (b"60 not json", b"not json"),
        (b"60 ", b""),
    ],
)
async def test_undecodable_values_come_back_as_stored_and_start_a_fresh_session(
    store: RedisStore, redis_client: Any, prefix: str, value: bytes, payload_: bytes
) -> None:
    sid = new_session_id()
    await redis_client.set(prefix + sid, value, ex=60)
    # The store does not judge payloads: it hands back what it holds, unframed.
    assert await store.read(sid, 60, NOW) == payload_
    manager = SessionManager(store)
    async with manager.lifecycle(cookie(manager, sid)) as session:
        assert session.is_new and dict(session) == {}


async def test_values_written_by_asess_0_1_still_read(
    store: RedisStore, redis_client: Any, prefix: str
) -> None:
    """0.1 stored the bare record; the first change rewrites it framed."""
    sid = new_session_id()
    legacy = payload(user="ada", cart=[1, 2])
    await redis_client.set(prefix + sid, legacy, ex=300)
    assert await store.read(sid, 300, NOW) == legacy
    manager = SessionManager(store, expire=300)
    async with manager.lifecycle(cookie(manager, sid)) as session:
        assert not session.is_new
        assert dict(session) == {"user": "ada", "cart": [1, 2]}
        session["cart"].append(3)
    assert session.id == sid
    raw = await redis_client.get(prefix + sid)
    assert raw.startswith(b"300 {")
    assert load_record(raw[4:]).data == {"user": "ada", "cart": [1, 2, 3]}


async def test_a_0_1_value_with_its_own_lifetime_keeps_it_on_read(
    store: RedisStore, redis_client: Any, prefix: str
) -> None:
    sid = new_session_id()
    await redis_client.set(prefix + sid, payload(n=1, lifetime=7200), ex=5)
    assert await store.read(sid, 60, NOW) is not None
    assert 7100 <= await redis_client.ttl(prefix + sid) <= 7200


async def test_malformed_cookie_values_never_reach_redis(
    store: RedisStore, redis_client: Any
) -> None:
    """The lifecycle refuses them before the store: no key is formed from client input."""
    needs_stats(redis_client)
    manager = SessionManager(store, locking=not is_fake(redis_client))
    await store.read(new_session_id(), 60, NOW)  # connect first: connecting runs commands too
    before = await command_counts(redis_client)
    for bad in ["", "short", "../../etc/passwd", "x" * 42 + "*", "{a}" * 15, "a b" * 14 + "c"]:
        async with manager.lifecycle(cookie(manager, bad)) as session:
            assert session.is_new
            session.invalidate()  # a logout with a forged cookie deletes nothing either
    assert delta(before, await command_counts(redis_client)) == {}


# -- round trips and expiry ------------------------------------------------------------


async def test_read_is_one_getex_create_one_set_update_one_set(
    store: RedisStore, redis_client: Any
) -> None:
    needs_stats(redis_client)
    sid = new_session_id()
    await store.read(sid, 60, NOW)  # connect first
    before = await command_counts(redis_client)
    await store.create(sid, payload(n=1), 60, NOW)
    after_create = await command_counts(redis_client)
    assert delta(before, after_create) == {"set": 1}
    read = await store.read(sid, 60, NOW)
    after_read = await command_counts(redis_client)
    assert delta(after_create, after_read) == {"getex": 1}
    assert read is not None
    # SET ... XX: the same single command, and it cannot create (see the missing-record test).
    assert await store.update(sid, payload(n=2), 60, NOW)
    assert delta(after_read, await command_counts(redis_client)) == {"set": 1}


async def test_a_fenced_update_is_one_evalsha(store: RedisStore, redis_client: Any) -> None:
    needs_scripts(redis_client)
    sid = new_session_id()
    await store.create(sid, payload(n=1), 60, NOW)
    lease = await store.acquire(sid, 5.0, NOW)
    assert lease is not None
    assert await store.update(sid, payload(n=2), 60, NOW, lease)  # loads the script
    before = await command_counts(redis_client)
    assert await store.update(sid, payload(n=3), 60, NOW, lease)
    # One round trip; inside it the script's GET of the lease and SET XX of the data.
    assert delta(before, await command_counts(redis_client)) == {"evalsha": 1, "get": 1, "set": 1}
    await store.release(lease)


@pytest.mark.parametrize("locking", [False, True], ids=["plain", "locking"])
async def test_requests_that_change_nothing_write_nothing(
    redis_client: Any, prefix: str, autopipeline: bool, locking: bool
) -> None:
    """Through the lifecycle: one GETEX per unchanged request; a change adds one write."""
    needs_stats(redis_client)
    if locking:
        needs_scripts(redis_client)
    manager = SessionManager.redis(
        redis_client, prefix=prefix, autopipeline=autopipeline, locking=locking
    )
    sid = await new_session(manager, n=1)
    header = cookie(manager, sid)
    async with manager.lifecycle(header) as session:  # warms the scripts up
        session["n"] = 2
    before = await command_counts(redis_client)
    for _ in range(3):
        async with manager.lifecycle(header) as session:
            assert session["n"] == 2
    unchanged = await command_counts(redis_client)
    async with manager.lifecycle(header) as session:
        session["n"] = 3
    changed = await command_counts(redis_client)
    if not locking:
        assert delta(before, unchanged) == {"getex": 3}
        assert delta(unchanged, changed) == {"getex": 1, "set": 1}
    else:
        # Per request: read, SET NX of the lease, read again under it, and the
        # release script (GET + DEL). Nothing touches the data beyond the reads.
        lease = {"getex": 2, "set": 1, "evalsha": 1, "get": 1, "del": 1}
        assert delta(before, unchanged) == {name: 3 * n for name, n in lease.items()}
        # The change is one fenced EVALSHA (its GET and SET XX) on top.
        fenced = {"evalsha": 2, "get": 2, "set": 2, "getex": 2, "del": 1}
        assert delta(unchanged, changed) == fenced
    async with manager.lifecycle(header) as session:
        assert session["n"] == 3


_HANDSHAKE = {"HELLO", "CLIENT", "AUTH", "SELECT"}  # what a new connection sends first


async def monitored(redis_url: str, work: Any) -> list[tuple[str, list[str]]]:
    """``(client type, words)`` of every command the server ran while ``work()`` ran."""
    client = aioredis.from_url(redis_url)
    seen: list[tuple[str, list[str]]] = []
    try:
        async with client.monitor() as monitor:

            async def run() -> None:
                await work()
                await client.echo("asess-monitor-end")

            task = asyncio.create_task(run())
            while True:
                entry = await asyncio.wait_for(monitor.next_command(), 10)
                if entry["command"] == "ECHO asess-monitor-end":
                    break
                words = entry["command"].split(" ")
                if words[0] not in _HANDSHAKE:
                    seen.append((entry["client_type"], words))
            await task
    finally:
        await client.aclose()
    return seen


@pytest.mark.parametrize("locking", [False, True], ids=["plain", "locking"])
async def test_the_exact_commands_of_an_unchanged_and_a_changed_request(
    redis_url: str | None, prefix: str, autopipeline: bool, locking: bool
) -> None:
    """What MONITOR sees: GETEX, then SET ... XX or the fenced script for a change."""
    if redis_url is None:
        pytest.skip("needs a real server for MONITOR")
    client = aioredis.from_url(redis_url)
    manager = SessionManager.redis(
        client, prefix=prefix, autopipeline=autopipeline, locking=locking, expire=600
    )
    sid = await new_session(manager, n=0)
    key, lease = prefix + sid, lock_key(prefix + sid)

    async def request(n: int) -> None:
        async with manager.lifecycle(cookie(manager, sid)) as session:
            session["n"] = n

    await request(1)  # connects, and loads the scripts
    try:
        quiet = await monitored(redis_url, lambda: request(1))
        loud = await monitored(redis_url, lambda: request(2))
    finally:
        await client.aclose()
    getex = ("tcp", ["GETEX", key, "EX", "600"])
    if not locking:
        assert quiet == [getex]
        assert loud[0] == getex and len(loud) == 2
        kind, words = loud[1]
        assert kind == "tcp" and words[:3] == ["SET", key, "600"]  # the ttl frame
        assert words[-3:] == ["XX", "EX", "600"]
    else:
        take = ("tcp", ["SET", lease, mock.ANY, "NX", "PX", "10000"])
        release = [
            ("tcp", ["EVALSHA", mock.ANY, "1", lease, mock.ANY]),
            ("lua", ["get", lease]),
            ("lua", ["del", lease]),
        ]
        assert quiet == [getex, take, getex, *release]
        assert loud[:3] == [getex, take, getex] and loud[-3:] == release
        (kind, script), (_, check), (_, write) = loud[3:-3]
        assert kind == "tcp" and script[:5] == ["EVALSHA", mock.ANY, "2", key, lease]
        assert check == ["get", lease]
        assert write[:3] == ["set", key, "600"] and write[-3:] == ["XX", "EX", "600"]


async def test_read_slides_the_expiry(store: RedisStore, redis_client: Any, prefix: str) -> None:
    sid = new_session_id()
    await store.create(sid, payload(n=1), 300, NOW)
    await redis_client.expire(prefix + sid, 5)
    assert await redis_client.ttl(prefix + sid) <= 5
    assert await store.read(sid, 300, NOW) is not None
    assert 290 <= await redis_client.ttl(prefix + sid) <= 300


async def test_create_and_update_set_the_expiry(
    store: RedisStore, redis_client: Any, prefix: str
) -> None:
    sid = new_session_id()
    await store.create(sid, payload(n=1), 50, NOW)
    assert 40 <= await redis_client.ttl(prefix + sid) <= 50
    assert await store.update(sid, payload(n=2), 500, NOW)
    assert 490 <= await redis_client.ttl(prefix + sid) <= 500


async def test_own_lifetime_is_restored_on_read(
    store: RedisStore, redis_client: Any, prefix: str
) -> None:
    sid = new_session_id()
    await store.create(sid, payload(n=1, lifetime=7200), 7200, NOW)
    assert 7100 <= await redis_client.ttl(prefix + sid) <= 7200
    await redis_client.expire(prefix + sid, 5)
    before = await command_counts(redis_client) if not is_fake(redis_client) else None
    assert await store.read(sid, 60, NOW) is not None  # 60: the manager's usual expire
    assert 7100 <= await redis_client.ttl(prefix + sid) <= 7200
    if before is not None:  # the rare case pays one EXPIRE more; the usual read does not
        assert delta(before, await command_counts(redis_client)) == {"getex": 1, "expire": 1}


async def test_expire_after_through_the_lifecycle_outlives_the_manager_expire(
    redis_client: Any, prefix: str, autopipeline: bool
) -> None:
    manager = SessionManager.redis(
        redis_client, prefix=prefix, expire=60, autopipeline=autopipeline
    )
    async with manager.lifecycle(None) as session:
        session["user"] = "ada"
        session.expire_after(7200)  # "remember me"
    sid = session.id
    assert sid is not None
    assert 7100 <= await redis_client.ttl(prefix + sid) <= 7200
    await redis_client.expire(prefix + sid, 5)
    async with manager.lifecycle(cookie(manager, sid)) as session:
        assert session["user"] == "ada" and session.lifetime == 7200
    assert 7100 <= await redis_client.ttl(prefix + sid) <= 7200


# -- clear -----------------------------------------------------------------------------


async def test_clear_removes_only_this_stores_sessions(
    store: RedisStore, redis_client: Any, prefix: str
) -> None:
    sids = [new_session_id() for _ in range(40)]
    for sid in sids:
        await store.create(sid, payload(n=1), 60, NOW)
    others = {
        prefix + "not-a-session": b"x",  # under the prefix, but not an id
        prefix[:-1] + "X:" + new_session_id(): b"x",  # a neighbouring prefix
        "other:" + new_session_id(): b"x",
    }
    for key, value in others.items():
        await redis_client.set(key, value, ex=60)
    assert await store.clear() == 40
    for sid in sids:
        assert await store.read(sid, 60, NOW) is None
    for key in others:
        assert await redis_client.get(key) == b"x"
    await redis_client.unlink(*others)
    assert await store.clear() == 0


async def test_clear_does_not_count_leases(store: RedisStore, redis_client: Any) -> None:
    needs_scripts(redis_client)
    sid = new_session_id()
    await store.create(sid, payload(n=1), 60, NOW)
    lease = await store.acquire(sid, 5.0, NOW)
    assert lease is not None
    assert await store.clear() == 1
    # The lease outlives its session only until it expires or is released.
    assert await store.update(sid, payload(n=2), 60, NOW, lease) is False
    await store.release(lease)


async def test_clear_takes_a_glob_prefix_literally(redis_client: Any, prefix: str) -> None:
    globby = prefix + "s[e]ss*?:"
    store = RedisStore(redis_client, prefix=globby)
    mine = [new_session_id() for _ in range(5)]
    for sid in mine:
        await store.create(sid, payload(n=1), 60, NOW)
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
    sids = [new_session_id() for _ in range(600)]  # more than one SCAN page
    await asyncio.gather(*(store.create(sid, payload(n=1), 60, NOW) for sid in sids))
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
    with pytest.raises(ConfigurationError, match="prefix"):
        RedisStore(aioredis.Redis(), prefix=b"sess:")  # type: ignore[arg-type]
    # Any manager may lock, so a prefix that would split a session from its
    # lease across cluster slots is refused whatever the locking setting.
    for prefix_ in ("sess}:", "x{}y:"):
        with pytest.raises(ConfigurationError, match="hash tag"):
            RedisStore(aioredis.Redis(), prefix=prefix_)
        with pytest.raises(ConfigurationError, match="hash tag"):
            SessionManager.redis(aioredis.Redis(), prefix=prefix_)


def test_missing_redis_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(sys.modules):
        if name == "redis" or name.startswith("redis."):
            monkeypatch.setitem(sys.modules, name, None)  # makes `import redis` fail
    with pytest.raises(ConfigurationError, match=r"pip install 'asess\[redis\]'"):
        RedisStore("redis://127.0.0.1:1/0")


async def test_url_string_builds_and_owns_a_client(redis_url: str | None, prefix: str) -> None:
    if redis_url is None:
        pytest.skip("needs a real server to connect to by URL")
    store = RedisStore(redis_url, prefix=prefix)
    assert isinstance(store.client, aioredis.Redis)
    sid = new_session_id()
    await store.create(sid, payload(n=1), 60, NOW)
    read = await store.read(sid, 60, NOW)
    assert read is not None and load_record(read).data == {"n": 1}
    assert await store.clear() == 1
    await store.aclose()


async def test_a_sentinel_master_client_works(prefix: str, autopipeline: bool) -> None:
    need_redis_server()
    master = RedisServer().start()
    sentinel = RedisSentinel(master.port).start()
    try:
        sentinels = Sentinel([("127.0.0.1", sentinel.port)])  # type: ignore[no-untyped-call]
        client = sentinels.master_for(sentinel.service)
        store = RedisStore(client, prefix=prefix, autopipeline=autopipeline)
        sid = new_session_id()
        await store.create(sid, payload(n=1), 60, NOW)
        lease = await store.acquire(sid, 5.0, NOW)
        assert lease is not None
        assert await store.update(sid, payload(n=2), 60, NOW, lease)
        await store.release(lease)
        read = await store.read(sid, 60, NOW)
        assert read is not None and load_record(read).data == {"n": 2}
        assert await store.clear() == 1
        await client.aclose()
        for connection in sentinels.sentinels:
            await connection.aclose()
    finally:
        sentinel.stop()
        master.stop()


async def test_decoded_responses_client_works(
    redis_url: str | None, prefix: str, autopipeline: bool
) -> None:
    """A client built with decode_responses=True hands back str; reads still give bytes."""
    if redis_url is None:
        pytest.skip("needs a real server")
    client = aioredis.from_url(redis_url, decode_responses=True)
    store = RedisStore(client, prefix=prefix, autopipeline=autopipeline)
    sid = new_session_id()
    written = payload(name="Zoë", lifetime=7200)
    await store.create(sid, written, 7200, NOW)
    await client.expire(prefix + sid, 5)
    assert await store.read(sid, 60, NOW) == written
    assert 7100 <= await client.ttl(prefix + sid) <= 7200
    manager = SessionManager(store, locking=True)
    async with manager.lifecycle(cookie(manager, sid)) as session:
        assert session["name"] == "Zoë"
        session["name"] = "Zoé"
    read = await store.read(sid, 60, NOW)
    assert read is not None and load_record(read).data == {"name": "Zoé"}
    assert await store.clear() == 1
    await client.aclose()


# -- leases ----------------------------------------------------------------------------


@pytest.mark.parametrize("prefix_", ["emtsess:", "{app}:sess:", "a{b:", "}{a}:"])
def test_lease_key_shares_the_data_keys_slot(prefix_: str) -> None:
    from redis.crc import key_slot

    data_key = prefix_ + new_session_id()
    assert lock_key(data_key) != data_key
    assert lock_key(data_key).endswith(":lock")
    assert key_slot(lock_key(data_key).encode()) == key_slot(data_key.encode())


async def test_lease_and_data_key_slots_agree_on_the_server(
    redis_cluster: RedisClusterServers,
) -> None:
    client = cluster_client(redis_cluster)
    for prefix_ in ("emtsess:", "{app}:sess:", "a{b:"):
        data_key = prefix_ + new_session_id()
        assert await client.cluster_keyslot(data_key) == await client.cluster_keyslot(
            lock_key(data_key)
        )
    await client.aclose()


async def test_acquire_excludes_a_second_holder_until_release(
    store: RedisStore, redis_client: Any, prefix: str
) -> None:
    needs_scripts(redis_client)
    other = RedisStore(redis_client, prefix=prefix)  # another process's store
    sid = new_session_id()
    first = await store.acquire(sid, 5.0, NOW)
    assert first is not None and first.sid == sid and first.expires_at == NOW + 5.0
    assert 4000 < await redis_client.pttl(lock_key(store.key(sid))) <= 5000
    assert await other.acquire(sid, 5.0, NOW) is None
    assert await store.acquire(sid, 5.0, NOW) is None  # not reentrant either
    await store.release(first)
    assert await redis_client.exists(lock_key(store.key(sid))) == 0
    second = await other.acquire(sid, 5.0, NOW)
    assert second is not None and second.token != first.token
    await other.release(second)


async def test_an_expired_lease_is_taken_over_and_fenced_off(
    store: RedisStore, redis_client: Any, prefix: str
) -> None:
    needs_scripts(redis_client)
    sid = new_session_id()
    await store.create(sid, payload(n=1), 60, NOW)
    stale = await store.acquire(sid, 0.02, NOW)  # Redis ends it after 20 ms of real time
    assert stale is not None
    await asyncio.sleep(0.05)
    fresh = await store.acquire(sid, 5.0, NOW)
    assert fresh is not None
    # The stalled holder wakes up: it can neither write nor free the new lease.
    assert await store.update(sid, payload(n=666), 60, NOW, stale) is False
    await store.release(stale)
    assert await redis_client.get(lock_key(store.key(sid))) == fresh.token.encode()
    read = await store.read(sid, 60, NOW)
    assert read is not None and load_record(read).data == {"n": 1}
    assert await store.update(sid, payload(n=2), 60, NOW, fresh) is True
    await store.release(fresh)
    assert await redis_client.exists(lock_key(store.key(sid))) == 0


async def test_a_fenced_update_without_any_lease_writes_nothing(
    store: RedisStore, redis_client: Any
) -> None:
    needs_scripts(redis_client)
    sid = new_session_id()
    await store.create(sid, payload(n=1), 60, NOW)
    lease = await store.acquire(sid, 5.0, NOW)
    assert lease is not None
    await store.release(lease)  # given back: holding it again needs a new acquire
    assert await store.update(sid, payload(n=2), 60, NOW, lease) is False
    read = await store.read(sid, 60, NOW)
    assert read is not None and load_record(read).data == {"n": 1}


async def test_release_never_deletes_another_holders_lease(
    store: RedisStore, redis_client: Any
) -> None:
    needs_scripts(redis_client)
    sid = new_session_id()
    key = lock_key(store.key(sid))
    lease = await store.acquire(sid, 5.0, NOW)
    assert lease is not None
    await redis_client.set(key, "someone-else", px=5000)  # ours lapsed; another took it
    await store.release(lease)
    assert await redis_client.get(key) == b"someone-else"
    await redis_client.unlink(key)


async def test_a_cancelled_acquire_leaves_no_lease_behind(
    store: RedisStore, redis_client: Any, prefix: str
) -> None:
    """Cancelled at every point from queued to answered: the lease never stays."""
    needs_scripts(redis_client)
    landed_then_cancelled = 0
    for turns in range(12):
        sid = new_session_id()
        before = await command_counts(redis_client)
        task = asyncio.create_task(store.acquire(sid, 30.0, NOW))
        for _ in range(turns):
            await asyncio.sleep(0)
        task.cancel()
        (outcome,) = await asyncio.gather(task, return_exceptions=True)
        if isinstance(outcome, asyncio.CancelledError):
            # The lease's SET reached Redis, yet its caller never saw the lease.
            landed_then_cancelled += delta(before, await command_counts(redis_client)).get("set", 0)
        else:  # it finished first: the lease is the caller's to give back
            assert outcome is not None
            await store.release(outcome)
    assert landed_then_cancelled > 0  # the case that matters did happen
    assert await lease_keys(redis_client, prefix) == []


async def test_an_acquire_cancelled_while_redis_holds_it_leaves_no_lease(
    store: RedisStore, redis_client: Any, prefix: str
) -> None:
    """The SET reaches Redis but its caller is gone before the reply comes back."""
    needs_scripts(redis_client)
    nodes = (
        {"target_nodes": aioredis.RedisCluster.PRIMARIES}
        if isinstance(redis_client, aioredis.RedisCluster)
        else {}
    )
    sid = new_session_id()
    await store.read(sid, 60, NOW)  # connect (and learn the slots) before the pause
    await redis_client.execute_command("CLIENT PAUSE", 300, "WRITE", **nodes)
    task = asyncio.create_task(store.acquire(sid, 30.0, NOW))
    await asyncio.sleep(0.1)  # the SET is at the server, held by the pause
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await lease_keys(redis_client, prefix) == []
    assert await store.acquire(sid, 5.0, NOW) is not None  # and the session is free


async def test_a_request_waiting_past_lock_timeout_gives_up(redis_client: Any, prefix: str) -> None:
    needs_scripts(redis_client)
    holder = SessionManager.redis(redis_client, prefix=prefix, locking=True, lock_timeout=5.0)
    waiter = SessionManager.redis(redis_client, prefix=prefix, locking=True, lock_timeout=0.2)
    header = cookie(holder, await new_session(holder, n=0))
    async with holder.lifecycle(header) as session:
        session["n"] = 1
        with pytest.raises(SessionLockTimeout, match="lock_timeout"):
            async with waiter.lifecycle(header):
                pytest.fail("the session was held twice")
    assert await lease_keys(redis_client, prefix) == []
    async with waiter.lifecycle(header) as session:
        assert session["n"] == 1


async def test_a_crashed_holders_lease_runs_out_and_the_next_request_proceeds(
    redis_client: Any, prefix: str
) -> None:
    needs_scripts(redis_client)
    manager = SessionManager.redis(redis_client, prefix=prefix, locking=True, lock_timeout=5.0)
    sid = await new_session(manager, n=0)
    key = lock_key(prefix + sid)
    await redis_client.set(key, "crashed-holder", px=150)  # nobody will release this
    started = time.monotonic()
    async with manager.lifecycle(cookie(manager, sid)) as session:
        assert await redis_client.get(key) not in (None, b"crashed-holder")
        session["n"] = 1
    assert 0.1 < time.monotonic() - started < 4.0  # waited for Redis to end it, not for 5 s
    async with manager.lifecycle(cookie(manager, sid)) as session:
        assert session["n"] == 1
    assert await lease_keys(redis_client, prefix) == []


async def test_release_and_fenced_update_reload_a_flushed_script(
    store: RedisStore, redis_client: Any
) -> None:
    needs_scripts(redis_client)
    sid = new_session_id()
    key = lock_key(store.key(sid))
    await store.create(sid, payload(n=1), 60, NOW)
    lease = await store.acquire(sid, 5.0, NOW)
    assert lease is not None

    async def flush() -> None:
        # As after a server restart or a failover: the script cache is empty.
        if isinstance(redis_client, aioredis.RedisCluster):
            await redis_client.execute_command(
                "SCRIPT FLUSH", target_nodes=aioredis.RedisCluster.PRIMARIES
            )
        else:
            await redis_client.script_flush()

    await flush()
    before = await command_counts(redis_client)
    assert await store.update(sid, payload(n=2), 60, NOW, lease) is True
    assert delta(before, await command_counts(redis_client)).get("eval") == 1
    await flush()
    before = await command_counts(redis_client)
    await store.release(lease)
    assert delta(before, await command_counts(redis_client)).get("eval") == 1
    assert await redis_client.exists(key) == 0


async def test_cancelled_waiters_and_holders_leave_no_lease_behind(
    redis_client: Any, prefix: str, autopipeline: bool
) -> None:
    """Through the lifecycle: the waiters left get in one by one, and nothing stays held."""
    needs_scripts(redis_client)
    manager = SessionManager.redis(
        redis_client, prefix=prefix, autopipeline=autopipeline, locking=True
    )
    header = cookie(manager, await new_session(manager, n=0))
    held = asyncio.Event()
    inside: list[int] = []
    entered: list[int] = []

    async def hold_forever() -> None:
        async with manager.lifecycle(header):
            held.set()
            await asyncio.Event().wait()

    async def enter(i: int) -> None:
        async with manager.lifecycle(header) as session:
            inside.append(i)
            assert len(inside) == 1, "two requests held the session at once"
            session["n"] += 1
            await asyncio.sleep(0.001)
            inside.remove(i)
            entered.append(i)

    holder = asyncio.create_task(hold_forever())
    await held.wait()
    waiters = [asyncio.create_task(enter(i)) for i in range(20)]
    await asyncio.sleep(0.05)  # the waiters poll a few times
    assert entered == []
    for waiter in waiters[::2]:
        waiter.cancel()
    holder.cancel()  # cancelled inside the request: the lease is still released
    results = await asyncio.gather(holder, *waiters, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results[:1] + results[1::2]), results
    assert results[2::2] == [None] * 10
    assert sorted(entered) == list(range(1, 20, 2))
    assert await lease_keys(redis_client, prefix) == []
    async with manager.lifecycle(header) as session:
        assert session["n"] == 10


# 10,000 take about a second per server kind; set fewer on a slow machine.
LEASE_READS = int(os.environ.get("ASESS_LEASE_READS", "10000"))


async def test_reads_of_unknown_ids_under_locking_leave_no_lease_keys(
    redis_client: Any, prefix: str
) -> None:
    """Random well-formed ids cost one GETEX each and leave nothing behind.

    Only a session that exists gets a lease, so a flood of made-up cookies
    cannot fill Redis with lease keys. ``ASESS_LEASE_READS`` sets how many.
    """
    needs_scripts(redis_client)
    manager = SessionManager.redis(redis_client, prefix=prefix, locking=True)
    # The scan sees a lease when there is one.
    store = manager.store
    assert isinstance(store, RedisStore)
    probe = await store.acquire(new_session_id(), 5.0, NOW)
    assert probe is not None
    assert len(await lease_keys(redis_client, prefix)) == 1
    await store.release(probe)

    async def request(header: str) -> None:
        async with manager.lifecycle(header) as session:
            assert session.is_new
            assert session.get("user") is None

    before = await command_counts(redis_client)
    for start in range(0, LEASE_READS, 100):  # a hundred requests in flight at a time
        headers = [cookie(manager, new_session_id()) for _ in range(min(100, LEASE_READS - start))]
        await asyncio.gather(*(request(header) for header in headers))
    assert delta(before, await command_counts(redis_client)) == {"getex": LEASE_READS}
    assert await lease_keys(redis_client, prefix) == []
    assert [key async for key in redis_client.scan_iter(match=prefix + "*")] == []


# -- across processes ------------------------------------------------------------------


async def test_locked_counter_across_two_processes(
    request: pytest.FixtureRequest, redis_client: Any, redis_url: str | None, prefix: str
) -> None:
    needs_scripts(redis_client)
    if isinstance(redis_client, aioredis.RedisCluster):
        spec: tuple[str, Any] = ("cluster", request.getfixturevalue("redis_cluster").startup_nodes)
    else:
        spec = ("single", redis_url)
    manager = SessionManager.redis(redis_client, prefix=prefix, locking=True)
    sid = await new_session(manager, count=0)
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=count_up_in_process, args=(spec, prefix, sid, 100)) for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        await asyncio.to_thread(worker.join, 120)
    assert [worker.exitcode for worker in workers] == [0, 0]
    async with manager.lifecycle(cookie(manager, sid)) as session:
        assert dict(session) == {"count": 200}
    assert await lease_keys(redis_client, prefix) == []
