"""Pytest fixtures for the Redis tests: a real server, a real 3-primary cluster, clients.

The single server is ``REDIS_URL`` when set, else a ``redis-server`` from PATH
started for the session on a free port; only when neither exists do the tests
fall back to fakeredis, and they say so with a skipped ``real Redis`` test.
``ASESS_REQUIRE_REDIS=1`` (set by CI) turns every fallback or skip for a
missing server into a failure. Test modules import the fixtures they use.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode

from asess._backends.redis import RedisStore
from tests.redis_servers import REDIS_CLI, REDIS_SERVER, RedisClusterServers, RedisServer

REQUIRE_REDIS = os.environ.get("ASESS_REQUIRE_REDIS") == "1"


def need_redis_server() -> None:
    """Skip (or fail, under ASESS_REQUIRE_REDIS=1) a test that must start its own server."""
    if REDIS_SERVER is None:
        message = "redis-server is not on PATH; install it (apt-get install -y redis-server)"
        if REQUIRE_REDIS:
            pytest.fail(message + " -- ASESS_REQUIRE_REDIS=1 forbids skipping")
        pytest.skip(message)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str | None]:
    """URL of the single server for the session, or None when only fakeredis is left."""
    env = os.environ.get("REDIS_URL")
    if env:
        yield env
        return
    if REDIS_SERVER is None:
        if REQUIRE_REDIS:
            pytest.fail("no REDIS_URL and no redis-server on PATH, and ASESS_REQUIRE_REDIS=1")
        yield None
        return
    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServers]:
    """A real 3-primary Redis Cluster on loopback ports, for the whole session."""
    need_redis_server()
    if REDIS_CLI is None:
        if REQUIRE_REDIS:
            pytest.fail("redis-cli is not on PATH and ASESS_REQUIRE_REDIS=1")
        pytest.skip("redis-cli is not on PATH; cannot form a cluster")
    cluster = RedisClusterServers()
    try:
        yield cluster.start()
    finally:
        cluster.stop()


def cluster_client(cluster: RedisClusterServers, **options: Any) -> aioredis.RedisCluster:
    nodes = [ClusterNode(host, port) for host, port in cluster.startup_nodes]
    return aioredis.RedisCluster(startup_nodes=nodes, **options)


@pytest.fixture
def prefix() -> str:
    """A prefix no other test uses, so tests never see each other's keys."""
    return f"asess-test:{uuid.uuid4().hex[:12]}:"


@pytest.fixture(params=["single", "cluster"])
async def redis_client(
    request: pytest.FixtureRequest, redis_url: str | None, prefix: str
) -> AsyncIterator[aioredis.Redis | aioredis.RedisCluster]:
    """A ``redis.asyncio`` client on the single server, then on the cluster."""
    client: aioredis.Redis | aioredis.RedisCluster
    if request.param == "cluster":
        client = cluster_client(request.getfixturevalue("redis_cluster"))
    elif redis_url is None:
        import fakeredis

        client = fakeredis.FakeAsyncRedis()
    else:
        client = aioredis.from_url(redis_url)
    try:
        yield client
    finally:
        await delete_prefixed(client, prefix)
        await client.aclose()


async def delete_prefixed(client: aioredis.Redis | aioredis.RedisCluster, prefix: str) -> None:
    """Remove every key the test left under its prefix (matters on a shared REDIS_URL)."""
    # scan_iter walks every primary of a cluster; locks are "{<prefix><id>}:lock".
    keys = [key async for key in client.scan_iter(match=_escape(prefix) + "*", count=500)]
    locks = [key async for key in client.scan_iter(match="{" + _escape(prefix) + "*", count=500)]
    if keys or locks:
        await client.unlink(*keys, *locks)


@pytest.fixture(params=[True, False], ids=["autopipeline", "direct"])
def store(
    request: pytest.FixtureRequest,
    redis_client: aioredis.Redis | aioredis.RedisCluster,
    prefix: str,
) -> RedisStore:
    """A store over each client, with and without auto-pipelining."""
    return RedisStore(redis_client, prefix=prefix, autopipeline=request.param)


def _escape(text: str) -> str:
    return "".join("\\" + ch if ch in "\\*?[]" else ch for ch in text)


def is_fake(client: object) -> bool:
    return type(client).__module__.startswith("fakeredis")
