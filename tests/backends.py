"""Build a SessionManager for each backend the contract suite runs against."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import pytest

from asess import SessionManager

KEY = "contract-suite-key-" + secrets.token_hex(8)

BACKENDS = ["memory", "cookies-legacy", "cookies-modern", "files", "redis", "redis-cluster"]
SERVER_SIDE = {"memory", "files", "redis", "redis-cluster"}


def manager_factory(name: str, request: pytest.FixtureRequest) -> Callable[..., SessionManager]:
    """A function building managers of backend ``name`` with extra keyword arguments."""
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
        return lambda **kw: SessionManager.redis(url, prefix=f"ct{secrets.token_hex(4)}:", **kw)
    if name == "redis-cluster":
        from redis.asyncio import RedisCluster

        nodes = request.getfixturevalue("redis_cluster_nodes")
        host, port = nodes[0]

        def build(**kw: Any) -> SessionManager:
            client = RedisCluster(host=host, port=port)
            return SessionManager.redis(client, prefix=f"ct{secrets.token_hex(4)}:", **kw)

        return build
    raise ValueError(name)
