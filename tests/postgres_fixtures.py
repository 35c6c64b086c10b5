"""Pytest fixtures for the PostgreSQL tests: the server's DSN and throwaway tables.

``postgres_dsn`` is the server at ``ASESS_POSTGRES_DSN`` (default
``postgresql://postgres@127.0.0.1:5432/test``); when it cannot be reached the
tests that need it skip, saying why, or fail under ``ASESS_REQUIRE_POSTGRES=1``
(set by CI). ``pg_tables`` hands out table names no other test uses and drops
those tables afterwards. ``tests/conftest.py`` registers this file as a
plugin; plain helpers live in :mod:`tests.postgres_servers`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from tests.postgres_servers import DSN, REQUIRE_POSTGRES, drop_tables, new_table_name

T = TypeVar("T")


async def _probe(dsn: str) -> str | None:
    """Why ``dsn`` cannot be used, or None when it can."""
    try:
        import asyncpg
    except ImportError:
        return "asyncpg is not installed (pip install 'asess[postgres]')"
    try:
        conn = await asyncpg.connect(dsn, timeout=3)
    except (OSError, asyncio.TimeoutError, asyncpg.PostgresError) as exc:
        return f"no PostgreSQL at {dsn} ({type(exc).__name__}: {exc})"
    await conn.close()
    return None


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """The DSN of a reachable PostgreSQL server, for the whole session."""
    missing = _run_aside(lambda: _probe(DSN))
    if missing is not None:
        if REQUIRE_POSTGRES:
            pytest.fail(f"{missing}, and ASESS_REQUIRE_POSTGRES=1")
        pytest.skip(f"{missing}; set ASESS_POSTGRES_DSN or start a server (CI requires one)")
    return DSN


def _run_aside(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run a coroutine in a thread and loop of its own.

    These fixtures are synchronous because async fixtures ask for them (through
    ``getfixturevalue``) while a loop is already running.
    """
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()


@pytest.fixture
def pg_tables(postgres_dsn: str) -> Iterator[Callable[[], str]]:
    """Call it for a fresh table name; every table named is dropped after the test."""
    names: list[str] = []

    def name() -> str:
        names.append(new_table_name())
        return names[-1]

    yield name
    if names:
        _run_aside(lambda: drop_tables(postgres_dsn, names))
