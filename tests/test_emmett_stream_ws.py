"""Streamed responses and websockets in Emmett apps on asess sessions.

A streamed response sends its headers before ``close_request``: its cookie
must already be there (Emmett's test client records the headers the stream
started with). Websockets get the session too; only an existing server-side
session can be saved from one, since the handshake carries no cookie.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from emmett import response, session, websocket
from emmett.tools import stream
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from asess import SessionError
from tests.emmett_helpers import BACKENDS, SERVER_SIDE, asgi, cookie_line, new_app, pipe_factory


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def app(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    app = new_app(tmp_path / "app")
    app.pipeline = [pipe_factory(backend, request)()]

    @app.route("/counter")
    async def count() -> str:
        session.counter = (session.counter or 0) + 1
        return str(session.counter)

    async def chunks(late: bool) -> AsyncIterator[str]:
        for i in range(3):
            yield f"chunk{i};"
        if late:
            session.late = "set while streaming"

    @app.route("/stream")
    async def streamed() -> Any:
        session.streamed = (session.streamed or 0) + 1
        return await response.stream(chunks(late=False))

    @app.route("/stream/late")
    async def streamed_late() -> Any:
        session.counter = (session.counter or 0) + 1
        return await response.stream(chunks(late=True))

    @app.route("/stream/pipe")
    @stream()
    async def stream_pipe() -> AsyncIterator[str]:
        # With @stream() the whole handler runs after the headers went out.
        yield f"{session.counter};"
        session.piped = True
        yield "done;"

    @app.route("/read")
    async def read() -> str:
        return f"{session.counter} {session.streamed} {session.piped} {session.late}"

    @app.websocket("/ws")
    async def ws() -> None:
        await websocket.accept()
        await websocket.send(f"counter={session.counter}")
        session.counter = (session.counter or 0) + 10
        command = await websocket.receive()
        if command == "save":
            try:
                await session.save()
            except SessionError as exc:
                await websocket.send(f"refused: {exc}")
            else:
                await websocket.send("saved")

    return app


def test_streamed_response_carries_the_session_cookie(app: Any) -> None:
    client = app.test_client()
    first = client.get("/stream")
    assert first.data == "chunk0;chunk1;chunk2;"
    assert cookie_line(first, f"emt_session_data_{app.name}") is not None
    assert client.get("/read").data == "None 1 None None"
    assert app.test_client().get("/read").data == "None None None None"


def test_stream_pipe_handler_reads_the_session(app: Any, backend: str) -> None:
    client = app.test_client()
    assert client.get("/counter").data == "1"
    assert client.get("/stream/pipe").data == "1;done;"
    piped = "True" if backend in SERVER_SIDE else "None"
    assert client.get("/read").data == f"1 None {piped} None"


def test_changes_after_a_stream_started(
    app: Any, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = app.test_client()
    with caplog.at_level(logging.WARNING, logger="asess.emmett"):
        assert client.get("/stream/late").data == "chunk0;chunk1;chunk2;"
    if backend in SERVER_SIDE:
        # The record is saved again once the stream is over; the id is unchanged.
        assert client.get("/read").data == "1 None None set while streaming"
        assert "not saved" not in caplog.text
    else:
        # The cookie went out with the stream: a later change has no way out.
        assert client.get("/read").data == "1 None None None"
        assert "session changes made after the response started were not saved" in caplog.text


def wait_for_server_close(ws: Any) -> None:
    """Emmett closes the socket after the pipes' close_ws ran: wait for that."""
    with pytest.raises(WebSocketDisconnect) as closed:
        ws.receive_text()
    assert closed.value.code == 1000


@pytest.fixture
def web(app: Any) -> Iterator[TestClient]:
    """Starlette's test client on one event loop for the whole test (Redis needs that)."""
    with TestClient(asgi(app)) as client:
        yield client


def test_websocket_sees_and_keeps_the_session(
    web: TestClient, backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert web.get("/counter").text == "1"
    with (
        caplog.at_level(logging.WARNING, logger="asess.emmett"),
        web.websocket_connect("/ws") as ws,
    ):
        assert ws.receive_text() == "counter=1"
        ws.send_text("bye")
        wait_for_server_close(ws)
    if backend in SERVER_SIDE:
        assert web.get("/counter").text == "12"
    else:
        assert web.get("/counter").text == "2"
        assert "session changes made in a websocket are dropped" in caplog.text


def test_websocket_explicit_save(web: TestClient, backend: str) -> None:
    assert web.get("/counter").text == "1"
    with web.websocket_connect("/ws") as ws:
        assert ws.receive_text() == "counter=1"
        ws.send_text("save")
        answer = ws.receive_text()
        wait_for_server_close(ws)
    if backend in SERVER_SIDE:
        assert answer == "saved"
        assert web.get("/counter").text == "12"
    else:
        assert answer.startswith("refused: the session needs a new cookie")
        assert web.get("/counter").text == "2"


def test_websocket_without_a_session_stores_nothing(web: TestClient, app: Any) -> None:
    with web.websocket_connect("/ws") as ws:
        assert ws.receive_text() == "counter=None"
        ws.send_text("save")
        assert ws.receive_text().startswith("refused: the session needs a new cookie")
        wait_for_server_close(ws)
    assert web.cookies.get(f"emt_session_data_{app.name}") is None
    assert web.get("/counter").text == "1"
