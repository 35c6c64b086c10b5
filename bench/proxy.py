"""A loopback TCP proxy that adds a fixed delay each way: Redis at network distance.

Every chunk read from one side is written to the other side no earlier than
``delay`` after it arrived, in order, without serialising chunks behind each
other's delay (pipelined traffic keeps its throughput; each byte just arrives
later), as a network link with that one-way latency would. It runs in its own
process (``python -m bench.proxy``) because a client that blocks its event loop,
which is what is being measured, must not also stall the link it waits on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from .runner import Unavailable

_CHUNK = 65536


async def _forward(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float
) -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def deliver() -> None:
        while True:
            due, chunk = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not chunk:
                break
            writer.write(chunk)
            await writer.drain()

    delivery = loop.create_task(deliver())
    try:
        while True:
            try:
                chunk = await reader.read(_CHUNK)
            except ConnectionError:
                chunk = b""
            queue.put_nowait((loop.time() + delay, chunk))
            if not chunk:
                break
        await delivery
    except ConnectionError:
        pass
    finally:
        delivery.cancel()
        writer.close()


async def serve(upstream_host: str, upstream_port: int, delay: float) -> asyncio.Server:
    """Listen on a free loopback port and relay each connection to the upstream."""

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(upstream_host, upstream_port)
        except OSError:
            client_w.close()
            return
        try:
            await asyncio.gather(
                _forward(client_r, up_w, delay),
                _forward(up_r, client_w, delay),
                return_exceptions=True,
            )
        except asyncio.CancelledError:
            # Shutting down: the parent is gone, the links go with it.
            client_w.close()
            up_w.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0, backlog=4096)


async def _main(upstream: str, delay: float) -> None:
    host, _, port = upstream.rpartition(":")
    server = await serve(host, int(port), delay)
    sockets = server.sockets or ()
    print(f"PORT {sockets[0].getsockname()[1]}", flush=True)
    loop = asyncio.get_running_loop()
    # Serve until the parent closes our stdin (or dies).
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.proxy", description=__doc__)
    parser.add_argument("--upstream", required=True, help="host:port to relay to")
    parser.add_argument("--delay-ms", type=float, default=1.0, help="one-way delay")
    args = parser.parse_args(argv)
    asyncio.run(_main(args.upstream, args.delay_ms / 1000))


@contextlib.contextmanager
def delayed(url: str, delay_ms: float = 1.0) -> Iterator[str]:
    """Run the proxy in front of the Redis at ``url``; yield the proxied URL."""
    parts = urlsplit(url)
    upstream = f"{parts.hostname or '127.0.0.1'}:{parts.port or 6379}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.proxy", "--upstream", upstream, "--delay-ms", str(delay_ms)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parent.parent,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("PORT "):
            raise Unavailable("the delay proxy did not start")
        port = int(line.split()[1])
        netloc = f"127.0.0.1:{port}"
        if parts.username or parts.password:
            netloc = f"{parts.username or ''}:{parts.password or ''}@{netloc}"
        yield urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main()
