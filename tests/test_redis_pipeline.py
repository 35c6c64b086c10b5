"""The auto-pipeliner: batching, per-caller results and errors, order, cancellation.

Runs on a real server (one pooled connection per batch) and on the real
cluster (cluster pipelines), plus a few unit tests on a scripted batch runner.
Run as a script it measures plain ``redis.asyncio`` against the pipelined store:
``python -m tests.test_redis_pipeline [redis://host:port/db]``.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError, ResponseError

from asess._backends.redis import RedisStore
from asess._backends.redis_pipeline import AutoPipeline, ClusterBatches, ConnectionBatches
from asess._ids import new_session_id
from asess._record import Record
from tests.redis_servers import free_port, is_fake


def batches_for(client: Any) -> Callable[[Sequence[tuple[Any, ...]]], Any]:
    if isinstance(client, aioredis.RedisCluster):
        return ClusterBatches(client)
    return ConnectionBatches(client, ResponseError)


@pytest.fixture
def real_client(redis_client: Any) -> Any:
    if is_fake(redis_client):
        pytest.skip("the auto-pipeline is tested against real servers only")
    return redis_client


async def test_mixed_success_error_and_cancellation_under_1000_tasks(
    real_client: Any, prefix: str
) -> None:
    inner = batches_for(real_client)
    in_flight_victims: list[asyncio.Task[Any]] = []
    batch_sizes: list[int] = []

    async def run(commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        batch_sizes.append(len(commands))
        # Cancel some callers now that their commands are on their way.
        for task in in_flight_victims:
            task.cancel()
        in_flight_victims.clear()
        replies: list[Any] = await inner(commands)
        return replies

    pipe = AutoPipeline(run)
    wrong_type = prefix + "a-list"
    await real_client.rpush(wrong_type, "x")

    async def succeed(i: int) -> bytes:
        await pipe.execute("SET", f"{prefix}ok:{i}", f"value-{i}")
        reply: bytes = await pipe.execute("GET", f"{prefix}ok:{i}")
        return reply

    async def fail(i: int) -> Any:
        return await pipe.execute("GETEX", wrong_type, "EX", 60)

    async def count(i: int) -> Any:
        await pipe.execute("INCR", f"{prefix}n:{i}")
        return await pipe.execute("INCRBY", f"{prefix}n:{i}", i)

    async def cancelled(i: int) -> Any:
        return await pipe.execute("SET", f"{prefix}cancelled:{i}", "should not be there")

    kinds = ["ok", "error", "count", "cancel-before-send", "cancel-in-flight"]
    jobs: dict[str, Callable[[int], Coroutine[Any, Any, Any]]] = {
        "ok": succeed,
        "error": fail,
        "count": count,
    }
    tasks: list[asyncio.Task[Any]] = []
    for i in range(1000):
        kind = kinds[i % len(kinds)]
        work = jobs.get(kind, cancelled)
        task = asyncio.create_task(work(i))
        tasks.append(task)
        if kind == "cancel-in-flight":
            in_flight_victims.append(task)
    await asyncio.sleep(0)  # every task has queued its command; nothing was sent yet
    assert batch_sizes == []
    for i, task in enumerate(tasks):
        if kinds[i % len(kinds)] == "cancel-before-send":
            task.cancel()

    results = await asyncio.gather(*tasks, return_exceptions=True)

    for i, result in enumerate(results):
        kind = kinds[i % len(kinds)]
        if kind == "ok":
            assert result == f"value-{i}".encode()
        elif kind == "error":
            assert isinstance(result, ResponseError)
            assert "WRONGTYPE" in str(result)
        elif kind == "count":
            assert result == 1 + i
        else:
            assert isinstance(result, asyncio.CancelledError)
    # Commands cancelled before they left were never sent.
    for i in range(3, 1000, 5):
        assert await real_client.exists(f"{prefix}cancelled:{i}") == 0
    # The first 512 queued commands left as one batch, minus those cancelled
    # before it left; by the second batch the in-flight victims were gone too.
    assert batch_sizes[0] == sum(1 for i in range(512) if i % 5 != 3)
    assert batch_sizes[1] == sum(1 for i in range(512, 1000) if i % 5 not in (3, 4))
    assert await pipe.execute("GET", f"{prefix}ok:0") == b"value-0"


async def test_commands_keep_their_issue_order(real_client: Any, prefix: str) -> None:
    pipe = AutoPipeline(batches_for(real_client), max_batch=64)
    key = prefix + "order"
    lengths = await asyncio.gather(*(pipe.execute("APPEND", key, f"{i},") for i in range(500)))
    expected = "".join(f"{i}," for i in range(500))
    assert await real_client.get(key) == expected.encode()
    assert lengths == sorted(lengths)
    assert lengths[-1] == len(expected)


async def test_concurrent_commands_share_batches(real_client: Any, prefix: str) -> None:
    pipe = AutoPipeline(batches_for(real_client))
    replies = await asyncio.gather(*(pipe.execute("GET", f"{prefix}{i}") for i in range(1000)))
    assert replies == [None] * 1000
    assert pipe.batches_sent == 2  # 512 + 488: everything queued in one loop turn
    assert await pipe.execute("SET", prefix + "x", "1") is True  # the client's reply types


async def test_a_refused_connection_fails_each_caller() -> None:
    # Nobody listens there; no retries, so the test does not sit out the back-off.
    client = aioredis.Redis(port=free_port(), retry=Retry(NoBackoff(), 0))
    pipe = AutoPipeline(ConnectionBatches(client, ResponseError))
    results = await asyncio.gather(
        *(pipe.execute("GET", f"k{i}") for i in range(50)), return_exceptions=True
    )
    assert all(isinstance(result, RedisConnectionError) for result in results)
    await client.aclose()


async def test_a_connection_lost_mid_batch_fails_that_batch_only(
    redis_url: str | None, prefix: str
) -> None:
    if redis_url is None:
        pytest.skip("needs a real server")
    client = aioredis.from_url(redis_url, retry=Retry(NoBackoff(), 0))  # no silent resend
    pipe = AutoPipeline(ConnectionBatches(client, ResponseError))
    own_id = await pipe.execute("CLIENT", "ID")
    # The server answers the first GET, then drops the connection mid-batch.
    results = await asyncio.gather(
        pipe.execute("GET", prefix + "a"),
        pipe.execute("CLIENT", "KILL", "ID", own_id, "SKIPME", "no"),
        pipe.execute("GET", prefix + "b"),
        return_exceptions=True,
    )
    assert all(isinstance(result, RedisConnectionError) for result in results)
    # The next batch goes out on a fresh connection.
    assert await pipe.execute("SET", prefix + "c", "1") is True
    assert await pipe.execute("CLIENT", "ID") != own_id
    await pipe.execute("UNLINK", prefix + "c")
    await client.aclose()


async def test_an_unsendable_argument_fails_only_its_command(
    redis_url: str | None, prefix: str
) -> None:
    if redis_url is None:
        pytest.skip("needs a real server")
    client = aioredis.from_url(redis_url)
    pipe = AutoPipeline(ConnectionBatches(client, ResponseError))
    results = await asyncio.gather(
        pipe.execute("SET", prefix + "a", "1"),
        pipe.execute("SET", prefix + "b", {"not": "encodable"}),
        pipe.execute("GET", prefix + "a"),
        return_exceptions=True,
    )
    assert results[0] is True
    assert isinstance(results[1], DataError)
    assert results[2] == b"1"
    await client.unlink(prefix + "a")
    await client.aclose()


# -- unit tests on a scripted batch runner ----------------------------------------------


async def test_per_command_errors_go_to_their_own_caller() -> None:
    async def run(commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        return [ValueError(args[1]) if args[0] == "BAD" else args[1] for args in commands]

    pipe = AutoPipeline(run)
    results = await asyncio.gather(
        *(pipe.execute("BAD" if i % 3 == 0 else "OK", i) for i in range(30)),
        return_exceptions=True,
    )
    for i, result in enumerate(results):
        if i % 3 == 0:
            assert isinstance(result, ValueError) and result.args == (i,)
        else:
            assert result == i


async def test_a_runner_that_miscounts_fails_the_batch() -> None:
    async def run(commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        return [1]

    pipe = AutoPipeline(run)
    results = await asyncio.gather(pipe.execute("A"), pipe.execute("B"), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) and "2 commands" in str(r) for r in results)


def test_the_pipeline_survives_its_event_loop() -> None:
    async def run(commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        return [args[0] for args in commands]

    pipe = AutoPipeline(run)

    async def use() -> list[Any]:
        return list(await asyncio.gather(*(pipe.execute(i) for i in range(5))))

    assert asyncio.run(use()) == [0, 1, 2, 3, 4]
    assert asyncio.run(use()) == [0, 1, 2, 3, 4]  # a new loop: fresh queue and flusher


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        AutoPipeline(ConnectionBatches(aioredis.Redis(), ResponseError), max_batch=0)


# -- benchmark (not collected) -----------------------------------------------------------


async def _cycles_per_second(
    cycle: Callable[[int], Any], clients: int = 100, seconds: float = 2.0
) -> float:
    stop = time.perf_counter() + seconds
    done = 0

    async def worker(i: int) -> None:
        nonlocal done
        while time.perf_counter() < stop:
            await cycle(i)
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(i) for i in range(clients)))
    return done / (time.perf_counter() - start)


async def _benchmark(url: str, rounds: int = 3) -> None:
    ids = [new_session_id() for _ in range(100)]
    fresh = Record(data={"user": 42, "cart": [1, 2, 3]}, created_at=1.0, issued_at=1.0)
    value = b'{"v":1,"c":1.0,"i":1.0,"e":null,"l":null,"t":false,"d":{"user":42}}'
    figures: dict[str, list[float]] = {}
    for _ in range(rounds):  # interleaved, so load changes hit every variant alike
        client = aioredis.from_url(url)

        async def plain(i: int) -> None:
            key = "asess-bench:" + ids[i]
            await client.getex(key, ex=3600)
            await client.set(key, value, ex=3600)

        figures.setdefault("plain redis.asyncio GETEX+SET", []).append(
            await _cycles_per_second(plain)
        )
        for auto in (False, True):
            store = RedisStore(client, prefix="asess-bench:", autopipeline=auto)

            async def session(i: int, store: RedisStore = store) -> None:
                record = await store.load(ids[i], 3600)
                await store.save(ids[i], record or fresh, 3600)

            figures.setdefault(f"RedisStore load+save autopipeline={auto}", []).append(
                await _cycles_per_second(session)
            )
        await client.delete(*("asess-bench:" + ref for ref in ids))
        await client.aclose()
    base = statistics.median(figures["plain redis.asyncio GETEX+SET"])
    for name, runs in figures.items():
        median = statistics.median(runs)
        rounded = [round(run) for run in runs]
        print(f"{name:42} {median:8.0f} cycles/s  x{median / base:.2f}  runs={rounded}")


if __name__ == "__main__":
    asyncio.run(_benchmark(sys.argv[1] if len(sys.argv) > 1 else "redis://127.0.0.1:6379/0"))


@pytest.mark.parametrize(
    "args",
    [
        ("GETEX", "emtsess:abc", "EX", 3600),
        ("SET", "emtsess:\u00e9t\u00e9", b'{"v":1}' * 1000, "EX", 60),
        ("UNLINK", b"k1", "k2"),
        ("EXPIRE", "k", 0),
    ],
)
def test_fast_packing_matches_redis_py(args: tuple) -> None:
    from redis.asyncio.connection import Connection

    from asess._backends.redis_pipeline import _pack

    connection = Connection()
    assert _pack(args, connection.encoder) == b"".join(connection.pack_command(*args))


def test_fast_packing_leaves_other_types_to_redis_py() -> None:
    from redis.asyncio.connection import Connection

    from asess._backends.redis_pipeline import _pack

    assert _pack(("SET", "k", 1.5), Connection().encoder) is None
    assert _pack(("SET", "k", True), Connection().encoder) is None
