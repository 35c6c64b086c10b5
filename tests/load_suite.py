"""The load tests, written once and run at two sizes (test_load.py in CI, test_stress.py in full).

Each backend runs under a real uvicorn with two worker processes over TCP, once
with ``locking=True`` and once without. With locking nothing may be lost: the
counter of one hammered session ends at exactly its request count. Without
locking concurrent requests of one session may overwrite each other (those
are the lost updates the figures show) but nothing may break: no 5xx, no
record that does not parse, no counter above what was asked for.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from .load import Figures, hot_session, many_sessions, uvicorn_demo
from .servers import Server

BACKENDS = ["files", "redis"]


def _print_figures(figures: list[Figures]) -> None:
    if figures:
        print("\nload figures:")
        for f in figures:
            print("  " + f.line())


def _demo(
    backend: str, locking: bool, tmp: Path, request: pytest.FixtureRequest
) -> Iterator[Server]:
    env = {"ASESS_DEMO_BACKEND": backend, "ASESS_DEMO_LOCKING": "1" if locking else "0"}
    if backend == "files":
        env["ASESS_DEMO_PATH"] = str(tmp / "sessions")
    else:
        # The Redis tests' server (tests.redis_fixtures): REDIS_URL, or one of our own.
        url = request.getfixturevalue("redis_url")
        if url is None:
            pytest.skip("no Redis server: set REDIS_URL or install redis-server")
        env["REDIS_URL"] = url
    with uvicorn_demo(tmp, workers=2, **env) as server:
        server.backend = backend
        yield server
    log = server.output()
    assert "Traceback" not in log, f"the server logged an exception:\n{log}"


class LoadSuite:
    """Subclasses set the sizes; the figures of every run are printed at the end."""

    HOT: ClassVar[int] = 200  # concurrent requests on one session
    REQUESTS: ClassVar[int] = 2000  # requests over SESSIONS sessions, in order per session
    SESSIONS: ClassVar[int] = 200
    CONCURRENCY: ClassVar[int] = 64  # requests in flight at once
    FIGURES: ClassVar[list[Figures]]

    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def figures(cls) -> Iterator[list[Figures]]:
        collected: list[Figures] = []
        cls.FIGURES = collected
        yield collected
        _print_figures(collected)

    @pytest.fixture(scope="class", params=BACKENDS)
    @classmethod
    def locked(
        cls, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[Server]:
        tmp = tmp_path_factory.mktemp(f"locked-{request.param}")
        yield from _demo(request.param, True, tmp, request)

    @pytest.fixture(scope="class", params=BACKENDS)
    @classmethod
    def unlocked(
        cls, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
    ) -> Iterator[Server]:
        tmp = tmp_path_factory.mktemp(f"unlocked-{request.param}")
        yield from _demo(request.param, False, tmp, request)

    def _record(self, figures: Figures, server: Server, mode: str) -> Figures:
        figures.label = f"{server.backend:<5} {mode:<9} {figures.label}"
        self.FIGURES.append(figures)
        print(figures.line())
        return figures

    async def test_locked_hot_session_loses_nothing(self, locked: Server) -> None:
        figures, final = await hot_session(locked.url, self.HOT, self.CONCURRENCY)
        self._record(figures, locked, "locking")
        assert figures.errors == 0 and figures.corrupt == 0, figures.statuses
        assert final == self.HOT
        assert figures.lost_updates == 0

    async def test_locked_sessions_in_order_lose_nothing(self, locked: Server) -> None:
        await self._sessions_in_order(locked, "locking")

    async def test_unlocked_sessions_in_order_lose_nothing(self, unlocked: Server) -> None:
        await self._sessions_in_order(unlocked, "no-lock")

    async def _sessions_in_order(self, server: Server, mode: str) -> None:
        figures, visitors = await many_sessions(
            server.url, self.REQUESTS, self.SESSIONS, self.CONCURRENCY
        )
        self._record(figures, server, mode)
        assert figures.errors == 0 and figures.corrupt == 0, figures.statuses
        assert figures.lost_updates == 0
        assert sum(v.counted for v in visitors) == self.REQUESTS
        # Requests of one session go one after the other, so each visitor saw
        # 1, 2, 3, ...: a session replaced by a fresh one would start again at 1.
        assert all(v.history == list(range(1, v.counted + 1)) for v in visitors)
        assert len({v.cookie for v in visitors}) == self.SESSIONS

    async def test_unlocked_hot_session_corrupts_nothing(self, unlocked: Server) -> None:
        figures, final = await hot_session(unlocked.url, self.HOT, self.CONCURRENCY)
        self._record(figures, unlocked, "no-lock")
        assert figures.server_errors == 0 and figures.errors == 0, figures.statuses
        assert figures.corrupt == 0
        # Overwrites may lose increments, but the record is always one that a
        # request wrote: between 1 and the number of requests.
        assert 1 <= final <= self.HOT
