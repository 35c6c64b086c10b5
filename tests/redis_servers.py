"""Throwaway redis-server processes for the tests: single servers and a 3-primary cluster.

Each server runs on a free loopback port in its own temporary directory with
persistence off (unless asked for), and can be killed, paused and restarted on
the same port to play an outage. Nothing here touches a server the tests did
not start.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")
REQUIRE_REDIS = os.environ.get("ASESS_REQUIRE_REDIS") == "1"


def need_redis_server() -> None:
    """Skip (or fail, under ASESS_REQUIRE_REDIS=1) a test that must start its own server."""
    if REDIS_SERVER is None:
        message = "redis-server is not on PATH; install it (apt-get install -y redis-server)"
        if REQUIRE_REDIS:
            pytest.fail(message + " -- ASESS_REQUIRE_REDIS=1 forbids skipping")
        pytest.skip(message)


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(*, cluster: bool = False) -> int:
    """A loopback port nobody listens on (and, for cluster nodes, its bus port + 10000)."""
    for _ in range(200):
        port = random.randint(20000, 39999)
        if port_is_free(port) and (not cluster or port_is_free(port + 10000)):
            return port
    raise RuntimeError("no free loopback port found")


def wait_until(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():  # type: ignore[operator]
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)


class RedisServer:
    """One redis-server process on 127.0.0.1:``port``."""

    def __init__(
        self,
        port: int | None = None,
        *,
        cluster: bool = False,
        persist: bool = False,
        extra: tuple[str, ...] = (),
    ) -> None:
        if REDIS_SERVER is None:
            raise RuntimeError("redis-server is not on PATH")
        self.port = port or free_port(cluster=cluster)
        self.dir = Path(tempfile.mkdtemp(prefix=f"asess-redis-{self.port}-"))
        self.args = [
            REDIS_SERVER,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.dir),
            "--save", "",
            "--appendonly", "yes" if persist else "no",
            "--appendfsync", "always",
            "--logfile", str(self.dir / "redis.log"),
            *extra,
        ]  # fmt: skip
        if cluster:
            self.args += [
                "--cluster-enabled", "yes",
                "--cluster-config-file", f"nodes-{self.port}.conf",
                "--cluster-node-timeout", "2000",
            ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            self.args, cwd=self.dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        with self.client() as conn:
            wait_until(conn.ping, 10, f"redis-server on port {self.port}")
        return self

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-whatever, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def pause(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.resume()  # a stopped process cannot act on SIGTERM
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisClusterServers:
    """Three cluster-enabled servers joined into a cluster with 3 primaries, no replicas."""

    def __init__(self) -> None:
        self.nodes = [RedisServer(cluster=True) for _ in range(3)]

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", node.port) for node in self.nodes]

    def start(self) -> RedisClusterServers:
        if REDIS_CLI is None:
            raise RuntimeError("redis-cli is not on PATH")
        for node in self.nodes:
            node.start()
        subprocess.run(
            [
                REDIS_CLI, "--cluster", "create",
                *(f"127.0.0.1:{node.port}" for node in self.nodes),
                "--cluster-replicas", "0", "--cluster-yes",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=60,
        )  # fmt: skip
        for node in self.nodes:
            with node.client() as conn:
                wait_until(
                    lambda conn=conn: conn.cluster("info")["cluster_state"] == "ok",
                    30,
                    f"cluster_state:ok on port {node.port}",
                )
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


# -- async helpers for tests ---------------------------------------------------------


def cluster_client(cluster: RedisClusterServers, **options: Any) -> aioredis.RedisCluster:
    nodes = [ClusterNode(host, port) for host, port in cluster.startup_nodes]
    return aioredis.RedisCluster(startup_nodes=nodes, **options)


async def delete_prefixed(client: aioredis.Redis | aioredis.RedisCluster, prefix: str) -> None:
    """Remove every key the test left under its prefix (matters on a shared REDIS_URL)."""
    # scan_iter walks every primary of a cluster; locks are "{<prefix><id>}:lock".
    keys = [key async for key in client.scan_iter(match=_escape(prefix) + "*", count=500)]
    locks = [key async for key in client.scan_iter(match="{" + _escape(prefix) + "*", count=500)]
    if keys or locks:
        await client.unlink(*keys, *locks)


def _escape(text: str) -> str:
    return "".join("\\" + ch if ch in "\\*?[]" else ch for ch in text)


def is_fake(client: object) -> bool:
    return type(client).__module__.startswith("fakeredis")


async def primaries(client: aioredis.Redis | aioredis.RedisCluster) -> list[Any]:
    """The nodes that hold data: the cluster's primaries, or ``[None]`` for one server."""
    if isinstance(client, aioredis.RedisCluster):
        await client.initialize()
        return list(client.get_primaries())
    return [None]


DATA_COMMANDS = ("get", "getex", "set", "expire", "unlink", "del", "evalsha", "eval", "scan")


async def command_counts(client: aioredis.Redis | aioredis.RedisCluster) -> dict[str, int]:
    """Calls of each data command so far, summed over every primary (``INFO commandstats``)."""
    counts = dict.fromkeys(DATA_COMMANDS, 0)
    for node in await primaries(client):
        options = {} if node is None else {"target_nodes": node}
        stats = await client.info("commandstats", **options)
        for name in DATA_COMMANDS:
            counts[name] += int(stats.get(f"cmdstat_{name}", {}).get("calls", 0))
    return counts


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """The commands run between two :func:`command_counts` snapshots (zeros left out)."""
    return {name: after[name] - before[name] for name in after if after[name] != before[name]}
