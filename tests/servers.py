"""Real servers for end-to-end tests: the demo under uvicorn or granian.

Each server runs as a subprocess, in its own process group, on a free loopback
port. The helpers wait until the port accepts connections (or fail with the
server's log if it dies first) and always stop the whole group at teardown, so
multi-worker servers leave no orphans. Which backends exist is asked here too,
so tests skip with a reason while a store or codec is not in the tree.
Redis servers come from :mod:`tests.redis_fixtures`.
"""

from __future__ import annotations

import importlib.util
import os
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
# Generous: two shared cores can make a cold interpreter slow to start.
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0

# Backend name -> the module it needs; "cookies-legacy" is the demo's cookies backend
# with encryption_mode="legacy".
BACKEND_MODULES = {
    "cookies-legacy": "asess._codecs.legacy",
    "cookies-modern": "asess._codecs.modern",
    "files": "asess._backends.files",
    "redis": "asess._backends.redis",
    "memory": "asess._backends.memory",
}


def backend_missing(backend: str) -> str | None:
    """Why ``backend`` cannot run in this tree, or None when it can."""
    module = BACKEND_MODULES[backend]
    if importlib.util.find_spec(module) is None:
        return f"{module} is not in this tree yet"
    return None


def free_port() -> int:
    """A loopback port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def subprocess_env(**extra: str) -> dict[str, str]:
    """The test environment plus this checkout on PYTHONPATH (asess is not installed)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@dataclass
class Server:
    """A running server subprocess: its port, its log file, and how to stop it."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    backend: str = ""

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_output(self, text: str, count: int = 1) -> None:
        """Wait until ``text`` appears ``count`` times in the log (e.g. once per worker)."""
        deadline = time.monotonic() + START_TIMEOUT
        while self.output().count(text) < count:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"never saw {text!r} x{count}:\n" + self.output())
            time.sleep(0.05)

    def stop(self) -> None:
        """SIGTERM the process group, then SIGKILL what is left after STOP_TIMEOUT."""
        if self.proc.poll() is None:
            _signal_group(self.proc, signal.SIGTERM)
            with suppress(subprocess.TimeoutExpired):
                self.proc.wait(STOP_TIMEOUT)
        # Workers may outlive a parent that exited: always sweep the group.
        _signal_group(self.proc, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.wait(STOP_TIMEOUT)


def _signal_group(proc: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


@contextmanager
def running(
    argv: list[str], log: Path, *, port: int, env: dict[str, str], cwd: Path
) -> Iterator[Server]:
    """Start ``argv``, wait until ``port`` accepts connections, stop it on exit."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
        )
    server = Server(proc, port, log)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _accepts(port):
            if proc.poll() is not None:
                raise RuntimeError(
                    f"{argv[:4]} exited with {proc.returncode} before listening:\n"
                    + server.output()
                )
            if time.monotonic() > deadline:
                raise RuntimeError(f"{argv[:4]} did not listen on {port}:\n" + server.output())
            time.sleep(0.05)
        yield server
    finally:
        server.stop()


@contextmanager
def demo_server(
    workdir: Path,
    *,
    backend: str,
    server: str = "uvicorn",
    redis_url: str | None = None,
    workers: int = 1,
) -> Iterator[Server]:
    """``python -m asess demo`` for ``backend`` (a BACKEND_MODULES name) on a free port.

    Files sessions go to ``workdir/sessions``; the log to ``workdir/<server>.log``.
    """
    cli_backend, _, mode = backend.partition("-")
    port = free_port()
    argv = [sys.executable, "-m", "asess", "demo", "--backend", cli_backend]
    argv += ["--server", server, "--port", str(port), "--workers", str(workers)]
    argv += ["--path", str(workdir / "sessions")]
    if mode:
        argv += ["--mode", mode]
    if redis_url:
        argv += ["--redis-url", redis_url]
    log = workdir / f"{server}-{backend}.log"
    with running(argv, log, port=port, env=subprocess_env(), cwd=workdir) as srv:
        srv.backend = backend
        yield srv


@contextmanager
def uvicorn_factory(workdir: Path, **env: str) -> Iterator[Server]:
    """``python -m uvicorn --factory asess.demo:app_from_env``, configured by ``env``."""
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "--factory", "asess.demo:app_from_env"]
    argv += ["--host", HOST, "--port", str(port)]
    log = workdir / "uvicorn-factory.log"
    with running(argv, log, port=port, env=subprocess_env(**env), cwd=workdir) as srv:
        yield srv


def raw_exchange(port: int, request: bytes, piece: int = 16 * 1024) -> bytes:
    """Send ``request`` over a raw socket and return what the server answered.

    A server refusing an oversized head answers and closes while the client is
    still writing; the close then resets the connection, and a client that
    reads only after writing (httpx) loses the answer. So this reads between
    pieces and keeps whatever arrived before the reset.
    """
    got = b""
    with socket.create_connection((HOST, port), timeout=10) as sock:
        try:
            for start in range(0, len(request), piece):
                sock.sendall(request[start : start + piece])
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    break
        except OSError:
            pass  # the server stopped reading: its answer may already be here
        try:
            while chunk := sock.recv(65536):
                got += chunk
        except OSError:
            pass  # reset after the answer
    return got
