"""Real server processes for the reliability tests: the demo under uvicorn, a private redis-server.

Both bind a free port on 127.0.0.1, write their output to a log file the tests
read, and are stopped by the process id they were started with. Nothing here
assumes a server already running on a well-known port.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class _Process:
    """A child process in its own process group, logging to ``log_path``."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def _spawn(self, args: list[str], env: dict[str, str] | None = None) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                args,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def _check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"{self.proc.args[0]} exited early:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            # Our own process group (start_new_session): its workers go with it.
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout)


class UvicornServer(_Process):
    """``python -m uvicorn --factory asess.demo:app_from_env`` with ``workers`` processes."""

    def __init__(self, log_path: Path, *, workers: int = 2, **env: str) -> None:
        super().__init__(log_path)
        self.port = free_port()
        self.workers = workers
        self.env = env
        self.base_url = f"http://127.0.0.1:{self.port}"

    def start(self) -> UvicornServer:
        env = {**os.environ, "PYTHONPATH": str(ROOT), **self.env}
        args = [sys.executable, "-m", "uvicorn", "--factory", "asess.demo:app_from_env"]
        args += ["--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers)]
        args += ["--no-access-log", "--log-level", "warning", "--backlog", "4096"]
        self._spawn(args, env)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            self._check_alive()
            # /whoami without a cookie touches no store, so it answers even with Redis down.
            try:
                if httpx.get(self.base_url + "/whoami", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"uvicorn did not answer within {START_TIMEOUT}s:\n{self.log()}")

    def __enter__(self) -> UvicornServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def redis_server_path() -> str | None:
    return shutil.which("redis-server")


class RedisServer(_Process):
    """A throwaway redis-server whose data survives :meth:`stop` and :meth:`start` (AOF).

    ``appendfsync always`` makes every acknowledged write durable, so a
    restart on the same directory and port brings back exactly what was stored.
    """

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        super().__init__(directory / "redis.log")
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        binary = redis_server_path()
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        args = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
        ]
        args += ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]
        args += ["--protected-mode", "no", "--daemonize", "no"]
        self._spawn(args)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            self._check_alive()
            if _port_open(self.port) and self.ping():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not start within {START_TIMEOUT}s:\n{self.log()}")

    def ping(self) -> bool:
        try:
            with self.client() as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def client(self) -> redis.Redis:
        """A synchronous client for inspecting the server from the test."""
        return redis.Redis.from_url(self.url, socket_timeout=10)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
