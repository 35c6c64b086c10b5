"""``manager.check()`` finds a broken store at startup; an outage logs once, then summarizes."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from asess import SessionBackendError, SessionManager, SessionMiddleware
from asess._outage_log import OutageLog

from .backends import BACKENDS, manager_factory

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_check_passes_on_a_working_store_and_leaves_nothing(
    backend: str, request: pytest.FixtureRequest
) -> None:
    clients: list[Any] = []
    manager = manager_factory(backend, request, clients)()
    try:
        await manager.check()
        assert await manager.clear() == 0  # the probe record is gone again
    finally:
        await manager.aclose()
        for client in clients:
            await client.aclose()


async def test_check_names_an_unreachable_redis() -> None:
    manager = SessionManager.redis("redis://127.0.0.1:1/0")
    with pytest.raises(SessionBackendError, match="Redis failed"):
        await manager.check()
    await manager.aclose()


async def test_check_names_an_unwritable_directory(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the directory should be")
    manager = SessionManager.files(path=blocker / "sessions")
    with pytest.raises(SessionBackendError, match="could not"):
        await manager.check()


async def test_check_of_a_cookie_manager_seals_and_opens_a_token() -> None:
    await SessionManager.cookies("k" * 32, encryption_mode="modern").check()


async def _lifespan(app: Any) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    return sent


def _app_with_lifespan() -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return

    return app


async def test_check_on_startup_fails_the_lifespan_startup_with_the_reason() -> None:
    manager = SessionManager.redis("redis://127.0.0.1:1/0")
    sent = await _lifespan(SessionMiddleware(_app_with_lifespan(), manager, check_on_startup=True))
    assert sent[0]["type"] == "lifespan.startup.failed"
    assert "session store check failed" in sent[0]["message"] and "Redis" in sent[0]["message"]
    await manager.aclose()


async def test_check_on_startup_lets_a_working_store_start() -> None:
    app = SessionMiddleware(_app_with_lifespan(), SessionManager.memory(), check_on_startup=True)
    sent = await _lifespan(app)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_an_outage_logs_one_traceback_then_one_summary_per_interval(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    log = OutageLog(interval=10.0, clock=lambda: now[0])
    error = SessionBackendError("Redis failed while reading a session")
    with caplog.at_level(logging.ERROR, logger="asess"):
        for _ in range(100):  # a burst of failing requests within one interval
            log.failed(error)
            now[0] += 0.05
        assert len(caplog.records) == 1 and caplog.records[0].exc_info is not None
        now[0] = 11.0
        log.failed(error)
        assert len(caplog.records) == 2
        summary = caplog.records[1]
        assert summary.exc_info is None
        assert "100 more requests answered 503" in summary.getMessage()
        now[0] = 500.0  # a new outage, long after: the traceback again
        log.failed(error)
        assert caplog.records[2].exc_info is not None
