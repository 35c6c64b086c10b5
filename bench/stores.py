"""Scenario 3: store cycles (load, change, save) at rising concurrency.

Files and Redis: asess's stores against Emmett's pipes (their blocking I/O
called from async handlers, as an Emmett app does) and, for Redis, a plain
``redis.asyncio`` GETEX + SET loop. PostgreSQL: asess's store against a plain
asyncpg loop running the store's two statements (asess Redis, in the Redis
case of the same run, is the figure beside it). Redis runs twice: direct on loopback, and
through a proxy adding 1 ms each way, where a call that blocks the loop for a
round trip stalls every other request with it.
"""

from __future__ import annotations

from collections.abc import Callable

from . import memory, ours, peers
from .runner import Env, Row, Task, Unavailable
from .subjects import ServiceSubject, measure_service

SCENARIO = "stores"

Factory = tuple[str, str, str, Callable[[], ServiceSubject]]


def _with_url(
    url: str | None, missing: str, make: Callable[[str], ServiceSubject]
) -> Callable[[], ServiceSubject]:
    def build() -> ServiceSubject:
        if url is None:
            raise Unavailable(missing or "no Redis")
        return make(url)

    return build


def factories(env: Env) -> list[Factory]:
    direct, proxied = env.redis_url, env.proxied_url
    miss, pmiss = env.redis_missing, env.proxy_missing or env.redis_missing
    pg, pgmiss = env.postgres_dsn, env.postgres_missing or "no PostgreSQL"
    return [
        ("files", "asess files", "asess", ours.files_store),
        ("files", "asess files fsync=True", "asess", lambda: ours.files_store(fsync=True)),
        (
            "files",
            "asess files inline_io=True",
            "asess",
            lambda: ours.files_store(inline_io=True),
        ),
        ("files", "emmett files pipe", "emmett", peers.EmmettFileStore),
        ("redis", "asess redis", "asess", _with_url(direct, miss, ours.redis_store)),
        ("redis", "emmett redis pipe", "emmett", _with_url(direct, miss, peers.EmmettRedisStore)),
        (
            "redis",
            "redis.asyncio GETEX+SET",
            "plain",
            _with_url(direct, miss, peers.PlainRedisLoop),
        ),
        ("postgres", "asess postgres", "asess", _with_url(pg, pgmiss, ours.postgres_store)),
        (
            "postgres",
            "asyncpg UPDATE+UPDATE",
            "plain",
            _with_url(pg, pgmiss, peers.PlainAsyncpgLoop),
        ),
        ("redis+1ms", "asess redis", "asess", _with_url(proxied, pmiss, ours.redis_store)),
        (
            "redis+1ms",
            "emmett redis pipe",
            "emmett",
            _with_url(proxied, pmiss, peers.EmmettRedisStore),
        ),
        (
            "redis+1ms",
            "redis.asyncio GETEX+SET",
            "plain",
            _with_url(proxied, pmiss, peers.PlainRedisLoop),
        ),
    ]


def tasks(env: Env) -> list[Task]:
    s = env.settings
    out = []
    for case, name, family, make in factories(env):
        levels = s.proxy_concurrency if case == "redis+1ms" else s.store_concurrency

        async def run(
            case: str = case,
            name: str = name,
            family: str = family,
            make: Callable[[], ServiceSubject] = make,
            levels: tuple[int, ...] = levels,
        ) -> list[Row]:
            return await measure_service(
                make,
                (SCENARIO, case),
                name,
                family,
                levels,
                s.store_seconds,
                s.warmup_fraction,
                s.min_ops,
            )

        out.append(Task(f"stores {case}: {name}", run))
    out.append(memory.live_sessions_task())
    return out
