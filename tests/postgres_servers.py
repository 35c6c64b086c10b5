"""PostgreSQL for the tests: the shared server's DSN, throwaway tables, and private servers.

The store tests use the server at ``ASESS_POSTGRES_DSN`` (default: the
machine's, database ``test``), each test in tables of its own that are
dropped afterwards. Outage tests need a server they may kill, so they start
a private one with Debian's ``initdb``/``pg_ctl`` in a temporary directory
on a free port (as the ``postgres`` user when running as root, since
PostgreSQL refuses to run as root), and never touch the shared one.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

DSN = os.environ.get("ASESS_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_POSTGRES = os.environ.get("ASESS_REQUIRE_POSTGRES") == "1"
TABLE_PREFIX = "asess_t_"


def new_table_name() -> str:
    """A table name no other test uses."""
    return TABLE_PREFIX + secrets.token_hex(6)


async def drop_tables(dsn: str, names: list[str]) -> None:
    """Drop the tests' tables ``names`` on the server at ``dsn``, if they exist."""
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        await conn.execute("DROP TABLE IF EXISTS " + ", ".join(names))
    finally:
        await conn.close()


def _bin_dir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(versions[-1]).parent if versions else None


PG_BIN = _bin_dir()


def need_pg_ctl() -> Path:
    """The directory of initdb and pg_ctl; skip (or fail under the CI flag) without them."""
    if PG_BIN is None:
        message = "initdb/pg_ctl not found; install them (apt-get install -y postgresql)"
        if REQUIRE_POSTGRES:
            pytest.fail(message + " -- ASESS_REQUIRE_POSTGRES=1 forbids skipping")
        pytest.skip(message)
    return PG_BIN


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PrivatePostgres:
    """A throwaway PostgreSQL cluster that a test may stop and start at will."""

    def __init__(self) -> None:
        self.bin = need_pg_ctl()
        self.dir = Path(tempfile.mkdtemp(prefix="asess-pg-"))
        self.port = _free_port()
        self.running = False
        self._as: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        argv = [*self._as, str(self.bin / tool), *args]
        subprocess.run(argv, check=True, capture_output=True, timeout=60)

    def start(self) -> PrivatePostgres:
        if not (self.dir / "data").exists():
            self._run(
                "initdb",
                "-D",
                str(self.dir / "data"),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            )
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
            # fsync=off only spares the disk: a commit's WAL still reaches the
            # OS before the client hears of it, so a crash (not a power cut)
            # keeps every acknowledged write, as the outage tests require.
            "-c fsync=off -c full_page_writes=off"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.dir / "data"),
            "-o",
            options,
            "-l",
            str(self.dir / "log"),
            "-w",
            "-t",
            "30",
            "start",
        )
        self.running = True
        return self

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server; ``immediate`` is a crash (no shutdown checkpoint)."""
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", mode, "-w", "stop")
        self.running = False

    def destroy(self) -> None:
        if self.running:
            with contextlib.suppress(subprocess.CalledProcessError):
                self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
