"""A Redis server for the bench: ``REDIS_URL`` if set, else a private throwaway one.

The private server is ``redis-server`` from PATH on a free loopback port with
persistence off (``--save "" --appendonly no``), as the test suite starts it;
the bench never assumes a server on 6379. Keys written by the bench all start
with ``asess-bench:`` and are removed afterwards, so pointing ``REDIS_URL`` at a
shared server leaves it as it was.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

from .runner import Unavailable

KEY_PREFIX = "asess-bench:"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextlib.contextmanager
def redis_url() -> Iterator[str]:
    """Yield a Redis URL for the run; raise :class:`Unavailable` when there is none."""
    env = os.environ.get("REDIS_URL")
    if env:
        yield env
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise Unavailable("no REDIS_URL and no redis-server on PATH")
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="asess-bench-redis-")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
            "--maxclients",
            "10000",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not _ping(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise Unavailable(f"redis-server did not start on port {port}")
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def clean(url: str) -> None:
    """Delete every key the bench wrote (``asess-bench:*``)."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        batch = list(client.scan_iter(match=KEY_PREFIX + "*", count=1000))
        for i in range(0, len(batch), 500):
            client.delete(*batch[i : i + 500])
    finally:
        client.close()
