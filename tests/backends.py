"""Build a SessionManager for each backend the contract suite runs against."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import pytest

from asess import SessionManager

KEY = "contract-suite-key-" + secrets.token_hex(8)

BACKENDS = [
    "memory",
    "cookies-legacy",
    "cookies-modern",
    "files",
    "redis",
    "redis-cluster",
    "postgres",
]
SERVER_SIDE = {"memory", "files", "redis", "redis-cluster", "postgres"}


def manager_factory(
    name: str, request: pytest.FixtureRequest, clients: list[Any]
) -> Callable[..., SessionManager]:
    """A function building managers of backend ``name`` with extra keyword arguments.

    Clients the caller must close after the test are appended to ``clients``.
    """
    if name == "memory":
        return lambda **kw: SessionManager.memory(**kw)
    if name.startswith("cookies-"):
        mode = name.partition("-")[2]
        return lambda **kw: SessionManager.cookies(KEY, encryption_mode=mode, **kw)
    if name == "files":
        path = request.getfixturevalue("tmp_path") / "sessions"
        return lambda **kw: SessionManager.files(path=path, **kw)
    if name == "redis":
        url = request.getfixturevalue("redis_url")

        def build_single(**kw: Any) -> SessionManager:
            if url is None:  # labelled fallback: no redis-server on this machine
                import fakeredis

                client: Any = fakeredis.FakeAsyncRedis()
                clients.append(client)
            else:
                client = url
            return SessionManager.redis(client, prefix=f"ct{secrets.token_hex(4)}:", **kw)

        return build_single
    if name == "postgres":
        dsn = request.getfixturevalue("postgres_dsn")
        tables = request.getfixturevalue("pg_tables")
        return lambda **kw: SessionManager.postgres(dsn, table=tables(), **kw)
    if name == "redis-cluster":
        from tests.redis_servers import cluster_client

        cluster = request.getfixturevalue("redis_cluster")

        def build_cluster(**kw: Any) -> SessionManager:
            client = cluster_client(cluster)
            clients.append(client)
            return SessionManager.redis(client, prefix=f"ct{secrets.token_hex(4)}:", **kw)

        return build_cluster
    raise ValueError(name)
