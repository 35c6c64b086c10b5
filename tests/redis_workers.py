"""Entry points of the processes that tests/test_store_redis.py spawns.

A spawned process imports the module of its target before it runs it; here
that is this small module (asess and redis only), not the test module with
pytest and every fixture behind it, so each process starts in a fraction of
the time and the test waits for the requests, not for imports.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode

from asess import SessionManager


def _client_for(spec: tuple[str, Any]) -> Any:
    kind, where = spec
    if kind == "cluster":
        return aioredis.RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in where])
    return aioredis.from_url(where)


async def _count_up(spec: tuple[str, Any], prefix: str, sid: str, tasks: int) -> None:
    client = _client_for(spec)
    manager = SessionManager.redis(client, prefix=prefix, locking=True, lock_timeout=30.0)

    async def once() -> None:
        async with manager.lifecycle(f"{manager.cookie_name}={sid}") as session:
            count = session["count"]
            await asyncio.sleep(0)  # invite interleaving: only the lease prevents it
            session["count"] = count + 1

    await asyncio.gather(*(once() for _ in range(tasks)))
    await client.aclose()


def count_up_in_process(spec: tuple[str, Any], prefix: str, sid: str, tasks: int) -> None:
    """Entry point of a spawned process: ``tasks`` concurrent requests, each adding one."""
    asyncio.run(_count_up(spec, prefix, sid, tasks))
