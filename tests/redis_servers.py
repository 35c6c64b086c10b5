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
from collections.abc import Callable
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


def _ephemeral_floor() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(*, cluster: bool = False) -> int:
    """A loopback port nobody listens on (and, for cluster nodes, its bus port + 10000).

    Ports come from below the kernel's ephemeral range, so an outgoing
    connection cannot grab one while a test restarts its server.
    """
    ceiling = _ephemeral_floor() - (10001 if cluster else 1)
    for _ in range(200):
        port = random.randint(10000, max(10001, ceiling))
        if port_is_free(port) and (not cluster or port_is_free(port + 10000)):
            return port
    raise RuntimeError("no free loopback port found")


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)


class _Process:
    """A redis-server process on 127.0.0.1:``port`` that proves it is ours before use."""

    port: int
    dir: Path
    process: subprocess.Popen[bytes] | None = None

    def _args(self) -> list[str]:
        raise NotImplementedError

    def _launch(self, ready: Callable[[redis.Redis], bool]) -> None:
        self.process = subprocess.Popen(
            self._args(), cwd=self.dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        process = self.process

        def up(conn: redis.Redis) -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} exited: {self._log_tail()}")
            # Another test run may own this port: only our own pid counts.
            return int(conn.info("server")["process_id"]) == process.pid and ready(conn)

        with redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5) as conn:
            try:
                wait_until(lambda: up(conn), 10, f"redis-server on port {self.port}")
            except RuntimeError:
                self.kill()
                raise

    def _log_tail(self) -> str:
        try:
            return (self.dir / "redis.log").read_text()[-500:]
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        """SIGKILL: the server vanishes mid-whatever, as in a crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        """End the server for good, with its directory.

        SIGKILL, not SIGTERM: nothing the server could flush on the way out is
        read again, and redis-server acts on SIGTERM only at its next cron
        tick, 100 ms later, for every server every test starts.
        """
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisServer(_Process):
    """One redis-server process on 127.0.0.1:``port``.

    The first :meth:`start` moves to another free port if its port was taken
    meanwhile; later starts (restarts after :meth:`kill`) keep the port.
    """

    def __init__(
        self, *, cluster: bool = False, persist: bool = False, extra: tuple[str, ...] = ()
    ) -> None:
        if REDIS_SERVER is None:
            raise RuntimeError("redis-server is not on PATH")
        self.cluster = cluster
        self.persist = persist
        self.extra = extra
        self.port = free_port(cluster=cluster)
        self.dir = Path(tempfile.mkdtemp(prefix="asess-redis-"))
        self.started = False

    def _args(self) -> list[str]:
        args = [
            str(REDIS_SERVER),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.dir),
            "--save", "",
            "--appendonly", "yes" if self.persist else "no",
            "--appendfsync", "always",
            "--logfile", str(self.dir / "redis.log"),
            *self.extra,
        ]  # fmt: skip
        if self.cluster:
            args += [
                "--cluster-enabled", "yes",
                "--cluster-config-file", f"nodes-{self.port}.conf",
                "--cluster-node-timeout", "2000",
            ]  # fmt: skip
        return args

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def start(self) -> RedisServer:
        for attempt in range(3):
            try:
                self._launch(lambda conn: True)
            except RuntimeError:
                if self.started or attempt == 2:
                    raise
                self.port = free_port(cluster=self.cluster)
            else:
                self.started = True
                return self
        raise AssertionError("unreachable")

    def pause(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)


class RedisClusterServers:
    """Three cluster-enabled servers joined into a cluster with 3 primaries, no replicas."""

    def __init__(self, *, persist: bool = False) -> None:
        self.persist = persist
        self.nodes: list[RedisServer] = []

    @property
    def startup_nodes(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", node.port) for node in self.nodes]

    def start(self) -> RedisClusterServers:
        if REDIS_CLI is None:
            raise RuntimeError("redis-cli is not on PATH")
        for attempt in range(3):  # a busy machine can lose a port race; build afresh
            self.nodes = [RedisServer(cluster=True, persist=self.persist) for _ in range(3)]
            try:
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
                self.wait_ok()
            except (RuntimeError, subprocess.SubprocessError):
                self.stop()
                if attempt == 2:
                    raise
            else:
                return self
        raise AssertionError("unreachable")

    def wait_ok(self, timeout: float = 30) -> None:
        """Wait until every node reports ``cluster_state:ok``."""
        for node in self.nodes:
            with node.client() as conn:

                def ok(conn: redis.Redis = conn) -> bool:
                    return bool(conn.cluster("info")["cluster_state"] == "ok")

                wait_until(ok, timeout, f"cluster_state:ok on port {node.port}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class RedisSentinel(_Process):
    """One redis-server in sentinel mode, monitoring ``master_port`` as ``service``."""

    def __init__(self, master_port: int, service: str = "asess") -> None:
        if REDIS_SERVER is None:
            raise RuntimeError("redis-server is not on PATH")
        self.master_port = master_port
        self.service = service
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="asess-sentinel-"))

    def _args(self) -> list[str]:
        config = self.dir / "sentinel.conf"  # a sentinel rewrites its config: a file of its own
        config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\n"
            f"logfile {self.dir / 'redis.log'}\n"
            f"sentinel monitor {self.service} 127.0.0.1 {self.master_port} 1\n"
        )
        return [str(REDIS_SERVER), str(config), "--sentinel"]

    def start(self) -> RedisSentinel:
        self._launch(lambda conn: conn.sentinel_get_master_addr_by_name(self.service) is not None)
        return self


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
