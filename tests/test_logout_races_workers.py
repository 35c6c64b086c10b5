"""Logout races and locked counters across two uvicorn workers sharing files, Redis or PostgreSQL.

A slow request of a logged-in session (it loads, waits on the server, then
changes the session) runs on one connection while a logout arrives on
others, so the two requests can land on different workers. Whatever the
interleaving, the ended session stays ended. With ``locking=True`` and a lease
shorter than the slow request, the logout takes the expired lease over and
the slow request's late save is fenced off; with a longer lease the logout
waits its turn. Under ``locking=True`` concurrent increments of one session,
spread over both workers, lose none.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from .postgres_servers import drop_tables, new_table_name
from .servers import HOST, Server, free_port, running, subprocess_env

pytestmark = pytest.mark.timeout(120)

COOKIE = "asess_session"
ROUNDS = 4
INCREMENTS = 60


def _revives(response: httpx.Response, sid: str) -> bool:
    return any(
        line.startswith(f"{COOKIE}={sid};") and "Max-Age=0" not in line
        for line in response.headers.get_list("set-cookie")
    )


def _client(url: str) -> httpx.AsyncClient:
    # No keep-alive: each request is a new connection, which the kernel hands
    # to either worker. One client for a whole scenario, because building one
    # (its TLS context) costs more CPU than the requests it sends.
    limits = httpx.Limits(max_keepalive_connections=0)
    return httpx.AsyncClient(base_url=url, timeout=60, limits=limits)


async def _get(
    client: httpx.AsyncClient, path: str, sid: str | None = None, **params: Any
) -> httpx.Response:
    headers = {"cookie": f"{COOKIE}={sid}"} if sid else {}
    return await client.get(path, headers=headers, params=params)


async def _race(
    client: httpx.AsyncClient, gates: Path, slow_ms: int
) -> tuple[str, httpx.Response, httpx.Response]:
    """A slow request of a fresh login overlapped by a logout of the same session.

    The logout leaves only once the slow request has loaded (files in ``gates``
    carry the signals between processes). With ``slow_ms`` 0 the slow request
    then waits until the logout has answered, so the order holds on any
    machine; otherwise it sleeps ``slow_ms``, as it must under a lease the
    logout waits for.
    """
    login = await _get(client, "/login")
    sid = login.cookies[COOKIE]
    token = secrets.token_hex(8)
    slow = asyncio.create_task(_get(client, "/slow", sid, gate=token, ms=slow_ms))
    while not (gates / f"{token}.loaded").exists():
        if slow.done():  # it answered (or failed) without reaching the gate
            return sid, await slow, await _get(client, "/logout", sid)
        await asyncio.sleep(0.005)
    logout = await _get(client, "/logout", sid)
    (gates / f"{token}.go").touch()
    return sid, await slow, logout


# Every configuration the tests race under, served side by side by one
# two-worker server per store (tests.race_app mounts each under /name/).
MOUNTS = {"unlocked": ("0", "10"), "expires": ("1", "0.3"), "waits": ("1", "10")}


@dataclass
class Workers:
    """Two uvicorn workers over one store, serving every configuration in MOUNTS."""

    server: Server
    env: dict[str, str]
    gates: Path  # where the gated slow requests and the tests signal each other

    @property
    def backend(self) -> str:
        return self.env["RACE_BACKEND"]

    def url(self, mount: str) -> str:
        return f"{self.server.url}/{mount}"

    def sessions_dir(self, mount: str) -> Path:
        return Path(self.env["RACE_PATH"]) / mount

    def table(self, mount: str) -> str:
        return f"{self.env['RACE_TABLE']}_{mount}"


def _store_env(backend: str, request: pytest.FixtureRequest, tmp: Path) -> dict[str, str]:
    if backend == "files":
        return {"RACE_BACKEND": "files", "RACE_PATH": str(tmp / "sessions")}
    if backend == "postgres":
        dsn = request.getfixturevalue("postgres_dsn")
        return {"RACE_BACKEND": "postgres", "RACE_DSN": dsn, "RACE_TABLE": new_table_name()}
    url = request.getfixturevalue("redis_url")
    if url is None:
        pytest.skip("no redis-server on this machine (CI requires one)")
    return {
        "RACE_BACKEND": "redis",
        "RACE_REDIS": url,
        "RACE_PREFIX": f"race{secrets.token_hex(3)}:",
    }


@pytest.fixture(scope="module", params=["files", "redis", "postgres"])
def workers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Workers]:
    tmp = tmp_path_factory.mktemp(f"race-{request.param}")
    store_env = _store_env(request.param, request, tmp)
    mounts = ",".join(f"{name}={lock}:{timeout}" for name, (lock, timeout) in MOUNTS.items())
    gates = tmp / "gates"
    gates.mkdir()
    env = subprocess_env(RACE_MOUNTS=mounts, RACE_GATES=str(gates), **store_env)
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "--factory", "tests.race_app:app_from_env"]
    argv += ["--host", HOST, "--port", str(port), "--workers", "2", "--log-level", "warning"]
    root = Path(__file__).resolve().parent.parent
    try:
        with running(argv, tmp / "uvicorn.log", port=port, env=env, cwd=root) as server:
            yield Workers(server, store_env, gates)
    finally:
        if request.param == "postgres":
            tables = [f"{store_env['RACE_TABLE']}_{name}" for name in MOUNTS]
            asyncio.run(drop_tables(store_env["RACE_DSN"], tables))


def test_locked_increments_from_two_workers_lose_nothing(workers: Workers) -> None:
    url = workers.url("waits")  # locking=True, lock_timeout=10

    async def scenario() -> list[str]:
        async with _client(url) as client:
            sid = (await _get(client, "/login")).cookies[COOKIE]
            answers = await asyncio.gather(
                *(_get(client, "/count", sid) for _ in range(INCREMENTS))
            )
            assert all(a.status_code == 200 for a in answers), workers.server.output()
            final = await _get(client, "/count", sid)
        return [a.text for a in answers] + [final.text]

    texts = asyncio.run(scenario())
    # Each increment saw every one before it: the counts are 1..N, each once.
    assert sorted(texts, key=lambda t: int(t.partition("=")[2])) == [
        f"count={n}" for n in range(1, INCREMENTS + 2)
    ]


@pytest.mark.parametrize(
    ("mount", "slow_ms"),
    # A slow request of 0 ms waits at its gate until the logout has answered;
    # under "waits" the logout waits for it, so it sleeps 300 ms instead.
    [("unlocked", 0), ("expires", 0), ("waits", 300)],
    ids=["unlocked", "lease-expires", "lease-waits"],
)
def test_logout_holds_across_two_workers(workers: Workers, mount: str, slow_ms: int) -> None:
    locking, lock_timeout = MOUNTS[mount]
    url = workers.url(mount)
    server = workers.server

    async def round_(client: httpx.AsyncClient) -> str:
        sid, slow, logout = await _race(client, workers.gates, slow_ms)
        assert logout.status_code == 200 and slow.status_code == 200, server.output()
        if lock_timeout != "10" or locking == "0":
            # Under a long lease the logout waits: the slow request's
            # cookie left before the logout began, and is legitimate.
            assert not _revives(slow, sid), slow.headers.get_list("set-cookie")
        replay = await _get(client, "/whoami", sid)
        assert replay.text == "user=None cart=None", replay.text
        return sid

    async def scenario() -> list[str]:
        # The rounds race at once, each on a session of its own: more requests
        # in flight on the two workers, never fewer races.
        async with _client(url) as client:
            return await asyncio.gather(*(round_(client) for _ in range(ROUNDS)))

    ended = asyncio.run(scenario())
    if workers.backend == "files":
        left = sorted(p.name for p in workers.sessions_dir(mount).iterdir())
        # No ended session's file came back, and no lease outlived its request.
        assert not [n for n in left if any(sid in n for sid in ended)], left
        assert not [n for n in left if n.endswith(".lock")], left
    if workers.backend == "postgres":
        rows = asyncio.run(_postgres_rows(workers.env["RACE_DSN"], workers.table(mount)))
        assert not [r for r in rows if r[0] in ended], rows
        assert not [r for r in rows if r[1] is not None], rows  # a lease outlived its request


async def _postgres_rows(dsn: str, table: str) -> list[tuple[str, str | None]]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        return [tuple(r) for r in await conn.fetch(f"SELECT id, lease_token FROM {table}")]
    finally:
        await conn.close()
