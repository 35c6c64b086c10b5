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
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

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


async def _get(url: str, path: str, sid: str | None = None, **params: Any) -> httpx.Response:
    headers = {"cookie": f"{COOKIE}={sid}"} if sid else {}
    # A new connection per request: the kernel hands each to either worker.
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        return await client.get(path, headers=headers, params=params)


async def _race(url: str, slow_ms: int) -> tuple[str, httpx.Response, httpx.Response]:
    login = await _get(url, "/login")
    sid = login.cookies[COOKIE]
    slow = asyncio.create_task(_get(url, "/slow", sid, ms=slow_ms))
    await asyncio.sleep(slow_ms / 4000)  # the slow request has loaded by now
    logout = await _get(url, "/logout", sid)
    return sid, await slow, logout


@pytest.fixture(params=["files", "redis", "postgres"])
def store_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    if request.param == "files":
        return {"RACE_BACKEND": "files", "RACE_PATH": str(tmp_path / "sessions")}
    if request.param == "postgres":
        dsn = request.getfixturevalue("postgres_dsn")
        table = request.getfixturevalue("pg_tables")()
        return {"RACE_BACKEND": "postgres", "RACE_DSN": dsn, "RACE_TABLE": table}
    url = request.getfixturevalue("redis_url")
    if url is None:
        pytest.skip("no redis-server on this machine (CI requires one)")
    return {
        "RACE_BACKEND": "redis",
        "RACE_REDIS": url,
        "RACE_PREFIX": f"race{secrets.token_hex(3)}:",
    }


@contextmanager
def _two_workers(tmp_path: Path, env: dict[str, str]) -> Iterator[Server]:
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "--factory", "tests.race_app:app_from_env"]
    argv += ["--host", HOST, "--port", str(port), "--workers", "2", "--log-level", "warning"]
    root = Path(__file__).resolve().parent.parent
    with running(argv, tmp_path / "uvicorn.log", port=port, env=env, cwd=root) as server:
        yield server


def test_locked_increments_from_two_workers_lose_nothing(
    tmp_path: Path, store_env: dict[str, str]
) -> None:
    env = subprocess_env(RACE_LOCKING="1", RACE_LOCK_TIMEOUT="10", **store_env)
    with _two_workers(tmp_path, env) as server:

        async def scenario() -> list[str]:
            sid = (await _get(server.url, "/login")).cookies[COOKIE]
            limits = httpx.Limits(max_connections=INCREMENTS, max_keepalive_connections=0)
            headers = {"cookie": f"{COOKIE}={sid}"}
            # No keep-alive: each request is a new connection, for either worker.
            async with httpx.AsyncClient(base_url=server.url, timeout=60, limits=limits) as c:
                answers = await asyncio.gather(
                    *(c.get("/count", headers=headers) for _ in range(INCREMENTS))
                )
            assert all(a.status_code == 200 for a in answers), server.output()
            final = await _get(server.url, "/count", sid)
            return [a.text for a in answers] + [final.text]

        texts = asyncio.run(scenario())
    # Each increment saw every one before it: the counts are 1..N, each once.
    assert sorted(texts, key=lambda t: int(t.partition("=")[2])) == [
        f"count={n}" for n in range(1, INCREMENTS + 2)
    ]


@pytest.mark.parametrize(
    ("locking", "lock_timeout", "slow_ms"),
    [("0", "10", 400), ("1", "0.3", 900), ("1", "10", 300)],
    ids=["unlocked", "lease-expires", "lease-waits"],
)
def test_logout_holds_across_two_workers(
    tmp_path: Path, store_env: dict[str, str], locking: str, lock_timeout: str, slow_ms: int
) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "--factory", "tests.race_app:app_from_env"]
    argv += ["--host", HOST, "--port", str(port), "--workers", "2", "--log-level", "warning"]
    env = subprocess_env(RACE_LOCKING=locking, RACE_LOCK_TIMEOUT=lock_timeout, **store_env)
    root = Path(__file__).resolve().parent.parent
    log = tmp_path / "uvicorn.log"
    with running(argv, log, port=port, env=env, cwd=root) as server:
        ended: list[str] = []

        async def scenario() -> None:
            for _ in range(ROUNDS):
                sid, slow, logout = await _race(server.url, slow_ms)
                ended.append(sid)
                assert logout.status_code == 200 and slow.status_code == 200, server.output()
                if lock_timeout != "10" or locking == "0":
                    # Under a long lease the logout waits: the slow request's
                    # cookie left before the logout began, and is legitimate.
                    assert not _revives(slow, sid), slow.headers.get_list("set-cookie")
                replay = await _get(server.url, "/whoami", sid)
                assert replay.text == "user=None cart=None", replay.text

        asyncio.run(scenario())
        if store_env["RACE_BACKEND"] == "files":
            left = sorted(p.name for p in Path(store_env["RACE_PATH"]).iterdir())
            # No ended session's file came back, and no lease outlived its request.
            assert not [n for n in left if any(sid in n for sid in ended)], left
            assert not [n for n in left if n.endswith(".lock")], left
        if store_env["RACE_BACKEND"] == "postgres":
            rows = asyncio.run(_postgres_rows(store_env["RACE_DSN"], store_env["RACE_TABLE"]))
            assert not [r for r in rows if r[0] in ended], rows
            assert not [r for r in rows if r[1] is not None], rows  # a lease outlived its request


async def _postgres_rows(dsn: str, table: str) -> list[tuple[str, str | None]]:
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        return [tuple(r) for r in await conn.fetch(f"SELECT id, lease_token FROM {table}")]
    finally:
        await conn.close()
