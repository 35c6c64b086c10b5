"""``SessionManager.clear()``: called as Emmett code calls it, and awaited.

Emmett's ``clear()`` is synchronous. asess's starts the work at call time:
with no running loop it finishes before returning; inside one it runs as a
task, which the caller may await for the count or leave to finish.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from emmett import session

from asess import SessionError
from asess import SessionManager as CoreManager
from asess._backends.memory import MemoryStore
from asess.emmett import Clearing, SessionManager, SessionPipe
from tests.emmett_helpers import new_app, pipe_factory


def counter_app(root: Path, make_pipe: Any) -> Any:
    app = new_app(root)
    app.pipeline = [make_pipe()]

    @app.route("/counter")
    async def count() -> str:
        session.counter = (session.counter or 0) + 1
        return str(session.counter)

    @app.route("/clear/await")
    async def clear_awaited() -> str:
        return f"cleared {await SessionManager.clear()}"

    @app.route("/clear/emmett-style")
    async def clear_emmett_style() -> str:
        SessionManager.clear()
        return "clearing"

    return app


@pytest.mark.parametrize("backend", ["memory", "files", "redis"])
def test_clear_without_a_running_loop_finishes_before_returning(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    app = counter_app(tmp_path, pipe_factory(backend, request))
    browsers = [app.test_client() for _ in range(3)]
    for browser in browsers:
        assert browser.get("/counter").data == "1"
    if backend == "files":
        assert len(list((tmp_path / "sessions").iterdir())) == 3

    clearing = SessionManager.clear()  # as Emmett code calls it: no await
    assert isinstance(clearing, Clearing)
    assert clearing.done()
    assert clearing.result() == 3
    if backend == "files":
        assert list((tmp_path / "sessions").iterdir()) == []
    assert [b.get("/counter").data for b in browsers] == ["1", "1", "1"]


@pytest.mark.parametrize("backend", ["memory", "files", "redis"])
def test_clear_awaited_in_a_handler_returns_the_count(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    app = counter_app(tmp_path, pipe_factory(backend, request))
    first, second = app.test_client(), app.test_client()
    first.get("/counter")
    second.get("/counter")
    assert second.get("/counter").data == "2"
    assert app.test_client().get("/clear/await").data == "cleared 2"
    assert second.get("/counter").data == "1"


def test_clear_emmett_style_in_a_handler(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    app = counter_app(tmp_path, pipe_factory("memory", request))
    browser = app.test_client()
    browser.get("/counter")
    assert browser.get("/counter").data == "2"
    assert app.test_client().get("/clear/emmett-style").data == "clearing"
    assert browser.get("/counter").data == "1"


async def test_clear_not_awaited_runs_in_the_background(tmp_path: Path) -> None:
    pipe = SessionManager.files(cookie_name="sid", path=tmp_path / "sessions")
    for _ in range(3):
        lifecycle = pipe.manager.lifecycle(None)
        lifecycle.session["n"] = 1
        await lifecycle.commit()
    assert len(list((tmp_path / "sessions").iterdir())) == 3

    clearing = SessionManager.clear()
    assert not clearing.done()  # started, not finished: the file work runs in a thread
    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    await asyncio.gather(*others)
    assert clearing.done() and clearing.result() == 3
    assert list((tmp_path / "sessions").iterdir()) == []
    assert await clearing == 3


class BrokenClear(MemoryStore):
    async def clear(self) -> int:
        raise SessionError("cannot clear right now")


async def test_a_failed_clear_nobody_awaited_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    SessionManager._pipe = SessionPipe(CoreManager(BrokenClear(), cookie_name="sid"))
    with caplog.at_level(logging.ERROR, logger="asess.emmett"):
        clearing = SessionManager.clear()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        await asyncio.gather(*others, return_exceptions=True)
    assert "clearing the sessions failed: cannot clear right now" in caplog.text
    with pytest.raises(SessionError, match="cannot clear right now"):
        await clearing


async def test_a_failed_clear_awaited_raises_without_a_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pipe = SessionPipe(CoreManager(BrokenClear(), cookie_name="sid"))
    with (
        caplog.at_level(logging.ERROR, logger="asess.emmett"),
        pytest.raises(SessionError, match="cannot clear right now"),
    ):
        await pipe.clear()
    assert caplog.text == ""


def test_clear_targets_the_pipe_built_last(tmp_path: Path) -> None:
    old = SessionManager.files(cookie_name="old", path=tmp_path / "old")
    new = SessionManager.files(cookie_name="new", path=tmp_path / "new")
    for pipe in (old, new):
        lifecycle = pipe.manager.lifecycle(None)
        lifecycle.session["n"] = 1
        asyncio.run(lifecycle.commit())
    assert SessionManager.clear().result() == 1
    assert len(list((tmp_path / "old").iterdir())) == 1
    assert list((tmp_path / "new").iterdir()) == []
    assert old.clear().result() == 1


def test_cookie_sessions_cannot_be_cleared(tmp_path: Path) -> None:
    new_app(tmp_path)
    SessionManager.cookies("secret")
    with pytest.raises(NotImplementedError, match="change the 'key'"):
        SessionManager.clear()
