"""Pytest fixtures for the Redis tests: a real server, a real 3-primary cluster, clients.

The single server is ``REDIS_URL`` when set, else a ``redis-server`` from PATH
started for the session on a free port; only when neither exists do the tests
fall back to fakeredis, and they say so with a skipped ``real Redis`` test.
``ASESS_REQUIRE_REDIS=1`` (set by CI) turns every fallback or skip for a
missing server into a failure. ``tests/conftest.py`` registers this file as a
plugin (a test module importing it would defeat pytest's assertion rewriting);
plain helpers live in :mod:`tests.redis_servers`.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from asess._backends.redis import RedisStore
from tests.redis_servers import (
    REDIS_CLI,
    REDIS_SERVER,
    REQUIRE_REDIS,
    RedisClusterServers,
    RedisServer,
    cluster_client,
    delete_prefixed,
    need_redis_server,
)


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


class _EarlyCluster:
    """The session's cluster, formed in a thread while the first tests run.

    A cluster node reports ``cluster_state:ok`` only two seconds after it
    starts (redis-server waits that long before it serves as a primary), so
    the cluster is started as soon as collection shows a test will need it,
    and the first such test usually finds it ready.
    """

    def __init__(self) -> None:
        self.cluster = RedisClusterServers()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._start, name="redis-cluster", daemon=True)
        self.thread.start()

    def _start(self) -> None:
        try:
            self.cluster.start()
        except BaseException as exc:  # handed to the fixture, raised there
            self.error = exc

    def result(self) -> RedisClusterServers:
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.cluster

    def stop(self) -> None:
        self.thread.join()
        self.cluster.stop()


_early: list[_EarlyCluster] = []


def _needs_cluster(item: pytest.Item) -> bool:
    if "redis_cluster" in getattr(item, "fixturenames", ()):
        return True
    # Backend and client fixtures ask for it with getfixturevalue, when their
    # parameter names the cluster; a test missed here still gets it, later.
    callspec = getattr(item, "callspec", None)
    params = callspec.params.values() if callspec is not None else ()
    return any(isinstance(value, str) and value in ("redis-cluster", "cluster") for value in params)


def pytest_collection_finish(session: pytest.Session) -> None:
    if REDIS_SERVER is None or REDIS_CLI is None:
        return  # the fixture skips or fails, saying why
    if any(_needs_cluster(item) for item in session.items):
        _early.append(_EarlyCluster())


def pytest_sessionfinish(session: pytest.Session) -> None:
    # A worker of pytest-xdist may start the cluster and be handed none of its tests.
    while _early:
        _early.pop().stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServers]:
    """A real 3-primary Redis Cluster on loopback ports, for the whole session."""
    need_redis_server()
    if REDIS_CLI is None:
        if REQUIRE_REDIS:
            pytest.fail("redis-cli is not on PATH and ASESS_REQUIRE_REDIS=1")
        pytest.skip("redis-cli is not on PATH; cannot form a cluster")
    if _early:
        early = _early.pop()
        try:
            yield early.result()
        finally:
            early.stop()
        return
    cluster = RedisClusterServers()
    try:
        yield cluster.start()
    finally:
        cluster.stop()


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


@pytest.fixture(params=[True, False], ids=["autopipeline", "direct"])
def store(
    request: pytest.FixtureRequest,
    redis_client: aioredis.Redis | aioredis.RedisCluster,
    prefix: str,
) -> RedisStore:
    """A store over each client, with and without auto-pipelining."""
    return RedisStore(redis_client, prefix=prefix, autopipeline=request.param)
