"""A small ASGI app for logout races: login, a slow request, a stream, logout, whoami, count.

In-process tests drive it with events (``Gates``) so two requests of one session
overlap exactly where the test wants; the multi-worker tests run it under
uvicorn (``app_from_env``) and overlap requests with a server-side delay.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any
from urllib.parse import parse_qs

from asess import Session, SessionInterrupted, SessionManager, SessionMiddleware


class Gates:
    """Events a test sets to let a held request go on; absent in servers (they sleep)."""

    def __init__(self) -> None:
        self.loaded = asyncio.Event()  # the slow request has its session
        self.go = asyncio.Event()  # let it change and save


async def _hold(gates: Gates | None, query: dict[str, list[str]]) -> None:
    if gates is not None:
        gates.loaded.set()
        await gates.go.wait()
    else:
        await asyncio.sleep(int(query.get("ms", ["300"])[0]) / 1000)


def race_app(manager: SessionManager, gates: Gates | None = None) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(manager, receive, send)
            return
        session: Session = scope["session"]
        query = parse_qs(scope.get("query_string", b"").decode())
        path = scope["path"]
        if scope["type"] == "websocket":
            await _websocket(session, receive, send, gates)
            return
        if path == "/stream":
            await _stream(session, send, gates, query)
            return
        body = await _http(session, path, gates, query)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body.encode()})

    return SessionMiddleware(app, manager)


async def _http(
    session: Session, path: str, gates: Gates | None, query: dict[str, list[str]]
) -> str:
    if path == "/login":
        session.regenerate()
        session["user"] = query.get("user", ["alice"])[0]
    elif path == "/logout":
        session.invalidate()
    elif path == "/slow":
        session.get("user")
        await _hold(gates, query)
        session["cart"] = ["bought after the logout"]
    elif path == "/count":
        count = session.get("count", 0)
        await asyncio.sleep(0.002)  # a read-modify-write that other requests can overlap
        session["count"] = count + 1
        return f"count={session['count']}"
    return f"user={session.get('user')} cart={session.get('cart')}"


async def _stream(session: Session, send: Any, gates: Gates | None, query: Any) -> None:
    session.get("user")
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"first ", "more_body": True})
    await _hold(gates, query)
    session["cart"] = ["changed while streaming"]  # saved at the end, after the response started
    await send({"type": "http.response.body", "body": b"last"})


async def _websocket(session: Session, receive: Any, send: Any, gates: Gates | None) -> None:
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    session.get("user")
    await _hold(gates, {})
    session["cart"] = ["changed in a websocket"]
    try:
        await session.save()
        outcome = "saved"
    except SessionInterrupted:
        outcome = "interrupted"
    await send({"type": "websocket.send", "text": outcome})
    await send({"type": "websocket.close", "code": 1000})


async def _lifespan(manager: SessionManager, receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await manager.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return


def app_from_env() -> Any:
    """For ``uvicorn --factory tests.race_app:app_from_env`` (multi-worker races)."""
    locking = os.environ.get("RACE_LOCKING") == "1"
    timeout = float(os.environ.get("RACE_LOCK_TIMEOUT", "10"))
    if os.environ["RACE_BACKEND"] == "files":
        manager = SessionManager.files(
            path=os.environ["RACE_PATH"], locking=locking, lock_timeout=timeout
        )
    elif os.environ["RACE_BACKEND"] == "postgres":
        manager = SessionManager.postgres(
            os.environ["RACE_DSN"],
            table=os.environ["RACE_TABLE"],
            locking=locking,
            lock_timeout=timeout,
        )
    else:
        manager = SessionManager.redis(
            os.environ["RACE_REDIS"],
            prefix=os.environ["RACE_PREFIX"],
            locking=locking,
            lock_timeout=timeout,
        )
    return race_app(manager)
